"""Decoding a failed call's `google.rpc.Status` and its `google.rpc.ErrorInfo` (AIP-193).

Every error Croupier sends is a canonical gRPC code with a `google.rpc.Status` in the
`grpc-status-details-bin` trailer carrying one ErrorInfo (domain `croupier`, an
UPPER_SNAKE_CASE `reason`, string `metadata` such as `field`). The Python client, the sportsbook
edge, the server's metrics and the tests all read it through these functions.
"""

from __future__ import annotations

from typing import Any

from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


def status_of(call: Any) -> status_pb2.Status | None:
    """The `google.rpc.Status` of a failed call (`grpc.RpcError` or `grpc.aio.AioRpcError`), or
    None when it carries none or one whose code or message disagrees with the call's."""
    try:
        status: status_pb2.Status | None = rpc_status.from_call(call)
    except ValueError:
        return None
    return status


def error_infos(status: status_pb2.Status) -> list[error_details_pb2.ErrorInfo]:
    """Every ErrorInfo among the Status's details, in order (Croupier sends exactly one)."""
    out = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out.append(info)
    return out


def error_info(call_or_status: Any) -> error_details_pb2.ErrorInfo | None:
    """The first ErrorInfo of a failed call or of a `google.rpc.Status`, or None."""
    status = (
        call_or_status
        if isinstance(call_or_status, status_pb2.Status)
        else status_of(call_or_status)
    )
    if status is None:
        return None
    infos = error_infos(status)
    return infos[0] if infos else None


def reason_of(call_or_status: Any) -> str:
    """The ErrorInfo reason of a failed call or a `google.rpc.Status` ("" if none)."""
    info = error_info(call_or_status)
    return str(info.reason) if info is not None else ""

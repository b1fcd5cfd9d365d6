"""DomainError <-> google.rpc.Status with one ErrorInfo (AIP-193), via grpcio-status."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.error_info import reason_of
from server.errors import DomainError, ErrorCode

DOMAIN = "croupier"


def to_status_proto(err: DomainError) -> status_pb2.Status:
    """A google.rpc.Status with one ErrorInfo (reason, domain `croupier`, metadata) and, for
    INVALID_ARGUMENT, a BadRequest field violation naming the field."""
    details: list[any_pb2.Any] = []
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if err.code == ErrorCode.INVALID_ARGUMENT and "field" in err.metadata:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=err.metadata["field"], description=err.message, reason=err.reason
                )
            ]
        )
        packed_bad = any_pb2.Any()
        packed_bad.Pack(bad)
        details.append(packed_bad)
    return status_pb2.Status(code=int(err.code), message=err.message, details=details)


def encode_error(err: DomainError) -> bytes:
    """The serialized Status stored as a business error's exact response."""
    payload: bytes = to_status_proto(err).SerializeToString(deterministic=True)
    return payload


# The ErrorInfo reason of the call being served, for metrics (set just before an abort).
error_reason: ContextVar[str] = ContextVar("croupier_error_reason", default="")


async def abort_with_status(
    context: grpc.aio.ServicerContext[Any, Any], status_proto: status_pb2.Status
) -> None:
    """Abort the call with a google.rpc.Status (its ErrorInfo reason noted for metrics)."""
    error_reason.set(reason_of(status_proto))
    status = rpc_status.to_status(status_proto)
    await context.abort(status.code, status.details, status.trailing_metadata)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], payload: bytes) -> None:
    """Abort the call with a stored serialized google.rpc.Status."""
    await abort_with_status(context, status_pb2.Status.FromString(payload))


async def abort_error(context: grpc.aio.ServicerContext[Any, Any], err: DomainError) -> None:
    """Abort the call with `err` as a google.rpc.Status with one ErrorInfo."""
    await abort_with_status(context, to_status_proto(err))


def internal_status() -> status_pb2.Status:
    """A generic INTERNAL status that leaks no traceback."""
    return to_status_proto(
        DomainError(
            ErrorCode.INTERNAL,
            "INTERNAL",
            "internal error; safe to retry with the same idempotency key",
        )
    )


assert code_pb2.INVALID_ARGUMENT == ErrorCode.INVALID_ARGUMENT

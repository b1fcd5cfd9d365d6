"""Test helpers for calling the server and reading google.rpc.Status details."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
from croupier.common.v1 import money_pb2
from google.rpc import error_details_pb2

from server.error_info import error_infos, status_of


def eur(minor: int, currency: str = "EUR") -> money_pb2.Money:
    """Money in minor units."""
    return money_pb2.Money(minor_units=minor, currency=currency)


def key() -> str:
    """A fresh idempotency key."""
    return f"k-{uuid.uuid4().hex}"


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The single ErrorInfo in a failed call's google.rpc.Status."""
    status = status_of(exc)
    assert status is not None, "no google.rpc.Status details"
    infos = error_infos(status)
    assert len(infos) == 1, status
    assert infos[0].domain == "croupier"
    return infos[0]


async def fails(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    """Await `call`, assert it fails with `code` and ErrorInfo `reason`; return the error."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == code, (exc.code(), exc.details())
        assert error_info(exc).reason == reason, error_info(exc)
        return exc
    raise AssertionError(f"expected {code.name} {reason}")

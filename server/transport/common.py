"""The glue every servicer shares, so each RPC method reads: validate, call the domain, convert.

- `Ctx`: the asyncio servicer context type.
- `timestamp`: an aware datetime -> `google.protobuf.Timestamp`.
- `money_in` / `money_out`: proto `Money` <-> domain amounts (int64 minor units + ISO 4217).
- `request_key`: a write's `RequestKey` (tenant, idempotency key, method, the request's
  deterministic bytes): one argument order for every servicer.
- `serialize`: a response's deterministic bytes, as stored for replays.
- `write`: run a write once per idempotency key through the domain's `execute` and answer
  with its stored response (`reply`): the first run's response, or its refusal, byte for byte.
- `reply`: a write's `StoredReply` -> the response message, or the call aborted with the stored
  `google.rpc.Status` (the replay of a refusal is the same refusal, byte for byte).
- `parse_uuid`: a UUID field, INVALID_ARGUMENT `INVALID_ID` naming the field when it is not one.
- `abort_error` (from server.transport.status): abort with a DomainError's Status, for RPCs
  `@guarded` does not wrap (streams).

Writes follow one shape (docs/architecture.md, "Where to add an RPC"):

    return await write(
        context,
        domain.execute,
        request_key("Method", tenant, idem, request, scope=Scope.JACKPOT),
        lambda conn: domain.method(conn, cmd),
        ok,  # domain result -> pb.MethodResponse
        pb.MethodResponse,
    )
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import grpc
from croupier.common.v1 import money_pb2
from google.protobuf import message as _message
from google.protobuf import timestamp_pb2

from server.errors import invalid
from server.idempotency import RequestKey, Scope, StoredReply
from server.money import Money
from server.transport.status import abort_error, abort_with, encode_error

__all__ = [
    "Ctx",
    "abort_error",
    "money_in",
    "money_out",
    "parse_uuid",
    "reply",
    "request_key",
    "serialize",
    "timestamp",
    "write",
]

Ctx = grpc.aio.ServicerContext[Any, Any]

M = TypeVar("M", bound=_message.Message)
R = TypeVar("R")


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """An aware datetime as a protobuf Timestamp."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def money_in(m: money_pb2.Money) -> Money:
    """Proto Money -> domain Money (minor units; no validation)."""
    return Money(m.minor_units, m.currency)


def money_out(minor_units: int, currency: str) -> money_pb2.Money:
    """An amount in minor units of `currency` -> proto Money."""
    return money_pb2.Money(minor_units=minor_units, currency=currency)


def serialize(message: _message.Message) -> bytes:
    """The message's deterministic wire bytes (what a write stores for its replays)."""
    return message.SerializeToString(deterministic=True)


def request_key(
    method: str,
    tenant_id: str,
    idempotency_key: str,
    request: _message.Message,
    *,
    scope: Scope,
) -> RequestKey:
    """The idempotency identity of a write in the key space `scope` (each service has its
    own): same tenant, key, method and request bytes is a replay; same tenant and key with
    other bytes is IDEMPOTENCY_KEY_REUSED. A key the server reserves for its own writes is
    INVALID_ARGUMENT RESERVED_IDEMPOTENCY_KEY."""
    return RequestKey.of(tenant_id, idempotency_key, method, serialize(request), scope=scope)


async def reply(context: Ctx, stored: StoredReply, response_type: type[M]) -> M:
    """The stored response of a write, or abort the call with its stored Status (an error
    reply's payload is a serialized `google.rpc.Status`)."""
    if stored.code != 0:
        await abort_with(context, stored.payload)
    return response_type.FromString(stored.payload)


async def write(
    context: Ctx,
    execute: Callable[..., Awaitable[StoredReply]],
    key: RequestKey,
    operation: Callable[[Any], Awaitable[R]],
    ok: Callable[[R], M],
    response_type: type[M],
    **options: Any,
) -> M:
    """Run `operation` once for `key` through the domain's `execute` (`Wallet.execute`,
    `Jackpots.execute`, `Subscriptions.execute`; `options` are its keyword arguments) and
    answer with the stored response: `ok(result)` serialized on the first run, or the
    DomainError it raised as a google.rpc.Status (aborting the call), replayed byte for byte."""

    def encode_ok(result: R) -> bytes:
        return serialize(ok(result))

    stored = await execute(key, operation, encode_ok, encode_error, **options)
    return await reply(context, stored, response_type)


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """`value` as a UUID. Raises INVALID_ARGUMENT `INVALID_ID` naming `field`."""
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise invalid(field, "INVALID_ID", f"{field} must be a UUID") from exc

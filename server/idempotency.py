"""Idempotent execution of write requests (docs/architecture.md invariant 3).

`run_idempotent` claims the request's idempotency key in the same database transaction as the
effect, runs the operation, and stores the exact response bytes (a serialized response message,
or a serialized `google.rpc.Status` for a business error). A repeat with the same fingerprint
gets those bytes back with no new effect; a different fingerprint is `ALREADY_EXISTS`
`IDEMPOTENCY_KEY_REUSED`. Keys are kept as long as the ledger.

Key spaces: a key is unique per (tenant, scope). Each service has its own scope (`Scope`:
wallet, jackpot, webhook), so an integrator may use the same id for a Debit and a Contribute,
and a wallet rollback names (or tombstones) only wallet keys. Keys starting with one of
`SYSTEM_KEY_PREFIXES` belong to the server (e.g. the jackpot payout credit `jp-payout-<win_id>`,
scope `system`): a client write with such a key is refused (INVALID_ARGUMENT
`RESERVED_IDEMPOTENCY_KEY`) and RollbackTransaction never reverses or tombstones them.

Operations must raise `DomainError` only before their first write, so a refused request's
transaction holds nothing but its idempotency record; a refusal found after a write is raised
as `RefusedAfterWriteError`, which rolls the transaction back before the refusal is stored.
Operations run in pipeline mode: a statement whose result is not read costs no round trip, so
they read first (one round trip) and then queue their writes, using ids generated here rather
than by the database.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.store import idempotency_sql
from server.types import Conn

R = TypeVar("R")


class RetryTransactionError(Exception):
    """Raised inside a transaction to roll it back and run it again (a lost race)."""


# Unique violations meaning "this idempotency key was already used" (by a committed request).
_KEY_USED = (idempotency_sql.PRIMARY_KEY, "transactions_by_idempotency_key")

# A lost race (two requests inserting the same bet_id or rollback target) surfaces as a unique
# violation other than the idempotency key's; the retry then sees the winner's committed row.
_RETRYABLE = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    RetryTransactionError,
)


class Scope(enum.StrEnum):
    """An idempotency key space: each service's keys, and the server's own (system) keys."""

    WALLET = "wallet"
    JACKPOT = "jackpot"
    WEBHOOK = "webhook"
    AUDIT = "audit"
    SYSTEM = "system"


# Key prefixes owned by the server: the jackpot payout credit (`jp-payout-<win_id>`) and any
# later system write (`system-...`). Clients may not use them.
SYSTEM_KEY_PREFIXES = ("jp-payout-", "system-")


def is_system_key(key: str | None) -> bool:
    """True for a key of the system namespace (a server-owned write)."""
    return key is not None and key.startswith(SYSTEM_KEY_PREFIXES)


def check_client_key(key: str, field: str = "idempotency_key") -> str:
    """A client's idempotency key must not be in the system namespace.

    Raises INVALID_ARGUMENT `RESERVED_IDEMPOTENCY_KEY` naming `field`.
    """
    if is_system_key(key):
        raise invalid(
            field,
            "RESERVED_IDEMPOTENCY_KEY",
            f"{field} must not start with {' or '.join(SYSTEM_KEY_PREFIXES)}"
            " (reserved for server-owned writes)",
        )
    return key


class RefusedAfterWriteError(DomainError):
    """A refusal an operation can only decide after it wrote (e.g. a sum the database
    returned passes int64): the transaction is rolled back and the refusal alone is stored as
    the request's outcome, so nothing of the request is committed."""


@dataclass(frozen=True, slots=True)
class RequestKey:
    """What identifies a write request: tenant, key space, idempotency key, method and
    fingerprint."""

    tenant_id: str
    idempotency_key: str
    method: str
    fingerprint: bytes
    scope: Scope

    @classmethod
    def of(
        cls, tenant_id: str, idempotency_key: str, method: str, body: bytes, *, scope: Scope
    ) -> RequestKey:
        """Fingerprint = SHA-256(method NUL deterministic request bytes).

        A client request (any scope but SYSTEM) with a system key raises INVALID_ARGUMENT
        `RESERVED_IDEMPOTENCY_KEY` (field idempotency_key)."""
        if scope is not Scope.SYSTEM:
            check_client_key(idempotency_key)
        digest = hashlib.sha256(method.encode() + b"\0" + body).digest()
        return cls(tenant_id, idempotency_key, method, digest, scope)

    @property
    def slot(self) -> tuple[str, str, str]:
        """(tenant_id, scope, idempotency_key): what a key is unique by."""
        return (self.tenant_id, self.scope.value, self.idempotency_key)


@dataclass(frozen=True, slots=True)
class StoredReply:
    """The outcome of a write request: grpc code (0 = OK) and the exact payload bytes."""

    code: int
    payload: bytes
    replayed: bool


def rolled_back_error(key: str) -> DomainError:
    """A request whose key a rollback already named is refused (the rollback came first)."""
    return DomainError(
        ErrorCode.FAILED_PRECONDITION,
        "TRANSACTION_ROLLED_BACK",
        "a rollback for this idempotency key arrived first; the request is refused",
        {"idempotency_key": key},
    )


async def run_idempotent(
    pool: AsyncConnectionPool,
    key: RequestKey,
    operation: Callable[[Conn], Awaitable[R]],
    encode_ok: Callable[[R], bytes],
    encode_error: Callable[[DomainError], bytes],
) -> StoredReply:
    """Run `operation` once per (tenant, scope, idempotency key); return the stored reply.

    The operation runs in a pipelined transaction: its reads go in one round trip, its writes,
    the idempotency record and COMMIT in the next. If the key was already used, inserting the
    record fails with a unique violation (after a concurrent holder of the key commits), the
    whole transaction rolls back, and the stored outcome is returned instead: the original
    bytes, or a refusal for a key a rollback tombstoned.

    Raises DomainError `IDEMPOTENCY_KEY_REUSED` (not stored) for a different request under a
    used key. Deadlocks, serialization failures and lost insert races are retried (three
    attempts).
    """
    for attempt in range(3):
        try:
            return await _attempt(pool, key, operation, encode_ok, encode_error)
        except psycopg.errors.UniqueViolation as exc:
            if idempotency_sql.constraint_name(exc) in _KEY_USED:
                return await _stored(pool, key, encode_error)
            if attempt == 2:
                raise
        except _RETRYABLE:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _attempt(
    pool: AsyncConnectionPool,
    key: RequestKey,
    operation: Callable[[Conn], Awaitable[R]],
    encode_ok: Callable[[R], bytes],
    encode_error: Callable[[DomainError], bytes],
) -> StoredReply:
    try:
        async with pool.connection() as conn, conn.pipeline(), conn.transaction():
            try:
                result = await operation(conn)
                code, payload = 0, encode_ok(result)
            except RefusedAfterWriteError:
                raise  # roll the writes back first
            except DomainError as err:
                code, payload = int(err.code), encode_error(err)
            await idempotency_sql.record(
                conn,
                key.tenant_id,
                key.scope.value,
                key.idempotency_key,
                key.method,
                key.fingerprint,
                code,
                payload,
            )
    except RefusedAfterWriteError as err:
        code, payload = int(err.code), encode_error(err)
        async with pool.connection() as conn, conn.transaction():
            await idempotency_sql.record(
                conn,
                key.tenant_id,
                key.scope.value,
                key.idempotency_key,
                key.method,
                key.fingerprint,
                code,
                payload,
            )
    return StoredReply(code, payload, False)


async def _stored(
    pool: AsyncConnectionPool, key: RequestKey, encode_error: Callable[[DomainError], bytes]
) -> StoredReply:
    """The outcome stored under an already used key."""
    async with pool.connection() as conn:
        record = await idempotency_sql.fetch(
            conn, key.tenant_id, key.scope.value, key.idempotency_key
        )
    assert record is not None
    if record.state == "tombstone":
        err = rolled_back_error(key.idempotency_key)
        return StoredReply(int(err.code), encode_error(err), True)
    if record.fingerprint != key.fingerprint:
        raise DomainError(
            ErrorCode.ALREADY_EXISTS,
            "IDEMPOTENCY_KEY_REUSED",
            "this idempotency key was used for a different request",
            {"idempotency_key": key.idempotency_key, "original_method": record.method},
        )
    assert record.grpc_code is not None and record.response is not None
    return StoredReply(record.grpc_code, record.response, True)

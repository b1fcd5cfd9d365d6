"""Idempotent execution of write requests (engineering rule 2, PRODUCT.md invariant 3).

`run_idempotent` claims the request's idempotency key in the same database transaction as the
effect, runs the operation, and stores the exact response bytes (a serialized response message,
or a serialized `google.rpc.Status` for a business error). A repeat with the same fingerprint
gets those bytes back with no new effect; a different fingerprint is `ALREADY_EXISTS`
`IDEMPOTENCY_KEY_REUSED`. Keys are scoped by tenant and kept as long as the ledger.

Operations must raise `DomainError` only before their first write, so a refused request's
transaction holds nothing but its idempotency record; a refusal found after a write is raised
as `RefusedAfterWriteError`, which rolls the transaction back before the refusal is stored.
Operations run in pipeline mode: a statement whose result is not read costs no round trip, so
they read first (one round trip) and then queue their writes, using ids generated here rather
than by the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode
from server.store import idempotency_sql
from server.store.wallet_sql import Conn

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


class RefusedAfterWriteError(DomainError):
    """A refusal an operation can only decide after it wrote (e.g. a sum the database
    returned passes int64): the transaction is rolled back and the refusal alone is stored as
    the request's outcome, so nothing of the request is committed."""


@dataclass(frozen=True, slots=True)
class RequestKey:
    """What identifies a write request: tenant, idempotency key, method and fingerprint."""

    tenant_id: str
    idempotency_key: str
    method: str
    fingerprint: bytes

    @classmethod
    def of(cls, tenant_id: str, idempotency_key: str, method: str, body: bytes) -> RequestKey:
        """Fingerprint = SHA-256(method NUL deterministic request bytes)."""
        digest = hashlib.sha256(method.encode() + b"\0" + body).digest()
        return cls(tenant_id, idempotency_key, method, digest)


@dataclass(frozen=True, slots=True)
class StoredReply:
    """The outcome of a write request: grpc code (0 = OK) and the exact payload bytes."""

    code: int
    payload: bytes
    replayed: bool


def rolled_back_error(key: str) -> DomainError:
    """Seed 001: a request whose key a rollback already named is refused."""
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
    """Run `operation` once per (tenant, idempotency key) and return the stored reply.

    The operation runs in a pipelined transaction: its reads go in one round trip, its writes,
    the idempotency record and COMMIT in the next. If the key was already used, inserting the
    record fails with a unique violation (after a concurrent holder of the key commits), the
    whole transaction rolls back, and the stored outcome is returned instead: the original
    bytes, or a refusal for a key a rollback tombstoned (seed 001).

    Raises DomainError `IDEMPOTENCY_KEY_REUSED` (not stored) for a different request under a
    used key. Deadlocks, serialization failures and lost insert races are retried (three
    attempts).
    """
    for attempt in range(3):
        try:
            return await _attempt(pool, key, operation, encode_ok, encode_error)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name in _KEY_USED:
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
                conn, key.tenant_id, key.idempotency_key, key.method, key.fingerprint, code, payload
            )
    except RefusedAfterWriteError as err:
        code, payload = int(err.code), encode_error(err)
        async with pool.connection() as conn, conn.transaction():
            await idempotency_sql.record(
                conn, key.tenant_id, key.idempotency_key, key.method, key.fingerprint, code, payload
            )
    return StoredReply(code, payload, False)


async def _stored(
    pool: AsyncConnectionPool, key: RequestKey, encode_error: Callable[[DomainError], bytes]
) -> StoredReply:
    """The outcome stored under an already used key."""
    async with pool.connection() as conn:
        record = await idempotency_sql.fetch(conn, key.tenant_id, key.idempotency_key)
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

"""Types shared by every layer: the database connection every store and domain function takes,
and the errors that mean the database is unavailable.

A function that takes a `Conn` runs inside the caller's transaction (docs/architecture.md,
"Layers").
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool
from psycopg import AsyncConnection

Conn = AsyncConnection[Any]

# Errors that mean "the database cannot take this now", not "this request is wrong": the
# primary died or is restarting (connection lost, AdminShutdown, CannotConnectNow), a failover
# is under way (a session that turned read-only), no connection came free in time. A caller
# may retry with the same idempotency key; the transport answers UNAVAILABLE.
DATABASE_OUTAGE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg_pool.PoolTimeout,
)


def is_node_commit_failure(exc: BaseException) -> bool:
    """True for a Citus coordinator's report that a worker node died while the transaction
    committed ("could not commit transaction for shard ... on at least one active node").
    Citus raises it as SQLSTATE XX000 (internal_error), so the class alone cannot tell it from
    a bug; its outcome is unknown until the node is back, so it is an outage: the caller
    retries with the same idempotency key, which applies the request exactly once."""
    return isinstance(exc, psycopg.errors.InternalError_) and (
        "could not commit transaction for shard" in str(exc)
        or "on at least one active node" in str(exc)
    )

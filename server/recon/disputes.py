"""Disputes: each difference a reconciliation finds, moved through auto-failed -> in review ->
escalated -> resolved by people, each move recorded (who, why) in an append-only history.

A resolution may correct a balance; it does so only through the wallet's ordinary idempotent
Credit or Debit (key `dispute:<dispute_id>`, so one adjustment per dispute whatever the
retries), never by editing ledger rows. Moves are idempotent like every write
(server.idempotency).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode
from server.idempotency import RequestKey, StoredReply, run_idempotent
from server.money import Money
from server.store import recon_sql
from server.types import Conn

STATES = ("auto_failed", "in_review", "escalated", "resolved")
TRANSITIONS = {
    "auto_failed": {"in_review", "escalated", "resolved"},
    "in_review": {"escalated", "resolved"},
    "escalated": {"in_review", "resolved"},
    "resolved": set(),
}


@dataclass(frozen=True)
class Adjust:
    """A balance correction: positive credits the player, negative debits (minor units)."""

    player_id: str
    amount: Money


@dataclass(frozen=True)
class MoveDispute:
    """Move `dispute_id` to `to_state`, by `actor`, because `reason`."""

    tenant_id: str
    dispute_id: uuid.UUID
    idempotency_key: str
    to_state: str
    actor: str
    reason: str
    adjustment: Adjust | None = None


@dataclass(frozen=True)
class DisputeView:
    """A dispute with its history."""

    dispute: recon_sql.DisputeRow
    history: list[recon_sql.HistoryRow]


# the wallet call of an adjustment: (tenant, wallet idempotency key, adjustment) -> the wallet
# transaction id; raises the wallet's refusal as DomainError
Adjuster = Callable[[str, str, Adjust], Awaitable[uuid.UUID]]


def not_found(dispute_id: uuid.UUID) -> DomainError:
    """NOT_FOUND DISPUTE_NOT_FOUND."""
    return DomainError(
        ErrorCode.NOT_FOUND, "DISPUTE_NOT_FOUND", f"no dispute {dispute_id} for this tenant"
    )


def check_transition(current: str, target: str, adjusting: bool) -> None:
    """Raise FAILED_PRECONDITION `DISPUTE_RESOLVED` (a resolved dispute is final),
    `INVALID_TRANSITION`, or INVALID_ARGUMENT `ADJUSTMENT_NOT_ALLOWED` (only a resolution
    adjusts a balance)."""
    if current == "resolved":
        raise DomainError(
            ErrorCode.FAILED_PRECONDITION, "DISPUTE_RESOLVED", "the dispute is already resolved"
        )
    if target not in TRANSITIONS[current]:
        raise DomainError(
            ErrorCode.FAILED_PRECONDITION,
            "INVALID_TRANSITION",
            f"a dispute cannot move from {current} to {target}",
            {"from": current, "to": target},
        )
    if adjusting and target != "resolved":
        raise DomainError(
            ErrorCode.INVALID_ARGUMENT,
            "ADJUSTMENT_NOT_ALLOWED",
            "only a move to resolved may carry an adjustment",
            {"field": "adjustment"},
        )


def wallet_key(dispute_id: uuid.UUID) -> str:
    """The wallet idempotency key of a dispute's adjustment."""
    return f"dispute:{dispute_id}"


async def move(
    pool: AsyncConnectionPool,
    cmd: MoveDispute,
    key: RequestKey,
    adjust: Adjuster,
    encode_ok: Callable[[DisputeView], bytes],
    encode_error: Callable[[DomainError], bytes],
) -> StoredReply:
    """Move a dispute once per idempotency key; returns the stored reply (the dispute with its
    history, or a refusal).

    An adjustment is made first, on its own connection (so a pool of one connection is
    enough), after the same checks the move makes: the wallet's key `dispute:<id>` makes it
    happen at most once per dispute, whatever retries or concurrent moves; a refusal (the
    dispute's or the wallet's) is stored as this move's outcome. The move then locks the
    dispute, checks again and appends to its history.
    """
    refusal: DomainError | None = None
    adjustment: uuid.UUID | None = None
    if cmd.adjustment is not None:
        async with pool.connection() as conn:
            current = await recon_sql.get_dispute(conn, cmd.tenant_id, cmd.dispute_id)
        try:
            if current is None:
                raise not_found(cmd.dispute_id)
            check_transition(current.state, cmd.to_state, adjusting=True)
            adjustment = await adjust(cmd.tenant_id, wallet_key(cmd.dispute_id), cmd.adjustment)
        except DomainError as err:
            refusal = err

    async def operation(conn: Conn) -> DisputeView:
        if refusal is not None:
            raise refusal
        row = await recon_sql.lock_dispute(conn, cmd.tenant_id, cmd.dispute_id)
        if row is None:
            raise not_found(cmd.dispute_id)
        check_transition(row.state, cmd.to_state, cmd.adjustment is not None)
        await recon_sql.move_dispute(
            conn,
            cmd.tenant_id,
            cmd.dispute_id,
            row.state,
            cmd.to_state,
            cmd.actor,
            cmd.reason,
            adjustment,
            cmd.idempotency_key,
        )
        after = await recon_sql.get_dispute(conn, cmd.tenant_id, cmd.dispute_id)
        assert after is not None
        return DisputeView(after, await recon_sql.history(conn, cmd.tenant_id, cmd.dispute_id))

    return await run_idempotent(pool, key, operation, encode_ok, encode_error)


async def list_disputes(
    pool: AsyncConnectionPool,
    tenant: str,
    provider: str,
    state: str,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[recon_sql.DisputeRow]:
    """The tenant's disputes, newest first, after the (created_at, dispute_id) cursor `after`,
    at most `limit`; an empty `provider` or `state` does not filter."""
    async with pool.connection() as conn:
        return await recon_sql.list_disputes(conn, tenant, provider, state, after, limit)


async def get(pool: AsyncConnectionPool, tenant: str, dispute_id: uuid.UUID) -> DisputeView:
    """A dispute with its history. Raises NOT_FOUND `DISPUTE_NOT_FOUND`."""
    async with pool.connection() as conn:
        row = await recon_sql.get_dispute(conn, tenant, dispute_id)
        if row is None:
            raise not_found(dispute_id)
        return DisputeView(row, await recon_sql.history(conn, tenant, dispute_id))

"""AML review of jackpot payouts (docs/aml-review.md).

A win above its tenant's threshold for the win's currency is withheld by the payout saga: the
win goes to `review` and an `aml.alert.opened` event is written, in one transaction, instead of
the credit. An admin approves (the win goes back to `requested`, due at once, and the saga
credits it exactly once under its usual idempotency key) or rejects it (the win is `failed`
with reason `AML_REJECTED`, still owed; a later approval releases it). Each decision writes
`aml.alert.resolved`. Amounts are minor units of the win's currency.
"""

from __future__ import annotations

import uuid
from typing import Any

from server.errors import DomainError, ErrorCode
from server.events.outbox import append_event, money
from server.jackpot.model import WinRow
from server.money import Money
from server.store import aml_sql
from server.store.aml_sql import ReviewRow as ReviewRow
from server.types import Conn
from server.wallet.ledger import Wallet
from server.wallet.model import Caller, RoundRef, Transfer

REJECTED_REASON = "AML_REJECTED"


def _aggregate(review: ReviewRow) -> str:
    return f"review:{review.tenant_id}:{review.review_id}"


def payload(review: ReviewRow, **extra: Any) -> dict[str, Any]:
    """The body of an `aml.alert.*` event about `review` (a win's or a held Credit's)."""
    subject: dict[str, Any] = (
        {"subject": "jackpot_win", "win_id": str(review.win_id)}
        if review.win_id is not None
        else {
            "subject": "credit",
            "credit_idempotency_key": (review.credit_request or {}).get("idempotency_key", ""),
        }
    )
    return {
        "review_id": str(review.review_id),
        **subject,
        "player_id": review.player_id,
        "amount": money(review.amount, review.currency),
        "threshold": money(review.threshold, review.currency),
        **extra,
    }


async def withheld(conn: Conn, win: WinRow) -> bool:
    """Whether the saga must not credit `win` now: it has an open or rejected review, or it is
    above the tenant's threshold and has no review yet (one is opened here, with its event, in
    its own transaction). An approved review never withholds."""
    review = await aml_sql.review_of_win(conn, win.tenant_id, win.win_id)
    if review is not None:
        return review.state != "approved"
    threshold = (await aml_sql.thresholds(conn, win.tenant_id)).get(win.currency)
    if threshold is None or win.amount <= threshold:
        return False
    async with conn.transaction():
        opened = await aml_sql.open_review(
            conn,
            tenant_id=win.tenant_id,
            win_id=win.win_id,
            player_id=win.player_id,
            currency=win.currency,
            amount=win.amount,
            threshold=threshold,
        )
        if opened is not None:
            await append_event(
                conn,
                "aml.alert.opened",
                aggregate=_aggregate(opened),
                tenant_id=win.tenant_id,
                payload=payload(
                    opened,
                    pool_id=win.pool_id,
                    cycle=win.cycle,
                    reason="PAYOUT_ABOVE_THRESHOLD",
                ),
            )
    return True


async def decide(
    conn: Conn,
    wallet: Wallet,
    tenant_id: str,
    review_id: uuid.UUID,
    approve: bool,
    reason: str,
    key: str,
) -> ReviewRow:
    """Approve or reject a review (see the module doc). Approving a held Credit credits it in
    this transaction, under the idempotency key `system-aml-review-<review_id>` (once: a review is
    approved once); rejecting it leaves nothing credited.

    Errors: NOT_FOUND `REVIEW_NOT_FOUND`; FAILED_PRECONDITION `REVIEW_ALREADY_DECIDED` (an
    approved review, or a rejected one being rejected again).
    """
    review = await aml_sql.lock_review(conn, tenant_id, review_id)
    if review is None:
        raise DomainError(ErrorCode.NOT_FOUND, "REVIEW_NOT_FOUND", "no such review")
    if review.state == "approved" or (review.state == "rejected" and not approve):
        raise DomainError(
            ErrorCode.FAILED_PRECONDITION,
            "REVIEW_ALREADY_DECIDED",
            f"the review is already {review.state}",
            {"state": review.state},
        )
    state = "approved" if approve else "rejected"
    decided = await aml_sql.decide(conn, tenant_id, review_id, state, reason, key)
    if review.win_id is None:
        if approve:
            await _credit_held(conn, wallet, review)
    elif approve:
        await aml_sql.release_win(conn, review.win_id, "review_approved", reason)
    else:
        await aml_sql.reject_win(conn, review.win_id, REJECTED_REASON, reason)
    await append_event(
        conn,
        "aml.alert.resolved",
        aggregate=_aggregate(decided),
        tenant_id=tenant_id,
        payload=payload(decided, decision=state, reason=reason),
    )
    return decided


async def _credit_held(conn: Conn, wallet: Wallet, review: ReviewRow) -> None:
    request = review.credit_request or {}
    metadata = {**request.get("metadata", {}), "aml_review_id": str(review.review_id)}
    await wallet.credit(
        conn,
        Transfer(
            Caller(review.tenant_id, review.player_id, f"system-aml-review-{review.review_id}"),
            RoundRef(
                request.get("bet_id", ""),
                request.get("round_id", ""),
                request.get("game_id", ""),
                metadata,
            ),
            Money(review.amount, review.currency),
        ),
    )


HOLD_REASONS = {
    "sanctions": "SANCTIONS_HIT",
    "geo_block": "GEO_BLOCKED",
    "withdrawal_limit": "WITHDRAWAL_LIMIT_EXCEEDED",
    "aml": "AML_HOLD",
}


async def list_reviews(
    conn: Conn, tenant_id: str, state: str | None, limit: int
) -> list[ReviewRow]:
    """The tenant's reviews, newest first, at most `limit`; `state` None means every state."""
    return await aml_sql.list_reviews(conn, tenant_id, state, limit)


async def hold_refusal(conn: Conn, win: WinRow) -> str | None:
    """The failure reason of a payout to a player with a compliance hold raised (the first of
    sanctions, geo-block, withdrawal limit, AML), or None."""
    holds = await aml_sql.holds_of(conn, win.tenant_id, win.player_id)
    return HOLD_REASONS[holds[0]] if holds else None


async def set_hold(
    conn: Conn, tenant_id: str, player_id: str, hold: str, active: bool, reason: str, key: str
) -> list[str]:
    """Raise or lift a compliance hold on the player's payouts (audited); return the holds
    raised after. Wins withheld by it are re-queued by the payout retrier once no cause is
    left (`requeue_lifted`). Errors: NOT_FOUND `PLAYER_NOT_FOUND`."""
    if not await aml_sql.player_exists(conn, tenant_id, player_id):
        raise DomainError(ErrorCode.NOT_FOUND, "PLAYER_NOT_FOUND", "no such player")
    await aml_sql.set_hold(conn, tenant_id, player_id, hold, active, reason, key)
    return await aml_sql.holds_of(conn, tenant_id, player_id)


async def requeue_lifted(conn: Conn, limit: int = 100) -> int:
    """Re-queue failed wins whose cause (a compliance hold, a blocked or self-excluded status)
    was lifted, in one transaction; return how many."""
    async with conn.transaction():
        return len(await aml_sql.requeue_lifted(conn, limit))

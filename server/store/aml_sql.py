"""AML review SQL: thresholds per tenant and currency, reviews of withheld jackpot payouts.

Functions take an open connection inside the caller's transaction; no business rules here
(those are in server/jackpot/review.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row, scalar_row

from server.store.rows import fetch_scalar
from server.types import Conn


@dataclass(frozen=True, slots=True)
class ReviewRow:
    """One AML review (amounts in minor units of `currency`)."""

    tenant_id: str
    review_id: uuid.UUID
    win_id: uuid.UUID | None
    player_id: str
    currency: str
    amount: int
    threshold: int
    state: str
    decision_reason: str
    opened_at: datetime
    decided_at: datetime | None
    # a held Credit: idempotency_key, round_id, bet_id, game_id, metadata (win_id is None)
    credit_request: dict[str, Any] | None = None


_COLUMNS = (
    "tenant_id, review_id, win_id, player_id, currency, amount, threshold, state,"
    " decision_reason, opened_at, decided_at, credit_request"
)


async def thresholds(conn: Conn, tenant_id: str) -> dict[str, int]:
    """The tenant's thresholds: currency -> minor units."""
    cur = await conn.execute(
        "SELECT currency, threshold FROM aml_thresholds WHERE tenant_id = %s ORDER BY currency",
        (tenant_id,),
    )
    return {str(c): int(t) for c, t in await cur.fetchall()}


async def put_thresholds(conn: Conn, tenant_id: str, values: dict[str, int]) -> None:
    """Replace the tenant's thresholds."""
    await conn.execute("DELETE FROM aml_thresholds WHERE tenant_id = %s", (tenant_id,))
    for currency, threshold in sorted(values.items()):
        await conn.execute(
            "INSERT INTO aml_thresholds (tenant_id, currency, threshold) VALUES (%s, %s, %s)",
            (tenant_id, currency, threshold),
        )


async def review_of_win(conn: Conn, tenant_id: str, win_id: uuid.UUID) -> ReviewRow | None:
    """The review of a win, if any."""
    cur = conn.cursor(row_factory=class_row(ReviewRow))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM aml_reviews WHERE tenant_id = %s AND win_id = %s",
        (tenant_id, win_id),
    )
    row = await cur.fetchone()
    return row


async def open_review(
    conn: Conn,
    *,
    tenant_id: str,
    win_id: uuid.UUID,
    player_id: str,
    currency: str,
    amount: int,
    threshold: int,
) -> ReviewRow | None:
    """Open the review of a `requested` win and move the win to `review`; None when the win
    has a review already or is no longer `requested` (a concurrent saga run)."""
    # Two statements: the win (a jackpot table) and the review (a tenant table) may live on
    # different nodes of a distributed database, and one statement may not write both there.
    cur = await conn.execute(
        "UPDATE jp_wins SET payout_state = 'review', next_attempt_at = NULL"
        " WHERE win_id = %s AND payout_state = 'requested' RETURNING win_id",
        (win_id,),
    )
    if await cur.fetchone() is None:
        return None
    review = conn.cursor(row_factory=class_row(ReviewRow))
    await review.execute(
        "INSERT INTO aml_reviews (tenant_id, review_id, win_id, player_id, currency, amount,"
        "  threshold, state)"
        " VALUES (%(t)s, %(r)s, %(w)s, %(p)s, %(c)s, %(a)s, %(th)s, 'open')"
        " ON CONFLICT DO NOTHING"
        f" RETURNING {_COLUMNS}",
        {
            "t": tenant_id,
            "w": win_id,
            "r": uuid.uuid4(),
            "p": player_id,
            "c": currency,
            "a": amount,
            "th": threshold,
        },
    )
    return await review.fetchone()


async def open_credit_review(
    conn: Conn,
    *,
    tenant_id: str,
    player_id: str,
    currency: str,
    amount: int,
    threshold: int,
    credit_request: dict[str, Any],
) -> ReviewRow:
    """Open the review of a held Credit."""
    cur = conn.cursor(row_factory=class_row(ReviewRow))
    await cur.execute(
        "INSERT INTO aml_reviews (tenant_id, review_id, player_id, currency, amount, threshold,"
        " state, credit_request) VALUES (%s, %s, %s, %s, %s, %s, 'open', %s)"
        f" RETURNING {_COLUMNS}",
        (
            tenant_id,
            uuid.uuid4(),
            player_id,
            currency,
            amount,
            threshold,
            json.dumps(credit_request, sort_keys=True),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def threshold(conn: Conn, tenant_id: str, currency: str) -> int | None:
    """The tenant's threshold in `currency`, if any."""
    amount = await fetch_scalar(
        conn,
        "SELECT threshold FROM aml_thresholds WHERE tenant_id = %s AND currency = %s",
        (tenant_id, currency),
    )
    return None if amount is None else int(amount)


async def lock_review(conn: Conn, tenant_id: str, review_id: uuid.UUID) -> ReviewRow | None:
    """Lock (FOR UPDATE) one review."""
    cur = conn.cursor(row_factory=class_row(ReviewRow))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM aml_reviews WHERE tenant_id = %s AND review_id = %s FOR UPDATE",
        (tenant_id, review_id),
    )
    row = await cur.fetchone()
    return row


async def decide(
    conn: Conn, tenant_id: str, review_id: uuid.UUID, state: str, reason: str, key: str
) -> ReviewRow:
    """Record a decision on a locked review; return it."""
    cur = conn.cursor(row_factory=class_row(ReviewRow))
    await cur.execute(
        "UPDATE aml_reviews SET state = %s, decision_reason = %s, decision_key = %s,"
        " decided_at = now() WHERE tenant_id = %s AND review_id = %s"
        f" RETURNING {_COLUMNS}",
        (state, reason, key, tenant_id, review_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def release_win(conn: Conn, win_id: uuid.UUID, step: str, detail: str) -> None:
    """Put a reviewed (or rejected) win back to `requested`, due now, with a saga step."""
    await conn.execute(
        "UPDATE jp_wins SET payout_state = 'requested', failure_reason = '',"
        " next_attempt_at = statement_timestamp() WHERE win_id = %s AND payout_state <> 'credited'",
        (win_id,),
    )
    await conn.execute(
        "INSERT INTO jp_payout_steps (win_id, step, detail) VALUES (%s, %s, %s)",
        (win_id, step, detail),
    )


async def reject_win(conn: Conn, win_id: uuid.UUID, failure_reason: str, detail: str) -> None:
    """Mark a reviewed win `failed` (still owed) with a saga step."""
    await conn.execute(
        "UPDATE jp_wins SET payout_state = 'failed', failure_reason = %s,"
        " next_attempt_at = NULL WHERE win_id = %s AND payout_state <> 'credited'",
        (failure_reason, win_id),
    )
    await conn.execute(
        "INSERT INTO jp_payout_steps (win_id, step, detail) VALUES (%s, 'review_rejected', %s)",
        (win_id, detail),
    )


async def list_reviews(
    conn: Conn, tenant_id: str, state: str | None, limit: int
) -> list[ReviewRow]:
    """The tenant's reviews, newest first."""
    cur = conn.cursor(row_factory=class_row(ReviewRow))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM aml_reviews WHERE tenant_id = %s"
        " AND (%s::text IS NULL OR state = %s) ORDER BY opened_at DESC, review_id LIMIT %s",
        (tenant_id, state, state, limit),
    )
    return await cur.fetchall()


# -- compliance holds ---------------------------------------------------------------------------

# Failure reasons of a win that the retrier re-queues once the player has no hold left and is
# active.
LIFTABLE_REASONS = (
    "PLAYER_BLOCKED",
    "PLAYER_SELF_EXCLUDED",
    "SANCTIONS_HIT",
    "GEO_BLOCKED",
    "WITHDRAWAL_LIMIT_EXCEEDED",
    "AML_HOLD",
)


async def player_exists(conn: Conn, tenant_id: str, player_id: str) -> bool:
    """Whether the tenant knows the player."""
    cur = await conn.execute(
        "SELECT 1 FROM players WHERE tenant_id = %s AND player_id = %s", (tenant_id, player_id)
    )
    return await cur.fetchone() is not None


async def holds_of(conn: Conn, tenant_id: str, player_id: str) -> list[str]:
    """The holds raised on the player, in a fixed order."""
    cur = conn.cursor(row_factory=scalar_row)
    await cur.execute(
        "SELECT hold FROM compliance_holds WHERE tenant_id = %s AND player_id = %s"
        " ORDER BY array_position(ARRAY['sanctions', 'geo_block', 'withdrawal_limit', 'aml'],"
        "                         hold)",
        (tenant_id, player_id),
    )
    return [str(hold) for hold in await cur.fetchall()]


async def set_hold(
    conn: Conn, tenant_id: str, player_id: str, hold: str, active: bool, reason: str, key: str
) -> None:
    """Raise or lift one hold and append its audit row (no result read)."""
    if active:
        await conn.execute(
            "INSERT INTO compliance_holds (tenant_id, player_id, hold, reason)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, player_id, hold)"
            " DO UPDATE SET reason = EXCLUDED.reason",
            (tenant_id, player_id, hold, reason),
        )
    else:
        await conn.execute(
            "DELETE FROM compliance_holds WHERE tenant_id = %s AND player_id = %s AND hold = %s",
            (tenant_id, player_id, hold),
        )
    await conn.execute(
        "INSERT INTO compliance_hold_changes (tenant_id, change_id, player_id, hold, active,"
        " idempotency_key, reason) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (tenant_id, uuid.uuid4(), player_id, hold, active, key, reason),
    )


async def requeue_lifted(conn: Conn, limit: int) -> list[uuid.UUID]:
    """Put back to `requested` (due now) up to `limit` failed wins whose failure reason is one
    of LIFTABLE_REASONS and whose player now has no hold and is active (or unknown)."""
    # The failed wins (jackpot tables) first, then each player's holds and status within the
    # tenant: on a distributed database those live on the tenant's node, not beside the wins.
    cur = await conn.execute(
        "SELECT win_id, tenant_id, player_id FROM jp_wins"
        " WHERE payout_state = 'failed' AND failure_reason = ANY(%s)"
        " ORDER BY win_id LIMIT %s FOR UPDATE SKIP LOCKED",
        (list(LIFTABLE_REASONS), limit),
    )
    ids: list[uuid.UUID] = []
    for win_id, tenant_id, player_id in await cur.fetchall():
        free = await fetch_scalar(
            conn,
            "SELECT NOT EXISTS (SELECT 1 FROM compliance_holds h"
            "                    WHERE h.tenant_id = %(t)s AND h.player_id = %(p)s)"
            "   AND coalesce((SELECT status FROM players WHERE tenant_id = %(t)s"
            "                 AND player_id = %(p)s), 'active') = 'active'",
            {"t": tenant_id, "p": player_id},
        )
        if not free:
            continue
        await conn.execute(
            "UPDATE jp_wins SET payout_state = 'requested', failure_reason = '',"
            " next_attempt_at = statement_timestamp() WHERE win_id = %s",
            (win_id,),
        )
        ids.append(win_id)
    for win_id in ids:
        await conn.execute(
            "INSERT INTO jp_payout_steps (win_id, step, detail)"
            " VALUES (%s, 'requested', 'cause lifted')",
            (win_id,),
        )
    return ids

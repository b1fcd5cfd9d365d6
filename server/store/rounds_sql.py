"""SQL for multi-step rounds (docs/rounds.md): the round row, the player's three buckets, the
tenant's round settings, the round's steps and the sweeper's pick of overdue rounds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.store.rows import fetch_all, fetch_one, fetch_scalar
from server.types import Conn


@dataclass(frozen=True)
class Account:
    """A player account with its three stored buckets (minor units) and the player status."""

    account_id: int
    available: int
    held: int
    pending: int
    status: str


@dataclass(frozen=True)
class RoundRow:
    """A round (sums in minor units of `currency`)."""

    round_id: str
    player_id: str
    currency: str
    game_id: str
    state: str
    bets: int
    wins: int
    pending: int
    steps: int
    finalised_by: str
    opened_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class StepRow:
    """A step: its transaction, bet and win (minor units), whether it released the round."""

    transaction_id: uuid.UUID
    bet: int
    win: int
    final: bool
    created_at: datetime


_ROUND = (
    "SELECT round_id, player_id, currency, game_id, state, bets, wins, pending, steps,"
    " finalised_by, opened_at, closed_at FROM rounds"
)


async def lock_account(conn: Conn, tenant: str, player: str, currency: str) -> Account | None:
    """The player's account in `currency`, locked, or None."""
    return await fetch_one(
        conn,
        Account,
        "SELECT a.account_id, a.available, a.held, a.pending, p.status"
        "  FROM accounts a JOIN players p ON p.tenant_id = a.tenant_id AND p.player_id = a.owner"
        " WHERE a.tenant_id = %s AND a.kind = 'player' AND a.owner = %s AND a.currency = %s"
        "   FOR UPDATE OF a",
        (tenant, player, currency),
    )


async def bets_use_pending(conn: Conn, tenant: str) -> bool:
    """Whether the tenant lets a round's bets use its pending wins (default no)."""
    use = await fetch_scalar(
        conn, "SELECT bets_use_pending FROM round_settings WHERE tenant_id = %s", (tenant,)
    )
    return bool(use)


async def lock_or_open_round(
    conn: Conn, tenant: str, round_id: str, player: str, currency: str, game: str
) -> RoundRow:
    """The round, locked; opened (state open) on its first step."""
    await conn.execute(
        "INSERT INTO rounds (tenant_id, round_id, player_id, currency, game_id, state)"
        " VALUES (%s, %s, %s, %s, %s, 'open') ON CONFLICT DO NOTHING",
        (tenant, round_id, player, currency, game),
    )
    row = await fetch_one(
        conn,
        RoundRow,
        _ROUND + " WHERE tenant_id = %s AND round_id = %s FOR UPDATE",
        (tenant, round_id),
    )
    assert row is not None
    return row


async def get_round(conn: Conn, tenant: str, round_id: str) -> RoundRow | None:
    """The round, or None."""
    return await fetch_one(
        conn, RoundRow, _ROUND + " WHERE tenant_id = %s AND round_id = %s", (tenant, round_id)
    )


async def update_round(
    conn: Conn,
    tenant: str,
    round_id: str,
    *,
    bets: int,
    wins: int,
    pending: int,
    final: bool,
    finalised_by: str = "",
) -> None:
    """Add `bets` and `wins` to the round's totals, set its pending share, count the step,
    and close it when `final`."""
    close = ", state = 'final', finalised_by = %s, closed_at = now()" if final else ""
    await conn.execute(
        "UPDATE rounds SET bets = bets + %s, wins = wins + %s, pending = %s, steps = steps + 1"
        f"{close} WHERE tenant_id = %s AND round_id = %s",
        (bets, wins, pending, *((finalised_by,) if final else ()), tenant, round_id),
    )


async def steps(conn: Conn, tenant: str, round_id: str) -> list[StepRow]:
    """The round's steps in ledger order: bet = the transaction's amount, win = what the house
    paid (its negative house postings), final = it released pending money."""
    return await fetch_all(
        conn,
        _step,
        "SELECT t.transaction_id, t.amount AS bet,"
        "       coalesce((SELECT -sum(p.amount) FROM postings p JOIN accounts a"
        "                   ON a.tenant_id = p.tenant_id AND a.account_id = p.account_id"
        "                WHERE p.tenant_id = t.tenant_id AND p.transaction_id = t.transaction_id"
        "                  AND a.kind <> 'player' AND p.amount < 0), 0) AS win,"
        "       (t.metadata->>'round.final') = 'true' AS final, t.created_at"
        "  FROM transactions t WHERE t.tenant_id = %s AND t.round_id = %s AND t.kind = 'round'"
        " ORDER BY t.seq",
        (tenant, round_id),
    )


def _step(
    *, transaction_id: uuid.UUID, bet: int, win: Any, final: bool | None, created_at: datetime
) -> StepRow:
    # `win` is a numeric sum; `final` is NULL when the step's metadata does not say.
    return StepRow(transaction_id, int(bet), int(win), bool(final), created_at)


async def overdue_rounds(conn: Conn, limit: int) -> list[tuple[str, str]]:
    """(tenant, round id) of open rounds older than their tenant's timeout (default 1 day)."""
    cur = await conn.execute(
        "SELECT r.tenant_id, r.round_id FROM rounds r"
        "  LEFT JOIN round_settings s ON s.tenant_id = r.tenant_id"
        " WHERE r.state = 'open'"
        "   AND r.opened_at < now() - make_interval(secs => coalesce(s.open_timeout_seconds,"
        "                                                             86400))"
        " ORDER BY r.opened_at LIMIT %s",
        (limit,),
    )
    return [(str(t), str(r)) for t, r in await cur.fetchall()]

"""SQL for round export: a tenant's rounds in a time range through a server-side cursor, and
the sportsbook edge's raw payloads of a page of transactions (docs/reconciliation.md)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import kwargs_row

from server.store.recon_sql import EVENT_ID, PROVIDER
from server.store.rows import fetch_all
from server.types import Conn

_ROUND_KEY = (
    "CASE WHEN t.round_id <> '' THEN t.round_id WHEN t.bet_id <> '' THEN t.bet_id"
    f" ELSE coalesce({EVENT_ID}, t.transaction_id::text) END"
)
_WIN = (
    "coalesce((SELECT -sum(p.amount) FROM postings p JOIN accounts a"
    " ON a.tenant_id = p.tenant_id AND a.account_id = p.account_id"
    " WHERE p.tenant_id = t.tenant_id AND p.transaction_id = t.transaction_id"
    " AND a.kind <> 'player' AND p.amount < 0), 0)"
)


@dataclass(frozen=True, slots=True)
class RoundRow:
    """One round: sums in minor units of `currency`; transaction ids in ledger order."""

    round_id: str
    player_id: str
    game_id: str
    provider: str
    currency: str
    bets: int
    wins: int
    refunds: int
    started_at: datetime
    ended_at: datetime
    transactions: int
    transaction_ids: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class PayloadRow:
    """A raw callback body the edge stored for a wallet transaction."""

    transaction_id: uuid.UUID
    received_at: datetime
    endpoint: str
    body: bytes


async def rounds(
    conn: Conn,
    tenant: str,
    start: datetime,
    end: datetime,
    player: str,
    game: str,
    provider: str,
    page: int,
) -> AsyncIterator[list[RoundRow]]:
    """Pages of at most `page` rounds with a transaction in [start, end), ordered by their
    first transaction, read through a named (server-side) cursor: memory stays one page
    whatever the range. Must run inside a transaction."""
    where = ["t.tenant_id = %(t)s", "t.created_at >= %(s)s", "t.created_at < %(e)s"]
    if player:
        where.append("t.player_id = %(player)s")
    if game:
        where.append("t.game_id = %(game)s")
    if provider:
        where.append(f"{PROVIDER} = %(provider)s")
    query = (
        f"SELECT {_ROUND_KEY} AS round_key, t.player_id, max(t.game_id) AS game_id,"
        f"       coalesce(max({PROVIDER}), '') AS provider, t.currency,"
        "       coalesce(sum(t.amount) FILTER (WHERE t.kind IN ('authorize', 'debit', 'round')),"
        "                0)::text AS bets,"
        f"      coalesce(sum(CASE WHEN t.kind IN ('settle', 'round') THEN {_WIN}"
        "                    WHEN t.kind = 'credit' THEN t.amount"
        "                    END), 0)::text AS wins,"
        "       coalesce(sum(abs(t.amount)) FILTER (WHERE t.kind IN ('cancel', 'rollback',"
        "                'expire')), 0)::text AS refunds,"
        "       min(t.created_at) AS started_at, max(t.created_at) AS ended_at,"
        "       count(*) AS transactions,"
        "       array_agg(t.transaction_id ORDER BY t.seq) AS transaction_ids"
        "  FROM transactions t WHERE " + " AND ".join(where) + " GROUP BY 1, 2, 5"
        " ORDER BY min(t.created_at), 2, 1"
    )
    params = {
        "t": tenant,
        "s": start,
        "e": end,
        "player": player,
        "game": game,
        "provider": provider,
    }
    async with conn.cursor(
        name=f"export_{uuid.uuid4().hex}", row_factory=kwargs_row(_round)
    ) as cur:
        await cur.execute(query, params)
        while rows := await cur.fetchmany(page):
            yield rows


def _round(
    *,
    round_key: str,
    player_id: str,
    game_id: str | None,
    provider: str,
    currency: str,
    bets: str,
    wins: str,
    refunds: str,
    started_at: datetime,
    ended_at: datetime,
    transactions: int,
    transaction_ids: list[uuid.UUID],
) -> RoundRow:
    # The sums come as text (numeric sums of bigints, exact); game_id is NULL without a game.
    return RoundRow(
        str(round_key),
        str(player_id),
        str(game_id or ""),
        str(provider),
        str(currency),
        int(bets),
        int(wins),
        int(refunds),
        started_at,
        ended_at,
        int(transactions),
        list(transaction_ids),
    )


async def payloads(conn: Conn, tenant: str, transaction_ids: list[uuid.UUID]) -> list[PayloadRow]:
    """The edge's stored callbacks of these wallet transactions, in arrival order."""
    return await fetch_all(
        conn,
        PayloadRow,
        "SELECT wallet_transaction_id AS transaction_id, received_at, endpoint, raw_body AS body"
        "  FROM sportsbook_callbacks"
        " WHERE tenant_id = %s AND wallet_transaction_id = ANY(%s) ORDER BY callback_id",
        (tenant, transaction_ids),
    )

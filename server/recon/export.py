"""Round export: a tenant's rounds in a time range, streamed page by page in constant memory
(a server-side cursor), with the raw provider payloads the sportsbook edge stored.

A round is the ledger transactions of one player and currency sharing a round id (else a bet
id, else the provider event id / idempotency key). Sums are minor units: bets (authorize,
debit), wins (a settle's win, credit), refunds (cancel, rollback, expiry). Rounds are those
with a transaction in [start, end); a round that spans the range's edge appears with its
transactions inside the range only.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from server.errors import invalid
from server.store import export_sql
from server.store.export_sql import PayloadRow as PayloadRow
from server.store.export_sql import RoundRow as RoundRow

PAGE = 500


@dataclass(frozen=True)
class ExportRounds:
    """What to export: [start, end) UTC, optional filters (empty: all)."""

    tenant_id: str
    start: datetime
    end: datetime
    player_id: str = ""
    game_id: str = ""
    provider: str = ""
    include_payloads: bool = False


def check_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """Both set and start < end; INVALID_ARGUMENT `MISSING_FIELD` / `INVALID_TIME_RANGE`."""
    if start is None:
        raise invalid("start_time", "MISSING_FIELD", "start_time is required")
    if end is None:
        raise invalid("end_time", "MISSING_FIELD", "end_time is required")
    if end <= start:
        raise invalid("end_time", "INVALID_TIME_RANGE", "end_time must be after start_time")
    return start, end


async def export_rounds(
    pool: AsyncConnectionPool, cmd: ExportRounds
) -> AsyncIterator[tuple[list[RoundRow], dict[uuid.UUID, list[PayloadRow]]]]:
    """Pages of at most PAGE rounds with their payloads by transaction id (empty unless
    asked), in one REPEATABLE READ snapshot."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        async for page in export_sql.rounds(
            conn,
            cmd.tenant_id,
            cmd.start,
            cmd.end,
            cmd.player_id,
            cmd.game_id,
            cmd.provider,
            PAGE,
        ):
            found: dict[uuid.UUID, list[PayloadRow]] = defaultdict(list)
            if cmd.include_payloads:
                ids = [i for r in page for i in r.transaction_ids]
                for p in await export_sql.payloads(conn, cmd.tenant_id, ids):
                    found[p.transaction_id].append(p)
            yield page, found

"""SQL for provider reconciliation: the uploaded rows in a temporary table, the provider's
ledger transactions, the differences, runs and disputes (docs/reconciliation.md).

A ledger transaction's provider and event id are the expressions `PROVIDER` and `EVENT_ID`
(indexed by migration 0700); its event type is `bet` (authorize, debit, a round step with a
bet), `win` (settle, credit, a round step without bet) or `refund` (cancel, rollback, expire);
its event amount is the win (settle, round step without bet) or the transaction's amount;
its house net is the sum of its postings on house accounts.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncCopy

from server.store.rows import fetch_one
from server.types import Conn

PROVIDER = "coalesce(t.metadata->>'provider', t.metadata->>'sportsbook.integration')"
EVENT_ID = (
    "coalesce(t.metadata->>'provider.event_id', t.metadata->>'sportsbook.transaction_id',"
    " t.idempotency_key)"
)
_LEDGER_COLUMNS = f"""
    t.transaction_id, t.seq, t.player_id, t.currency, t.created_at, {EVENT_ID} AS event_id,
    CASE WHEN t.kind IN ('authorize', 'debit') OR (t.kind = 'round' AND t.amount > 0) THEN 'bet'
         WHEN t.kind IN ('settle', 'credit', 'round') THEN 'win' ELSE 'refund' END AS type,
    CASE WHEN t.kind = 'settle' OR (t.kind = 'round' AND t.amount = 0)
         THEN coalesce((SELECT -sum(p.amount) FROM postings p
                          JOIN accounts a
                            ON a.tenant_id = p.tenant_id AND a.account_id = p.account_id
                         WHERE p.tenant_id = t.tenant_id AND p.transaction_id = t.transaction_id
                           AND a.kind <> 'player' AND p.amount < 0), 0)
         ELSE abs(t.amount) END::bigint AS minor,
    coalesce((SELECT sum(p.amount) FROM postings p
                JOIN accounts a ON a.tenant_id = p.tenant_id AND a.account_id = p.account_id
               WHERE p.tenant_id = t.tenant_id AND p.transaction_id = t.transaction_id
                 AND a.kind <> 'player'), 0)::bigint
      AS house_net"""


async def create_input(conn: Conn) -> None:
    """The session's temporary tables for one run (dropped at COMMIT)."""
    await conn.execute(
        "CREATE TEMP TABLE recon_input (line bigint NOT NULL, event_id text NOT NULL,"
        " type text, minor bigint, currency text, occurred_at timestamptz, player_id text,"
        " bad boolean NOT NULL) ON COMMIT DROP"
    )


@asynccontextmanager
async def input_copier(conn: Conn) -> AsyncIterator[AsyncCopy]:
    """A COPY into recon_input: write_row((line, event_id, type, minor, currency,
    occurred_at, player_id, bad))."""
    async with conn.cursor().copy(
        "COPY recon_input (line, event_id, type, minor, currency, occurred_at, player_id, bad)"
        " FROM STDIN"
    ) as copy:
        yield copy


async def prepare_ledger(
    conn: Conn, tenant: str, provider: str, start: datetime, end: datetime
) -> None:
    """Collect the provider's ledger transactions: those named by an uploaded event id (any
    time) and those created in [start, end); one per event id (the first by sequence)."""
    await conn.execute("CREATE INDEX ON recon_input (event_id)")
    await conn.execute("ANALYZE recon_input")
    await conn.execute(
        f"CREATE TEMP TABLE recon_ledger ON COMMIT DROP AS"
        f" SELECT DISTINCT ON (event_id) * FROM ("
        f"  SELECT {_LEDGER_COLUMNS} FROM transactions t"
        f"   WHERE t.tenant_id = %(tenant)s AND {PROVIDER} = %(provider)s"
        f"     AND {EVENT_ID} IN (SELECT event_id FROM recon_input)"
        f"  UNION ALL"
        f"  SELECT {_LEDGER_COLUMNS} FROM transactions t"
        f"   WHERE t.tenant_id = %(tenant)s AND {PROVIDER} = %(provider)s"
        f"     AND t.created_at >= %(start)s AND t.created_at < %(end)s"
        f" ) l WHERE event_id IS NOT NULL ORDER BY event_id, seq",
        {"tenant": tenant, "provider": provider, "start": start, "end": end},
    )
    await conn.execute("CREATE INDEX ON recon_ledger (event_id)")
    await conn.execute("ANALYZE recon_ledger")


async def compute_differences(conn: Conn, start: datetime, end: datetime) -> int:
    """Fill recon_diff with one row per difference; returns the number of matched rows."""
    await conn.execute(
        "CREATE TEMP TABLE recon_diff ON COMMIT DROP AS"
        " SELECT CASE WHEN l.event_id IS NULL THEN 'missing_in_ledger'"
        "             WHEN l.currency <> i.currency THEN 'currency_mismatch'"
        "             WHEN l.minor <> i.minor THEN 'amount_mismatch'"
        "             WHEN l.type <> i.type THEN 'type_mismatch' END AS kind,"
        "        i.event_id, i.line, i.minor AS p_minor, i.currency AS p_currency,"
        "        i.type AS p_type, l.minor AS l_minor, l.currency AS l_currency,"
        "        l.type AS l_type, l.transaction_id,"
        "        coalesce(nullif(i.player_id, ''), l.player_id, '') AS player_id"
        "   FROM recon_input i LEFT JOIN recon_ledger l ON l.event_id = i.event_id"
        "  WHERE NOT i.bad"
        " UNION ALL"
        " SELECT 'missing_at_provider', l.event_id, 0, NULL, NULL, NULL, l.minor, l.currency,"
        "        l.type, l.transaction_id, l.player_id"
        "   FROM recon_ledger l"
        "  WHERE l.created_at >= %s AND l.created_at < %s"
        "    AND NOT EXISTS (SELECT 1 FROM recon_input i WHERE i.event_id = l.event_id)",
        (start, end),
    )
    cur = await conn.execute("DELETE FROM recon_diff WHERE kind IS NULL")
    return cur.rowcount


async def difference_counts(conn: Conn) -> dict[str, int]:
    """{kind: count} of recon_diff."""
    cur = await conn.execute("SELECT kind, count(*) FROM recon_diff GROUP BY kind")
    return {str(k): int(n) for k, n in await cur.fetchall()}


async def open_disputes(conn: Conn, tenant: str, provider: str, run_id: uuid.UUID) -> None:
    """One dispute per difference: a new one (state auto_failed, with its opening history
    entry) or the unresolved one already open for the same event and kind (now on this run)."""
    await conn.execute(
        "WITH d AS ("
        "  INSERT INTO disputes (tenant_id, dispute_id, provider, event_id, kind, state, run_id,"
        "    player_id, provider_minor, provider_currency, ledger_minor, ledger_currency,"
        "    transaction_id)"
        "  SELECT %(tenant)s, gen_random_uuid(), %(provider)s, event_id, kind, 'auto_failed',"
        "         %(run)s, player_id, p_minor, p_currency, l_minor, l_currency, transaction_id"
        "    FROM recon_diff"
        "  ON CONFLICT (tenant_id, provider, event_id, kind) WHERE state <> 'resolved'"
        "  DO UPDATE SET run_id = EXCLUDED.run_id, updated_at = EXCLUDED.updated_at"
        "  RETURNING dispute_id, kind, (xmax = 0) AS inserted)"
        " INSERT INTO dispute_history (tenant_id, dispute_id, from_state, to_state, actor, reason)"
        " SELECT %(tenant)s, dispute_id, NULL, 'auto_failed', 'reconciliation',"
        "        'run ' || %(run)s::text || ': ' || kind"
        "   FROM d WHERE inserted",
        {"tenant": tenant, "provider": provider, "run": run_id},
    )


@dataclass(frozen=True)
class DiffRow:
    """One difference with its dispute id (amounts in minor units; None when absent)."""

    kind: str
    event_id: str
    line: int
    p_minor: int | None
    p_currency: str | None
    p_type: str | None
    l_minor: int | None
    l_currency: str | None
    l_type: str | None
    transaction_id: uuid.UUID | None
    dispute_id: uuid.UUID | None


async def differences(conn: Conn, tenant: str, provider: str, limit: int) -> list[DiffRow]:
    """The differences in file order (missing at provider last, by event id)."""
    cur = await conn.execute(
        "SELECT r.kind, r.event_id, r.line, r.p_minor, r.p_currency, r.p_type, r.l_minor,"
        "       r.l_currency, r.l_type, r.transaction_id, d.dispute_id"
        "  FROM recon_diff r LEFT JOIN disputes d ON d.tenant_id = %s AND d.provider = %s"
        "   AND d.event_id = r.event_id AND d.kind = r.kind AND d.state <> 'resolved'"
        " ORDER BY r.line = 0, r.line, r.event_id LIMIT %s",
        (tenant, provider, limit),
    )
    return [DiffRow(*row) for row in await cur.fetchall()]


async def net_positions(
    conn: Conn, start: datetime, end: datetime
) -> list[tuple[str, str, int, int]]:
    """(UTC day, currency, provider net, ledger net) in minor units, house side."""
    cur = await conn.execute(
        "WITH p AS (SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,"
        "                  currency, sum(CASE type WHEN 'bet' THEN minor ELSE -minor END) AS net"
        "             FROM recon_input WHERE NOT bad GROUP BY 1, 2),"
        "     l AS (SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,"
        "                  currency, sum(house_net) AS net"
        "             FROM recon_ledger WHERE created_at >= %s AND created_at < %s"
        "            GROUP BY 1, 2)"
        " SELECT coalesce(p.day, l.day), coalesce(p.currency, l.currency),"
        "        coalesce(p.net, 0)::numeric::text, coalesce(l.net, 0)::numeric::text"
        "   FROM p FULL JOIN l ON l.day = p.day AND l.currency = p.currency ORDER BY 1, 2",
        (start, end),
    )
    return [(str(d), str(c), int(pn), int(ln)) for d, c, pn, ln in await cur.fetchall()]


async def find_run(conn: Conn, tenant: str, key: str) -> tuple[bytes, bytes] | None:
    """(fingerprint, response) of the run made with `key`, if any."""
    return await fetch_one(
        conn,
        _run,
        "SELECT fingerprint, response FROM recon_runs WHERE tenant_id = %s"
        " AND idempotency_key = %s",
        (tenant, key),
    )


def _run(*, fingerprint: bytes, response: bytes) -> tuple[bytes, bytes]:
    return bytes(fingerprint), bytes(response)


async def insert_run(
    conn: Conn,
    tenant: str,
    run_id: uuid.UUID,
    provider: str,
    key: str,
    fingerprint: bytes,
    mismatch_ppm: int,
    response: bytes,
) -> bool:
    """Store a run; False when another run took `key` first (nothing written)."""
    cur = await conn.execute(
        "INSERT INTO recon_runs (tenant_id, run_id, provider, idempotency_key, fingerprint,"
        " mismatch_ppm, response) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
        (tenant, run_id, provider, key, fingerprint, mismatch_ppm, response),
    )
    return cur.rowcount == 1


@dataclass(frozen=True)
class DisputeRow:
    """A dispute (amounts in minor units, None when that side has none)."""

    dispute_id: uuid.UUID
    tenant_id: str
    provider: str
    event_id: str
    kind: str
    state: str
    run_id: uuid.UUID
    player_id: str
    provider_minor: int | None
    provider_currency: str | None
    ledger_minor: int | None
    ledger_currency: str | None
    transaction_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True)
class HistoryRow:
    """One entry of a dispute's history."""

    from_state: str | None
    to_state: str
    actor: str
    reason: str
    adjustment_transaction_id: uuid.UUID | None
    created_at: datetime


_DISPUTE = (
    "SELECT dispute_id, tenant_id, provider, event_id, kind, state, run_id, player_id,"
    " provider_minor, provider_currency, ledger_minor, ledger_currency, transaction_id,"
    " created_at FROM disputes"
)


async def lock_dispute(conn: Conn, tenant: str, dispute_id: uuid.UUID) -> DisputeRow | None:
    """The dispute, locked for this transaction, or None."""
    cur = await conn.execute(
        _DISPUTE + " WHERE tenant_id = %s AND dispute_id = %s FOR UPDATE", (tenant, dispute_id)
    )
    row = await cur.fetchone()
    return None if row is None else DisputeRow(*row)


async def get_dispute(conn: Conn, tenant: str, dispute_id: uuid.UUID) -> DisputeRow | None:
    """The dispute, or None."""
    cur = await conn.execute(
        _DISPUTE + " WHERE tenant_id = %s AND dispute_id = %s", (tenant, dispute_id)
    )
    row = await cur.fetchone()
    return None if row is None else DisputeRow(*row)


async def move_dispute(
    conn: Conn,
    tenant: str,
    dispute_id: uuid.UUID,
    from_state: str,
    to_state: str,
    actor: str,
    reason: str,
    adjustment: uuid.UUID | None,
    idempotency_key: str,
) -> None:
    """Set the dispute's state and append the move to its history."""
    await conn.execute(
        "UPDATE disputes SET state = %s, updated_at = now()"
        " WHERE tenant_id = %s AND dispute_id = %s",
        (to_state, tenant, dispute_id),
    )
    await conn.execute(
        "INSERT INTO dispute_history (tenant_id, dispute_id, from_state, to_state, actor, reason,"
        " adjustment_transaction_id, idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (tenant, dispute_id, from_state, to_state, actor, reason, adjustment, idempotency_key),
    )


async def history(conn: Conn, tenant: str, dispute_id: uuid.UUID) -> list[HistoryRow]:
    """The dispute's history, oldest first."""
    cur = await conn.execute(
        "SELECT from_state, to_state, actor, reason, adjustment_transaction_id, created_at"
        "  FROM dispute_history WHERE tenant_id = %s AND dispute_id = %s ORDER BY seq",
        (tenant, dispute_id),
    )
    return [HistoryRow(*row) for row in await cur.fetchall()]


async def list_disputes(
    conn: Conn,
    tenant: str,
    provider: str,
    state: str,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[DisputeRow]:
    """Disputes newest first (created_at, dispute_id descending), after the keyset `after`."""
    where = ["tenant_id = %(t)s"]
    if provider:
        where.append("provider = %(p)s")
    if state:
        where.append("state = %(s)s")
    if after is not None:
        where.append("(created_at, dispute_id) < (%(at)s, %(id)s)")
    cur = await conn.execute(
        _DISPUTE
        + " WHERE "
        + " AND ".join(where)
        + " ORDER BY created_at DESC, dispute_id DESC LIMIT %(n)s",
        {
            "t": tenant,
            "p": provider,
            "s": state,
            "at": after[0] if after else None,
            "id": after[1] if after else None,
            "n": limit,
        },
    )
    return [DisputeRow(*row) for row in await cur.fetchall()]

"""Every tenant's pools and wins reconciled at once, for `croupier reconcile` (server.reconcile
report).

Each pool entry is one pool's Reconciliation as plain JSON-ready values (minor units) with
`balanced` true when every drift is zero. `reconcile_wins` lists the wins whose payout state
disagrees with the wallet ledger (a credited win is exactly one payout credit of its amount to
the winner; any other win has none).
"""

from __future__ import annotations

from dataclasses import asdict

from psycopg_pool import AsyncConnectionPool

from server.store import jackpot_sql


async def reconcile_pools(pool: AsyncConnectionPool) -> list[dict[str, object]]:
    """Reconcile every pool of every tenant: seed + carried + contributions - wins = amount."""
    async with pool.connection() as conn:
        rows = await jackpot_sql.reconcile(conn, "", "")
    return [
        {
            **asdict(r),
            "expected_minor_units": r.expected,
            "drift_minor_units": r.drift,
            "balanced": r.balanced,
        }
        for r in rows
    ]


async def reconcile_wins(pool: AsyncConnectionPool, limit: int = 100) -> list[dict[str, object]]:
    """Wins (every tenant) whose state disagrees with the ledger; empty when all agree.

    Each entry: win_id, tenant_id, player_id, payout_state, amount_minor_units, currency,
    credits (payout credits found), credited_minor_units (net of reversals) and the
    wallet_transaction_id the win names (see jackpot_sql.win_ledger_mismatches). At most
    `limit` entries."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return await jackpot_sql.win_ledger_mismatches(conn, limit)

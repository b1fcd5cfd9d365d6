"""Every tenant's pools reconciled at once, for `croupier reconcile` (server.reconcile report).

Each entry is one pool's Reconciliation as plain JSON-ready values (minor units) with
`balanced` true when every drift is zero (docs/architecture.md invariant 5).
"""

from __future__ import annotations

from dataclasses import asdict

from psycopg_pool import AsyncConnectionPool

from server.store import jackpot_sql


async def reconcile_pools(db: AsyncConnectionPool) -> list[dict[str, object]]:
    """Reconcile every pool of every tenant: seed + carried + contributions - wins = amount."""
    async with db.connection() as conn:
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

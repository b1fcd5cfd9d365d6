"""SQL of the retention purge: one bounded batch of expired rows per call, rows other
transactions hold are skipped (SKIP LOCKED), never waited for (docs/reconciliation.md)."""

from __future__ import annotations

from datetime import datetime

from server.types import Conn


async def purge_callbacks(conn: Conn, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` edge callbacks received before `cutoff`, except those of an event
    with an unresolved dispute (its evidence); returns how many."""
    cur = await conn.execute(
        "DELETE FROM sportsbook_callbacks WHERE callback_id IN ("
        "  SELECT c.callback_id FROM sportsbook_callbacks c"
        "   WHERE c.received_at < %s"
        "     AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.tenant_id = c.tenant_id"
        "                       AND d.provider = c.integration"
        "                       AND d.event_id = c.provider_transaction_id"
        "                       AND d.state <> 'resolved')"
        "   ORDER BY c.received_at LIMIT %s FOR UPDATE SKIP LOCKED)",
        (cutoff, limit),
    )
    return cur.rowcount


async def purge_runs(conn: Conn, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` reconciliation runs (stored reports) made before `cutoff`."""
    cur = await conn.execute(
        "DELETE FROM recon_runs WHERE (tenant_id, run_id) IN ("
        "  SELECT tenant_id, run_id FROM recon_runs WHERE created_at < %s"
        "   ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)",
        (cutoff, limit),
    )
    return cur.rowcount

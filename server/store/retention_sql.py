"""SQL of the retention purge: one bounded batch of expired rows per call, rows other
transactions hold are skipped (SKIP LOCKED), never waited for (docs/reconciliation.md).

Each delete is within one tenant (so on Citus it runs on the tenant's shard alone):
`expired_tenants` lists the tenants that have something to purge."""

from __future__ import annotations

from datetime import datetime

from server.store.rows import fetch_scalars
from server.types import Conn


async def expired_tenants(conn: Conn, cutoff: datetime) -> list[str]:
    """Tenants with edge callbacks or reconciliation runs older than `cutoff`."""
    tenants = await fetch_scalars(
        conn,
        "SELECT tenant_id FROM sportsbook_callbacks WHERE received_at < %s"
        " UNION SELECT tenant_id FROM recon_runs WHERE created_at < %s",
        (cutoff, cutoff),
    )
    return sorted(str(t) for t in tenants)


async def purge_callbacks(conn: Conn, tenant_id: str, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` of the tenant's edge callbacks received before `cutoff`, except
    those of an event with an unresolved dispute (its evidence); returns how many."""
    cur = await conn.execute(
        "DELETE FROM sportsbook_callbacks WHERE tenant_id = %s AND callback_id IN ("
        "  SELECT c.callback_id FROM sportsbook_callbacks c"
        "   WHERE c.tenant_id = %s AND c.received_at < %s"
        "     AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.tenant_id = c.tenant_id"
        "                       AND d.provider = c.integration"
        "                       AND d.event_id = c.provider_transaction_id"
        "                       AND d.state <> 'resolved')"
        "   ORDER BY c.received_at LIMIT %s FOR UPDATE SKIP LOCKED)",
        (tenant_id, tenant_id, cutoff, limit),
    )
    return cur.rowcount


async def purge_runs(conn: Conn, tenant_id: str, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` of the tenant's reconciliation runs made before `cutoff`."""
    cur = await conn.execute(
        "DELETE FROM recon_runs WHERE tenant_id = %s AND run_id IN ("
        "  SELECT run_id FROM recon_runs WHERE tenant_id = %s AND created_at < %s"
        "   ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)",
        (tenant_id, tenant_id, cutoff, limit),
    )
    return cur.rowcount

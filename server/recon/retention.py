"""Retention: raw provider payloads and reconciliation reports are kept at least 12 months,
then purged in small batches that never lock live traffic.

What is purged: the sportsbook edge's stored callbacks (raw bodies and headers) older than the
retention, except the evidence of an event with an unresolved dispute, and reconciliation runs
(stored reports) older than it. What is never purged: the ledger (transactions, postings,
holds, idempotency records: balances are their sums, reconciliation and idempotent replays
read them, invariant 3 keeps keys as long as the ledger), disputes and their history.

Each batch is one short transaction deleting at most `batch` rows picked with FOR UPDATE SKIP
LOCKED under a 1 s lock timeout, with a pause between batches, so a purge never waits on or
holds up a live request. Settings: CROUPIER_RETENTION_DAYS (default 400, at least 365),
CROUPIER_RETENTION_BATCH (default 1000), CROUPIER_RETENTION_SWEEP_SECONDS (default 3600).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from server.store import retention_sql

log = logging.getLogger("croupier.retention")
MIN_DAYS = 365


@dataclass(frozen=True)
class Retention:
    """Keep `days` days (>= 365); purge `batch` rows per transaction, `pause` s apart."""

    days: int = 400
    batch: int = 1000
    pause: float = 0.05

    def __post_init__(self) -> None:
        if self.days < MIN_DAYS:
            raise ValueError(f"retention must be at least {MIN_DAYS} days, got {self.days}")
        if self.batch < 1:
            raise ValueError("retention batch must be at least 1")

    @classmethod
    def from_env(cls) -> Retention:
        """From CROUPIER_RETENTION_DAYS and CROUPIER_RETENTION_BATCH."""
        return cls(
            int(os.environ.get("CROUPIER_RETENTION_DAYS", "400")),
            int(os.environ.get("CROUPIER_RETENTION_BATCH", "1000")),
        )


@dataclass
class Purged:
    """Rows removed by one purge pass."""

    callbacks: int = 0
    runs: int = 0


async def purge(
    pool: AsyncConnectionPool, policy: Retention, now: datetime | None = None
) -> Purged:
    """Remove what is older than the retention, tenant by tenant and batch by batch, until
    nothing is left."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=policy.days)
    done = Purged()
    async with pool.connection() as conn:
        tenants = await retention_sql.expired_tenants(conn, cutoff)
    for tenant_id in tenants:
        for name, step in (
            ("callbacks", retention_sql.purge_callbacks),
            ("runs", retention_sql.purge_runs),
        ):
            while True:
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '1s'")
                    n = await step(conn, tenant_id, cutoff, policy.batch)
                setattr(done, name, getattr(done, name) + n)
                if n < policy.batch:
                    break
                await asyncio.sleep(policy.pause)
    return done


async def purge_forever(pool: AsyncConnectionPool, policy: Retention, every: float) -> None:
    """Purge every `every` seconds; a failed pass is logged and retried on the next."""
    while True:
        try:
            done = await purge(pool, policy)
            if done.callbacks or done.runs:
                log.info("retention purge: %d callbacks, %d runs", done.callbacks, done.runs)
        except Exception:  # keep purging after a database hiccup
            log.exception("retention purge failed")
        await asyncio.sleep(every)

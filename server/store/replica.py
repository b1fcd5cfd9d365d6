"""Reads off the primary: stale-tolerant reads go to a standby while it is close enough.

`ReadRouter.connection()` hands out a connection of the standby's pool
(`CROUPIER_READ_DATABASE_URL`) while its replay lag is at most `max_lag` seconds
(`CROUPIER_READ_MAX_LAG_SECONDS`), else one of the primary's pool. Only reads that may be a
little stale use it: a player's transaction history, pools (GetPool, ListPools, WatchPools)
and the pool reconciliation report. Money decisions (balances checked before a debit, holds,
idempotency records, jackpot draws) always read the primary through the primary's pool.

How the lag is measured, with no trust in clocks across machines: every `probe_seconds` the
router notes the primary's WAL position (`pg_current_wal_lsn()`, on our clock), then asks the
standby how far it has replayed (`pg_last_wal_replay_lsn()`). The lag is how long ago the
primary was first seen beyond that point (0 when the standby has everything the primary had
at the last note). Between probes the lag is assumed to grow with time, so a standby that
stops answering or stops replaying (e.g. `pg_wal_replay_pause()`) is bypassed within
`max_lag` seconds at the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.store.rows import fetch_one, fetch_scalar
from server.types import DATABASE_OUTAGE

log = logging.getLogger(__name__)


class ReadSource(Protocol):
    """Where stale-tolerant reads take a connection: a pool, or a ReadRouter."""

    def connection(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """An async context manager giving a connection."""
        ...


class ReadRouter:
    """See the module doc. `replica=None`: every read goes to the primary."""

    def __init__(
        self,
        primary: AsyncConnectionPool,
        replica: AsyncConnectionPool | None,
        *,
        max_lag: float = 5.0,
        probe_seconds: float = 0.5,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag = max_lag
        self.probe_seconds = probe_seconds
        self.lag: float | None = None  # seconds, at `measured_at`; None: unknown
        self.measured_at = 0.0
        self.served = {"replica": 0, "primary": 0}
        # (monotonic, primary LSN) notes, oldest first; enough to measure lags past max_lag
        self._samples: deque[tuple[float, int]] = deque(
            maxlen=int((2 * max_lag + 10) / probe_seconds) + 2
        )

    def replica_usable(self) -> bool:
        """Whether the standby's lag, grown by the time since it was measured, is within
        `max_lag`."""
        if self.replica is None or self.lag is None:
            return False
        return self.lag + (time.monotonic() - self.measured_at) <= self.max_lag

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for a stale-tolerant read: the standby's when usable, else the
        primary's. A standby that fails to give a connection is bypassed until the next
        probe."""
        if self.replica is not None and self.replica_usable():
            stack = contextlib.AsyncExitStack()
            try:
                conn = await stack.enter_async_context(self.replica.connection())
            except DATABASE_OUTAGE:
                self.lag = None
            else:
                async with stack:
                    self.served["replica"] += 1
                    yield conn
                return
        self.served["primary"] += 1
        async with self.primary.connection() as conn:
            yield conn

    async def probe(self) -> float | None:
        """Measure the standby's lag now (see the module doc); None when it cannot be."""
        if self.replica is None:
            return None
        now = time.monotonic()
        try:
            async with self.primary.connection(timeout=2) as conn:
                written = await fetch_scalar(
                    conn, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"
                )
            assert written is not None
            self._samples.append((now, int(written)))
            async with self.replica.connection(timeout=2) as conn:
                standby = await fetch_one(
                    conn,
                    _standby,
                    "SELECT pg_is_in_recovery() AS in_recovery,"
                    " pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0') AS replayed",
                )
        except psycopg.Error:  # includes a standby or primary that is down
            log.debug("read replica probe failed", exc_info=True)
            self.lag = None
            return None
        assert standby is not None
        in_recovery, replayed = standby
        if not in_recovery or replayed is None:
            # not a standby (promoted, or pointed at the primary): never stale
            self._samples.clear()
            lag = 0.0
        else:
            while self._samples and self._samples[0][1] <= int(replayed):
                self._samples.popleft()  # the standby has replayed past this note
            lag = now - self._samples[0][0] if self._samples else 0.0
        self.lag, self.measured_at = lag, now
        return lag

    async def watch(self) -> None:
        """Probe every `probe_seconds` until cancelled."""
        while True:
            with contextlib.suppress(Exception):
                await self.probe()
            await asyncio.sleep(self.probe_seconds)


def _standby(*, in_recovery: bool, replayed: Any) -> tuple[bool, Any]:
    return bool(in_recovery), replayed

"""Waiting for the outbox backlog of a shared test database (see `drain_backlog`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def drain_backlog(pool: Any, most_seconds: float = 240) -> None:
    """Wait while the relay publishes what earlier tests of the session left in the outbox
    (the test database is shared by the whole session), so a test's own events are not
    queued behind thousands of others; stop waiting when nothing is left or nothing moves
    for 5 s."""
    deadline = time.monotonic() + most_seconds
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            row = await cur.fetchone()
        left = int(row[0]) if row else 0
        if left == 0:
            return
        if left != last:
            last, still_since = left, time.monotonic()
        elif time.monotonic() - still_since > 5:
            return
        await asyncio.sleep(0.2)

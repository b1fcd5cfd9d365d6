"""Write statements of one transaction sent as one statement.

Every statement costs the driver a pipeline step (the query converted, the parameters dumped,
a socket write and a wait on the event loop) and the database a Bind/Execute; the writes of
AuthorizeBet (usage, journal row, postings, hold, outbox event) are five statements whose
results nobody reads. `send_together` sends such writes as one:

    WITH w0 AS (INSERT ...), w1 AS (INSERT ...), ... SELECT 1

Sub-statements of one statement all see the snapshot taken when it starts, so none may need
another's rows: `send_together` starts a new statement whenever a write names a table an
earlier write of the current one already writes (two upserts of one usage row stay two
statements). Foreign keys and AFTER triggers (the postings trigger that applies balances) run
when the whole statement ends, so a posting or a hold may name the journal row a sibling
inserts, as it may in separate statements; BEFORE row triggers (the outbox's `aggregate_seq`)
run row by row as they always do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.types import Conn


@dataclass(frozen=True, slots=True)
class Write:
    """One INSERT or UPDATE without RETURNING: `query` with positional %s placeholders, its
    `params`, and the `table` it writes."""

    table: str
    query: str
    params: tuple[Any, ...]


async def execute(conn: Conn, write: Write | None) -> None:
    """Send one write, if any (in pipeline mode it is queued: no round trip)."""
    if write is not None:
        await conn.execute(write.query, write.params)


async def send_together(conn: Conn, writes: Sequence[Write | None]) -> int:
    """Send `writes` (None entries skipped) in order, as few statements as the rule in the
    module doc allows, and return how many statements that took; no result is read, so in
    pipeline mode nothing waits."""
    sent = 0
    group: list[Write] = []
    for write in writes:
        if write is None:
            continue
        if any(w.table == write.table for w in group):
            sent += await _send(conn, group)
            group = []
        group.append(write)
    return sent + await _send(conn, group)


async def _send(conn: Conn, group: list[Write]) -> int:
    if not group:
        return 0
    if len(group) == 1:
        await execute(conn, group[0])
        return 1
    ctes = ", ".join(f"w{i} AS ({w.query})" for i, w in enumerate(group))
    await conn.execute(f"WITH {ctes} SELECT 1", tuple(p for w in group for p in w.params))
    return 1

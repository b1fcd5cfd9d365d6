"""SQL for the transactional outbox (see migrations/0002_outbox.sql and
0403_outbox_aggregate_seq.sql; order rules in docs/events.md)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from server.store import statements
from server.store.rows import fetch_all, fetch_one, fetch_scalars
from server.store.statements import Write
from server.types import Conn

PARTITIONS = 16
_LOCK_BASE = 0x6F757462 << 8  # "outb" << 8: advisory lock ids for the partitions


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One committed, unpublished event. `aggregate_seq` is its number within the tenant's
    `aggregate` (1, 2, 3, ... without gaps, in commit order); `ready` says that its
    predecessor (aggregate_seq - 1) is already published, or that it has none."""

    seq: int
    event_id: uuid.UUID
    event_type: str
    schema_version: str
    aggregate: str
    aggregate_seq: int
    ready: bool
    tenant_id: str
    trace_id: str
    occurred_at: datetime
    payload: dict[str, Any]


async def insert_event(conn: Conn, event: NewEvent) -> None:
    """Insert one event in the caller's transaction (no result is read, so it pipelines)."""
    await statements.execute(conn, event_write(event))


def event_write(event: NewEvent) -> Write:
    """The INSERT of one event (its triggers give it the aggregate's next `aggregate_seq`)."""
    return Write(
        "outbox",
        "INSERT INTO outbox (event_id, event_type, schema_version, aggregate, partition,"
        " tenant_id, trace_id, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            event.event_id,
            event.event_type,
            event.schema_version,
            event.aggregate,
            event.partition,
            event.tenant_id,
            event.trace_id,
            json.dumps(event.payload, sort_keys=True),
        ),
    )


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to insert (see `insert_events`); `payload` is JSON-ready."""

    event_id: uuid.UUID
    event_type: str
    schema_version: str
    aggregate: str
    partition: int
    tenant_id: str
    trace_id: str
    payload: dict[str, Any]


def event_rows(events: list[NewEvent]) -> str:
    """The JSON parameter of INSERT_EVENTS_JSON."""
    return json.dumps(
        [
            {
                "event_id": str(e.event_id),
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "aggregate": e.aggregate,
                "partition": e.partition,
                "tenant_id": e.tenant_id,
                "trace_id": e.trace_id,
                "payload": e.payload,
            }
            for e in events
        ]
    )


# Insert the events of one JSON parameter (`event_rows`), in order; {rows} names the parameter.
INSERT_EVENTS_JSON = (
    "INSERT INTO outbox (event_id, event_type, schema_version, aggregate, partition,"
    " tenant_id, trace_id, payload)"
    " SELECT event_id, event_type, schema_version, aggregate, partition, tenant_id,"
    " trace_id, payload"
    " FROM json_populate_recordset(NULL::outbox, {rows}::json) WITH ORDINALITY"
    " ORDER BY ordinality"
)


async def insert_events(conn: Conn, events: list[NewEvent]) -> None:
    """Insert several events in one statement (one JSON parameter), in list order (seq order),
    in the caller's transaction (no result is read, so it pipelines)."""
    await conn.execute(INSERT_EVENTS_JSON.format(rows="%s"), (event_rows(events),))


async def lock_free_partitions(conn: Conn) -> list[int]:
    """Take every partition lock no other relay holds (transaction-level advisory locks)."""
    return await fetch_scalars(
        conn,
        "SELECT p FROM generate_series(0, %s - 1) AS p WHERE pg_try_advisory_xact_lock(%s + p)",
        (PARTITIONS, _LOCK_BASE),
    )


async def pending(conn: Conn, partitions: list[int], limit: int) -> list[OutboxRow]:
    """Up to `limit` committed, unpublished events of the partitions, oldest insert first.

    No transaction-id or snapshot gate: the caller publishes an aggregate's events in
    `aggregate_seq` order starting only at a `ready` row (see `publishable`)."""
    return await fetch_all(
        conn,
        OutboxRow,
        "SELECT o.seq, o.event_id, o.event_type, o.schema_version, o.aggregate,"
        " o.aggregate_seq,"
        " o.aggregate_seq = 1 OR EXISTS (SELECT 1 FROM outbox p"
        "   WHERE p.tenant_id = o.tenant_id AND p.aggregate = o.aggregate"
        "     AND p.aggregate_seq = o.aggregate_seq - 1"
        "     AND p.published_at IS NOT NULL) AS ready,"
        " o.tenant_id, o.trace_id, o.occurred_at, o.payload FROM outbox o"
        " WHERE o.published_at IS NULL AND o.partition = ANY(%s)"
        " ORDER BY o.seq LIMIT %s",
        (partitions, limit),
    )


def publishable(rows: list[OutboxRow]) -> dict[tuple[str, str], list[OutboxRow]]:
    """The rows that may be published now, by (tenant, aggregate), each list in `aggregate_seq`
    order:
    per aggregate, the run that starts at a `ready` row and has no gap. Rows after a gap (an
    earlier event not read in this batch) wait for a later pass."""
    by_aggregate: dict[tuple[str, str], list[OutboxRow]] = {}
    for row in sorted(rows, key=lambda r: (r.tenant_id, r.aggregate, r.aggregate_seq)):
        run = by_aggregate.setdefault((row.tenant_id, row.aggregate), [])
        if (not run and row.ready) or (run and run[-1].aggregate_seq + 1 == row.aggregate_seq):
            run.append(row)
    return {a: run for a, run in by_aggregate.items() if run}


async def mark_published(conn: Conn, seqs: list[int]) -> None:
    """Record that the broker confirmed these events (the time is the relay's: an UPDATE that
    reaches several shards of a distributed database may call no volatile function)."""
    await conn.execute(
        "UPDATE outbox SET published_at = %s WHERE seq = ANY(%s)", (datetime.now(UTC), seqs)
    )


async def lag(conn: Conn) -> tuple[int, int]:
    """(unpublished count, age in milliseconds of the oldest unpublished event)."""
    lag = await fetch_one(
        conn,
        _lag,
        "SELECT count(*) AS unpublished,"
        " coalesce((extract(epoch FROM clock_timestamp() - min(occurred_at)) * 1000)::bigint, 0)"
        "   AS age_ms"
        "  FROM outbox WHERE published_at IS NULL",
    )
    assert lag is not None
    return lag


def _lag(*, unpublished: int, age_ms: int) -> tuple[int, int]:
    return int(unpublished), int(age_ms)

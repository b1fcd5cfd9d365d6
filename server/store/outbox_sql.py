"""SQL for the transactional outbox (see migrations/0002_outbox.sql)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.store.wallet_sql import Conn

PARTITIONS = 16
_LOCK_BASE = 0x6F757462 << 8  # "outb" << 8: advisory lock ids for the partitions


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One committed, unpublished event."""

    seq: int
    event_id: uuid.UUID
    event_type: str
    schema_version: str
    aggregate: str
    tenant_id: str
    trace_id: str
    occurred_at: datetime
    payload: dict[str, Any]


async def insert_event(
    conn: Conn,
    *,
    event_id: uuid.UUID,
    event_type: str,
    schema_version: str,
    aggregate: str,
    partition: int,
    tenant_id: str,
    trace_id: str,
    payload: dict[str, Any],
) -> None:
    """Insert one event in the caller's transaction (no result is read, so it pipelines)."""
    await conn.execute(
        "INSERT INTO outbox (event_id, event_type, schema_version, aggregate, partition,"
        " tenant_id, trace_id, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            event_id,
            event_type,
            schema_version,
            aggregate,
            partition,
            tenant_id,
            trace_id,
            json.dumps(payload, sort_keys=True),
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
    cur = await conn.execute(
        "SELECT p FROM generate_series(0, %s - 1) AS p WHERE pg_try_advisory_xact_lock(%s + p)",
        (PARTITIONS, _LOCK_BASE),
    )
    return [int(r[0]) for r in await cur.fetchall()]


async def pending(conn: Conn, partitions: list[int], limit: int) -> list[OutboxRow]:
    """Unpublished events of the partitions whose transactions precede every running one, in
    seq order."""
    cur = await conn.execute(
        "SELECT seq, event_id, event_type, schema_version, aggregate, tenant_id, trace_id,"
        " occurred_at, payload FROM outbox"
        " WHERE published_at IS NULL AND partition = ANY(%s)"
        "   AND xid < pg_snapshot_xmin(pg_current_snapshot())"
        " ORDER BY seq LIMIT %s",
        (partitions, limit),
    )
    return [
        OutboxRow(
            int(r[0]), r[1], str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]), r[7], dict(r[8])
        )
        for r in await cur.fetchall()
    ]


async def mark_published(conn: Conn, seqs: list[int]) -> None:
    """Record that the broker confirmed these events."""
    await conn.execute(
        "UPDATE outbox SET published_at = clock_timestamp() WHERE seq = ANY(%s)", (seqs,)
    )


async def lag(conn: Conn) -> tuple[int, int]:
    """(unpublished count, age in milliseconds of the oldest unpublished event)."""
    cur = await conn.execute(
        "SELECT count(*),"
        " coalesce((extract(epoch FROM clock_timestamp() - min(occurred_at)) * 1000)::bigint, 0)"
        "  FROM outbox WHERE published_at IS NULL"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])

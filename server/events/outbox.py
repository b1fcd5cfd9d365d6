"""Appending events to the transactional outbox (docs/architecture.md invariant 8).

`append_event` must be called with the connection of the transaction that makes the state
change, so the event commits (or rolls back) with it; nothing is published outside a committed
transaction. croupier-relay publishes committed events to RabbitMQ at least once, with a stable
`event_id` receivers de-duplicate on.
"""

from __future__ import annotations

import uuid
import zlib
from typing import Any

from server.events.catalog import EVENT_TYPES
from server.events.context import current_trace_id, new_trace_id
from server.store import outbox_sql
from server.store.outbox_sql import PARTITIONS
from server.store.statements import Write
from server.types import Conn


def partition_of(aggregate: str) -> int:
    """The relay partition (0..15) of an aggregate: stable CRC-32 of its name."""
    return zlib.crc32(aggregate.encode()) % PARTITIONS


def money(minor_units: int, currency: str) -> dict[str, Any]:
    """Money in an event payload: `{"minor_units": int, "currency": "EUR"}`."""
    return {"minor_units": minor_units, "currency": currency}


def new_event(
    event_type: str,
    *,
    aggregate: str,
    tenant_id: str,
    payload: dict[str, Any],
    trace_id: str | None = None,
) -> outbox_sql.NewEvent:
    """An event ready for `outbox_sql.insert_events` (a batch writer's path; `append_event`
    for one). `trace_id` defaults to the current request's (or background pass's); an event
    written outside any trace gets a fresh trace id, never "". Raises KeyError for an event
    type missing from server.events.catalog."""
    if trace_id is None:
        trace_id = current_trace_id.get()
    return outbox_sql.NewEvent(
        event_id=uuid.uuid4(),
        event_type=event_type,
        schema_version=EVENT_TYPES[event_type],
        aggregate=aggregate,
        partition=partition_of(aggregate),
        tenant_id=tenant_id,
        trace_id=trace_id or new_trace_id(),
        payload=payload,
    )


async def append_event(
    conn: Conn,
    event_type: str,
    *,
    aggregate: str,
    tenant_id: str,
    payload: dict[str, Any],
) -> uuid.UUID:
    """Write one event in the caller's transaction and return its `event_id`.

    `aggregate` names the ordering scope ("account:<tenant>:<player>:<currency>",
    "pool:<pool_id>", "pool:<pool_id>:shard:<n>", "audit:<tenant>"): the event gets the next
    `aggregate_seq` of its aggregate (under that aggregate's counter row lock, held until the
    transaction ends), and events of one aggregate are published in that order (docs/events.md).
    Raises KeyError for an event type missing from server.events.catalog.
    """
    event = new_event(event_type, aggregate=aggregate, tenant_id=tenant_id, payload=payload)
    await outbox_sql.insert_event(conn, event)
    return event.event_id


def event_write(
    event_type: str, *, aggregate: str, tenant_id: str, payload: dict[str, Any]
) -> Write:
    """`append_event`'s INSERT, for a caller that sends it with its other writes
    (server.store.statements). Raises KeyError for an unknown event type."""
    event = new_event(event_type, aggregate=aggregate, tenant_id=tenant_id, payload=payload)
    return outbox_sql.event_write(event)

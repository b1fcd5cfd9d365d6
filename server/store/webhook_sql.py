"""SQL for webhook subscriptions and deliveries (see migrations/0006_webhooks.sql).

Times are `timestamptz` (returned as aware datetimes); delays and leases are given in seconds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from psycopg.rows import class_row, kwargs_row, scalar_row

from server.types import Conn

_SUBSCRIPTION_COLUMNS = (
    "seq, subscription_id, tenant_id, callback_url, event_types, description, created_at,"
    " deleted_at"
)
_DELIVERY_COLUMNS = (
    "seq, delivery_id, subscription_id, event_id, event_type, state, attempts, next_attempt_at,"
    " last_status, last_error, created_at, finished_at"
)


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """A subscription as the API shows it (the secret is never read back through this)."""

    seq: int
    subscription_id: uuid.UUID
    tenant_id: str
    callback_url: str
    event_types: list[str]
    description: str
    created_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One delivery of an event to a subscription. `state`: pending, delivered, dead,
    cancelled; `last_status`: the last HTTP status (0 = no response)."""

    seq: int
    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int
    last_error: str
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery claimed for one attempt (number `attempt`, 1-based), with what to send."""

    delivery_id: uuid.UUID
    attempt: int
    subscription_id: uuid.UUID
    callback_url: str
    secret: bytes = field(repr=False)
    event_id: uuid.UUID
    event_type: str
    trace_id: str
    body: bytes = field(repr=False)


# --- subscriptions -------------------------------------------------------------------------


async def insert_subscription(
    conn: Conn,
    *,
    tenant_id: str,
    callback_url: str,
    secret: bytes,
    event_types: list[str],
    description: str,
) -> SubscriptionRow:
    """Create a subscription in the caller's transaction."""
    cur = conn.cursor(row_factory=class_row(SubscriptionRow))
    await cur.execute(
        "INSERT INTO webhook_subscriptions (tenant_id, callback_url, secret, event_types,"
        " description) VALUES (%s, %s, %s, %s, %s) RETURNING " + _SUBSCRIPTION_COLUMNS,
        (tenant_id, callback_url, secret, event_types, description),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_subscription(
    conn: Conn, tenant_id: str, subscription_id: uuid.UUID, *, include_deleted: bool = False
) -> SubscriptionRow | None:
    """The tenant's subscription, or None (also None when deleted, unless include_deleted)."""
    cur = conn.cursor(row_factory=class_row(SubscriptionRow))
    await cur.execute(
        "SELECT " + _SUBSCRIPTION_COLUMNS + " FROM webhook_subscriptions"
        " WHERE tenant_id = %s AND subscription_id = %s"
        + ("" if include_deleted else " AND deleted_at IS NULL"),
        (tenant_id, subscription_id),
    )
    row = await cur.fetchone()
    return row


async def list_subscriptions(
    conn: Conn, tenant_id: str, after_seq: int, limit: int
) -> list[SubscriptionRow]:
    """The tenant's active subscriptions with seq > after_seq, oldest first."""
    cur = conn.cursor(row_factory=class_row(SubscriptionRow))
    await cur.execute(
        "SELECT " + _SUBSCRIPTION_COLUMNS + " FROM webhook_subscriptions"
        " WHERE tenant_id = %s AND deleted_at IS NULL AND seq > %s ORDER BY seq LIMIT %s",
        (tenant_id, after_seq, limit),
    )
    return await cur.fetchall()


async def delete_subscription(
    conn: Conn, tenant_id: str, subscription_id: uuid.UUID
) -> SubscriptionRow | None:
    """Soft-delete an active subscription and cancel its pending deliveries; None if there is
    no such active subscription."""
    cur = conn.cursor(row_factory=class_row(SubscriptionRow))
    await cur.execute(
        "UPDATE webhook_subscriptions SET deleted_at = clock_timestamp()"
        " WHERE tenant_id = %s AND subscription_id = %s AND deleted_at IS NULL"
        " RETURNING " + _SUBSCRIPTION_COLUMNS,
        (tenant_id, subscription_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    await conn.execute(
        "UPDATE webhook_deliveries SET state = 'cancelled', finished_at = clock_timestamp()"
        " WHERE subscription_id = %s AND state = 'pending'",
        (subscription_id,),
    )
    return row


async def active_subscriptions(conn: Conn, tenant_id: str) -> list[tuple[uuid.UUID, list[str]]]:
    """(subscription_id, event type patterns) of the tenant's active subscriptions."""
    cur = conn.cursor(row_factory=kwargs_row(_patterns))
    await cur.execute(
        "SELECT subscription_id, event_types FROM webhook_subscriptions"
        " WHERE tenant_id = %s AND deleted_at IS NULL",
        (tenant_id,),
    )
    return await cur.fetchall()


def _patterns(*, subscription_id: uuid.UUID, event_types: list[str]) -> tuple[uuid.UUID, list[str]]:
    return subscription_id, list(event_types)


# --- recording events ----------------------------------------------------------------------


async def record_event(
    conn: Conn,
    *,
    event_id: uuid.UUID,
    tenant_id: str,
    event_type: str,
    trace_id: str,
    body: bytes,
    subscription_ids: list[uuid.UUID],
) -> int:
    """Store the event (once) and one pending delivery per subscription (once each); return
    how many deliveries are new (0 for a redelivered message)."""
    await conn.execute(
        "INSERT INTO webhook_events (event_id, tenant_id, event_type, trace_id, body)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
        (event_id, tenant_id, event_type, trace_id, body),
    )
    cur = await conn.execute(
        "INSERT INTO webhook_deliveries (subscription_id, event_id, tenant_id, event_type)"
        " SELECT s, %s, %s, %s FROM unnest(%s::uuid[]) AS s"
        " ON CONFLICT (subscription_id, event_id) DO NOTHING",
        (event_id, tenant_id, event_type, subscription_ids),
    )
    return cur.rowcount


# --- delivering ----------------------------------------------------------------------------


async def claim_due(
    conn: Conn,
    limit: int,
    lease_seconds: float,
    per_subscription: int,
    busy: dict[uuid.UUID, int],
) -> list[DueDelivery]:
    """Claim up to `limit` due pending deliveries, oldest due first, at most
    `per_subscription` per subscription counting the `busy` ones this process already has in
    flight ({subscription_id: count}), so one slow subscriber cannot take every slot.

    Rows are locked FOR UPDATE SKIP LOCKED, so concurrent dispatchers never claim the same
    delivery; each claimed one gets `attempts + 1` and is leased for `lease_seconds` (its
    `next_attempt_at` moves past the request timeout).
    """
    cur = conn.cursor(row_factory=class_row(DueDelivery))
    await cur.execute(
        "WITH ranked AS ("
        "  SELECT w.delivery_id, w.next_attempt_at, coalesce(b.n, 0) AS busy,"
        "    row_number() OVER (PARTITION BY w.subscription_id ORDER BY w.next_attempt_at) AS rn"
        "    FROM webhook_deliveries w"
        "    LEFT JOIN unnest(%s::uuid[], %s::int[]) AS b(subscription_id, n)"
        "      ON b.subscription_id = w.subscription_id"
        "   WHERE w.state = 'pending' AND w.next_attempt_at <= clock_timestamp()),"
        " candidates AS ("
        "  SELECT delivery_id FROM ranked WHERE rn + busy <= %s"
        "   ORDER BY next_attempt_at LIMIT %s),"
        " due AS ("
        "  SELECT w.delivery_id FROM webhook_deliveries w JOIN candidates USING (delivery_id)"
        "   WHERE w.state = 'pending' AND w.next_attempt_at <= clock_timestamp()"
        "   FOR UPDATE OF w SKIP LOCKED)"
        " UPDATE webhook_deliveries d SET attempts = d.attempts + 1,"
        "   next_attempt_at = clock_timestamp() + make_interval(secs => %s)"
        "  FROM due, webhook_subscriptions s, webhook_events e"
        " WHERE d.delivery_id = due.delivery_id AND s.subscription_id = d.subscription_id"
        "   AND e.event_id = d.event_id"
        " RETURNING d.delivery_id, d.attempts AS attempt, s.subscription_id, s.callback_url,"
        "   s.secret, e.event_id, e.event_type, e.trace_id, e.body",
        (list(busy), list(busy.values()), per_subscription, limit, lease_seconds),
    )
    return await cur.fetchall()


async def mark_delivered(conn: Conn, delivery_id: uuid.UUID, attempt: int, status: int) -> bool:
    """Record a 2xx for attempt `attempt`; False if the delivery moved on meanwhile."""
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET state = 'delivered', last_status = %s, last_error = '',"
        " finished_at = clock_timestamp()"
        " WHERE delivery_id = %s AND attempts = %s AND state = 'pending'",
        (status, delivery_id, attempt),
    )
    return cur.rowcount == 1


async def mark_failed(
    conn: Conn,
    delivery_id: uuid.UUID,
    attempt: int,
    status: int,
    error: str,
    retry_in: float | None,
) -> bool:
    """Record a failed attempt: due again in `retry_in` seconds, or dead-lettered when
    `retry_in` is None. False if the delivery moved on meanwhile."""
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET last_status = %s, last_error = %s,"
        " state = CASE WHEN %s THEN 'dead' ELSE 'pending' END,"
        " finished_at = CASE WHEN %s THEN clock_timestamp() END,"
        " next_attempt_at = clock_timestamp() + make_interval(secs => %s)"
        " WHERE delivery_id = %s AND attempts = %s AND state = 'pending'",
        (
            status,
            error[:500],
            retry_in is None,
            retry_in is None,
            retry_in or 0.0,
            delivery_id,
            attempt,
        ),
    )
    return cur.rowcount == 1


async def seconds_until_due(conn: Conn) -> float | None:
    """Seconds until the earliest pending delivery is due (<= 0: due now); None if none."""
    cur = conn.cursor(row_factory=scalar_row)
    await cur.execute(
        "SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8"
        "  FROM webhook_deliveries WHERE state = 'pending'"
    )
    seconds = await cur.fetchone()
    return None if seconds is None else float(seconds)


# --- reading and redelivering --------------------------------------------------------------


async def list_deliveries(
    conn: Conn,
    tenant_id: str,
    subscription_id: uuid.UUID,
    state: str | None,
    before_seq: int | None,
    limit: int,
) -> list[DeliveryRow]:
    """A subscription's deliveries, newest first, optionally of one state."""
    cur = conn.cursor(row_factory=class_row(DeliveryRow))
    await cur.execute(
        "SELECT " + _DELIVERY_COLUMNS + " FROM webhook_deliveries"
        " WHERE tenant_id = %s AND subscription_id = %s"
        "   AND (%s::text IS NULL OR state = %s) AND (%s::bigint IS NULL OR seq < %s)"
        " ORDER BY seq DESC LIMIT %s",
        (tenant_id, subscription_id, state, state, before_seq, before_seq, limit),
    )
    return await cur.fetchall()


async def get_delivery(
    conn: Conn, tenant_id: str, subscription_id: uuid.UUID, delivery_id: uuid.UUID
) -> DeliveryRow | None:
    """One delivery of the tenant's subscription, locked FOR UPDATE."""
    cur = conn.cursor(row_factory=class_row(DeliveryRow))
    await cur.execute(
        "SELECT " + _DELIVERY_COLUMNS + " FROM webhook_deliveries"
        " WHERE tenant_id = %s AND subscription_id = %s AND delivery_id = %s FOR UPDATE",
        (tenant_id, subscription_id, delivery_id),
    )
    row = await cur.fetchone()
    return row


async def redeliver(conn: Conn, delivery_id: uuid.UUID) -> DeliveryRow:
    """Put a dead-lettered delivery back to pending, due now, with its attempts reset."""
    cur = conn.cursor(row_factory=class_row(DeliveryRow))
    await cur.execute(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, finished_at = NULL,"
        " next_attempt_at = clock_timestamp() WHERE delivery_id = %s AND state = 'dead'"
        " RETURNING " + _DELIVERY_COLUMNS,
        (delivery_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return row

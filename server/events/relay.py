"""croupier-relay: publishes the transactional outbox to RabbitMQ.

Events follow commits (docs/architecture.md invariant 8).

- Topic exchange `croupier.events` (durable): routing key = event type, AMQP `message_id` =
  `event_id`, persistent messages, publisher confirms. A row is marked published only after the
  broker confirmed it, so delivery is at least once (a relay killed between confirm and mark
  publishes that batch again; consumers de-duplicate by `event_id`).
- CRM casino feed: exchange `croupier.crm` (topic), routing key `casino`, property
  `type=CASINO`, published right after the wallet event it comes from.
- Order: every event carries `aggregate_seq`, its number within its aggregate (an account, a
  pool, a pool shard, a tenant's audit chain), assigned under the aggregate's counter row lock
  in the writing transaction (migration 0403), so it is the aggregate's commit order. The relay
  publishes an aggregate's events in that order, one after another, and starts only at the
  event whose predecessor is already published: no transaction ids or snapshots, so an open
  transaction never holds back other aggregates' events. The outbox is split in 16 partitions
  by aggregate; a relay publishes a partition only while holding its advisory lock, so several
  relays may run at once without double work or reordering. See docs/events.md.
- Wake-up: LISTEN croupier_outbox, and a poll every `POLL_SECONDS` (0.1 s). A writing
  connection sends the NOTIFY at most once per 100 ms (migration 1000: a NOTIFY serializes
  commits), so an event committed just after one waits for the next NOTIFY or the poll. On
  Citus there is no NOTIFY and the poll alone wakes the relay.
- Broker down: the batch is not marked, the relay backs off (0.2 s doubling to 10 s) and
  reconnects, then catches up; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import aio_pika
import psycopg
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from server.events.crm import casino_event
from server.events.crm import dumps as crm_dumps
from server.retry import BROKER_BACKOFF, Pacer
from server.store import outbox_sql
from server.store.outbox_sql import OutboxRow
from server.telemetry import publish_span, setup_tracing

log = logging.getLogger("croupier.relay")

EVENTS_EXCHANGE = "croupier.events"
CRM_EXCHANGE = "croupier.crm"
CRM_ROUTING_KEY = "casino"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# how often a relay looks for events when no NOTIFY woke it (seconds)
POLL_SECONDS = 0.1


def envelope(row: OutboxRow) -> dict[str, Any]:
    """The published JSON body of an event (schema: protos/events/<type>.v1.json)."""
    return {
        "event_id": str(row.event_id),
        "event_type": row.event_type,
        "schema_version": row.schema_version,
        "occurred_at": row.occurred_at.isoformat(),
        "tenant_id": row.tenant_id,
        "trace_id": row.trace_id,
        "aggregate": row.aggregate,
        "aggregate_seq": row.aggregate_seq,
        "payload": row.payload,
    }


class Relay:
    """Publishes committed outbox rows; see the module doc for the guarantees."""

    def __init__(self, database_url: str, amqp_url: str, batch_size: int = 500) -> None:
        self.database_url = database_url
        self.amqp_url = amqp_url
        self.batch_size = batch_size
        self.published = 0
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._events: AbstractExchange | None = None
        self._crm: AbstractExchange | None = None

    async def _connect_broker(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            return
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect_robust(self.amqp_url, timeout=5)
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._events = await self._channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._crm = await self._channel.declare_exchange(
            CRM_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        """Close the broker connection."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):  # it may already be broken
                await connection.close()

    async def _publish_aggregate(self, rows: Sequence[OutboxRow]) -> None:
        assert self._events is not None and self._crm is not None
        for row in rows:
            with publish_span(row.event_type, row.trace_id):
                await self._publish_one(row)

    async def _publish_one(self, row: OutboxRow) -> None:
        assert self._events is not None and self._crm is not None
        await self._events.publish(
            aio_pika.Message(
                json.dumps(envelope(row), sort_keys=True).encode(),
                message_id=str(row.event_id),
                type=row.event_type,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                timestamp=row.occurred_at,
                headers={
                    "tenant_id": row.tenant_id,
                    "schema_version": row.schema_version,
                    "trace_id": row.trace_id,
                    "aggregate": row.aggregate,
                    "aggregate_seq": row.aggregate_seq,
                },
            ),
            routing_key=row.event_type,
            timeout=10,
        )
        crm = casino_event(
            str(row.event_id), row.event_type, row.tenant_id, row.occurred_at, row.payload
        )
        if crm is not None:
            await self._crm.publish(
                aio_pika.Message(
                    crm_dumps(crm),
                    message_id=f"{row.event_id}:casino",
                    type="CASINO",
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=CRM_ROUTING_KEY,
                timeout=10,
            )

    async def _publish(self, rows: list[OutboxRow]) -> list[int]:
        """Publish what may go now (outbox_sql.publishable), each aggregate in order and the
        aggregates concurrently; return the seqs the broker confirmed."""
        by_aggregate = outbox_sql.publishable(rows)
        await asyncio.gather(*(self._publish_aggregate(r) for r in by_aggregate.values()))
        return [row.seq for run in by_aggregate.values() for row in run]

    async def drain(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Publish everything publishable now; return the count.

        Each pass is one transaction: take the free partition locks, read up to a batch of
        their committed events, publish each aggregate's in `aggregate_seq` order from its
        first unpublished one, mark, commit. Events whose predecessor is not published yet wait
        for the next pass.
        """
        total = 0
        while True:
            done: list[int] = []
            async with conn.transaction():
                partitions = await outbox_sql.lock_free_partitions(conn)
                if not partitions:
                    break
                rows = await outbox_sql.pending(conn, partitions, self.batch_size)
                if rows:
                    await self._connect_broker()
                    done = await self._publish(rows)
                    if done:
                        await outbox_sql.mark_published(conn, done)
            total += len(done)
            if len(rows) < self.batch_size or not done:
                break
        self.published += total
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set, backing off while the broker or database is down."""
        pacer = Pacer(BROKER_BACKOFF)
        while not stop.is_set():
            try:
                async with (
                    await psycopg.AsyncConnection.connect(
                        self.database_url, autocommit=True
                    ) as listener,
                    await psycopg.AsyncConnection.connect(
                        self.database_url, autocommit=True
                    ) as worker,
                ):
                    await listener.execute("LISTEN croupier_outbox")
                    while not stop.is_set():
                        await self.drain(worker)
                        pacer.succeeded()
                        await self._wait(listener, stop)
            except Exception as exc:  # the relay outlives any broker or database failure
                delay = pacer.failed()
                log.warning(
                    "relay paused (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
                )
                await self.close()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        await self.close()

    async def _wait(self, listener: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> None:
        """Until a NOTIFY arrives or `POLL_SECONDS` pass (stop is checked by the caller)."""
        async for _ in listener.notifies(timeout=POLL_SECONDS, stop_after=1):
            break


def main() -> int:
    """`croupier-relay`: CROUPIER_DATABASE_URL (required), CROUPIER_AMQP_URL."""
    setup_tracing("croupier-relay")
    logging.basicConfig(
        level=os.environ.get("CROUPIER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    url = os.environ.get("CROUPIER_DATABASE_URL")
    if not url:
        print("croupier-relay: set CROUPIER_DATABASE_URL", file=sys.stderr)
        return 2
    relay = Relay(url, os.environ.get("CROUPIER_AMQP_URL", DEFAULT_AMQP_URL))

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("relay started")
        await relay.run(stop)
        log.info("relay stopped after publishing %d events", relay.published)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())

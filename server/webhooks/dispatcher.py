"""croupier-webhooks: turns events on `croupier.events` into signed webhook deliveries.

Two loops in one process (docs/webhooks.md):

1. Record: consume the topic exchange `croupier.events` from a durable queue (default
   `croupier.webhooks`, bound with `#`; several dispatchers share it as competing consumers).
   For each message, in one database transaction: the tenant's active subscriptions whose
   patterns select the event type get one pending delivery each, keyed by
   (subscription_id, event_id) so a redelivered message creates nothing new; then the message
   is acked. A message is never acked before its deliveries are committed (database down:
   nack + requeue after a pause). Only the event's own tenant is considered (invariant 7).
2. Deliver: claim due deliveries with `FOR UPDATE SKIP LOCKED` (several dispatchers never
   claim the same one), at most `max_in_flight` HTTP requests at once (an asyncio.Semaphore)
   and at most `max_in_flight_per_subscription` of them to one subscription (a
   parallel retry limit: a slow subscriber cannot take every slot from the others),
   POST each with a per-request timeout (server.webhooks.delivery), then mark it delivered,
   schedule the next attempt (exponential backoff, full jitter) or dead-letter it after
   `max_attempts`. A claim is a lease of `request_timeout + 10` seconds: a dispatcher that
   dies mid-request leaves the delivery due again afterwards (at least once).

Money paths never wait on any of this: the wallet only writes its outbox row; the relay
publishes to the exchange; this separate process is the only one talking to subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import psycopg
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from server.events.relay import EVENTS_EXCHANGE
from server.retry import BROKER_BACKOFF, Pacer
from server.store import webhook_sql
from server.store.database import open_pool
from server.store.webhook_sql import DueDelivery
from server.webhooks import delivery
from server.webhooks.config import DispatcherSettings
from server.webhooks.patterns import matches_any

log = logging.getLogger("croupier.webhooks")

_DB_DOWN = (psycopg.OperationalError, PoolTimeout)


@dataclass
class Stats:
    """Counters of one dispatcher process."""

    recorded: int = 0  # new deliveries created from broker messages
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    skipped_messages: int = 0  # malformed messages, rejected without requeue
    by_status: dict[int, int] = field(default_factory=dict)


class Dispatcher:
    """See the module doc. `run(stop)` until `stop` is set; `ready` is set once the queue is
    bound (events published after that reach this dispatcher's queue)."""

    def __init__(self, settings: DispatcherSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.stats = Stats()
        self.ready = asyncio.Event()
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: dict[uuid.UUID, int] = {}  # in-flight deliveries per subscription
        self._pool: AsyncConnectionPool | None = None

    # --- process ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Record and deliver until `stop` is set; then wait up to the request timeout for
        in-flight deliveries (the rest keep their lease and are retried later)."""
        s = self.settings
        self._pool = await open_pool(s.database_url, min_size=2, max_size=4 + s.max_in_flight // 4)
        connector = aiohttp.TCPConnector(limit=s.max_in_flight)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                loops = [
                    asyncio.create_task(self._consume(stop)),
                    asyncio.create_task(self._deliver_loop(session, stop)),
                ]
                await stop.wait()
                self._wake.set()
                for task in loops:
                    task.cancel()
                for task in loops:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if self._tasks:
                    _, late = await asyncio.wait(self._tasks, timeout=s.request_timeout)
                    for task in late:
                        task.cancel()
                    await asyncio.gather(*late, return_exceptions=True)
        finally:
            await self._pool.close()

    # --- recording ----------------------------------------------------------------------

    async def _consume(self, stop: asyncio.Event) -> None:
        pacer = Pacer(BROKER_BACKOFF)
        while not stop.is_set():
            connection: AbstractRobustConnection | None = None
            try:
                connection = await aio_pika.connect_robust(self.settings.amqp_url, timeout=5)
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self.settings.prefetch)
                exchange = await channel.declare_exchange(
                    EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
                )
                queue = await channel.declare_queue(self.settings.queue, durable=True)
                await queue.bind(exchange, routing_key="#")
                await queue.consume(self._on_message)
                log.info("consuming %s from %s", self.settings.queue, EVENTS_EXCHANGE)
                self.ready.set()
                pacer.succeeded()
                await stop.wait()  # the robust connection reconnects and re-consumes itself
            except (TimeoutError, aio_pika.exceptions.AMQPError, OSError) as exc:
                delay = pacer.failed()
                log.warning("broker unavailable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            created = await self.record(message.body, message.message_id)
        except (ValueError, KeyError, TypeError) as exc:
            self.stats.skipped_messages += 1
            log.error("malformed event message %s rejected: %s", message.message_id, exc)
            await message.reject(requeue=False)
            return
        except _DB_DOWN as exc:
            log.warning("database unavailable while recording (%s); requeued", exc)
            await asyncio.sleep(1.0)
            await message.nack(requeue=True)
            return
        await message.ack()
        if created:
            self._wake.set()

    async def record(self, body: bytes, message_id: str | None = None) -> int:
        """Record the deliveries one published event needs; return how many are new.

        `body` is the JSON envelope (server.events.relay.envelope). Raises ValueError,
        KeyError or TypeError for a malformed message; psycopg.OperationalError when the
        database is down (nothing recorded, the caller requeues).
        """
        envelope: dict[str, Any] = json.loads(body)
        event_id = uuid.UUID(str(envelope.get("event_id") or message_id))
        event_type = str(envelope["event_type"])
        tenant_id = str(envelope["tenant_id"])
        trace_id = str(envelope.get("trace_id") or "")
        assert self._pool is not None
        async with self._pool.connection() as conn:
            subs = await webhook_sql.active_subscriptions(conn, tenant_id)
            wanted = [sid for sid, patterns in subs if matches_any(patterns, event_type)]
            if not wanted:
                return 0
            async with conn.transaction():
                created = await webhook_sql.record_event(
                    conn,
                    event_id=event_id,
                    tenant_id=tenant_id,
                    event_type=event_type,
                    trace_id=trace_id,
                    body=body,
                    subscription_ids=wanted,
                )
        self.stats.recorded += created
        return created

    # --- delivering ---------------------------------------------------------------------

    async def _deliver_loop(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        s = self.settings
        while not stop.is_set():
            await self._slots.acquire()  # blocks while max_in_flight requests are running
            slots = 1
            while slots < s.max_in_flight and not self._slots.locked():
                await self._slots.acquire()
                slots += 1
            self._wake.clear()
            try:
                assert self._pool is not None
                async with self._pool.connection() as conn:
                    claimed = await webhook_sql.claim_due(
                        conn,
                        slots,
                        s.request_timeout + 10,
                        s.max_in_flight_per_subscription,
                        self._busy,
                    )
                    until_due = None if claimed else await webhook_sql.seconds_until_due(conn)
            except _DB_DOWN as exc:
                log.warning("database unavailable while claiming (%s)", exc)
                claimed, until_due = [], s.poll_interval
            except Exception:  # keep the loop alive; the next round tries again
                log.exception("claiming due deliveries failed")
                claimed, until_due = [], s.poll_interval
            for _ in range(slots - len(claimed)):
                self._slots.release()
            for due in claimed:
                self._busy[due.subscription_id] = self._busy.get(due.subscription_id, 0) + 1
                task = asyncio.create_task(self._deliver(session, due))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if claimed:
                continue
            # Due now but nothing claimed: the rows are held back by the per-subscription cap
            # (one of ours finishing sets _wake) or locked by another dispatcher.
            wait = s.poll_interval
            if until_due is not None and until_due > 0:
                wait = min(until_due, s.poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _deliver(self, session: aiohttp.ClientSession, due: DueDelivery) -> None:
        s = self.settings
        self.stats.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        try:
            outcome = await delivery.attempt(session, due, s.request_timeout)
            self.stats.by_status[outcome.status] = self.stats.by_status.get(outcome.status, 0) + 1
            assert self._pool is not None
            async with self._pool.connection() as conn:
                if outcome.ok:
                    await webhook_sql.mark_delivered(
                        conn, due.delivery_id, due.attempt, outcome.status
                    )
                    self.stats.delivered += 1
                    return
                retry_in = (
                    None
                    if due.attempt >= s.max_attempts
                    else delivery.backoff_delay(
                        due.attempt, s.backoff_base, s.backoff_cap, self._rng
                    )
                )
                await webhook_sql.mark_failed(
                    conn, due.delivery_id, due.attempt, outcome.status, outcome.error, retry_in
                )
            if retry_in is None:
                self.stats.dead_lettered += 1
                log.warning(
                    "delivery %s of event %s dead-lettered after %d attempts (%s)",
                    due.delivery_id,
                    due.event_id,
                    due.attempt,
                    outcome.error,
                )
            else:
                self.stats.retried += 1
        except _DB_DOWN as exc:  # the lease expires and the delivery is attempted again
            log.warning("database unavailable after delivery %s: %s", due.delivery_id, exc)
        except Exception:
            log.exception("delivery %s failed unexpectedly", due.delivery_id)
        finally:
            self.stats.in_flight -= 1
            left = self._busy.pop(due.subscription_id, 1) - 1
            if left:
                self._busy[due.subscription_id] = left
            self._slots.release()
            self._wake.set()


def main() -> int:
    """`croupier-webhooks`: see DispatcherSettings for the environment."""
    logging.basicConfig(
        level=os.environ.get("CROUPIER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = DispatcherSettings.from_env()
    except KeyError:
        print("croupier-webhooks: set CROUPIER_DATABASE_URL", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"croupier-webhooks: bad setting: {exc}", file=sys.stderr)
        return 2
    dispatcher = Dispatcher(settings)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "webhook dispatcher started (queue %s, %d in flight)",
            settings.queue,
            settings.max_in_flight,
        )
        await dispatcher.run(stop)
        log.info("webhook dispatcher stopped: %s", dispatcher.stats)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures for the events tests: the real RabbitMQ on loopback and relays over the test DB."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from server.events.relay import CRM_EXCHANGE, EVENTS_EXCHANGE, Relay
from tests.backlog import drain_backlog

AMQP_URL = os.environ.get("CROUPIER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class Received:
    """Messages a test consumer got: (routing key, properties, decoded body)."""

    messages: list[tuple[str, AbstractIncomingMessage, dict[str, Any]]] = field(
        default_factory=list
    )

    def bodies(self, tenant: str) -> list[dict[str, Any]]:
        return [
            b
            for _, _, b in self.messages
            if b.get("tenant_id") == tenant or b.get("meta", {}).get("tenant_id") == tenant
        ]

    async def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self):
            assert asyncio.get_running_loop().time() < deadline, "timed out waiting for events"
            await asyncio.sleep(0.05)


@pytest.fixture
async def broker() -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """A connection to the real RabbitMQ."""
    conn = await aio_pika.connect_robust(AMQP_URL, timeout=10)
    ch = await conn.channel()
    for name in (EVENTS_EXCHANGE, CRM_EXCHANGE):
        await ch.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    await ch.close()
    try:
        yield conn
    finally:
        await conn.close()


async def consume(
    conn: aio_pika.abc.AbstractRobustConnection,
    exchange: str,
    binding: str = "#",
    durable_name: str | None = None,
) -> Received:
    """Bind a queue to `exchange` and collect what arrives."""
    received = Received()
    ch = await conn.channel()
    if durable_name:
        queue = await ch.declare_queue(durable_name, durable=True)
    else:
        queue = await ch.declare_queue(
            f"test-{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True
        )
    await queue.bind(exchange, routing_key=binding)

    async def on_message(message: AbstractIncomingMessage) -> None:
        async with message.process():
            received.messages.append((message.routing_key or "", message, json.loads(message.body)))

    await queue.consume(on_message)
    return received


@pytest.fixture
async def relay(database_url: str, pool: object) -> AsyncIterator[Relay]:
    """One croupier relay over the test database, running for the test."""
    r = Relay(database_url, AMQP_URL)
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await drain_backlog(pool)
    try:
        yield r
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)

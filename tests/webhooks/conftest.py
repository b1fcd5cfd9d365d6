"""Fixtures for the webhook tests: real RabbitMQ, a relay and dispatchers over the test
database, and real aiohttp receivers on loopback (the subscribers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import grpc
import pytest
from aiohttp import web
from croupier.events.v1 import subscription_service_pb2 as spb
from croupier.events.v1.subscription_service_pb2_grpc import SubscriptionServiceStub

from server.events.relay import Relay
from server.webhooks.config import DispatcherSettings
from server.webhooks.dispatcher import Dispatcher
from tests.backlog import drain_backlog
from tests.rpc import key

AMQP_URL = os.environ.get("CROUPIER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
SECRET = "whsec-test-0123456789abcdef"


@dataclass
class Hit:
    """One request a receiver got: arrival time (time.time()), headers, raw body."""

    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A webhook subscriber: answers `status(hit_number)` after `delay` seconds."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    status: Callable[[int], int] = lambda n: 200
    delay: float = 0.0
    concurrent: int = 0
    peak_concurrent: int = 0

    def ok_events(self) -> list[dict[str, Any]]:
        """Bodies of the requests answered 2xx."""
        return [h.event for h in self.hits if h.headers.get("X-Answered", "") == "2xx"]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        hit = Hit(time.time(), dict(request.headers), body)
        self.hits.append(hit)
        self.concurrent += 1
        self.peak_concurrent = max(self.peak_concurrent, self.concurrent)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            code = self.status(len(self.hits))
        finally:
            self.concurrent -= 1
        if 200 <= code < 300:
            hit.headers["X-Answered"] = "2xx"
        return web.Response(status=code, text="ok" if code < 300 else "nope")


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    """A factory of receivers, each an aiohttp server on 127.0.0.1 (free port)."""
    runners: list[web.AppRunner] = []

    async def make() -> Receiver:
        receiver = Receiver()
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        receiver.url = f"http://{host}:{port}/hook"
        runners.append(runner)
        return receiver

    try:
        yield make
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture(scope="session")
def subs(channel: grpc.aio.Channel) -> SubscriptionServiceStub:
    """The generated SubscriptionService stub over the real channel."""
    return SubscriptionServiceStub(channel)


async def subscribe(
    subs: SubscriptionServiceStub, tenant: str, url: str, *types: str, secret: str = SECRET
) -> spb.Subscription:
    """Create a subscription and return it."""
    resp = await subs.CreateSubscription(
        spb.CreateSubscriptionRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            callback_url=url,
            secret=secret,
            event_types=list(types),
        )
    )
    return resp.subscription


async def deliveries(
    subs: SubscriptionServiceStub, sub: spb.Subscription, state: int = 0
) -> list[spb.Delivery]:
    """All deliveries of a subscription (every page)."""
    out: list[spb.Delivery] = []
    token = ""
    while True:
        resp = await subs.ListDeliveries(
            spb.ListDeliveriesRequest(
                tenant_id=sub.tenant_id,
                subscription_id=sub.subscription_id,
                state=state,  # type: ignore[arg-type]
                page_size=100,
                page_token=token,
            )
        )
        out.extend(resp.deliveries)
        token = resp.next_page_token
        if not token:
            return out


async def eventually(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 20) -> None:
    """Poll `predicate` every 50 ms until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


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


DispatcherFactory = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def dispatchers(database_url: str, pool: object) -> AsyncIterator[DispatcherFactory]:
    """A factory of dispatchers over the test database with small backoffs (base 0.05 s,
    cap 0.5 s); each test gets its own durable queue (deleted afterwards), and dispatchers
    made in one test share it unless `queue` is given."""
    queue = f"croupier.webhooks.test-{uuid.uuid4().hex[:8]}"
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def make(**overrides: Any) -> Dispatcher:
        options: dict[str, Any] = {
            "amqp_url": AMQP_URL,
            "queue": queue,
            "max_in_flight": 8,
            "request_timeout": 2.0,
            "max_attempts": 4,
            "backoff_base": 0.05,
            "backoff_cap": 0.5,
            "poll_interval": 0.2,
        }
        settings = DispatcherSettings(database_url=database_url, **{**options, **overrides})
        d = Dispatcher(settings)
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        running.append((stop, task))
        await asyncio.wait_for(d.ready.wait(), 15)
        return d

    try:
        yield make
    finally:
        for stop, _ in running:
            stop.set()
        for _, task in running:
            await asyncio.wait_for(task, 15)
        with contextlib.suppress(Exception):
            conn = await aio_pika.connect(AMQP_URL, timeout=5)
            async with conn:
                ch = await conn.channel()
                await ch.queue_delete(queue)


ReceiverFactory = Callable[[], Awaitable[Receiver]]

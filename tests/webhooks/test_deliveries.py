"""Webhook deliveries end to end (issue 5 item 5): wallet -> outbox -> croupier-relay ->
RabbitMQ -> dispatcher -> real aiohttp receivers on loopback, with signatures, retries,
dead letters, type and tenant filters, the in-flight bound and several dispatchers."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from datetime import datetime

import aio_pika
import grpc
from croupier.events.v1 import subscription_service_pb2 as spb
from croupier.events.v1.subscription_service_pb2_grpc import SubscriptionServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.events.relay import EVENTS_EXCHANGE, Relay
from server.store import webhook_sql
from server.webhooks.signature import verify
from tests.rpc import eur, fails, key
from tests.webhooks.conftest import (
    AMQP_URL,
    SECRET,
    DispatcherFactory,
    Receiver,
    ReceiverFactory,
    deliveries,
    eventually,
    subscribe,
)

DEAD = spb.DELIVERY_STATE_DEAD_LETTERED
DELIVERED = spb.DELIVERY_STATE_DELIVERED


async def credit(w: WalletServiceStub, tenant: str, minor: int, player: str = "p") -> None:
    await w.Credit(
        pb.CreditRequest(
            tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(minor)
        )
    )


async def debit(w: WalletServiceStub, tenant: str, minor: int, player: str = "p") -> None:
    await w.Debit(
        pb.DebitRequest(
            tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(minor)
        )
    )


def event_ids(r: Receiver) -> list[str]:
    return [e["event_id"] for e in r.ok_events()]


async def test_receiver_gets_signed_deliveries_it_can_verify(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    await dispatchers()
    rx = await receivers()
    sub = await subscribe(subs, tenant, rx.url, "wallet.*")
    await credit(wallet, tenant, 1460)
    await debit(wallet, tenant, 460)
    await eventually(lambda: len(rx.ok_events()) == 2)
    assert sorted(e["event_type"] for e in rx.ok_events()) == ["wallet.credited", "wallet.debited"]
    for hit in rx.hits:
        h = hit.headers
        assert verify(SECRET, h["X-Timestamp"], hit.body, h["X-Signature"])
        assert not verify("another-secret-0123456789", h["X-Timestamp"], hit.body, h["X-Signature"])
        assert abs(int(h["X-Timestamp"]) - time.time()) < 30
        assert h["X-Signature"].startswith("sha256=")
        assert h["Content-Type"] == "application/json"
        event = hit.event
        assert h["X-Event-Id"] == event["event_id"]
        assert h["X-Event-Type"] == event["event_type"]
        assert h["X-Trace-Id"] == event["trace_id"]
        assert h["X-Delivery-Attempt"] == "1"
        assert event["tenant_id"] == tenant
        assert set(event) >= {"event_id", "schema_version", "occurred_at", "payload", "aggregate"}
    amounts = sorted(e["payload"]["amount"]["minor_units"] for e in rx.ok_events())
    assert amounts == [460, 1460]
    rows = await deliveries(subs, sub)
    assert [d.state for d in rows] == [DELIVERED, DELIVERED]
    assert all(d.attempts == 1 and d.last_http_status == 200 for d in rows)
    assert {d.event_id for d in rows} == set(event_ids(rx))


async def test_receiver_failing_for_a_while_gets_every_event_after_it_recovers(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    await dispatchers(max_attempts=30)
    rx = await receivers()

    # down until every event has been refused at least once and 12 attempts have failed: an
    # event's first attempt is always refused, whenever it arrives
    def status(n: int) -> int:
        first_try = [h.event["event_id"] for h in rx.hits].count(rx.hits[-1].event["event_id"]) == 1
        return (
            500 if first_try or len({h.event["event_id"] for h in rx.hits}) < 6 or n <= 12 else 200
        )

    rx.status = status
    sub = await subscribe(subs, tenant, rx.url, "wallet.credited")
    for i in range(6):
        await credit(wallet, tenant, 100 + i)
    await eventually(lambda: len(set(event_ids(rx))) == 6, timeout=30)
    failed = [h for h in rx.hits if h.headers.get("X-Answered") != "2xx"]
    assert len(failed) >= 12 and {h.event["event_id"] for h in failed} == set(event_ids(rx))
    rows = await deliveries(subs, sub)
    assert len(rows) == 6 and all(d.state == DELIVERED for d in rows)
    assert max(d.attempts for d in rows) > 1
    assert sorted(e["payload"]["amount"]["minor_units"] for e in rx.ok_events()) == list(
        range(100, 106)
    )
    # retries are signed afresh and carry their attempt number
    for hit in rx.hits:
        assert verify(SECRET, hit.headers["X-Timestamp"], hit.body, hit.headers["X-Signature"])
    assert max(int(h.headers["X-Delivery-Attempt"]) for h in rx.hits) > 1


async def test_receiver_that_never_recovers_ends_in_the_dead_letters(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    d = await dispatchers(max_attempts=3)
    rx = await receivers()
    rx.status = lambda n: 500
    sub = await subscribe(subs, tenant, rx.url, "wallet.*")
    # a subscriber that does not even listen: connection refused, no HTTP status
    gone = await subscribe(subs, tenant, "http://127.0.0.1:9/hook", "wallet.credited")
    await credit(wallet, tenant, 700)
    await credit(wallet, tenant, 800)

    async def all_dead() -> bool:
        return (
            len(await deliveries(subs, sub, DEAD)) == 2
            and len(await deliveries(subs, gone, DEAD)) == 2
        )

    await eventually(all_dead, timeout=30)
    dead = await deliveries(subs, sub, DEAD)
    assert all(x.attempts == 3 and x.last_http_status == 500 for x in dead)
    assert all(x.last_error == "HTTP 500" and x.HasField("finish_time") for x in dead)
    assert len(rx.hits) == 6  # exactly max_attempts per event, then nothing more
    refused = await deliveries(subs, gone, DEAD)
    assert all(x.attempts == 3 and x.last_http_status == 0 and x.last_error for x in refused)
    assert d.stats.dead_lettered >= 4
    await asyncio.sleep(0.6)  # longer than the backoff cap: still nothing more
    assert len(rx.hits) == 6

    # RedeliverDeadLetter: the receiver is fixed, one dead letter goes again and arrives
    rx.status = lambda n: 200
    req = spb.RedeliverDeadLetterRequest(
        tenant_id=tenant,
        idempotency_key=key(),
        subscription_id=sub.subscription_id,
        delivery_id=dead[0].delivery_id,
    )
    again = await subs.RedeliverDeadLetter(req)
    assert again.delivery.state == spb.DELIVERY_STATE_PENDING and again.delivery.attempts == 0
    assert await subs.RedeliverDeadLetter(req) == again  # idempotent replay
    await eventually(lambda: event_ids(rx) == [dead[0].event_id])
    await eventually(lambda: _state_of(subs, sub, dead[0].delivery_id, DELIVERED), timeout=10)
    await fails(
        subs.RedeliverDeadLetter(
            spb.RedeliverDeadLetterRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                subscription_id=sub.subscription_id,
                delivery_id=dead[0].delivery_id,
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "DELIVERY_NOT_DEAD_LETTERED",
    )
    await fails(
        subs.RedeliverDeadLetter(
            spb.RedeliverDeadLetterRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                subscription_id=sub.subscription_id,
                delivery_id=str(uuid.uuid4()),
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "DELIVERY_NOT_FOUND",
    )


async def _state_of(
    subs: SubscriptionServiceStub, sub: spb.Subscription, delivery_id: str, state: int
) -> bool:
    return any(
        x.delivery_id == delivery_id and x.state == state for x in await deliveries(subs, sub)
    )


async def test_exact_type_subscription_gets_nothing_else(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    await dispatchers()
    only_credits, everything = await receivers(), await receivers()
    narrow = await subscribe(subs, tenant, only_credits.url, "wallet.credited")
    await subscribe(subs, tenant, everything.url, "*")
    await credit(wallet, tenant, 10_000)
    await w_bet_and_settle(wallet, tenant)
    await debit(wallet, tenant, 50)
    await credit(wallet, tenant, 20)
    # `*` sees all 5 events; its deliveries were recorded in the same transactions as the
    # narrow subscription's, so once it has them all, the narrow one's decision is committed
    await eventually(lambda: len(everything.ok_events()) == 5)
    assert sorted(e["event_type"] for e in everything.ok_events()) == [
        "wallet.bet.authorized",
        "wallet.bet.settled",
        "wallet.credited",
        "wallet.credited",
        "wallet.debited",
    ]
    assert len(await deliveries(subs, narrow)) == 2
    await eventually(lambda: len(only_credits.ok_events()) == 2)
    assert {e["event_type"] for e in only_credits.ok_events()} == {"wallet.credited"}
    assert len(only_credits.hits) == 2


async def w_bet_and_settle(w: WalletServiceStub, tenant: str) -> None:
    await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b1", amount=eur(100)
        )
    )
    await w.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b1", win=eur(300)
        )
    )


async def test_another_tenants_events_never_arrive(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    await dispatchers()
    other = f"{tenant}-other"
    mine, theirs = await receivers(), await receivers()
    await subscribe(subs, tenant, mine.url, "*")
    await subscribe(subs, other, theirs.url, "*")
    for i in range(3):
        await credit(wallet, other, 1000 + i)
        await credit(wallet, tenant, 10 + i)
    await eventually(lambda: len(mine.ok_events()) == 3 and len(theirs.ok_events()) == 3)
    assert {e["tenant_id"] for e in mine.ok_events()} == {tenant}
    assert {e["tenant_id"] for e in theirs.ok_events()} == {other}
    assert len(mine.hits) == 3 and len(theirs.hits) == 3
    # another tenant cannot read the subscription or its deliveries either
    sub = (
        await subs.ListSubscriptions(spb.ListSubscriptionsRequest(tenant_id=tenant))
    ).subscriptions[0]
    await fails(
        subs.GetSubscription(
            spb.GetSubscriptionRequest(tenant_id=other, subscription_id=sub.subscription_id)
        ),
        grpc.StatusCode.NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )
    await fails(
        subs.ListDeliveries(
            spb.ListDeliveriesRequest(tenant_id=other, subscription_id=sub.subscription_id)
        ),
        grpc.StatusCode.NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
    )


async def test_in_flight_bound_is_respected_at_a_slow_receiver(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    d = await dispatchers(max_in_flight=3)
    slow = await receivers()
    slow.delay = 0.3
    await subscribe(subs, tenant, slow.url, "wallet.credited")
    await asyncio.gather(*(credit(wallet, tenant, 1 + i, player=f"p{i}") for i in range(12)))
    started = time.monotonic()
    await eventually(lambda: len(slow.ok_events()) == 12, timeout=30)
    assert slow.peak_concurrent == 3  # the bound is reached and never exceeded
    assert d.stats.peak_in_flight == 3
    assert time.monotonic() - started >= 0.3 * 12 / 3 * 0.9


async def test_a_slow_subscriber_cannot_take_every_slot(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    d = await dispatchers(max_in_flight=4, max_in_flight_per_subscription=2)
    slow, fast = await receivers(), await receivers()
    slow.delay = 1.0
    await subscribe(subs, tenant, slow.url, "wallet.credited")
    await subscribe(subs, tenant, fast.url, "wallet.debited")
    await asyncio.gather(*(credit(wallet, tenant, 100, player=f"p{i}") for i in range(8)))
    await eventually(lambda: slow.concurrent == 2)
    started = time.monotonic()
    await asyncio.gather(*(debit(wallet, tenant, 1, player=f"p{i}") for i in range(6)))
    await eventually(lambda: len(fast.ok_events()) == 6)
    fast_done = time.monotonic() - started
    assert len(slow.ok_events()) < 8  # the slow one is still working through its backlog
    await eventually(lambda: len(slow.ok_events()) == 8, timeout=30)
    assert slow.peak_concurrent == 2 and d.stats.peak_in_flight <= 4
    print(f"\nfast subscriber served in {fast_done * 1000:.0f} ms beside a 1 s subscriber")


async def test_redelivered_broker_message_creates_nothing_new(
    subs: SubscriptionServiceStub,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    d = await dispatchers()
    rx = await receivers()
    sub = await subscribe(subs, tenant, rx.url, "wallet.credited")
    event_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "event_id": event_id,
            "event_type": "wallet.credited",
            "schema_version": "1.0.0",
            "occurred_at": datetime.now().astimezone().isoformat(),
            "tenant_id": tenant,
            "trace_id": "tr_a1b2",
            "aggregate": f"account:{tenant}:p:EUR",
            "payload": {"amount": {"minor_units": 1, "currency": "EUR"}},
        },
        sort_keys=True,
    ).encode()
    conn = await aio_pika.connect(AMQP_URL, timeout=10)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        for _ in range(3):  # the broker (or a relay) delivering the same event again
            await ex.publish(
                aio_pika.Message(body, message_id=event_id), routing_key="wallet.credited"
            )
    await eventually(lambda: len(rx.ok_events()) >= 1)
    await asyncio.sleep(0.5)
    assert await d.record(body) == 0
    assert event_ids(rx) == [event_id]
    assert rx.hits[0].headers["X-Trace-Id"] == "tr_a1b2"
    assert rx.hits[0].body == body  # the exact published bytes are what is signed and sent
    assert len(await deliveries(subs, sub)) == 1


async def test_a_request_slower_than_the_timeout_is_a_failed_attempt(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    await dispatchers(request_timeout=0.3, max_attempts=2)
    rx = await receivers()
    rx.delay = 1.0
    sub = await subscribe(subs, tenant, rx.url, "wallet.credited")
    await credit(wallet, tenant, 1)

    async def dead() -> bool:
        return len(await deliveries(subs, sub, DEAD)) == 1

    await eventually(dead)
    (x,) = await deliveries(subs, sub)
    assert (x.attempts, x.last_http_status, x.last_error) == (2, 0, "timeout after 0.3 s")


async def test_a_delivery_abandoned_mid_request_is_attempted_again(
    pool: AsyncConnectionPool,
    subs: SubscriptionServiceStub,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    rx = await receivers()
    sub = await subscribe(subs, tenant, rx.url, "wallet.credited")
    event_id = uuid.uuid4()
    body = json.dumps({"event_id": str(event_id), "tenant_id": tenant}).encode()
    async with pool.connection() as conn:
        async with conn.transaction():
            await webhook_sql.record_event(
                conn,
                event_id=event_id,
                tenant_id=tenant,
                event_type="wallet.credited",
                trace_id="",
                body=body,
                subscription_ids=[uuid.UUID(sub.subscription_id)],
            )
        # a dispatcher claims it with a 0.5 s lease and dies before answering
        claimed = await webhook_sql.claim_due(conn, 1000, 0.5, 1000, {})
    assert event_id in {c.event_id for c in claimed}
    await dispatchers()
    await eventually(lambda: len(rx.ok_events()) == 1)
    assert rx.hits[0].headers["X-Delivery-Attempt"] == "2"

    async def delivered_on_attempt_2() -> bool:
        # the receiver answers before the dispatcher commits `delivered`
        return [(x.state, x.attempts) for x in await deliveries(subs, sub)] == [(DELIVERED, 2)]

    await eventually(delivered_on_attempt_2)


async def test_two_dispatchers_deliver_each_event_once(
    pool: AsyncConnectionPool,
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    first, second = await dispatchers(), await dispatchers()
    rx = await receivers()
    await subscribe(subs, tenant, rx.url, "wallet.credited")
    n = 60
    await asyncio.gather(*(credit(wallet, tenant, 1 + i, player=f"p{i % 10}") for i in range(n)))
    await eventually(lambda: len(rx.ok_events()) == n, timeout=30)
    await asyncio.sleep(0.3)
    ids = event_ids(rx)
    assert len(ids) == len(set(ids)) == n and len(rx.hits) == n
    assert first.stats.delivered + second.stats.delivered == n
    assert first.stats.delivered > 0 and second.stats.delivered > 0
    # how long a subscriber waits: from the commit (occurred_at) and from the moment the
    # dispatcher recorded the event (webhook_events.received_at) to the request's arrival
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_id::text, extract(epoch FROM received_at)::float8 FROM webhook_events"
            " WHERE tenant_id = %s",
            (tenant,),
        )
        recorded = dict(await cur.fetchall())
    total = sorted(
        (h.at - datetime.fromisoformat(h.event["occurred_at"]).timestamp()) * 1000 for h in rx.hits
    )
    own = sorted((h.at - recorded[h.event["event_id"]]) * 1000 for h in rx.hits)
    for name, lags in (("commit -> received", total), ("recorded -> received", own)):
        p50, p99 = statistics.median(lags), lags[int(len(lags) * 0.99) - 1]
        print(f"\nwebhook lag {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={n})")
    assert own[-1] < 5000


async def test_deleted_subscription_gets_nothing_new(
    wallet: WalletServiceStub,
    subs: SubscriptionServiceStub,
    relay: Relay,
    dispatchers: DispatcherFactory,
    receivers: ReceiverFactory,
    tenant: str,
) -> None:
    await dispatchers()
    rx, barrier = await receivers(), await receivers()
    sub = await subscribe(subs, tenant, rx.url, "wallet.credited")
    await subscribe(subs, tenant, barrier.url, "wallet.credited")
    await credit(wallet, tenant, 5)
    await eventually(lambda: len(rx.ok_events()) == 1)
    await subs.DeleteSubscription(
        spb.DeleteSubscriptionRequest(
            tenant_id=tenant, idempotency_key=key(), subscription_id=sub.subscription_id
        )
    )
    await credit(wallet, tenant, 6)
    await eventually(lambda: len(barrier.ok_events()) == 2)
    assert len(rx.hits) == 1
    history = await deliveries(subs, sub)  # history stays readable after the delete
    assert [x.state for x in history] == [DELIVERED]

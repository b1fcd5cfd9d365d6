"""Per-aggregate publish order over real PostgreSQL connections and the real RabbitMQ: the
relay must not depend on transaction ids or snapshots, and every envelope carries the
aggregate's sequence number (docs/events.md, "Order")."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.events.outbox import append_event
from server.events.relay import EVENTS_EXCHANGE, Relay
from tests.events.conftest import AMQP_URL, consume
from tests.events.test_relay import validate
from tests.rpc import eur, key

BIN = Path(sys.executable).parent


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def test_one_accounts_events_keep_lock_order_when_xid_order_differs(
    database_url: str,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    """T2 credits player A; T3 takes an xid and stays open; T1 debits P and commits; T2
    (which took its xid before T1 and T3) then gets P's lock, debits P and commits. P's events
    must be published in lock order (T1's, then T2's), without waiting for T3."""
    got = await consume(broker, EVENTS_EXCHANGE)
    player_a = f"account:{tenant}:A:EUR"
    player_p = f"account:{tenant}:P:EUR"
    t1, t2, t3 = [await _connect(database_url) for _ in range(3)]

    async def lock_account(conn: psycopg.AsyncConnection[Any], aggregate: str) -> None:
        # The account row lock of the wallet, as a transaction-level lock on its name.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (aggregate,))

    async def event(conn: psycopg.AsyncConnection[Any], aggregate: str, what: str) -> None:
        await append_event(
            conn,
            "wallet.debited" if what.startswith("debit") else "wallet.credited",
            aggregate=aggregate,
            tenant_id=tenant,
            payload={"what": what},
        )

    try:
        await t2.execute("BEGIN")
        await lock_account(t2, player_a)
        await event(t2, player_a, "credit A by T2")  # T2 has its xid now
        await t3.execute("BEGIN")
        await t3.execute("SELECT pg_current_xact_id()")  # T3 takes an xid and stays open
        await t1.execute("BEGIN")
        await lock_account(t1, player_p)
        await event(t1, player_p, "debit P by T1")

        async def t2_debits_p() -> None:
            await lock_account(t2, player_p)  # waits for T1
            await event(t2, player_p, "debit P by T2")
            await t2.execute("COMMIT")

        waiting = asyncio.create_task(t2_debits_p())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # T2 waits for P's lock
        await t1.execute("COMMIT")
        await asyncio.wait_for(waiting, 10)

        # T3 is still open: P's two events must both arrive, in order.
        await got.wait_for(
            lambda r: sum(b["aggregate"] == player_p for b in r.bodies(tenant)) == 2, timeout=15
        )
        p_events = [b for b in got.bodies(tenant) if b["aggregate"] == player_p]
        assert [b["payload"]["what"] for b in p_events] == ["debit P by T1", "debit P by T2"]
        assert [b["aggregate_seq"] for b in p_events] == [1, 2]
        await got.wait_for(lambda r: any(b["aggregate"] == player_a for b in r.bodies(tenant)))
    finally:
        await t3.execute("ROLLBACK")
        for conn in (t1, t2, t3):
            await conn.close()


async def test_envelopes_carry_the_aggregate_sequence(
    wallet: WalletServiceStub,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    got = await consume(broker, EVENTS_EXCHANGE)
    for player in ("p1", "p2"):
        for _ in range(4):
            await wallet.Credit(
                pb.CreditRequest(
                    tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(5)
                )
            )
    await got.wait_for(lambda r: len(r.bodies(tenant)) >= 8)
    by_aggregate: dict[str, list[int]] = defaultdict(list)
    for _, message, body in got.messages:
        if body["tenant_id"] != tenant:
            continue
        validate(body, body["event_type"])
        assert message.headers["aggregate_seq"] == body["aggregate_seq"]
        assert message.headers["aggregate"] == body["aggregate"]
        by_aggregate[body["aggregate"]].append(body["aggregate_seq"])
    assert by_aggregate == {
        f"account:{tenant}:p1:EUR": [1, 2, 3, 4],
        f"account:{tenant}:p2:EUR": [1, 2, 3, 4],
    }


async def test_concurrent_writers_and_three_relays_keep_each_aggregate_in_sequence(
    database_url: str,
    wallet: WalletServiceStub,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
) -> None:
    """Group-committed credits and debits of a few players at once, published by three
    relays sharing the partitions: each aggregate arrives as 1, 2, 3, ... once each."""
    got = await consume(broker, EVENTS_EXCHANGE)
    relays = [Relay(database_url, AMQP_URL, batch_size=7) for _ in range(3)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    players = [f"p{i}" for i in range(4)]
    per_player = 25

    async def play(player: str) -> None:
        await wallet.Credit(
            pb.CreditRequest(
                tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(10_000)
            )
        )
        await asyncio.gather(
            *(
                wallet.Debit(
                    pb.DebitRequest(
                        tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(3)
                    )
                )
                if i % 2
                else wallet.Credit(
                    pb.CreditRequest(
                        tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(2)
                    )
                )
                for i in range(per_player - 1)
            )
        )

    try:
        await asyncio.gather(*(play(p) for p in players))
        total = len(players) * per_player
        await got.wait_for(lambda r: len(r.bodies(tenant)) >= total, timeout=30)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    by_aggregate: dict[str, list[int]] = defaultdict(list)
    for body in got.bodies(tenant):
        by_aggregate[body["aggregate"]].append(body["aggregate_seq"])
    assert len(by_aggregate) == len(players)
    for seqs in by_aggregate.values():
        assert seqs == list(range(1, per_player + 1))


async def test_relay_sigkill_loses_nothing_and_keeps_each_aggregate_in_sequence(
    database_url: str,
    pool: AsyncConnectionPool,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
) -> None:
    """`croupier-relay` processes SIGKILLed again and again while events are written: every
    event arrives, and per aggregate a consumer sees 1, 2, 3, ... where anything out of line is
    a redelivery of a number it already has (same event_id)."""
    got = await consume(broker, EVENTS_EXCHANGE)
    env = {**os.environ, "CROUPIER_DATABASE_URL": database_url, "CROUPIER_AMQP_URL": AMQP_URL}
    env["CROUPIER_LOG_LEVEL"] = "WARNING"
    aggregates = [f"account:{tenant}:p{i}:EUR" for i in range(4)]
    per_aggregate = 120
    done = asyncio.Event()

    async def write() -> None:
        for n in range(per_aggregate):
            async with pool.connection() as conn, conn.transaction():
                for aggregate in aggregates:
                    await append_event(
                        conn,
                        "wallet.credited",
                        aggregate=aggregate,
                        tenant_id=tenant,
                        payload={"n": n},
                    )
            await asyncio.sleep(0.005)
        done.set()

    async def kill_relays() -> None:
        while True:
            relay = subprocess.Popen([str(BIN / "croupier-relay")], env=env)
            await asyncio.sleep(random.uniform(0.3, 0.8))
            relay.send_signal(signal.SIGKILL)
            relay.wait()
            if done.is_set():
                return

    await asyncio.gather(write(), kill_relays())
    final = subprocess.Popen([str(BIN / "croupier-relay")], env=env)
    try:
        total = len(aggregates) * per_aggregate
        await got.wait_for(
            lambda r: len({b["event_id"] for b in r.bodies(tenant)}) >= total, timeout=60
        )
    finally:
        final.send_signal(signal.SIGTERM)
        final.wait(15)
    last: dict[str, int] = defaultdict(int)
    ids: dict[tuple[str, int], str] = {}
    for body in got.bodies(tenant):
        key_ = (body["aggregate"], body["aggregate_seq"])
        assert ids.setdefault(key_, body["event_id"]) == body["event_id"]
        if body["aggregate_seq"] <= last[body["aggregate"]]:
            continue  # a redelivery after a kill
        assert body["aggregate_seq"] == last[body["aggregate"]] + 1, body
        assert body["payload"]["n"] == body["aggregate_seq"] - 1
        last[body["aggregate"]] = body["aggregate_seq"]
    assert last == {a: per_aggregate for a in aggregates}

"""Outbox and relay over the real RabbitMQ (issue 5): schemas, commit-only publishing, outage
recovery, several relays, the CRM casino feed."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import aio_pika
import grpc
import jsonschema
from croupier.wallet.v1 import round_service_pb2 as rpb
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.round_service_pb2_grpc import RoundServiceStub
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from server.events.catalog import WALLET_EVENTS
from server.events.outbox import append_event
from server.events.relay import CRM_EXCHANGE, EVENTS_EXCHANGE, Relay
from tests.events.conftest import AMQP_URL, Received, consume
from tests.rpc import eur, key

SCHEMAS = Path(__file__).resolve().parents[2] / "protos" / "events"


def validate(body: dict[str, Any], name: str) -> None:
    schema = json.loads((SCHEMAS / f"{name}.v1.json").read_text())
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(body)


async def _round_trip_all_types(w: WalletServiceStub, tenant: str) -> None:
    await w.Credit(
        pb.CreditRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(10_000), round_id=""
        )
    )
    await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b1",
            round_id="r1",
            game_id="g",
            amount=eur(100),
        )
    )
    await w.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b1",
            round_id="r1",
            win=eur(250),
        )
    )
    await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b2",
            round_id="r2",
            amount=eur(100),
        )
    )
    await w.CancelBet(
        pb.CancelBetRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b2")
    )
    await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b3",
            round_id="r3",
            amount=eur(100),
            hold_ttl=duration_pb2.Duration(seconds=1),
        )
    )
    dk = key()
    await w.Debit(
        pb.DebitRequest(
            tenant_id=tenant, player_id="p", idempotency_key=dk, amount=eur(40), round_id="r4"
        )
    )
    await w.RollbackTransaction(
        pb.RollbackTransactionRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), target_idempotency_key=dk
        )
    )


async def _round_steps(r: RoundServiceStub, tenant: str) -> None:
    for win, final in ((30, False), (20, True)):
        await r.PlayRoundStep(
            rpb.PlayRoundStepRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                round_id="r5",
                bet=eur(10),
                win=eur(win),
                final=final,
            )
        )


async def test_every_wallet_event_arrives_with_valid_schema(
    wallet: WalletServiceStub,
    channel: grpc.aio.Channel,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    got = await consume(broker, EVENTS_EXCHANGE)
    await _round_trip_all_types(wallet, tenant)
    await _round_steps(RoundServiceStub(channel), tenant)
    await got.wait_for(lambda r: {b["event_type"] for b in r.bodies(tenant)} >= set(WALLET_EVENTS))
    for routing_key, message, body in got.messages:
        if body["tenant_id"] != tenant:
            continue
        validate(body, body["event_type"])
        assert routing_key == body["event_type"] == message.type
        assert message.message_id == body["event_id"]
    ids = [b["event_id"] for b in got.bodies(tenant)]
    assert len(ids) == len(set(ids))


async def test_nothing_published_for_refused_or_rolled_back_writes(
    wallet: WalletServiceStub,
    tenant: str,
    pool: AsyncConnectionPool,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    got = await consume(broker, EVENTS_EXCHANGE)
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(5))
    )
    for _ in range(3):  # refused: insufficient funds
        try:
            await wallet.Debit(
                pb.DebitRequest(
                    tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(50)
                )
            )
        except Exception:
            pass
    async with pool.connection() as conn:  # a transaction that rolls back
        try:
            async with conn.transaction():
                await append_event(
                    conn, "wallet.debited", aggregate="x", tenant_id=tenant, payload={"never": True}
                )
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(6))
    )
    await got.wait_for(lambda r: len(r.bodies(tenant)) >= 2)
    await asyncio.sleep(1.0)
    assert [b["event_type"] for b in got.bodies(tenant)] == ["wallet.credited"] * 2


async def test_crm_feed_keeps_bet_before_win(
    wallet: WalletServiceStub,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    got = await consume(broker, CRM_EXCHANGE)
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(10_000))
    )
    for i in range(20):
        await wallet.AuthorizeBet(
            pb.AuthorizeBetRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                bet_id=f"b{i}",
                round_id=f"r{i}",
                game_id="g",
                amount=eur(125),
                metadata={"game_name": "Book of Dead", "game_type": "Slots"},
            )
        )
        await wallet.SettleBet(
            pb.SettleBetRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                bet_id=f"b{i}",
                round_id=f"r{i}",
                win=eur(300 if i % 2 else 0),
            )
        )
    await got.wait_for(lambda r: len(r.bodies(tenant)) >= 40)
    bodies = got.bodies(tenant)
    for _, message, body in got.messages:
        if body["meta"]["tenant_id"] == tenant:
            assert message.type == "CASINO"
            validate(body, "crm.casino")
            assert body["amount"] == body["wager_amount"]
    for i in range(20):
        kinds = [b["type"] for b in bodies if b["round_id"] == f"r{i}"]
        assert kinds == ["Bet", "Win" if i % 2 else "Loss"]
    first_bet = next(b for b in bodies if b["type"] == "Bet")
    assert first_bet["amount"] == 1.25 and first_bet["game_name"] == "Book of Dead"
    raw = next(m for _, m, b in got.messages if b is first_bet).body.decode()
    assert '"amount": 1.25' in raw  # an exact decimal literal, rendered from minor units


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


async def test_broker_outage_loses_nothing(
    wallet: WalletServiceStub,
    tenant: str,
    relay: Relay,
) -> None:
    """Stop RabbitMQ during a load of writes, start it again: every event arrives, and the
    consumer can de-duplicate by event_id."""
    queue_name = f"outage-{tenant}"
    conn = await aio_pika.connect(AMQP_URL)
    ch = await conn.channel()
    q = await ch.declare_queue(queue_name, durable=True)
    await q.bind(EVENTS_EXCHANGE, routing_key="wallet.credited")
    await conn.close()
    await asyncio.to_thread(_rabbitmqctl, "stop_app")
    try:
        await asyncio.gather(
            *(
                wallet.Credit(
                    pb.CreditRequest(
                        tenant_id=tenant,
                        player_id=f"p{i % 5}",
                        idempotency_key=key(),
                        amount=eur(1 + i),
                    )
                )
                for i in range(100)
            )
        )
    finally:
        await asyncio.to_thread(_rabbitmqctl, "start_app")
    await asyncio.to_thread(_rabbitmqctl, "await_startup")
    received = Received()
    conn = await aio_pika.connect(AMQP_URL)
    ch = await conn.channel()
    q = await ch.declare_queue(queue_name, durable=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            received.messages.append(("", message, json.loads(message.body)))

    await q.consume(on_message)
    try:
        await received.wait_for(
            lambda r: len({b["event_id"] for b in r.bodies(tenant)}) >= 100, timeout=60
        )
        amounts = sorted(
            {
                b["event_id"]: b["payload"]["amount"]["minor_units"]
                for b in received.bodies(tenant)
            }.values()
        )
        assert amounts == list(range(1, 101))
    finally:
        await q.delete(if_unused=False, if_empty=False)
        await conn.close()


async def test_two_relays_publish_each_event_once(
    wallet: WalletServiceStub,
    tenant: str,
    database_url: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    got = await consume(broker, EVENTS_EXCHANGE, "wallet.credited")
    second = Relay(database_url, AMQP_URL)
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    try:
        await asyncio.gather(
            *(
                wallet.Credit(
                    pb.CreditRequest(
                        tenant_id=tenant,
                        player_id=f"p{i % 17}",
                        idempotency_key=key(),
                        amount=eur(1),
                    )
                )
                for i in range(300)
            )
        )
        await got.wait_for(lambda r: len(r.bodies(tenant)) >= 300)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    counts = Counter(b["event_id"] for b in got.bodies(tenant))
    assert len(counts) == 300 and set(counts.values()) == {1}
    # per player (aggregate) the balances after each credit only grow: commit order kept
    by_player: dict[str, list[int]] = {}
    for b in got.bodies(tenant):
        by_player.setdefault(b["payload"]["player_id"], []).append(
            b["payload"]["balance_after"]["available"]["minor_units"]
        )
    for seq in by_player.values():
        assert seq == sorted(seq)

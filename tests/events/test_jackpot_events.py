"""Jackpot events (issue 5): every jp.* and audit event type arrives with a valid schema, in
the order of the pool's history."""

from __future__ import annotations

import asyncio

import aio_pika
import grpc
import pytest
from croupier.common.v1 import account_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from server.events.catalog import JACKPOT_EVENTS
from server.events.relay import EVENTS_EXCHANGE, Relay
from tests.events.conftest import consume
from tests.events.test_relay import validate
from tests.jackpot.conftest import contribution, create, tier
from tests.rpc import key


@pytest.fixture
def jackpot(channel: grpc.aio.Channel) -> JackpotServiceStub:
    """The JackpotService stub over the test server's channel."""
    return JackpotServiceStub(channel)


async def test_every_jackpot_event_arrives_with_valid_schema(
    wallet: WalletServiceStub,
    jackpot: JackpotServiceStub,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    got = await consume(broker, EVENTS_EXCHANGE)
    must_drop = tier(
        "mini",
        trigger=jpb.TRIGGER_KIND_MUST_DROP,
        seed_minor_units=100,
        must_drop_min_minor_units=101,
        must_drop_max_minor_units=105,
        contribution_rate_ppm=500_000,
    )
    jp = await create(jackpot, tenant, must_drop)
    await wallet.SetPlayerStatus(
        pb.SetPlayerStatusRequest(
            tenant_id=tenant,
            player_id="blocked",
            idempotency_key=key(),
            status=account_pb2.PLAYER_STATUS_BLOCKED,
        )
    )
    for player in ("p1", "blocked"):  # each cycle drops within 5 minor units of the seed
        for _ in range(20):
            r = await jackpot.Contribute(contribution(tenant, jp.jackpot_id, 10, player=player))
            if any(t.hit for t in r.tiers):
                break
    await got.wait_for(
        lambda r: {b["event_type"] for b in r.bodies(tenant)} >= set(JACKPOT_EVENTS), timeout=30
    )
    for body in got.bodies(tenant):
        validate(body, body["event_type"])
    by_pool = [  # the pool's own aggregate (contributions are ordered per pool shard)
        b["event_type"]
        for b in got.bodies(tenant)
        if b["event_type"].startswith("jp.")
        and b["aggregate"].startswith("pool:")
        and ":shard:" not in b["aggregate"]
    ]
    first_hit = by_pool.index("jp.triggered")
    assert by_pool[first_hit : first_hit + 3] == [
        "jp.triggered",
        "jp.payout.requested",
        "jp.pool.updated",
    ]
    await asyncio.sleep(0)

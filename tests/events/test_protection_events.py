"""Player-protection events on the real RabbitMQ: rg.limit.changed, rg.limit.hit and
rg.exclusion.changed arrive once per request with valid schemas; a replayed refusal publishes
nothing more."""

from __future__ import annotations

import aio_pika
import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from server.events.catalog import AML_EVENTS, PROTECTION_EVENTS
from server.events.relay import EVENTS_EXCHANGE, Relay
from tests.events.conftest import consume
from tests.events.test_relay import validate
from tests.jackpot.test_aml_review import reviewed_win
from tests.rpc import eur, fails, key


async def test_limit_events_arrive_with_valid_schemas(
    wallet: WalletServiceStub,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    got = await consume(broker, EVENTS_EXCHANGE, "rg.#")
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(900))
    )
    await wallet.SetLimit(
        pb.SetLimitRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            kind=pb.LIMIT_KIND_DEPOSIT,
            window=pb.LIMIT_WINDOW_DAY,
            amount=eur(100),
        )
    )
    refused = pb.CreditRequest(
        tenant_id=tenant,
        player_id="p",
        idempotency_key=key(),
        amount=eur(150),
        reason=pb.CREDIT_REASON_DEPOSIT,
    )
    for _ in range(3):  # the first refusal writes the event; replays publish nothing more
        await fails(
            wallet.Credit(refused), grpc.StatusCode.FAILED_PRECONDITION, "DEPOSIT_LIMIT_EXCEEDED"
        )
    await wallet.SetExclusion(
        pb.SetExclusionRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            kind=pb.EXCLUSION_KIND_SELF_EXCLUSION,
            reason="asked",
        )
    )
    await got.wait_for(
        lambda r: {b["event_type"] for b in r.bodies(tenant)} >= set(PROTECTION_EVENTS)
    )
    bodies = got.bodies(tenant)
    for body in bodies:
        validate(body, body["event_type"])
    hits = [b for b in bodies if b["event_type"] == "rg.limit.hit"]
    assert len(hits) == 1
    p = hits[0]["payload"]
    assert (p["kind"], p["window"], p["operation"]) == ("deposit", "day", "deposit")
    assert p["attempted"] == {"minor_units": 150, "currency": "EUR"}
    assert p["remaining"] == {"minor_units": 100, "currency": "EUR"}
    assert hits[0]["aggregate"] == f"account:{tenant}:p:EUR"
    changed = [b for b in bodies if b["event_type"] == "rg.limit.changed"]
    assert len(changed) == 1 and changed[0]["payload"]["applied"] is True
    assert changed[0]["payload"]["limit"] == {"minor_units": 100, "currency": "EUR"}
    excluded = [b for b in bodies if b["event_type"] == "rg.exclusion.changed"]
    assert len(excluded) == 1
    assert excluded[0]["payload"]["kind"] == "self_exclusion"
    assert excluded[0]["payload"]["end_time"] is None
    assert excluded[0]["aggregate"] == f"rg:{tenant}:p"


async def test_aml_events_arrive_with_valid_schemas(
    wallet: WalletServiceStub,
    channel: grpc.aio.Channel,
    tenant: str,
    broker: aio_pika.abc.AbstractRobustConnection,
    relay: Relay,
) -> None:
    jackpot = JackpotServiceStub(channel)
    got = await consume(broker, EVENTS_EXCHANGE, "aml.#")
    _, review = await reviewed_win(jackpot, wallet, tenant, "whale")
    await jackpot.RejectReview(
        jpb.RejectReviewRequest(
            tenant_id=tenant, idempotency_key=key(), review_id=review.review_id, reason="no KYC"
        )
    )
    await got.wait_for(lambda r: {b["event_type"] for b in r.bodies(tenant)} >= set(AML_EVENTS))
    bodies = got.bodies(tenant)
    for body in bodies:
        validate(body, body["event_type"])
    assert [b["event_type"] for b in bodies] == ["aml.alert.opened", "aml.alert.resolved"]
    assert [b["aggregate_seq"] for b in bodies] == [1, 2]
    assert bodies[0]["payload"]["amount"] == {"minor_units": 10_500, "currency": "EUR"}
    assert bodies[1]["payload"]["decision"] == "rejected"
    assert bodies[1]["payload"]["reason"] == "no KYC"

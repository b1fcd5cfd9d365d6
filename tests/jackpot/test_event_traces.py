"""Events written by background jobs (hold expiry, deadline drops, payout retries) carry a
trace id of their own: a valid W3C trace id, never "" (docs/events.md)."""

from __future__ import annotations

import asyncio
import re

from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from server.app import App
from server.events.outbox import append_event
from server.jackpot.model import TriggerCmd
from tests.jackpot.conftest import contribution, create, tier
from tests.rpc import eur, key

TRACE_ID = re.compile(r"^(?!0{32})[0-9a-f]{32}$")


def is_valid_trace_id(value: str) -> bool:
    """A W3C trace id: 32 lowercase hex digits, not all zero."""
    return bool(TRACE_ID.match(value))


async def _events(
    pool: AsyncConnectionPool, tenant: str, types: set[str], seconds: float = 15
) -> dict[str, list[str]]:
    """event type -> trace ids of the tenant's events, once every type in `types` is there."""
    found: dict[str, list[str]] = {}
    for _ in range(int(seconds / 0.1)):
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT event_type, trace_id FROM outbox WHERE tenant_id = %s ORDER BY seq",
                (tenant,),
            )
            found = {}
            for event_type, trace_id in await cur.fetchall():
                found.setdefault(event_type, []).append(trace_id)
        if types <= set(found):
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"missing events {types - set(found)}: {found}")


async def test_hold_expiry_events_carry_a_trace_of_their_own(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    await wallet.Credit(
        wpb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(500))
    )
    await wallet.AuthorizeBet(
        wpb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b1",
            round_id="r1",
            amount=eur(100),
            hold_ttl=duration_pb2.Duration(seconds=1),
        ),
        metadata=(("x-trace-id", "a" * 32),),
    )
    found = await _events(pool, tenant, {"wallet.bet.expired"})
    (expired,) = found["wallet.bet.expired"]
    assert is_valid_trace_id(expired), expired
    assert expired != "a" * 32  # the sweeper's own trace, not the authorizing request's


async def test_deadline_drop_and_its_payout_events_carry_a_trace(
    jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier(trigger=pb.TRIGGER_KIND_DEADLINE, deadline_min_seconds=1, deadline_max_seconds=1),
    )
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1000, player="last"))
    kinds = {"jp.triggered", "jp.payout.requested", "jp.pool.updated", "jp.payout.credited"}
    found = await _events(pool, tenant, kinds | {"wallet.credited"})
    for event_type in kinds | {"wallet.credited"}:
        for trace_id in found[event_type]:
            assert is_valid_trace_id(trace_id), (event_type, trace_id)


async def test_payout_retry_events_carry_a_trace(
    app: App, jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    """A win left `requested` (no request kicked its payout) is paid by the retrier."""
    j = await create(jackpot, tenant, tier(seed_minor_units=555))
    assert app.jackpots is not None and app.payouts is not None
    async with pool.connection() as conn, conn.transaction():
        await app.jackpots.trigger(
            conn,
            TriggerCmd(
                tenant_id=tenant,
                idempotency_key=key(),
                pool_id=j.pools[0].pool_id,
                reason="random_hit",
                player_id="winner",
                round_id="r1",
                game_id="g1",
            ),
        )
    found = await _events(pool, tenant, {"jp.payout.credited", "wallet.credited"})
    for event_type in ("jp.payout.credited", "wallet.credited"):
        for trace_id in found[event_type]:
            assert is_valid_trace_id(trace_id), (event_type, trace_id)


async def test_an_event_written_outside_any_trace_gets_one(
    pool: AsyncConnectionPool, tenant: str
) -> None:
    async with pool.connection() as conn, conn.transaction():
        await append_event(
            conn,
            "wallet.credited",
            aggregate=f"account:{tenant}:p:EUR",
            tenant_id=tenant,
            payload={"transaction_id": "x"},
        )
    found = await _events(pool, tenant, {"wallet.credited"})
    assert all(is_valid_trace_id(t) for t in found["wallet.credited"])

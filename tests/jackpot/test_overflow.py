"""Jackpot amounts near int64 over real gRPC: refused with a reason, never INTERNAL.

A pool's whole value (its cycle's base, the visible contributions and the hidden reseed and
carried overflow) stays within 2^63-1 minor units; configuration amounts stay within 2^62 so a
pool always has room to grow.
"""

from __future__ import annotations

import asyncio

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from server.money import INT64_MAX
from tests.jackpot.conftest import amount, contribution, create, reconciled, tier
from tests.rpc import error_info, eur, fails, key

IA = grpc.StatusCode.INVALID_ARGUMENT
FP = grpc.StatusCode.FAILED_PRECONDITION
LIMIT = 2**62  # the largest seed, cap or must-drop amount


async def test_max_bet_and_contribution_is_refused_not_internal(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    """Bet and contribution both 2^63-1 on a pool seeded with 1000: the pool would pass int64.
    Refused (and replayed as refused); the pool is unchanged and keeps working."""
    for spec in (tier(), tier(shards=4), tier(cap_minor_units=10**6)):
        j = await create(jackpot, tenant, spec)
        pool_id = j.pools[0].pool_id
        req = contribution(tenant, j.jackpot_id, INT64_MAX, contribution=eur(INT64_MAX))
        first = await fails(jackpot.Contribute(req), FP, "AMOUNT_OVERFLOW")
        again = await fails(jackpot.Contribute(req), FP, "AMOUNT_OVERFLOW")
        assert first.trailing_metadata() == again.trailing_metadata()
        assert await amount(jackpot, tenant, pool_id) == 1000
        r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 10_000))
        assert r.tiers[0].pool_amount.minor_units == 1100
    await reconciled(jackpot, tenant)


async def test_config_amounts_past_the_limit_are_refused(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    """A seed of 2^63-1 would make every contribution overflow: refused at configuration,
    naming the field."""
    for field, spec in (
        ("tiers[0].seed_minor_units", tier(seed_minor_units=INT64_MAX)),
        ("tiers[0].cap_minor_units", tier(cap_minor_units=INT64_MAX)),
        (
            "tiers[0].must_drop_max_minor_units",
            tier(
                trigger=pb.TRIGGER_KIND_MUST_DROP,
                must_drop_min_minor_units=2000,
                must_drop_max_minor_units=INT64_MAX,
            ),
        ),
    ):
        err = await fails(create(jackpot, tenant, spec), IA, "AMOUNT_OVERFLOW")
        assert error_info(err).metadata["field"] == field
    # the limit itself is accepted, and a pool at the limit still takes contributions
    j = await create(jackpot, tenant, tier(seed_minor_units=LIMIT, contribution_rate_ppm=10**6))
    pool_id = j.pools[0].pool_id
    await fails(
        jackpot.Contribute(contribution(tenant, j.jackpot_id, LIMIT)), FP, "AMOUNT_OVERFLOW"
    )
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, LIMIT - 1))
    assert r.tiers[0].pool_amount.minor_units == INT64_MAX
    await fails(jackpot.Contribute(contribution(tenant, j.jackpot_id, 1)), FP, "AMOUNT_OVERFLOW")
    assert await amount(jackpot, tenant, pool_id) == INT64_MAX
    hit = await jackpot.Trigger(
        pb.TriggerRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=pool_id,
            reason="t",
            selector=pb.TriggerSelector(player_id="p1", round_id=f"r-{key()}"),
        )
    )
    assert hit.win.amount.minor_units == INT64_MAX
    assert await amount(jackpot, tenant, pool_id) == LIMIT


async def test_converted_bet_past_int64_is_refused(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    """rate x conversion past int64: INVALID_ARGUMENT naming the bet."""
    j = await create(jackpot, tenant, tier(), conversion_rates_micro={"JPY": 10**15})
    err = await fails(
        jackpot.Contribute(contribution(tenant, j.jackpot_id, INT64_MAX // 1000, currency="JPY")),
        IA,
        "AMOUNT_OVERFLOW",
    )
    assert error_info(err).metadata["field"] == "bet.minor_units"
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1, currency="JPY"))
    assert r.tiers[0].pool_amount.minor_units == 1000 + 10_000_000  # 1 JPY = 10^9 EUR cents


async def test_one_overflowing_contribution_in_a_batch(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    """Concurrent contributions (group-committed) with one that would overflow: that one is
    refused, every other is applied."""
    j = await create(jackpot, tenant, tier(shards=2))
    pool_id = j.pools[0].pool_id
    calls = [
        jackpot.Contribute(
            contribution(tenant, j.jackpot_id, INT64_MAX, contribution=eur(INT64_MAX))
        )
    ] + [jackpot.Contribute(contribution(tenant, j.jackpot_id, 10_000)) for _ in range(30)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[0], grpc.aio.AioRpcError) and results[0].code() == FP, results[0]
    assert all(not isinstance(r, BaseException) for r in results[1:]), results
    assert await amount(jackpot, tenant, pool_id) == 1000 + 30 * 100
    await reconciled(jackpot, tenant)


async def test_a_pool_that_cannot_drop_never_stalls_the_deadline_drops(
    jackpot: JackpotServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    """Two DEADLINE pools due, the first one's drop fails (its hidden reseed was set past what
    the next cycle's base can hold, by a direct write: no call can create it): the second one
    still drops; the first is set aside (counted), never stalls the pass."""
    spec = tier(trigger=pb.TRIGGER_KIND_DEADLINE, deadline_min_seconds=1, deadline_max_seconds=1)
    bad = await create(jackpot, tenant, spec)
    good = await create(jackpot, tenant, spec)
    for j in (bad, good):
        await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1000, player="last"))
    bad_pool = bad.pools[0].pool_id
    before = REGISTRY.get_sample_value(
        "croupier_background_rows_set_aside_total",
        {"job": "deadline_drop", "reason": "AMOUNT_OVERFLOW"},
    )
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE jp_pool_shards SET reseed = %s WHERE pool_id = %s", (INT64_MAX - 5, bad_pool)
        )
    try:
        wins = pb.ListWinsResponse()
        for _ in range(80):
            await asyncio.sleep(0.1)
            wins = await jackpot.ListWins(pb.ListWinsRequest(tenant_id=tenant))
            if wins.wins:
                break
        assert [w.pool_id for w in wins.wins] == [good.pools[0].pool_id]
        after = REGISTRY.get_sample_value(
            "croupier_background_rows_set_aside_total",
            {"job": "deadline_drop", "reason": "AMOUNT_OVERFLOW"},
        )
        assert (after or 0) > (before or 0)
        got = await jackpot.GetPool(pb.GetPoolRequest(tenant_id=tenant, pool_id=bad_pool))
        assert got.pool.cycle == 1
    finally:
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE jp_pool_shards SET reseed = 0 WHERE pool_id = %s", (bad_pool,)
            )

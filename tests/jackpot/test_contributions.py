"""Contributions: rates, carried fractions, caps, replays, reordering and a hot network pool
(issue 3 sections 3 and 9, PRODUCT.md invariants 1, 3, 4, 5)."""

from __future__ import annotations

import asyncio
import random

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from psycopg_pool import AsyncConnectionPool

from tests.jackpot.conftest import amount, contribution, create, reconciled, tier
from tests.rpc import eur, fails, key


async def test_rate_split_and_carried_fraction(jackpot: JackpotServiceStub, tenant: str) -> None:
    # 1.5% of a 1-cent bet is 0.015 cents: nothing is lost, every 1/0.015 bets carry a cent.
    j = await create(
        jackpot,
        tenant,
        tier(seed_minor_units=0, contribution_rate_ppm=15_000, reseed_split_ppm=250_000),
    )
    pool_id = j.pools[0].pool_id
    total = 0
    for _ in range(200):
        r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1))
        t = r.tiers[0]
        total += t.contribution.minor_units + t.reseed.minor_units
    assert total == 3  # 200 * 0.015 = 3.0 cents, exactly
    big = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 10_000))
    # 150 cents: 25% (37.5 -> 37, fraction carried) to the reseed pool, the rest visible
    assert big.tiers[0].reseed.minor_units in (37, 38)
    assert big.tiers[0].contribution.minor_units + big.tiers[0].reseed.minor_units == 150
    rec = await reconciled(jackpot, tenant)
    assert rec.pools[0].fraction_drift == 0
    assert rec.pools[0].amount_minor_units == await amount(jackpot, tenant, pool_id)


async def test_caller_computed_contribution_is_taken_as_sent(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier(seed_minor_units=0))
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 200, contribution=eur(2)))
    assert r.tiers[0].contribution.minor_units == 2 and r.tiers[0].pool_amount.minor_units == 2
    await fails(
        jackpot.Contribute(contribution(tenant, j.jackpot_id, 200, contribution=eur(201))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CONTRIBUTION_EXCEEDS_BET",
    )
    multi = await create(jackpot, tenant, tier("a"), tier("b"))
    await fails(
        jackpot.Contribute(contribution(tenant, multi.jackpot_id, 200, contribution=eur(2))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CONTRIBUTION_NEEDS_SINGLE_TIER",
    )


async def test_min_bet_and_games_qualify(jackpot: JackpotServiceStub, tenant: str) -> None:
    j = await create(
        jackpot, tenant, tier("mini"), tier("grand", min_bet_minor_units=1000), game_ids=["g1"]
    )
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 500))
    assert [(t.tier, t.qualified, t.not_qualified_reason) for t in r.tiers] == [
        ("mini", True, ""),
        ("grand", False, "BELOW_MIN_BET"),
    ]
    other = contribution(tenant, j.jackpot_id, 5000)
    other.game_id = "g2"
    r = await jackpot.Contribute(other)
    assert {t.not_qualified_reason for t in r.tiers} == {"GAME_NOT_INCLUDED"}


async def test_cap_carries_overflow_to_the_next_cycle(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier(seed_minor_units=1000, cap_minor_units=1100, contribution_rate_ppm=100_000),
    )
    pool_id = j.pools[0].pool_id
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1500))  # 150: 100 fits
    t = r.tiers[0]
    assert (t.contribution.minor_units, t.overflow.minor_units) == (100, 50)
    assert t.pool_amount.minor_units == 1100
    win = await jackpot.Trigger(
        pb.TriggerRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=pool_id,
            selector=pb.TriggerSelector(player_id="p1"),
        )
    )
    assert win.win.amount.minor_units == 1100
    assert await amount(jackpot, tenant, pool_id) == 1000 + 50  # seed + carried overflow
    await reconciled(jackpot, tenant)


async def test_cap_stop_growing_does_not_collect_the_excess(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier(
            seed_minor_units=1000,
            cap_minor_units=1100,
            contribution_rate_ppm=100_000,
            overflow_policy=pb.OVERFLOW_POLICY_STOP_GROWING,
        ),
    )
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1500))
    t = r.tiers[0]
    assert (t.contribution.minor_units, t.not_collected.minor_units) == (100, 50)
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1500))
    assert r.tiers[0].not_collected.minor_units == 150
    await reconciled(jackpot, tenant)


async def test_replay_returns_the_same_bytes_and_reuse_is_refused(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier(seed_minor_units=0))
    pool_id = j.pools[0].pool_id
    req = contribution(tenant, j.jackpot_id, 10_000)
    first = await jackpot.Contribute(req)
    again = await asyncio.gather(*(jackpot.Contribute(req) for _ in range(5)))
    for r in again:
        assert r.SerializeToString(deterministic=True) == first.SerializeToString(
            deterministic=True
        )
    assert await amount(jackpot, tenant, pool_id) == 100
    changed = pb.ContributeRequest()
    changed.CopyFrom(req)
    changed.bet.minor_units = 20_000
    await fails(
        jackpot.Contribute(changed), grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED"
    )
    await fails(
        jackpot.Contribute(contribution(tenant, j.jackpot_id, 0)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_AMOUNT",
    )


async def test_reordered_and_duplicated_delivery_gives_the_same_pool(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier(seed_minor_units=0, contribution_rate_ppm=12_345))
    pool_id = j.pools[0].pool_id
    bets = [random.randint(1, 50_000) for _ in range(60)]
    requests = [contribution(tenant, j.jackpot_id, b) for b in bets]
    deliveries = requests + random.sample(requests, 30)  # duplicates
    random.shuffle(deliveries)
    await asyncio.gather(*(jackpot.Contribute(r) for r in deliveries))
    expected_micro = sum(b * 12_345 for b in bets)
    got = await amount(jackpot, tenant, pool_id)
    assert expected_micro // 1_000_000 - 1 <= got <= expected_micro // 1_000_000
    rec = await reconciled(jackpot, tenant)
    assert rec.pools[0].contributions_minor_units == got


async def test_one_thousand_concurrent_contributions_to_a_hot_network_pool(
    jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    members = tuple(f"{tenant}-op{i}" for i in range(5))
    j = await create(jackpot, tenant, tier(seed_minor_units=50_000, shards=16), network=members)
    pool_id = j.pools[0].pool_id
    bets = [random.randint(100, 10_000) for _ in range(1000)]
    sem = asyncio.Semaphore(64)

    async def one(i: int, bet: int) -> int:
        async with sem:
            r = await jackpot.Contribute(contribution(members[i % 5], j.jackpot_id, bet))
            return r.tiers[0].contribution.minor_units

    parts = await asyncio.gather(*(one(i, b) for i, b in enumerate(bets)))
    total = await amount(jackpot, tenant, pool_id)
    assert total == 50_000 + sum(parts)
    # 1% of each bet, fractions carried per counter row: at most one cent per row unpaid
    assert sum(bets) // 100 - 16 <= sum(parts) <= sum(bets) // 100
    rec = await reconciled(jackpot, tenant)
    assert rec.pools[0].contributions_minor_units == sum(parts)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), count(DISTINCT shard) FROM jp_pool_shards WHERE pool_id = %s"
            " AND contributions > 0",
            (pool_id,),
        )
        row = await cur.fetchone()
    # spread: each batch takes one random counter row of the 16, so 1,000 contributions (one
    # batch of up to 64 at a time) land on several rows, never on one hot row
    assert row is not None and row[0] >= 4


async def test_bets_in_another_currency_convert_with_the_fraction_carried(
    jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    # 1 USD cent = 0.92 EUR cents, 1 JPY = 0.62 EUR cents; 1.5% contribution
    j = await create(
        jackpot,
        tenant,
        tier(seed_minor_units=0, contribution_rate_ppm=15_000, min_bet_minor_units=90),
        conversion_rates_micro={"USD": 920_000, "JPY": 620_000},
    )
    pool_id = j.pools[0].pool_id
    assert dict(j.conversion_rates_micro) == {"USD": 920_000, "JPY": 620_000}
    bets = [("USD", 333)] * 50 + [("JPY", 777)] * 50
    for currency, minor in bets:
        await jackpot.Contribute(contribution(tenant, j.jackpot_id, minor, currency=currency))
    exact_pico = sum(m * (920_000 if c == "USD" else 620_000) * 15_000 for c, m in bets)
    got = await amount(jackpot, tenant, pool_id)
    assert got == exact_pico // 10**12  # one counter row: every fraction carried forward
    below = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 97, currency="USD"))
    assert below.tiers[0].not_qualified_reason == "BELOW_MIN_BET"  # 0.89 EUR < 0.90
    rec = await reconciled(jackpot, tenant)
    assert rec.pools[0].fraction_drift == 0
    req = contribution(tenant, j.jackpot_id, 100)
    req.bet.currency = "GBP"
    await fails(jackpot.Contribute(req), grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH")
    listed = await jackpot.ListContributions(
        pb.ListContributionsRequest(tenant_id=tenant, pool_id=pool_id, cycle=1, page_size=2)
    )
    assert listed.contributions[0].bet.currency == "USD" and listed.next_page_token

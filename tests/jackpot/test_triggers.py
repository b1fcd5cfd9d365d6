"""Triggers and hits: must-drop, random, deadline, external, simultaneous hits
(issue 3 sections 4 and 6, seed 000 section 6, PRODUCT.md invariant 5)."""

from __future__ import annotations

import asyncio
import math

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from psycopg_pool import AsyncConnectionPool

from server.jackpot.reconcile_all import reconcile_pools
from tests.jackpot.conftest import amount, contribution, create, reconciled, tier
from tests.rpc import fails, key


def hit_request(tenant: str, pool_id: str, player: str = "p1") -> pb.TriggerRequest:
    return pb.TriggerRequest(
        tenant_id=tenant,
        idempotency_key=key(),
        pool_id=pool_id,
        reason="random_hit",
        selector=pb.TriggerSelector(player_id=player, round_id=f"r-{key()}"),
    )


async def test_must_drop_drops_inside_its_range_every_cycle(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    lo, hi = 1_200, 1_300
    j = await create(
        jackpot,
        tenant,
        tier(
            seed_minor_units=1000,
            contribution_rate_ppm=100_000,
            trigger=pb.TRIGGER_KIND_MUST_DROP,
            must_drop_min_minor_units=lo,
            must_drop_max_minor_units=hi,
        ),
    )
    pool_id = j.pools[0].pool_id
    wins: list[tuple[int, int]] = []
    for _ in range(400):  # 10 per bet: a hit every ~20-30 bets
        r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 100))
        t = r.tiers[0]
        assert t.pool_amount.minor_units <= hi
        if t.hit:
            wins.append((t.cycle, t.pool_amount.minor_units))
    assert len(wins) >= 8
    for cycle, won in wins:
        c = await jackpot.GetCycle(
            pb.GetCycleRequest(tenant_id=tenant, pool_id=pool_id, cycle=cycle)
        )
        # the win is exactly the drop point committed (by the seed) at the cycle's start
        assert lo <= won <= hi and won == c.cycle.must_drop_point.minor_units
    await reconciled(jackpot, tenant)


async def test_random_hit_rate_matches_its_probability(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    # p = 5%, n = 600 rounds: mean 30, sd 5.3; accept within 4.5 sd (false alarm < 1e-5).
    p, n = 0.05, 600
    j = await create(
        jackpot,
        tenant,
        tier(
            trigger=pb.TRIGGER_KIND_RANDOM,
            hit_probability_ppb=int(p * 1e9),
            seed_minor_units=0,
            shards=8,
        ),
    )
    sem = asyncio.Semaphore(32)

    async def one() -> bool:
        async with sem:
            r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 100))
            return r.tiers[0].hit

    hits = sum(await asyncio.gather(*(one() for _ in range(n))))
    sd = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) <= 4.5 * sd, hits
    wins = await jackpot.ListWins(pb.ListWinsRequest(tenant_id=tenant, page_size=500))
    assert len(wins.wins) == hits
    await reconciled(jackpot, tenant)


async def test_deadline_pool_drops_at_its_time_to_the_last_round(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    """Seed 000 time-bound pools: at the drawn drop time the server drops the pool by itself,
    to the cycle's last qualifying round, without waiting for another bet."""
    j = await create(
        jackpot,
        tenant,
        tier(trigger=pb.TRIGGER_KIND_DEADLINE, deadline_min_seconds=1, deadline_max_seconds=1),
    )
    pool_id = j.pools[0].pool_id
    assert j.pools[0].must_drop_by_time.seconds > 0
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1000, player="early"))
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1000, player="last"))
    assert not r.tiers[0].hit
    wins = pb.ListWinsResponse()
    for _ in range(60):
        await asyncio.sleep(0.1)
        wins = await jackpot.ListWins(pb.ListWinsRequest(tenant_id=tenant))
        if wins.wins:
            break
    assert len(wins.wins) == 1
    win = wins.wins[0]
    assert (win.player_id, win.reason, win.amount.minor_units) == ("last", "deadline", 1000 + 20)
    c = await jackpot.GetCycle(pb.GetCycleRequest(tenant_id=tenant, pool_id=pool_id, cycle=1))
    assert c.cycle.drop_time.seconds - c.cycle.start_time.seconds in (1, 2)
    pool = (await jackpot.GetPool(pb.GetPoolRequest(tenant_id=tenant, pool_id=pool_id))).pool
    assert pool.cycle == 2 and pool.amount.minor_units == 1000
    await reconciled(jackpot, tenant)


async def test_empty_deadline_pool_drops_on_its_next_round(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    """A cycle that had no qualifying round by its drop time drops on the next one."""
    j = await create(
        jackpot,
        tenant,
        tier(trigger=pb.TRIGGER_KIND_DEADLINE, deadline_min_seconds=1, deadline_max_seconds=1),
    )
    await asyncio.sleep(1.5)
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1000, player="late"))
    assert r.tiers[0].hit and r.tiers[0].pool_amount.minor_units == 1000 + 10
    win = await jackpot.GetWin(pb.GetWinRequest(tenant_id=tenant, win_id=r.tiers[0].win_id))
    assert win.win.player_id == "late" and win.win.reason == "deadline"


async def test_trigger_is_only_for_external_pools_and_is_idempotent(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier("a"),
        tier("b", trigger=pb.TRIGGER_KIND_RANDOM, hit_probability_ppb=1),
    )
    a, b = (p.pool_id for p in j.pools)
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 10_000))
    req = hit_request(tenant, a)
    first = await jackpot.Trigger(req)
    assert first.win.amount.minor_units == 1100 and first.win.cycle == 1
    again = await jackpot.Trigger(req)
    assert again.SerializeToString(deterministic=True) == first.SerializeToString(
        deterministic=True
    )
    assert await amount(jackpot, tenant, a) == 1000
    await fails(
        jackpot.Trigger(hit_request(tenant, b)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TRIGGER_NOT_EXTERNAL",
    )
    await fails(
        jackpot.Trigger(hit_request(f"{tenant}-x", a)), grpc.StatusCode.NOT_FOUND, "POOL_NOT_FOUND"
    )


async def test_simultaneous_hits_first_wins_the_pool_second_the_reset_pool(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    members = (f"{tenant}-a", f"{tenant}-b")
    j = await create(jackpot, tenant, tier(seed_minor_units=5_000, shards=8), network=members)
    pool_id = j.pools[0].pool_id
    for i in range(20):
        await jackpot.Contribute(contribution(members[i % 2], j.jackpot_id, 10_000))
    assert await amount(jackpot, tenant, pool_id) == 5_000 + 2_000
    results = await asyncio.gather(
        jackpot.Trigger(hit_request(members[0], pool_id, "alice")),
        jackpot.Trigger(hit_request(members[1], pool_id, "bob")),
    )
    by_cycle = sorted((r.win.cycle, r.win.amount.minor_units) for r in results)
    assert by_cycle == [(1, 7_000), (2, 5_000)]
    assert await amount(jackpot, tenant, pool_id) == 5_000
    await reconciled(jackpot, tenant)


async def test_hits_during_concurrent_contributions_pay_exact_values(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    members = tuple(f"{tenant}-{i}" for i in range(3))
    j = await create(jackpot, tenant, tier(seed_minor_units=0, shards=8), network=members)
    pool_id = j.pools[0].pool_id
    sem = asyncio.Semaphore(32)
    parts: list[int] = []

    async def contribute(i: int) -> None:
        async with sem:
            r = await jackpot.Contribute(contribution(members[i % 3], j.jackpot_id, 1_000))
            parts.append(r.tiers[0].contribution.minor_units)

    async def hit(i: int) -> int:
        await asyncio.sleep(0.01 * i)
        r = await jackpot.Trigger(hit_request(members[i % 3], pool_id))
        return r.win.amount.minor_units

    out = await asyncio.gather(*(contribute(i) for i in range(300)), *(hit(i) for i in range(5)))
    won = sum(x for x in out if isinstance(x, int))
    assert won + await amount(jackpot, tenant, pool_id) == sum(parts)
    rec = await reconciled(jackpot, tenant)
    assert rec.pools[0].win_count == 5


async def test_every_pool_of_every_tenant_reconciles(
    jackpot: JackpotServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    """`croupier reconcile` (server.jackpot.reconcile_all) over everything this session made."""
    j = await create(jackpot, tenant, tier(seed_minor_units=0))
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1_234))
    rows = await reconcile_pools(pool)
    assert rows and all(r["balanced"] for r in rows), [r for r in rows if not r["balanced"]]

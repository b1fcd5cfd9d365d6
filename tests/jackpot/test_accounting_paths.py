"""The contribution arithmetic agrees wherever it is computed: the one-statement SQL fast path
(`jackpot_sql.add_to_shard`, on a real counter row) and the Python definition
(`accounting.split_contribution`, used by the locked path and the batch path), on random
bets, rates, reseed splits, conversions, caller-given amounts and fraction carries; and the
Python split with a cap conserves every minor unit."""

from __future__ import annotations

import asyncio
from typing import Any

from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from server.jackpot.accounting import MICRO, PICO, split_contribution
from server.store import jackpot_sql
from tests.jackpot.conftest import contribution, create, tier

CONTRIBUTION = st.fixed_dictionaries(
    {
        "bet": st.sampled_from([1, 3, 999_999, 10**12]) | st.integers(1, 10**12),
        "rate_ppm": st.sampled_from([0, 1, 333_333, MICRO]) | st.integers(0, MICRO),
        "split_ppm": st.sampled_from([0, 1, 500_000, 999_999, MICRO]) | st.integers(0, MICRO),
        "conversion_micro": st.sampled_from([MICRO, 1, 920_000, 10**9]) | st.integers(1, 10**9),
        "given": st.none() | st.integers(0, 10**12),
    }
)
START = st.fixed_dictionaries(
    {
        "total_carry": st.sampled_from([0, PICO - 1]) | st.integers(0, PICO - 1),
        "reseed_carry": st.sampled_from([0, MICRO - 1]) | st.integers(0, MICRO - 1),
        "visible": st.integers(0, 10**15),
        "reseed": st.integers(0, 10**15),
    }
)


async def test_sql_fast_path_and_python_split_agree(
    jackpot: JackpotServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier("acc"))
    pool_id = j.pools[0].pool_id
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT cycle, config_version FROM jp_pool_shards WHERE pool_id = %s AND shard = 0",
            (pool_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    cycle, version = int(row[0]), int(row[1])
    loop = asyncio.get_running_loop()

    async def run(start: dict[str, int], steps: list[dict[str, Any]]) -> None:
        # rolled back: the row is left as it was, so the pool still reconciles
        async with pool.connection() as conn, conn.transaction(force_rollback=True):
            await conn.execute(
                "UPDATE jp_pool_shards SET total_carry = %s, reseed_carry = %s, visible = %s,"
                " reseed = %s WHERE pool_id = %s AND shard = 0",
                (
                    start["total_carry"],
                    start["reseed_carry"],
                    start["visible"],
                    start["reseed"],
                    pool_id,
                ),
            )
            carry, reseed_carry = start["total_carry"], start["reseed_carry"]
            visible, reseed = start["visible"], start["reseed"]
            for step in steps:
                expected = split_contribution(
                    **step,
                    total_carry=carry,
                    reseed_carry=reseed_carry,
                    headroom=None,
                    stop_growing=False,
                )
                added = await jackpot_sql.add_to_shard(
                    conn, pool_id=pool_id, shard=0, cycle=cycle, config_version=version, **step
                )
                assert added is not None
                assert (added.total, added.to_pool, added.to_reseed) == (
                    expected.total,
                    expected.to_pool,
                    expected.to_reseed,
                ), (start, step)
                carry, reseed_carry = expected.total_carry, expected.reseed_carry
                visible += expected.to_pool
                reseed += expected.to_reseed
                assert added.contributed == visible  # one shard: the pool's contributed sum
                cur = await conn.execute(
                    "SELECT total_carry, reseed_carry, visible, reseed FROM jp_pool_shards"
                    " WHERE pool_id = %s AND shard = 0",
                    (pool_id,),
                )
                assert tuple(int(v) for v in await cur.fetchone() or ()) == (
                    carry,
                    reseed_carry,
                    visible,
                    reseed,
                ), (start, step)

    @settings(
        max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(START, st.lists(CONTRIBUTION, min_size=1, max_size=6))
    def check(start: dict[str, int], steps: list[dict[str, Any]]) -> None:
        asyncio.run_coroutine_threadsafe(run(start, steps), loop).result(30)

    await asyncio.to_thread(check)


async def test_a_large_contribution_with_a_carry_near_one_unit_is_not_rounded_up(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    """Over gRPC, on the uncapped one-request path: a USD bet leaves a fraction carry of
    0.9999999967 minor units; the next contribution of 333,333,000,000.9999999967 units is
    floored to 333,333,000,000 (the carry stays), never rounded up to ...001."""
    j = await create(
        jackpot,
        tenant,
        tier("big", seed_minor_units=1000, contribution_rate_ppm=333_333),
        conversion_rates_micro={"USD": 999_900},
    )
    first = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 9901, currency="USD"))
    assert first.tiers[0].contribution.minor_units == 3299  # 9901 * 0.9999 * 0.333333
    second = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 10**12))
    expected = split_contribution(
        bet=10**12,
        rate_ppm=333_333,
        split_ppm=0,
        given=None,
        total_carry=9901 * 999_900 * 333_333 % PICO,
        reseed_carry=0,
        headroom=None,
        stop_growing=False,
    )
    assert expected.total == 333_333_000_000
    assert second.tiers[0].contribution.minor_units == expected.total
    assert second.tiers[0].pool_amount.minor_units == 1000 + 3299 + expected.total


@settings(max_examples=2000, deadline=None, database=None)
@given(
    CONTRIBUTION,
    START,
    st.none() | st.integers(-(10**6), 10**15),
    st.booleans(),
)
def test_python_split_conserves_every_unit_with_caps(
    step: dict[str, Any], start: dict[str, int], headroom: int | None, stop: bool
) -> None:
    s = split_contribution(
        **step,
        total_carry=start["total_carry"],
        reseed_carry=start["reseed_carry"],
        headroom=headroom,
        stop_growing=stop,
    )
    assert s.total >= 0 and min(s.to_pool, s.to_reseed, s.to_overflow, s.not_collected) >= 0
    assert s.to_pool + s.to_reseed + s.to_overflow + s.not_collected == s.total
    assert 0 <= s.total_carry < PICO and 0 <= s.reseed_carry < MICRO
    if headroom is not None:
        assert s.to_pool <= max(headroom, 0)
    if step["given"] is None:  # the fraction is carried, never lost
        raw = step["bet"] * step["conversion_micro"] * step["rate_ppm"] + start["total_carry"]
        assert s.total * PICO + s.total_carry == raw
    assert (
        s.to_reseed * MICRO + s.reseed_carry == s.total * step["split_ppm"] + start["reseed_carry"]
    )
    uncapped = split_contribution(
        **step,
        total_carry=start["total_carry"],
        reseed_carry=start["reseed_carry"],
        headroom=None,
        stop_growing=stop,
    )
    if headroom is None or headroom >= uncapped.to_pool:
        assert s == uncapped

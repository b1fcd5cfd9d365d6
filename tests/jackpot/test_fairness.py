"""Provable fairness: committed seeds, verifiable draws and must-drop points (issue 3 section
5, seed 000 section 6). Pure properties with hypothesis, then a finished cycle end to end."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import math
from typing import Any

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from client import cli
from client.jackpot_cli import cycle_proof
from server.app import App
from server.jackpot import fairness
from server.jackpot.accounting import MICRO, PICO, split_contribution
from tests.jackpot.conftest import contribution, create, tier

seeds = st.binary(min_size=32, max_size=32)


@settings(max_examples=500, deadline=None)
@given(seeds, st.integers(0, 10**15), st.integers(0, 10**9), st.integers(1, 10**6))
def test_must_drop_point_is_always_inside_the_range(
    seed: bytes, low: int, width: int, cycle: int
) -> None:
    point = fairness.must_drop_point(seed, "pool", cycle, low, low + width)
    assert low <= point <= low + width


@settings(max_examples=300, deadline=None)
@given(seeds, st.integers(0, 3600), st.integers(0, 86_400))
def test_deadline_offset_is_always_inside_the_window(seed: bytes, low: int, width: int) -> None:
    assert low <= fairness.deadline_offset(seed, "pool", 1, low, low + width) <= low + width


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 10**9), min_size=1, max_size=50),
    st.integers(0, MICRO),
    st.integers(0, MICRO),
)
def test_split_carries_every_fraction(bets: list[int], rate: int, split: int) -> None:
    """Sum of contributions + final carry == sum of bet * rate exactly (invariant 1)."""
    total_carry = reseed_carry = paid = reseed_paid = 0
    for bet in bets:
        s = split_contribution(
            bet=bet,
            rate_ppm=rate,
            split_ppm=split,
            given=None,
            total_carry=total_carry,
            reseed_carry=reseed_carry,
            headroom=None,
            stop_growing=False,
        )
        total_carry, reseed_carry = s.total_carry, s.reseed_carry
        assert s.to_pool + s.to_reseed == s.total and s.to_pool >= 0
        paid += s.total
        reseed_paid += s.to_reseed
    assert paid * PICO + total_carry == sum(b * MICRO * rate for b in bets)
    assert reseed_paid * MICRO + reseed_carry == paid * split


def test_draw_hit_rate_matches_the_probability_statistically() -> None:
    # 200,000 draws at p = 1%: mean 2000, sd 44.5; 5 sd tolerance (false alarm ~ 6e-7).
    seed = bytes(range(32))
    n, p_ppb = 200_000, 10_000_000
    hits = sum(
        fairness.is_hit(fairness.draw(seed, "pool", 1, f"r{i}", "s"), p_ppb) for i in range(n)
    )
    expected = n * p_ppb / 1e9
    assert abs(hits - expected) <= 5 * math.sqrt(expected * (1 - p_ppb / 1e9))


def test_probability_scales_with_the_bet_and_is_capped() -> None:
    assert fairness.effective_probability_ppb(1_000, 0, 10**9) == 1_000
    assert fairness.effective_probability_ppb(1_000, 100, 250) == 2_500
    assert fairness.effective_probability_ppb(10**8, 100, 10**6) == 10**9
    assert fairness.is_hit(2**64 - 1, 10**9) and not fairness.is_hit(0, 0)


def run_cli(app: App, tenant: str, *argv: str, exit_code: int = 0) -> dict[str, Any]:
    """Run `croupier jackpot ...` against the test server; its JSON output (the exit status
    must be `exit_code`)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = cli.main(
                [
                    "jackpot",
                    *argv[:1],
                    *argv[1:],
                    "--target",
                    f"127.0.0.1:{app.port}",
                    "--tenant",
                    tenant,
                ]
            )
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    assert code == exit_code, (code, out.getvalue())
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


async def test_a_finished_cycle_verifies_and_its_seed_was_secret_until_then(
    jackpot: JackpotServiceStub, app: App, tenant: str
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier("mini", trigger=pb.TRIGGER_KIND_RANDOM, hit_probability_ppb=100_000_000, shards=4),
        tier(
            "major",
            trigger=pb.TRIGGER_KIND_MUST_DROP,
            must_drop_min_minor_units=1_050,
            must_drop_max_minor_units=1_400,
        ),
    )
    mini, major = (p.pool_id for p in j.pools)
    committed = j.pools[0].seed_commitment
    before = await jackpot.GetCycle(pb.GetCycleRequest(tenant_id=tenant, pool_id=mini, cycle=1))
    assert before.cycle.server_seed == "" and not before.cycle.HasField("must_drop_point")
    assert before.cycle.seed_commitment == committed
    ended: set[str] = set()
    for _ in range(300):
        r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1_000))
        ended |= {t.pool_id for t in r.tiers if t.hit and t.cycle == 1}
        if ended == {mini, major}:
            break
    assert ended == {mini, major}
    for pool_id in (mini, major):
        out = await asyncio.to_thread(
            run_cli, app, tenant, "verify", "--pool", pool_id, "--cycle", "1"
        )
        assert out["verified"], out
        assert out["draws"] >= 1
    c = await jackpot.GetCycle(pb.GetCycleRequest(tenant_id=tenant, pool_id=mini, cycle=1))
    assert fairness.commitment(bytes.fromhex(c.cycle.server_seed)).hex() == committed
    # a tampered record fails verification
    proof = await asyncio.to_thread(_proof, app, tenant, mini)
    flipped = [
        fairness.DrawRecord(d.round_id, d.salt, d.probability_ppb, not d.hit) for d in proof.draws
    ]
    assert fairness.verify_cycle(dataclasses.replace(proof, draws=flipped))
    assert fairness.verify_cycle(dataclasses.replace(proof, server_seed=bytes(32)))


def _proof(app: App, tenant: str, pool_id: str) -> fairness.CycleProof:
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        return cycle_proof(JackpotServiceStub(ch), tenant, pool_id, 1)


async def test_verify_exits_3_on_a_bad_draw(
    jackpot: JackpotServiceStub, pool: AsyncConnectionPool, app: App, tenant: str
) -> None:
    """`croupier jackpot verify` of a cycle whose recorded draw was altered prints the problem
    and exits 3 (as `croupier reconcile` does on drift), so cron and alerting see it."""
    j = await create(
        jackpot, tenant, tier("sure", trigger=pb.TRIGGER_KIND_RANDOM, hit_probability_ppb=10**9)
    )
    pool_id = j.pools[0].pool_id
    for _ in range(3):
        await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1_000))
    good = await asyncio.to_thread(
        run_cli, app, tenant, "verify", "--pool", pool_id, "--cycle", "1"
    )
    assert good["verified"] is True
    # someone with superuser rights bypasses the append-only trigger and lowers the recorded
    # probability of the winning draw
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "ALTER TABLE jp_contributions DISABLE TRIGGER jp_contributions_immutable"
        )
        await conn.execute(
            "UPDATE jp_contributions SET hit_probability_ppb = 1 WHERE pool_id = %s AND cycle = 1",
            (pool_id,),
        )
        await conn.execute("ALTER TABLE jp_contributions ENABLE TRIGGER jp_contributions_immutable")
    bad = await asyncio.to_thread(
        run_cli, app, tenant, "verify", "--pool", pool_id, "--cycle", "1", exit_code=3
    )
    assert bad["verified"] is False and bad["problems"], bad

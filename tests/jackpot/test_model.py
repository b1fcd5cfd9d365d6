"""Property test (issue 8 item 2): random sequences of jackpot operations — contributions,
replays of earlier requests, concurrent batches, RGS-reported hits — checked against a simple
in-memory model of one progressive pool: the contributions paid so far are
floor(sum(all bets) * rate / 10^6) (each fraction carried to the next contribution, across
cycles); the amount is the seed plus what was paid since the last hit; a hit wins exactly that
and resets the pool to its seed."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import App
from tests.rpc import eur

SEED = 1_000
RATE_PPM = 15_000  # 1.5%: fractions on almost every bet

steps = st.lists(
    st.one_of(
        st.tuples(st.just("bet"), st.integers(1, 5_000)),
        st.tuples(st.just("batch"), st.lists(st.integers(1, 5_000), min_size=2, max_size=12)),
        st.tuples(st.just("replay"), st.integers(0, 1_000)),
        st.tuples(st.just("hit"), st.none()),
    ),
    min_size=1,
    max_size=25,
)


def _contribution(tenant: str, jackpot_id: str, bet: int) -> pb.ContributeRequest:
    return pb.ContributeRequest(
        tenant_id=tenant,
        idempotency_key=uuid.uuid4().hex,
        jackpot_id=jackpot_id,
        player_id="p1",
        game_id="g",
        round_id=uuid.uuid4().hex,
        bet=eur(bet),
    )


def _run(port: int) -> int:
    examples = 0

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=list(HealthCheck),
    )
    @given(steps)
    def check(sequence: list[tuple[str, Any]]) -> None:
        nonlocal examples
        examples += 1
        asyncio.run(_example(port, sequence))

    check()
    return examples


async def _example(port: int, sequence: list[tuple[str, Any]]) -> None:
    tenant = f"jprop-{uuid.uuid4().hex[:8]}"
    jackpot_id = f"jp-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = JackpotServiceStub(channel)
        await stub.CreateJackpot(
            pb.CreateJackpotRequest(
                tenant_id=tenant,
                idempotency_key=uuid.uuid4().hex,
                jackpot_id=jackpot_id,
                currency="EUR",
                scope=pb.JACKPOT_SCOPE_LOCAL,
                tiers=[
                    pb.TierConfig(
                        tier="grand",
                        kind=pb.POOL_KIND_PROGRESSIVE,
                        seed_minor_units=SEED,
                        contribution_rate_ppm=RATE_PPM,
                        trigger=pb.TRIGGER_KIND_EXTERNAL,
                    )
                ],
            )
        )
        pool_id = f"{jackpot_id}.grand"
        # the model: all qualifying bets ever, and their sum at the last hit; the fraction of a
        # contribution is carried to the next one, across cycles too (never lost)
        bets_total, bets_at_hit = 0, 0

        def amount() -> int:
            paid = bets_total * RATE_PPM // 1_000_000
            return SEED + paid - bets_at_hit * RATE_PPM // 1_000_000

        history: list[tuple[pb.ContributeRequest, bytes]] = []
        for kind, arg in sequence:
            if kind == "bet":
                req = _contribution(tenant, jackpot_id, arg)
                history.append((req, (await stub.Contribute(req)).SerializeToString()))
                bets_total += arg
            elif kind == "batch":  # concurrent contributions, each sent twice at once
                reqs = [_contribution(tenant, jackpot_id, b) for b in arg]
                replies = await asyncio.gather(*(stub.Contribute(r) for r in reqs + reqs))
                for r, first, second in zip(
                    reqs, replies[: len(reqs)], replies[len(reqs) :], strict=True
                ):
                    assert first.SerializeToString() == second.SerializeToString()
                    history.append((r, first.SerializeToString()))
                bets_total += sum(arg)
            elif kind == "replay" and history:
                req, raw = history[arg % len(history)]
                assert (await stub.Contribute(req)).SerializeToString() == raw
            elif kind == "hit":
                expected = amount()
                win = (
                    await stub.Trigger(
                        pb.TriggerRequest(
                            tenant_id=tenant,
                            idempotency_key=uuid.uuid4().hex,
                            pool_id=pool_id,
                            reason="random_hit",
                            selector=pb.TriggerSelector(player_id="p1"),
                        )
                    )
                ).win
                assert win.amount.minor_units == expected, (win.amount, expected)
                bets_at_hit = bets_total
            got = (await stub.GetPool(pb.GetPoolRequest(tenant_id=tenant, pool_id=pool_id))).pool
            assert got.amount.minor_units == amount()
        recon = await stub.Reconcile(pb.ReconcileRequest(tenant_id=tenant, pool_id=pool_id))
        assert recon.balanced and all(r.drift_minor_units == 0 for r in recon.pools), recon


async def test_random_jackpot_sequences_match_the_model(app: App) -> None:
    assert await asyncio.to_thread(_run, app.port) >= 10

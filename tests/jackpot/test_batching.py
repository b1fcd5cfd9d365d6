"""Group commit of contributions (server.jackpot.batching, issue 6): concurrent contributions
share transactions, and nothing about the money or the idempotency changes.

The session's server batches (the default); a second server on the same database runs with
batching off (`contribution_batch=1`, the one-request path) for the side-by-side checks.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import grpc
import pytest
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from server.app import build_server
from tests.jackpot.conftest import amount, contribution, create, reconciled, tier
from tests.jackpot.test_triggers import hit_request
from tests.rpc import fails


def _batches() -> tuple[float, float]:
    """(batches so far, batches of one) of contributions, from croupier_batch_size."""
    count = REGISTRY.get_sample_value("croupier_batch_size_count", {"kind": "contribute"}) or 0.0
    alone = (
        REGISTRY.get_sample_value("croupier_batch_size_bucket", {"kind": "contribute", "le": "1.0"})
        or 0.0
    )
    return count, alone


@pytest.fixture
async def unbatched(pool: AsyncConnectionPool) -> AsyncIterator[JackpotServiceStub]:
    """A second server on the same database with group commit off."""
    app = await build_server(pool, "127.0.0.1:0", contribution_batch=1)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            yield JackpotServiceStub(ch)
    finally:
        await app.server.stop(1)
        for t in app.tasks:
            t.cancel()


async def test_concurrent_contributions_batch_exactly_once(
    jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier("minor", seed_minor_units=500, contribution_rate_ppm=7_777, shards=4),
        tier(
            "grand",
            seed_minor_units=9_000,
            contribution_rate_ppm=3_333,
            reseed_split_ppm=250_000,
            shards=16,
        ),
        network=(tenant,),
    )
    warm = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 100))  # fills the cache
    before = _batches()
    rng = random.Random(6)
    originals = [
        contribution(tenant, j.jackpot_id, rng.randint(1, 50_000), player=f"p{i % 7}")
        for i in range(300)
    ]
    sends = originals + rng.sample(originals, 60)  # 60 client retries, sent at the same time
    rng.shuffle(sends)
    replies = await asyncio.gather(*(jackpot.Contribute(r) for r in sends))
    after = _batches()
    assert after[0] - after[1] > before[0] - before[1], "no batch of more than one formed"

    by_key: dict[str, bytes] = {}
    for req, reply in zip(sends, replies, strict=True):
        body = reply.SerializeToString(deterministic=True)
        assert by_key.setdefault(req.idempotency_key, body) == body  # a retry: the same bytes
    assert len(by_key) == 300

    # a later retry replays the bytes; the key with another bet is refused
    again = await jackpot.Contribute(originals[0])
    assert again.SerializeToString(deterministic=True) == by_key[originals[0].idempotency_key]
    reuse = pb.ContributeRequest()
    reuse.CopyFrom(originals[1])
    reuse.bet.minor_units += 1
    await fails(jackpot.Contribute(reuse), grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")

    for t, p in enumerate(j.pools):
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*), count(DISTINCT idempotency_key), coalesce(sum(to_pool), 0)"
                " FROM jp_contributions WHERE pool_id = %s",
                (p.pool_id,),
            )
            rows, keys, to_pool = await cur.fetchone() or (0, 0, 0)
            cur = await conn.execute(
                "SELECT count(*) FROM outbox WHERE aggregate LIKE %s"
                " AND event_type = 'jp.contribution.recorded'",
                (f"pool:{p.pool_id}:shard:%",),
            )
            events = (await cur.fetchone() or (0,))[0]
        assert rows == keys == events == 301  # one record and one event per contribution
        answered = sum(
            pb.ContributeResponse.FromString(b).tiers[t].contribution.minor_units
            for b in by_key.values()
        )
        assert answered + warm.tiers[t].contribution.minor_units == to_pool
        seed = 500 if t == 0 else 9_000
        assert await amount(jackpot, tenant, p.pool_id) == seed + to_pool
    await reconciled(jackpot, tenant)


async def test_batched_and_one_request_paths_give_the_same_pool(
    jackpot: JackpotServiceStub,
    unbatched: JackpotServiceStub,
    tenant: str,
    pool: AsyncConnectionPool,
) -> None:
    """On one counter row the carried arithmetic does not depend on order, so the same bets
    through the batch path (Python) and the one-request path (the SQL update) must leave
    identical rows, fractions included."""
    spec = tier(
        seed_minor_units=0, contribution_rate_ppm=12_345, reseed_split_ppm=333_333, shards=1
    )
    rates = {"USD": 920_000, "JPY": 6_200}
    a = await create(jackpot, tenant, spec, conversion_rates_micro=rates)
    b = await create(jackpot, tenant, spec, conversion_rates_micro=rates)
    rng = random.Random(7)
    bets = [(rng.choice(["EUR", "USD", "JPY"]), rng.randint(1, 99_999)) for _ in range(240)]
    given = [rng.randint(0, 50) for _ in range(20)]

    def requests(jackpot_id: str) -> list[pb.ContributeRequest]:
        out = [contribution(tenant, jackpot_id, m, currency=c) for c, m in bets]
        for g in given:
            r = contribution(tenant, jackpot_id, 10_000)
            r.contribution.minor_units, r.contribution.currency = g, "EUR"
            out.append(r)
        return out

    await jackpot.Contribute(contribution(tenant, a.jackpot_id, 1))  # warm the cache
    await unbatched.Contribute(contribution(tenant, b.jackpot_id, 1))
    await asyncio.gather(*(jackpot.Contribute(r) for r in requests(a.jackpot_id)))
    await asyncio.gather(*(unbatched.Contribute(r) for r in requests(b.jackpot_id)))

    async def row(pool_id: str) -> tuple[int, ...]:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT visible, reseed, contributions, total_carry, reseed_carry"
                " FROM jp_pool_shards WHERE pool_id = %s",
                (pool_id,),
            )
            got = await cur.fetchone()
        assert got is not None
        return tuple(int(v) for v in got)

    assert await row(a.pools[0].pool_id) == await row(b.pools[0].pool_id)
    await reconciled(jackpot, tenant)


async def test_a_new_cycle_under_queued_contributions_loses_nothing(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    """Hits (a new cycle) land while contributions are queued: stale batches go the one-request
    way, every contribution counts once, in the cycle it was applied to."""
    j = await create(jackpot, tenant, tier(seed_minor_units=1_000, shards=2))
    pool_id = j.pools[0].pool_id
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 100))

    async def hit(n: int) -> None:
        await asyncio.sleep(0.002 * n)
        await jackpot.Trigger(hit_request(tenant, pool_id))

    reqs = [contribution(tenant, j.jackpot_id, 1_000 + i) for i in range(200)]
    replies, _ = await asyncio.gather(
        asyncio.gather(*(jackpot.Contribute(r) for r in reqs)),
        asyncio.gather(*(hit(n) for n in range(3))),
    )
    assert all(r.tiers[0].qualified for r in replies)
    await reconciled(jackpot, tenant)


async def test_batched_events_carry_each_callers_trace_id(
    jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    j = await create(jackpot, tenant, tier(shards=4), network=(tenant,))
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 100))
    reqs = [contribution(tenant, j.jackpot_id, 500 + i) for i in range(40)]
    await asyncio.gather(
        *(
            jackpot.Contribute(r, metadata=(("x-trace-id", f"trace-{r.idempotency_key}"),))
            for r in reqs
        )
    )
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload->>'contribution_id', trace_id FROM outbox"
            " WHERE aggregate LIKE %s AND event_type = 'jp.contribution.recorded'",
            (f"pool:{j.pools[0].pool_id}:shard:%",),
        )
        traces = dict(await cur.fetchall())
    for r in reqs:
        assert traces[r.idempotency_key] == f"trace-{r.idempotency_key}"

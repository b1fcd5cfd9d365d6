"""Operational drills on the local Citus cluster, automated (docs/scaling.md).

1. A hot tenant is isolated to a shard of its own (`isolate_tenant_to_new_shard`) and that
   shard is moved to the other worker (`citus_move_shard_placement`) while rounds run.
2. A worker is SIGKILLed under load and restarted.

Rounds (AuthorizeBet then SettleBet, keys fixed per round) retry a retryable failure
(UNAVAILABLE, ABORTED) with the same key until it succeeds. Afterwards: no call failed with
another code (never INTERNAL), every balance equals the model built from the answers (no
money moved twice), every transaction balances and every balance equals its postings.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.ops import citus_cluster
from tests.invariants import check_ledger_invariants
from tests.rpc import eur

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}
START = 1_000_000
STAKE, WIN = 100, 40


@dataclass
class Load:
    """Rounds of several players, with what was acknowledged and which codes were seen."""

    wallet: WalletServiceStub
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    settled: Counter[tuple[str, str]] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    ok_at: dict[str, list[float]] = field(default_factory=dict)

    async def call(self, tenant: str, fn: object, req: object) -> object:
        """Call until success or a business refusal; retryable failures retry the same
        request (same idempotency key)."""
        for _ in range(600):
            try:
                reply = await fn(req, timeout=10)  # type: ignore[operator]
            except grpc.aio.AioRpcError as exc:
                self.codes[exc.code().name] += 1
                if exc.code() in RETRYABLE or exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    await asyncio.sleep(0.1)
                    continue
                raise
            self.ok_at.setdefault(tenant, []).append(time.monotonic())
            return reply
        raise AssertionError("a call never succeeded")

    async def player(self, tenant: str, player: str) -> None:
        """Credit START, then rounds until stopped."""
        await self.call(
            tenant,
            self.wallet.Credit,
            pb.CreditRequest(
                tenant_id=tenant,
                player_id=player,
                idempotency_key=f"c-{uuid.uuid4().hex}",
                amount=eur(START),
            ),
        )
        while not self.stop.is_set():
            bet = uuid.uuid4().hex
            ids = {
                "tenant_id": tenant,
                "player_id": player,
                "bet_id": bet,
                "round_id": bet,
                "game_id": "g",
            }
            await self.call(
                tenant,
                self.wallet.AuthorizeBet,
                pb.AuthorizeBetRequest(**ids, idempotency_key=f"a-{bet}", amount=eur(STAKE)),
            )
            await self.call(
                tenant,
                self.wallet.SettleBet,
                pb.SettleBetRequest(
                    **ids, idempotency_key=f"s-{bet}", capture=eur(STAKE), win=eur(WIN)
                ),
            )
            self.settled[(tenant, player)] += 1

    async def check(self) -> None:
        """Every balance equals the model."""
        for (tenant, player), rounds in self.settled.items():
            r = await self.wallet.GetBalance(
                pb.GetBalanceRequest(tenant_id=tenant, player_id=player)
            )
            got = (r.balances[0].available.minor_units, r.balances[0].held.minor_units)
            assert got == (START - rounds * (STAKE - WIN), 0), (tenant, player, rounds, got)


async def _tenant_node(pool: AsyncConnectionPool, tenant: str) -> tuple[int, int]:
    """(shard id, worker port) of the tenant's players shard."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT shardid, nodeport FROM citus_shards WHERE table_name = 'players'::regclass"
            "   AND shardid = get_shard_id_for_distribution_column('players', %s::text)",
            (tenant,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def _tenants_by_node(pool: AsyncConnectionPool, prefix: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i in range(40):
        tenant = f"{prefix}-{i}"
        _, port = await _tenant_node(pool, tenant)
        out.setdefault(port, []).append(tenant)
    return out


async def test_hot_tenant_isolated_and_moved_while_rounds_run(
    wallet: WalletServiceStub, pool: AsyncConnectionPool
) -> None:
    by_node = await _tenants_by_node(pool, f"hot-{uuid.uuid4().hex[:6]}")
    hot = next(iter(by_node.values()))[0]
    others = [ts[1] for ts in by_node.values()]
    load = Load(wallet)
    tasks = [asyncio.create_task(load.player(hot, f"p{i}")) for i in range(4)]
    tasks += [asyncio.create_task(load.player(t, "q")) for t in others]
    await asyncio.sleep(2)

    async with pool.connection() as conn:
        cur = await conn.execute(
            # block_writes: the tenant's writes wait during the split (the non-blocking split
            # can stall under concurrent updates, github.com/citusdata/citus/issues/6790)
            "SELECT isolate_tenant_to_new_shard('players', %s::text, 'CASCADE',"
            " shard_transfer_mode => 'block_writes')",
            (hot,),
        )
        row = await cur.fetchone()
        assert row is not None
        shard, src = await _tenant_node(pool, hot)
        assert shard == int(row[0])
        dst = next(p for p in citus_cluster.WORKER_PORTS if p != src)
        await asyncio.sleep(1)
        await conn.execute(
            "SELECT citus_move_shard_placement(%s, %s, %s, %s, %s)",
            (shard, citus_cluster.HOST, src, citus_cluster.HOST, dst),
        )
    await asyncio.sleep(2)
    load.stop.set()
    await asyncio.gather(*tasks)

    assert await _tenant_node(pool, hot) == (shard, dst)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT shardminvalue = shardmaxvalue FROM pg_dist_shard WHERE shardid = %s",
            (shard,),
        )
        row = await cur.fetchone()
    assert row is not None and row[0], "the hot tenant has a shard of its own"
    assert set(load.codes) <= {c.name for c in RETRYABLE} | {"DEADLINE_EXCEEDED"}, load.codes
    assert load.settled[(hot, "p0")] > 0
    await load.check()
    await check_ledger_invariants(pool)


def _kill_worker(port: int) -> None:
    """SIGKILL the worker's postmaster and every one of its processes."""
    node = citus_cluster.Cluster().worker(port)
    pid = node.pid()
    assert pid is not None
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except ProcessLookupError:
            pass


async def test_worker_killed_under_load(
    wallet: WalletServiceStub, pool: AsyncConnectionPool
) -> None:
    by_node = await _tenants_by_node(pool, f"kill-{uuid.uuid4().hex[:6]}")
    victim_port, victims = next(iter(by_node.items()))
    survivor = next(ts for p, ts in by_node.items() if p != victim_port)[0]
    victim = victims[0]
    load = Load(wallet)
    tasks = [asyncio.create_task(load.player(victim, f"p{i}")) for i in range(3)]
    tasks += [asyncio.create_task(load.player(survivor, f"p{i}")) for i in range(3)]
    await asyncio.sleep(2)

    _kill_worker(victim_port)
    killed_at = time.monotonic()
    await asyncio.sleep(4)
    restart_at = time.monotonic()
    node = citus_cluster.Cluster().worker(victim_port)
    for _ in range(30):
        try:
            await asyncio.to_thread(node.start)
            break
        except Exception:
            await asyncio.sleep(1)
    assert node.running()
    await asyncio.sleep(3)
    load.stop.set()
    await asyncio.gather(*tasks)

    assert set(load.codes) <= {c.name for c in RETRYABLE} | {"DEADLINE_EXCEEDED"}, load.codes
    assert load.codes["UNAVAILABLE"] > 0, "calls for the dead worker's tenant were refused"
    carried_on = [t for t in load.ok_at.get(survivor, []) if killed_at + 0.5 < t < restart_at]
    assert carried_on, "the other worker's tenant carried on while the worker was down"
    async with pool.connection() as conn:
        await conn.execute("SELECT recover_prepared_transactions()")
    await load.check()
    await check_ledger_invariants(pool)

"""Network jackpots on Citus (docs/jackpot.md, "On a Citus cluster").

The pools live on the coordinator (Citus local tables); a contribution writes the pool and the
contributing tenant's idempotency record and event on that tenant's worker: one two-phase
commit over two nodes. The payout credit goes into the winner's wallet on the winner's worker
and closes the win on the coordinator in the same transaction: also two-phase. These tests
prove which transactions are two-phase and measure what that costs against a single-shard
wallet call (printed; `pytest -s` shows the figures)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.app import App
from tests.citus.conftest import RemoteLog
from tests.jackpot.conftest import contribution, create, tier
from tests.rpc import eur, key


async def _tenants_on_two_workers(pool: AsyncConnectionPool) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT t, s.nodeport FROM unnest(ARRAY['na-0','na-1','na-2','na-3','na-4','na-5',"
            " 'na-6','na-7']) t, citus_shards s WHERE s.table_name = 'accounts'::regclass"
            "   AND s.shardid = get_shard_id_for_distribution_column('accounts', t)"
        )
        rows = await cur.fetchall()
    by_node: dict[int, str] = {}
    for tenant, port in rows:
        by_node.setdefault(int(port), str(tenant))
    assert len(by_node) == 2, rows
    return list(by_node.values())


async def test_contributions_and_payout_credits_are_two_phase(
    logged_app: App, logged_pool: tuple[AsyncConnectionPool, RemoteLog]
) -> None:
    pool, log = logged_pool
    owner, member = await _tenants_on_two_workers(pool)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{logged_app.port}") as ch:
        jp = JackpotServiceStub(ch)
        w = WalletServiceStub(ch)
        jackpot = await create(jp, owner, tier(), network=(owner, member))
        for tenant in (owner, member):
            log.take()
            await jp.Contribute(contribution(tenant, jackpot.jackpot_id, 10_000))
            commands = log.take()
            prepared = [(s, c) for s, c in commands if c.startswith("PREPARE TRANSACTION")]
            assert len(prepared) == 1, commands  # the tenant's worker; the coordinator is local
        # a member's player wins the network pool: the credit lands on the member's worker
        await w.Credit(
            pb.CreditRequest(
                tenant_id=member, player_id="winner", idempotency_key=key(), amount=eur(1)
            )
        )
        log.take()
        hit = await jp.Trigger(
            jpb.TriggerRequest(
                tenant_id=member,
                idempotency_key=key(),
                pool_id=jackpot.pools[0].pool_id,
                reason="random_hit",
                selector=jpb.TriggerSelector(player_id="winner", round_id=f"r-{key()}"),
            )
        )
        win_id = hit.win.win_id
        for _ in range(100):
            got = await jp.GetWin(jpb.GetWinRequest(tenant_id=member, win_id=win_id))
            if got.win.payout_state == jpb.PAYOUT_STATE_CREDITED:
                break
            await asyncio.sleep(0.1)
        assert got.win.payout_state == jpb.PAYOUT_STATE_CREDITED
        commands = log.take()
        assert any(c.startswith("PREPARE TRANSACTION") for _, c in commands), commands
        bal = await w.GetBalance(pb.GetBalanceRequest(tenant_id=member, player_id="winner"))
        assert bal.balances[0].available.minor_units > 1


async def test_two_phase_cost_against_single_shard(
    app: App, wallet: WalletServiceStub, pool: AsyncConnectionPool
) -> None:
    """Sequential calls, one at a time: a Credit (one transaction on one worker) against a
    Contribute to a network pool (two-phase commit coordinator + worker), and the same two
    transaction shapes in bare SQL. Prints the medians; asserts only that both ran."""
    n = 150
    owner, member = await _tenants_on_two_workers(pool)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        jp = JackpotServiceStub(ch)
        jackpot = await create(jp, owner, tier(), network=(owner, member))
        credit_ms, contribute_ms = [], []
        for i in range(n):
            t0 = time.perf_counter()
            await wallet.Credit(
                pb.CreditRequest(
                    tenant_id=member, player_id=f"p{i % 10}", idempotency_key=key(), amount=eur(100)
                )
            )
            t1 = time.perf_counter()
            await jp.Contribute(contribution(member, jackpot.jackpot_id, 100, player=f"p{i % 10}"))
            t2 = time.perf_counter()
            credit_ms.append((t1 - t0) * 1000)
            contribute_ms.append((t2 - t1) * 1000)

    one_node, two_phase = [], []
    async with pool.connection() as conn:
        for i in range(n):
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO idempotency_records (tenant_id, scope, idempotency_key, method,"
                    " state) VALUES (%s, 'wallet', %s, 'bench', 'tombstone')",
                    (member, f"bench-1-{i}-{uuid.uuid4().hex}"),
                )
            t1 = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    "UPDATE jp_pool_shards SET contributions = contributions + 1"
                    " WHERE pool_id = (SELECT pool_id FROM jp_pools WHERE jackpot_id = %s)"
                    "   AND shard = 0",
                    (jackpot.jackpot_id,),
                )
                await conn.execute(
                    "INSERT INTO idempotency_records (tenant_id, scope, idempotency_key, method,"
                    " state) VALUES (%s, 'wallet', %s, 'bench', 'tombstone')",
                    (member, f"bench-2-{i}-{uuid.uuid4().hex}"),
                )
            t2 = time.perf_counter()
            one_node.append((t1 - t0) * 1000)
            two_phase.append((t2 - t1) * 1000)
    med = statistics.median
    print(
        f"\nCITUS 2PC COST (n={n}, sequential, median ms):"
        f" Credit {med(credit_ms):.2f} | Contribute(network pool) {med(contribute_ms):.2f}"
        f" | SQL one-worker tx {med(one_node):.2f} | SQL coordinator+worker 2PC tx"
        f" {med(two_phase):.2f}"
    )
    assert len(credit_ms) == len(contribute_ms) == n

"""The payout saga survives a crash between the hit and the credit: a real `croupier-server`
process is killed (SIGKILL) after committing a win and before crediting it, restarted, and the
winner is credited exactly once (issue 3 tests, PRODUCT.md invariant 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server.store.database import migrate
from tests.jackpot.conftest import contribution, create, tier
from tests.rpc import key
from tests.scratch import database_on

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_database(database_url: str) -> Iterator[str]:
    """A database of this test's own on the test server (no other server's retrier in it)."""
    params: dict[str, Any] = conninfo_to_dict(database_url)
    with database_on(make_conninfo(**{**params, "dbname": "postgres"}), "croupier_crash") as url:
        yield url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`croupier-server` as a child process on a free loopback port."""

    def __init__(self, url: str, **env: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.main"],
            env={
                **os.environ,
                "CROUPIER_DATABASE_URL": url,
                "CROUPIER_GRPC_ADDR": f"127.0.0.1:{self.port}",
                "CROUPIER_LOG_LEVEL": "WARNING",
                **env,
            },
            cwd=ROOT,
            start_new_session=True,
        )

    async def serving(self) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for _ in range(300):
                assert self.proc.poll() is None, "server exited"
                try:
                    r = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """Servers started by the test, killed at the end whatever happens."""
    started: list[Server] = []
    yield started
    for s in started:
        s.kill()


async def _credits(url: str, tenant: str, win_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM transactions WHERE tenant_id = %s AND idempotency_key = %s",
            (tenant, f"jp-payout-{win_id}"),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_kill_between_hit_and_credit_then_restart_credits_once(
    own_database: str, servers: list[Server], tenant: str
) -> None:
    await migrate(own_database)
    # first life: the payout is held back (start delay, no retrier) so the kill lands between
    # the committed hit and the credit
    first = Server(
        own_database,
        CROUPIER_JP_PAYOUT_DELAY_SECONDS="60",
        CROUPIER_JP_PAYOUT_RETRY_SECONDS="3600",
    )
    servers.append(first)
    await first.serving()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as ch:
        jp = JackpotServiceStub(ch)
        j = await create(jp, tenant, tier(seed_minor_units=25_000))
        await jp.Contribute(contribution(tenant, j.jackpot_id, 10_000))
        hit = await jp.Trigger(
            pb.TriggerRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                pool_id=j.pools[0].pool_id,
                reason="random_hit",
                selector=pb.TriggerSelector(player_id="survivor", round_id="r-crash"),
            )
        )
    win_id = hit.win.win_id
    assert hit.win.amount.minor_units == 25_100
    first.kill()
    assert await _credits(own_database, tenant, win_id) == 0

    # second life: the retrier finds the requested win and credits it; Payout calls racing it
    # change nothing
    second = Server(own_database, CROUPIER_JP_PAYOUT_RETRY_SECONDS="0.2")
    servers.append(second)
    await second.serving()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as ch:
        jp = JackpotServiceStub(ch)
        replies = await asyncio.gather(
            *(jp.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win_id)) for _ in range(5))
        )
        assert {r.win.payout_state for r in replies} <= {
            pb.PAYOUT_STATE_REQUESTED,
            pb.PAYOUT_STATE_CREDITED,
        }
        for _ in range(100):
            w = (await jp.GetWin(pb.GetWinRequest(tenant_id=tenant, win_id=win_id))).win
            if w.payout_state == pb.PAYOUT_STATE_CREDITED:
                break
            await asyncio.sleep(0.1)
        assert w.payout_state == pb.PAYOUT_STATE_CREDITED
        bal = await WalletServiceStub(ch).GetBalance(
            wpb.GetBalanceRequest(tenant_id=tenant, player_id="survivor")
        )
        assert bal.balances[0].available.minor_units == 25_100
    second.kill()

    # third life: nothing left to do, nothing done twice
    third = Server(own_database, CROUPIER_JP_PAYOUT_RETRY_SECONDS="0.2")
    servers.append(third)
    await third.serving()
    await asyncio.sleep(0.5)
    assert await _credits(own_database, tenant, win_id) == 1
    async with grpc.aio.insecure_channel(f"127.0.0.1:{third.port}") as ch:
        rec = await JackpotServiceStub(ch).Reconcile(pb.ReconcileRequest(tenant_id=tenant))
        assert rec.balanced

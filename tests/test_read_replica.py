"""Reads off the primary (server.store.replica): history and pools come from a streaming
standby while it is within CROUPIER_READ_MAX_LAG_SECONDS; a standby held behind on purpose
(pg_wal_replay_pause) is bypassed; money decisions always read the primary."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
from croupier.common.v1 import money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.app import App, build_server
from server.ops.backup import Instance, reachable_dir
from server.store.database import migrate, open_pool
from server.store.replica import ReadRouter
from tests.conftest import ROOT
from tests.drills.failover import free_port_range

MAX_LAG = 1.0


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[tuple[Instance, Instance]]:
    """A primary and its streaming standby on loopback ports."""
    root = reachable_dir(ROOT / ".data" / f"replica-test-{os.getpid()}")
    base = free_port_range(2)
    primary, standby = Instance(root / "primary", base), Instance(root / "standby", base + 1)
    try:
        primary.init(None)
        primary.start()
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE croupier")
        await migrate(primary.url("croupier"))
        standby.clone_standby(primary)
        standby.start("-c hot_standby=on")
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def served(pair: tuple[Instance, Instance]) -> AsyncIterator[App]:
    primary, standby = pair
    main = await open_pool(primary.url("croupier"), 1, 4)
    replica = await open_pool(standby.url("croupier"), 1, 4)
    reads = ReadRouter(main, replica, max_lag=MAX_LAG, probe_seconds=0.1)
    app = await build_server(main, "127.0.0.1:0", reads=reads)
    try:
        yield app
    finally:
        await app.stop(0)
        await replica.close()


def _eur(minor: int) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor, currency="EUR")


async def _history(stub: WalletServiceStub, tenant: str) -> int:
    resp = await stub.ListTransactions(
        pb.ListTransactionsRequest(tenant_id=tenant, player_id="p", page_size=50)
    )
    return len(resp.transactions)


async def _until(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_stale_reads_use_the_standby_and_bypass_it_when_behind(
    pair: tuple[Instance, Instance], served: App
) -> None:
    _, standby = pair
    reads = served.wallet.reads
    assert isinstance(reads, ReadRouter)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as ch:
        stub = WalletServiceStub(ch)
        await stub.Credit(
            pb.CreditRequest(
                tenant_id=tenant, player_id="p", idempotency_key="c1", amount=_eur(100)
            )
        )

        # caught up: the history is read on the standby
        async def fresh() -> bool:
            return reads.lag == 0.0 and await _history(stub, tenant) == 1

        await _until(fresh)
        before = dict(reads.served)
        assert await _history(stub, tenant) == 1
        assert reads.served["replica"] == before["replica"] + 1

        # the standby is held behind on purpose
        with psycopg.connect(standby.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
        try:
            await stub.Credit(
                pb.CreditRequest(
                    tenant_id=tenant, player_id="p", idempotency_key="c2", amount=_eur(900)
                )
            )
            # money decisions read the primary: the bet needs the credit the standby lacks
            await stub.AuthorizeBet(
                pb.AuthorizeBetRequest(
                    tenant_id=tenant,
                    player_id="p",
                    idempotency_key="b1",
                    bet_id="b1",
                    round_id="r1",
                    game_id="g",
                    amount=_eur(1000),
                )
            )
            balance = await stub.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
            assert balance.balances[0].held.minor_units == 1000

            # once the standby is further behind than the maximum lag, reads bypass it
            await asyncio.sleep(MAX_LAG + 0.3)
            assert not reads.replica_usable()
            assert reads.lag is not None and reads.lag > MAX_LAG
            before = dict(reads.served)
            assert await _history(stub, tenant) == 3
            assert reads.served["primary"] == before["primary"] + 1
            assert reads.served["replica"] == before["replica"]
        finally:
            with psycopg.connect(standby.url(), autocommit=True) as conn:
                conn.execute("SELECT pg_wal_replay_resume()")

        # replay resumed: the standby catches up and serves again
        async def back() -> bool:
            return reads.replica_usable() and reads.lag == 0.0

        await _until(back)
        before = dict(reads.served)
        assert await _history(stub, tenant) == 3
        assert reads.served["replica"] == before["replica"] + 1


async def test_a_write_that_lands_on_a_standby_is_unavailable_not_internal(
    pair: tuple[Instance, Instance],
) -> None:
    """A session on a node that is (or just became) a standby refuses writes with
    ReadOnlySqlTransaction: the caller gets UNAVAILABLE / DATABASE_UNAVAILABLE (retry with
    the same key), as during a failover."""
    _, standby = pair
    on_standby = await open_pool(standby.url("croupier"), 1, 2)
    app = await build_server(on_standby, "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            stub = WalletServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Credit(
                    pb.CreditRequest(
                        tenant_id="t-ro", player_id="p", idempotency_key="k", amount=_eur(1)
                    )
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
            assert status is not None
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            assert info.reason == "DATABASE_UNAVAILABLE"
    finally:
        await app.stop(0)


async def test_reconciliation_report_runs_on_the_standby(
    pair: tuple[Instance, Instance],
) -> None:
    """`croupier reconcile` with CROUPIER_READ_DATABASE_URL: the whole report on the standby."""
    from client.reconcile_cli import _reconcile

    _, standby = pair
    report = await _reconcile(standby.url("croupier"))
    assert report.ok, report

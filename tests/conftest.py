"""Shared fixtures: a real PostgreSQL, the migrated schema, a real gRPC server on port 0.

With CROUPIER_DATABASE_URL set, the tests create a fresh database of their own on that server
(dropped afterwards); otherwise they start a private cluster under .data/test-postgres with the
machine's PostgreSQL binaries and stop it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from croupier.wallet.v1 import wallet_service_pb2_grpc
from hypothesis import settings
from psycopg_pool import AsyncConnectionPool

from server.app import App, build_server
from server.store.database import migrate, open_pool
from tests.invariants import check_ledger_invariants
from tests.scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
# CI runs every property test with a fixed seed, so a red build is always reproducible; locally
# hypothesis explores new examples on every run.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
# Crypto codes configured the way an operator would (seed 003): BTC with 8 decimals.
os.environ.setdefault("CROUPIER_EXTRA_CURRENCIES", "BTC:8,USDT:6")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a fresh, empty database used by this test session only (one embedded cluster
    per test process, so parallel runs never share a data directory)."""
    with scratch_database(
        "croupier_test", ROOT / ".data" / f"test-postgres-{os.getpid()}", remove=True
    ) as url:
        yield url


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A migrated database's connection pool."""
    await migrate(database_url)
    p = await open_pool(database_url, min_size=4, max_size=20)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture(scope="session")
async def app(pool: AsyncConnectionPool) -> AsyncIterator[App]:
    """The real gRPC server on a free loopback port."""
    a = await build_server(pool, "127.0.0.1:0", hold_sweep_seconds=0.5)
    try:
        yield a
    finally:
        await a.health.enter_graceful_shutdown()
        await a.server.stop(1)
        for t in a.tasks:
            t.cancel()


@pytest.fixture(scope="session")
async def channel(app: App) -> AsyncIterator[grpc.aio.Channel]:
    """A gRPC channel to the test server."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        yield ch


@pytest.fixture(scope="session")
def wallet(channel: grpc.aio.Channel) -> wallet_service_pb2_grpc.WalletServiceStub:
    """The generated WalletService stub over the real channel."""
    return wallet_service_pb2_grpc.WalletServiceStub(channel)


@pytest.fixture
def tenant() -> str:
    """A tenant id of this test's own, so tests never see each other's rows."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module", autouse=True)
async def ledger_invariants(pool: AsyncConnectionPool) -> AsyncIterator[None]:
    """After every test module: postings balance and balances equal posting sums."""
    yield
    await check_ledger_invariants(pool)

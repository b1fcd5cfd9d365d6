"""Fixtures of the Citus proofs and drills: they run only against a Citus coordinator
(`make test-citus`, CROUPIER_DATABASE_URL from `make citus`) and are skipped otherwise."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
import pytest
from croupier.wallet.v1 import wallet_service_pb2_grpc
from psycopg_pool import AsyncConnectionPool

from server.app import App, build_server
from server.ops import citus_cluster
from server.store.database import migrate
from tests.scratch import database_on


def _coordinator_url() -> str | None:
    url = os.environ.get("CROUPIER_DATABASE_URL")
    if url and citus_cluster.is_coordinator(url):
        return url
    return None


@pytest.fixture(autouse=True)
def _only_on_citus() -> None:
    """Every test here needs a Citus coordinator."""
    if _coordinator_url() is None:
        pytest.skip("needs a Citus coordinator (make citus; make test-citus)")


@pytest.fixture(scope="module")
def citus_url() -> Iterator[str]:
    """A fresh migrated Citus database of this module (skips when not on Citus)."""
    base = _coordinator_url()
    if base is None:
        pytest.skip("needs a Citus coordinator (make citus; make test-citus)")
    with database_on(base, "croupier_citus") as url:
        yield url


@dataclass
class RemoteLog:
    """The remote commands the coordinator sent for the pool's connections
    (citus.log_remote_commands): (server "host:port", command)."""

    commands: list[tuple[str, str]] = field(default_factory=list)

    def handler(self, diag: psycopg.errors.Diagnostic) -> None:
        """psycopg notice handler: keep Citus's "issuing ..." notices."""
        msg = diag.message_primary or ""
        if not msg.startswith("issuing "):
            return
        detail = diag.message_detail or ""
        server = ""
        if "on server " in detail:
            server = detail.split("on server ", 1)[1].split()[0].split("@", 1)[-1]
        self.commands.append((server, msg[len("issuing ") :]))

    def take(self) -> list[tuple[str, str]]:
        """The commands logged since the last take."""
        out, self.commands = self.commands, []
        return out


@pytest.fixture(scope="module")
async def logged_pool(citus_url: str) -> AsyncIterator[tuple[AsyncConnectionPool, RemoteLog]]:
    """A pool on the module's database whose connections report every remote command."""
    await migrate(citus_url)
    log = RemoteLog()

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        conn.add_notice_handler(log.handler)

    pool = AsyncConnectionPool(
        citus_url,
        min_size=2,
        max_size=8,
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "options": "-c citus.log_remote_commands=on -c client_min_messages=notice",
        },
        configure=configure,
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    try:
        yield pool, log
    finally:
        await pool.close()


@pytest.fixture(scope="module")
async def logged_app(
    logged_pool: tuple[AsyncConnectionPool, RemoteLog],
) -> AsyncIterator[App]:
    """A server on the logged pool with no background sweeps in the way."""
    a = await build_server(logged_pool[0], "127.0.0.1:0", hold_sweep_seconds=3600)
    # the background jobs (sweeps, payout retrier, retention) would log their own commands
    for t in a.tasks:
        t.cancel()
    await asyncio.gather(*a.tasks, return_exceptions=True)
    logged_pool[1].take()
    try:
        yield a
    finally:
        await a.server.stop(1)
        for t in a.tasks:
            t.cancel()


@pytest.fixture(scope="module")
async def logged_wallet(
    logged_app: App,
) -> AsyncIterator[wallet_service_pb2_grpc.WalletServiceStub]:
    """A wallet stub on the logged server."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{logged_app.port}") as ch:
        yield wallet_service_pb2_grpc.WalletServiceStub(ch)

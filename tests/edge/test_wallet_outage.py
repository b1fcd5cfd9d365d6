"""When the wallet cannot be reached the edge answers INTERNAL_ERROR (seed 001), keeps the raw
callback, and the provider's resend is answered normally once the wallet is back."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import aiohttp
from psycopg_pool import AsyncConnectionPool

from server.app import App
from server.edge.app import build_edge
from server.edge.config import Integration
from server.store import edge_sql
from server.store.database import open_pool
from tests.edge.provider import Provider, available, err, fund, ok, uid

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


async def test_wallet_down_is_internal_error_and_a_resend_succeeds(
    app: App,
    pool: AsyncConnectionPool,
    http: aiohttp.ClientSession,
    provider: Provider,
    wallet: WalletServiceAsyncStub,
) -> None:
    main: Integration = provider.integration
    down = await build_edge((main,), pool, f"127.0.0.1:{closed_port()}", wallet_timeout=0.5)
    try:
        user, tid = uid("u"), uid("res")
        await fund(wallet, provider.tenant, user, 100)
        lost = Provider(http, f"http://127.0.0.1:{down.port}", main)
        err(await lost.result(tid, user, "1.00"), "INTERNAL_ERROR")
        await down.settled()
        rows = await edge_sql.callbacks_for(pool, main.tenant_id, main.name, tid)
        assert len(rows) == 1 and rows[0].wallet_reason == "UNAVAILABLE"
        assert rows[0].response == {"error": "INTERNAL_ERROR"}
        # the provider resends the result to a working edge: credited once
        ok(await provider.result(tid, user, "1.00"))
        assert await available(wallet, provider.tenant, user) == 200
    finally:
        await down.stop(1)


async def test_dispute_store_down_means_no_wallet_call(
    app: App,
    database_url: str,
    http: aiohttp.ClientSession,
    provider: Provider,
    wallet: WalletServiceAsyncStub,
) -> None:
    # no evidence, no effect: a callback that cannot be stored is not forwarded
    closed = await open_pool(database_url, 1, 1)
    await closed.close()
    edge = await build_edge((provider.integration,), closed, f"127.0.0.1:{app.port}")
    try:
        user, tid = uid("u"), uid("bet")
        await fund(wallet, provider.tenant, user, 1_000)
        blind = Provider(http, f"http://127.0.0.1:{edge.port}", provider.integration)
        err(await blind.bet(tid, user, "1.00"), "INTERNAL_ERROR")
        assert await available(wallet, provider.tenant, user) == 1_000
        ok(await provider.bet(tid, user, "1.00"))  # the bet was never claimed in the wallet
        assert await available(wallet, provider.tenant, user) == 900
    finally:
        await edge.stop(1)

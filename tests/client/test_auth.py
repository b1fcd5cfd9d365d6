"""The clients against a server that requires tenant API keys (server.auth)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from client import errors as e
from client.cli import main
from client.wallet import AsyncWalletClient, WalletClient
from server.app import App, build_server
from server.auth import KeyStore


@pytest.fixture
async def secured(pool: AsyncConnectionPool) -> AsyncIterator[tuple[str, KeyStore]]:
    """A real server with authentication on; its target and key store."""
    keys = KeyStore(pool, ttl_seconds=0.2)
    app: App = await build_server(pool, "127.0.0.1:0", keys=keys, hold_sweep_seconds=3600)
    try:
        yield f"127.0.0.1:{app.port}", keys
    finally:
        await app.server.stop(0)
        for task in app.tasks:
            task.cancel()


async def test_api_keys_map_to_typed_errors(secured: tuple[str, KeyStore], tenant: str) -> None:
    target, keys = secured
    _, writer = await keys.create(tenant, ["wallet:read", "wallet:write"])
    _, reader = await keys.create(tenant, ["wallet:read"])
    async with AsyncWalletClient(target) as anonymous:
        with pytest.raises(e.MissingApiKey) as missing:
            await anonymous.get_balance(tenant_id=tenant, player_id="p")
    assert isinstance(missing.value, e.Unauthenticated)
    async with AsyncWalletClient(target, api_key="crp_nope_nope") as forged:
        with pytest.raises(e.InvalidApiKey):
            await forged.get_balance(tenant_id=tenant, player_id="p")
    async with AsyncWalletClient(target, api_key=writer) as w:
        credited = await w.credit(tenant_id=tenant, player_id="p", amount=(100, "EUR"))
        assert credited.balance.available.minor_units == 100
        with pytest.raises(e.WrongTenant) as wrong:
            await w.get_balance(tenant_id=tenant + "-other", player_id="p")
        assert isinstance(wrong.value, e.PermissionDenied)
    async with AsyncWalletClient(target, api_key=reader) as r:
        assert (await r.get_balance(tenant_id=tenant, player_id="p")).balances
        with pytest.raises(e.MissingScope) as scope:
            await r.debit(tenant_id=tenant, player_id="p", amount=(1, "EUR"))
        assert scope.value.scope == "wallet:write" and scope.value.attempts == 1

    def sync_credit() -> int:
        with WalletClient(target, api_key=writer) as w:
            reply = w.credit(tenant_id=tenant, player_id="p", amount=(5, "EUR"))
            return reply.balance.available.minor_units

    assert await asyncio.to_thread(sync_credit) == 105


async def test_cli_sends_the_api_key(
    secured: tuple[str, KeyStore], tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target, keys = secured
    _, writer = await keys.create(tenant, ["wallet:read", "wallet:write"])
    base = ["wallet", "credit", "--target", target, "--tenant", tenant, "--player", "p"]
    money = ["--amount", "1.00", "--currency", "EUR"]
    assert await asyncio.to_thread(main, [*base, *money]) == 1
    assert '"MISSING_API_KEY"' in capsys.readouterr().err
    assert await asyncio.to_thread(main, [*base, *money, "--api-key", writer]) == 0
    assert '"minor_units": "100"' in capsys.readouterr().out

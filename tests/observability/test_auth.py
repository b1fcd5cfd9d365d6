"""Tenant authentication (issue 7 item 4): API keys bound to a tenant and scopes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg_pool import AsyncConnectionPool

from server.app import App, build_server
from server.auth import KeyStore
from tests.rpc import eur, fails, key


@pytest.fixture
async def secured(pool: AsyncConnectionPool) -> AsyncIterator[tuple[App, KeyStore]]:
    keys = KeyStore(pool, ttl_seconds=0.2)
    app = await build_server(pool, "127.0.0.1:0", keys=keys)
    try:
        yield app, keys
    finally:
        await app.server.stop(0)
        for t in app.tasks:
            t.cancel()


def _md(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


async def test_keys_bind_tenant_and_scopes(
    secured: tuple[App, KeyStore], tenant: str, pool: AsyncConnectionPool
) -> None:
    app, keys = secured
    _, writer = await keys.create(tenant, ["wallet:read", "wallet:write"], "rgs")
    _, reader = await keys.create(tenant, ["wallet:read"])
    _, other = await keys.create(tenant + "-x", ["wallet:read", "wallet:write"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        w = WalletServiceStub(ch)
        credit = pb.CreditRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(100)
        )
        await fails(w.Credit(credit), grpc.StatusCode.UNAUTHENTICATED, "MISSING_API_KEY")
        await fails(
            w.Credit(credit, metadata=_md("crp_nope_nope")),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_API_KEY",
        )
        await fails(
            w.Credit(credit, metadata=_md(writer + "x")),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_API_KEY",
        )
        r = await w.Credit(credit, metadata=_md(writer))
        assert r.balance.available.minor_units == 100
        await fails(
            w.Credit(credit, metadata=_md(reader)),
            grpc.StatusCode.PERMISSION_DENIED,
            "MISSING_SCOPE",
        )
        await fails(
            w.GetBalance(
                pb.GetBalanceRequest(tenant_id=tenant, player_id="p"), metadata=_md(other)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "WRONG_TENANT",
        )
        got = await w.GetBalance(
            pb.GetBalanceRequest(tenant_id=tenant, player_id="p"), metadata=(("x-api-key", reader),)
        )
        assert got.balances[0].available.minor_units == 100
        # health stays open for probes
        h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert h.status == health_pb2.HealthCheckResponse.SERVING


async def test_revoked_key_is_refused(secured: tuple[App, KeyStore], tenant: str) -> None:
    app, keys = secured
    key_id, api_key = await keys.create(tenant, ["wallet:read"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        w = WalletServiceStub(ch)
        req = pb.GetBalanceRequest(tenant_id=tenant, player_id="nobody")
        await fails(
            w.GetBalance(req, metadata=_md(api_key)), grpc.StatusCode.NOT_FOUND, "PLAYER_NOT_FOUND"
        )
        assert await keys.revoke(key_id)
        await asyncio.sleep(0.3)  # past the cache TTL
        await fails(
            w.GetBalance(req, metadata=_md(api_key)),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_API_KEY",
        )


async def test_keys_are_stored_hashed(
    secured: tuple[App, KeyStore], tenant: str, pool: AsyncConnectionPool
) -> None:
    _, keys = secured
    key_id, api_key = await keys.create(tenant, ["wallet:read"])
    secret = api_key.split("_", 2)[2]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT secret_hash::text, label, scopes::text FROM api_keys WHERE key_id = %s",
            (key_id,),
        )
        row = await cur.fetchone()
    assert row is not None and secret not in "".join(str(c) for c in row)


async def test_admin_cli_creates_and_revokes(
    database_url: str, pool: AsyncConnectionPool, tenant: str
) -> None:
    import json
    from contextlib import redirect_stdout
    from io import StringIO

    from client.cli import main

    def run(*argv: str) -> dict[str, object]:
        out = StringIO()
        with redirect_stdout(out):
            assert main(list(argv)) == 0
        result: dict[str, object] = json.loads(out.getvalue())
        return result

    created = await asyncio.to_thread(
        run,
        "admin",
        "key",
        "create",
        "--tenant",
        tenant,
        "--scope",
        "wallet:read",
        "--database-url",
        database_url,
    )
    principal = await KeyStore(pool).authenticate(str(created["api_key"]))
    assert principal.tenant_id == tenant and principal.scopes == {"wallet:read"}
    revoked = await asyncio.to_thread(
        run, "admin", "key", "revoke", str(created["key_id"]), "--database-url", database_url
    )
    assert revoked["revoked"] is True


async def test_grpcurl_with_an_api_key(secured: tuple[App, KeyStore], tenant: str) -> None:
    """The README's grpcurl line with `-H "authorization: Bearer $KEY"` works against a server
    with authentication on; without the header the call is UNAUTHENTICATED."""
    import os
    import re
    import subprocess
    from pathlib import Path

    app, keys = secured
    _, api_key = await keys.create(tenant, ["wallet:read", "wallet:write"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        await WalletServiceStub(ch).Credit(
            pb.CreditRequest(
                tenant_id=tenant, player_id="alice", idempotency_key=key(), amount=eur(10_750)
            ),
            metadata=_md(api_key),
        )
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    line = next(m for m in re.findall(r"`(\.venv/bin/grpcurl [^`]*authorization[^`]*)`", readme))
    line = line.replace("127.0.0.1:50051", f"127.0.0.1:{app.port}")
    line = line.replace('"tenant_id":"demo"', f'"tenant_id":"{tenant}"')
    env = {**os.environ, "KEY": api_key}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            cwd=root,
            env=env,
            timeout=60,
            check=False,
        )

    ok = await asyncio.to_thread(run, line)
    assert ok.returncode == 0, ok.stderr
    assert '"minor_units": "10750"' in ok.stdout
    without = await asyncio.to_thread(run, line.replace('-H "authorization: Bearer $KEY" ', ""))
    assert without.returncode != 0 and "Unauthenticated" in without.stderr

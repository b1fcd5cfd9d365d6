"""The edge against a server with tenant authentication (CROUPIER_AUTH=required): each
integration sends its tenant API key; without one the wallet refuses and the edge answers
INTERNAL_ERROR (a configuration fault the provider's resend cannot make worse)."""

from __future__ import annotations

import dataclasses

import aiohttp
from psycopg_pool import AsyncConnectionPool

from server.app import build_server
from server.auth import KeyStore
from server.edge.app import build_edge
from tests.edge.provider import Provider, err, ok, uid


async def test_integration_api_key_is_sent(
    pool: AsyncConnectionPool, http: aiohttp.ClientSession, provider: Provider
) -> None:
    keys = KeyStore(pool)
    secured = await build_server(pool, "127.0.0.1:0", keys=keys)
    tenant = uid("sb-auth")
    _, api_key = await keys.create(tenant, ["wallet:read", "wallet:write"], "edge")
    with_key = dataclasses.replace(provider.integration, tenant_id=tenant, api_key=api_key)
    without = dataclasses.replace(
        provider.integration, name="nokey", tenant_id=tenant, path_prefix="/sb/nokey"
    )
    edge = await build_edge((with_key, without), pool, f"127.0.0.1:{secured.port}")
    try:
        base = f"http://127.0.0.1:{edge.port}"
        user = uid("u")
        good, bad = Provider(http, base, with_key), Provider(http, base, without)
        ok(await good.result(uid("res"), user, "5.00"))
        ok(await good.bet(uid("bet"), user, "1.00"))
        err(await bad.result(uid("res"), user, "5.00"), "INTERNAL_ERROR")
        assert api_key not in repr(with_key)
    finally:
        await edge.stop(1)
        await secured.server.stop(0)
        for t in secured.tasks:
            t.cancel()

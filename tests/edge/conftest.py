"""Edge fixtures: the real edge over HTTP on loopback, forwarding to the real gRPC server.

One edge for the session serves two integrations of their own tenants; tests keep apart by
unique user ids and transaction ids (`ids`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool

from server.app import App
from server.edge.app import EdgeApp, build_edge
from server.edge.config import Integration
from tests.edge.provider import Provider

ADMIN_TOKEN = "test-admin-token-0123456789"
MAX_BODY = 4096


@pytest.fixture(scope="session")
def integrations() -> tuple[Integration, ...]:
    """`main` (EUR, USD, JPY, KWD, BTC) and `other` (EUR only), each with its own tenant."""
    run = uuid.uuid4().hex[:8]
    return (
        Integration(
            "main",
            f"sb-main-{run}",
            b"main-secret-0123456789abcdef",
            "/sportsbook/main",
            frozenset({"EUR", "USD", "JPY", "KWD", "BTC"}),
        ),
        Integration("other", f"sb-other-{run}", b"other-secret-0123456789abcdef", "/sb/other"),
    )


@pytest.fixture(scope="session")
async def edge(
    app: App, pool: AsyncConnectionPool, integrations: tuple[Integration, ...]
) -> AsyncIterator[EdgeApp]:
    """The real edge on a free loopback port, forwarding to the test gRPC server."""
    e = await build_edge(
        integrations,
        pool,
        f"127.0.0.1:{app.port}",
        max_body_bytes=MAX_BODY,
        admin_token=ADMIN_TOKEN,
    )
    try:
        yield e
    finally:
        await e.stop(1)


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP client session (keep-alive connections to the edge)."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100), timeout=aiohttp.ClientTimeout(total=30)
    ) as s:
        yield s


@pytest.fixture(scope="session")
def provider(
    edge: EdgeApp, http: aiohttp.ClientSession, integrations: tuple[Integration, ...]
) -> Provider:
    """The `main` integration's provider: signs and posts callbacks to the edge."""
    return Provider(http, f"http://127.0.0.1:{edge.port}", integrations[0])


@pytest.fixture(scope="session")
def other_provider(
    edge: EdgeApp, http: aiohttp.ClientSession, integrations: tuple[Integration, ...]
) -> Provider:
    """The `other` integration's provider."""
    return Provider(http, f"http://127.0.0.1:{edge.port}", integrations[1])

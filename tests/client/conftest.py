"""Fixtures for the client tests: clients over the real test server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from client.wallet import AsyncWalletClient
from server.app import App


@pytest.fixture(scope="session")
def target(app: App) -> str:
    """host:port of the real test server."""
    return f"127.0.0.1:{app.port}"


@pytest.fixture
async def wallet_client(channel: grpc.aio.Channel) -> AsyncIterator[AsyncWalletClient]:
    """The async client over the session's channel to the real server."""
    async with AsyncWalletClient(channel=channel) as client:
        yield client

"""TLS fixtures: development certificates from two unrelated CAs, and real gRPC servers on
loopback serving mutual TLS (client certificates required) and TLS (server authentication)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool

from server.app import App, build_server
from server.tls import server_credentials
from tests.certs import DevCerts, make_dev_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """Our CA, a server certificate (localhost, 127.0.0.1) and a client certificate."""
    return make_dev_certs(tmp_path_factory.mktemp("certs-ours"))


@pytest.fixture(scope="session")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """The same set issued by another CA, which our server does not trust."""
    return make_dev_certs(
        tmp_path_factory.mktemp("certs-foreign"),
        ca_name="Some other CA",
        client_name="intruder",
    )


def channel_credentials(trust: DevCerts, client: DevCerts | None = None) -> grpc.ChannelCredentials:
    """Client credentials trusting `trust`'s CA, presenting `client`'s certificate if given."""
    return grpc.ssl_channel_credentials(
        root_certificates=trust.ca.read_bytes(),
        private_key=client.client_key.read_bytes() if client else None,
        certificate_chain=client.client_cert.read_bytes() if client else None,
    )


async def _serve(pool: AsyncConnectionPool, credentials: grpc.ServerCredentials) -> App:
    return await build_server(pool, "127.0.0.1:0", hold_sweep_seconds=0.5, credentials=credentials)


async def _stop(app: App) -> None:
    # the pool is the session's; only the server and its tasks go
    await app.health.enter_graceful_shutdown()
    await app.server.stop(1)
    for t in app.tasks:
        t.cancel()


@pytest.fixture(scope="session")
async def mtls_app(pool: AsyncConnectionPool, certs: DevCerts) -> AsyncIterator[App]:
    """A real server requiring client certificates from our CA (CROUPIER_TLS_CLIENT_CA set)."""
    creds = server_credentials(certs.server_cert, certs.server_key, certs.ca)
    assert creds is not None
    app = await _serve(pool, creds)
    try:
        yield app
    finally:
        await _stop(app)


@pytest.fixture(scope="session")
async def tls_app(pool: AsyncConnectionPool, certs: DevCerts) -> AsyncIterator[App]:
    """A real server with TLS but no client certificates (CROUPIER_TLS_CLIENT_CA unset)."""
    creds = server_credentials(certs.server_cert, certs.server_key)
    assert creds is not None
    app = await _serve(pool, creds)
    try:
        yield app
    finally:
        await _stop(app)

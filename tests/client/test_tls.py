"""The clients and the CLI over mutual TLS to a real server (server.tls, tests.certs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool

from client import errors as e
from client.cli import main
from client.retry import RetryPolicy
from client.wallet import AsyncWalletClient, WalletClient
from server.app import build_server
from server.tls import server_credentials
from tests.certs import DevCerts, make_dev_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    return make_dev_certs(tmp_path_factory.mktemp("client-certs"))


@pytest.fixture
async def mtls_target(pool: AsyncConnectionPool, certs: DevCerts) -> AsyncIterator[str]:
    """A real server requiring client certificates from our CA."""
    creds = server_credentials(certs.server_cert, certs.server_key, certs.ca)
    app = await build_server(pool, "127.0.0.1:0", credentials=creds, hold_sweep_seconds=3600)
    try:
        yield f"127.0.0.1:{app.port}"
    finally:
        await app.server.stop(0)
        for task in app.tasks:
            task.cancel()


def mtls(certs: DevCerts, *, with_client_cert: bool = True) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=certs.client_key.read_bytes() if with_client_cert else None,
        certificate_chain=certs.client_cert.read_bytes() if with_client_cert else None,
    )


async def test_clients_over_mutual_tls(mtls_target: str, certs: DevCerts, tenant: str) -> None:
    async with AsyncWalletClient(mtls_target, credentials=mtls(certs)) as w:
        reply = await w.credit(tenant_id=tenant, player_id="p", amount=(250, "EUR"))
    assert reply.balance.available.minor_units == 250

    def sync_balance() -> int:
        with WalletClient(mtls_target, credentials=mtls(certs)) as w:
            return w.get_balance(tenant_id=tenant, player_id="p").balances[0].available.minor_units

    assert await asyncio.to_thread(sync_balance) == 250
    once = RetryPolicy(max_attempts=1)
    no_cert = mtls(certs, with_client_cert=False)
    async with AsyncWalletClient(mtls_target, credentials=no_cert, retry=once) as w:
        with pytest.raises(e.Unavailable):  # the handshake fails without a client certificate
            await w.get_balance(tenant_id=tenant, player_id="p")


async def test_cli_over_mutual_tls(
    mtls_target: str, certs: DevCerts, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["wallet", "credit", "--target", mtls_target, "--tenant", tenant, "--player", "p"]
    base += ["--amount", "3.00", "--currency", "EUR"]
    tls = ["--tls-ca", str(certs.ca), "--tls-cert", str(certs.client_cert)]
    tls += ["--tls-key", str(certs.client_key)]
    assert await asyncio.to_thread(main, [*base, *tls]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["balance"]["available"]["minor_units"] == "300"

    missing = str(Path(certs.directory) / "nope.pem")
    assert await asyncio.to_thread(main, [*base, "--tls-ca", missing]) == 1
    err = json.loads(capsys.readouterr().err)
    assert (err["reason"], err["metadata"]["field"]) == ("INVALID_TLS_FILE", "--tls-ca")
    assert await asyncio.to_thread(main, [*base, "--tls-ca", str(certs.ca), *tls[2:4]]) == 1
    assert json.loads(capsys.readouterr().err)["reason"] == "INVALID_TLS_FILE"

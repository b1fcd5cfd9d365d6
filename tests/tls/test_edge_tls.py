"""The edge over TLS (issue 7 item 3): HTTPS with required provider client certificates, and
the edge's own channel to a mutual-TLS wallet."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import uuid

import aiohttp
import grpc
import pytest
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.app import App
from server.edge.app import build_edge
from server.edge.config import Integration
from server.edge.tls import EdgeTLSError, http_ssl_context, wallet_channel_credentials
from tests.certs import DevCerts
from tests.rpc import eur

SECRET = b"tls-edge-secret-0123456789"


async def test_edge_serves_mutual_tls_and_reaches_an_mtls_wallet(
    pool: AsyncConnectionPool, mtls_app: App, certs: DevCerts, foreign_certs: DevCerts
) -> None:
    tenant = f"sb-tls-{uuid.uuid4().hex[:8]}"
    env = {
        "CROUPIER_EDGE_TLS_CERT": str(certs.server_cert),
        "CROUPIER_EDGE_TLS_KEY": str(certs.server_key),
        "CROUPIER_EDGE_TLS_CLIENT_CA": str(certs.ca),
        "CROUPIER_EDGE_WALLET_TLS_CA": str(certs.ca),
        "CROUPIER_EDGE_WALLET_TLS_CERT": str(certs.client_cert),
        "CROUPIER_EDGE_WALLET_TLS_KEY": str(certs.client_key),
    }
    integration = Integration("tls", tenant, SECRET, "/sb/tls")
    edge = await build_edge(
        (integration,),
        pool,
        f"localhost:{mtls_app.port}",
        ssl_context=http_ssl_context(env),
        wallet_credentials=wallet_channel_credentials(env),
    )
    try:
        creds = wallet_channel_credentials(env)
        assert creds is not None
        async with grpc.aio.secure_channel(f"localhost:{mtls_app.port}", creds) as ch:
            await WalletServiceStub(ch).Credit(
                pb.CreditRequest(
                    tenant_id=tenant,
                    player_id="u1",
                    idempotency_key=uuid.uuid4().hex,
                    amount=eur(1_000),
                )
            )
        body = json.dumps(
            {
                "transaction_id": "t1",
                "action": "bet",
                "user_id": "u1",
                "currency": "EUR",
                "amount": "2.50",
            }
        ).encode()
        headers = {
            "X-Security-Hash": hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json",
        }
        url = f"https://localhost:{edge.port}/sb/tls/transaction"
        good = ssl.create_default_context(cafile=str(certs.ca))
        good.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body, headers=headers, ssl=good) as resp:
                reply = await resp.json()
            assert reply["error"] is None and reply["transaction_id"]
            no_cert = ssl.create_default_context(cafile=str(certs.ca))
            with pytest.raises(aiohttp.ClientError):
                async with http.post(url, data=body, headers=headers, ssl=no_cert) as resp:
                    await resp.read()
            foreign = ssl.create_default_context(cafile=str(certs.ca))
            foreign.load_cert_chain(str(foreign_certs.client_cert), str(foreign_certs.client_key))
            with pytest.raises(aiohttp.ClientError):
                async with http.post(url, data=body, headers=headers, ssl=foreign) as resp:
                    await resp.read()
            with pytest.raises(aiohttp.ClientError):
                async with http.post(
                    url.replace("https", "http"), data=body, headers=headers
                ) as resp:
                    await resp.read()
    finally:
        await edge.stop(1)


def test_half_a_tls_configuration_is_an_error(certs: DevCerts) -> None:
    with pytest.raises(EdgeTLSError):
        http_ssl_context({"CROUPIER_EDGE_TLS_CERT": str(certs.server_cert)})
    with pytest.raises(EdgeTLSError):
        wallet_channel_credentials({"CROUPIER_EDGE_WALLET_TLS_CERT": str(certs.client_cert)})
    assert http_ssl_context({}) is None and wallet_channel_credentials({}) is None

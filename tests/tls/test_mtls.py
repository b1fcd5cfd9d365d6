"""Mutual TLS on the real gRPC server (issue 7 item 3): a client with a certificate from our CA
moves money and reads health; a client without a certificate, with one from another CA, or in
plain text is refused before any RPC reaches the server, and its calls have no effect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from croupier.wallet.v1 import wallet_service_pb2, wallet_service_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import App
from tests.certs import DevCerts
from tests.rpc import eur, key
from tests.tls.conftest import channel_credentials


@asynccontextmanager
async def secure(
    app: App, creds: grpc.ChannelCredentials, host: str = "127.0.0.1"
) -> AsyncIterator[wallet_service_pb2_grpc.WalletServiceAsyncStub]:
    async with grpc.aio.secure_channel(f"{host}:{app.port}", creds) as ch:
        yield wallet_service_pb2_grpc.WalletServiceStub(ch)


def credit(tenant: str, minor: int) -> wallet_service_pb2.CreditRequest:
    return wallet_service_pb2.CreditRequest(
        tenant_id=tenant, player_id="alice", idempotency_key=key(), amount=eur(minor)
    )


async def balance(app: App, certs: DevCerts, tenant: str) -> int:
    """alice's available EUR, read by a trusted client."""
    async with secure(app, channel_credentials(certs, certs)) as wallet:
        r = await wallet.GetBalance(
            wallet_service_pb2.GetBalanceRequest(tenant_id=tenant, player_id="alice"), timeout=10
        )
    return sum(b.available.minor_units for b in r.balances if b.available.currency == "EUR")


async def trusted_credit(app: App, certs: DevCerts, tenant: str, minor: int) -> None:
    """Credit alice `minor` EUR through a trusted client."""
    async with secure(app, channel_credentials(certs, certs)) as wallet:
        await wallet.Credit(credit(tenant, minor), timeout=10)


async def refused(call: Awaitable[Any]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    # refused at the handshake: the call never reached a servicer
    assert "failed to connect" in (err.value.details() or ""), err.value


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_client_with_our_certificate_credits_and_checks_health(
    mtls_app: App, certs: DevCerts, tenant: str, host: str
) -> None:
    creds = channel_credentials(certs, certs)
    async with grpc.aio.secure_channel(f"{host}:{mtls_app.port}", creds) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="croupier.wallet.v1.WalletService"), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        wallet = wallet_service_pb2_grpc.WalletServiceStub(ch)
        r = await wallet.Credit(credit(tenant, 1234), timeout=10)
        assert r.balance.available == eur(1234)
    assert await balance(mtls_app, certs, tenant) == 1234


async def test_client_without_certificate_is_refused(
    mtls_app: App, certs: DevCerts, tenant: str
) -> None:
    await trusted_credit(mtls_app, certs, tenant, 1000)
    async with secure(mtls_app, channel_credentials(certs)) as wallet:
        await refused(wallet.Credit(credit(tenant, 500), timeout=10))
    assert await balance(mtls_app, certs, tenant) == 1000


async def test_client_with_certificate_from_another_ca_is_refused(
    mtls_app: App, certs: DevCerts, foreign_certs: DevCerts, tenant: str
) -> None:
    await trusted_credit(mtls_app, certs, tenant, 1000)
    # trusts our server, but presents a certificate our CA never issued
    async with secure(mtls_app, channel_credentials(certs, foreign_certs)) as wallet:
        await refused(wallet.Credit(credit(tenant, 500), timeout=10))
    assert await balance(mtls_app, certs, tenant) == 1000


async def test_plain_text_is_refused(mtls_app: App, certs: DevCerts, tenant: str) -> None:
    await trusted_credit(mtls_app, certs, tenant, 1000)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mtls_app.port}") as ch:
        await refused(
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        )
        wallet = wallet_service_pb2_grpc.WalletServiceStub(ch)
        await refused(wallet.Credit(credit(tenant, 500), timeout=10))
    assert await balance(mtls_app, certs, tenant) == 1000


async def test_client_refuses_a_server_it_does_not_trust(
    mtls_app: App, certs: DevCerts, foreign_certs: DevCerts, tenant: str
) -> None:
    """Server authentication: a client trusting only another CA never talks to our server."""
    async with secure(mtls_app, channel_credentials(foreign_certs, certs)) as wallet:
        await refused(wallet.Credit(credit(tenant, 500), timeout=10))


async def test_tls_without_client_ca_accepts_any_client_but_not_plain_text(
    tls_app: App, certs: DevCerts, tenant: str
) -> None:
    async with secure(tls_app, channel_credentials(certs)) as wallet:
        r = await wallet.Credit(credit(tenant, 700), timeout=10)
        assert r.balance.available == eur(700)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_app.port}") as ch:
        await refused(
            wallet_service_pb2_grpc.WalletServiceStub(ch).Credit(credit(tenant, 1), timeout=10)
        )

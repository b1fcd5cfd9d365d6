"""AuditService behind tenant API keys: the upload's first message is authenticated for its
tenant (admin scope), the export's request likewise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.audit.v1.audit_service_pb2_grpc import AuditServiceStub
from psycopg_pool import AsyncConnectionPool

from server.app import App, build_server
from server.auth import KeyStore
from tests.recon.helpers import upload
from tests.rpc import fails

BODY = b"event_id,type,amount,currency,occurred_at\na,bet,1.00,EUR,2026-03-01T00:00:00Z\n"


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


async def test_upload_and_export_need_an_admin_key_of_the_tenant(
    secured: tuple[App, KeyStore], tenant: str
) -> None:
    app, keys = secured
    _, admin = await keys.create(tenant, ["admin"])
    _, wallet_only = await keys.create(tenant, ["wallet:read", "wallet:write"])
    _, other = await keys.create(tenant + "-x", ["admin"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        audit = AuditServiceStub(ch)
        await fails(
            audit.ReconcileProvider(upload(tenant, "acme", BODY)),
            grpc.StatusCode.UNAUTHENTICATED,
            "MISSING_API_KEY",
        )
        await fails(
            audit.ReconcileProvider(upload(tenant, "acme", BODY), metadata=_md(wallet_only)),
            grpc.StatusCode.PERMISSION_DENIED,
            "MISSING_SCOPE",
        )
        await fails(
            audit.ReconcileProvider(upload(tenant, "acme", BODY), metadata=_md(other)),
            grpc.StatusCode.PERMISSION_DENIED,
            "WRONG_TENANT",
        )
        reply = await audit.ReconcileProvider(upload(tenant, "acme", BODY), metadata=_md(admin))
        assert reply.missing_in_ledger == 1
        # a later message naming another tenant is refused, whatever the key
        smuggled = [
            *upload(tenant, "acme", BODY),
            pb.ReconcileProviderRequest(tenant_id=tenant + "-x", chunk=b"x"),
        ]
        await fails(
            audit.ReconcileProvider(iter(smuggled), metadata=_md(admin)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "TENANT_CHANGED",
        )

        request = pb.ExportRoundsRequest(tenant_id=tenant)
        request.start_time.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC))
        request.end_time.FromDatetime(datetime(2026, 3, 2, tzinfo=UTC))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            async for _ in audit.ExportRounds(request, metadata=_md(other)):
                pass
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        pages = [p async for p in audit.ExportRounds(request, metadata=_md(admin))]
        assert sum(len(p.rounds) for p in pages) == 0

"""A trace follows a sportsbook callback through the edge into the wallet and onto the outbox
event (issue 7 item 1): the provider's X-Trace-Id becomes the event's trace_id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
import pytest
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from tests.edge.provider import Provider, fund, ok, uid

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub


async def test_x_trace_id_reaches_the_outbox_event(
    provider: Provider, wallet: WalletServiceAsyncStub, pool: AsyncConnectionPool
) -> None:
    user, tid = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 1_000)
    doc = {
        "transaction_id": tid,
        "action": "bet",
        "user_id": user,
        "currency": "EUR",
        "amount": "1.00",
    }
    ok(await provider.post("transaction", doc, headers={"X-Trace-Id": "tr-sportsbook-42"}))
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT trace_id FROM outbox WHERE tenant_id = %s AND event_type = 'wallet.debited'"
            " AND payload->>'player_id' = %s",
            (provider.tenant, user),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == "tr-sportsbook-42"


async def test_otel_trace_spans_edge_wallet_and_event(
    pool: AsyncConnectionPool,
    integrations: tuple[Any, ...],
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With OTEL_TRACES_EXPORTER set, the edge's HTTP span, the wallet's gRPC span and the
    outbox event share one trace id."""
    from opentelemetry import trace

    from server.app import build_server
    from server.edge.app import build_edge
    from tests.otel import memory_exporter

    exporter = memory_exporter()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    server = await build_server(pool, "127.0.0.1:0")
    edge = await build_edge(integrations, pool, f"127.0.0.1:{server.port}")
    try:
        main = integrations[0]
        provider_client = Provider(http, f"http://127.0.0.1:{edge.port}", main)
        user, tid = uid("u"), uid("bet")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            await fund(WalletServiceStub(ch), main.tenant_id, user, 1_000)
        ok(await provider_client.bet(tid, user, "1.00"))
    finally:
        await edge.stop(1)
        await server.server.stop(0)
        for t in server.tasks:
            t.cancel()
    spans = exporter.get_finished_spans()
    debit = [
        s
        for s in spans
        if s.name.endswith("WalletService/Debit") and s.kind == trace.SpanKind.SERVER
    ]
    http_spans = [
        s for s in spans if s.kind == trace.SpanKind.SERVER and "WalletService" not in s.name
    ]
    assert debit and http_spans, [s.name for s in spans]
    trace_hex = format(debit[-1].context.trace_id, "032x")
    assert any(format(s.context.trace_id, "032x") == trace_hex for s in http_spans)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT trace_id FROM outbox WHERE tenant_id = %s AND event_type = 'wallet.debited'"
            " AND payload->>'player_id' = %s",
            (main.tenant_id, user),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == trace_hex

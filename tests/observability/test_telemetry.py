"""Tracing and metrics (issue 7 items 1-2): trace ids reach the outbox, metrics count calls."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from server.app import build_server
from server.telemetry import start_metrics_server
from tests.otel import memory_exporter
from tests.rpc import eur, key


async def _event_trace_id(pool: AsyncConnectionPool, tenant: str) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT trace_id FROM outbox WHERE tenant_id = %s", (tenant,))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_x_trace_id_reaches_the_event(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1)),
        metadata=(("x-trace-id", "tr_a1b2"),),
    )
    assert await _event_trace_id(pool, tenant) == "tr_a1b2"


async def test_otel_span_trace_id_reaches_the_event(
    pool: AsyncConnectionPool, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = memory_exporter()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    app = await build_server(pool, "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            await WalletServiceStub(ch).Credit(
                pb.CreditRequest(
                    tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1)
                )
            )
    finally:
        await app.server.stop(0)
        for t in app.tasks:
            t.cancel()
    spans = [s for s in exporter.get_finished_spans() if s.name.endswith("/Credit")]
    assert spans, [s.name for s in exporter.get_finished_spans()]
    assert await _event_trace_id(pool, tenant) == format(spans[0].context.trace_id, "032x")


async def test_metrics_count_latency_and_error_reasons(
    wallet: WalletServiceStub, tenant: str
) -> None:
    method = "/croupier.wallet.v1.WalletService/Debit"
    before = (
        REGISTRY.get_sample_value(
            "croupier_rpc_errors_total",
            {"method": method, "code": "FAILED_PRECONDITION", "reason": "INSUFFICIENT_FUNDS"},
        )
        or 0
    )
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1))
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await wallet.Debit(
            pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(5))
        )
    after = REGISTRY.get_sample_value(
        "croupier_rpc_errors_total",
        {"method": method, "code": "FAILED_PRECONDITION", "reason": "INSUFFICIENT_FUNDS"},
    )
    assert after == before + 1
    count = REGISTRY.get_sample_value(
        "croupier_rpc_duration_seconds_count",
        {"method": "/croupier.wallet.v1.WalletService/Credit", "code": "OK"},
    )
    assert count and count >= 1


def test_metrics_endpoint_serves_prometheus_text() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    port = start_metrics_server(f"127.0.0.1:{free}")
    assert port == free
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "croupier_rpc_duration_seconds" in body


async def test_business_gauges_follow_the_jackpot(
    channel: grpc.aio.Channel, tenant: str, pool: AsyncConnectionPool
) -> None:
    from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
    from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub

    from server.telemetry import refresh_business_gauges
    from tests.jackpot.conftest import contribution, create, tier

    stub = JackpotServiceStub(channel)
    jp = await create(
        stub,
        tenant,
        tier(
            "mini",
            trigger=jpb.TRIGGER_KIND_MUST_DROP,
            seed_minor_units=100,
            must_drop_min_minor_units=101,
            must_drop_max_minor_units=102,
            contribution_rate_ppm=500_000,
        ),
    )
    for _ in range(6):
        await stub.Contribute(contribution(tenant, jp.jackpot_id, 2))
    async with pool.connection() as conn:
        await refresh_business_gauges(conn)
    pool_id = f"{jp.jackpot_id}.mini"
    assert REGISTRY.get_sample_value("croupier_jp_contributions", {"pool_id": pool_id}) == 6
    assert (
        REGISTRY.get_sample_value("croupier_jp_contribution_per_bet_ppm", {"pool_id": pool_id})
        == 500_000
    )
    size = REGISTRY.get_sample_value(
        "croupier_jp_pool_size_minor_units", {"pool_id": pool_id, "tier": "mini", "currency": "EUR"}
    )
    assert size is not None and 100 <= size <= 102
    assert (
        REGISTRY.get_sample_value("croupier_jp_time_to_drop_seconds", {"pool_id": pool_id})
        is not None
    )

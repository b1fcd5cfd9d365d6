"""The relay continues the writer's trace (issue 7 item 1): publishing an event is a span in
the trace whose id the event carries."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from server.events.context import current_trace_id
from server.events.outbox import append_event
from server.events.relay import Relay
from tests.otel import memory_exporter


async def test_publishing_is_a_span_of_the_writers_trace(
    pool: AsyncConnectionPool, relay: Relay, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = memory_exporter()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    trace_hex = uuid.uuid4().hex
    token = current_trace_id.set(trace_hex)
    try:
        async with pool.connection() as conn, conn.transaction():
            await append_event(
                conn,
                "wallet.credited",
                aggregate=f"test:{tenant}",
                tenant_id=tenant,
                payload={"player_id": "p"},
            )
    finally:
        current_trace_id.reset(token)
    for _ in range(100):
        spans = [
            s
            for s in exporter.get_finished_spans()
            if format(s.context.trace_id, "032x") == trace_hex
        ]
        if spans:
            break
        await asyncio.sleep(0.1)
    assert spans and spans[0].name == "publish wallet.credited"

"""Tracing and metrics setup (issue 7): OpenTelemetry traces, Prometheus metrics.

Tracing is off unless the standard `OTEL_TRACES_EXPORTER` variable says `console` or `otlp`
(the OTLP/HTTP exporter reads `OTEL_EXPORTER_OTLP_ENDPOINT` and friends itself); off, no tracer
provider or interceptor is installed, so it costs nothing. `OTEL_SERVICE_NAME` names the
service (default `croupier-server`).

Metrics: Prometheus text format on `CROUPIER_METRICS_ADDR` (default 127.0.0.1:9464; with
`--workers N`, worker i listens on port + i; empty disables).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("croupier.telemetry")

LATENCY_BUCKETS_SECONDS = (
    0.0005,
    0.001,
    0.002,
    0.004,
    0.006,
    0.008,
    0.01,
    0.015,
    0.02,
    0.025,
    0.05,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
)

RPC_LATENCY = Histogram(
    "croupier_rpc_duration_seconds",
    "Server-side RPC latency (seconds)",
    ["method", "code"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
RPC_ERRORS = Counter(
    "croupier_rpc_errors_total",
    "Failed RPCs by canonical code and ErrorInfo reason",
    ["method", "code", "reason"],
)
DB_POOL = Gauge("croupier_db_pool_connections", "Database pool connections", ["state"])
OUTBOX_UNPUBLISHED = Gauge("croupier_outbox_unpublished", "Outbox events not yet published")
OUTBOX_LAG = Gauge(
    "croupier_outbox_lag_seconds", "Age of the oldest unpublished outbox event (seconds)"
)
WALLET_CREDITS = Counter(
    "croupier_wallet_credits_total",
    "Wallet credits (Credit, SettleBet wins, payouts) by outcome",
    ["outcome"],
)

BATCH_SIZE = Histogram(
    "croupier_batch_size",
    "Requests per group-committed batch (server.group_commit), by kind (wallet, contribute)",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
BATCH_FALLBACKS = Counter(
    "croupier_batch_fallbacks_total",
    "Batched requests sent back to the one-request path, by kind and cause",
    ["kind", "cause"],
)
BACKGROUND_ROWS_SET_ASIDE = Counter(
    "croupier_background_rows_set_aside_total",
    "Rows a background job (hold expiry, payout retry, deadline drop) could not process and"
    " set aside, by job and reason; the job goes on with the other rows",
    ["job", "reason"],
)


def tracing_enabled() -> bool:
    """Whether OTEL_TRACES_EXPORTER asks for traces."""
    return os.environ.get("OTEL_TRACES_EXPORTER", "none").lower() not in ("", "none")


def setup_tracing(default_service: str = "croupier-server") -> bool:
    """Install a tracer provider with the exporter OTEL_TRACES_EXPORTER names; True if on."""
    if not tracing_enabled():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )

    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").lower()
    name = os.environ.get("OTEL_SERVICE_NAME", default_service)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (console, otlp); tracing off", kind)
        return False
    trace.set_tracer_provider(provider)
    log.info("tracing on (%s exporter)", kind)
    return True


def tracing_interceptors() -> Sequence[grpc.aio.ServerInterceptor[Any, Any]]:
    """The OpenTelemetry gRPC server interceptor when tracing is on, else nothing."""
    if not tracing_enabled():
        return ()
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    interceptor: grpc.aio.ServerInterceptor[Any, Any] = aio_server_interceptor()  # type: ignore[no-untyped-call]
    return (interceptor,)


def tracing_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """OpenTelemetry gRPC client interceptors when tracing is on (trace context propagated)."""
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors()  # type: ignore[no-untyped-call]
    return interceptors


def instrument_http_server() -> None:
    """When tracing is on, have every aiohttp Application made afterwards trace its requests
    (OpenTelemetry's aiohttp server instrumentor; idempotent)."""
    if not tracing_enabled():
        return
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    instrumentor = AioHttpServerInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def publish_span(event_type: str, trace_id: str) -> contextlib.AbstractContextManager[Any]:
    """A span for publishing one event, in the trace of the request that wrote it (when
    tracing is on and the event carries an OpenTelemetry trace id); else a no-op."""
    if not tracing_enabled() or len(trace_id) != 32:
        return contextlib.nullcontext()
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    try:
        parent = SpanContext(
            int(trace_id, 16),
            int.from_bytes(os.urandom(8), "big") or 1,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    except ValueError:
        return contextlib.nullcontext()
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    tracer = trace.get_tracer("croupier.relay")
    return tracer.start_as_current_span(
        f"publish {event_type}", context=ctx, kind=trace.SpanKind.PRODUCER
    )


@contextlib.contextmanager
def root_span(name: str) -> Iterator[str]:
    """A new root span (a new trace, whatever span is active) for one pass or row of a
    background job, when tracing is on; yields its hex trace id, or "" when tracing is off."""
    if not tracing_enabled():
        yield ""
        return
    from opentelemetry import context, trace

    tracer = trace.get_tracer("croupier.background")
    with tracer.start_as_current_span(
        name, context=context.Context(), kind=trace.SpanKind.INTERNAL
    ) as span:
        ctx = span.get_span_context()
        yield format(ctx.trace_id, "032x") if ctx.is_valid else ""


def current_trace_id() -> str:
    """The hex trace id of the active OpenTelemetry span, or "" when none."""
    if not tracing_enabled():
        return ""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def start_metrics_server(addr: str, offset: int = 0) -> int | None:
    """Serve /metrics on host:port+offset (in a thread); returns the port, None if disabled."""
    if not addr:
        return None
    host, _, port = addr.rpartition(":")
    bound = int(port) + offset
    try:
        start_http_server(bound, addr=host or "127.0.0.1")
    except OSError as exc:  # metrics must never keep the server from serving
        log.warning("metrics endpoint %s:%d not started: %s", host, bound, exc)
        return None
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound


def observe_pool(stats: dict[str, Any]) -> None:
    """Copy psycopg_pool statistics into the pool gauge."""
    size = int(stats.get("pool_size", 0))
    available = int(stats.get("pool_available", 0))
    DB_POOL.labels("open").set(size)
    DB_POOL.labels("idle").set(available)
    DB_POOL.labels("in_use").set(size - available)
    DB_POOL.labels("waiting").set(int(stats.get("requests_waiting", 0)))


# -- business gauges (seed 000 section 10), refreshed from the database by worker 0 ---------

JP_POOL_SIZE = Gauge(
    "croupier_jp_pool_size_minor_units",
    "Current pool amount (minor units)",
    ["pool_id", "tier", "currency"],
)
JP_POOL_OVER_CAP = Gauge(
    "croupier_jp_pool_over_cap", "1 when a capped pool's amount exceeds its cap", ["pool_id"]
)
JP_CONTRIBUTIONS = Gauge(
    "croupier_jp_contributions", "Qualifying contributions recorded", ["pool_id"]
)
JP_CONTRIBUTED = Gauge(
    "croupier_jp_contributed_minor_units", "Sum contributed to the visible pool", ["pool_id"]
)
JP_CONTRIBUTION_PER_BET_PPM = Gauge(
    "croupier_jp_contribution_per_bet_ppm",
    "Average contribution per bet, ppm of the bet",
    ["pool_id"],
)
JP_TIME_TO_DROP = Gauge(
    "croupier_jp_time_to_drop_seconds", "Duration of the pool's last ended cycle", ["pool_id"]
)
JP_PAYOUTS = Gauge(
    "croupier_jp_payouts",
    "Wins by tier and payout state (tier distribution)",
    ["tier", "currency", "state"],
)
JP_PAYOUTS_SUM = Gauge(
    "croupier_jp_payouts_minor_units",
    "Sum of wins by tier and payout state",
    ["tier", "currency", "state"],
)


async def refresh_business_gauges(conn: Any) -> None:
    """Read the jackpot business figures (pool size, contributions, average contribution per
    bet, time to drop, payouts count and sum per tier and state) into their gauges."""
    from server.store import metrics_sql

    for pool_id, tier, currency, amount, cap in await metrics_sql.pool_amounts(conn):
        JP_POOL_SIZE.labels(pool_id, tier, currency).set(amount)
        JP_POOL_OVER_CAP.labels(pool_id).set(1 if cap and amount > cap else 0)
    for pool_id, count, to_pool, bets in await metrics_sql.contributions(conn):
        JP_CONTRIBUTIONS.labels(pool_id).set(count)
        JP_CONTRIBUTED.labels(pool_id).set(to_pool)
        JP_CONTRIBUTION_PER_BET_PPM.labels(pool_id).set(to_pool * 1_000_000 // bets if bets else 0)
    for pool_id, seconds in await metrics_sql.time_to_drop(conn):
        JP_TIME_TO_DROP.labels(pool_id).set(seconds)
    for tier, currency, state, count, total in await metrics_sql.payouts(conn):
        JP_PAYOUTS.labels(tier, currency, state).set(count)
        JP_PAYOUTS_SUM.labels(tier, currency, state).set(total)

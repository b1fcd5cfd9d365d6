"""Wiring: the edge's HTTP server over a WalletService channel and the dispute pool.

`build_edge` starts the aiohttp site and returns an `EdgeApp` with the bound `.port`, so tests
bind port 0. The edge owns one gRPC channel to the wallet; it keeps no money state.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import grpc
from aiohttp import web
from croupier.wallet.v1 import wallet_service_pb2_grpc
from psycopg_pool import AsyncConnectionPool

from server.edge.admin import Admin
from server.edge.config import Integration
from server.edge.disputes import Disputes
from server.edge.forward import Forwarder
from server.edge.http import CallbackHandler, build_application
from server.telemetry import instrument_http_server, tracing_client_interceptors


@dataclass
class EdgeApp:
    """A running edge: the aiohttp runner, its port and the wallet channel it owns."""

    runner: web.AppRunner
    port: int
    channel: grpc.aio.Channel
    callbacks: CallbackHandler

    async def settled(self) -> None:
        """Wait until the answers already sent are recorded in the dispute store."""
        await self.callbacks.settled()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight callbacks finish (the runner's shutdown timeout),
        record their answers, close the wallet channel within `grace` seconds. The dispute
        pool belongs to the caller."""
        await self.runner.shutdown()
        await self.runner.cleanup()
        await self.callbacks.settled()
        await self.channel.close(grace)


async def build_edge(
    integrations: tuple[Integration, ...],
    pool: AsyncConnectionPool,
    wallet_addr: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_body_bytes: int = 64 * 1024,
    wallet_timeout: float = 5.0,
    admin_token: str | None = None,
    shutdown_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    wallet_credentials: grpc.ChannelCredentials | None = None,
) -> EdgeApp:
    """Start the edge on `host:port` (0 = any free port), forwarding to `wallet_addr`.

    `ssl_context` serves HTTPS (mutual when it requires client certificates; server.edge.tls);
    `wallet_credentials` makes the wallet channel TLS / mTLS.
    """
    # OpenTelemetry (when OTEL_TRACES_EXPORTER asks for it): the wallet call continues the
    # callback's trace (traceparent metadata), so the server's span and the outbox event's
    # trace_id belong to the same trace as the edge's HTTP span.
    interceptors = tracing_client_interceptors()
    channel = (
        grpc.aio.secure_channel(wallet_addr, wallet_credentials, interceptors=interceptors)
        if wallet_credentials is not None
        else grpc.aio.insecure_channel(wallet_addr, interceptors=interceptors)
    )
    instrument_http_server()
    stub = wallet_service_pb2_grpc.WalletServiceStub(channel)
    disputes = Disputes(pool)
    admin = (
        Admin(integrations, disputes, stub, admin_token, wallet_timeout) if admin_token else None
    )
    callbacks = CallbackHandler(Forwarder(stub, timeout=wallet_timeout), disputes, max_body_bytes)
    app = build_application(integrations, callbacks, admin_routes=admin.routes() if admin else None)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0][1]
    return EdgeApp(runner, int(bound), channel, callbacks)

"""Wiring: build the gRPC server (wallet, health, reflection) over a connection pool.

`build_server` returns `(server, port)` so tests bind port 0 (STYLE.md, grpc examples).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import grpc
from croupier.wallet.v1 import wallet_service_pb2, wallet_service_pb2_grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool

from server.transport.wallet_servicer import WalletServicer
from server.wallet.ledger import Wallet

log = logging.getLogger("croupier.server")

WALLET_SERVICE = wallet_service_pb2.DESCRIPTOR.services_by_name["WalletService"].full_name


@dataclass
class App:
    """A running server and what it owns."""

    server: grpc.aio.Server
    port: int
    pool: AsyncConnectionPool
    health: health_aio.HealthServicer
    wallet: Wallet
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self, grace: float) -> None:
        """Graceful shutdown: NOT_SERVING, stop accepting, finish in-flight calls within
        `grace` seconds, stop background tasks, close the pool."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.close()


async def _sweep_expired_holds(wallet: Wallet, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            while await wallet.expire_holds(limit=200) == 200:
                pass
        except Exception:  # keep sweeping after a database hiccup
            log.exception("expired-hold sweep failed")


async def build_server(
    pool: AsyncConnectionPool,
    addr: str = "127.0.0.1:0",
    *,
    max_concurrent_rpcs: int = 1024,
    hold_sweep_seconds: float = 5.0,
) -> App:
    """Create and start the server on `addr` (port 0 = any free port); returns the App."""
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", 4 * 1024 * 1024)],
    )
    wallet = Wallet(pool)
    wallet_service_pb2_grpc.add_WalletServiceServicer_to_server(WalletServicer(wallet), server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = (
        WALLET_SERVICE,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(services, server)
    port = server.add_insecure_port(addr)
    if port == 0:
        raise RuntimeError(f"could not bind {addr}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(WALLET_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    app = App(server, port, pool, health_servicer, wallet)
    app.tasks.append(asyncio.create_task(_sweep_expired_holds(wallet, hold_sweep_seconds)))
    return app

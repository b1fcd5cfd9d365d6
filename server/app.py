"""Wiring: build the gRPC server (wallet, jackpot, health, reflection) over a connection pool.

`build_server` returns `(server, port)` so tests bind port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field

import grpc
from croupier.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from croupier.events.v1 import subscription_service_pb2, subscription_service_pb2_grpc
from croupier.jackpot.v1 import jackpot_service_pb2, jackpot_service_pb2_grpc
from croupier.wallet.v1 import (
    round_service_pb2,
    round_service_pb2_grpc,
    wallet_service_pb2,
    wallet_service_pb2_grpc,
)
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool

from server.auth import KeyStore
from server.events.context import background_trace
from server.jackpot.batching import ContributionBatcher
from server.jackpot.engine import Jackpots
from server.jackpot.payout import PayoutSaga
from server.recon.retention import Retention, purge_forever
from server.rounds.engine import finalise_overdue
from server.store.replica import ReadRouter
from server.telemetry import tracing_interceptors
from server.transport.audit_servicer import AuditServicer
from server.transport.interceptor import CallInterceptor
from server.transport.jackpot_servicer import JackpotServicer
from server.transport.round_servicer import RoundServicer
from server.transport.wallet_servicer import WalletServicer
from server.transport.webhook_servicer import SubscriptionServicer
from server.wallet.ledger import Wallet
from server.webhooks.subscriptions import Subscriptions

log = logging.getLogger("croupier.server")

WALLET_SERVICE = wallet_service_pb2.DESCRIPTOR.services_by_name["WalletService"].full_name
JACKPOT_SERVICE = jackpot_service_pb2.DESCRIPTOR.services_by_name["JackpotService"].full_name
ROUND_SERVICE = round_service_pb2.DESCRIPTOR.services_by_name["RoundService"].full_name
AUDIT_SERVICE = audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
SUBSCRIPTION_SERVICE = subscription_service_pb2.DESCRIPTOR.services_by_name[
    "SubscriptionService"
].full_name


@dataclass
class App:
    """A running server and what it owns."""

    server: grpc.aio.Server
    port: int
    pool: AsyncConnectionPool
    health: health_aio.HealthServicer
    wallet: Wallet
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    jackpots: Jackpots | None = None
    payouts: PayoutSaga | None = None

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
        if self.payouts is not None:
            await self.payouts.close()
        await self.pool.close()


async def _sweep_expired_holds(wallet: Wallet, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            while True:
                with background_trace("wallet.expire_holds"):
                    if await wallet.expire_holds(limit=200) < 200:
                        break
        except Exception:  # keep sweeping after a database hiccup
            log.exception("expired-hold sweep failed")
        try:
            while True:
                with background_trace("wallet.expire_bonuses"):
                    if await wallet.expire_bonuses(limit=200) < 200:
                        break
        except Exception:  # keep sweeping after a database hiccup
            log.exception("expired-bonus sweep failed")


async def _sweep_open_rounds(pool: AsyncConnectionPool, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            with background_trace("rounds.finalise_overdue"):
                for tenant, round_id in await finalise_overdue(pool):
                    log.warning(
                        "round %s of %s left open past its timeout: finalised", round_id, tenant
                    )
        except Exception:  # keep sweeping after a database hiccup
            log.exception("open-round sweep failed")


async def _drop_deadlines(jackpots: Jackpots, payouts: PayoutSaga, every: float) -> None:
    """Drop time-bound pools whose deadline passed (Jackpots.drop_due_deadlines) and start
    their payouts."""
    while True:
        await asyncio.sleep(every)
        try:
            with background_trace("jackpot.drop_due_deadlines"):
                for win_id in await jackpots.drop_due_deadlines():
                    payouts.kick(win_id)  # the payout task inherits the pass's trace
        except Exception:  # keep scheduling after a database hiccup
            log.exception("deadline drop pass failed")


async def build_server(
    pool: AsyncConnectionPool,
    addr: str = "127.0.0.1:0",
    *,
    max_concurrent_rpcs: int = 1024,
    hold_sweep_seconds: float = 5.0,
    payout_retry_seconds: float = 1.0,
    payout_start_delay_seconds: float = 0.0,
    keys: KeyStore | None = None,
    deadline_seconds: float = 1.0,
    credentials: grpc.ServerCredentials | None = None,
    contribution_batch: int = 64,
    wallet_batch: int = 32,
    wallet_inflight: int = 0,
    reads: ReadRouter | None = None,
) -> App:
    """Create and start the server on `addr` (port 0 = any free port); returns the App.

    `keys` turns on tenant authentication (server.auth); tracing follows OTEL_* variables.
    `credentials` (server.tls.server_credentials) serves TLS or mutual TLS instead of plain text.
    `contribution_batch`: most contributions group-committed in one transaction
    (server.jackpot.batching); `wallet_inflight`: most wallet transactions of the group commit
    at the database at once (0: server.group_commit.default_inflight); `wallet_batch`: most
    wallet writes group-committed in one transaction (server.group_commit); 1 turns either off.
    `reads` (server.store.replica) serves the stale-tolerant reads off a standby; it is probed
    by a task of the App.
    """
    server = grpc.aio.server(
        interceptors=[*tracing_interceptors(), CallInterceptor(keys)],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", 4 * 1024 * 1024)],
    )
    wallet = Wallet(pool, batch=wallet_batch)
    if wallet_inflight > 0:
        wallet.group_commit.max_inflight = wallet_inflight
    jackpots = Jackpots(pool)
    if reads is not None:
        wallet.reads = jackpots.reads = reads
    wallet_service_pb2_grpc.add_WalletServiceServicer_to_server(WalletServicer(wallet), server)
    payouts = PayoutSaga(pool, wallet, start_delay_seconds=payout_start_delay_seconds)
    jackpot_service_pb2_grpc.add_JackpotServiceServicer_to_server(
        JackpotServicer(
            jackpots,
            payouts,
            ContributionBatcher(jackpots, pool, max_batch=contribution_batch),
        ),
        server,
    )
    subscription_service_pb2_grpc.add_SubscriptionServiceServicer_to_server(
        SubscriptionServicer(Subscriptions(pool)), server
    )
    round_service_pb2_grpc.add_RoundServiceServicer_to_server(RoundServicer(wallet), server)
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(pool, wallet), server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = (
        WALLET_SERVICE,
        JACKPOT_SERVICE,
        SUBSCRIPTION_SERVICE,
        AUDIT_SERVICE,
        ROUND_SERVICE,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(services, server)
    # TLS / mutual TLS when given credentials (server.tls.server_credentials), else plain text
    if credentials is not None:
        port = server.add_secure_port(addr, credentials)
    else:
        port = server.add_insecure_port(addr)
    if port == 0:
        raise RuntimeError(f"could not bind {addr}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(WALLET_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(JACKPOT_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SUBSCRIPTION_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(AUDIT_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(ROUND_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    app = App(server, port, pool, health_servicer, wallet, jackpots=jackpots, payouts=payouts)
    app.tasks.append(asyncio.create_task(_sweep_expired_holds(wallet, hold_sweep_seconds)))
    # the payout saga's retrier: resumes requested wins (also after a crash), with backoff
    app.tasks.append(asyncio.create_task(payouts.retry_forever(payout_retry_seconds)))
    app.tasks.append(asyncio.create_task(_drop_deadlines(jackpots, payouts, deadline_seconds)))
    # rounds left open past their tenant's timeout (server.rounds.engine.finalise_overdue)
    app.tasks.append(asyncio.create_task(_sweep_open_rounds(pool, hold_sweep_seconds * 12)))
    # raw payloads and reconciliation reports past the retention (server.recon.retention)
    every = float(os.environ.get("CROUPIER_RETENTION_SWEEP_SECONDS", "3600"))
    app.tasks.append(asyncio.create_task(purge_forever(pool, Retention.from_env(), every)))
    if reads is not None:
        app.tasks.append(asyncio.create_task(reads.watch()))
    return app

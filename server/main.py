"""`croupier-server`: run the gRPC server (embedded PostgreSQL unless CROUPIER_DATABASE_URL)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool

from server.auth import KeyStore
from server.config import Settings
from server.store import outbox_sql
from server.store.database import migrate, open_pool
from server.store.embedded import EmbeddedPostgres, EmbeddedPostgresError
from server.store.replica import ReadRouter
from server.telemetry import (
    OUTBOX_LAG,
    OUTBOX_UNPUBLISHED,
    observe_pool,
    refresh_business_gauges,
    setup_tracing,
    start_metrics_server,
)
from server.tls import TLSConfigError, server_credentials, tls_files

T = TypeVar("T")

log = logging.getLogger("croupier")


async def watch_gauges(pool: AsyncConnectionPool, business: bool, every: float = 5.0) -> None:
    """Refresh the pool and outbox-lag gauges every `every` seconds, and (worker 0 only) the
    jackpot business gauges every third time."""
    tick = 0
    while True:
        observe_pool(pool.get_stats())
        try:
            async with pool.connection() as conn:
                count, age_ms = await outbox_sql.lag(conn)
                if business and tick % 3 == 0:
                    await refresh_business_gauges(conn)
            tick += 1
            OUTBOX_UNPUBLISHED.set(count)
            OUTBOX_LAG.set(age_ms / 1000)
        except Exception:  # a gauge must never take the server down
            log.debug("outbox lag probe failed", exc_info=True)
        await asyncio.sleep(every)


def _transport(settings: Settings) -> str:
    """How the server listens, for the log: plain text, TLS or mutual TLS."""
    if settings.tls_cert is None:
        return "plain text"
    return "mutual TLS" if settings.tls_client_ca is not None else "TLS"


async def serve(settings: Settings, database_url: str, worker_index: int = 0) -> None:
    """Migrate, start the server, wait for SIGTERM/SIGINT, shut down gracefully."""
    from server.app import build_server  # after logging is set up

    applied = await migrate(database_url)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    pool = await open_pool(
        database_url, settings.pool_min, settings.pool_max, wait_seconds=settings.pool_timeout
    )
    reads: ReadRouter | None = None
    if settings.read_database_url:
        replica = await open_pool(
            settings.read_database_url,
            1,
            settings.pool_max,
            wait_seconds=settings.pool_timeout,
            name="croupier-reads",
        )
        reads = ReadRouter(pool, replica, max_lag=settings.read_max_lag_seconds)
    setup_tracing()
    start_metrics_server(settings.metrics_addr, worker_index)
    app = await build_server(
        pool,
        settings.grpc_addr,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        hold_sweep_seconds=settings.hold_sweep_seconds,
        contribution_batch=settings.contribution_batch,
        wallet_batch=settings.wallet_batch,
        wallet_inflight=settings.wallet_inflight,
        payout_retry_seconds=settings.payout_retry_seconds,
        payout_start_delay_seconds=settings.payout_start_delay_seconds,
        keys=KeyStore(pool) if settings.auth_required else None,
        credentials=server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca),
        reads=reads,
    )
    app.tasks.append(asyncio.create_task(watch_gauges(pool, worker_index == 0)))
    host = settings.grpc_addr.rsplit(":", 1)[0]
    log.info("croupier serving on %s:%d (%s)", host, app.port, _transport(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.0fs)", settings.grace_seconds)
    await app.stop(settings.grace_seconds)
    if reads is not None and reads.replica is not None:
        await reads.replica.close()


def run_loop(main: Coroutine[Any, Any, T], event_loop: str = "uvloop") -> T:
    """`asyncio.run(main)` on uvloop (libuv's event loop; `make bench` measured about 10% more
    hot-pool contributions per second than the standard loop) unless `event_loop` is
    "asyncio" or uvloop is not installed."""
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)


def _worker(settings: Settings, database_url: str, index: int) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        run_loop(serve(settings, database_url, index), settings.event_loop)


def supervise_workers(n: int, settings: Settings, database_url: str) -> None:
    """Fork `n` workers before any gRPC object exists (grpc's multiprocessing example); each
    binds the same address with SO_REUSEPORT and serves independently. A worker that dies is
    restarted; SIGTERM/SIGINT is forwarded to all and waited for (graceful shutdown)."""
    ctx = get_context("fork")
    stopping = False

    def spawn(i: int) -> BaseProcess:
        proc = ctx.Process(
            target=_worker, args=(settings, database_url, i), name=f"croupier-worker-{i}"
        )
        proc.start()
        log.info("worker %d started (pid %s)", i, proc.pid)
        return proc

    procs = [spawn(i) for i in range(n)]

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping:
        for i, p in enumerate(procs):
            if not p.is_alive() and not stopping:
                log.warning("worker %d (pid %s) exited with %s; restarting", i, p.pid, p.exitcode)
                procs[i] = spawn(i)
        time.sleep(0.2)
    for p in procs:
        p.join(settings.grace_seconds + 5)
        if p.is_alive():
            p.kill()


COMPANIONS = {
    "relay": "croupier-relay",
    "edge": "croupier-edge",
    "webhooks": "croupier-webhooks",
}


def start_companions(names: list[str], database_url: str) -> list[subprocess.Popen[bytes]]:
    """Start the companion processes (outbox relay, sportsbook edge, webhook dispatcher) with
    the server's database; those not installed are skipped with a warning."""
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "CROUPIER_DATABASE_URL": database_url}
    bindir = Path(sys.argv[0]).resolve().parent
    for name in names:
        exe = COMPANIONS.get(name)
        if exe is None:
            raise SystemExit(f"croupier-server: unknown companion {name!r}")
        path = shutil.which(exe, path=str(bindir)) or shutil.which(exe)
        if path is None:
            log.warning("companion %s (%s) is not installed; skipped", name, exe)
            continue
        procs.append(subprocess.Popen([path], env=env))
        log.info("started %s (pid %d)", exe, procs[-1].pid)
    return procs


def stop_companions(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM each companion, wait up to `grace` seconds, then SIGKILL."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()


def main(argv: list[str] | None = None) -> int:
    """Entry point. `--migrate-only` applies migrations and exits; `--with relay,edge,webhooks`
    also runs those companion processes against the same database (what `make run` does)."""
    parser = argparse.ArgumentParser(prog="croupier-server", description=__doc__)
    parser.add_argument("--migrate-only", action="store_true", help="apply migrations and exit")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("CROUPIER_WORKERS", "0")) or None,
        help="server processes sharing the port with SO_REUSEPORT (default: CPU count)",
    )
    parser.add_argument(
        "--with",
        dest="companions",
        default="",
        help="comma-separated companions to run beside the server: relay, edge, webhooks",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:  # a bad TLS configuration stops here, before any database or worker starts
        tls_files(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    except TLSConfigError as exc:
        print(f"croupier-server: {exc}", file=sys.stderr)
        return 2
    embedded: EmbeddedPostgres | None = None
    url = settings.database_url
    try:
        if url is None:
            embedded = EmbeddedPostgres(settings.data_dir / "postgres")
            url = embedded.start()
            log.info("embedded PostgreSQL under %s", embedded.data_dir)
        if args.migrate_only:
            applied = asyncio.run(migrate(url))
            print("applied:", ", ".join(applied) or "nothing (up to date)")
            return 0
        asyncio.run(migrate(url))
        companions = start_companions([c for c in args.companions.split(",") if c], url)
        workers = args.workers or os.cpu_count() or 1
        try:
            if workers == 1:
                with contextlib.suppress(KeyboardInterrupt):
                    run_loop(serve(settings, url), settings.event_loop)
            else:
                supervise_workers(workers, settings, url)
        finally:
            stop_companions(companions, settings.grace_seconds)
        return 0
    except EmbeddedPostgresError as exc:
        print(f"croupier-server: {exc}", file=sys.stderr)
        return 2
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())

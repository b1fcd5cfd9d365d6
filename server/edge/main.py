"""`croupier-edge`: the sportsbook HTTP edge beside `croupier-server`.

Needs the WalletService (`CROUPIER_EDGE_WALLET_ADDR`, default 127.0.0.1:50051), integrations
(`CROUPIER_EDGE_CONFIG` or `CROUPIER_EDGE_INTEGRATIONS`, see server.edge.config; with none and a
loopback `CROUPIER_EDGE_ADDR`, the public development integration of `dev.toml`, as `make run`
uses it) and
PostgreSQL for the dispute record: `CROUPIER_DATABASE_URL`, or, when unset, the embedded cluster
a `croupier-server` started under `CROUPIER_DATA_DIR` (found through its `postmaster.pid`,
waited for up to `--wait-db` seconds). Applies pending migrations (the shared, advisory-locked
runner), serves until SIGTERM/SIGINT, then drains in-flight callbacks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import pwd
import signal
import sys
import tempfile
import time
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from server.edge.config import ConfigError, EdgeSettings, dev_integrations
from server.edge.tls import EdgeTLSError, http_ssl_context, wallet_channel_credentials
from server.store.database import migrate
from server.telemetry import setup_tracing

log = logging.getLogger("croupier.edge")
LOOPBACK = frozenset({"127.0.0.1", "::1", "[::1]", "localhost"})


def embedded_url(data_dir: Path) -> str | None:
    """The URL of a running embedded cluster of `croupier-server` under `data_dir`, or None.

    Reads `<cluster>/pgdata/postmaster.pid` (line 4: port, line 5: socket directory), looking
    where server.store.embedded puts the cluster (`<data_dir>/postgres`, or, as root, its
    `/tmp/croupier-pg-<digest>` fallback).
    """
    cluster = (data_dir / "postgres").resolve()
    digest = hashlib.sha256(str(cluster).encode()).hexdigest()[:12]
    user = "postgres" if os.geteuid() == 0 else None
    for candidate in (cluster, Path(tempfile.gettempdir()) / f"croupier-pg-{digest}"):
        pid_file = candidate / "pgdata" / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            continue
        if len(lines) >= 5 and lines[3].strip().isdigit() and lines[4].strip():
            owner = user or pwd.getpwuid(os.geteuid()).pw_name
            return f"postgresql://{owner}@/postgres?host={lines[4].strip()}&port={lines[3].strip()}"
    return None


def database_url(settings: EdgeSettings, wait: float) -> str:
    """CROUPIER_DATABASE_URL, or the running embedded cluster's URL; raises RuntimeError."""
    if settings.database_url:
        return settings.database_url
    deadline = time.monotonic() + wait
    while True:
        url = embedded_url(settings.data_dir)
        if url is not None:
            return url
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"no CROUPIER_DATABASE_URL and no running croupier-server cluster under "
                f"{settings.data_dir}/postgres: start croupier-server first or set the URL"
            )
        time.sleep(0.5)


async def open_dispute_pool(url: str, min_size: int = 4, max_size: int = 16) -> AsyncConnectionPool:
    """The edge's pool for the dispute store, with `synchronous_commit=off`.

    The dispute row of a callback is written before its wallet call; the wallet's own commit,
    which is synchronous, flushes the write-ahead log past that row, so the row is durable
    whenever the wallet's effect is (no effect without evidence), without a second fsync per
    callback. A row of a callback that had no wallet effect may be lost in a database crash.
    """
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "options": "-c synchronous_commit=off",
        },
        open=False,
        name="croupier-edge",
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def serve(settings: EdgeSettings, url: str) -> None:
    """Migrate, start the edge, wait for a signal, shut down gracefully."""
    from server.edge.app import build_edge

    applied = await migrate(url)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    pool = await open_dispute_pool(url)
    try:
        edge = await build_edge(
            settings.integrations,
            pool,
            settings.wallet_addr,
            host=settings.host,
            port=settings.port,
            max_body_bytes=settings.max_body_bytes,
            wallet_timeout=settings.wallet_timeout,
            admin_token=settings.admin_token,
            ssl_context=http_ssl_context(os.environ),
            wallet_credentials=wallet_channel_credentials(os.environ),
        )
        for i in settings.integrations:
            log.info(
                "integration %s (tenant %s): http://%s:%d%s/transaction[-rollback]",
                i.name,
                i.tenant_id,
                settings.host,
                edge.port,
                i.path_prefix,
            )
            if i.uses_dev_secret:
                log.warning("integration %s uses the public development secret", i.name)
        log.info(
            "croupier-edge serving on %s:%d, wallet %s",
            settings.host,
            edge.port,
            settings.wallet_addr,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        await edge.stop()
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="croupier-edge", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--wait-db", type=float, default=60.0, help="seconds to wait for the server's cluster"
    )
    args = parser.parse_args(argv)
    try:
        settings = EdgeSettings.from_env()
    except ConfigError as exc:
        print(f"croupier-edge: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    setup_tracing("croupier-edge")
    if not settings.integrations:
        if settings.host not in LOOPBACK:
            print(
                "croupier-edge: no integration configured (CROUPIER_EDGE_CONFIG or "
                "CROUPIER_EDGE_INTEGRATIONS)",
                file=sys.stderr,
            )
            return 2
        # `make run`: on loopback only, the documented dev integration (docs/sportsbook.md)
        settings = dataclasses.replace(settings, integrations=dev_integrations())
        log.warning("no integration configured: serving the development integration (loopback)")
    try:
        url = database_url(settings, args.wait_db)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, url))
    except (RuntimeError, EdgeTLSError) as exc:
        print(f"croupier-edge: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

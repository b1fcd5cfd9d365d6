"""`croupier-server`: run the gRPC server (embedded PostgreSQL unless CROUPIER_DATABASE_URL)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from server.config import Settings
from server.store.database import migrate, open_pool
from server.store.embedded import EmbeddedPostgres, EmbeddedPostgresError

log = logging.getLogger("croupier")


async def serve(settings: Settings, database_url: str) -> None:
    """Migrate, start the server, wait for SIGTERM/SIGINT, shut down gracefully."""
    from server.app import build_server  # after logging is set up

    applied = await migrate(database_url)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    pool = await open_pool(database_url, settings.pool_min, settings.pool_max)
    app = await build_server(
        pool,
        settings.grpc_addr,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        hold_sweep_seconds=settings.hold_sweep_seconds,
    )
    host = settings.grpc_addr.rsplit(":", 1)[0]
    log.info("croupier serving on %s:%d", host, app.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.0fs)", settings.grace_seconds)
    await app.stop(settings.grace_seconds)


def main(argv: list[str] | None = None) -> int:
    """Entry point. `--migrate-only` applies migrations and exits."""
    parser = argparse.ArgumentParser(prog="croupier-server", description=__doc__)
    parser.add_argument("--migrate-only", action="store_true", help="apply migrations and exit")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, url))
        return 0
    except EmbeddedPostgresError as exc:
        print(f"croupier-server: {exc}", file=sys.stderr)
        return 2
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())

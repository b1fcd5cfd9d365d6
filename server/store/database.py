"""The PostgreSQL connection pool and the versioned SQL migration runner.

Migrations are the files `migrations/NNNN_name.sql`, applied in order, each in its own
transaction, and recorded in `schema_migrations` (version, name, SHA-256 of the file). A
session-level advisory lock makes concurrent starters wait for one another. An applied file
whose content changed is an error: migrations are append-only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg
import psycopg_pool
import psycopg_pool.base
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

_MIGRATION_LOCK_ID = 0x63726F75  # "crou"

# psycopg_pool retries a failed connection attempt with exponential backoff from 1 s (1, 2, 4,
# 8 s ...): a pool that lost its primary would find the promoted standby up to twice the
# failover time late. Every 0.5 s instead (the class's own knobs; loopback or LAN connection
# attempts that fail are cheap), so the pool is back within half a second of the promotion.
psycopg_pool.base.AttemptWithBackoff.INITIAL_DELAY = 0.5
psycopg_pool.base.AttemptWithBackoff.DELAY_BACKOFF = 1.0

# Errors that mean "the database cannot take this now", not "this request is wrong": the
# primary died or is restarting (connection lost, AdminShutdown, CannotConnectNow), a failover
# is under way (a session that turned read-only), no connection came free in time. A caller
# may retry with the same idempotency key; the transport answers UNAVAILABLE.
DATABASE_OUTAGE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg_pool.PoolTimeout,
)


@dataclass(frozen=True)
class Migration:
    """One migration file: `version` from its NNNN prefix, its name and SQL text."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 hex digest of the SQL text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """Return the packaged migrations ordered by version."""
    out: list[Migration] = []
    for entry in resources.files("server.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append(Migration(version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out, key=lambda m: m.version)


class MigrationError(RuntimeError):
    """An applied migration was edited, or a migration failed."""


async def migrate(url: str) -> list[str]:
    """Apply pending migrations to the database at `url`; return the names applied.

    Raises MigrationError when an applied migration's checksum differs from the file.
    """
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute("SELECT version, checksum FROM schema_migrations")
            done = {int(v): str(c) for v, c in await cur.fetchall()}
            for m in load_migrations():
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(f"migration {m.name} changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                applied_now.append(m.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))
    return applied_now


async def open_pool(
    url: str,
    min_size: int = 4,
    max_size: int = 16,
    *,
    wait_seconds: float = 30.0,
    check: bool = True,
    name: str = "croupier",
) -> AsyncConnectionPool:
    """Open an autocommit async connection pool on `url` and wait until it is ready.

    Built to outlive a failover (docs/operations.md, "High availability"):
    - `url` may be a libpq multi-host URL with `target_session_attrs=read-write`; every new
      connection then goes to whichever host is the primary now;
    - `check`: a connection is checked (one empty query) when it leaves the pool, so a
      connection to a dead or demoted primary is thrown away instead of failing a request;
    - a connection that breaks while in use is discarded when it comes back (psycopg_pool);
    - `wait_seconds`: how long a request waits for a connection before PoolTimeout
      (answered UNAVAILABLE, retryable);
    - `connect_timeout` is 3 s per host unless the URL says otherwise.
    """
    kwargs: dict[str, object] = {"autocommit": True, "prepare_threshold": 0}
    if "connect_timeout" not in conninfo_to_dict(url):
        kwargs["connect_timeout"] = 3
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs=kwargs,
        open=False,
        name=name,
        timeout=wait_seconds,
        check=AsyncConnectionPool.check_connection if check else None,
    )
    await pool.open(wait=True, timeout=30)
    return pool

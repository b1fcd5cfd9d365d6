"""The PostgreSQL connection pool and the versioned SQL migration runner.

Migrations are the files `migrations/NNNN_name.sql`, applied in number order, each in its own
transaction, and recorded in `schema_migrations` (version, name, SHA-256 of the file). A
session-level advisory lock makes concurrent starters wait for one another.

Two rules keep every database on one linear history, so a fresh database and an upgraded one
end with the same schema:

- an applied file whose content changed is an error: migrations are append-only;
- a pending file numbered below the highest applied version is an error: a new migration
  takes a number above every existing one.

`RENAMED` lists files that were renumbered into that order; a database that recorded them
under their old names is brought up to date first (same content, same checksum).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from importlib import resources
from typing import Any

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


def _version_of(name: str) -> int:
    return int(name.split("_", 1)[0])


def load_migrations() -> list[Migration]:
    """Return the packaged migrations ordered by version.

    Raises MigrationError when two files share a number.
    """
    out: list[Migration] = []
    for entry in resources.files("server.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            text = entry.read_text(encoding="utf-8")
            out.append(Migration(_version_of(entry.name), entry.name, text))
    out.sort(key=lambda m: m.version)
    for a, b in itertools.pairwise(out):
        if a.version == b.version:
            raise MigrationError(f"migrations {a.name} and {b.name} share the number {a.version}")
    return out


class MigrationError(RuntimeError):
    """An applied migration was edited, a pending one is numbered below an applied one, or a
    migration failed."""


#: Old file name -> new file name, for the files renumbered into the order they were added
#: (their content is unchanged, so the recorded checksums stay valid).
RENAMED: dict[str, str] = {
    "0100_jackpot.sql": "0003_jackpot.sql",
    "0200_sportsbook_callbacks.sql": "0004_sportsbook_callbacks.sql",
    "0003_api_keys.sql": "0005_api_keys.sql",
    "0300_webhooks.sql": "0006_webhooks.sql",
    "0101_jackpot_conversion_and_counters.sql": "0007_jackpot_conversion_and_counters.sql",
    "0102_jackpot_batches.sql": "0008_jackpot_batches.sql",
}


async def _rename_recorded(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Rewrite `schema_migrations` rows recorded under an old name in `RENAMED` to the new
    name and version, in one transaction; return the old names rewritten."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute("SELECT name FROM schema_migrations WHERE name = ANY(%s)", (list(RENAMED),))
    old = [str(r[0]) for r in await cur.fetchall()]
    if not old:
        return []
    async with conn.transaction():
        # Negative versions first: an old and a new number may coincide (0003).
        await conn.execute(
            "UPDATE schema_migrations SET version = -version WHERE name = ANY(%s)", (old,)
        )
        for name in old:
            new = RENAMED[name]
            await conn.execute(
                "UPDATE schema_migrations SET version = %s, name = %s WHERE name = %s",
                (_version_of(new), new, name),
            )
    return old


def _check_order(done: dict[int, tuple[str, str]], migrations: list[Migration]) -> None:
    """Raise MigrationError when an applied file changed or a pending file is numbered below
    the highest applied version."""
    for m in migrations:
        if m.version in done:
            name, checksum = done[m.version]
            if name != m.name:
                raise MigrationError(
                    f"migration {m.version:04d} was applied as {name} but the file is {m.name}"
                )
            if checksum != m.checksum:
                raise MigrationError(f"migration {m.name} changed after it was applied")
    if not done:
        return
    highest = max(done)
    behind = [m.name for m in migrations if m.version not in done and m.version < highest]
    if behind:
        raise MigrationError(
            f"pending migration(s) {', '.join(behind)} are numbered below "
            f"{done[highest][0]}, which is already applied; migrations apply in number "
            f"order only: renumber the new file(s) above {highest:04d}"
        )


async def migrate(url: str) -> list[str]:
    """Apply pending migrations to the database at `url`; return the names applied.

    Raises MigrationError (and applies nothing) when an applied migration's checksum differs
    from its file, or when a pending migration is numbered below the highest applied one.
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
            await _rename_recorded(conn)
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute("SELECT version, name, checksum FROM schema_migrations")
            done = {int(v): (str(n), str(c)) for v, n, c in await cur.fetchall()}
            migrations = load_migrations()
            _check_order(done, migrations)
            for m in migrations:
                if m.version in done:
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

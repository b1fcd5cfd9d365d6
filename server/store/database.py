"""The PostgreSQL connection pool and the versioned SQL migration runner.

Migrations are the files `migrations/NNNN_name.sql`, applied in number order, each in its own
transaction, and recorded in `schema_migrations` (version, name, checksum). The checksum is the
SHA-256 of the file's statements: lines that are only a `--` comment are left out, so a comment
can be reworded without touching what the file does. A session-level advisory lock makes
concurrent starters wait for one another.

Two rules keep every database on one linear history, so a fresh database and an upgraded one
end with the same schema:

- an applied file whose content changed is an error: migrations are append-only;
- a pending file numbered below the highest applied version is an error: a new migration
  takes a number above every existing one.

`RENAMED` lists files that were renumbered into that order; a database that recorded them
under their old names is brought up to date first. `LEGACY_CHECKSUMS` lists the whole-file
checksums that earlier runners recorded; a row carrying one is rewritten to today's statement
checksum, and only when the statements are the ones that were applied.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import weakref
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
import psycopg_pool
import psycopg_pool.base
import sqlparse
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import ConnStatus
from psycopg.rows import scalar_row, tuple_row
from psycopg_pool import AsyncConnectionPool

_MIGRATION_LOCK_ID = 0x63726F75  # "crou"

# psycopg_pool retries a failed connection attempt with exponential backoff from 1 s (1, 2, 4,
# 8 s ...): a pool that lost its primary would find the promoted standby up to twice the
# failover time late. Every 0.5 s instead (the class's own knobs; loopback or LAN connection
# attempts that fail are cheap), so the pool is back within half a second of the promotion.
psycopg_pool.base.AttemptWithBackoff.INITIAL_DELAY = 0.5
psycopg_pool.base.AttemptWithBackoff.DELAY_BACKOFF = 1.0


async def _on_citus(conn: psycopg.AsyncConnection[Any]) -> bool:
    """True when the database has the citus extension (a Citus coordinator)."""
    cur = conn.cursor(row_factory=scalar_row)
    await cur.execute("SELECT count(*) FROM pg_extension WHERE extname = 'citus'")
    return bool(await cur.fetchone())


@dataclass(frozen=True)
class Migration:
    """One migration file: `version` from its NNNN prefix, its name and SQL text."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 hex digest of the statements (the SQL text without its comment-only lines)."""
        return statements_checksum(self.sql)


def statements_checksum(sql: str) -> str:
    """SHA-256 hex digest of `sql` without the lines that hold only a `--` comment."""
    kept = (line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


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


#: File name -> (whole-file SHA-256 recorded by earlier runners, statement checksum of the
#: same file). The statement checksum guards the rewrite: a file whose statements changed
#: keeps failing the edited-migration check.
LEGACY_CHECKSUMS: dict[str, tuple[str, str]] = {
    "0001_wallet_ledger.sql": (
        "fa1dfd5cd601bb937832b8910581ae5c7f74a5a5b9afcd6e0e7b18720a199153",
        "7d68156af918c281eaaa8230acd344f9c7744d16f1e4059cace21f5e07956350",
    ),
    "0002_outbox.sql": (
        "59a2725d241bbc3f9f6c9a8067397d0e706daf6f003ba78d9430c447f5a6419a",
        "d0a8352f6493d4f4631184c06246a089cc2e05cae38ebfd55a393983e1438304",
    ),
    "0003_jackpot.sql": (
        "19b6093aefc1f7b00c36f536bfa8954b8766bbeac2ea655bff4eff3d7c53143a",
        "48519480cba8785f8ed007dbe01850b22876a2de18c842dd1262efb76533cc19",
    ),
    "0004_sportsbook_callbacks.sql": (
        "3a3a95ed4c481e3f72e60c0e65d3723d5be6ed9f8c39ed1dfab25a88aff488ca",
        "ea335374795b6dd32d836cc6231741817b515d7249b6186a5c1eef5e79bb0af9",
    ),
    "0005_api_keys.sql": (
        "3bcd002b10e905a49fe08d556021eba2808928141f1fa4c3debe87622fbd50a7",
        "c7f1d07c3c6543306b06a44c5bd0b3948ad650387ed8a961e44d91cb51cca783",
    ),
    "0006_webhooks.sql": (
        "d18984dbff6fca9794304ed70376762fa5c16eb01654bee4024d993f3d9374cb",
        "9c1fb4223ee8a78f617bac16f5e51310f1d391f8e1ed4d1cfcb2afaed1d80dc5",
    ),
    "0007_jackpot_conversion_and_counters.sql": (
        "687521d2c79785e8ee44f44a9f5247761c022bff272d2e7e1c23745fe7c33883",
        "cb1e7761ca2e23ec2817a5d4d83dcb9509587f6af15067651ba60fa027d1047a",
    ),
    "0008_jackpot_batches.sql": (
        "a09f7b90caffa28603463847517bba1d311726d728846d186dbc21467b171337",
        "cf8385b3907d78dbf9bcc09a0a0a64153b9b3d66927ba6916532b8ef96453944",
    ),
}


async def _upgrade_checksums(conn: psycopg.AsyncConnection[Any]) -> None:
    """Rewrite whole-file checksums recorded by earlier runners (`LEGACY_CHECKSUMS`) to the
    statement checksum, in one transaction."""
    async with conn.transaction():
        for name, (whole_file, statements) in LEGACY_CHECKSUMS.items():
            await conn.execute(
                "UPDATE schema_migrations SET checksum = %s WHERE name = %s AND checksum = %s",
                (statements, name, whole_file),
            )


async def _rename_recorded(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Rewrite `schema_migrations` rows recorded under an old name in `RENAMED` to the new
    name and version, in one transaction; return the old names rewritten."""
    cur = conn.cursor(row_factory=scalar_row)
    await cur.execute("SELECT name FROM schema_migrations WHERE name = ANY(%s)", (list(RENAMED),))
    old = [str(name) for name in await cur.fetchall()]
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
            await _upgrade_checksums(conn)
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute("SELECT version, name, checksum FROM schema_migrations")
            done = {int(v): (str(n), str(c)) for v, n, c in await cur.fetchall()}
            migrations = load_migrations()
            _check_order(done, migrations)
            # the citus extension is created by the operator, never by a migration
            on_citus = await _on_citus(conn)
            for m in migrations:
                if m.version in done:
                    continue
                async with conn.transaction():
                    if on_citus:
                        # Citus sends a DDL statement's own text to the workers, so a migration
                        # runs statement by statement there; DDL on distributed tables and the
                        # functions they depend on, in one transaction, must also use one
                        # connection per worker node.
                        await conn.execute("SET LOCAL citus.multi_shard_modify_mode = sequential")
                        for statement in sqlparse.split(m.sql):
                            await conn.execute(statement.encode())
                    else:
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


# A connection back in the pool for less than this is reused without a round trip to check it
# (seconds).
RECHECK_IDLE_SECONDS = 1.0


class _Checkout:
    """The pool's check and reset callbacks: a connection that left the pool less than
    `RECHECK_IDLE_SECONDS` ago and whose socket libpq still sees open is handed out as is;
    one idle for longer is checked with one empty query (a round trip), and thrown away when
    that fails. Under load every connection is back within milliseconds, so requests do not
    pay a round trip each for the check; after a failover a connection that died in that
    second fails its request with an outage error (UNAVAILABLE, retried with the same
    idempotency key) and is discarded."""

    def __init__(self) -> None:
        self._returned: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    async def check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Raise (so the pool discards `conn`) when it is closed or fails the check."""
        if conn.closed or conn.pgconn.status != ConnStatus.OK:
            raise psycopg.OperationalError("the connection is closed")
        returned = self._returned.get(conn)
        if returned is None or time.monotonic() - returned > RECHECK_IDLE_SECONDS:
            await AsyncConnectionPool.check_connection(conn)

    async def reset(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Note when `conn` came back to the pool."""
        self._returned[conn] = time.monotonic()


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
    - `check`: a connection idle in the pool for over `RECHECK_IDLE_SECONDS` is checked (one
      empty query) when it leaves the pool, so a connection to a dead or demoted primary is
      thrown away instead of failing a request (`_Checkout`);
    - a connection that breaks while in use is discarded when it comes back (psycopg_pool);
    - `wait_seconds`: how long a request waits for a connection before PoolTimeout
      (answered UNAVAILABLE, retryable);
    - `connect_timeout` is 3 s per host unless the URL says otherwise.
    """
    kwargs: dict[str, object] = {"autocommit": True, "prepare_threshold": 0}
    if "connect_timeout" not in conninfo_to_dict(url):
        kwargs["connect_timeout"] = 3
    checkout = _Checkout() if check else None
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs=kwargs,
        open=False,
        name=name,
        timeout=wait_seconds,
        check=checkout.check if checkout else None,
        reset=checkout.reset if checkout else None,
    )
    await pool.open(wait=True, timeout=30)
    return pool

"""The migration runner: one linear order for fresh and upgraded databases.

The previous release (0.1.0) numbered its migrations by subsystem (0001-0003, 0100-0102, 0200,
0300) and applied them in that number order, while databases that followed the development
history applied them in the order they were added. The files were renumbered 0001-0008 in the
order they were added; `server.store.database.RENAMED` maps the old names to the new ones.

Here a database is built exactly as the previous release's runner built it (its files, its
order, its `schema_migrations` rows), upgraded with today's runner, and compared with a fresh
database: same schema (`pg_dump --schema-only`), same recorded migrations.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from server.store.database import RENAMED, MigrationError, load_migrations, migrate
from server.store.embedded import find_pg_bindir
from tests.scratch import database_on

# SHA-256 of each migration file of the previous release, by its name there (as
# `git show 15a1afc:server/store/migrations/NAME | sha256sum` prints them).
RELEASE_0_1_0 = {
    "0001_wallet_ledger.sql": "fa1dfd5cd601bb937832b8910581ae5c7f74a5a5b9afcd6e0e7b18720a199153",
    "0002_outbox.sql": "59a2725d241bbc3f9f6c9a8067397d0e706daf6f003ba78d9430c447f5a6419a",
    "0003_api_keys.sql": "3bcd002b10e905a49fe08d556021eba2808928141f1fa4c3debe87622fbd50a7",
    "0100_jackpot.sql": "19b6093aefc1f7b00c36f536bfa8954b8766bbeac2ea655bff4eff3d7c53143a",
    "0101_jackpot_conversion_and_counters.sql": (
        "687521d2c79785e8ee44f44a9f5247761c022bff272d2e7e1c23745fe7c33883"
    ),
    "0102_jackpot_batches.sql": "a09f7b90caffa28603463847517bba1d311726d728846d186dbc21467b171337",
    "0200_sportsbook_callbacks.sql": (
        "3a3a95ed4c481e3f72e60c0e65d3723d5be6ed9f8c39ed1dfab25a88aff488ca"
    ),
    "0300_webhooks.sql": "d18984dbff6fca9794304ed70376762fa5c16eb01654bee4024d993f3d9374cb",
}
# The files a database created at an intermediate commit (webhooks added, jackpot conversion
# not yet) had applied.
BEFORE_JACKPOT_CONVERSION = (
    "0001_wallet_ledger.sql",
    "0002_outbox.sql",
    "0003_api_keys.sql",
    "0100_jackpot.sql",
    "0200_sportsbook_callbacks.sql",
    "0300_webhooks.sql",
)


def release_files(names: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(old name, SQL) of the previous release's files, in its number order, rebuilt from
    today's files through RENAMED and checked byte for byte against the release checksums."""
    by_name = {m.name: m.sql for m in load_migrations()}
    out = []
    for old in sorted(names or RELEASE_0_1_0):
        sql = by_name[RENAMED.get(old, old)]
        assert hashlib.sha256(sql.encode()).hexdigest() == RELEASE_0_1_0[old], old
        out.append((old, sql))
    return out


def migrate_like_release_0_1_0(url: str, files: list[tuple[str, str]]) -> None:
    """Apply `files` as the previous release's runner did: number order, one transaction
    each, recorded as (old version, old name, checksum)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for name, sql in files:
            with conn.transaction():
                conn.execute(sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (int(name.split("_", 1)[0]), name, hashlib.sha256(sql.encode()).hexdigest()),
                )


def schema(url: str) -> str:
    """`pg_dump --schema-only` of the database at `url`, without its version banner."""
    bindir = find_pg_bindir()
    pg_dump = str(bindir / "pg_dump") if bindir else shutil.which("pg_dump")
    assert pg_dump, "pg_dump not found"
    out = subprocess.run(
        [pg_dump, "--schema-only", "--no-owner", "--no-privileges", "-d", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Drop comments and psql's \restrict/\unrestrict guard lines (a random key per dump).
    lines = [ln for ln in out.splitlines() if not re.match(r"--|\\(un)?restrict ", ln)]
    return "\n".join(lines)


def recorded(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    return [(int(v), str(n), str(c)) for v, n, c in rows]


@pytest.fixture
def fresh(database_url: str) -> Iterator[str]:
    with database_on(database_url, "croupier_mig_fresh") as url:
        yield url


@pytest.fixture
def other(database_url: str) -> Iterator[str]:
    with database_on(database_url, "croupier_mig_old") as url:
        yield url


def test_new_numbers_are_the_order_the_files_were_added() -> None:
    names = [m.name for m in load_migrations()][:8]
    assert names == [
        "0001_wallet_ledger.sql",
        "0002_outbox.sql",
        "0003_jackpot.sql",
        "0004_sportsbook_callbacks.sql",
        "0005_api_keys.sql",
        "0006_webhooks.sql",
        "0007_jackpot_conversion_and_counters.sql",
        "0008_jackpot_batches.sql",
    ]


async def test_previous_release_database_upgrades_to_the_fresh_schema(
    fresh: str, other: str
) -> None:
    migrate_like_release_0_1_0(other, release_files())
    before = recorded(other)
    assert [n for _, n, _ in before][2] == "0003_api_keys.sql"
    # every release file was applied already, under its old name: only later files apply
    applied = await migrate(other)
    assert all(int(name[:4]) > 8 for name in applied)
    assert await migrate(other) == []
    await migrate(fresh)
    assert recorded(other) == recorded(fresh)
    dumped = schema(fresh)
    assert dumped.count("CREATE TABLE") > 10
    assert schema(other) == dumped


async def test_database_from_an_earlier_commit_applies_only_what_it_lacks(
    fresh: str, other: str
) -> None:
    migrate_like_release_0_1_0(other, release_files(BEFORE_JACKPOT_CONVERSION))
    applied = await migrate(other)
    assert applied[:2] == [
        "0007_jackpot_conversion_and_counters.sql",
        "0008_jackpot_batches.sql",
    ]
    await migrate(fresh)
    assert recorded(other) == recorded(fresh)
    assert schema(other) == schema(fresh)


async def test_pending_migration_below_the_highest_applied_is_refused(fresh: str) -> None:
    await migrate(fresh)
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 5")
    with pytest.raises(MigrationError) as err:
        await migrate(fresh)
    message = str(err.value)
    assert "0005_api_keys.sql" in message and "numbered below" in message
    assert "renumber" in message
    assert 5 not in [v for v, _, _ in recorded(fresh)]  # nothing applied


async def test_edited_migration_is_refused(fresh: str) -> None:
    await migrate(fresh)
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 3")
    with pytest.raises(MigrationError, match=r"0003_jackpot\.sql changed after it was applied"):
        await migrate(fresh)

"""Throw-away databases for tests, benchmarks and drills (never for serving).

`scratch_database(prefix, data_dir)` yields the URL of a fresh, empty database: on the server
CROUPIER_DATABASE_URL names, or on a private embedded cluster under `data_dir` that is stopped
afterwards. The database is dropped on exit, so runs never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server.ops import citus_cluster
from server.store.embedded import EmbeddedPostgres


@contextlib.contextmanager
def database_on(base_url: str, prefix: str) -> Iterator[str]:
    """A fresh database named `<prefix>_<random>` on the server of `base_url`, dropped after.

    When `base_url` is a Citus coordinator with workers (`make citus`), the database is
    created on every node with the extension and the nodes registered, so the migrations
    distribute the tables (server/ops/citus_cluster.py)."""
    params: dict[str, Any] = conninfo_to_dict(base_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ports: list[int] | None = None
    if citus_cluster.is_coordinator(base_url):
        ports = citus_cluster.worker_ports(base_url)
        citus_cluster.prepare_database(base_url, name, ports=ports)
    else:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(**{**params, "dbname": name})
    finally:
        if ports is not None:
            citus_cluster.drop_database(base_url, name, ports)
        else:
            with psycopg.connect(base_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@contextlib.contextmanager
def scratch_database(
    prefix: str,
    data_dir: Path,
    *,
    remove: bool = False,
    settings: dict[str, str] | None = None,
) -> Iterator[str]:
    """A fresh database on CROUPIER_DATABASE_URL's server, else on an embedded cluster in
    `data_dir` started with `settings` (stopped afterwards; its files removed too when
    `remove`)."""
    base = os.environ.get("CROUPIER_DATABASE_URL")
    embedded: EmbeddedPostgres | None = None
    if not base:
        embedded = EmbeddedPostgres(data_dir, settings=settings or {})
        base = embedded.start()
    try:
        with database_on(base, prefix) as url:
            yield url
    finally:
        if embedded is not None:
            embedded.stop()
            if remove:
                shutil.rmtree(embedded.data_dir, ignore_errors=True)

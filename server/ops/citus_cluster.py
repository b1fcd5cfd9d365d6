"""A local Citus cluster: a coordinator and two workers on 127.0.0.1 (docs/scaling.md).

    python -m server.ops.citus_cluster start     # build Citus if missing, init, start, print URL
    python -m server.ops.citus_cluster stop
    python -m server.ops.citus_cluster status

Data lives under `.data/citus/<port>/`. PostgreSQL refuses to run as root; when we are root
every node runs as the `postgres` system user. Each node preloads `citus`, listens on
127.0.0.1 only and trusts local connections (a development cluster, never for serving).

Citus metadata is per database: `prepare_database` makes a fresh database usable (the
database on every node, the extension on every node, the coordinator and the workers
registered), and `drop_database` removes it everywhere. The scratch-database helper used by
the tests calls them when the server it is given is a Citus coordinator.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server.store.embedded import EmbeddedPostgresError, find_pg_bindir

HOST = "127.0.0.1"
COORDINATOR_PORT = 9700
WORKER_PORTS = (9701, 9702)
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / ".data" / "citus"
BUILD_SCRIPT = REPO.parent / "shared" / "vendor" / "citus" / "build.sh"

# Settings every node starts with. wal_level=logical: shard moves and tenant isolation copy
# shards with logical replication while writes continue. Triggers on distributed tables run on
# the shards (the ledger's balance rule): citus.enable_unsafe_triggers.
NODE_SETTINGS = {
    "shared_preload_libraries": "citus",
    "listen_addresses": HOST,
    "max_connections": "300",
    "max_prepared_transactions": "300",
    "shared_buffers": "128MB",
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "fsync": "on",
    "synchronous_commit": "on",
    "citus.enable_unsafe_triggers": "on",
    "citus.shard_count": "32",
    # loopback only: TLS between the nodes when they offer it, plain otherwise
    "citus.node_conninfo": "sslmode=prefer",
    # this machine's PostgreSQL allows only listed logical decoding output plugins; Citus
    # moves and splits shards through its own
    "output_plugin_libraries": "pgoutput, test_decoding, citus, citus_pgoutput, citus_wal2json",
    "log_min_messages": "warning",
}


def coordinator_url(dbname: str = "postgres", user: str | None = None) -> str:
    """libpq URL of the coordinator's `dbname`."""
    return f"postgresql://{user or _db_user()}@{HOST}:{COORDINATOR_PORT}/{dbname}"


def _db_user() -> str:
    return "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def citus_installed() -> bool:
    """True when the Citus library is installed in the machine's PostgreSQL."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return False
    out = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True, check=False)
    return (Path(out.stdout.strip()) / "citus.so").exists()


def ensure_citus_built() -> None:
    """Run the vendored build.sh when the Citus library is missing (needs root)."""
    if citus_installed():
        return
    if not BUILD_SCRIPT.exists():
        raise EmbeddedPostgresError(f"Citus is not installed and {BUILD_SCRIPT} is missing")
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)


@dataclass
class Node:
    """One PostgreSQL node of the local cluster."""

    port: int
    data_dir: Path

    @property
    def pgdata(self) -> Path:
        """The node's PGDATA directory."""
        return self.data_dir / str(self.port)

    @property
    def log(self) -> Path:
        """The node's server log."""
        return self.data_dir / f"{self.port}.log"

    def url(self, dbname: str = "postgres") -> str:
        """libpq URL of `dbname` on this node."""
        return f"postgresql://{_db_user()}@{HOST}:{self.port}/{dbname}"

    def running(self) -> bool:
        """True when the node accepts connections."""
        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def pid(self) -> int | None:
        """The postmaster's process id, or None when it is not running."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def init(self) -> None:
        """initdb when the data directory is empty; (re)write the node settings
        (`croupier_citus.conf`, included by postgresql.conf)."""
        if not (self.pgdata / "PG_VERSION").exists():
            _run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                _db_user(),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        conf = "\n".join(f"{k} = '{v}'" for k, v in NODE_SETTINGS.items())
        _write_as_postgres(self.pgdata / "croupier_citus.conf", f"port = {self.port}\n{conf}\n")
        main = self.pgdata / "postgresql.conf"
        text = main.read_text()
        if "croupier_citus.conf" not in text:
            _write_as_postgres(main, text + "\ninclude 'croupier_citus.conf'\n")

    def start(self) -> None:
        """Start the node (waits until it accepts connections)."""
        if self.running():
            return
        _run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the node (`mode`: smart, fast or immediate)."""
        if (self.pgdata / "postmaster.pid").exists():
            _run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False)


def _write_as_postgres(path: Path, text: str) -> None:
    path.write_text(text)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _run(tool: str, *args: str, check: bool = True) -> None:
    bindir = find_pg_bindir()
    if bindir is None:
        raise EmbeddedPostgresError("PostgreSQL server binaries (initdb, pg_ctl) were not found")
    cmd = [str(bindir / tool), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise EmbeddedPostgresError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()}")


@dataclass
class Cluster:
    """The coordinator and the workers under `data_dir`."""

    data_dir: Path = DEFAULT_DATA

    def __post_init__(self) -> None:
        self.coordinator = Node(COORDINATOR_PORT, self.data_dir)
        self.workers = [Node(p, self.data_dir) for p in WORKER_PORTS]

    @property
    def nodes(self) -> list[Node]:
        """Coordinator first, then the workers."""
        return [self.coordinator, *self.workers]

    def worker(self, port: int) -> Node:
        """The worker listening on `port`."""
        return next(w for w in self.workers if w.port == port)

    def start(self) -> str:
        """Build Citus if needed, create and start every node, register the workers in the
        `postgres` database; return the coordinator URL."""
        ensure_citus_built()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        for node in self.nodes:
            node.init()
            node.start()
        prepare_database(self.coordinator.url(), create=False)
        return self.coordinator.url()

    def stop(self) -> None:
        """Stop every node."""
        for node in reversed(self.nodes):
            node.stop()


def _on(url: str, dbname: str, port: int) -> str:
    params: dict[str, Any] = conninfo_to_dict(url)
    return make_conninfo(**{**params, "host": HOST, "port": str(port), "dbname": dbname})


def is_coordinator(url: str) -> bool:
    """True when the server of `url` is a Citus coordinator with workers registered."""
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'citus'").fetchone()
        if not row or not row[0]:
            return False
        row = conn.execute(
            "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND isactive"
        ).fetchone()
        return bool(row and row[0])
    return False


def worker_ports(url: str) -> list[int]:
    """Ports of the workers registered on the coordinator of `url` (the `postgres` list when
    `url`'s database has none yet)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeport"
        ).fetchall()
    return [int(r[0]) for r in rows]


def prepare_database(
    base_url: str, dbname: str | None = None, *, create: bool = True, ports: list[int] | None = None
) -> str:
    """Make `dbname` (default: the database of `base_url`) a Citus database: create it on the
    coordinator and every worker when `create`, `CREATE EXTENSION citus` everywhere, register
    the coordinator and the workers. Returns the coordinator URL of that database."""
    params: dict[str, Any] = conninfo_to_dict(base_url)
    coord_port = int(params.get("port") or COORDINATOR_PORT)
    if ports is None:
        ports = list(WORKER_PORTS)
    name = dbname or str(params.get("dbname") or "postgres")
    if create:
        for port in [coord_port, *ports]:
            with psycopg.connect(_on(base_url, "postgres", port), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    for port in [*ports, coord_port]:
        with psycopg.connect(_on(base_url, name, port), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
    url = _on(base_url, name, coord_port)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, coord_port))
        for port in ports:
            conn.execute("SELECT citus_add_node(%s, %s)", (HOST, port))
    return url


def drop_database(base_url: str, dbname: str, ports: list[int]) -> None:
    """Drop `dbname` on the coordinator and on every worker."""
    params: dict[str, Any] = conninfo_to_dict(base_url)
    coord_port = int(params.get("port") or COORDINATOR_PORT)
    for port in [coord_port, *ports]:
        with (
            contextlib.suppress(psycopg.OperationalError),
            psycopg.connect(_on(base_url, "postgres", port), autocommit=True) as conn,
        ):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


def main(argv: list[str] | None = None) -> int:
    """Command line: start | stop | status | url."""
    parser = argparse.ArgumentParser(prog="python -m server.ops.citus_cluster")
    parser.add_argument("command", choices=["start", "stop", "status", "url"])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    cluster = Cluster(args.data_dir)
    if args.command == "start":
        url = cluster.start()
        print(
            f"Citus cluster up: coordinator {HOST}:{COORDINATOR_PORT}, workers "
            + ", ".join(f"{HOST}:{p}" for p in WORKER_PORTS)
        )
        print(f"export CROUPIER_DATABASE_URL={url}")
    elif args.command == "stop":
        cluster.stop()
    elif args.command == "status":
        for node in cluster.nodes:
            state = "up" if node.running() else "down"
            print(f"{HOST}:{node.port} {state} pid={node.pid()}")
    else:
        print(coordinator_url())
    return 0


if __name__ == "__main__":
    sys.exit(main())

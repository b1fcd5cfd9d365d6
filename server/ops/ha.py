"""A local high-availability PostgreSQL cluster with pg_auto_failover (docs/operations.md).

Three PostgreSQL instances on 127.0.0.1, each run by its own `pg_autoctl` process:

- the monitor (port `base`), which holds the cluster's state and decides failovers;
- node1 and node2 (ports `base + 1`, `base + 2`): a primary and a synchronous standby. A
  commit is acknowledged only once the standby has flushed it: the standby is in the
  replication quorum, so pg_auto_failover runs the primary with
  `synchronous_standby_names = 'ANY 1 (pgautofailover_standby_N)'` while the standby is healthy
  (and, losing the standby, goes `wait_primary` with it off: docs/operations.md).

The server connects with a libpq multi-host URL and `target_session_attrs=read-write`, so a
new connection finds whichever node is the primary (`Cluster.url`).

Failover timings are tuned for one machine (seconds instead of pg_auto_failover's default of
about half a minute): the monitor checks every node every second and calls a node unhealthy
after `unhealthy_seconds` without contact. Data lives under `.data/ha/` (or the directory
given); as root every instance runs as the `postgres` system user, since PostgreSQL refuses to
run as root. Packages: `postgresql-15-auto-failover` and `pg-auto-failover-cli` (Debian).

    python -m server.ops.ha up        # create if needed, start, wait, print the URL
    python -m server.ops.ha status    # the monitor's view of both nodes
    python -m server.ops.ha switchover
    python -m server.ops.ha down
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from server.store.embedded import find_system_pg_bindir

DEBIAN_PACKAGES = ("postgresql-15-auto-failover", "pg-auto-failover-cli")
DATABASE = "croupier"


class ClusterError(RuntimeError):
    """The cluster could not be created, started or driven."""


@dataclass(frozen=True)
class NodeState:
    """One data node as the monitor sees it."""

    name: str
    port: int
    reported: str
    goal: str
    healthy: bool

    @property
    def settled_primary(self) -> bool:
        """Primary with a synchronous standby attached (both states reached)."""
        return self.reported == self.goal == "primary"

    @property
    def settled_secondary(self) -> bool:
        """Streaming standby, in the synchronous quorum."""
        return self.reported == self.goal == "secondary"


@dataclass
class Cluster:
    """The monitor and two data nodes under `root`, ports `base`, `base + 1`, `base + 2`.

    `unhealthy_seconds`: how long the monitor waits without contact before it fails a primary
    over (the keeper's own network-partition timeout is the same, so an isolated primary
    demotes itself in that time).
    """

    root: Path
    base: int = 6540
    unhealthy_seconds: int = 3
    _run_as: str | None = field(default=None, init=False)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    NODES = ("node1", "node2")

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        if os.geteuid() == 0:
            self._run_as = "postgres"

    # -- addresses ---------------------------------------------------------------------------

    def port(self, name: str) -> int:
        """The PostgreSQL port of `monitor`, `node1` or `node2`."""
        return self.base + (0 if name == "monitor" else self.NODES.index(name) + 1)

    @property
    def user(self) -> str:
        """The database superuser (the OS user the instances run as)."""
        return self._run_as or pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        """Multi-host URL of the croupier database: connects to whichever node is primary."""
        hosts = ",".join(f"127.0.0.1:{self.port(n)}" for n in self.NODES)
        return (
            f"postgresql://{self.user}@{hosts}/{DATABASE}"
            "?target_session_attrs=read-write&connect_timeout=2"
        )

    def node_url(self, name: str, dbname: str = DATABASE) -> str:
        """Single-host URL of one node (or the monitor's pg_auto_failover database)."""
        if name == "monitor":
            return f"postgresql://autoctl_node@127.0.0.1:{self.port(name)}/pg_auto_failover"
        return f"postgresql://{self.user}@127.0.0.1:{self.port(name)}/{dbname}?connect_timeout=2"

    @property
    def monitor_url(self) -> str:
        """The monitor's URL as the keepers use it."""
        return self.node_url("monitor") + "?sslmode=disable"

    def pgdata(self, name: str) -> Path:
        """The data directory of `monitor`, `node1` or `node2`."""
        return self.root / name

    # -- processes ---------------------------------------------------------------------------

    def _cmd(self, *cmd: str) -> list[str]:
        if self._run_as:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise ClusterError("running as root needs runuser to drop to postgres")
            return [runuser, "-u", self._run_as, "--", *cmd]
        return list(cmd)

    def _env(self, name: str) -> dict[str, str]:
        bindir = find_system_pg_bindir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGDATA"] = str(self.pgdata(name))
        if bindir is not None:
            env["PG_CONFIG"] = str(bindir / "pg_config")
            env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
        if self._run_as:
            env["HOME"] = pwd.getpwnam(self._run_as).pw_dir
        # pg_autoctl keeps its state files under XDG directories: one tree per cluster
        env["XDG_CONFIG_HOME"] = str(self.root / ".config")
        env["XDG_DATA_HOME"] = str(self.root / ".local")
        env["XDG_RUNTIME_DIR"] = str(self.root / ".run")
        return env

    def _autoctl(self, name: str, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            self._cmd("pg_autoctl", *args),
            env=self._env(name),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"pg_autoctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def _chown(self, path: Path) -> None:
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _prepare_root(self) -> None:
        if shutil.which("pg_autoctl") is None:
            raise ClusterError(
                "pg_autoctl was not found: apt-get install " + " ".join(DEBIAN_PACKAGES)
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._chown(self.root)
        if self._run_as:
            probe = self._cmd("test", "-w", str(self.root))
            if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
                # a checkout the postgres user cannot reach (e.g. under /root, mode 700): the
                # cluster lives in a private directory under /tmp named after the requested one
                digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
                self.root = Path(tempfile.gettempdir()) / f"croupier-ha-{digest}"
                self.root.mkdir(parents=True, exist_ok=True)
                self._chown(self.root)
        for sub in (".config", ".local", ".run"):
            (self.root / sub).mkdir(exist_ok=True)
            self._chown(self.root / sub)
            os.chmod(self.root / sub, 0o700)

    def _log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _spawn(self, name: str) -> None:
        """Start `pg_autoctl run` for `name` in its own session (killed as one group)."""
        log = open(self._log(name), "ab")  # the child process writes to it
        proc = subprocess.Popen(
            self._cmd("pg_autoctl", "run", "--pgdata", str(self.pgdata(name))),
            env=self._env(name),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._procs[name] = proc
        (self.root / f"{name}.session").write_text(str(proc.pid))

    def _session(self, name: str) -> int | None:
        pidfile = self.root / f"{name}.session"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            os.killpg(pid, 0)
            return pid
        return None

    def running(self, name: str) -> bool:
        """Whether `name`'s pg_autoctl process group is alive."""
        return self._session(name) is not None

    def postmaster_pid(self, name: str) -> int | None:
        """The PID of `name`'s PostgreSQL postmaster, if it runs."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.pgdata(name) / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 0)
            return pid
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    def create(self) -> None:
        """Create the monitor and both nodes (those that do not exist yet) and start them."""
        self._prepare_root()
        if not (self.pgdata("monitor") / "PG_VERSION").exists():
            self._autoctl(
                "monitor",
                "create",
                "monitor",
                "--pgdata",
                str(self.pgdata("monitor")),
                "--pgport",
                str(self.port("monitor")),
                "--hostname",
                "127.0.0.1",
                "--auth",
                "trust",
                "--no-ssl",
            )
            self._tune_postgres("monitor")
        if not self.running("monitor"):
            self._spawn("monitor")
        self._wait_sql(self.node_url("monitor"), 60)
        self._tune_monitor()
        for name in self.NODES:
            if not (self.pgdata(name) / "PG_VERSION").exists():
                self._create_node(name)
            if not self.running(name):
                self._spawn(name)

    def _create_node(self, name: str) -> None:
        self._autoctl(
            name,
            "create",
            "postgres",
            "--pgdata",
            str(self.pgdata(name)),
            "--pgport",
            str(self.port(name)),
            "--hostname",
            "127.0.0.1",
            "--listen",
            "127.0.0.1",
            "--name",
            name,
            "--dbname",
            DATABASE,
            "--monitor",
            self.monitor_url,
            "--auth",
            "trust",
            "--no-ssl",
            "--replication-quorum",
            "true",
        )
        self._tune_postgres(name)
        for key, value in (
            # the keeper demotes an isolated primary after this long (no split brain)
            ("timeout.network_partition_timeout", str(self.unhealthy_seconds)),
            ("timeout.prepare_promotion_catchup", "10"),
            ("timeout.prepare_promotion_walreceiver", "2"),
            ("timeout.postgresql_restart_failure_timeout", "5"),
        ):
            self._autoctl(name, "config", "set", "--pgdata", str(self.pgdata(name)), key, value)

    def _tune_postgres(self, name: str) -> None:
        """Settings every instance gets (postgresql-auto-failover.conf is pg_autoctl's)."""
        conf = self.pgdata(name) / "postgresql.conf"
        extra = (
            "\n# croupier (server/ops/ha.py)\n"
            "listen_addresses = '127.0.0.1'\n"
            "max_connections = 300\n"
            "shared_buffers = 128MB\n"
            "wal_sender_timeout = 5s\n"
            "wal_receiver_timeout = 5s\n"
            "wal_retrieve_retry_interval = 1s\n"
            "tcp_keepalives_idle = 5\n"
        )
        if "# croupier (server/ops/ha.py)" not in conf.read_text():
            with conf.open("a") as f:  # the file keeps its owner
                f.write(extra)

    def _tune_monitor(self) -> None:
        """Health checks every second; a node silent for `unhealthy_seconds` is failed over."""
        ms = self.unhealthy_seconds * 1000
        with psycopg.connect(
            f"postgresql://{self.user}@127.0.0.1:{self.port('monitor')}/pg_auto_failover",
            autocommit=True,
        ) as conn:
            for guc, value in (
                ("pgautofailover.health_check_period", "1000"),
                ("pgautofailover.health_check_timeout", "1000"),
                ("pgautofailover.health_check_max_retries", "1"),
                ("pgautofailover.health_check_retry_delay", "500"),
                ("pgautofailover.node_considered_unhealthy_timeout", str(ms)),
                ("pgautofailover.primary_demote_timeout", str(ms + 2000)),
                ("pgautofailover.startup_grace_period", "2000"),
            ):
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(*guc.split(".")), sql.Literal(value)
                    )
                )
            conn.execute("SELECT pg_reload_conf()")

    def _wait_sql(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"{url} did not answer in {timeout:.0f}s: {exc}") from exc
                time.sleep(0.3)

    def states(self) -> list[NodeState]:
        """The monitor's view of the data nodes (empty when the monitor is down)."""
        try:
            with psycopg.connect(self.node_url("monitor"), connect_timeout=2) as conn:
                rows = conn.execute(
                    "SELECT nodename, nodeport, reportedstate::text, goalstate::text,"
                    " health = 1 FROM pgautofailover.node ORDER BY nodeid"
                ).fetchall()
        except psycopg.Error:
            return []
        return [NodeState(str(n), int(p), str(r), str(g), bool(h)) for n, p, r, g, h in rows]

    def primary(self) -> str | None:
        """The node the monitor has as primary (reported and goal), if any."""
        for s in self.states():
            if s.reported == s.goal and s.goal in ("primary", "wait_primary", "single"):
                return s.name
        return None

    def wait_healthy(self, timeout: float = 180) -> str:
        """Wait until one node is primary and the other a synchronous secondary; return the
        primary's name. Raises ClusterError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            primaries = [s.name for s in states if s.settled_primary]
            secondaries = [s for s in states if s.settled_secondary]
            if len(states) == 2 and len(primaries) == 1 and len(secondaries) == 1:
                try:
                    with psycopg.connect(self.url) as conn:
                        row = conn.execute("SHOW synchronous_standby_names").fetchone()
                except psycopg.Error:  # the monitor's view is a moment ahead of PostgreSQL
                    row = None
                if row and str(row[0]):
                    return primaries[0]
            if time.monotonic() > deadline:
                raise ClusterError(f"cluster not healthy after {timeout:.0f}s: {states}")
            time.sleep(0.3)

    def up(self, timeout: float = 240) -> str:
        """Create and start everything, wait until healthy; return the multi-host URL."""
        self.create()
        self.wait_healthy(timeout)
        return self.url

    def start_node(self, name: str) -> None:
        """Start `name`'s pg_autoctl again (after a kill): it rejoins as a standby."""
        if not self.running(name):
            self._spawn(name)

    def kill_node(self, name: str) -> None:
        """The machine dies: SIGKILL the postmaster and the pg_autoctl keeper together."""
        pm = self.postmaster_pid(name)
        session = self._session(name)
        if pm is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pm, signal.SIGKILL)
        if session is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, signal.SIGKILL)
        proc = self._procs.pop(name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for _ in range(50):  # the backends exit once they see the postmaster gone
            if self.postmaster_pid(name) is None and self._session(name) is None:
                break
            time.sleep(0.1)

    def kill_postmaster(self, name: str) -> None:
        """SIGKILL only the postmaster: its keeper restarts PostgreSQL in place."""
        pm = self.postmaster_pid(name)
        if pm is not None:
            os.kill(pm, signal.SIGKILL)

    def switchover(self) -> None:
        """Planned switchover: the standby is promoted once it has every commit."""
        self._autoctl(
            "monitor",
            "perform",
            "switchover",
            "--monitor",
            self.monitor_url,
            "--formation",
            "default",
            "--group",
            "0",
            "--wait",
            "120",
        )

    def stop_node(self, name: str, *, immediate: bool = False) -> None:
        """Stop `name` (`pg_autoctl stop`; `immediate` as a crash)."""
        if not self.running(name):
            return
        args = ["stop", "--pgdata", str(self.pgdata(name))]
        if immediate:
            args.append("--immediate")
        self._autoctl(name, *args, check=False)
        session = self._session(name)
        deadline = time.monotonic() + 30
        while session is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            session = self._session(name)
        if session is not None:
            self.kill_node(name)

    def down(self) -> None:
        """Stop the data nodes, then the monitor."""
        for name in (*self.NODES, "monitor"):
            self.stop_node(name)

    def destroy(self) -> None:
        """Kill every instance and keeper at once and delete the cluster's files (a throw-away
        cluster: nothing to stop gracefully)."""
        for name in (*self.NODES, "monitor"):
            if self.running(name) or self.postmaster_pid(name) is not None:
                self.kill_node(name)
        shutil.rmtree(self.root, ignore_errors=True)


def default_cluster() -> Cluster:
    """The cluster `make ha` drives: CROUPIER_HA_DIR (default .data/ha) and
    CROUPIER_HA_PORT (default 6540: monitor 6540, nodes 6541 and 6542)."""
    return Cluster(
        Path(os.environ.get("CROUPIER_HA_DIR", ".data/ha")),
        base=int(os.environ.get("CROUPIER_HA_PORT", "6540")),
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m server.ops.ha up|down|status|switchover|url|destroy`."""
    parser = argparse.ArgumentParser(prog="python -m server.ops.ha", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "switchover", "url", "destroy"])
    args = parser.parse_args(argv)
    cluster = default_cluster()
    try:
        if args.command == "up":
            url = cluster.up()
            print(f"primary: {cluster.primary()}; logs under {cluster.root}")
            print(f"export CROUPIER_DATABASE_URL='{url}'")
        elif args.command == "url":
            print(cluster.url)
        elif args.command == "status":
            for s in cluster.states() or []:
                print(
                    f"{s.name} 127.0.0.1:{s.port} reported={s.reported} goal={s.goal}"
                    f" healthy={s.healthy}"
                )
            if not cluster.states():
                print("the monitor does not answer (is the cluster up? make ha)")
                return 1
        elif args.command == "switchover":
            cluster.switchover()
            print(f"primary is now {cluster.wait_healthy()}")
        elif args.command == "down":
            cluster.down()
        else:
            cluster.destroy()
    except ClusterError as exc:
        print(f"ha: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

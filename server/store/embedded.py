"""A private PostgreSQL cluster under `.data/`, started with the machine's own binaries.

Used when `CROUPIER_DATABASE_URL` is not set (engineering rule 5): `make run` and the tests get
a throw-away cluster with no setup. The cluster listens only on a Unix socket in a short
private directory, so it never collides with another PostgreSQL on the machine.

PostgreSQL refuses to run as root; when we are root the cluster runs as the `postgres` system
user (as on CI).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found.\n"
    "Install them (Debian/Ubuntu: `sudo apt-get install postgresql`; macOS: "
    "`brew install postgresql@15`) or point CROUPIER_DATABASE_URL at a running server."
)


class EmbeddedPostgresError(RuntimeError):
    """The embedded cluster could not be created or started."""


def find_pg_bindir() -> Path | None:
    """Return the directory holding `initdb` and `pg_ctl`, or None.

    Looks at `CROUPIER_PG_BINDIR`, then `pg_config --bindir`, then the newest
    `/usr/lib/postgresql/*/bin`, then `PATH`.
    """
    candidates: list[Path] = []
    if env := os.environ.get("CROUPIER_PG_BINDIR"):
        candidates.append(Path(env))
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, reachable through a Unix socket.

    Use as a context manager, or call `start()` / `stop()`. `url` is a libpq connection URL.
    """

    data_dir: Path
    bindir: Path | None = None
    _socket_dir: Path | None = field(default=None, init=False)
    _run_as: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.bindir = self.bindir or find_pg_bindir()
        if self.bindir is None:
            raise EmbeddedPostgresError(INSTALL_HINT)
        if os.geteuid() == 0:
            self._run_as = "postgres"

    @property
    def user(self) -> str:
        """The database superuser of the cluster."""
        return self._run_as or pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        """libpq URL of the cluster's `postgres` database over its Unix socket."""
        if self._socket_dir is None:
            raise EmbeddedPostgresError("the cluster is not started")
        return f"postgresql://{self.user}@/postgres?host={self._socket_dir}"

    def _cmd(self, *args: str) -> list[str]:
        assert self.bindir is not None
        if self._run_as and shutil.which("runuser") is None:
            raise EmbeddedPostgresError("running as root needs runuser to drop to postgres")
        return self._cmd_raw(str(self.bindir / args[0]), *args[1:])

    def _chown(self, path: Path) -> None:
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self) -> str:
        """Create the cluster if needed, start it and return its URL.

        Raises EmbeddedPostgresError when initdb or pg_ctl fail.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        if self._run_as and not self._reachable_by_run_as():
            # e.g. a checkout under /root (mode 700): the postgres user cannot reach it, so the
            # cluster lives in a private directory under /tmp named after the requested one.
            digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
            self.data_dir = Path(tempfile.gettempdir()) / f"croupier-pg-{digest}"
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._chown(self.data_dir)
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(pgdata),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        if self._socket_dir is None:  # kept across restart(), so the URL stays the same
            self._socket_dir = Path(tempfile.mkdtemp(prefix="croupier-pg-"))
            self._chown(self._socket_dir)
            os.chmod(self._socket_dir, 0o755)
        opts = (
            f"-c listen_addresses='' -c unix_socket_directories='{self._socket_dir}' "
            "-c fsync=on -c max_connections=300 -c shared_buffers=256MB"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(pgdata),
            "-o",
            opts,
            "-l",
            str(self.data_dir / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self.url

    def _reachable_by_run_as(self) -> bool:
        probe = self._cmd_raw("test", "-w", str(self.data_dir))
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    def _cmd_raw(self, *cmd: str) -> list[str]:
        runuser = shutil.which("runuser")
        if self._run_as and runuser:
            return [runuser, "-u", self._run_as, "--", *cmd]
        return list(cmd)

    def restart(self, mode: str = "fast") -> None:
        """Stop (`mode` fast or immediate, as in a crash) and start again at the same URL."""
        pgdata = self.data_dir / "pgdata"
        self._run("pg_ctl", "-D", str(pgdata), "-m", mode, "-w", "stop")
        self.start()

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (`mode`: smart, fast or immediate) and remove its socket dir."""
        pgdata = self.data_dir / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(pgdata), "-m", mode, "-w", "stop")
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _run(self, *args: str) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = self.data_dir / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedPostgresError(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}"
            )

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Context manager: start, yield the URL, stop."""
        url = self.start()
        try:
            yield url
        finally:
            self.stop()

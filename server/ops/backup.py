"""Backups and point-in-time recovery with pgBackRest (Debian package `pgbackrest`).

`Instance` is a plain PostgreSQL cluster on a loopback port with continuous WAL archiving to a
pgBackRest repository (`archive_command = pgbackrest archive-push`, `archive_timeout` forces a
segment out at least every `archive_timeout` seconds when there were writes). `Backup` drives
pgBackRest on it: stanza creation, full backups, restores to a time or to the end of the
archive into a new data directory. docs/operations.md has the runbook; tests/drills/pitr.py
exercises all of it. As root everything runs as the `postgres` system user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from server.store.embedded import find_system_pg_bindir

STANZA = "croupier"


class BackupError(RuntimeError):
    """A PostgreSQL or pgBackRest command failed."""


def _run_as() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def _cmd(*cmd: str) -> list[str]:
    user = _run_as()
    if user:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise BackupError("running as root needs runuser to drop to postgres")
        return [runuser, "-u", user, "--", *cmd]
    return list(cmd)


def _chown(path: Path) -> None:
    user = _run_as()
    if user:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def run(*cmd: str, timeout: float = 600) -> str:
    """Run `cmd` (as postgres when root); return stdout. Raises BackupError on failure."""
    proc = subprocess.run(_cmd(*cmd), capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise BackupError(
            f"{' '.join(cmd[:3])} failed ({proc.returncode}): {proc.stderr[-2000:]}"
            f"{proc.stdout[-1000:]}"
        )
    return proc.stdout


def reachable_dir(path: Path) -> Path:
    """`path`, created and owned by the user PostgreSQL runs as; when that user cannot reach
    it (e.g. a checkout under /root, mode 700, as root on CI) a private directory under /tmp
    named after it instead."""
    path = path.resolve()
    make_dir(path, 0o755)
    if _run_as() and subprocess.run(_cmd("test", "-w", str(path)), check=False).returncode:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        path = make_dir(Path(tempfile.gettempdir()) / f"croupier-{path.name}-{digest}", 0o755)
    return path


def make_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and parents), owned by the user PostgreSQL runs as."""
    path.mkdir(parents=True, exist_ok=True)
    _chown(path)
    os.chmod(path, mode)
    return path


@dataclass
class Instance:
    """A PostgreSQL cluster in `pgdata` on 127.0.0.1:`port`; its socket in a short temp dir."""

    pgdata: Path
    port: int
    socket_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="crpg-")))

    def __post_init__(self) -> None:
        bindir = find_system_pg_bindir()
        if bindir is None:
            raise BackupError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bindir = bindir
        _chown(self.socket_dir)
        os.chmod(self.socket_dir, 0o755)

    @property
    def user(self) -> str:
        """The database superuser."""
        return _run_as() or pwd.getpwuid(os.geteuid()).pw_name

    def url(self, dbname: str = "postgres") -> str:
        """libpq URL over TCP loopback."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def init(self, archive_command: str | None, archive_timeout: int = 1) -> None:
        """initdb; WAL archiving on with `archive_command` (`archive_timeout` seconds), off
        when None."""
        make_dir(self.pgdata.parent, 0o755)
        run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# croupier (server/ops/backup.py)\n"
                "wal_level = replica\n"
                + (
                    "archive_mode = on\n"
                    f"archive_command = '{archive_command}'\n"
                    f"archive_timeout = {archive_timeout}\n"
                    if archive_command
                    else ""
                )
                + "max_connections = 200\n"
                "shared_buffers = 128MB\n"
            )

    def clone_standby(self, source: Instance) -> None:
        """Make this instance a streaming standby of `source` (pg_basebackup -R)."""
        make_dir(self.pgdata.parent, 0o755)
        run(
            str(self.bindir / "pg_basebackup"),
            "-D",
            str(self.pgdata),
            "-d",
            source.url(),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )

    def start(self, *extra: str) -> None:
        """Start on the instance's port and socket; `extra`: more `-c name=value` options."""
        opts = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                *extra,
            ]
        )
        run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.pgdata),
            "-o",
            opts,
            "-l",
            str(self.pgdata.parent / f"{self.pgdata.name}.log"),
            "-w",
            "-t",
            "600",
            "start",
        )

    def wait_writable(self, timeout: float = 600) -> None:
        """Wait until the instance accepts writes (recovery finished, promoted)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(psycopg.Error):
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and not row[0]:
                        return
            if time.monotonic() > deadline:
                raise BackupError(f"{self.pgdata} not writable after {timeout:.0f}s")
            time.sleep(0.1)

    def postmaster_pid(self) -> int | None:
        """The postmaster's PID, if it runs."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 0)
            return pid
        return None

    def crash(self) -> None:
        """SIGKILL the postmaster (the machine dies: WAL not yet archived is lost with it)."""
        pid = self.postmaster_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if self.postmaster_pid() is None:
                break
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it (immediate) if it runs, and remove its socket directory."""
        if self.postmaster_pid() is not None:
            with contextlib.suppress(BackupError):
                run(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "stop")
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@dataclass
class Backup:
    """A pgBackRest repository under `root` for the instance `source` (stanza `croupier`)."""

    root: Path
    source: Instance

    @property
    def config(self) -> Path:
        """The pgbackrest.conf this repository uses."""
        return self.root / "pgbackrest.conf"

    @property
    def archive_command(self) -> str:
        """The `archive_command` that pushes WAL into this repository."""
        return f"pgbackrest --config={self.config} --stanza={STANZA} archive-push %p"

    def write_config(self) -> None:
        """Write pgbackrest.conf: repository, lz4 compression, local instance."""
        for sub in ("repo", "log", "lock", "spool"):
            make_dir(self.root / sub, 0o750)
        self.config.write_text(
            "[global]\n"
            f"repo1-path={self.root / 'repo'}\n"
            "repo1-retention-full=2\n"
            f"log-path={self.root / 'log'}\n"
            f"lock-path={self.root / 'lock'}\n"
            f"spool-path={self.root / 'spool'}\n"
            "compress-type=lz4\n"
            "start-fast=y\n"
            "process-max=2\n"
            "log-level-console=warn\n"
            f"\n[{STANZA}]\n"
            f"pg1-path={self.source.pgdata}\n"
            f"pg1-port={self.source.port}\n"
            f"pg1-socket-path={self.source.socket_dir}\n"
            f"pg1-user={self.source.user}\n"
        )
        _chown(self.config)

    def _pgbackrest(self, *args: str) -> str:
        return run("pgbackrest", f"--config={self.config}", f"--stanza={STANZA}", *args)

    def create_stanza(self) -> None:
        """`stanza-create` and `check` (the archive works end to end)."""
        self._pgbackrest("stanza-create")
        self._pgbackrest("check")

    def full_backup(self) -> None:
        """A full base backup (checkpoint first, `start-fast`)."""
        self._pgbackrest("--type=full", "backup")

    def info(self) -> str:
        """`pgbackrest info`: backups and the archived WAL range."""
        return self._pgbackrest("info")

    def restore(self, pgdata: Path, target_time: str | None = None) -> None:
        """Restore into the empty directory `pgdata`: to `target_time` (a timestamptz text,
        inclusive) then promote, or to the end of the archive when None. Archiving is off on
        the copy, so it never writes into this repository."""
        make_dir(pgdata)
        args = [f"--pg1-path={pgdata}", "--archive-mode=off"]
        if target_time is not None:
            args += ["--type=time", f"--target={target_time}", "--target-action=promote"]
        self._pgbackrest(*args, "restore")

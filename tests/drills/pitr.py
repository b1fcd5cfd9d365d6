"""The point-in-time recovery drill: pgBackRest base backup and continuous WAL archiving under
load, then a restore to a time T and a restore to the end of the archive.

1. A PostgreSQL cluster with `archive_command = pgbackrest archive-push` and
   `archive_timeout = 1 s` (server/ops/backup.py); the schema; `stanza-create`, `check`, a
   full backup.
2. The server on it; players play rounds; at time T (the database clock) the drill notes T;
   the load goes on; the load stops and the postmaster is SIGKILLed at once (the machine dies:
   WAL not yet archived is lost with it).
3. Restore to T into a new data directory, start it, start the server on it: RTO is restore
   start -> the server answering. Checked: the ledger reconciles exactly, every idempotency
   record of a posting call has its one transaction and every keyed transaction its record
   (the server's payout credits: their credited win, one credit per credited win),
   every write acknowledged before T is there, no write first tried after T is there.
4. Restore to the end of the archive: RPO is the time between the last acknowledged write
   before the crash and the last commit the archive kept (what archiving alone loses; the
   synchronous standby of server/ops/ha.py loses nothing). Also reconciled exactly.

    .venv/bin/python -m tests.drills.pitr --seconds 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import grpc
import psycopg
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from server.ops.backup import Backup, Instance, make_dir, reachable_dir
from server.reconcile import reconcile_ledger
from server.store.database import migrate, open_pool
from tests.chaos.harness import BIN, ROOT, free_port
from tests.drills.failover import LoadClient, free_port_range

POSTING_METHODS = ("Credit", "AuthorizeBet", "SettleBet")


def _posts(key: str) -> bool:
    """Whether the drill's write with this key is a ledger transaction (deposit, bet, settle;
    jackpot contributions are not)."""
    return any(part in key for part in ("-dep-", "-auth-", "-settle-"))


@dataclass
class PitrReport:
    """What the drill measured and found."""

    backup_seconds: float = 0.0
    rto_seconds: float = 0.0
    restore_end_seconds: float = 0.0
    rpo_seconds: float = 0.0
    lost_with_archiving_alone: int = 0
    acked_before_t: int = 0
    present_at_t: int = 0
    anomalies: list[str] = field(default_factory=list)


class PitrDrill:
    """One PITR drill run (see the module doc)."""

    def __init__(self, seconds: float, players: int) -> None:
        self.seconds = seconds
        self.players = players
        self.root = reachable_dir(ROOT / ".data" / f"pitr-drill-{os.getpid()}")
        base = free_port_range(3)
        self.source = Instance(self.root / "pgdata", base)
        self.backup = Backup(self.root / "backup", self.source)
        self.at_t = Instance(self.root / "restore-t", base + 1)
        self.at_end = Instance(self.root / "restore-end", base + 2)
        self.tenant = f"pitr-{uuid.uuid4().hex[:6]}"
        self.report = PitrReport()
        self.procs: list[subprocess.Popen[bytes]] = []

    def server(self, url: str, port: int) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            CROUPIER_DATABASE_URL=url,
            CROUPIER_GRPC_ADDR=f"127.0.0.1:{port}",
            CROUPIER_METRICS_ADDR="",
            CROUPIER_LOG_LEVEL="WARNING",
            CROUPIER_GRACE_SECONDS="1",
        )
        log = open(self.root / "server.log", "ab")  # the child writes to it
        proc = subprocess.Popen(
            [str(BIN / "croupier-server"), "--workers", "1"], env=env, stdout=log, stderr=log
        )
        self.procs.append(proc)
        return proc

    async def wait_serving(self, port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = WalletServiceStub(ch)
            while True:
                try:
                    await stub.GetBalance(
                        pb.GetBalanceRequest(tenant_id=self.tenant, player_id="probe"), timeout=1
                    )
                    return
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.NOT_FOUND:
                        return  # answered from the database: serving
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

    def stop_servers(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()

    async def check_restored(self, url: str, label: str) -> set[str]:
        """Reconcile exactly; idempotency records match transactions; return the keys of this
        tenant's keyed transactions."""
        a = self.report.anomalies
        pool = await open_pool(url, 1, 2)
        try:
            report = await reconcile_ledger(pool)
            if not report.ok:
                a.append(f"{label}: the ledger does not reconcile: {report}")
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT t.idempotency_key FROM transactions t WHERE t.idempotency_key"
                    " IS NOT NULL AND t.idempotency_key NOT LIKE 'jp-payout-%%'"
                    " AND NOT EXISTS (SELECT 1 FROM idempotency_records r"
                    " WHERE r.tenant_id = t.tenant_id AND r.idempotency_key = t.idempotency_key"
                    " AND r.state = 'done')"
                )
                for (key,) in await cur.fetchall():
                    a.append(f"{label}: transaction {key} has no idempotency record")
                # the server's own payout credits are recorded by their win, credited with them
                cur = await conn.execute(
                    "SELECT t.idempotency_key FROM transactions t"
                    " WHERE t.idempotency_key LIKE 'jp-payout-%%' AND NOT EXISTS ("
                    "  SELECT 1 FROM jp_wins w WHERE w.payout_state = 'credited'"
                    "   AND 'jp-payout-' || w.win_id::text = t.idempotency_key)"
                )
                for (key,) in await cur.fetchall():
                    a.append(f"{label}: payout credit {key} has no credited win")
                cur = await conn.execute(
                    "SELECT w.win_id::text FROM jp_wins w WHERE w.payout_state = 'credited'"
                    " AND (SELECT count(*) FROM transactions t"
                    "      WHERE t.idempotency_key = 'jp-payout-' || w.win_id::text) <> 1"
                )
                for (win,) in await cur.fetchall():
                    a.append(f"{label}: credited win {win} has not exactly one credit")
                cur = await conn.execute(
                    "SELECT r.idempotency_key, r.method, (SELECT count(*) FROM transactions t"
                    "  WHERE t.tenant_id = r.tenant_id AND t.idempotency_key = r.idempotency_key)"
                    " FROM idempotency_records r WHERE r.tenant_id = %s AND r.state = 'done'"
                    " AND r.grpc_code = 0",
                    (self.tenant,),
                )
                for key, method, n in await cur.fetchall():
                    if str(method).endswith(POSTING_METHODS) and int(n) != 1:
                        a.append(f"{label}: record {key} ({method}) has {n} transactions")
                cur = await conn.execute(
                    "SELECT idempotency_key FROM transactions WHERE tenant_id = %s"
                    " AND idempotency_key IS NOT NULL",
                    (self.tenant,),
                )
                return {str(k) for (k,) in await cur.fetchall()}
        finally:
            await pool.close()

    async def run(self) -> PitrReport:
        r = self.report
        make_dir(self.root, 0o755)
        try:
            self.backup.write_config()
            self.source.init(self.backup.archive_command, archive_timeout=1)
            self.source.start()
            with psycopg.connect(self.source.url(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE croupier")
            await migrate(self.source.url("croupier"))
            t0 = time.monotonic()
            await asyncio.to_thread(self.backup.create_stanza)
            await asyncio.to_thread(self.backup.full_backup)
            r.backup_seconds = time.monotonic() - t0

            # load; T in the middle; crash right after the last answer
            port = free_port()
            self.server(self.source.url("croupier"), port)
            await self.wait_serving(port)
            client = LoadClient(self.tenant, port, f"jp-{self.tenant}")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                await client.create_jackpot(JackpotServiceStub(ch))  # type: ignore[arg-type]
            client.jackpot_id = f"jp-{self.tenant}"
            load = asyncio.create_task(client.run_players(0, self.players, self.seconds))
            await asyncio.sleep(self.seconds / 2)
            with psycopg.connect(self.source.url("croupier")) as conn:
                row = conn.execute(
                    "SELECT clock_timestamp()::text, extract(epoch FROM clock_timestamp())"
                ).fetchone()
            assert row is not None
            target, t_epoch = str(row[0]), float(row[1])
            await load
            crash_at = time.time()
            self.source.crash()
            self.stop_servers()
            r.anomalies += client.stats.anomalies
            acked = client.acked_at

            # restore to T, then serve: RTO
            t0 = time.monotonic()
            await asyncio.to_thread(self.backup.restore, self.at_t.pgdata, target)
            await asyncio.to_thread(self.at_t.start)
            await asyncio.to_thread(self.at_t.wait_writable)
            port_t = free_port()
            self.server(self.at_t.url("croupier"), port_t)
            await self.wait_serving(port_t)
            r.rto_seconds = time.monotonic() - t0
            self.stop_servers()
            keys_t = await self.check_restored(self.at_t.url("croupier"), "restore to T")
            before = {k for k, at in acked.items() if at < t_epoch and _posts(k)}
            after = {k for k, at in client.first_try.items() if at > t_epoch and _posts(k)}
            r.acked_before_t, r.present_at_t = len(before), len(keys_t)
            for k in sorted(before - keys_t)[:20]:
                r.anomalies.append(f"restore to T: {k}, acknowledged before T, is missing")
            for k in sorted(after & keys_t)[:20]:
                r.anomalies.append(f"restore to T: {k}, first tried after T, is there")

            # restore to the end of the archive: RPO of archiving alone
            t0 = time.monotonic()
            await asyncio.to_thread(self.backup.restore, self.at_end.pgdata, None)
            await asyncio.to_thread(self.at_end.start)
            await asyncio.to_thread(self.at_end.wait_writable)
            r.restore_end_seconds = time.monotonic() - t0
            keys_end = await self.check_restored(self.at_end.url("croupier"), "restore to end")
            lost = {k for k in acked if _posts(k)} - keys_end
            r.lost_with_archiving_alone = len(lost)
            kept = [acked[k] for k in keys_end if k in acked and _posts(k)]
            last_acked = max(at for k, at in acked.items() if _posts(k))
            r.rpo_seconds = max(0.0, last_acked - max(kept)) if kept else crash_at - t_epoch
            if not keys_t or not keys_end:
                r.anomalies.append("a restore holds none of the drill's transactions")
        finally:
            self.stop_servers()
            for inst in (self.at_end, self.at_t, self.source):
                inst.stop()
            shutil.rmtree(self.root, ignore_errors=True)
        return r

    def summary(self) -> str:
        r = self.report
        lines = [
            f"PITR drill: {self.seconds:.0f}s of load, {self.players} players",
            f"full backup (stanza-create, check, backup): {r.backup_seconds:.1f}s",
            f"restore to T: {r.present_at_t} transactions of the drill, every one of the "
            f"{r.acked_before_t} writes acknowledged before T present, none tried after T",
            f"RTO (restore start -> server answering): {r.rto_seconds:.1f}s",
            f"restore to the end of the archive: {r.restore_end_seconds:.1f}s",
            f"RPO with archiving alone (last acknowledged write -> last archived commit): "
            f"{r.rpo_seconds:.2f}s; acknowledged writes only in unarchived WAL: "
            f"{r.lost_with_archiving_alone}",
            f"anomalies: {len(r.anomalies)}",
        ]
        lines += [f"  - {x}" for x in r.anomalies[:50]]
        return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Croupier point-in-time recovery drill")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--players", type=int, default=8)
    args = parser.parse_args()
    drill = PitrDrill(args.seconds, args.players)
    asyncio.run(drill.run())
    print(drill.summary())
    return 1 if drill.report.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())

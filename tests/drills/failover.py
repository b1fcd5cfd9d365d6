"""The failover drill: lose the database primary under load and lose no acknowledged money.

A local pg_auto_failover cluster (server/ops/ha.py: monitor, primary, synchronous standby) on
loopback ports; the server (2 workers), the outbox relay and the webhook dispatcher on its
multi-host URL. Several client processes play rounds (credit, authorize, jackpot contribution,
settle) and retry every call with its idempotency key until it answers. Faults, in turn:

- the primary's machine dies: SIGKILL of its postmaster and of its pg_autoctl keeper together;
  the monitor promotes the standby; the dead node is started again and rejoins as the standby
  (the next kill waits until it is a synchronous standby again);
- optionally the primary's postmaster alone (its keeper restarts PostgreSQL in place);
- at the end a planned switchover.

Checked exactly afterwards (tests.chaos.harness.Drill.audit): every call answered OK is in the
ledger once, no acknowledged write is missing, refused calls are not there, balances equal the
model from the answers, the ledger and the pools reconcile, every jackpot hit is paid once, and
every committed outbox event reached RabbitMQ. Also: every hold a player left unsettled (TTL
1 s) was voided by the hold sweeper exactly once, every `jp.payout.*` event reached a webhook
subscriber through the dispatcher, no call was ever answered INTERNAL or UNKNOWN, and every
background process is still running. Printed: the time from each kill to
the first successful write (a write whose attempt started after the kill).

    .venv/bin/python -m tests.drills.failover --seconds 60 --kills 5   # make failover-drill
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp.web
import grpc
import psycopg
from croupier.events.v1 import subscription_service_pb2 as spb
from croupier.events.v1.subscription_service_pb2_grpc import SubscriptionServiceStub
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2
from grpc_status import rpc_status

from server.ops.ha import Cluster
from server.store.database import migrate
from tests.chaos.harness import AMQP, BIN, ROOT, Drill, Ledger, Stats, eur, free_port

WRITES = {"Credit", "AuthorizeBet", "SettleBet", "Contribute", "CreateJackpot"}
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


class UntilStopped(float):
    """The harness's player loop runs `while time.monotonic() < self.load_until`; with this as
    `load_until` it runs until `stop_file` exists (the comparison is answered by this subclass's
    reflected `__gt__`), so the parent ends the load once every fault has run."""

    stop_file: Path

    def __new__(cls, stop_file: Path) -> UntilStopped:
        obj = super().__new__(cls, math.inf)
        obj.stop_file = stop_file
        return obj

    def __gt__(self, other: object) -> bool:
        return not self.stop_file.exists()


def free_port_range(n: int) -> int:
    """A base port with `n` consecutive free loopback ports."""
    for _ in range(200):
        base = random.randint(20_000, 40_000)
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


class LoadClient(Drill):
    """One client process: the harness's players, with every write's attempt start and answer
    times recorded, and INTERNAL/UNKNOWN answers counted as anomalies (then retried)."""

    def __init__(self, tenant: str, port: int, jackpot_id: str) -> None:  # no super(): no DB
        self.tenant = tenant
        self.port = port
        self.jackpot_id = jackpot_id
        self.stats = Stats()
        self.model = Ledger()
        self.contributions = 0
        self.hits = 0
        self.acks: list[tuple[float, float]] = []  # (attempt started, answered) of OK writes
        self.codes: Counter[str] = Counter()
        self.first_try: dict[str, float] = {}  # write key -> wall clock of its first attempt
        self.acked_at: dict[str, float] = {}  # write key -> wall clock of its OK answer
        self.abandoned = 0  # holds left to expire

    async def call(self, stub: Any, method: str, req: Any) -> tuple[str, Any]:
        """Call until answered (same request, same key): ("ok", resp) or ("err", reason)."""
        delay = 0.05
        key = str(getattr(req, "idempotency_key", ""))
        if method in WRITES:
            self.first_try.setdefault(key, time.time())
        while True:
            started = time.monotonic()
            try:
                resp = await getattr(stub, method)(req, timeout=random.uniform(1.0, 3.0))
            except grpc.aio.AioRpcError as exc:
                self.codes[exc.code().name] += 1
                if exc.code() in NEVER:
                    self.stats.anomalies.append(
                        f"{method} answered {exc.code().name}: {exc.details()}"
                    )
                if exc.code() in RETRYABLE or exc.code() in NEVER:
                    self.stats.unacked_attempts += 1
                    await asyncio.sleep(delay + random.uniform(0, delay))
                    delay = min(delay * 2, 0.5)
                    continue
                status = rpc_status.from_call(exc)  # type: ignore[arg-type]
                reason = exc.code().name
                if status is not None and status.details:
                    from google.rpc import error_details_pb2

                    info = error_details_pb2.ErrorInfo()
                    status.details[0].Unpack(info)
                    reason = info.reason
                self.stats.operations[f"{method} refused"] += 1
                return "err", reason
            self.stats.operations[method] += 1
            if method in WRITES:
                self.acks.append((started, time.monotonic()))
                self.acked_at[key] = time.time()
            return "ok", resp

    async def abandon_holds(self, stub: WalletServiceStub, who: int, deadline: float) -> None:
        """A player whose bets are never settled: each hold (TTL 1 s) must be voided by the
        server's hold sweeper, also across failovers; its balance ends where it started."""
        player = f"x{who}"
        k = f"{self.tenant}-dep-{player}"
        status, _ = await self.call(
            stub,
            "Credit",
            pb.CreditRequest(
                tenant_id=self.tenant, player_id=player, idempotency_key=k, amount=eur(10_000)
            ),
        )
        assert status == "ok"
        self.model.deposits[player] = 10_000
        self.model.ok_keys.add(k)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            bet = f"{player}-r{n}"
            ak = f"{self.tenant}-auth-{bet}"
            status, _ = await self.call(
                stub,
                "AuthorizeBet",
                pb.AuthorizeBetRequest(
                    tenant_id=self.tenant,
                    player_id=player,
                    idempotency_key=ak,
                    bet_id=bet,
                    round_id=bet,
                    game_id="chaos-slot",
                    amount=eur(100),
                    hold_ttl=duration_pb2.Duration(seconds=1),
                ),
            )
            if status == "ok":
                self.model.ok_keys.add(ak)
                self.abandoned += 1
            else:
                self.model.refused_keys.add(ak)
            await asyncio.sleep(2)

    async def run_players(
        self, first: int, count: int, seconds: float, stop_file: Path | None = None
    ) -> None:
        """Players `first`.. `first + count - 1` for `seconds`, or until `stop_file` exists."""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            stub = WalletServiceStub(ch)
            jackpot = JackpotServiceStub(ch)
            deadline = (
                UntilStopped(stop_file) if stop_file is not None else time.monotonic() + seconds
            )
            self.load_until = deadline
            await asyncio.gather(
                *(self.player(stub, first + i, jackpot) for i in range(count)),
                self.abandon_holds(stub, first, deadline),
            )

    def dump(self) -> dict[str, Any]:
        return {
            "deposits": self.model.deposits,
            "net": dict(self.model.net),
            "ok_keys": sorted(self.model.ok_keys),
            "refused_keys": sorted(self.model.refused_keys),
            "operations": dict(self.stats.operations),
            "unacked": self.stats.unacked_attempts,
            "anomalies": self.stats.anomalies,
            "contributions": self.contributions,
            "hits": self.hits,
            "acks": self.acks,
            "codes": dict(self.codes),
            "abandoned": self.abandoned,
        }


@dataclass
class Fault:
    """One injected fault and what it cost."""

    kind: str
    node: str
    at: float
    first_write_after: float | None = None
    rejoined_after: float | None = None
    longest_gap: float = 0.0


@dataclass
class Report:
    """What the drill measured."""

    faults: list[Fault] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)


class FailoverDrill(Drill):
    """One failover drill run (see the module doc)."""

    def __init__(
        self,
        seconds: float,
        players: int,
        *,
        clients: int = 3,
        kills: int = 5,
        postmaster_kills: int = 0,
        switchover: bool = True,
        warmup: float = 4.0,
    ) -> None:
        super().__init__(seconds, players, players)
        self.tenant = f"failover-{uuid.uuid4().hex[:6]}"
        self.clients = clients
        self.kills = kills
        self.postmaster_kills = postmaster_kills
        self.with_switchover = switchover
        self.warmup = warmup
        self.cluster = Cluster(ROOT / ".data" / f"ha-drill-{os.getpid()}", base=free_port_range(3))
        self.report = Report()
        self.phases: dict[str, float] = {}
        self.abandoned = 0
        self.expired = 0
        self.hooked: set[str] = set()
        self.webhooks = 0
        self.hook_port = free_port()
        self.acks: list[tuple[float, float]] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="croupier-failover-"))

    # -- processes ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env.update(
            CROUPIER_DB_POOL_TIMEOUT="3",
            CROUPIER_HOLD_SWEEP_SECONDS="1",
            CROUPIER_WEBHOOK_QUEUE=f"{self.tenant}-webhooks",
        )
        return env

    def start_processes(self) -> None:
        log = open(self.cluster.root / "processes.log", "ab")  # the children write to it
        self.procs["server"] = subprocess.Popen(
            [str(BIN / "croupier-server"), "--workers", "2"],
            env=self._env(),
            stdout=log,
            stderr=log,
        )
        self.procs["relay"] = subprocess.Popen(
            [str(BIN / "croupier-relay")], env=self._env(), stdout=log, stderr=log
        )
        self.procs["webhooks"] = subprocess.Popen(
            [str(BIN / "croupier-webhooks")], env=self._env(), stdout=log, stderr=log
        )

    def spawn_clients(self) -> list[subprocess.Popen[bytes]]:
        per = max(1, self.players // self.clients)
        out = []
        for c in range(self.clients):
            out.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.drills.failover",
                        "--client",
                        json.dumps(
                            {
                                "tenant": self.tenant,
                                "port": self.port,
                                "jackpot_id": self.jackpot_id,
                                "first": c * per,
                                "count": per,
                                "seconds": self.seconds,
                                "stop_file": str(self.workdir / "stop"),
                                "out": str(self.workdir / f"client-{c}.json"),
                            }
                        ),
                    ],
                    cwd=ROOT,
                )
            )
        return out

    def merge(self, n: int) -> None:
        for c in range(n):
            path = self.workdir / f"client-{c}.json"
            if not path.exists():
                self.stats.anomalies.append(f"client {c} wrote no report")
                continue
            d = json.loads(path.read_text())
            self.model.deposits.update(d["deposits"])
            self.model.net.update(d["net"])
            self.model.ok_keys |= set(d["ok_keys"])
            self.model.refused_keys |= set(d["refused_keys"])
            self.stats.operations.update(d["operations"])
            self.stats.unacked_attempts += d["unacked"]
            self.stats.anomalies += d["anomalies"]
            self.contributions += d["contributions"]
            self.hits += d["hits"]
            self.acks += [(float(a), float(b)) for a, b in d["acks"]]
            self.report.codes.update(d["codes"])
            self.abandoned += d["abandoned"]

    # -- faults ------------------------------------------------------------------------------

    async def _settle(self) -> None:
        await asyncio.to_thread(self.cluster.wait_healthy, 180)

    async def kill_primary(self, postmaster_only: bool = False) -> None:
        victim = await asyncio.to_thread(self.cluster.primary)
        assert victim is not None, "no primary to kill"
        fault = Fault("postmaster SIGKILL" if postmaster_only else "node SIGKILL", victim, 0.0)
        fault.at = time.monotonic()
        if postmaster_only:
            await asyncio.to_thread(self.cluster.kill_postmaster, victim)
        else:
            await asyncio.to_thread(self.cluster.kill_node, victim)
            # once the standby is promoted, the dead machine comes back: its keeper rejoins
            # it as the new standby
            while time.monotonic() - fault.at < 60:
                if await asyncio.to_thread(self.cluster.primary) not in (None, victim):
                    break
                await asyncio.sleep(0.2)
            await asyncio.to_thread(self.cluster.start_node, victim)
        await self._settle()
        fault.rejoined_after = time.monotonic() - fault.at
        self.report.faults.append(fault)
        self.stats.faults[fault.kind] += 1

    async def switchover(self) -> None:
        fault = Fault("planned switchover", await asyncio.to_thread(self.cluster.primary) or "", 0)
        fault.at = time.monotonic()
        await asyncio.to_thread(self.cluster.switchover)
        await self._settle()
        fault.rejoined_after = time.monotonic() - fault.at
        self.report.faults.append(fault)
        self.stats.faults[fault.kind] += 1

    async def inject(self, stop: asyncio.Event) -> None:  # type: ignore[override]
        """The planned faults one after the other, each once the cluster is healthy again."""
        plan = ["kill"] * self.kills + ["postmaster"] * self.postmaster_kills
        if self.with_switchover:
            plan.append("switchover")
        await asyncio.sleep(self.warmup)
        for step in plan:
            if step == "kill":
                await self.kill_primary()
            elif step == "postmaster":
                await self.kill_primary(postmaster_only=True)
            else:
                await self.switchover()
            await asyncio.sleep(1.0)

    # -- the run -----------------------------------------------------------------------------

    async def start_receiver(self) -> aiohttp.web.AppRunner:
        """A webhook subscriber on a loopback port: records each delivered event id."""

        async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
            self.hooked.add(request.headers.get("X-Event-Id", ""))
            return aiohttp.web.Response(status=204)

        web = aiohttp.web.Application()
        web.router.add_post("/hook", hook)
        runner = aiohttp.web.AppRunner(web)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", self.hook_port).start()
        return runner

    async def subscribe(self, ch: grpc.aio.Channel) -> None:
        """Subscribe the receiver to the jackpot payout events of the drill's tenant."""
        await SubscriptionServiceStub(ch).CreateSubscription(
            spb.CreateSubscriptionRequest(
                tenant_id=self.tenant,
                idempotency_key=f"{self.tenant}-sub",
                callback_url=f"http://127.0.0.1:{self.hook_port}/hook",
                secret="failover-drill-secret",
                event_types=["jp.payout.*"],
            ),
            timeout=10,
        )

    async def webhooks_delivered(self) -> None:
        """Every committed jp.payout.* event reached the subscriber (waits up to 60 s)."""
        deadline = time.monotonic() + 60
        while True:
            async with await psycopg.AsyncConnection.connect(self.url) as conn:
                cur = await conn.execute(
                    "SELECT event_id::text FROM outbox WHERE tenant_id = %s"
                    " AND event_type LIKE 'jp.payout.%%'",
                    (self.tenant,),
                )
                wanted = {str(e) for (e,) in await cur.fetchall()}
            if wanted <= self.hooked or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        self.webhooks = len(wanted)
        if not wanted:
            self.stats.anomalies.append("no jp.payout event to deliver: no jackpot was paid")
        if wanted - self.hooked:
            self.stats.anomalies.append(
                f"{len(wanted - self.hooked)} of {len(wanted)} payout events never reached "
                "the webhook subscriber"
            )

    async def expiries(self) -> None:
        """Every abandoned hold is voided by the sweeper exactly once (one `expire`
        transaction each); waits up to 60 s for the last ones."""
        deadline = time.monotonic() + 60
        while True:
            async with await psycopg.AsyncConnection.connect(self.url) as conn:
                cur = await conn.execute(
                    "SELECT count(*) FILTER (WHERE state = 'open'),"
                    " count(*) FILTER (WHERE state = 'expired'),"
                    " (SELECT count(*) FROM transactions WHERE tenant_id = %s"
                    "   AND kind = 'expire')"
                    " FROM holds WHERE tenant_id = %s",
                    (self.tenant, self.tenant),
                )
                row = await cur.fetchone()
            assert row is not None
            still_open, expired, expire_txs = (int(x) for x in row)
            if still_open == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        self.expired = expired
        if still_open:
            self.stats.anomalies.append(f"{still_open} holds still open after the sweeper ran")
        if expired != self.abandoned or expire_txs != expired:
            self.stats.anomalies.append(
                f"{self.abandoned} holds abandoned, {expired} expired, {expire_txs} expiries"
            )

    def measure(self) -> None:
        for f in self.report.faults:
            after = [ack - f.at for started, ack in self.acks if started >= f.at]
            f.first_write_after = min(after) if after else None
            end = f.at + (f.rejoined_after or 0.0)
            times = sorted([f.at] + [ack for _, ack in self.acks if f.at <= ack <= end] + [end])
            f.longest_gap = max(b - a for a, b in itertools.pairwise(times))
            if f.first_write_after is None:
                self.stats.anomalies.append(f"no write succeeded after the {f.kind} of {f.node}")

    async def run(self) -> Stats:
        t0 = time.monotonic()
        await asyncio.to_thread(self.cluster.up)
        self.phases["cluster up"] = time.monotonic() - t0
        self.url = self.cluster.url
        await migrate(self.url)
        self.start_processes()
        consumer = await self.consume()
        receiver = await self.start_receiver()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as ch:
                client = LoadClient(self.tenant, self.port, "")
                await client.call(
                    WalletServiceStub(ch),
                    "GetBalance",
                    pb.GetBalanceRequest(tenant_id=self.tenant, player_id="warmup"),
                )
                await self.create_jackpot(JackpotServiceStub(ch))
                await self.subscribe(ch)
            procs = self.spawn_clients()
            started = time.monotonic()
            self.phases["setup"] = started - t0
            await self.inject(asyncio.Event())
            # the load goes on for at least `seconds`, and until every fault has run
            await asyncio.sleep(max(0.0, self.seconds - (time.monotonic() - started)))
            (self.workdir / "stop").touch()
            await asyncio.gather(*(asyncio.to_thread(p.wait) for p in procs))
            self.phases["load"] = time.monotonic() - started
            t1 = time.monotonic()
            for i, p in enumerate(procs):
                if p.returncode != 0:
                    self.stats.anomalies.append(f"client {i} exited with {p.returncode}")
            self.merge(len(procs))
            self.measure()
            for name, p in self.procs.items():
                if p.poll() is not None:
                    self.stats.anomalies.append(f"{name} exited ({p.returncode}) during the drill")
            await self.expiries()
            await self.audit()
            await self.webhooks_delivered()
            # expiries are the ledger's only transactions without a key: counted above
            self.stats.anomalies = [
                a
                for a in self.stats.anomalies
                if a != f"None is in the ledger {self.expired} times"
            ]
            self.phases["audit"] = time.monotonic() - t1
        finally:
            t2 = time.monotonic()
            await receiver.cleanup()
            await consumer.close()
            self.stop_processes()
            with contextlib.suppress(Exception):
                conn = await aio_pika.connect(AMQP)
                ch2 = await conn.channel()
                await ch2.queue_delete(f"chaos-{self.tenant}")
                await ch2.queue_delete(f"{self.tenant}-webhooks")
                await conn.close()
            if self.stats.anomalies:  # keep the logs for a look
                for name in ("processes.log", "monitor.log", "node1.log", "node2.log"):
                    with contextlib.suppress(OSError):
                        shutil.copy(self.cluster.root / name, self.workdir / name)
                print(f"logs kept in {self.workdir}")
            await asyncio.to_thread(self.cluster.destroy)
            self.phases["teardown"] = time.monotonic() - t2
        return self.stats

    def summary(self) -> str:
        s = self.stats
        lines = [
            f"failover drill: {self.seconds:.0f}s, {self.players} players in "
            f"{self.clients} client processes",
            "operations: " + ", ".join(f"{k} {v}" for k, v in sorted(s.operations.items())),
            f"unacknowledged attempts retried with the same key: {s.unacked_attempts}",
            "error codes seen by clients: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.report.codes.items())) or "none"),
            f"holds left to expire: {self.abandoned}, voided by the sweeper once each: "
            f"{self.expired}",
            f"jackpot: {self.contributions} contributions, {self.hits} hits, "
            f"{self.wins_paid} wins paid exactly once",
            f"events committed and received: {getattr(self, 'events', 0)}; jp.payout.* "
            f"events delivered to the webhook subscriber: {self.webhooks}",
            "phases: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.phases.items()),
        ]
        for f in self.report.faults:
            fw = "none" if f.first_write_after is None else f"{f.first_write_after:.2f}s"
            lines.append(
                f"  {f.kind} of {f.node}: first successful write after {fw}; longest time "
                f"without a successful write {f.longest_gap:.2f}s; cluster healthy again "
                f"after {f.rejoined_after or 0:.1f}s"
            )
        kills = [
            f.first_write_after
            for f in self.report.faults
            if f.kind == "node SIGKILL" and f.first_write_after is not None
        ]
        if kills:
            lines.append(
                f"kill -> first write over {len(kills)} kills: min {min(kills):.2f}s, "
                f"median {statistics.median(kills):.2f}s, max {max(kills):.2f}s"
            )
        missing = sum(1 for a in s.anomalies if "is missing from the ledger" in a)
        lines.append(f"acknowledged writes lost: {missing}")
        lines.append(f"anomalies: {len(s.anomalies)}")
        lines += [f"  - {x}" for x in s.anomalies[:50]]
        return "\n".join(lines)


def client_main(spec: str) -> int:
    """A client process: play rounds, write the model of the answers as JSON."""
    d = json.loads(spec)
    client = LoadClient(d["tenant"], d["port"], d["jackpot_id"])
    asyncio.run(client.run_players(d["first"], d["count"], d["seconds"], Path(d["stop_file"])))
    Path(d["out"]).write_text(json.dumps(client.dump()))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Croupier failover drill")
    parser.add_argument("--seconds", type=float, default=60, help="least load duration")
    parser.add_argument("--players", type=int, default=12)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--postmaster-kills", type=int, default=1)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main(args.client)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    drill = FailoverDrill(
        args.seconds,
        args.players,
        clients=args.clients,
        kills=args.kills,
        postmaster_kills=args.postmaster_kills,
    )
    asyncio.run(drill.run())
    print(drill.summary())
    return 1 if drill.stats.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())

"""The chaos drill (issue 8): realistic load against real server processes while faults are
injected, then an exact audit of money, jackpots and events.

Faults: SIGKILL of a server worker (the supervisor restarts it), PostgreSQL fast and immediate
restarts, RabbitMQ stopped for a while, clients timing out and retrying with the same
idempotency keys. The payout saga's wallet is the same database, so a database restart is also
"the wallet unreachable for the saga".

Checks afterwards, exactly: every acknowledged operation is in the ledger once, every refused
one not at all, unacknowledged attempts were completed by their retries (at most once); player
balances equal the model built from the acknowledged answers; every posting balances and every
balance equals its postings (reconcile); every jackpot hit is paid exactly once and every pool
reconciles; every committed event reached the broker. Any anomaly fails the run.

    .venv/bin/python -m tests.chaos --seconds 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import grpc
import psycopg
from croupier.common.v1 import money_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server.error_info import reason_of
from server.jackpot.reconcile_all import reconcile_pools
from server.ops import citus_cluster
from server.reconcile import reconcile_ledger
from server.store.database import migrate, open_pool
from server.store.embedded import EmbeddedPostgres
from tests.scratch import database_on

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AMQP = os.environ.get("CROUPIER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
SB_SECRET = "chaos-sportsbook-secret"
TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}


def eur(minor: int) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor, currency="EUR")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stats:
    """What happened: operations, retries, faults, anomalies."""

    operations: Counter[str] = field(default_factory=Counter)
    unacked_attempts: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    """The model built from acknowledged answers."""

    deposits: dict[str, int] = field(default_factory=dict)
    net: Counter[str] = field(default_factory=Counter)  # win - stake of settled rounds
    ok_keys: set[str] = field(default_factory=set)  # writes that produced a transaction
    refused_keys: set[str] = field(default_factory=set)


class Drill:
    """One chaos run."""

    def __init__(
        self, seconds: float, players: int, concurrency: int, *, citus: bool = False
    ) -> None:
        self.seconds = seconds
        self.citus = citus  # on the local Citus cluster: restarts hit a worker node
        self.players = players
        self.concurrency = concurrency
        self.tenant = f"chaos-{uuid.uuid4().hex[:6]}"
        self.stats = Stats()
        self.model = Ledger()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.received: set[str] = set()
        self.port = free_port()
        self.edge_port = free_port()
        self.sb_ok = 0
        self.sb_duplicates = 0
        self.load_until = 0.0  # monotonic time the load stops (inject may extend it)
        self.embedded = EmbeddedPostgres(ROOT / ".data" / f"chaos-{os.getpid()}")
        self.url = ""
        self.jackpot_id = ""
        self.contributions = 0
        self.hits = 0
        self.wins_paid = 0

    # -- processes ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            CROUPIER_DATABASE_URL=self.url,
            CROUPIER_GRPC_ADDR=f"127.0.0.1:{self.port}",
            CROUPIER_METRICS_ADDR="",
            CROUPIER_GRACE_SECONDS="2",
            CROUPIER_DB_POOL_MAX="8",
            CROUPIER_LOG_LEVEL="WARNING",
            CROUPIER_JP_PAYOUT_RETRY_SECONDS="0.3",
        )
        return env

    def start_processes(self) -> None:
        log = open(self.embedded.data_dir / "processes.log", "ab")
        self.procs["server"] = subprocess.Popen(
            [str(BIN / "croupier-server"), "--workers", "2"],
            env=self._env(),
            stdout=log,
            stderr=log,
        )
        self.procs["edge"] = subprocess.Popen(
            [str(BIN / "croupier-edge")],
            env={
                **self._env(),
                "CROUPIER_EDGE_ADDR": f"127.0.0.1:{self.edge_port}",
                "CROUPIER_EDGE_INTEGRATIONS": json.dumps(
                    [
                        {
                            "name": "chaos",
                            "tenant": self.tenant,
                            "secret": SB_SECRET,
                            "path_prefix": "/sb",
                            "currencies": ["EUR"],
                        }
                    ]
                ),
            },
            stdout=log,
            stderr=log,
        )
        self.procs["relay"] = subprocess.Popen(
            [str(BIN / "croupier-relay")], env=self._env(), stdout=log, stderr=log
        )

    def stop_processes(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.procs["server"].pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(x) for x in out.split()]

    # -- faults ------------------------------------------------------------------------------

    async def kill_worker(self) -> None:
        pids = self.worker_pids()
        if pids:
            os.kill(random.choice(pids), signal.SIGKILL)
            self.stats.faults["worker SIGKILL"] += 1

    async def restart_postgres(self, mode: str) -> None:
        if self.citus:
            node = random.choice(citus_cluster.Cluster().workers)
            await asyncio.to_thread(node.stop, mode)
            await asyncio.to_thread(node.start)
            self.stats.faults[f"citus worker {mode} restart"] += 1
            return
        await asyncio.to_thread(self.embedded.restart, mode)
        self.stats.faults[f"postgres {mode} restart"] += 1

    async def rabbit_outage(self, seconds: float) -> None:
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "stop_app"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.stats.faults["rabbitmq stopped"] += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            await asyncio.to_thread(
                subprocess.run,
                ["rabbitmqctl", "start_app"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            await asyncio.to_thread(
                subprocess.run,
                ["rabbitmqctl", "await_startup"],
                check=False,
                capture_output=True,
                timeout=120,
            )

    async def inject(self, stop: asyncio.Event) -> None:
        """Every fault at least once, in random order, then random ones until stopped."""
        plan = ["kill", "fast", "immediate", "rabbit"]
        random.shuffle(plan)
        gap = max(2.0, self.seconds / 12)
        # The load goes on until every planned fault has run under it (a slow machine fits
        # fewer faults into the nominal time), at most six times the nominal time.
        cap = time.monotonic() + self.seconds * 6
        while not stop.is_set():
            if plan:
                self.load_until = min(cap, max(self.load_until, time.monotonic() + gap + 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), random.uniform(gap * 0.5, gap))
            if stop.is_set():
                break
            fault = (
                plan.pop()
                if plan
                else random.choice(["kill", "kill", "fast", "immediate", "rabbit"])
            )
            if fault == "kill":
                await self.kill_worker()
            elif fault in ("fast", "immediate"):
                await self.restart_postgres(fault)
            else:
                await self.rabbit_outage(random.uniform(2, 5))
            self.load_until = min(cap, max(self.load_until, time.monotonic() + 2))

    # -- load --------------------------------------------------------------------------------

    async def call(self, stub: WalletServiceStub, method: str, req: Any) -> tuple[str, Any]:
        """Call until acknowledged (same request, same key): ("ok", resp) or ("err", reason).
        Timeouts and outages count as unacknowledged attempts."""
        delay = 0.05
        while True:
            try:
                resp = await getattr(stub, method)(req, timeout=random.uniform(0.5, 2.0))
                self.stats.operations[method] += 1
                return "ok", resp
            except grpc.aio.AioRpcError as exc:
                if exc.code() in TRANSIENT:
                    self.stats.unacked_attempts += 1
                    await asyncio.sleep(delay + random.uniform(0, delay))
                    delay = min(delay * 2, 1.0)
                    continue
                reason = reason_of(exc) or exc.code().name
                self.stats.operations[f"{method} refused"] += 1
                return "err", reason

    async def create_jackpot(self, stub: JackpotServiceStub) -> None:
        """A two-tier network jackpot: a must-drop mini that drops every few hundred minor
        units (many hits, many payouts) and a progressive grand."""
        self.jackpot_id = f"jp-{self.tenant}"
        tiers = [
            jpb.TierConfig(
                tier="mini",
                kind=jpb.POOL_KIND_PROGRESSIVE,
                seed_minor_units=1_000,
                contribution_rate_ppm=20_000,
                trigger=jpb.TRIGGER_KIND_MUST_DROP,
                must_drop_min_minor_units=1_100,
                must_drop_max_minor_units=1_400,
            ),
            jpb.TierConfig(
                tier="grand",
                kind=jpb.POOL_KIND_PROGRESSIVE,
                seed_minor_units=100_000,
                contribution_rate_ppm=5_000,
                trigger=jpb.TRIGGER_KIND_EXTERNAL,
                shards=8,
            ),
        ]
        status, _ = await self.call(
            stub,
            "CreateJackpot",
            jpb.CreateJackpotRequest(
                tenant_id=self.tenant,
                idempotency_key=f"{self.tenant}-create-jp",
                jackpot_id=self.jackpot_id,
                currency="EUR",
                scope=jpb.JACKPOT_SCOPE_NETWORK,
                tenant_ids=[self.tenant],
                tiers=tiers,
            ),
        )
        assert status == "ok", "could not create the chaos jackpot"

    async def contribute(self, stub: JackpotServiceStub, player: str, bet: str, stake: int) -> None:
        ck = f"{self.tenant}-jp-{bet}"
        status, resp = await self.call(
            stub,
            "Contribute",
            jpb.ContributeRequest(
                tenant_id=self.tenant,
                idempotency_key=ck,
                jackpot_id=self.jackpot_id,
                player_id=player,
                game_id="chaos-slot",
                round_id=bet,
                bet=eur(stake),
            ),
        )
        if status != "ok":
            self.stats.anomalies.append(f"contribution {ck} refused: {resp}")
            return
        self.contributions += 1
        self.hits += sum(1 for t in resp.tiers if t.hit)

    async def player(
        self,
        stub: WalletServiceStub,
        i: int,
        jackpot: JackpotServiceStub | None = None,
    ) -> None:
        player = f"p{i}"
        deposit = 100_000
        k = f"{self.tenant}-dep-{player}"
        status, _ = await self.call(
            stub,
            "Credit",
            pb.CreditRequest(
                tenant_id=self.tenant, player_id=player, idempotency_key=k, amount=eur(deposit)
            ),
        )
        assert status == "ok"
        self.model.deposits[player] = deposit
        self.model.ok_keys.add(k)
        r = 0
        while time.monotonic() < self.load_until:
            r += 1
            bet = f"{player}-r{r}"
            stake = random.randint(1, 500)
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
                    amount=eur(stake),
                ),
            )
            if status != "ok":
                self.model.refused_keys.add(ak)
                continue
            self.model.ok_keys.add(ak)
            if jackpot is not None:
                await self.contribute(jackpot, player, bet, stake)
            win = random.choice([0, 0, 0, stake // 2, stake * 2, stake * 10])
            sk = f"{self.tenant}-settle-{bet}"
            sreq = pb.SettleBetRequest(
                tenant_id=self.tenant,
                player_id=player,
                idempotency_key=sk,
                bet_id=bet,
                round_id=bet,
                win=eur(win),
            )
            status, _ = await self.call(stub, "SettleBet", sreq)
            if status != "ok":
                self.stats.anomalies.append(f"settle of an authorized bet refused: {bet}")
                continue
            self.model.ok_keys.add(sk)
            self.model.net[player] += win - stake
            if random.random() < 0.05:  # a client retry long after the answer: same bytes
                again = await self.call(stub, "SettleBet", sreq)
                if again[0] != "ok":
                    self.stats.anomalies.append(f"replay of {sk} changed its answer")

    # -- sportsbook callbacks (seed 001), with duplicates ------------------------------------

    async def sb_post(
        self, http: aiohttp.ClientSession, endpoint: str, doc: dict[str, str]
    ) -> dict[str, Any]:
        """POST a signed callback until the edge answers; the provider resends on failure."""
        body = json.dumps(doc).encode()
        sig = hmac.new(SB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        delay = 0.05
        while True:
            try:
                async with http.post(
                    f"http://127.0.0.1:{self.edge_port}/sb/{endpoint}",
                    data=body,
                    headers={"X-Security-Hash": sig, "Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as resp:
                    reply: dict[str, Any] = await resp.json()
                if reply.get("error") != "INTERNAL_ERROR":
                    return reply
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.stats.unacked_attempts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def bettor(self, http: aiohttp.ClientSession, i: int) -> None:
        """A sportsbook player: results (credits), bets (debits), some rolled back, every
        callback sometimes delivered twice; the model counts only first answers."""
        user = f"sb{i}"
        n = 0
        while time.monotonic() < self.load_until:
            n += 1
            tid = f"{user}-t{n}"
            action = "result" if n == 1 or random.random() < 0.4 else "bet"
            cents = random.randint(1, 2_000) if action == "bet" else random.randint(1, 5_000)
            doc = {
                "transaction_id": tid,
                "action": action,
                "user_id": user,
                "currency": "EUR",
                "amount": f"{cents // 100}.{cents % 100:02d}",
            }
            reply = await self.sb_post(http, "transaction", doc)
            for _ in range(random.choice([0, 0, 1, 2])):  # the provider delivers again
                again = await self.sb_post(http, "transaction", doc)
                self.sb_duplicates += 1
                if again != reply:
                    self.stats.anomalies.append(f"{tid}: duplicate answered {again} != {reply}")
            if reply.get("error") is not None:
                self.model.refused_keys.add(f"sb:chaos:{tid}")
                continue
            self.sb_ok += 1
            self.model.ok_keys.add(f"sb:chaos:{tid}")
            self.model.net[user] += cents if action == "result" else -cents
            if action == "bet" and random.random() < 0.2:
                rid = f"{tid}-rb"
                rb = {
                    "transaction_id": rid,
                    "rollback_transaction_id": tid,
                    "action": "rollback",
                    "user_id": user,
                    "currency": "EUR",
                    "amount": doc["amount"],
                }
                rreply = await self.sb_post(http, "transaction-rollback", rb)
                await self.sb_post(http, "transaction-rollback", rb)  # rollbacks repeat
                self.sb_duplicates += 1
                if rreply.get("error") is None:
                    self.model.ok_keys.add(f"sb:chaos:{rid}")
                    self.model.net[user] += cents
                else:
                    self.stats.anomalies.append(f"rollback {rid} refused: {rreply}")
            self.stats.operations["sportsbook callbacks"] += 1

    # -- events ------------------------------------------------------------------------------

    async def consume(self) -> aio_pika.abc.AbstractRobustConnection:
        conn = await aio_pika.connect_robust(AMQP)
        ch = await conn.channel()
        q = await ch.declare_queue(f"chaos-{self.tenant}", durable=True)
        await q.bind("croupier.events", routing_key="#")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                body = json.loads(message.body)
                if body.get("tenant_id") == self.tenant:
                    self.received.add(body["event_id"])

        await q.consume(on_message)
        return conn

    # -- audit -------------------------------------------------------------------------------

    async def audit(self) -> None:
        a = self.stats.anomalies
        pool = await open_pool(self.url, 1, 4)
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT idempotency_key, count(*) FROM transactions WHERE tenant_id = %s"
                    " GROUP BY idempotency_key",
                    (self.tenant,),
                )
                in_ledger = {str(k): int(n) for k, n in await cur.fetchall()}
                for key, n in in_ledger.items():
                    if n != 1:
                        a.append(f"{key} is in the ledger {n} times")
                for key in self.model.ok_keys - in_ledger.keys():
                    a.append(f"acknowledged {key} is missing from the ledger")
                for key in self.model.refused_keys & in_ledger.keys():
                    a.append(f"refused {key} is in the ledger")
                # every jackpot hit paid exactly once (the saga may still be finishing)
                won: Counter[str] = Counter()
                wins: list[tuple[Any, ...]] = []
                for _ in range(120):
                    # (two reads: on Citus the wins and the ledger live on different nodes)
                    cur = await conn.execute(
                        "SELECT idempotency_key, count(*) FROM transactions"
                        " WHERE tenant_id = %s AND idempotency_key LIKE 'jp-payout-%%'"
                        " GROUP BY idempotency_key",
                        (self.tenant,),
                    )
                    paid = {str(k): int(n) for k, n in await cur.fetchall()}
                    cur = await conn.execute(
                        "SELECT win_id::text, player_id, amount, payout_state FROM jp_wins"
                        " WHERE tenant_id = %s",
                        (self.tenant,),
                    )
                    wins = [(*w, paid.get(f"jp-payout-{w[0]}", 0)) for w in await cur.fetchall()]
                    if all(str(w[3]) == "credited" for w in wins):
                        break
                    await asyncio.sleep(0.5)
                for win_id, owner, amount, state, credits in wins:
                    if str(state) != "credited" or int(credits) != 1:
                        a.append(f"win {win_id}: state {state}, {credits} wallet credits")
                    won[str(owner)] += int(amount)
                self.wins_paid = len(wins)
                if len(wins) != self.hits:
                    a.append(f"{self.hits} hits acknowledged but {len(wins)} wins recorded")
                cur = await conn.execute(
                    "SELECT owner, available, held FROM accounts WHERE tenant_id = %s"
                    " AND kind = 'player'",
                    (self.tenant,),
                )
                for owner, available, held in await cur.fetchall():
                    expected = (
                        self.model.deposits.get(owner, 0) + self.model.net[owner] + won[owner]
                    )
                    if (available, held) != (expected, 0):
                        a.append(f"{owner}: balance {available}/{held}, model {expected}/0")
            report = await reconcile_ledger(pool)
            report.pools = [
                p
                for p in await reconcile_pools(pool)
                if str(p["pool_id"]).startswith(self.jackpot_id)
            ]
            if not report.ok:
                a.append(f"ledger or pools do not reconcile: {report}")
            if not report.pools:
                a.append("the chaos jackpot's pools are missing from the reconciliation")
            # every committed event reaches the broker
            deadline = time.monotonic() + 60
            while True:
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT event_id::text, published_at IS NOT NULL FROM outbox"
                        " WHERE tenant_id = %s",
                        (self.tenant,),
                    )
                    rows = await cur.fetchall()
                committed = {str(e) for e, _ in rows}
                if committed <= self.received or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            missing = committed - self.received
            if missing:
                a.append(f"{len(missing)} committed events never reached the broker")
            self.events = len(committed)
        finally:
            await pool.close()

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> Stats:
        with contextlib.ExitStack() as stack:
            if self.citus:
                base = await asyncio.to_thread(citus_cluster.Cluster().start)
                self.url = stack.enter_context(database_on(base, "croupier_chaos"))
            else:
                base = await asyncio.to_thread(self.embedded.start)
                name = "croupier_chaos"
                with psycopg.connect(base, autocommit=True) as c:
                    c.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                    c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                params = conninfo_to_dict(base)
                params["dbname"] = name
                self.url = make_conninfo(**params)
            return await self._run()

    async def _run(self) -> Stats:
        self.embedded.data_dir.mkdir(parents=True, exist_ok=True)
        await migrate(self.url)
        self.start_processes()
        consumer = await self.consume()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as ch:
                stub = WalletServiceStub(ch)
                await self.call(
                    stub,
                    "GetBalance",
                    pb.GetBalanceRequest(tenant_id=self.tenant, player_id="warmup"),
                )
                jackpot = JackpotServiceStub(ch)
                await self.create_jackpot(jackpot)
                stop = asyncio.Event()
                self.load_until = time.monotonic() + self.seconds
                injector = asyncio.create_task(self.inject(stop))
                async with aiohttp.ClientSession() as http:
                    await asyncio.gather(
                        *(self.player(stub, i, jackpot) for i in range(self.players)),
                        *(self.bettor(http, i) for i in range(max(2, self.players // 4))),
                    )
                stop.set()
                await injector
            await self.audit()
        finally:
            await consumer.close()
            self.stop_processes()
            with contextlib.suppress(Exception):
                conn = await aio_pika.connect(AMQP)
                ch2 = await conn.channel()
                await ch2.queue_delete(f"chaos-{self.tenant}")
                await conn.close()
            if not self.citus:
                await asyncio.to_thread(self.embedded.stop)
            shutil.rmtree(self.embedded.data_dir, ignore_errors=True)
        return self.stats

    def summary(self) -> str:
        s = self.stats
        lines = [
            f"chaos drill: {self.seconds:.0f}s, {self.players} players",
            "operations: " + ", ".join(f"{k} {v}" for k, v in sorted(s.operations.items())),
            f"unacknowledged attempts retried with the same key: {s.unacked_attempts}",
            f"sportsbook: {self.sb_ok} callbacks taken, {self.sb_duplicates} duplicates "
            "answered identically",
            f"jackpot: {self.contributions} contributions, {self.hits} hits, "
            f"{self.wins_paid} wins paid exactly once",
            "faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(s.faults.items())),
            f"events committed and received: {getattr(self, 'events', 0)}",
            f"anomalies: {len(s.anomalies)}",
        ]
        lines += [f"  - {x}" for x in s.anomalies[:50]]
        return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Croupier chaos drill")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--players", type=int, default=24)
    parser.add_argument(
        "--citus",
        action="store_true",
        help="run on the local Citus cluster (make citus); restarts hit a worker node",
    )
    args = parser.parse_args()
    drill = Drill(args.seconds, args.players, args.players, citus=args.citus)
    asyncio.run(drill.run())
    print(drill.summary())
    return 1 if drill.stats.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())

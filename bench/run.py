"""`make bench`: Croupier against the physical limit, side by side in one run (issue 6).

Starts its own PostgreSQL (or a fresh database on CROUPIER_DATABASE_URL's server) and
`croupier-server` (default: one worker per CPU), then, at each concurrency level, drives:

- AuthorizeBet alone; SettleBet alone (settling the holds the authorize phase made);
- a round mix: AuthorizeBet, Contribute to a two-tier network jackpot, SettleBet, and 1 round
  in 20 sends its SettleBet twice (a client retry: same key, same answer);
- Contribute to one hot network pool (16 counter rows, group commit: the design);
- the same Contribute load on the naive design, measured in the same run: a second server with
  group commit off (CROUPIER_CONTRIBUTION_BATCH=1) and a pool of one counter row, so every
  contribution is its own transaction updating one hot row; both pools are reconciled after;
- pgbench running the SQL of one AuthorizeBet / one Contribute (bench/pgbench/*.sql, the same
  statements in the same pipelined round trips) at the same concurrency, on the same database.

It prints RPC, concurrency, calls/s, p50/p95/p99 (ms), errors, and the ratio server calls/s ÷
pgbench tx/s; the load generator (a lean grpc.aio client in this process, prebuilt requests)
reports its own CPU use so a reader can see whether it was the bottleneck. Results go to
bench/results/bench-<UTC time>.json and .csv. No number is asserted: machines differ.

    .venv/bin/python bench/run.py [--seconds 5] [--levels 1,16,64,256] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from croupier.common.v1 import money_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

sys.path.insert(0, str(Path(__file__).resolve().parent))
from client_latency import database, percentile, server

from server.store.database import migrate
from server.store.embedded import find_pg_bindir

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TENANT = "bench"
PLAYERS = 256
HOT_SHARDS = 16


def eur(minor: int) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor, currency="EUR")


@dataclass
class Row:
    """One measured line of the table (latencies in milliseconds)."""

    workload: str
    concurrency: int
    calls_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    pgbench_tps: float | None = None
    ratio: float | None = None
    loadgen_cpu_pct: float | None = None


async def drive(
    name: str, concurrency: int, seconds: float, call: Callable[[int], Awaitable[dict[str, float]]]
) -> list[Row]:
    """`concurrency` workers calling `call` back to back for `seconds`; `call` returns the
    latency (ms) of each RPC it made, by RPC name, or raises StopAsyncIteration when out of
    work. One Row per RPC name (the mix has several)."""
    latencies: dict[str, list[float]] = {}
    errors = 0
    stop_at = time.perf_counter() + seconds
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()

    async def worker(n: int) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            try:
                for rpc, ms in (await call(n)).items():
                    latencies.setdefault(rpc, []).append(ms)
            except StopAsyncIteration:
                return
            except grpc.aio.AioRpcError:
                errors += 1

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime) / wall * 100
    rows = []
    for rpc, values in latencies.items():
        values.sort()
        rows.append(
            Row(
                f"{name}: {rpc}" if rpc != name else name,
                concurrency,
                round(len(values) / wall, 1),
                round(percentile(values, 50), 2),
                round(percentile(values, 95), 2),
                round(percentile(values, 99), 2),
                errors,
                loadgen_cpu_pct=round(cpu, 1),
            )
        )
    return rows


async def timed(call: Awaitable[Any]) -> float:
    t0 = time.perf_counter()
    await call
    return (time.perf_counter() - t0) * 1000


class Bench:
    """The workloads over one server."""

    def __init__(self, target: str, channels: int = 4, hot_shards: int = HOT_SHARDS) -> None:
        # several connections (a local subchannel pool each): one HTTP/2 connection would pin
        # every call to one of the server's SO_REUSEPORT workers
        self.channels = [
            grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(channels)
        ]
        self._wallets = [WalletServiceStub(c) for c in self.channels]
        self._jackpots = [JackpotServiceStub(c) for c in self.channels]
        self.wallet = self._wallets[0]
        self.jackpot = self._jackpots[0]
        self.holds: list[tuple[str, str]] = []
        self.mix_jackpot = f"mix-{uuid.uuid4().hex[:6]}"
        self.hot_jackpot = f"hot-{uuid.uuid4().hex[:6]}"
        self.hot_shards = hot_shards

    async def setup(self, fund: bool = True) -> None:
        """Fund the players (unless not `fund`) and create the mix and hot jackpots."""
        await asyncio.gather(
            *(
                self.wallet.Credit(
                    pb.CreditRequest(
                        tenant_id=TENANT,
                        player_id=f"p{i}",
                        idempotency_key=f"fund-{i}-{uuid.uuid4()}",
                        amount=eur(10**15),
                    )
                )
                for i in range(1, PLAYERS + 1 if fund else 1)
            )
        )
        tier = jpb.TierConfig
        await self.jackpot.CreateJackpot(
            jpb.CreateJackpotRequest(
                tenant_id=TENANT,
                idempotency_key=uuid.uuid4().hex,
                jackpot_id=self.mix_jackpot,
                currency="EUR",
                scope=jpb.JACKPOT_SCOPE_NETWORK,
                tenant_ids=[TENANT],
                tiers=[
                    tier(
                        tier="minor",
                        kind=jpb.POOL_KIND_PROGRESSIVE,
                        seed_minor_units=10_000,
                        contribution_rate_ppm=10_000,
                        trigger=jpb.TRIGGER_KIND_EXTERNAL,
                        shards=HOT_SHARDS,
                    ),
                    tier(
                        tier="grand",
                        kind=jpb.POOL_KIND_PROGRESSIVE,
                        seed_minor_units=1_000_000,
                        contribution_rate_ppm=5_000,
                        trigger=jpb.TRIGGER_KIND_EXTERNAL,
                        shards=HOT_SHARDS,
                    ),
                ],
            )
        )
        await self.jackpot.CreateJackpot(
            jpb.CreateJackpotRequest(
                tenant_id=TENANT,
                idempotency_key=uuid.uuid4().hex,
                jackpot_id=self.hot_jackpot,
                currency="EUR",
                scope=jpb.JACKPOT_SCOPE_NETWORK,
                tenant_ids=[TENANT],
                tiers=[
                    tier(
                        tier="grand",
                        kind=jpb.POOL_KIND_PROGRESSIVE,
                        seed_minor_units=1_000_000,
                        contribution_rate_ppm=10_000,
                        trigger=jpb.TRIGGER_KIND_EXTERNAL,
                        shards=self.hot_shards,
                    )
                ],
            )
        )

    def _authorize_req(self) -> tuple[pb.AuthorizeBetRequest, str, str]:
        player = f"p{random.randint(1, PLAYERS)}"
        bet = uuid.uuid4().hex
        return (
            pb.AuthorizeBetRequest(
                tenant_id=TENANT,
                player_id=player,
                idempotency_key=f"a-{bet}",
                bet_id=bet,
                round_id=bet,
                game_id="bench-slot",
                amount=eur(100),
            ),
            player,
            bet,
        )

    def _w(self, n: int) -> WalletServiceStub:
        return self._wallets[n % len(self._wallets)]

    def _j(self, n: int) -> JackpotServiceStub:
        return self._jackpots[n % len(self._jackpots)]

    async def authorize(self, n: int) -> dict[str, float]:
        req, player, bet = self._authorize_req()
        ms = await timed(self._w(n).AuthorizeBet(req))
        self.holds.append((player, bet))
        return {"AuthorizeBet": ms}

    async def settle(self, n: int) -> dict[str, float]:
        if not self.holds:
            raise StopAsyncIteration
        player, bet = self.holds.pop()
        return {
            "SettleBet": await timed(
                self._w(n).SettleBet(
                    pb.SettleBetRequest(
                        tenant_id=TENANT,
                        player_id=player,
                        idempotency_key=f"s-{bet}",
                        bet_id=bet,
                        round_id=bet,
                        win=eur(50),
                    )
                )
            )
        }

    def _contribution(self, jackpot_id: str, player: str, bet: str) -> jpb.ContributeRequest:
        return jpb.ContributeRequest(
            tenant_id=TENANT,
            idempotency_key=f"c-{bet}",
            jackpot_id=jackpot_id,
            player_id=player,
            game_id="bench-slot",
            round_id=bet,
            bet=eur(100),
        )

    async def round(self, n: int) -> dict[str, float]:
        req, player, bet = self._authorize_req()
        out = {"AuthorizeBet": await timed(self._w(n).AuthorizeBet(req))}
        out["Contribute"] = await timed(
            self._j(n).Contribute(self._contribution(self.mix_jackpot, player, bet))
        )
        settle = pb.SettleBetRequest(
            tenant_id=TENANT,
            player_id=player,
            idempotency_key=f"s-{bet}",
            bet_id=bet,
            round_id=bet,
            win=eur(random.choice([0, 0, 0, 50, 200])),
        )
        out["SettleBet"] = await timed(self._w(n).SettleBet(settle))
        if random.randrange(20) == 0:
            out["SettleBet (retry)"] = await timed(self._w(n).SettleBet(settle))
        return out

    async def contribute_hot(self, n: int) -> dict[str, float]:
        player = f"p{random.randint(1, PLAYERS)}"
        return {
            "Contribute": await timed(
                self._j(n).Contribute(
                    self._contribution(self.hot_jackpot, player, uuid.uuid4().hex)
                )
            )
        }


def pgbench(
    url: str, script: str, concurrency: int, seconds: float, variables: dict[str, str]
) -> float:
    """tx/s of a pgbench run of `script` (prepared statements, `concurrency` clients)."""
    bindir = find_pg_bindir()
    exe = str(bindir / "pgbench") if bindir else shutil.which("pgbench")
    if not exe:
        return 0.0
    cmd = [
        exe,
        "-n",
        "-M",
        "prepared",
        "-f",
        str(ROOT / "bench" / "pgbench" / script),
        "-c",
        str(concurrency),
        "-j",
        str(min(concurrency, 4)),
        "-T",
        str(int(seconds)),
        url,
    ]
    for k, v in variables.items():
        cmd[1:1] = ["-D", f"{k}={v}"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    m = re.search(r"tps = ([0-9.]+)", out.stdout)
    if not m:
        print(f"pgbench {script} failed: {out.stderr.strip()[-400:]}", file=sys.stderr)
        return 0.0
    return float(m.group(1))


def table(rows: list[Row]) -> str:
    head = (
        f"{'workload':<34} {'conc':>5} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6} {'pgbench tx/s':>12} {'ratio':>6} {'loadgen cpu':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        pg = f"{r.pgbench_tps:.0f}" if r.pgbench_tps else ""
        ratio = f"{r.ratio:.0%}" if r.ratio else ""
        cpu = f"{r.loadgen_cpu_pct:.0f}%" if r.loadgen_cpu_pct is not None else ""
        lines.append(
            f"{r.workload:<34} {r.concurrency:>5} {r.calls_per_second:>9.0f} "
            f"{r.p50_ms:>8.2f} {r.p95_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>6} "
            f"{pg:>12} {ratio:>6} {cpu:>11}"
        )
    return "\n".join(lines)


async def amain(args: argparse.Namespace, url: str) -> list[Row]:
    await migrate(url)
    rows: list[Row] = []
    async with server(url, args.workers) as target:
        bench = Bench(target)
        await bench.setup()
        pool_id = f"{bench.hot_jackpot}.grand"
        for c in args.levels:
            for name, call in (
                ("AuthorizeBet", bench.authorize),
                ("SettleBet", bench.settle),
                ("round mix", bench.round),
                ("Contribute (hot pool)", bench.contribute_hot),
            ):
                measured = await drive(name, c, args.seconds, call)
                if name == "AuthorizeBet":
                    tps = await asyncio.to_thread(
                        pgbench,
                        url,
                        "authorize.sql",
                        c,
                        args.seconds,
                        {"tenant": TENANT, "players": str(PLAYERS)},
                    )
                    for r in measured:
                        r.pgbench_tps, r.ratio = tps, (r.calls_per_second / tps if tps else None)
                if name.startswith("Contribute"):
                    tps = await asyncio.to_thread(
                        pgbench,
                        url,
                        "contribute.sql",
                        c,
                        args.seconds,
                        {"tenant": TENANT, "pool": pool_id, "shards": str(HOT_SHARDS)},
                    )
                    for r in measured:
                        r.pgbench_tps, r.ratio = tps, (r.calls_per_second / tps if tps else None)
                rows += measured
                print(table(measured).splitlines()[-1], flush=True)
        await reconcile(bench)
        for channel in bench.channels:
            await channel.close()
    # the naive design in the same run: one transaction per contribution on one counter row
    async with server(url, args.workers, {"CROUPIER_CONTRIBUTION_BATCH": "1"}) as target:
        naive = Bench(target, hot_shards=1)
        await naive.setup(fund=False)
        for c in args.levels:
            measured = await drive(
                "Contribute (naive 1 row)", c, args.seconds, naive.contribute_hot
            )
            rows += measured
            print(table(measured).splitlines()[-1], flush=True)
        await reconcile(naive)
        for channel in naive.channels:
            await channel.close()
    return rows


async def reconcile(bench: Bench) -> None:
    """Reconcile the bench tenant's pools exactly (every drift zero) or fail the run."""
    r = await bench.jackpot.Reconcile(jpb.ReconcileRequest(tenant_id=TENANT))
    if not r.balanced:
        raise SystemExit(f"pools do not reconcile after the run: {r}")
    print(f"reconciled {len(r.pools)} pools exactly (every drift 0)", flush=True)


def versus_naive(rows: list[Row]) -> str:
    """Hot pool (design) ÷ naive single row, per concurrency level, from one run."""
    design = {r.concurrency: r for r in rows if r.workload == "Contribute (hot pool): Contribute"}
    naive = {r.concurrency: r for r in rows if r.workload == "Contribute (naive 1 row): Contribute"}
    lines = ["hot pool Contribute: design (16 rows, group commit) vs naive (1 row, 1 tx per call)"]
    for c in sorted(design.keys() & naive.keys()):
        d, n = design[c], naive[c]
        lines.append(
            f"  {c:>4} in flight: {d.calls_per_second:>6.0f}/s (p99 {d.p99_ms:.1f} ms) vs "
            f"{n.calls_per_second:>6.0f}/s (p99 {n.p99_ms:.1f} ms): "
            f"{d.calls_per_second / n.calls_per_second:.1f}x"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--levels", default="1,16,64,256")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    args.levels = [int(x) for x in args.levels.split(",")]
    started = time.time()
    with database() as url:
        rows = asyncio.run(amain(args, url))
    print()
    print(table(rows))
    print()
    print(versus_naive(rows))
    print(
        f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"{time.time() - started:.0f}s"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"bench-{stamp}.json").write_text(
        json.dumps(
            {"rows": [asdict(r) for r in rows], "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            indent=2,
        )
    )
    with open(RESULTS / f"bench-{stamp}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

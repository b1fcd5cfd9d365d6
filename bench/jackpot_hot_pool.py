"""Hot network pool: Contribute throughput and latency, sharded counters vs one row, one run.

What it does, on loopback only:
1. a fresh database on CROUPIER_DATABASE_URL's server (dropped afterwards), or a private
   PostgreSQL cluster under `.data/bench-jackpot-postgres`;
2. starts `croupier-server` as a subprocess on a free 127.0.0.1 port;
3. creates two network jackpots listed on 8 tenants, identical but for the counter rows: the
   design (`--shards`, default 16: each contribution locks one of N rows) and the naive
   single-row update (`shards=1`: every contribution updates the same row);
4. for each of `--concurrency` (a comma list, default 1,8,32) drives Contribute with that many
   workers for `--seconds` on each design, after a warmup, alternating `--rounds` times so
   neither gets the warm cache alone;
5. prints contributions/s and p50/p95/p99 (ms) per design, checks that each pool reconciles
   to the sum of what the responses said was contributed, and writes JSON to
   `bench/results/jackpot_hot_pool-<UTC time>.json`.

Latency is measured around each client call, so it includes the Python client; client,
server and PostgreSQL share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from croupier.common.v1 import money_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.store.database import migrate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers
from tests.scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OWNER = "bench-network"
TENANTS = tuple(f"bench-op{i}" for i in range(8))


def database() -> contextlib.AbstractContextManager[str]:
    """A fresh database URL (dropped afterwards)."""
    return scratch_database("croupier_bench", ROOT / ".data" / "bench-jackpot-postgres")


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_serving(addr: str, seconds: float = 30) -> None:
    """Until the server's health check says SERVING."""
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                r = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not become healthy")


async def create(stub: JackpotServiceStub, shards: int) -> str:
    """A network jackpot with one progressive tier (1% of the bet, EXTERNAL trigger)."""
    jackpot_id = f"hot-{shards}-{uuid.uuid4().hex[:6]}"
    await stub.CreateJackpot(
        pb.CreateJackpotRequest(
            tenant_id=OWNER,
            idempotency_key=uuid.uuid4().hex,
            jackpot_id=jackpot_id,
            currency="EUR",
            scope=pb.JACKPOT_SCOPE_NETWORK,
            tenant_ids=list(TENANTS),
            tiers=[
                pb.TierConfig(
                    tier="grand",
                    kind=pb.POOL_KIND_PROGRESSIVE,
                    seed_minor_units=1_000_000,
                    contribution_rate_ppm=10_000,
                    trigger=pb.TRIGGER_KIND_EXTERNAL,
                    shards=shards,
                )
            ],
        )
    )
    return jackpot_id


async def drive(
    stub: JackpotServiceStub, jackpot_id: str, seconds: float, concurrency: int
) -> tuple[list[float], int, int]:
    """Contribute as fast as `concurrency` workers can for `seconds`: (latencies ms,
    contributed minor units, errors)."""
    latencies: list[float] = []
    contributed = 0
    errors = 0
    stop = time.monotonic() + seconds

    async def worker(w: int) -> None:
        nonlocal contributed, errors
        n = 0
        while time.monotonic() < stop:
            n += 1
            req = pb.ContributeRequest(
                tenant_id=TENANTS[(w + n) % len(TENANTS)],
                idempotency_key=f"{jackpot_id}-{w}-{n}-{uuid.uuid4().hex[:8]}",
                jackpot_id=jackpot_id,
                player_id=f"p{w}",
                game_id="slot",
                round_id=f"r{w}-{n}",
                bet=money_pb2.Money(minor_units=100 + (n % 900), currency="EUR"),
            )
            t0 = time.perf_counter()
            try:
                r = await stub.Contribute(req, timeout=10)
                contributed += r.tiers[0].contribution.minor_units
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, contributed, errors


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    await migrate(url)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "CROUPIER_DATABASE_URL": url,
        "CROUPIER_GRPC_ADDR": addr,
        "CROUPIER_LOG_LEVEL": "WARNING",
        "CROUPIER_DB_POOL_MAX": str(args.pool_max),
        "CROUPIER_CONTRIBUTION_BATCH": str(args.batch),
    }
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
        [sys.executable, "-m", "server.main"], env=env, cwd=ROOT, start_new_session=True
    )
    try:
        await wait_serving(addr)
        async with grpc.aio.insecure_channel(addr) as ch:
            stub = JackpotServiceStub(ch)
            designs = {f"sharded ({args.shards} rows)": args.shards, "naive (1 row)": 1}
            ids = {name: await create(stub, shards) for name, shards in designs.items()}
            results: dict[str, Any] = {}
            for concurrency in args.concurrency:
                totals: dict[str, dict[str, Any]] = {
                    n: {"latencies": [], "contributed": 0, "errors": 0, "seconds": 0.0} for n in ids
                }
                for jackpot_id in ids.values():  # warmup, not measured
                    await drive(stub, jackpot_id, args.warmup, concurrency)
                for _ in range(args.rounds):
                    for name, jackpot_id in ids.items():
                        lat, contributed, errors = await drive(
                            stub, jackpot_id, args.seconds, concurrency
                        )
                        t = totals[name]
                        t["latencies"] += lat
                        t["contributed"] += contributed
                        t["errors"] += errors
                        t["seconds"] += args.seconds
                for name in ids:
                    t = totals[name]
                    lat = t["latencies"]
                    results[f"{name} @ {concurrency}"] = {
                        "design": name,
                        "concurrency": concurrency,
                        "contributions": len(lat),
                        "contributions_per_second": round(len(lat) / t["seconds"], 1),
                        "p50_ms": round(pct(lat, 0.50), 2),
                        "p95_ms": round(pct(lat, 0.95), 2),
                        "p99_ms": round(pct(lat, 0.99), 2),
                        "errors": t["errors"],
                    }
            rec = await stub.Reconcile(pb.ReconcileRequest(tenant_id=OWNER))
            for r in rec.pools:  # every contribution, warmups included, reconciles exactly
                assert r.drift_minor_units == 0 and r.fraction_drift == 0, r
            for v in results.values():
                v["reconciled"] = rec.balanced
            return results
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per design")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument(
        "--concurrency",
        type=lambda t: [int(x) for x in t.split(",")],
        default=[1, 8, 32],
        help="client workers, a comma list (default 1,8,32)",
    )
    parser.add_argument("--shards", type=int, default=16, help="counter rows of the design")
    parser.add_argument("--pool-max", type=int, default=16, help="server DB pool size")
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="server group commit (CROUPIER_CONTRIBUTION_BATCH); default 1: off, so the two "
        "designs differ only in counter rows (make bench compares the full design with "
        "group commit against the naive one)",
    )
    args = parser.parse_args()
    with database() as url:
        results = asyncio.run(run(args, url))
    print(f"Contribute to one hot network pool, {os.cpu_count()} cores, loopback")
    print(
        f"{'design':<22}{'workers':>8}{'contrib/s':>10}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}"
    )
    for r in results.values():
        print(
            f"{r['design']:<22}{r['concurrency']:>8}{r['contributions_per_second']:>10}"
            f"{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}"
            f"  reconciled={r['reconciled']}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"jackpot_hot_pool-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

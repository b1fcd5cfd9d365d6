"""Latency of a sportsbook `bet` through the edge at a fixed concurrency (issue 4).

End to end, on loopback only:
1. a fresh database on CROUPIER_DATABASE_URL's server (dropped afterwards), or a private
   PostgreSQL cluster under `.data/bench-edge-postgres` when the variable is unset;
2. `croupier-server` and `croupier-edge` as subprocesses on free 127.0.0.1 ports (the edge with
   one `bench` integration, its dispute store on the same database), as `make run` runs them;
3. `--players` players credited through the wallet;
4. `--concurrency` workers (aiohttp, keep-alive) POST signed `bet` callbacks with fresh
   transaction ids for `--seconds` after a `--warmup`; then the same for `result`;
5. prints action, concurrency, calls/s, p50/p95/p99 (ms) and errors, and writes them as JSON to
   `bench/results/edge_latency-<UTC time>.json`.

Latency is measured around each HTTP call, so it includes signing and the Python client; the
client, the edge, the server and PostgreSQL share the machine's cores.

    CROUPIER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/edge_latency.py --concurrency 32 --seconds 10
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
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from croupier.common.v1 import money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1 import wallet_service_pb2_grpc as pb_grpc

from server.edge.signature import sign
from server.store.database import migrate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers
from tests.scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
TENANT = "bench-edge"
SECRET = "bench-edge-secret-0123456789"
PREFIX = "/sportsbook/bench"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database() -> contextlib.AbstractContextManager[str]:
    """A fresh database URL (CROUPIER_DATABASE_URL's server, or an embedded cluster)."""
    return scratch_database("croupier_bench_edge", ROOT / ".data" / "bench-edge-postgres")


async def wait_port(port: int, proc: asyncio.subprocess.Process, seconds: float = 30) -> None:
    """Wait until something listens on 127.0.0.1:`port`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.asynccontextmanager
async def processes(url: str) -> AsyncIterator[tuple[int, int]]:
    """croupier-server and croupier-edge on free ports; yields (grpc port, edge port)."""
    grpc_port, edge_port = free_port(), free_port()
    integration = {"name": "bench", "tenant": TENANT, "secret": SECRET, "path_prefix": PREFIX}
    env = {
        **os.environ,
        "CROUPIER_DATABASE_URL": url,
        "CROUPIER_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "CROUPIER_EDGE_ADDR": f"127.0.0.1:{edge_port}",
        "CROUPIER_EDGE_INTEGRATIONS": json.dumps([integration]),
        "CROUPIER_LOG_LEVEL": "WARNING",
    }
    procs = []
    try:
        for exe, port in (("croupier-server", grpc_port), ("croupier-edge", edge_port)):
            proc = await asyncio.create_subprocess_exec(str(BIN / exe), env=env)
            procs.append(proc)
            await wait_port(port, proc)
        yield grpc_port, edge_port
    finally:
        for proc in reversed(procs):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 15)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not values:
        return 0.0
    rank = max(1, min(len(values), round(q / 100 * len(values) + 0.5)))
    return values[rank - 1]


async def drive(
    http: aiohttp.ClientSession,
    base: str,
    action: str,
    players: list[str],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    """`concurrency` workers POST signed `action` callbacks; latencies after `warmup`."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def worker(n: int) -> None:
        i = 0
        while (now := time.monotonic()) < stop_at:
            i += 1
            body = json.dumps(
                {
                    "transaction_id": f"{action}-{n}-{i}-{uuid.uuid4().hex[:8]}",
                    "action": action,
                    "user_id": players[(n + i) % len(players)],
                    "currency": "EUR",
                    "amount": "1.00",
                }
            ).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Security-Hash": sign(body, SECRET.encode()),
            }
            t0 = time.perf_counter()
            async with http.post(f"{base}/transaction", data=body, headers=headers) as resp:
                reply = await resp.json()
            elapsed = (time.perf_counter() - t0) * 1000
            if now >= measure_from:
                if reply.get("error") is None:
                    latencies.append(elapsed)
                else:
                    errors[str(reply["error"])] = errors.get(str(reply["error"]), 0) + 1

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return summary(action, concurrency, seconds, sorted(latencies), errors)


async def drive_direct(
    stub: Any, players: list[str], concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """The baseline: the same debits sent straight to WalletService.Debit over gRPC."""
    latencies: list[float] = []
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def worker(n: int) -> None:
        i = 0
        while (now := time.monotonic()) < stop_at:
            i += 1
            t0 = time.perf_counter()
            await stub.Debit(
                pb.DebitRequest(
                    tenant_id=TENANT,
                    player_id=players[(n + i) % len(players)],
                    idempotency_key=f"direct-{n}-{i}-{uuid.uuid4().hex[:8]}",
                    amount=money_pb2.Money(minor_units=100, currency="EUR"),
                )
            )
            if now >= measure_from:
                latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return summary("Debit (gRPC, no edge)", concurrency, seconds, sorted(latencies), {})


def summary(
    action: str, concurrency: int, seconds: float, latencies: list[float], errors: dict[str, int]
) -> dict[str, Any]:
    """One phase's numbers (milliseconds, calls per second)."""
    return {
        "action": action,
        "concurrency": concurrency,
        "seconds": seconds,
        "calls": len(latencies),
        "calls_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(latencies[-1], 2) if latencies else 0.0,
        "errors": errors,
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Set up, drive bets then results, return the phase results."""
    with database() as url:
        await migrate(url)
        async with processes(url) as (grpc_port, edge_port):
            players = [f"p{i}" for i in range(args.players)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
                stub = pb_grpc.WalletServiceStub(ch)
                for p in players:
                    await stub.Credit(
                        pb.CreditRequest(
                            tenant_id=TENANT,
                            player_id=p,
                            idempotency_key=f"fund-{p}",
                            amount=money_pb2.Money(minor_units=10**12, currency="EUR"),
                        )
                    )
                direct = await drive_direct(
                    stub, players, args.concurrency, args.seconds, args.warmup
                )
            base = f"http://127.0.0.1:{edge_port}{PREFIX}"
            connector = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(connector=connector) as http:
                phases = [
                    await drive(
                        http, base, action, players, args.concurrency, args.seconds, args.warmup
                    )
                    for action in ("bet", "result")
                ]
            return [*phases, direct]


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--players", type=int, default=200)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    phases = asyncio.run(run(args))
    print(f"{'action':22} {'conc':>4} {'calls/s':>8} {'p50':>7} {'p95':>7} {'p99':>7}  errors")
    for r in phases:
        print(
            f"{r['action']:22} {r['concurrency']:>4} {r['calls_per_second']:>8} "
            f"{r['p50_ms']:>7} {r['p95_ms']:>7} {r['p99_ms']:>7}  {r['errors'] or '-'}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"edge_latency-{stamp}.json"
    meta = {
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    out.write_text(json.dumps({"meta": meta, "phases": phases}, indent=2) + "\n")
    print(
        f"load average (1 min) before/after: {meta['load_average_1m_before']} / "
        f"{meta['load_average_1m_after']} on {meta['cpus']} CPUs"
    )
    print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Client-observed latency of AuthorizeBet and SettleBet at a fixed concurrency (`make bench`).

What it does, end to end, on loopback only:
1. a database: a fresh database on CROUPIER_DATABASE_URL's server (dropped afterwards), or a
   private PostgreSQL cluster under `.data/bench-postgres` (server.store.embedded);
2. migrates it and starts `croupier-server` as a subprocess on a free 127.0.0.1 port
   (CROUPIER_GRPC_ADDR), waiting for its health check to say SERVING;
3. credits `--players` players;
4. drives AuthorizeBet alone for `--seconds`, then SettleBet alone for `--seconds` (each settle
   against a hold authorized in step 4), each with `--concurrency` workers of the async client
   (`client.wallet.AsyncWalletClient`, retries off so every failure is counted) spread over
   `--channels` connections (one connection would pin every call to one of the server's
   SO_REUSEPORT worker processes), after a `--warmup` that is not measured;
5. prints RPC, concurrency, calls/s, p50/p95/p99 (ms) and errors, and writes the same as JSON
   to `bench/results/client_latency-<UTC time>.json`.

Latency is measured around each client call (`time.perf_counter`), so it includes the Python
client's own overhead; client, server and PostgreSQL share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.errors import CroupierError
from client.retry import RetryPolicy
from client.wallet import CHANNEL_OPTIONS, AsyncWalletClient
from server.store.database import migrate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers
from tests.scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TENANT = "bench"
STAKE = (100, "EUR")  # EUR 1.00 per bet
BANKROLL = (10**12, "EUR")
SLO_P99_MS = 25.0


@dataclass
class PhaseResult:
    """One measured phase: latencies in milliseconds, rate in calls per second."""

    rpc: str
    concurrency: int
    seconds: float
    calls: int
    errors: int
    calls_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    meets_slo: bool  # p99 under SLO_P99_MS (PRODUCT.md: AuthorizeBet / SettleBet p99 < 25 ms)
    error_reasons: dict[str, int] = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile `q` (0..100) of an ascending list; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database() -> contextlib.AbstractContextManager[str]:
    """A fresh, empty database URL: on CROUPIER_DATABASE_URL's server, or an embedded cluster
    under .data/bench-postgres. Dropped / stopped on exit."""
    return scratch_database("croupier_bench", ROOT / ".data" / "bench-postgres")


async def wait_serving(target: str, proc: asyncio.subprocess.Process, seconds: float) -> None:
    """Wait until the server's health check answers SERVING; raise if it exits or times out."""
    end = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            if proc.returncode is not None:
                raise RuntimeError(f"croupier-server exited with {proc.returncode}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"croupier-server not serving on {target} after {seconds}s")


@contextlib.asynccontextmanager
async def server(
    url: str, workers: int | None, extra_env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """`croupier-server` as a subprocess on a free loopback port (`workers` processes, or the
    server's default; `extra_env` added to its environment); yields its target."""
    target = f"127.0.0.1:{free_port()}"
    exe = shutil.which("croupier-server", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "server.main"]
    if workers:
        command += ["--workers", str(workers)]
    env = {
        **os.environ,
        "CROUPIER_DATABASE_URL": url,
        "CROUPIER_GRPC_ADDR": target,
        "CROUPIER_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    proc = await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT)
    try:
        await wait_serving(target, proc, 60)
        yield target
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def drive(
    rpc: str,
    concurrency: int,
    seconds: float,
    warmup: float,
    call: Callable[[int], Awaitable[bool]],
) -> PhaseResult:
    """Run `concurrency` workers calling `call(worker)` back to back for `warmup + seconds`;
    measure the calls that start after the warm-up. `call` returns False when it has no more
    work (the phase then ends early)."""
    latencies: list[float] = []
    reasons: dict[str, int] = {}
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def worker(n: int) -> None:
        while (t0 := time.perf_counter()) < stop_at:
            try:
                more = await call(n)
            except CroupierError as err:
                more, reason = True, f"{err.code.name} {err.reason}".strip()
                if t0 >= measure_from:
                    reasons[reason] = reasons.get(reason, 0) + 1
                continue
            if not more:
                return
            if t0 >= measure_from:
                latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = max(1e-9, min(time.perf_counter(), stop_at) - measure_from)
    latencies.sort()
    errors = sum(reasons.values())
    return PhaseResult(
        rpc=rpc,
        concurrency=concurrency,
        seconds=round(elapsed, 3),
        calls=len(latencies),
        errors=errors,
        calls_per_second=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(latencies, 50), 2),
        p95_ms=round(percentile(latencies, 95), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        max_ms=round(latencies[-1], 2) if latencies else 0.0,
        meets_slo=bool(latencies) and percentile(latencies, 99) < SLO_P99_MS and not reasons,
        error_reasons=reasons,
    )


async def run(args: argparse.Namespace, target: str) -> list[PhaseResult]:
    """Fund the players, then measure AuthorizeBet alone and SettleBet alone."""
    policy = RetryPolicy(timeout=5.0, max_attempts=1)
    players = [f"p{i:04d}" for i in range(args.players)]
    # one TCP connection per client: the server's SO_REUSEPORT workers each get some of them
    options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
    clients = [
        AsyncWalletClient(target, retry=policy, options=options) for _ in range(args.channels)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for c in clients:
            await stack.enter_async_context(c)
        for player in players:
            await clients[0].credit(tenant_id=TENANT, player_id=player, amount=BANKROLL)
        holds: list[tuple[str, str]] = []
        counter = iter(range(10**12))

        async def authorize(worker: int) -> bool:
            n = next(counter)
            player, bet = players[n % len(players)], f"bet-{n}"
            await clients[worker % len(clients)].authorize_bet(
                tenant_id=TENANT, player_id=player, bet_id=bet, round_id=f"r-{n}", amount=STAKE
            )
            holds.append((player, bet))
            return True

        async def settle(worker: int) -> bool:
            if not holds:
                return False
            player, bet = holds.pop()
            await clients[worker % len(clients)].settle_bet(
                tenant_id=TENANT, player_id=player, bet_id=bet, win=(n_win(bet), "EUR")
            )
            return True

        authorized = await drive(
            "AuthorizeBet", args.concurrency, args.seconds, args.warmup, authorize
        )
        # enough open holds for the settle phase to run its full time (not measured)
        needed = int(authorized.calls_per_second * (args.seconds + args.warmup) * 1.5)

        async def top_up(worker: int) -> None:
            while len(holds) < needed:
                await authorize(worker)

        await asyncio.gather(*(top_up(n) for n in range(args.concurrency)))
        settled = await drive("SettleBet", args.concurrency, args.seconds, args.warmup, settle)
        results = [authorized, settled]
    return results


def n_win(bet: str) -> int:
    """A deterministic win per bet: every fourth bet wins twice its stake, in minor units."""
    return STAKE[0] * 2 if int(bet.rsplit("-", 1)[1]) % 4 == 0 else 0


def table(results: list[PhaseResult]) -> str:
    """The results as a fixed-width text table."""
    head = f"{'RPC':<14}{'conc':>6}{'calls/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    head += f"{'max ms':>9}{'calls':>8}{'errors':>8}  p99<{SLO_P99_MS:g}ms"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.rpc:<14}{r.concurrency:>6}{r.calls_per_second:>10.1f}{r.p50_ms:>9.2f}"
            f"{r.p95_ms:>9.2f}{r.p99_ms:>9.2f}{r.max_ms:>9.2f}{r.calls:>8}{r.errors:>8}"
            f"  {'yes' if r.meets_slo else 'NO'}"
        )
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    with database() as url:
        await migrate(url)
        async with server(url, args.server_workers) as target:
            results = await run(args, target)
    print(table(results))
    print(f"1-minute load average: {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    for r in results:
        if r.error_reasons:
            print(f"{r.rpc} errors: {r.error_reasons}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"client_latency-{stamp}.json"
    report = {
        "benchmark": "client_latency",
        "time": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # other work on the machine skews the numbers: 1-minute load before and after
            "load_average_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "settings": vars(args),
        "database": "CROUPIER_DATABASE_URL"
        if os.environ.get("CROUPIER_DATABASE_URL")
        else "embedded",
        "results": [asdict(r) for r in results],
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out.relative_to(ROOT)}")
    return 1 if any(r.errors for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python bench/client_latency.py [--concurrency 32] [--seconds 10] ...`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32, help="in-flight calls")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per RPC")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--players", type=int, default=64, help="players the bets spread over")
    parser.add_argument(
        "--channels",
        type=int,
        default=4,
        help="client connections the workers share (spread over the server's workers)",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=None,
        help="croupier-server --workers (default: the server's own, CROUPIER_WORKERS or CPUs)",
    )
    args = parser.parse_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())

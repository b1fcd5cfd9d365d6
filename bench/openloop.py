"""Open-loop load: requests sent on a fixed schedule, latency measured from the scheduled time.

A closed-loop generator (N workers calling back to back) slows down when the server does and so
hides the queueing a real arrival stream would see (coordinated omission). Here request i of a
cell is due at `t0 + i / rate`; the generator sends every due request as soon as it can and
measures each latency from the time the request was *due*, not from when it was sent, so a
stalled server or a stalled generator shows in the percentiles. A request still unanswered at
the end of the cell's drain time counts as a timeout (an infinite latency).

`find_slo_rate` searches the highest constant arrival rate whose p99 stays under the SLO
(short probe cells, geometric growth then bisection), then `confirm` measures that rate in
`repeats` cells of `seconds` each and reports min / median / max of p99 and achieved rate; a
rate that fails its confirmation on the median is stepped down and measured again.

`echo_server` is the reference: a grpc.aio server answering AuthorizeBet, SettleBet and
Contribute with a fixed, prebuilt response and no database, on the same event loop setup as
croupier-server (uvloop when installed), so "what Python gRPC alone sustains under the same
generator" is measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

SLO_P99_MS = 25.0
TIMEOUT_S = 5.0


@dataclass
class Cell:
    """One open-loop cell: offered rate (calls/s), what was achieved, latency from the
    scheduled send time (ms), errors and timeouts, the generator's own CPU (% of one core)."""

    rpc: str
    offered_per_s: float
    seconds: float
    sent: int
    ok: int
    errors: int
    timeouts: int
    achieved_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    loadgen_cpu_pct: float
    late_sends: int  # requests the generator itself sent > 1 ms after their scheduled time
    loadavg_1m: float  # the machine's 1-minute load average at the end (shared machine)
    error_codes: dict[str, int] = field(default_factory=dict)

    @property
    def meets_slo(self) -> bool:
        """p99 under the SLO with no errors or timeouts."""
        return self.ok > 0 and self.p99_ms < SLO_P99_MS and not self.errors and not self.timeouts


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile `q` (0..100) of an ascending list; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def open_loop(
    rpc: str,
    rate: float,
    seconds: float,
    send: Callable[[int], grpc.aio.UnaryUnaryCall[Any, Any]],
    drain: float = TIMEOUT_S,
) -> Cell:
    """Send `send(i)` (which starts a call and returns it) at `rate` per second for `seconds`;
    latency of each call from its scheduled time. `send` must not block."""
    latencies: list[float] = []
    codes: dict[str, int] = {}
    pending = 0
    done_all = asyncio.Event()
    finished = False
    perf = time.perf_counter
    interval = 1.0 / rate
    total = max(1, int(rate * seconds))
    late = 0

    def on_done(due: float, sent: float) -> Callable[[Any], None]:
        def callback(call: Any) -> None:
            nonlocal pending
            pending -= 1
            now = perf()
            if not call.cancelled() and call._cython_call.is_ok():
                latencies.append((now - due) * 1000)
            else:  # the status is only awaitable here: a call that took its deadline timed out
                name = "DEADLINE_EXCEEDED" if now - sent >= TIMEOUT_S * 0.99 else "ERROR"
                codes[name] = codes.get(name, 0) + 1
            if finished and pending == 0:
                done_all.set()

        return callback

    cpu0, t0 = _cpu(), perf()
    i = 0
    while i < total:
        now = perf()
        due_count = min(total, int((now - t0) / interval) + 1)
        while i < due_count:
            due = t0 + i * interval
            if now - due > 0.001:
                late += 1
            call = send(i)
            pending += 1
            call.add_done_callback(on_done(due, now))
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, t0 + i * interval - perf()))
    finished = True
    wall_send = perf() - t0
    if pending:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done_all.wait(), drain)
    timeouts = pending + codes.pop("DEADLINE_EXCEEDED", 0) + codes.pop("CANCELLED", 0)
    cpu = (_cpu() - cpu0) / max(1e-9, perf() - t0) * 100
    latencies.sort()
    return Cell(
        rpc=rpc,
        offered_per_s=round(rate, 1),
        seconds=round(wall_send, 2),
        sent=total,
        ok=len(latencies),
        errors=sum(codes.values()),
        timeouts=timeouts,
        achieved_per_s=round(len(latencies) / max(1e-9, wall_send), 1),
        p50_ms=round(percentile(latencies, 50), 2),
        p90_ms=round(percentile(latencies, 90), 2),
        p99_ms=round(percentile(latencies, 99), 2) if not timeouts else float("inf"),
        max_ms=round(latencies[-1], 2) if latencies else 0.0,
        loadgen_cpu_pct=round(cpu, 1),
        late_sends=late,
        loadavg_1m=round(os.getloadavg()[0], 2),
        error_codes=codes,
    )


@dataclass
class SloResult:
    """The highest constant rate found with p99 < SLO, and its confirmation cells."""

    rpc: str
    arm: str
    rate_per_s: float
    probes: list[Cell]
    confirm: list[Cell]

    def summary(self) -> dict[str, Any]:
        """Rate, p99 and achieved rate as min / median / max over the confirmation cells."""
        p99 = [c.p99_ms for c in self.confirm]
        got = [c.achieved_per_s for c in self.confirm]
        cpu = [c.loadgen_cpu_pct for c in self.confirm]
        return {
            "rpc": self.rpc,
            "arm": self.arm,
            "slo_rate_per_s": self.rate_per_s,
            "repeats": len(self.confirm),
            "achieved_per_s": _mmm(got),
            "p50_ms": _mmm([c.p50_ms for c in self.confirm]),
            "p99_ms": _mmm(p99),
            "loadgen_cpu_pct": _mmm(cpu),
            "meets_slo_median": statistics.median(p99) < SLO_P99_MS if p99 else False,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, for the results file."""
        return {
            **self.summary(),
            "probes": [asdict(c) for c in self.probes],
            "confirm": [asdict(c) for c in self.confirm],
        }


def _mmm(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


async def find_slo_rate(
    rpc: str,
    arm: str,
    send: Callable[[int], grpc.aio.UnaryUnaryCall[Any, Any]],
    *,
    start: float = 100.0,
    probe_seconds: float = 4.0,
    seconds: float = 20.0,
    repeats: int = 3,
    ceiling: float = 6000.0,
    bisections: int = 3,
    before_cell: Callable[[float, float], Any] | None = None,
    log: Callable[[str], None] = print,
) -> SloResult:
    """Search the highest rate with p99 < SLO (probes of `probe_seconds`, a failed one run
    once more: x1.5 from `start` until a probe fails, then `bisections` halvings of the gap),
    then measure it `repeats`
    times for `seconds`; if the median p99 of those fails, step down 15% and measure again
    (at most twice). `before_cell(rate, seconds)` may prepare work (an awaitable)."""

    async def cell(rate: float, secs: float) -> Cell:
        if before_cell is not None:
            await before_cell(rate, secs)
        c = await open_loop(rpc, rate, secs, send)
        log(
            f"  {arm:<10} {rpc:<13} {rate:>7.0f}/s {secs:>4.0f}s: p50 {c.p50_ms:>7.2f} "
            f"p99 {c.p99_ms:>8.2f} ms, got {c.achieved_per_s:>7.0f}/s, err {c.errors}, "
            f"timeouts {c.timeouts}, loadgen {c.loadgen_cpu_pct:.0f}%, load {c.loadavg_1m}"
        )
        await asyncio.sleep(0.5)  # let the tail drain before the next cell
        return c

    probes: list[Cell] = []

    async def probe(rate: float) -> Cell:
        # a failed probe runs once more: one stall of a few hundred milliseconds in a
        # 4-second probe should not cap the search (the 20-second cells judge the rate)
        c = await cell(rate, probe_seconds)
        probes.append(c)
        if not c.meets_slo:
            c = await cell(rate, probe_seconds)
            probes.append(c)
        return c

    lo, hi = 0.0, 0.0
    rate = start
    while rate <= ceiling:
        c = await probe(rate)
        if c.meets_slo:
            lo = rate
            rate *= 1.5
        else:
            hi = rate
            break
    if hi == 0.0:
        hi = ceiling
    if lo == 0.0:  # even the start rate fails: search downwards
        rate = start
        while rate > 5 and lo == 0.0:
            rate /= 2
            c = await probe(rate)
            if c.meets_slo:
                lo = rate
            else:
                hi = rate
    for _ in range(bisections):
        if lo == 0.0:
            break
        mid = (lo * hi) ** 0.5
        c = await probe(mid)
        if c.meets_slo:
            lo = mid
        else:
            hi = mid
    found = round(lo)
    confirm: list[Cell] = []
    for _attempt in range(3 if repeats else 0):
        if found <= 0:
            break
        confirm = [await cell(found, seconds) for _ in range(repeats)]
        if statistics.median(c.p99_ms for c in confirm) < SLO_P99_MS:
            break
        found = round(found * 0.85)
    return SloResult(rpc, arm, float(found), probes, confirm)


# ---- the echo reference server ---------------------------------------------------------------


def _echo_main(port: int, ready: Any) -> None:
    from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
    from croupier.jackpot.v1 import jackpot_service_pb2_grpc as jgrpc
    from croupier.wallet.v1 import wallet_service_pb2 as wpb
    from croupier.wallet.v1 import wallet_service_pb2_grpc as wgrpc

    from server.main import run_loop

    authorized = wpb.AuthorizeBetResponse(transaction_id="t" * 36, hold_id="h" * 36)
    authorized.balance.available.minor_units = 100
    authorized.balance.available.currency = "EUR"
    settled = wpb.SettleBetResponse()
    contributed = jpb.ContributeResponse()

    class Wallet(wgrpc.WalletServiceServicer):
        async def AuthorizeBet(self, request: Any, context: Any) -> Any:
            return authorized

        async def SettleBet(self, request: Any, context: Any) -> Any:
            return settled

    class Jackpot(jgrpc.JackpotServiceServicer):
        async def Contribute(self, request: Any, context: Any) -> Any:
            return contributed

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        wgrpc.add_WalletServiceServicer_to_server(Wallet(), server)
        jgrpc.add_JackpotServiceServicer_to_server(Jackpot(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(1)

    run_loop(serve())


@contextlib.contextmanager
def echo_server(port: int, workers: int) -> Iterator[list[int]]:
    """`workers` echo processes on 127.0.0.1:`port` (SO_REUSEPORT, like croupier-server's
    workers); yields their pids."""
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for _ in range(workers):
        ready = ctx.Event()
        p = ctx.Process(target=_echo_main, args=(port, ready), daemon=True)
        p.start()
        ready.wait(30)
        procs.append(p)
    try:
        yield [p.pid for p in procs if p.pid is not None]
    finally:
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(5)

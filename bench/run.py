"""`make bench`: throughput within the latency SLO, against a like-for-like database anchor,
in one run (about 20 minutes; docs/scaling.md explains how to read it).

On loopback only, with a private PostgreSQL cluster under .data/bench-postgres (so the
database CPU read from /proc is this run's alone; `--shared-db` uses CROUPIER_DATABASE_URL's
server instead), a fresh database, and `croupier-server --workers W` subprocesses:

1. **SLO-bound throughput (the headline)**: for AuthorizeBet, SettleBet and Contribute (to a
   16-row hot network pool), the highest constant arrival rate with p99 < 25 ms, found by an
   open-loop generator (bench/openloop.py: requests on a fixed schedule, latency from the
   scheduled time), then measured in `--repeats` cells of `--seconds` each (min/median/max).
   The same search runs against group commit off (CROUPIER_WALLET_BATCH=1), the echo server
   (grpc.aio answering the same messages with no database: what Python gRPC alone sustains
   under this generator) and the production-shaped arm (TLS, API-key auth, outbox relay on).
2. **Closed-loop table** (secondary): AuthorizeBet at fixed in-flight levels.
3. **Hot pool, four arms**: Contribute at 64 in flight to {1 row, 16 rows} x {group commit
   off, on}, in random order, both servers warm and up throughout.
4. **The anchor** (bench/anchor.py): pgbench running one server batch's SQL at the mean batch
   size the server reached (its croupier_batch_size histogram, scraped per cell), best over
   client counts; the one-call-per-transaction script with and without the outbox NOTIFY
   trigger. Ratios are server calls/s ÷ anchor calls/s, same run.

Every cell records server and PostgreSQL CPU per call (from /proc), the generator's own CPU,
and the batch-size histogram. Results: bench/results/bench-<UTC>.json (with git revision,
PostgreSQL settings, worker/connection split) and a latency-versus-offered-rate plot
bench/results/bench-<UTC>.png.

    .venv/bin/python bench/run.py [--seconds 20] [--repeats 3] [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg
from croupier.common.v1 import money_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.scratch, tests.certs
import anchor
import openloop
from openloop import SloResult, echo_server, find_slo_rate

from server.ops import citus_cluster
from server.store.database import migrate
from tests.scratch import database_on, scratch_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TENANT = "bench"
PLAYERS = 500
CHANNELS = 4
POOL_MIN, POOL_MAX = 2, 4  # croupier-server's default connections per worker


def eur(minor: int) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor, currency="EUR")


def free_port(span: int = 1) -> int:
    """A free loopback port `p` (with p .. p+span-1 free too, for per-worker metrics ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            for k in range(1, span):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + k))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port range")


# ---- CPU from /proc ----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own cpu s, reaped children cpu s) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = raw[raw.rindex(")") + 2 :].split()
    return int(f[1]), (int(f[11]) + int(f[12])) / _TICK, (int(f[13]) + int(f[14])) / _TICK


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its live descendants, plus children it has reaped."""
    parents: dict[int, int] = {}
    own: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (s := _stat(int(d))) is not None:
            parents[int(d)], own[int(d)] = s[0], s[1]
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for c, pp in parents.items():
            if pp == p and c not in tree:
                tree.add(c)
                frontier.append(c)
    s = _stat(root)
    return sum(own.get(p, 0.0) for p in tree) + (s[2] if s else 0.0)


class CpuMeter:
    """Server and PostgreSQL CPU seconds between `start` and `stop`."""

    def __init__(self, server_pids: list[int], postmasters: list[int]) -> None:
        self.server_pids, self.postmasters = server_pids, postmasters

    def read(self) -> tuple[float, list[float]]:
        """(server CPU s, database CPU s of each node's postmaster tree, in `postmasters`
        order)."""
        server = sum(tree_cpu(p) for p in self.server_pids)
        return server, [tree_cpu(p) for p in self.postmasters]


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL postmaster's pid (the parent of a backend of ours)."""
    import psycopg

    with psycopg.connect(url) as conn:  # read while the backend lives
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        s = _stat(int(backend[0])) if backend else None
    return s[0] if s else None


# ---- croupier-server and its metrics -----------------------------------------------------------


@dataclass
class Server:
    """A croupier-server subprocess: gRPC target, metrics ports, pids, TLS and auth."""

    name: str
    target: str
    metrics_ports: list[int]
    proc: asyncio.subprocess.Process
    root_ca: bytes | None = None
    api_key: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def channel(self) -> grpc.aio.Channel:
        # one local subchannel pool per channel: each is its own TCP connection, so the
        # SO_REUSEPORT workers share the load
        options = [("grpc.use_local_subchannel_pool", 1)]
        if self.root_ca is not None:
            creds = grpc.ssl_channel_credentials(self.root_ca)
            return grpc.aio.secure_channel(self.target, creds, options=options)
        return grpc.aio.insecure_channel(self.target, options=options)

    def batch_histogram(self, kind: str) -> dict[str, float]:
        """croupier_batch_size for `kind`, summed over the workers: le -> count, sum, count."""
        out: dict[str, float] = {}
        for port in self.metrics_ports:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            except OSError:
                continue
            for line in text.decode().splitlines():
                if not line.startswith("croupier_batch_size") or f'kind="{kind}"' not in line:
                    continue
                value = float(line.rsplit(" ", 1)[1])
                if m := re.search(r'le="([^"]+)"', line):
                    out[m.group(1)] = out.get(m.group(1), 0.0) + value
                elif line.startswith("croupier_batch_size_sum"):
                    out["sum"] = out.get("sum", 0.0) + value
                elif line.startswith("croupier_batch_size_count"):
                    out["count"] = out.get("count", 0.0) + value
        return out


def histogram_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Batches, requests, mean batch size and the per-bucket counts between two scrapes."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    batches, requests = d.get("count", 0.0), d.get("sum", 0.0)
    buckets = {k: int(v) for k, v in d.items() if k not in ("sum", "count")}
    return {
        "batches": int(batches),
        "requests": int(requests),
        "mean_batch": round(requests / batches, 2) if batches else 0.0,
        "cumulative_buckets": buckets,
    }


@contextlib.asynccontextmanager
async def croupier(
    name: str,
    url: str,
    workers: int,
    extra_env: dict[str, str] | None = None,
    companions: str = "",
    root_ca: bytes | None = None,
    root: Path | None = None,
) -> AsyncIterator[Server]:
    """croupier-server as a subprocess on free loopback ports; waits for SERVING. `root`: run
    the server code of another checkout (a baseline) instead of this one."""
    port, metrics = free_port(), free_port(workers)
    exe = shutil.which("croupier-server", path=str(Path(sys.executable).parent))
    command = [exe] if exe and root is None else [sys.executable, "-m", "server.main"]
    command += ["--workers", str(workers)]
    if companions:
        command += ["--with", companions]
    env = {
        **os.environ,
        "CROUPIER_DATABASE_URL": url,
        "CROUPIER_GRPC_ADDR": f"127.0.0.1:{port}",
        "CROUPIER_METRICS_ADDR": f"127.0.0.1:{metrics}",
        "CROUPIER_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    if root is not None:
        env["PYTHONPATH"] = f"{root}:{root / 'generated'}"
    proc = await asyncio.create_subprocess_exec(*command, env=env, cwd=root or ROOT)
    srv = Server(name, f"127.0.0.1:{port}", [metrics + i for i in range(workers)], proc, root_ca)
    srv.env = extra_env or {}
    try:
        await wait_serving(srv, 60)
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def wait_serving(srv: Server, seconds: float) -> None:
    end = time.monotonic() + seconds
    async with srv.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            if srv.proc.returncode is not None:
                raise RuntimeError(f"croupier-server {srv.name} exited with {srv.proc.returncode}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"croupier-server {srv.name} not serving after {seconds}s")


# ---- workloads ---------------------------------------------------------------------------------


class Load:
    """Prebuilt requests and open/closed-loop senders against one target."""

    def __init__(self, srv: Server | None, target: str | None = None) -> None:
        self.srv = srv
        if srv is not None:
            self.channels = [srv.channel() for _ in range(CHANNELS)]
        else:
            assert target is not None
            opts = [("grpc.use_local_subchannel_pool", 1)]
            self.channels = [grpc.aio.insecure_channel(target, options=opts) for _ in range(4)]
        self.wallets = [WalletServiceStub(c) for c in self.channels]
        self.jackpots = [JackpotServiceStub(c) for c in self.channels]
        self.metadata = (
            (("authorization", f"Bearer {srv.api_key}"),) if srv and srv.api_key else None
        )
        self.holds: list[tuple[str, str]] = []
        self.requests: list[Any] = []

    async def close(self) -> None:
        for c in self.channels:
            await c.close()

    # request builders
    @staticmethod
    def authorize_req() -> tuple[pb.AuthorizeBetRequest, str, str]:
        player, bet = f"p{random.randint(1, PLAYERS)}", uuid.uuid4().hex
        req = pb.AuthorizeBetRequest(
            tenant_id=TENANT,
            player_id=player,
            idempotency_key=f"a-{bet}",
            bet_id=bet,
            round_id=bet,
            game_id="bench-slot",
            amount=eur(100),
        )
        return req, player, bet

    @staticmethod
    def settle_req(player: str, bet: str) -> pb.SettleBetRequest:
        return pb.SettleBetRequest(
            tenant_id=TENANT,
            player_id=player,
            idempotency_key=f"s-{bet}",
            bet_id=bet,
            round_id=bet,
            win=eur(50),
        )

    @staticmethod
    def contribute_req(jackpot: str) -> jpb.ContributeRequest:
        bet = uuid.uuid4().hex
        return jpb.ContributeRequest(
            tenant_id=TENANT,
            idempotency_key=f"c-{bet}",
            jackpot_id=jackpot,
            player_id=f"p{random.randint(1, PLAYERS)}",
            game_id="bench-slot",
            round_id=bet,
            bet=eur(100),
        )

    # open-loop senders: prepare(rate, seconds) builds the cell's requests first
    async def prepare_authorize(self, rate: float, seconds: float) -> None:
        self.requests = [self.authorize_req() for _ in range(int(rate * seconds) + 1)]

    def send_authorize(self, i: int) -> Any:
        req, player, bet = self.requests[i]
        call = self.wallets[i % CHANNELS].AuthorizeBet(
            req, timeout=openloop.TIMEOUT_S, metadata=self.metadata
        )

        def keep(c: Any) -> None:
            if not c.cancelled() and c._cython_call.is_ok():
                self.holds.append((player, bet))

        call.add_done_callback(keep)
        return call

    async def prepare_settle(self, rate: float, seconds: float) -> None:
        need = int(rate * seconds) + 1
        if len(self.holds) < need:
            await self.closed_loop_authorize(need - len(self.holds))
        random.shuffle(self.holds)
        self.requests = [self.settle_req(*self.holds.pop()) for _ in range(need)]

    def send_settle(self, i: int) -> Any:
        return self.wallets[i % CHANNELS].SettleBet(
            self.requests[i], timeout=openloop.TIMEOUT_S, metadata=self.metadata
        )

    def prepare_contribute(self, jackpot: str) -> Callable[[float, float], Any]:
        async def prepare(rate: float, seconds: float) -> None:
            self.requests = [self.contribute_req(jackpot) for _ in range(int(rate * seconds) + 1)]

        return prepare

    def send_contribute(self, i: int) -> Any:
        return self.jackpots[i % CHANNELS].Contribute(
            self.requests[i], timeout=openloop.TIMEOUT_S, metadata=self.metadata
        )

    async def closed_loop_authorize(self, n: int, inflight: int = 32) -> None:
        """Make `n` more open holds as fast as possible (work for SettleBet cells)."""
        left = n

        async def worker(k: int) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                req, player, bet = self.authorize_req()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await self.wallets[k % CHANNELS].AuthorizeBet(req, metadata=self.metadata)
                    self.holds.append((player, bet))

        await asyncio.gather(*(worker(k) for k in range(inflight)))

    async def closed_loop(
        self, name: str, inflight: int, seconds: float, make: Callable[[int], Any]
    ) -> dict[str, Any]:
        """`inflight` workers calling back to back for `seconds`: calls/s and percentiles."""
        lat: list[float] = []
        errors = 0
        stop = time.perf_counter() + seconds
        cpu0 = time.process_time()
        t0 = time.perf_counter()

        async def worker(k: int) -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                s = time.perf_counter()
                try:
                    await make(k)
                    lat.append((time.perf_counter() - s) * 1000)
                except grpc.aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(worker(k) for k in range(inflight)))
        wall = time.perf_counter() - t0
        lat.sort()
        return {
            "workload": name,
            "inflight": inflight,
            "seconds": round(wall, 2),
            "calls_per_s": round(len(lat) / wall, 1),
            "errors": errors,
            "p50_ms": round(openloop.percentile(lat, 50), 2),
            "p99_ms": round(openloop.percentile(lat, 99), 2),
            "loadgen_cpu_pct": round((time.process_time() - cpu0) / wall * 100, 1),
        }


# ---- the run -----------------------------------------------------------------------------------


class Run:
    """Holds the results and the CPU meter while the phases run."""

    def __init__(
        self, args: argparse.Namespace, url: str, postmasters: list[int] | None = None
    ) -> None:
        self.args, self.url = args, url
        if postmasters is None:
            pid = postmaster_pid(url)
            postmasters = [pid] if pid else []
        self.postmasters = postmasters
        self.out: dict[str, Any] = {"slo": [], "closed_loop": [], "hot_pool": [], "anchor": {}}

    def log(self, text: str) -> None:
        print(text, flush=True)

    @contextlib.contextmanager
    def metered(self, srv: Server | None, pids: list[int], kind: str | None) -> Any:
        """Measure server/PostgreSQL CPU and the batch histogram around a block; the dict
        yielded is filled in at the end (`calls` must be set by the block)."""
        meter = CpuMeter(pids, self.postmasters)
        hist0 = srv.batch_histogram(kind) if srv and kind else {}
        s0, n0 = meter.read()
        t0 = time.perf_counter()
        info: dict[str, Any] = {"calls": 0}
        yield info
        wall = time.perf_counter() - t0
        s1, n1 = meter.read()
        d0, d1 = sum(n0), sum(n1)
        calls = max(1, int(info["calls"]))
        info.update(
            server_cpu_ms_per_call=round((s1 - s0) * 1000 / calls, 3),
            db_cpu_ms_per_call=round((d1 - d0) * 1000 / calls, 3),
            server_cpu_pct=round((s1 - s0) / wall * 100, 1),
            db_cpu_pct=round((d1 - d0) / wall * 100, 1),
        )
        if len(self.postmasters) > 1:  # a cluster: coordinator first, then the workers
            info["db_cpu_ms_per_call_by_node"] = [
                round((b - a) * 1000 / calls, 3) for a, b in zip(n0, n1, strict=True)
            ]
        if srv and kind:
            info["batches"] = histogram_delta(hist0, srv.batch_histogram(kind))

    async def slo(
        self,
        srv: Server | None,
        pids: list[int],
        arm: str,
        rpc: str,
        load: Load,
        repeats: int,
        start: float,
    ) -> SloResult:
        send, prepare, kind = {
            "AuthorizeBet": (load.send_authorize, load.prepare_authorize, "wallet"),
            "SettleBet": (load.send_settle, load.prepare_settle, "wallet"),
            "Contribute": (load.send_contribute, load.prepare_contribute(self.hot16), "contribute"),
        }[rpc]
        a = self.args
        result = await find_slo_rate(
            rpc,
            arm,
            send,
            start=start,
            probe_seconds=a.probe_seconds,
            seconds=0.01,
            repeats=0,
            before_cell=prepare,
            log=self.log,
        )
        # the confirmation cells, metered (CPU per call, batch sizes)
        found = result.rate_per_s
        metered: dict[str, Any] = {"server_cpu_ms_per_call": None, "db_cpu_ms_per_call": None}
        held, tried = False, 0.0
        for _attempt in range(3):
            if found <= 0:
                break
            tried = found
            await prepare(found, a.seconds * repeats)
            cells = []
            with self.metered(srv, pids, kind) as info:
                for r in range(repeats):
                    offset = r * int(found * a.seconds)
                    cells.append(
                        await openloop.open_loop(
                            rpc, found, a.seconds, lambda i, o=offset: send(i + o)
                        )
                    )
                    c = cells[-1]
                    self.log(
                        f"  {arm:<10} {rpc:<13} {found:>7.0f}/s {a.seconds:>4.0f}s: p50 "
                        f"{c.p50_ms:>7.2f} p99 {c.p99_ms:>8.2f} ms, got {c.achieved_per_s:>7.0f}"
                        f"/s, err {c.errors}, timeouts {c.timeouts}, "
                        f"loadgen {c.loadgen_cpu_pct:.0f}%  [confirm {r + 1}/{repeats}]"
                    )
                    if sum(x.p99_ms >= openloop.SLO_P99_MS for x in cells) > repeats // 2:
                        break  # most cells failed: the median cannot hold, step down now
                info["calls"] = sum(c.ok for c in cells)
            metered = info
            result.confirm = cells
            if statistics.median(c.p99_ms for c in cells) < openloop.SLO_P99_MS:
                held = True
                break
            found = round(found * 0.85)
        # the rate whose confirmation cells held the SLO; 0 when none did (the last rate
        # tried and its cells are kept beside it)
        found = tried if held else 0.0
        result.rate_per_s = float(found)
        info = metered
        row = {**result.to_json(), "metered": info, "last_confirm_rate_per_s": tried}
        self.out["slo"].append(row)
        s = result.summary()
        self.log(
            f"{arm:<10} {rpc:<13} SLO-bound rate {found:.0f}/s (p99 median "
            f"{s['p99_ms']['median']} ms, min {s['p99_ms']['min']}, max {s['p99_ms']['max']}); "
            f"server {info['server_cpu_ms_per_call']} ms, db {info['db_cpu_ms_per_call']} ms "
            f"CPU per call; batches {info.get('batches', {}).get('mean_batch', '-')}"
        )
        return result

    async def main(self) -> None:
        a = self.args
        on_phase = set(a.phases)
        await migrate(self.url)
        self.out["postgres"] = anchor.postgres_settings(self.url)
        off = {"CROUPIER_WALLET_BATCH": "1", "CROUPIER_CONTRIBUTION_BATCH": "1"}
        async with (
            croupier("on", self.url, a.workers) as on_srv,
            croupier("off", self.url, a.workers, off) as off_srv,
        ):
            on, offl = Load(on_srv), Load(off_srv)
            await self.setup(on)
            on_pids, off_pids = [on_srv.proc.pid], [off_srv.proc.pid]
            for load in (on, offl):  # warm-up: both servers, every RPC, not measured
                await self.warm(load)
            self.log(f"\n== SLO-bound throughput (open loop, p99 < {openloop.SLO_P99_MS:g} ms) ==")
            start = 150.0
            if "slo" in on_phase:
                auth = await self.slo(on_srv, on_pids, "bare", "AuthorizeBet", on, a.repeats, 150)
                start = max(50, auth.rate_per_s / 2)
                await self.slo(on_srv, on_pids, "bare", "SettleBet", on, a.repeats, start)
                await self.slo(on_srv, on_pids, "bare", "Contribute", on, a.repeats, start)
            if "gcoff" in on_phase:
                await self.slo(
                    off_srv, off_pids, "gc-off", "AuthorizeBet", offl, a.side_repeats, start
                )
            if "closed" in on_phase:
                await self.closed(on_srv, on, on_pids)
            if "hot" in on_phase:
                await self.hot_pool(on_srv, on, off_srv, offl)
            await self.reconcile(on)
            await on.close()
            await offl.close()
        if a.baseline or "ab" in on_phase:
            await self.interleaved()
        if "echo" in on_phase:
            self.log("\n== echo server (grpc.aio, fixed responses, no database) ==")
            port = free_port()
            with echo_server(port, a.workers) as echo_pids:
                echo = Load(None, f"127.0.0.1:{port}")
                await echo.prepare_authorize(200, a.warmup)
                await openloop.open_loop("warmup", 200, a.warmup, echo.send_authorize)
                await self.slo(
                    None, echo_pids, "echo", "AuthorizeBet", echo, a.side_repeats, 2 * start
                )
                await echo.close()
        if "prod" in on_phase:
            self.log("\n== production-shaped: TLS, API-key auth, outbox relay on ==")
            await self.production(start)
        if "anchor" in on_phase:
            self.log("\n== anchor: pgbench running the server's SQL ==")
            await asyncio.to_thread(self.anchors)

    async def interleaved(self) -> None:
        """AuthorizeBet at the same offered rates on group commit on, off and (with
        --baseline) another checkout's server, arms in random order at each rate, so slow
        drifts of a shared machine's background load fall on every arm alike."""
        a = self.args
        off = {"CROUPIER_WALLET_BATCH": "1", "CROUPIER_CONTRIBUTION_BATCH": "1"}
        self.log("\n== interleaved: AuthorizeBet, same offered rates, arms in random order ==")
        async with contextlib.AsyncExitStack() as stack:
            servers = {
                "bare": await stack.enter_async_context(croupier("on", self.url, a.workers)),
                "gc-off": await stack.enter_async_context(
                    croupier("off", self.url, a.workers, off)
                ),
            }
            if a.baseline:
                # its own database on the same cluster, migrated by its own code (a schema
                # of another revision), with the same players and pools
                base_url = stack.enter_context(database_on(self.url, "croupier_bench_baseline"))
                servers["baseline"] = await stack.enter_async_context(
                    croupier("baseline", base_url, a.workers, root=Path(a.baseline))
                )
            loads = {arm: Load(srv) for arm, srv in servers.items()}
            if a.baseline:
                ours = (self.hot16, self.hot1)
                await self.setup(loads["baseline"], base_url)
                self.hot16_base, (self.hot16, self.hot1) = self.hot16, ours
            for arm, load in loads.items():
                if arm == "baseline":
                    ours16, self.hot16 = self.hot16, self.hot16_base
                    await self.warm(load)
                    self.hot16 = ours16
                else:
                    await self.warm(load)
            rows = self.out.setdefault("interleaved", [])
            for rate in a.ab_rates:
                arms = list(servers)
                random.shuffle(arms)
                for arm in arms:
                    srv, load = servers[arm], loads[arm]
                    await load.prepare_authorize(rate, a.ab_seconds)
                    with self.metered(srv, [srv.proc.pid], "wallet") as info:
                        cell = await openloop.open_loop(
                            "AuthorizeBet", rate, a.ab_seconds, load.send_authorize
                        )
                        info["calls"] = cell.ok
                    rows.append({"arm": arm, "rate": rate, **asdict(cell), "metered": info})
                    self.log(
                        f"  {rate:>5}/s {arm:<9} p50 {cell.p50_ms:>7.2f} p99 {cell.p99_ms:>8.2f} "
                        f"ms, server {info['server_cpu_ms_per_call']} ms/call, mean batch "
                        f"{info['batches']['mean_batch']}, load {cell.loadavg_1m}"
                    )
                    await asyncio.sleep(0.5)
            if a.baseline:
                await self.closed(
                    servers["baseline"],
                    loads["baseline"],
                    [servers["baseline"].proc.pid],
                    "baseline",
                    [max(a.levels)],
                )
            for load in loads.values():
                await load.close()

    async def warm(self, load: Load) -> None:
        """Unmeasured traffic first: connections, caches, prepared plans."""
        a = self.args
        await load.prepare_authorize(200, a.warmup)
        await openloop.open_loop("warmup", 200, a.warmup, load.send_authorize)
        await load.prepare_contribute(self.hot16)(200, a.warmup / 2)
        await openloop.open_loop("warmup", 200, a.warmup / 2, load.send_contribute)

    async def closed(
        self,
        on_srv: Server,
        on: Load,
        on_pids: list[int],
        arm: str = "bare",
        levels: list[int] | None = None,
    ) -> None:
        """AuthorizeBet at fixed in-flight levels (closed loop)."""
        self.log(f"\n== closed loop (secondary): AuthorizeBet at fixed in-flight levels, {arm} ==")
        for n in levels or self.args.levels:
            with self.metered(on_srv, on_pids, "wallet") as info:
                row = await on.closed_loop(
                    "AuthorizeBet",
                    n,
                    self.args.closed_seconds,
                    lambda k: on.wallets[k % CHANNELS].AuthorizeBet(on.authorize_req()[0]),
                )
                info["calls"] = row["calls_per_s"] * row["seconds"]
            row["metered"] = info
            row["arm"] = arm
            self.out["closed_loop"].append(row)
            self.log(
                f"  {n:>4} in flight: {row['calls_per_s']:>7.0f}/s p50 {row['p50_ms']} "
                f"p99 {row['p99_ms']} ms; server {info['server_cpu_ms_per_call']} ms, "
                f"db {info['db_cpu_ms_per_call']} ms CPU/call; mean batch "
                f"{info['batches']['mean_batch']}"
            )

    async def hot_pool(self, on_srv: Server, on: Load, off_srv: Server, offl: Load) -> None:
        """Contribute at a fixed in-flight level: {1, 16} rows x group commit {off, on}."""
        self.log("\n== hot pool: {1, 16} rows x group commit {off, on}, random order ==")
        arms = [(rows, gc) for rows in (1, 16) for gc in ("off", "on")]
        random.shuffle(arms)
        for rows, gc in arms:
            srv, load = (on_srv, on) if gc == "on" else (off_srv, offl)
            jackpot = self.hot16 if rows == 16 else self.hot1
            with self.metered(srv, [srv.proc.pid], "contribute") as info:
                row = await load.closed_loop(
                    f"Contribute {rows} row(s), group commit {gc}",
                    self.args.hot_inflight,
                    self.args.seconds,
                    lambda k, j=jackpot, ld=load: ld.jackpots[k % CHANNELS].Contribute(
                        ld.contribute_req(j)
                    ),
                )
                info["calls"] = row["calls_per_s"] * row["seconds"]
            row.update(rows=rows, group_commit=gc, metered=info)
            self.out["hot_pool"].append(row)
            self.log(
                f"  {row['workload']:<38} {row['calls_per_s']:>7.0f}/s p99 "
                f"{row['p99_ms']} ms (server {info['server_cpu_ms_per_call']} ms, "
                f"db {info['db_cpu_ms_per_call']} ms per call)"
            )

    async def setup(self, load: Load, url: str | None = None) -> None:
        """Fund the players and create the hot pools, then VACUUM ANALYZE the database (`url`,
        default this run's): the planner's statistics otherwise still describe the empty
        tables of the migration, and plans chosen on them (an index on the tenant alone,
        filtering every row of the tenant) would be measured instead of the server."""
        sem = asyncio.Semaphore(32)

        async def fund(i: int) -> None:
            async with sem:
                await load.wallets[i % CHANNELS].Credit(
                    pb.CreditRequest(
                        tenant_id=TENANT,
                        player_id=f"p{i}",
                        idempotency_key=f"fund-{i}",
                        amount=eur(10**15),
                    )
                )

        await asyncio.gather(*(fund(i) for i in range(1, PLAYERS + 1)))
        self.hot16, self.hot1 = f"hot16-{uuid.uuid4().hex[:6]}", f"hot1-{uuid.uuid4().hex[:6]}"
        for jackpot, shards in ((self.hot16, 16), (self.hot1, 1)):
            await load.jackpots[0].CreateJackpot(
                jpb.CreateJackpotRequest(
                    tenant_id=TENANT,
                    idempotency_key=uuid.uuid4().hex,
                    jackpot_id=jackpot,
                    currency="EUR",
                    scope=jpb.JACKPOT_SCOPE_NETWORK,
                    tenant_ids=[TENANT],
                    tiers=[
                        jpb.TierConfig(
                            tier="grand",
                            kind=jpb.POOL_KIND_PROGRESSIVE,
                            seed_minor_units=1_000_000,
                            contribution_rate_ppm=10_000,
                            trigger=jpb.TRIGGER_KIND_EXTERNAL,
                            shards=shards,
                        )
                    ],
                )
            )
        async with await psycopg.AsyncConnection.connect(url or self.url, autocommit=True) as c:
            await c.execute("VACUUM (ANALYZE)")

    async def reconcile(self, load: Load) -> None:
        r = await load.jackpots[0].Reconcile(jpb.ReconcileRequest(tenant_id=TENANT))
        if not r.balanced:
            raise SystemExit(f"pools do not reconcile after the run: {r}")
        self.log(f"reconciled {len(r.pools)} pools exactly (every drift 0)")
        self.out["reconciled_pools"] = len(r.pools)

    async def production(self, start: float) -> None:
        from server.auth import KeyStore
        from server.store.database import open_pool
        from tests.certs import main as make_certs

        certs = ROOT / ".data" / "bench-certs"
        if not (certs / "server.pem").exists():
            make_certs([str(certs)])
        pool = await open_pool(self.url, 1, 2)
        try:
            _key_id, secret = await KeyStore(pool).create(TENANT, ["wallet:write", "wallet:read"])
            # the arms before this one ran without a relay: their events are not this arm's
            # work, and draining them would be measured as its database CPU
            # (then VACUUM: the relay's scans of the unpublished-events index would walk every
            # entry the UPDATE left dead until autovacuum got there)
            async with pool.connection() as conn:
                await conn.execute(
                    "UPDATE outbox SET published_at = statement_timestamp()"
                    " WHERE published_at IS NULL"
                )
                await conn.execute("VACUUM (ANALYZE) outbox")
        finally:
            await pool.close()
        env = {
            "CROUPIER_TLS_CERT": str(certs / "server.pem"),
            "CROUPIER_TLS_KEY": str(certs / "server.key"),
            "CROUPIER_AUTH": "required",
        }
        async with croupier(
            "production", self.url, self.args.workers, env, "relay", (certs / "ca.pem").read_bytes()
        ) as srv:
            srv.api_key = secret
            load = Load(srv)
            await load.prepare_authorize(200, self.args.warmup)
            await openloop.open_loop("warmup", 200, self.args.warmup, load.send_authorize)
            await self.slo(
                srv,
                [srv.proc.pid],
                "production",
                "AuthorizeBet",
                load,
                self.args.side_repeats,
                start,
            )
            await load.close()

    def anchors(self) -> None:
        a = self.args
        variables = {"tenant": TENANT, "players": str(PLAYERS)}

        def db_cpu() -> float:
            return sum(CpuMeter([], self.postmasters).read()[1])

        sizes = set()
        for r in self.out["slo"] + [c["metered"] | {} for c in self.out["closed_loop"]]:
            m = r.get("metered", r)
            if r.get("rpc", "AuthorizeBet") == "AuthorizeBet" and m.get("batches"):
                sizes.add(max(1, round(m["batches"]["mean_batch"])))
        out = self.out["anchor"]
        out["batched"] = {}
        single = (ROOT / "bench" / "pgbench" / "authorize.sql").read_text()
        for n in sorted(sizes):
            # a batch of one runs alone, as the server runs it (no used-keys read)
            res = anchor.best_of(
                self.url,
                single if n == 1 else anchor.batched_authorize_script(n),
                a.anchor_clients,
                a.anchor_seconds,
                variables,
                n,
                db_cpu,
            )
            out["batched"][str(n)] = res
            self.log(
                f"  batch of {n:>2}: best {res['best']['calls_per_s']:.0f} calls/s "
                f"at {res['best']['clients']} clients, PostgreSQL "
                f"{res['best'].get('db_cpu_ms_per_call')} ms CPU per call"
            )
        res = anchor.best_of(
            self.url, single, a.single_clients, a.anchor_seconds, variables, 1, db_cpu
        )
        out["single_notify"] = res
        self.log(
            f"  one call per tx, NOTIFY on : {res['best']['calls_per_s']:.0f}/s "
            f"(by clients: {[round(p['calls_per_s']) for p in res['points']]})"
        )
        touched = anchor.notify_triggers(self.url, enabled=False)
        try:
            res = anchor.best_of(
                self.url, single, a.single_clients, a.anchor_seconds, variables, 1, db_cpu
            )
        finally:
            anchor.notify_triggers(self.url, enabled=True)
        out["single_no_notify"] = res | {"triggers_disabled": touched}
        self.log(
            f"  one call per tx, NOTIFY off: {res['best']['calls_per_s']:.0f}/s "
            f"(by clients: {[round(p['calls_per_s']) for p in res['points']]})"
        )


def citus_run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the same phases on a fresh database of the local Citus cluster (started when it is
    not running); database CPU is summed over the coordinator's and the workers' postmasters."""
    cluster = citus_cluster.Cluster()
    base = cluster.start()
    postmasters = [pid for pid in (n.pid() for n in cluster.nodes) if pid]
    citus_args = argparse.Namespace(**{**vars(args), "phases": args.citus_phases.split(",")})
    with database_on(base, "croupier_bench") as url:
        run = Run(citus_args, url, postmasters)
        try:
            asyncio.run(run.main())
        finally:
            out = run.out
    out["nodes"] = len(postmasters)
    return out


def citus_comparison(out: dict[str, Any]) -> str:
    """Per-call database CPU and throughput, single node against Citus, from one run."""
    lines = ["", "single node vs Citus (same run):"]
    single = {(r["arm"], r["rpc"]): r for r in out["slo"]}
    for r in out["citus"]["slo"]:
        one = single.get((r["arm"], r["rpc"]))
        if not one:
            continue
        lines.append(
            f"  {r['arm']:<6} {r['rpc']:<13} SLO rate {one['slo_rate_per_s']:.0f} -> "
            f"{r['slo_rate_per_s']:.0f}/s; db CPU/call {one['metered']['db_cpu_ms_per_call']} -> "
            f"{r['metered']['db_cpu_ms_per_call']} ms; server CPU/call "
            f"{one['metered']['server_cpu_ms_per_call']} -> "
            f"{r['metered']['server_cpu_ms_per_call']} ms"
        )
    closed = {r["inflight"]: r for r in out["closed_loop"]}
    for r in out["citus"]["closed_loop"]:
        one = closed.get(r["inflight"])
        if not one:
            continue
        lines.append(
            f"  closed loop {r['inflight']:>3} in flight: {one['calls_per_s']:.0f} -> "
            f"{r['calls_per_s']:.0f}/s; db CPU/call {one['metered']['db_cpu_ms_per_call']} -> "
            f"{r['metered']['db_cpu_ms_per_call']} ms (by node, coordinator first: "
            f"{r['metered'].get('db_cpu_ms_per_call_by_node')}); server CPU/call "
            f"{one['metered']['server_cpu_ms_per_call']} -> "
            f"{r['metered']['server_cpu_ms_per_call']} ms"
        )
    return "\n".join(lines)


def git_revision() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def report(out: dict[str, Any]) -> str:
    """The summary table `make bench` prints."""
    lines = [
        "",
        f"== summary (one run; only ratios within it compare; SLO p99 < "
        f"{out.get('slo_p99_ms', 25):g} ms) ==",
    ]
    slo = {(r["arm"], r["rpc"]): r for r in out["slo"]}
    lines.append(
        f"{'arm':<11}{'rpc':<14}{'SLO rate/s':>11}{'p99 min/med/max ms':>24}"
        f"{'server ms/call':>16}{'db ms/call':>12}{'mean batch':>12}{'loadgen cpu':>13}"
    )
    for (arm, rpc), r in slo.items():
        p, m = r["p99_ms"], r["metered"]
        lines.append(
            f"{arm:<11}{rpc:<14}{r['slo_rate_per_s']:>11.0f}"
            f"{'/'.join(str(p[k]) for k in ('min', 'median', 'max')):>24}"
            f"{m['server_cpu_ms_per_call']!s:>16}{m['db_cpu_ms_per_call']!s:>12}"
            f"{m.get('batches', {}).get('mean_batch', '-')!s:>12}"
            f"{r['loadgen_cpu_pct']['median']!s:>12}%"
        )
    bare = slo.get(("bare", "AuthorizeBet"))
    ratios: dict[str, float] = {}
    if bare:
        for arm in ("gc-off", "echo", "production", "baseline"):
            if (arm, "AuthorizeBet") in slo and slo[(arm, "AuthorizeBet")]["slo_rate_per_s"]:
                ratios[f"bare / {arm}"] = (
                    bare["slo_rate_per_s"] / slo[(arm, "AuthorizeBet")]["slo_rate_per_s"]
                )
    anc = out.get("anchor", {})
    if anc.get("batched") and out["closed_loop"]:
        for row in out["closed_loop"]:
            n = str(max(1, round(row["metered"]["batches"]["mean_batch"])))
            if n in anc["batched"]:
                best = anc["batched"][n]["best"]["calls_per_s"]
                label = f"closed loop {row.get('arm', 'bare')} {row['inflight']} in flight"
                ratios[f"{label} / batched anchor (batch {n})"] = (
                    row["calls_per_s"] / best if best else 0.0
                )
    if bare and anc.get("batched"):
        n = str(max(1, round(bare["metered"].get("batches", {}).get("mean_batch", 1))))
        if n in anc["batched"]:
            best = anc["batched"][n]["best"]["calls_per_s"]
            ratios[f"SLO-bound AuthorizeBet / batched anchor (batch {n})"] = (
                bare["slo_rate_per_s"] / best if best else 0.0
            )
    if anc.get("single_notify") and anc.get("single_no_notify"):
        a1, a0 = (
            anc["single_notify"]["best"]["calls_per_s"],
            anc["single_no_notify"]["best"]["calls_per_s"],
        )
        ratios["anchor one call/tx: NOTIFY on / off"] = a1 / a0 if a0 else 0.0
    out["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    lines.append("")
    lines += [f"  {k}: {v:.2f}" for k, v in out["ratios"].items()]
    grid = out.get("interleaved", [])
    if grid:
        arms = list(dict.fromkeys(r["arm"] for r in grid))
        slo = out.get("slo_p99_ms", 25)
        lines.append("")
        lines.append(
            "interleaved AuthorizeBet, p50 / p99 ms by offered rate (arms in random order):"
        )
        lines.append(f"  {'rate/s':>7} " + "".join(f"{a:>22}" for a in arms))
        for rate in sorted({r["rate"] for r in grid}):
            cells = {r["arm"]: r for r in grid if r["rate"] == rate}
            lines.append(
                f"  {rate:>7.0f} "
                + "".join(
                    f"{cells[a]['p50_ms']:>10.1f} / {cells[a]['p99_ms']:>8.1f}"
                    if a in cells
                    else f"{'':>22}"
                    for a in arms
                )
            )
        best = {}
        for a in arms:
            ok = [
                r["rate"] for r in grid if r["arm"] == a and r["p99_ms"] < slo and not r["errors"]
            ]
            best[a] = max(ok) if ok else 0.0
        out["interleaved_slo_rate"] = best
        lines.append(
            f"  highest grid rate with p99 < {slo:g} ms: "
            + ", ".join(f"{a} {v:.0f}/s" for a, v in best.items())
        )
    lines.append("")
    lines.append("closed loop, AuthorizeBet:")
    for r in out["closed_loop"]:
        m = r["metered"]
        lines.append(
            f"  {r.get('arm', 'bare'):<9} {r['inflight']:>3} in flight: {r['calls_per_s']:>7.0f}/s "
            f"p50 {r['p50_ms']} p99 {r['p99_ms']} ms; CPU per call server "
            f"{m['server_cpu_ms_per_call']} ms, db {m['db_cpu_ms_per_call']} ms; mean batch "
            f"{m['batches']['mean_batch']}"
        )
    lines.append(
        "hot pool, closed loop (order run: "
        + ", ".join(f"{r['rows']}/{r['group_commit']}" for r in out["hot_pool"])
        + "):"
    )
    for r in sorted(out["hot_pool"], key=lambda r: (r["rows"], r["group_commit"])):
        m = r["metered"]
        lines.append(
            f"  {r['rows']:>2} row(s), group commit {r['group_commit']:<3}: "
            f"{r['calls_per_s']:>7.0f}/s p99 {r['p99_ms']} ms; CPU per call server "
            f"{m['server_cpu_ms_per_call']} ms, db {m['db_cpu_ms_per_call']} ms"
        )
    if anc:
        lines.append("anchor (pgbench, best over client counts, calls/s):")
        for n, res in sorted(anc.get("batched", {}).items(), key=lambda kv: int(kv[0])):
            b = res["best"]
            lines.append(f"  batch of {n:>2}: {b['calls_per_s']:.0f} at {b['clients']} clients")
        for name in ("single_notify", "single_no_notify"):
            if name in anc:
                b = anc[name]["best"]
                lines.append(f"  {name}: {b['calls_per_s']:.0f} at {b['clients']} clients")
    return "\n".join(lines)


def plot(out: dict[str, Any], path: Path) -> None:
    """p50 and p99 against offered rate, per RPC and arm, with the SLO line (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = out["slo"]
    rpcs = sorted({r["rpc"] for r in rows})
    grid = out.get("interleaved", [])
    panels = len(rpcs) + (1 if grid else 0)
    if not panels:
        return
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8), squeeze=False)
    if grid:
        ax = axes[0][-1]
        for arm in dict.fromkeys(r["arm"] for r in grid):
            cells = sorted((r for r in grid if r["arm"] == arm), key=lambda r: r["rate"])
            x = [c["rate"] for c in cells]
            line = ax.plot(x, [min(c["p99_ms"], 5000.0) for c in cells], "o-", label=f"{arm} p99")
            ax.plot(
                x,
                [min(c["p50_ms"], 5000.0) for c in cells],
                "x--",
                color=line[0].get_color(),
                alpha=0.6,
                label=f"{arm} p50",
            )
        ax.axhline(openloop.SLO_P99_MS, color="red", linewidth=1, label="SLO p99")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (calls/s, open loop)")
        ax.set_ylabel("latency from scheduled send (ms)")
        ax.set_title("AuthorizeBet, interleaved arms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax, rpc in zip(axes[0], rpcs, strict=False):
        for r in (r for r in rows if r["rpc"] == rpc):
            cells = sorted(r["probes"] + r["confirm"], key=lambda c: c["offered_per_s"])
            x = [c["offered_per_s"] for c in cells]
            p99 = [min(c["p99_ms"], 1000.0) for c in cells]
            p50 = [c["p50_ms"] for c in cells]
            line = ax.plot(x, p99, "o-", label=f"{r['arm']} p99")[0]
            ax.plot(x, p50, "x--", color=line.get_color(), alpha=0.6, label=f"{r['arm']} p50")
        slo = openloop.SLO_P99_MS
        ax.axhline(slo, color="red", linewidth=1, label=f"SLO p99 {slo:g} ms")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (calls/s, open loop)")
        ax.set_ylabel("latency from scheduled send (ms)")
        ax.set_title(rpc)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"croupier make bench {out['started']} rev {out['git'][:10]} "
        f"({out['cpus']} CPUs, shared machine)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="confirmation cell length")
    parser.add_argument("--repeats", type=int, default=3, help="headline confirmation cells")
    parser.add_argument("--side-repeats", type=int, default=1, help="cells for the side arms")
    parser.add_argument("--probe-seconds", type=float, default=4)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--closed-seconds", type=float, default=10)
    parser.add_argument("--levels", default="16,64")
    parser.add_argument("--hot-inflight", type=int, default=64)
    parser.add_argument("--anchor-seconds", type=float, default=8)
    parser.add_argument("--anchor-clients", default="2,4,8")
    parser.add_argument("--single-clients", default="4,16,64")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--phases",
        default="slo,gcoff,closed,hot,echo,prod,anchor",
        help="which parts to run (comma-separated)",
    )
    parser.add_argument("--ab-rates", default="25,50,100,200,300")
    parser.add_argument("--ab-seconds", type=float, default=8)
    parser.add_argument(
        "--baseline", default="", help="another checkout: also measure its AuthorizeBet SLO rate"
    )
    parser.add_argument(
        "--shared-db",
        action="store_true",
        help="use CROUPIER_DATABASE_URL's server (DB CPU then includes others')",
    )
    parser.add_argument(
        "--slo-ms",
        type=float,
        default=openloop.SLO_P99_MS,
        help="p99 bound of the search (the product SLO is 25 ms; a busy shared machine may "
        "need a looser bound to compare arms at all: say so when quoting)",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the private cluster for this run (repeatable; recorded with the "
        "others in the results)",
    )
    parser.add_argument("--quick", action="store_true", help="short cells, one repeat (smoke)")
    parser.add_argument(
        "--citus",
        action="store_true",
        help="also run --citus-phases on the local Citus cluster (make citus); print both",
    )
    parser.add_argument("--citus-phases", default="slo,closed")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats, args.probe_seconds, args.warmup = 5, 1, 2, 2
        args.closed_seconds, args.anchor_seconds = 3, 3
    args.levels = [int(x) for x in args.levels.split(",")]
    args.phases = args.phases.split(",")
    args.ab_rates = [float(x) for x in args.ab_rates.split(",")]
    openloop.SLO_P99_MS = args.slo_ms
    args.anchor_clients = [int(x) for x in args.anchor_clients.split(",")]
    args.single_clients = [int(x) for x in args.single_clients.split(",")]
    if not args.shared_db:
        os.environ.pop("CROUPIER_DATABASE_URL", None)

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwind: stop the servers, drop the database, stop PostgreSQL

    signal.signal(signal.SIGTERM, interrupted)
    started = time.time()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = dict(kv.split("=", 1) for kv in args.pg_setting)
    with scratch_database(
        "croupier_bench", ROOT / ".data" / "bench-postgres", settings=settings
    ) as url:
        run = Run(args, url)
        try:
            asyncio.run(run.main())
        finally:
            out = run.out
    if args.citus:
        out["citus"] = citus_run(args)
    out.update(
        started=stamp,
        git=git_revision(),
        cpus=os.cpu_count(),
        loadavg_end=os.getloadavg(),
        seconds=round(time.time() - started),
        args=vars(args),
        workers=args.workers,
        pool_per_worker={"min": POOL_MIN, "max": POOL_MAX},
        database="shared server" if args.shared_db else "private cluster (.data/bench-postgres)",
        channels=CHANNELS,
        players=PLAYERS,
        slo_p99_ms=openloop.SLO_P99_MS,
    )
    print(report(out))
    if "citus" in out:
        print(
            "\n== the same phases on the local Citus cluster (coordinator + 2 workers; "
            "db ms/call summed over the 3 nodes) =="
        )
        print(report(out["citus"]))
        print(citus_comparison(out))
    print(
        f"\n{os.cpu_count()} CPUs (shared machine), load average {os.getloadavg()[0]:.2f}, "
        f"{out['seconds']}s"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    try:
        plot(out, path.with_suffix(".png"))
        print(f"wrote {path} and {path.with_suffix('.png').name}")
    except ImportError:
        print(f"wrote {path} (no plot: pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

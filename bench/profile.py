"""`make profile`: py-spy flame graphs of croupier-server under AuthorizeBet load.

Starts a private PostgreSQL database and `croupier-server --workers 1` (one worker, so one
process holds the whole profile), funds the bench players, drives AuthorizeBet (closed loop at
`--inflight`, or open loop at `--rate` calls/s) for `--seconds`, and records the worker with
`py-spy record` (native frames off, idle frames off) into
bench/results/profile-<label>-<UTC>.svg. It also prints server and PostgreSQL CPU per call
over the same window. With `--statements`, the private cluster runs pg_stat_statements
(nested statements tracked too) and the statements of the window are written beside the graph,
by total execution time, with calls and milliseconds per AuthorizeBet.

    .venv/bin/python bench/profile.py [--seconds 20] [--inflight 64 | --rate 300] [--label x]
        [--env CROUPIER_WALLET_BATCH=1 ...] [--statements]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.scratch, tests.certs
import openloop
import psycopg
from run import CHANNELS, RESULTS, ROOT, Load, Run, croupier

from server.store.database import migrate
from tests.scratch import scratch_database

STATEMENTS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}


async def reset_statements(url: str) -> None:
    """Start the statement counts afresh (pg_stat_statements must be preloaded)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")


async def statements_report(url: str, calls: float, top: int = 25, width: int = 160) -> str:
    """The `top` statements since the reset by total execution time: total ms, calls, mean
    ms, and ms and executions per measured call (`calls`); `toplevel` false marks a statement
    run inside a function or trigger (its time is also inside its caller's). Query texts are
    cut to `width` characters (0: whole)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT total_exec_time, calls, mean_exec_time, toplevel, query"
            "  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
            "  WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT %s",
            (top,),
        )
        rows = await cur.fetchall()
    per = max(calls, 1)
    lines = [
        f"statements by total execution time over {calls:.0f} measured calls",
        f"{'total ms':>10} {'calls':>8} {'mean ms':>8} {'ms/call':>8} {'n/call':>6} top  query",
    ]
    for total, n, mean, toplevel, query in rows:
        text = " ".join(str(query).split())
        text = text[:width] if width else text
        lines.append(
            f"{total:>10.1f} {n:>8} {mean:>8.3f} {total / per:>8.3f} {n / per:>6.2f} "
            f"{'yes' if toplevel else 'no ':<4} {text}"
        )
    return "\n".join(lines)


async def amain(args: argparse.Namespace, url: str) -> None:
    await migrate(url)
    run = Run(args, url)
    env = dict(kv.split("=", 1) for kv in args.env)
    root = Path(args.root) if args.root else None
    async with croupier("profiled", url, 1, env, root=root) as srv:
        load = Load(srv)
        await run.setup(load)
        args.warmup = 3
        await run.warm(load)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        ext = "svg" if args.format == "flamegraph" else "txt"
        svg = RESULTS / f"profile-{args.label}-{stamp}.{ext}"
        pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        # the worker is the server process itself with --workers 1
        spy = subprocess.Popen(  # noqa: ASYNC220 (a sampler beside the event loop)
            [
                pyspy,
                "record",
                "-p",
                str(srv.proc.pid),
                "-o",
                str(svg),
                "-d",
                str(args.seconds),
                "-r",
                "200",
                "--nonblocking",
                "--format",
                args.format,
            ],
            stdout=subprocess.DEVNULL,
        )
        await asyncio.sleep(1)
        if args.statements:
            await reset_statements(url)
        with run.metered(srv, [srv.proc.pid], "wallet") as info:
            if args.rate:
                await load.prepare_authorize(args.rate, args.seconds)
                cell = await openloop.open_loop(
                    "AuthorizeBet", args.rate, args.seconds, load.send_authorize
                )
                info["calls"] = cell.ok
                print(f"open loop {args.rate}/s: p50 {cell.p50_ms} p99 {cell.p99_ms} ms")
            else:
                row = await load.closed_loop(
                    "AuthorizeBet",
                    args.inflight,
                    args.seconds,
                    lambda k: load.wallets[k % CHANNELS].AuthorizeBet(load.authorize_req()[0]),
                )
                info["calls"] = row["calls_per_s"] * row["seconds"]
                print(f"closed loop {args.inflight}: {row}")
        await asyncio.to_thread(spy.wait, 60)
        print({k: v for k, v in info.items()})
        print(f"wrote {svg.relative_to(ROOT)}")
        if args.statements:
            report = await statements_report(url, float(info["calls"]), width=0)
            txt = svg.with_name(svg.stem + "-statements.txt")
            txt.write_text(report + "\n")
            print(await statements_report(url, float(info["calls"])))
            print(f"wrote {txt.relative_to(ROOT)}")
        await load.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--label", default="authorize")
    parser.add_argument("--format", default="flamegraph", help="py-spy: flamegraph or raw")
    parser.add_argument("--root", default="", help="profile another checkout's server code")
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for the server")
    parser.add_argument(
        "--statements", action="store_true", help="pg_stat_statements report of the window"
    )
    args = parser.parse_args()
    os.environ.pop("CROUPIER_DATABASE_URL", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = STATEMENTS if args.statements else None
    with scratch_database(
        "croupier_profile", ROOT / ".data" / "bench-postgres", settings=settings
    ) as url:
        asyncio.run(amain(args, url))
    return 0


if __name__ == "__main__":
    sys.exit(main())

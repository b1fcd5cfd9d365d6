"""`make profile`: py-spy flame graphs of croupier-server under AuthorizeBet load.

Starts a private PostgreSQL database and `croupier-server --workers 1` (one worker, so one
process holds the whole profile), funds the bench players, drives AuthorizeBet (closed loop at
`--inflight`, or open loop at `--rate` calls/s) for `--seconds`, and records the worker with
`py-spy record` (native frames off, idle frames off) into
bench/results/profile-<label>-<UTC>.svg. It also prints server and PostgreSQL CPU per call
over the same window.

    .venv/bin/python bench/profile.py [--seconds 20] [--inflight 64 | --rate 300] [--label x]
        [--env CROUPIER_WALLET_BATCH=1 ...]
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
from run import CHANNELS, RESULTS, ROOT, Load, Run, croupier

from server.store.database import migrate
from tests.scratch import scratch_database


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
    args = parser.parse_args()
    os.environ.pop("CROUPIER_DATABASE_URL", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with scratch_database("croupier_profile", ROOT / ".data" / "bench-postgres") as url:
        asyncio.run(amain(args, url))
    return 0


if __name__ == "__main__":
    sys.exit(main())

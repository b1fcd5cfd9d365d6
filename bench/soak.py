"""Memory soak (issue 6 target): RSS of every server worker sampled while a peak load of rounds
(AuthorizeBet + Contribute to a hot 16-row network pool + SettleBet at 64 in flight, so both
group-commit queues are busy) runs for `--seconds` (default 300).

Prints each worker's RSS (MiB) per sample and the growth from the first sample after warm-up
to the last; a worker is "flat" when it grew by less than 10%.

    .venv/bin/python bench/soak.py [--seconds 300] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
from croupier.common.v1 import money_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

sys.path.insert(0, str(Path(__file__).resolve().parent))
from client_latency import database, server

from server.store.database import migrate


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def workers() -> list[int]:
    """The croupier-server processes (the supervisor and its forked workers)."""
    out = subprocess.run(
        ["pgrep", "-f", "bin/croupier-server"], capture_output=True, text=True, check=False
    ).stdout
    return sorted(int(p) for p in out.split())


async def run(url: str, seconds: float, concurrency: int) -> int:
    await migrate(url)
    async with server(url, None) as target, grpc.aio.insecure_channel(target) as ch:
        w = WalletServiceStub(ch)
        j = JackpotServiceStub(ch)
        money = money_pb2.Money
        await j.CreateJackpot(
            jpb.CreateJackpotRequest(
                tenant_id="soak",
                idempotency_key=uuid.uuid4().hex,
                jackpot_id="soak-hot",
                currency="EUR",
                scope=jpb.JACKPOT_SCOPE_NETWORK,
                tenant_ids=["soak"],
                tiers=[
                    jpb.TierConfig(
                        tier="grand",
                        kind=jpb.POOL_KIND_PROGRESSIVE,
                        seed_minor_units=1_000_000,
                        contribution_rate_ppm=10_000,
                        trigger=jpb.TRIGGER_KIND_EXTERNAL,
                        shards=16,
                    )
                ],
            )
        )
        await asyncio.gather(
            *(
                w.Credit(
                    pb.CreditRequest(
                        tenant_id="soak",
                        player_id=f"p{i}",
                        idempotency_key=uuid.uuid4().hex,
                        amount=money(minor_units=10**15, currency="EUR"),
                    )
                )
                for i in range(concurrency)
            )
        )
        stop = time.monotonic() + seconds
        rounds = 0

        async def player(i: int) -> None:
            nonlocal rounds
            while time.monotonic() < stop:
                bet = uuid.uuid4().hex
                await w.AuthorizeBet(
                    pb.AuthorizeBetRequest(
                        tenant_id="soak",
                        player_id=f"p{i}",
                        idempotency_key=f"a{bet}",
                        bet_id=bet,
                        amount=money(minor_units=100, currency="EUR"),
                    )
                )
                await j.Contribute(
                    jpb.ContributeRequest(
                        tenant_id="soak",
                        idempotency_key=f"c{bet}",
                        jackpot_id="soak-hot",
                        player_id=f"p{i}",
                        round_id=bet,
                        bet=money(minor_units=100, currency="EUR"),
                    )
                )
                await w.SettleBet(
                    pb.SettleBetRequest(
                        tenant_id="soak",
                        player_id=f"p{i}",
                        idempotency_key=f"s{bet}",
                        bet_id=bet,
                        win=money(minor_units=50, currency="EUR"),
                    )
                )
                rounds += 1

        async def sample() -> dict[int, list[float]]:
            series: dict[int, list[float]] = {}
            await asyncio.sleep(min(20.0, seconds / 10))  # warm-up
            while time.monotonic() < stop:
                for pid in workers():
                    series.setdefault(pid, []).append(rss_mib(pid))
                print(
                    f"t={seconds - (stop - time.monotonic()):5.0f}s rounds={rounds} RSS MiB: "
                    + ", ".join(f"{pid}={v[-1]:.1f}" for pid, v in series.items()),
                    flush=True,
                )
                await asyncio.sleep(max(5.0, seconds / 20))
            return series

        series, _ = await asyncio.gather(
            sample(), asyncio.gather(*(player(i) for i in range(concurrency)))
        )
        flat = True
        for pid, values in series.items():
            growth = (values[-1] - values[0]) / values[0] * 100 if values and values[0] else 0
            flat &= growth < 10
            print(f"worker {pid}: {values[0]:.1f} -> {values[-1]:.1f} MiB ({growth:+.1f}%)")
        print(
            f"{rounds} rounds in {seconds:.0f}s ({rounds / seconds:.0f}/s); "
            f"RSS {'flat' if flat else 'NOT flat'} (within 10%)"
        )
        return 0 if flat else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with database() as url:
        return asyncio.run(run(url, args.seconds, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())

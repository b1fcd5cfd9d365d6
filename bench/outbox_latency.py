"""Commit-to-publish latency of the outbox relay under a load of wallet writes (issue 5).

Starts its own PostgreSQL (or uses CROUPIER_DATABASE_URL: a fresh database is created there),
the gRPC server and one croupier relay in this process, drives Credit calls at a fixed
concurrency for a few seconds, and measures, for every `wallet.credited` event received from the
real RabbitMQ, received-time minus the event's `occurred_at` (written inside the transaction, so
this is an upper bound of commit-to-publish). Prints p50/p95/p99 in milliseconds.

    .venv/bin/python bench/outbox_latency.py [--seconds 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import aio_pika
import grpc
from croupier.common.v1 import money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from server.app import build_server
from server.events.relay import EVENTS_EXCHANGE, Relay
from server.store.database import migrate, open_pool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers
from tests.scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
AMQP = os.environ.get("CROUPIER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(url: str, seconds: float, concurrency: int) -> None:
    await migrate(url)
    pool = await open_pool(url, 4, 16)
    app = await build_server(pool, "127.0.0.1:0")
    relay = Relay(url, AMQP)
    stop = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(stop))
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    latencies: list[float] = []
    conn = await aio_pika.connect(AMQP)
    ch = await conn.channel()
    q = await ch.declare_queue(exclusive=True, auto_delete=True)
    await q.bind(EVENTS_EXCHANGE, routing_key="wallet.credited")

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        now = time.time()
        body = json.loads(message.body)
        if body["tenant_id"] == tenant:
            sent = datetime.fromisoformat(body["occurred_at"]).timestamp()
            latencies.append((now - sent) * 1000)
        await message.ack()

    await q.consume(on_message)
    calls = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = WalletServiceStub(channel)
        deadline = time.monotonic() + seconds

        async def worker(i: int) -> None:
            nonlocal calls
            while time.monotonic() < deadline:
                await stub.Credit(
                    pb.CreditRequest(
                        tenant_id=tenant,
                        player_id=f"p{i}",
                        idempotency_key=uuid.uuid4().hex,
                        amount=money_pb2.Money(minor_units=100, currency="EUR"),
                    )
                )
                calls += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    for _ in range(100):
        if len(latencies) >= calls:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await relay_task
    await conn.close()
    await app.stop(1)
    print(
        f"writes: {calls} in {seconds:.0f}s at concurrency {concurrency} "
        f"({calls / seconds:.0f}/s); events received: {len(latencies)}"
    )
    print(
        f"commit-to-publish ms: p50 {statistics.median(latencies):.1f}  "
        f"p95 {pct(latencies, 95):.1f}  p99 {pct(latencies, 99):.1f}  "
        f"max {max(latencies):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with scratch_database(
        "croupier_bench", ROOT / ".data" / f"bench-outbox-{os.getpid()}", remove=True
    ) as url:
        asyncio.run(run(url, args.seconds, args.concurrency))


if __name__ == "__main__":
    main()

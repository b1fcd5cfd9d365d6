"""Outbox write and relay publish throughput (events/s) against the real PostgreSQL and
RabbitMQ.

Inserts `--events` committed events spread over `--aggregates` aggregates (in transactions of
`--per-tx` events, the way batched writers do), then times one croupier relay draining them
all to RabbitMQ with publisher confirms. Uses CROUPIER_DATABASE_URL's server (a fresh database
is created there) or an embedded PostgreSQL.

    .venv/bin/python bench/relay_throughput.py [--events 20000] [--aggregates 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import psycopg

from server.events.outbox import new_event
from server.events.relay import Relay
from server.store import outbox_sql
from server.store.database import migrate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers
from tests.scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
AMQP = os.environ.get("CROUPIER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def run(url: str, events: int, aggregates: int, per_tx: int, batch: int) -> None:
    await migrate(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for start in range(0, events, per_tx):
            rows = [
                new_event(
                    "wallet.credited",
                    aggregate=f"account:bench:p{i % aggregates}:EUR",
                    tenant_id="bench",
                    payload={"transaction_id": str(i), "player_id": f"p{i % aggregates}"},
                    trace_id="0" * 31 + "1",
                )
                for i in range(start, min(start + per_tx, events))
            ]
            async with conn.transaction():
                await outbox_sql.insert_events(conn, rows)
        wrote = time.perf_counter() - t0
        relay = Relay(url, AMQP, batch_size=batch)
        t0 = time.perf_counter()
        published = 0
        while published < events:
            n = await relay.drain(conn)
            if n == 0:
                await asyncio.sleep(0.01)
            published += n
        relayed = time.perf_counter() - t0
        await relay.close()
    print(f"write: {events} events in {wrote:.2f}s = {events / wrote:.0f} events/s")
    print(
        f"relay: {published} events in {relayed:.2f}s = {published / relayed:.0f} events/s"
        f" (batch {batch}, {aggregates} aggregates)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--aggregates", type=int, default=2_000)
    parser.add_argument("--per-tx", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with scratch_database(
        "croupier_bench", ROOT / ".data" / f"bench-relay-{os.getpid()}", remove=True
    ) as url:
        asyncio.run(run(url, args.events, args.aggregates, args.per_tx, args.batch))


if __name__ == "__main__":
    main()

"""`croupier events tail`: print live events from RabbitMQ as JSON lines.

    croupier events tail                              # every event on croupier.events
    croupier events tail --type wallet.credited --type 'jp.#'
    croupier events tail --crm --count 10             # the CRM casino feed (croupier.crm)
    croupier events tail --tenant t1 --count 1        # only tenant t1's events

A private queue (exclusive, auto-delete: gone when the command ends) is bound to the topic
exchange `croupier.events` (or `croupier.crm` with `--crm`) with each `--type` as a binding
key (AMQP topic patterns: `*` one word, `#` any number; default `#`). Each message body is
printed verbatim on its own line (decimal amounts stay exact), flushed at once; the command stops
after `--count N` printed events or at Ctrl-C and exits 0, or 1 with a JSON error on stderr
when the broker is unreachable. It reads nothing from the gRPC server: the broker is
`--amqp-url` (env CROUPIER_AMQP_URL, default the local RabbitMQ). Events published before the
queue is bound are not shown; "listening" goes to stderr once it is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import decimal
import json
import os
import sys
import uuid
from typing import Any, TextIO

import aio_pika

EVENTS_EXCHANGE = "croupier.events"
CRM_EXCHANGE = "croupier.crm"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def register(subparsers: Any) -> None:
    """Add the `events` group (`events tail`) to the `croupier` parser."""
    group = subparsers.add_parser("events", help="live events from the broker")
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    tail = commands.add_parser(
        "tail",
        help="print live events as JSON lines",
        description="Print live events from RabbitMQ as JSON lines until Ctrl-C or --count.",
    )
    tail.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="TYPE",
        help="binding key, repeatable: an event type or AMQP pattern (default '#': all)",
    )
    tail.add_argument(
        "--crm", action="store_true", help=f"tail the CRM casino feed ({CRM_EXCHANGE})"
    )
    tail.add_argument("--tenant", default="", help="only events of this tenant")
    tail.add_argument("--count", type=int, default=0, help="stop after N events (0: never)")
    tail.add_argument(
        "--amqp-url",
        default=os.environ.get("CROUPIER_AMQP_URL") or DEFAULT_AMQP_URL,
        help="RabbitMQ URL (env CROUPIER_AMQP_URL, default the local broker)",
    )
    tail.set_defaults(run=run_tail)


def tenant_of(body: Any) -> str:
    """The tenant of an event envelope (`tenant_id`) or a CRM message (`meta.tenant_id`)."""
    if not isinstance(body, dict):
        return ""
    meta = body.get("meta")
    nested = meta.get("tenant_id") if isinstance(meta, dict) else None
    return str(body.get("tenant_id") or nested or "")


async def tail(
    amqp_url: str,
    exchange_name: str,
    binding_keys: list[str],
    *,
    tenant: str = "",
    count: int = 0,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print matching message bodies, one per line, to `out`; return how many were printed
    (stops after `count` when > 0). A body that is not JSON is printed as a JSON string."""
    connection = await aio_pika.connect(amqp_url, timeout=10)
    printed = 0
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            f"croupier.tail.{uuid.uuid4().hex[:12]}", exclusive=True, auto_delete=True
        )
        for binding in binding_keys or ["#"]:
            await queue.bind(exchange, routing_key=binding)
        print(f"listening on {exchange_name} ({', '.join(binding_keys or ['#'])})", file=err)
        err.flush()
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                text = message.body.decode("utf-8", "replace")
                try:
                    body: Any = json.loads(text, parse_float=decimal.Decimal)
                    line = text.replace("\r", " ").replace("\n", " ")  # JSON whitespace only
                except ValueError:
                    body, line = None, json.dumps(text)
                if tenant and tenant_of(body) != tenant:
                    continue
                out.write(line + "\n")
                out.flush()
                printed += 1
                if count and printed >= count:
                    break
    return printed


def run_tail(args: argparse.Namespace) -> None:
    """The `events tail` command: streams to stdout, then exits 0 itself (there is no single
    response for `croupier` to print)."""
    if args.count < 0:
        raise SystemExit("croupier events tail: --count must not be negative")
    exchange = CRM_EXCHANGE if args.crm else EVENTS_EXCHANGE
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                tail(
                    args.amqp_url, exchange, list(args.types), tenant=args.tenant, count=args.count
                )
            )
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        error = {
            "code": "UNAVAILABLE",
            "reason": "BROKER_UNAVAILABLE",
            "domain": "croupier",
            "message": f"cannot read from the broker: {type(exc).__name__}: {exc}",
        }
        print(json.dumps(error), file=sys.stderr)
        raise SystemExit(1) from exc
    raise SystemExit(0)

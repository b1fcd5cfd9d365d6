"""`croupier export rounds`: stream a tenant's rounds to stdout as CSV or JSON lines.

    croupier export rounds --tenant t1 --from 2026-03-01T00:00:00Z --to 2026-04-01T00:00:00Z \\
        --format csv > rounds.csv

Amounts are exact decimals in the currency's units ("12.50"), never floats; times are UTC ISO
8601. `--payloads` adds the raw provider payloads the sportsbook edge stored (UTF-8 text, or
`base64:` and the base64 of bytes that are not UTF-8). Memory stays constant whatever the
range: rows are written as the server streams its pages. On a terminal, a progress bar (rows,
rate, ETA from the time range covered; tqdm) goes to stderr; piped or redirected, stderr stays
silent. Exits 0 after the last row, 1 when the call fails.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

import grpc
from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.audit.v1.audit_service_pb2_grpc import AuditServiceStub
from google.protobuf import timestamp_pb2
from tqdm import tqdm

from client.errors import from_rpc_error
from server.errors import invalid
from server.money import Money, format_decimal

COLUMNS = (
    "round_id",
    "player_id",
    "game_id",
    "provider",
    "currency",
    "bets",
    "wins",
    "refunds",
    "net",
    "started_at",
    "ended_at",
    "transactions",
    "transaction_ids",
    "payloads",
)


def _time(text: str, flag: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(flag, "INVALID_TIME", f"{flag} {text!r} is not ISO 8601") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(ts: timestamp_pb2.Timestamp) -> str:
    return ts.ToDatetime(UTC).isoformat().replace("+00:00", "Z")


def _body(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def record(r: pb.Round) -> dict[str, Any]:
    """One Round as a flat record with exact decimal amounts (the CSV columns)."""
    cur = r.bets.currency
    net = r.bets.minor_units - r.wins.minor_units - r.refunds.minor_units
    return {
        "round_id": r.round_id,
        "player_id": r.player_id,
        "game_id": r.game_id,
        "provider": r.provider,
        "currency": cur,
        "bets": format_decimal(Money(r.bets.minor_units, cur)),
        "wins": format_decimal(Money(r.wins.minor_units, cur)),
        "refunds": format_decimal(Money(r.refunds.minor_units, cur)),
        "net": format_decimal(Money(net, cur)),
        "started_at": _iso(r.started_at),
        "ended_at": _iso(r.ended_at),
        "transactions": r.transactions,
        "transaction_ids": list(r.transaction_ids),
        "payloads": [
            {"received_at": _iso(p.received_at), "endpoint": p.endpoint, "body": _body(p.body)}
            for p in r.payloads
        ],
    }


def write_rounds(
    pages: Iterable[pb.ExportRoundsResponse],
    fmt: str,
    out: TextIO,
    start: datetime,
    end: datetime,
    progress: bool,
) -> int:
    """Write every round of `pages` to `out`; returns the number of rounds."""
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
    span = (end - start).total_seconds()
    count = 0
    with tqdm(
        total=round(span),
        unit="s",
        desc="rounds (time covered)",
        file=sys.stderr,
        disable=not progress,
        bar_format="{l_bar}{bar}| {postfix} [{elapsed}<{remaining}]",
    ) as bar:
        done = 0
        for page in pages:
            for r in page.rounds:
                row = record(r)
                if writer is not None:
                    row["transaction_ids"] = " ".join(row["transaction_ids"])
                    row["payloads"] = json.dumps(row["payloads"]) if row["payloads"] else ""
                    writer.writerow(row)
                else:
                    out.write(json.dumps(row, separators=(",", ":")) + "\n")
                count += 1
            if page.rounds:
                last = page.rounds[-1].started_at.ToDatetime(UTC)
                reached = round(min(span, (last - start).total_seconds()))
                bar.update(max(0, reached - done))
                done = max(done, reached)
                rate = count / max(float(bar.format_dict["elapsed"]), 1e-9)
                bar.set_postfix_str(f"{count} rows, {rate:.0f} rows/s")
        bar.update(round(span) - done)
    return count


def _rounds(args: argparse.Namespace) -> NoReturn:
    from client.cli import channel_credentials

    start, end = _time(args.start, "--from"), _time(args.end, "--to")
    request = pb.ExportRoundsRequest(
        tenant_id=args.tenant,
        player_id=args.player,
        game_id=args.game,
        provider=args.provider,
        include_payloads=args.payloads,
    )
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)
    creds = channel_credentials(args)
    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else None
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        with (
            grpc.secure_channel(args.target, creds)
            if creds is not None
            else grpc.insecure_channel(args.target)
        ) as channel:
            pages = AuditServiceStub(channel).ExportRounds(
                request, timeout=args.timeout, metadata=metadata
            )
            try:
                write_rounds(pages, args.format, out, start, end, progress=sys.stderr.isatty())
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from exc
    finally:
        if out is not sys.stdout:
            out.close()
    sys.stdout.flush()
    raise SystemExit(0)  # the rows are the output: nothing more is printed


def register(subparsers: Any) -> None:
    """Add the `export` group (`export rounds`) to the `croupier` parser."""
    from client.cli import connection_options

    group = subparsers.add_parser("export", help="AuditService exports (rounds)")
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "rounds",
        parents=[connection_options()],
        help="stream rounds as CSV or JSON lines",
        description="Stream a tenant's rounds started in [--from, --to) to stdout.",
    )
    p.add_argument("--from", dest="start", required=True, help="ISO 8601 (UTC if no offset)")
    p.add_argument("--to", dest="end", required=True, help="ISO 8601, exclusive")
    p.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    p.add_argument("--player", default="")
    p.add_argument("--game", default="")
    p.add_argument("--provider", default="")
    p.add_argument("--payloads", action="store_true", help="include raw provider payloads")
    p.add_argument("--output", default="", help="write to this file instead of stdout")
    p.set_defaults(run=_rounds, timeout=3600.0)

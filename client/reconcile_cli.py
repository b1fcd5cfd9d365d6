"""`croupier reconcile`: reconcile the whole ledger and every jackpot pool, or a provider's
export against the ledger.

    CROUPIER_DATABASE_URL=... croupier reconcile
    croupier reconcile provider --tenant t1 --provider acme --file export.csv

`reconcile provider` uploads the file (CSV or JSON lines, docs/reconciliation.md) to
AuditService.ReconcileProvider and prints the report as JSON. Exits 0 when the mismatch rate is
at most the threshold (`--threshold-ppm`, default 1000 = 0.1%), 3 above it, 1 when the call
fails. A progress bar (bytes sent, rate, ETA; tqdm) goes to stderr on a terminal only.

With CROUPIER_READ_DATABASE_URL set (a standby) the report runs there, off the primary: it reads
one consistent snapshot, so it is exact whatever the standby's lag (it describes the ledger as
of that snapshot).

Prints, per currency, the net of all postings (must be 0), the posted volume and the drift in
ppm of it; per pool, seed + contributions + carried - wins against the pool's amount; every
jackpot win whose payout state disagrees with the ledger (a credited win must be exactly one
payout credit of its amount to the winner, any other win none). Exits 0 when everything
reconciles exactly, 3 on any drift or disagreeing win.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import grpc
from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.audit.v1.audit_service_pb2_grpc import AuditServiceStub
from google.protobuf import json_format
from tqdm import tqdm

from client.errors import from_rpc_error
from server.errors import invalid
from server.reconcile import Report, reconcile_ledger
from server.store.database import open_pool


async def _reconcile(url: str) -> Report:
    pool = await open_pool(url, min_size=1, max_size=2)
    try:
        report = await reconcile_ledger(pool)
        try:
            from server.jackpot.reconcile_all import reconcile_pools, reconcile_wins
        except ImportError:  # pragma: no cover - jackpot engine not installed
            return report
        report.pools = await reconcile_pools(pool)
        report.wins = await reconcile_wins(pool)
        return report
    finally:
        await pool.close()


def _run(args: argparse.Namespace) -> dict[str, Any]:
    url = (
        args.database_url
        or os.environ.get("CROUPIER_READ_DATABASE_URL")
        or os.environ.get("CROUPIER_DATABASE_URL")
    )
    if not url:
        raise SystemExit("croupier reconcile: set CROUPIER_DATABASE_URL or --database-url")
    report = asyncio.run(_reconcile(str(url)))
    body: dict[str, Any] = {
        "ok": report.ok,
        "currencies": [asdict(c) for c in report.currencies],
        "unbalanced_transactions": report.unbalanced_transactions,
        "drifting_accounts": report.drifting_accounts,
        "pools": report.pools,
        "wins": report.wins,
    }
    if not report.ok:
        print(json.dumps(body, indent=2, default=str))
        raise SystemExit(3)
    return body


CHUNK = 256 * 1024


def _upload(args: argparse.Namespace, size: int) -> Iterator[pb.ReconcileProviderRequest]:
    fmt = args.format or ("jsonl" if args.file.endswith((".jsonl", ".ndjson")) else "csv")
    with (
        open(args.file, "rb") as f,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc="upload",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        ) as bar,
    ):
        first = pb.ReconcileProviderRequest(
            tenant_id=args.tenant,
            provider=args.provider,
            format=pb.FILE_FORMAT_JSONL if fmt == "jsonl" else pb.FILE_FORMAT_CSV,
            idempotency_key=args.idempotency_key or f"recon:{uuid.uuid4()}",
            threshold_ppm=args.threshold_ppm,
            chunk=f.read(CHUNK),
        )
        bar.update(len(first.chunk))
        yield first
        while chunk := f.read(CHUNK):
            bar.update(len(chunk))
            yield pb.ReconcileProviderRequest(tenant_id=args.tenant, chunk=chunk)


def _provider(args: argparse.Namespace) -> dict[str, Any]:
    from client.cli import channel_credentials

    try:
        size = os.path.getsize(args.file)
    except OSError as exc:
        raise invalid("--file", "INVALID_FILE", f"--file {args.file}: {exc.strerror}") from exc
    creds = channel_credentials(args)
    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else None
    with (
        grpc.secure_channel(args.target, creds)
        if creds is not None
        else grpc.insecure_channel(args.target)
    ) as channel:
        try:
            reply = AuditServiceStub(channel).ReconcileProvider(
                _upload(args, size), timeout=args.timeout, metadata=metadata
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
    body = json_format.MessageToDict(
        reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    if reply.threshold_exceeded:
        print(json.dumps(body, indent=2))
        print(
            f"mismatch rate {reply.mismatch_rate_ppm} ppm above {reply.threshold_ppm} ppm",
            file=sys.stderr,
        )
        raise SystemExit(3)
    return body


def register(subparsers: Any) -> None:
    """Add the `reconcile` command (and `reconcile provider`) to the `croupier` parser."""
    from client.cli import connection_options

    cmd = subparsers.add_parser(
        "reconcile", help="reconcile the ledger and every pool, or a provider export"
    )
    cmd.add_argument("--database-url", default=None)
    cmd.set_defaults(run=_run)
    what = cmd.add_subparsers(dest="reconcile_what", metavar="WHAT", required=False)
    p = what.add_parser(
        "provider",
        parents=[connection_options()],
        help="match a provider export to the ledger by event id",
        description="Upload a provider export (docs/reconciliation.md) and print the report.",
    )
    p.add_argument("--provider", required=True, help="provider (integration) name")
    p.add_argument("--file", required=True, help="export.csv or export.jsonl")
    p.add_argument("--format", choices=("csv", "jsonl"), default=None, help="default: by suffix")
    p.add_argument("--threshold-ppm", type=int, default=1000, help="alert above (default 0.1%%)")
    p.add_argument("--idempotency-key", default="", help="default: a new one")
    p.set_defaults(run=_provider, timeout=600.0)

"""`croupier reconcile`: reconcile the whole ledger and every jackpot pool (issue 8 item 4).

    CROUPIER_DATABASE_URL=... croupier reconcile

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
from dataclasses import asdict
from typing import Any

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


def register(subparsers: Any) -> None:
    """Add the `reconcile` command to the `croupier` parser."""
    cmd = subparsers.add_parser("reconcile", help="reconcile the ledger and every pool")
    cmd.add_argument("--database-url", default=None)
    cmd.set_defaults(run=_run)

"""Whole-ledger reconciliation (issue 8 item 4, PRODUCT.md invariants 2 and 5).

For each currency: the sum of every posting must be zero (double entry), and every player
account's stored balances must equal the sums of its postings. Drift is reported in ppm of the
currency's posted volume (sum of debit legs), so an auditor sees its size relative to activity.
Jackpot pools are reconciled by `server.jackpot` and added to the same report when present,
with every jackpot win whose payout state disagrees with the ledger (`wins`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from server.store import reconcile_sql


@dataclass(frozen=True)
class CurrencyLine:
    """One currency: net of all postings (must be 0), volume, drift in ppm of the volume."""

    currency: str
    net_minor_units: int
    volume_minor_units: int
    drift_ppm: int


@dataclass
class Report:
    """The reconciliation report; `ok` when every drift is zero."""

    currencies: list[CurrencyLine] = field(default_factory=list)
    unbalanced_transactions: list[tuple[str, str, int]] = field(default_factory=list)
    drifting_accounts: list[tuple[int, str, int, int]] = field(default_factory=list)
    pools: list[dict[str, object]] = field(default_factory=list)
    wins: list[dict[str, object]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the ledger and every pool reconcile exactly and every win agrees with
        the ledger."""
        return (
            all(c.net_minor_units == 0 for c in self.currencies)
            and not self.unbalanced_transactions
            and not self.drifting_accounts
            and all(p.get("balanced", False) is True for p in self.pools)
            and not self.wins
        )


def ppm(part: int, whole: int) -> int:
    """|part| in parts per million of `whole` (integer, rounded up so any drift shows)."""
    if part == 0:
        return 0
    if whole == 0:
        return 1_000_000
    return -(-abs(part) * 1_000_000 // whole)


async def reconcile_ledger(pool: AsyncConnectionPool) -> Report:
    """Reconcile the whole ledger (every tenant) in one consistent snapshot."""
    report = Report()
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for currency, net, volume in await reconcile_sql.currency_totals(conn):
            report.currencies.append(CurrencyLine(currency, net, volume, ppm(net, volume)))
        report.unbalanced_transactions = await reconcile_sql.unbalanced_transactions(conn)
        report.drifting_accounts = await reconcile_sql.account_drift(conn)
    return report

"""Ledger invariant checks (PRODUCT.md invariants 2 and 6), run after every test module."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool


async def check_ledger_invariants(pool: AsyncConnectionPool) -> None:
    """Assert: every transaction's postings sum to zero per currency; every player account's
    stored balances equal the sums of its postings; no player balance is negative."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT transaction_id, currency, sum(amount) FROM postings"
            " GROUP BY tenant_id, transaction_id, currency HAVING sum(amount) <> 0 LIMIT 5"
        )
        unbalanced = await cur.fetchall()
        assert not unbalanced, f"unbalanced transactions: {unbalanced}"
        cur = await conn.execute(
            "SELECT a.account_id, a.available, a.held, a.pending, a.bonus, a.locked,"
            "       b.available, b.held, b.pending, b.bonus, b.locked"
            "  FROM accounts a JOIN account_balances b USING (tenant_id, account_id)"
            " WHERE a.kind = 'player' AND (a.available <> b.available OR a.held <> b.held"
            "                              OR a.pending <> b.pending OR a.bonus <> b.bonus"
            "                              OR a.locked <> b.locked)"
            " LIMIT 5"
        )
        drift = await cur.fetchall()
        assert not drift, f"balances differ from posting sums: {drift}"
        cur = await conn.execute(
            "SELECT count(*) FROM accounts WHERE kind = 'player'"
            " AND (available < 0 OR held < 0 OR pending < 0 OR bonus < 0 OR locked < 0)"
        )
        row = await cur.fetchone()
        assert row is not None and row[0] == 0, "negative player balance"

"""SQL for whole-ledger reconciliation (croupier reconcile)."""

from __future__ import annotations

from server.types import Conn


async def currency_totals(conn: Conn) -> list[tuple[str, int, int]]:
    """Per currency: (currency, sum of all postings, sum of absolute postings / 2 = volume)."""
    cur = await conn.execute(
        "SELECT currency, coalesce(sum(amount), 0)::numeric::text,"
        "       coalesce(div(sum(abs(amount)), 2), 0)::numeric::text"
        "  FROM postings GROUP BY currency ORDER BY currency"
    )
    return [(str(c), int(s), int(v)) for c, s, v in await cur.fetchall()]


async def unbalanced_transactions(conn: Conn, limit: int = 20) -> list[tuple[str, str, int]]:
    """Transactions whose postings do not sum to zero: (transaction_id, currency, sum)."""
    cur = await conn.execute(
        "SELECT transaction_id::text, currency, sum(amount)::numeric::text FROM postings"
        " GROUP BY tenant_id, transaction_id, currency HAVING sum(amount) <> 0 LIMIT %s",
        (limit,),
    )
    return [(str(t), str(c), int(s)) for t, c, s in await cur.fetchall()]


async def account_drift(conn: Conn, limit: int = 20) -> list[tuple[int, str, int, int]]:
    """Player accounts whose stored balances (available, held, bonus, locked) differ from their
    postings: (account_id, currency, available - posted available, held - posted held)."""
    cur = await conn.execute(
        "SELECT a.account_id, a.currency,"
        "       (a.available - coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0))"
        "         ::numeric::text,"
        "       (a.held - coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'held'), 0))"
        "         ::numeric::text"
        "  FROM accounts a"
        "  LEFT JOIN postings p ON p.tenant_id = a.tenant_id AND p.account_id = a.account_id"
        " WHERE a.kind = 'player' GROUP BY a.tenant_id, a.account_id"
        " HAVING a.available <> coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0)"
        "     OR a.held <> coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'held'), 0)"
        "     OR a.bonus <> coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'bonus'), 0)"
        "     OR a.locked <> coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'locked'), 0)"
        " LIMIT %s",
        (limit,),
    )
    return [(int(a), str(c), int(d1), int(d2)) for a, c, d1, d2 in await cur.fetchall()]

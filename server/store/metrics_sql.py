"""SQL behind the business gauges on /metrics, read periodically."""

from __future__ import annotations

from server.types import Conn


async def pool_amounts(conn: Conn) -> list[tuple[str, str, str, int, int]]:
    """Per pool: (pool_id, tier, currency, amount = cycle base + counters, cap or 0)."""
    cur = await conn.execute(
        "SELECT p.pool_id, p.tier, j.currency,"
        "       p.cycle_base + coalesce((SELECT sum(s.visible) FROM jp_pool_shards s"
        "                                 WHERE s.pool_id = p.pool_id AND s.cycle = p.cycle), 0),"
        "       p.cap"
        "  FROM jp_pools p JOIN jp_jackpots j ON j.jackpot_id = p.jackpot_id"
    )
    return [(str(a), str(b), str(c), int(d), int(e)) for a, b, c, d, e in await cur.fetchall()]


async def payouts(conn: Conn) -> list[tuple[str, str, str, int, int]]:
    """Per (tier, currency, payout state): (tier, currency, state, count, sum of amounts)."""
    cur = await conn.execute(
        "SELECT p.tier, w.currency, w.payout_state, count(*), coalesce(sum(w.amount), 0)"
        "  FROM jp_wins w JOIN jp_pools p ON p.pool_id = w.pool_id"
        " GROUP BY p.tier, w.currency, w.payout_state"
    )
    return [(str(a), str(b), str(c), int(d), int(e)) for a, b, c, d, e in await cur.fetchall()]


async def contributions(conn: Conn) -> list[tuple[str, int, int, int]]:
    """Per pool: (pool_id, qualifying contributions, sum to the pool, sum of bets)."""
    cur = await conn.execute(
        "SELECT pool_id, count(*), coalesce(sum(to_pool), 0), coalesce(sum(bet), 0)"
        "  FROM jp_contributions GROUP BY pool_id"
    )
    return [(str(a), int(b), int(c), int(d)) for a, b, c, d in await cur.fetchall()]


async def time_to_drop(conn: Conn) -> list[tuple[str, int]]:
    """Per pool: seconds from the start of its last ended cycle to its hit."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (pool_id) pool_id,"
        "       extract(epoch FROM ended_at - started_at)::bigint"
        "  FROM jp_cycles WHERE ended_at IS NOT NULL ORDER BY pool_id, cycle DESC"
    )
    return [(str(a), int(b)) for a, b in await cur.fetchall()]

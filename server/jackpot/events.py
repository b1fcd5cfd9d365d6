"""Jackpot events for the outbox (docs/events.md), written in the transaction of
the state change they describe. Aggregate: the pool (`pool:<pool_id>`), so a pool's trigger,
payout request and reset are published in commit order; config and audit events use the owner
tenant's audit chain (`audit:<tenant>`). Money is `{"minor_units", "currency"}`.

`jp.contribution.recorded` has its own aggregate per pool shard (`pool:<pool_id>:shard:<n>`,
the counter row the contribution was added to): contributions to a hot pool lock one shard row
each and must not serialize on one sequence counter, so they are ordered per shard only (each
event carries the pool amount it saw), while the pool's state changes (`pool:<pool_id>`) keep
one order. A reset or config change is `jp.pool.updated`. See docs/events.md.
"""

from __future__ import annotations

from typing import Any

from server.events.outbox import append_event, money, new_event
from server.jackpot.model import WinRow
from server.store.outbox_sql import NewEvent
from server.types import Conn


def contribution_recorded_event(
    *,
    tenant_id: str,
    pool_id: str,
    shard: int,
    tier: str,
    cycle: int,
    key: str,
    player_id: str,
    round_id: str,
    game_id: str,
    bet: int,
    bet_currency: str,
    currency: str,
    to_pool: int,
    to_reseed: int,
    to_overflow: int,
    pool_amount: int,
    hit: bool,
    trace_id: str | None = None,
) -> NewEvent:
    """`jp.contribution.recorded`: one qualifying contribution to one tier (minor units),
    added to counter row `shard` of the pool (its aggregate)."""
    return new_event(
        "jp.contribution.recorded",
        aggregate=f"pool:{pool_id}:shard:{shard}",
        tenant_id=tenant_id,
        trace_id=trace_id,
        payload={
            "pool_id": pool_id,
            "tier": tier,
            "cycle": cycle,
            "contribution_id": key,
            "player_id": player_id,
            "round_id": round_id,
            "game_id": game_id,
            "bet": money(bet, bet_currency),
            "to_pool": money(to_pool, currency),
            "to_reseed": money(to_reseed, currency),
            "to_overflow": money(to_overflow, currency),
            "pool_amount": money(pool_amount, currency),
            "hit": hit,
        },
    )


async def pool_updated(
    conn: Conn,
    *,
    tenant_id: str,
    pool_id: str,
    cycle: int,
    amount: int,
    currency: str,
    reason: str,
) -> None:
    """`jp.pool.updated`: a pool reset to a new cycle or reconfigured."""
    await append_event(
        conn,
        "jp.pool.updated",
        aggregate=f"pool:{pool_id}",
        tenant_id=tenant_id,
        payload={
            "pool_id": pool_id,
            "cycle": cycle,
            "amount": money(amount, currency),
            "reason": reason,
        },
    )


async def triggered(
    conn: Conn,
    *,
    win_id: str,
    tenant_id: str,
    player_id: str,
    pool_id: str,
    cycle: int,
    amount: int,
    currency: str,
    reason: str,
    round_id: str,
) -> None:
    """`jp.triggered` and `jp.payout.requested`: a hit locked in the pool's exact value."""
    payload: dict[str, Any] = {
        "win_id": win_id,
        "pool_id": pool_id,
        "cycle": cycle,
        "player_id": player_id,
        "round_id": round_id,
        "amount": money(amount, currency),
        "reason": reason,
    }
    for event_type in ("jp.triggered", "jp.payout.requested"):
        await append_event(
            conn, event_type, aggregate=f"pool:{pool_id}", tenant_id=tenant_id, payload=payload
        )


async def payout_outcome(
    conn: Conn, win: WinRow, *, credited: bool, reason: str = "", wallet_transaction_id: str = ""
) -> None:
    """`jp.payout.credited` or `jp.payout.failed` (with the reason code)."""
    payload: dict[str, Any] = {
        "win_id": str(win.win_id),
        "pool_id": win.pool_id,
        "cycle": win.cycle,
        "player_id": win.player_id,
        "amount": money(win.amount, win.currency),
    }
    if credited:
        payload["wallet_transaction_id"] = wallet_transaction_id
    else:
        payload["reason"] = reason
    await append_event(
        conn,
        "jp.payout.credited" if credited else "jp.payout.failed",
        aggregate=f"pool:{win.pool_id}",
        tenant_id=win.tenant_id,
        payload=payload,
    )


async def config_changed(
    conn: Conn, *, tenant_id: str, action: str, subject: str, seq: int, record_hash: str
) -> None:
    """`audit.config.changed`: a record appended to the tenant's audit chain."""
    await append_event(
        conn,
        "audit.config.changed",
        aggregate=f"audit:{tenant_id}",
        tenant_id=tenant_id,
        payload={
            "action": action,
            "subject": subject,
            "seq": seq,
            "record_hash": record_hash,
        },
    )

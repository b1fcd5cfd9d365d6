"""The wallet's accounts as other domains see them, inside the caller's transaction.

A domain that credits a player in its own transaction (the jackpot payout saga) prepares the
account here and then calls `Wallet.credit` on the same connection, so the checks, the credit
and the caller's own state change commit together. Lock order as in the wallet: the account row
(FOR UPDATE), then the players row (FOR SHARE).
"""

from __future__ import annotations

from server.store import wallet_sql
from server.types import Conn
from server.wallet.model import PlayerStatus


async def open_and_lock(conn: Conn, tenant_id: str, player_id: str, currency: str) -> None:
    """Open the player (and the `currency` account) on first use, then lock the account
    FOR UPDATE until the caller's transaction ends. Raises nothing for an unknown player."""
    await wallet_sql.open_account(conn, tenant_id, player_id, currency)
    await wallet_sql.lock_account(conn, tenant_id, player_id, currency)


async def status_locked(conn: Conn, tenant_id: str, player_id: str) -> PlayerStatus | None:
    """The player's status with the players row locked FOR SHARE (a status change committed
    before is seen; one not yet committed waits for the caller's transaction), or None for an
    unknown player."""
    status = await wallet_sql.player_status(conn, tenant_id, player_id, share=True)
    return None if status is None else PlayerStatus(status)

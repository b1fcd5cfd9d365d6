"""The SQL of bonus money: tenant bonus settings and bonus rows (docs/bonus.md).

Functions take an open connection inside the caller's transaction; no business rules. A bonus
row changes only while its player's account row is locked (the ledger locks it first), so the
account lock serializes every change of a player's bonus.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.store.rows import fetch_all, fetch_one
from server.types import Conn

DEFAULT_SPEND_ORDER = ("cash", "locked", "bonus")
DEFAULT_WITHDRAWAL_POLICY = "refuse"


@dataclass(frozen=True, slots=True)
class SettingsRow:
    """A tenant's bonus settings: spend order (bucket names), withdrawal policy."""

    spend_order: tuple[str, ...] = DEFAULT_SPEND_ORDER
    withdrawal_policy: str = DEFAULT_WITHDRAWAL_POLICY


@dataclass(frozen=True, slots=True)
class BonusRow:
    """A bonus as stored (money in minor units of `currency`; weights in ppm)."""

    bonus_id: uuid.UUID
    tenant_id: str
    player_id: str
    currency: str
    state: str  # active | completed | forfeited | expired
    amount: int
    locked_deposit: int
    multiplier: int
    base: str  # bonus | deposit_plus_bonus
    requirement: int
    wagered_ppm: int  # stake x weight summed, in millionths of a minor unit
    default_weight_ppm: int
    game_weights: dict[str, int]
    category_weights: dict[str, int]
    max_bet: int | None
    max_conversion: int | None
    expires_at: datetime
    converted: int
    removed: int
    released: int
    reason: str
    created_at: datetime
    closed_at: datetime | None


_COLUMNS = (
    "bonus_id, tenant_id, player_id, currency, state, amount, locked_deposit, multiplier, base,"
    " requirement, wagered_ppm::text AS wagered_ppm, default_weight_ppm, game_weights,"
    " category_weights,"
    " max_bet, max_conversion, expires_at, converted, removed, released, reason, created_at,"
    " closed_at"
)


def _bonus(**c: Any) -> BonusRow:
    return BonusRow(
        bonus_id=c["bonus_id"],
        tenant_id=str(c["tenant_id"]),
        player_id=str(c["player_id"]),
        currency=str(c["currency"]),
        state=str(c["state"]),
        amount=int(c["amount"]),
        locked_deposit=int(c["locked_deposit"]),
        multiplier=int(c["multiplier"]),
        base=str(c["base"]),
        requirement=int(c["requirement"]),
        wagered_ppm=int(c["wagered_ppm"]),
        default_weight_ppm=int(c["default_weight_ppm"]),
        game_weights={str(k): int(v) for k, v in dict(c["game_weights"]).items()},
        category_weights={str(k): int(v) for k, v in dict(c["category_weights"]).items()},
        max_bet=None if c["max_bet"] is None else int(c["max_bet"]),
        max_conversion=None if c["max_conversion"] is None else int(c["max_conversion"]),
        expires_at=c["expires_at"],
        converted=int(c["converted"]),
        removed=int(c["removed"]),
        released=int(c["released"]),
        reason=str(c["reason"]),
        created_at=c["created_at"],
        closed_at=c["closed_at"],
    )


def _settings(**c: Any) -> SettingsRow:
    return SettingsRow(tuple(str(x) for x in c["spend_order"]), str(c["withdrawal_policy"]))


async def settings(conn: Conn, tenant_id: str) -> SettingsRow:
    """The tenant's bonus settings, or the defaults."""
    row = await fetch_one(
        conn,
        _settings,
        "SELECT spend_order, withdrawal_policy FROM bonus_settings WHERE tenant_id = %s",
        (tenant_id,),
    )
    if row is None:
        return SettingsRow()
    return row


async def set_settings(conn: Conn, tenant_id: str, s: SettingsRow) -> None:
    """Replace the tenant's bonus settings."""
    await conn.execute(
        "INSERT INTO bonus_settings (tenant_id, spend_order, withdrawal_policy)"
        " VALUES (%s, %s, %s) ON CONFLICT (tenant_id) DO UPDATE"
        " SET spend_order = EXCLUDED.spend_order,"
        "     withdrawal_policy = EXCLUDED.withdrawal_policy, updated_at = EXCLUDED.updated_at",
        (tenant_id, list(s.spend_order), s.withdrawal_policy),
    )


async def insert_bonus(
    conn: Conn,
    *,
    bonus_id: uuid.UUID,
    tenant_id: str,
    player_id: str,
    currency: str,
    account_id: int,
    amount: int,
    locked_deposit: int,
    multiplier: int,
    base: str,
    requirement: int,
    default_weight_ppm: int,
    game_weights: dict[str, int],
    category_weights: dict[str, int],
    max_bet: int | None,
    max_conversion: int | None,
    expires_at: datetime,
    transaction_id: uuid.UUID,
) -> None:
    """Insert an active bonus (a second active one of the account raises UniqueViolation)."""
    await conn.execute(
        "INSERT INTO bonuses (tenant_id, bonus_id, player_id, currency, account_id, state,"
        " amount, locked_deposit, multiplier, base, requirement, default_weight_ppm,"
        " game_weights, category_weights, max_bet, max_conversion, expires_at,"
        " grant_transaction_id)"
        " VALUES (%s, %s, %s, %s, %s, 'active', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            tenant_id,
            bonus_id,
            player_id,
            currency,
            account_id,
            amount,
            locked_deposit,
            multiplier,
            base,
            requirement,
            default_weight_ppm,
            json.dumps(game_weights, sort_keys=True),
            json.dumps(category_weights, sort_keys=True),
            max_bet,
            max_conversion,
            expires_at,
            transaction_id,
        ),
    )


async def get_bonus(conn: Conn, tenant_id: str, bonus_id: uuid.UUID) -> BonusRow | None:
    """One bonus of the tenant, or None."""
    return await fetch_one(
        conn,
        _bonus,
        f"SELECT {_COLUMNS} FROM bonuses WHERE tenant_id = %s AND bonus_id = %s",
        (tenant_id, bonus_id),
    )


async def list_bonuses(
    conn: Conn,
    tenant_id: str,
    player_id: str,
    state: str | None,
    before: datetime | None,
    limit: int,
) -> list[BonusRow]:
    """The player's bonuses created before `before`, newest first, at most `limit`."""
    return await fetch_all(
        conn,
        _bonus,
        f"SELECT {_COLUMNS} FROM bonuses WHERE tenant_id = %s AND player_id = %s"
        "   AND (%s::text IS NULL OR state = %s::text)"
        "   AND (%s::timestamptz IS NULL OR created_at < %s::timestamptz)"
        " ORDER BY created_at DESC, bonus_id LIMIT %s",
        (tenant_id, player_id, state, state, before, before, limit),
    )


async def add_wagered(conn: Conn, tenant_id: str, bonus_id: uuid.UUID, weighted_ppm: int) -> None:
    """Add `weighted_ppm` (stake x weight, millionths of a minor unit) to the turnover."""
    await conn.execute(
        "UPDATE bonuses SET wagered_ppm = wagered_ppm + %s::numeric"
        " WHERE tenant_id = %s AND bonus_id = %s",
        (str(weighted_ppm), tenant_id, bonus_id),
    )


async def close_bonus(
    conn: Conn,
    tenant_id: str,
    bonus_id: uuid.UUID,
    state: str,
    *,
    converted: int,
    removed: int,
    released: int,
    reason: str,
    transaction_id: uuid.UUID,
) -> None:
    """Close an active bonus as completed, forfeited or expired, with what it moved."""
    await conn.execute(
        "UPDATE bonuses SET state = %s, converted = %s, removed = %s, released = %s,"
        " reason = %s, close_transaction_id = %s, closed_at = now()"
        " WHERE tenant_id = %s AND bonus_id = %s AND state = 'active'",
        (state, converted, removed, released, reason, transaction_id, tenant_id, bonus_id),
    )


async def expired_bonuses(
    conn: Conn, limit: int, exclude: Sequence[uuid.UUID] = ()
) -> list[tuple[str, uuid.UUID, int]]:
    """Up to `limit` active bonuses past expiry but the `exclude`d ones, oldest expiry first,
    unlocked: [(tenant_id, bonus_id, account_id)]."""

    def make(**c: Any) -> tuple[str, uuid.UUID, int]:
        return str(c["tenant_id"]), c["bonus_id"], int(c["account_id"])

    return await fetch_all(
        conn,
        make,
        "SELECT tenant_id, bonus_id, account_id FROM bonuses"
        " WHERE state = 'active' AND expires_at <= now() AND bonus_id <> ALL(%s::uuid[])"
        " ORDER BY expires_at LIMIT %s",
        (list(exclude), limit),
    )


async def still_expired(conn: Conn, tenant_id: str, bonus_id: uuid.UUID) -> BonusRow | None:
    """The bonus if it is still active and past expiry (the caller holds its account lock)."""
    return await fetch_one(
        conn,
        _bonus,
        f"SELECT {_COLUMNS} FROM bonuses WHERE tenant_id = %s AND bonus_id = %s"
        " AND state = 'active' AND expires_at <= now()",
        (tenant_id, bonus_id),
    )


async def lock_account_skip_locked(conn: Conn, tenant_id: str, account_id: int) -> bool:
    """Lock the player account FOR UPDATE unless another transaction holds it."""
    cur = await conn.execute(
        "SELECT 1 FROM accounts WHERE tenant_id = %s AND account_id = %s FOR UPDATE SKIP LOCKED",
        (tenant_id, account_id),
    )
    return await cur.fetchone() is not None

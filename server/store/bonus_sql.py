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
    " requirement, wagered_ppm::text, default_weight_ppm, game_weights, category_weights,"
    " max_bet, max_conversion, expires_at, converted, removed, released, reason, created_at,"
    " closed_at"
)


def _bonus(r: Sequence[Any]) -> BonusRow:
    return BonusRow(
        bonus_id=r[0],
        tenant_id=str(r[1]),
        player_id=str(r[2]),
        currency=str(r[3]),
        state=str(r[4]),
        amount=int(r[5]),
        locked_deposit=int(r[6]),
        multiplier=int(r[7]),
        base=str(r[8]),
        requirement=int(r[9]),
        wagered_ppm=int(r[10]),
        default_weight_ppm=int(r[11]),
        game_weights={str(k): int(v) for k, v in dict(r[12]).items()},
        category_weights={str(k): int(v) for k, v in dict(r[13]).items()},
        max_bet=None if r[14] is None else int(r[14]),
        max_conversion=None if r[15] is None else int(r[15]),
        expires_at=r[16],
        converted=int(r[17]),
        removed=int(r[18]),
        released=int(r[19]),
        reason=str(r[20]),
        created_at=r[21],
        closed_at=r[22],
    )


async def settings(conn: Conn, tenant_id: str) -> SettingsRow:
    """The tenant's bonus settings, or the defaults."""
    cur = await conn.execute(
        "SELECT spend_order, withdrawal_policy FROM bonus_settings WHERE tenant_id = %s",
        (tenant_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return SettingsRow()
    return SettingsRow(tuple(str(x) for x in row[0]), str(row[1]))


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
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bonuses WHERE tenant_id = %s AND bonus_id = %s",
        (tenant_id, bonus_id),
    )
    row = await cur.fetchone()
    return None if row is None else _bonus(row)


async def list_bonuses(
    conn: Conn,
    tenant_id: str,
    player_id: str,
    state: str | None,
    before: datetime | None,
    limit: int,
) -> list[BonusRow]:
    """The player's bonuses created before `before`, newest first, at most `limit`."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bonuses WHERE tenant_id = %s AND player_id = %s"
        "   AND (%s::text IS NULL OR state = %s::text)"
        "   AND (%s::timestamptz IS NULL OR created_at < %s::timestamptz)"
        " ORDER BY created_at DESC, bonus_id LIMIT %s",
        (tenant_id, player_id, state, state, before, before, limit),
    )
    return [_bonus(r) for r in await cur.fetchall()]


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
    cur = await conn.execute(
        "SELECT tenant_id, bonus_id, account_id FROM bonuses"
        " WHERE state = 'active' AND expires_at <= now() AND bonus_id <> ALL(%s::uuid[])"
        " ORDER BY expires_at LIMIT %s",
        (list(exclude), limit),
    )
    return [(str(t), b, int(a)) for t, b, a in await cur.fetchall()]


async def still_expired(conn: Conn, tenant_id: str, bonus_id: uuid.UUID) -> BonusRow | None:
    """The bonus if it is still active and past expiry (the caller holds its account lock)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bonuses WHERE tenant_id = %s AND bonus_id = %s"
        " AND state = 'active' AND expires_at <= now()",
        (tenant_id, bonus_id),
    )
    row = await cur.fetchone()
    return None if row is None else _bonus(row)


async def lock_account_skip_locked(conn: Conn, tenant_id: str, account_id: int) -> bool:
    """Lock the player account FOR UPDATE unless another transaction holds it."""
    cur = await conn.execute(
        "SELECT 1 FROM accounts WHERE tenant_id = %s AND account_id = %s FOR UPDATE SKIP LOCKED",
        (tenant_id, account_id),
    )
    return await cur.fetchone() is not None

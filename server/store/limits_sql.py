"""Player-protection SQL: tenant settings, limits, their audit, per-day usage, exclusions.

Functions take an open connection inside the caller's transaction and return plain tuples or
small dataclasses; they hold no business rules (those are in server/wallet/protection.py).
Local days are computed by PostgreSQL from the tenant's time zone (`rg_tenant_settings`,
'UTC' when the tenant has none).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from server.store.wallet_sql import Conn

DEFAULT_TIME_ZONE = "UTC"
DEFAULT_COOLING_OFF_SECONDS = 86_400

_TZ = "coalesce((SELECT s.time_zone FROM rg_tenant_settings s WHERE s.tenant_id = %(t)s), 'UTC')"
# The limit in force at the statement's transaction time: a pending change whose time came.
_IN_FORCE = (
    "CASE WHEN l.pending_at IS NOT NULL AND l.pending_at <= now()"
    " THEN l.pending_amount ELSE l.amount END"
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Deposits, stakes and wins (minor units) of one window."""

    deposits: int
    stakes: int
    wins: int


@dataclass(frozen=True, slots=True)
class Windows:
    """The tenant's local calendar at the transaction's time: today and the first days of
    this week (Monday) and month, with the usage of each window."""

    time_zone: str
    now: datetime
    today: date
    week: date
    month: date
    usage: dict[str, Usage]  # "day" | "week" | "month" -> usage


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A player's exclusion row; `active` false when its `until` has passed."""

    kind: str
    until: datetime | None
    active: bool
    reason: str


@dataclass(frozen=True, slots=True)
class CheckState:
    """What a bet or deposit is checked against, read in one statement."""

    windows: Windows
    limits: dict[tuple[str, str], int]  # (kind, period) -> limit in force (minor units)
    exclusion: Exclusion | None


@dataclass(frozen=True, slots=True)
class LimitRow:
    """A stored limit row with the limit in force now."""

    currency: str
    kind: str
    period: str
    amount: int | None
    pending_amount: int | None
    pending_at: datetime | None
    in_force: int | None


_WINDOWS = (
    "WITH d AS (SELECT tz, (now() AT TIME ZONE tz)::date AS today"
    f"           FROM (SELECT {_TZ} AS tz) s),"
    " b AS (SELECT tz, today, date_trunc('week', today)::date AS week,"
    "              date_trunc('month', today)::date AS month FROM d)"
)
_USAGE = (
    "(SELECT json_build_array("
    " coalesce(sum(u.deposits) FILTER (WHERE u.day = b.today), 0),"
    " coalesce(sum(u.stakes) FILTER (WHERE u.day = b.today), 0),"
    " coalesce(sum(u.wins) FILTER (WHERE u.day = b.today), 0),"
    " coalesce(sum(u.deposits) FILTER (WHERE u.day >= b.week), 0),"
    " coalesce(sum(u.stakes) FILTER (WHERE u.day >= b.week), 0),"
    " coalesce(sum(u.wins) FILTER (WHERE u.day >= b.week), 0),"
    " coalesce(sum(u.deposits) FILTER (WHERE u.day >= b.month), 0),"
    " coalesce(sum(u.stakes) FILTER (WHERE u.day >= b.month), 0),"
    " coalesce(sum(u.wins) FILTER (WHERE u.day >= b.month), 0))"
    "   FROM rg_usage u WHERE u.tenant_id = %(t)s AND u.player_id = %(p)s"
    "    AND u.currency = %(c)s AND u.day >= least(b.week, b.month) AND u.day <= b.today)"
)


def _windows(row: tuple[Any, ...]) -> Windows:
    tz, now, today, week, month, sums = row
    v = [int(x) for x in sums]
    usage = {
        "day": Usage(v[0], v[1], v[2]),
        "week": Usage(v[3], v[4], v[5]),
        "month": Usage(v[6], v[7], v[8]),
    }
    return Windows(str(tz), now, today, week, month, usage)


async def check_state(conn: Conn, tenant_id: str, player_id: str, currency: str) -> CheckState:
    """The limits in force, the usage of the current windows and the exclusion of the
    player's `currency` account (one statement; call it under the account lock so the usage
    includes every committed request of the account)."""
    cur = await conn.execute(
        f"{_WINDOWS}"
        f" SELECT b.tz, now(), b.today, b.week, b.month, {_USAGE},"
        f"  (SELECT json_agg(json_build_array(l.kind, l.period, {_IN_FORCE}))"
        "     FROM rg_limits l WHERE l.tenant_id = %(t)s AND l.player_id = %(p)s"
        "      AND l.currency = %(c)s),"
        "  (SELECT json_build_array(e.kind, e.until, e.until IS NULL OR e.until > now(), e.reason)"
        "     FROM rg_exclusions e WHERE e.tenant_id = %(t)s AND e.player_id = %(p)s)"
        " FROM b",
        {"t": tenant_id, "p": player_id, "c": currency},
    )
    row = await cur.fetchone()
    assert row is not None
    limits = {(str(k), str(p)): int(a) for k, p, a in (row[6] or []) if a is not None}
    exclusion = None
    if row[7] is not None:
        kind, until, active, reason = row[7]
        exclusion = Exclusion(
            str(kind),
            None if until is None else datetime.fromisoformat(until),
            bool(active),
            reason,
        )
    return CheckState(_windows(row[:6]), limits, exclusion)


async def add_usage(
    conn: Conn,
    tenant_id: str,
    player_id: str,
    currency: str,
    *,
    deposits: int = 0,
    stakes: int = 0,
    wins: int = 0,
    at_hold: uuid.UUID | None = None,
    at: datetime | None = None,
) -> None:
    """Add to the usage of the local day of `at_hold`'s creation, of `at`, or of the
    transaction's time (in that order); no result is read, so it pipelines. The player's
    account in `currency` exists (the caller holds its lock): the row is built from it, so
    on Citus the statement runs on the tenant's shard alone."""
    # (without a hold, no join on holds: a join on `hold_id = NULL` is folded away, and Citus
    # then no longer sees it as a join on the tenant)
    hold_join, hold_time = (
        (" LEFT JOIN holds h ON h.tenant_id = a.tenant_id AND h.hold_id = %(h)s", "h.created_at, ")
        if at_hold is not None
        else ("", "")
    )
    await conn.execute(
        "INSERT INTO rg_usage (tenant_id, player_id, currency, day, deposits, stakes, wins)"
        " SELECT a.tenant_id, a.owner, a.currency,"
        f"   (coalesce({hold_time}%(at)s::timestamptz, now())"
        "      AT TIME ZONE coalesce(s.time_zone, 'UTC'))::date,"
        "   %(d)s, %(s)s, %(w)s"
        "  FROM accounts a"
        "  LEFT JOIN rg_tenant_settings s ON s.tenant_id = a.tenant_id"
        f"{hold_join}"
        " WHERE a.tenant_id = %(t)s AND a.kind = 'player' AND a.owner = %(p)s"
        "   AND a.currency = %(c)s"
        " ON CONFLICT (tenant_id, player_id, currency, day) DO UPDATE"
        "   SET deposits = rg_usage.deposits + EXCLUDED.deposits,"
        "       stakes = rg_usage.stakes + EXCLUDED.stakes,"
        "       wins = rg_usage.wins + EXCLUDED.wins",
        {
            "t": tenant_id,
            "p": player_id,
            "c": currency,
            "h": at_hold,
            "at": at,
            "d": deposits,
            "s": stakes,
            "w": wins,
        },
    )


async def windows(conn: Conn, tenant_id: str, player_id: str, currency: str) -> Windows:
    """The tenant's local calendar now and the player's usage in `currency`."""
    cur = await conn.execute(
        f"{_WINDOWS} SELECT b.tz, now(), b.today, b.week, b.month, {_USAGE} FROM b",
        {"t": tenant_id, "p": player_id, "c": currency},
    )
    row = await cur.fetchone()
    assert row is not None
    return _windows(row)


# -- settings ----------------------------------------------------------------------------------


async def settings(conn: Conn, tenant_id: str) -> tuple[str, int]:
    """(time zone, limit cooling-off seconds) of the tenant, the defaults when never set."""
    cur = await conn.execute(
        "SELECT time_zone, limit_cooling_off_seconds FROM rg_tenant_settings WHERE tenant_id = %s",
        (tenant_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return DEFAULT_TIME_ZONE, DEFAULT_COOLING_OFF_SECONDS
    return str(row[0]), int(row[1])


async def put_settings(conn: Conn, tenant_id: str, time_zone: str, cooling_off: int) -> None:
    """Create or replace the tenant's settings."""
    await conn.execute(
        "INSERT INTO rg_tenant_settings (tenant_id, time_zone, limit_cooling_off_seconds)"
        " VALUES (%s, %s, %s) ON CONFLICT (tenant_id) DO UPDATE"
        " SET time_zone = EXCLUDED.time_zone,"
        "     limit_cooling_off_seconds = EXCLUDED.limit_cooling_off_seconds,"
        "     updated_at = EXCLUDED.updated_at",
        (tenant_id, time_zone, cooling_off),
    )


# -- limits ------------------------------------------------------------------------------------

_LIMIT_COLUMNS = (
    f"l.currency, l.kind, l.period, l.amount, l.pending_amount, l.pending_at, {_IN_FORCE}"
)


def _limit(row: tuple[Any, ...]) -> LimitRow:
    return LimitRow(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        None if row[3] is None else int(row[3]),
        None if row[4] is None else int(row[4]),
        row[5],
        None if row[6] is None else int(row[6]),
    )


async def player_holds(
    conn: Conn, tenant_id: str, player_id: str, currency: str
) -> tuple[bool, bool]:
    """(the player exists, the player has an account in `currency`)."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM players WHERE tenant_id = %(t)s AND player_id = %(p)s),"
        " EXISTS (SELECT 1 FROM accounts WHERE tenant_id = %(t)s AND kind = 'player'"
        "         AND owner = %(p)s AND currency = %(c)s)",
        {"t": tenant_id, "p": player_id, "c": currency},
    )
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


async def lock_limit(
    conn: Conn, tenant_id: str, player_id: str, currency: str, kind: str, period: str
) -> tuple[LimitRow | None, datetime]:
    """Lock (FOR UPDATE) one limit row; with the transaction's time `now()`."""
    cur = await conn.execute(
        f"SELECT now(), (SELECT json_build_array({_LIMIT_COLUMNS}) FROM rg_limits l"
        "  WHERE l.tenant_id = %s AND l.player_id = %s AND l.currency = %s AND l.kind = %s"
        "    AND l.period = %s FOR UPDATE)",
        (tenant_id, player_id, currency, kind, period),
    )
    row = await cur.fetchone()
    assert row is not None
    if row[1] is None:
        return None, row[0]
    j = row[1]
    pending_at = None if j[5] is None else datetime.fromisoformat(j[5])
    return _limit((*j[:5], pending_at, j[6])), row[0]


async def put_limit(
    conn: Conn,
    tenant_id: str,
    player_id: str,
    currency: str,
    kind: str,
    period: str,
    amount: int | None,
    pending_amount: int | None,
    pending_at: datetime | None,
) -> None:
    """Create or replace one limit row (no result is read)."""
    await conn.execute(
        "INSERT INTO rg_limits (tenant_id, player_id, currency, kind, period, amount,"
        " pending_amount, pending_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (tenant_id, player_id, currency, kind, period) DO UPDATE"
        " SET amount = EXCLUDED.amount, pending_amount = EXCLUDED.pending_amount,"
        "     pending_at = EXCLUDED.pending_at, updated_at = EXCLUDED.updated_at",
        (tenant_id, player_id, currency, kind, period, amount, pending_amount, pending_at),
    )


async def insert_limit_change(
    conn: Conn,
    *,
    tenant_id: str,
    player_id: str,
    currency: str,
    kind: str,
    period: str,
    previous: int | None,
    requested: int | None,
    removal: bool,
    applied: bool,
    effective_at: datetime,
    idempotency_key: str,
    reason: str,
) -> uuid.UUID:
    """Append one audit row of a limit change; returns its id."""
    change_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO rg_limit_changes (tenant_id, change_id, player_id, currency, kind, period,"
        " previous_amount, requested, removal, applied, effective_at, idempotency_key, reason)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            tenant_id,
            change_id,
            player_id,
            currency,
            kind,
            period,
            previous,
            requested,
            removal,
            applied,
            effective_at,
            idempotency_key,
            reason,
        ),
    )
    return change_id


async def list_limits(
    conn: Conn, tenant_id: str, player_id: str, currency: str | None
) -> list[LimitRow]:
    """The player's limit rows (all, or of one currency), by currency, kind, period."""
    cur = await conn.execute(
        f"SELECT {_LIMIT_COLUMNS} FROM rg_limits l"
        " WHERE l.tenant_id = %(t)s AND l.player_id = %(p)s"
        "   AND (%(c)s::text IS NULL OR l.currency = %(c)s)"
        " ORDER BY l.currency, array_position(ARRAY['deposit', 'loss', 'wager'], l.kind),"
        "          array_position(ARRAY['day', 'week', 'month'], l.period)",
        {"t": tenant_id, "p": player_id, "c": currency},
    )
    return [_limit(r) for r in await cur.fetchall()]


# -- exclusions --------------------------------------------------------------------------------


async def lock_exclusion(
    conn: Conn, tenant_id: str, player_id: str
) -> tuple[Exclusion | None, datetime]:
    """Lock (FOR UPDATE) the player's exclusion row; with the transaction's time."""
    cur = await conn.execute(
        "SELECT now(), (SELECT json_build_array(e.kind, e.until,"
        "                 e.until IS NULL OR e.until > now(), e.reason)"
        "   FROM rg_exclusions e WHERE e.tenant_id = %s AND e.player_id = %s FOR UPDATE)",
        (tenant_id, player_id),
    )
    row = await cur.fetchone()
    assert row is not None
    if row[1] is None:
        return None, row[0]
    kind, until, active, reason = row[1]
    return (
        Exclusion(
            str(kind), None if until is None else datetime.fromisoformat(until), active, reason
        ),
        row[0],
    )


async def put_exclusion(
    conn: Conn,
    *,
    tenant_id: str,
    player_id: str,
    kind: str,
    until: datetime | None,
    reason: str,
    idempotency_key: str,
) -> None:
    """Create or replace the player's exclusion and append its audit row (no result read)."""
    await conn.execute(
        "INSERT INTO rg_exclusions (tenant_id, player_id, kind, until, reason)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, player_id) DO UPDATE"
        " SET kind = EXCLUDED.kind, until = EXCLUDED.until, reason = EXCLUDED.reason,"
        "     updated_at = EXCLUDED.updated_at",
        (tenant_id, player_id, kind, until, reason),
    )
    await conn.execute(
        "INSERT INTO rg_exclusion_changes (tenant_id, change_id, player_id, kind, until,"
        " idempotency_key, reason) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (tenant_id, uuid.uuid4(), player_id, kind, until, idempotency_key, reason),
    )

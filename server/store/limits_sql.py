"""Player-protection SQL: tenant settings, limits, their audit, per-day usage, exclusions.

Functions take an open connection inside the caller's transaction and return plain tuples or
small dataclasses; they hold no business rules (those are in server/wallet/protection.py).
Local days are computed by PostgreSQL from the tenant's time zone (`rg_tenant_settings`,
'UTC' when the tenant has none).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg.rows import dict_row

from server.store.rows import fetch_all, fetch_one, fetch_scalar
from server.store.statements import Write
from server.types import Conn

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


_WINDOW_COLUMNS = f"b.tz, now(), b.today, b.week, b.month, {_USAGE} AS usage"


def _windows(c: dict[str, Any]) -> Windows:
    """The `_WINDOW_COLUMNS` of a row: the tenant's calendar now and the usage sums."""
    tz, now, today, week, month = c["tz"], c["now"], c["today"], c["week"], c["month"]
    v = [int(x) for x in c["usage"]]
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
    read = await send_check_state(conn, tenant_id, player_id, currency)
    return await read()


async def send_check_state(
    conn: Conn, tenant_id: str, player_id: str, currency: str
) -> Callable[[], Awaitable[CheckState]]:
    """`check_state`, sent now and read later: sent right after the statement that locks the
    account, it shares that statement's round trip and still runs under its lock."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"{_WINDOWS}"
        f" SELECT {_WINDOW_COLUMNS},"
        f"  (SELECT json_agg(json_build_array(l.kind, l.period, {_IN_FORCE}))"
        "     FROM rg_limits l WHERE l.tenant_id = %(t)s AND l.player_id = %(p)s"
        "      AND l.currency = %(c)s) AS limits,"
        "  (SELECT json_build_array(e.kind, e.until, e.until IS NULL OR e.until > now(), e.reason)"
        "     FROM rg_exclusions e WHERE e.tenant_id = %(t)s AND e.player_id = %(p)s)"
        "   AS exclusion"
        " FROM b",
        {"t": tenant_id, "p": player_id, "c": currency},
    )

    async def read() -> CheckState:
        row = await cur.fetchone()
        assert row is not None
        limits = {(str(k), str(p)): int(a) for k, p, a in (row["limits"] or []) if a is not None}
        exclusion = None
        if row["exclusion"] is not None:
            kind, until, active, reason = row["exclusion"]
            exclusion = Exclusion(
                str(kind),
                None if until is None else datetime.fromisoformat(until),
                bool(active),
                reason,
            )
        return CheckState(_windows(row), limits, exclusion)

    return read


def usage_write(
    tenant_id: str,
    player_id: str,
    currency: str,
    *,
    deposits: int = 0,
    stakes: int = 0,
    wins: int = 0,
    at_hold: uuid.UUID | None = None,
    at: datetime | None = None,
) -> Write:
    """Add to the usage (minor units) of the local day of `at_hold`'s creation, of `at`, or of
    the transaction's time (in that order); send it with `server.store.statements`. The
    player's account in `currency` exists (the caller holds its lock): the row is built from
    it, so on Citus the statement runs on the tenant's shard alone."""
    # (without a hold, no join on holds: a join on `hold_id = NULL` is folded away, and Citus
    # then no longer sees it as a join on the tenant)
    hold_join, hold_time = (
        (" LEFT JOIN holds h ON h.tenant_id = a.tenant_id AND h.hold_id = %s", "h.created_at, ")
        if at_hold is not None
        else ("", "")
    )
    return Write(
        "rg_usage",
        "INSERT INTO rg_usage (tenant_id, player_id, currency, day, deposits, stakes, wins)"
        " SELECT a.tenant_id, a.owner, a.currency,"
        f"   (coalesce({hold_time}%s::timestamptz, now())"
        "      AT TIME ZONE coalesce(s.time_zone, 'UTC'))::date,"
        "   %s, %s, %s"
        "  FROM accounts a"
        "  LEFT JOIN rg_tenant_settings s ON s.tenant_id = a.tenant_id"
        f"{hold_join}"
        " WHERE a.tenant_id = %s AND a.kind = 'player' AND a.owner = %s"
        "   AND a.currency = %s"
        " ON CONFLICT (tenant_id, player_id, currency, day) DO UPDATE"
        "   SET deposits = rg_usage.deposits + EXCLUDED.deposits,"
        "       stakes = rg_usage.stakes + EXCLUDED.stakes,"
        "       wins = rg_usage.wins + EXCLUDED.wins",
        (
            at,
            deposits,
            stakes,
            wins,
            *(() if at_hold is None else (at_hold,)),
            tenant_id,
            player_id,
            currency,
        ),
    )


async def windows(conn: Conn, tenant_id: str, player_id: str, currency: str) -> Windows:
    """The tenant's local calendar now and the player's usage in `currency`."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"{_WINDOWS} SELECT {_WINDOW_COLUMNS} FROM b",
        {"t": tenant_id, "p": player_id, "c": currency},
    )
    row = await cur.fetchone()
    assert row is not None
    return _windows(row)


# -- settings ----------------------------------------------------------------------------------


async def settings(conn: Conn, tenant_id: str) -> tuple[str, int]:
    """(time zone, limit cooling-off seconds) of the tenant, the defaults when never set."""
    found = await fetch_one(
        conn,
        _settings,
        "SELECT time_zone, limit_cooling_off_seconds FROM rg_tenant_settings WHERE tenant_id = %s",
        (tenant_id,),
    )
    return (DEFAULT_TIME_ZONE, DEFAULT_COOLING_OFF_SECONDS) if found is None else found


def _settings(*, time_zone: str, limit_cooling_off_seconds: int) -> tuple[str, int]:
    return str(time_zone), int(limit_cooling_off_seconds)


async def time_zone_known(conn: Conn, time_zone: str) -> bool:
    """Whether the database knows the IANA time zone `time_zone`."""
    return bool(
        await fetch_scalar(
            conn, "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = %s)", (time_zone,)
        )
    )


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


def _limit(j: list[Any]) -> LimitRow:
    """A LimitRow from the JSON array of `_LIMIT_COLUMNS` (timestamps as ISO text)."""
    currency, kind, period, amount, pending_amount, pending_at, in_force = j
    return _limit_row(
        currency=currency,
        kind=kind,
        period=period,
        amount=amount,
        pending_amount=pending_amount,
        pending_at=None if pending_at is None else datetime.fromisoformat(pending_at),
        in_force=in_force,
    )


async def player_holds(
    conn: Conn, tenant_id: str, player_id: str, currency: str
) -> tuple[bool, bool]:
    """(the player exists, the player has an account in `currency`)."""
    found = await fetch_one(
        conn,
        _exists,
        "SELECT EXISTS (SELECT 1 FROM players WHERE tenant_id = %(t)s AND player_id = %(p)s)"
        "   AS player,"
        " EXISTS (SELECT 1 FROM accounts WHERE tenant_id = %(t)s AND kind = 'player'"
        "         AND owner = %(p)s AND currency = %(c)s) AS account",
        {"t": tenant_id, "p": player_id, "c": currency},
    )
    assert found is not None
    return found


def _exists(*, player: bool, account: bool) -> tuple[bool, bool]:
    return bool(player), bool(account)


async def lock_limit(
    conn: Conn, tenant_id: str, player_id: str, currency: str, kind: str, period: str
) -> tuple[LimitRow | None, datetime]:
    """Lock (FOR UPDATE) one limit row; with the transaction's time `now()`."""
    found = await fetch_one(
        conn,
        _locked_limit,
        f"SELECT now(), (SELECT json_build_array({_LIMIT_COLUMNS}) FROM rg_limits l"
        "  WHERE l.tenant_id = %s AND l.player_id = %s AND l.currency = %s AND l.kind = %s"
        "    AND l.period = %s FOR UPDATE) AS limit_row",
        (tenant_id, player_id, currency, kind, period),
    )
    assert found is not None
    return found


def _locked_limit(
    *, now: datetime, limit_row: list[Any] | None
) -> tuple[LimitRow | None, datetime]:
    return (None if limit_row is None else _limit(limit_row)), now


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
    return await fetch_all(
        conn,
        _limit_row,
        f"SELECT {_LIMIT_COLUMNS} AS in_force FROM rg_limits l"
        " WHERE l.tenant_id = %(t)s AND l.player_id = %(p)s"
        "   AND (%(c)s::text IS NULL OR l.currency = %(c)s)"
        " ORDER BY l.currency, array_position(ARRAY['deposit', 'loss', 'wager'], l.kind),"
        "          array_position(ARRAY['day', 'week', 'month'], l.period)",
        {"t": tenant_id, "p": player_id, "c": currency},
    )


def _limit_row(
    *,
    currency: str,
    kind: str,
    period: str,
    amount: int | None,
    pending_amount: int | None,
    pending_at: datetime | None,
    in_force: int | None,
) -> LimitRow:
    return LimitRow(
        str(currency),
        str(kind),
        str(period),
        None if amount is None else int(amount),
        None if pending_amount is None else int(pending_amount),
        pending_at,
        None if in_force is None else int(in_force),
    )


# -- exclusions --------------------------------------------------------------------------------


async def lock_exclusion(
    conn: Conn, tenant_id: str, player_id: str
) -> tuple[Exclusion | None, datetime]:
    """Lock (FOR UPDATE) the player's exclusion row; with the transaction's time."""
    found = await fetch_one(
        conn,
        _locked_exclusion,
        "SELECT now(), (SELECT json_build_array(e.kind, e.until,"
        "                 e.until IS NULL OR e.until > now(), e.reason)"
        "   FROM rg_exclusions e WHERE e.tenant_id = %s AND e.player_id = %s FOR UPDATE)"
        "   AS exclusion",
        (tenant_id, player_id),
    )
    assert found is not None
    return found


def _locked_exclusion(
    *, now: datetime, exclusion: list[Any] | None
) -> tuple[Exclusion | None, datetime]:
    if exclusion is None:
        return None, now
    kind, until, active, reason = exclusion
    return (
        Exclusion(
            str(kind), None if until is None else datetime.fromisoformat(until), active, reason
        ),
        now,
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

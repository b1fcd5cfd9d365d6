"""Player protection: deposit, loss and wager limits, exclusions, the tenant's settings.

The rules are in docs/responsible-gaming.md. Limits are checked where the money moves, in the
request's transaction and under the player's account lock (server.wallet.ledger), so
concurrent bets cannot together pass a limit: each one reads the usage every earlier bet of the
account committed. A refused request writes one thing, its `rg.limit.hit` event, before it
raises; the refusal and the event commit with the request's idempotency record.

Amounts are int64 minor units of the account's currency. Windows are calendar windows in the
tenant's time zone: the local day, the ISO week from Monday, the month.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.events.outbox import append_event
from server.events.outbox import money as event_money
from server.money import Money
from server.store import aml_sql, limits_sql, statements
from server.store.limits_sql import CheckState, LimitRow, Windows
from server.store.limits_sql import Exclusion as Exclusion
from server.store.statements import Write
from server.types import Conn
from server.wallet.model import Caller, RoundRef


class LimitKind(enum.Enum):
    """What a limit bounds: deposits, losses (stakes minus wins), wagers (stakes)."""

    DEPOSIT = "deposit"
    LOSS = "loss"
    WAGER = "wager"


class Window(enum.Enum):
    """A calendar window in the tenant's time zone."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


_REASONS = {
    LimitKind.DEPOSIT: "DEPOSIT_LIMIT_EXCEEDED",
    LimitKind.LOSS: "LOSS_LIMIT_EXCEEDED",
    LimitKind.WAGER: "WAGER_LIMIT_EXCEEDED",
}
_KIND_ORDER = (LimitKind.DEPOSIT, LimitKind.LOSS, LimitKind.WAGER)
_WINDOW_ORDER = (Window.DAY, Window.WEEK, Window.MONTH)
MAX_COOLING_OFF_SECONDS = 366 * 86_400


@dataclass(frozen=True, slots=True)
class SetLimit:
    """Set (`amount`) or remove (`amount` None) one limit of the caller's player."""

    caller: Caller
    kind: LimitKind
    window: Window
    currency: str
    amount: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class SetExclusion:
    """Exclude the caller's player: `kind` self_exclusion | cooling_off | closed, until `until`
    (None: permanent)."""

    caller: Caller
    kind: str
    until: datetime | None
    reason: str


@dataclass(frozen=True, slots=True)
class Settings:
    """A tenant's settings: IANA time zone, cooling-off of a raise or removal (seconds), AML
    review thresholds of payouts (currency -> minor units; docs/aml-review.md)."""

    time_zone: str
    limit_cooling_off_seconds: int
    aml_review_thresholds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LimitView:
    """A limit with the usage of its current window (minor units; times aware)."""

    currency: str
    kind: LimitKind
    window: Window
    amount: int | None
    pending_amount: int | None
    pending_removal: bool
    pending_time: datetime | None
    used: int
    remaining: int | None
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True, slots=True)
class SetLimitResult:
    """The limit after a change, and whether the change applied at once."""

    limit: LimitView
    applied: bool


def check_time_zone(name: str, field: str) -> str:
    """An IANA time zone name, or INVALID_ARGUMENT `UNKNOWN_TIME_ZONE` naming `field`."""
    try:
        if not name or len(name) > 64:
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(field, "UNKNOWN_TIME_ZONE", f"{field} must be an IANA time zone") from None
    return name


def window_bounds(windows: Windows, window: Window) -> tuple[datetime, datetime]:
    """[start, end) of the current `window` as aware datetimes in the tenant's zone."""
    first: date
    if window is Window.DAY:
        first, nxt = windows.today, windows.today + timedelta(days=1)
    elif window is Window.WEEK:
        first, nxt = windows.week, windows.week + timedelta(days=7)
    else:
        first = windows.month
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    zone = ZoneInfo(windows.time_zone)
    return datetime.combine(first, time(), zone), datetime.combine(nxt, time(), zone)


def used_of(windows: Windows, kind: LimitKind, window: Window) -> int:
    """What `window` used of a `kind` limit: deposits; stakes minus wins; stakes."""
    u = windows.usage[window.value]
    if kind is LimitKind.DEPOSIT:
        return u.deposits
    if kind is LimitKind.LOSS:
        return u.stakes - u.wins
    return u.stakes


def _view(row: LimitRow, windows: Windows) -> LimitView:
    kind, window = LimitKind(row.kind), Window(row.period)
    used = used_of(windows, kind, window)
    start, end = window_bounds(windows, window)
    pending = row.pending_at is not None and row.pending_at > windows.now
    return LimitView(
        row.currency,
        kind,
        window,
        row.in_force,
        row.pending_amount if pending else None,
        pending and row.pending_amount is None,
        row.pending_at if pending else None,
        used,
        None if row.in_force is None else max(0, row.in_force - used),
        start,
        end,
    )


# -- enforcement (called by server.wallet.ledger under the account lock) ------------------------


async def read_state(conn: Conn, caller: Caller, currency: str) -> CheckState:
    """The player's limits, usage and exclusion for `currency` (one round trip)."""
    return await limits_sql.check_state(conn, caller.tenant_id, caller.player_id, currency)


async def send_read_state(
    conn: Conn, caller: Caller, currency: str
) -> Callable[[], Awaitable[CheckState]]:
    """`read_state` sent now, read later: sent right after the statement that locks the
    player's account it shares that round trip and runs under the lock."""
    return await limits_sql.send_check_state(conn, caller.tenant_id, caller.player_id, currency)


def _precondition(reason: str, message: str, **meta: str) -> DomainError:
    return DomainError(ErrorCode.FAILED_PRECONDITION, reason, message, meta)


def check_may_bet(state: CheckState) -> None:
    """Refuse a stake of an excluded or closed player: FAILED_PRECONDITION
    `PLAYER_SELF_EXCLUDED`, `PLAYER_COOLING_OFF` (with `until`), `ACCOUNT_CLOSED`."""
    _check_exclusion(state, "bet")


def check_may_deposit(state: CheckState) -> None:
    """Refuse a deposit of an excluded or closed player (reasons as `check_may_bet`)."""
    _check_exclusion(state, "deposit")


def _check_exclusion(state: CheckState, what: str) -> None:
    e = state.exclusion
    if e is None or not e.active:
        return
    until = {} if e.until is None else {"until": e.until.isoformat()}
    if e.kind == "closed":
        raise _precondition("ACCOUNT_CLOSED", f"the account is closed: no {what} is accepted")
    if e.kind == "cooling_off":
        raise _precondition("PLAYER_COOLING_OFF", "the player is in a cooling-off period", **until)
    raise _precondition("PLAYER_SELF_EXCLUDED", "the player is self-excluded", **until)


async def _refuse(
    conn: Conn,
    caller: Caller,
    currency: str,
    state: CheckState,
    kind: LimitKind,
    window: Window,
    limit: int,
    used: int,
    amount: int,
    operation: str,
) -> DomainError:
    """Write the `rg.limit.hit` event and return the refusal to raise."""
    remaining = max(0, limit - used)
    _, end = window_bounds(state.windows, window)
    await append_event(
        conn,
        "rg.limit.hit",
        aggregate=f"account:{caller.tenant_id}:{caller.player_id}:{currency}",
        tenant_id=caller.tenant_id,
        payload={
            "player_id": caller.player_id,
            "kind": kind.value,
            "window": window.value,
            "operation": operation,
            "idempotency_key": caller.idempotency_key,
            "limit": event_money(limit, currency),
            "used": event_money(used, currency),
            "attempted": event_money(amount, currency),
            "remaining": event_money(remaining, currency),
            "window_end": end.isoformat(),
        },
    )
    return _precondition(
        _REASONS[kind],
        f"the {kind.value} limit per {window.value} of {limit} minor units leaves {remaining}",
        limit=str(limit),
        window=window.value,
        remaining=str(remaining),
        kind=kind.value,
        currency=currency,
        window_end=end.isoformat(),
    )


async def take_stake(
    conn: Conn, caller: Caller, currency: str, amount: int, state: CheckState, operation: str
) -> None:
    """Check a stake of `amount` against the loss and wager limits (each window) and count it.

    Call after every other check of the request: a refusal writes the `rg.limit.hit` event and
    raises FAILED_PRECONDITION `LOSS_LIMIT_EXCEEDED` / `WAGER_LIMIT_EXCEEDED` with metadata
    limit, window, remaining (minor units); otherwise the stake is added to today's usage.
    """
    await statements.execute(
        conn, await stake_write(conn, caller, currency, amount, state, operation)
    )


async def stake_write(
    conn: Conn, caller: Caller, currency: str, amount: int, state: CheckState, operation: str
) -> Write:
    """`take_stake`'s checks (a refusal is raised as there), then the write that counts the
    stake, for the caller to send with its other writes (server.store.statements)."""
    for kind in (LimitKind.LOSS, LimitKind.WAGER):
        for window in _WINDOW_ORDER:
            limit = state.limits.get((kind.value, window.value))
            if limit is None:
                continue
            used = used_of(state.windows, kind, window)
            if used + amount > limit:
                raise await _refuse(
                    conn, caller, currency, state, kind, window, limit, used, amount, operation
                )
    return limits_sql.usage_write(caller.tenant_id, caller.player_id, currency, stakes=amount)


async def take_deposit(
    conn: Conn, caller: Caller, currency: str, amount: int, state: CheckState
) -> None:
    """Check a deposit against the deposit limits (each window) and count it; a refusal is
    FAILED_PRECONDITION `DEPOSIT_LIMIT_EXCEEDED` (as `take_stake`)."""
    for window in _WINDOW_ORDER:
        limit = state.limits.get((LimitKind.DEPOSIT.value, window.value))
        if limit is None:
            continue
        used = used_of(state.windows, LimitKind.DEPOSIT, window)
        if used + amount > limit:
            raise await _refuse(
                conn,
                caller,
                currency,
                state,
                LimitKind.DEPOSIT,
                window,
                limit,
                used,
                amount,
                "deposit",
            )
    await statements.execute(
        conn, limits_sql.usage_write(caller.tenant_id, caller.player_id, currency, deposits=amount)
    )


async def hold_payout(
    conn: Conn, caller: Caller, ref: RoundRef, currency: str, amount: int
) -> None:
    """Withhold a Credit with reason payout above the tenant's AML review threshold of
    `currency`: open a review carrying the credit and write `aml.alert.opened`, then raise
    FAILED_PRECONDITION `PAYOUT_UNDER_REVIEW` (metadata review_id, threshold). Call after every
    other check of the credit (docs/aml-review.md)."""
    threshold = await aml_sql.threshold(conn, caller.tenant_id, currency)
    if threshold is None or amount <= threshold:
        return
    review = await aml_sql.open_credit_review(
        conn,
        tenant_id=caller.tenant_id,
        player_id=caller.player_id,
        currency=currency,
        amount=amount,
        threshold=threshold,
        credit_request={
            "idempotency_key": caller.idempotency_key,
            "bet_id": ref.bet_id,
            "round_id": ref.round_id,
            "game_id": ref.game_id,
            "metadata": ref.metadata,
        },
    )
    body = {
        "review_id": str(review.review_id),
        "subject": "credit",
        "credit_idempotency_key": caller.idempotency_key,
        "player_id": caller.player_id,
        "amount": event_money(amount, currency),
        "threshold": event_money(threshold, currency),
        "reason": "PAYOUT_ABOVE_THRESHOLD",
    }
    await append_event(
        conn,
        "aml.alert.opened",
        aggregate=f"review:{caller.tenant_id}:{review.review_id}",
        tenant_id=caller.tenant_id,
        payload=body,
    )
    raise _precondition(
        "PAYOUT_UNDER_REVIEW",
        "the payout is above the AML review threshold: an admin must approve it",
        review_id=str(review.review_id),
        threshold=str(threshold),
    )


def count_write(
    tenant_id: str,
    player_id: str,
    currency: str,
    *,
    stakes: int = 0,
    wins: int = 0,
    deposits: int = 0,
    at_hold: uuid.UUID | None = None,
    at: datetime | None = None,
) -> Write | None:
    """Count released stakes (negative), wins or reversed amounts (minor units) that need no
    check, on the local day of the hold's bet (`at_hold`), of `at`, or of now: the write to send
    (server.store.statements), or None when all are 0."""
    if not (stakes or wins or deposits):
        return None
    return limits_sql.usage_write(
        tenant_id,
        player_id,
        currency,
        deposits=deposits,
        stakes=stakes,
        wins=wins,
        at_hold=at_hold,
        at=at,
    )


# -- limits, settings ---------------------------------------------------------------------------


class Protection:
    """Limit and settings changes (through `Wallet.execute`) and reads over the pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def set_limit(self, conn: Conn, cmd: SetLimit) -> SetLimitResult:
        """Set, lower, raise or remove one limit.

        A first limit or a lower one applies at once (any pending raise is dropped); a higher
        one or a removal is stored as pending until now + the tenant's cooling-off, the limit
        in force staying as it is. Audited (`rg_limit_changes`) and published as
        `rg.limit.changed`. Errors: NOT_FOUND `PLAYER_NOT_FOUND`; INVALID_ARGUMENT
        `CURRENCY_NOT_HELD` (field amount.currency).
        """
        c = cmd.caller
        player, holds = await limits_sql.player_holds(conn, c.tenant_id, c.player_id, cmd.currency)
        if not player:
            raise DomainError(ErrorCode.NOT_FOUND, "PLAYER_NOT_FOUND", "no such player")
        if not holds:
            raise invalid(
                "amount.currency",
                "CURRENCY_NOT_HELD",
                f"the player holds no {cmd.currency} account",
            )
        _, cooling = await limits_sql.settings(conn, c.tenant_id)
        row, now = await limits_sql.lock_limit(
            conn, c.tenant_id, c.player_id, cmd.currency, cmd.kind.value, cmd.window.value
        )
        in_force = None if row is None else row.in_force
        pending_at: datetime | None = None
        pending_amount: int | None = None
        if cmd.amount is not None and (in_force is None or cmd.amount <= in_force):
            amount, applied = cmd.amount, True
        elif cmd.amount is None and in_force is None:
            amount, applied = None, True
        elif cooling == 0:
            amount, applied = cmd.amount, True
        else:
            amount, applied = in_force, False
            pending_amount, pending_at = cmd.amount, now + timedelta(seconds=cooling)
        await limits_sql.put_limit(
            conn,
            c.tenant_id,
            c.player_id,
            cmd.currency,
            cmd.kind.value,
            cmd.window.value,
            amount,
            pending_amount,
            pending_at,
        )
        effective = now if pending_at is None else pending_at
        change_id = await limits_sql.insert_limit_change(
            conn,
            tenant_id=c.tenant_id,
            player_id=c.player_id,
            currency=cmd.currency,
            kind=cmd.kind.value,
            period=cmd.window.value,
            previous=in_force,
            requested=cmd.amount,
            removal=cmd.amount is None,
            applied=applied,
            effective_at=effective,
            idempotency_key=c.idempotency_key,
            reason=cmd.reason,
        )

        def m(v: int | None) -> dict[str, Any] | None:
            return None if v is None else event_money(v, cmd.currency)

        await append_event(
            conn,
            "rg.limit.changed",
            aggregate=f"rg:{c.tenant_id}:{c.player_id}",
            tenant_id=c.tenant_id,
            payload={
                "change_id": str(change_id),
                "player_id": c.player_id,
                "currency": cmd.currency,
                "kind": cmd.kind.value,
                "window": cmd.window.value,
                "previous": m(in_force),
                "requested": m(cmd.amount),
                "removal": cmd.amount is None,
                "applied": applied,
                "limit": m(amount),
                "effective_time": effective.isoformat(),
                "reason": cmd.reason,
            },
        )
        windows = await limits_sql.windows(conn, c.tenant_id, c.player_id, cmd.currency)
        stored = LimitRow(
            cmd.currency,
            cmd.kind.value,
            cmd.window.value,
            amount,
            pending_amount,
            pending_at,
            amount,
        )
        return SetLimitResult(_view(stored, windows), applied)

    async def set_exclusion(self, conn: Conn, cmd: SetExclusion) -> limits_sql.Exclusion:
        """Exclude the player (see the SetExclusion RPC), audited and published as
        `rg.exclusion.changed`. An exclusion in force is only extended: a closure stays; an
        earlier end (or a timed one over a permanent one) is refused.

        Errors: NOT_FOUND `PLAYER_NOT_FOUND`; FAILED_PRECONDITION `ACCOUNT_CLOSED`,
        `EXCLUSION_CANNOT_BE_SHORTENED`; INVALID_ARGUMENT `END_TIME_IN_PAST` (end_time, by the
        database's clock).
        """
        c = cmd.caller
        player, _ = await limits_sql.player_holds(conn, c.tenant_id, c.player_id, "")
        if not player:
            raise DomainError(ErrorCode.NOT_FOUND, "PLAYER_NOT_FOUND", "no such player")
        current, now = await limits_sql.lock_exclusion(conn, c.tenant_id, c.player_id)
        if cmd.until is not None and cmd.until <= now:
            raise invalid("end_time", "END_TIME_IN_PAST", "end_time must be in the future")
        if current is not None and current.active:
            if current.kind == "closed":
                raise _precondition("ACCOUNT_CLOSED", "the account is closed for good")
            shorter = current.until is None and cmd.until is not None
            shorter = shorter or (
                current.until is not None and cmd.until is not None and cmd.until < current.until
            )
            if shorter:
                raise _precondition(
                    "EXCLUSION_CANNOT_BE_SHORTENED",
                    "an exclusion in force can only be extended",
                    **({"until": current.until.isoformat()} if current.until else {}),
                )
        await limits_sql.put_exclusion(
            conn,
            tenant_id=c.tenant_id,
            player_id=c.player_id,
            kind=cmd.kind,
            until=cmd.until,
            reason=cmd.reason,
            idempotency_key=c.idempotency_key,
        )
        previous = None
        if current is not None and current.active:
            previous = {
                "kind": current.kind,
                "end_time": None if current.until is None else current.until.isoformat(),
            }
        await append_event(
            conn,
            "rg.exclusion.changed",
            aggregate=f"rg:{c.tenant_id}:{c.player_id}",
            tenant_id=c.tenant_id,
            payload={
                "player_id": c.player_id,
                "kind": cmd.kind,
                "end_time": None if cmd.until is None else cmd.until.isoformat(),
                "previous": previous,
                "reason": cmd.reason,
            },
        )
        return limits_sql.Exclusion(cmd.kind, cmd.until, True, cmd.reason)

    async def exclusion(self, tenant_id: str, player_id: str) -> limits_sql.Exclusion:
        """The player's exclusion. Errors: NOT_FOUND `PLAYER_NOT_FOUND`, `EXCLUSION_NOT_FOUND`."""
        async with self.pool.connection() as conn:
            player, _ = await limits_sql.player_holds(conn, tenant_id, player_id, "")
            if not player:
                raise DomainError(ErrorCode.NOT_FOUND, "PLAYER_NOT_FOUND", "no such player")
            found, _ = await limits_sql.lock_exclusion(conn, tenant_id, player_id)
        if found is None:
            raise DomainError(
                ErrorCode.NOT_FOUND, "EXCLUSION_NOT_FOUND", "the player was never excluded"
            )
        return found

    async def set_settings(self, conn: Conn, tenant_id: str, settings: Settings) -> Settings:
        """Replace the tenant's settings. Errors: INVALID_ARGUMENT `UNKNOWN_TIME_ZONE` (field
        settings.time_zone) for a zone the database does not know either."""
        if not await limits_sql.time_zone_known(conn, settings.time_zone):
            raise invalid(
                "settings.time_zone", "UNKNOWN_TIME_ZONE", "the database does not know this zone"
            )
        await limits_sql.put_settings(
            conn, tenant_id, settings.time_zone, settings.limit_cooling_off_seconds
        )
        await aml_sql.put_thresholds(conn, tenant_id, settings.aml_review_thresholds)
        return settings

    async def settings(self, tenant_id: str) -> Settings:
        """The tenant's settings (defaults: UTC, 24 h)."""
        async with self.pool.connection() as conn:
            tz, cooling = await limits_sql.settings(conn, tenant_id)
            thresholds = await aml_sql.thresholds(conn, tenant_id)
        return Settings(tz, cooling, thresholds)

    async def limits(self, tenant_id: str, player_id: str, currency: str | None) -> list[LimitView]:
        """The player's limits with usage. Errors: NOT_FOUND `PLAYER_NOT_FOUND`."""
        async with self.pool.connection() as conn:
            player, _ = await limits_sql.player_holds(conn, tenant_id, player_id, "")
            if not player:
                raise DomainError(ErrorCode.NOT_FOUND, "PLAYER_NOT_FOUND", "no such player")
            rows = await limits_sql.list_limits(conn, tenant_id, player_id, currency)
            windows: dict[str, Windows] = {}
            for r in rows:
                if r.currency not in windows:
                    windows[r.currency] = await limits_sql.windows(
                        conn, tenant_id, player_id, r.currency
                    )
        views = [_view(r, windows[r.currency]) for r in rows]
        return [v for v in views if v.amount is not None or v.pending_time is not None]

    async def limit(
        self, tenant_id: str, player_id: str, currency: str, kind: LimitKind, window: Window
    ) -> LimitView:
        """One limit. Errors: NOT_FOUND `PLAYER_NOT_FOUND`, `LIMIT_NOT_FOUND`."""
        for v in await self.limits(tenant_id, player_id, currency):
            if v.kind is kind and v.window is window:
                return v
        raise DomainError(
            ErrorCode.NOT_FOUND, "LIMIT_NOT_FOUND", "the player has no such limit in force"
        )


def money_or_none(amount: int | None, currency: str) -> Money | None:
    """Money for an optional amount."""
    return None if amount is None else Money(amount, currency)


KINDS = _KIND_ORDER
WINDOWS = _WINDOW_ORDER

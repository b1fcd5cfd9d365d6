"""The wallet's ledger operations: the business rules of every money movement.

Each write runs inside `Wallet.execute`, which makes it idempotent and atomic: the journal
transaction, its balanced postings (applied to balances by the database), the hold and the
idempotency record commit together or not at all. Rules raise `DomainError` before the first
write. Ledger accounts: each player account has an `available` (cash) and a `held` bucket, and
`bonus` and `locked` buckets for bonus money (docs/bonus.md); the other side of every posting is
a house account of the tenant: `house_game` (captured stakes, wins), `house_cashier` (credits,
debits) or `house_bonus` (bonus money granted and removed).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.events.outbox import event_write
from server.events.outbox import money as event_money
from server.group_commit import WalletGroupCommit
from server.idempotency import (
    RequestKey,
    RetryTransactionError,
    Scope,
    StoredReply,
    is_system_key,
    run_idempotent,
)
from server.money import INT64_MAX, Money
from server.store import bonus_sql, idempotency_sql, statements, wallet_sql
from server.store.bonus_sql import BonusRow, SettingsRow
from server.store.replica import ReadSource
from server.store.statements import Write
from server.store.wallet_sql import AccountRow, HoldRow, Leg, TransactionRow
from server.telemetry import BACKGROUND_ROWS_SET_ASIDE
from server.types import Conn
from server.wallet import protection
from server.wallet.bonus import (
    CATEGORY_KEY,
    DEFAULT_SPEND_ORDER,
    PPM,
    BonusState,
    ForfeitBonus,
    GrantBonus,
    Parts,
    SetBonusSettings,
    WithdrawalPolicy,
    proportional,
    reached,
    take_in_order,
    weights_of,
)
from server.wallet.model import (
    AuthorizeBet,
    AuthorizeResult,
    BalanceView,
    BonusResult,
    Caller,
    CancelBet,
    CancelResult,
    PlayerStatus,
    Rollback,
    RollbackOutcome,
    RollbackResult,
    RoundRef,
    SettleBet,
    SettleResult,
    StatusResult,
    Transfer,
    TransferResult,
)

R = TypeVar("R")

log = logging.getLogger(__name__)

# How long (seconds) the sweeper of one process skips a hold it could not void before trying
# it again.
SET_ASIDE_SECONDS = 300.0

AVAILABLE = "available"
HELD = "held"
BONUS = "bonus"
LOCKED = "locked"
HOUSE_GAME = "house_game"
HOUSE_CASHIER = "house_cashier"
HOUSE_BONUS = "house_bonus"


def _not_found(reason: str, message: str) -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, reason, message)


def _precondition(reason: str, message: str, **meta: str) -> DomainError:
    return DomainError(ErrorCode.FAILED_PRECONDITION, reason, message, meta)


def _system_owned() -> DomainError:
    """A rollback naming a server-owned transaction (a jackpot payout credit, or any key of
    the system namespace): refused, nothing written."""
    return _precondition(
        "TRANSACTION_NOT_REVERSIBLE",
        "this is a server-owned transaction (e.g. a jackpot payout); it cannot be rolled back",
    )


def _check_may_bet(account: AccountRow) -> None:
    """Bets and debits need an active player (blocked / self-excluded are refused)."""
    if account.player_status == PlayerStatus.BLOCKED.value:
        raise _precondition("PLAYER_BLOCKED", "the player is blocked")
    if account.player_status == PlayerStatus.SELF_EXCLUDED.value:
        raise _precondition("PLAYER_SELF_EXCLUDED", "the player is self-excluded")


def _check_funds(account: AccountRow, amount: int, *, cash_only: bool = False) -> None:
    """A stake may take cash, locked and bonus money; a withdrawal or a reversed credit cash
    only. Raises FAILED_PRECONDITION INSUFFICIENT_FUNDS."""
    if (account.available if cash_only else account.spendable) < amount:
        raise _precondition("INSUFFICIENT_FUNDS", "the available balance is too low")


def _check_no_overflow(account: AccountRow, added: int, field: str) -> None:
    """Refuse a request whose amount would take the account past int64.

    The rule kept on every player account: available + held + bonus + locked <= 2^63-1
    (minor units). Then no bucket can overflow, and releasing a hold (held -> available)
    never can either. Raises INVALID_ARGUMENT AMOUNT_OVERFLOW naming `field` (the request's
    amount).
    """
    if account.total + added > INT64_MAX:
        raise invalid(
            field,
            "AMOUNT_OVERFLOW",
            f"{field} would take the account's available + held balance past 2^63-1 minor units",
        )


def _check_release(account: AccountRow, hold: HoldRow) -> None:
    """Refuse voiding a hold whose release would overflow the available balance (an account
    that does not keep available + held <= 2^63-1, e.g. written before that rule).

    Raises FAILED_PRECONDITION AMOUNT_OVERFLOW (nothing in the request is wrong).
    """
    if account.available + hold.amount > INT64_MAX:
        raise _precondition(
            "AMOUNT_OVERFLOW",
            "releasing this hold would take the available balance past 2^63-1 minor units",
            hold_id=str(hold.hold_id),
        )


def _event_write(
    event_type: str,
    tenant_id: str,
    player_id: str,
    tx: uuid.UUID,
    view: BalanceView | None,
    currency: str,
    fields: dict[str, Any],
) -> Write:
    """The INSERT of a wallet event, to send in the transaction that made the change
    (invariant 8).

    Aggregate: the player's account in `currency`, so one account's events keep commit order.
    """
    payload: dict[str, Any] = {
        "transaction_id": str(tx),
        "player_id": player_id,
        **fields,
    }
    if view is not None:
        payload["balance_after"] = {
            "available": event_money(view.spendable, view.currency),
            "held": event_money(view.held, view.currency),
        }
        if view.bonus or view.locked:
            payload["balance_after"].update(
                cash=event_money(view.available, view.currency),
                bonus=event_money(view.bonus, view.currency),
                locked=event_money(view.locked, view.currency),
            )
    return event_write(
        event_type,
        aggregate=f"account:{tenant_id}:{player_id}:{currency}",
        tenant_id=tenant_id,
        payload=payload,
    )


async def _void_hold(
    conn: Conn,
    tenant_id: str,
    hold: HoldRow,
    account: AccountRow,
    tx: uuid.UUID,
    state: str,
    event_type: str,
    fields: dict[str, Any],
) -> BalanceView:
    """Void an open hold in transaction `tx` (held -> each part back where it came from, see
    `_return_legs`), close it as `state` (cancelled or expired) and write its event; return
    the balances after."""
    stake = _parts_of_hold(hold)
    back, got = _return_legs(account.account_id, stake, _live(hold.bonus_id, account))
    await wallet_sql.insert_postings(
        conn,
        tx,
        tenant_id,
        hold.currency,
        [Leg(account.account_id, HELD, -hold.amount), *back],
    )
    await wallet_sql.close_hold(conn, tenant_id, hold.hold_id, state, tx)
    view = _view(account, held=-hold.amount, parts=got)
    if stake.cash != hold.amount:
        fields = {**fields, "released_parts": _parts_money(stake, hold.currency)}
    await statements.execute(
        conn,
        _event_write(
            event_type,
            tenant_id,
            hold.player_id,
            tx,
            view,
            hold.currency,
            {
                "hold_id": str(hold.hold_id),
                "released": event_money(hold.amount, hold.currency),
                **fields,
            },
        ),
    )
    return view


def _with_reason(cmd: Transfer, kind: str) -> RoundRef:
    """The transfer's round reference, its reason (if any) added to the journal metadata as
    `<kind>_reason`, so a rollback knows which limit usage to give back."""
    if not cmd.reason:
        return cmd.ref
    meta = {**cmd.ref.metadata, f"{kind}_reason": cmd.reason}
    return RoundRef(cmd.ref.bet_id, cmd.ref.round_id, cmd.ref.game_id, meta)


async def _uncount(conn: Conn, c: Caller, target: TransactionRow) -> None:
    """Give back the limit usage of a reversed debit or credit, on the target's local day."""
    cur, amount, meta = target.currency, target.amount, target.metadata
    if target.kind == "debit" and meta.get("debit_reason") != "withdrawal":
        await statements.execute(
            conn,
            protection.count_write(
                c.tenant_id, c.player_id, cur, stakes=-amount, at=target.created_at
            ),
        )
    elif target.kind == "credit" and meta.get("credit_reason") == "deposit":
        await statements.execute(
            conn,
            protection.count_write(
                c.tenant_id, c.player_id, cur, deposits=-amount, at=target.created_at
            ),
        )
    elif target.kind == "credit" and meta.get("credit_reason") == "win":
        await statements.execute(
            conn,
            protection.count_write(
                c.tenant_id, c.player_id, cur, wins=-amount, at=target.created_at
            ),
        )


def _round(ref: RoundRef) -> dict[str, Any]:
    return {
        "bet_id": ref.bet_id,
        "round_id": ref.round_id,
        "game_id": ref.game_id,
        "metadata": ref.metadata,
    }


# -- bonus money helpers (docs/bonus.md) -------------------------------------------------------


def _parts_of_hold(hold: HoldRow) -> Parts:
    """The split of a hold's amount over cash, bonus and locked."""
    return Parts(
        hold.amount - hold.bonus_part - hold.locked_part, hold.bonus_part, hold.locked_part
    )


def _live(bonus_id: uuid.UUID | None, account: AccountRow) -> bool:
    """Whether money of the bonus `bonus_id` goes back to the bonus and locked buckets: only
    while that bonus is still the account's active one."""
    return bonus_id is not None and bonus_id == account.bonus_id


def _spend_legs(account_id: int, parts: Parts) -> list[Leg]:
    """The player legs that take `parts` out of cash, bonus and locked."""
    return [
        Leg(account_id, AVAILABLE, -parts.cash),
        Leg(account_id, BONUS, -parts.bonus),
        Leg(account_id, LOCKED, -parts.locked),
    ]


def _return_legs(account_id: int, parts: Parts, live: bool) -> tuple[list[Leg], Parts]:
    """The legs that put `parts` back on the player, and the parts the player got.

    While the bonus is live each part goes back to its bucket. Once it ended (completed,
    forfeited, expired) the locked part is real money and goes to cash, and the bonus part
    goes back to the house's bonus account (the player does not get it).
    """
    if live:
        return [
            Leg(account_id, AVAILABLE, parts.cash),
            Leg(account_id, BONUS, parts.bonus),
            Leg(account_id, LOCKED, parts.locked),
        ], parts
    return [
        Leg(account_id, AVAILABLE, parts.cash + parts.locked),
        Leg(None, AVAILABLE, parts.bonus, house=HOUSE_BONUS),
    ], Parts(cash=parts.cash + parts.locked)


def _parts_money(parts: Parts, currency: str) -> dict[str, Any]:
    return {
        "cash": event_money(parts.cash, currency),
        "bonus": event_money(parts.bonus, currency),
        "locked": event_money(parts.locked, currency),
    }


def _check_max_bet(account: AccountRow, amount: int) -> None:
    """Refuse a stake above the active bonus's max bet: FAILED_PRECONDITION
    BONUS_MAX_BET_EXCEEDED."""
    cap = account.bonus_max_bet
    if account.bonus_id is not None and cap is not None and amount > cap:
        raise _precondition(
            "BONUS_MAX_BET_EXCEEDED",
            f"a bet may not exceed {cap} minor units while the bonus is active",
            max_bet=str(cap),
            bonus_id=str(account.bonus_id),
        )


def _view(
    account: AccountRow, cash: int = 0, held: int = 0, parts: Parts | None = None
) -> BalanceView:
    """The account's balances after adding `cash` to available, `held` to held and `parts`'
    bonus and locked parts to those buckets."""
    p = parts or Parts()
    return BalanceView(
        account.currency,
        account.available + cash + p.cash,
        account.held + held,
        account.bonus + p.bonus,
        account.locked + p.locked,
    )


def _journal_write(
    c: Caller, kind: str, money: Money, ref: RoundRef, target: uuid.UUID | None = None
) -> tuple[uuid.UUID, Write]:
    """The journal row of this request: its transaction id (made here) and its INSERT."""
    tx = uuid.uuid4()
    return tx, wallet_sql.transaction_write(
        transaction_id=tx,
        tenant_id=c.tenant_id,
        player_id=c.player_id,
        kind=kind,
        currency=money.currency,
        amount=money.minor_units,
        idempotency_key=c.idempotency_key,
        round_id=ref.round_id,
        bet_id=ref.bet_id,
        game_id=ref.game_id,
        target_transaction_id=target,
        metadata=ref.metadata,
    )


class Wallet:
    """The wallet over one connection pool. Writes go through `execute`; reads are direct."""

    def __init__(self, pool: AsyncConnectionPool, *, batch: int = 1) -> None:
        """`batch`: most writes group-committed in one transaction (server.group_commit);
        1 (the default) runs every write in its own transaction."""
        self.pool = pool
        # stale-tolerant reads (history): server.store.replica.ReadRouter, else the primary
        self.reads: ReadSource = pool
        self._house_ready: set[tuple[str, str]] = set()
        self.group_commit = WalletGroupCommit(pool, max_batch=batch)
        self.protection = protection.Protection(pool)
        self._set_aside: dict[uuid.UUID, float] = {}  # hold id -> monotonic time to retry
        self._bonus_set_aside: dict[uuid.UUID, float] = {}  # bonus id -> the same

    async def execute(
        self,
        key: RequestKey,
        operation: Callable[[Conn], Awaitable[R]],
        encode_ok: Callable[[R], bytes],
        encode_error: Callable[[DomainError], bytes],
        currency: str | None = None,
        player_id: str | None = None,
    ) -> StoredReply:
        """Run a write once per idempotency key (see server.idempotency.run_idempotent).

        `currency`, when known up front, makes sure the tenant's house accounts exist before
        the transaction starts. `player_id`, for an operation that locks only that player's
        account (and that hold) and posts against house accounts (balances derived, no row
        locked), lets the write share a transaction with concurrent ones, ordered by player
        (server.group_commit); without it the write runs alone.
        """
        if currency:
            await self._ensure_house_accounts(key.tenant_id, currency)

        def alone() -> Awaitable[StoredReply]:
            return run_idempotent(self.pool, key, operation, encode_ok, encode_error)

        if player_id is None:
            return await alone()
        return await self.group_commit.submit(
            key, operation, encode_ok, encode_error, player_id=player_id, alone=alone
        )

    async def ensure_house_accounts(self, tenant_id: str, currency: str) -> None:
        """Create the tenant's house accounts in `currency` if missing (own connection,
        committed; call it before, never inside, a transaction that posts against them)."""
        await self._ensure_house_accounts(tenant_id, currency)

    async def _ensure_house_accounts(self, tenant_id: str, currency: str) -> None:
        """Create the tenant's house accounts in `currency` (committed, outside the request's
        transaction), once per process."""
        if (tenant_id, currency) in self._house_ready:
            return
        async with self.pool.connection() as conn:
            for kind in (HOUSE_GAME, HOUSE_CASHIER, HOUSE_BONUS):
                await wallet_sql.house_account(conn, tenant_id, kind, currency)
        self._house_ready.add((tenant_id, currency))

    async def _lock_account(self, conn: Conn, caller: Caller, currency: str) -> AccountRow:
        account = await wallet_sql.lock_account(conn, caller.tenant_id, caller.player_id, currency)
        if account is None:
            raise await self._no_account(conn, caller, currency)
        return account

    async def _no_account(self, conn: Conn, caller: Caller, currency: str) -> DomainError:
        if await wallet_sql.player_status(conn, caller.tenant_id, caller.player_id) is None:
            return _not_found("PLAYER_NOT_FOUND", "no such player for this tenant")
        return _not_found("ACCOUNT_NOT_FOUND", f"the player has no {currency} account")

    # -- holds -------------------------------------------------------------------------------

    async def authorize_bet(self, conn: Conn, cmd: AuthorizeBet) -> AuthorizeResult:
        """Hold `cmd.amount`: cash, locked and bonus money -> held, taken in the tenant's spend
        order (docs/bonus.md) and recorded on the hold, bound to the bet until
        settle/cancel/expiry.

        Errors: NOT_FOUND PLAYER_NOT_FOUND / ACCOUNT_NOT_FOUND; FAILED_PRECONDITION
        PLAYER_BLOCKED, PLAYER_SELF_EXCLUDED, INSUFFICIENT_FUNDS (invariant 6),
        BONUS_MAX_BET_EXCEEDED (above the active bonus's max bet), BET_CANCELLED
        (a cancel came first), PLAYER_COOLING_OFF, ACCOUNT_CLOSED, LOSS_LIMIT_EXCEEDED,
        WAGER_LIMIT_EXCEEDED (docs/responsible-gaming.md); ALREADY_EXISTS BET_ALREADY_EXISTS;
        INVALID_ARGUMENT AMOUNT_OVERFLOW (held + amount past int64). `expire_time` is the
        database's transaction time plus `ttl_seconds`: expiry is compared with the database's
        clock only.
        """
        c, amount, currency = cmd.caller, cmd.amount.minor_units, cmd.amount.currency
        # the lock and the limits read share one round trip; the limits read runs under the lock
        locked = await wallet_sql.send_lock_account_for_bet(
            conn, c.tenant_id, c.player_id, currency, cmd.ref.bet_id
        )
        read_rg = await protection.send_read_state(conn, c, currency)
        account, hold_state, db_now = await locked()
        rg = await read_rg()
        if account is None:
            raise await self._no_account(conn, c, currency)
        _check_may_bet(account)
        protection.check_may_bet(rg)
        if hold_state == "tombstone":
            raise _precondition("BET_CANCELLED", "a cancel for this bet arrived first")
        if hold_state is not None:
            raise DomainError(
                ErrorCode.ALREADY_EXISTS,
                "BET_ALREADY_EXISTS",
                "this bet_id already has a hold (under another idempotency key)",
            )
        _check_max_bet(account, amount)
        _check_funds(account, amount)
        if account.held + amount > INT64_MAX:  # an account written before available + held <= max
            raise invalid(
                "amount.minor_units", "AMOUNT_OVERFLOW", "the held balance would pass 2^63-1"
            )
        parts = await self._take(conn, c.tenant_id, account, amount)
        usage = await protection.stake_write(conn, c, currency, amount, rg, "bet")
        tx, journal = _journal_write(c, "authorize", cmd.amount, cmd.ref)
        postings = await wallet_sql.postings_write(
            conn,
            tx,
            c.tenant_id,
            currency,
            [*_spend_legs(account.account_id, parts), Leg(account.account_id, HELD, amount)],
        )
        hold_id = uuid.uuid4()
        # the database's clock, the one expiry is checked against (sweeper, SettleBet)
        expires_at = db_now + timedelta(seconds=cmd.ttl_seconds)
        hold = wallet_sql.hold_write(
            hold_id=hold_id,
            tenant_id=c.tenant_id,
            player_id=c.player_id,
            bet_id=cmd.ref.bet_id,
            round_id=cmd.ref.round_id,
            game_id=cmd.ref.game_id,
            account_id=account.account_id,
            currency=currency,
            amount=amount,
            state="open",
            expires_at=expires_at,
            transaction_id=tx,
            bonus_part=parts.bonus,
            locked_part=parts.locked,
            bonus_id=account.bonus_id if parts.cash != amount else None,
            game_category=cmd.ref.metadata.get(CATEGORY_KEY, ""),
            created_at=db_now,
        )
        view = _view(account, held=amount, parts=Parts().minus(parts))
        fields: dict[str, Any] = {
            "hold_id": str(hold_id),
            "amount": event_money(amount, currency),
            "expire_time": expires_at.isoformat(),
            **_round(cmd.ref),
        }
        if parts.cash != amount:
            fields.update(
                amount_parts=_parts_money(parts, currency), bonus_id=str(account.bonus_id)
            )
        event = _event_write(
            "wallet.bet.authorized", c.tenant_id, c.player_id, tx, view, currency, fields
        )
        # one statement for the five writes (server.store.statements)
        await statements.send_together(conn, [usage, journal, postings, hold, event])
        return AuthorizeResult(tx, hold_id, expires_at, view)

    async def _open_hold(
        self, conn: Conn, caller: Caller, bet_id: str
    ) -> tuple[HoldRow, AccountRow]:
        """Lock an open hold of the caller's player and its account (one round trip)."""
        found = await wallet_sql.lock_hold_and_account(conn, caller.tenant_id, bet_id)
        hold = (
            found[0]
            if found
            else await wallet_sql.find_hold(conn, caller.tenant_id, bet_id, lock=True)
        )
        if hold is None or hold.player_id != caller.player_id:
            raise _not_found("BET_NOT_FOUND", "no hold for this bet_id and player")
        if hold.state != "open" or found is None:
            state = "cancelled" if hold.state == "tombstone" else hold.state
            raise _precondition("HOLD_NOT_OPEN", f"the hold is {state}", state=state)
        return found

    async def settle_bet(self, conn: Conn, cmd: SettleBet) -> SettleResult:
        """Capture all or part of the hold and credit the win, in one transaction.

        Succeeds for any open hold whatever the player's status (invariant 6).
        With bonus money (docs/bonus.md): the capture, the release and the win are split in
        the proportions of the hold's parts (`bonus.proportional`); the stake captured counts
        toward the active bonus's wagering at its game weight, and reaching the requirement
        completes the bonus in this transaction.
        Errors: NOT_FOUND BET_NOT_FOUND; FAILED_PRECONDITION HOLD_NOT_OPEN, HOLD_EXPIRED;
        INVALID_ARGUMENT CURRENCY_MISMATCH, CAPTURE_EXCEEDS_HOLD, AMOUNT_OVERFLOW.
        """
        c = cmd.caller
        hold, account = await self._open_hold(conn, c, cmd.ref.bet_id)
        if hold.expired:
            raise _precondition("HOLD_EXPIRED", "the hold expired and is being voided")
        for name, money in (("capture", cmd.capture), ("win", cmd.win)):
            if money is not None and money.currency != hold.currency:
                raise invalid(
                    f"{name}.currency",
                    "CURRENCY_MISMATCH",
                    f"{name}.currency must be the hold's currency {hold.currency}",
                )
        captured = hold.amount if cmd.capture is None else cmd.capture.minor_units
        if captured > hold.amount:
            raise invalid(
                "capture.minor_units",
                "CAPTURE_EXCEEDS_HOLD",
                f"capture exceeds the hold of {hold.amount} minor units",
            )
        win = 0 if cmd.win is None else cmd.win.minor_units
        released = hold.amount - captured
        # available + held after = available + held - captured + win
        _check_no_overflow(account, win - captured, "win.minor_units")
        if account.available + released + win > INT64_MAX:  # an account written before the rule
            raise invalid("win.minor_units", "AMOUNT_OVERFLOW", "the win would overflow int64")
        stake = _parts_of_hold(hold)
        order = await self._order(conn, c.tenant_id, stake.cash != hold.amount)
        captured_parts = proportional(captured, stake, order)
        win_parts = proportional(win, stake, order)
        live = _live(hold.bonus_id, account)
        back, got_back = _return_legs(account.account_id, stake.minus(captured_parts), live)
        paid, got_win = _return_legs(account.account_id, win_parts, live)
        bonus = (
            None
            if account.bonus_id is None
            else await bonus_sql.get_bonus(conn, c.tenant_id, account.bonus_id)
        )
        tx, journal = _journal_write(c, "settle", Money(captured, hold.currency), cmd.ref)
        # limits count the stake on its bet's day (the hold's creation, which closing the hold
        # leaves as it is) and the win on today
        released_usage = protection.count_write(
            c.tenant_id, c.player_id, hold.currency, stakes=-released, at_hold=hold.hold_id
        )
        win_usage = protection.count_write(c.tenant_id, c.player_id, hold.currency, wins=win)
        postings = await wallet_sql.postings_write(
            conn,
            tx,
            c.tenant_id,
            hold.currency,
            [
                Leg(account.account_id, HELD, -hold.amount),
                *back,
                Leg(None, AVAILABLE, captured, house=HOUSE_GAME),
                Leg(None, AVAILABLE, -win, house=HOUSE_GAME),
                *paid,
            ],
        )
        close = wallet_sql.close_hold_write(c.tenant_id, hold.hold_id, "settled", tx)
        got = Parts(
            got_back.cash + got_win.cash,
            got_back.bonus + got_win.bonus,
            got_back.locked + got_win.locked,
        )
        view = _view(account, held=-hold.amount, parts=got)
        fields: dict[str, Any] = {
            "hold_id": str(hold.hold_id),
            "held": event_money(hold.amount, hold.currency),
            "captured": event_money(captured, hold.currency),
            "released": event_money(released, hold.currency),
            "win": event_money(win, hold.currency),
            **_round(cmd.ref),
        }
        if stake.cash != hold.amount:
            fields.update(
                captured_parts=_parts_money(captured_parts, hold.currency),
                win_parts=_parts_money(win_parts, hold.currency),
                bonus_id=str(hold.bonus_id),
            )
        event = _event_write(
            "wallet.bet.settled", c.tenant_id, c.player_id, tx, view, hold.currency, fields
        )
        # as few statements as server.store.statements allows (two usage rows: two statements)
        await statements.send_together(
            conn, [journal, released_usage, win_usage, postings, close, event]
        )
        if bonus is not None and captured > 0:
            weight = weights_of(bonus).of(hold.game_id, hold.game_category)
            bonus = replace(bonus, wagered_ppm=bonus.wagered_ppm + captured * weight)
            await bonus_sql.add_wagered(conn, c.tenant_id, bonus.bonus_id, captured * weight)
            if reached(bonus):
                _, view = await self._close_bonus(
                    conn, c.tenant_id, account, view, bonus, BonusState.COMPLETED, "", None
                )
        return SettleResult(tx, hold.currency, captured, released, win, view)

    async def cancel_bet(self, conn: Conn, cmd: CancelBet) -> CancelResult:
        """Void the hold (held -> available). Unknown bet: record a tombstone and succeed.

        Errors: NOT_FOUND BET_NOT_FOUND (another player's bet); FAILED_PRECONDITION
        HOLD_NOT_OPEN, AMOUNT_OVERFLOW (the release would pass int64).
        """
        c = cmd.caller
        meta = {**cmd.ref.metadata, **({"reason": cmd.reason} if cmd.reason else {})}
        ref = RoundRef(cmd.ref.bet_id, cmd.ref.round_id, cmd.ref.game_id, meta)
        if await wallet_sql.find_hold(conn, c.tenant_id, cmd.ref.bet_id, lock=True) is None:
            tx = await self._journal(conn, c, "cancel", Money(0, ""), ref)
            await statements.execute(
                conn,
                wallet_sql.hold_write(
                    hold_id=uuid.uuid4(),
                    tenant_id=c.tenant_id,
                    player_id=c.player_id,
                    bet_id=cmd.ref.bet_id,
                    round_id=cmd.ref.round_id,
                    game_id=cmd.ref.game_id,
                    account_id=None,
                    currency="",
                    amount=0,
                    state="tombstone",
                    expires_at=None,
                    transaction_id=tx,
                ),
            )
            return CancelResult(tx, "", 0, None)
        hold, account = await self._open_hold(conn, c, cmd.ref.bet_id)
        _check_release(account, hold)
        tx = await self._journal(conn, c, "cancel", Money(hold.amount, hold.currency), ref)
        await statements.execute(
            conn,
            protection.count_write(
                c.tenant_id, c.player_id, hold.currency, stakes=-hold.amount, at_hold=hold.hold_id
            ),
        )
        view = await _void_hold(
            conn,
            c.tenant_id,
            hold,
            account,
            tx,
            "cancelled",
            "wallet.bet.cancelled",
            {"reason": cmd.reason, **_round(cmd.ref)},
        )
        return CancelResult(tx, hold.currency, hold.amount, view)

    async def expire_holds(self, limit: int = 100) -> int:
        """Void up to `limit` open holds past their expiry (held -> available); return how many
        were looked at (voided or set aside).

        Safe to run in several processes at once (SKIP LOCKED). Each hold is voided in its own
        transaction on its tenant's rows only (one shard group on a distributed database): a
        hold that cannot be voided (its release would pass int64, or the database refuses it)
        is rolled back alone, logged, counted in
        `croupier_background_rows_set_aside_total{job="hold_expiry"}` and skipped by this
        process for `SET_ASIDE_SECONDS`, so it never stops the sweep for other holds or tenants.
        """
        now = time.monotonic()
        for hold_id, until in list(self._set_aside.items()):
            if until <= now:
                del self._set_aside[hold_id]
        async with self.pool.connection() as conn:
            due = await wallet_sql.expired_holds(conn, limit, list(self._set_aside))
        for tenant_id, hold_id in due:
            bet_id = ""
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    found = await wallet_sql.lock_expired_hold(conn, tenant_id, hold_id)
                    if found is None:  # voided or settled meanwhile, or another sweeper's
                        continue
                    hold, (bet_id, round_id, game_id) = found
                    await self._expire_one(conn, hold, tenant_id, bet_id, round_id, game_id)
            except (
                DomainError,
                psycopg.errors.DataError,
                psycopg.errors.IntegrityError,
            ) as exc:
                reason = exc.reason if isinstance(exc, DomainError) else type(exc).__name__
                BACKGROUND_ROWS_SET_ASIDE.labels("hold_expiry", reason).inc()
                log.error(
                    "hold %s (tenant %s, bet %s) cannot be voided, set aside: %s",
                    hold_id,
                    tenant_id,
                    bet_id,
                    exc,
                )
                self._set_aside[hold_id] = now + SET_ASIDE_SECONDS
        return len(due)

    async def _expire_one(
        self, conn: Conn, hold: HoldRow, tenant_id: str, bet_id: str, round_id: str, game_id: str
    ) -> None:
        """Void one expired hold (locked by the caller) by a journal transaction of kind expire."""
        assert hold.account_id is not None
        account = await wallet_sql.lock_account_by_id(conn, tenant_id, hold.account_id)
        _check_release(account, hold)
        tx = uuid.uuid4()
        await statements.execute(
            conn,
            wallet_sql.transaction_write(
                transaction_id=tx,
                tenant_id=tenant_id,
                player_id=hold.player_id,
                kind="expire",
                currency=hold.currency,
                amount=hold.amount,
                idempotency_key=None,
                round_id=round_id,
                bet_id=bet_id,
                game_id=game_id,
            ),
        )
        await statements.execute(
            conn,
            protection.count_write(
                tenant_id,
                hold.player_id,
                hold.currency,
                stakes=-hold.amount,
                at_hold=hold.hold_id,
            ),
        )
        await _void_hold(
            conn,
            tenant_id,
            hold,
            account,
            tx,
            "expired",
            "wallet.bet.expired",
            _round(RoundRef(bet_id, round_id, game_id, {})),
        )

    # -- transfers ---------------------------------------------------------------------------

    async def credit(self, conn: Conn, cmd: Transfer) -> TransferResult:
        """Credit the player's available balance; opens player and account on first credit.

        Always succeeds whatever the player's status (invariant 6); refuses only an int64
        overflow (INVALID_ARGUMENT AMOUNT_OVERFLOW: available + held + amount past 2^63-1) and,
        for a deposit (`cmd.reason` "deposit"), an excluded player (FAILED_PRECONDITION
        PLAYER_SELF_EXCLUDED, PLAYER_COOLING_OFF, ACCOUNT_CLOSED) or a deposit limit
        (DEPOSIT_LIMIT_EXCEEDED; docs/responsible-gaming.md). A "win" counts against losses. A
        "payout" above the tenant's AML threshold is withheld for review: FAILED_PRECONDITION
        PAYOUT_UNDER_REVIEW (docs/aml-review.md).
        """
        c, amount, currency = cmd.caller, cmd.amount.minor_units, cmd.amount.currency
        if cmd.reason == "deposit":  # an excluded player's deposit opens no account either
            protection.check_may_deposit(await protection.read_state(conn, c, currency))
        await wallet_sql.open_account(conn, c.tenant_id, c.player_id, currency)
        account = await self._lock_account(conn, c, currency)
        rg = None
        if cmd.reason == "deposit":  # again under the account lock: the usage is current
            rg = await protection.read_state(conn, c, currency)
            protection.check_may_deposit(rg)
        _check_no_overflow(account, amount, "amount.minor_units")
        if rg is not None:
            await protection.take_deposit(conn, c, currency, amount, rg)
        elif cmd.reason == "win":
            await statements.execute(
                conn, protection.count_write(c.tenant_id, c.player_id, currency, wins=amount)
            )
        elif cmd.reason == "payout":
            await protection.hold_payout(conn, c, cmd.ref, currency, amount)
        tx = await self._journal(conn, c, "credit", cmd.amount, _with_reason(cmd, "credit"))
        await wallet_sql.insert_postings(
            conn,
            tx,
            c.tenant_id,
            currency,
            [
                Leg(None, AVAILABLE, -amount, house=HOUSE_CASHIER),
                Leg(account.account_id, AVAILABLE, amount),
            ],
        )
        view = _view(account, cash=amount)
        await statements.execute(
            conn,
            _event_write(
                "wallet.credited",
                c.tenant_id,
                c.player_id,
                tx,
                view,
                currency,
                {
                    "amount": event_money(amount, currency),
                    **_round(cmd.ref),
                },
            ),
        )
        return TransferResult(tx, view)

    async def debit(self, conn: Conn, cmd: Transfer) -> TransferResult:
        """Debit the player (no overdraft). A stake takes cash, locked and bonus money in the
        tenant's spend order; a withdrawal takes cash only, and while a bonus is active the
        tenant's withdrawal policy either refuses it or forfeits the bonus first, in this
        transaction (docs/bonus.md).

        Errors: NOT_FOUND PLAYER_NOT_FOUND / ACCOUNT_NOT_FOUND; FAILED_PRECONDITION
        PLAYER_BLOCKED, PLAYER_SELF_EXCLUDED, INSUFFICIENT_FUNDS, BONUS_MAX_BET_EXCEEDED (a
        stake), BONUS_ACTIVE (a withdrawal under the refuse policy); unless `cmd.reason` is
        "withdrawal", PLAYER_COOLING_OFF, ACCOUNT_CLOSED, LOSS_LIMIT_EXCEEDED,
        WAGER_LIMIT_EXCEEDED (docs/responsible-gaming.md).
        """
        c, amount, currency = cmd.caller, cmd.amount.minor_units, cmd.amount.currency
        account = await self._lock_account(conn, c, currency)
        _check_may_bet(account)
        rg = None
        withdrawal = cmd.reason == "withdrawal"
        forfeit: BonusRow | None = None
        if withdrawal:
            if account.bonus_id is not None:
                policy = (await bonus_sql.settings(conn, c.tenant_id)).withdrawal_policy
                if policy != WithdrawalPolicy.FORFEIT.value:
                    raise _precondition(
                        "BONUS_ACTIVE",
                        "a withdrawal is refused while a bonus is active (forfeit it first)",
                        bonus_id=str(account.bonus_id),
                    )
                forfeit = await bonus_sql.get_bonus(conn, c.tenant_id, account.bonus_id)
            # a forfeit releases the locked money to cash before the withdrawal takes it
            if account.available + (account.locked if forfeit else 0) < amount:
                raise _precondition("INSUFFICIENT_FUNDS", "the available balance is too low")
        else:
            rg = await protection.read_state(conn, c, currency)
            protection.check_may_bet(rg)
            _check_max_bet(account, amount)
            _check_funds(account, amount)
        before = _view(account)
        if forfeit is not None:
            _, before = await self._close_bonus(
                conn,
                c.tenant_id,
                account,
                before,
                forfeit,
                BonusState.FORFEITED,
                "withdrawal",
                None,
            )
        parts = (
            Parts(cash=amount)
            if withdrawal
            else await self._take(conn, c.tenant_id, account, amount)
        )
        if rg is not None:
            await protection.take_stake(conn, c, currency, amount, rg, "debit")
        ref = _with_reason(cmd, "debit")
        if parts.cash != amount:
            ref = RoundRef(
                ref.bet_id,
                ref.round_id,
                ref.game_id,
                {**ref.metadata, "bonus_id": str(account.bonus_id)},
            )
        tx = await self._journal(conn, c, "debit", cmd.amount, ref)
        await wallet_sql.insert_postings(
            conn,
            tx,
            c.tenant_id,
            currency,
            [
                *_spend_legs(account.account_id, parts),
                Leg(None, AVAILABLE, amount, house=HOUSE_CASHIER),
            ],
        )
        view = BalanceView(
            currency,
            before.available - parts.cash,
            before.held,
            before.bonus - parts.bonus,
            before.locked - parts.locked,
        )
        fields: dict[str, Any] = {"amount": event_money(amount, currency), **_round(cmd.ref)}
        if parts.cash != amount:
            fields.update(
                amount_parts=_parts_money(parts, currency), bonus_id=str(account.bonus_id)
            )
        await statements.execute(
            conn,
            _event_write("wallet.debited", c.tenant_id, c.player_id, tx, view, currency, fields),
        )
        return TransferResult(tx, view)

    async def rollback(self, conn: Conn, cmd: Rollback) -> RollbackResult:
        """Reverse a debit or credit (the sportsbook's transaction-rollback).

        By idempotency key: an unknown key is tombstoned (no balance change, success; the
        original is refused if it comes later); a key whose request was refused has nothing to
        reverse. Only the wallet's own keys are looked up: a server-owned transaction (a key
        of the system namespace, e.g. a jackpot payout credit) is neither reversed nor
        tombstoned. Errors: NOT_FOUND TRANSACTION_NOT_FOUND; FAILED_PRECONDITION
        TRANSACTION_NOT_REVERSIBLE, TRANSACTION_ALREADY_ROLLED_BACK, INSUFFICIENT_FUNDS,
        AMOUNT_OVERFLOW (reversing a debit would pass available + held <= 2^63-1).
        """
        c = cmd.caller
        meta = dict(cmd.metadata)
        no_ref = RoundRef("", "", "", meta)
        target: TransactionRow | None
        if cmd.target_key is not None:
            if is_system_key(cmd.target_key):
                raise _system_owned()
            meta["target_idempotency_key"] = cmd.target_key
            record = await idempotency_sql.fetch(
                conn, c.tenant_id, Scope.WALLET, cmd.target_key, lock=True
            )
            if record is None:
                if not await idempotency_sql.tombstone(
                    conn, c.tenant_id, Scope.WALLET, cmd.target_key
                ):
                    raise RetryTransactionError("the target key was claimed concurrently")
                tx = await self._journal(conn, c, "rollback", Money(0, ""), no_ref)
                return RollbackResult(tx, RollbackOutcome.TOMBSTONED, None, "", 0, None)
            if record.state == "tombstone":
                raise _precondition(
                    "TRANSACTION_ALREADY_ROLLED_BACK",
                    "a rollback for this key was already recorded",
                )
            target = await wallet_sql.transaction_by_key(conn, c.tenant_id, cmd.target_key)
            if target is None:
                if record.method not in ("Debit", "Credit"):
                    raise _precondition(
                        "TRANSACTION_NOT_REVERSIBLE", "only a Debit or Credit can be rolled back"
                    )
                tx = await self._journal(conn, c, "rollback", Money(0, ""), no_ref)
                return RollbackResult(tx, RollbackOutcome.NOTHING_TO_REVERSE, None, "", 0, None)
        else:
            assert cmd.target_transaction_id is not None
            target = await wallet_sql.get_transaction(conn, c.tenant_id, cmd.target_transaction_id)
        if target is None or target.player_id != c.player_id:
            raise _not_found("TRANSACTION_NOT_FOUND", "no such transaction for this player")
        if target.kind not in ("debit", "credit"):
            raise _precondition(
                "TRANSACTION_NOT_REVERSIBLE",
                "only a Debit or Credit can be rolled back; use CancelBet",
            )
        if is_system_key(target.idempotency_key):
            raise _system_owned()
        if await wallet_sql.rollback_of(conn, c.tenant_id, target.transaction_id) is not None:
            raise _precondition(
                "TRANSACTION_ALREADY_ROLLED_BACK", "this transaction was already rolled back"
            )
        account = await self._lock_account(conn, c, target.currency)
        delta = target.amount if target.kind == "debit" else -target.amount
        if delta < 0:
            _check_funds(account, -delta, cash_only=True)
        else:
            field = "target_idempotency_key" if cmd.target_key else "target_transaction_id"
            if account.total + delta > INT64_MAX:
                raise _precondition(
                    "AMOUNT_OVERFLOW",
                    f"reversing the transaction named by {field} would take the account's"
                    " available + held balance past 2^63-1 minor units",
                    field=field,
                )
        ref = RoundRef(target.bet_id, target.round_id, target.game_id, meta)
        await _uncount(conn, c, target)
        tx = await self._journal(
            conn,
            c,
            "rollback",
            Money(target.amount, target.currency),
            ref,
            target=target.transaction_id,
        )
        # a debit's parts go back where they came from (see _return_legs); a credit went to cash
        taken = Parts(
            -sum(a for k, b, _, a in target.postings if k == "player" and b == AVAILABLE),
            -sum(a for k, b, _, a in target.postings if k == "player" and b == BONUS),
            -sum(a for k, b, _, a in target.postings if k == "player" and b == LOCKED),
        )
        if delta > 0 and taken.cash != delta:
            live = account.bonus_id is not None and target.metadata.get("bonus_id") == str(
                account.bonus_id
            )
            back, got = _return_legs(account.account_id, taken, live)
        else:
            back, got = [Leg(account.account_id, AVAILABLE, delta)], Parts(cash=delta)
        await wallet_sql.insert_postings(
            conn,
            tx,
            c.tenant_id,
            target.currency,
            [*back, Leg(None, AVAILABLE, -delta, house=HOUSE_CASHIER)],
        )
        view = _view(account, parts=got)
        await statements.execute(
            conn,
            _event_write(
                "wallet.rolled_back",
                c.tenant_id,
                c.player_id,
                tx,
                view,
                target.currency,
                {
                    "target_transaction_id": str(target.transaction_id),
                    "target_kind": target.kind,
                    "reversed": event_money(delta, target.currency),
                    **_round(ref),
                    **(
                        {"reversed_parts": _parts_money(taken, target.currency)}
                        if delta > 0 and taken.cash != delta
                        else {}
                    ),
                },
            ),
        )
        return RollbackResult(
            tx, RollbackOutcome.REVERSED, target.transaction_id, target.currency, delta, view
        )

    async def set_player_status(
        self, conn: Conn, caller: Caller, status: PlayerStatus
    ) -> StatusResult:
        """Set the player's status, opening the player if unknown."""
        previous = await wallet_sql.set_player_status(
            conn, caller.tenant_id, caller.player_id, status.value
        )
        return StatusResult(None if previous is None else PlayerStatus(previous), status)

    async def _journal(
        self,
        conn: Conn,
        c: Caller,
        kind: str,
        money: Money,
        ref: RoundRef,
        target: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Append the journal row of this request (id made here, so it pipelines)."""
        tx, write = _journal_write(c, kind, money, ref, target)
        await statements.execute(conn, write)
        return tx

    # -- bonus money (docs/bonus.md) ---------------------------------------------------------

    async def _order(self, conn: Conn, tenant_id: str, needed: bool) -> Sequence[str]:
        """The tenant's spend order, read only when `needed` (money other than cash is
        involved); the default otherwise."""
        if not needed:
            return DEFAULT_SPEND_ORDER
        return (await bonus_sql.settings(conn, tenant_id)).spend_order

    async def _take(self, conn: Conn, tenant_id: str, account: AccountRow, amount: int) -> Parts:
        """Split a stake of `amount` over the account's cash, locked and bonus money in the
        tenant's spend order (all cash for an account without bonus money)."""
        if account.bonus == 0 and account.locked == 0:
            return Parts(cash=amount)
        order = await self._order(conn, tenant_id, True)
        return take_in_order(amount, Parts(account.available, account.bonus, account.locked), order)

    async def _close_bonus(
        self,
        conn: Conn,
        tenant_id: str,
        account: AccountRow,
        view: BalanceView,
        bonus: BonusRow,
        state: BonusState,
        reason: str,
        idempotency_key: str | None,
    ) -> tuple[uuid.UUID, BalanceView]:
        """Close the active `bonus` of `account`, whose balances are `view`, by a journal
        transaction of kind bonus; return it and the balances after.

        Completed: the bonus money is converted to cash up to the max conversion and the rest
        goes back to the house's bonus account. Forfeited or expired: all of it goes back.
        Either way the locked money is released to cash. Writes the wallet.bonus.<state>
        event.
        """
        currency = bonus.currency
        cap = bonus.max_conversion
        converted = 0
        if state is BonusState.COMPLETED:
            converted = view.bonus if cap is None else min(view.bonus, cap)
        removed = view.bonus - converted
        released = view.locked
        tx = uuid.uuid4()
        await statements.execute(
            conn,
            wallet_sql.transaction_write(
                transaction_id=tx,
                tenant_id=tenant_id,
                player_id=bonus.player_id,
                kind="bonus",
                currency=currency,
                amount=view.bonus + released,
                idempotency_key=idempotency_key,
                metadata={"bonus_id": str(bonus.bonus_id), "bonus_state": state.value},
            ),
        )
        await wallet_sql.insert_postings(
            conn,
            tx,
            tenant_id,
            currency,
            [
                Leg(account.account_id, BONUS, -view.bonus),
                Leg(account.account_id, AVAILABLE, converted),
                Leg(None, AVAILABLE, removed, house=HOUSE_BONUS),
                Leg(account.account_id, LOCKED, -released),
                Leg(account.account_id, AVAILABLE, released),
            ],
        )
        await bonus_sql.close_bonus(
            conn,
            tenant_id,
            bonus.bonus_id,
            state.value,
            converted=converted,
            removed=removed,
            released=released,
            reason=reason,
            transaction_id=tx,
        )
        after = BalanceView(currency, view.available + converted + released, view.held, 0, 0)
        fields: dict[str, Any] = {
            "bonus_id": str(bonus.bonus_id),
            "converted": event_money(converted, currency),
            "removed": event_money(removed, currency),
            "released": event_money(released, currency),
            "wagered": event_money(bonus.wagered_ppm // PPM, currency),
            "requirement": event_money(bonus.requirement, currency),
        }
        if state is not BonusState.COMPLETED:
            fields["reason"] = reason
        await statements.execute(
            conn,
            _event_write(
                f"wallet.bonus.{state.value}",
                tenant_id,
                bonus.player_id,
                tx,
                after,
                currency,
                fields,
            ),
        )
        return tx, after

    async def grant_bonus(self, conn: Conn, cmd: GrantBonus) -> BonusResult:
        """Grant bonus money funded by the tenant's house bonus account, and lock
        `cmd.locked_deposit_minor` of the player's cash with it (cash -> locked).

        A bonus with a zero requirement completes at once. Errors: NOT_FOUND
        PLAYER_NOT_FOUND / ACCOUNT_NOT_FOUND; FAILED_PRECONDITION PLAYER_BLOCKED,
        PLAYER_SELF_EXCLUDED, PLAYER_COOLING_OFF, ACCOUNT_CLOSED, BONUS_ALREADY_ACTIVE (one
        active bonus per player and currency), INSUFFICIENT_FUNDS (the deposit to lock is more
        than the cash), EXPIRE_TIME_PASSED; INVALID_ARGUMENT AMOUNT_OVERFLOW.
        """
        c, currency = cmd.caller, cmd.currency
        account = await self._lock_account(conn, c, currency)
        _check_may_bet(account)
        protection.check_may_bet(await protection.read_state(conn, c, currency))
        if account.bonus_id is not None:
            raise _precondition(
                "BONUS_ALREADY_ACTIVE",
                "the player already has an active bonus in this currency",
                bonus_id=str(account.bonus_id),
            )
        _check_funds(account, cmd.locked_deposit_minor, cash_only=True)
        _check_no_overflow(account, cmd.amount_minor, "amount.minor_units")
        bonus_id = uuid.uuid4()
        tx = await self._journal(
            conn,
            c,
            "bonus",
            Money(cmd.amount_minor, currency),
            RoundRef(
                "", "", "", {**cmd.metadata, "bonus_id": str(bonus_id), "bonus_state": "granted"}
            ),
        )
        locked = cmd.locked_deposit_minor
        await wallet_sql.insert_postings(
            conn,
            tx,
            c.tenant_id,
            currency,
            [
                Leg(None, AVAILABLE, -cmd.amount_minor, house=HOUSE_BONUS),
                Leg(account.account_id, BONUS, cmd.amount_minor),
                Leg(account.account_id, AVAILABLE, -locked),
                Leg(account.account_id, LOCKED, locked),
            ],
        )
        await bonus_sql.insert_bonus(
            conn,
            bonus_id=bonus_id,
            tenant_id=c.tenant_id,
            player_id=c.player_id,
            currency=currency,
            account_id=account.account_id,
            amount=cmd.amount_minor,
            locked_deposit=locked,
            multiplier=cmd.multiplier,
            base=cmd.base.value,
            requirement=cmd.requirement_minor,
            default_weight_ppm=cmd.weights.default_ppm,
            game_weights=dict(cmd.weights.by_game),
            category_weights=dict(cmd.weights.by_category),
            max_bet=cmd.max_bet_minor,
            max_conversion=cmd.max_conversion_minor,
            expires_at=cmd.expire_time,
            transaction_id=tx,
        )
        view = _view(account, cash=-locked, parts=Parts(0, cmd.amount_minor, locked))
        await statements.execute(
            conn,
            _event_write(
                "wallet.bonus.granted",
                c.tenant_id,
                c.player_id,
                tx,
                view,
                currency,
                {
                    "bonus_id": str(bonus_id),
                    "amount": event_money(cmd.amount_minor, currency),
                    "locked_deposit": event_money(locked, currency),
                    "requirement": event_money(cmd.requirement_minor, currency),
                    "expire_time": cmd.expire_time.isoformat(),
                },
            ),
        )
        bonus = await bonus_sql.get_bonus(conn, c.tenant_id, bonus_id)
        assert bonus is not None
        if reached(bonus):
            _, view = await self._close_bonus(
                conn, c.tenant_id, account, view, bonus, BonusState.COMPLETED, "", None
            )
            bonus = await bonus_sql.get_bonus(conn, c.tenant_id, bonus_id)
            assert bonus is not None
        return BonusResult(tx, bonus, view)

    async def forfeit_bonus(self, conn: Conn, cmd: ForfeitBonus) -> BonusResult:
        """Forfeit the player's active bonus: its bonus money goes back to the house, its
        locked money to cash. Errors: NOT_FOUND BONUS_NOT_FOUND; FAILED_PRECONDITION
        BONUS_NOT_ACTIVE."""
        c = cmd.caller
        found = await bonus_sql.get_bonus(conn, c.tenant_id, cmd.bonus_id)
        if found is None or found.player_id != c.player_id:
            raise _not_found("BONUS_NOT_FOUND", "no such bonus for this player")
        account = await self._lock_account(conn, c, found.currency)
        bonus = await bonus_sql.get_bonus(conn, c.tenant_id, cmd.bonus_id)  # under the lock
        assert bonus is not None
        if bonus.state != BonusState.ACTIVE.value:
            raise _precondition(
                "BONUS_NOT_ACTIVE", f"the bonus is {bonus.state}", state=bonus.state
            )
        tx, view = await self._close_bonus(
            conn,
            c.tenant_id,
            account,
            _view(account),
            bonus,
            BonusState.FORFEITED,
            cmd.reason,
            c.idempotency_key,
        )
        closed = await bonus_sql.get_bonus(conn, c.tenant_id, cmd.bonus_id)
        assert closed is not None
        return BonusResult(tx, closed, view)

    async def set_bonus_settings(self, conn: Conn, cmd: SetBonusSettings) -> SettingsRow:
        """Replace the tenant's bonus settings; return them."""
        row = SettingsRow(cmd.spend_order, cmd.withdrawal_policy.value)
        await bonus_sql.set_settings(conn, cmd.tenant_id, row)
        return row

    async def bonus_settings(self, tenant_id: str) -> SettingsRow:
        """The tenant's bonus settings (the defaults when never set)."""
        async with self.pool.connection() as conn:
            return await bonus_sql.settings(conn, tenant_id)

    async def bonus(self, tenant_id: str, player_id: str, bonus_id: uuid.UUID) -> BonusRow:
        """One bonus of the player. Errors: NOT_FOUND BONUS_NOT_FOUND."""
        async with self.pool.connection() as conn:
            row = await bonus_sql.get_bonus(conn, tenant_id, bonus_id)
        if row is None or row.player_id != player_id:
            raise _not_found("BONUS_NOT_FOUND", "no such bonus for this player")
        return row

    async def bonuses(
        self,
        tenant_id: str,
        player_id: str,
        state: BonusState | None,
        before: datetime | None,
        limit: int,
    ) -> list[BonusRow]:
        """A page of the player's bonuses, newest first."""
        async with self.pool.connection() as conn:
            return await bonus_sql.list_bonuses(
                conn, tenant_id, player_id, None if state is None else state.value, before, limit
            )

    async def expire_bonuses(self, limit: int = 100) -> int:
        """Expire up to `limit` active bonuses past their expiry time; return how many were
        looked at (expired or set aside).

        Each in its own transaction on its tenant's rows; a bonus that cannot be expired is
        logged, counted in `croupier_background_rows_set_aside_total{job="bonus_expiry"}` and
        skipped by this process for `SET_ASIDE_SECONDS` (as the hold sweeper does).
        """
        now = time.monotonic()
        for bonus_id, until in list(self._bonus_set_aside.items()):
            if until <= now:
                del self._bonus_set_aside[bonus_id]
        async with self.pool.connection() as conn:
            due = await bonus_sql.expired_bonuses(conn, limit, list(self._bonus_set_aside))
        for tenant_id, bonus_id, account_id in due:
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    if not await bonus_sql.lock_account_skip_locked(conn, tenant_id, account_id):
                        continue  # busy: the next pass
                    account = await wallet_sql.lock_account_by_id(conn, tenant_id, account_id)
                    bonus = await bonus_sql.still_expired(conn, tenant_id, bonus_id)
                    if bonus is None:  # closed meanwhile
                        continue
                    await self._close_bonus(
                        conn,
                        tenant_id,
                        account,
                        _view(account),
                        bonus,
                        BonusState.EXPIRED,
                        "expired",
                        None,
                    )
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                BACKGROUND_ROWS_SET_ASIDE.labels("bonus_expiry", type(exc).__name__).inc()
                log.error(
                    "bonus %s (tenant %s) cannot be expired, set aside: %s",
                    bonus_id,
                    tenant_id,
                    exc,
                )
                self._bonus_set_aside[bonus_id] = now + SET_ASIDE_SECONDS
        return len(due)

    # -- reads -------------------------------------------------------------------------------

    async def balances(
        self, tenant_id: str, player_id: str, currency: str | None
    ) -> tuple[PlayerStatus, list[BalanceView]]:
        """The player's status and balances. Errors: NOT_FOUND PLAYER_NOT_FOUND."""
        async with self.pool.connection() as conn:
            status = await wallet_sql.player_status(conn, tenant_id, player_id)
            if status is None:
                raise _not_found("PLAYER_NOT_FOUND", "no such player for this tenant")
            rows = await wallet_sql.balances(conn, tenant_id, player_id, currency)
        return PlayerStatus(status), [BalanceView(*row) for row in rows]

    async def transaction(self, tenant_id: str, transaction_id: uuid.UUID) -> TransactionRow:
        """One transaction with postings. Errors: NOT_FOUND TRANSACTION_NOT_FOUND."""
        async with self.pool.connection() as conn:
            row = await wallet_sql.get_transaction(conn, tenant_id, transaction_id)
        if row is None:
            raise _not_found("TRANSACTION_NOT_FOUND", "no such transaction for this tenant")
        return row

    async def transactions(
        self,
        tenant_id: str,
        player_id: str,
        currency: str | None,
        before_seq: int | None,
        limit: int,
    ) -> list[TransactionRow]:
        """A page of the player's transactions, newest first (may be read on a standby at
        most CROUPIER_READ_MAX_LAG_SECONDS behind)."""
        async with self.reads.connection() as conn:
            return await wallet_sql.list_transactions(
                conn, tenant_id, player_id, currency, before_seq, limit
            )

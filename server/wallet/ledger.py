"""The wallet's ledger operations: the business rules of every money movement.

Each write runs inside `Wallet.execute`, which makes it idempotent and atomic: the journal
transaction, its balanced postings (applied to balances by the database), the hold and the
idempotency record commit together or not at all. Rules raise `DomainError` before the first
write. Ledger accounts: each player account has an `available` and a `held` bucket; the other
side of every posting is a house account of the tenant: `house_game` (captured stakes, wins) or
`house_cashier` (credits, debits).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.events.outbox import append_event
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
from server.store import idempotency_sql, wallet_sql
from server.store.replica import ReadSource
from server.store.wallet_sql import AccountRow, Conn, HoldRow, Leg, TransactionRow
from server.telemetry import BACKGROUND_ROWS_SET_ASIDE
from server.wallet import protection
from server.wallet.model import (
    AuthorizeBet,
    AuthorizeResult,
    BalanceView,
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
HOUSE_GAME = "house_game"
HOUSE_CASHIER = "house_cashier"


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


def _check_funds(account: AccountRow, amount: int) -> None:
    if account.available < amount:
        raise _precondition("INSUFFICIENT_FUNDS", "the available balance is too low")


def _check_no_overflow(account: AccountRow, added: int, field: str) -> None:
    """Refuse a request whose amount would take the account past int64.

    The rule kept on every player account: available + held <= 2^63-1 (minor units). Then
    no bucket can overflow, and releasing a hold (held -> available) never can either.
    Raises INVALID_ARGUMENT AMOUNT_OVERFLOW naming `field` (the request's amount).
    """
    if account.available + account.held + added > INT64_MAX:
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


async def _emit(
    conn: Conn,
    event_type: str,
    tenant_id: str,
    player_id: str,
    tx: uuid.UUID,
    view: BalanceView | None,
    currency: str,
    fields: dict[str, Any],
) -> None:
    """Write a wallet event in the transaction that made the change (invariant 8).

    Aggregate: the player's account in `currency`, so one account's events keep commit order.
    """
    payload: dict[str, Any] = {
        "transaction_id": str(tx),
        "player_id": player_id,
        **fields,
    }
    if view is not None:
        payload["balance_after"] = {
            "available": event_money(view.available, view.currency),
            "held": event_money(view.held, view.currency),
        }
    await append_event(
        conn,
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
    """Void an open hold in transaction `tx` (held -> available), close it as `state`
    (cancelled or expired) and write its event; return the balances after."""
    await wallet_sql.insert_postings(
        conn,
        tx,
        tenant_id,
        hold.currency,
        [
            Leg(account.account_id, HELD, -hold.amount),
            Leg(account.account_id, AVAILABLE, hold.amount),
        ],
    )
    await wallet_sql.close_hold(conn, tenant_id, hold.hold_id, state, tx)
    view = BalanceView(hold.currency, account.available + hold.amount, account.held - hold.amount)
    await _emit(
        conn,
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
        await protection.count(
            conn, c.tenant_id, c.player_id, cur, stakes=-amount, at=target.created_at
        )
    elif target.kind == "credit" and meta.get("credit_reason") == "deposit":
        await protection.count(
            conn, c.tenant_id, c.player_id, cur, deposits=-amount, at=target.created_at
        )
    elif target.kind == "credit" and meta.get("credit_reason") == "win":
        await protection.count(
            conn, c.tenant_id, c.player_id, cur, wins=-amount, at=target.created_at
        )


def _round(ref: RoundRef) -> dict[str, Any]:
    return {
        "bet_id": ref.bet_id,
        "round_id": ref.round_id,
        "game_id": ref.game_id,
        "metadata": ref.metadata,
    }


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
            for kind in (HOUSE_GAME, HOUSE_CASHIER):
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
        """Hold `cmd.amount`: available -> held, bound to the bet until settle/cancel/expiry.

        Errors: NOT_FOUND PLAYER_NOT_FOUND / ACCOUNT_NOT_FOUND; FAILED_PRECONDITION
        PLAYER_BLOCKED, PLAYER_SELF_EXCLUDED, INSUFFICIENT_FUNDS (invariant 6), BET_CANCELLED
        (a cancel came first), PLAYER_COOLING_OFF, ACCOUNT_CLOSED, LOSS_LIMIT_EXCEEDED,
        WAGER_LIMIT_EXCEEDED (docs/responsible-gaming.md); ALREADY_EXISTS BET_ALREADY_EXISTS;
        INVALID_ARGUMENT AMOUNT_OVERFLOW (held + amount past int64). `expire_time` is the
        database's transaction time plus `ttl_seconds`: expiry is compared with the database's
        clock only.
        """
        c, amount, currency = cmd.caller, cmd.amount.minor_units, cmd.amount.currency
        account, hold_state, db_now = await wallet_sql.lock_account_for_bet(
            conn, c.tenant_id, c.player_id, currency, cmd.ref.bet_id
        )
        if account is None:
            raise await self._no_account(conn, c, currency)
        _check_may_bet(account)
        rg = await protection.read_state(conn, c, currency)
        protection.check_may_bet(rg)
        if hold_state == "tombstone":
            raise _precondition("BET_CANCELLED", "a cancel for this bet arrived first")
        if hold_state is not None:
            raise DomainError(
                ErrorCode.ALREADY_EXISTS,
                "BET_ALREADY_EXISTS",
                "this bet_id already has a hold (under another idempotency key)",
            )
        _check_funds(account, amount)
        if account.held + amount > INT64_MAX:  # an account written before available + held <= max
            raise invalid(
                "amount.minor_units", "AMOUNT_OVERFLOW", "the held balance would pass 2^63-1"
            )
        await protection.take_stake(conn, c, currency, amount, rg, "bet")
        tx = await self._journal(conn, c, "authorize", cmd.amount, cmd.ref)
        await wallet_sql.insert_postings(
            conn,
            tx,
            c.tenant_id,
            currency,
            [
                Leg(account.account_id, AVAILABLE, -amount),
                Leg(account.account_id, HELD, amount),
            ],
        )
        hold_id = uuid.uuid4()
        # the database's clock, the one expiry is checked against (sweeper, SettleBet)
        expires_at = db_now + timedelta(seconds=cmd.ttl_seconds)
        await wallet_sql.insert_hold(
            conn,
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
            created_at=db_now,
        )
        view = BalanceView(currency, account.available - amount, account.held + amount)
        await _emit(
            conn,
            "wallet.bet.authorized",
            c.tenant_id,
            c.player_id,
            tx,
            view,
            currency,
            {
                "hold_id": str(hold_id),
                "amount": event_money(amount, currency),
                "expire_time": expires_at.isoformat(),
                **_round(cmd.ref),
            },
        )
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
        tx = await self._journal(conn, c, "settle", Money(captured, hold.currency), cmd.ref)
        # limits count the stake on its bet's day and the win on today
        await protection.count(
            conn, c.tenant_id, c.player_id, hold.currency, stakes=-released, at_hold=hold.hold_id
        )
        await protection.count(conn, c.tenant_id, c.player_id, hold.currency, wins=win)
        await wallet_sql.insert_postings(
            conn,
            tx,
            c.tenant_id,
            hold.currency,
            [
                Leg(account.account_id, HELD, -hold.amount),
                Leg(account.account_id, AVAILABLE, released),
                Leg(None, AVAILABLE, captured, house=HOUSE_GAME),
                Leg(None, AVAILABLE, -win, house=HOUSE_GAME),
                Leg(account.account_id, AVAILABLE, win),
            ],
        )
        await wallet_sql.close_hold(conn, c.tenant_id, hold.hold_id, "settled", tx)
        view = BalanceView(
            hold.currency, account.available + released + win, account.held - hold.amount
        )
        await _emit(
            conn,
            "wallet.bet.settled",
            c.tenant_id,
            c.player_id,
            tx,
            view,
            hold.currency,
            {
                "hold_id": str(hold.hold_id),
                "held": event_money(hold.amount, hold.currency),
                "captured": event_money(captured, hold.currency),
                "released": event_money(released, hold.currency),
                "win": event_money(win, hold.currency),
                **_round(cmd.ref),
            },
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
            await wallet_sql.insert_hold(
                conn,
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
            )
            return CancelResult(tx, "", 0, None)
        hold, account = await self._open_hold(conn, c, cmd.ref.bet_id)
        _check_release(account, hold)
        tx = await self._journal(conn, c, "cancel", Money(hold.amount, hold.currency), ref)
        await protection.count(
            conn, c.tenant_id, c.player_id, hold.currency, stakes=-hold.amount, at_hold=hold.hold_id
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
        await wallet_sql.insert_transaction(
            conn,
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
        )
        await protection.count(
            conn,
            tenant_id,
            hold.player_id,
            hold.currency,
            stakes=-hold.amount,
            at_hold=hold.hold_id,
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
            await protection.count(conn, c.tenant_id, c.player_id, currency, wins=amount)
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
        view = BalanceView(currency, account.available + amount, account.held)
        await _emit(
            conn,
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
        )
        return TransferResult(tx, view)

    async def debit(self, conn: Conn, cmd: Transfer) -> TransferResult:
        """Debit the player's available balance (no overdraft).

        Errors: NOT_FOUND PLAYER_NOT_FOUND / ACCOUNT_NOT_FOUND; FAILED_PRECONDITION
        PLAYER_BLOCKED, PLAYER_SELF_EXCLUDED, INSUFFICIENT_FUNDS; unless `cmd.reason` is
        "withdrawal", PLAYER_COOLING_OFF, ACCOUNT_CLOSED, LOSS_LIMIT_EXCEEDED,
        WAGER_LIMIT_EXCEEDED (docs/responsible-gaming.md).
        """
        c, amount, currency = cmd.caller, cmd.amount.minor_units, cmd.amount.currency
        account = await self._lock_account(conn, c, currency)
        _check_may_bet(account)
        rg = None
        if cmd.reason != "withdrawal":
            rg = await protection.read_state(conn, c, currency)
            protection.check_may_bet(rg)
        _check_funds(account, amount)
        if rg is not None:
            await protection.take_stake(conn, c, currency, amount, rg, "debit")
        tx = await self._journal(conn, c, "debit", cmd.amount, _with_reason(cmd, "debit"))
        await wallet_sql.insert_postings(
            conn,
            tx,
            c.tenant_id,
            currency,
            [
                Leg(account.account_id, AVAILABLE, -amount),
                Leg(None, AVAILABLE, amount, house=HOUSE_CASHIER),
            ],
        )
        view = BalanceView(currency, account.available - amount, account.held)
        await _emit(
            conn,
            "wallet.debited",
            c.tenant_id,
            c.player_id,
            tx,
            view,
            currency,
            {
                "amount": event_money(amount, currency),
                **_round(cmd.ref),
            },
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
            _check_funds(account, -delta)
        else:
            field = "target_idempotency_key" if cmd.target_key else "target_transaction_id"
            if account.available + account.held + delta > INT64_MAX:
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
        await wallet_sql.insert_postings(
            conn,
            tx,
            c.tenant_id,
            target.currency,
            [
                Leg(account.account_id, AVAILABLE, delta),
                Leg(None, AVAILABLE, -delta, house=HOUSE_CASHIER),
            ],
        )
        view = BalanceView(target.currency, account.available + delta, account.held)
        await _emit(
            conn,
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
            },
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
        tx = uuid.uuid4()
        await wallet_sql.insert_transaction(
            conn,
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
        return tx

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
        return PlayerStatus(status), [BalanceView(c, a, h) for c, a, h in rows]

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

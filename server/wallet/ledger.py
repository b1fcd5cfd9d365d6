"""The wallet's ledger operations: the business rules of every money movement.

Each write runs inside `Wallet.execute`, which makes it idempotent and atomic: the journal
transaction, its balanced postings (applied to balances by the database), the hold and the
idempotency record commit together or not at all. Rules raise `DomainError` before the first
write. Ledger accounts: each player account has an `available` and a `held` bucket; the other
side of every posting is a house account of the tenant: `house_game` (captured stakes, wins) or
`house_cashier` (credits, debits).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.events.outbox import append_event
from server.events.outbox import money as event_money
from server.idempotency import RequestKey, RetryTransactionError, StoredReply, run_idempotent
from server.money import INT64_MAX, Money
from server.store import idempotency_sql, wallet_sql
from server.store.wallet_sql import AccountRow, Conn, HoldRow, Leg, TransactionRow
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
    SettleBet,
    SettleResult,
    StatusResult,
    Transfer,
    TransferResult,
)

R = TypeVar("R")

AVAILABLE = "available"
HELD = "held"
HOUSE_GAME = "house_game"
HOUSE_CASHIER = "house_cashier"


def _not_found(reason: str, message: str) -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, reason, message)


def _precondition(reason: str, message: str, **meta: str) -> DomainError:
    return DomainError(ErrorCode.FAILED_PRECONDITION, reason, message, meta)


def _check_may_bet(account: AccountRow) -> None:
    """Bets and debits need an active player (blocked / self-excluded are refused)."""
    if account.player_status == PlayerStatus.BLOCKED.value:
        raise _precondition("PLAYER_BLOCKED", "the player is blocked")
    if account.player_status == PlayerStatus.SELF_EXCLUDED.value:
        raise _precondition("PLAYER_SELF_EXCLUDED", "the player is self-excluded")


def _check_funds(account: AccountRow, amount: int) -> None:
    if account.available < amount:
        raise _precondition("INSUFFICIENT_FUNDS", "the available balance is too low")


def _check_no_overflow(current: int, added: int, field: str) -> None:
    """Sums that would overflow int64 are refused, not wrapped."""
    if current + added > INT64_MAX:
        raise invalid(field, "AMOUNT_OVERFLOW", f"{field} would overflow the balance (int64)")


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


def _round(ref_bet: str, ref_round: str, ref_game: str, meta: dict[str, str]) -> dict[str, Any]:
    return {"bet_id": ref_bet, "round_id": ref_round, "game_id": ref_game, "metadata": meta}


class Wallet:
    """The wallet over one connection pool. Writes go through `execute`; reads are direct."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._house_ids: dict[tuple[str, str, str], int] = {}

    async def execute(
        self,
        key: RequestKey,
        operation: Callable[[Conn], Awaitable[R]],
        encode_ok: Callable[[R], bytes],
        encode_error: Callable[[DomainError], bytes],
        currency: str | None = None,
    ) -> StoredReply:
        """Run a write once per idempotency key (see server.idempotency.run_idempotent).

        `currency`, when known up front, makes sure the tenant's house accounts exist before
        the transaction starts.
        """
        if currency:
            await self._ensure_house_accounts(key.tenant_id, currency)
        return await run_idempotent(self.pool, key, operation, encode_ok, encode_error)

    async def _ensure_house_accounts(self, tenant_id: str, currency: str) -> None:
        if (tenant_id, HOUSE_CASHIER, currency) in self._house_ids:
            return
        async with self.pool.connection() as conn:
            for kind in (HOUSE_GAME, HOUSE_CASHIER):
                account_id = await wallet_sql.house_account(conn, tenant_id, kind, currency)
                self._house_ids[(tenant_id, kind, currency)] = account_id

    async def _house(self, conn: Conn, tenant_id: str, kind: str, currency: str) -> int:
        cached = self._house_ids.get((tenant_id, kind, currency))
        if cached is not None:
            return cached
        # Not cached by this process: resolve inside the transaction, uncached, since the
        # transaction that creates the row may still roll back.
        return await wallet_sql.house_account(conn, tenant_id, kind, currency)

    async def _lock_account(self, conn: Conn, caller: Caller, currency: str) -> AccountRow:
        account = await wallet_sql.lock_account(conn, caller.tenant_id, caller.player_id, currency)
        if account is None:
            if await wallet_sql.player_status(conn, caller.tenant_id, caller.player_id) is None:
                raise _not_found("PLAYER_NOT_FOUND", "no such player for this tenant")
            raise _not_found("ACCOUNT_NOT_FOUND", f"the player has no {currency} account")
        return account

    # -- holds -------------------------------------------------------------------------------

    async def authorize_bet(self, conn: Conn, cmd: AuthorizeBet) -> AuthorizeResult:
        """Hold `cmd.amount`: available -> held, bound to the bet until settle/cancel/expiry.

        Errors: NOT_FOUND PLAYER_NOT_FOUND / ACCOUNT_NOT_FOUND; FAILED_PRECONDITION
        PLAYER_BLOCKED, PLAYER_SELF_EXCLUDED, INSUFFICIENT_FUNDS (invariant 6), BET_CANCELLED
        (a cancel came first); ALREADY_EXISTS BET_ALREADY_EXISTS.
        """
        c, amount = cmd.caller, cmd.amount.minor_units
        account = await self._lock_account(conn, c, cmd.amount.currency)
        _check_may_bet(account)
        existing = await wallet_sql.find_hold(conn, c.tenant_id, cmd.ref.bet_id, lock=False)
        if existing is not None:
            if existing.state == "tombstone":
                raise _precondition("BET_CANCELLED", "a cancel for this bet arrived first")
            raise DomainError(
                ErrorCode.ALREADY_EXISTS,
                "BET_ALREADY_EXISTS",
                "this bet_id already has a hold (under another idempotency key)",
            )
        _check_funds(account, amount)
        tx = await self._journal(
            conn,
            c,
            "authorize",
            cmd.amount,
            cmd.ref.bet_id,
            cmd.ref.round_id,
            cmd.ref.game_id,
            cmd.ref.metadata,
        )
        await wallet_sql.insert_postings(
            conn,
            tx,
            cmd.amount.currency,
            [
                Leg(account.account_id, AVAILABLE, -amount),
                Leg(account.account_id, HELD, amount),
            ],
        )
        hold = await wallet_sql.insert_hold(
            conn,
            tenant_id=c.tenant_id,
            player_id=c.player_id,
            bet_id=cmd.ref.bet_id,
            round_id=cmd.ref.round_id,
            game_id=cmd.ref.game_id,
            account_id=account.account_id,
            currency=cmd.amount.currency,
            amount=amount,
            state="open",
            ttl_seconds=cmd.ttl_seconds,
            transaction_id=tx,
        )
        hold_id, expires_at = hold
        assert expires_at is not None
        view = BalanceView(cmd.amount.currency, account.available - amount, account.held + amount)
        await _emit(
            conn,
            "wallet.bet.authorized",
            c.tenant_id,
            c.player_id,
            tx,
            view,
            cmd.amount.currency,
            {
                "hold_id": str(hold_id),
                "amount": event_money(amount, cmd.amount.currency),
                "expire_time": expires_at.isoformat(),
                **_round(cmd.ref.bet_id, cmd.ref.round_id, cmd.ref.game_id, cmd.ref.metadata),
            },
        )
        return AuthorizeResult(tx, hold_id, expires_at, view)

    async def _open_hold(self, conn: Conn, caller: Caller, bet_id: str) -> HoldRow:
        hold = await wallet_sql.find_hold(conn, caller.tenant_id, bet_id, lock=True)
        if hold is None or hold.player_id != caller.player_id:
            raise _not_found("BET_NOT_FOUND", "no hold for this bet_id and player")
        if hold.state != "open":
            state = "cancelled" if hold.state == "tombstone" else hold.state
            raise _precondition("HOLD_NOT_OPEN", f"the hold is {state}", state=state)
        return hold

    async def settle_bet(self, conn: Conn, cmd: SettleBet) -> SettleResult:
        """Capture all or part of the hold and credit the win, in one transaction.

        Succeeds for any open hold whatever the player's status (invariant 6).
        Errors: NOT_FOUND BET_NOT_FOUND; FAILED_PRECONDITION HOLD_NOT_OPEN, HOLD_EXPIRED;
        INVALID_ARGUMENT CURRENCY_MISMATCH, CAPTURE_EXCEEDS_HOLD, AMOUNT_OVERFLOW.
        """
        c = cmd.caller
        hold = await self._open_hold(conn, c, cmd.ref.bet_id)
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
        assert hold.account_id is not None
        account = await wallet_sql.lock_account_by_id(conn, hold.account_id)
        _check_no_overflow(account.available, released + win, "win.minor_units")
        money = Money(captured, hold.currency)
        tx = await self._journal(
            conn,
            c,
            "settle",
            money,
            cmd.ref.bet_id,
            cmd.ref.round_id,
            cmd.ref.game_id,
            cmd.ref.metadata,
        )
        house = await self._house(conn, c.tenant_id, HOUSE_GAME, hold.currency)
        await wallet_sql.insert_postings(
            conn,
            tx,
            hold.currency,
            [
                Leg(account.account_id, HELD, -hold.amount),
                Leg(account.account_id, AVAILABLE, released),
                Leg(house, AVAILABLE, captured),
                Leg(house, AVAILABLE, -win),
                Leg(account.account_id, AVAILABLE, win),
            ],
        )
        await wallet_sql.close_hold(conn, hold.hold_id, "settled", tx)
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
                **_round(cmd.ref.bet_id, cmd.ref.round_id, cmd.ref.game_id, cmd.ref.metadata),
            },
        )
        return SettleResult(tx, hold.currency, captured, released, win, view)

    async def cancel_bet(self, conn: Conn, cmd: CancelBet) -> CancelResult:
        """Void the hold (held -> available). Unknown bet: record a tombstone and succeed.

        Errors: NOT_FOUND BET_NOT_FOUND (another player's bet); FAILED_PRECONDITION
        HOLD_NOT_OPEN.
        """
        c = cmd.caller
        hold = await wallet_sql.find_hold(conn, c.tenant_id, cmd.ref.bet_id, lock=True)
        meta = {**cmd.ref.metadata, **({"reason": cmd.reason} if cmd.reason else {})}
        if hold is None:
            tx = await self._journal(
                conn,
                c,
                "cancel",
                Money(0, ""),
                cmd.ref.bet_id,
                cmd.ref.round_id,
                cmd.ref.game_id,
                meta,
            )
            await wallet_sql.insert_hold(
                conn,
                tenant_id=c.tenant_id,
                player_id=c.player_id,
                bet_id=cmd.ref.bet_id,
                round_id=cmd.ref.round_id,
                game_id=cmd.ref.game_id,
                account_id=None,
                currency="",
                amount=0,
                state="tombstone",
                ttl_seconds=None,
                transaction_id=tx,
            )
            return CancelResult(tx, "", 0, None)
        hold = await self._open_hold(conn, c, cmd.ref.bet_id)
        assert hold.account_id is not None
        account = await wallet_sql.lock_account_by_id(conn, hold.account_id)
        tx = await self._journal(
            conn,
            c,
            "cancel",
            Money(hold.amount, hold.currency),
            cmd.ref.bet_id,
            cmd.ref.round_id,
            cmd.ref.game_id,
            meta,
        )
        await wallet_sql.insert_postings(
            conn,
            tx,
            hold.currency,
            [
                Leg(account.account_id, HELD, -hold.amount),
                Leg(account.account_id, AVAILABLE, hold.amount),
            ],
        )
        await wallet_sql.close_hold(conn, hold.hold_id, "cancelled", tx)
        view = BalanceView(
            hold.currency, account.available + hold.amount, account.held - hold.amount
        )
        await _emit(
            conn,
            "wallet.bet.cancelled",
            c.tenant_id,
            c.player_id,
            tx,
            view,
            hold.currency,
            {
                "hold_id": str(hold.hold_id),
                "released": event_money(hold.amount, hold.currency),
                "reason": cmd.reason,
                **_round(cmd.ref.bet_id, cmd.ref.round_id, cmd.ref.game_id, cmd.ref.metadata),
            },
        )
        return CancelResult(tx, hold.currency, hold.amount, view)

    async def expire_holds(self, limit: int = 100) -> int:
        """Void up to `limit` open holds past their expiry (held -> available); return count.

        Safe to run in several processes at once (FOR UPDATE SKIP LOCKED).
        """
        async with self.pool.connection() as conn, conn.transaction():
            expired = await wallet_sql.lock_expired_holds(conn, limit)
            for hold, tenant_id in expired:
                assert hold.account_id is not None
                account = await wallet_sql.lock_account_by_id(conn, hold.account_id)
                bet_id, round_id, game_id = await wallet_sql.hold_ids(conn, hold.hold_id)
                tx = await wallet_sql.insert_transaction(
                    conn,
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
                await wallet_sql.insert_postings(
                    conn,
                    tx,
                    hold.currency,
                    [
                        Leg(account.account_id, HELD, -hold.amount),
                        Leg(account.account_id, AVAILABLE, hold.amount),
                    ],
                )
                await wallet_sql.close_hold(conn, hold.hold_id, "expired", tx)
                view = BalanceView(
                    hold.currency, account.available + hold.amount, account.held - hold.amount
                )
                await _emit(
                    conn,
                    "wallet.bet.expired",
                    tenant_id,
                    hold.player_id,
                    tx,
                    view,
                    hold.currency,
                    {
                        "hold_id": str(hold.hold_id),
                        "released": event_money(hold.amount, hold.currency),
                        **_round(bet_id, round_id, game_id, {}),
                    },
                )
            return len(expired)

    # -- transfers ---------------------------------------------------------------------------

    async def credit(self, conn: Conn, cmd: Transfer) -> TransferResult:
        """Credit the player's available balance; opens player and account on first credit.

        Always succeeds whatever the player's status (invariant 6); refuses only an int64
        overflow (INVALID_ARGUMENT AMOUNT_OVERFLOW).
        """
        c, amount = cmd.caller, cmd.amount.minor_units
        await wallet_sql.open_account(conn, c.tenant_id, c.player_id, cmd.amount.currency)
        account = await self._lock_account(conn, c, cmd.amount.currency)
        _check_no_overflow(account.available, amount, "amount.minor_units")
        tx = await self._journal(
            conn,
            c,
            "credit",
            cmd.amount,
            cmd.ref.bet_id,
            cmd.ref.round_id,
            cmd.ref.game_id,
            cmd.ref.metadata,
        )
        cashier = await self._house(conn, c.tenant_id, HOUSE_CASHIER, cmd.amount.currency)
        await wallet_sql.insert_postings(
            conn,
            tx,
            cmd.amount.currency,
            [
                Leg(cashier, AVAILABLE, -amount),
                Leg(account.account_id, AVAILABLE, amount),
            ],
        )
        view = BalanceView(cmd.amount.currency, account.available + amount, account.held)
        await _emit(
            conn,
            "wallet.credited",
            c.tenant_id,
            c.player_id,
            tx,
            view,
            cmd.amount.currency,
            {
                "amount": event_money(amount, cmd.amount.currency),
                **_round(cmd.ref.bet_id, cmd.ref.round_id, cmd.ref.game_id, cmd.ref.metadata),
            },
        )
        return TransferResult(tx, view)

    async def debit(self, conn: Conn, cmd: Transfer) -> TransferResult:
        """Debit the player's available balance (no overdraft).

        Errors: NOT_FOUND PLAYER_NOT_FOUND / ACCOUNT_NOT_FOUND; FAILED_PRECONDITION
        PLAYER_BLOCKED, PLAYER_SELF_EXCLUDED, INSUFFICIENT_FUNDS.
        """
        c, amount = cmd.caller, cmd.amount.minor_units
        account = await self._lock_account(conn, c, cmd.amount.currency)
        _check_may_bet(account)
        _check_funds(account, amount)
        tx = await self._journal(
            conn,
            c,
            "debit",
            cmd.amount,
            cmd.ref.bet_id,
            cmd.ref.round_id,
            cmd.ref.game_id,
            cmd.ref.metadata,
        )
        cashier = await self._house(conn, c.tenant_id, HOUSE_CASHIER, cmd.amount.currency)
        await wallet_sql.insert_postings(
            conn,
            tx,
            cmd.amount.currency,
            [
                Leg(account.account_id, AVAILABLE, -amount),
                Leg(cashier, AVAILABLE, amount),
            ],
        )
        view = BalanceView(cmd.amount.currency, account.available - amount, account.held)
        await _emit(
            conn,
            "wallet.debited",
            c.tenant_id,
            c.player_id,
            tx,
            view,
            cmd.amount.currency,
            {
                "amount": event_money(amount, cmd.amount.currency),
                **_round(cmd.ref.bet_id, cmd.ref.round_id, cmd.ref.game_id, cmd.ref.metadata),
            },
        )
        return TransferResult(tx, view)

    async def rollback(self, conn: Conn, cmd: Rollback) -> RollbackResult:
        """Reverse a debit or credit (seed 001 transaction-rollback).

        By idempotency key: an unknown key is tombstoned (no balance change, success; the
        original is refused if it comes later); a key whose request was refused has nothing to
        reverse. Errors: NOT_FOUND TRANSACTION_NOT_FOUND; FAILED_PRECONDITION
        TRANSACTION_NOT_REVERSIBLE, TRANSACTION_ALREADY_ROLLED_BACK, INSUFFICIENT_FUNDS.
        """
        c = cmd.caller
        meta = dict(cmd.metadata)
        target: TransactionRow | None
        if cmd.target_key is not None:
            meta["target_idempotency_key"] = cmd.target_key
            record = await idempotency_sql.fetch(conn, c.tenant_id, cmd.target_key, lock=True)
            if record is None:
                if not await idempotency_sql.tombstone(conn, c.tenant_id, cmd.target_key):
                    raise RetryTransactionError("the target key was claimed concurrently")
                tx = await self._journal(conn, c, "rollback", Money(0, ""), "", "", "", meta)
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
                tx = await self._journal(conn, c, "rollback", Money(0, ""), "", "", "", meta)
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
        if await wallet_sql.rollback_of(conn, target.transaction_id) is not None:
            raise _precondition(
                "TRANSACTION_ALREADY_ROLLED_BACK", "this transaction was already rolled back"
            )
        account = await self._lock_account(conn, c, target.currency)
        delta = target.amount if target.kind == "debit" else -target.amount
        if delta < 0:
            _check_funds(account, -delta)
        else:
            _check_no_overflow(account.available, delta, "target")
        tx = await self._journal(
            conn,
            c,
            "rollback",
            Money(target.amount, target.currency),
            target.bet_id,
            target.round_id,
            target.game_id,
            meta,
            target=target.transaction_id,
        )
        cashier = await self._house(conn, c.tenant_id, HOUSE_CASHIER, target.currency)
        await wallet_sql.insert_postings(
            conn,
            tx,
            target.currency,
            [
                Leg(account.account_id, AVAILABLE, delta),
                Leg(cashier, AVAILABLE, -delta),
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
                **_round(target.bet_id, target.round_id, target.game_id, meta),
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
        bet_id: str,
        round_id: str,
        game_id: str,
        metadata: dict[str, str],
        target: uuid.UUID | None = None,
    ) -> uuid.UUID:
        return await wallet_sql.insert_transaction(
            conn,
            tenant_id=c.tenant_id,
            player_id=c.player_id,
            kind=kind,
            currency=money.currency,
            amount=money.minor_units,
            idempotency_key=c.idempotency_key,
            round_id=round_id,
            bet_id=bet_id,
            game_id=game_id,
            target_transaction_id=target,
            metadata=metadata,
        )

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
        """A page of the player's transactions, newest first."""
        async with self.pool.connection() as conn:
            return await wallet_sql.list_transactions(
                conn, tenant_id, player_id, currency, before_seq, limit
            )

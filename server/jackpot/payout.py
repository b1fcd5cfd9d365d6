"""The payout saga: a win (an obligation) becomes exactly one wallet credit (docs/jackpot.md).

`requested` (written with the hit) -> `credited` or `failed`:

* The credit goes through the wallet ledger in-process (`Wallet.credit`) in one database
  transaction that locks the win row, checks the player's status, posts the credit under the
  system key `jp-payout-<win_id>` in the winner's tenant and marks the win `credited`. However
  often `pay` runs, in however many processes, and whenever the process dies, the credit
  commits at most once and the saga state commits with it.
* The payout credit is system-owned: keys of the system namespace
  (server.idempotency.SYSTEM_KEY_PREFIXES) are refused for client writes, and
  RollbackTransaction refuses to reverse or tombstone them, so the win record and the ledger
  always agree (checked by Reconcile and `croupier reconcile`).
* Business refusal (policy, documented in docs/jackpot.md): a win for a player who is
  `blocked` or `self_excluded` is not credited; the saga records `failed` with reason
  `PLAYER_BLOCKED` / `PLAYER_SELF_EXCLUDED` and the amount stays owed (reported by ListWins and
  Reconcile). The wallet itself would accept the credit; withholding it is the jackpot's
  responsible-gaming brake on payout. A wallet refusal (an int64 overflow of the balance) is
  recorded the same way. Nothing is stored under the payout key for a refusal, so a later
  `Payout` call re-checks and credits once the cause is gone.
* Technical failure (database unavailable, timeouts): the attempt is counted, the win stays
  `requested`, and the retrier tries again after 0.5 s * 2^attempts (at most 60 s).
* `pay` holds at most one pooled connection at a time, so it cannot deadlock the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode
from server.events.context import background_trace
from server.jackpot import events as jp_events
from server.jackpot import review
from server.jackpot.model import PayoutState, WinRow
from server.money import Money
from server.retry import Backoff
from server.store import jackpot_sql as sql
from server.telemetry import BACKGROUND_ROWS_SET_ASIDE
from server.types import Conn
from server.wallet import accounts
from server.wallet.ledger import Wallet
from server.wallet.model import Caller, PlayerStatus, RoundRef, Transfer

log = logging.getLogger("croupier.jackpot.payout")

MAX_BACKOFF_SECONDS = 60.0
BACKOFF = Backoff(1.0, MAX_BACKOFF_SECONDS)
_REFUSED = {
    PlayerStatus.BLOCKED: "PLAYER_BLOCKED",
    PlayerStatus.SELF_EXCLUDED: "PLAYER_SELF_EXCLUDED",
}


def payout_key(win_id: uuid.UUID) -> str:
    """The wallet idempotency key of a win's credit (derived from the win, never random)."""
    return f"jp-payout-{win_id}"


def backoff_seconds(attempts: int) -> float:
    """Delay before the next attempt after `attempts` failed ones: 0.5 s doubling, max 60 s."""
    return BACKOFF.delay(attempts)


class PayoutSaga:
    """Runs payouts: `pay` on demand, `kick` after a hit, `run_due` from the retrier."""

    def __init__(
        self, db: AsyncConnectionPool, wallet: Wallet, *, start_delay_seconds: float = 0.0
    ) -> None:
        self.db = db
        self.wallet = wallet
        self.start_delay_seconds = start_delay_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    async def pay(self, win_id: uuid.UUID, tenant_id: str | None = None) -> WinRow:
        """Credit the win's player once, or record why not; return the win afterwards.

        Holds at most one pooled connection at any moment (never waits for a second one while
        holding the first), so concurrent payouts complete even with a pool of one.

        Errors: NOT_FOUND WIN_NOT_FOUND (also for another tenant's win). Technical failures
        are recorded on the win and re-raised.
        """
        async with self.db.connection() as conn:
            win = await sql.get_win(conn, win_id)
        if win is None or (tenant_id is not None and win.tenant_id != tenant_id):
            raise DomainError(ErrorCode.NOT_FOUND, "WIN_NOT_FOUND", "no such win")
        if win.payout_state is PayoutState.CREDITED:
            return win
        try:
            if win.amount > 0:
                await self.wallet.ensure_house_accounts(win.tenant_id, win.currency)
            await self._settle(win_id)
        except Exception as exc:
            async with self.db.connection() as conn, conn.transaction():
                attempts = win.attempts + 1
                await sql.mark_attempt_failed(
                    conn, win_id, f"{type(exc).__name__}: {exc}", backoff_seconds(attempts)
                )
            raise
        return await self._reload(win_id)

    async def _settle(self, win_id: uuid.UUID) -> None:
        """One database transaction: lock the win, lock the winner's account, check the
        player's status (the players row locked FOR SHARE: a block committed before the check
        is seen, one not yet committed waits for this transaction), then credit and close the
        saga, or record the refusal.

        The win row lock makes this run once per win at a time; the credit's journal row
        carries the system key `jp-payout-<win_id>` (unique per tenant), so the win is
        credited at most once. A refusal (blocked player, int64 overflow of the balance)
        stores nothing under that key: the win stays owed and a later `pay` can credit it
        once the cause is gone.
        """
        async with self.db.connection() as conn, conn.transaction():
            win = await sql.get_win(conn, win_id, lock=True)
            assert win is not None
            if win.payout_state is PayoutState.CREDITED:
                return
            if win.amount == 0:  # nothing owed (a zero seed hit right after a reset)
                await sql.mark_credited(conn, win.win_id, None, "zero amount")
                return
            try:
                async with conn.transaction():  # a savepoint: a refusal leaves nothing
                    await self._check_and_credit(conn, win)
                return
            except DomainError as err:  # blocked / self-excluded, or an int64 overflow
                refused = err.reason
            await sql.mark_failed(conn, win.win_id, refused)
            await jp_events.payout_outcome(conn, win, credited=False, reason=refused)

    async def _check_and_credit(self, conn: Conn, win: WinRow) -> None:
        """Under the winner's account lock: leave a win under AML review (or above the
        threshold: its review is opened), refuse a blocked or self-excluded player or one with
        a compliance hold (DomainError FAILED_PRECONDITION PLAYER_BLOCKED /
        PLAYER_SELF_EXCLUDED / SANCTIONS_HIT / GEO_BLOCKED / WITHDRAWAL_LIMIT_EXCEEDED /
        AML_HOLD), else credit the win and close the saga, on `conn` (in its transaction)."""
        await accounts.open_and_lock(conn, win.tenant_id, win.player_id, win.currency)
        if await review.withheld(conn, win):  # AML review above a threshold: docs/aml-review.md
            return
        status = await accounts.status_locked(conn, win.tenant_id, win.player_id)
        refused = (_REFUSED.get(status) if status else None) or await review.hold_refusal(conn, win)
        if refused is not None:
            raise DomainError(ErrorCode.FAILED_PRECONDITION, refused, "payout withheld")
        cmd = Transfer(
            Caller(win.tenant_id, win.player_id, payout_key(win.win_id)),
            RoundRef(
                round_id=win.round_id,
                game_id=win.game_id,
                metadata={
                    "jackpot_win_id": str(win.win_id),
                    "pool_id": win.pool_id,
                    "cycle": str(win.cycle),
                },
            ),
            Money(win.amount, win.currency),
        )
        result = await self.wallet.credit(conn, cmd)
        await sql.mark_credited(conn, win.win_id, result.transaction_id, "")
        await jp_events.payout_outcome(
            conn, win, credited=True, wallet_transaction_id=str(result.transaction_id)
        )

    async def _reload(self, win_id: uuid.UUID) -> WinRow:
        async with self.db.connection() as conn:
            win = await sql.get_win(conn, win_id)
        assert win is not None
        return win

    def kick(self, win_id: uuid.UUID) -> None:
        """Start the payout of a just-committed win in the background (after the configured
        start delay); the retrier catches anything this misses, e.g. a crash."""
        task = asyncio.get_running_loop().create_task(self._kick(win_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kick(self, win_id: uuid.UUID) -> None:
        if self.start_delay_seconds > 0:
            await asyncio.sleep(self.start_delay_seconds)
        try:
            await self.pay(win_id)
        except Exception:
            log.warning("payout of win %s failed; the retrier will try again", win_id)

    async def run_due(self, limit: int = 100) -> int:
        """Attempt every `requested` win whose next attempt is due; return how many."""
        async with self.db.connection() as conn:
            await review.requeue_lifted(conn, limit)  # causes lifted: docs/aml-review.md
            due = await sql.due_wins(conn, limit)
        for win_id in due:  # each win alone: one that fails never stops the others
            try:
                with background_trace("jackpot.payout_retry"):
                    await self.pay(win_id)
            except Exception as exc:
                BACKGROUND_ROWS_SET_ASIDE.labels("payout_retry", type(exc).__name__).inc()
                log.warning("payout of win %s failed; will retry with backoff", win_id)
        return len(due)

    async def retry_forever(self, every_seconds: float) -> None:
        """The retrier loop (started in App.tasks); survives database hiccups."""
        while True:
            await asyncio.sleep(every_seconds)
            try:
                await self.run_due()
            except Exception:
                log.exception("payout retrier pass failed")

    async def close(self) -> None:
        """Cancel in-flight kicks (the retrier resumes them after a restart)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

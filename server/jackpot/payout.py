"""The payout saga: a win (an obligation) becomes exactly one wallet credit (seed 000 section 9).

`requested` (written with the hit) -> `credited` or `failed`:

* The credit goes through the wallet ledger in-process (`Wallet.credit` via `Wallet.execute`)
  under the idempotency key `jp-payout-<win_id>` in the winner's tenant, and the win is marked
  `credited` inside that same database transaction. However often `pay` runs, in however many
  processes, and whenever the process dies, the credit commits at most once and the saga state
  commits with it; a replay finds the stored reply and changes nothing.
* Business refusal (policy, documented in docs/jackpot.md): a win for a player who is
  `blocked` or `self_excluded` is not credited; the saga records `failed` with reason
  `PLAYER_BLOCKED` / `PLAYER_SELF_EXCLUDED` and the amount stays owed (reported by ListWins and
  Reconcile). The wallet itself would accept the credit (invariant 6); withholding it is the
  jackpot's RG/AML brake (seed 000 section 8: "synchronous brake lights on payout"). A later
  `Payout` call re-checks and credits once the operator has lifted the block.
* Technical failure (database unavailable, timeouts): the attempt is counted, the win stays
  `requested`, and the retrier tries again after 0.5 s * 2^attempts (at most 60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode
from server.events.context import background_trace
from server.idempotency import RequestKey
from server.jackpot import events as jp_events
from server.jackpot.model import PayoutState, WinRow
from server.money import Money
from server.store import jackpot_sql as sql
from server.store import wallet_sql
from server.store.wallet_sql import Conn
from server.telemetry import BACKGROUND_ROWS_SET_ASIDE
from server.wallet.ledger import Wallet
from server.wallet.model import Caller, PlayerStatus, RoundRef, Transfer, TransferResult

log = logging.getLogger("croupier.jackpot.payout")

MAX_BACKOFF_SECONDS = 60.0
_REFUSED = {
    PlayerStatus.BLOCKED.value: "PLAYER_BLOCKED",
    PlayerStatus.SELF_EXCLUDED.value: "PLAYER_SELF_EXCLUDED",
}


def payout_key(win_id: uuid.UUID) -> str:
    """The wallet idempotency key of a win's credit (derived from the win, never random)."""
    return f"jp-payout-{win_id}"


def backoff_seconds(attempts: int) -> float:
    """Delay before the next attempt after `attempts` failed ones: 0.5 s doubling, max 60 s."""
    return float(min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(attempts, 16)))


class PayoutSaga:
    """Runs payouts: `pay` on demand, `kick` after a hit, `run_due` from the retrier."""

    def __init__(
        self, pool: AsyncConnectionPool, wallet: Wallet, *, start_delay_seconds: float = 0.0
    ) -> None:
        self.pool = pool
        self.wallet = wallet
        self.start_delay_seconds = start_delay_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    async def pay(self, win_id: uuid.UUID, tenant_id: str | None = None) -> WinRow:
        """Credit the win's player once, or record why not; return the win afterwards.

        Errors: NOT_FOUND WIN_NOT_FOUND (also for another tenant's win). Technical failures
        are recorded on the win and re-raised.
        """
        async with self.pool.connection() as conn:
            win = await sql.get_win(conn, win_id)
            if win is None or (tenant_id is not None and win.tenant_id != tenant_id):
                raise DomainError(ErrorCode.NOT_FOUND, "WIN_NOT_FOUND", "no such win")
            if win.payout_state is PayoutState.CREDITED:
                return win
            status = await wallet_sql.player_status(conn, win.tenant_id, win.player_id)
            refused = _REFUSED.get(status or "")
            if refused is not None:
                async with conn.transaction():
                    await sql.mark_failed(conn, win_id, refused)
                    await jp_events.payout_outcome(conn, win, credited=False, reason=refused)
                return await self._reload(win_id)
        try:
            await self._credit(win)
        except Exception as exc:
            async with self.pool.connection() as conn, conn.transaction():
                attempts = win.attempts + 1
                await sql.mark_attempt_failed(
                    conn, win_id, f"{type(exc).__name__}: {exc}", backoff_seconds(attempts)
                )
            raise
        return await self._reload(win_id)

    async def _credit(self, win: WinRow) -> None:
        if win.amount == 0:  # nothing owed (a zero seed hit right after a reset)
            async with self.pool.connection() as conn, conn.transaction():
                await sql.mark_credited(conn, win.win_id, None, "zero amount")
            return
        key = payout_key(win.win_id)
        cmd = Transfer(
            Caller(win.tenant_id, win.player_id, key),
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
        body = f"{win.win_id}\0{win.player_id}\0{win.amount}\0{win.currency}".encode()

        async def credit_and_close(conn: Conn) -> TransferResult:
            result = await self.wallet.credit(conn, cmd)
            await sql.mark_credited(conn, win.win_id, result.transaction_id, "")
            await jp_events.payout_outcome(
                conn, win, credited=True, wallet_transaction_id=str(result.transaction_id)
            )
            return result

        reply = await self.wallet.execute(
            RequestKey.of(win.tenant_id, key, "JackpotPayout", body),
            credit_and_close,
            lambda r: str(r.transaction_id).encode(),
            lambda e: e.reason.encode(),
            currency=win.currency,
        )
        if reply.code != 0:  # the wallet refused (an int64 overflow of the balance)
            async with self.pool.connection() as conn, conn.transaction():
                await sql.mark_failed(conn, win.win_id, reply.payload.decode())
                await jp_events.payout_outcome(
                    conn, win, credited=False, reason=reply.payload.decode()
                )

    async def _reload(self, win_id: uuid.UUID) -> WinRow:
        async with self.pool.connection() as conn:
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
        async with self.pool.connection() as conn:
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

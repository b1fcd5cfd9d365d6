"""Rounds of several steps: bets and wins (free spins, bonus chains) until a final step.

Buckets of a player account: `available` (withdrawable), `held` (open holds) and `pending`
(wins of rounds not yet final, not withdrawable). One step is one ledger transaction of kind
`round`, balanced per currency like every other (the database refuses anything else):

- bet:     player pending -b (the round's own pending wins, when the tenant allows, first),
           player available -(bet - b), house_game +bet
- win:     house_game -win, player pending +win (player available +win on the final step)
- release: player pending -P, player available +P (P: the round's pending wins), on the final
           step or by the sweeper for a round left open past the tenant's timeout

The round row keeps its totals and its share of the pending bucket. Each step writes the event
`wallet.round.step` (protos/events/wallet.round.step.v1.json) in its transaction. Steps are
idempotent writes (server.idempotency, the wallet's key space); refusals come before any write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.events.outbox import append_event
from server.events.outbox import money as event_money
from server.money import INT64_MAX
from server.store import rounds_sql, statements, wallet_sql
from server.store.rounds_sql import RoundRow as RoundRow
from server.store.rounds_sql import StepRow as StepRow
from server.store.wallet_sql import Leg
from server.types import Conn

AVAILABLE, PENDING, HOUSE_GAME = "available", "pending", "house_game"
ROUNDS_SWEPT = Counter(
    "croupier_rounds_finalised_by_sweeper_total",
    "Rounds left open past their tenant's timeout and finalised by the sweeper",
    ["tenant"],
)


@dataclass(frozen=True)
class Step:
    """One step: bet and win in minor units of `currency` (0 when none)."""

    tenant_id: str
    player_id: str
    idempotency_key: str | None
    round_id: str
    game_id: str
    currency: str
    bet: int
    win: int
    final: bool
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """The step's transaction, the round after it, the player's buckets after it."""

    transaction_id: uuid.UUID
    round: RoundRow
    available: int
    pending: int


@dataclass(frozen=True)
class RoundView:
    """A round with its steps."""

    round: RoundRow
    steps: list[StepRow]


def _precondition(reason: str, message: str) -> DomainError:
    return DomainError(ErrorCode.FAILED_PRECONDITION, reason, message)


def check_step(step: Step) -> None:
    """A step does something: INVALID_ARGUMENT `EMPTY_STEP` otherwise."""
    if step.bet == 0 and step.win == 0 and not step.final:
        raise invalid("win", "EMPTY_STEP", "a step has a bet, a win, or the final flag")


async def play_step(conn: Conn, step: Step) -> StepResult:
    """Play `step` in the caller's transaction (see the module doc). Raises before writing:
    NOT_FOUND `ACCOUNT_NOT_FOUND`; FAILED_PRECONDITION `ROUND_FINAL`, `ROUND_MISMATCH`,
    `PLAYER_BLOCKED`, `PLAYER_SELF_EXCLUDED`, `INSUFFICIENT_FUNDS`; INVALID_ARGUMENT
    `AMOUNT_OVERFLOW`."""
    if step.bet == 0:
        await wallet_sql.open_account(conn, step.tenant_id, step.player_id, step.currency)
    account = await rounds_sql.lock_account(conn, step.tenant_id, step.player_id, step.currency)
    if account is None:
        raise DomainError(
            ErrorCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", f"the player has no {step.currency} account"
        )
    rnd = await rounds_sql.lock_or_open_round(
        conn, step.tenant_id, step.round_id, step.player_id, step.currency, step.game_id
    )
    if rnd.player_id != step.player_id or rnd.currency != step.currency:
        raise _precondition("ROUND_MISMATCH", "the round belongs to another player or currency")
    if rnd.state == "final":
        raise _precondition("ROUND_FINAL", "the round is final: no more steps")
    from_pending = 0
    if step.bet:
        if account.status == "blocked":
            raise _precondition("PLAYER_BLOCKED", "the player is blocked")
        if account.status == "self_excluded":
            raise _precondition("PLAYER_SELF_EXCLUDED", "the player is self-excluded")
        if await rounds_sql.bets_use_pending(conn, step.tenant_id):
            from_pending = min(rnd.pending, step.bet)
        if account.available < step.bet - from_pending:
            raise _precondition("INSUFFICIENT_FUNDS", "the available balance is too low")
    if account.available + account.held + account.pending + step.win > INT64_MAX or (
        rnd.wins + step.win > INT64_MAX or rnd.bets + step.bet > INT64_MAX
    ):
        raise invalid("win.minor_units", "AMOUNT_OVERFLOW", "the win would overflow int64")
    pending_after = rnd.pending - from_pending + (0 if step.final else step.win)
    release = pending_after if step.final else 0
    legs = [
        Leg(account.account_id, PENDING, -from_pending),
        Leg(account.account_id, AVAILABLE, -(step.bet - from_pending)),
        Leg(None, AVAILABLE, step.bet - step.win, house=HOUSE_GAME),
        Leg(account.account_id, AVAILABLE if step.final else PENDING, step.win),
        Leg(account.account_id, PENDING, -release),
        Leg(account.account_id, AVAILABLE, release),
    ]
    if step.bet or step.win:
        await wallet_sql.house_account(conn, step.tenant_id, HOUSE_GAME, step.currency)
    tx = await _journal(conn, step, legs)
    await rounds_sql.update_round(
        conn,
        step.tenant_id,
        step.round_id,
        bets=step.bet,
        wins=step.win,
        pending=0 if step.final else pending_after,
        final=step.final,
        finalised_by="step" if step.final and step.idempotency_key else "sweeper",
    )
    after = await rounds_sql.get_round(conn, step.tenant_id, step.round_id)
    assert after is not None
    available = account.available - (step.bet - from_pending) + release
    available += step.win if step.final else 0
    pending = account.pending - from_pending + (0 if step.final else step.win) - release
    cur = step.currency
    await append_event(
        conn,
        "wallet.round.step",
        aggregate=f"account:{step.tenant_id}:{step.player_id}:{cur}",
        tenant_id=step.tenant_id,
        payload={
            "transaction_id": str(tx),
            "player_id": step.player_id,
            "round_id": step.round_id,
            "game_id": after.game_id,
            "metadata": step.metadata,
            "bet": event_money(step.bet, cur),
            "win": event_money(step.win, cur),
            "final": step.final,
            "released": event_money(release, cur),
            "finalised_by_sweeper": step.final and step.idempotency_key is None,
            "balance_after": {
                "available": event_money(available, cur),
                "held": event_money(account.held, cur),
                "pending": event_money(pending, cur),
            },
        },
    )
    return StepResult(tx, after, available, pending)


async def _journal(conn: Conn, step: Step, legs: list[Leg]) -> uuid.UUID:
    tx = uuid.uuid4()
    meta = dict(step.metadata)
    meta["round.final"] = "true" if step.final else "false"
    await statements.execute(
        conn,
        wallet_sql.transaction_write(
            transaction_id=tx,
            tenant_id=step.tenant_id,
            player_id=step.player_id,
            kind="round",
            currency=step.currency,
            amount=step.bet,
            idempotency_key=step.idempotency_key,
            round_id=step.round_id,
            game_id=step.game_id,
            metadata=meta,
        ),
    )
    # legs on the same account and bucket are merged, zero legs dropped: one posting each
    merged: dict[tuple[int | None, str, str | None], int] = {}
    for leg in legs:
        k = (leg.account_id, leg.bucket, leg.house)
        merged[k] = merged.get(k, 0) + leg.amount
    await wallet_sql.insert_postings(
        conn,
        tx,
        step.tenant_id,
        step.currency,
        [Leg(a, b, m, house=h) for (a, b, h), m in merged.items() if m],
    )
    return tx


async def get_round(pool: AsyncConnectionPool, tenant: str, round_id: str) -> RoundView:
    """A round with its steps. Raises NOT_FOUND `ROUND_NOT_FOUND`."""
    async with pool.connection() as conn:
        rnd = await rounds_sql.get_round(conn, tenant, round_id)
        if rnd is None:
            raise DomainError(ErrorCode.NOT_FOUND, "ROUND_NOT_FOUND", f"no round {round_id!r}")
        return RoundView(rnd, await rounds_sql.steps(conn, tenant, round_id))


async def finalise_overdue(pool: AsyncConnectionPool, limit: int = 100) -> list[tuple[str, str]]:
    """Finalise open rounds past their tenant's timeout, one transaction each: release their
    pending wins (a `round` transaction without idempotency key, metadata
    `round.finalised_by=sweeper`). Returns (tenant, round id) of each one finalised; counted in
    `croupier_rounds_finalised_by_sweeper_total`. A round a step finalised meanwhile is left."""
    async with pool.connection() as conn:
        due = await rounds_sql.overdue_rounds(conn, limit)
    done = []
    for tenant, round_id in due:
        async with pool.connection() as conn, conn.transaction():
            rnd = await rounds_sql.get_round(conn, tenant, round_id)
            if rnd is None or rnd.state != "open":
                continue
            step = Step(
                tenant,
                rnd.player_id,
                None,
                round_id,
                rnd.game_id,
                rnd.currency,
                0,
                0,
                True,
                {"round.finalised_by": "sweeper"},
            )
            await play_step(conn, step)
        ROUNDS_SWEPT.labels(tenant).inc()
        done.append((tenant, round_id))
    return done

"""The jackpot engine: configuration, contributions, triggers and hits (docs/jackpot.md).

Writes run inside `Jackpots.execute` (server.idempotency.run_idempotent): each write's pool
counters, contribution records, win, cycle change and audit records commit together with its
idempotency record, or not at all. Rules raise `DomainError` before the first write.

Hot pools: a pool's amount is `cycle_base + sum(shard.visible)`. A
contribution that cannot change the pool's cycle (no cap, not must-drop, its draw missed)
locks only one of the pool's shard rows, so contributions to one network pool run in parallel.
A hit locks the pool row and then every shard row: it waits for in-flight contributions, and
the amount it pays is exact. Rule for simultaneous hits: the first hit to
commit wins the cycle's pool; a second hit on the same pool is applied after it to the new
cycle and wins the reset pool's value (seed + carried + what was contributed since). A
contribution whose cycle ended while it ran is redrawn in the new cycle with the new seed.

Each state change is one function (`_record_contribution`, `_hit`, `_start_cycle`,
`_audit`) so the outbox's `append_event(conn, ...)` can be added to the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.idempotency import (
    RefusedAfterWriteError,
    RequestKey,
    RetryTransactionError,
    StoredReply,
    run_idempotent,
)
from server.jackpot import audit, fairness
from server.jackpot import events as jp_events
from server.jackpot.accounting import MICRO, Split, pool_value_fits, split_contribution
from server.jackpot.model import (
    Contribute,
    ContributeResult,
    ContributionRow,
    CycleRow,
    Eligibility,
    JackpotRow,
    JackpotSpec,
    OverflowPolicy,
    PayoutState,
    PoolState,
    Reconciliation,
    TierConfig,
    TierOutcome,
    TriggerCmd,
    TriggerKind,
    WinRow,
)
from server.jackpot.validation import check_tier
from server.money import INT64_MAX, Money
from server.store import jackpot_sql as sql
from server.store import outbox_sql
from server.store.jackpot_sql import PoolRow, ShardRow
from server.store.outbox_sql import NewEvent
from server.store.replica import ReadSource
from server.telemetry import BACKGROUND_ROWS_SET_ASIDE
from server.types import Conn

R = TypeVar("R")

_MAX_CYCLE_RACES = 10

log = logging.getLogger(__name__)

# How long (seconds) a process skips a DEADLINE pool whose drop failed before trying it again.
SET_ASIDE_SECONDS = 300.0


class StalePoolError(RetryTransactionError):
    """The pool's cycle or configuration changed after it was read: run the transaction
    again (the failed counter update still holds that row's lock until it ends)."""


def pool_overflow(pool_id: str) -> RefusedAfterWriteError:
    """FAILED_PRECONDITION AMOUNT_OVERFLOW: the contribution would take the pool's whole value
    (accounting.pool_value_fits) past 2^63-1 minor units. Raised after the pool's counter row
    may have been written, so the request's transaction is rolled back."""
    return RefusedAfterWriteError(
        ErrorCode.FAILED_PRECONDITION,
        "AMOUNT_OVERFLOW",
        "this contribution would take the pool's value past 2^63-1 minor units",
        {"pool_id": pool_id},
    )


def _not_found(reason: str, message: str) -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, reason, message)


def _now() -> datetime:
    return datetime.now(UTC)


def shard_for(key: str, shards: int) -> int:
    """The counter row a contribution updates: a hash of its idempotency key."""
    if shards == 1:
        return 0
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % shards


class Jackpots:
    """The jackpot engine over one connection pool. Writes go through `execute`."""

    def __init__(self, db: AsyncConnectionPool) -> None:
        self.db = db
        # stale-tolerant reads (pools, reports): server.store.replica.ReadRouter, else primary
        self.reads: ReadSource = db
        # Process-local caches of what the hot path reads. Jackpot rows never change; a pool
        # row is checked by every contribution's counter update (cycle and config_version in
        # its WHERE clause) and read again when stale, so a stale entry costs one retry.
        self._jackpots: dict[str, JackpotRow] = {}
        self._pools: dict[str, list[PoolRow]] = {}
        # DEADLINE pools whose drop failed -> monotonic time to try again (drop_due_deadlines)
        self._set_aside: dict[str, float] = {}

    async def execute(
        self,
        key: RequestKey,
        operation: Callable[[Conn], Awaitable[R]],
        encode_ok: Callable[[R], bytes],
        encode_error: Callable[[DomainError], bytes],
    ) -> StoredReply:
        """Run a write once per (tenant, idempotency key); see run_idempotent.

        A contribution that finds its pool's cycle ended under it (`StalePoolError`) starts
        its transaction again with the fresh cycle (up to 30 times, then ABORTED
        POOL_CONTENDED): a restart releases the counter row that the failed update locked, so
        it never waits on a hit while holding a row the hit needs (no deadlock).
        """
        for _ in range(_MAX_CYCLE_RACES):
            try:
                return await run_idempotent(self.db, key, operation, encode_ok, encode_error)
            except StalePoolError:
                continue
        raise DomainError(
            ErrorCode.ABORTED,
            "POOL_CONTENDED",
            "the pool changed cycle too often during this request; retry with the same key",
        )

    # -- configuration ---------------------------------------------------------------------

    async def create_jackpot(
        self, conn: Conn, spec: JackpotSpec
    ) -> tuple[JackpotRow, list[PoolState]]:
        """Create the jackpot, one pool per tier at cycle 1 (amount = seed) with a committed
        seed, and audit it. Errors: ALREADY_EXISTS JACKPOT_ALREADY_EXISTS."""
        if await sql.jackpot_exists(conn, spec.jackpot_id):
            raise DomainError(
                ErrorCode.ALREADY_EXISTS,
                "JACKPOT_ALREADY_EXISTS",
                "a jackpot with this jackpot_id exists",
            )
        now = _now()
        await sql.insert_jackpot(conn, spec)
        owner = spec.owner_tenant_id
        await self._audit(
            conn,
            owner,
            "jackpot.created",
            spec.jackpot_id,
            {
                "jackpot_id": spec.jackpot_id,
                "currency": spec.currency,
                "scope": spec.scope.value,
                "tenant_ids": list(spec.tenant_ids),
                "region": spec.region,
                "game_ids": list(spec.game_ids),
                "conversion_rates_micro": dict(sorted(spec.conversion_rates.items())),
                "tiers": [t.as_dict() for t in spec.tiers],
            },
        )
        for order, cfg in enumerate(spec.tiers):
            pool_id = f"{spec.jackpot_id}.{cfg.tier}"
            await sql.insert_pool(conn, pool_id, spec.jackpot_id, order, cfg, cfg.seed_minor)
            await self._start_cycle(conn, owner, pool_id, 1, cfg, cfg.seed_minor, 0, now)
        jackpot = await sql.get_jackpot(conn, spec.jackpot_id)
        assert jackpot is not None
        states = await sql.list_pool_states(conn, owner, jackpot_id=spec.jackpot_id)
        return jackpot, sorted(states, key=lambda s: spec_order(spec, s.config.tier))

    async def update_pool(
        self,
        conn: Conn,
        tenant_id: str,
        pool_id: str,
        cfg: TierConfig,
        expected_version: int,
        reason: str,
    ) -> PoolState:
        """Replace a pool's configuration (owner only) and audit old and new values.

        Seed, must-drop range and deadline window take effect from the next cycle (the
        current cycle's start amount, drop point and time are committed). Errors: NOT_FOUND
        POOL_NOT_FOUND; PERMISSION_DENIED NOT_POOL_OWNER; FAILED_PRECONDITION
        CONFIG_VERSION_MISMATCH, KIND_IMMUTABLE, TRIGGER_IMMUTABLE, SHARDS_IMMUTABLE,
        TIER_IMMUTABLE (a cycle's drop point or time is drawn for its trigger at its start).
        """
        pool = await sql.pool_row(conn, pool_id, lock=True)
        jackpot = None if pool is None else await sql.get_jackpot(conn, pool.jackpot_id)
        if pool is None or jackpot is None or not jackpot.sees(tenant_id):
            raise _not_found("POOL_NOT_FOUND", "no such pool for this tenant")
        if tenant_id != jackpot.owner_tenant_id:
            raise DomainError(
                ErrorCode.PERMISSION_DENIED, "NOT_POOL_OWNER", "only the owner tenant configures"
            )
        if expected_version and expected_version != pool.config_version:
            raise DomainError(
                ErrorCode.FAILED_PRECONDITION,
                "CONFIG_VERSION_MISMATCH",
                f"the pool is at config_version {pool.config_version}",
                {"config_version": str(pool.config_version)},
            )
        old = pool.config
        for name, same in (
            ("TIER", cfg.tier == old.tier),
            ("KIND", cfg.kind == old.kind),
            ("TRIGGER", cfg.trigger == old.trigger),
            ("SHARDS", cfg.shards == old.shards),
        ):
            if not same:
                raise DomainError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"{name}_IMMUTABLE",
                    f"a pool's {name.lower()} cannot change",
                )
        check_tier(cfg, "config")
        await sql.lock_all_shards(conn, pool_id)
        self._pools.pop(jackpot.jackpot_id, None)
        version = await sql.update_pool_config(conn, pool_id, cfg)
        await self._audit(
            conn,
            jackpot.owner_tenant_id,
            "pool.config.changed",
            pool_id,
            {
                "pool_id": pool_id,
                "config_version": version,
                "from": old.as_dict(),
                "to": cfg.as_dict(),
                "reason": reason,
            },
        )
        state = await sql.pool_state(conn, pool_id)
        assert state is not None
        return state

    # -- contributions -------------------------------------------------------------------------

    def cached(self, jackpot_id: str) -> tuple[JackpotRow, list[PoolRow]] | None:
        """The jackpot and its pools (pool_id order) as this process last read them, or None
        when not cached (the batch path then leaves the request to `contribute`)."""
        jackpot = self._jackpots.get(jackpot_id)
        pools = self._pools.get(jackpot_id)
        if jackpot is None or pools is None:
            return None
        return jackpot, pools

    def forget_pools(self, jackpot_id: str) -> None:
        """Drop the cached pools of a jackpot (a cycle or config changed under a batch)."""
        self._pools.pop(jackpot_id, None)

    async def _member_jackpot(self, conn: Conn, tenant_id: str, jackpot_id: str) -> JackpotRow:
        jackpot = self._jackpots.get(jackpot_id)
        if jackpot is None:
            jackpot = await sql.get_jackpot(conn, jackpot_id)
            if jackpot is not None:
                self._jackpots[jackpot_id] = jackpot
        if jackpot is None or not jackpot.sees(tenant_id):
            raise _not_found("JACKPOT_NOT_FOUND", "no such jackpot for this tenant")
        if tenant_id not in jackpot.tenant_ids:
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "TENANT_NOT_LISTED",
                "the tenant is not listed on this jackpot",
            )
        return jackpot

    async def contribute(self, conn: Conn, cmd: Contribute) -> ContributeResult:
        """Record a bet's contribution to each tier of the jackpot and draw each trigger.

        Per tier: a bet below min_bet or from an excluded game does not qualify (nothing is
        recorded). Otherwise the contribution is `bet * rate_ppm / 10^6` with the fraction
        carried (or the caller's `contribution`), split between the visible pool and the hidden
        reseed pool, capped; then RANDOM draws, MUST_DROP drops when the amount reaches the
        committed point (the win is exactly the point; any excess is carried to the next cycle)
        and DEADLINE drops on the first round at or after the committed time.
        Errors (before any write): NOT_FOUND JACKPOT_NOT_FOUND; PERMISSION_DENIED
        TENANT_NOT_LISTED; INVALID_ARGUMENT CURRENCY_MISMATCH, CONTRIBUTION_EXCEEDS_BET,
        CONTRIBUTION_NEEDS_SINGLE_TIER, AMOUNT_OVERFLOW (the converted bet passes int64);
        FAILED_PRECONDITION AMOUNT_OVERFLOW (the pool's whole value would pass int64, see
        accounting.pool_value_fits; rolled back, then stored like any refusal).
        """
        jackpot = await self._member_jackpot(conn, cmd.tenant_id, cmd.jackpot_id)
        conversion = conversion_of(jackpot, cmd.bet.currency)
        bet_in_pool_currency = cmd.bet.minor_units * conversion // MICRO
        pools = self._pools.get(jackpot.jackpot_id)
        if pools is None:
            pools = await sql.jackpot_pools(conn, jackpot.jackpot_id)
            self._pools[jackpot.jackpot_id] = pools
        given = caller_contribution(jackpot, pools, cmd, bet_in_pool_currency)
        outcomes: list[tuple[int, TierOutcome]] = []
        wins: list[uuid.UUID] = []
        for pool in pools:  # pool_id order: the lock order
            outcome = await self._contribute_tier(conn, jackpot, pool, cmd, given, conversion)
            outcomes.append((pool.tier_order, outcome))
            if outcome.win_id is not None:
                wins.append(outcome.win_id)
        ordered = tuple(o for _, o in sorted(outcomes, key=lambda t: t[0]))
        return ContributeResult(jackpot.currency, ordered, tuple(wins))

    async def _contribute_tier(
        self,
        conn: Conn,
        jackpot: JackpotRow,
        pool: PoolRow,
        cmd: Contribute,
        given: int | None,
        conversion: int,
    ) -> TierOutcome:
        bet = cmd.bet.minor_units
        converted = bet * conversion // MICRO  # qualification and probability scaling
        for _ in range(_MAX_CYCLE_RACES):
            cfg = pool.config
            refused = not_qualified(jackpot, pool, cmd.game_id, converted)
            if refused is not None:
                return refused
            probability, drawn_hit = draw(pool, cmd, converted)
            deadline_due = is_deadline_due(pool)
            if needs_pool_lock(cfg) or drawn_hit or deadline_due:
                locked = await sql.pool_row(conn, pool.pool_id, lock=True)
                assert locked is not None
                if (locked.cycle, locked.config_version) != (pool.cycle, pool.config_version):
                    pool = locked  # a hit or a config change committed meanwhile: redraw
                    self._pools.pop(jackpot.jackpot_id, None)
                    continue
                shards = await sql.lock_all_shards(conn, pool.pool_id)
                return await self._contribute_locked(
                    conn,
                    jackpot,
                    pool,
                    shards,
                    cmd,
                    given,
                    conversion,
                    probability,
                    drawn_hit,
                    deadline_due,
                )
            try:
                added = await sql.add_to_shard(
                    conn,
                    pool_id=pool.pool_id,
                    shard=shard_for(cmd.idempotency_key, cfg.shards),
                    cycle=pool.cycle,
                    config_version=pool.config_version,
                    bet=bet,
                    rate_ppm=cfg.contribution_rate_ppm,
                    split_ppm=cfg.reseed_split_ppm,
                    given=given,
                    conversion_micro=conversion,
                )
            except psycopg.errors.NumericValueOutOfRange as exc:  # a counter row passed bigint
                raise pool_overflow(pool.pool_id) from exc
            if added is None:  # a hit or a config change committed since our read
                await self._reload(conn, jackpot.jackpot_id, pool.pool_id)
                raise StalePoolError(pool.pool_id)
            if not pool_value_fits(pool.cycle_base, added.contributed, added.hidden):
                raise pool_overflow(pool.pool_id)
            split = Split(added.total, added.to_pool, added.to_reseed, 0, 0, 0, 0)
            await self._record_contribution(
                conn,
                pool,
                cmd,
                given,
                conversion,
                split,
                probability,
                None,
                currency=jackpot.currency,
                pool_amount=pool.cycle_base + added.contributed,
            )
            return TierOutcome(
                pool.pool_id,
                cfg.tier,
                pool.cycle,
                True,
                contribution=added.to_pool,
                reseed=added.to_reseed,
                pool_amount=pool.cycle_base + added.contributed,
            )
        raise StalePoolError(pool.pool_id)  # never stored: the transaction starts again

    async def _reload(self, conn: Conn, jackpot_id: str, pool_id: str) -> PoolRow:
        """Read one pool again (committed state: this transaction has not written it)."""
        fresh = await sql.pool_row(conn, pool_id)
        assert fresh is not None
        cached = self._pools.get(jackpot_id)
        if cached is not None:
            self._pools[jackpot_id] = [fresh if p.pool_id == pool_id else p for p in cached]
        return fresh

    def _apply(
        self,
        shard: ShardRow,
        cfg: TierConfig,
        bet: int,
        given: int | None,
        conversion: int,
        headroom: int | None,
    ) -> Split:
        stop = cfg.overflow_policy is OverflowPolicy.STOP_GROWING
        if cfg.trigger is TriggerKind.MUST_DROP:
            stop = False  # above the drop point the excess is carried to the next cycle
        split = split_contribution(
            bet=bet,
            rate_ppm=cfg.contribution_rate_ppm,
            split_ppm=cfg.reseed_split_ppm,
            given=given,
            total_carry=shard.total_carry,
            reseed_carry=shard.reseed_carry,
            headroom=headroom,
            stop_growing=stop,
            conversion_micro=conversion,
        )
        shard.visible += split.to_pool
        shard.reseed += split.to_reseed
        shard.overflow += split.to_overflow
        shard.contributions += 1
        shard.total_carry = split.total_carry
        shard.reseed_carry = split.reseed_carry
        return split

    async def _contribute_locked(
        self,
        conn: Conn,
        jackpot: JackpotRow,
        pool: PoolRow,
        shards: list[ShardRow],
        cmd: Contribute,
        given: int | None,
        conversion: int,
        probability: int,
        drawn_hit: bool,
        deadline_due: bool,
    ) -> TierOutcome:
        cfg = pool.config
        shard = shards[shard_for(cmd.idempotency_key, cfg.shards)]
        amount = pool.cycle_base + sum(s.visible for s in shards)
        headroom: int | None = None
        if cfg.cap_minor:
            headroom = cfg.cap_minor - amount
        if cfg.trigger is TriggerKind.MUST_DROP:
            assert pool.must_drop_point is not None
            point_room = pool.must_drop_point - amount
            headroom = point_room if headroom is None else min(headroom, point_room)
        split = self._apply(shard, cfg, cmd.bet.minor_units, given, conversion, headroom)
        hidden = sum(s.reseed + s.overflow for s in shards)
        if not pool_value_fits(amount, split.to_pool, hidden):
            raise pool_overflow(pool.pool_id)  # an earlier tier may have written
        await sql.save_shard(conn, pool.pool_id, shard)
        amount += split.to_pool
        reason = ""
        if drawn_hit:
            reason = "random_hit"
        elif deadline_due:
            reason = "deadline"
        elif cfg.trigger is TriggerKind.MUST_DROP:
            assert pool.must_drop_point is not None
            if amount >= pool.must_drop_point:
                reason = "must_drop"
        win_id: uuid.UUID | None = None
        if reason:
            win_id = uuid.uuid4()
        await self._record_contribution(
            conn,
            pool,
            cmd,
            given,
            conversion,
            split,
            probability,
            win_id,
            currency=jackpot.currency,
            pool_amount=amount,
        )
        if win_id is not None:
            await self._hit(
                conn,
                jackpot,
                pool,
                shards,
                win_id=win_id,
                tenant_id=cmd.tenant_id,
                player_id=cmd.player_id,
                round_id=cmd.round_id,
                game_id=cmd.game_id,
                reason=reason,
                trigger_key=cmd.idempotency_key,
            )
        return TierOutcome(
            pool.pool_id,
            cfg.tier,
            pool.cycle,
            True,
            contribution=split.to_pool,
            reseed=split.to_reseed,
            overflow=split.to_overflow,
            not_collected=split.not_collected,
            pool_amount=amount,
            hit=win_id is not None,
            win_id=win_id,
        )

    async def _record_contribution(
        self,
        conn: Conn,
        pool: PoolRow,
        cmd: Contribute,
        given: int | None,
        conversion: int,
        split: Split,
        probability: int,
        win_id: uuid.UUID | None,
        *,
        currency: str,
        pool_amount: int,
    ) -> None:
        """Append the contribution record and its `jp.contribution.recorded` event (every
        path: the sharded fast path and the locked one), in the contribution's transaction."""
        values, event = contribution_record(
            pool,
            cmd,
            given=given,
            conversion=conversion,
            split=split,
            probability=probability,
            win_id=win_id,
            currency=currency,
            pool_amount=pool_amount,
            shard=shard_for(cmd.idempotency_key, pool.config.shards),
        )
        await sql.insert_contribution(conn, **values)
        await outbox_sql.insert_events(conn, [event])

    # -- hits ----------------------------------------------------------------------------------

    async def trigger(self, conn: Conn, cmd: TriggerCmd) -> WinRow:
        """A hit reported by an RGS on an EXTERNAL pool: the win is the pool's exact value.

        Errors: NOT_FOUND POOL_NOT_FOUND; PERMISSION_DENIED TENANT_NOT_LISTED;
        FAILED_PRECONDITION TRIGGER_NOT_EXTERNAL.
        """
        pool = await sql.pool_row(conn, cmd.pool_id, lock=True)
        jackpot = None if pool is None else await sql.get_jackpot(conn, pool.jackpot_id)
        if pool is None or jackpot is None or not jackpot.sees(cmd.tenant_id):
            raise _not_found("POOL_NOT_FOUND", "no such pool for this tenant")
        if cmd.tenant_id not in jackpot.tenant_ids:
            raise DomainError(
                ErrorCode.PERMISSION_DENIED, "TENANT_NOT_LISTED", "the tenant is not listed"
            )
        if pool.config.trigger is not TriggerKind.EXTERNAL:
            raise DomainError(
                ErrorCode.FAILED_PRECONDITION,
                "TRIGGER_NOT_EXTERNAL",
                f"this pool's hits are decided by the jackpot ({pool.config.trigger.value})",
            )
        shards = await sql.lock_all_shards(conn, pool.pool_id)
        win_id = uuid.uuid4()
        await self._hit(
            conn,
            jackpot,
            pool,
            shards,
            win_id=win_id,
            tenant_id=cmd.tenant_id,
            player_id=cmd.player_id,
            round_id=cmd.round_id,
            game_id=cmd.game_id,
            reason=cmd.reason,
            trigger_key=cmd.idempotency_key,
        )
        win = await sql.get_win(conn, win_id)
        assert win is not None
        return win

    async def drop_due_deadlines(self, limit: int = 50) -> list[uuid.UUID]:
        """Time-bound pools: a DEADLINE pool whose drop time has passed
        drops at once, to the cycle's last qualifying contribution (the round that came
        closest to the deadline), without waiting for another bet. A cycle with no
        contribution yet drops on its next qualifying round. Returns the new wins; safe to run
        in every worker (the pool row lock and one win per cycle decide). Each pool drops in
        its own transaction; one whose drop fails for its data (e.g. its value past int64) is
        logged, counted in `croupier_background_rows_set_aside_total{job="deadline_drop"}` and
        skipped by this process for SET_ASIDE_SECONDS, never stopping the others."""
        now = time.monotonic()
        for pool_id, until in list(self._set_aside.items()):
            if until <= now:
                del self._set_aside[pool_id]
        async with self.db.connection() as conn:
            due = await sql.due_deadline_pools(conn, limit, list(self._set_aside))
        wins: list[uuid.UUID] = []
        for pool_id in due:
            try:
                win_id = await self._drop_deadline(pool_id)
            except (DomainError, psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                reason = exc.reason if isinstance(exc, DomainError) else type(exc).__name__
                BACKGROUND_ROWS_SET_ASIDE.labels("deadline_drop", reason).inc()
                log.error("deadline drop of pool %s failed, set aside: %s", pool_id, exc)
                self._set_aside[pool_id] = now + SET_ASIDE_SECONDS
                continue
            if win_id is not None:
                wins.append(win_id)
        return wins

    async def _drop_deadline(self, pool_id: str) -> uuid.UUID | None:
        """Drop one due DEADLINE pool in its own transaction; its win id, or None when there is
        nothing to drop (dropped meanwhile, or no contribution yet this cycle)."""
        async with self.db.connection() as conn, conn.transaction():
            pool = await sql.pool_row(conn, pool_id, lock=True)
            if (
                pool is None
                or pool.config.trigger is not TriggerKind.DEADLINE
                or pool.drop_at is None
                or _now() < pool.drop_at
            ):
                return None  # another worker or a contribution dropped it meanwhile
            last = await sql.last_contribution(conn, pool_id, pool.cycle)
            jackpot = await sql.get_jackpot(conn, pool.jackpot_id)
            if last is None or jackpot is None:
                return None
            tenant_id, player_id, round_id, game_id, key = last
            shards = await sql.lock_all_shards(conn, pool_id)
            win_id = uuid.uuid4()
            await self._hit(
                conn,
                jackpot,
                pool,
                shards,
                win_id=win_id,
                tenant_id=tenant_id,
                player_id=player_id,
                round_id=round_id,
                game_id=game_id,
                reason="deadline",
                trigger_key=key,
            )
            return win_id

    async def _hit(
        self,
        conn: Conn,
        jackpot: JackpotRow,
        pool: PoolRow,
        shards: list[ShardRow],
        *,
        win_id: uuid.UUID,
        tenant_id: str,
        player_id: str,
        round_id: str,
        game_id: str,
        reason: str,
        trigger_key: str,
    ) -> None:
        """Lock in the pool's exact value as a win (the obligation and its `requested` saga
        step), reveal the cycle's seed and start the next cycle at seed + reseed + overflow.

        The pool row and every shard row must be locked by the caller. Outbox: jp.triggered,
        jp.payout.requested and jp.pool.updated belong here.
        """
        now = _now()
        self._pools.pop(jackpot.jackpot_id, None)
        amount = pool.cycle_base + sum(s.visible for s in shards)
        hidden = sum(s.reseed + s.overflow for s in shards)
        if amount > INT64_MAX or pool.config.seed_minor + hidden > INT64_MAX:
            raise pool_overflow(pool.pool_id)  # the win or the next cycle's base
        await sql.insert_win(
            conn,
            win_id=win_id,
            tenant_id=tenant_id,
            player_id=player_id,
            pool_id=pool.pool_id,
            cycle=pool.cycle,
            round_id=round_id,
            game_id=game_id,
            reason=reason,
            trigger_key=trigger_key,
            amount=amount,
            currency=jackpot.currency,
            hit_at=now,
        )
        await sql.end_cycle(conn, pool.pool_id, pool.cycle, win_id, now)
        await jp_events.triggered(
            conn,
            win_id=str(win_id),
            tenant_id=tenant_id,
            player_id=player_id,
            pool_id=pool.pool_id,
            cycle=pool.cycle,
            amount=amount,
            currency=jackpot.currency,
            reason=reason,
            round_id=round_id,
        )
        owner = jackpot.owner_tenant_id
        await self._audit(
            conn,
            owner,
            "cycle.seed.revealed",
            pool.pool_id,
            {
                "pool_id": pool.pool_id,
                "cycle": pool.cycle,
                "server_seed": pool.server_seed.hex(),
                "seed_commitment": fairness.commitment(pool.server_seed).hex(),
                "must_drop_point": pool.must_drop_point,
                "drop_at": None if pool.drop_at is None else pool.drop_at.isoformat(),
                "win_id": str(win_id),
                "amount": amount,
            },
        )
        base = pool.config.seed_minor + hidden
        await sql.advance_pool(conn, pool.pool_id, pool.cycle + 1, base, hidden)
        await jp_events.pool_updated(
            conn,
            tenant_id=owner,
            pool_id=pool.pool_id,
            cycle=pool.cycle + 1,
            amount=base,
            currency=jackpot.currency,
            reason="reset after hit",
        )
        await self._start_cycle(
            conn, owner, pool.pool_id, pool.cycle + 1, pool.config, base, hidden, now
        )

    async def _start_cycle(
        self,
        conn: Conn,
        owner: str,
        pool_id: str,
        cycle: int,
        cfg: TierConfig,
        start_amount: int,
        carried_in: int,
        now: datetime,
    ) -> None:
        """A new cycle: a fresh server seed, its commitment audited before any contribution,
        and the must-drop point or deadline drawn from it (server.jackpot.fairness)."""
        server_seed = fairness.new_server_seed()
        committed = fairness.commitment(server_seed)
        point = None
        low, high = 0, 0
        if cfg.trigger is TriggerKind.MUST_DROP:
            # a start amount carried above the configured min raises the range's floor
            low = max(cfg.must_drop_min_minor, start_amount)
            high = max(cfg.must_drop_max_minor, low)
            point = fairness.must_drop_point(server_seed, pool_id, cycle, low, high)
        drop_at = None
        if cfg.trigger is TriggerKind.DEADLINE:
            offset = fairness.deadline_offset(
                server_seed, pool_id, cycle, cfg.deadline_min_seconds, cfg.deadline_max_seconds
            )
            drop_at = now + timedelta(seconds=offset)
        await sql.insert_cycle(
            conn,
            pool_id=pool_id,
            cycle=cycle,
            server_seed=server_seed,
            seed_commitment=committed,
            start_amount=start_amount,
            carried_in=carried_in,
            cfg=cfg,
            must_drop_range=(low, high),
            must_drop_point=point,
            drop_at=drop_at,
            started_at=now,
        )
        await self._audit(
            conn,
            owner,
            "cycle.seed.committed",
            pool_id,
            {
                "pool_id": pool_id,
                "cycle": cycle,
                "seed_commitment": committed.hex(),
                "start_amount": start_amount,
                "trigger": cfg.trigger.value,
                "must_drop_min": low,
                "must_drop_max": high,
                "deadline_min_seconds": cfg.deadline_min_seconds,
                "deadline_max_seconds": cfg.deadline_max_seconds,
                "started_at": now.isoformat(),
            },
        )

    async def _audit(
        self, conn: Conn, tenant_id: str, action: str, subject: str, payload: dict[str, object]
    ) -> None:
        """Append to the tenant's hash chain (outbox: audit.config.changed goes here)."""
        seq, prev = await sql.lock_audit_head(conn, tenant_id, audit.GENESIS)
        seq += 1
        micros = time.time_ns() // 1000
        text = audit.canonical_json(payload)
        digest = audit.record_hash(prev, tenant_id, seq, micros, action, subject, text)
        await sql.append_audit(
            conn,
            tenant_id=tenant_id,
            seq=seq,
            action=action,
            subject=subject,
            payload=text,
            time_micros=micros,
            prev_hash=prev,
            hash_=digest,
        )
        await jp_events.config_changed(
            conn,
            tenant_id=tenant_id,
            action=action,
            subject=subject,
            seq=seq,
            record_hash=digest.hex() if isinstance(digest, bytes) else str(digest),
        )

    # -- reads ---------------------------------------------------------------------------------

    async def eligibility(
        self, tenant_id: str, jackpot_id: str, game_id: str, bet: Money
    ) -> list[Eligibility]:
        """Whether `bet` qualifies for each tier and its hit probability.

        Errors: NOT_FOUND JACKPOT_NOT_FOUND; PERMISSION_DENIED TENANT_NOT_LISTED.
        """
        async with self.db.connection() as conn:
            jackpot = await self._member_jackpot(conn, tenant_id, jackpot_id)
            pools = await sql.jackpot_pools(conn, jackpot_id)
        out = []
        for p in sorted(pools, key=lambda p: p.tier_order):
            cfg = p.config
            reason = ""
            rate = MICRO if bet.currency == jackpot.currency else None
            rate = jackpot.conversion_rates.get(bet.currency, rate)
            converted = 0 if rate is None else bet.minor_units * rate // MICRO
            if rate is None:
                reason = "CURRENCY_MISMATCH"
            elif not jackpot.game_included(game_id):
                reason = "GAME_NOT_INCLUDED"
            elif converted < cfg.min_bet_minor:
                reason = "BELOW_MIN_BET"
            probability = 0
            if not reason and cfg.trigger is TriggerKind.RANDOM:
                probability = fairness.effective_probability_ppb(
                    cfg.hit_probability_ppb, cfg.reference_bet_minor, converted
                )
            out.append(Eligibility(p.pool_id, cfg.tier, not reason, reason, probability))
        return out

    async def get_pool(self, tenant_id: str, pool_id: str) -> PoolState:
        """A pool the tenant owns or is listed on (may be read on a standby, see
        server.store.replica). Errors: NOT_FOUND POOL_NOT_FOUND."""
        async with self.reads.connection() as conn:
            state = await sql.pool_state(conn, pool_id)
        if state is None or not state.jackpot.sees(tenant_id):
            raise _not_found("POOL_NOT_FOUND", "no such pool for this tenant")
        return state

    async def list_pools(
        self,
        tenant_id: str,
        *,
        region: str = "",
        game_id: str = "",
        jackpot_id: str = "",
        pool_ids: list[str] | None = None,
        after: str = "",
        limit: int = 500,
    ) -> list[PoolState]:
        """Pools the tenant owns or is listed on, by pool_id (may be read on a standby)."""
        async with self.reads.connection() as conn:
            return await sql.list_pool_states(
                conn,
                tenant_id,
                region=region,
                game_id=game_id,
                jackpot_id=jackpot_id,
                pool_ids=pool_ids,
                after=after,
                limit=limit,
            )

    async def get_win(self, tenant_id: str, win_id: uuid.UUID) -> WinRow:
        """A win of the tenant's player. Errors: NOT_FOUND WIN_NOT_FOUND."""
        async with self.db.connection() as conn:
            win = await sql.get_win(conn, win_id)
        if win is None or win.tenant_id != tenant_id:
            raise _not_found("WIN_NOT_FOUND", "no such win for this tenant")
        return win

    async def list_wins(
        self,
        tenant_id: str,
        pool_id: str,
        player_id: str,
        state: PayoutState | None,
        before: int | None,
        limit: int,
    ) -> list[WinRow]:
        """The tenant's wins, newest first."""
        async with self.db.connection() as conn:
            return await sql.list_wins(
                conn, tenant_id, pool_id, player_id, state.value if state else "", before, limit
            )

    async def get_cycle(self, tenant_id: str, pool_id: str, cycle: int) -> CycleRow:
        """A cycle; its seed only once ended. Errors: NOT_FOUND CYCLE_NOT_FOUND."""
        await self.get_pool(tenant_id, pool_id)
        async with self.db.connection() as conn:
            row = await sql.get_cycle(conn, pool_id, cycle)
        if row is None:
            raise _not_found("CYCLE_NOT_FOUND", "no such cycle")
        return row

    async def list_contributions(
        self, tenant_id: str, pool_id: str, cycle: int, after: int, limit: int
    ) -> list[ContributionRow]:
        """A cycle's contributions: all of them for the owner, a listed tenant's own else."""
        state = await self.get_pool(tenant_id, pool_id)
        only = None if tenant_id == state.jackpot.owner_tenant_id else tenant_id
        async with self.db.connection() as conn:
            return await sql.list_contributions(conn, pool_id, cycle, only, after, limit)

    async def audit_log(self, tenant_id: str, after: int, limit: int) -> list[audit.ChainRecord]:
        """A page of the tenant's audit chain in order."""
        async with self.db.connection() as conn:
            rows = await sql.audit_page(conn, tenant_id, after, limit)
        return [
            audit.ChainRecord(tenant_id, seq, micros, action, subject, payload, prev, digest)
            for seq, action, subject, payload, micros, prev, digest in rows
        ]

    async def reconcile(self, tenant_id: str, pool_id: str = "") -> list[Reconciliation]:
        """Reconcile the tenant's pools (docs/architecture.md invariant 5; may be read on a
        standby, server.store.replica)."""
        async with self.reads.connection() as conn:
            return await sql.reconcile(conn, tenant_id, pool_id)


def caller_contribution(
    jackpot: JackpotRow, pools: list[PoolRow], cmd: Contribute, bet_in_pool_currency: int
) -> int | None:
    """The caller's own contribution amount (minor units), or None to compute it from the rate.

    Raises INVALID_ARGUMENT AMOUNT_OVERFLOW (the converted bet passes int64), CURRENCY_MISMATCH,
    CONTRIBUTION_EXCEEDS_BET, CONTRIBUTION_NEEDS_SINGLE_TIER (a given contribution is for one
    tier only).
    """
    if bet_in_pool_currency > INT64_MAX:
        raise invalid(
            "bet.minor_units",
            "AMOUNT_OVERFLOW",
            "the bet converted to the jackpot's currency passes 2^63-1 minor units",
        )
    if cmd.contribution is None:
        return None
    if cmd.contribution.currency != jackpot.currency:
        raise invalid(
            "contribution.currency",
            "CURRENCY_MISMATCH",
            f"the jackpot's currency is {jackpot.currency}",
        )
    if cmd.contribution.minor_units > bet_in_pool_currency:
        raise invalid(
            "contribution.minor_units",
            "CONTRIBUTION_EXCEEDS_BET",
            "the contribution exceeds the bet",
        )
    if len(pools) != 1:
        raise invalid(
            "contribution",
            "CONTRIBUTION_NEEDS_SINGLE_TIER",
            "a caller-computed contribution is accepted for single-tier jackpots only",
        )
    return cmd.contribution.minor_units


def not_qualified(
    jackpot: JackpotRow, pool: PoolRow, game_id: str, converted_bet: int
) -> TierOutcome | None:
    """The outcome of a bet that does not qualify for the tier (an excluded game, a bet
    below min_bet in the pool's minor units), or None when it qualifies."""
    cfg = pool.config
    if not jackpot.game_included(game_id):
        return TierOutcome(pool.pool_id, cfg.tier, pool.cycle, False, "GAME_NOT_INCLUDED")
    if converted_bet < cfg.min_bet_minor:
        return TierOutcome(pool.pool_id, cfg.tier, pool.cycle, False, "BELOW_MIN_BET")
    return None


def draw(pool: PoolRow, cmd: Contribute, converted_bet: int) -> tuple[int, bool]:
    """A RANDOM tier's draw for this contribution: (hit probability in ppb, hit). Other
    triggers draw nothing: (0, False). Deterministic from the cycle's server seed, the pool,
    the cycle, the round and the idempotency key (server.jackpot.fairness)."""
    cfg = pool.config
    if cfg.trigger is not TriggerKind.RANDOM:
        return 0, False
    probability = fairness.effective_probability_ppb(
        cfg.hit_probability_ppb, cfg.reference_bet_minor, converted_bet
    )
    value = fairness.draw(
        pool.server_seed, pool.pool_id, pool.cycle, cmd.round_id, cmd.idempotency_key
    )
    return probability, fairness.is_hit(value, probability)


def is_deadline_due(pool: PoolRow) -> bool:
    """A DEADLINE tier whose committed drop time has come (the next round drops it)."""
    return (
        pool.config.trigger is TriggerKind.DEADLINE
        and pool.drop_at is not None
        and _now() >= pool.drop_at
    )


def needs_pool_lock(cfg: TierConfig) -> bool:
    """A capped or must-drop tier takes the pool lock on every contribution (its amount must
    be exact); an uncapped tier only adds to one counter row unless its draw hits."""
    return cfg.cap_minor > 0 or cfg.trigger is TriggerKind.MUST_DROP


def contribution_record(
    pool: PoolRow,
    cmd: Contribute,
    *,
    given: int | None,
    conversion: int,
    split: Split,
    probability: int,
    win_id: uuid.UUID | None,
    currency: str,
    pool_amount: int,
    shard: int,
    trace_id: str | None = None,
) -> tuple[dict[str, Any], NewEvent]:
    """One contribution to one tier as stored: its jp_contributions row (column -> value;
    amounts in minor units of the pool's `currency`, the draw's odds in ppb) and its
    `jp.contribution.recorded` event (ordered within pool counter row `shard`; `trace_id`:
    the caller's, default the current one)."""
    values: dict[str, Any] = {
        "tenant_id": cmd.tenant_id,
        "idempotency_key": cmd.idempotency_key,
        "pool_id": pool.pool_id,
        "cycle": pool.cycle,
        "player_id": cmd.player_id,
        "game_id": cmd.game_id,
        "round_id": cmd.round_id,
        "bet": cmd.bet.minor_units,
        "bet_currency": cmd.bet.currency,
        "conversion_micro": conversion,
        "computed": given is None,
        "rate_ppm": pool.config.contribution_rate_ppm,
        "split_ppm": pool.config.reseed_split_ppm,
        "total": split.total,
        "to_pool": split.to_pool,
        "to_reseed": split.to_reseed,
        "to_overflow": split.to_overflow,
        "not_collected": split.not_collected,
        "hit_probability_ppb": probability,
        "hit": win_id is not None,
        "win_id": win_id,
        "occurred_at": cmd.occurred_at,
    }
    event = jp_events.contribution_recorded_event(
        tenant_id=cmd.tenant_id,
        pool_id=pool.pool_id,
        shard=shard,
        tier=pool.config.tier,
        cycle=pool.cycle,
        key=cmd.idempotency_key,
        player_id=cmd.player_id,
        round_id=cmd.round_id,
        game_id=cmd.game_id,
        bet=cmd.bet.minor_units,
        bet_currency=cmd.bet.currency,
        currency=currency,
        to_pool=split.to_pool,
        to_reseed=split.to_reseed,
        to_overflow=split.to_overflow,
        pool_amount=pool_amount,
        hit=win_id is not None,
        trace_id=trace_id,
    )
    return values, event


def conversion_of(jackpot: JackpotRow, currency: str) -> int:
    """Pool minor units per 10^6 minor units of `currency` (10^6 for the pool's own).

    Errors: INVALID_ARGUMENT CURRENCY_MISMATCH naming bet.currency when no rate is configured.
    """
    if currency == jackpot.currency:
        return MICRO
    rate = jackpot.conversion_rates.get(currency)
    if rate is None:
        raise invalid(
            "bet.currency",
            "CURRENCY_MISMATCH",
            f"the jackpot's currency is {jackpot.currency}; no rate for {currency} is configured",
        )
    return rate


def spec_order(spec: JackpotSpec, tier: str) -> int:
    """The position of `tier` in the request."""
    return [t.tier for t in spec.tiers].index(tier)

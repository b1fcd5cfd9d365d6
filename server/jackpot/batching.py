"""Group commit of contributions: concurrent Contribute requests share one database
transaction of two statements (one read, one write) instead of one transaction each.

Why: on the hot network pool every contribution cost a transaction, a commit and a handful of
statements, and the server's CPU (not the row lock) was the limit; TigerBeetle batches
transfers for the same reason. A batch of n contributions costs about what one did.

What is batched: a contribution whose every qualifying tier takes the uncapped fast path (no
cap, not must-drop, its draw missed, no deadline due) and whose jackpot and pools this process
has cached. Anything else (an error to record, a hit, a capped or must-drop tier, an uncached
jackpot, a key already used) is left to `Jackpots.execute` unchanged: `submit` returns None.

How (natural batching, no timer): requests queue while a batch is at the database (up to
`max_inflight` per process); a finished batch takes the next `max_batch` queued requests at
once. At low load a request finds nobody to share with and runs by itself on the one-request
path (cheaper than a batch), waiting for nothing; under load batches grow by themselves.

A batch (server.store.jackpot_sql read_batch / write_batch):
1. one read, no lock: one counter row per pool (a random one of its shards), the other rows'
   sum, and which idempotency keys are already used (those requests leave the batch and
   replay through the normal path; a key repeated in the batch runs after it the same way);
2. in Python, each contribution is split in arrival order with the row's carries
   (server.jackpot.accounting.split_contribution, the arithmetic of the one-request path), and
   each request's exact response bytes are encoded;
3. one write statement, its own transaction: the counter rows, each only if still exactly as
   read (optimistic concurrency; otherwise migration 0008's check fails the statement with
   serialization_failure, nothing is written, and the batch reads again, three attempts), the
   contribution records, their `jp.contribution.recorded` events and the idempotency records.
Every request of the batch commits or none does: if anything fails (a key used meanwhile, a
stale cycle, a lost connection), every request of the batch goes through the normal path
instead, which applies it or replays it exactly once. Nothing is answered before COMMIT.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError
from server.events.context import current_trace_id
from server.group_commit import Batcher, Pending, first_of_each_key, outcome_of
from server.idempotency import RequestKey, StoredReply
from server.jackpot.accounting import MICRO, pool_value_fits, split_contribution
from server.jackpot.engine import (
    Jackpots,
    caller_contribution,
    contribution_record,
    conversion_of,
    draw,
    is_deadline_due,
    needs_pool_lock,
    not_qualified,
)
from server.jackpot.model import Contribute, ContributeResult, JackpotRow, TierOutcome
from server.store import idempotency_sql, outbox_sql
from server.store import jackpot_sql as sql
from server.store.jackpot_sql import BatchShard, PoolRow
from server.telemetry import BATCH_FALLBACKS


@dataclass(frozen=True, slots=True)
class _FastTier:
    """A qualifying tier on the fast path: its pool as drawn against, and the draw's odds."""

    pool: PoolRow
    probability_ppb: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a contribution will do, decided from cached state before the transaction."""

    jackpot: JackpotRow
    given: int | None
    conversion: int
    tiers: tuple[tuple[int, TierOutcome | _FastTier], ...]  # (tier_order, ...), pool_id order


@dataclass(slots=True)
class _Entry(Pending):
    cmd: Contribute
    plan: _Plan
    encode_ok: Callable[[ContributeResult], bytes]


class _Stale(Exception):
    """A pool's cycle or config changed since the plan: the batch goes the normal way."""


_COUNTERS = (
    "visible",
    "reseed",
    "total_carry",
    "reseed_carry",
    "added",
    "last_total",
    "last_reseed",
)


def _counters(row: BatchShard) -> tuple[int, ...]:
    """The counters `_apply` changes on a row, to undo a contribution that leaves the batch."""
    return tuple(getattr(row, name) for name in _COUNTERS)


def _restore(row: BatchShard, counters: tuple[int, ...]) -> None:
    for name, value in zip(_COUNTERS, counters, strict=True):
        setattr(row, name, value)


class _PoolOverflow(Exception):
    """This contribution would take a pool's value past int64: it leaves the batch (before
    anything of it is applied) and the normal path refuses it with AMOUNT_OVERFLOW."""


class ContributionBatcher(Batcher[_Entry]):
    """Batches fast-path contributions of one process (see the module doc).

    `max_batch`: most requests per batch (1 turns batching off: `submit` always returns None).
    """

    def __init__(
        self,
        jackpots: Jackpots,
        db: AsyncConnectionPool,
        *,
        max_batch: int = 64,
        max_inflight: int = 1,
    ) -> None:
        super().__init__("contribute", max_batch=max_batch, max_inflight=max_inflight)
        self.jackpots = jackpots
        self.db = db
        self._random = random.Random()

    async def submit(
        self,
        key: RequestKey,
        cmd: Contribute,
        encode_ok: Callable[[ContributeResult], bytes],
        alone: Callable[[], Awaitable[StoredReply]],
    ) -> StoredReply | None:
        """The committed reply of a batched contribution, or None: the caller runs the request
        through `Jackpots.execute` (not batchable, or its batch failed; nothing of it was
        committed by the batch). `alone` runs the request by itself (`Jackpots.execute`): a
        batch of one uses it, as it costs less than a batch; its errors propagate.
        """
        if not self.enabled:
            return None
        plan = self._plan(cmd)
        if plan is None:
            return None
        if self._idle():
            return await self._run_direct(alone)
        future: asyncio.Future[StoredReply | None] = asyncio.get_running_loop().create_future()
        return await self._enqueue(
            _Entry(
                key,
                alone,
                contextvars.copy_context(),
                current_trace_id.get(),
                future,
                cmd,
                plan,
                encode_ok,
            )
        )

    def _plan(self, cmd: Contribute) -> _Plan | None:
        cached = self.jackpots.cached(cmd.jackpot_id)
        if cached is None:
            return None
        jackpot, pools = cached
        if cmd.tenant_id not in jackpot.tenant_ids:
            return None  # refused by the normal path (JACKPOT_NOT_FOUND / TENANT_NOT_LISTED)
        try:
            conversion = conversion_of(jackpot, cmd.bet.currency)
            converted = cmd.bet.minor_units * conversion // MICRO
            given = caller_contribution(jackpot, pools, cmd, converted)
        except DomainError:
            return None  # the normal path records the refusal under the key
        tiers: list[tuple[int, TierOutcome | _FastTier]] = []
        for pool in pools:
            refused = not_qualified(jackpot, pool, cmd.game_id, converted)
            if refused is not None:
                tiers.append((pool.tier_order, refused))
                continue
            probability, hit = draw(pool, cmd, converted)
            if hit or needs_pool_lock(pool.config) or is_deadline_due(pool):
                return None
            tiers.append((pool.tier_order, _FastTier(pool, probability)))
        if not any(isinstance(t, _FastTier) for _, t in tiers):
            return None  # nothing to add: no counter row to batch on
        return _Plan(jackpot, given, conversion, tuple(tiers))

    async def _commit(self, batch: list[_Entry]) -> dict[int, StoredReply]:
        """Apply the batch: one read and one write statement (its own transaction); replies
        by batch index (absent: the normal path). A counter row changed between the two (a
        concurrent batch or contribution on the same row) fails the write, which writes
        nothing; the batch then reads again (three attempts)."""
        keys = [e.key.slot for e in batch]
        wanted: dict[str, int] = {}
        for e in batch:
            for _, t in e.plan.tiers:
                if isinstance(t, _FastTier) and t.pool.pool_id not in wanted:
                    wanted[t.pool.pool_id] = self._random.randrange(t.pool.config.shards)
        async with self.db.connection() as conn:
            for attempt in range(3):
                rows, used = await sql.read_batch(conn, sorted(wanted.items()), keys)
                members = first_of_each_key(keys, used)
                if not members:
                    return {}
                read = {s.pool_id: s for s in rows}
                replies: dict[int, StoredReply] = {}
                contributions: list[dict[str, Any]] = []
                events: list[outbox_sql.NewEvent] = []
                outcomes: list[idempotency_sql.Outcome] = []
                for i in members:
                    entry = batch[i]
                    saved = [(r, _counters(r)) for r in rows]
                    queued = len(contributions), len(events)
                    try:
                        payload = entry.encode_ok(self._apply(entry, read, contributions, events))
                    except _PoolOverflow:  # undone here; the normal path refuses it
                        for r, counters in saved:
                            _restore(r, counters)
                        del contributions[queued[0] :], events[queued[1] :]
                        continue
                    outcomes.append(outcome_of(entry.key, 0, payload))
                    replies[i] = StoredReply(0, payload, False)
                if not replies:
                    return {}
                try:
                    await sql.write_batch(conn, rows, contributions, events, outcomes)
                except psycopg.errors.SerializationFailure:
                    BATCH_FALLBACKS.labels(self.kind, "row_changed_retry").inc()
                    if attempt == 2:
                        raise
                    continue
                return replies
        raise AssertionError("unreachable")

    def _apply(
        self,
        entry: _Entry,
        read: dict[str, BatchShard],
        contributions: list[dict[str, Any]],
        events: list[outbox_sql.NewEvent],
    ) -> ContributeResult:
        """Split one contribution on the rows read (updated in place); queue its records."""
        cmd, plan = entry.cmd, entry.plan
        outcomes: list[tuple[int, TierOutcome]] = []
        for pool_order, tier in plan.tiers:
            if isinstance(tier, TierOutcome):
                outcomes.append((pool_order, tier))
                continue
            pool, cfg = tier.pool, tier.pool.config
            row = read.get(pool.pool_id)
            if row is None or (row.cycle, row.config_version) != (pool.cycle, pool.config_version):
                self.jackpots.forget_pools(plan.jackpot.jackpot_id)
                raise _Stale(pool.pool_id)
            split = split_contribution(
                bet=cmd.bet.minor_units,
                rate_ppm=cfg.contribution_rate_ppm,
                split_ppm=cfg.reseed_split_ppm,
                given=plan.given,
                total_carry=row.total_carry,
                reseed_carry=row.reseed_carry,
                headroom=None,
                stop_growing=False,
                conversion_micro=plan.conversion,
            )
            if not pool_value_fits(
                pool.cycle_base,
                row.others + row.visible + split.to_pool,
                row.hidden_others + row.reseed + split.to_reseed,
            ):
                raise _PoolOverflow(pool.pool_id)
            row.visible += split.to_pool
            row.reseed += split.to_reseed
            row.total_carry, row.reseed_carry = split.total_carry, split.reseed_carry
            row.added += 1
            row.last_total, row.last_reseed = split.total, split.to_reseed
            amount = pool.cycle_base + row.others + row.visible
            values, event = contribution_record(
                pool,
                cmd,
                given=plan.given,
                conversion=plan.conversion,
                split=split,
                probability=tier.probability_ppb,
                win_id=None,
                currency=plan.jackpot.currency,
                pool_amount=amount,
                shard=row.shard,
                trace_id=entry.trace_id,
            )
            contributions.append(values)
            events.append(event)
            outcomes.append(
                (
                    pool_order,
                    TierOutcome(
                        pool.pool_id,
                        cfg.tier,
                        pool.cycle,
                        True,
                        contribution=split.to_pool,
                        reseed=split.to_reseed,
                        pool_amount=amount,
                    ),
                )
            )
        ordered = tuple(o for _, o in sorted(outcomes, key=lambda t: t[0]))
        return ContributeResult(plan.jackpot.currency, ordered)

"""The jackpot engine's SQL: every statement it runs, in one place (docs/architecture.md, "Layers").

Functions take an open connection inside the caller's transaction and return plain values or
the dataclasses of server.jackpot.model; they hold no business rules. Lock order, which keeps
contributions, hits and config changes deadlock-free: pools by pool_id, and for one pool its
row (FOR UPDATE) before its shard rows, shards by number.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.jackpot.model import (
    ContributionRow,
    CycleRow,
    JackpotRow,
    JackpotSpec,
    OverflowPolicy,
    PayoutState,
    PoolKind,
    PoolState,
    Reconciliation,
    Scope,
    TierConfig,
    TriggerKind,
    WinRow,
)
from server.store import idempotency_sql, outbox_sql
from server.store.outbox_sql import NewEvent
from server.store.wallet_sql import Conn

_CONFIG_COLUMNS = (
    "p.tier, p.kind, p.seed, p.contribution_rate_ppm, p.reseed_split_ppm, p.cap,"
    " p.overflow_policy, p.min_bet, p.trigger_kind, p.hit_probability_ppb, p.reference_bet,"
    " p.must_drop_min, p.must_drop_max, p.deadline_min_seconds, p.deadline_max_seconds,"
    " p.shards"
)
_JACKPOT_COLUMNS = (
    "j.jackpot_id, j.owner_tenant_id, j.display_name, j.currency, j.scope, j.tenant_ids,"
    " j.region, j.game_ids, j.created_at, j.conversion_rates"
)


def _config(row: tuple[Any, ...]) -> TierConfig:
    return TierConfig(
        tier=str(row[0]),
        kind=PoolKind(row[1]),
        seed_minor=int(row[2]),
        contribution_rate_ppm=int(row[3]),
        reseed_split_ppm=int(row[4]),
        cap_minor=int(row[5]),
        overflow_policy=OverflowPolicy(row[6]),
        min_bet_minor=int(row[7]),
        trigger=TriggerKind(row[8]),
        hit_probability_ppb=int(row[9]),
        reference_bet_minor=int(row[10]),
        must_drop_min_minor=int(row[11]),
        must_drop_max_minor=int(row[12]),
        deadline_min_seconds=int(row[13]),
        deadline_max_seconds=int(row[14]),
        shards=int(row[15]),
    )


def _jackpot(row: tuple[Any, ...]) -> JackpotRow:
    return JackpotRow(
        jackpot_id=str(row[0]),
        owner_tenant_id=str(row[1]),
        display_name=str(row[2]),
        currency=str(row[3]),
        scope=Scope(row[4]),
        tenant_ids=tuple(row[5]),
        region=str(row[6]),
        game_ids=tuple(row[7]),
        created_at=row[8],
        conversion_rates={str(k): int(v) for k, v in dict(row[9]).items()},
    )


# -- configuration -----------------------------------------------------------------------------


async def jackpot_exists(conn: Conn, jackpot_id: str) -> bool:
    """Whether any tenant already uses the jackpot id."""
    cur = await conn.execute("SELECT 1 FROM jp_jackpots WHERE jackpot_id = %s", (jackpot_id,))
    return await cur.fetchone() is not None


async def insert_jackpot(conn: Conn, spec: JackpotSpec) -> None:
    """Insert the jackpot row."""
    await conn.execute(
        "INSERT INTO jp_jackpots (jackpot_id, owner_tenant_id, display_name, currency, scope,"
        " tenant_ids, region, game_ids, conversion_rates)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            spec.jackpot_id,
            spec.owner_tenant_id,
            spec.display_name,
            spec.currency,
            spec.scope.value,
            list(spec.tenant_ids),
            spec.region,
            list(spec.game_ids),
            json.dumps(dict(sorted(spec.conversion_rates.items()))),
        ),
    )


async def insert_pool(
    conn: Conn, pool_id: str, jackpot_id: str, order: int, cfg: TierConfig, cycle_base: int
) -> None:
    """Insert a pool at cycle 1 and its shard rows."""
    await conn.execute(
        "INSERT INTO jp_pools (pool_id, jackpot_id, tier, tier_order, kind, seed,"
        " contribution_rate_ppm, reseed_split_ppm, cap, overflow_policy, min_bet, trigger_kind,"
        " hit_probability_ppb, reference_bet, must_drop_min, must_drop_max, deadline_min_seconds,"
        " deadline_max_seconds, shards, cycle_base)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (pool_id, jackpot_id, cfg.tier, order, *_config_values(cfg), cycle_base),
    )
    await conn.execute(
        "INSERT INTO jp_pool_shards (pool_id, shard, cycle)"
        " SELECT %s, s, 1 FROM generate_series(0, %s - 1) AS s",
        (pool_id, cfg.shards),
    )


def _config_values(cfg: TierConfig) -> tuple[Any, ...]:
    return (
        cfg.kind.value,
        cfg.seed_minor,
        cfg.contribution_rate_ppm,
        cfg.reseed_split_ppm,
        cfg.cap_minor,
        cfg.overflow_policy.value,
        cfg.min_bet_minor,
        cfg.trigger.value,
        cfg.hit_probability_ppb,
        cfg.reference_bet_minor,
        cfg.must_drop_min_minor,
        cfg.must_drop_max_minor,
        cfg.deadline_min_seconds,
        cfg.deadline_max_seconds,
        cfg.shards,
    )


async def update_pool_config(conn: Conn, pool_id: str, cfg: TierConfig) -> int:
    """Replace the configuration columns, bump config_version (also on the shard rows, which
    the caller has locked); return the new version."""
    cur = await conn.execute(
        "UPDATE jp_pools SET kind = %s, seed = %s, contribution_rate_ppm = %s,"
        " reseed_split_ppm = %s, cap = %s, overflow_policy = %s, min_bet = %s, trigger_kind = %s,"
        " hit_probability_ppb = %s, reference_bet = %s, must_drop_min = %s, must_drop_max = %s,"
        " deadline_min_seconds = %s, deadline_max_seconds = %s, shards = %s,"
        " config_version = config_version + 1 WHERE pool_id = %s RETURNING config_version",
        (*_config_values(cfg), pool_id),
    )
    row = await cur.fetchone()
    assert row is not None
    version = int(row[0])
    await conn.execute(
        "UPDATE jp_pool_shards SET config_version = %s WHERE pool_id = %s", (version, pool_id)
    )
    return version


async def get_jackpot(conn: Conn, jackpot_id: str) -> JackpotRow | None:
    """The jackpot row, or None."""
    cur = await conn.execute(
        f"SELECT {_JACKPOT_COLUMNS} FROM jp_jackpots j WHERE j.jackpot_id = %s", (jackpot_id,)
    )
    row = await cur.fetchone()
    return None if row is None else _jackpot(row)


# -- pools: configuration and cycle state --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolRow:
    """A pool's configuration and its current cycle's secret draw material (never returned)."""

    pool_id: str
    jackpot_id: str
    config: TierConfig
    config_version: int
    cycle: int
    cycle_base: int
    carried_in: int
    tier_order: int
    server_seed: bytes
    must_drop_point: int | None
    drop_at: datetime | None


_POOL_ROW = (
    f"SELECT p.pool_id, p.jackpot_id, {_CONFIG_COLUMNS}, p.config_version, p.cycle,"
    " p.cycle_base, p.carried_in, p.tier_order, c.server_seed, c.must_drop_point, c.drop_at"
    "  FROM jp_pools p JOIN jp_cycles c ON c.pool_id = p.pool_id AND c.cycle = p.cycle"
)


def _pool_row(row: tuple[Any, ...]) -> PoolRow:
    return PoolRow(
        pool_id=str(row[0]),
        jackpot_id=str(row[1]),
        config=_config(row[2:18]),
        config_version=int(row[18]),
        cycle=int(row[19]),
        cycle_base=int(row[20]),
        carried_in=int(row[21]),
        tier_order=int(row[22]),
        server_seed=bytes(row[23]),
        must_drop_point=None if row[24] is None else int(row[24]),
        drop_at=row[25],
    )


async def jackpot_pools(conn: Conn, jackpot_id: str) -> list[PoolRow]:
    """The jackpot's pools (unlocked read), by pool_id (the lock order)."""
    cur = await conn.execute(
        _POOL_ROW + " WHERE p.jackpot_id = %s ORDER BY p.pool_id", (jackpot_id,)
    )
    return [_pool_row(r) for r in await cur.fetchall()]


async def pool_row(conn: Conn, pool_id: str, *, lock: bool = False) -> PoolRow | None:
    """One pool, its row locked FOR UPDATE first when `lock`.

    The lock is a statement of its own: re-checking a join after waiting for a concurrent hit
    would pair the new pool row with the old cycle row and lose it (EvalPlanQual); the read
    after it sees the committed new cycle.
    """
    if lock:
        await conn.execute("SELECT 1 FROM jp_pools WHERE pool_id = %s FOR UPDATE", (pool_id,))
    cur = await conn.execute(_POOL_ROW + " WHERE p.pool_id = %s", (pool_id,))
    row = await cur.fetchone()
    return None if row is None else _pool_row(row)


@dataclass(slots=True)
class ShardRow:
    """One counter row of a pool's current cycle (minor units; carries in millionths)."""

    shard: int
    cycle: int
    visible: int
    reseed: int
    overflow: int
    contributions: int
    total_carry: int
    reseed_carry: int


_SHARD = (
    "SELECT shard, cycle, visible, reseed, overflow, contributions, total_carry, reseed_carry"
    "  FROM jp_pool_shards WHERE pool_id = %s"
)


def _shard(row: tuple[Any, ...]) -> ShardRow:
    return ShardRow(*(int(v) for v in row))


async def lock_shard(conn: Conn, pool_id: str, shard: int) -> ShardRow:
    """Lock (FOR UPDATE) one counter row."""
    cur = await conn.execute(_SHARD + " AND shard = %s FOR UPDATE", (pool_id, shard))
    row = await cur.fetchone()
    assert row is not None, f"shard {shard} of {pool_id} missing"
    return _shard(row)


async def lock_all_shards(conn: Conn, pool_id: str) -> list[ShardRow]:
    """Lock every counter row of the pool in shard order (waits for in-flight contributions)."""
    cur = await conn.execute(_SHARD + " ORDER BY shard FOR UPDATE", (pool_id,))
    return [_shard(r) for r in await cur.fetchall()]


async def save_shard(conn: Conn, pool_id: str, s: ShardRow) -> None:
    """Write a (locked) counter row back."""
    await conn.execute(
        "UPDATE jp_pool_shards SET visible = %s, reseed = %s, overflow = %s, contributions = %s,"
        " total_carry = %s, reseed_carry = %s WHERE pool_id = %s AND shard = %s",
        (
            s.visible,
            s.reseed,
            s.overflow,
            s.contributions,
            s.total_carry,
            s.reseed_carry,
            pool_id,
            s.shard,
        ),
    )


@dataclass(frozen=True, slots=True)
class Added:
    """What `add_to_shard` did: the contribution's parts and the pool's contributed sum."""

    total: int
    to_pool: int
    to_reseed: int
    contributed: int
    hidden: int = 0  # the cycle's reseed + carried overflow over every row, after the add


# One statement, one round trip, one row lock held only until COMMIT: the same arithmetic as
# server.jackpot.accounting.split_contribution without a cap (T = the contribution's total;
# fractions carried on the row). SET and WHERE see the row as locked (re-read after a
# concurrent update), so the carries are exact. The RETURNING subquery sums the other rows as
# of the statement's snapshot; our own row's old value is replaced by its new one.
# Quotients use div() (exact integer division): numeric `/` rounds to about 16 significant
# digits, which would round a large total with a fraction close to 1 up by one minor unit.
_ADD = """
UPDATE jp_pool_shards SET
    total_carry = CASE WHEN %(given)s::bigint IS NULL
                       THEN ((%(bet)s::numeric * %(conv)s * %(rate)s + total_carry)
                             %% 1000000000000)::bigint
                       ELSE total_carry END,
    last_total = {t},
    last_reseed = {r},
    reseed_carry = (({t}::numeric * %(split)s + reseed_carry) %% 1000000)::bigint,
    reseed = reseed + {r},
    visible = visible + {t} - {r},
    contributions = contributions + 1
WHERE pool_id = %(pool)s AND shard = %(shard)s AND cycle = %(cycle)s
  AND config_version = %(version)s
RETURNING last_total, last_reseed, visible,
    (SELECT coalesce(sum(o.visible), 0) FROM jp_pool_shards o
      WHERE o.pool_id = %(pool)s AND o.cycle = %(cycle)s AND o.shard <> %(shard)s),
    reseed + overflow
      + (SELECT coalesce(sum(o.reseed + o.overflow), 0) FROM jp_pool_shards o
          WHERE o.pool_id = %(pool)s AND o.cycle = %(cycle)s AND o.shard <> %(shard)s)
"""
_ADD_TOTAL = (
    "coalesce(%(given)s::bigint,"
    " div(%(bet)s::numeric * %(conv)s * %(rate)s + total_carry, 1000000000000)::bigint)"
)
_ADD = _ADD.format(
    t=_ADD_TOTAL, r=f"div({_ADD_TOTAL}::numeric * %(split)s + reseed_carry, 1000000)::bigint"
)


async def add_to_shard(
    conn: Conn,
    *,
    pool_id: str,
    shard: int,
    cycle: int,
    config_version: int,
    bet: int,
    rate_ppm: int,
    split_ppm: int,
    given: int | None,
    conversion_micro: int,
) -> Added | None:
    """Add one uncapped contribution to a counter row; None if the row is not at `cycle` and
    `config_version` any more (a hit or a config change committed: read the pool again)."""
    cur = await conn.execute(
        _ADD,
        {
            "pool": pool_id,
            "shard": shard,
            "cycle": cycle,
            "version": config_version,
            "bet": bet,
            "rate": rate_ppm,
            "split": split_ppm,
            "given": given,
            "conv": conversion_micro,
        },
    )
    row = await cur.fetchone()
    if row is None:
        return None
    total, reseed, visible, others, hidden = (int(v) for v in row)
    return Added(total, total - reseed, reseed, visible + others, hidden)


@dataclass(slots=True)
class BatchShard:
    """A counter row as a contribution batch read it (`read_batch`), updated in place by the
    batch, and the other rows' visible sum at the read. Minor units; carries as in ShardRow."""

    pool_id: str
    shard: int
    cycle: int
    config_version: int
    visible: int
    reseed: int
    total_carry: int
    reseed_carry: int
    others: int
    hidden_others: int = 0  # the other rows' reseed + overflow, and this row's overflow
    read: tuple[int, int, int, int] = (0, 0, 0, 0)  # visible, reseed and carries as read
    added: int = 0
    last_total: int = 0
    last_reseed: int = 0

    def __post_init__(self) -> None:
        self.read = (self.visible, self.reseed, self.total_carry, self.reseed_carry)


async def read_batch(
    conn: Conn, wanted: list[tuple[str, int]], keys: list[idempotency_sql.Slot]
) -> tuple[list[BatchShard], set[idempotency_sql.Slot]]:
    """One statement, no lock: the (pool_id, shard) counter rows a batch will add to, and which
    of its (tenant_id, scope, idempotency_key) triples already have an idempotency record."""
    cur = await conn.execute(
        "SELECT s.pool_id, s.shard, s.cycle, s.config_version, s.visible, s.reseed,"
        " s.total_carry, s.reseed_carry,"
        " (SELECT coalesce(sum(o.visible), 0) FROM jp_pool_shards o"
        "   WHERE o.pool_id = s.pool_id AND o.cycle = s.cycle AND o.shard <> s.shard),"
        f" ({idempotency_sql.USED_KEYS_JSON.format(keys='%s')}),"
        " s.overflow + (SELECT coalesce(sum(o.reseed + o.overflow), 0) FROM jp_pool_shards o"
        "   WHERE o.pool_id = s.pool_id AND o.cycle = s.cycle AND o.shard <> s.shard)"
        " FROM jp_pool_shards s JOIN unnest(%s::text[], %s::int[]) AS w(pool_id, shard)"
        " USING (pool_id, shard)",
        (
            idempotency_sql.key_rows(keys),
            [p for p, _ in wanted],
            [n for _, n in wanted],
        ),
    )
    rows = await cur.fetchall()
    used = idempotency_sql.used_of(rows[0][9]) if rows else set()
    shards = [
        BatchShard(
            pool_id=str(r[0]),
            shard=int(r[1]),
            cycle=int(r[2]),
            config_version=int(r[3]),
            visible=int(r[4]),
            reseed=int(r[5]),
            total_carry=int(r[6]),
            reseed_carry=int(r[7]),
            others=int(r[8]),
            hidden_others=int(r[10]),
        )
        for r in rows
    ]
    return shards, used


# The rows are locked first, in (pool_id, shard) order like every other contribution (an
# uncorrelated subquery runs once, before the UPDATE touches a row), so two batches, or a batch
# and a one-request contribution, never lock two pools' rows in opposite orders (no deadlock).
_WRITE_BATCH = f"""
WITH locked AS (
    SELECT s.pool_id FROM jp_pool_shards s
    JOIN json_to_recordset(%(shards)s::json) AS u(pool_id text, shard int) USING (pool_id, shard)
    ORDER BY s.pool_id, s.shard FOR UPDATE OF s
), updated AS (
    UPDATE jp_pool_shards s SET visible = u.visible, reseed = u.reseed,
        total_carry = u.total_carry, reseed_carry = u.reseed_carry,
        contributions = s.contributions + u.added,
        last_total = u.last_total, last_reseed = u.last_reseed
    FROM json_to_recordset(%(shards)s::json) AS u(pool_id text, shard int, cycle bigint,
        config_version bigint, visible bigint, reseed bigint, total_carry bigint,
        reseed_carry bigint, added bigint, last_total bigint, last_reseed bigint,
        read_visible bigint, read_reseed bigint, read_total_carry bigint,
        read_reseed_carry bigint)
    WHERE s.pool_id = u.pool_id AND s.shard = u.shard AND s.cycle = u.cycle
      AND s.config_version = u.config_version AND s.visible = u.read_visible
      AND s.reseed = u.read_reseed AND s.total_carry = u.read_total_carry
      AND s.reseed_carry = u.read_reseed_carry
      AND (SELECT count(*) FROM locked) = %(expected)s
    RETURNING 1
), applied AS (
    SELECT jp_batch_applied(count(*), %(expected)s) AS ok FROM updated
), contributions AS (
    INSERT INTO jp_contributions ({{cols}})
    SELECT {{cols}} FROM json_populate_recordset(NULL::jp_contributions, %(contributions)s::json)
        WITH ORDINALITY
    WHERE (SELECT ok FROM applied) ORDER BY ordinality
), events AS (
    {outbox_sql.INSERT_EVENTS_JSON.format(rows="%(events)s")}
), outcomes AS (
    {idempotency_sql.INSERT_OUTCOMES_JSON.format(rows="%(outcomes)s")}
)
SELECT ok FROM applied
"""


def _json_value(value: object) -> str:
    """Timestamps and UUIDs in a JSON parameter, as PostgreSQL reads them back."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


async def write_batch(
    conn: Conn,
    shards: list[BatchShard],
    contributions: list[dict[str, Any]],
    events: list[NewEvent],
    outcomes: list[idempotency_sql.Outcome],
) -> None:
    """Write a contribution batch in one statement (autocommit: its own transaction): the
    counter rows, only if each is still as `read_batch` read it, else the statement fails with
    SerializationFailure (migration 0008) and writes nothing; the contribution records (each
    row maps jp_contributions columns to JSON values); the events; the idempotency records (a
    key used meanwhile fails it with UniqueViolation)."""
    await conn.execute(
        _WRITE_BATCH.format(cols=", ".join(contributions[0])),
        {
            "shards": json.dumps(
                [
                    {
                        "pool_id": b.pool_id,
                        "shard": b.shard,
                        "cycle": b.cycle,
                        "config_version": b.config_version,
                        "visible": b.visible,
                        "reseed": b.reseed,
                        "total_carry": b.total_carry,
                        "reseed_carry": b.reseed_carry,
                        "added": b.added,
                        "last_total": b.last_total,
                        "last_reseed": b.last_reseed,
                        "read_visible": b.read[0],
                        "read_reseed": b.read[1],
                        "read_total_carry": b.read[2],
                        "read_reseed_carry": b.read[3],
                    }
                    for b in shards
                ]
            ),
            "expected": len(shards),
            "contributions": json.dumps(contributions, default=_json_value),
            "events": outbox_sql.event_rows(events),
            "outcomes": idempotency_sql.outcome_rows(outcomes),
        },
    )


async def contributed(conn: Conn, pool_id: str, cycle: int) -> int:
    """Sum of the visible counters of the cycle (as this transaction sees them)."""
    cur = await conn.execute(
        "SELECT coalesce(sum(visible), 0) FROM jp_pool_shards WHERE pool_id = %s AND cycle = %s",
        (pool_id, cycle),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def insert_contribution(conn: Conn, **values: Any) -> None:
    """Append a contribution record (no result is read: pipelined, no round trip)."""
    columns = ", ".join(values)
    placeholders = ", ".join(f"%({k})s" for k in values)
    await conn.execute(f"INSERT INTO jp_contributions ({columns}) VALUES ({placeholders})", values)


# -- cycles --------------------------------------------------------------------------------------


async def insert_cycle(
    conn: Conn,
    *,
    pool_id: str,
    cycle: int,
    server_seed: bytes,
    seed_commitment: bytes,
    start_amount: int,
    carried_in: int,
    cfg: TierConfig,
    must_drop_range: tuple[int, int],
    must_drop_point: int | None,
    drop_at: datetime | None,
    started_at: datetime,
) -> None:
    """Start a cycle with its committed seed and (secret) drop point or time; the must-drop
    range stored is the one the point was drawn from."""
    await conn.execute(
        "INSERT INTO jp_cycles (pool_id, cycle, server_seed, seed_commitment, start_amount,"
        " carried_in, must_drop_min, must_drop_max, must_drop_point, deadline_min_seconds,"
        " deadline_max_seconds, drop_at, started_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            pool_id,
            cycle,
            server_seed,
            seed_commitment,
            start_amount,
            carried_in,
            must_drop_range[0],
            must_drop_range[1],
            must_drop_point,
            cfg.deadline_min_seconds,
            cfg.deadline_max_seconds,
            drop_at,
            started_at,
        ),
    )


async def end_cycle(
    conn: Conn, pool_id: str, cycle: int, win_id: uuid.UUID, ended_at: datetime
) -> None:
    """Mark a cycle ended by `win_id` (its seed may now be revealed)."""
    await conn.execute(
        "UPDATE jp_cycles SET ended_at = %s, win_id = %s WHERE pool_id = %s AND cycle = %s",
        (ended_at, win_id, pool_id, cycle),
    )


async def advance_pool(
    conn: Conn, pool_id: str, cycle: int, cycle_base: int, carried_in: int
) -> None:
    """Move the pool to `cycle` and zero its counters (the fraction carries stay)."""
    await conn.execute(
        "UPDATE jp_pools SET cycle = %s, cycle_base = %s, carried_in = %s WHERE pool_id = %s",
        (cycle, cycle_base, carried_in, pool_id),
    )
    await conn.execute(
        "UPDATE jp_pool_shards SET cycle = %s, visible = 0, reseed = 0, overflow = 0,"
        " contributions = 0 WHERE pool_id = %s",
        (cycle, pool_id),
    )


def _cycle(row: tuple[Any, ...]) -> CycleRow:
    ended = row[13] is not None
    return CycleRow(
        pool_id=str(row[0]),
        cycle=int(row[1]),
        seed_commitment=bytes(row[2]),
        server_seed=bytes(row[3]) if ended else None,
        start_amount=int(row[4]),
        carried_in=int(row[5]),
        must_drop_min_minor=int(row[6]),
        must_drop_max_minor=int(row[7]),
        must_drop_point=int(row[8]) if ended and row[8] is not None else None,
        deadline_min_seconds=int(row[9]),
        deadline_max_seconds=int(row[10]),
        drop_at=row[11] if ended else None,
        started_at=row[12],
        ended_at=row[13],
        win_id=row[14],
        currency=str(row[15]),
    )


async def get_cycle(conn: Conn, pool_id: str, cycle: int) -> CycleRow | None:
    """A cycle; the seed, drop point and drop time only once it ended (never before)."""
    cur = await conn.execute(
        "SELECT c.pool_id, c.cycle, c.seed_commitment, c.server_seed, c.start_amount,"
        " c.carried_in, c.must_drop_min, c.must_drop_max, c.must_drop_point,"
        " c.deadline_min_seconds, c.deadline_max_seconds, c.drop_at, c.started_at, c.ended_at,"
        " c.win_id, j.currency"
        "  FROM jp_cycles c JOIN jp_pools p USING (pool_id) JOIN jp_jackpots j USING (jackpot_id)"
        " WHERE c.pool_id = %s AND c.cycle = %s",
        (pool_id, cycle),
    )
    row = await cur.fetchone()
    return None if row is None else _cycle(row)


async def list_contributions(
    conn: Conn, pool_id: str, cycle: int, tenant_id: str | None, after: int, limit: int
) -> list[ContributionRow]:
    """A cycle's contributions in sequence order (only `tenant_id`'s when given)."""
    cur = await conn.execute(
        "SELECT seq, tenant_id, pool_id, cycle, round_id, idempotency_key, bet, to_pool,"
        " to_reseed, hit_probability_ppb, hit, win_id, created_at, bet_currency"
        "  FROM jp_contributions"
        " WHERE pool_id = %s AND cycle = %s AND seq > %s"
        "   AND (%s::text IS NULL OR tenant_id = %s) ORDER BY seq LIMIT %s",
        (pool_id, cycle, after, tenant_id, tenant_id, limit),
    )
    return [
        ContributionRow(
            seq=int(r[0]),
            tenant_id=str(r[1]),
            pool_id=str(r[2]),
            cycle=int(r[3]),
            round_id=str(r[4]),
            salt=str(r[5]),
            bet=int(r[6]),
            to_pool=int(r[7]),
            to_reseed=int(r[8]),
            hit_probability_ppb=int(r[9]),
            hit=bool(r[10]),
            win_id=r[11],
            created_at=r[12],
            bet_currency=str(r[13]),
        )
        for r in await cur.fetchall()
    ]


# -- reads of pool state --------------------------------------------------------------------------

_STATE = (
    f"SELECT p.pool_id, {_JACKPOT_COLUMNS}, {_CONFIG_COLUMNS}, p.config_version, p.cycle,"
    " p.cycle_base, p.carried_in,"
    " (SELECT coalesce(sum(s.visible), 0) FROM jp_pool_shards s WHERE s.pool_id = p.pool_id),"
    " (SELECT coalesce(sum(s.contributions), 0) FROM jp_pool_shards s"
    "   WHERE s.pool_id = p.pool_id),"
    " c.seed_commitment, c.started_at, c.drop_at"
    "  FROM jp_pools p JOIN jp_jackpots j USING (jackpot_id)"
    "  JOIN jp_cycles c ON c.pool_id = p.pool_id AND c.cycle = p.cycle"
)


def _state(row: tuple[Any, ...]) -> PoolState:
    return PoolState(
        pool_id=str(row[0]),
        jackpot=_jackpot(row[1:11]),
        config=_config(row[11:27]),
        config_version=int(row[27]),
        cycle=int(row[28]),
        cycle_base=int(row[29]),
        carried_in=int(row[30]),
        contributed=int(row[31]),
        contribution_count=int(row[32]),
        seed_commitment=bytes(row[33]),
        cycle_started_at=row[34],
        drop_at=row[35],
    )


async def pool_state(conn: Conn, pool_id: str) -> PoolState | None:
    """One pool's published state (one snapshot: the amount is exact as of it)."""
    cur = await conn.execute(_STATE + " WHERE p.pool_id = %s", (pool_id,))
    row = await cur.fetchone()
    return None if row is None else _state(row)


async def list_pool_states(
    conn: Conn,
    tenant_id: str,
    *,
    region: str = "",
    game_id: str = "",
    jackpot_id: str = "",
    pool_ids: list[str] | None = None,
    after: str = "",
    limit: int = 500,
) -> list[PoolState]:
    """Pools the tenant owns or is listed on (invariant 7), by pool_id, after `after`."""
    cur = await conn.execute(
        _STATE + " WHERE (j.owner_tenant_id = %(t)s OR %(t)s = ANY (j.tenant_ids))"
        "   AND (%(region)s = '' OR j.region = %(region)s)"
        "   AND (%(game)s = '' OR j.game_ids = '{}' OR %(game)s = ANY (j.game_ids))"
        "   AND (%(jp)s = '' OR j.jackpot_id = %(jp)s)"
        "   AND (%(ids)s::text[] IS NULL OR p.pool_id = ANY (%(ids)s::text[]))"
        "   AND p.pool_id > %(after)s ORDER BY p.pool_id LIMIT %(limit)s",
        {
            "t": tenant_id,
            "region": region,
            "game": game_id,
            "jp": jackpot_id,
            "ids": pool_ids,
            "after": after,
            "limit": limit,
        },
    )
    return [_state(r) for r in await cur.fetchall()]


# -- wins and the payout saga ---------------------------------------------------------------------

_WIN = (
    "SELECT w.win_id, w.tenant_id, w.player_id, w.pool_id, p.jackpot_id, p.tier, w.cycle,"
    " w.round_id, w.game_id, w.reason, w.amount, w.currency, w.payout_state, w.failure_reason,"
    " w.attempts, w.wallet_transaction_id, w.hit_at, w.credited_at, w.seq"
    "  FROM jp_wins w JOIN jp_pools p USING (pool_id)"
)


def _win(row: tuple[Any, ...]) -> WinRow:
    return WinRow(
        win_id=row[0],
        tenant_id=str(row[1]),
        player_id=str(row[2]),
        pool_id=str(row[3]),
        jackpot_id=str(row[4]),
        tier=str(row[5]),
        cycle=int(row[6]),
        round_id=str(row[7]),
        game_id=str(row[8]),
        reason=str(row[9]),
        amount=int(row[10]),
        currency=str(row[11]),
        payout_state=PayoutState(row[12]),
        failure_reason=str(row[13]),
        attempts=int(row[14]),
        wallet_transaction_id=row[15],
        hit_at=row[16],
        credited_at=row[17],
        seq=int(row[18]),
    )


async def insert_win(
    conn: Conn,
    *,
    win_id: uuid.UUID,
    tenant_id: str,
    player_id: str,
    pool_id: str,
    cycle: int,
    round_id: str,
    game_id: str,
    reason: str,
    trigger_key: str,
    amount: int,
    currency: str,
    hit_at: datetime,
) -> None:
    """Create the win (an obligation) and its `requested` saga step."""
    await conn.execute(
        "INSERT INTO jp_wins (win_id, tenant_id, player_id, pool_id, cycle, round_id, game_id,"
        " reason, trigger_key, amount, currency, payout_state, next_attempt_at, hit_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'requested', %s, %s)",
        (
            win_id,
            tenant_id,
            player_id,
            pool_id,
            cycle,
            round_id,
            game_id,
            reason,
            trigger_key,
            amount,
            currency,
            hit_at,
            hit_at,
        ),
    )
    await insert_step(conn, win_id, "requested", "")


async def insert_step(conn: Conn, win_id: uuid.UUID, step: str, detail: str) -> None:
    """Append one saga step."""
    await conn.execute(
        "INSERT INTO jp_payout_steps (win_id, step, detail) VALUES (%s, %s, %s)",
        (win_id, step, detail),
    )


async def get_win(conn: Conn, win_id: uuid.UUID, *, lock: bool = False) -> WinRow | None:
    """A win, or None; the win row locked FOR UPDATE when `lock`."""
    cur = await conn.execute(
        _WIN + " WHERE w.win_id = %s" + (" FOR UPDATE OF w" if lock else ""), (win_id,)
    )
    row = await cur.fetchone()
    return None if row is None else _win(row)


async def list_wins(
    conn: Conn,
    tenant_id: str,
    pool_id: str,
    player_id: str,
    state: str,
    before: int | None,
    limit: int,
) -> list[WinRow]:
    """The tenant's wins, newest first."""
    cur = await conn.execute(
        _WIN + " WHERE w.tenant_id = %(t)s AND (%(pool)s = '' OR w.pool_id = %(pool)s)"
        "   AND (%(player)s = '' OR w.player_id = %(player)s)"
        "   AND (%(state)s = '' OR w.payout_state = %(state)s)"
        "   AND (%(before)s::bigint IS NULL OR w.seq < %(before)s) ORDER BY w.seq DESC"
        " LIMIT %(limit)s",
        {
            "t": tenant_id,
            "pool": pool_id,
            "player": player_id,
            "state": state,
            "before": before,
            "limit": limit,
        },
    )
    return [_win(r) for r in await cur.fetchall()]


async def mark_credited(
    conn: Conn, win_id: uuid.UUID, transaction_id: uuid.UUID | None, detail: str
) -> None:
    """The credit committed (in this same transaction): close the saga. (Times in UPDATEs are
    statement times: a distributed database refuses volatile functions there.)"""
    await conn.execute(
        "UPDATE jp_wins SET payout_state = 'credited', wallet_transaction_id = %s,"
        " credited_at = statement_timestamp(), attempts = attempts + 1, failure_reason = '',"
        " next_attempt_at = NULL WHERE win_id = %s AND payout_state <> 'credited'",
        (transaction_id, win_id),
    )
    await insert_step(conn, win_id, "credited", detail)


async def mark_failed(conn: Conn, win_id: uuid.UUID, reason: str) -> bool:
    """A business refusal: state `failed` with `reason` (no automatic retry). False if the win
    was credited or already failed for that reason."""
    cur = await conn.execute(
        "UPDATE jp_wins SET payout_state = 'failed', failure_reason = %s,"
        " attempts = attempts + 1, next_attempt_at = NULL"
        " WHERE win_id = %s AND payout_state <> 'credited'"
        "   AND NOT (payout_state = 'failed' AND failure_reason = %s) RETURNING 1",
        (reason, win_id, reason),
    )
    changed = await cur.fetchone() is not None
    if changed:
        await insert_step(conn, win_id, "failed", reason)
    return changed


async def mark_attempt_failed(
    conn: Conn, win_id: uuid.UUID, error: str, backoff_seconds: float
) -> None:
    """A technical failure: count it, keep `requested`, retry after the backoff."""
    await conn.execute(
        "UPDATE jp_wins SET attempts = attempts + 1, last_error = %s,"
        " next_attempt_at = statement_timestamp() + make_interval(secs => %s)"
        " WHERE win_id = %s AND payout_state = 'requested'",
        (error[:500], backoff_seconds, win_id),
    )
    await insert_step(conn, win_id, "attempt_failed", error[:500])


async def due_wins(conn: Conn, limit: int) -> list[uuid.UUID]:
    """Requested wins whose next attempt is due (oldest first)."""
    cur = await conn.execute(
        "SELECT win_id FROM jp_wins WHERE payout_state = 'requested'"
        "   AND next_attempt_at <= clock_timestamp() ORDER BY next_attempt_at LIMIT %s",
        (limit,),
    )
    return [r[0] for r in await cur.fetchall()]


# -- audit ------------------------------------------------------------------------------------


async def lock_audit_head(conn: Conn, tenant_id: str, genesis: bytes) -> tuple[int, bytes]:
    """Lock the tenant's chain head (created at sequence 0); return (sequence, hash)."""
    await conn.execute(
        "INSERT INTO jp_audit_heads (tenant_id, seq, hash) VALUES (%s, 0, %s)"
        " ON CONFLICT DO NOTHING",
        (tenant_id, genesis),
    )
    cur = await conn.execute(
        "SELECT seq, hash FROM jp_audit_heads WHERE tenant_id = %s FOR UPDATE", (tenant_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), bytes(row[1])


async def append_audit(
    conn: Conn,
    *,
    tenant_id: str,
    seq: int,
    action: str,
    subject: str,
    payload: str,
    time_micros: int,
    prev_hash: bytes,
    hash_: bytes,
) -> None:
    """Append one audit record and move the head (the head must be locked)."""
    await conn.execute(
        "INSERT INTO jp_audit_log (tenant_id, seq, action, subject, payload, time_micros,"
        " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (tenant_id, seq, action, subject, payload, time_micros, prev_hash, hash_),
    )
    await conn.execute(
        "UPDATE jp_audit_heads SET seq = %s, hash = %s WHERE tenant_id = %s",
        (seq, hash_, tenant_id),
    )


async def audit_page(
    conn: Conn, tenant_id: str, after: int, limit: int
) -> list[tuple[int, str, str, str, int, bytes, bytes]]:
    """(seq, action, subject, payload, time_micros, prev_hash, hash) in order."""
    cur = await conn.execute(
        "SELECT seq, action, subject, payload, time_micros, prev_hash, hash FROM jp_audit_log"
        " WHERE tenant_id = %s AND seq > %s ORDER BY seq LIMIT %s",
        (tenant_id, after, limit),
    )
    return [
        (int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), bytes(r[5]), bytes(r[6]))
        for r in await cur.fetchall()
    ]


# -- reconciliation ---------------------------------------------------------------------------


async def reconcile(conn: Conn, tenant_id: str, pool_id: str) -> list[Reconciliation]:
    """Recompute every pool `tenant_id` owns ('' = every tenant's) from its contribution and
    win records (invariant 5)."""
    cur = await conn.execute(
        """
        WITH pools AS (
            SELECT p.pool_id, p.cycle, p.cycle_base, j.currency FROM jp_pools p
              JOIN jp_jackpots j USING (jackpot_id)
             WHERE (%(t)s = '' OR j.owner_tenant_id = %(t)s)
               AND (%(pool)s = '' OR p.pool_id = %(pool)s)),
        per_cycle AS (
            SELECT c.pool_id, c.cycle, c.start_amount, c.carried_in,
                   coalesce(sum(k.to_pool), 0) AS to_pool,
                   coalesce(sum(k.to_reseed + k.to_overflow), 0) AS hidden
              FROM jp_cycles c JOIN pools USING (pool_id)
              LEFT JOIN jp_contributions k ON k.pool_id = c.pool_id AND k.cycle = c.cycle
             GROUP BY c.pool_id, c.cycle, c.start_amount, c.carried_in),
        past AS (
            SELECT pc.pool_id,
                   sum(abs(w.amount - (pc.start_amount + pc.to_pool))) AS wins_drift,
                   sum(abs(coalesce(nx.carried_in, 0) - pc.hidden)) AS carry_drift,
                   sum(w.amount) AS wins, count(w.win_id) AS win_count
              FROM per_cycle pc JOIN jp_wins w ON w.pool_id = pc.pool_id AND w.cycle = pc.cycle
              LEFT JOIN per_cycle nx ON nx.pool_id = pc.pool_id AND nx.cycle = pc.cycle + 1
             GROUP BY pc.pool_id),
        shards AS (
            SELECT pool_id, sum(visible) AS visible, sum(reseed + overflow) AS hidden,
                   sum(total_carry) AS total_carry, sum(reseed_carry) AS reseed_carry
              FROM jp_pool_shards JOIN pools USING (pool_id) GROUP BY pool_id),
        fractions AS (
            SELECT k.pool_id,
                   coalesce(sum(k.bet::numeric * k.conversion_micro * k.rate_ppm
                                - 1000000000000::numeric * k.total)
                            FILTER (WHERE k.computed), 0) AS total_rest,
                   coalesce(sum(k.total::numeric * k.split_ppm - 1000000::numeric * k.to_reseed),
                            0) AS reseed_rest
              FROM jp_contributions k JOIN pools USING (pool_id) GROUP BY k.pool_id)
        SELECT p.pool_id, p.currency, p.cycle, cur.start_amount - cur.carried_in,
               cur.carried_in, cur.to_pool, p.cycle_base + s.visible,
               coalesce(past.wins, 0), coalesce(past.win_count, 0),
               coalesce(past.wins_drift, 0) + abs(p.cycle_base - cur.start_amount),
               s.hidden, s.hidden - cur.hidden + coalesce(past.carry_drift, 0),
               abs(coalesce(f.total_rest, 0) - s.total_carry)
                 + abs(coalesce(f.reseed_rest, 0) - s.reseed_carry)
          FROM pools p
          JOIN per_cycle cur ON cur.pool_id = p.pool_id AND cur.cycle = p.cycle
          JOIN shards s ON s.pool_id = p.pool_id
          LEFT JOIN past ON past.pool_id = p.pool_id
          LEFT JOIN fractions f ON f.pool_id = p.pool_id
         ORDER BY p.pool_id
        """,
        {"t": tenant_id, "pool": pool_id},
    )
    return [
        Reconciliation(
            pool_id=str(r[0]),
            currency=str(r[1]),
            cycle=int(r[2]),
            seed_minor=int(r[3]),
            carried=int(r[4]),
            contributions=int(r[5]),
            amount=int(r[6]),
            wins=int(r[7]),
            win_count=int(r[8]),
            wins_drift=int(r[9]),
            hidden=int(r[10]),
            hidden_drift=int(r[11]),
            fraction_drift=int(r[12]),
        )
        for r in await cur.fetchall()
    ]


# -- deadline drops --------------------------------------------------------------------------


async def due_deadline_pools(conn: Conn, limit: int, exclude: Sequence[str] = ()) -> list[str]:
    """DEADLINE pools whose current cycle's drop time has passed, but the `exclude`d pool ids
    (set aside), oldest drop time first (unlocked read)."""
    cur = await conn.execute(
        "SELECT p.pool_id FROM jp_pools p"
        "  JOIN jp_cycles c ON c.pool_id = p.pool_id AND c.cycle = p.cycle"
        " WHERE p.trigger_kind = 'deadline' AND c.ended_at IS NULL AND c.drop_at <= now()"
        "   AND p.pool_id <> ALL(%s::text[])"
        " ORDER BY c.drop_at LIMIT %s",
        (list(exclude), limit),
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def last_contribution(
    conn: Conn, pool_id: str, cycle: int
) -> tuple[str, str, str, str, str] | None:
    """(tenant, player, round, game, idempotency key) of the cycle's last contribution."""
    cur = await conn.execute(
        "SELECT tenant_id, player_id, round_id, game_id, idempotency_key FROM jp_contributions"
        " WHERE pool_id = %s AND cycle = %s ORDER BY seq DESC LIMIT 1",
        (pool_id, cycle),
    )
    row = await cur.fetchone()
    return (
        None if row is None else (str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]))
    )


async def win_ledger_mismatches(conn: Conn, limit: int = 100) -> list[dict[str, object]]:
    """Wins whose payout state disagrees with the wallet ledger, every tenant.

    A win agrees when: `credited` with a positive amount has exactly one payout credit (the
    journal `credit` under its key `jp-payout-<win_id>`) to the winner, of the win's amount and
    currency, the one the win names, and never rolled back; any other win (not credited, or a
    zero amount) has no payout credit. Each row: win_id, tenant_id, player_id, payout_state,
    amount (minor units), currency, credits (how many payout credits), credited_minor_units
    (their sum less any reversal) and the wallet_transaction_id the win names.
    """
    # Two reads joined here, not one join in SQL: on a distributed database the wins live on
    # the coordinator and the ledger on the tenants' nodes.
    cur = await conn.execute(
        "SELECT win_id::text, tenant_id, player_id, payout_state, amount, currency,"
        "       wallet_transaction_id FROM jp_wins ORDER BY win_id"
    )
    wins = await cur.fetchall()
    cur = await conn.execute(
        "SELECT t.tenant_id, substr(t.idempotency_key, 11), t.transaction_id, t.player_id,"
        "       t.amount, t.currency,"
        "       (SELECT count(*) FROM transactions r WHERE r.tenant_id = t.tenant_id"
        "          AND r.target_transaction_id = t.transaction_id AND r.kind = 'rollback'),"
        "       (SELECT coalesce(sum(r.amount), 0) FROM transactions r"
        "         WHERE r.tenant_id = t.tenant_id AND r.target_transaction_id = t.transaction_id"
        "           AND r.kind = 'rollback')"
        "  FROM transactions t WHERE t.kind = 'credit' AND t.idempotency_key LIKE 'jp-payout-%'"
    )
    credits: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for c in await cur.fetchall():
        credits.setdefault((str(c[0]), str(c[1])), []).append(tuple(c))
    out: list[dict[str, object]] = []
    for win_id, tenant_id, player_id, state, amount, currency, wallet_tx in wins:
        cs = credits.get((str(tenant_id), str(win_id)), [])
        rollbacks = sum(int(c[6]) for c in cs)
        if state == "credited" and int(amount) > 0:
            agrees = (
                len(cs) == 1
                and rollbacks == 0
                and (cs[0][3], int(cs[0][4]), cs[0][5], cs[0][2])
                == (player_id, int(amount), currency, wallet_tx)
            )
        else:
            agrees = not cs
        if agrees:
            continue
        out.append(
            {
                "win_id": str(win_id),
                "tenant_id": str(tenant_id),
                "player_id": str(player_id),
                "payout_state": str(state),
                "amount_minor_units": int(amount),
                "currency": str(currency),
                "credits": len(cs),
                "credited_minor_units": sum(int(c[4]) for c in cs) - sum(int(c[7]) for c in cs),
                "wallet_transaction_id": None if wallet_tx is None else str(wallet_tx),
            }
        )
        if len(out) >= limit:
            break
    return out

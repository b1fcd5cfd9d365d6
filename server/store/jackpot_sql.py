"""The jackpot engine's SQL: every statement it runs, in one place (docs/architecture.md, "Layers").

Functions take an open connection inside the caller's transaction and return plain values or
the row types defined here (the store owns them; server.jackpot.model re-exports them to the
domain and the transport); they hold no business rules. Lock order, which keeps
contributions, hits and config changes deadlock-free: pools by pool_id, and for one pool its
row (FOR UPDATE) before its shard rows, shards by number.
"""

from __future__ import annotations

import enum
import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row, scalar_row, tuple_row

from server.store import idempotency_sql, outbox_sql
from server.store.outbox_sql import NewEvent
from server.store.rows import fetch_all, fetch_one, fetch_scalar, fetch_scalars
from server.types import Conn


class PoolKind(enum.Enum):
    """FIXED: a known prize (the seed), no growth. PROGRESSIVE: grows from contributions."""

    FIXED = "fixed"
    PROGRESSIVE = "progressive"


class Scope(enum.Enum):
    """LOCAL: one tenant. NETWORK: the listed tenants share the pools."""

    LOCAL = "local"
    NETWORK = "network"


class TriggerKind(enum.Enum):
    """How hits are decided (docs/jackpot.md)."""

    RANDOM = "random"
    MUST_DROP = "must_drop"
    DEADLINE = "deadline"
    EXTERNAL = "external"


class OverflowPolicy(enum.Enum):
    """Above the cap: carry the excess to the next cycle, or stop growing (not collected)."""

    CARRY_TO_RESEED = "carry_to_reseed"
    STOP_GROWING = "stop_growing"


class PayoutState(enum.Enum):
    """The payout saga's state (server.jackpot.payout)."""

    REQUESTED = "requested"
    CREDITED = "credited"
    FAILED = "failed"
    REVIEW = "review"  # withheld for an AML review (server/jackpot/review.py)


@dataclass(frozen=True, slots=True)
class TierConfig:
    """One tier's configuration (see TierConfig in jackpot_service.proto for each field)."""

    tier: str
    kind: PoolKind
    seed_minor: int
    contribution_rate_ppm: int
    reseed_split_ppm: int
    cap_minor: int
    overflow_policy: OverflowPolicy
    min_bet_minor: int
    trigger: TriggerKind
    hit_probability_ppb: int = 0
    reference_bet_minor: int = 0
    must_drop_min_minor: int = 0
    must_drop_max_minor: int = 0
    deadline_min_seconds: int = 0
    deadline_max_seconds: int = 0
    shards: int = 1

    def as_dict(self) -> dict[str, object]:
        """JSON-able form for the audit log (keys as first recorded: the chain hashes them)."""
        return {
            "tier": self.tier,
            "kind": self.kind.value,
            "seed": self.seed_minor,
            "contribution_rate_ppm": self.contribution_rate_ppm,
            "reseed_split_ppm": self.reseed_split_ppm,
            "cap": self.cap_minor,
            "overflow_policy": self.overflow_policy.value,
            "min_bet": self.min_bet_minor,
            "trigger": self.trigger.value,
            "hit_probability_ppb": self.hit_probability_ppb,
            "reference_bet": self.reference_bet_minor,
            "must_drop_min": self.must_drop_min_minor,
            "must_drop_max": self.must_drop_max_minor,
            "deadline_min_seconds": self.deadline_min_seconds,
            "deadline_max_seconds": self.deadline_max_seconds,
            "shards": self.shards,
        }


@dataclass(frozen=True, slots=True)
class JackpotSpec:
    """CreateJackpot: a jackpot owned by `owner_tenant_id` with one pool per tier."""

    jackpot_id: str
    owner_tenant_id: str
    display_name: str
    currency: str
    scope: Scope
    tenant_ids: tuple[str, ...]
    region: str
    game_ids: tuple[str, ...]
    tiers: tuple[TierConfig, ...]
    conversion_rates: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JackpotRow:
    """A stored jackpot (without its pools)."""

    jackpot_id: str
    owner_tenant_id: str
    display_name: str
    currency: str
    scope: Scope
    tenant_ids: tuple[str, ...]
    region: str
    game_ids: tuple[str, ...]
    created_at: datetime
    conversion_rates: dict[str, int] = field(default_factory=dict)

    def sees(self, tenant_id: str) -> bool:
        """Invariant 7: the owner and the listed tenants see the jackpot, nobody else."""
        return tenant_id == self.owner_tenant_id or tenant_id in self.tenant_ids

    def game_included(self, game_id: str) -> bool:
        """An empty game list means every game qualifies."""
        return not self.game_ids or game_id in self.game_ids


@dataclass(frozen=True, slots=True)
class PoolState:
    """A pool's configuration and current state (amount = cycle_base + contributed)."""

    pool_id: str
    jackpot: JackpotRow
    config: TierConfig
    config_version: int
    cycle: int
    cycle_base: int
    carried_in: int
    contributed: int
    contribution_count: int
    seed_commitment: bytes
    cycle_started_at: datetime
    drop_at: datetime | None

    @property
    def amount(self) -> int:
        """The exact current amount in minor units."""
        return self.cycle_base + self.contributed


@dataclass(frozen=True, slots=True)
class WinRow:
    """A win and its payout saga state."""

    win_id: uuid.UUID
    tenant_id: str
    player_id: str
    pool_id: str
    jackpot_id: str
    tier: str
    cycle: int
    round_id: str
    game_id: str
    reason: str
    amount: int
    currency: str
    payout_state: PayoutState
    failure_reason: str
    attempts: int
    wallet_transaction_id: uuid.UUID | None
    hit_at: datetime
    credited_at: datetime | None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class CycleRow:
    """A pool cycle; `server_seed` is only filled once the cycle ended."""

    pool_id: str
    cycle: int
    seed_commitment: bytes
    server_seed: bytes | None
    start_amount: int
    carried_in: int
    must_drop_min_minor: int
    must_drop_max_minor: int
    must_drop_point: int | None
    deadline_min_seconds: int
    deadline_max_seconds: int
    drop_at: datetime | None
    started_at: datetime
    ended_at: datetime | None
    win_id: uuid.UUID | None
    currency: str = ""


@dataclass(frozen=True, slots=True)
class ContributionRow:
    """A recorded contribution and its draw inputs."""

    seq: int
    tenant_id: str
    pool_id: str
    cycle: int
    round_id: str
    salt: str
    bet: int
    to_pool: int
    to_reseed: int
    hit_probability_ppb: int
    hit: bool
    win_id: uuid.UUID | None
    created_at: datetime
    bet_currency: str = ""


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """One pool's reconciliation (all minor units; drifts must be 0)."""

    pool_id: str
    currency: str
    cycle: int
    seed_minor: int
    carried: int
    contributions: int
    amount: int
    wins: int
    win_count: int
    wins_drift: int
    hidden: int
    hidden_drift: int
    fraction_drift: int

    @property
    def expected(self) -> int:
        """seed + carried + contributions of this cycle."""
        return self.seed_minor + self.carried + self.contributions

    @property
    def drift(self) -> int:
        """amount - expected."""
        return self.amount - self.expected

    @property
    def balanced(self) -> bool:
        """Every drift is zero."""
        return not (self.drift or self.wins_drift or self.hidden_drift or self.fraction_drift)


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


def _config(c: dict[str, Any]) -> TierConfig:
    """The tier configuration from the `_CONFIG_COLUMNS` of a row."""
    return TierConfig(
        tier=str(c["tier"]),
        kind=PoolKind(c["kind"]),
        seed_minor=int(c["seed"]),
        contribution_rate_ppm=int(c["contribution_rate_ppm"]),
        reseed_split_ppm=int(c["reseed_split_ppm"]),
        cap_minor=int(c["cap"]),
        overflow_policy=OverflowPolicy(c["overflow_policy"]),
        min_bet_minor=int(c["min_bet"]),
        trigger=TriggerKind(c["trigger_kind"]),
        hit_probability_ppb=int(c["hit_probability_ppb"]),
        reference_bet_minor=int(c["reference_bet"]),
        must_drop_min_minor=int(c["must_drop_min"]),
        must_drop_max_minor=int(c["must_drop_max"]),
        deadline_min_seconds=int(c["deadline_min_seconds"]),
        deadline_max_seconds=int(c["deadline_max_seconds"]),
        shards=int(c["shards"]),
    )


def _jackpot(c: dict[str, Any]) -> JackpotRow:
    """The jackpot from the `_JACKPOT_COLUMNS` of a row."""
    return JackpotRow(
        jackpot_id=str(c["jackpot_id"]),
        owner_tenant_id=str(c["owner_tenant_id"]),
        display_name=str(c["display_name"]),
        currency=str(c["currency"]),
        scope=Scope(c["scope"]),
        tenant_ids=tuple(c["tenant_ids"]),
        region=str(c["region"]),
        game_ids=tuple(c["game_ids"]),
        created_at=c["created_at"],
        conversion_rates={str(k): int(v) for k, v in dict(c["conversion_rates"]).items()},
    )


def _jackpot_row(**c: Any) -> JackpotRow:
    return _jackpot(c)


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
    cur = conn.cursor(row_factory=scalar_row)
    await cur.execute(
        "UPDATE jp_pools SET kind = %s, seed = %s, contribution_rate_ppm = %s,"
        " reseed_split_ppm = %s, cap = %s, overflow_policy = %s, min_bet = %s, trigger_kind = %s,"
        " hit_probability_ppb = %s, reference_bet = %s, must_drop_min = %s, must_drop_max = %s,"
        " deadline_min_seconds = %s, deadline_max_seconds = %s, shards = %s,"
        " config_version = config_version + 1 WHERE pool_id = %s RETURNING config_version",
        (*_config_values(cfg), pool_id),
    )
    row = await cur.fetchone()
    assert row is not None
    version = int(row)
    await conn.execute(
        "UPDATE jp_pool_shards SET config_version = %s WHERE pool_id = %s", (version, pool_id)
    )
    return version


async def get_jackpot(conn: Conn, jackpot_id: str) -> JackpotRow | None:
    """The jackpot row, or None."""
    return await fetch_one(
        conn,
        _jackpot_row,
        f"SELECT {_JACKPOT_COLUMNS} FROM jp_jackpots j WHERE j.jackpot_id = %s",
        (jackpot_id,),
    )


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


def _pool_row(**c: Any) -> PoolRow:
    return PoolRow(
        pool_id=str(c["pool_id"]),
        jackpot_id=str(c["jackpot_id"]),
        config=_config(c),
        config_version=int(c["config_version"]),
        cycle=int(c["cycle"]),
        cycle_base=int(c["cycle_base"]),
        carried_in=int(c["carried_in"]),
        tier_order=int(c["tier_order"]),
        server_seed=bytes(c["server_seed"]),
        must_drop_point=None if c["must_drop_point"] is None else int(c["must_drop_point"]),
        drop_at=c["drop_at"],
    )


async def jackpot_pools(conn: Conn, jackpot_id: str) -> list[PoolRow]:
    """The jackpot's pools (unlocked read), by pool_id (the lock order)."""
    return await fetch_all(
        conn, _pool_row, _POOL_ROW + " WHERE p.jackpot_id = %s ORDER BY p.pool_id", (jackpot_id,)
    )


async def pool_row(conn: Conn, pool_id: str, *, lock: bool = False) -> PoolRow | None:
    """One pool, its row locked FOR UPDATE first when `lock`.

    The lock is a statement of its own: re-checking a join after waiting for a concurrent hit
    would pair the new pool row with the old cycle row and lose it (EvalPlanQual); the read
    after it sees the committed new cycle.
    """
    if lock:
        await conn.execute("SELECT 1 FROM jp_pools WHERE pool_id = %s FOR UPDATE", (pool_id,))
    return await fetch_one(conn, _pool_row, _POOL_ROW + " WHERE p.pool_id = %s", (pool_id,))


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


async def lock_shard(conn: Conn, pool_id: str, shard: int) -> ShardRow:
    """Lock (FOR UPDATE) one counter row."""
    row = await fetch_one(conn, ShardRow, _SHARD + " AND shard = %s FOR UPDATE", (pool_id, shard))
    assert row is not None, f"shard {shard} of {pool_id} missing"
    return row


async def lock_all_shards(conn: Conn, pool_id: str) -> list[ShardRow]:
    """Lock every counter row of the pool in shard order (waits for in-flight contributions)."""
    return await fetch_all(conn, ShardRow, _SHARD + " ORDER BY shard FOR UPDATE", (pool_id,))


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
      WHERE o.pool_id = %(pool)s AND o.cycle = %(cycle)s AND o.shard <> %(shard)s) AS others,
    reseed + overflow
      + (SELECT coalesce(sum(o.reseed + o.overflow), 0) FROM jp_pool_shards o
          WHERE o.pool_id = %(pool)s AND o.cycle = %(cycle)s AND o.shard <> %(shard)s)
      AS hidden
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
    return await fetch_one(
        conn,
        _added,
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


def _added(*, last_total: int, last_reseed: int, visible: int, others: Any, hidden: Any) -> Added:
    return Added(
        last_total, last_total - last_reseed, last_reseed, visible + int(others), int(hidden)
    )


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
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT s.pool_id, s.shard, s.cycle, s.config_version, s.visible, s.reseed,"
        " s.total_carry, s.reseed_carry,"
        " (SELECT coalesce(sum(o.visible), 0) FROM jp_pool_shards o"
        "   WHERE o.pool_id = s.pool_id AND o.cycle = s.cycle AND o.shard <> s.shard) AS others,"
        f" ({idempotency_sql.USED_KEYS_JSON.format(keys='%s')}) AS used,"
        " s.overflow + (SELECT coalesce(sum(o.reseed + o.overflow), 0) FROM jp_pool_shards o"
        "   WHERE o.pool_id = s.pool_id AND o.cycle = s.cycle AND o.shard <> s.shard)"
        " AS hidden_others"
        " FROM jp_pool_shards s JOIN unnest(%s::text[], %s::int[]) AS w(pool_id, shard)"
        " USING (pool_id, shard)",
        (
            idempotency_sql.key_rows(keys),
            [p for p, _ in wanted],
            [n for _, n in wanted],
        ),
    )
    rows = await cur.fetchall()
    used = idempotency_sql.used_of(rows[0]["used"]) if rows else set()
    shards = [
        BatchShard(
            pool_id=str(r["pool_id"]),
            shard=int(r["shard"]),
            cycle=int(r["cycle"]),
            config_version=int(r["config_version"]),
            visible=int(r["visible"]),
            reseed=int(r["reseed"]),
            total_carry=int(r["total_carry"]),
            reseed_carry=int(r["reseed_carry"]),
            others=int(r["others"]),
            hidden_others=int(r["hidden_others"]),
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


@functools.cache
def _write_batch_sql(columns: tuple[str, ...]) -> str:
    """`_WRITE_BATCH` for these jp_contributions columns, composed once per column set."""
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    return sql.SQL(_WRITE_BATCH).format(cols=cols).as_string()


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
        _write_batch_sql(tuple(contributions[0])),
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
    return int(
        await fetch_scalar(
            conn,
            "SELECT coalesce(sum(visible), 0) FROM jp_pool_shards"
            " WHERE pool_id = %s AND cycle = %s",
            (pool_id, cycle),
        )
    )


async def insert_contribution(conn: Conn, **values: Any) -> None:
    """Append a contribution record (no result is read: pipelined, no round trip)."""
    await conn.execute(_insert_contribution_sql(tuple(values)), values)


@functools.cache
def _insert_contribution_sql(columns: tuple[str, ...]) -> str:
    """The INSERT of `insert_contribution` for these columns, composed once per column set."""
    return (
        sql.SQL("INSERT INTO jp_contributions ({}) VALUES ({})")
        .format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(map(sql.Placeholder, columns)),
        )
        .as_string()
    )


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


def _cycle(**c: Any) -> CycleRow:
    ended = c["ended_at"] is not None
    return CycleRow(
        pool_id=str(c["pool_id"]),
        cycle=int(c["cycle"]),
        seed_commitment=bytes(c["seed_commitment"]),
        server_seed=bytes(c["server_seed"]) if ended else None,
        start_amount=int(c["start_amount"]),
        carried_in=int(c["carried_in"]),
        must_drop_min_minor=int(c["must_drop_min"]),
        must_drop_max_minor=int(c["must_drop_max"]),
        must_drop_point=(
            int(c["must_drop_point"]) if ended and c["must_drop_point"] is not None else None
        ),
        deadline_min_seconds=int(c["deadline_min_seconds"]),
        deadline_max_seconds=int(c["deadline_max_seconds"]),
        drop_at=c["drop_at"] if ended else None,
        started_at=c["started_at"],
        ended_at=c["ended_at"],
        win_id=c["win_id"],
        currency=str(c["currency"]),
    )


async def get_cycle(conn: Conn, pool_id: str, cycle: int) -> CycleRow | None:
    """A cycle; the seed, drop point and drop time only once it ended (never before)."""
    return await fetch_one(
        conn,
        _cycle,
        "SELECT c.pool_id, c.cycle, c.seed_commitment, c.server_seed, c.start_amount,"
        " c.carried_in, c.must_drop_min, c.must_drop_max, c.must_drop_point,"
        " c.deadline_min_seconds, c.deadline_max_seconds, c.drop_at, c.started_at, c.ended_at,"
        " c.win_id, j.currency"
        "  FROM jp_cycles c JOIN jp_pools p USING (pool_id) JOIN jp_jackpots j USING (jackpot_id)"
        " WHERE c.pool_id = %s AND c.cycle = %s",
        (pool_id, cycle),
    )


async def list_contributions(
    conn: Conn, pool_id: str, cycle: int, tenant_id: str | None, after: int, limit: int
) -> list[ContributionRow]:
    """A cycle's contributions in sequence order (only `tenant_id`'s when given)."""
    return await fetch_all(
        conn,
        ContributionRow,
        "SELECT seq, tenant_id, pool_id, cycle, round_id, idempotency_key AS salt, bet, to_pool,"
        " to_reseed, hit_probability_ppb, hit, win_id, created_at, bet_currency"
        "  FROM jp_contributions"
        " WHERE pool_id = %s AND cycle = %s AND seq > %s"
        "   AND (%s::text IS NULL OR tenant_id = %s) ORDER BY seq LIMIT %s",
        (pool_id, cycle, after, tenant_id, tenant_id, limit),
    )


# -- reads of pool state --------------------------------------------------------------------------

_STATE = (
    f"SELECT p.pool_id, {_JACKPOT_COLUMNS}, {_CONFIG_COLUMNS}, p.config_version, p.cycle,"
    " p.cycle_base, p.carried_in,"
    " (SELECT coalesce(sum(s.visible), 0) FROM jp_pool_shards s WHERE s.pool_id = p.pool_id)"
    "   AS contributed,"
    " (SELECT coalesce(sum(s.contributions), 0) FROM jp_pool_shards s"
    "   WHERE s.pool_id = p.pool_id) AS contribution_count,"
    " c.seed_commitment, c.started_at AS cycle_started_at, c.drop_at"
    "  FROM jp_pools p JOIN jp_jackpots j USING (jackpot_id)"
    "  JOIN jp_cycles c ON c.pool_id = p.pool_id AND c.cycle = p.cycle"
)


def _state(**c: Any) -> PoolState:
    return PoolState(
        pool_id=str(c["pool_id"]),
        jackpot=_jackpot(c),
        config=_config(c),
        config_version=int(c["config_version"]),
        cycle=int(c["cycle"]),
        cycle_base=int(c["cycle_base"]),
        carried_in=int(c["carried_in"]),
        contributed=int(c["contributed"]),
        contribution_count=int(c["contribution_count"]),
        seed_commitment=bytes(c["seed_commitment"]),
        cycle_started_at=c["cycle_started_at"],
        drop_at=c["drop_at"],
    )


async def pool_state(conn: Conn, pool_id: str) -> PoolState | None:
    """One pool's published state (one snapshot: the amount is exact as of it)."""
    return await fetch_one(conn, _state, _STATE + " WHERE p.pool_id = %s", (pool_id,))


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
    return await fetch_all(
        conn,
        _state,
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


# -- wins and the payout saga ---------------------------------------------------------------------

_WIN = (
    "SELECT w.win_id, w.tenant_id, w.player_id, w.pool_id, p.jackpot_id, p.tier, w.cycle,"
    " w.round_id, w.game_id, w.reason, w.amount, w.currency, w.payout_state, w.failure_reason,"
    " w.attempts, w.wallet_transaction_id, w.hit_at, w.credited_at, w.seq"
    "  FROM jp_wins w JOIN jp_pools p USING (pool_id)"
)


def _win(*, payout_state: str, **c: Any) -> WinRow:
    return WinRow(payout_state=PayoutState(payout_state), **c)


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
    return await fetch_one(
        conn, _win, _WIN + " WHERE w.win_id = %s" + (" FOR UPDATE OF w" if lock else ""), (win_id,)
    )


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
    return await fetch_all(
        conn,
        _win,
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
    return await fetch_scalars(
        conn,
        "SELECT win_id FROM jp_wins WHERE payout_state = 'requested'"
        "   AND next_attempt_at <= clock_timestamp() ORDER BY next_attempt_at LIMIT %s",
        (limit,),
    )


# -- audit ------------------------------------------------------------------------------------


async def lock_audit_head(conn: Conn, tenant_id: str, genesis: bytes) -> tuple[int, bytes]:
    """Lock the tenant's chain head (created at sequence 0); return (sequence, hash)."""
    await conn.execute(
        "INSERT INTO jp_audit_heads (tenant_id, seq, hash) VALUES (%s, 0, %s)"
        " ON CONFLICT DO NOTHING",
        (tenant_id, genesis),
    )
    head = await fetch_one(
        conn,
        _audit_head,
        "SELECT seq, hash FROM jp_audit_heads WHERE tenant_id = %s FOR UPDATE",
        (tenant_id,),
    )
    assert head is not None
    return head


def _audit_head(*, seq: int, hash: bytes) -> tuple[int, bytes]:
    return int(seq), bytes(hash)


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
    return await fetch_all(
        conn,
        _audit_record,
        "SELECT seq, action, subject, payload, time_micros, prev_hash, hash FROM jp_audit_log"
        " WHERE tenant_id = %s AND seq > %s ORDER BY seq LIMIT %s",
        (tenant_id, after, limit),
    )


def _audit_record(
    *,
    seq: int,
    action: str,
    subject: str,
    payload: str,
    time_micros: int,
    prev_hash: bytes,
    hash: bytes,
) -> tuple[int, str, str, str, int, bytes, bytes]:
    return (
        int(seq),
        str(action),
        str(subject),
        str(payload),
        int(time_micros),
        bytes(prev_hash),
        bytes(hash),
    )


# -- reconciliation ---------------------------------------------------------------------------


async def reconcile(conn: Conn, tenant_id: str, pool_id: str) -> list[Reconciliation]:
    """Recompute every pool `tenant_id` owns ('' = every tenant's) from its contribution and
    win records (invariant 5)."""
    return await fetch_all(
        conn,
        _reconciliation,
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
        SELECT p.pool_id, p.currency, p.cycle,
               cur.start_amount - cur.carried_in AS seed_minor,
               cur.carried_in AS carried, cur.to_pool AS contributions,
               p.cycle_base + s.visible AS amount,
               coalesce(past.wins, 0) AS wins, coalesce(past.win_count, 0) AS win_count,
               coalesce(past.wins_drift, 0) + abs(p.cycle_base - cur.start_amount)
                 AS wins_drift,
               s.hidden, s.hidden - cur.hidden + coalesce(past.carry_drift, 0) AS hidden_drift,
               abs(coalesce(f.total_rest, 0) - s.total_carry)
                 + abs(coalesce(f.reseed_rest, 0) - s.reseed_carry) AS fraction_drift
          FROM pools p
          JOIN per_cycle cur ON cur.pool_id = p.pool_id AND cur.cycle = p.cycle
          JOIN shards s ON s.pool_id = p.pool_id
          LEFT JOIN past ON past.pool_id = p.pool_id
          LEFT JOIN fractions f ON f.pool_id = p.pool_id
         ORDER BY p.pool_id
        """,
        {"t": tenant_id, "pool": pool_id},
    )


def _reconciliation(*, pool_id: str, currency: str, **sums: Any) -> Reconciliation:
    # The sums are numeric in SQL (Decimal here): whole minor units, read as int.
    return Reconciliation(
        pool_id=str(pool_id), currency=str(currency), **{k: int(v) for k, v in sums.items()}
    )


# -- deadline drops --------------------------------------------------------------------------


async def due_deadline_pools(conn: Conn, limit: int, exclude: Sequence[str] = ()) -> list[str]:
    """DEADLINE pools whose current cycle's drop time has passed, but the `exclude`d pool ids
    (set aside), oldest drop time first (unlocked read)."""
    return await fetch_scalars(
        conn,
        "SELECT p.pool_id FROM jp_pools p"
        "  JOIN jp_cycles c ON c.pool_id = p.pool_id AND c.cycle = p.cycle"
        " WHERE p.trigger_kind = 'deadline' AND c.ended_at IS NULL AND c.drop_at <= now()"
        "   AND p.pool_id <> ALL(%s::text[])"
        " ORDER BY c.drop_at LIMIT %s",
        (list(exclude), limit),
    )


async def last_contribution(
    conn: Conn, pool_id: str, cycle: int
) -> tuple[str, str, str, str, str] | None:
    """(tenant, player, round, game, idempotency key) of the cycle's last contribution."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(
        "SELECT tenant_id, player_id, round_id, game_id, idempotency_key FROM jp_contributions"
        " WHERE pool_id = %s AND cycle = %s ORDER BY seq DESC LIMIT 1",
        (pool_id, cycle),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    tenant, player, round_id, game, key = (str(v) for v in row)
    return tenant, player, round_id, game, key


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
    wins = await fetch_all(
        conn,
        _OwedWin,
        "SELECT win_id::text, tenant_id, player_id, payout_state, amount, currency,"
        "       wallet_transaction_id FROM jp_wins ORDER BY win_id",
    )
    credits: dict[tuple[str, str], list[_PayoutCredit]] = {}
    for c in await fetch_all(
        conn,
        _PayoutCredit,
        "SELECT t.tenant_id, substr(t.idempotency_key, 11) AS win_id, t.transaction_id,"
        "       t.player_id, t.amount, t.currency,"
        "       (SELECT count(*) FROM transactions r WHERE r.tenant_id = t.tenant_id"
        "          AND r.target_transaction_id = t.transaction_id AND r.kind = 'rollback')"
        "         AS rollbacks,"
        "       (SELECT coalesce(sum(r.amount), 0) FROM transactions r"
        "         WHERE r.tenant_id = t.tenant_id AND r.target_transaction_id = t.transaction_id"
        "           AND r.kind = 'rollback') AS rolled_back"
        "  FROM transactions t WHERE t.kind = 'credit' AND t.idempotency_key LIKE 'jp-payout-%'",
    ):
        credits.setdefault((str(c.tenant_id), str(c.win_id)), []).append(c)
    out: list[dict[str, object]] = []
    for w in wins:
        cs = credits.get((str(w.tenant_id), str(w.win_id)), [])
        rollbacks = sum(int(c.rollbacks) for c in cs)
        if w.payout_state == "credited" and int(w.amount) > 0:
            agrees = (
                len(cs) == 1
                and rollbacks == 0
                and (cs[0].player_id, int(cs[0].amount), cs[0].currency, cs[0].transaction_id)
                == (w.player_id, int(w.amount), w.currency, w.wallet_transaction_id)
            )
        else:
            agrees = not cs
        if agrees:
            continue
        out.append(
            {
                "win_id": str(w.win_id),
                "tenant_id": str(w.tenant_id),
                "player_id": str(w.player_id),
                "payout_state": str(w.payout_state),
                "amount_minor_units": int(w.amount),
                "currency": str(w.currency),
                "credits": len(cs),
                "credited_minor_units": sum(int(c.amount) for c in cs)
                - sum(int(c.rolled_back) for c in cs),
                "wallet_transaction_id": (
                    None if w.wallet_transaction_id is None else str(w.wallet_transaction_id)
                ),
            }
        )
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True, slots=True)
class _OwedWin:
    """A win as `win_ledger_mismatches` compares it with the ledger."""

    win_id: str
    tenant_id: str
    player_id: str
    payout_state: str
    amount: int
    currency: str
    wallet_transaction_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class _PayoutCredit:
    """A payout credit in the ledger (`win_id` from its key) and its rollbacks' count and sum."""

    tenant_id: str
    win_id: str
    transaction_id: uuid.UUID
    player_id: str
    amount: int
    currency: str
    rollbacks: int
    rolled_back: Any  # numeric sum

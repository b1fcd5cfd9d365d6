"""What the jackpot engine accepts and returns: plain data, no grpc, no SQL.

Vocabulary (docs/jackpot.md): pool, tier, seed, reseed, cap, overflow, must-drop, contribution (rate
in ppm of the bet), trigger, hit, win, payout, saga. Amounts are int minor units of the
jackpot's currency; rates are ppm, probabilities ppb, durations seconds.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from server.money import Money


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
class Contribute:
    """One bet reported by an RGS (JackpotService.Contribute)."""

    tenant_id: str
    idempotency_key: str
    jackpot_id: str
    player_id: str
    game_id: str
    round_id: str
    bet: Money
    contribution: Money | None
    occurred_at: datetime | None


@dataclass(frozen=True, slots=True)
class TierOutcome:
    """What a contribution did to one tier (minor units)."""

    pool_id: str
    tier: str
    cycle: int
    qualified: bool
    not_qualified_reason: str = ""
    contribution: int = 0
    reseed: int = 0
    overflow: int = 0
    not_collected: int = 0
    pool_amount: int = 0
    hit: bool = False
    win_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class ContributeResult:
    """Per tier, in tier order; `currency` of every amount."""

    currency: str
    tiers: tuple[TierOutcome, ...]
    wins: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True, slots=True)
class TriggerCmd:
    """A hit reported by an RGS (JackpotService.Trigger)."""

    tenant_id: str
    idempotency_key: str
    pool_id: str
    reason: str
    player_id: str
    round_id: str
    game_id: str


@dataclass(frozen=True, slots=True)
class Eligibility:
    """CheckEligibility for one tier."""

    pool_id: str
    tier: str
    eligible: bool
    reason: str
    hit_probability_ppb: int


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


@dataclass(frozen=True, slots=True)
class Page:
    """A page request: at most `size` rows after the cursor `after` (None = from the start)."""

    size: int
    after: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

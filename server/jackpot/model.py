"""What the jackpot engine accepts and returns: plain data, no grpc, no SQL.

The stored types (pools, tiers, wins, cycles, contributions and their enums) are the store's
(server/store/jackpot_sql.py) and re-exported here, so the engine and the transport import
them from the domain (docs/architecture.md, "Layers").

Vocabulary (docs/jackpot.md): pool, tier, seed, reseed, cap, overflow, must-drop, contribution (rate
in ppm of the bet), trigger, hit, win, payout, saga. Amounts are int minor units of the
jackpot's currency; rates are ppm, probabilities ppb, durations seconds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from server.money import Money
from server.store.jackpot_sql import (
    ContributionRow as ContributionRow,
)
from server.store.jackpot_sql import (
    CycleRow as CycleRow,
)
from server.store.jackpot_sql import (
    JackpotRow as JackpotRow,
)
from server.store.jackpot_sql import (
    JackpotSpec as JackpotSpec,
)
from server.store.jackpot_sql import (
    OverflowPolicy as OverflowPolicy,
)
from server.store.jackpot_sql import (
    PayoutState as PayoutState,
)
from server.store.jackpot_sql import (  # the stored types: the store owns them
    PoolKind as PoolKind,
)
from server.store.jackpot_sql import (
    PoolState as PoolState,
)
from server.store.jackpot_sql import (
    Reconciliation as Reconciliation,
)
from server.store.jackpot_sql import (
    Scope as Scope,
)
from server.store.jackpot_sql import (
    TierConfig as TierConfig,
)
from server.store.jackpot_sql import (
    TriggerKind as TriggerKind,
)
from server.store.jackpot_sql import (
    WinRow as WinRow,
)


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
class Page:
    """A page request: at most `size` rows after the cursor `after` (None = from the start)."""

    size: int
    after: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

"""Bonus money rules: commands, the spend order, proportional splits and game weights.

Plain data and arithmetic (no grpc, no SQL); the ledger (server.wallet.ledger) applies them
in its transactions. Money is int64 minor units; weights are integer ppm (1,000,000 = 100%).
See docs/bonus.md for the rules in prose.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from server.store import bonus_sql
from server.store.bonus_sql import BonusRow
from server.wallet.model import Caller

PPM = 1_000_000
MAX_MULTIPLIER = 1000

CASH = "cash"
BONUS = "bonus"
LOCKED = "locked"
DEFAULT_SPEND_ORDER: tuple[str, ...] = bonus_sql.DEFAULT_SPEND_ORDER  # cash, locked, bonus
PARTS = frozenset(DEFAULT_SPEND_ORDER)

# The metadata key of a bet naming its game category (weights by category).
CATEGORY_KEY = "game_category"


class BonusState(enum.Enum):
    """Where a bonus is in its life."""

    ACTIVE = "active"
    COMPLETED = "completed"
    FORFEITED = "forfeited"
    EXPIRED = "expired"


class RequirementBase(enum.Enum):
    """What the wagering multiplier applies to."""

    BONUS = "bonus"
    DEPOSIT_PLUS_BONUS = "deposit_plus_bonus"


class WithdrawalPolicy(enum.Enum):
    """What a withdrawal does while a bonus is active."""

    REFUSE = "refuse"
    FORFEIT = "forfeit"


@dataclass(frozen=True, slots=True)
class Parts:
    """An amount split over the buckets a bet takes money from (minor units, each >= 0)."""

    cash: int = 0
    bonus: int = 0
    locked: int = 0

    @property
    def total(self) -> int:
        """cash + bonus + locked."""
        return self.cash + self.bonus + self.locked

    def get(self, name: str) -> int:
        """The part called `name` (cash, bonus or locked)."""
        value: int = getattr(self, name)
        return value

    def minus(self, other: Parts) -> Parts:
        """Part by part difference."""
        return Parts(self.cash - other.cash, self.bonus - other.bonus, self.locked - other.locked)


@dataclass(frozen=True, slots=True)
class Weights:
    """Game weights in ppm: by game id first, then by category, else the default."""

    default_ppm: int
    by_game: Mapping[str, int] = field(default_factory=dict)
    by_category: Mapping[str, int] = field(default_factory=dict)

    def of(self, game_id: str, category: str) -> int:
        """The weight (ppm) of a bet on `game_id` of `category`."""
        if game_id in self.by_game:
            return self.by_game[game_id]
        if category in self.by_category:
            return self.by_category[category]
        return self.default_ppm


@dataclass(frozen=True, slots=True)
class GrantBonus:
    """Grant `amount_minor` of bonus money, locking `locked_deposit_minor` of the player's cash.

    The wagering requirement is `multiplier` x (the bonus, or the locked deposit plus the
    bonus) in minor units of weighted turnover. `max_bet_minor` caps each bet while the bonus
    is active (None: no cap); `max_conversion_minor` caps the bonus money converted to cash at
    completion (None: no cap).
    """

    caller: Caller
    currency: str
    amount_minor: int
    locked_deposit_minor: int
    multiplier: int
    base: RequirementBase
    weights: Weights
    max_bet_minor: int | None
    max_conversion_minor: int | None
    expire_time: datetime
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def requirement_minor(self) -> int:
        """The weighted turnover to reach, in minor units."""
        base = self.amount_minor
        if self.base is RequirementBase.DEPOSIT_PLUS_BONUS:
            base += self.locked_deposit_minor
        return self.multiplier * base


@dataclass(frozen=True, slots=True)
class ForfeitBonus:
    """Forfeit the player's bonus `bonus_id` (it must be active)."""

    caller: Caller
    bonus_id: uuid.UUID
    reason: str


@dataclass(frozen=True, slots=True)
class SetBonusSettings:
    """Replace a tenant's bonus settings: the spend order (bucket names) and the withdrawal
    policy."""

    tenant_id: str
    spend_order: tuple[str, ...]
    withdrawal_policy: WithdrawalPolicy


def weights_of(row: BonusRow) -> Weights:
    """The game weights of a stored bonus."""
    return Weights(row.default_weight_ppm, row.game_weights, row.category_weights)


def reached(row: BonusRow) -> bool:
    """The bonus's weighted turnover reached its requirement."""
    return row.wagered_ppm >= row.requirement * PPM


def take_in_order(amount: int, available: Parts, order: Sequence[str]) -> Parts:
    """Split `amount` over the buckets in `order`, each emptied before the next is touched.

    The caller has checked `available.total >= amount`.
    """
    taken: dict[str, int] = {}
    rest = amount
    for name in order:
        take = min(rest, available.get(name))
        taken[name] = take
        rest -= take
    assert rest == 0, "take_in_order needs enough money"
    return Parts(taken.get(CASH, 0), taken.get(BONUS, 0), taken.get(LOCKED, 0))


def proportional(total: int, stake: Parts, order: Sequence[str]) -> Parts:
    """Split `total` in the proportions of `stake`, exactly to the minor unit.

    Each part gets floor(total x part / stake); the minor units left (fewer than the number
    of non-zero parts) go one each to the parts with the largest remainders, ties to the part
    earlier in `order`. When `total` <= `stake.total` no part exceeds its stake part, so a
    partial capture never takes more from a bucket than the hold took from it. A zero stake
    puts everything on cash.
    """
    whole = stake.total
    if whole == 0:
        return Parts(cash=total)
    shares: dict[str, int] = {}
    remainders: list[tuple[int, int, str]] = []
    for rank, name in enumerate(order):
        q, r = divmod(total * stake.get(name), whole)
        shares[name] = q
        if stake.get(name) > 0:
            remainders.append((-r, rank, name))
    left = total - sum(shares.values())
    for _, _, name in sorted(remainders)[:left]:
        shares[name] += 1
    return Parts(shares[CASH], shares[BONUS], shares[LOCKED])


def check_spend_order(order: Sequence[str]) -> bool:
    """True when `order` names cash, bonus and locked once each."""
    return len(order) == 3 and set(order) == PARTS

"""Commands the wallet accepts and results it returns (plain data, no grpc, no SQL).

The stored types it returns (`TransactionRow`, `BonusRow`, `SettingsRow`) are the store's
(server/store/wallet_sql.py, bonus_sql.py), re-exported here so the transport imports them from
the domain (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from server.money import Money
from server.store.bonus_sql import BonusRow as BonusRow
from server.store.bonus_sql import SettingsRow as SettingsRow
from server.store.wallet_sql import TransactionRow as TransactionRow


class PlayerStatus(enum.Enum):
    """Stored player status; bets and debits need ACTIVE."""

    ACTIVE = "active"
    BLOCKED = "blocked"
    SELF_EXCLUDED = "self_excluded"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a write is for and under which idempotency key."""

    tenant_id: str
    player_id: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class RoundRef:
    """The game context of a money movement (each may be empty where optional)."""

    bet_id: str = ""
    round_id: str = ""
    game_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuthorizeBet:
    """Hold `amount` for `ref.bet_id` for `ttl_seconds` (seconds)."""

    caller: Caller
    ref: RoundRef
    amount: Money
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class SettleBet:
    """Capture `capture` (None = the whole hold) and credit `win` (minor units, may be 0)."""

    caller: Caller
    ref: RoundRef
    capture: Money | None
    win: Money | None


@dataclass(frozen=True, slots=True)
class CancelBet:
    """Void the hold of `ref.bet_id`."""

    caller: Caller
    ref: RoundRef
    reason: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """A Credit (cashier -> player) or Debit (player -> cashier) of `amount`."""

    caller: Caller
    ref: RoundRef
    amount: Money
    # Credit: "" | "deposit" | "win" | "refund" | "bonus" | "payout";
    # Debit: "" (a stake) | "stake" | "withdrawal" (docs/responsible-gaming.md)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rollback:
    """Reverse the debit/credit named by `target_key` or `target_transaction_id`."""

    caller: Caller
    target_key: str | None
    target_transaction_id: uuid.UUID | None
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class BalanceView:
    """Balances of one account in minor units: `available` is the cash bucket; `bonus` and
    `locked` are the bonus money and the real money tied to an active bonus (docs/bonus.md)."""

    currency: str
    available: int
    held: int
    bonus: int = 0
    locked: int = 0

    @property
    def spendable(self) -> int:
        """What the player may bet: cash + bonus + locked (GetBalance's `available`)."""
        return self.available + self.bonus + self.locked


@dataclass(frozen=True, slots=True)
class AuthorizeResult:
    """A placed hold."""

    transaction_id: uuid.UUID
    hold_id: uuid.UUID
    expire_time: datetime
    balance: BalanceView


@dataclass(frozen=True, slots=True)
class SettleResult:
    """A settled hold: captured + released = the hold; win credited."""

    transaction_id: uuid.UUID
    currency: str
    captured: int
    released: int
    win: int
    balance: BalanceView


@dataclass(frozen=True, slots=True)
class CancelResult:
    """A voided hold, or a tombstone (balance None, released 0)."""

    transaction_id: uuid.UUID
    currency: str
    released: int
    balance: BalanceView | None


@dataclass(frozen=True, slots=True)
class TransferResult:
    """A credit or debit."""

    transaction_id: uuid.UUID
    balance: BalanceView


class RollbackOutcome(enum.Enum):
    """What a rollback did."""

    REVERSED = 1
    TOMBSTONED = 2
    NOTHING_TO_REVERSE = 3


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """A rollback: `reversed_amount` signed minor units on the player's available balance."""

    transaction_id: uuid.UUID
    outcome: RollbackOutcome
    target_transaction_id: uuid.UUID | None
    currency: str
    reversed_amount: int
    balance: BalanceView | None


@dataclass(frozen=True, slots=True)
class StatusResult:
    """A status change."""

    previous: PlayerStatus | None
    status: PlayerStatus


@dataclass(frozen=True, slots=True)
class BonusResult:
    """A bonus after a grant or forfeit, the journal transaction and the balances after."""

    transaction_id: uuid.UUID
    bonus: BonusRow
    balance: BalanceView

"""The event catalog: every event type Croupier publishes and its current schema version.

One JSON Schema per type and major version lives in `protos/events/<type>.v<major>.json`;
within a major version changes are additive only (docs/events.md). The routing key on the
`croupier.events` topic exchange is the event type.
"""

from __future__ import annotations

from typing import Final

WALLET_EVENTS: Final = {
    "wallet.bet.authorized": "1.2.0",
    "wallet.bet.settled": "1.2.0",
    "wallet.bet.cancelled": "1.2.0",
    "wallet.bet.expired": "1.2.0",
    "wallet.credited": "1.2.0",
    "wallet.debited": "1.2.0",
    "wallet.rolled_back": "1.2.0",
    "wallet.round.step": "1.0.0",
}

# Bonus money (docs/bonus.md); aggregate: the player's account, as the other wallet events.
BONUS_EVENTS: Final = {
    "wallet.bonus.granted": "1.0.0",
    "wallet.bonus.completed": "1.0.0",
    "wallet.bonus.forfeited": "1.0.0",
    "wallet.bonus.expired": "1.0.0",
}

JACKPOT_EVENTS: Final = {
    "jp.contribution.recorded": "1.1.0",
    "jp.pool.updated": "1.1.0",
    "jp.triggered": "1.1.0",
    "jp.payout.requested": "1.1.0",
    "jp.payout.credited": "1.1.0",
    "jp.payout.failed": "1.1.0",
    "audit.config.changed": "1.1.0",
}

# Player protection (docs/responsible-gaming.md).
PROTECTION_EVENTS: Final = {
    "rg.limit.hit": "1.0.0",
    "rg.limit.changed": "1.0.0",
    "rg.exclusion.changed": "1.0.0",
}

# AML review of payouts (docs/aml-review.md).
AML_EVENTS: Final = {
    "aml.alert.opened": "1.0.0",
    "aml.alert.resolved": "1.0.0",
}

EVENT_TYPES: Final = {
    **WALLET_EVENTS,
    **BONUS_EVENTS,
    **JACKPOT_EVENTS,
    **PROTECTION_EVENTS,
    **AML_EVENTS,
}

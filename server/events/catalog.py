"""The event catalog: every event type Croupier publishes and its current schema version.

One JSON Schema per type and major version lives in `protos/events/<type>.v<major>.json`;
within a major version changes are additive only (seed 004 section 5). The routing key on the
`croupier.events` topic exchange is the event type.
"""

from __future__ import annotations

from typing import Final

WALLET_EVENTS: Final = {
    "wallet.bet.authorized": "1.1.0",
    "wallet.bet.settled": "1.1.0",
    "wallet.bet.cancelled": "1.1.0",
    "wallet.bet.expired": "1.1.0",
    "wallet.credited": "1.1.0",
    "wallet.debited": "1.1.0",
    "wallet.rolled_back": "1.1.0",
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

EVENT_TYPES: Final = {**WALLET_EVENTS, **JACKPOT_EVENTS}

"""The CRM casino feed: wallet events re-shaped as the CRM's casino events.

Each wallet event that belongs to a game round becomes one casino event: `Bet` (hold or
debit), `Win` (a settlement with a win, or a credit on a round), `Loss` (a settlement without a
win, amount 0, closing the round), with status `Approved`, or `Rollback` for voided holds and
rolled-back transactions. It is published with the AMQP message property `type=CASINO` right
after its wallet event, in the same per-account order, so a round's Bet precedes its Win/Loss.

Amounts: the CRM wants decimal numbers with `amount = wager_amount + bonus_wager_amount +
locked_wager_amount`: the cash, bonus and locked parts recorded by the wallet (docs/bonus.md;
a bet's split, a win's attribution, a release's or reversal's parts). Without bonus money every
part but cash is 0 and `amount == wager_amount`. The numbers are rendered exactly from minor
units (EUR 1250 -> 12.50) as JSON number literals, never through a float. Game name/type,
vendor and origin come from the round's metadata keys `game_name`, `game_type`, `vendor_id`,
`vendor_name`, `origin`, `user_bonus_id` when the RGS sends them (defaults: the game id,
"Slots", the tenant).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from server.money import Money, format_decimal

_NUM = "\x00NUM:"
_NUM_RE = re.compile(r'"\\u0000NUM:(-?[0-9]+(?:\.[0-9]+)?)"')


def _number(minor_units: int, currency: str) -> str:
    return _NUM + format_decimal(Money(minor_units, currency))


def dumps(body: dict[str, Any]) -> bytes:
    """JSON with exact decimal number literals for amounts (no float on the way)."""
    return _NUM_RE.sub(r"\1", json.dumps(body, sort_keys=True)).encode()


# The payload field holding the cash/bonus/locked split of each event's casino amount.
_PARTS = {
    "wallet.bet.authorized": "amount_parts",
    "wallet.debited": "amount_parts",
    "wallet.bet.settled": "win_parts",
    "wallet.bet.cancelled": "released_parts",
    "wallet.bet.expired": "released_parts",
    "wallet.rolled_back": "reversed_parts",
}


def _kind(event_type: str, payload: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(type, status, money) of the casino event for a wallet event, or None."""
    if event_type == "wallet.bet.authorized":
        return "Bet", "Approved", payload["amount"]
    if event_type == "wallet.bet.settled":
        win = payload["win"]
        return ("Win" if win["minor_units"] > 0 else "Loss"), "Approved", win
    if event_type in ("wallet.bet.cancelled", "wallet.bet.expired"):
        return "Bet", "Rollback", payload["released"]
    if not payload.get("round_id"):
        return None  # a deposit or withdrawal, not a game round
    if event_type == "wallet.debited":
        return "Bet", "Approved", payload["amount"]
    if event_type == "wallet.credited":
        return "Win", "Approved", payload["amount"]
    if event_type == "wallet.rolled_back":
        kind = "Bet" if payload["target_kind"] == "debit" else "Win"
        reversed_money = dict(payload["reversed"])
        reversed_money["minor_units"] = abs(reversed_money["minor_units"])
        return kind, "Rollback", reversed_money
    return None


def casino_event(
    event_id: str,
    event_type: str,
    tenant_id: str,
    occurred_at: datetime,
    payload: dict[str, Any],
) -> dict[str, Any] | None:
    """The CRM casino event for a wallet event (see module doc), or None."""
    kind = _kind(event_type, payload)
    if kind is None:
        return None
    type_, status, amount = kind
    currency = amount["currency"]
    parts = payload.get(_PARTS.get(event_type, ""))
    bonus_part = 0 if parts is None else abs(int(parts["bonus"]["minor_units"]))
    locked_part = 0 if parts is None else abs(int(parts["locked"]["minor_units"]))
    cash_part = amount["minor_units"] - bonus_part - locked_part
    meta: dict[str, str] = payload.get("metadata", {})
    body: dict[str, Any] = {
        "activity_id": event_id,
        "type": type_,
        "status": status,
        "amount": _number(amount["minor_units"], currency),
        "wager_amount": _number(cash_part, currency),
        "bonus_wager_amount": _number(bonus_part, currency),
        "locked_wager_amount": _number(locked_part, currency),
        "currency": currency,
        "exchange_rate": "\x00NUM:1",
        "game_id": payload.get("game_id", ""),
        "game_name": meta.get("game_name", payload.get("game_id", "")),
        "game_type": meta.get("game_type", "Slots"),
        "is_round_end": type_ in ("Win", "Loss"),
        "origin": meta.get("origin", tenant_id),
        "round_id": payload.get("round_id", ""),
        "timestamp": occurred_at.isoformat(),
        "user_id": payload["player_id"],
        "vendor_id": meta.get("vendor_id", tenant_id),
        "vendor_name": meta.get("vendor_name", tenant_id),
        "user_bonus_id": meta.get("user_bonus_id", ""),
        "meta": {"transaction_id": payload["transaction_id"], "tenant_id": tenant_id},
    }
    balance = payload.get("balance_after")
    if balance is not None:
        body["balance_after"] = _number(balance["available"]["minor_units"], currency)
    return body

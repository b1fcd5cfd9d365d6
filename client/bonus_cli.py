"""Bonus commands of the ops CLI (docs/bonus.md).

    croupier wallet bonus grant --player P --amount DECIMAL --currency CODE
                                [--lock-deposit DECIMAL] --multiplier N
                                [--base bonus|deposit-plus-bonus]
                                [--weight KEY=PERCENT ...] [--default-weight PERCENT]
                                [--max-bet DECIMAL] [--max-conversion DECIMAL]
                                (--expires RFC3339 | --days N)
    croupier wallet bonus show --player P [--bonus-id ID]
    croupier wallet bonus forfeit --player P --bonus-id ID [--reason TEXT]

Amounts are decimal strings converted exactly to minor units (server.money.parse_decimal);
a weight is `game:<game_id>=PERCENT` or `category:<name>=PERCENT` with at most four decimals
(10 -> 100000 ppm). Write commands take `--idempotency-key` (a uuid4 when absent). Output and
errors as every `croupier` command (client/cli.py).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from croupier.common.v1 import money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from google.protobuf.message import Message

from client.protection_cli import _player_command as player_command
from client.wallet import WalletClient
from client.wallet_calls import Call
from server.errors import invalid
from server.money import parse_decimal

_BASES = {
    "bonus": pb.WAGERING_BASE_BONUS,
    "deposit-plus-bonus": pb.WAGERING_BASE_DEPOSIT_PLUS_BONUS,
}


def _money(text: str, currency: str, field: str) -> money_pb2.Money:
    m = parse_decimal(text, currency.upper(), field=field)
    return money_pb2.Money(minor_units=m.minor_units, currency=m.currency)


def percent_to_ppm(text: str, field: str) -> int:
    """A percentage ("10", "2.5") as integer ppm (10 -> 100000); at most four decimals.
    Raises INVALID_ARGUMENT INVALID_WEIGHT naming `field`."""
    try:
        value = Decimal(text) * 10_000
    except InvalidOperation:
        raise invalid(field, "INVALID_WEIGHT", f"{field} must be a percentage") from None
    if value != value.to_integral_value():
        raise invalid(field, "INVALID_WEIGHT", f"{field} allows at most four decimals")
    return int(value)


def _grant(w: WalletClient, a: argparse.Namespace) -> Message:
    request = pb.GrantBonusRequest(
        tenant_id=a.tenant,
        player_id=a.player,
        idempotency_key=a.idempotency_key,
        amount=_money(a.amount, a.currency, "amount"),
        wagering_multiplier=a.multiplier,
        wagering_base=_BASES[a.base],
    )
    if a.lock_deposit:
        request.locked_deposit.CopyFrom(_money(a.lock_deposit, a.currency, "locked_deposit"))
    if a.max_bet:
        request.max_bet.CopyFrom(_money(a.max_bet, a.currency, "max_bet"))
    if a.max_conversion:
        request.max_conversion.CopyFrom(_money(a.max_conversion, a.currency, "max_conversion"))
    if a.default_weight is not None:
        request.default_weight_ppm = percent_to_ppm(a.default_weight, "--default-weight")
    for item in a.weight:
        target, _, pct = item.partition("=")
        kind, _, name = target.partition(":")
        if kind not in ("game", "category") or not name or not pct:
            raise invalid(
                "--weight",
                "INVALID_WEIGHT",
                "--weight is game:<id>=PERCENT or category:<name>=PERCENT",
            )
        table = request.game_weights_ppm if kind == "game" else request.category_weights_ppm
        table[name] = percent_to_ppm(pct, "--weight")
    if a.expires:
        try:
            until = datetime.fromisoformat(a.expires)
        except ValueError:
            raise invalid(
                "--expires", "INVALID_TIME", "--expires must be an RFC 3339 time"
            ) from None
        if until.tzinfo is None:
            raise invalid("--expires", "INVALID_TIME", "--expires needs a UTC offset")
    else:
        until = datetime.now(UTC) + timedelta(days=a.days)
    request.expire_time.FromDatetime(until.astimezone(UTC))
    return w.invoke(Call("GrantBonus", request, pb.GrantBonusResponse, write=True))


def _show(w: WalletClient, a: argparse.Namespace) -> Message:
    if a.bonus_id:
        get = pb.GetBonusRequest(tenant_id=a.tenant, player_id=a.player, bonus_id=a.bonus_id)
        return w.invoke(Call("GetBonus", get, pb.GetBonusResponse, write=False))
    request = pb.ListBonusesRequest(tenant_id=a.tenant, player_id=a.player)
    return w.invoke(Call("ListBonuses", request, pb.ListBonusesResponse, write=False))


def _forfeit(w: WalletClient, a: argparse.Namespace) -> Message:
    request = pb.ForfeitBonusRequest(
        tenant_id=a.tenant,
        player_id=a.player,
        idempotency_key=a.idempotency_key,
        bonus_id=a.bonus_id,
        reason=a.reason,
    )
    return w.invoke(Call("ForfeitBonus", request, pb.ForfeitBonusResponse, write=True))


def register_wallet(commands: Any) -> None:
    """Add `bonus grant|show|forfeit` to the `croupier wallet` commands."""
    bonus = commands.add_parser("bonus", help="bonus money: grant, show, forfeit")
    actions = bonus.add_subparsers(dest="bonus_action", metavar="ACTION", required=True)
    p = player_command(actions, "grant", _grant, "grant a bonus", write=True)
    p.add_argument("--amount", required=True, help="bonus money, decimal, e.g. 200.00")
    p.add_argument("--currency", required=True, help="ISO 4217 code, e.g. EUR")
    p.add_argument("--lock-deposit", default=None, help="cash to lock with the bonus, decimal")
    p.add_argument("--multiplier", type=int, required=True, help="wagering multiplier, e.g. 40")
    p.add_argument("--base", choices=tuple(_BASES), default="deposit-plus-bonus")
    p.add_argument(
        "--weight", action="append", default=[], help="game:<id>=PERCENT or category:<name>=PERCENT"
    )
    p.add_argument("--default-weight", default=None, help="PERCENT for other games (default 100)")
    p.add_argument("--max-bet", default=None, help="the most one bet may stake, decimal")
    p.add_argument("--max-conversion", default=None, help="the most converted to cash, decimal")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--expires", default=None, help="expiry, RFC 3339 with offset")
    end.add_argument("--days", type=float, default=30.0, help="expire in N days (default 30)")
    p = player_command(actions, "show", _show, "one bonus, or the player's bonuses", write=False)
    p.add_argument("--bonus-id", default=None, help="the bonus id (default: list them)")
    p = player_command(actions, "forfeit", _forfeit, "forfeit an active bonus", write=True)
    p.add_argument("--bonus-id", required=True, help="the bonus id")
    p.add_argument("--reason", default="", help="why (stored on the bonus)")

"""Money: integer minor units of an ISO 4217 currency, and exact decimal parsing.

Currencies and their exponents (minor-unit digits) come from the `iso4217` package (the
ISO 4217 list, maintained upstream), extended by `CROUPIER_EXTRA_CURRENCIES`, e.g.
`BTC:8,USDT:6`, for the crypto codes operators use. Codes without minor units in
ISO 4217 (gold XAU, SDR XDR, ...) are not money here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

import iso4217

from server.errors import invalid

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

_CODE = re.compile(r"^[A-Z][A-Z0-9]{2,9}$")
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units (int64) of `currency`."""

    minor_units: int
    currency: str


@cache
def _iso_exponents() -> dict[str, int]:
    out: dict[str, int] = {}
    for c in iso4217.Currency:
        exponent = c.exponent
        if exponent is not None:
            out[c.code] = int(exponent)
    return out


def parse_extra_currencies(spec: str) -> dict[str, int]:
    """Parse `CODE:DIGITS[,CODE:DIGITS...]` (e.g. "BTC:8,USDT:6") into {code: exponent}.

    Raises ValueError on a malformed entry or an exponent outside 0..18.
    """
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        code, sep, digits = part.partition(":")
        code = code.strip().upper()
        if not sep or not _CODE.match(code) or not digits.strip().isdigit():
            raise ValueError(f"bad currency entry {part!r}: expected CODE:DIGITS")
        exponent = int(digits)
        if not 0 <= exponent <= 18:
            raise ValueError(f"bad exponent for {code}: {exponent}")
        out[code] = exponent
    return out


@cache
def currency_exponents() -> dict[str, int]:
    """All accepted currencies and their exponents (ISO 4217 plus the configured extras)."""
    table = dict(_iso_exponents())
    table.update(parse_extra_currencies(os.environ.get("CROUPIER_EXTRA_CURRENCIES", "")))
    return table


def exponent_of(currency: str) -> int | None:
    """The number of minor-unit digits of `currency` (EUR 2, JPY 0, KWD 3), or None."""
    return currency_exponents().get(currency)


def check_currency(currency: str, field: str) -> str:
    """Return `currency` if accepted; raise INVALID_ARGUMENT naming `field` otherwise.

    Reasons: `MISSING_FIELD` (empty), `UNKNOWN_CURRENCY`.
    """
    if not currency:
        raise invalid(field, "MISSING_FIELD", f"{field} is required (an ISO 4217 code)")
    if exponent_of(currency) is None:
        raise invalid(
            field,
            "UNKNOWN_CURRENCY",
            f"{field} {currency[:16]!r} is not an ISO 4217 currency with minor units "
            "nor a configured one",
        )
    return currency


def check_amount(money: Money, field: str, *, allow_zero: bool = False) -> Money:
    """Validate a request amount: known currency, positive (or zero if allowed) int64.

    Raises INVALID_ARGUMENT with reason `INVALID_AMOUNT` naming `field.minor_units`, or the
    reasons of `check_currency` naming `field.currency`.
    """
    check_currency(money.currency, f"{field}.currency")
    low = 0 if allow_zero else 1
    if not low <= money.minor_units <= INT64_MAX:
        need = "zero or more" if allow_zero else "more than zero"
        raise invalid(
            f"{field}.minor_units",
            "INVALID_AMOUNT",
            f"{field}.minor_units must be {need}, got {money.minor_units}",
        )
    return money


def parse_decimal(text: str, currency: str, field: str = "amount") -> Money:
    """Convert a decimal string ("12.50") to exact minor units of `currency`.

    More decimals than the currency allows is an error, never rounded (docs/architecture.md
    invariant 1): "10.005" EUR raises INVALID_ARGUMENT `TOO_MANY_DECIMALS`. Trailing zeros are fine
    ("10.50" EUR, "100.0" JPY). Negative, exponent or malformed text is `INVALID_AMOUNT`.
    """
    check_currency(currency, "currency")
    exponent = exponent_of(currency)
    assert exponent is not None
    text = text.strip()
    if not _DECIMAL.match(text) or len(text) > 40:
        raise invalid(field, "INVALID_AMOUNT", f"{field} {text[:40]!r} is not a decimal amount")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already filters
        raise invalid(field, "INVALID_AMOUNT", f"{field} is not a decimal amount") from exc
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise invalid(
            field,
            "TOO_MANY_DECIMALS",
            f"{field} {text!r} has more decimals than {currency} allows ({exponent})",
        )
    minor = int(scaled)
    if minor > INT64_MAX:
        raise invalid(field, "INVALID_AMOUNT", f"{field} is too large")
    return Money(minor, currency)


def format_decimal(money: Money) -> str:
    """Render minor units as a decimal string with the currency's digits (1234 EUR: "12.34")."""
    exponent = exponent_of(money.currency) or 0
    sign = "-" if money.minor_units < 0 else ""
    units = abs(money.minor_units)
    if exponent == 0:
        return f"{sign}{units}"
    whole, frac = divmod(units, 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"

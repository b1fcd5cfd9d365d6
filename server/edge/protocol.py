"""The provider's callback bodies as typed values, and the error codes the edge answers with.

`parse(endpoint, body, integration)` turns the raw (already authenticated) body of a
`/transaction` or `/transaction-rollback` callback into a `Transfer` (bet or result) or a
`Rollback`, or an `EdgeError` naming one of the `Code`s. It never touches the wallet.

Body shapes (the provider's spec, "Transactions" and "Transaction-rollback"):

    /transaction           {"transaction_id", "action": "bet"|"result", "user_id", "currency",
                            "amount"}
    /transaction-rollback  {"transaction_id", "rollback_transaction_id", "action": "rollback",
                            "user_id", "currency", "amount"}

Field rules (ours, documented in docs/sportsbook.md): ids and amounts are JSON strings (JSON
numbers are accepted and read by their exact literal text, never through a float);
`transaction_id` and `rollback_transaction_id` are 1-256 characters without control characters;
`user_id` is the wallet player id (1-128 printable ASCII, no spaces); `currency` is an upper-case
code the integration accepts; `amount` is the canonical exact decimal ("12.50", "12.5", "12",
"0.50") converted exactly to minor units: digits only, no sign, no exponent, no surrounding
whitespace, no leading zero before another digit, a fraction of 1 to the currency's number of
decimals; anything else is `INVALID_AMOUNT`, except more decimals than the currency has, which
is `TOO_MANY_DECIMALS` (never rounded, also for "5.000" EUR). A bet must be more than zero; a
result may be zero (a lost bet's settlement); a rollback's amount is informational (the wallet
reverses the target's recorded amount). Extra fields are ignored (they stay in the stored raw
body). Duplicate keys are `MALFORMED_REQUEST`.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from server.edge.config import Integration
from server.errors import DomainError
from server.money import Money, exponent_of, parse_decimal
from server.validation import check_id

TRANSACTION = "transaction"
ROLLBACK = "transaction-rollback"
MAX_TRANSACTION_ID = 256
# control characters, and lone surrogates (JSON "\ud800" decodes to one; it is not text)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# the canonical exact decimal form: no sign, no leading zero, no exponent, no whitespace
_CANONICAL_AMOUNT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?", re.ASCII)
MAX_AMOUNT_TEXT = 40


class Code(enum.StrEnum):
    """The `error` values of the edge's responses (the provider's codes first, then ours)."""

    # the provider's spec
    INTERNAL_ERROR = "INTERNAL_ERROR"  # anything transient: safe to resend the same callback
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"  # a bet above the available balance
    # ours: the request itself
    UNKNOWN_ENDPOINT = "UNKNOWN_ENDPOINT"  # no integration serves this path
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"  # callbacks are POST
    BODY_TOO_LARGE = "BODY_TOO_LARGE"  # over CROUPIER_EDGE_MAX_BODY_BYTES
    MISSING_SECURITY_HASH = "MISSING_SECURITY_HASH"  # no X-Security-Hash header
    INVALID_SECURITY_HASH = "INVALID_SECURITY_HASH"  # the HMAC does not match the raw body
    MALFORMED_REQUEST = "MALFORMED_REQUEST"  # not a UTF-8 JSON object, or a field missing/mistyped
    INVALID_ACTION = "INVALID_ACTION"  # action not bet/result (or rollback on the rollback path)
    INVALID_TRANSACTION_ID = "INVALID_TRANSACTION_ID"  # empty, too long, control characters
    INVALID_USER_ID = "INVALID_USER_ID"  # not a wallet player id
    UNSUPPORTED_CURRENCY = "UNSUPPORTED_CURRENCY"  # unknown, or not configured for the integration
    INVALID_AMOUNT = "INVALID_AMOUNT"  # not a plain non-negative decimal, zero bet, too large
    TOO_MANY_DECIMALS = "TOO_MANY_DECIMALS"  # more decimals than the currency allows
    # ours: the wallet's answer
    PLAYER_NOT_FOUND = "PLAYER_NOT_FOUND"  # a bet for a player the wallet does not know
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"  # a bet in a currency the player has no account in
    # bets refused (the provider's spec: "when the player is banned")
    PLAYER_BLOCKED = "PLAYER_BLOCKED"
    PLAYER_SELF_EXCLUDED = "PLAYER_SELF_EXCLUDED"  # bets refused (responsible gaming)
    TRANSACTION_ROLLED_BACK = "TRANSACTION_ROLLED_BACK"  # a bet whose rollback came first
    DUPLICATE_TRANSACTION = "DUPLICATE_TRANSACTION"  # transaction_id reused with other content
    ALREADY_ROLLED_BACK = "ALREADY_ROLLED_BACK"  # another rollback already reversed the target
    TRANSACTION_NOT_FOUND = "TRANSACTION_NOT_FOUND"  # the rollback target is another player's
    TRANSACTION_NOT_REVERSIBLE = "TRANSACTION_NOT_REVERSIBLE"  # the target is not a bet/result


class EdgeError(Exception):
    """A refused callback: the `code` answered as `{"error": code}`; `detail` is for logs."""

    def __init__(self, code: Code, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else str(code))
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Transfer:
    """A `/transaction` callback: `bet` debits `amount`, `result` credits it."""

    action: Literal["bet", "result"]
    transaction_id: str
    user_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Rollback:
    """A `/transaction-rollback` callback reversing `rollback_transaction_id`."""

    transaction_id: str
    rollback_transaction_id: str
    user_id: str
    amount: Money


Callback = Transfer | Rollback


@dataclass(frozen=True, slots=True)
class Parsed:
    """What `parse` made of a body: the callback, or the error plus whatever
    `transaction_id` could be read (kept with the stored raw callback)."""

    transaction_id: str | None
    callback: Callback | None = None
    error: EdgeError | None = None


class _Number(str):
    """A JSON number kept as its literal text (never a float)."""

    __slots__ = ()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise EdgeError(Code.MALFORMED_REQUEST, f"duplicate key {k[:32]!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise EdgeError(Code.MALFORMED_REQUEST, f"{name} is not JSON")


def load_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (UTF-8, numbers as text); raises EdgeError MALFORMED_REQUEST."""
    try:
        doc = json.loads(
            body.decode("utf-8"),
            parse_float=_Number,
            parse_int=_Number,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise EdgeError(Code.MALFORMED_REQUEST, f"not a UTF-8 JSON document: {exc}") from exc
    if not isinstance(doc, dict):
        raise EdgeError(Code.MALFORMED_REQUEST, "the body is not a JSON object")
    return doc


def _text(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if value is None:
        raise EdgeError(Code.MALFORMED_REQUEST, f"{name} is missing")
    if not isinstance(value, str):  # _Number is a str; bool, list, object are not
        raise EdgeError(Code.MALFORMED_REQUEST, f"{name} must be a string")
    return str(value)


def _transaction_id(doc: dict[str, Any], name: str) -> str:
    value = _text(doc, name)
    if not value or len(value) > MAX_TRANSACTION_ID or _CONTROL.search(value):
        raise EdgeError(
            Code.INVALID_TRANSACTION_ID,
            f"{name} must be 1-{MAX_TRANSACTION_ID} characters without control characters",
        )
    return value


def _user_id(doc: dict[str, Any]) -> str:
    value = _text(doc, "user_id")
    try:
        return check_id(value, "user_id")
    except DomainError as err:
        raise EdgeError(Code.INVALID_USER_ID, err.message) from err


def _amount(doc: dict[str, Any], integration: Integration, *, positive: bool) -> Money:
    currency = _text(doc, "currency")
    if exponent_of(currency) is None or not integration.accepts_currency(currency):
        raise EdgeError(Code.UNSUPPORTED_CURRENCY, f"currency {currency[:16]!r} not accepted")
    text = _text(doc, "amount")
    if len(text) > MAX_AMOUNT_TEXT or not _CANONICAL_AMOUNT.fullmatch(text):
        raise EdgeError(Code.INVALID_AMOUNT, f"amount {text[:MAX_AMOUNT_TEXT]!r} is not canonical")
    decimals = len(text) - text.index(".") - 1 if "." in text else 0
    if decimals > (exponent_of(currency) or 0):
        raise EdgeError(
            Code.TOO_MANY_DECIMALS, f"amount {text!r} has more decimals than {currency} allows"
        )
    try:
        money = parse_decimal(text, currency)
    except DomainError as err:
        code = Code.TOO_MANY_DECIMALS if err.reason == "TOO_MANY_DECIMALS" else Code.INVALID_AMOUNT
        raise EdgeError(code, err.message) from err
    if positive and money.minor_units == 0:
        raise EdgeError(Code.INVALID_AMOUNT, "a bet amount must be more than zero")
    return money


def _best_effort_id(doc: dict[str, Any]) -> str | None:
    value = doc.get("transaction_id")
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TRANSACTION_ID
        and not _CONTROL.search(value)
    ):
        return str(value)
    return None


def parse(endpoint: str, body: bytes, integration: Integration) -> Parsed:
    """Parse an authenticated callback body for `endpoint` (TRANSACTION or ROLLBACK)."""
    try:
        doc = load_object(body)
    except EdgeError as err:
        return Parsed(None, error=err)
    tid = _best_effort_id(doc)
    try:
        return Parsed(tid, callback=_callback(endpoint, doc, integration))
    except EdgeError as err:
        return Parsed(tid, error=err)


def _callback(endpoint: str, doc: dict[str, Any], integration: Integration) -> Callback:
    tid = _transaction_id(doc, "transaction_id")
    action = _text(doc, "action")
    if endpoint == TRANSACTION:
        if action not in ("bet", "result"):
            raise EdgeError(Code.INVALID_ACTION, "action must be bet or result")
        user = _user_id(doc)
        amount = _amount(doc, integration, positive=action == "bet")
        return Transfer("bet" if action == "bet" else "result", tid, user, amount)
    if action != "rollback":
        raise EdgeError(Code.INVALID_ACTION, "action must be rollback")
    target = _transaction_id(doc, "rollback_transaction_id")
    if target == tid:
        raise EdgeError(Code.INVALID_TRANSACTION_ID, "a rollback cannot target itself")
    user = _user_id(doc)
    return Rollback(tid, target, user, _amount(doc, integration, positive=False))

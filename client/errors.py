"""Typed errors for Croupier clients: one class per gRPC code family and per server reason.

A failed call is turned into one exception at the client boundary (as temporalio's `RPCError`
and google-api-core's `exceptions` do), so callers catch by class and never touch raw gRPC
metadata:

    try:
        wallet.authorize_bet(...)
    except InsufficientFunds:          # FAILED_PRECONDITION / INSUFFICIENT_FUNDS
        ...
    except FailedPrecondition as err:  # any other FAILED_PRECONDITION
        print(err.reason, err.metadata)

`from_rpc_error` decodes the call's `google.rpc.Status` (`server.error_info`)
and its single `google.rpc.ErrorInfo` (domain `croupier`, UPPER_SNAKE_CASE reason), and picks
the reason's class when there is one, else the code family's class. Transport failures that
never reached the server (no ErrorInfo) get the code family's class with an empty reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import grpc
from google.rpc import error_details_pb2

from server.error_info import error_info, status_of

DOMAIN = "croupier"

_BY_CODE: dict[grpc.StatusCode, type[CroupierError]] = {}
_BY_REASON: dict[tuple[grpc.StatusCode, str], type[CroupierError]] = {}


class CroupierError(Exception):
    """A failed Croupier call.

    Attributes: `code` (grpc.StatusCode), `reason` (the ErrorInfo reason, e.g.
    "INSUFFICIENT_FUNDS"; empty when the server sent none), `domain` ("croupier", or empty),
    `message` (a sentence for humans), `metadata` (the ErrorInfo's string pairs).
    """

    CODE: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    REASON: ClassVar[str] = ""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str | None = None,
        domain: str = DOMAIN,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code: grpc.StatusCode = code if code is not None else self.CODE
        self.reason: str = reason if reason is not None else self.REASON
        self.domain = domain
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.attempts = 1  # how many attempts the client made before giving up

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.REASON:
            _BY_REASON[(cls.CODE, cls.REASON)] = cls
        elif cls.CODE not in _BY_CODE:
            _BY_CODE[cls.CODE] = cls

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, metadata={self.metadata!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The error as plain JSON-ready data: code, reason, domain, message, metadata."""
        return {
            "code": self.code.name,
            "reason": self.reason,
            "domain": self.domain,
            "message": self.message,
            "metadata": dict(self.metadata),
        }


# --- code families (one per canonical gRPC status code) -------------------------------------


class Cancelled(CroupierError):
    """CANCELLED: the caller cancelled the call."""

    CODE = grpc.StatusCode.CANCELLED


class Unknown(CroupierError):
    """UNKNOWN: an error the server did not classify."""

    CODE = grpc.StatusCode.UNKNOWN


class InvalidArgument(CroupierError):
    """INVALID_ARGUMENT: the request is malformed; nothing was written.

    `field` is the request field's path the server named (e.g. "amount.minor_units").
    """

    CODE = grpc.StatusCode.INVALID_ARGUMENT

    @property
    def field(self) -> str:
        """The request field's path (ErrorInfo metadata `field`), or empty."""
        return self.metadata.get("field", "")


class DeadlineExceeded(CroupierError):
    """DEADLINE_EXCEEDED: no answer within the deadline (a write may or may not have run;
    retry with the same idempotency key)."""

    CODE = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(CroupierError):
    """NOT_FOUND: the named player, account, bet or transaction does not exist."""

    CODE = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CroupierError):
    """ALREADY_EXISTS: the thing the request would create exists under another key."""

    CODE = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(CroupierError):
    """PERMISSION_DENIED: the caller may not do this (e.g. another tenant's object)."""

    CODE = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(CroupierError):
    """RESOURCE_EXHAUSTED: a limit was hit (e.g. the server's in-flight RPC bound)."""

    CODE = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(CroupierError):
    """FAILED_PRECONDITION: the request is valid but the state refuses it."""

    CODE = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(CroupierError):
    """ABORTED: a concurrency conflict; retry with the same idempotency key."""

    CODE = grpc.StatusCode.ABORTED


class OutOfRange(CroupierError):
    """OUT_OF_RANGE: a value outside the range the operation accepts."""

    CODE = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(CroupierError):
    """UNIMPLEMENTED: the server does not offer this RPC."""

    CODE = grpc.StatusCode.UNIMPLEMENTED


class Internal(CroupierError):
    """INTERNAL: a server bug; safe to retry with the same idempotency key."""

    CODE = grpc.StatusCode.INTERNAL


class Unavailable(CroupierError):
    """UNAVAILABLE: the server or its database is unreachable; retry with the same key."""

    CODE = grpc.StatusCode.UNAVAILABLE


class DataLoss(CroupierError):
    """DATA_LOSS: unrecoverable data loss or corruption."""

    CODE = grpc.StatusCode.DATA_LOSS


class Unauthenticated(CroupierError):
    """UNAUTHENTICATED: the caller's credentials are missing or invalid."""

    CODE = grpc.StatusCode.UNAUTHENTICATED


# --- INVALID_ARGUMENT reasons ----------------------------------------------------------------


class MissingField(InvalidArgument):
    """A required field (named by `field`) is empty."""

    REASON = "MISSING_FIELD"


class InvalidId(InvalidArgument):
    """An id is not 1..128 printable ASCII characters without spaces (or not a UUID)."""

    REASON = "INVALID_ID"


class ReservedIdempotencyKey(InvalidArgument):
    """The idempotency key is in the server's own namespace (`jp-payout-...`, `system-...`);
    choose another key."""

    REASON = "RESERVED_IDEMPOTENCY_KEY"


class InvalidAmount(InvalidArgument):
    """An amount is zero, negative, too large or not a decimal number."""

    REASON = "INVALID_AMOUNT"


class TooManyDecimals(InvalidArgument):
    """A decimal amount has more decimals than its currency allows (never rounded)."""

    REASON = "TOO_MANY_DECIMALS"


class UnknownCurrency(InvalidArgument):
    """The currency is neither ISO 4217 with minor units nor configured on the server."""

    REASON = "UNKNOWN_CURRENCY"


class CurrencyMismatch(InvalidArgument):
    """A settle's capture or win is not in the hold's currency."""

    REASON = "CURRENCY_MISMATCH"


class CaptureExceedsHold(InvalidArgument):
    """A settle would capture more than the hold."""

    REASON = "CAPTURE_EXCEEDS_HOLD"


class AmountOverflow(InvalidArgument):
    """The amount would overflow an int64 balance."""

    REASON = "AMOUNT_OVERFLOW"


class InvalidMetadata(InvalidArgument):
    """Metadata contains NUL characters."""

    REASON = "INVALID_METADATA"


class MetadataTooLarge(InvalidArgument):
    """Metadata has more than 32 entries or over-long keys or values."""

    REASON = "METADATA_TOO_LARGE"


class InvalidText(InvalidArgument):
    """A free-text field (e.g. `reason`) is too long or contains NUL."""

    REASON = "INVALID_TEXT"


class InvalidHoldTtl(InvalidArgument):
    """`hold_ttl` is outside 1 second .. 7 days."""

    REASON = "INVALID_HOLD_TTL"


class InvalidStatus(InvalidArgument):
    """The player status is not ACTIVE, BLOCKED or SELF_EXCLUDED."""

    REASON = "INVALID_STATUS"


class InvalidPageSize(InvalidArgument):
    """`page_size` is negative."""

    REASON = "INVALID_PAGE_SIZE"


class InvalidPageToken(InvalidArgument):
    """`page_token` is malformed or was issued for a different request."""

    REASON = "INVALID_PAGE_TOKEN"


class TargetIsSelf(InvalidArgument):
    """A rollback names its own idempotency key as its target."""

    REASON = "TARGET_IS_SELF"


# --- NOT_FOUND reasons -----------------------------------------------------------------------


class PlayerNotFound(NotFound):
    """The tenant has no such player (a player is opened by its first credit)."""

    REASON = "PLAYER_NOT_FOUND"


class AccountNotFound(NotFound):
    """The player has no account in this currency."""

    REASON = "ACCOUNT_NOT_FOUND"


class BetNotFound(NotFound):
    """No hold for this bet_id and player."""

    REASON = "BET_NOT_FOUND"


class BonusNotFound(NotFound):
    """No such bonus for this tenant and player."""

    REASON = "BONUS_NOT_FOUND"


class BonusActive(FailedPrecondition):
    """A withdrawal while a bonus is active, under the tenant's refuse policy."""

    REASON = "BONUS_ACTIVE"


class BonusAlreadyActive(FailedPrecondition):
    """The player already has an active bonus in this currency."""

    REASON = "BONUS_ALREADY_ACTIVE"


class BonusMaxBetExceeded(FailedPrecondition):
    """A stake above the active bonus's max bet (metadata `max_bet`)."""

    REASON = "BONUS_MAX_BET_EXCEEDED"


class BonusNotActive(FailedPrecondition):
    """The bonus already completed, was forfeited or expired (metadata `state`)."""

    REASON = "BONUS_NOT_ACTIVE"


class TransactionNotFound(NotFound):
    """No such transaction for this tenant and player."""

    REASON = "TRANSACTION_NOT_FOUND"


# --- ALREADY_EXISTS reasons ------------------------------------------------------------------


class IdempotencyKeyReused(AlreadyExists):
    """The idempotency key was used before for a different request."""

    REASON = "IDEMPOTENCY_KEY_REUSED"


class BetAlreadyExists(AlreadyExists):
    """This bet_id already has a hold under another idempotency key."""

    REASON = "BET_ALREADY_EXISTS"


# --- FAILED_PRECONDITION reasons -------------------------------------------------------------


class InsufficientFunds(FailedPrecondition):
    """The available balance is lower than the bet or debit."""

    REASON = "INSUFFICIENT_FUNDS"


class PlayerBlocked(FailedPrecondition):
    """The player is blocked: bets and debits are refused (credits are not)."""

    REASON = "PLAYER_BLOCKED"


class PlayerSelfExcluded(FailedPrecondition):
    """The player is self-excluded: bets and debits are refused (credits are not)."""

    REASON = "PLAYER_SELF_EXCLUDED"


class BetCancelled(FailedPrecondition):
    """A cancel for this bet arrived first (tombstone); the bet is refused."""

    REASON = "BET_CANCELLED"


class HoldNotOpen(FailedPrecondition):
    """The hold was already settled, cancelled or expired (see `state`)."""

    REASON = "HOLD_NOT_OPEN"

    @property
    def state(self) -> str:
        """The hold's state: "settled", "cancelled" or "expired" (metadata `state`)."""
        return self.metadata.get("state", "")


class HoldExpired(FailedPrecondition):
    """The hold expired and is being voided by the server."""

    REASON = "HOLD_EXPIRED"


class TransactionRolledBack(FailedPrecondition):
    """A rollback for this idempotency key arrived first; the request is refused."""

    REASON = "TRANSACTION_ROLLED_BACK"


class TransactionAlreadyRolledBack(FailedPrecondition):
    """The target transaction (or key) was already rolled back."""

    REASON = "TRANSACTION_ALREADY_ROLLED_BACK"


class TransactionNotReversible(FailedPrecondition):
    """Only a Debit or Credit can be rolled back (use CancelBet for a hold)."""

    REASON = "TRANSACTION_NOT_REVERSIBLE"


# --- player protection (docs/responsible-gaming.md, docs/aml-review.md) -------------------------


class _LimitExceeded(FailedPrecondition):
    """A bet, stake debit or deposit would pass one of the player's limits."""

    @property
    def limit(self) -> int:
        """The limit in minor units (metadata `limit`)."""
        return int(self.metadata.get("limit", "0"))

    @property
    def window(self) -> str:
        """The window: "day", "week" or "month" (metadata `window`)."""
        return self.metadata.get("window", "")

    @property
    def remaining(self) -> int:
        """What the window still allows, in minor units (metadata `remaining`)."""
        return int(self.metadata.get("remaining", "0"))


class DepositLimitExceeded(_LimitExceeded):
    """A deposit would pass the player's deposit limit."""

    REASON = "DEPOSIT_LIMIT_EXCEEDED"


class LossLimitExceeded(_LimitExceeded):
    """A stake would pass the player's loss limit (stakes minus wins)."""

    REASON = "LOSS_LIMIT_EXCEEDED"


class WagerLimitExceeded(_LimitExceeded):
    """A stake would pass the player's wager limit (stakes)."""

    REASON = "WAGER_LIMIT_EXCEEDED"


class PlayerCoolingOff(FailedPrecondition):
    """The player is in a cooling-off period (metadata `until`): no bets, no deposits."""

    REASON = "PLAYER_COOLING_OFF"


class AccountClosed(FailedPrecondition):
    """The account is closed: no bets, no deposits; withdrawals allowed."""

    REASON = "ACCOUNT_CLOSED"


class ExclusionCannotBeShortened(FailedPrecondition):
    """An exclusion in force can only be extended."""

    REASON = "EXCLUSION_CANNOT_BE_SHORTENED"


class PayoutUnderReview(FailedPrecondition):
    """A payout credit above the AML threshold waits for an admin (metadata `review_id`)."""

    REASON = "PAYOUT_UNDER_REVIEW"


class LimitNotFound(NotFound):
    """The player has no such limit."""

    REASON = "LIMIT_NOT_FOUND"


class ExclusionNotFound(NotFound):
    """The player was never excluded."""

    REASON = "EXCLUSION_NOT_FOUND"


class CurrencyNotHeld(InvalidArgument):
    """A limit in a currency the player holds no account in."""

    REASON = "CURRENCY_NOT_HELD"


class EndTimeInPast(InvalidArgument):
    """An exclusion's end_time is not in the future."""

    REASON = "END_TIME_IN_PAST"


class UnknownTimeZone(InvalidArgument):
    """Not an IANA time zone name."""

    REASON = "UNKNOWN_TIME_ZONE"


# --- authentication reasons (server.auth) --------------------------------------------------


class MissingApiKey(Unauthenticated):
    """The server requires an API key and the call carried none (pass `api_key`)."""

    REASON = "MISSING_API_KEY"


class InvalidApiKey(Unauthenticated):
    """The API key is missing, malformed, unknown or revoked."""

    REASON = "INVALID_API_KEY"


class MissingScope(PermissionDenied):
    """The API key lacks the scope the method needs (see `scope`)."""

    REASON = "MISSING_SCOPE"

    @property
    def scope(self) -> str:
        """The scope the method needs, e.g. "wallet:write" (metadata `scope`)."""
        return self.metadata.get("scope", "")


class WrongTenant(PermissionDenied):
    """The API key belongs to another tenant than the request's `tenant_id`."""

    REASON = "WRONG_TENANT"


# --- other reasons ---------------------------------------------------------------------------


class DatabaseUnavailable(Unavailable):
    """The ledger database is unreachable; retry with the same idempotency key."""

    REASON = "DATABASE_UNAVAILABLE"


class InternalError(Internal):
    """The server's generic INTERNAL reason (no details are ever sent)."""

    REASON = "INTERNAL"


def error_class(code: grpc.StatusCode, reason: str = "") -> type[CroupierError]:
    """The most specific class for `code` and `reason` (the code family's for an unknown
    reason, CroupierError for a code with no family)."""
    return _BY_REASON.get((code, reason)) or _BY_CODE.get(code, CroupierError)


def known_reasons() -> dict[str, type[CroupierError]]:
    """Every reason this client has a class for, e.g. {"INSUFFICIENT_FUNDS": InsufficientFunds}."""
    return {reason: cls for (_, reason), cls in _BY_REASON.items()}


def _error_info(call: Any) -> tuple[str, error_details_pb2.ErrorInfo | None]:
    """The Status message and the single ErrorInfo of a failed call, when it carries one."""
    status = status_of(call)
    if status is None:
        return "", None
    return str(status.message), error_info(status)


def from_rpc_error(exc: grpc.RpcError) -> CroupierError:
    """Turn a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`) into the most
    specific CroupierError, with the decoded ErrorInfo's reason, domain and metadata.

    The original exception is kept as `__cause__` when the result is raised `from exc`.
    """
    code_of = getattr(exc, "code", None)
    code: grpc.StatusCode = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details_of = getattr(exc, "details", None)
    details = (details_of() if callable(details_of) else None) or str(exc)
    message, info = _error_info(exc)
    if info is None:
        return error_class(code)(message or details, code=code, reason="", domain="")
    cls = error_class(code, info.reason)
    return cls(
        message or details,
        code=code,
        reason=info.reason,
        domain=info.domain,
        metadata=dict(info.metadata),
    )

"""One function per WalletService RPC: keyword arguments in, a `Call` out.

A `Call` is what the sync and the async clients send: the RPC's name, the request proto, and
whether it is a write (a write is retried on DEADLINE_EXCEEDED as well, with the same
idempotency key). Both clients expose these functions as methods with the same keywords, so
the request building lives here once.

Amounts are `croupier.common.v1.Money` protos or `(minor_units, currency)` pairs of an int and
an ISO 4217 code, e.g. `(1250, "EUR")` for EUR 12.50. Floats are refused (money is never a
float). Write calls generate an idempotency key (a uuid4) when none is given; to retry a
write yourself, pass the key of the first attempt.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Required, TypedDict, TypeVar, Unpack, cast

from croupier.common.v1 import account_pb2, money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from google.protobuf import duration_pb2
from google.protobuf.message import Message

R = TypeVar("R", bound=Message)

Amount = money_pb2.Money | tuple[int, str]
Status = int | str
Metadata = Mapping[str, str] | None


@dataclass(frozen=True)
class Call(Generic[R]):
    """One RPC to send: `method` (e.g. "Credit"), `request`, `response_type`, `write` (retry
    DEADLINE_EXCEEDED too), `timeout` (seconds per attempt; None: the client's default)."""

    method: str
    request: Message
    response_type: type[R]
    write: bool
    timeout: float | None = None


def new_idempotency_key() -> str:
    """A fresh idempotency key (a uuid4, 36 printable ASCII characters)."""
    return str(uuid.uuid4())


def to_money(amount: Amount) -> money_pb2.Money:
    """A Money proto from a Money proto or a `(minor_units, currency)` pair.

    Raises TypeError for a float or bool amount (minor units are integers).
    """
    if isinstance(amount, money_pb2.Money):
        return amount
    minor_units, currency = amount
    if isinstance(minor_units, bool) or not isinstance(minor_units, int):
        raise TypeError(f"minor_units must be an int, got {type(minor_units).__name__}")
    return money_pb2.Money(minor_units=minor_units, currency=currency)


def to_status(status: Status) -> account_pb2.PlayerStatus.ValueType:
    """A PlayerStatus from its enum value (an int) or a name: "blocked", "BLOCKED",
    "PLAYER_STATUS_BLOCKED", "self_excluded", "active". Raises ValueError for another name."""
    if isinstance(status, str):
        name = status.strip().upper().replace("-", "_")
        if not name.startswith("PLAYER_STATUS_"):
            name = "PLAYER_STATUS_" + name
        return account_pb2.PlayerStatus.Value(name)
    return cast(account_pb2.PlayerStatus.ValueType, status)


def to_duration(seconds: float | dt.timedelta) -> duration_pb2.Duration:
    """A Duration proto from seconds or a timedelta."""
    d = duration_pb2.Duration()
    if isinstance(seconds, dt.timedelta):
        d.FromTimedelta(seconds)
    else:
        d.FromNanoseconds(round(seconds * 1_000_000_000))
    return d


def _write(
    method: str,
    response_type: type[R],
    request: Message,
    idempotency_key: str | None,
    timeout: float | None,
) -> Call[R]:
    request.idempotency_key = idempotency_key or new_idempotency_key()  # type: ignore[attr-defined]
    return Call(method, request, response_type, True, timeout)


def _ref(*, bet_id: str, round_id: str, game_id: str, metadata: Metadata) -> dict[str, Any]:
    """The round reference and metadata fields shared by bet and transfer requests."""
    return {
        "bet_id": bet_id,
        "round_id": round_id,
        "game_id": game_id,
        "metadata": dict(metadata or {}),
    }


def get_balance(
    *, tenant_id: str, player_id: str, currency: str = "", timeout: float | None = None
) -> Call[pb.GetBalanceResponse]:
    """GetBalance: the player's status and balances (available, held; minor units) per
    currency, or only `currency`. Raises PlayerNotFound."""
    request = pb.GetBalanceRequest(tenant_id=tenant_id, player_id=player_id, currency=currency)
    return Call("GetBalance", request, pb.GetBalanceResponse, False, timeout)


def authorize_bet(
    *,
    tenant_id: str,
    player_id: str,
    bet_id: str,
    amount: Amount,
    round_id: str = "",
    game_id: str = "",
    hold_ttl: float | dt.timedelta | None = None,
    metadata: Metadata = None,
    idempotency_key: str | None = None,
    timeout: float | None = None,
) -> Call[pb.AuthorizeBetResponse]:
    """AuthorizeBet: hold `amount` for `bet_id` for `hold_ttl` seconds (server default 1 h).

    Raises InsufficientFunds, PlayerBlocked, PlayerSelfExcluded, BetCancelled,
    BetAlreadyExists, PlayerNotFound, AccountNotFound, InvalidArgument subclasses,
    IdempotencyKeyReused.
    """
    request = pb.AuthorizeBetRequest(
        tenant_id=tenant_id,
        player_id=player_id,
        amount=to_money(amount),
        **_ref(bet_id=bet_id, round_id=round_id, game_id=game_id, metadata=metadata),
    )
    if hold_ttl is not None:
        request.hold_ttl.CopyFrom(to_duration(hold_ttl))
    return _write("AuthorizeBet", pb.AuthorizeBetResponse, request, idempotency_key, timeout)


def settle_bet(
    *,
    tenant_id: str,
    player_id: str,
    bet_id: str,
    capture: Amount | None = None,
    win: Amount | None = None,
    round_id: str = "",
    game_id: str = "",
    metadata: Metadata = None,
    idempotency_key: str | None = None,
    timeout: float | None = None,
) -> Call[pb.SettleBetResponse]:
    """SettleBet: capture `capture` of the hold (None: all of it) and credit `win` (None: 0).

    Raises BetNotFound, HoldNotOpen, HoldExpired, CaptureExceedsHold, CurrencyMismatch,
    IdempotencyKeyReused.
    """
    request = pb.SettleBetRequest(
        tenant_id=tenant_id,
        player_id=player_id,
        **_ref(bet_id=bet_id, round_id=round_id, game_id=game_id, metadata=metadata),
    )
    if capture is not None:
        request.capture.CopyFrom(to_money(capture))
    if win is not None:
        request.win.CopyFrom(to_money(win))
    return _write("SettleBet", pb.SettleBetResponse, request, idempotency_key, timeout)


def cancel_bet(
    *,
    tenant_id: str,
    player_id: str,
    bet_id: str,
    round_id: str = "",
    game_id: str = "",
    reason: str = "",
    metadata: Metadata = None,
    idempotency_key: str | None = None,
    timeout: float | None = None,
) -> Call[pb.CancelBetResponse]:
    """CancelBet: void the hold of `bet_id` (or record a tombstone for an unseen bet).

    Raises HoldNotOpen, IdempotencyKeyReused.
    """
    ref = _ref(bet_id=bet_id, round_id=round_id, game_id=game_id, metadata=metadata)
    request = pb.CancelBetRequest(tenant_id=tenant_id, player_id=player_id, reason=reason, **ref)
    return _write("CancelBet", pb.CancelBetResponse, request, idempotency_key, timeout)


class TransferArgs(TypedDict, total=False):
    """The keyword arguments of `credit` and `debit`."""

    tenant_id: Required[str]
    player_id: Required[str]
    amount: Required[Amount]
    bet_id: str
    round_id: str
    game_id: str
    metadata: Metadata
    idempotency_key: str | None
    timeout: float | None


def _transfer(
    method: str,
    request_type: type[pb.CreditRequest | pb.DebitRequest],
    response_type: type[R],
    args: TransferArgs,
) -> Call[R]:
    if unknown := set(args) - set(TransferArgs.__annotations__):
        raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
    ref = _ref(
        bet_id=args.get("bet_id", ""),
        round_id=args.get("round_id", ""),
        game_id=args.get("game_id", ""),
        metadata=args.get("metadata"),
    )
    request = request_type(
        tenant_id=args["tenant_id"],
        player_id=args["player_id"],
        amount=to_money(args["amount"]),
        **ref,
    )
    return _write(method, response_type, request, args.get("idempotency_key"), args.get("timeout"))


def credit(**args: Unpack[TransferArgs]) -> Call[pb.CreditResponse]:
    """Credit: add `amount` to the available balance (opens the player on first credit).

    Keywords: tenant_id, player_id, amount (required); bet_id, round_id, game_id, metadata,
    idempotency_key, timeout. Always succeeds for a valid request; raises InvalidArgument
    subclasses, IdempotencyKeyReused.
    """
    return _transfer("Credit", pb.CreditRequest, pb.CreditResponse, args)


def debit(**args: Unpack[TransferArgs]) -> Call[pb.DebitResponse]:
    """Debit: take `amount` from the available balance (keywords as `credit`).

    Raises InsufficientFunds, PlayerBlocked, PlayerSelfExcluded, TransactionRolledBack,
    PlayerNotFound, AccountNotFound, IdempotencyKeyReused.
    """
    return _transfer("Debit", pb.DebitRequest, pb.DebitResponse, args)


def rollback_transaction(
    *,
    tenant_id: str,
    player_id: str,
    target_idempotency_key: str | None = None,
    target_transaction_id: str | None = None,
    metadata: Metadata = None,
    idempotency_key: str | None = None,
    timeout: float | None = None,
) -> Call[pb.RollbackTransactionResponse]:
    """RollbackTransaction: reverse the Debit or Credit named by exactly one of
    `target_idempotency_key` or `target_transaction_id` (an unseen key is tombstoned).

    Raises ValueError unless exactly one target is given; TransactionNotFound,
    TransactionNotReversible, TransactionAlreadyRolledBack, InsufficientFunds,
    IdempotencyKeyReused.
    """
    if (target_idempotency_key is None) == (target_transaction_id is None):
        raise ValueError("give exactly one of target_idempotency_key or target_transaction_id")
    request = pb.RollbackTransactionRequest(
        tenant_id=tenant_id, player_id=player_id, metadata=dict(metadata or {})
    )
    if target_idempotency_key is not None:
        request.target_idempotency_key = target_idempotency_key
    else:
        request.target_transaction_id = str(target_transaction_id)
    return _write(
        "RollbackTransaction", pb.RollbackTransactionResponse, request, idempotency_key, timeout
    )


def set_player_status(
    *,
    tenant_id: str,
    player_id: str,
    status: Status,
    reason: str = "",
    idempotency_key: str | None = None,
    timeout: float | None = None,
) -> Call[pb.SetPlayerStatusResponse]:
    """SetPlayerStatus: active, blocked or self_excluded (opens an unknown player).

    Raises ValueError for an unknown status name; InvalidStatus, IdempotencyKeyReused.
    """
    request = pb.SetPlayerStatusRequest(
        tenant_id=tenant_id, player_id=player_id, status=to_status(status), reason=reason
    )
    return _write("SetPlayerStatus", pb.SetPlayerStatusResponse, request, idempotency_key, timeout)


def get_transaction(
    *, tenant_id: str, transaction_id: str, timeout: float | None = None
) -> Call[pb.GetTransactionResponse]:
    """GetTransaction: one ledger transaction with its postings. Raises TransactionNotFound."""
    request = pb.GetTransactionRequest(tenant_id=tenant_id, transaction_id=transaction_id)
    return Call("GetTransaction", request, pb.GetTransactionResponse, False, timeout)


def list_transactions(
    *,
    tenant_id: str,
    player_id: str,
    currency: str = "",
    page_size: int = 0,
    page_token: str = "",
    timeout: float | None = None,
) -> Call[pb.ListTransactionsResponse]:
    """ListTransactions: one page of the player's transactions, newest first (AIP-158;
    `page_size` 0 means the server's default of 50). Raises InvalidPageToken."""
    request = pb.ListTransactionsRequest(
        tenant_id=tenant_id,
        player_id=player_id,
        currency=currency,
        page_size=page_size,
        page_token=page_token,
    )
    return Call("ListTransactions", request, pb.ListTransactionsResponse, False, timeout)

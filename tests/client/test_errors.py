"""Every client error class, reached by real calls to the real server (issue 2 item 8)."""

from __future__ import annotations

import ast
import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from client import errors as e
from client.wallet import AsyncWalletClient
from server.money import INT64_MAX

ROOT = Path(__file__).resolve().parents[2]
# the code behind WalletService and the modules every service shares; other services' reasons
# (jackpot, edge, ...) reach the client as their code family's class with `.reason` set
WALLET_SOURCES = (
    "server/wallet",
    "server/transport/wallet_servicer.py",
    "server/transport/guard.py",
    "server/transport/status.py",
    "server/idempotency.py",
    "server/money.py",
    "server/errors.py",
    "server/auth.py",
    "server/transport/interceptor.py",
)
# the functions through which server code raises a reason (first string argument in caps)
_RAISERS = {"DomainError", "invalid", "_precondition", "_not_found"}


def _server_reasons() -> set[str]:
    """Every reason string the wallet server raises, read from its source (AST, not grep)."""
    found: set[str] = set()
    paths = [p for src in WALLET_SOURCES for p in sorted((ROOT / src).glob("**/*.py"))]
    paths += [ROOT / src for src in WALLET_SOURCES if src.endswith(".py")]
    paths = [p for p in paths if p.is_file()]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in _RAISERS:
                continue
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if arg.value.isupper() and " " not in arg.value:
                        found.add(arg.value)
    return found


def test_every_server_reason_has_a_class() -> None:
    reasons = _server_reasons()
    assert {"INSUFFICIENT_FUNDS", "IDEMPOTENCY_KEY_REUSED", "TOO_MANY_DECIMALS"} <= reasons
    missing = reasons - set(e.known_reasons())
    assert not missing, f"reasons without a client error class: {sorted(missing)}"


def test_reason_classes_subclass_their_code_family() -> None:
    for reason, cls in e.known_reasons().items():
        family = e.error_class(cls.CODE)
        assert family is not e.CroupierError and issubclass(cls, family), reason
        assert e.error_class(cls.CODE, reason) is cls
    assert e.error_class(grpc.StatusCode.NOT_FOUND, "SOMETHING_NEW") is e.NotFound


async def _funded(w: AsyncWalletClient, tenant: str, player: str, minor: int = 1_000) -> None:
    await w.credit(tenant_id=tenant, player_id=player, amount=(minor, "EUR"))


async def test_insufficient_funds(wallet_client: AsyncWalletClient, tenant: str) -> None:
    await _funded(wallet_client, tenant, "p")
    with pytest.raises(e.InsufficientFunds) as info:
        await wallet_client.authorize_bet(
            tenant_id=tenant, player_id="p", bet_id="b", amount=(1_001, "EUR")
        )
    err = info.value
    assert isinstance(err, e.FailedPrecondition) and isinstance(err, e.CroupierError)
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert (err.reason, err.domain) == ("INSUFFICIENT_FUNDS", "croupier")
    assert err.message and err.attempts == 1
    assert isinstance(err.__cause__, grpc.aio.AioRpcError)
    assert err.to_dict()["code"] == "FAILED_PRECONDITION"
    with pytest.raises(e.InsufficientFunds):
        await wallet_client.debit(tenant_id=tenant, player_id="p", amount=(1_001, "EUR"))


async def test_idempotency_key_reused(wallet_client: AsyncWalletClient, tenant: str) -> None:
    k = "reused-key"
    first = await wallet_client.credit(
        tenant_id=tenant, player_id="p", amount=(100, "EUR"), idempotency_key=k
    )
    again = await wallet_client.credit(
        tenant_id=tenant, player_id="p", amount=(100, "EUR"), idempotency_key=k
    )
    assert again == first  # the replay: the original response, no new effect
    with pytest.raises(e.IdempotencyKeyReused) as info:
        await wallet_client.credit(
            tenant_id=tenant, player_id="p", amount=(200, "EUR"), idempotency_key=k
        )
    assert isinstance(info.value, e.AlreadyExists)
    assert info.value.code == grpc.StatusCode.ALREADY_EXISTS


async def test_not_found_family(wallet_client: AsyncWalletClient, tenant: str) -> None:
    with pytest.raises(e.PlayerNotFound):
        await wallet_client.get_balance(tenant_id=tenant, player_id="nobody")
    with pytest.raises(e.PlayerNotFound):
        await wallet_client.authorize_bet(
            tenant_id=tenant, player_id="nobody", bet_id="b", amount=(1, "EUR")
        )
    await _funded(wallet_client, tenant, "p")
    with pytest.raises(e.AccountNotFound) as info:
        await wallet_client.authorize_bet(
            tenant_id=tenant, player_id="p", bet_id="b", amount=(1, "USD")
        )
    assert isinstance(info.value, e.NotFound)
    with pytest.raises(e.BetNotFound):
        await wallet_client.settle_bet(tenant_id=tenant, player_id="p", bet_id="never")
    with pytest.raises(e.TransactionNotFound):
        await wallet_client.get_transaction(tenant_id=tenant, transaction_id=str(uuid.uuid4()))
    with pytest.raises(e.TransactionNotFound):
        await wallet_client.rollback_transaction(
            tenant_id=tenant, player_id="p", target_transaction_id=str(uuid.uuid4())
        )


@pytest.mark.parametrize(
    ("status", "cls"),
    [("blocked", e.PlayerBlocked), ("self_excluded", e.PlayerSelfExcluded)],
)
async def test_player_status_refusals(
    wallet_client: AsyncWalletClient, tenant: str, status: str, cls: type[e.CroupierError]
) -> None:
    await _funded(wallet_client, tenant, "p")
    await wallet_client.set_player_status(tenant_id=tenant, player_id="p", status=status)
    with pytest.raises(cls):
        await wallet_client.authorize_bet(
            tenant_id=tenant, player_id="p", bet_id="b", amount=(1, "EUR")
        )
    with pytest.raises(cls) as info:
        await wallet_client.debit(tenant_id=tenant, player_id="p", amount=(1, "EUR"))
    assert isinstance(info.value, e.FailedPrecondition)
    # a credit owed to the player still goes through
    await wallet_client.credit(tenant_id=tenant, player_id="p", amount=(1, "EUR"))


async def test_bet_and_hold_refusals(wallet_client: AsyncWalletClient, tenant: str) -> None:
    w = wallet_client
    await _funded(w, tenant, "p")
    await w.authorize_bet(tenant_id=tenant, player_id="p", bet_id="b1", amount=(100, "EUR"))
    with pytest.raises(e.BetAlreadyExists) as exists:
        await w.authorize_bet(tenant_id=tenant, player_id="p", bet_id="b1", amount=(100, "EUR"))
    assert isinstance(exists.value, e.AlreadyExists)
    with pytest.raises(e.CaptureExceedsHold) as over:
        await w.settle_bet(tenant_id=tenant, player_id="p", bet_id="b1", capture=(101, "EUR"))
    assert isinstance(over.value, e.InvalidArgument)
    assert over.value.field == "capture.minor_units"
    with pytest.raises(e.CurrencyMismatch) as mismatch:
        await w.settle_bet(tenant_id=tenant, player_id="p", bet_id="b1", win=(5, "USD"))
    assert mismatch.value.field == "win.currency"
    await w.settle_bet(tenant_id=tenant, player_id="p", bet_id="b1", win=(0, "EUR"))
    with pytest.raises(e.HoldNotOpen) as not_open:
        await w.settle_bet(tenant_id=tenant, player_id="p", bet_id="b1")
    assert not_open.value.state == "settled"
    with pytest.raises(e.HoldNotOpen):
        await w.cancel_bet(tenant_id=tenant, player_id="p", bet_id="b1")
    # a cancel that arrives before its bet is a tombstone; the bet is then refused
    await w.cancel_bet(tenant_id=tenant, player_id="p", bet_id="b2")
    with pytest.raises(e.BetCancelled):
        await w.authorize_bet(tenant_id=tenant, player_id="p", bet_id="b2", amount=(1, "EUR"))


async def test_expired_hold(wallet_client: AsyncWalletClient, tenant: str) -> None:
    w = wallet_client
    await _funded(w, tenant, "p")
    await w.authorize_bet(
        tenant_id=tenant, player_id="p", bet_id="b", amount=(100, "EUR"), hold_ttl=1
    )
    await asyncio.sleep(1.2)
    # the server refuses it as expired, or (once its sweeper ran) as a hold no longer open
    with pytest.raises((e.HoldExpired, e.HoldNotOpen)) as info:
        await w.settle_bet(tenant_id=tenant, player_id="p", bet_id="b")
    if isinstance(info.value, e.HoldNotOpen):
        assert info.value.state == "expired"


async def test_rollback_refusals(wallet_client: AsyncWalletClient, tenant: str) -> None:
    w = wallet_client
    await _funded(w, tenant, "p", 10_000)
    # rollback first: a tombstone, then the debit it names is refused (seed 001)
    await w.rollback_transaction(tenant_id=tenant, player_id="p", target_idempotency_key="d1")
    with pytest.raises(e.TransactionRolledBack):
        await w.debit(tenant_id=tenant, player_id="p", amount=(5, "EUR"), idempotency_key="d1")
    with pytest.raises(e.TransactionAlreadyRolledBack):
        await w.rollback_transaction(tenant_id=tenant, player_id="p", target_idempotency_key="d1")
    await w.debit(tenant_id=tenant, player_id="p", amount=(5, "EUR"), idempotency_key="d2")
    await w.rollback_transaction(tenant_id=tenant, player_id="p", target_idempotency_key="d2")
    with pytest.raises(e.TransactionAlreadyRolledBack):
        await w.rollback_transaction(tenant_id=tenant, player_id="p", target_idempotency_key="d2")
    await w.authorize_bet(
        tenant_id=tenant, player_id="p", bet_id="b", amount=(5, "EUR"), idempotency_key="a1"
    )
    with pytest.raises(e.TransactionNotReversible) as info:
        await w.rollback_transaction(tenant_id=tenant, player_id="p", target_idempotency_key="a1")
    assert isinstance(info.value, e.FailedPrecondition)


async def test_invalid_argument_names_the_field(
    wallet_client: AsyncWalletClient, tenant: str
) -> None:
    w = wallet_client
    cases: list[tuple[type[e.InvalidArgument], str, Callable[[], Awaitable[object]]]] = [
        (
            e.InvalidAmount,
            "amount.minor_units",
            lambda: w.credit(tenant_id=tenant, player_id="p", amount=(0, "EUR")),
        ),
        (
            e.UnknownCurrency,
            "amount.currency",
            lambda: w.credit(tenant_id=tenant, player_id="p", amount=(1, "ZZZ")),
        ),
        (
            e.MissingField,
            "player_id",
            lambda: w.credit(tenant_id=tenant, player_id="", amount=(1, "EUR")),
        ),
        (
            e.InvalidId,
            "player_id",
            lambda: w.credit(tenant_id=tenant, player_id="has space", amount=(1, "EUR")),
        ),
        (
            e.MetadataTooLarge,
            "metadata",
            lambda: w.credit(
                tenant_id=tenant,
                player_id="p",
                amount=(1, "EUR"),
                metadata={str(i): "v" for i in range(33)},
            ),
        ),
        (
            e.InvalidMetadata,
            "metadata",
            lambda: w.credit(
                tenant_id=tenant, player_id="p", amount=(1, "EUR"), metadata={"k": "a\0b"}
            ),
        ),
        (
            e.InvalidHoldTtl,
            "hold_ttl",
            lambda: w.authorize_bet(
                tenant_id=tenant, player_id="p", bet_id="b", amount=(1, "EUR"), hold_ttl=8 * 86400
            ),
        ),
        (
            e.InvalidText,
            "reason",
            lambda: w.cancel_bet(tenant_id=tenant, player_id="p", bet_id="b", reason="x" * 513),
        ),
        (
            e.InvalidStatus,
            "status",
            lambda: w.set_player_status(tenant_id=tenant, player_id="p", status=0),
        ),
        (
            e.InvalidPageSize,
            "page_size",
            lambda: w.list_transactions(tenant_id=tenant, player_id="p", page_size=-1),
        ),
        (
            e.InvalidPageToken,
            "page_token",
            lambda: w.list_transactions(tenant_id=tenant, player_id="p", page_token="garbage"),
        ),
        (
            e.TargetIsSelf,
            "target_idempotency_key",
            lambda: w.rollback_transaction(
                tenant_id=tenant, player_id="p", target_idempotency_key="me", idempotency_key="me"
            ),
        ),
        (
            e.InvalidId,
            "transaction_id",
            lambda: w.get_transaction(tenant_id=tenant, transaction_id="not-a-uuid"),
        ),
    ]
    for cls, field, call in cases:
        with pytest.raises(cls) as info:
            await call()
        assert isinstance(info.value, e.InvalidArgument)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.field == field, (cls, info.value)
    with pytest.raises(e.PlayerNotFound):  # nothing was written by any of them
        await w.get_balance(tenant_id=tenant, player_id="p")


async def test_amount_overflow(wallet_client: AsyncWalletClient, tenant: str) -> None:
    await wallet_client.credit(tenant_id=tenant, player_id="p", amount=(INT64_MAX, "EUR"))
    with pytest.raises(e.AmountOverflow) as info:
        await wallet_client.credit(tenant_id=tenant, player_id="p", amount=(1, "EUR"))
    assert info.value.field == "amount.minor_units"
    # take the money back out so the house side of the ledger stays within int64 for others
    await wallet_client.debit(tenant_id=tenant, player_id="p", amount=(INT64_MAX, "EUR"))


def test_floats_are_refused_before_sending() -> None:
    from client.wallet_calls import credit

    with pytest.raises(TypeError):
        credit(tenant_id="t", player_id="p", amount=(1.5, "EUR"))  # type: ignore[arg-type]

"""Bad input is INVALID_ARGUMENT naming the field, and writes nothing (rule 3)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from croupier.common.v1 import money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2

from tests.rpc import error_info, eur, key

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("Credit", {"amount": eur(0)}, "amount.minor_units", "INVALID_AMOUNT"),
    ("Credit", {"amount": eur(-5)}, "amount.minor_units", "INVALID_AMOUNT"),
    ("Credit", {"amount": eur(5, "XXX")}, "amount.currency", "UNKNOWN_CURRENCY"),
    ("Credit", {"amount": eur(5, "eur")}, "amount.currency", "UNKNOWN_CURRENCY"),
    ("Credit", {"amount": money_pb2.Money(minor_units=5)}, "amount.currency", "MISSING_FIELD"),
    ("Credit", {"amount": eur(5), "player_id": ""}, "player_id", "MISSING_FIELD"),
    ("Credit", {"amount": eur(5), "tenant_id": ""}, "tenant_id", "MISSING_FIELD"),
    ("Credit", {"amount": eur(5), "idempotency_key": ""}, "idempotency_key", "MISSING_FIELD"),
    ("Credit", {"amount": eur(5), "idempotency_key": "x" * 129}, "idempotency_key", "INVALID_ID"),
    ("Credit", {"amount": eur(5), "player_id": "has space"}, "player_id", "INVALID_ID"),
    (
        "Credit",
        {"amount": eur(5), "metadata": {f"k{i}": "v" for i in range(40)}},
        "metadata",
        "METADATA_TOO_LARGE",
    ),
    ("AuthorizeBet", {"amount": eur(5)}, "bet_id", "MISSING_FIELD"),
    (
        "AuthorizeBet",
        {"amount": eur(5), "bet_id": "b", "hold_ttl": duration_pb2.Duration(seconds=8 * 86400)},
        "hold_ttl",
        "INVALID_HOLD_TTL",
    ),
    (
        "Debit",
        {"amount": eur(2**62, "EUR"), "idempotency_key": "é"},
        "idempotency_key",
        "INVALID_ID",
    ),
    ("SettleBet", {"bet_id": "b", "win": eur(-1)}, "win.minor_units", "INVALID_AMOUNT"),
    ("RollbackTransaction", {}, "target", "MISSING_FIELD"),
    (
        "RollbackTransaction",
        {"target_transaction_id": "nope"},
        "target_transaction_id",
        "INVALID_ID",
    ),
]


@pytest.mark.parametrize(("method", "fields", "field", "reason"), CASES)
async def test_invalid_argument_names_field_and_writes_nothing(
    wallet: WalletServiceStub,
    tenant: str,
    method: str,
    fields: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    base: dict[str, Any] = {"tenant_id": tenant, "player_id": "p", "idempotency_key": key()}
    base.update(fields)
    request_type = getattr(pb, f"{method}Request")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(wallet, method)(request_type(**base))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(err.value)
    assert (info.reason, info.metadata["field"]) == (reason, field)
    with pytest.raises(grpc.aio.AioRpcError) as nf:
        await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant or "t", player_id="p"))
    assert nf.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


async def test_invalid_key_is_not_stored(wallet: WalletServiceStub, tenant: str) -> None:
    """A rejected request does not burn its idempotency key."""
    k = key()
    with pytest.raises(grpc.aio.AioRpcError):
        await wallet.Credit(
            pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=k, amount=eur(0))
        )
    r = await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=k, amount=eur(3))
    )
    assert r.balance.available.minor_units == 3


async def test_balance_overflow_is_refused(wallet: WalletServiceStub, tenant: str) -> None:
    big = 2**63 - 1
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(big))
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await wallet.Credit(
            pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1))
        )
    assert error_info(err.value).reason == "AMOUNT_OVERFLOW"
    r = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    assert r.balances[0].available.minor_units == big

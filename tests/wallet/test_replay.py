"""Replays (invariant 3): the same key and request return the original bytes, errors
included, with no new effect; the same key with another request is IDEMPOTENCY_KEY_REUSED."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from croupier.common.v1 import account_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from server.error_info import status_of
from tests.rpc import eur, fails, key


async def _ledger_size(w: WalletServiceStub, tenant: str) -> tuple[int, bytes]:
    page = await w.ListTransactions(
        pb.ListTransactionsRequest(tenant_id=tenant, player_id="p", page_size=500)
    )
    bal = await w.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    return len(page.transactions), bal.SerializeToString()


async def _raw(call: Awaitable[Any]) -> bytes:
    """The success response bytes, or the error's serialized google.rpc.Status."""
    try:
        resp = await call
        return bytes(resp.SerializeToString())
    except grpc.aio.AioRpcError as exc:
        status = status_of(exc)
        assert status is not None
        return bytes(status.SerializeToString())


async def _setup(w: WalletServiceStub, tenant: str) -> dict[str, str]:
    await w.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1_000))
    )
    for b in ("b-settle", "b-cancel"):
        await w.AuthorizeBet(
            pb.AuthorizeBetRequest(
                tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id=b, amount=eur(100)
            )
        )
    dk = key()
    await w.Debit(
        pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=dk, amount=eur(50))
    )
    return {"debit_key": dk}


def _writes(t: str, ctx: dict[str, str]) -> dict[str, tuple[Any, Callable[[Any], Any]]]:
    """Per write RPC: (request, mutate) — mutate gives a different request under the same key."""
    return {
        "Credit": (
            pb.CreditRequest(tenant_id=t, player_id="p", idempotency_key=key(), amount=eur(7)),
            lambda r: setattr(r.amount, "minor_units", 8),
        ),
        "Debit": (
            pb.DebitRequest(tenant_id=t, player_id="p", idempotency_key=key(), amount=eur(7)),
            lambda r: setattr(r.amount, "minor_units", 8),
        ),
        "AuthorizeBet": (
            pb.AuthorizeBetRequest(
                tenant_id=t, player_id="p", idempotency_key=key(), bet_id="b-new", amount=eur(7)
            ),
            lambda r: setattr(r, "bet_id", "b-other"),
        ),
        "SettleBet": (
            pb.SettleBetRequest(
                tenant_id=t, player_id="p", idempotency_key=key(), bet_id="b-settle", win=eur(30)
            ),
            lambda r: setattr(r.win, "minor_units", 31),
        ),
        "CancelBet": (
            pb.CancelBetRequest(
                tenant_id=t, player_id="p", idempotency_key=key(), bet_id="b-cancel"
            ),
            lambda r: setattr(r, "reason", "changed"),
        ),
        "RollbackTransaction": (
            pb.RollbackTransactionRequest(
                tenant_id=t,
                player_id="p",
                idempotency_key=key(),
                target_idempotency_key=ctx["debit_key"],
            ),
            lambda r: r.metadata.__setitem__("x", "y"),
        ),
        "SetPlayerStatus": (
            pb.SetPlayerStatusRequest(
                tenant_id=t,
                player_id="p",
                idempotency_key=key(),
                status=account_pb2.PLAYER_STATUS_ACTIVE,
            ),
            lambda r: setattr(r, "reason", "changed"),
        ),
    }


@pytest.mark.parametrize(
    "method",
    [
        "Credit",
        "Debit",
        "AuthorizeBet",
        "SettleBet",
        "CancelBet",
        "RollbackTransaction",
        "SetPlayerStatus",
    ],
)
async def test_replay_success_byte_for_byte(
    wallet: WalletServiceStub, tenant: str, method: str
) -> None:
    ctx = await _setup(wallet, tenant)
    request, mutate = _writes(tenant, ctx)[method]
    rpc = getattr(wallet, method)
    first = await _raw(rpc(request))
    before = await _ledger_size(wallet, tenant)
    for _ in range(3):
        assert await _raw(rpc(request)) == first
    assert await _ledger_size(wallet, tenant) == before
    other = type(request)()
    other.CopyFrom(request)
    mutate(other)
    await fails(rpc(other), grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert await _ledger_size(wallet, tenant) == before


async def test_replay_business_error_byte_for_byte(wallet: WalletServiceStub, tenant: str) -> None:
    """A refused bet replays its refusal even after the player could afford it."""
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(10))
    )
    req = pb.AuthorizeBetRequest(
        tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b", amount=eur(50)
    )
    first = await _raw(wallet.AuthorizeBet(req))
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(100))
    )
    assert await _raw(wallet.AuthorizeBet(req)) == first
    await fails(wallet.AuthorizeBet(req), grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    r = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    assert (r.balances[0].available.minor_units, r.balances[0].held.minor_units) == (110, 0)


async def test_keys_are_scoped_by_tenant(wallet: WalletServiceStub, tenant: str) -> None:
    k = key()
    for t in (tenant, tenant + "-b"):
        r = await wallet.Credit(
            pb.CreditRequest(tenant_id=t, player_id="p", idempotency_key=k, amount=eur(5))
        )
        assert r.balance.available.minor_units == 5

"""The blocking WalletClient against the same real server (run in a worker thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import pytest
from croupier.common.v1 import account_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb

from client import errors as e
from client.retry import RetryPolicy
from client.wallet import WalletClient
from tests.rpc import eur

T = TypeVar("T")


async def in_thread(target: str, work: Callable[[WalletClient], T]) -> T:
    """Run `work` with a fresh sync client to `target` in a worker thread."""

    def run() -> T:
        with WalletClient(target, retry=RetryPolicy(timeout=5, deadline=10)) as client:
            return work(client)

    return await asyncio.to_thread(run)


async def test_round_trip(target: str, tenant: str) -> None:
    def play(w: WalletClient) -> tuple[pb.SettleBetResponse, pb.GetBalanceResponse]:
        w.credit(tenant_id=tenant, player_id="p", amount=eur(10_000))
        w.authorize_bet(
            tenant_id=tenant,
            player_id="p",
            bet_id="b",
            round_id="r",
            game_id="g",
            amount=(2_500, "EUR"),
            metadata={"table": "7"},
        )
        settled = w.settle_bet(
            tenant_id=tenant, player_id="p", bet_id="b", capture=(2_000, "EUR"), win=(500, "EUR")
        )
        return settled, w.get_balance(tenant_id=tenant, player_id="p")

    settled, balance = await in_thread(target, play)
    assert (settled.captured.minor_units, settled.released.minor_units) == (2_000, 500)
    assert balance.player_status == account_pb2.PLAYER_STATUS_ACTIVE
    assert balance.balances[0].available == eur(8_500)
    assert balance.balances[0].held == eur(0)


async def test_replay_returns_the_original(target: str, tenant: str) -> None:
    def twice(w: WalletClient) -> tuple[pb.CreditResponse, pb.CreditResponse]:
        one = w.credit(tenant_id=tenant, player_id="p", amount=(700, "EUR"), idempotency_key="k1")
        two = w.credit(tenant_id=tenant, player_id="p", amount=(700, "EUR"), idempotency_key="k1")
        return one, two

    one, two = await in_thread(target, twice)
    assert one == two and one.balance.available.minor_units == 700


async def test_generated_keys_are_distinct_and_stored(target: str, tenant: str) -> None:
    def two_credits(w: WalletClient) -> list[str]:
        ids = [
            w.credit(tenant_id=tenant, player_id="p", amount=(1, "EUR")).transaction_id
            for _ in range(2)
        ]
        return [
            w.get_transaction(tenant_id=tenant, transaction_id=i).transaction.idempotency_key
            for i in ids
        ]

    keys = await in_thread(target, two_credits)
    assert len(set(keys)) == 2 and all(len(k) == 36 for k in keys)  # two uuid4 keys


async def test_errors_are_typed(target: str, tenant: str) -> None:
    def overdraw(w: WalletClient) -> None:
        w.credit(tenant_id=tenant, player_id="p", amount=(100, "EUR"))
        w.debit(tenant_id=tenant, player_id="p", amount=(101, "EUR"))

    with pytest.raises(e.InsufficientFunds) as info:
        await in_thread(target, overdraw)
    assert info.value.reason == "INSUFFICIENT_FUNDS" and info.value.attempts == 1

    def reuse(w: WalletClient) -> None:
        w.debit(tenant_id=tenant, player_id="p", amount=(1, "EUR"), idempotency_key="k")
        w.debit(tenant_id=tenant, player_id="p", amount=(2, "EUR"), idempotency_key="k")

    with pytest.raises(e.IdempotencyKeyReused):
        await in_thread(target, reuse)

    def bad_amount(w: WalletClient) -> None:
        w.credit(tenant_id=tenant, player_id="p", amount=(-5, "EUR"))

    with pytest.raises(e.InvalidAmount) as bad:
        await in_thread(target, bad_amount)
    assert bad.value.field == "amount.minor_units"

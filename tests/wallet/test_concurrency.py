"""Concurrent bets can never spend the same money twice (invariant 6, issue 2 item 10)."""

from __future__ import annotations

import asyncio

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from tests.rpc import error_info, eur, key

CONCURRENT_BETS = 250


async def test_concurrent_authorizes_never_overdraw(wallet: WalletServiceStub, tenant: str) -> None:
    """250 concurrent AuthorizeBets of 7 minor units against 1,000: exactly 142 succeed
    (1,000 // 7), the rest are INSUFFICIENT_FUNDS, and the balances are exact."""
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1_000))
    )

    async def bet(i: int) -> str:
        try:
            await wallet.AuthorizeBet(
                pb.AuthorizeBetRequest(
                    tenant_id=tenant,
                    player_id="p",
                    idempotency_key=key(),
                    bet_id=f"b{i}",
                    amount=eur(7),
                )
            )
            return "ok"
        except grpc.aio.AioRpcError as exc:
            return error_info(exc).reason

    outcomes = await asyncio.gather(*(bet(i) for i in range(CONCURRENT_BETS)))
    assert outcomes.count("ok") == 1_000 // 7
    assert outcomes.count("INSUFFICIENT_FUNDS") == CONCURRENT_BETS - 1_000 // 7
    r = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    assert r.balances[0].available.minor_units == 1_000 - 7 * (1_000 // 7)
    assert r.balances[0].held.minor_units == 7 * (1_000 // 7)


async def test_concurrent_duplicates_take_effect_once(
    wallet: WalletServiceStub, tenant: str
) -> None:
    """The same Debit sent 50 times at once debits once; all 50 get identical bytes."""
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1_000))
    )
    req = pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(10))
    replies = await asyncio.gather(*(wallet.Debit(req) for _ in range(50)))
    assert len({r.SerializeToString() for r in replies}) == 1
    r = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    assert r.balances[0].available.minor_units == 990


async def test_concurrent_settle_and_cancel_of_one_hold(
    wallet: WalletServiceStub, tenant: str
) -> None:
    """A settle and a cancel racing on one hold: exactly one wins, money is exact."""
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1_000))
    )
    for i in range(20):
        await wallet.AuthorizeBet(
            pb.AuthorizeBetRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                bet_id=f"b{i}",
                amount=eur(10),
            )
        )

    async def call(c: object) -> str:
        try:
            await c  # type: ignore[misc]
            return "ok"
        except grpc.aio.AioRpcError as exc:
            return error_info(exc).reason

    results = await asyncio.gather(
        *(
            call(coro)
            for i in range(20)
            for coro in (
                wallet.SettleBet(
                    pb.SettleBetRequest(
                        tenant_id=tenant,
                        player_id="p",
                        idempotency_key=key(),
                        bet_id=f"b{i}",
                        win=eur(5),
                    )
                ),
                wallet.CancelBet(
                    pb.CancelBetRequest(
                        tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id=f"b{i}"
                    )
                ),
            )
        )
    )
    assert results.count("ok") == 20 and results.count("HOLD_NOT_OPEN") == 20
    page = await wallet.ListTransactions(
        pb.ListTransactionsRequest(tenant_id=tenant, player_id="p", page_size=500)
    )
    settled = sum(1 for t in page.transactions if t.kind == pb.TRANSACTION_KIND_SETTLE)
    r = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    assert r.balances[0].held.minor_units == 0
    assert r.balances[0].available.minor_units == 1_000 - 10 * settled + 5 * settled

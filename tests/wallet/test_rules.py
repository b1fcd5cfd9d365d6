"""Wallet rules over real gRPC and PostgreSQL (issue 2, PRODUCT.md invariants 1-3, 6)."""

from __future__ import annotations

import grpc
from croupier.common.v1 import account_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2

from tests.rpc import eur, fails, key

NF = grpc.StatusCode.NOT_FOUND
FP = grpc.StatusCode.FAILED_PRECONDITION
IA = grpc.StatusCode.INVALID_ARGUMENT


async def credit(
    w: WalletServiceStub, tenant: str, player: str, minor: int, currency: str = "EUR"
) -> pb.CreditResponse:
    return await w.Credit(
        pb.CreditRequest(
            tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(minor, currency)
        )
    )


async def authorize(
    w: WalletServiceStub, tenant: str, player: str, bet: str, minor: int, **kw: object
) -> pb.AuthorizeBetResponse:
    return await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id=player,
            idempotency_key=key(),
            bet_id=bet,
            round_id="r-" + bet,
            game_id="g1",
            amount=eur(minor),
            **kw,
        )
    )  # type: ignore[arg-type]


async def balance(w: WalletServiceStub, tenant: str, player: str) -> tuple[int, int]:
    r = await w.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id=player))
    return r.balances[0].available.minor_units, r.balances[0].held.minor_units


async def test_credit_opens_account_and_bet_round_settles(
    wallet: WalletServiceStub, tenant: str
) -> None:
    r = await credit(wallet, tenant, "p1", 10_000)
    assert r.balance.available.minor_units == 10_000 and r.transaction_id
    a = await authorize(wallet, tenant, "p1", "b1", 2_500)
    assert (a.balance.available.minor_units, a.balance.held.minor_units) == (7_500, 2_500)
    assert a.hold_id and a.expire_time.seconds > 0
    s = await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant,
            player_id="p1",
            idempotency_key=key(),
            bet_id="b1",
            round_id="r-b1",
            capture=eur(2_000),
            win=eur(5_000),
        )
    )
    assert s.captured.minor_units == 2_000 and s.released.minor_units == 500
    assert s.win.minor_units == 5_000
    assert (s.balance.available.minor_units, s.balance.held.minor_units) == (13_000, 0)
    assert await balance(wallet, tenant, "p1") == (13_000, 0)


async def test_settle_whole_hold_with_zero_win(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 1_000)
    await authorize(wallet, tenant, "p", "b", 400)
    s = await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b", win=eur(0)
        )
    )
    assert s.captured.minor_units == 400 and s.released.minor_units == 0
    assert await balance(wallet, tenant, "p") == (600, 0)
    await fails(
        wallet.SettleBet(
            pb.SettleBetRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b")
        ),
        FP,
        "HOLD_NOT_OPEN",
    )


async def test_capture_cannot_exceed_hold(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 1_000)
    await authorize(wallet, tenant, "p", "b", 400)
    exc = await fails(
        wallet.SettleBet(
            pb.SettleBetRequest(
                tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b", capture=eur(401)
            )
        ),
        IA,
        "CAPTURE_EXCEEDS_HOLD",
    )
    assert "capture" in (exc.details() or "")
    assert await balance(wallet, tenant, "p") == (600, 400)


async def test_no_overdraft(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 100)
    await fails(authorize(wallet, tenant, "p", "b", 101), FP, "INSUFFICIENT_FUNDS")
    await fails(
        wallet.Debit(
            pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(101))
        ),
        FP,
        "INSUFFICIENT_FUNDS",
    )
    assert await balance(wallet, tenant, "p") == (100, 0)


async def test_unknown_player_and_account(wallet: WalletServiceStub, tenant: str) -> None:
    await fails(authorize(wallet, tenant, "nobody", "b", 1), NF, "PLAYER_NOT_FOUND")
    await fails(
        wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="nobody")),
        NF,
        "PLAYER_NOT_FOUND",
    )
    await credit(wallet, tenant, "p", 100, "USD")
    await fails(authorize(wallet, tenant, "p", "b2", 1), NF, "ACCOUNT_NOT_FOUND")


async def test_cancel_voids_hold(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 1_000)
    await authorize(wallet, tenant, "p", "b", 300)
    c = await wallet.CancelBet(
        pb.CancelBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b", reason="game crash"
        )
    )
    assert c.released.minor_units == 300 and c.balance.available.minor_units == 1_000
    await fails(
        wallet.SettleBet(
            pb.SettleBetRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b")
        ),
        FP,
        "HOLD_NOT_OPEN",
    )


async def test_cancel_before_bet_is_a_tombstone(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 1_000)
    c = await wallet.CancelBet(
        pb.CancelBetRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="late")
    )
    assert c.transaction_id and not c.HasField("balance")
    await fails(authorize(wallet, tenant, "p", "late", 100), FP, "BET_CANCELLED")
    assert await balance(wallet, tenant, "p") == (1_000, 0)


async def test_duplicate_bet_id_other_key(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 1_000)
    await authorize(wallet, tenant, "p", "b", 100)
    await fails(
        authorize(wallet, tenant, "p", "b", 100),
        grpc.StatusCode.ALREADY_EXISTS,
        "BET_ALREADY_EXISTS",
    )
    assert await balance(wallet, tenant, "p") == (900, 100)


async def test_blocked_and_self_excluded(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 1_000)
    await authorize(wallet, tenant, "p", "open", 200)
    for status, reason in (
        (account_pb2.PLAYER_STATUS_BLOCKED, "PLAYER_BLOCKED"),
        (account_pb2.PLAYER_STATUS_SELF_EXCLUDED, "PLAYER_SELF_EXCLUDED"),
    ):
        r = await wallet.SetPlayerStatus(
            pb.SetPlayerStatusRequest(
                tenant_id=tenant, player_id="p", idempotency_key=key(), status=status
            )
        )
        assert r.status == status
        await fails(authorize(wallet, tenant, "p", "b-" + reason, 1), FP, reason)
        await fails(
            wallet.Debit(
                pb.DebitRequest(
                    tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1)
                )
            ),
            FP,
            reason,
        )
    # credits and settlements owed to the player still succeed
    await credit(wallet, tenant, "p", 50)
    s = await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="open", win=eur(700)
        )
    )
    assert s.balance.available.minor_units == 800 + 50 + 700
    g = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    assert g.player_status == account_pb2.PLAYER_STATUS_SELF_EXCLUDED


async def test_debit_and_rollback_by_key(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 1_000)
    k = key()
    d = await wallet.Debit(
        pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=k, amount=eur(300))
    )
    assert d.balance.available.minor_units == 700
    r = await wallet.RollbackTransaction(
        pb.RollbackTransactionRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), target_idempotency_key=k
        )
    )
    assert r.outcome == pb.ROLLBACK_OUTCOME_REVERSED
    assert r.target_transaction_id == d.transaction_id
    assert r.reversed.minor_units == 300 and r.balance.available.minor_units == 1_000
    await fails(
        wallet.RollbackTransaction(
            pb.RollbackTransactionRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                target_transaction_id=d.transaction_id,
            )
        ),
        FP,
        "TRANSACTION_ALREADY_ROLLED_BACK",
    )


async def test_rollback_of_credit_and_of_spent_credit(
    wallet: WalletServiceStub, tenant: str
) -> None:
    c = await credit(wallet, tenant, "p", 500)
    c2 = await credit(wallet, tenant, "p", 100)
    r = await wallet.RollbackTransaction(
        pb.RollbackTransactionRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            target_transaction_id=c2.transaction_id,
        )
    )
    assert r.reversed.minor_units == -100 and r.balance.available.minor_units == 500
    await wallet.Debit(
        pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(450))
    )
    await fails(
        wallet.RollbackTransaction(
            pb.RollbackTransactionRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                target_transaction_id=c.transaction_id,
            )
        ),
        FP,
        "INSUFFICIENT_FUNDS",
    )


async def test_rollback_before_target_is_a_tombstone(
    wallet: WalletServiceStub, tenant: str
) -> None:
    """Seed 001: rollback of an unknown transaction is recorded, succeeds, changes nothing;
    the original, if it arrives later, is refused and never debited."""
    await credit(wallet, tenant, "p", 1_000)
    rk = key()
    req = pb.RollbackTransactionRequest(
        tenant_id=tenant, player_id="p", idempotency_key=rk, target_idempotency_key="bet-77"
    )
    r = await wallet.RollbackTransaction(req)
    assert r.outcome == pb.ROLLBACK_OUTCOME_TOMBSTONED and r.transaction_id
    again = await wallet.RollbackTransaction(req)
    assert again.SerializeToString() == r.SerializeToString()
    late = pb.DebitRequest(
        tenant_id=tenant, player_id="p", idempotency_key="bet-77", amount=eur(200)
    )
    for _ in range(2):
        await fails(wallet.Debit(late), FP, "TRANSACTION_ROLLED_BACK")
    assert await balance(wallet, tenant, "p") == (1_000, 0)


async def test_rollback_of_refused_debit_has_nothing_to_reverse(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await credit(wallet, tenant, "p", 10)
    k = key()
    await fails(
        wallet.Debit(
            pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=k, amount=eur(20))
        ),
        FP,
        "INSUFFICIENT_FUNDS",
    )
    r = await wallet.RollbackTransaction(
        pb.RollbackTransactionRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), target_idempotency_key=k
        )
    )
    assert r.outcome == pb.ROLLBACK_OUTCOME_NOTHING_TO_REVERSE
    assert await balance(wallet, tenant, "p") == (10, 0)


async def test_rollback_unknown_transaction_id(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 10)
    await fails(
        wallet.RollbackTransaction(
            pb.RollbackTransactionRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                target_transaction_id="00000000-0000-4000-8000-000000000000",
            )
        ),
        NF,
        "TRANSACTION_NOT_FOUND",
    )


async def test_hold_expires_and_is_voided_by_server(wallet: WalletServiceStub, tenant: str) -> None:
    import asyncio

    await credit(wallet, tenant, "p", 1_000)
    await authorize(wallet, tenant, "p", "b", 250, hold_ttl=duration_pb2.Duration(seconds=1))
    assert await balance(wallet, tenant, "p") == (750, 250)
    for _ in range(40):
        await asyncio.sleep(0.25)
        if await balance(wallet, tenant, "p") == (1_000, 0):
            break
    assert await balance(wallet, tenant, "p") == (1_000, 0)
    await fails(
        wallet.SettleBet(
            pb.SettleBetRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b")
        ),
        FP,
        "HOLD_NOT_OPEN",
    )
    page = await wallet.ListTransactions(
        pb.ListTransactionsRequest(tenant_id=tenant, player_id="p")
    )
    assert page.transactions[0].kind == pb.TRANSACTION_KIND_EXPIRE


async def test_tenants_are_isolated(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, "p", 1_000)
    other = tenant + "-other"
    await fails(authorize(wallet, other, "p", "b", 1), NF, "PLAYER_NOT_FOUND")
    c = await credit(wallet, tenant, "p", 1)
    await fails(
        wallet.GetTransaction(
            pb.GetTransactionRequest(tenant_id=other, transaction_id=c.transaction_id)
        ),
        NF,
        "TRANSACTION_NOT_FOUND",
    )


async def test_get_and_list_transactions_paginate(wallet: WalletServiceStub, tenant: str) -> None:
    ids = [(await credit(wallet, tenant, "p", i + 1)).transaction_id for i in range(7)]
    tx = await wallet.GetTransaction(
        pb.GetTransactionRequest(tenant_id=tenant, transaction_id=ids[0])
    )
    assert tx.transaction.kind == pb.TRANSACTION_KIND_CREDIT
    assert sum(p.amount.minor_units for p in tx.transaction.postings) == 0
    assert {p.account for p in tx.transaction.postings} == {"player/available", "house/cashier"}
    seen: list[str] = []
    token = ""
    while True:
        page = await wallet.ListTransactions(
            pb.ListTransactionsRequest(
                tenant_id=tenant, player_id="p", page_size=3, page_token=token
            )
        )
        seen += [t.transaction_id for t in page.transactions]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    await fails(
        wallet.ListTransactions(
            pb.ListTransactionsRequest(
                tenant_id=tenant,
                player_id="other",
                page_size=3,
                page_token=(
                    await wallet.ListTransactions(
                        pb.ListTransactionsRequest(tenant_id=tenant, player_id="p", page_size=3)
                    )
                ).next_page_token,
            )
        ),
        IA,
        "INVALID_PAGE_TOKEN",
    )


async def test_crypto_currency_by_configuration(wallet: WalletServiceStub, tenant: str) -> None:
    r = await credit(wallet, tenant, "p", 123_456_789, "BTC")
    assert r.balance.available.currency == "BTC"

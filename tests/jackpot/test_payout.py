"""The payout saga: exactly one wallet credit per win, refusals recorded, retries
(issue 3 section 6, seed 000 section 9, PRODUCT.md invariant 4)."""

from __future__ import annotations

import asyncio

import grpc
from croupier.common.v1 import account_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.jackpot.payout import backoff_seconds
from tests.jackpot.conftest import contribution, create, tier
from tests.rpc import eur, fails, key


async def wait_state(
    stub: JackpotServiceStub, tenant: str, win_id: str, state: int, seconds: float = 10
) -> pb.Win:
    for _ in range(int(seconds / 0.05)):
        w = (await stub.GetWin(pb.GetWinRequest(tenant_id=tenant, win_id=win_id))).win
        if w.payout_state == state:
            return w
        await asyncio.sleep(0.05)
    raise AssertionError(f"win {win_id} never reached state {state}: {w}")


async def balance(wallet: WalletServiceStub, tenant: str, player: str) -> int:
    r = await wallet.GetBalance(wpb.GetBalanceRequest(tenant_id=tenant, player_id=player))
    return r.balances[0].available.minor_units


async def credits_for(pool: AsyncConnectionPool, tenant: str, win_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM transactions WHERE tenant_id = %s AND idempotency_key = %s",
            (tenant, f"jp-payout-{win_id}"),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def hit(stub: JackpotServiceStub, tenant: str, pool_id: str, player: str) -> pb.Win:
    r = await stub.Trigger(
        pb.TriggerRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=pool_id,
            reason="random_hit",
            selector=pb.TriggerSelector(player_id=player, round_id="r-1", game_id="g1"),
        )
    )
    return r.win


async def test_a_hit_is_credited_to_the_winner_exactly_once(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    j = await create(jackpot, tenant, tier(seed_minor_units=10_000))
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 50_000))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "winner")
    assert win.amount.minor_units == 10_500
    assert win.payout_state == pb.PAYOUT_STATE_REQUESTED
    done = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_CREDITED)
    assert done.wallet_transaction_id and done.credit_time.seconds > 0
    # Payout again and again, concurrently: still one credit
    again = await asyncio.gather(
        *(jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id)) for _ in range(8))
    )
    assert {r.win.wallet_transaction_id for r in again} == {done.wallet_transaction_id}
    assert await balance(wallet, tenant, "winner") == 10_500
    assert await credits_for(pool, tenant, win.win_id) == 1
    tx = await wallet.GetTransaction(
        wpb.GetTransactionRequest(tenant_id=tenant, transaction_id=done.wallet_transaction_id)
    )
    assert tx.transaction.metadata["jackpot_win_id"] == win.win_id


async def test_a_contribution_hit_pays_the_contributing_player(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str
) -> None:
    j = await create(
        jackpot,
        tenant,
        tier(
            seed_minor_units=1000,
            contribution_rate_ppm=100_000,
            trigger=pb.TRIGGER_KIND_MUST_DROP,
            must_drop_min_minor_units=1100,
            must_drop_max_minor_units=1100,
        ),
    )
    r = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 1000, player="lucky"))
    t = r.tiers[0]
    assert t.hit and t.pool_amount.minor_units == 1100
    await wait_state(jackpot, tenant, t.win_id, pb.PAYOUT_STATE_CREDITED)
    assert await balance(wallet, tenant, "lucky") == 1100


async def test_blocked_winner_is_recorded_failed_and_paid_after_unblock(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    for status, reason in (
        (account_pb2.PLAYER_STATUS_BLOCKED, "PLAYER_BLOCKED"),
        (account_pb2.PLAYER_STATUS_SELF_EXCLUDED, "PLAYER_SELF_EXCLUDED"),
    ):
        player = f"p-{reason.lower()}"
        await wallet.SetPlayerStatus(
            wpb.SetPlayerStatusRequest(
                tenant_id=tenant, player_id=player, idempotency_key=key(), status=status
            )
        )
        j = await create(jackpot, tenant, tier(seed_minor_units=777))
        win = await hit(jackpot, tenant, j.pools[0].pool_id, player)
        failed = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_FAILED)
        assert failed.failure_reason == reason
        r = await jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id))
        assert r.win.payout_state == pb.PAYOUT_STATE_FAILED
        assert await credits_for(pool, tenant, win.win_id) == 0
        listed = await jackpot.ListWins(
            pb.ListWinsRequest(tenant_id=tenant, payout_state=pb.PAYOUT_STATE_FAILED)
        )
        assert win.win_id in {w.win_id for w in listed.wins}
        await wallet.SetPlayerStatus(
            wpb.SetPlayerStatusRequest(
                tenant_id=tenant,
                player_id=player,
                idempotency_key=key(),
                status=account_pb2.PLAYER_STATUS_ACTIVE,
            )
        )
        # every Payout races to credit the same win: one credit, every reply CREDITED
        replies = await asyncio.gather(
            *(
                jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id))
                for _ in range(6)
            )
        )
        assert {r.win.payout_state for r in replies} == {pb.PAYOUT_STATE_CREDITED}
        assert len({r.win.wallet_transaction_id for r in replies}) == 1
        assert await balance(wallet, tenant, player) == 777
        assert await credits_for(pool, tenant, win.win_id) == 1


async def test_payout_of_another_tenants_win_is_not_found(
    jackpot: JackpotServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier())
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "p")
    await fails(
        jackpot.Payout(pb.PayoutRequest(tenant_id=f"{tenant}-x", win_id=win.win_id)),
        grpc.StatusCode.NOT_FOUND,
        "WIN_NOT_FOUND",
    )


async def test_a_credit_the_wallet_refuses_is_recorded_failed_with_its_reason(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    # the winner's balance is one unit below int64: the wallet refuses the overflow
    await wallet.Credit(
        wpb.CreditRequest(
            tenant_id=tenant,
            player_id="rich",
            idempotency_key=key(),
            amount=eur(2**63 - 2),
        )
    )
    j = await create(jackpot, tenant, tier(seed_minor_units=10))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "rich")
    failed = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_FAILED)
    assert failed.failure_reason == "AMOUNT_OVERFLOW"
    assert await credits_for(pool, tenant, win.win_id) == 0


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert backoff_seconds(50) == 60.0

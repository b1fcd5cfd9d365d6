"""Bonus money over gRPC: the deposit-match example with exact balances, the spend order, max
bet, withdrawal policy, forfeit, replays, and bad input refused with nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from croupier.common.v1 import account_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import timestamp_pb2
from psycopg_pool import AsyncConnectionPool

from server.app import App
from server.reconcile import reconcile_ledger
from tests.rpc import error_info, eur, fails, key

SLOTS, ROULETTE = 1_000_000, 100_000  # ppm: 100%, 10%
BLACKJACK = 50_000  # 5%


def later(days: int = 30) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.now(UTC) + timedelta(days=days))
    return ts


def grant_request(tenant: str, player: str, **overrides: Any) -> pb.GrantBonusRequest:
    fields: dict[str, Any] = {
        "tenant_id": tenant,
        "player_id": player,
        "idempotency_key": key(),
        "amount": eur(20_000),
        "locked_deposit": eur(10_000),
        "wagering_multiplier": 40,
        "wagering_base": pb.WAGERING_BASE_DEPOSIT_PLUS_BONUS,
        "default_weight_ppm": 0,
        "category_weights_ppm": {"slots": SLOTS, "roulette": ROULETTE},
        "game_weights_ppm": {"blackjack-classic": BLACKJACK},
        "max_bet": eur(50_000),
        "max_conversion": eur(30_000),
        "expire_time": later(),
    }
    fields.update(overrides)
    return pb.GrantBonusRequest(**fields)


async def balance(w: WalletServiceStub, tenant: str, player: str) -> tuple[int, ...]:
    """(available, cash, bonus, locked, held) of the player's EUR account."""
    b = (await w.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id=player))).balances[0]
    return (
        b.available.minor_units,
        b.cash.minor_units,
        b.bonus.minor_units,
        b.locked.minor_units,
        b.held.minor_units,
    )


async def bet(
    w: WalletServiceStub,
    tenant: str,
    player: str,
    bet_id: str,
    stake: int,
    win: int,
    *,
    game: str = "starburst",
    category: str = "slots",
) -> pb.SettleBetResponse:
    await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id=player,
            idempotency_key=key(),
            bet_id=bet_id,
            round_id=f"r-{bet_id}",
            game_id=game,
            amount=eur(stake),
            metadata={"game_category": category} if category else {},
        )
    )
    resp: pb.SettleBetResponse = await w.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant,
            player_id=player,
            idempotency_key=key(),
            bet_id=bet_id,
            round_id=f"r-{bet_id}",
            win=eur(win),
        )
    )
    return resp


async def deposit(w: WalletServiceStub, tenant: str, player: str, amount: int) -> None:
    await w.Credit(
        pb.CreditRequest(
            tenant_id=tenant,
            player_id=player,
            idempotency_key=key(),
            amount=eur(amount),
            reason=pb.CREDIT_REASON_DEPOSIT,
        )
    )


async def test_deposit_match_example_completes_with_exact_balances(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    """Deposit 100.00, 200% match (bonus 200.00), 40x on deposit + bonus = 12,000.00 weighted
    turnover; slots 100%, roulette 10%, blackjack 5%; max bet 500.00; max conversion 300.00."""
    await deposit(wallet, tenant, "ana", 10_000)
    assert await balance(wallet, tenant, "ana") == (10_000, 10_000, 0, 0, 0)

    req = grant_request(tenant, "ana")
    granted = await wallet.GrantBonus(req)
    assert await wallet.GrantBonus(req) == granted  # a replay: the same answer, no new effect
    b = granted.bonus
    assert b.state == pb.BONUS_STATE_ACTIVE
    assert b.requirement.minor_units == 1_200_000  # 40 x (100.00 + 200.00) = 12,000.00
    assert await balance(wallet, tenant, "ana") == (30_000, 0, 20_000, 10_000, 0)

    # roulette, 300.00 staked (locked 100.00 + bonus 200.00: cash is empty), won 600.00: the
    # win goes back in the stake's proportions; 10% of the stake counts (30.00)
    settled = await bet(wallet, tenant, "ana", "b-roulette", 30_000, 60_000, category="roulette")
    assert settled.balance.locked.minor_units == 20_000
    assert await balance(wallet, tenant, "ana") == (60_000, 0, 40_000, 20_000, 0)
    # slots, 100.00 lost (from locked first): 100% counts
    await bet(wallet, tenant, "ana", "b-slot-lost", 10_000, 0)
    # blackjack by game id, 100.00 lost: 5% counts
    await bet(wallet, tenant, "ana", "b-bj", 10_000, 0, game="blackjack-classic", category="")
    assert await balance(wallet, tenant, "ana") == (40_000, 0, 40_000, 0, 0)
    got = (
        await wallet.GetBonus(
            pb.GetBonusRequest(tenant_id=tenant, player_id="ana", bonus_id=b.bonus_id)
        )
    ).bonus
    assert got.wagered.minor_units == 3_000 + 10_000 + 500

    # above the max bet while the bonus is active
    await fails(
        wallet.AuthorizeBet(
            pb.AuthorizeBetRequest(
                tenant_id=tenant,
                player_id="ana",
                idempotency_key=key(),
                bet_id="b-too-big",
                amount=eur(50_001),
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "BONUS_MAX_BET_EXCEEDED",
    )
    # a withdrawal under the default policy (refuse)
    await fails(
        wallet.Debit(
            pb.DebitRequest(
                tenant_id=tenant,
                player_id="ana",
                idempotency_key=key(),
                amount=eur(1),
                reason=pb.DEBIT_REASON_WITHDRAWAL,
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "BONUS_ACTIVE",
    )

    # slots, 400.00 a spin won back: 29 spins leave 26.50 to wager, the 30th completes
    for i in range(29):
        await bet(wallet, tenant, "ana", f"b-slot-{i}", 40_000, 40_000)
    got = (
        await wallet.GetBonus(
            pb.GetBonusRequest(tenant_id=tenant, player_id="ana", bonus_id=b.bonus_id)
        )
    ).bonus
    assert (got.state, got.wagered.minor_units) == (pb.BONUS_STATE_ACTIVE, 1_173_500)
    last = await bet(wallet, tenant, "ana", "b-slot-last", 40_000, 40_000)
    # completed in the settlement's transaction: 400.00 bonus, 300.00 converted, 100.00 removed
    assert (last.balance.cash.minor_units, last.balance.bonus.minor_units) == (30_000, 0)
    assert await balance(wallet, tenant, "ana") == (30_000, 30_000, 0, 0, 0)
    done = (
        await wallet.GetBonus(
            pb.GetBonusRequest(tenant_id=tenant, player_id="ana", bonus_id=b.bonus_id)
        )
    ).bonus
    assert done.state == pb.BONUS_STATE_COMPLETED
    assert (done.converted.minor_units, done.removed.minor_units, done.released.minor_units) == (
        30_000,
        10_000,
        0,
    )
    assert done.wagered_ppm == str(1_213_500 * 1_000_000)
    # the cash is the player's: withdrawable
    await wallet.Debit(
        pb.DebitRequest(
            tenant_id=tenant,
            player_id="ana",
            idempotency_key=key(),
            amount=eur(30_000),
            reason=pb.DEBIT_REASON_WITHDRAWAL,
        )
    )
    assert await balance(wallet, tenant, "ana") == (0, 0, 0, 0, 0)
    assert (await reconcile_ledger(pool)).ok


async def test_spend_order_split_cancel_and_rollback_restore_each_part(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await wallet.SetBonusSettings(
        pb.SetBonusSettingsRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            settings=pb.BonusSettings(
                spend_order=[pb.SPEND_SOURCE_BONUS, pb.SPEND_SOURCE_CASH, pb.SPEND_SOURCE_LOCKED],
                withdrawal_policy=pb.WITHDRAWAL_POLICY_FORFEIT,
            ),
        )
    )
    await deposit(wallet, tenant, "bo", 15_000)
    await wallet.GrantBonus(
        grant_request(tenant, "bo", amount=eur(1_000), locked_deposit=eur(10_000))
    )
    assert await balance(wallet, tenant, "bo") == (16_000, 5_000, 1_000, 10_000, 0)
    # bonus first, then cash, then locked
    auth = await wallet.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant, player_id="bo", idempotency_key=key(), bet_id="x", amount=eur(7_000)
        )
    )
    assert (auth.balance.bonus.minor_units, auth.balance.cash.minor_units) == (0, 0)
    assert auth.balance.locked.minor_units == 9_000
    await wallet.CancelBet(
        pb.CancelBetRequest(tenant_id=tenant, player_id="bo", idempotency_key=key(), bet_id="x")
    )
    assert await balance(wallet, tenant, "bo") == (16_000, 5_000, 1_000, 10_000, 0)
    debit_key = key()
    await wallet.Debit(
        pb.DebitRequest(
            tenant_id=tenant, player_id="bo", idempotency_key=debit_key, amount=eur(1_500)
        )
    )
    assert await balance(wallet, tenant, "bo") == (14_500, 4_500, 0, 10_000, 0)
    await wallet.RollbackTransaction(
        pb.RollbackTransactionRequest(
            tenant_id=tenant,
            player_id="bo",
            idempotency_key=key(),
            target_idempotency_key=debit_key,
        )
    )
    assert await balance(wallet, tenant, "bo") == (16_000, 5_000, 1_000, 10_000, 0)
    # partial capture: 1,000 of a 3,000 hold (bonus 1,000 + cash 2,000); the release and the
    # win of 999 follow the proportions (largest remainder, ties in spend order)
    await wallet.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant, player_id="bo", idempotency_key=key(), bet_id="y", amount=eur(3_000)
        )
    )
    settled = await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant,
            player_id="bo",
            idempotency_key=key(),
            bet_id="y",
            capture=eur(1_000),
            win=eur(1_000),
        )
    )
    # captured 1,000: floors 666 cash + 333 bonus, the unit left goes to the larger remainder
    # (cash: 2,000,000 mod 3,000 = 2,000 against bonus 1,000): 667 cash, 333 bonus; released
    # 1,333 cash, 667 bonus; the win of 1,000 the same as the capture: 667 cash, 333 bonus
    assert settled.balance.bonus.minor_units == 667 + 333
    assert settled.balance.cash.minor_units == 3_000 + 1_333 + 667
    # the forfeit policy: a withdrawal forfeits the bonus (locked -> cash, bonus removed)
    await wallet.Debit(
        pb.DebitRequest(
            tenant_id=tenant,
            player_id="bo",
            idempotency_key=key(),
            amount=eur(15_000),
            reason=pb.DEBIT_REASON_WITHDRAWAL,
        )
    )
    assert await balance(wallet, tenant, "bo") == (0, 0, 0, 0, 0)
    listed = await wallet.ListBonuses(pb.ListBonusesRequest(tenant_id=tenant, player_id="bo"))
    assert [x.state for x in listed.bonuses] == [pb.BONUS_STATE_FORFEITED]
    assert listed.bonuses[0].reason == "withdrawal"


async def test_forfeit_and_expiry(
    wallet: WalletServiceStub, tenant: str, app: App, pool: AsyncConnectionPool
) -> None:
    await deposit(wallet, tenant, "cy", 5_000)
    g = await wallet.GrantBonus(
        grant_request(tenant, "cy", amount=eur(2_000), locked_deposit=eur(1_000))
    )
    forfeit = pb.ForfeitBonusRequest(
        tenant_id=tenant,
        player_id="cy",
        idempotency_key=key(),
        bonus_id=g.bonus.bonus_id,
        reason="abuse",
    )
    first = await wallet.ForfeitBonus(forfeit)
    assert await wallet.ForfeitBonus(forfeit) == first
    assert first.bonus.state == pb.BONUS_STATE_FORFEITED
    assert await balance(wallet, tenant, "cy") == (5_000, 5_000, 0, 0, 0)
    await fails(
        wallet.ForfeitBonus(
            pb.ForfeitBonusRequest(
                tenant_id=tenant, player_id="cy", idempotency_key=key(), bonus_id=g.bonus.bonus_id
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "BONUS_NOT_ACTIVE",
    )
    g2 = await wallet.GrantBonus(
        grant_request(tenant, "cy", amount=eur(2_000), locked_deposit=eur(1_000))
    )
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE bonuses SET expires_at = now() - interval '1 second'"
            " WHERE tenant_id = %s AND bonus_id = %s",
            (tenant, g2.bonus.bonus_id),
        )
    await app.wallet.expire_bonuses()
    got = await wallet.GetBonus(
        pb.GetBonusRequest(tenant_id=tenant, player_id="cy", bonus_id=g2.bonus.bonus_id)
    )
    assert (got.bonus.state, got.bonus.removed.minor_units, got.bonus.released.minor_units) == (
        pb.BONUS_STATE_EXPIRED,
        2_000,
        1_000,
    )
    assert await balance(wallet, tenant, "cy") == (5_000, 5_000, 0, 0, 0)


BAD_INPUT = [
    (
        {"category_weights_ppm": {"slots": 1_000_001}},
        "category_weights_ppm[slots]",
        "INVALID_WEIGHT",
    ),
    ({"game_weights_ppm": {"g": -1}}, "game_weights_ppm[g]", "INVALID_WEIGHT"),
    ({"default_weight_ppm": 2_000_000}, "default_weight_ppm", "INVALID_WEIGHT"),
    ({"amount": eur(-100)}, "amount.minor_units", "INVALID_AMOUNT"),
    ({"amount": eur(0)}, "amount.minor_units", "INVALID_AMOUNT"),
    ({"locked_deposit": eur(-1)}, "locked_deposit.minor_units", "INVALID_AMOUNT"),
    ({"max_conversion": eur(-1)}, "max_conversion.minor_units", "INVALID_AMOUNT"),
    ({"max_bet": eur(0)}, "max_bet.minor_units", "INVALID_AMOUNT"),
    ({"amount": eur(100, "XQQ")}, "amount.currency", "UNKNOWN_CURRENCY"),
    ({"max_conversion": eur(100, "USD")}, "max_conversion.currency", "CURRENCY_MISMATCH"),
    ({"wagering_multiplier": -1}, "wagering_multiplier", "INVALID_MULTIPLIER"),
    ({"wagering_base": pb.WAGERING_BASE_UNSPECIFIED}, "wagering_base", "MISSING_FIELD"),
    ({"expire_time": timestamp_pb2.Timestamp(seconds=1)}, "expire_time", "INVALID_EXPIRE_TIME"),
]


async def _nothing_written(
    wallet: WalletServiceStub, tenant: str, player: str, pool: AsyncConnectionPool
) -> None:
    assert await balance(wallet, tenant, player) == (10_000, 10_000, 0, 0, 0)
    listed = await wallet.ListBonuses(pb.ListBonusesRequest(tenant_id=tenant, player_id=player))
    assert not listed.bonuses
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM transactions WHERE tenant_id = %s AND player_id = %s",
            (tenant, player),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == 1  # the deposit only


@pytest.mark.parametrize(("overrides", "field", "reason"), BAD_INPUT)
async def test_bad_grant_is_refused_naming_the_field(
    wallet: WalletServiceStub,
    tenant: str,
    pool: AsyncConnectionPool,
    overrides: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    await deposit(wallet, tenant, "dee", 10_000)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await wallet.GrantBonus(grant_request(tenant, "dee", **overrides))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(err.value)
    assert (info.reason, info.metadata["field"]) == (reason, field)
    await _nothing_written(wallet, tenant, "dee", pool)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (account_pb2.PLAYER_STATUS_BLOCKED, "PLAYER_BLOCKED"),
        (account_pb2.PLAYER_STATUS_SELF_EXCLUDED, "PLAYER_SELF_EXCLUDED"),
    ],
)
async def test_grant_to_blocked_or_self_excluded_player_is_refused(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool, status: int, reason: str
) -> None:
    await deposit(wallet, tenant, "eve", 10_000)
    await wallet.SetPlayerStatus(
        pb.SetPlayerStatusRequest(
            tenant_id=tenant, player_id="eve", idempotency_key=key(), status=status
        )  # type: ignore[arg-type]
    )
    await fails(
        wallet.GrantBonus(grant_request(tenant, "eve")), grpc.StatusCode.FAILED_PRECONDITION, reason
    )
    await _nothing_written(wallet, tenant, "eve", pool)


async def test_second_active_bonus_and_too_large_lock_are_refused(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    await deposit(wallet, tenant, "fay", 10_000)
    await fails(
        wallet.GrantBonus(grant_request(tenant, "fay", locked_deposit=eur(10_001))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_FUNDS",
    )
    await _nothing_written(wallet, tenant, "fay", pool)
    await wallet.GrantBonus(grant_request(tenant, "fay", locked_deposit=eur(0)))
    await fails(
        wallet.GrantBonus(grant_request(tenant, "fay")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "BONUS_ALREADY_ACTIVE",
    )


async def test_bad_settings_are_refused(wallet: WalletServiceStub, tenant: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await wallet.SetBonusSettings(
            pb.SetBonusSettingsRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                settings=pb.BonusSettings(
                    spend_order=[pb.SPEND_SOURCE_CASH, pb.SPEND_SOURCE_CASH, pb.SPEND_SOURCE_BONUS],
                    withdrawal_policy=pb.WITHDRAWAL_POLICY_REFUSE,
                ),
            )
        )
    assert error_info(err.value).reason == "INVALID_SPEND_ORDER"
    got = await wallet.GetBonusSettings(pb.GetBonusSettingsRequest(tenant_id=tenant))
    assert list(got.settings.spend_order) == [
        pb.SPEND_SOURCE_CASH,
        pb.SPEND_SOURCE_LOCKED,
        pb.SPEND_SOURCE_BONUS,
    ]
    assert got.settings.withdrawal_policy == pb.WITHDRAWAL_POLICY_REFUSE

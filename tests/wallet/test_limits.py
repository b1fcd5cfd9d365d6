"""Deposit, loss and wager limits over gRPC: windows, the tenant's time zone, cooling-off of a
raise, concurrent bets at a limit, refusals with ErrorInfo metadata, bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from server.store import limits_sql, statements
from server.telemetry import BATCH_SIZE
from tests.rpc import error_info, eur, fails, key

FP = grpc.StatusCode.FAILED_PRECONDITION
BAD = grpc.StatusCode.INVALID_ARGUMENT
DAY, WEEK, MONTH = pb.LIMIT_WINDOW_DAY, pb.LIMIT_WINDOW_WEEK, pb.LIMIT_WINDOW_MONTH
DEPOSIT, LOSS, WAGER = pb.LIMIT_KIND_DEPOSIT, pb.LIMIT_KIND_LOSS, pb.LIMIT_KIND_WAGER


async def credit(
    w: WalletServiceStub, tenant: str, amount: int, reason: int = 0, player: str = "p"
) -> pb.CreditResponse:
    return await w.Credit(
        pb.CreditRequest(
            tenant_id=tenant,
            player_id=player,
            idempotency_key=key(),
            amount=eur(amount),
            reason=reason,  # type: ignore[arg-type]
        )
    )


async def set_limit(
    w: WalletServiceStub, tenant: str, kind: int, window: int, amount: int, *, remove: bool = False
) -> pb.SetLimitResponse:
    return await w.SetLimit(
        pb.SetLimitRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            kind=kind,  # type: ignore[arg-type]
            window=window,  # type: ignore[arg-type]
            amount=eur(amount),
            remove=remove,
            reason="player request",
        )
    )


async def bet(
    w: WalletServiceStub, tenant: str, bet_id: str, amount: int
) -> pb.AuthorizeBetResponse:
    return await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id=bet_id,
            amount=eur(amount),
        )
    )


async def available(w: WalletServiceStub, tenant: str) -> int:
    r = await w.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    return r.balances[0].available.minor_units


async def test_deposit_limit_per_day_refuses_with_metadata_and_replays(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await credit(wallet, tenant, 1, pb.CREDIT_REASON_DEPOSIT)
    r = await set_limit(wallet, tenant, DEPOSIT, DAY, 1_000)
    assert r.applied and r.limit.amount.minor_units == 1_000
    assert r.limit.used.minor_units == 1 and r.limit.remaining.minor_units == 999
    await credit(wallet, tenant, 599, pb.CREDIT_REASON_DEPOSIT)
    request = pb.CreditRequest(
        tenant_id=tenant,
        player_id="p",
        idempotency_key=key(),
        amount=eur(401),
        reason=pb.CREDIT_REASON_DEPOSIT,
    )
    exc = await fails(wallet.Credit(request), FP, "DEPOSIT_LIMIT_EXCEEDED")
    meta = error_info(exc).metadata
    assert (meta["limit"], meta["window"], meta["remaining"]) == ("1000", "day", "400")
    again = await fails(wallet.Credit(request), FP, "DEPOSIT_LIMIT_EXCEEDED")
    assert again.trailing_metadata() == exc.trailing_metadata()  # the stored bytes, replayed
    # wins, refunds, bonuses, payouts and unspecified credits are never limited
    for reason in (
        pb.CREDIT_REASON_WIN,
        pb.CREDIT_REASON_REFUND,
        pb.CREDIT_REASON_BONUS,
        pb.CREDIT_REASON_PAYOUT,
        pb.CREDIT_REASON_UNSPECIFIED,
    ):
        await credit(wallet, tenant, 5_000, reason)
    await credit(wallet, tenant, 400, pb.CREDIT_REASON_DEPOSIT)  # exactly to the limit
    await fails(credit(wallet, tenant, 1, pb.CREDIT_REASON_DEPOSIT), FP, "DEPOSIT_LIMIT_EXCEEDED")
    assert await available(wallet, tenant) == 1_000 + 5 * 5_000


async def test_wager_limit_counts_stakes_and_gives_back_released(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await credit(wallet, tenant, 10_000)
    await set_limit(wallet, tenant, WAGER, WEEK, 300)
    await bet(wallet, tenant, "b1", 200)
    exc = await fails(bet(wallet, tenant, "b2", 101), FP, "WAGER_LIMIT_EXCEEDED")
    assert error_info(exc).metadata["remaining"] == "100"
    assert error_info(exc).metadata["window"] == "week"
    # a debit (stake) counts too; a withdrawal does not
    await fails(
        wallet.Debit(
            pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(101))
        ),
        FP,
        "WAGER_LIMIT_EXCEEDED",
    )
    await wallet.Debit(
        pb.DebitRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            amount=eur(1_000),
            reason=pb.DEBIT_REASON_WITHDRAWAL,
        )
    )
    # cancelling the bet gives its stake back; a partial capture gives back the rest
    await wallet.CancelBet(
        pb.CancelBetRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b1")
    )
    await bet(wallet, tenant, "b3", 300)
    await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b3", capture=eur(120)
        )
    )
    got = await wallet.GetLimit(
        pb.GetLimitRequest(tenant_id=tenant, player_id="p", currency="EUR", kind=WAGER, window=WEEK)
    )
    assert got.limit.used.minor_units == 120 and got.limit.remaining.minor_units == 180
    await bet(wallet, tenant, "b4", 180)
    await fails(bet(wallet, tenant, "b5", 1), FP, "WAGER_LIMIT_EXCEEDED")
    assert await available(wallet, tenant) == 10_000 - 1_000 - 120 - 180


async def test_loss_limit_is_stakes_minus_wins(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, 10_000)
    await set_limit(wallet, tenant, LOSS, MONTH, 500)
    await bet(wallet, tenant, "b1", 400)
    await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b1", win=eur(300)
        )
    )
    # loss so far 100: a bet of 400 reaches the limit exactly, one more unit passes it
    exc = await fails(bet(wallet, tenant, "b2", 401), FP, "LOSS_LIMIT_EXCEEDED")
    assert error_info(exc).metadata["remaining"] == "400"
    await bet(wallet, tenant, "b2", 400)
    # a sportsbook-style win credit lowers the loss
    await credit(wallet, tenant, 50, pb.CREDIT_REASON_WIN)
    await bet(wallet, tenant, "b3", 50)
    await fails(bet(wallet, tenant, "b4", 1), FP, "LOSS_LIMIT_EXCEEDED")


async def test_decrease_at_once_increase_and_removal_after_cooling_off(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await wallet.SetProtectionSettings(
        pb.SetProtectionSettingsRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            settings=pb.ProtectionSettings(
                time_zone="Europe/Malta", limit_cooling_off=duration_pb2.Duration(seconds=2)
            ),
        )
    )
    await credit(wallet, tenant, 10_000)
    await set_limit(wallet, tenant, WAGER, DAY, 100)
    low = await set_limit(wallet, tenant, WAGER, DAY, 50)  # a decrease: at once
    assert low.applied and low.limit.amount.minor_units == 50
    high = await set_limit(wallet, tenant, WAGER, DAY, 500)  # an increase: pending
    assert not high.applied and high.limit.amount.minor_units == 50
    assert high.limit.pending_amount.minor_units == 500 and high.limit.HasField("pending_time")
    await bet(wallet, tenant, "b1", 50)
    await fails(bet(wallet, tenant, "b2", 1), FP, "WAGER_LIMIT_EXCEEDED")
    await asyncio.sleep(2.2)
    await bet(wallet, tenant, "b2", 400)  # the raise applies after the cooling-off
    removal = await set_limit(wallet, tenant, WAGER, DAY, 0, remove=True)
    assert not removal.applied and removal.limit.pending_removal
    await fails(bet(wallet, tenant, "b3", 51), FP, "WAGER_LIMIT_EXCEEDED")
    await asyncio.sleep(2.2)
    await bet(wallet, tenant, "b3", 5_000)  # removed
    listed = await wallet.ListLimits(pb.ListLimitsRequest(tenant_id=tenant, player_id="p"))
    assert list(listed.limits) == []
    await fails(
        wallet.GetLimit(
            pb.GetLimitRequest(
                tenant_id=tenant, player_id="p", currency="EUR", kind=WAGER, window=DAY
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "LIMIT_NOT_FOUND",
    )


async def test_day_window_follows_the_tenant_time_zone(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    """Usage one second before local midnight belongs to yesterday; at midnight, to today."""
    zone = "Asia/Kolkata"  # UTC+05:30: local midnight is 18:30 UTC
    await wallet.SetProtectionSettings(
        pb.SetProtectionSettingsRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            settings=pb.ProtectionSettings(
                time_zone=zone, limit_cooling_off=duration_pb2.Duration(seconds=86_400)
            ),
        )
    )
    await credit(wallet, tenant, 10_000)
    r = await set_limit(wallet, tenant, WAGER, DAY, 1_000)
    start = r.limit.window_start_time.ToDatetime(tzinfo=UTC)
    local_midnight = datetime.now(ZoneInfo(zone)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert start == local_midnight
    assert (start.hour, start.minute) == (18, 30)
    assert r.limit.window_end_time.ToDatetime(tzinfo=UTC) - start == timedelta(days=1)
    async with pool.connection() as conn:
        await statements.execute(
            conn,
            limits_sql.usage_write(tenant, "p", "EUR", stakes=700, at=start - timedelta(seconds=1)),
        )
        await statements.execute(
            conn, limits_sql.usage_write(tenant, "p", "EUR", stakes=300, at=start)
        )
    got = await wallet.GetLimit(
        pb.GetLimitRequest(tenant_id=tenant, player_id="p", currency="EUR", kind=WAGER, window=DAY)
    )
    assert got.limit.used.minor_units == 300
    await bet(wallet, tenant, "b1", 700)
    await fails(bet(wallet, tenant, "b2", 1), FP, "WAGER_LIMIT_EXCEEDED")


CONCURRENT = 100


async def test_concurrent_bets_cannot_pass_a_limit_together(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    """100 concurrent bets of 10 against a wager limit of 500 (balance 10,000): exactly 50
    pass, 50 are WAGER_LIMIT_EXCEEDED, the balance is exact (the bets share group commits)."""
    await credit(wallet, tenant, 10_000)
    await set_limit(wallet, tenant, WAGER, DAY, 500)

    async def one(i: int) -> str:
        try:
            await bet(wallet, tenant, f"b{i}", 10)
            return "ok"
        except grpc.aio.AioRpcError as exc:
            return error_info(exc).reason

    before = _batches()
    outcomes = await asyncio.gather(*(one(i) for i in range(CONCURRENT)))
    assert outcomes.count("ok") == 50
    assert outcomes.count("WAGER_LIMIT_EXCEEDED") == 50
    assert await available(wallet, tenant) == 10_000 - 500
    count, total = (a - b for a, b in zip(_batches(), before, strict=True))
    assert total > count, "the bets never shared a group-commit batch"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM outbox WHERE tenant_id = %s AND event_type = %s",
            (tenant, "rg.limit.hit"),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == 50  # one event per refused bet, none for the others


def _batches() -> tuple[float, float]:
    """(batches, requests) of wallet group commits so far in this process."""
    samples = {
        s.name: s.value
        for metric in BATCH_SIZE.collect()
        for s in metric.samples
        if s.labels.get("kind") == "wallet" and s.name.endswith(("_count", "_sum"))
    }
    return samples["croupier_batch_size_count"], samples["croupier_batch_size_sum"]


async def test_bad_limit_input_is_refused_and_nothing_written(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await credit(wallet, tenant, 100)
    for amount, field in ((0, "amount.minor_units"), (-5, "amount.minor_units")):
        exc = await fails(set_limit(wallet, tenant, WAGER, DAY, amount), BAD, "INVALID_AMOUNT")
        assert error_info(exc).metadata["field"] == field
    exc = await fails(set_limit(wallet, tenant, WAGER, 9, 10), BAD, "INVALID_LIMIT_WINDOW")
    assert error_info(exc).metadata["field"] == "window"
    exc = await fails(set_limit(wallet, tenant, 0, DAY, 10), BAD, "INVALID_LIMIT_KIND")
    assert error_info(exc).metadata["field"] == "kind"
    exc = await fails(
        wallet.SetLimit(
            pb.SetLimitRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                kind=WAGER,
                window=DAY,
                amount=eur(10, "USD"),
            )
        ),
        BAD,
        "CURRENCY_NOT_HELD",
    )
    assert error_info(exc).metadata["field"] == "amount.currency"
    exc = await fails(
        wallet.SetProtectionSettings(
            pb.SetProtectionSettingsRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                settings=pb.ProtectionSettings(
                    time_zone="Mars/Olympus", limit_cooling_off=duration_pb2.Duration(seconds=1)
                ),
            )
        ),
        BAD,
        "UNKNOWN_TIME_ZONE",
    )
    assert error_info(exc).metadata["field"] == "settings.time_zone"
    await fails(
        wallet.Credit(
            pb.CreditRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                amount=eur(1),
                reason=77,  # type: ignore[arg-type]
            )
        ),
        BAD,
        "INVALID_REASON",
    )
    listed = await wallet.ListLimits(pb.ListLimitsRequest(tenant_id=tenant, player_id="p"))
    assert list(listed.limits) == []
    s = await wallet.GetProtectionSettings(pb.GetProtectionSettingsRequest(tenant_id=tenant))
    assert s.settings.time_zone == "UTC" and s.settings.limit_cooling_off.seconds == 86_400

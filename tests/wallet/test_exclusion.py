"""Exclusions over gRPC: a timed cooling-off lifts itself, a permanent self-exclusion cannot be
shortened, a closed account takes no bet or deposit but lets the cash out, and credits owed
always land."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import timestamp_pb2

from tests.rpc import error_info, eur, fails, key

FP = grpc.StatusCode.FAILED_PRECONDITION
BAD = grpc.StatusCode.INVALID_ARGUMENT


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(value)
    return t


async def exclude(
    w: WalletServiceStub, tenant: str, kind: int, end: datetime | None = None
) -> pb.SetExclusionResponse:
    req = pb.SetExclusionRequest(
        tenant_id=tenant,
        player_id="p",
        idempotency_key=key(),
        kind=kind,
        reason="asked",  # type: ignore[arg-type]
    )
    if end is not None:
        req.end_time.CopyFrom(ts(end))
    return await w.SetExclusion(req)


async def bet(w: WalletServiceStub, tenant: str, bet_id: str, amount: int) -> object:
    return await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id=bet_id,
            amount=eur(amount),
        )
    )


async def credit(w: WalletServiceStub, tenant: str, amount: int, reason: int = 0) -> object:
    return await w.Credit(
        pb.CreditRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            amount=eur(amount),
            reason=reason,  # type: ignore[arg-type]
        )
    )


async def available(w: WalletServiceStub, tenant: str) -> int:
    r = await w.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    return r.balances[0].available.minor_units


async def test_cooling_off_refuses_bets_and_deposits_then_lifts_itself(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await credit(wallet, tenant, 1_000)
    await bet(wallet, tenant, "open", 100)
    end = datetime.now(UTC) + timedelta(seconds=2)
    r = await exclude(wallet, tenant, pb.EXCLUSION_KIND_COOLING_OFF, end)
    assert r.exclusion.active and r.exclusion.kind == pb.EXCLUSION_KIND_COOLING_OFF
    exc = await fails(bet(wallet, tenant, "b1", 10), FP, "PLAYER_COOLING_OFF")
    assert "until" in error_info(exc).metadata
    await fails(credit(wallet, tenant, 10, pb.CREDIT_REASON_DEPOSIT), FP, "PLAYER_COOLING_OFF")
    await fails(
        wallet.Debit(
            pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(5))
        ),
        FP,
        "PLAYER_COOLING_OFF",
    )
    # what the player is owed still lands: a win credit, the settlement of an open bet
    await credit(wallet, tenant, 50, pb.CREDIT_REASON_WIN)
    await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="open", win=eur(300)
        )
    )
    assert await available(wallet, tenant) == 1_000 - 100 + 50 + 300
    await asyncio.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 0.2)
    await bet(wallet, tenant, "b1", 10)
    await credit(wallet, tenant, 10, pb.CREDIT_REASON_DEPOSIT)
    got = await wallet.GetExclusion(pb.GetExclusionRequest(tenant_id=tenant, player_id="p"))
    assert not got.exclusion.active


async def test_permanent_self_exclusion_cannot_be_shortened(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await credit(wallet, tenant, 1_000)
    await exclude(wallet, tenant, pb.EXCLUSION_KIND_SELF_EXCLUSION)
    await fails(bet(wallet, tenant, "b1", 10), FP, "PLAYER_SELF_EXCLUDED")
    await fails(
        exclude(
            wallet, tenant, pb.EXCLUSION_KIND_COOLING_OFF, datetime.now(UTC) + timedelta(days=1)
        ),
        FP,
        "EXCLUSION_CANNOT_BE_SHORTENED",
    )
    await exclude(wallet, tenant, pb.EXCLUSION_KIND_CLOSURE)
    await fails(bet(wallet, tenant, "b1", 10), FP, "ACCOUNT_CLOSED")


async def test_closed_account_lets_the_cash_out_only(
    wallet: WalletServiceStub, tenant: str
) -> None:
    await credit(wallet, tenant, 700)
    await exclude(wallet, tenant, pb.EXCLUSION_KIND_CLOSURE)
    await fails(bet(wallet, tenant, "b1", 10), FP, "ACCOUNT_CLOSED")
    await fails(credit(wallet, tenant, 10, pb.CREDIT_REASON_DEPOSIT), FP, "ACCOUNT_CLOSED")
    await fails(
        wallet.Debit(
            pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(5))
        ),
        FP,
        "ACCOUNT_CLOSED",
    )
    await credit(wallet, tenant, 25, pb.CREDIT_REASON_REFUND)  # owed: lands
    await wallet.Debit(
        pb.DebitRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            amount=eur(725),
            reason=pb.DEBIT_REASON_WITHDRAWAL,
        )
    )
    assert await available(wallet, tenant) == 0
    await fails(exclude(wallet, tenant, pb.EXCLUSION_KIND_SELF_EXCLUSION), FP, "ACCOUNT_CLOSED")


async def test_bad_exclusion_input_writes_nothing(wallet: WalletServiceStub, tenant: str) -> None:
    await credit(wallet, tenant, 1)
    past = datetime.now(UTC) - timedelta(seconds=5)
    future = datetime.now(UTC) + timedelta(days=1)
    cases = [
        (pb.EXCLUSION_KIND_SELF_EXCLUSION, past, "END_TIME_IN_PAST", "end_time"),
        (pb.EXCLUSION_KIND_COOLING_OFF, None, "MISSING_FIELD", "end_time"),
        (pb.EXCLUSION_KIND_CLOSURE, future, "END_TIME_NOT_ALLOWED", "end_time"),
        (pb.EXCLUSION_KIND_UNSPECIFIED, future, "INVALID_EXCLUSION_KIND", "kind"),
    ]
    for kind, end, reason, field in cases:
        exc = await fails(exclude(wallet, tenant, kind, end), BAD, reason)
        assert error_info(exc).metadata["field"] == field
    await fails(
        wallet.GetExclusion(pb.GetExclusionRequest(tenant_id=tenant, player_id="p")),
        grpc.StatusCode.NOT_FOUND,
        "EXCLUSION_NOT_FOUND",
    )
    await bet(wallet, tenant, "b1", 1)

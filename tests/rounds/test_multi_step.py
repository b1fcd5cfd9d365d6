"""Multi-step rounds: free-spin wins stay pending (not withdrawable) until the final step; the
sweeper finalises rounds left open; every step is balanced and idempotent."""

from __future__ import annotations

import grpc
import pytest
from croupier.wallet.v1 import round_service_pb2 as rpb
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.round_service_pb2_grpc import RoundServiceStub
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.rounds.engine import finalise_overdue
from tests.rpc import error_info, eur, key


@pytest.fixture(scope="module")
def rounds(channel: grpc.aio.Channel) -> RoundServiceStub:
    """The RoundService stub."""
    return RoundServiceStub(channel)


def _step(
    tenant: str, round_id: str, *, bet: int = 0, win: int = 0, final: bool = False, k: str = ""
) -> rpb.PlayRoundStepRequest:
    request = rpb.PlayRoundStepRequest(
        tenant_id=tenant,
        player_id="p",
        idempotency_key=k or key(),
        round_id=round_id,
        game_id="slots",
        final=final,
    )
    if bet:
        request.bet.CopyFrom(eur(bet))
    if win or final:
        request.win.CopyFrom(eur(win))
    return request


async def _available(wallet: WalletServiceStub, tenant: str) -> int:
    b = await wallet.GetBalance(wpb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    return b.balances[0].available.minor_units


async def test_free_spins_are_withdrawable_only_after_the_final_step(
    rounds: RoundServiceStub, wallet: WalletServiceStub, tenant: str
) -> None:
    await wallet.Credit(
        wpb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1_000))
    )
    r = await rounds.PlayRoundStep(_step(tenant, "r1", bet=100))  # the paid spin
    assert (r.available.minor_units, r.pending.minor_units) == (900, 0)
    for win in (50, 0, 120):  # three free spins
        if win:
            r = await rounds.PlayRoundStep(_step(tenant, "r1", win=win))
    assert (r.available.minor_units, r.pending.minor_units) == (900, 170)
    assert await _available(wallet, tenant) == 900  # free-spin wins are not withdrawable yet
    # a withdrawal can take only the available balance
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await wallet.Debit(
            wpb.DebitRequest(
                tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1_000)
            )
        )
    assert error_info(exc.value).reason == "INSUFFICIENT_FUNDS"
    final = _step(tenant, "r1", win=30, final=True, k="final-r1")
    r = await rounds.PlayRoundStep(final)
    assert (r.available.minor_units, r.pending.minor_units) == (1_100, 0)
    again = await rounds.PlayRoundStep(final)  # a retry: same answer, nothing more
    assert again.SerializeToString(deterministic=True) == r.SerializeToString(deterministic=True)
    assert await _available(wallet, tenant) == 1_100

    got = (await rounds.GetRound(rpb.GetRoundRequest(tenant_id=tenant, round_id="r1"))).round
    assert got.state == rpb.ROUND_STATE_FINAL
    assert (got.bets.minor_units, got.wins.minor_units, got.net.minor_units) == (100, 200, 100)
    assert [(s.bet.minor_units, s.win.minor_units, s.final) for s in got.steps] == [
        (100, 0, False),
        (0, 50, False),
        (0, 120, False),
        (0, 30, True),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await rounds.PlayRoundStep(_step(tenant, "r1", win=5))
    assert error_info(exc.value).reason == "ROUND_FINAL"
    tx = await wallet.GetTransaction(
        wpb.GetTransactionRequest(tenant_id=tenant, transaction_id=got.steps[0].transaction_id)
    )
    assert tx.transaction.kind == wpb.TRANSACTION_KIND_ROUND


async def test_bets_use_pending_wins_only_when_the_tenant_allows(
    rounds: RoundServiceStub, wallet: WalletServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    await wallet.Credit(
        wpb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(100))
    )
    await rounds.PlayRoundStep(_step(tenant, "a", bet=100))
    await rounds.PlayRoundStep(_step(tenant, "a", win=80))
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # not allowed: available is 0
        await rounds.PlayRoundStep(_step(tenant, "a", bet=50))
    assert error_info(exc.value).reason == "INSUFFICIENT_FUNDS"
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO round_settings (tenant_id, bets_use_pending) VALUES (%s, true)",
            (tenant,),
        )
    r = await rounds.PlayRoundStep(_step(tenant, "a", bet=50))
    assert (r.available.minor_units, r.pending.minor_units) == (0, 30)
    assert r.round.pending.minor_units == 30
    r = await rounds.PlayRoundStep(_step(tenant, "a", win=0, final=True))
    assert (r.available.minor_units, r.pending.minor_units) == (30, 0)


async def test_sweeper_finalises_rounds_left_open(
    rounds: RoundServiceStub, wallet: WalletServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    await wallet.Credit(
        wpb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(100))
    )
    await rounds.PlayRoundStep(_step(tenant, "left", bet=10))
    await rounds.PlayRoundStep(_step(tenant, "left", win=40))
    await rounds.PlayRoundStep(_step(tenant, "fresh", win=5))
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO round_settings (tenant_id, open_timeout_seconds) VALUES (%s, 60)",
            (tenant,),
        )
        await conn.execute(
            "UPDATE rounds SET opened_at = now() - interval '2 minutes'"
            " WHERE tenant_id = %s AND round_id = 'left'",
            (tenant,),
        )
    done = await finalise_overdue(pool)
    assert (tenant, "left") in done and (tenant, "fresh") not in done
    got = (await rounds.GetRound(rpb.GetRoundRequest(tenant_id=tenant, round_id="left"))).round
    assert got.state == rpb.ROUND_STATE_FINAL and got.finalised_by_sweeper
    assert await _available(wallet, tenant) == 130  # 90 + the released 40; "fresh" still pending


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"round_id": ""}, "round_id", "MISSING_FIELD"),
        ({"bet": eur(-5)}, "bet.minor_units", "INVALID_AMOUNT"),
        ({"win": eur(5, "USD"), "bet": eur(5)}, "win.currency", "CURRENCY_MISMATCH"),
        ({}, "win", "EMPTY_STEP"),
        (
            {"idempotency_key": "system-x", "bet": eur(5)},
            "idempotency_key",
            "RESERVED_IDEMPOTENCY_KEY",
        ),
    ],
)
async def test_bad_steps_are_invalid_argument(
    rounds: RoundServiceStub, tenant: str, change: dict[str, object], field: str, reason: str
) -> None:
    fields: dict[str, object] = {
        "tenant_id": tenant,
        "player_id": "p",
        "idempotency_key": key(),
        "round_id": "x",
    }
    fields.update(change)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await rounds.PlayRoundStep(rpb.PlayRoundStepRequest(**fields))  # type: ignore[arg-type]
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(exc.value)
    assert (info.reason, info.metadata["field"]) == (reason, field)

"""Amounts near int64 and the hold-expiry sweeper, over real gRPC and PostgreSQL.

Every sum a wallet call can create (available + held, held + amount, win credits, releases) is
checked before it is written: refused with AMOUNT_OVERFLOW, never INTERNAL. A hold the sweeper
cannot void is set aside without stopping the sweep for every other tenant. Hold expiry is
measured on the database's clock only.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta

import grpc
import pytest
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from server.money import INT64_MAX, currency_exponents
from tests.rpc import eur, fails, key

IA = grpc.StatusCode.INVALID_ARGUMENT
FP = grpc.StatusCode.FAILED_PRECONDITION
FIVE_E18 = 5 * 10**18  # 5 ETH in minor units (18 decimals)


@pytest.fixture(scope="module", autouse=True)
def eth_currency() -> None:
    """An 18-decimal currency configured the way an operator would."""
    spec = os.environ.get("CROUPIER_EXTRA_CURRENCIES", "")
    if "ETH:" not in spec:
        os.environ["CROUPIER_EXTRA_CURRENCIES"] = ",".join(filter(None, [spec, "ETH:18"]))
        currency_exponents.cache_clear()


def eth(minor: int) -> object:
    return eur(minor, "ETH")


async def credit(w: WalletServiceStub, tenant: str, player: str, minor: int, cur: str = "ETH"):  # type: ignore[no-untyped-def]
    return await w.Credit(
        pb.CreditRequest(
            tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(minor, cur)
        )
    )


async def authorize(  # type: ignore[no-untyped-def]
    w: WalletServiceStub, tenant: str, player: str, bet: str, minor: int, cur: str = "ETH", **kw
):
    return await w.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id=player,
            idempotency_key=key(),
            bet_id=bet,
            round_id="r-" + bet,
            game_id="g1",
            amount=eur(minor, cur),
            **kw,
        )
    )


async def balance(w: WalletServiceStub, tenant: str, player: str) -> tuple[int, int]:
    r = await w.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id=player))
    return r.balances[0].available.minor_units, r.balances[0].held.minor_units


async def wait_for(w: WalletServiceStub, tenant: str, player: str, want: tuple[int, int]) -> None:
    for _ in range(120):  # up to 30 s: a sweep may first go through many bad holds
        if await balance(w, tenant, player) == want:
            return
        await asyncio.sleep(0.25)
    assert await balance(w, tenant, player) == want


async def test_large_hold_repro_second_credit_refused_and_other_tenant_expires(
    wallet: WalletServiceStub, tenant: str
) -> None:
    """Credit 5e18, hold 5e18 (1 s), Credit 5e18 again: the second credit would make
    available + held pass int64 and is refused; another tenant's hold still expires; the
    large hold can be cancelled (never INTERNAL)."""
    ttl = duration_pb2.Duration(seconds=1)
    await credit(wallet, tenant, "whale", FIVE_E18)
    await authorize(wallet, tenant, "whale", "big", FIVE_E18, hold_ttl=ttl)
    await fails(credit(wallet, tenant, "whale", FIVE_E18), IA, "AMOUNT_OVERFLOW")
    other = tenant + "-b"
    await credit(wallet, other, "p", 100, "EUR")
    await authorize(wallet, other, "p", "small", 60, "EUR", hold_ttl=ttl)
    await wait_for(wallet, other, "p", (100, 0))
    # the large hold expired and was voided too (or is cancelled now): never INTERNAL
    try:
        await wallet.CancelBet(
            pb.CancelBetRequest(
                tenant_id=tenant, player_id="whale", idempotency_key=key(), bet_id="big"
            )
        )
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == FP, exc
    await wait_for(wallet, tenant, "whale", (FIVE_E18, 0))


async def test_every_sum_is_checked(wallet: WalletServiceStub, tenant: str) -> None:
    """available + held + amount past int64 is refused on every call that adds money."""
    await credit(wallet, tenant, "p", INT64_MAX - 10)
    await authorize(wallet, tenant, "p", "b", 100)
    assert await balance(wallet, tenant, "p") == (INT64_MAX - 110, 100)
    # credit: available alone has room, available + held has not
    await fails(credit(wallet, tenant, "p", 11), IA, "AMOUNT_OVERFLOW")
    await credit(wallet, tenant, "p", 10)
    # settle: a win that passes int64 with what is held or released
    await fails(
        wallet.SettleBet(
            pb.SettleBetRequest(
                tenant_id=tenant,
                player_id="p",
                idempotency_key=key(),
                bet_id="b",
                capture=eth(0),
                win=eth(1),
            )
        ),
        IA,
        "AMOUNT_OVERFLOW",
    )
    s = await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b",
            capture=eth(100),
            win=eth(100),
        )
    )
    assert (s.balance.available.minor_units, s.balance.held.minor_units) == (INT64_MAX, 0)
    # rollback of a debit that would pass int64 after a credit refilled the account
    await wallet.Debit(
        pb.DebitRequest(tenant_id=tenant, player_id="p", idempotency_key="d1", amount=eth(5))
    )
    await credit(wallet, tenant, "p", 5)
    await fails(
        wallet.RollbackTransaction(
            pb.RollbackTransactionRequest(
                tenant_id=tenant, player_id="p", idempotency_key=key(), target_idempotency_key="d1"
            )
        ),
        FP,
        "AMOUNT_OVERFLOW",
    )
    assert await balance(wallet, tenant, "p") == (INT64_MAX, 0)


async def test_concurrent_batch_with_one_overflow_answers_everyone(
    wallet: WalletServiceStub, tenant: str
) -> None:
    """A group-committed batch with one overflowing credit: that one is refused, the others
    are applied."""
    await credit(wallet, tenant, "rich", INT64_MAX - 100)
    await authorize(wallet, tenant, "rich", "b", 50)
    calls = [credit(wallet, tenant, "rich", 120)] + [
        credit(wallet, tenant, f"p{i}", 7) for i in range(20)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[0], grpc.aio.AioRpcError), results[0]
    assert results[0].code() == IA
    assert all(not isinstance(r, BaseException) for r in results[1:]), results
    assert await balance(wallet, tenant, "rich") == (INT64_MAX - 150, 50)


async def _bad_hold(
    pool: AsyncConnectionPool, tenant: str, player: str, amount: int, age_s: int
) -> uuid.UUID:
    """An open hold, expired `age_s` seconds ago, whose void the database refuses (its
    amount is not held on the account: more than the account can take, or a negative held
    balance). Written directly: no call can create it any more."""
    hold_id = uuid.uuid4()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO holds (hold_id, tenant_id, player_id, bet_id, account_id, currency,"
            " amount, state, expires_at)"
            " SELECT %s, tenant_id, owner, %s, account_id, currency, %s, 'open',"
            "        now() - %s * interval '1 second'"
            "   FROM accounts WHERE tenant_id = %s AND kind = 'player' AND owner = %s",
            (hold_id, f"bad-{hold_id}", amount, age_s, tenant, player),
        )
    return hold_id


def set_aside(reason: str = "AMOUNT_OVERFLOW") -> float:
    """Holds the sweeper of this process set aside for `reason` (the metric)."""
    value = REGISTRY.get_sample_value(
        "croupier_background_rows_set_aside_total", {"job": "hold_expiry", "reason": reason}
    )
    return value or 0.0


async def test_bad_holds_never_stall_the_sweeper(
    wallet: WalletServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    """More than a sweep's worth of holds that cannot be voided, all older than another
    tenant's hold: that hold is still expired; the bad ones are set aside (logged, counted)."""
    await credit(wallet, tenant, "whale", FIVE_E18)
    await credit(wallet, tenant, "small", 10)
    before, refused_before = set_aside(), set_aside("CheckViolation")
    bad = [await _bad_hold(pool, tenant, "whale", FIVE_E18, 3600 + i) for i in range(3)]
    async with pool.connection() as conn:  # 250 more, in one statement
        await conn.execute(
            "INSERT INTO holds (tenant_id, player_id, bet_id, account_id, currency, amount,"
            " state, expires_at)"
            " SELECT tenant_id, owner, 'bad-' || g, account_id, currency, 1000, 'open',"
            "        now() - interval '1 hour'"
            "   FROM accounts, generate_series(1, 250) g"
            "  WHERE tenant_id = %s AND kind = 'player' AND owner = 'small'",
            (tenant,),
        )
    try:
        other = tenant + "-b"
        await credit(wallet, other, "p", 100, "EUR")
        await authorize(
            wallet, other, "p", "small", 60, "EUR", hold_ttl=duration_pb2.Duration(seconds=1)
        )
        await wait_for(wallet, other, "p", (100, 0))
        for _ in range(80):  # another sweep may still be going through the bad ones
            if set_aside() >= before + 3 and set_aside("CheckViolation") >= refused_before + 250:
                break
            await asyncio.sleep(0.25)
        assert set_aside() >= before + 3  # refused by the domain's check
        assert set_aside("CheckViolation") >= refused_before + 250  # refused by the database
        # the bad holds are still open, the accounts untouched
        assert await balance(wallet, tenant, "whale") == (FIVE_E18, 0)
        # cancelling one is refused as an overflow, not INTERNAL
        await fails(
            wallet.CancelBet(
                pb.CancelBetRequest(
                    tenant_id=tenant,
                    player_id="whale",
                    idempotency_key=key(),
                    bet_id=f"bad-{bad[0]}",
                )
            ),
            FP,
            "AMOUNT_OVERFLOW",
        )
    finally:
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM holds WHERE tenant_id = %s", (tenant,))


async def test_expiry_uses_the_database_clock(
    wallet: WalletServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    """A hold's expires_at is the database's transaction time plus the TTL, exactly: the same
    clock the sweeper and SettleBet compare it with (holds.created_at is that time)."""
    await credit(wallet, tenant, "p", 1_000, "EUR")
    results = await asyncio.gather(
        *[
            authorize(
                wallet, tenant, "p", f"b{i}", 10, "EUR", hold_ttl=duration_pb2.Duration(seconds=7)
            )
            for i in range(5)
        ]
    )
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT hold_id, expires_at - created_at, expires_at FROM holds WHERE tenant_id = %s",
            (tenant,),
        )
        rows = {str(h): (d, e) for h, d, e in await cur.fetchall()}
    assert len(rows) == 5
    for r in results:
        gap, stored = rows[r.hold_id]
        assert gap == timedelta(seconds=7), gap
        assert r.expire_time.ToDatetime().replace(tzinfo=stored.tzinfo) == stored

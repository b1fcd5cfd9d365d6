"""Property test of bonus money over gRPC against an in-memory model: random deposits, grants,
bets (settled with partial captures and wins, cancelled), stake debits and their rollbacks,
withdrawals, forfeits and expiries keep cash, bonus, locked and held equal to the model, and
the whole ledger reconciles exactly afterwards."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from fractions import Fraction

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from server.app import App
from server.reconcile import reconcile_ledger
from server.store.database import open_pool
from server.wallet.ledger import Wallet
from tests.rpc import error_info, eur, key
from tests.wallet.test_bonus import later

ORDERS = [
    ("cash", "locked", "bonus"),
    ("bonus", "cash", "locked"),
    ("locked", "bonus", "cash"),
]
_SOURCE = {
    "cash": pb.SPEND_SOURCE_CASH,
    "locked": pb.SPEND_SOURCE_LOCKED,
    "bonus": pb.SPEND_SOURCE_BONUS,
}
WEIGHTS = {"slots": 1_000_000, "roulette": 100_000, "live": 333_333}


def split(total: int, stake: dict[str, int], order: tuple[str, ...]) -> dict[str, int]:
    """The model's proportional split: exact shares, floors, then the units left to the
    largest fractional parts (ties in spend order)."""
    whole = sum(stake.values())
    if whole == 0:
        return {"cash": total, "bonus": 0, "locked": 0}
    exact = {k: Fraction(total * stake[k], whole) for k in order}
    out = {k: int(exact[k]) for k in order}
    left = total - sum(out.values())
    ranked = sorted(
        (k for k in order if stake[k] > 0),
        key=lambda k: (-(exact[k] - int(exact[k])), order.index(k)),
    )
    for k in ranked[:left]:
        out[k] += 1
    return out


@dataclass
class Model:
    order: tuple[str, ...]
    cash: int = 0
    bonus: int = 0
    locked: int = 0
    held: int = 0
    active: str | None = None  # bonus id
    wagered_ppm: int = 0
    requirement: int = 0
    max_conversion: int | None = None
    generation: int = 0  # bumps when a bonus ends
    holds: dict[str, tuple[dict[str, int], int, str]] = field(default_factory=dict)
    debits: list[tuple[str, dict[str, int], int]] = field(default_factory=list)

    def take(self, amount: int) -> dict[str, int]:
        have = {"cash": self.cash, "bonus": self.bonus, "locked": self.locked}
        out = {"cash": 0, "bonus": 0, "locked": 0}
        for k in self.order:
            out[k] = min(amount, have[k])
            amount -= out[k]
        self.cash -= out["cash"]
        self.bonus -= out["bonus"]
        self.locked -= out["locked"]
        return out

    def give(self, parts: dict[str, int], live: bool) -> None:
        if live:
            self.cash += parts["cash"]
            self.bonus += parts["bonus"]
            self.locked += parts["locked"]
        else:
            self.cash += parts["cash"] + parts["locked"]

    def close(self, completed: bool) -> None:
        converted = 0
        if completed:
            cap = self.max_conversion
            converted = self.bonus if cap is None else min(self.bonus, cap)
        self.cash += converted + self.locked
        self.bonus = self.locked = 0
        self.active = None
        self.wagered_ppm = 0
        self.generation += 1


ops = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(1, 20_000)),
        st.tuples(
            st.just("grant"),
            st.integers(1, 20_000),
            st.integers(0, 100),
            st.integers(0, 3),
            st.sampled_from([None, 0, 500, 5_000]),
        ),
        st.tuples(st.just("bet"), st.integers(1, 8_000), st.sampled_from(sorted(WEIGHTS))),
        st.tuples(
            st.just("settle"), st.integers(0, 10), st.integers(0, 100), st.integers(0, 20_000)
        ),
        st.tuples(st.just("cancel"), st.integers(0, 10)),
        st.tuples(st.just("debit"), st.integers(1, 5_000)),
        st.tuples(st.just("rollback"), st.integers(0, 10)),
        st.tuples(st.just("withdraw"), st.integers(1, 5_000)),
        st.just(("forfeit",)),
        st.just(("expire",)),
    ),
    min_size=5,
    max_size=25,
)


async def test_bonus_ledger_matches_the_model(app: App, database_url: str) -> None:
    """Each example runs on its own event loop in a worker thread (hypothesis drives
    synchronous tests), with its own channel and pool to the session's server and database."""

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=list(HealthCheck),
    )
    @given(script=ops, order_index=st.integers(0, len(ORDERS) - 1))
    def check(script: list[tuple[object, ...]], order_index: int) -> None:
        asyncio.run(_example(app.port, database_url, script, order_index))

    await asyncio.to_thread(check)


async def _example(
    port: int, database_url: str, script: list[tuple[object, ...]], order_index: int
) -> None:
    pool = await open_pool(database_url, min_size=1, max_size=2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await _run(WalletServiceStub(channel), Wallet(pool), pool, script, order_index)
        report = await reconcile_ledger(pool)
        assert report.ok, report
    finally:
        await pool.close()


async def _run(
    wallet: WalletServiceStub,
    ledger: Wallet,
    pool: AsyncConnectionPool,
    script: list[tuple[object, ...]],
    order_index: int,
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    order = ORDERS[order_index]
    await wallet.SetBonusSettings(
        pb.SetBonusSettingsRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            settings=pb.BonusSettings(
                spend_order=[_SOURCE[x] for x in order],
                withdrawal_policy=pb.WITHDRAWAL_POLICY_FORFEIT,
            ),
        )
    )
    m = Model(order)
    p = "pp"
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id=p, idempotency_key=key(), amount=eur(1))
    )
    m.cash = 1
    n = 0

    async def refused(call: object, reason: str) -> None:
        try:
            await call  # type: ignore[misc]
        except grpc.aio.AioRpcError as exc:
            assert error_info(exc).reason == reason, (error_info(exc).reason, reason)
            return
        raise AssertionError(f"expected {reason}")

    for step in script:
        n += 1
        op = step[0]
        if op == "deposit":
            amount = int(step[1])  # type: ignore[call-overload]
            await wallet.Credit(
                pb.CreditRequest(
                    tenant_id=tenant, player_id=p, idempotency_key=key(), amount=eur(amount)
                )
            )
            m.cash += amount
        elif op == "grant":
            amount, lock_pct, mult, cap = step[1], step[2], step[3], step[4]
            lock = m.cash * int(lock_pct) // 100  # type: ignore[call-overload]
            req = pb.GrantBonusRequest(
                tenant_id=tenant,
                player_id=p,
                idempotency_key=key(),
                amount=eur(int(amount)),  # type: ignore[call-overload]
                locked_deposit=eur(lock),
                wagering_multiplier=int(mult),  # type: ignore[call-overload]
                wagering_base=pb.WAGERING_BASE_DEPOSIT_PLUS_BONUS,
                default_weight_ppm=0,
                category_weights_ppm=WEIGHTS,
                expire_time=later(),
            )
            if cap is not None:
                req.max_conversion.CopyFrom(eur(int(cap)))  # type: ignore[call-overload]
            if m.active is not None:
                await refused(wallet.GrantBonus(req), "BONUS_ALREADY_ACTIVE")
                continue
            resp = await wallet.GrantBonus(req)
            m.active = resp.bonus.bonus_id
            m.cash -= lock
            m.locked += lock
            m.bonus += int(amount)  # type: ignore[call-overload]
            m.requirement = int(mult) * (int(amount) + lock)  # type: ignore[call-overload]
            m.max_conversion = None if cap is None else int(cap)  # type: ignore[call-overload]
            if m.requirement == 0:
                m.close(completed=True)
        elif op == "bet":
            amount, category = int(step[1]), str(step[2])  # type: ignore[call-overload]
            bet_id = f"b{n}"
            req = pb.AuthorizeBetRequest(
                tenant_id=tenant,
                player_id=p,
                idempotency_key=key(),
                bet_id=bet_id,
                amount=eur(amount),
                metadata={"game_category": category},
            )
            if amount > m.cash + m.bonus + m.locked:
                await refused(wallet.AuthorizeBet(req), "INSUFFICIENT_FUNDS")
                continue
            await wallet.AuthorizeBet(req)
            parts = m.take(amount)
            m.held += amount
            m.holds[bet_id] = (parts, m.generation if parts["cash"] != amount else -1, category)
        elif op == "settle" or op == "cancel":
            if not m.holds:
                continue
            bet_id = sorted(m.holds)[int(step[1]) % len(m.holds)]  # type: ignore[call-overload]
            parts, gen, category = m.holds.pop(bet_id)
            amount = sum(parts.values())
            live = gen == -1 or (gen == m.generation and m.active is not None)
            m.held -= amount
            if op == "cancel":
                await wallet.CancelBet(
                    pb.CancelBetRequest(
                        tenant_id=tenant, player_id=p, idempotency_key=key(), bet_id=bet_id
                    )
                )
                m.give(parts, live)
                continue
            captured = amount * int(step[2]) // 100  # type: ignore[call-overload]
            win = int(step[3])  # type: ignore[call-overload]
            await wallet.SettleBet(
                pb.SettleBetRequest(
                    tenant_id=tenant,
                    player_id=p,
                    idempotency_key=key(),
                    bet_id=bet_id,
                    capture=eur(captured),
                    win=eur(win),
                )
            )
            cap_parts = split(captured, parts, order)
            m.give({k: parts[k] - cap_parts[k] for k in parts}, live)
            m.give(split(win, parts, order), live)
            if m.active is not None and captured > 0:
                m.wagered_ppm += captured * WEIGHTS[category]
                if m.wagered_ppm >= m.requirement * 1_000_000:
                    m.close(completed=True)
        elif op == "debit":
            amount = int(step[1])  # type: ignore[call-overload]
            k = key()
            req = pb.DebitRequest(
                tenant_id=tenant, player_id=p, idempotency_key=k, amount=eur(amount)
            )
            if amount > m.cash + m.bonus + m.locked:
                await refused(wallet.Debit(req), "INSUFFICIENT_FUNDS")
                continue
            await wallet.Debit(req)
            parts = m.take(amount)
            m.debits.append((k, parts, m.generation if parts["cash"] != amount else -1))
        elif op == "rollback":
            if not m.debits:
                continue
            k, parts, gen = m.debits.pop(int(step[1]) % len(m.debits))  # type: ignore[call-overload]
            await wallet.RollbackTransaction(
                pb.RollbackTransactionRequest(
                    tenant_id=tenant, player_id=p, idempotency_key=key(), target_idempotency_key=k
                )
            )
            m.give(parts, gen == -1 or (gen == m.generation and m.active is not None))
        elif op == "withdraw":
            amount = int(step[1])  # type: ignore[call-overload]
            req_w = pb.DebitRequest(
                tenant_id=tenant,
                player_id=p,
                idempotency_key=key(),
                amount=eur(amount),
                reason=pb.DEBIT_REASON_WITHDRAWAL,
            )
            if amount > m.cash + (m.locked if m.active else 0):
                await refused(wallet.Debit(req_w), "INSUFFICIENT_FUNDS")
                continue
            await wallet.Debit(req_w)
            if m.active is not None:
                m.close(completed=False)
            m.cash -= amount
        elif op == "forfeit":
            if m.active is None:
                continue
            await wallet.ForfeitBonus(
                pb.ForfeitBonusRequest(
                    tenant_id=tenant, player_id=p, idempotency_key=key(), bonus_id=m.active
                )
            )
            m.close(completed=False)
        elif op == "expire":
            if m.active is None:
                continue
            async with pool.connection() as conn:
                await conn.execute(
                    "UPDATE bonuses SET expires_at = now() - interval '1 second'"
                    " WHERE tenant_id = %s AND bonus_id = %s",
                    (tenant, m.active),
                )
            bonus_id = m.active
            while await ledger.expire_bonuses() >= 100:
                pass
            for _ in range(200):  # the server's own sweeper may have taken it: wait for its commit
                got_b = await wallet.GetBonus(
                    pb.GetBonusRequest(tenant_id=tenant, player_id=p, bonus_id=bonus_id)
                )
                if got_b.bonus.state == pb.BONUS_STATE_EXPIRED:
                    break
                await asyncio.sleep(0.05)
                await ledger.expire_bonuses()
            m.close(completed=False)
        b = (await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id=p))).balances[
            0
        ]
        got = (b.cash.minor_units, b.bonus.minor_units, b.locked.minor_units, b.held.minor_units)
        assert got == (m.cash, m.bonus, m.locked, m.held), (step, got, m)
        assert b.available.minor_units == m.cash + m.bonus + m.locked

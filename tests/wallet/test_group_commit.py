"""Group commit of wallet writes (server.group_commit, issue 6): AuthorizeBet, SettleBet, Credit
and Debit of concurrent callers share transactions, and nothing about the money, the refusals or
the idempotency changes."""

from __future__ import annotations

import asyncio
import random

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from tests.rpc import error_info, eur, key


def _shared_batches() -> float:
    """Wallet batches of more than one request so far."""
    count = REGISTRY.get_sample_value("croupier_batch_size_count", {"kind": "wallet"}) or 0.0
    alone = (
        REGISTRY.get_sample_value("croupier_batch_size_bucket", {"kind": "wallet", "le": "1.0"})
        or 0.0
    )
    return count - alone


async def test_concurrent_authorizes_of_many_players_are_exact(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    """400 concurrent AuthorizeBets over 8 players (100 minor units each, bets of 1-30), 40
    client retries among them, and 5 bets named twice under different keys: every player's
    available + held is exactly what they had, held is the sum of the successful bets, each
    refusal is INSUFFICIENT_FUNDS or BET_ALREADY_EXISTS, retries get the original bytes, and
    each event carries its caller's trace id."""
    players = [f"p{i}" for i in range(8)]
    for p in players:
        await wallet.Credit(
            pb.CreditRequest(tenant_id=tenant, player_id=p, idempotency_key=key(), amount=eur(100))
        )
    before = _shared_batches()
    rng = random.Random(11)
    reqs = [
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id=rng.choice(players),
            idempotency_key=key(),
            bet_id=f"b{i}",
            amount=eur(rng.randint(1, 30)),
        )
        for i in range(400)
    ]
    for i in range(5):  # the same bet under another key: one of each pair is refused
        twin = pb.AuthorizeBetRequest()
        twin.CopyFrom(reqs[i])
        twin.idempotency_key = key()
        reqs.append(twin)
    sends = reqs + rng.sample(reqs, 40)
    rng.shuffle(sends)

    async def send(r: pb.AuthorizeBetRequest) -> tuple[str, bytes]:
        try:
            reply = await wallet.AuthorizeBet(
                r, metadata=(("x-trace-id", f"t-{r.idempotency_key}"),)
            )
            return "ok", reply.SerializeToString(deterministic=True)
        except grpc.aio.AioRpcError as exc:
            return error_info(exc).reason, b""

    outcomes = await asyncio.gather(*(send(r) for r in sends))
    assert _shared_batches() > before, "no wallet batch of more than one formed"

    first: dict[str, tuple[str, bytes]] = {}
    for r, outcome in zip(sends, outcomes, strict=True):
        assert first.setdefault(r.idempotency_key, outcome) == outcome  # a retry: same answer
    assert {reason for reason, _ in first.values()} <= {
        "ok",
        "INSUFFICIENT_FUNDS",
        "BET_ALREADY_EXISTS",
    }
    by_key = {r.idempotency_key: r for r in reqs}
    held: dict[str, int] = dict.fromkeys(players, 0)
    bets_ok: dict[str, int] = {}
    for k, (reason, _) in first.items():
        if reason == "ok":
            r = by_key[k]
            held[r.player_id] += r.amount.minor_units
            bets_ok[r.bet_id] = bets_ok.get(r.bet_id, 0) + 1
    assert all(n == 1 for n in bets_ok.values())  # a bet_id holds money once
    for p in players:
        b = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id=p))
        assert b.balances[0].held.minor_units == held[p]
        assert b.balances[0].available.minor_units == 100 - held[p]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload->>'bet_id', trace_id FROM outbox"
            " WHERE tenant_id = %s AND event_type = 'wallet.bet.authorized'",
            (tenant,),
        )
        traces = dict(await cur.fetchall())
    for k, (reason, _) in first.items():
        if reason == "ok":
            assert traces[by_key[k].bet_id] == f"t-{k}"


async def test_batched_bets_racing_their_cancels(wallet: WalletServiceStub, tenant: str) -> None:
    """Bets and their cancels sent at once, for one player: whatever order they meet in, every
    hold ends cancelled (a cancel before its bet leaves a tombstone, and the bet is then
    refused BET_CANCELLED) and the player has all the money available again."""
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(500))
    )
    bets = [f"c{i}" for i in range(30)]

    async def authorize(bet: str) -> str:
        try:
            await wallet.AuthorizeBet(
                pb.AuthorizeBetRequest(
                    tenant_id=tenant,
                    player_id="p",
                    idempotency_key=key(),
                    bet_id=bet,
                    amount=eur(10),
                )
            )
            return "ok"
        except grpc.aio.AioRpcError as exc:
            return error_info(exc).reason

    async def cancel(bet: str) -> str:
        await asyncio.sleep(random.random() / 1000)
        try:
            await wallet.CancelBet(
                pb.CancelBetRequest(
                    tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id=bet
                )
            )
            return "ok"
        except grpc.aio.AioRpcError as exc:
            return error_info(exc).reason

    outcomes = await asyncio.gather(*(authorize(b) for b in bets), *(cancel(b) for b in bets))
    assert set(outcomes[:30]) <= {"ok", "BET_CANCELLED"}
    assert set(outcomes[30:]) == {"ok"}
    b = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    assert b.balances[0].available.minor_units == 500
    assert b.balances[0].held.minor_units == 0


async def test_concurrent_settles_credits_and_debits_are_exact(
    wallet: WalletServiceStub, tenant: str
) -> None:
    """For 6 players at once: 20 bets each settled with random captures and wins, interleaved
    with credits and debits (some refused INSUFFICIENT_FUNDS): every balance is exactly the
    sum of what the successful calls said they did."""
    players = [f"s{i}" for i in range(6)]
    for p in players:
        await wallet.Credit(
            pb.CreditRequest(tenant_id=tenant, player_id=p, idempotency_key=key(), amount=eur(300))
        )
    rng = random.Random(5)
    bets = [(p, f"{p}-b{i}", rng.randint(1, 10)) for p in players for i in range(20)]
    await asyncio.gather(
        *(
            wallet.AuthorizeBet(
                pb.AuthorizeBetRequest(
                    tenant_id=tenant, player_id=p, idempotency_key=key(), bet_id=b, amount=eur(a)
                )
            )
            for p, b, a in bets
        )
    )
    expected = dict.fromkeys(players, 300 - 0)  # available + held after everything
    calls = []
    for p, b, a in bets:
        win = rng.choice([0, 0, 5, 40])
        capture = rng.randint(1, a)
        expected[p] += win - capture
        calls.append(
            wallet.SettleBet(
                pb.SettleBetRequest(
                    tenant_id=tenant,
                    player_id=p,
                    idempotency_key=key(),
                    bet_id=b,
                    capture=eur(capture),
                    win=eur(win),
                )
            )
        )
    moves = [(rng.choice(players), rng.choice(["credit", "debit"]), rng.randint(1, 400))]
    moves += [
        (rng.choice(players), rng.choice(["credit", "debit"]), rng.randint(1, 400))
        for _ in range(39)
    ]

    async def move(p: str, kind: str, amount: int) -> int:
        try:
            if kind == "credit":
                await wallet.Credit(
                    pb.CreditRequest(
                        tenant_id=tenant, player_id=p, idempotency_key=key(), amount=eur(amount)
                    )
                )
                return amount
            await wallet.Debit(
                pb.DebitRequest(
                    tenant_id=tenant, player_id=p, idempotency_key=key(), amount=eur(amount)
                )
            )
            return -amount
        except grpc.aio.AioRpcError as exc:
            assert error_info(exc).reason == "INSUFFICIENT_FUNDS"
            return 0

    results = await asyncio.gather(*calls, *(move(*m) for m in moves))
    for (p, _, _), delta in zip(moves, results[len(calls) :], strict=True):
        expected[p] += delta
    for p in players:
        b = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id=p))
        assert b.balances[0].held.minor_units == 0
        assert b.balances[0].available.minor_units == expected[p]

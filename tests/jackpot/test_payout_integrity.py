"""Payout integrity over real gRPC: system-owned payout credits, separate idempotency key spaces
per service, a payout saga that never holds two pooled connections, the blocked-player check in
the credit's transaction, refusals that stay payable, and reconcile of wins against the ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import grpc
import psycopg
import pytest
from croupier.common.v1 import account_pb2
from croupier.events.v1 import subscription_service_pb2 as spb
from croupier.events.v1.subscription_service_pb2_grpc import SubscriptionServiceStub
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from client.cli import main
from server.app import build_server
from server.store import idempotency_sql
from server.store.database import load_migrations, migrate, open_pool
from tests.jackpot.conftest import contribution, create, tier
from tests.jackpot.test_payout import balance, credits_for, hit, wait_state
from tests.rpc import eur, fails, key
from tests.scratch import scratch_database

ROOT = Path(__file__).resolve().parents[2]


async def set_status(wallet: WalletServiceStub, tenant: str, player: str, status: int) -> None:
    await wallet.SetPlayerStatus(
        wpb.SetPlayerStatusRequest(
            tenant_id=tenant, player_id=player, idempotency_key=key(), status=status
        )
    )


async def credit(wallet: WalletServiceStub, tenant: str, player: str, amount: int) -> None:
    await wallet.Credit(
        wpb.CreditRequest(
            tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(amount)
        )
    )


def _reconcile(database_url: str) -> tuple[int, dict[str, object]]:
    out = StringIO()
    with redirect_stdout(out):
        try:
            code = main(["reconcile", "--database-url", database_url])
        except SystemExit as exc:
            code = int(exc.code or 0)
    text = out.getvalue()
    return code, json.loads(text) if text.strip() else {}


# -- system-owned payout credits ----------------------------------------------------------------


async def test_a_paid_jackpot_credit_cannot_be_rolled_back_by_the_tenant(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    j = await create(jackpot, tenant, tier(seed_minor_units=5_000))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "winner")
    done = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_CREDITED)
    for target in (
        {"target_idempotency_key": f"jp-payout-{win.win_id}"},
        {"target_transaction_id": done.wallet_transaction_id},
    ):
        await fails(
            wallet.RollbackTransaction(
                wpb.RollbackTransactionRequest(
                    tenant_id=tenant, player_id="winner", idempotency_key=key(), **target
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "TRANSACTION_NOT_REVERSIBLE",
        )
    assert await balance(wallet, tenant, "winner") == 5_000
    again = await jackpot.GetWin(pb.GetWinRequest(tenant_id=tenant, win_id=win.win_id))
    assert again.win.payout_state == pb.PAYOUT_STATE_CREDITED
    assert await credits_for(pool, tenant, win.win_id) == 1


async def test_the_database_refuses_to_reverse_a_payout_credit(
    jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    """Whatever path writes it, a rollback row targeting a payout credit is refused."""
    j = await create(jackpot, tenant, tier(seed_minor_units=300))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "winner")
    done = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_CREDITED)
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.RestrictViolation):
            await conn.execute(
                "INSERT INTO transactions (tenant_id, player_id, kind, currency, amount,"
                " target_transaction_id) VALUES (%s, 'winner', 'rollback', 'EUR', 300, %s)",
                (tenant, done.wallet_transaction_id),
            )


async def test_a_payout_key_cannot_be_tombstoned_before_the_saga_credits_it(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    # the player is blocked, so the win waits (owed) and its key is still unused
    await set_status(wallet, tenant, "held-back", account_pb2.PLAYER_STATUS_BLOCKED)
    j = await create(jackpot, tenant, tier(seed_minor_units=4_321))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "held-back")
    await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_FAILED)
    await fails(
        wallet.RollbackTransaction(
            wpb.RollbackTransactionRequest(
                tenant_id=tenant,
                player_id="held-back",
                idempotency_key=key(),
                target_idempotency_key=f"jp-payout-{win.win_id}",
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TRANSACTION_NOT_REVERSIBLE",
    )
    await set_status(wallet, tenant, "held-back", account_pb2.PLAYER_STATUS_ACTIVE)
    r = await jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id))
    assert r.win.payout_state == pb.PAYOUT_STATE_CREDITED, r.win
    assert await balance(wallet, tenant, "held-back") == 4_321
    assert await credits_for(pool, tenant, win.win_id) == 1


async def test_client_writes_may_not_use_system_keys(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier(seed_minor_units=100))
    for idem in (f"jp-payout-{uuid.uuid4()}", "system-anything"):
        await fails(
            wallet.Credit(
                wpb.CreditRequest(
                    tenant_id=tenant, player_id="p", idempotency_key=idem, amount=eur(10)
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "RESERVED_IDEMPOTENCY_KEY",
        )
        await fails(
            jackpot.Contribute(contribution(tenant, j.jackpot_id, 1_000, idem=idem)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "RESERVED_IDEMPOTENCY_KEY",
        )
    # a later win's payout key cannot be taken in advance either
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "p")
    await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_CREDITED)
    assert await balance(wallet, tenant, "p") == 100


async def test_reconcile_fails_when_a_win_and_the_ledger_disagree(
    jackpot: JackpotServiceStub,
    wallet: WalletServiceStub,
    tenant: str,
    pool: AsyncConnectionPool,
    database_url: str,
) -> None:
    await set_status(wallet, tenant, "owed", account_pb2.PLAYER_STATUS_BLOCKED)
    j = await create(jackpot, tenant, tier(seed_minor_units=900))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "owed")
    await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_FAILED)
    _, report = await asyncio.to_thread(_reconcile, database_url)
    assert win.win_id not in {w["win_id"] for w in report.get("wins", [])}  # type: ignore[attr-defined]
    # a win that says CREDITED without its credit in the ledger
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE jp_wins SET payout_state = 'credited' WHERE win_id = %s", (win.win_id,)
        )
    try:
        code, report = await asyncio.to_thread(_reconcile, database_url)
    finally:
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE jp_wins SET payout_state = 'failed' WHERE win_id = %s", (win.win_id,)
            )
    assert code == 3 and report["ok"] is False
    bad = [w for w in report["wins"] if w["win_id"] == win.win_id]  # type: ignore[attr-defined]
    assert len(bad) == 1 and bad[0]["credits"] == 0 and bad[0]["amount_minor_units"] == 900


# -- one idempotency key space per service ------------------------------------------------------


async def test_the_same_key_may_name_a_debit_and_a_contribute(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str
) -> None:
    await credit(wallet, tenant, "p1", 10_000)
    j = await create(jackpot, tenant, tier(seed_minor_units=1_000))
    shared = key()
    debit = wpb.DebitRequest(
        tenant_id=tenant, player_id="p1", idempotency_key=shared, amount=eur(2_000)
    )
    d = await wallet.Debit(debit)
    c = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 2_000, idem=shared))
    assert c.tiers[0].contribution.minor_units == 20
    # each replays its own response
    assert (await wallet.Debit(debit)).transaction_id == d.transaction_id
    assert await balance(wallet, tenant, "p1") == 8_000


async def test_a_wallet_rollback_cannot_tombstone_a_contribute_key(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier(seed_minor_units=1_000))
    idem = key()
    r = await wallet.RollbackTransaction(
        wpb.RollbackTransactionRequest(
            tenant_id=tenant, player_id="p1", idempotency_key=key(), target_idempotency_key=idem
        )
    )
    assert r.outcome == wpb.ROLLBACK_OUTCOME_TOMBSTONED
    c = await jackpot.Contribute(contribution(tenant, j.jackpot_id, 5_000, idem=idem))
    assert c.tiers[0].contribution.minor_units == 50
    # the wallet key stays tombstoned
    await fails(
        wallet.Debit(
            wpb.DebitRequest(tenant_id=tenant, player_id="p1", idempotency_key=idem, amount=eur(1))
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TRANSACTION_ROLLED_BACK",
    )


async def test_the_scope_migration_keeps_existing_records_valid(database_url: str) -> None:
    """Records stored before key spaces existed keep answering the same way afterwards."""
    del database_url  # only to run after the session's database exists
    with scratch_database(
        "croupier_scope", ROOT / ".data" / f"test-postgres-scope-{os.getpid()}", remove=True
    ) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for m in load_migrations():
                if m.version >= 402:
                    break
                await conn.execute(m.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            legacy = [
                ("k-debit", "Debit", "done"),
                ("k-contribute", "Contribute", "done"),
                ("k-sub", "CreateSubscription", "done"),
                ("jp-payout-x", "JackpotPayout", "done"),
                ("k-tomb", "", "tombstone"),
            ]
            for k, method, state in legacy:
                await conn.execute(
                    "INSERT INTO idempotency_records (tenant_id, idempotency_key, method,"
                    " fingerprint, state, grpc_code, response) VALUES ('t', %s, %s, %s, %s, %s,"
                    " %s)",
                    (
                        k,
                        method,
                        None if state == "tombstone" else b"fp",
                        state,
                        None if state == "tombstone" else 0,
                        None if state == "tombstone" else b"reply",
                    ),
                )
        assert [n for n in await migrate(url) if n.startswith("0402")] == [
            "0402_idempotency_scopes.sql"
        ]
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            expected = {
                "k-debit": "wallet",
                "k-contribute": "jackpot",
                "k-sub": "webhook",
                "jp-payout-x": "system",
                "k-tomb": "wallet",
            }
            for k, scope in expected.items():
                got = await idempotency_sql.fetch(conn, "t", scope, k)
                assert got is not None, (k, scope)
                if k != "k-tomb":
                    assert (got.fingerprint, got.grpc_code, got.response) == (b"fp", 0, b"reply")
                else:
                    assert got.state == "tombstone"
            assert await idempotency_sql.fetch(conn, "t", "jackpot", "k-debit") is None


# -- a pool of one connection --------------------------------------------------------------------


Stubs = tuple[JackpotServiceStub, WalletServiceStub, SubscriptionServiceStub]


@pytest.fixture
async def tiny(database_url: str) -> AsyncIterator[Stubs]:
    """A second server over a pool of at most ONE connection (same database)."""
    p = await open_pool(database_url, min_size=1, max_size=1)
    app = await build_server(p, "127.0.0.1:0", hold_sweep_seconds=0.2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            yield JackpotServiceStub(ch), WalletServiceStub(ch), SubscriptionServiceStub(ch)
    finally:
        await app.server.stop(0)
        for t in app.tasks:
            t.cancel()
        if app.payouts is not None:
            await app.payouts.close()
        await p.close()


async def test_payouts_complete_with_a_pool_of_one_connection(
    tiny: Stubs, tenant: str, pool: AsyncConnectionPool
) -> None:
    jackpot, wallet, _ = tiny
    await set_status(wallet, tenant, "blocked", account_pb2.PLAYER_STATUS_BLOCKED)
    j = await create(jackpot, tenant, tier(seed_minor_units=100), tier("minor", seed_minor_units=7))
    wins = [
        await hit(jackpot, tenant, p.pool_id, who) for p in j.pools for who in ("blocked", "free")
    ]

    async def payout_all() -> list[pb.PayoutResponse]:
        return await asyncio.gather(
            *(
                jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=w.win_id))
                for w in wins
                for _ in range(4)
            )
        )

    # the blocked-player branch, concurrent Payout calls: all answer well within the pool's
    # 30 s acquisition timeout
    replies = await asyncio.wait_for(payout_all(), 15)
    states = {(r.win.player_id, r.win.payout_state) for r in replies}
    assert states == {("blocked", pb.PAYOUT_STATE_FAILED), ("free", pb.PAYOUT_STATE_CREDITED)}
    await set_status(wallet, tenant, "blocked", account_pb2.PLAYER_STATUS_ACTIVE)
    replies = await asyncio.wait_for(payout_all(), 15)
    assert {r.win.payout_state for r in replies} == {pb.PAYOUT_STATE_CREDITED}
    assert await balance(wallet, tenant, "blocked") == 107
    assert await balance(wallet, tenant, "free") == 107
    for w in wins:
        assert await credits_for(pool, tenant, w.win_id) == 1


async def test_every_service_works_concurrently_with_a_pool_of_one_connection(
    tiny: Stubs, tenant: str
) -> None:
    """No path holds one pooled connection while waiting for another: with a pool of one,
    concurrent wallet writes (group-committed), contributions (batched), a hit and its
    payout, subscription writes, reads and the hold-expiry sweeper all complete."""
    jackpot, wallet, subs = tiny
    j = await create(jackpot, tenant, tier(seed_minor_units=50))
    players = [f"p{i}" for i in range(4)]

    async def player_round(player: str) -> None:
        await credit(wallet, tenant, player, 1_000)
        await wallet.Debit(
            wpb.DebitRequest(
                tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(100)
            )
        )
        await wallet.AuthorizeBet(
            wpb.AuthorizeBetRequest(
                tenant_id=tenant,
                player_id=player,
                idempotency_key=key(),
                bet_id=f"{player}-settled",
                amount=eur(200),
            )
        )
        await wallet.SettleBet(
            wpb.SettleBetRequest(
                tenant_id=tenant,
                player_id=player,
                idempotency_key=key(),
                bet_id=f"{player}-settled",
                capture=eur(200),
                win=eur(300),
            )
        )
        await wallet.AuthorizeBet(
            wpb.AuthorizeBetRequest(
                tenant_id=tenant,
                player_id=player,
                idempotency_key=key(),
                bet_id=f"{player}-cancelled",
                amount=eur(50),
            )
        )
        await wallet.CancelBet(
            wpb.CancelBetRequest(
                tenant_id=tenant,
                player_id=player,
                idempotency_key=key(),
                bet_id=f"{player}-cancelled",
            )
        )
        await wallet.AuthorizeBet(
            wpb.AuthorizeBetRequest(
                tenant_id=tenant,
                player_id=player,
                idempotency_key=key(),
                bet_id=f"{player}-expired",
                amount=eur(10),
                hold_ttl=duration_pb2.Duration(seconds=1),
            )
        )
        idem = key()
        await wallet.Debit(
            wpb.DebitRequest(
                tenant_id=tenant, player_id=player, idempotency_key=idem, amount=eur(5)
            )
        )
        await wallet.RollbackTransaction(
            wpb.RollbackTransactionRequest(
                tenant_id=tenant,
                player_id=player,
                idempotency_key=key(),
                target_idempotency_key=idem,
            )
        )
        await asyncio.gather(
            *(
                jackpot.Contribute(contribution(tenant, j.jackpot_id, 100, player=player))
                for _ in range(3)
            )
        )
        await wallet.ListTransactions(
            wpb.ListTransactionsRequest(tenant_id=tenant, player_id=player)
        )

    async def subscribe_and_delete() -> None:
        # the subscription is deleted again so no later test delivers to it
        made = await subs.CreateSubscription(
            spb.CreateSubscriptionRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                callback_url="http://127.0.0.1:9/hook",
                secret="s" * 32,
                event_types=["wallet.*"],
            )
        )
        await subs.DeleteSubscription(
            spb.DeleteSubscriptionRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                subscription_id=made.subscription.subscription_id,
            )
        )

    async def tour() -> None:
        await asyncio.gather(*(player_round(p) for p in players), subscribe_and_delete())
        win = await hit(jackpot, tenant, j.pools[0].pool_id, "p0")
        await asyncio.gather(
            *(
                jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id))
                for _ in range(4)
            )
        )

    await asyncio.wait_for(tour(), 20)
    # 1000 - 100 - 200 + 300 - 10 (held, then released by the sweeper) + the jackpot
    for player in players:
        for _ in range(100):
            r = await wallet.GetBalance(wpb.GetBalanceRequest(tenant_id=tenant, player_id=player))
            if r.balances[0].held.minor_units == 0:
                break
            await asyncio.sleep(0.1)
        assert r.balances[0].held.minor_units == 0
    assert await balance(wallet, tenant, "p1") == 1_000
    assert await balance(wallet, tenant, "p0") > 1_000


# -- the status check and the credit are one transaction ----------------------------------------


async def test_a_block_committed_before_the_credit_is_honoured(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    await credit(wallet, tenant, "late-block", 1)
    j = await create(jackpot, tenant, tier(seed_minor_units=600))
    async with await psycopg.AsyncConnection.connect(pool.conninfo) as holder:
        # hold the winner's account lock: the payout starts and waits for it
        await holder.execute(
            "SELECT 1 FROM accounts WHERE tenant_id = %s AND owner = %s FOR UPDATE",
            (tenant, "late-block"),
        )
        win = await hit(jackpot, tenant, j.pools[0].pool_id, "late-block")
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'citus'")
            on_citus = bool((await cur.fetchone() or (0,))[0])
        # on Citus the lock wait happens on the worker that holds the tenant's shard
        activity = "citus_stat_activity" if on_citus else "pg_stat_activity"
        for _ in range(200):
            async with pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT count(*) FROM {activity} WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database() AND query ILIKE %s",
                    ("%FROM %accounts%",),
                )
                row = await cur.fetchone()
            if row and row[0] > 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the payout never waited for the account lock")
        # the operator's block commits while the payout is in flight
        await set_status(wallet, tenant, "late-block", account_pb2.PLAYER_STATUS_BLOCKED)
        await holder.rollback()
    failed = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_FAILED)
    assert failed.failure_reason == "PLAYER_BLOCKED"
    assert await credits_for(pool, tenant, win.win_id) == 0
    assert await balance(wallet, tenant, "late-block") == 1


# -- a refused payout stays payable ---------------------------------------------------------------


async def test_a_payout_refused_for_overflow_is_paid_once_the_balance_allows(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    await credit(wallet, tenant, "rich", 2**63 - 2)
    j = await create(jackpot, tenant, tier(seed_minor_units=10))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "rich")
    failed = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_FAILED)
    assert failed.failure_reason == "AMOUNT_OVERFLOW"
    again = await jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id))
    assert again.win.payout_state == pb.PAYOUT_STATE_FAILED
    await wallet.Debit(
        wpb.DebitRequest(
            tenant_id=tenant, player_id="rich", idempotency_key=key(), amount=eur(1_000)
        )
    )
    replies = await asyncio.gather(
        *(jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id)) for _ in range(4))
    )
    assert {r.win.payout_state for r in replies} == {pb.PAYOUT_STATE_CREDITED}
    assert await credits_for(pool, tenant, win.win_id) == 1
    assert await balance(wallet, tenant, "rich") == 2**63 - 2 - 1_000 + 10

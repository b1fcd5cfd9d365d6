"""Single-shard money on Citus: every wallet write (AuthorizeBet, SettleBet, CancelBet, Credit,
Debit, RollbackTransaction, SetPlayerStatus) is one transaction on one worker, executed by the
router planner; no call needs a two-phase commit. Proven from what the coordinator sends to
the workers (citus.log_remote_commands), from the plans (EXPLAIN), and from Citus's executor
counters (citus_stat_counters: no multi-shard execution)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from croupier.common.v1 import account_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from tests.citus.conftest import RemoteLog
from tests.rpc import eur, key


def _servers(commands: list[tuple[str, str]]) -> set[str]:
    return {server for server, _ in commands}


async def _one_node(
    log: RemoteLog, name: str, call: Callable[[], Awaitable[Any]]
) -> tuple[Any, list[tuple[str, str]]]:
    log.take()
    reply = await call()
    commands = log.take()
    assert commands, f"{name}: nothing reached a worker"
    brief = [(s, c[:160]) for s, c in commands][:30]
    assert len(_servers(commands)) == 1, f"{name} touched {_servers(commands)}: {brief}"
    prepared = [c for _, c in commands if c.upper().startswith("PREPARE TRANSACTION")]
    assert not prepared, f"{name} needed a two-phase commit: {prepared} {brief}"
    return reply, commands


async def test_every_wallet_write_is_one_transaction_on_one_node(
    logged_wallet: WalletServiceStub, logged_pool: tuple[AsyncConnectionPool, RemoteLog]
) -> None:
    pool, log = logged_pool
    w = logged_wallet
    t, p = "t-single-shard", "p1"
    seen: dict[str, set[str]] = {}

    async def run(name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        reply, commands = await _one_node(log, name, call)
        seen[name] = _servers(commands)
        return reply

    def ids(**kw: str) -> dict[str, str]:
        return {"tenant_id": t, "player_id": p, "idempotency_key": key(), **kw}

    await run("Credit", lambda: w.Credit(pb.CreditRequest(**ids(), amount=eur(10_000))))
    await run(
        "AuthorizeBet",
        lambda: w.AuthorizeBet(
            pb.AuthorizeBetRequest(**ids(bet_id="b1", round_id="r1", game_id="g"), amount=eur(500))
        ),
    )
    await run(
        "SettleBet",
        lambda: w.SettleBet(
            pb.SettleBetRequest(
                **ids(bet_id="b1", round_id="r1", game_id="g"), capture=eur(500), win=eur(1_200)
            )
        ),
    )
    await run(
        "AuthorizeBet",
        lambda: w.AuthorizeBet(
            pb.AuthorizeBetRequest(**ids(bet_id="b2", round_id="r2", game_id="g"), amount=eur(300))
        ),
    )
    await run(
        "CancelBet",
        lambda: w.CancelBet(pb.CancelBetRequest(**ids(bet_id="b2", round_id="r2", game_id="g"))),
    )
    debit = await run("Debit", lambda: w.Debit(pb.DebitRequest(**ids(), amount=eur(700))))
    await run(
        "RollbackTransaction",
        lambda: w.RollbackTransaction(
            pb.RollbackTransactionRequest(**ids(), target_transaction_id=debit.transaction_id)
        ),
    )
    await run(
        "SetPlayerStatus",
        lambda: w.SetPlayerStatus(
            pb.SetPlayerStatusRequest(**ids(), status=account_pb2.PLAYER_STATUS_BLOCKED)
        ),
    )
    # a replay (same key, same request) is one node too
    k = key()
    req = pb.CreditRequest(tenant_id=t, player_id=p, idempotency_key=k, amount=eur(1))
    await run("Credit", lambda: w.Credit(req))
    await run("Credit replay", lambda: w.Credit(req))
    # every call of the tenant went to the same worker: its shard group's node
    assert len(set().union(*seen.values())) == 1, seen

    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT nodeport FROM citus_shards WHERE table_name = 'accounts'::regclass"
            "   AND shardid = get_shard_id_for_distribution_column('accounts', %s::text)",
            (t,),
        )
        row = await cur.fetchone()
    assert row is not None and set().union(*seen.values()) == {f"127.0.0.1:{row[0]}"}


async def test_group_commit_batches_stay_in_one_shard_group(
    logged_wallet: WalletServiceStub, logged_pool: tuple[AsyncConnectionPool, RemoteLog]
) -> None:
    """Concurrent credits of many players of two tenants (on different workers): batches are
    formed per tenant, so no transaction needs a two-phase commit."""
    pool, log = logged_pool
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT t, nodeport FROM unnest(ARRAY['ta-0','ta-1','ta-2','ta-3','ta-4','ta-5',"
            " 'ta-6','ta-7']) t, citus_shards s WHERE s.table_name = 'accounts'::regclass"
            "   AND s.shardid = get_shard_id_for_distribution_column('accounts', t)"
        )
        rows = await cur.fetchall()
    by_node: dict[int, str] = {}
    for tenant, port in rows:
        by_node.setdefault(int(port), str(tenant))
    assert len(by_node) == 2, rows
    tenants = list(by_node.values())
    log.take()
    replies = await asyncio.gather(
        *(
            logged_wallet.Credit(
                pb.CreditRequest(
                    tenant_id=tenants[i % 2],
                    player_id=f"p{i % 7}",
                    idempotency_key=key(),
                    amount=eur(10),
                )
            )
            for i in range(120)
        )
    )
    assert len(replies) == 120
    commands = log.take()
    assert _servers(commands) == {f"127.0.0.1:{port}" for port in by_node}
    prepared = [c for _, c in commands if c.upper().startswith("PREPARE TRANSACTION")]
    assert not prepared, prepared


async def test_wallet_statements_are_router_plans(
    logged_pool: tuple[AsyncConnectionPool, RemoteLog],
) -> None:
    """The statements of a bet (lock the account with the bet's hold, journal, postings,
    hold, idempotency record, outbox) plan as one task on one shard."""
    pool, _ = logged_pool
    t = "t-explain"
    statements = [
        "SELECT a.account_id, a.available, a.held, p.status,"
        " (SELECT h.state FROM holds h WHERE h.tenant_id = %(t)s AND h.bet_id = 'b')"
        " FROM accounts a JOIN players p ON p.tenant_id = a.tenant_id AND p.player_id = a.owner"
        " WHERE a.tenant_id = %(t)s AND a.kind = 'player' AND a.owner = 'p' AND a.currency = 'EUR'"
        " FOR UPDATE OF a",
        "INSERT INTO postings (tenant_id, transaction_id, account_id, bucket, currency, amount)"
        " SELECT a.tenant_id, gen_random_uuid(), a.account_id, l.b, 'EUR', l.m FROM accounts a"
        " JOIN unnest(ARRAY[1, NULL]::bigint[], ARRAY[NULL, 'house_game']::text[],"
        " ARRAY['available', 'available']::text[], ARRAY[-5, 5]::bigint[], ARRAY[0, 1]::int[])"
        " AS l(a, k, b, m, o) ON a.account_id = l.a OR (l.a IS NULL AND a.kind = l.k"
        " AND a.owner = '' AND a.currency = 'EUR') WHERE a.tenant_id = %(t)s ORDER BY l.o",
        "SELECT t.transaction_id FROM transactions t JOIN postings p"
        " ON p.tenant_id = t.tenant_id AND p.transaction_id = t.transaction_id"
        " JOIN accounts a ON a.tenant_id = p.tenant_id AND a.account_id = p.account_id"
        " WHERE t.tenant_id = %(t)s",
        "SELECT 1 FROM idempotency_records WHERE tenant_id = %(t)s AND idempotency_key = 'k'",
    ]
    async with pool.connection() as conn:
        for sql in statements:
            cur = await conn.execute("EXPLAIN (COSTS OFF) " + sql.replace("%(t)s", f"'{t}'"))
            plan = "\n".join(str(r[0]) for r in await cur.fetchall())
            assert "Task Count: 1" in plan, plan
            assert "Citus Adaptive" in plan, plan

"""Writes sent as one statement (server.store.statements): the rules that make it safe, on
the real schema: foreign keys and the balance trigger run when the combined statement ends,
and two writes of one table are never combined."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from server.store import limits_sql, statements, wallet_sql
from server.store.statements import Write
from server.store.wallet_sql import Leg
from server.types import Conn


async def _player(conn: Conn, tenant: str) -> int:
    await conn.execute("INSERT INTO players (tenant_id, player_id) VALUES (%s, 'p1')", (tenant,))
    cur = await conn.execute(
        "INSERT INTO accounts (tenant_id, kind, owner, currency, available, held)"
        " VALUES (%s, 'player', 'p1', 'EUR', 0, 0) RETURNING account_id",
        (tenant,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _journal(tenant: str, tx: uuid.UUID) -> Write:
    return wallet_sql.transaction_write(
        transaction_id=tx,
        tenant_id=tenant,
        player_id="p1",
        kind="credit",
        currency="EUR",
        amount=500,
        idempotency_key=None,
    )


async def _postings(conn: Conn, tenant: str, tx: uuid.UUID, player: int, amount: int) -> Write:
    write = await wallet_sql.postings_write(
        conn,
        tx,
        tenant,
        "EUR",
        [Leg(player, "available", amount), Leg(None, "available", -500, house="house_cashier")],
    )
    assert write is not None
    return write


async def test_a_posting_may_name_the_journal_row_of_a_sibling(
    pool: AsyncConnectionPool, tenant: str
) -> None:
    """Journal row and postings in one statement: the foreign key and the balance trigger see
    the journal row, and the player's balance is applied once."""
    async with pool.connection() as conn, conn.transaction():
        player = await _player(conn, tenant)
        tx = uuid.uuid4()
        sent = await statements.send_together(
            conn, [_journal(tenant, tx), await _postings(conn, tenant, tx, player, 500)]
        )
        assert sent == 1
        cur = await conn.execute("SELECT available FROM accounts WHERE account_id = %s", (player,))
        assert await cur.fetchone() == (500,)


async def test_the_checks_still_refuse_in_a_combined_statement(
    pool: AsyncConnectionPool, tenant: str
) -> None:
    """An unbalanced posting and a posting naming no journal row fail the combined statement
    as they fail alone."""
    async with pool.connection() as conn:
        async with conn.transaction():
            player = await _player(conn, tenant)
        tx = uuid.uuid4()
        with pytest.raises(psycopg.errors.CheckViolation):
            async with conn.transaction():
                await statements.send_together(
                    conn, [_journal(tenant, tx), await _postings(conn, tenant, tx, player, 400)]
                )
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with conn.transaction():
                await statements.send_together(
                    conn,
                    [
                        _journal(tenant, uuid.uuid4()),
                        await _postings(conn, tenant, tx, player, 500),
                    ],
                )


async def test_two_writes_of_one_table_go_in_two_statements(
    pool: AsyncConnectionPool, tenant: str
) -> None:
    """Two upserts of one usage row: combined, the second could not see the first's row; sent
    apart, both count."""
    async with pool.connection() as conn, conn.transaction():
        await _player(conn, tenant)
        tx = uuid.uuid4()
        sent = await statements.send_together(
            conn,
            [
                _journal(tenant, tx),
                limits_sql.usage_write(tenant, "p1", "EUR", stakes=30),
                None,
                limits_sql.usage_write(tenant, "p1", "EUR", wins=7),
            ],
        )
        assert sent == 2
        cur = await conn.execute(
            "SELECT sum(stakes), sum(wins) FROM rg_usage WHERE tenant_id = %s", (tenant,)
        )
        assert await cur.fetchone() == (30, 7)

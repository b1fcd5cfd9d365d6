"""Retention: backdated payloads and reports are purged in batches; the ledger, disputes and
the evidence of open disputes stay; a row held by live traffic is skipped, never waited for."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.recon.retention import Retention, purge
from tests.rpc import eur, key

OLD = datetime.now(UTC) - timedelta(days=730)


async def _count(pool: AsyncConnectionPool, sql: str, *args: object) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(sql, args)).fetchone()
    assert row is not None
    return int(row[0])


async def test_purge_removes_backdated_payloads_in_batches_and_keeps_the_ledger(
    pool: AsyncConnectionPool, wallet: WalletServiceStub, tenant: str
) -> None:
    await wallet.Credit(
        wpb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(100))
    )
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO sportsbook_callbacks (tenant_id, integration, endpoint,"
            " provider_transaction_id, headers, raw_body, received_at)"
            " SELECT %s, 'book', 'transaction', 'old-' || i, '{}', 'x', %s"
            "   FROM generate_series(1, 2500) i",
            (tenant, OLD),
        )
        await conn.execute(
            "INSERT INTO sportsbook_callbacks (tenant_id, integration, endpoint,"
            " provider_transaction_id, headers, raw_body, received_at)"
            " VALUES (%s, 'book', 'transaction', 'recent', '{}', 'x', now()),"
            "        (%s, 'book', 'transaction', 'disputed', '{}', 'x', %s),"
            "        (%s, 'book', 'transaction', 'settled-dispute', '{}', 'x', %s)",
            (tenant, tenant, OLD, tenant, OLD),
        )
        for event, state in (("disputed", "escalated"), ("settled-dispute", "resolved")):
            await conn.execute(
                "INSERT INTO disputes (tenant_id, dispute_id, provider, event_id, kind, state,"
                " run_id, created_at) VALUES (%s, %s, 'book', %s, 'missing_in_ledger', %s, %s,"
                " %s)",
                (tenant, uuid.uuid4(), event, state, uuid.uuid4(), OLD),
            )
        await conn.execute(
            "INSERT INTO recon_runs (tenant_id, run_id, provider, idempotency_key, fingerprint,"
            " mismatch_ppm, response, created_at) VALUES (%s, %s, 'book', 'old-run', '', 0, '',"
            " %s), (%s, %s, 'book', 'new-run', '', 0, '', now())",
            (tenant, uuid.uuid4(), OLD, tenant, uuid.uuid4()),
        )
    ledger = await _count(pool, "SELECT count(*) FROM transactions WHERE tenant_id = %s", tenant)

    done = await purge(pool, Retention(days=365, batch=1000, pause=0))
    assert done.callbacks >= 2501 and done.runs >= 1
    left = await _count(
        pool,
        "SELECT count(*) FROM sportsbook_callbacks WHERE tenant_id = %s",
        tenant,
    )
    assert left == 2  # the recent one and the open dispute's evidence
    kept = await _count(
        pool,
        "SELECT count(*) FROM sportsbook_callbacks WHERE tenant_id = %s"
        " AND provider_transaction_id IN ('recent', 'disputed')",
        tenant,
    )
    assert kept == 2
    assert await _count(pool, "SELECT count(*) FROM recon_runs WHERE tenant_id = %s", tenant) == 1
    assert await _count(pool, "SELECT count(*) FROM disputes WHERE tenant_id = %s", tenant) == 2
    assert (
        await _count(pool, "SELECT count(*) FROM transactions WHERE tenant_id = %s", tenant)
        == ledger
    )


async def test_purge_skips_rows_live_traffic_holds(
    pool: AsyncConnectionPool, wallet: WalletServiceStub, tenant: str
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO sportsbook_callbacks (tenant_id, integration, endpoint,"
            " provider_transaction_id, headers, raw_body, received_at)"
            " SELECT %s, 'book', 'transaction', 'held-' || i, '{}', 'x', %s"
            "   FROM generate_series(1, 3) i",
            (tenant, OLD),
        )
    async with pool.connection() as live, live.transaction():
        # a live request holds one of the rows (the edge completing its answer)
        await live.execute(
            "SELECT 1 FROM sportsbook_callbacks WHERE tenant_id = %s"
            " AND provider_transaction_id = 'held-1' FOR UPDATE",
            (tenant,),
        )
        started = time.perf_counter()
        credits = [
            wallet.Credit(
                wpb.CreditRequest(
                    tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1)
                )
            )
            for _ in range(20)
        ]
        done, *_ = await asyncio.gather(
            purge(pool, Retention(days=365, batch=1, pause=0)), *credits
        )
        assert time.perf_counter() - started < 5
    assert done.callbacks >= 2
    left = await _count(
        pool, "SELECT count(*) FROM sportsbook_callbacks WHERE tenant_id = %s", tenant
    )
    assert left == 1  # the held row, for the next pass


def test_retention_is_at_least_twelve_months() -> None:
    with pytest.raises(ValueError, match="at least 365"):
        Retention(days=200)
    assert Retention().days >= 365

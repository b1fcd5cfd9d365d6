"""The audit chain: append-only, hash-chained, tamper-evident (issue 3 section 7, seed 000
section 8)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from psycopg_pool import AsyncConnectionPool

from server.app import App
from tests.jackpot.conftest import create, tier
from tests.jackpot.test_fairness import run_cli
from tests.rpc import key


async def test_config_changes_and_seed_commitments_are_chained_and_verify(
    jackpot: JackpotServiceStub, app: App, tenant: str
) -> None:
    j = await create(jackpot, tenant, tier("a"), tier("b"))
    await jackpot.UpdatePool(
        pb.UpdatePoolRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=j.pools[0].pool_id,
            config=tier("a", seed_minor_units=2_000),
            reason="bigger seed",
        )
    )
    await jackpot.Trigger(
        pb.TriggerRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=j.pools[1].pool_id,
            selector=pb.TriggerSelector(player_id="p"),
        )
    )
    log = await jackpot.GetAuditLog(pb.GetAuditLogRequest(tenant_id=tenant))
    assert [r.action for r in log.records] == [
        "jackpot.created",
        "cycle.seed.committed",
        "cycle.seed.committed",
        "pool.config.changed",
        "cycle.seed.revealed",
        "cycle.seed.committed",
    ]
    assert [r.sequence for r in log.records] == [1, 2, 3, 4, 5, 6]
    assert log.records[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(log.records, log.records[1:], strict=False))
    out = await asyncio.to_thread(run_cli, app, tenant, "audit", "verify")
    assert out == {"verified": True, "records": 6, "bad_sequence": None, "problem": ""}
    other = await asyncio.to_thread(run_cli, app, f"{tenant}-other", "audit", "verify")
    assert other["records"] == 0


async def test_the_database_refuses_to_change_the_log(
    jackpot: JackpotServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    await create(jackpot, tenant, tier())
    for sql in (
        "UPDATE jp_audit_log SET payload = '{}' WHERE tenant_id = %s",
        "DELETE FROM jp_audit_log WHERE tenant_id = %s",
    ):
        async with pool.connection() as conn:
            with pytest.raises(psycopg.errors.RestrictViolation):
                await conn.execute(sql, (tenant,))
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.RestrictViolation):
            await conn.execute("TRUNCATE jp_audit_log")


async def test_tampering_is_detected(
    jackpot: JackpotServiceStub, pool: AsyncConnectionPool, app: App, tenant: str
) -> None:
    await create(jackpot, tenant, tier("x", seed_minor_units=100))
    # someone with superuser rights bypasses the trigger and edits the seed in record 1
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("ALTER TABLE jp_audit_log DISABLE TRIGGER jp_audit_log_immutable")
        await conn.execute(
            "UPDATE jp_audit_log SET payload = replace(payload, '\"seed\":100', '\"seed\":1')"
            " WHERE tenant_id = %s AND seq = 1",
            (tenant,),
        )
        await conn.execute("ALTER TABLE jp_audit_log ENABLE TRIGGER jp_audit_log_immutable")
    # a failed verification exits 3 (as `croupier reconcile` on drift): cron and alerting see it
    out = await asyncio.to_thread(run_cli, app, tenant, "audit", "verify", exit_code=3)
    assert out["verified"] is False and out["bad_sequence"] == 1

"""Every contribution writes its jp.contribution.recorded event in its own transaction, on the
sharded fast path as well as the locked one (issue 5)."""

from __future__ import annotations

from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from psycopg_pool import AsyncConnectionPool

from tests.jackpot.conftest import contribution, create, tier


async def test_sharded_contributions_write_their_events(
    jackpot: JackpotServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    j = await create(jackpot, tenant, tier(shards=4))
    keys = []
    for _ in range(5):
        req = contribution(tenant, j.jackpot_id, 1000)
        keys.append(req.idempotency_key)
        await jackpot.Contribute(req)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload->>'contribution_id', (payload->'pool_amount'->>'minor_units')::bigint"
            "  FROM outbox WHERE tenant_id = %s AND event_type = 'jp.contribution.recorded'"
            " ORDER BY seq",
            (tenant,),
        )
        rows = await cur.fetchall()
    assert [r[0] for r in rows] == keys
    assert rows[-1][1] == 1000 + 5 * 10  # seed + 1% of five 10.00 bets

"""Back-pressure (issue 6): beyond `maximum_concurrent_rpcs` the server answers
RESOURCE_EXHAUSTED at once instead of queueing without bound; nothing else fails."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.app import build_server
from tests.rpc import eur


async def test_excess_calls_get_resource_exhausted(pool: AsyncConnectionPool) -> None:
    app = await build_server(pool, "127.0.0.1:0", max_concurrent_rpcs=4)
    tenant = f"bp-{uuid.uuid4().hex[:8]}"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            stub = WalletServiceStub(ch)

            async def credit(i: int) -> str:
                try:
                    await stub.Credit(
                        pb.CreditRequest(
                            tenant_id=tenant,
                            player_id=f"p{i % 3}",
                            idempotency_key=uuid.uuid4().hex,
                            amount=eur(1),
                        )
                    )
                    return "OK"
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name

            outcomes = await asyncio.gather(*(credit(i) for i in range(200)))
    finally:
        await app.server.stop(0)
        for t in app.tasks:
            t.cancel()
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}, set(outcomes)
    assert outcomes.count("RESOURCE_EXHAUSTED") > 0 and outcomes.count("OK") >= 4

"""A trace follows a sportsbook callback through the edge into the wallet and onto the outbox
event (issue 7 item 1): the provider's X-Trace-Id becomes the event's trace_id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg_pool import AsyncConnectionPool

from tests.edge.provider import Provider, fund, ok, uid

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub


async def test_x_trace_id_reaches_the_outbox_event(
    provider: Provider, wallet: WalletServiceAsyncStub, pool: AsyncConnectionPool
) -> None:
    user, tid = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 1_000)
    doc = {
        "transaction_id": tid,
        "action": "bet",
        "user_id": user,
        "currency": "EUR",
        "amount": "1.00",
    }
    ok(await provider.post("transaction", doc, headers={"X-Trace-Id": "tr-sportsbook-42"}))
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT trace_id FROM outbox WHERE tenant_id = %s AND event_type = 'wallet.debited'"
            " AND payload->>'player_id' = %s",
            (provider.tenant, user),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == "tr-sportsbook-42"

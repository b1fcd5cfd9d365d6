"""Disputes: every difference a case, moved by people with an append-only history; a
resolution moves money only through the wallet's idempotent Credit/Debit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.audit.v1.audit_service_pb2_grpc import AuditServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from server.app import build_server
from server.store.database import open_pool
from tests.recon.helpers import upload
from tests.rpc import error_info, eur

FILE = (
    b"event_id,type,amount,currency,occurred_at,player_id\n"
    b"w1,win,5.00,EUR,2026-03-02T10:00:00Z,p9\n"
    b"w2,win,7.00,EUR,2026-03-02T11:00:00Z,p9\n"
)


@pytest.fixture(scope="module")
def audit(channel: grpc.aio.Channel) -> AuditServiceStub:
    """The AuditService stub."""
    return AuditServiceStub(channel)


def _move(
    tenant: str, dispute: str, key: str, state: int, actor: str, reason: str, **kw: object
) -> pb.MoveDisputeRequest:
    return pb.MoveDisputeRequest(
        tenant_id=tenant,
        dispute_id=dispute,
        idempotency_key=key,
        to_state=state,  # type: ignore[arg-type]
        actor=actor,
        reason=reason,
        **kw,  # type: ignore[arg-type]
    )


async def test_dispute_lifecycle_and_adjustment_through_the_wallet(
    audit: AuditServiceStub, wallet: WalletServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    report = await audit.ReconcileProvider(upload(tenant, "acme", FILE))
    assert report.missing_in_ledger == 2
    listed = await audit.ListDisputes(pb.ListDisputesRequest(tenant_id=tenant, page_size=1))
    assert len(listed.disputes) == 1 and listed.next_page_token
    rest = await audit.ListDisputes(
        pb.ListDisputesRequest(tenant_id=tenant, page_size=1, page_token=listed.next_page_token)
    )
    assert len(rest.disputes) == 1 and not rest.next_page_token
    w1 = next(d for d in report.differences if d.event_id == "w1").dispute_id
    first = await audit.GetDispute(pb.GetDisputeRequest(tenant_id=tenant, dispute_id=w1))
    assert first.dispute.state == pb.DISPUTE_STATE_AUTO_FAILED
    assert first.dispute.player_id == "p9"
    assert [h.actor for h in first.dispute.history] == ["reconciliation"]

    await audit.MoveDispute(_move(tenant, w1, "m1", pb.DISPUTE_STATE_IN_REVIEW, "alice", "looking"))
    await audit.MoveDispute(
        _move(tenant, w1, "m2", pb.DISPUTE_STATE_ESCALATED, "alice", "provider says paid")
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # only a resolution moves money
        await audit.MoveDispute(
            _move(
                tenant,
                w1,
                "m3",
                pb.DISPUTE_STATE_IN_REVIEW,
                "bob",
                "x",
                adjustment=pb.Adjustment(player_id="p9", amount=eur(500)),
            )
        )
    assert error_info(exc.value).reason == "ADJUSTMENT_NOT_ALLOWED"
    resolve = _move(
        tenant,
        w1,
        "m4",
        pb.DISPUTE_STATE_RESOLVED,
        "bob",
        "credit the missing win",
        adjustment=pb.Adjustment(player_id="p9", amount=eur(500)),
    )
    done = await audit.MoveDispute(resolve)
    again = await audit.MoveDispute(resolve)  # a retry: same bytes, no second credit
    assert again.SerializeToString(deterministic=True) == done.SerializeToString(deterministic=True)
    d = done.dispute
    assert d.state == pb.DISPUTE_STATE_RESOLVED
    assert [(h.from_state, h.to_state, h.actor) for h in d.history] == [
        (pb.DISPUTE_STATE_UNSPECIFIED, pb.DISPUTE_STATE_AUTO_FAILED, "reconciliation"),
        (pb.DISPUTE_STATE_AUTO_FAILED, pb.DISPUTE_STATE_IN_REVIEW, "alice"),
        (pb.DISPUTE_STATE_IN_REVIEW, pb.DISPUTE_STATE_ESCALATED, "alice"),
        (pb.DISPUTE_STATE_ESCALATED, pb.DISPUTE_STATE_RESOLVED, "bob"),
    ]
    tx_id = d.history[-1].adjustment_transaction_id
    balance = await wallet.GetBalance(wpb.GetBalanceRequest(tenant_id=tenant, player_id="p9"))
    assert balance.balances[0].available.minor_units == 500
    tx = await wallet.GetTransaction(
        wpb.GetTransactionRequest(tenant_id=tenant, transaction_id=tx_id)
    )
    assert tx.transaction.idempotency_key == f"dispute:{w1}"
    assert tx.transaction.kind == wpb.TRANSACTION_KIND_CREDIT

    # the same adjustment through the public wallet API is a replay of that very credit
    replay = await wallet.Credit(
        wpb.CreditRequest(
            tenant_id=tenant,
            player_id="p9",
            idempotency_key=f"dispute:{w1}",
            amount=eur(500),
            metadata={"dispute_id": w1},
        )
    )
    assert replay.transaction_id == tx_id

    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await audit.MoveDispute(_move(tenant, w1, "m5", pb.DISPUTE_STATE_IN_REVIEW, "eve", "no"))
    assert error_info(exc.value).reason == "DISPUTE_RESOLVED"

    # a debit the player cannot cover is refused by the wallet; the dispute stays where it was
    w2 = next(x for x in report.differences if x.event_id == "w2").dispute_id
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await audit.MoveDispute(
            _move(
                tenant,
                w2,
                "m6",
                pb.DISPUTE_STATE_RESOLVED,
                "bob",
                "claw back",
                adjustment=pb.Adjustment(player_id="p9", amount=eur(-100_000)),
            )
        )
    assert error_info(exc.value).reason == "INSUFFICIENT_FUNDS"
    still = await audit.GetDispute(pb.GetDisputeRequest(tenant_id=tenant, dispute_id=w2))
    assert still.dispute.state == pb.DISPUTE_STATE_AUTO_FAILED

    async with pool.connection() as conn:  # the history is append-only
        with pytest.raises(psycopg.errors.RestrictViolation):
            await conn.execute(
                "UPDATE dispute_history SET actor = 'mallory' WHERE tenant_id = %s", (tenant,)
            )


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"dispute_id": "nope"}, "dispute_id", "INVALID_ID"),
        ({"to_state": pb.DISPUTE_STATE_AUTO_FAILED}, "to_state", "INVALID_STATE"),
        ({"actor": ""}, "actor", "MISSING_FIELD"),
        ({"reason": ""}, "reason", "INVALID_REASON"),
        ({"idempotency_key": ""}, "idempotency_key", "MISSING_FIELD"),
    ],
)
async def test_bad_moves_are_invalid_argument(
    audit: AuditServiceStub, tenant: str, change: dict[str, object], field: str, reason: str
) -> None:
    fields: dict[str, object] = {
        "tenant_id": tenant,
        "dispute_id": "00000000-0000-0000-0000-000000000001",
        "idempotency_key": "k",
        "to_state": pb.DISPUTE_STATE_IN_REVIEW,
        "actor": "alice",
        "reason": "why",
    }
    fields.update(change)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await audit.MoveDispute(pb.MoveDisputeRequest(**fields))  # type: ignore[arg-type]
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(exc.value)
    assert info.reason == reason and info.metadata["field"] == field


async def test_unknown_dispute_is_not_found(audit: AuditServiceStub, tenant: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await audit.GetDispute(
            pb.GetDisputeRequest(
                tenant_id=tenant, dispute_id="00000000-0000-0000-0000-000000000001"
            )
        )
    assert error_info(exc.value).reason == "DISPUTE_NOT_FOUND"


@pytest.fixture
async def tiny(database_url: str) -> AsyncIterator[tuple[AuditServiceStub, WalletServiceStub]]:
    """A second server over a pool of at most ONE connection (same database)."""
    p = await open_pool(database_url, min_size=1, max_size=1)
    app = await build_server(p, "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            yield AuditServiceStub(ch), WalletServiceStub(ch)
    finally:
        await app.server.stop(0)
        for t in app.tasks:
            t.cancel()
        if app.payouts is not None:
            await app.payouts.close()
        await p.close()


async def test_resolution_with_adjustment_on_a_pool_of_one_connection_and_own_key_space(
    tiny: tuple[AuditServiceStub, WalletServiceStub], tenant: str
) -> None:
    audit, wallet = tiny
    # the wallet's key "same" does not collide with a dispute move's key "same"
    await wallet.Credit(
        wpb.CreditRequest(tenant_id=tenant, player_id="p9", idempotency_key="same", amount=eur(1))
    )
    report = await audit.ReconcileProvider(upload(tenant, "acme", FILE))
    w1 = report.differences[0].dispute_id
    done = await asyncio.wait_for(
        audit.MoveDispute(
            _move(
                tenant,
                w1,
                "same",
                pb.DISPUTE_STATE_RESOLVED,
                "bob",
                "pay it",
                adjustment=pb.Adjustment(player_id="p9", amount=eur(500)),
            )
        ),
        timeout=20,
    )
    assert done.dispute.state == pb.DISPUTE_STATE_RESOLVED
    balance = await wallet.GetBalance(wpb.GetBalanceRequest(tenant_id=tenant, player_id="p9"))
    assert balance.balances[0].available.minor_units == 501

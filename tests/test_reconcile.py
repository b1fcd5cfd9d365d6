"""`croupier reconcile` and the database guards behind it (issue 8 item 4, invariant 2)."""

from __future__ import annotations

import asyncio
import json
from contextlib import redirect_stdout
from io import StringIO

import psycopg
import pytest
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from client.cli import main
from tests.rpc import eur, key


def _reconcile(database_url: str) -> tuple[int, dict[str, object]]:
    out = StringIO()
    with redirect_stdout(out):
        try:
            code = main(["reconcile", "--database-url", database_url])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, json.loads(out.getvalue())


async def test_reconcile_is_clean_after_real_traffic(
    wallet: WalletServiceStub, tenant: str, database_url: str
) -> None:
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1_000))
    )
    await wallet.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant, player_id="p", idempotency_key=key(), bet_id="b", amount=eur(300)
        )
    )
    await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b",
            capture=eur(200),
            win=eur(50),
        )
    )
    code, report = await asyncio.to_thread(_reconcile, database_url)
    assert code == 0 and report["ok"] is True
    eur_line = next(c for c in report["currencies"] if c["currency"] == "EUR")  # type: ignore[union-attr]
    assert eur_line["net_minor_units"] == 0 and eur_line["drift_ppm"] == 0


async def test_balances_cannot_be_edited_directly(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(10))
    )
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.RestrictViolation):
            await conn.execute(
                "UPDATE accounts SET available = available + 1"
                " WHERE tenant_id = %s AND kind = 'player'",
                (tenant,),
            )
        with pytest.raises(psycopg.errors.RestrictViolation):
            await conn.execute(
                "DELETE FROM postings WHERE transaction_id IN"
                " (SELECT transaction_id FROM transactions WHERE tenant_id = %s)",
                (tenant,),
            )
        with pytest.raises(psycopg.errors.CheckViolation):  # unbalanced postings refused
            await conn.execute(
                "INSERT INTO postings (tenant_id, transaction_id, account_id, bucket, currency,"
                " amount) SELECT t.tenant_id, t.transaction_id, a.account_id, 'available', 'EUR', 5"
                " FROM transactions t JOIN accounts a ON a.tenant_id = t.tenant_id"
                " AND a.kind = 'player' WHERE t.tenant_id = %s LIMIT 1",
                (tenant,),
            )


async def test_reconcile_reports_drift(
    wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool, database_url: str
) -> None:
    """Tamper with a balance behind the triggers' back (as a superuser could): reconcile
    exits 3 and names the account; then the tampering is undone."""
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(10))
    )
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE accounts SET available = available + 7"
            " WHERE tenant_id = %s AND kind = 'player'",
            (tenant,),
        )
    try:
        code, report = await asyncio.to_thread(_reconcile, database_url)
        assert code == 3 and report["ok"] is False
        drifting = report["drifting_accounts"]
        assert isinstance(drifting, list) and any(d[2] == 7 for d in drifting)
    finally:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE accounts SET available = available - 7"
                " WHERE tenant_id = %s AND kind = 'player'",
                (tenant,),
            )

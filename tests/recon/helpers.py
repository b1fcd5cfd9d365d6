"""Helpers for the reconciliation tests: a provider's ledger written in bulk, uploads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from croupier.audit.v1 import audit_service_pb2 as pb
from psycopg_pool import AsyncConnectionPool

CHUNK = 64 * 1024


@dataclass(frozen=True)
class LedgerEvent:
    """A provider's ledger event: kind 'debit' (a bet) or 'credit' (a win), EUR minor units."""

    event_id: str
    kind: str
    minor: int
    at: datetime


async def write_ledger(
    pool: AsyncConnectionPool, tenant: str, provider: str, events: Sequence[LedgerEvent]
) -> None:
    """Write `events` as balanced debit/credit transactions of player p1 tagged with the
    provider (metadata `provider`, `provider.event_id`), through the real postings trigger,
    after a funding credit (untagged) large enough for every debit."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO players (tenant_id, player_id) VALUES (%s, 'p1')", (tenant,)
        )
        cur = await conn.execute(
            "INSERT INTO accounts (tenant_id, kind, owner, currency, available, held)"
            " VALUES (%s, 'player', 'p1', 'EUR', 0, 0) RETURNING account_id",
            (tenant,),
        )
        player = (await cur.fetchone())[0]  # type: ignore[index]
        cur = await conn.execute(
            "INSERT INTO accounts (tenant_id, kind, owner, currency)"
            " VALUES (%s, 'house_cashier', '', 'EUR') RETURNING account_id",
            (tenant,),
        )
        cashier = (await cur.fetchone())[0]  # type: ignore[index]
        await conn.execute(
            "CREATE TEMP TABLE staged (transaction_id uuid, kind text, amount bigint,"
            " idempotency_key text, metadata jsonb, created_at timestamptz) ON COMMIT DROP"
        )
        fund = 10**15
        async with conn.cursor().copy(
            "COPY staged (transaction_id, kind, amount, idempotency_key, metadata, created_at)"
            " FROM STDIN"
        ) as copy:
            await copy.write_row(
                (uuid.uuid4(), "credit", fund, f"fund-{tenant}", "{}", datetime(2025, 1, 1))
            )
            for e in events:
                meta = json.dumps({"provider": provider, "provider.event_id": e.event_id})
                await copy.write_row((uuid.uuid4(), e.kind, e.minor, f"k-{e.event_id}", meta, e.at))
        await conn.execute(
            "INSERT INTO transactions (transaction_id, tenant_id, player_id, kind, currency,"
            " amount, idempotency_key, metadata, created_at)"
            " SELECT transaction_id, %s, 'p1', kind, 'EUR', amount, idempotency_key, metadata,"
            " created_at FROM staged",
            (tenant,),
        )
        await conn.execute(
            "INSERT INTO postings (tenant_id, transaction_id, account_id, bucket, currency, amount)"
            " SELECT %(tenant)s, transaction_id, %(player)s, 'available', 'EUR',"
            "        CASE kind WHEN 'credit' THEN amount ELSE -amount END FROM staged"
            " UNION ALL"
            " SELECT %(tenant)s, transaction_id, %(cashier)s, 'available', 'EUR',"
            "        CASE kind WHEN 'credit' THEN -amount ELSE amount END FROM staged",
            {"tenant": tenant, "player": player, "cashier": cashier},
        )


def upload(
    tenant: str,
    provider: str,
    body: bytes,
    fmt: int = pb.FILE_FORMAT_CSV,
    key: str = "",
    threshold_ppm: int = 0,
) -> Iterator[pb.ReconcileProviderRequest]:
    """The ReconcileProvider messages for `body`, in CHUNK-byte pieces."""
    yield pb.ReconcileProviderRequest(
        tenant_id=tenant,
        provider=provider,
        format=fmt,
        idempotency_key=key or f"run-{uuid.uuid4().hex}",
        threshold_ppm=threshold_ppm,
        chunk=body[:CHUNK],
    )
    for start in range(CHUNK, len(body), CHUNK):
        yield pb.ReconcileProviderRequest(tenant_id=tenant, chunk=body[start : start + CHUNK])

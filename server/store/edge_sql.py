"""The sportsbook edge's SQL: the dispute record of every authenticated callback.

See docs/sportsbook.md.

Statements run on an autocommit pooled connection, one statement each; they hold no rules.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row, scalar_row
from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True, slots=True)
class CallbackRow:
    """One stored callback delivery."""

    callback_id: int
    integration: str
    endpoint: str
    provider_transaction_id: str | None
    rollback_transaction_id: str | None
    received_at: datetime
    remote_addr: str
    headers: dict[str, str]
    raw_body: bytes
    response: dict[str, Any] | None
    wallet_transaction_id: uuid.UUID | None
    wallet_reason: str
    note: str
    answered_at: datetime | None


async def insert_callback(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    integration: str,
    endpoint: str,
    provider_transaction_id: str | None,
    rollback_transaction_id: str | None,
    remote_addr: str,
    headers: dict[str, str],
    raw_body: bytes,
) -> int:
    """Record a received callback; returns its callback_id."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=scalar_row)
        await cur.execute(
            "INSERT INTO sportsbook_callbacks (tenant_id, integration, endpoint,"
            " provider_transaction_id, rollback_transaction_id, remote_addr, headers, raw_body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s) RETURNING callback_id",
            (
                tenant_id,
                integration,
                endpoint,
                provider_transaction_id,
                rollback_transaction_id,
                remote_addr,
                json.dumps(headers),
                raw_body,
            ),
        )
        callback_id = await cur.fetchone()
    assert callback_id is not None
    return int(callback_id)


async def complete_callback(
    pool: AsyncConnectionPool,
    tenant_id: str,
    callback_id: int,
    *,
    response: dict[str, Any],
    wallet_transaction_id: str | None,
    wallet_reason: str,
    note: str,
) -> None:
    """Record what the edge answered to the tenant's stored callback."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE sportsbook_callbacks SET response = %s::jsonb, wallet_transaction_id = %s,"
            " wallet_reason = %s, note = %s, answered_at = now()"
            " WHERE tenant_id = %s AND callback_id = %s",
            (
                json.dumps(response),
                wallet_transaction_id,
                wallet_reason,
                note,
                tenant_id,
                callback_id,
            ),
        )


_COLUMNS = (
    "callback_id, integration, endpoint, provider_transaction_id, rollback_transaction_id,"
    " received_at, remote_addr, headers, raw_body, response, wallet_transaction_id,"
    " wallet_reason, note, answered_at"
)


async def callbacks_for(
    pool: AsyncConnectionPool,
    tenant_id: str,
    integration: str,
    provider_transaction_id: str,
    limit: int = 200,
) -> list[CallbackRow]:
    """Deliveries of a provider transaction and of the rollbacks naming it, oldest first."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(CallbackRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM sportsbook_callbacks"
            " WHERE tenant_id = %s AND integration = %s"
            " AND (provider_transaction_id = %s OR rollback_transaction_id = %s)"
            " ORDER BY callback_id LIMIT %s",
            (tenant_id, integration, provider_transaction_id, provider_transaction_id, limit),
        )
        return await cur.fetchall()

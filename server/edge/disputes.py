"""Dispute storage: raw payloads and every attempt, kept to settle disputes (docs/sportsbook.md).

Every callback that passed the signature check is stored byte for byte with its headers before
the wallet call (`received`), then completed with the answer and the wallet transaction it
produced (`answered`). Lookups by the provider's transaction_id return every delivery of that
transaction and of the rollbacks naming it (`lookup`). Callbacks with a bad or missing hash are
not stored (anyone can send those); they are counted in the log.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from psycopg_pool import AsyncConnectionPool

from server.edge.config import Integration
from server.edge.forward import Outcome
from server.store import edge_sql

# Credentials of other systems never belong in a dispute record.
_DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def keep_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers worth keeping: all but credentials (names lower-cased)."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS}


class Disputes:
    """The dispute record over the edge's connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def received(
        self,
        integration: Integration,
        endpoint: str,
        *,
        transaction_id: str | None,
        rollback_transaction_id: str | None,
        remote_addr: str,
        headers: dict[str, str],
        raw_body: bytes,
    ) -> int:
        """Store an authenticated delivery; returns its callback_id. Raises psycopg errors."""
        return await edge_sql.insert_callback(
            self.pool,
            tenant_id=integration.tenant_id,
            integration=integration.name,
            endpoint=endpoint,
            provider_transaction_id=transaction_id,
            rollback_transaction_id=rollback_transaction_id,
            remote_addr=remote_addr,
            headers=keep_headers(headers),
            raw_body=raw_body,
        )

    async def answered(self, tenant_id: str, callback_id: int, outcome: Outcome) -> None:
        """Record the answer to the tenant's stored delivery."""
        await edge_sql.complete_callback(
            self.pool,
            tenant_id,
            callback_id,
            response=outcome.body(),
            wallet_transaction_id=outcome.transaction_id
            if outcome.error is None and outcome.note != "zero result"
            else None,
            wallet_reason=outcome.wallet_reason,
            note=outcome.note,
        )

    async def lookup(self, integration: Integration, transaction_id: str) -> list[dict[str, Any]]:
        """Every stored delivery of `transaction_id` and of rollbacks naming it, oldest first,
        as JSON-ready dicts (`body` as text when UTF-8, always `body_base64`)."""
        rows = await edge_sql.callbacks_for(
            self.pool, integration.tenant_id, integration.name, transaction_id
        )
        out: list[dict[str, Any]] = []
        for r in rows:
            try:
                text: str | None = r.raw_body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            out.append(
                {
                    "callback_id": r.callback_id,
                    "endpoint": r.endpoint,
                    "transaction_id": r.provider_transaction_id,
                    "rollback_transaction_id": r.rollback_transaction_id,
                    "received_at": r.received_at.isoformat(),
                    "remote_addr": r.remote_addr,
                    "headers": r.headers,
                    "body": text,
                    "body_base64": base64.b64encode(r.raw_body).decode(),
                    "body_sha256": hashlib.sha256(r.raw_body).hexdigest(),
                    "response": r.response,
                    "wallet_transaction_id": str(r.wallet_transaction_id or "") or None,
                    "wallet_reason": r.wallet_reason,
                    "note": r.note,
                    "answered_at": r.answered_at.isoformat() if r.answered_at else None,
                }
            )
        return out

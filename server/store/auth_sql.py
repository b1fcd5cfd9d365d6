"""SQL for tenant API keys (migrations/0005_api_keys.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.store.rows import fetch_one
from server.types import Conn


async def insert_key(
    conn: Conn, key_id: str, tenant_id: str, scopes: list[str], secret_hash: bytes, label: str
) -> None:
    """Store a new key (hash only)."""
    await conn.execute(
        "INSERT INTO api_keys (key_id, tenant_id, scopes, secret_hash, label)"
        " VALUES (%s, %s, %s, %s, %s)",
        (key_id, tenant_id, scopes, secret_hash, label),
    )


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """A stored API key: its tenant, scopes, the hash of its secret, when it was revoked."""

    tenant_id: str
    scopes: list[str]
    secret_hash: bytes
    revoked_at: datetime | None


async def find_key(conn: Conn, key_id: str) -> ApiKeyRow | None:
    """The key, or None."""
    return await fetch_one(
        conn,
        ApiKeyRow,
        "SELECT tenant_id, scopes, secret_hash, revoked_at FROM api_keys WHERE key_id = %s",
        (key_id,),
    )


async def revoke_key(conn: Conn, key_id: str) -> bool:
    """Revoke a key; False if unknown or already revoked."""
    cur = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL"
        " RETURNING 1",
        (key_id,),
    )
    return await cur.fetchone() is not None

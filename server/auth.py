"""Tenant authentication: API keys bound to one tenant and a set of scopes.

A key looks like `crp_<key_id>_<secret>`; clients send it as gRPC metadata
`authorization: Bearer <key>` (or `x-api-key: <key>`). The server stores only SHA-256 of the
secret and compares in constant time. A call is allowed when the key is valid and not revoked,
its scopes include the method's scope, and the request's `tenant_id` (every Croupier request
names its tenant) is the key's tenant; otherwise UNAUTHENTICATED or PERMISSION_DENIED.
Health and reflection need no key, so probes and grpcurl discovery keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode
from server.store import auth_sql

SCOPES = (
    "wallet:read",
    "wallet:write",
    "jackpot:read",
    "jackpot:write",
    "jackpot:admin",
    "events:admin",
    "admin",
)

# Methods whose scope is not "<service>:read" (reads) — everything not listed as a read of its
# service needs the write scope, jackpot configuration needs jackpot:admin.
_READS = {
    "GetBalance",
    "GetRound",
    "GetTransaction",
    "ListTransactions",
    "GetPool",
    "ListPools",
    "WatchPools",
    "GetWin",
    "ListWins",
    "GetAuditLog",
    "CheckEligibility",
    "GetSubscription",
    "ListSubscriptions",
    "ListDeliveries",
    "GetCycle",
    "ListContributions",
    "GetLimit",
    "ListLimits",
    "GetExclusion",
    "GetProtectionSettings",
}
_ADMIN = {
    "CreateJackpot",
    "UpdatePool",
    "Reconcile",
    "ListReviews",
    "ApproveReview",
    "RejectReview",
}
_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's tenant and scopes."""

    key_id: str
    tenant_id: str
    scopes: frozenset[str]


def required_scope(method: str) -> str | None:
    """The scope a full gRPC method name needs; None for health and reflection."""
    if method.startswith(_OPEN_SERVICES):
        return None
    service, _, name = method.rpartition("/")
    if ".wallet." in service:
        return "wallet:read" if name in _READS else "wallet:write"
    if ".jackpot." in service:
        if name in _ADMIN:
            return "jackpot:admin"
        return "jackpot:read" if name in _READS else "jackpot:write"
    if ".events." in service:
        return "events:admin"
    return "admin"


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_key() -> tuple[str, str, bytes]:
    """(key_id, full key to hand out once, stored hash)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return key_id, f"crp_{key_id}_{secret}", _hash(secret)


def _unauthenticated(message: str) -> DomainError:
    return DomainError(ErrorCode.UNAUTHENTICATED, "INVALID_API_KEY", message)


class KeyStore:
    """Verifies keys against the database, caching answers for `ttl_seconds` (so a revocation
    takes effect within that many seconds)."""

    def __init__(self, pool: AsyncConnectionPool, ttl_seconds: float = 5.0) -> None:
        self.pool = pool
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._digests: dict[str, bytes] = {}

    async def create(self, tenant_id: str, scopes: list[str], label: str = "") -> tuple[str, str]:
        """Create a key; returns (key_id, the full key — shown once, never stored)."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {', '.join(SCOPES)}")
        key_id, key, digest = new_key()
        async with self.pool.connection() as conn:
            await auth_sql.insert_key(conn, key_id, tenant_id, scopes, digest, label)
        return key_id, key

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key; False if unknown or already revoked."""
        async with self.pool.connection() as conn:
            done = await auth_sql.revoke_key(conn, key_id)
        self._cache.pop(key_id, None)
        return done

    async def authenticate(self, presented: str) -> Principal:
        """The principal of a presented key. Raises UNAUTHENTICATED INVALID_API_KEY."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "crp" or not parts[1] or not parts[2]:
            raise _unauthenticated("malformed API key")
        key_id, secret = parts[1], parts[2]
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > self.ttl:
            async with self.pool.connection() as conn:
                row = await auth_sql.find_key(conn, key_id)
            principal = None
            digest = b""
            if row is not None and row.revoked_at is None:
                principal = Principal(key_id, row.tenant_id, frozenset(row.scopes))
                digest = row.secret_hash
            cached = (now, principal)
            self._cache[key_id] = cached
            self._digests[key_id] = digest
        principal = cached[1]
        if principal is None or not hmac.compare_digest(
            self._digests.get(key_id, b""), _hash(secret)
        ):
            raise _unauthenticated("unknown or revoked API key")
        return principal


def authorize(principal: Principal, method: str, tenant_id: str | None) -> None:
    """Check scope and tenant. Raises PERMISSION_DENIED `MISSING_SCOPE` / `WRONG_TENANT`."""
    scope = required_scope(method)
    if scope is not None and scope not in principal.scopes and "admin" not in principal.scopes:
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            "MISSING_SCOPE",
            f"this API key lacks the scope {scope}",
            {"scope": scope},
        )
    if tenant_id is not None and tenant_id != principal.tenant_id:
        raise DomainError(
            ErrorCode.PERMISSION_DENIED, "WRONG_TENANT", "this API key belongs to another tenant"
        )

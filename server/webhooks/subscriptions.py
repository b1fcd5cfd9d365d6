"""Webhook subscriptions: create, read, list, delete; deliveries and dead letters.

Domain rules (no grpc here; the servicer converts):
- a subscription belongs to one tenant; every read and write is scoped by `tenant_id`, and
  another tenant's subscription is NOT_FOUND, never visible (docs/architecture.md invariant 7);
- the secret is stored for signing and never returned or logged;
- writes run through `run_idempotent` (docs/architecture.md invariant 3) and raise DomainError only
  before their first write.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode
from server.idempotency import RequestKey, StoredReply, run_idempotent
from server.store import webhook_sql
from server.store.webhook_sql import DeliveryRow as DeliveryRow
from server.store.webhook_sql import SubscriptionRow as SubscriptionRow
from server.types import Conn

R = TypeVar("R")

DELIVERY_STATES = ("pending", "delivered", "dead", "cancelled")


@dataclass(frozen=True, slots=True)
class CreateSubscription:
    """A validated CreateSubscription: `secret` is the HMAC key (never in repr)."""

    tenant_id: str
    callback_url: str
    secret: bytes = field(repr=False)
    event_types: list[str]
    description: str


def subscription_not_found(subscription_id: uuid.UUID | str) -> DomainError:
    """NOT_FOUND `SUBSCRIPTION_NOT_FOUND`."""
    return DomainError(
        ErrorCode.NOT_FOUND,
        "SUBSCRIPTION_NOT_FOUND",
        "no such subscription for this tenant",
        {"subscription_id": str(subscription_id)},
    )


class Subscriptions:
    """Subscription and delivery operations over the connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def execute(
        self,
        key: RequestKey,
        operation: Callable[[Conn], Awaitable[R]],
        encode_ok: Callable[[R], bytes],
        encode_error: Callable[[DomainError], bytes],
    ) -> StoredReply:
        """Run a write once per idempotency key (server.idempotency.run_idempotent)."""
        return await run_idempotent(self.pool, key, operation, encode_ok, encode_error)

    async def create(self, conn: Conn, cmd: CreateSubscription) -> SubscriptionRow:
        """Insert the subscription in the idempotent transaction."""
        return await webhook_sql.insert_subscription(
            conn,
            tenant_id=cmd.tenant_id,
            callback_url=cmd.callback_url,
            secret=cmd.secret,
            event_types=cmd.event_types,
            description=cmd.description,
        )

    async def delete(
        self, conn: Conn, tenant_id: str, subscription_id: uuid.UUID
    ) -> SubscriptionRow:
        """Soft-delete and cancel pending deliveries. NOT_FOUND `SUBSCRIPTION_NOT_FOUND`."""
        row = await webhook_sql.delete_subscription(conn, tenant_id, subscription_id)
        if row is None:
            raise subscription_not_found(subscription_id)
        return row

    async def get(self, tenant_id: str, subscription_id: uuid.UUID) -> SubscriptionRow:
        """An active subscription. NOT_FOUND `SUBSCRIPTION_NOT_FOUND`."""
        async with self.pool.connection() as conn:
            row = await webhook_sql.get_subscription(conn, tenant_id, subscription_id)
        if row is None:
            raise subscription_not_found(subscription_id)
        return row

    async def list_active(
        self, tenant_id: str, after_seq: int, limit: int
    ) -> list[SubscriptionRow]:
        """Up to `limit` active subscriptions after the cursor `after_seq`, oldest first."""
        async with self.pool.connection() as conn:
            return await webhook_sql.list_subscriptions(conn, tenant_id, after_seq, limit)

    async def deliveries(
        self,
        tenant_id: str,
        subscription_id: uuid.UUID,
        state: str | None,
        before_seq: int | None,
        limit: int,
    ) -> list[DeliveryRow]:
        """A subscription's deliveries (deleted subscriptions included), newest first.
        `state` is one of DELIVERY_STATES or None. NOT_FOUND `SUBSCRIPTION_NOT_FOUND`."""
        async with self.pool.connection() as conn:
            sub = await webhook_sql.get_subscription(
                conn, tenant_id, subscription_id, include_deleted=True
            )
            if sub is None:
                raise subscription_not_found(subscription_id)
            return await webhook_sql.list_deliveries(
                conn, tenant_id, subscription_id, state, before_seq, limit
            )

    async def redeliver(
        self, conn: Conn, tenant_id: str, subscription_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> DeliveryRow:
        """Requeue a dead letter. NOT_FOUND `SUBSCRIPTION_NOT_FOUND` (also when deleted),
        `DELIVERY_NOT_FOUND`; FAILED_PRECONDITION `DELIVERY_NOT_DEAD_LETTERED`."""
        if await webhook_sql.get_subscription(conn, tenant_id, subscription_id) is None:
            raise subscription_not_found(subscription_id)
        row = await webhook_sql.get_delivery(conn, tenant_id, subscription_id, delivery_id)
        if row is None:
            raise DomainError(
                ErrorCode.NOT_FOUND,
                "DELIVERY_NOT_FOUND",
                "no such delivery for this subscription",
                {"delivery_id": str(delivery_id)},
            )
        if row.state != "dead":
            raise DomainError(
                ErrorCode.FAILED_PRECONDITION,
                "DELIVERY_NOT_DEAD_LETTERED",
                f"only dead letters can be redelivered; this delivery is {row.state}",
                {"delivery_id": str(delivery_id), "state": row.state},
            )
        return await webhook_sql.redeliver(conn, delivery_id)

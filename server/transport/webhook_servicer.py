"""SubscriptionService over gRPC: protobuf in, server.webhooks calls out, stored replies back.

Thin by design: validation lives in server.webhooks.validation and .patterns, rules in
server.webhooks.subscriptions; this module only converts (and signs page tokens).
"""

from __future__ import annotations

from croupier.events.v1 import subscription_service_pb2 as pb
from croupier.events.v1 import subscription_service_pb2_grpc as pb_grpc
from google.protobuf import message as _message

from server.errors import invalid
from server.idempotency import Scope
from server.transport.common import Ctx, request_key, timestamp, write
from server.transport.guard import guarded
from server.transport.paging import decode_int_token, encode_token, page_size
from server.validation import check_id
from server.webhooks.patterns import check_patterns
from server.webhooks.subscriptions import (
    CreateSubscription,
    DeliveryRow,
    SubscriptionRow,
    Subscriptions,
)
from server.webhooks.validation import (
    check_callback_url,
    check_description,
    check_secret,
    check_uuid,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_STATE_TO_PB = {
    "pending": pb.DELIVERY_STATE_PENDING,
    "delivered": pb.DELIVERY_STATE_DELIVERED,
    "dead": pb.DELIVERY_STATE_DEAD_LETTERED,
    "cancelled": pb.DELIVERY_STATE_CANCELLED,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}


def subscription_out(row: SubscriptionRow) -> pb.Subscription:
    """SubscriptionRow -> proto Subscription (there is no secret to leak: the row has none)."""
    return pb.Subscription(
        subscription_id=str(row.subscription_id),
        tenant_id=row.tenant_id,
        callback_url=row.callback_url,
        event_types=row.event_types,
        description=row.description,
        create_time=timestamp(row.created_at),
    )


def delivery_out(row: DeliveryRow) -> pb.Delivery:
    """DeliveryRow -> proto Delivery."""
    d = pb.Delivery(
        delivery_id=str(row.delivery_id),
        subscription_id=str(row.subscription_id),
        event_id=str(row.event_id),
        event_type=row.event_type,
        state=_STATE_TO_PB[row.state],
        attempts=row.attempts,
        last_http_status=row.last_status,
        last_error=row.last_error,
        create_time=timestamp(row.created_at),
    )
    if row.state == "pending":
        d.next_attempt_time.CopyFrom(timestamp(row.next_attempt_at))
    if row.finished_at is not None:
        d.finish_time.CopyFrom(timestamp(row.finished_at))
    return d


def _filters(request: _message.Message) -> bytes:
    """The request without its paging fields: what a page token is bound to."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("page_size")
    copy.ClearField("page_token")
    return copy.SerializeToString(deterministic=True)


class SubscriptionServicer(pb_grpc.SubscriptionServiceServicer):
    """croupier.events.v1.SubscriptionService (see the proto for each RPC's contract)."""

    def __init__(self, subscriptions: Subscriptions) -> None:
        self.subscriptions = subscriptions

    @guarded
    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Ctx
    ) -> pb.CreateSubscriptionResponse:
        """Register a subscription (see Subscriptions.create)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        cmd = CreateSubscription(
            tenant,
            check_callback_url(request.callback_url),
            check_secret(request.secret),
            check_patterns(list(request.event_types)),
            check_description(request.description),
        )

        def ok(row: SubscriptionRow) -> pb.CreateSubscriptionResponse:
            return pb.CreateSubscriptionResponse(subscription=subscription_out(row))

        return await write(
            context,
            self.subscriptions.execute,
            request_key("CreateSubscription", tenant, idem, request, scope=Scope.WEBHOOK),
            lambda conn: self.subscriptions.create(conn, cmd),
            ok,
            pb.CreateSubscriptionResponse,
        )

    @guarded
    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: Ctx
    ) -> pb.GetSubscriptionResponse:
        """Read one active subscription."""
        tenant = check_id(request.tenant_id, "tenant_id")
        sub_id = check_uuid(request.subscription_id, "subscription_id")
        row = await self.subscriptions.get(tenant, sub_id)
        return pb.GetSubscriptionResponse(subscription=subscription_out(row))

    @guarded
    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Ctx
    ) -> pb.ListSubscriptionsResponse:
        """A page of active subscriptions, oldest first."""
        tenant = check_id(request.tenant_id, "tenant_id")
        size = page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filters = _filters(request)
        after = decode_int_token(request.page_token, filters) or 0
        rows = await self.subscriptions.list_active(tenant, after, size + 1)
        resp = pb.ListSubscriptionsResponse(
            subscriptions=[subscription_out(r) for r in rows[:size]]
        )
        if len(rows) > size:
            resp.next_page_token = encode_token(rows[size - 1].seq, filters)
        return resp

    @guarded
    async def DeleteSubscription(
        self, request: pb.DeleteSubscriptionRequest, context: Ctx
    ) -> pb.DeleteSubscriptionResponse:
        """Soft-delete a subscription (see Subscriptions.delete)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        sub_id = check_uuid(request.subscription_id, "subscription_id")

        def ok(row: SubscriptionRow) -> pb.DeleteSubscriptionResponse:
            resp = pb.DeleteSubscriptionResponse(subscription=subscription_out(row))
            if row.deleted_at is not None:
                resp.delete_time.CopyFrom(timestamp(row.deleted_at))
            return resp

        return await write(
            context,
            self.subscriptions.execute,
            request_key("DeleteSubscription", tenant, idem, request, scope=Scope.WEBHOOK),
            lambda conn: self.subscriptions.delete(conn, tenant, sub_id),
            ok,
            pb.DeleteSubscriptionResponse,
        )

    @guarded
    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: Ctx
    ) -> pb.ListDeliveriesResponse:
        """A page of a subscription's deliveries, newest first, optionally one state."""
        tenant = check_id(request.tenant_id, "tenant_id")
        sub_id = check_uuid(request.subscription_id, "subscription_id")
        if request.state != pb.DELIVERY_STATE_UNSPECIFIED and request.state not in _STATE_FROM_PB:
            raise invalid("state", "INVALID_STATE", "state is not a known DeliveryState")
        state = _STATE_FROM_PB.get(request.state)
        size = page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filters = _filters(request)
        before = decode_int_token(request.page_token, filters)
        rows = await self.subscriptions.deliveries(tenant, sub_id, state, before, size + 1)
        resp = pb.ListDeliveriesResponse(deliveries=[delivery_out(r) for r in rows[:size]])
        if len(rows) > size:
            resp.next_page_token = encode_token(rows[size - 1].seq, filters)
        return resp

    @guarded
    async def RedeliverDeadLetter(
        self, request: pb.RedeliverDeadLetterRequest, context: Ctx
    ) -> pb.RedeliverDeadLetterResponse:
        """Requeue a dead letter (see Subscriptions.redeliver)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        sub_id = check_uuid(request.subscription_id, "subscription_id")
        delivery_id = check_uuid(request.delivery_id, "delivery_id")

        def ok(row: DeliveryRow) -> pb.RedeliverDeadLetterResponse:
            return pb.RedeliverDeadLetterResponse(delivery=delivery_out(row))

        return await write(
            context,
            self.subscriptions.execute,
            request_key("RedeliverDeadLetter", tenant, idem, request, scope=Scope.WEBHOOK),
            lambda conn: self.subscriptions.redeliver(conn, tenant, sub_id, delivery_id),
            ok,
            pb.RedeliverDeadLetterResponse,
        )

"""The AML review RPCs of JackpotService (ListReviews, ApproveReview, RejectReview): protobuf
in, server.jackpot.review out, stored replies back."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import grpc
from croupier.common.v1 import money_pb2
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from google.protobuf import timestamp_pb2

from server.errors import invalid
from server.idempotency import RequestKey, Scope
from server.jackpot import review
from server.store import aml_sql
from server.store.aml_sql import ReviewRow
from server.transport.guard import guarded
from server.transport.paging import page_size
from server.transport.status import abort_with, encode_error
from server.wallet.validation import check_id, check_text

if TYPE_CHECKING:
    from server.jackpot.payout import PayoutSaga

Ctx = grpc.aio.ServicerContext[Any, Any]
log = logging.getLogger(__name__)

_STATE_OUT = {
    "open": pb.REVIEW_STATE_OPEN,
    "approved": pb.REVIEW_STATE_APPROVED,
    "rejected": pb.REVIEW_STATE_REJECTED,
}
_STATE_IN = {v: k for k, v in _STATE_OUT.items()}


def _ts(value: Any) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def review_out(r: ReviewRow) -> pb.Review:
    """ReviewRow -> proto Review."""
    out = pb.Review(
        review_id=str(r.review_id),
        win_id="" if r.win_id is None else str(r.win_id),
        credit_idempotency_key=(r.credit_request or {}).get("idempotency_key", ""),
        player_id=r.player_id,
        amount=money_pb2.Money(minor_units=r.amount, currency=r.currency),
        threshold=money_pb2.Money(minor_units=r.threshold, currency=r.currency),
        state=_STATE_OUT[r.state],
        decision_reason=r.decision_reason,
        open_time=_ts(r.opened_at),
    )
    if r.decided_at is not None:
        out.decide_time.CopyFrom(_ts(r.decided_at))
    return out


def _review_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid("review_id", "INVALID_ID", "review_id must be a UUID") from None


class ReviewRpcs:
    """ListReviews, ApproveReview, RejectReview (see the proto)."""

    saga: PayoutSaga

    @guarded
    async def ListReviews(
        self, request: pb.ListReviewsRequest, context: Ctx
    ) -> pb.ListReviewsResponse:
        """The tenant's reviews, newest first."""
        tenant = check_id(request.tenant_id, "tenant_id")
        state = None
        if request.state:
            if request.state not in _STATE_IN:
                raise invalid("state", "INVALID_STATE", "state must be open, approved or rejected")
            state = _STATE_IN[request.state]
        size = page_size(request.page_size, 50, 500)
        async with self.saga.db.connection() as conn:
            rows = await aml_sql.list_reviews(conn, tenant, state, size)
        return pb.ListReviewsResponse(reviews=[review_out(r) for r in rows])

    async def _decide(
        self,
        request: pb.ApproveReviewRequest | pb.RejectReviewRequest,
        context: Ctx,
        approve: bool,
    ) -> bytes:
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        review_id = _review_id(request.review_id)
        reason = check_text(request.reason, "reason")
        if not approve and not reason:
            raise invalid("reason", "MISSING_FIELD", "a rejection needs a reason")
        method = "ApproveReview" if approve else "RejectReview"
        response = pb.ApproveReviewResponse if approve else pb.RejectReviewResponse

        def ok(r: ReviewRow) -> bytes:
            return response(review=review_out(r)).SerializeToString(deterministic=True)

        body = request.SerializeToString(deterministic=True)
        reply = await self.saga.wallet.execute(
            RequestKey.of(tenant, idem, method, body, scope=Scope.JACKPOT),
            lambda conn: review.decide(
                conn, self.saga.wallet, tenant, review_id, approve, reason, idem
            ),
            ok,
            encode_error,
        )
        if reply.code != 0:
            await abort_with(context, reply.payload)
        decided = response.FromString(reply.payload).review
        if approve and decided.win_id:  # credit now (once, by the saga's key), else the retrier
            win_id = uuid.UUID(decided.win_id)
            try:
                await self.saga.pay(win_id, tenant)
            except Exception:
                log.warning("payout of approved win %s failed; the retrier will retry", win_id)
        return reply.payload

    @guarded
    async def ApproveReview(
        self, request: pb.ApproveReviewRequest, context: Ctx
    ) -> pb.ApproveReviewResponse:
        """Approve: the payout is credited once (see server.jackpot.review.decide)."""
        return pb.ApproveReviewResponse.FromString(await self._decide(request, context, True))

    @guarded
    async def RejectReview(
        self, request: pb.RejectReviewRequest, context: Ctx
    ) -> pb.RejectReviewResponse:
        """Reject: the win stays owed, not credited (see server.jackpot.review.decide)."""
        return pb.RejectReviewResponse.FromString(await self._decide(request, context, False))

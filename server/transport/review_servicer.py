"""The AML review RPCs of JackpotService (ListReviews, ApproveReview, RejectReview): protobuf
in, server.jackpot.review out, stored replies back."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, TypeVar

from croupier.jackpot.v1 import jackpot_service_pb2 as pb

from server.errors import invalid
from server.idempotency import Scope
from server.jackpot import review
from server.jackpot.review import ReviewRow
from server.transport.common import Ctx, money_out, parse_uuid, request_key, timestamp, write
from server.transport.guard import guarded
from server.transport.paging import page_size
from server.validation import check_id, check_text

if TYPE_CHECKING:
    from server.jackpot.payout import PayoutSaga

log = logging.getLogger(__name__)
Decision = TypeVar("Decision", pb.ApproveReviewResponse, pb.RejectReviewResponse)

_STATE_OUT = {
    "open": pb.REVIEW_STATE_OPEN,
    "approved": pb.REVIEW_STATE_APPROVED,
    "rejected": pb.REVIEW_STATE_REJECTED,
}
_STATE_IN = {v: k for k, v in _STATE_OUT.items()}


def review_out(r: ReviewRow) -> pb.Review:
    """ReviewRow -> proto Review."""
    out = pb.Review(
        review_id=str(r.review_id),
        win_id="" if r.win_id is None else str(r.win_id),
        credit_idempotency_key=(r.credit_request or {}).get("idempotency_key", ""),
        player_id=r.player_id,
        amount=money_out(r.amount, r.currency),
        threshold=money_out(r.threshold, r.currency),
        state=_STATE_OUT[r.state],
        decision_reason=r.decision_reason,
        open_time=timestamp(r.opened_at),
    )
    if r.decided_at is not None:
        out.decide_time.CopyFrom(timestamp(r.decided_at))
    return out


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
            rows = await review.list_reviews(conn, tenant, state, size)
        return pb.ListReviewsResponse(reviews=[review_out(r) for r in rows])

    async def _decide(
        self,
        request: pb.ApproveReviewRequest | pb.RejectReviewRequest,
        context: Ctx,
        approve: bool,
        response: type[Decision],
    ) -> Decision:
        tenant = check_id(request.tenant_id, "tenant_id")
        idem = check_id(request.idempotency_key, "idempotency_key")
        review_id = parse_uuid(request.review_id, "review_id")
        reason = check_text(request.reason, "reason")
        if not approve and not reason:
            raise invalid("reason", "MISSING_FIELD", "a rejection needs a reason")
        method = "ApproveReview" if approve else "RejectReview"

        def ok(r: ReviewRow) -> Decision:
            return response(review=review_out(r))

        decided = await write(
            context,
            self.saga.wallet.execute,
            request_key(method, tenant, idem, request, scope=Scope.JACKPOT),
            lambda conn: review.decide(
                conn, self.saga.wallet, tenant, review_id, approve, reason, idem
            ),
            ok,
            response,
        )
        # an approved payout is credited now (once, by the saga's key), else by the retrier
        if approve and decided.review.win_id:
            win_id = uuid.UUID(decided.review.win_id)
            try:
                await self.saga.pay(win_id, tenant)
            except Exception:
                log.warning("payout of approved win %s failed; the retrier will retry", win_id)
        return decided

    @guarded
    async def ApproveReview(
        self, request: pb.ApproveReviewRequest, context: Ctx
    ) -> pb.ApproveReviewResponse:
        """Approve: the payout is credited once (see server.jackpot.review.decide)."""
        return await self._decide(request, context, True, pb.ApproveReviewResponse)

    @guarded
    async def RejectReview(
        self, request: pb.RejectReviewRequest, context: Ctx
    ) -> pb.RejectReviewResponse:
        """Reject: the win stays owed, not credited (see server.jackpot.review.decide)."""
        return await self._decide(request, context, False, pb.RejectReviewResponse)

"""AML review of payouts over gRPC: a win above the tenant's threshold waits in
PAYOUT_STATE_REVIEW; approval credits it exactly once, rejection keeps it owed (and a later
approval still pays it), a win at or below the threshold is credited at once."""

from __future__ import annotations

import asyncio

import grpc
from croupier.jackpot.v1 import jackpot_service_pb2 as pb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from tests.jackpot.conftest import contribution, create, tier
from tests.jackpot.test_payout import balance, credits_for, hit, wait_state
from tests.rpc import error_info, eur, fails, key


async def set_threshold(wallet: WalletServiceStub, tenant: str, threshold: int) -> None:
    await wallet.SetProtectionSettings(
        wpb.SetProtectionSettingsRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            settings=wpb.ProtectionSettings(
                time_zone="UTC",
                limit_cooling_off=duration_pb2.Duration(seconds=86_400),
                aml_review_thresholds={"EUR": threshold},
            ),
        )
    )


async def reviewed_win(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, player: str
) -> tuple[pb.Win, pb.Review]:
    await set_threshold(wallet, tenant, 5_000)
    j = await create(jackpot, tenant, tier(seed_minor_units=10_000))
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 50_000))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, player)
    held = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_REVIEW)
    again = await jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id))
    assert again.win.payout_state == pb.PAYOUT_STATE_REVIEW
    reviews = await jackpot.ListReviews(
        pb.ListReviewsRequest(tenant_id=tenant, state=pb.REVIEW_STATE_OPEN)
    )
    assert len(reviews.reviews) == 1
    r = reviews.reviews[0]
    assert (r.win_id, r.amount.minor_units, r.threshold.minor_units) == (win.win_id, 10_500, 5_000)
    return held, r


async def test_approval_credits_the_win_exactly_once(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    win, review = await reviewed_win(jackpot, wallet, tenant, "whale")
    assert await credits_for(pool, tenant, win.win_id) == 0
    request = pb.ApproveReviewRequest(
        tenant_id=tenant, idempotency_key=key(), review_id=review.review_id, reason="KYC ok"
    )
    approved = await asyncio.gather(*(jackpot.ApproveReview(request) for _ in range(4)))
    assert {a.review.state for a in approved} == {pb.REVIEW_STATE_APPROVED}
    await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_CREDITED)
    await fails(
        jackpot.ApproveReview(
            pb.ApproveReviewRequest(
                tenant_id=tenant, idempotency_key=key(), review_id=review.review_id
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REVIEW_ALREADY_DECIDED",
    )
    await jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id))
    assert await balance(wallet, tenant, "whale") == 10_500
    assert await credits_for(pool, tenant, win.win_id) == 1


async def test_rejection_keeps_the_win_owed_until_approved(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    win, review = await reviewed_win(jackpot, wallet, tenant, "suspect")
    exc = await fails(
        jackpot.RejectReview(
            pb.RejectReviewRequest(
                tenant_id=tenant, idempotency_key=key(), review_id=review.review_id
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "MISSING_FIELD",
    )
    assert error_info(exc).metadata["field"] == "reason"
    rejected = await jackpot.RejectReview(
        pb.RejectReviewRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            review_id=review.review_id,
            reason="source of funds unclear",
        )
    )
    assert rejected.review.state == pb.REVIEW_STATE_REJECTED
    assert rejected.review.decision_reason == "source of funds unclear"
    failed = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_FAILED)
    assert failed.failure_reason == "AML_REJECTED"
    again = await jackpot.Payout(pb.PayoutRequest(tenant_id=tenant, win_id=win.win_id))
    assert again.win.payout_state == pb.PAYOUT_STATE_FAILED
    assert await credits_for(pool, tenant, win.win_id) == 0
    await jackpot.ApproveReview(
        pb.ApproveReviewRequest(
            tenant_id=tenant, idempotency_key=key(), review_id=review.review_id, reason="cleared"
        )
    )
    await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_CREDITED)
    assert await balance(wallet, tenant, "suspect") == 10_500
    assert await credits_for(pool, tenant, win.win_id) == 1


async def test_a_win_at_the_threshold_is_credited_at_once(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str
) -> None:
    await set_threshold(wallet, tenant, 10_500)
    j = await create(jackpot, tenant, tier(seed_minor_units=10_000))
    await jackpot.Contribute(contribution(tenant, j.jackpot_id, 50_000))
    win = await hit(jackpot, tenant, j.pools[0].pool_id, "fine")
    await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_CREDITED)
    listed = await jackpot.ListReviews(pb.ListReviewsRequest(tenant_id=tenant))
    assert list(listed.reviews) == []
    await fails(
        jackpot.ApproveReview(
            pb.ApproveReviewRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                review_id="00000000-0000-0000-0000-000000000000",
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "REVIEW_NOT_FOUND",
    )


async def test_compliance_holds_are_distinct_reasons_and_lifting_pays_the_win(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    holds = (
        (wpb.COMPLIANCE_HOLD_SANCTIONS, "SANCTIONS_HIT"),
        (wpb.COMPLIANCE_HOLD_GEO_BLOCK, "GEO_BLOCKED"),
        (wpb.COMPLIANCE_HOLD_WITHDRAWAL_LIMIT, "WITHDRAWAL_LIMIT_EXCEEDED"),
        (wpb.COMPLIANCE_HOLD_AML, "AML_HOLD"),
    )
    for hold, reason in holds:
        player = f"p-{reason.lower()}"
        await wallet.Credit(
            wpb.CreditRequest(
                tenant_id=tenant, player_id=player, idempotency_key=key(), amount=eur(1)
            )
        )
        raised = await wallet.SetComplianceHold(
            wpb.SetComplianceHoldRequest(
                tenant_id=tenant, player_id=player, idempotency_key=key(), hold=hold, active=True
            )
        )
        assert list(raised.holds) == [hold]
        j = await create(jackpot, tenant, tier(seed_minor_units=900))
        win = await hit(jackpot, tenant, j.pools[0].pool_id, player)
        failed = await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_FAILED)
        assert failed.failure_reason == reason
        assert await credits_for(pool, tenant, win.win_id) == 0
        lifted = await wallet.SetComplianceHold(
            wpb.SetComplianceHoldRequest(
                tenant_id=tenant, player_id=player, idempotency_key=key(), hold=hold, active=False
            )
        )
        assert list(lifted.holds) == []
        # no Payout call: the retrier finds the lifted cause and pays the win once
        await wait_state(jackpot, tenant, win.win_id, pb.PAYOUT_STATE_CREDITED, seconds=15)
        assert await balance(wallet, tenant, player) == 901
        assert await credits_for(pool, tenant, win.win_id) == 1
    await fails(
        wallet.SetComplianceHold(
            wpb.SetComplianceHoldRequest(
                tenant_id=tenant, player_id="nobody", idempotency_key=key(), hold=1, active=True
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "PLAYER_NOT_FOUND",
    )
    exc = await fails(
        wallet.SetComplianceHold(
            wpb.SetComplianceHoldRequest(
                tenant_id=tenant, player_id="nobody", idempotency_key=key(), hold=0, active=True
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_HOLD",
    )
    assert error_info(exc).metadata["field"] == "hold"


async def test_a_payout_credit_above_the_threshold_waits_for_review(
    jackpot: JackpotServiceStub, wallet: WalletServiceStub, tenant: str, pool: AsyncConnectionPool
) -> None:
    await set_threshold(wallet, tenant, 5_000)
    await wallet.Credit(
        wpb.CreditRequest(tenant_id=tenant, player_id="big", idempotency_key=key(), amount=eur(1))
    )
    small = wpb.CreditRequest(
        tenant_id=tenant,
        player_id="big",
        idempotency_key=key(),
        amount=eur(5_000),
        reason=wpb.CREDIT_REASON_PAYOUT,
    )
    await wallet.Credit(small)  # at the threshold: credited
    held = wpb.CreditRequest(
        tenant_id=tenant,
        player_id="big",
        idempotency_key="payout-7",
        amount=eur(7_000),
        reason=wpb.CREDIT_REASON_PAYOUT,
        round_id="r-7",
    )
    exc = await fails(
        wallet.Credit(held), grpc.StatusCode.FAILED_PRECONDITION, "PAYOUT_UNDER_REVIEW"
    )
    review_id = error_info(exc).metadata["review_id"]
    again = await fails(
        wallet.Credit(held), grpc.StatusCode.FAILED_PRECONDITION, "PAYOUT_UNDER_REVIEW"
    )
    assert error_info(again).metadata["review_id"] == review_id  # replayed, no second review
    listed = await jackpot.ListReviews(pb.ListReviewsRequest(tenant_id=tenant))
    assert [(r.review_id, r.credit_idempotency_key, r.win_id) for r in listed.reviews] == [
        (review_id, "payout-7", "")
    ]
    assert await balance(wallet, tenant, "big") == 5_001
    rejected = wpb.CreditRequest(
        tenant_id=tenant,
        player_id="big",
        idempotency_key="payout-8",
        amount=eur(9_000),
        reason=wpb.CREDIT_REASON_PAYOUT,
    )
    exc = await fails(
        wallet.Credit(rejected), grpc.StatusCode.FAILED_PRECONDITION, "PAYOUT_UNDER_REVIEW"
    )
    await jackpot.RejectReview(
        pb.RejectReviewRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            review_id=error_info(exc).metadata["review_id"],
            reason="fraud",
        )
    )
    approve = pb.ApproveReviewRequest(
        tenant_id=tenant, idempotency_key=key(), review_id=review_id, reason="ok"
    )
    await asyncio.gather(*(jackpot.ApproveReview(approve) for _ in range(3)))
    assert await balance(wallet, tenant, "big") == 5_001 + 7_000
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), min(metadata->>'aml_review_id') FROM transactions"
            " WHERE tenant_id = %s AND idempotency_key = %s",
            (tenant, f"system-aml-review-{review_id}"),
        )
        row = await cur.fetchone()
    assert row == (1, review_id)

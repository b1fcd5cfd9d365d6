"""server.retry: the one backoff and retryable-code decision every caller uses."""

from __future__ import annotations

import random

import grpc

from server.jackpot.payout import backoff_seconds
from server.retry import BROKER_BACKOFF, Backoff, Pacer, retryable
from server.webhooks.delivery import backoff_delay


def test_ceiling_doubles_to_the_maximum_without_overflow() -> None:
    b = Backoff(0.05, 2.0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 10)] == [0.05, 0.1, 0.2, 0.4, 2.0]
    assert Backoff(1.0, 300.0).delay(10_000) == 300.0
    assert Backoff(0.05).delay(3) == 0.2  # no maximum: the edge's schedule


def test_full_jitter_draws_within_the_ceiling() -> None:
    b = Backoff(0.2, 1.0, jitter=True)
    assert b.delay(3, lambda lo, hi: hi) == 0.8
    assert b.delay(3, lambda lo, hi: lo) == 0.0
    rng = random.Random(7)
    assert all(0.0 <= b.delay(n, rng.uniform) <= b.ceiling(n) for n in range(1, 50))


def test_pacer_starts_over_after_a_success() -> None:
    pacer = Pacer(BROKER_BACKOFF)
    assert [pacer.failed() for _ in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    pacer.succeeded()
    assert pacer.failed() == 0.2


def test_payout_and_delivery_schedules_use_it() -> None:
    assert [backoff_seconds(n) for n in (0, 1, 2, 3, 7)] == [0.5, 1.0, 2.0, 4.0, 60.0]
    rng = random.Random(1)
    assert all(
        0.0 <= backoff_delay(n, 1.0, 300.0, rng) <= min(300.0, 2 ** (n - 1)) for n in (1, 5, 12)
    )


def test_retryable_codes_are_decided_once() -> None:
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        assert retryable(code, write=False) and retryable(code, write=True)
    assert retryable(grpc.StatusCode.DEADLINE_EXCEEDED, write=True)
    assert not retryable(grpc.StatusCode.DEADLINE_EXCEEDED, write=False)
    for code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OK):
        assert not retryable(code, write=True)

"""Retries: which gRPC codes are retried, and how long to wait before the next attempt.

One helper for every place that tries again:

- the Python client (`client/retry.py` `RetryPolicy`): 0.05 s doubling to 2 s, full jitter;
- the sportsbook edge's wallet calls (`server/edge/forward.py`): 0.05 s doubling;
- the sportsbook provider's HTTP client (`client/sportsbook.py`): 0.2 s doubling;
- the outbox relay and the webhook dispatcher's broker consumer: 0.2 s doubling to 10 s,
  starting over after a success (`Pacer`);
- webhook deliveries (`server/webhooks/delivery.py`): 1 s doubling to 300 s, full jitter,
  stored as the delivery's next attempt time;
- jackpot payouts (`server/jackpot/payout.py`): 1 s doubling to 60 s, stored as the win's next
  attempt time.

A retried gRPC write sends the same request with the same idempotency key, so an attempt that
did commit is answered from its stored response with no new effect (docs/architecture.md
invariant 3). `retryable` decides, for every gRPC caller, which codes are tried again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

#: Retried for every call: the server did not act (it was unreachable, or shed the call at its
#: in-flight bound).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
#: Retried for writes too: the attempt may have committed, and the replay is answered from the
#: stored response.
RETRYABLE_WRITES = RETRYABLE | {grpc.StatusCode.DEADLINE_EXCEEDED}


def retryable(code: grpc.StatusCode, *, write: bool) -> bool:
    """Whether a call that failed with `code` may be sent again unchanged."""
    return code in (RETRYABLE_WRITES if write else RETRYABLE)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff. Seconds.

    After failure number n (1-based) the ceiling is `min(maximum, initial * multiplier**(n-1))`;
    the delay is the ceiling itself, or with `jitter` a uniform random value in [0, ceiling]
    ("full jitter", so many clients failing together do not retry together).
    """

    initial: float
    maximum: float = float("inf")
    multiplier: float = 2.0
    jitter: bool = False

    def ceiling(self, failures: int) -> float:
        """The longest delay after `failures` failed attempts (at least 1)."""
        return float(min(self.maximum, self.initial * self.multiplier ** min(failures - 1, 62)))

    def delay(
        self, failures: int, uniform: Callable[[float, float], float] = random.uniform
    ) -> float:
        """Seconds to wait after `failures` failed attempts; `uniform(lo, hi)` draws the jitter."""
        ceiling = self.ceiling(failures)
        return uniform(0.0, ceiling) if self.jitter else ceiling


#: A lost broker or database connection: 0.2 s doubling to 10 s (the relay, the dispatcher).
BROKER_BACKOFF = Backoff(0.2, 10.0)


@dataclass
class Pacer:
    """The backoff state of a loop that runs until stopped (a consumer, a relay): `failed()`
    after each failure gives the delay before trying again, `succeeded()` starts over."""

    backoff: Backoff
    failures: int = field(default=0, init=False)

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        self.failures += 1
        return self.backoff.delay(self.failures)

    def succeeded(self) -> None:
        """The next failure waits the shortest delay again."""
        self.failures = 0

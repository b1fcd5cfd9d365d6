"""Retries of transient failures, shared by the sync and the async clients.

The decisions live in `RetrySchedule` (no I/O, no sleeping): how long the next attempt may
take, and whether a failure is retried and after how long. `call_sync` and `call_async` only
run attempts and sleep. Every attempt sends the SAME request, so a write keeps its idempotency
key: a retried write whose first attempt did commit gets the original response back, with no
new effect (docs/architecture.md invariant 3).

Retried (`server.retry.retryable`, the one decision for every gRPC caller): UNAVAILABLE and
RESOURCE_EXHAUSTED for every RPC; DEADLINE_EXCEEDED for writes too (the attempt may have
committed, and the replay is safe). Backoff is exponential with full jitter
(`server.retry.Backoff`), and the whole call is bounded by `RetryPolicy.deadline` seconds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from client.errors import from_rpc_error
from server.retry import Backoff, retryable

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried. Times in seconds.

    `timeout`: each attempt's gRPC deadline (default 5 s). `deadline`: the bound on the whole
    call, attempts and backoff included (default 20 s). `initial_backoff`, `max_backoff`,
    `multiplier`: the backoff before attempt n+1 is a uniform random value in
    [0, min(max_backoff, initial_backoff * multiplier**n)] ("full jitter").
    `max_attempts`: 1 disables retries.
    """

    timeout: float = 5.0
    deadline: float = 20.0
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.deadline <= 0 or self.max_attempts < 1:
            raise ValueError("timeout and deadline must be positive, max_attempts at least 1")

    @property
    def backoff(self) -> Backoff:
        """The backoff between attempts (full jitter)."""
        return Backoff(self.initial_backoff, self.max_backoff, self.multiplier, jitter=True)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass
class RetrySchedule:
    """The retry state of one call (sans I/O): call `attempt_timeout()` before each attempt
    and `after_failure(exc)` inside the `except` of a failed one."""

    policy: RetryPolicy
    write: bool
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[float, float], float] = random.uniform
    attempts: int = field(default=0, init=False)
    _end: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._end = self.clock() + self.policy.deadline

    def attempt_timeout(self) -> float:
        """The deadline (seconds) of the next attempt: the per-attempt timeout, cut to what is
        left of the overall deadline. Counts the attempt."""
        self.attempts += 1
        return max(0.001, min(self.policy.timeout, self._end - self.clock()))

    def after_failure(self, exc: grpc.RpcError) -> float:
        """The backoff (seconds) before retrying after `exc`.

        Raises the `client.errors` class of `exc` (chained to it) when the code is not
        retried, the attempts are used up, or the backoff would pass the overall deadline.
        """
        err = from_rpc_error(exc)
        delay = self.policy.backoff.delay(self.attempts, self.jitter)
        if (
            not retryable(err.code, write=self.write)
            or self.attempts >= self.policy.max_attempts
            or self.clock() + delay >= self._end
        ):
            err.attempts = self.attempts
            raise err from exc
        return delay


def call_sync(schedule: RetrySchedule, attempt: Callable[[float], T]) -> T:
    """Run `attempt(timeout_seconds)` until it succeeds or `schedule` gives up (blocking)."""
    while True:
        try:
            return attempt(schedule.attempt_timeout())
        except grpc.RpcError as exc:
            delay = schedule.after_failure(exc)
        time.sleep(delay)


async def call_async(schedule: RetrySchedule, attempt: Callable[[float], Awaitable[T]]) -> T:
    """Run `await attempt(timeout_seconds)` until it succeeds or `schedule` gives up."""
    while True:
        try:
            return await attempt(schedule.attempt_timeout())
        except grpc.RpcError as exc:
            delay = schedule.after_failure(exc)
        await asyncio.sleep(delay)

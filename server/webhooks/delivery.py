"""One delivery attempt over HTTP, and the retry schedule (docs/webhooks.md).

An attempt POSTs the event's exact published bytes with the headers
- `Content-Type: application/json`
- `X-Signature: sha256=<hex HMAC-SHA256(secret, "<X-Timestamp>.<body>")>`
  (server.webhooks.signature)
- `X-Timestamp`: unix seconds when this attempt was signed (fresh for every attempt, so a
  retry passes a receiver's validity window while a captured request replayed later fails it)
- `X-Event-Id`, `X-Event-Type`, `X-Trace-Id` (end-to-end trace id)
- `X-Delivery-Id`, `X-Delivery-Attempt` (1-based)
Redirects are not followed. Success is any 2xx within the per-request timeout.

Retries: exponential backoff with full jitter, `uniform(0, min(cap, base * 2**(attempt-1)))`
seconds.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import aiohttp

from server.retry import Backoff
from server.store.webhook_sql import DueDelivery
from server.webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

USER_AGENT = "croupier-webhooks/1"
_MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt's result: HTTP `status` (0 = no HTTP answer) and `error` ("" on 2xx)."""

    status: int
    error: str

    @property
    def ok(self) -> bool:
        """Whether the subscriber answered 2xx."""
        return 200 <= self.status < 300


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): full jitter over
    `min(cap, base * 2**(attempt - 1))`; `base` and `cap` in seconds."""
    return Backoff(base, cap, jitter=True).delay(attempt, rng.uniform)


def headers_for(due: DueDelivery, timestamp: int) -> dict[str, str]:
    """The request headers of an attempt signed at `timestamp` (unix seconds)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(due.secret, timestamp, due.body),
        TIMESTAMP_HEADER: str(timestamp),
        "X-Event-Id": str(due.event_id),
        "X-Event-Type": due.event_type,
        "X-Trace-Id": due.trace_id,
        "X-Delivery-Id": str(due.delivery_id),
        "X-Delivery-Attempt": str(due.attempt),
    }


async def attempt(
    session: aiohttp.ClientSession, due: DueDelivery, timeout_seconds: float
) -> Outcome:
    """POST one delivery with a total timeout of `timeout_seconds`; never raises for network
    failures (they are an Outcome with status 0)."""
    headers = headers_for(due, int(time.time()))
    try:
        async with session.post(
            due.callback_url,
            data=due.body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as resp:
            await resp.content.read(_MAX_RESPONSE_BYTES)
            status = resp.status
    except TimeoutError:
        return Outcome(0, f"timeout after {timeout_seconds:g} s")
    except aiohttp.ClientError as exc:
        return Outcome(0, f"{type(exc).__name__}: {exc}")
    return Outcome(status, "" if 200 <= status < 300 else f"HTTP {status}")

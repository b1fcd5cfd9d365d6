"""The trace id of the work being done, carried into every event it writes.

A request's trace id is set by the transport (server.transport.interceptor). Background jobs
(hold expiry, payout retries, deadline drops) have no request: each pass or row runs inside
`background_trace`, which starts a new trace of its own.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from contextvars import ContextVar

current_trace_id: ContextVar[str] = ContextVar("croupier_trace_id", default="")

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def new_trace_id() -> str:
    """A fresh W3C trace id: 32 lowercase hex digits, not all zero."""
    while True:
        value = secrets.token_hex(16)
        if value != "0" * 32:
            return value


def is_valid_trace_id(value: str) -> bool:
    """Whether `value` is a W3C trace id (32 lowercase hex digits, not all zero)."""
    return bool(_TRACE_ID.match(value)) and value != "0" * 32


@contextlib.contextmanager
def background_trace(name: str) -> Iterator[str]:
    """Run one pass (or one row) of a background job in a new trace; yields its trace id.

    With tracing on (server.telemetry), this is a new root OpenTelemetry span called `name`
    and the events written inside carry its trace id; with tracing off, a fresh random trace
    id. Either way `current_trace_id` holds it inside the block and is restored after."""
    from server.telemetry import root_span

    with root_span(name) as traced:
        token = current_trace_id.set(traced or new_trace_id())
        try:
            yield current_trace_id.get()
        finally:
            current_trace_id.reset(token)

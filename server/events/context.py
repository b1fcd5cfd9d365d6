"""The trace id of the request being served, carried into every event it writes."""

from __future__ import annotations

from contextvars import ContextVar

current_trace_id: ContextVar[str] = ContextVar("croupier_trace_id", default="")

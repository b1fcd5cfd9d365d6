"""Event type patterns of a subscription: which published events it receives.

A pattern is one of
- an exact event type from server.events.catalog (`wallet.credited`);
- a prefix ending in `.*` (`wallet.*`, `jp.payout.*`): every type that starts with the prefix
  and a dot, at any depth (`wallet.*` matches `wallet.credited` and `wallet.bet.settled`);
- `*`: every event type.
A prefix pattern must match at least one type in the catalog (a typo is refused, not silently
useless); types added to the catalog later under the same prefix are delivered too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from server.errors import invalid
from server.events.catalog import EVENT_TYPES

MAX_PATTERNS = 32
_SHAPE = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")


def matches(pattern: str, event_type: str) -> bool:
    """Whether `event_type` is selected by `pattern` (see the module doc)."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def matches_any(patterns: Iterable[str], event_type: str) -> bool:
    """Whether any of `patterns` selects `event_type`."""
    return any(matches(p, event_type) for p in patterns)


def check_patterns(values: Sequence[str], field: str = "event_types") -> list[str]:
    """1..32 valid patterns, duplicates removed (first occurrence kept, order preserved).

    Raises INVALID_ARGUMENT `MISSING_FIELD` (none given), `TOO_MANY_EVENT_TYPES`, or
    `UNKNOWN_EVENT_TYPE` naming the entry (`event_types[2]`) that is malformed or selects no
    catalogued type.
    """
    if not values:
        raise invalid(field, "MISSING_FIELD", f"{field} needs at least one event type")
    if len(values) > MAX_PATTERNS:
        raise invalid(
            field, "TOO_MANY_EVENT_TYPES", f"{field} has more than {MAX_PATTERNS} entries"
        )
    out: list[str] = []
    for i, value in enumerate(values):
        if not _SHAPE.match(value) or not any(matches(value, t) for t in EVENT_TYPES):
            raise invalid(
                f"{field}[{i}]",
                "UNKNOWN_EVENT_TYPE",
                f"{value!r} is not a known event type, a known prefix ending in '.*', or '*'",
            )
        if value not in out:
            out.append(value)
    return out

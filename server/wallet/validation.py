"""Request validation specific to the wallet: hold lifetimes.

Identifiers, text and metadata are checked by server/validation.py, shared by every domain.
A failure is INVALID_ARGUMENT naming the request field, raised before anything is written.
"""

from __future__ import annotations

from server.errors import invalid

DEFAULT_HOLD_TTL_SECONDS = 3600
MAX_HOLD_TTL_SECONDS = 7 * 24 * 3600


def check_hold_ttl(seconds: int, nanos: int) -> int:
    """Hold lifetime in whole seconds: default 1 hour when unset, 1 second to 7 days.

    Raises INVALID_ARGUMENT `INVALID_HOLD_TTL` naming `hold_ttl`.
    """
    if seconds == 0 and nanos == 0:
        return DEFAULT_HOLD_TTL_SECONDS
    if seconds < 1 or seconds > MAX_HOLD_TTL_SECONDS or nanos < 0:
        raise invalid(
            "hold_ttl",
            "INVALID_HOLD_TTL",
            f"hold_ttl must be between 1 second and {MAX_HOLD_TTL_SECONDS} seconds",
        )
    return seconds

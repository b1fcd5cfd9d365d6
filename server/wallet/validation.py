"""Request validation for the wallet: ids, idempotency keys, metadata, hold TTLs.

Every failure is INVALID_ARGUMENT naming the request field, raised before anything is written
(docs/architecture.md, "The path of a bet").
"""

from __future__ import annotations

import re

from server.errors import invalid

MAX_ID = 128
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1024
DEFAULT_HOLD_TTL_SECONDS = 3600
MAX_HOLD_TTL_SECONDS = 7 * 24 * 3600

_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


def check_id(value: str, field: str, *, required: bool = True) -> str:
    """An identifier: 1..128 printable ASCII characters without spaces (or empty if optional).

    Raises INVALID_ARGUMENT `MISSING_FIELD` or `INVALID_ID` naming `field`.
    """
    if not value:
        if required:
            raise invalid(field, "MISSING_FIELD", f"{field} is required")
        return value
    if len(value) > MAX_ID or not _ID.match(value):
        raise invalid(
            field,
            "INVALID_ID",
            f"{field} must be 1 to {MAX_ID} printable ASCII characters without spaces",
        )
    return value


def check_metadata(metadata: dict[str, str], field: str = "metadata") -> dict[str, str]:
    """Free-form metadata: at most 32 entries, keys <= 64 and values <= 1024 characters."""
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise invalid(field, "METADATA_TOO_LARGE", f"{field} has more than 32 entries")
    for k, v in metadata.items():
        if not k or len(k) > MAX_METADATA_KEY or len(v) > MAX_METADATA_VALUE:
            raise invalid(
                field,
                "METADATA_TOO_LARGE",
                f"{field} keys must be 1..64 characters and values at most 1024",
            )
        if "\x00" in k or "\x00" in v:
            raise invalid(field, "INVALID_METADATA", f"{field} must not contain NUL characters")
    return dict(metadata)


def check_text(value: str, field: str, limit: int = 512) -> str:
    """Free text up to `limit` characters, without NUL."""
    if len(value) > limit or "\x00" in value:
        raise invalid(field, "INVALID_TEXT", f"{field} must be at most {limit} characters")
    return value


def check_hold_ttl(seconds: int, nanos: int) -> int:
    """Hold lifetime in whole seconds: default 1 hour when unset, 1 second to 7 days."""
    if seconds == 0 and nanos == 0:
        return DEFAULT_HOLD_TTL_SECONDS
    if seconds < 1 or seconds > MAX_HOLD_TTL_SECONDS or nanos < 0:
        raise invalid(
            "hold_ttl",
            "INVALID_HOLD_TTL",
            f"hold_ttl must be between 1 second and {MAX_HOLD_TTL_SECONDS} seconds",
        )
    return seconds

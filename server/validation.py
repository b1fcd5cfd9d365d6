"""Input checks shared by every domain: identifiers, free text, metadata.

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
    """Free-form metadata: at most 32 entries, keys <= 64 and values <= 1024 characters.

    Raises INVALID_ARGUMENT `METADATA_TOO_LARGE` or `INVALID_METADATA` naming `field`.
    """
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
    """Free text up to `limit` characters, without NUL (INVALID_ARGUMENT `INVALID_TEXT`)."""
    if len(value) > limit or "\x00" in value:
        raise invalid(field, "INVALID_TEXT", f"{field} must be at most {limit} characters")
    return value

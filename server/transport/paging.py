"""AIP-158 pagination shared by every servicer: page sizes and opaque page tokens.

A page token is `base64url(<16 hex of SHA-256(filters)>:<cursor>)`: the cursor (a seq, an id)
says where the next page starts, the digest binds the token to the request's other fields, so a
token used with different filters is INVALID_ARGUMENT `INVALID_PAGE_TOKEN` (AIP-158).
"""

from __future__ import annotations

import base64
import hashlib

from server.errors import invalid


def page_size(value: int, default: int, most: int) -> int:
    """`page_size` with its default (0) and ceiling; negative is INVALID_PAGE_SIZE."""
    if value < 0:
        raise invalid("page_size", "INVALID_PAGE_SIZE", "page_size must not be negative")
    return min(value or default, most)


def _digest(filters: str | bytes) -> str:
    data = filters.encode() if isinstance(filters, str) else filters
    return hashlib.sha256(data).hexdigest()[:16]


def encode_token(cursor: str | int, filters: str | bytes) -> str:
    """The next page's token: `cursor` bound to `filters`."""
    return base64.urlsafe_b64encode(f"{_digest(filters)}:{cursor}".encode()).decode()


def decode_token(token: str, filters: str | bytes) -> str | None:
    """The cursor of a page token ("" token: None, the first page).

    Raises INVALID_ARGUMENT INVALID_PAGE_TOKEN when malformed or issued for other filters."""
    if not token:
        return None
    try:
        digest, cursor = base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid("page_token", "INVALID_PAGE_TOKEN", "page_token is malformed") from exc
    if digest != _digest(filters):
        raise invalid(
            "page_token", "INVALID_PAGE_TOKEN", "page_token was issued for a different request"
        )
    return cursor


def decode_int_token(token: str, filters: str | bytes) -> int | None:
    """`decode_token` for integer (seq) cursors."""
    cursor = decode_token(token, filters)
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise invalid("page_token", "INVALID_PAGE_TOKEN", "page_token is malformed")
    return int(cursor)

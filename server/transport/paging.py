"""AIP-158 pagination shared by every servicer: page sizes and opaque page tokens.

A page token is `base64url(<16 hex of SHA-256(filters)>:<cursor>)`: the cursor (a seq, an id)
says where the next page starts, the digest binds the token to the request's other fields, so a
token used with different filters is INVALID_ARGUMENT `INVALID_PAGE_TOKEN` (AIP-158).

The digest is not a signature: a caller can keep it and put any cursor after it. So a cursor
is checked as hostile input before it reaches a query: printable ASCII without spaces, at most
256 characters (every cursor this server issues is a seq or an id), and an integer cursor is
1 to 19 ASCII digits within int64. Anything else is INVALID_PAGE_TOKEN naming `page_token`.
"""

from __future__ import annotations

import base64
import hashlib
import re

from server.errors import invalid
from server.money import INT64_MAX

MAX_CURSOR = 256
_CURSOR = re.compile(rf"[\x21-\x7e]{{0,{MAX_CURSOR}}}")
_INT_CURSOR = re.compile(r"[0-9]{1,19}")


def _malformed() -> Exception:
    return invalid("page_token", "INVALID_PAGE_TOKEN", "page_token is malformed")


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
        raise _malformed() from exc
    if digest != _digest(filters):
        raise invalid(
            "page_token", "INVALID_PAGE_TOKEN", "page_token was issued for a different request"
        )
    if not _CURSOR.fullmatch(cursor):
        raise _malformed()
    return cursor


def decode_int_token(token: str, filters: str | bytes) -> int | None:
    """`decode_token` for integer (seq) cursors: 0 to 2^63-1."""
    cursor = decode_token(token, filters)
    if cursor is None:
        return None
    if not _INT_CURSOR.fullmatch(cursor) or int(cursor) > INT64_MAX:
        raise _malformed()
    return int(cursor)

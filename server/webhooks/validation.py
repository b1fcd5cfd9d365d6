"""Request validation for webhook subscriptions: callback URLs, secrets, descriptions.

Every failure is INVALID_ARGUMENT naming the request field, raised before anything is written.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from server.errors import invalid

MAX_URL = 2048
MIN_SECRET = 16
MAX_SECRET = 256
MAX_DESCRIPTION = 256


def check_callback_url(value: str, field: str = "callback_url") -> str:
    """An absolute `http` or `https` URL with a host, at most 2048 characters, without user
    credentials (they would end up in logs) or a fragment.

    Raises INVALID_ARGUMENT `MISSING_FIELD` or `INVALID_CALLBACK_URL`.
    """
    if not value:
        raise invalid(field, "MISSING_FIELD", f"{field} is required")
    bad = invalid(
        field,
        "INVALID_CALLBACK_URL",
        f"{field} must be an absolute http(s) URL with a host, without credentials or fragment,"
        f" at most {MAX_URL} characters",
    )
    if len(value) > MAX_URL or any(c.isspace() or ord(c) < 0x21 for c in value):
        raise bad
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError when out of range
    except ValueError as exc:
        raise bad from exc
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise bad
    return value


def check_secret(value: str, field: str = "secret") -> bytes:
    """The signing secret: 16..256 printable ASCII characters; returned as bytes (the HMAC
    key). Raises INVALID_ARGUMENT `MISSING_FIELD` or `INVALID_SECRET` (the message never
    echoes the value)."""
    if not value:
        raise invalid(field, "MISSING_FIELD", f"{field} is required")
    if not MIN_SECRET <= len(value) <= MAX_SECRET or not all(0x20 < ord(c) < 0x7F for c in value):
        raise invalid(
            field,
            "INVALID_SECRET",
            f"{field} must be {MIN_SECRET} to {MAX_SECRET} printable ASCII characters",
        )
    return value.encode()


def check_description(value: str, field: str = "description") -> str:
    """Free text for humans, at most 256 characters, without NUL."""
    if len(value) > MAX_DESCRIPTION or "\x00" in value:
        raise invalid(
            field, "INVALID_TEXT", f"{field} must be at most {MAX_DESCRIPTION} characters"
        )
    return value


def check_uuid(value: str, field: str) -> uuid.UUID:
    """A resource id in canonical UUID form. Raises INVALID_ARGUMENT `MISSING_FIELD` or
    `INVALID_ID`."""
    if not value:
        raise invalid(field, "MISSING_FIELD", f"{field} is required")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise invalid(field, "INVALID_ID", f"{field} must be a UUID") from exc

"""Webhook signatures: `X-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.

A body signature with a timestamp and a validity window: Croupier signs the exact request body
bytes prefixed with the `X-Timestamp` header value (unix seconds, decimal) and a dot, so a receiver
can both check the body and reject a replayed request whose timestamp is outside its window. Golden
vectors for integrators: `tests/webhooks/vectors.json`.

A receiver:

    ok = verify(secret, request.headers["X-Timestamp"], raw_body,
                request.headers["X-Signature"], tolerance=300)

then de-duplicates by `X-Event-Id` (deliveries are at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
DEFAULT_TOLERANCE_SECONDS = 300
_HEADER = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


def _key(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """The `X-Signature` value for `body` sent at `timestamp` (unix seconds):
    "sha256=" + lower-case hex HMAC-SHA256 keyed with `secret` (a str is UTF-8 encoded) over
    the bytes `b"<timestamp>." + body`."""
    message = str(int(timestamp)).encode() + b"." + body
    return "sha256=" + hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def verify(
    secret: bytes | str,
    timestamp: str | int | None,
    body: bytes,
    signature: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether `signature` (the `X-Signature` header) signs `body` at `timestamp` (the
    `X-Timestamp` header) and the timestamp is within `tolerance` seconds of `now` (default:
    the clock). Missing or malformed headers fail; the compare is constant-time."""
    if timestamp is None or signature is None:
        return False
    text = str(timestamp).strip()
    match = _HEADER.match(signature.strip())
    if not _TIMESTAMP.match(text) or match is None:
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(text)) > tolerance:
        return False
    expected = sign(secret, int(text), body)
    return hmac.compare_digest(expected.encode(), ("sha256=" + match.group(1).lower()).encode())

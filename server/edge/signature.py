"""`X-Security-Hash`: hex HMAC-SHA256 of the raw request body, keyed with the integration secret.

The provider's spec, "Transactions": "take the raw body and create a hash by using the Sha256
algorithm and use <SECURITY_HASH> as secret, then compare X-Security-Hash with the calculated hash
and accept only that requests where hashes are match." The check runs on the exact bytes received,
before
any parsing, and compares in constant time (`hmac.compare_digest`). Hex digits are accepted in
either case; anything else (missing, wrong length, not hex) fails.
"""

from __future__ import annotations

import hashlib
import hmac
import re

HEADER = "X-Security-Hash"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def sign(body: bytes, secret: bytes) -> str:
    """The lower-case hex HMAC-SHA256 of `body` keyed with `secret` (64 characters)."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (constant-time compare)."""
    if header is None:
        return False
    candidate = header.strip()
    if not _HEX64.match(candidate):
        return False
    return hmac.compare_digest(sign(body, secret).encode(), candidate.lower().encode())

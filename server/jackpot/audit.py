"""The audit chain's hashing rule and its verification (write once, read many).

Pure functions shared by the server (which appends) and `croupier jackpot audit verify`.
Each record's hash is SHA-256(prev_hash || line) where line is the UTF-8 of
`tenant_id LF sequence LF time_unix_micros LF action LF subject LF payload_json`; the first
record's prev_hash is 32 zero bytes. Payloads are canonical JSON (sorted keys, no spaces).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)


def canonical_json(payload: dict[str, Any]) -> str:
    """Sorted keys, no whitespace, ASCII only: the exact text that is hashed."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def record_hash(
    prev_hash: bytes,
    tenant_id: str,
    sequence: int,
    time_unix_micros: int,
    action: str,
    subject: str,
    payload_json: str,
) -> bytes:
    """The chained hash of one record."""
    line = f"{tenant_id}\n{sequence}\n{time_unix_micros}\n{action}\n{subject}\n{payload_json}"
    return hashlib.sha256(prev_hash + line.encode()).digest()


@dataclass(frozen=True, slots=True)
class ChainRecord:
    """One audit record as stored or received."""

    tenant_id: str
    sequence: int
    time_unix_micros: int
    action: str
    subject: str
    payload_json: str
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The result of verifying a chain: `ok`, how many records, and the first bad one."""

    ok: bool
    records: int
    bad_sequence: int | None = None
    problem: str = ""


def verify_chain(records: Iterable[ChainRecord]) -> ChainCheck:
    """Check sequence numbers (1, 2, ...), each prev_hash link and each recomputed hash."""
    prev = GENESIS
    count = 0
    for count, r in enumerate(records, start=1):
        if r.sequence != count:
            return ChainCheck(False, count, r.sequence, f"expected sequence {count}")
        if r.prev_hash != prev:
            return ChainCheck(False, count, r.sequence, "prev_hash does not link")
        expected = record_hash(
            prev, r.tenant_id, r.sequence, r.time_unix_micros, r.action, r.subject, r.payload_json
        )
        if expected != r.hash:
            return ChainCheck(False, count, r.sequence, "hash does not match the record")
        prev = r.hash
    return ChainCheck(True, count)

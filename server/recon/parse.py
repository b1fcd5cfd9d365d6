"""Reading a provider's settled-rounds export, line by line, without ever failing on it.

The format is documented in docs/reconciliation.md: CSV with a header line, or JSON lines; the
fields `event_id`, `type` (bet, win, refund), `amount` (a decimal string in the currency's
units, "12.50"), `currency` (ISO 4217 or a configured code), `occurred_at` (ISO 8601 with a UTC
offset), and optional `player_id` and `round_id`. Each line becomes a `Row` or a `Bad` naming
the line and the reason; a later line repeating an event id is `DUPLICATE_EVENT_ID` (the first
one is kept); a last line cut short (no final newline and unreadable) is `TRUNCATED_LINE`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from server.errors import DomainError
from server.money import parse_decimal

TYPES = ("bet", "win", "refund")
# the house's side of each type: a bet adds to the house's net, a win or a refund takes from it
SIGN = {"bet": 1, "win": -1, "refund": -1}
MAX_LINE = 64 * 1024
MAX_EVENT_ID = 256
REQUIRED = ("event_id", "type", "amount", "currency", "occurred_at")


@dataclass(frozen=True, slots=True)
class Row:
    """One readable provider row: amount in minor units of `currency`."""

    line: int
    event_id: str
    type: str
    minor_units: int
    currency: str
    occurred_at: datetime
    player_id: str


@dataclass(frozen=True, slots=True)
class Bad:
    """One unreadable line: 1-based `line`, UPPER_SNAKE_CASE `reason`, a message, and the
    event id when it could be read (so the ledger side does not report it as missing)."""

    line: int
    reason: str
    message: str
    event_id: str = ""


class _LineError(Exception):
    def __init__(self, reason: str, message: str, event_id: str = "") -> None:
        super().__init__(message)
        self.reason, self.message, self.event_id = reason, message, event_id


async def split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes, bool]]:
    """Chunks of a file -> (1-based line number, line without its end, ended by a newline).

    A line longer than MAX_LINE is returned cut at MAX_LINE + 1 bytes (the caller reports it);
    the rest of it is skipped, so memory stays bounded whatever the input.
    """
    buf = bytearray()
    number = 0
    skipping = False
    async for chunk in chunks:
        buf += chunk
        while True:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > MAX_LINE and not skipping:
                    number += 1
                    yield number, bytes(buf[: MAX_LINE + 1]), True
                    skipping = True
                if skipping:
                    buf.clear()
                break
            if skipping:
                skipping = False
            else:
                number += 1
                yield number, bytes(buf[:end]).rstrip(b"\r"), True
            del buf[: end + 1]
    if buf and not skipping:
        number += 1
        yield number, bytes(buf).rstrip(b"\r"), False


def _field(record: dict[str, str], name: str) -> str:
    value = record.get(name)
    if value is None or value == "":
        raise _LineError("MISSING_FIELD", f"{name} is missing", record.get("event_id") or "")
    return value


def _row(number: int, record: dict[str, str]) -> Row:
    for name in REQUIRED:
        _field(record, name)
    event_id = record["event_id"].strip()
    if len(event_id) > MAX_EVENT_ID or not event_id.isprintable():
        raise _LineError("INVALID_EVENT_ID", f"event_id must be 1 to {MAX_EVENT_ID} characters")
    kind = record["type"].strip().lower()
    if kind not in TYPES:
        raise _LineError("INVALID_TYPE", f"type {kind[:20]!r} is not one of {TYPES}", event_id)
    currency = record["currency"].strip().upper()
    try:
        money = parse_decimal(record["amount"], currency, "amount")
    except DomainError as err:
        raise _LineError(err.reason, err.message, event_id) from err
    text = record["occurred_at"].strip()
    try:
        occurred = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise _LineError(
            "INVALID_TIME", f"occurred_at {text[:40]!r} is not ISO 8601", event_id
        ) from exc
    if occurred.tzinfo is None:
        raise _LineError(
            "INVALID_TIME", f"occurred_at {text[:40]!r} has no UTC offset (add Z)", event_id
        )
    player = (record.get("player_id") or "").strip()
    return Row(number, event_id, kind, money.minor_units, currency, occurred, player[:128])


def _csv_record(header: list[str], text: str) -> dict[str, str]:
    fields = next(csv.reader([text]), [])
    if len(fields) != len(header):
        where = header.index("event_id")
        event_id = fields[where].strip() if where < len(fields) else ""
        raise _LineError(
            "MALFORMED_LINE", f"{len(fields)} fields where the header has {len(header)}", event_id
        )
    return dict(zip(header, fields, strict=True))


def _json_record(text: str) -> dict[str, str]:
    try:
        # numbers keep their exact text: 12.50 is "12.50", never a float
        value = json.loads(text, parse_float=str, parse_int=str)
    except (ValueError, RecursionError) as exc:
        detail = getattr(exc, "msg", "nested too deeply")
        raise _LineError("MALFORMED_LINE", f"not a JSON object: {detail}") from exc
    if not isinstance(value, dict):
        raise _LineError("MALFORMED_LINE", "not a JSON object")
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


async def parse(chunks: AsyncIterator[bytes], fmt: str) -> AsyncIterator[Row | Bad]:
    """Every line of a `fmt` ("csv" or "jsonl") export as a Row or a Bad, in file order.

    Never raises for any content. Blank lines are skipped. For CSV the first line is the
    header; a header missing a required column makes every line Bad (`MISSING_COLUMN`).
    """
    seen: dict[str, int] = {}
    header: list[str] | None = None
    async for number, raw, ended in split_lines(chunks):
        try:
            if len(raw) > MAX_LINE:
                raise _LineError("LINE_TOO_LONG", f"line longer than {MAX_LINE} bytes")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _LineError("MALFORMED_LINE", "not UTF-8") from exc
            if not text.strip():
                continue
            if fmt == "csv" and header is None:
                header = [h.strip().lower() for h in next(csv.reader([text]), [])]
                missing = [c for c in REQUIRED if c not in header]
                if missing:
                    raise _LineError("MISSING_COLUMN", f"header lacks {', '.join(missing)}")
                continue
            if fmt == "csv":
                assert header is not None
                if len(header) < len(REQUIRED) or any(c not in header for c in REQUIRED):
                    raise _LineError("MISSING_COLUMN", "the header line is unusable")
                record = _csv_record(header, text)
            else:
                record = _json_record(text)
            row = _row(number, record)
        except _LineError as err:
            reason, message = err.reason, err.message
            if not ended:  # the last line, without its newline, and unreadable: cut short
                reason, message = "TRUNCATED_LINE", f"last line cut short ({err.message})"
            yield Bad(number, reason, message, err.event_id)
            continue
        first = seen.get(row.event_id)
        if first is not None:
            yield Bad(
                number,
                "DUPLICATE_EVENT_ID",
                f"event_id {row.event_id[:64]!r} already on line {first}",
                row.event_id,
            )
            continue
        seen[row.event_id] = number
        yield row

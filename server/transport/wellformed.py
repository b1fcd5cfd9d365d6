"""Checks every request body passes before any servicer sees it (the interceptor applies them).

- Parsing: grpc deserializes a request before any handler code runs, and a body that does not
  parse (corrupt wire format, a string field that is not UTF-8) would end in UNKNOWN.
  `safe_deserializer` turns such a body into a `Malformed` stand-in instead, so the interceptor
  can authenticate the caller first (an unauthenticated caller learns nothing about the body)
  and then refuse it with INVALID_ARGUMENT `MALFORMED_REQUEST`, naming the first string field
  that is not UTF-8 when there is one, else `request`.
- Well-known types: every `google.protobuf.Timestamp` must lie in 0001-01-01..9999-12-31 with
  0 <= nanos < 10^9, every `google.protobuf.Duration` within +-10,000 years with |nanos| < 10^9
  and the sign of seconds (protobuf's own ranges), else INVALID_ARGUMENT `INVALID_TIMESTAMP` /
  `INVALID_DURATION` naming the field (e.g. `occurred_time`). Servicers may then convert them
  (`ToDatetime`, `ToTimedelta`) without failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from server.errors import DomainError, invalid

TIMESTAMP_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
TIMESTAMP_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
DURATION_MAX_SECONDS = 315_576_000_000  # 10,000 years
NANOS_MAX = 999_999_999

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


class Malformed:
    """A request body that did not parse, standing in for the request until the caller is
    authenticated. `field` is the field to name in the error."""

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = field

    def error(self) -> DomainError:
        """INVALID_ARGUMENT `MALFORMED_REQUEST` naming `field`."""
        if self.field == "request":
            return invalid("request", "MALFORMED_REQUEST", "the request is not a valid message")
        return invalid(self.field, "MALFORMED_REQUEST", f"{self.field} is not valid UTF-8")


def safe_deserializer(
    deserialize: Callable[[bytes], Any], descriptor: Descriptor | None
) -> Callable[[bytes], Any]:
    """`deserialize`, returning `Malformed` instead of raising on a body that does not parse."""

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError, or any other refusal of the parser
            field = _first_bad_string(descriptor, data, "") if descriptor is not None else None
            return Malformed(field or "request")

    return parse


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _first_bad_string(descriptor: Descriptor, data: bytes, prefix: str) -> str | None:
    """The path of the first string field in `data` (wire format of `descriptor`) that is not
    UTF-8, or None (also when the wire format itself is broken)."""
    pos = 0
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _varint(data, pos)
                chunk, pos = data[pos : pos + size], pos + size
                field = descriptor.fields_by_number.get(number)
                if field is None:
                    continue
                path = f"{prefix}{field.name}"
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return path
                elif field.message_type is not None:
                    inner = _first_bad_string(field.message_type, chunk, f"{path}.")
                    if inner is not None:
                        return inner
            else:
                return None
    except ValueError:
        return None
    return None


_HAS_TIME: dict[str, bool] = {}


def _has_time(descriptor: Any) -> bool:
    """Whether messages of this type can contain a Timestamp or Duration (memoized)."""
    name = descriptor.full_name
    known = _HAS_TIME.get(name)
    if known is not None:
        return known
    _HAS_TIME[name] = False  # recursion guard for self-referencing types
    found = any(
        f.message_type is not None
        and (f.message_type.full_name in (_TIMESTAMP, _DURATION) or _has_time(f.message_type))
        for f in descriptor.fields
    )
    _HAS_TIME[name] = found
    return found


def _check_timestamp(value: Any, field: str) -> None:
    if not (
        TIMESTAMP_MIN_SECONDS <= value.seconds <= TIMESTAMP_MAX_SECONDS
        and 0 <= value.nanos <= NANOS_MAX
    ):
        raise invalid(
            field,
            "INVALID_TIMESTAMP",
            f"{field} must be 0001-01-01..9999-12-31 with nanos in 0..999999999",
        )


def _check_duration(value: Any, field: str) -> None:
    seconds, nanos = value.seconds, value.nanos
    if not (
        -DURATION_MAX_SECONDS <= seconds <= DURATION_MAX_SECONDS
        and -NANOS_MAX <= nanos <= NANOS_MAX
        and not (seconds > 0 > nanos or seconds < 0 < nanos)
    ):
        raise invalid(
            field,
            "INVALID_DURATION",
            f"{field} must be within 10000 years, |nanos| < 10^9 with the sign of seconds",
        )


def check_well_known(message: Message, prefix: str = "") -> None:
    """Raise INVALID_ARGUMENT for any out-of-range Timestamp or Duration in `message`."""
    if not _has_time(message.DESCRIPTOR):
        return
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None:
            continue
        path = f"{prefix}{field.name}"
        if kind.GetOptions().map_entry:
            inner = kind.fields_by_name["value"].message_type
            if inner is not None:
                for key, item in value.items():
                    _check_one(inner, item, f"{path}[{key}]")
        elif field.is_repeated:
            for i, item in enumerate(value):
                _check_one(kind, item, f"{path}[{i}]")
        else:
            _check_one(kind, value, path)


def _check_one(kind: Descriptor, value: Any, path: str) -> None:
    if kind.full_name == _TIMESTAMP:
        _check_timestamp(value, path)
    elif kind.full_name == _DURATION:
        _check_duration(value, path)
    else:
        check_well_known(value, f"{path}.")

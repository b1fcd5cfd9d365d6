"""Domain errors: what went wrong, in words the transport maps to gRPC (AIP-193).

Domain code raises `DomainError` with a canonical `ErrorCode` and an UPPER_SNAKE_CASE reason;
it never imports grpc. The transport turns it into a `google.rpc.Status` with one
`google.rpc.ErrorInfo` (domain `croupier`).
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """The canonical gRPC status codes Croupier's domain raises (same numbers as grpc)."""

    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


class DomainError(Exception):
    """A refused request.

    `code` is the canonical status, `reason` an UPPER_SNAKE_CASE constant stable across
    versions, `message` a sentence for humans, `metadata` string pairs for machines (for
    INVALID_ARGUMENT always `field`, the request field's path).
    """

    def __init__(
        self,
        code: ErrorCode,
        reason: str,
        message: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})

    def __repr__(self) -> str:
        return f"DomainError({self.code.name}, {self.reason!r}, {self.message!r})"


def invalid(field: str, reason: str, message: str, **extra: str) -> DomainError:
    """An INVALID_ARGUMENT error naming `field` (e.g. "amount.minor_units")."""
    return DomainError(ErrorCode.INVALID_ARGUMENT, reason, message, {"field": field, **extra})

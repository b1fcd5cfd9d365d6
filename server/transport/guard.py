"""A decorator for servicer methods: domain errors become Status, nothing leaks a traceback."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import psycopg

from server.errors import DomainError, ErrorCode
from server.transport.status import abort_error, abort_with_status, internal_status
from server.types import DATABASE_OUTAGE, is_node_commit_failure

log = logging.getLogger("croupier.rpc")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def database_unavailable() -> DomainError:
    """UNAVAILABLE / DATABASE_UNAVAILABLE: the primary is down, restarting or being failed
    over; the same call with the same idempotency key is safe to retry."""
    return DomainError(
        ErrorCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "the ledger database is unavailable; retry with the same idempotency key",
    )


def guarded(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Map DomainError to its Status, a bigint overflow in the database to FAILED_PRECONDITION
    AMOUNT_OVERFLOW, database outages to UNAVAILABLE (retry with the same idempotency key),
    anything else to a bare INTERNAL (logged here, never sent)."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except DomainError as err:
            await abort_error(context, err)
        except psycopg.errors.NumericValueOutOfRange as exc:
            # The database's bigint check is the backstop behind the domain's int64 checks: an
            # amount the domain missed is still a refusal (not stored: the transaction rolled
            # back, so a retry is evaluated afresh), never INTERNAL.
            log.error("amount overflow reached the database in %s: %s", handler.__name__, exc)
            await abort_error(
                context,
                DomainError(
                    ErrorCode.FAILED_PRECONDITION,
                    "AMOUNT_OVERFLOW",
                    "an amount or balance this request creates would pass 2^63-1 minor units",
                ),
            )
        except DATABASE_OUTAGE as exc:
            log.warning("database unavailable in %s: %s", handler.__name__, exc)
            await abort_error(context, database_unavailable())
        except Exception as exc:
            if is_node_commit_failure(exc):
                log.warning("database node lost at commit in %s: %s", handler.__name__, exc)
                await abort_error(context, database_unavailable())
            log.exception("internal error in %s", handler.__name__)
            await abort_with_status(context, internal_status())
        raise AssertionError("unreachable")  # abort always raises

    return wrapper

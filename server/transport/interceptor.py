"""The server interceptor every call passes: authentication, the trace id, and metrics.

- Authentication (when a KeyStore is given): see server.auth; health and reflection are open.
- Trace id: the active OpenTelemetry span's, else the caller's `x-trace-id` metadata, else a
  new one; it is put in `server.events.context.current_trace_id` so events written by the call
  carry it, and returned to the caller as `x-trace-id` initial metadata.
- Request checks (server.transport.wellformed): a body that does not parse is refused with
  INVALID_ARGUMENT `MALFORMED_REQUEST` after authentication (UNAUTHENTICATED first), and every
  Timestamp and Duration in a request is range-checked, before the servicer runs.
- Metrics: latency per method and code, errors per method, code and ErrorInfo reason.
- A database outage that escapes a handler (a stream such as WatchPools, or the API-key
  lookup) is answered UNAVAILABLE / DATABASE_UNAVAILABLE (retryable), never UNKNOWN.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from server.auth import KeyStore, authorize
from server.errors import DomainError
from server.events.context import current_trace_id
from server.telemetry import RPC_ERRORS, RPC_LATENCY, tracing_enabled
from server.telemetry import current_trace_id as otel_trace_id
from server.transport.guard import database_unavailable
from server.transport.status import abort_with_status, error_reason, to_status_proto
from server.transport.wellformed import Malformed, check_well_known, safe_deserializer
from server.types import DATABASE_OUTAGE

Ctx = grpc.aio.ServicerContext[Any, Any]


def _metadata(context: Ctx, name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return ""


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """See the module doc. `keys=None` turns authentication off."""

    def __init__(self, keys: KeyStore | None) -> None:
        self.keys = keys
        # wrapped handlers by method: grpc looks the handler up on every call, wrapping it
        # again each time would cost a closure and a handler object per call
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._tracing = tracing_enabled()  # read once: the environment does not change

    async def _admit(self, method: str, request: Any, context: Ctx) -> None:
        trace_id = (
            (self._tracing and otel_trace_id())
            or _metadata(context, "x-trace-id")[:64]
            or os.urandom(16).hex()  # 128 random bits, as a W3C trace id
        )
        current_trace_id.set(trace_id)
        error_reason.set("")
        if self.keys is None or method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return
        auth = _metadata(context, "authorization")
        presented = (
            auth[7:] if auth.lower().startswith("bearer ") else _metadata(context, "x-api-key")
        )
        try:
            if not presented:
                from server.errors import ErrorCode

                raise DomainError(
                    ErrorCode.UNAUTHENTICATED,
                    "MISSING_API_KEY",
                    "send `authorization: Bearer <API key>` metadata",
                )
            principal = await self.keys.authenticate(presented)
            tenant = getattr(request, "tenant_id", None)
            authorize(principal, method, tenant if isinstance(tenant, str) else None)
        except DomainError as err:
            await abort_with_status(context, to_status_proto(err))

    async def _check(self, request: Any, context: Ctx) -> None:
        """Refuse a body that did not parse or holds an out-of-range Timestamp/Duration."""
        try:
            if isinstance(request, Malformed):
                raise request.error()
            check_well_known(request)
        except DomainError as err:
            await abort_with_status(context, to_status_proto(err))

    def _record(self, method: str, context: Ctx, started: float) -> None:
        code_obj = context.code()
        code = code_obj.name if isinstance(code_obj, grpc.StatusCode) else "OK"
        if code_obj not in (None, grpc.StatusCode.OK) and isinstance(code_obj, grpc.StatusCode):
            RPC_ERRORS.labels(method, code, error_reason.get()).inc()
        latency = self._latency.get((method, code))
        if latency is None:  # labels() takes a lock and builds a key: once per method and code
            latency = self._latency[(method, code)] = RPC_LATENCY.labels(method, code)
        latency.observe(time.perf_counter() - started)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        deserializer: Any = handler.request_deserializer
        if deserializer is not None:
            message_class = getattr(deserializer, "__self__", None)
            deserializer = safe_deserializer(
                deserializer, getattr(message_class, "DESCRIPTOR", None)
            )
        if handler.unary_unary is not None:
            inner: Any = handler.unary_unary

            async def unary(request: Any, context: Ctx) -> Any:
                started = time.perf_counter()
                try:
                    await self._admit(method, request, context)
                    await self._check(request, context)
                    return await inner(request, context)
                except DATABASE_OUTAGE:
                    await abort_with_status(context, to_status_proto(database_unavailable()))
                    raise
                finally:
                    self._record(method, context, started)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream: Any = handler.unary_stream

            async def stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
                started = time.perf_counter()
                try:
                    await self._admit(method, request, context)
                    await self._check(request, context)
                    async for item in inner_stream(request, context):
                        yield item
                except DATABASE_OUTAGE:
                    await abort_with_status(context, to_status_proto(database_unavailable()))
                    raise
                finally:
                    self._record(method, context, started)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            inner_upload: Any = handler.stream_unary

            async def upload(requests: AsyncIterator[Any], context: Ctx) -> Any:
                # the first message is admitted (authenticated for its tenant_id); each one is
                # checked as it arrives; the servicer refuses a later message naming another
                # tenant
                started = time.perf_counter()
                try:
                    first = await anext(aiter(requests), None)
                    if first is not None:
                        await self._admit(method, first, context)

                    async def checked() -> AsyncIterator[Any]:
                        if first is None:
                            return
                        await self._check(first, context)
                        yield first
                        async for request in requests:
                            await self._check(request, context)
                            yield request

                    return await inner_upload(checked(), context)
                finally:
                    self._record(method, context, started)

            return grpc.stream_unary_rpc_method_handler(
                upload,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

"""The edge's aiohttp application: the provider's callback routes and the always-200 contract.

For each integration, `POST <prefix>/transaction` and `POST <prefix>/transaction-rollback`:

1. the body is read up to `max_body_bytes` (over: `BODY_TOO_LARGE`, nothing parsed);
2. `X-Security-Hash` is checked against the raw bytes (`MISSING_SECURITY_HASH`,
   `INVALID_SECURITY_HASH`: nothing parsed, stored or sent to the wallet);
3. the body is parsed (`protocol.parse`), stored for disputes (before the wallet call: no
   effect without evidence; if it cannot be stored, `INTERNAL_ERROR` and no wallet call), and
   forwarded to the wallet (`forward.Forwarder`); the answer is recorded with it just after
   the reply (`CallbackHandler.settled` waits for those writes).

Every response is HTTP 200 with a JSON body, `{"error": null, "transaction_id": "..."}` or
`{"error": "CODE"}` (the provider's spec: "All responses must have http status 200 and must be in
JSON format"), unknown paths and methods included; anything unexpected is `INTERNAL_ERROR`, never a
traceback. `GET /healthz` answers `{"status": "ok"}`; `/admin/...` is the dispute API (admin.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from server.edge.config import Integration
from server.edge.disputes import Disputes
from server.edge.forward import Forwarder, Outcome, trace_id
from server.edge.protocol import ROLLBACK, TRANSACTION, Callback, Code, EdgeError, Rollback
from server.edge.protocol import parse as parse_callback
from server.edge.signature import HEADER, verify

log = logging.getLogger("croupier.edge")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reply(body: dict[str, Any]) -> web.Response:
    """HTTP 200 with a compact JSON body."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
    )


def refuse(code: Code) -> web.Response:
    """HTTP 200 `{"error": code}`."""
    return reply({"error": code.value})


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is longer than `limit` bytes (declared or actual)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@web.middleware
async def always_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No HTML error pages, no tracebacks: anything unexpected is 200 INTERNAL_ERROR."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if request.path.startswith("/admin/"):
            raise
        log.info("http %s on %s %s", exc.status, request.method, request.path)
        return refuse(Code.UNKNOWN_ENDPOINT if exc.status == 404 else Code.MALFORMED_REQUEST)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return refuse(Code.INTERNAL_ERROR)


class CallbackHandler:
    """The callback routes of all integrations."""

    def __init__(self, forwarder: Forwarder, disputes: Disputes, max_body_bytes: int) -> None:
        self.forwarder = forwarder
        self.disputes = disputes
        self.max_body_bytes = max_body_bytes
        self._recording: set[asyncio.Task[None]] = set()

    async def settled(self) -> None:
        """Wait until every answer is recorded in the dispute store (shutdown, tests)."""
        while self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)

    async def _record(self, integration: Integration, callback_id: int, outcome: Outcome) -> None:
        try:
            await self.disputes.answered(integration.tenant_id, callback_id, outcome)
        except Exception:
            # The wallet's answer stands (it is replayed on resend); the raw callback is kept.
            log.exception(
                "%s: could not record the answer of callback %d", integration.name, callback_id
            )

    def route(self, integration: Integration, endpoint: str) -> Handler:
        """The handler of `endpoint` for `integration`."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, integration, endpoint)

        return handle

    async def handle(
        self, request: web.Request, integration: Integration, endpoint: str
    ) -> web.Response:
        """One callback delivery (steps 1-3 of the module doc)."""
        # The provider's X-Trace-Id (or a new one) follows the callback into the wallet call
        # (gRPC metadata x-trace-id) and so onto the outbox events it writes.
        trace_id.set(request.headers.get("X-Trace-Id", "")[:64] or uuid.uuid4().hex)
        if request.method != "POST":
            return refuse(Code.METHOD_NOT_ALLOWED)
        body = await read_limited(request, self.max_body_bytes)
        if body is None:
            log.warning(
                "%s %s: body over %d bytes", integration.name, endpoint, self.max_body_bytes
            )
            return refuse(Code.BODY_TOO_LARGE)
        header = request.headers.get(HEADER)
        if header is None:
            log.warning("%s %s: no %s from %s", integration.name, endpoint, HEADER, request.remote)
            return refuse(Code.MISSING_SECURITY_HASH)
        if not verify(body, integration.secret, header):
            log.warning("%s %s: bad %s from %s", integration.name, endpoint, HEADER, request.remote)
            return refuse(Code.INVALID_SECURITY_HASH)
        parsed = parse_callback(endpoint, body, integration)
        cb = parsed.callback
        try:
            callback_id = await self.disputes.received(
                integration,
                endpoint,
                transaction_id=cb.transaction_id if cb else parsed.transaction_id,
                rollback_transaction_id=cb.rollback_transaction_id
                if isinstance(cb, Rollback)
                else None,
                remote_addr=request.remote or "",
                headers=dict(request.headers),
                raw_body=body,
            )
        except Exception:
            # No evidence, no effect: the provider resends (results and rollbacks) or rolls back.
            log.exception("%s %s: could not store the callback", integration.name, endpoint)
            return refuse(Code.INTERNAL_ERROR)
        outcome = await self._outcome(integration, cb, parsed.error)
        # The answer is recorded after replying: the evidence is already stored, the wallet
        # holds the truth, and the provider does not wait for the bookkeeping.
        task = asyncio.create_task(self._record(integration, callback_id, outcome))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)
        if outcome.error is not None:
            log.info(
                "%s %s %s: %s %s",
                integration.name,
                endpoint,
                cb.transaction_id if cb else parsed.transaction_id,
                outcome.error.value,
                outcome.wallet_reason,
            )
        return reply(outcome.body())

    async def _outcome(
        self, integration: Integration, cb: Callback | None, error: EdgeError | None
    ) -> Outcome:
        if cb is None:
            if error is None:  # pragma: no cover - parse returns one or the other
                return Outcome(error=Code.MALFORMED_REQUEST)
            return Outcome(error=error.code, note=error.detail)
        try:
            return await self.forwarder.forward(integration, cb)
        except Exception:
            log.exception("%s: forwarding %s failed", integration.name, cb.transaction_id)
            return Outcome(error=Code.INTERNAL_ERROR, wallet_reason="EDGE_EXCEPTION")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return reply({"status": "ok"})


async def unknown(request: web.Request) -> web.Response:
    """Any path no integration serves."""
    return refuse(Code.UNKNOWN_ENDPOINT)


def build_application(
    integrations: tuple[Integration, ...],
    callbacks: CallbackHandler,
    *,
    admin_routes: list[web.RouteDef] | None = None,
) -> web.Application:
    """The aiohttp application serving `integrations` (and the admin routes, if given)."""
    app = web.Application(middlewares=[always_json], client_max_size=callbacks.max_body_bytes + 1)
    for integration in integrations:
        for endpoint in (TRANSACTION, ROLLBACK):
            path = f"{integration.path_prefix}/{endpoint}"
            app.router.add_route("*", path, callbacks.route(integration, endpoint))
    app.router.add_get("/healthz", healthz)
    if admin_routes:
        app.router.add_routes(admin_routes)
    app.router.add_route("*", "/{tail:.*}", unknown)
    return app

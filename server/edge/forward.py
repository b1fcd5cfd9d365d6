"""One callback -> one WalletService call over gRPC; the wallet's answer -> the edge's reply.

The edge keeps no money state (money moves only in the wallet's ledger): a `bet` is `Debit`, a
`result` is `Credit`, a rollback is `RollbackTransaction` by `target_idempotency_key`. The
provider's transaction_id is the wallet idempotency key, scoped per integration (`wallet_key`), so
every repeat of a callback is answered from the wallet's stored response (the provider's spec: "the
same transaction_id ... balance user should not be changed, but the response must be successful and
be with the same transaction id as the first time"), refusals included. The CLIENT-side
`transaction_id` we answer is the wallet's ledger transaction id (a UUID).

Transient failures (`server.retry.retryable` for writes: UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED) are retried with the same request, hence the same key, up to `attempts`
times; then `INTERNAL_ERROR`, which the
provider may resend. A `result` of zero moves no money and the wallet refuses zero credits, so it
is answered without a wallet call with a deterministic id (`zero_result_id`): every repeat gets
the same answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from croupier.common.v1 import money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb

from server.edge.config import Integration
from server.edge.protocol import Callback, Code, Rollback, Transfer
from server.error_info import error_info
from server.money import Money, format_decimal
from server.retry import Backoff, retryable

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub

log = logging.getLogger("croupier.edge")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

MAX_KEY = 128
GAME_ID = "sportsbook"
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
_ZERO_RESULT_NS = uuid.UUID("5b0f3c2e-7f39-4d47-9a55-2d1f0c1e5a10")
# Wallet ErrorInfo reasons -> edge codes (the proto's documented errors for each RPC).
_BY_REASON = {
    "INSUFFICIENT_FUNDS": Code.INSUFFICIENT_FUNDS,
    "PLAYER_BLOCKED": Code.PLAYER_BLOCKED,
    "PLAYER_SELF_EXCLUDED": Code.PLAYER_SELF_EXCLUDED,
    "PLAYER_NOT_FOUND": Code.PLAYER_NOT_FOUND,
    "ACCOUNT_NOT_FOUND": Code.CURRENCY_MISMATCH,
    "TRANSACTION_ROLLED_BACK": Code.TRANSACTION_ROLLED_BACK,
    "IDEMPOTENCY_KEY_REUSED": Code.DUPLICATE_TRANSACTION,
    "TRANSACTION_ALREADY_ROLLED_BACK": Code.ALREADY_ROLLED_BACK,
    "TRANSACTION_NOT_FOUND": Code.TRANSACTION_NOT_FOUND,
    "TRANSACTION_NOT_REVERSIBLE": Code.TRANSACTION_NOT_REVERSIBLE,
    "AMOUNT_OVERFLOW": Code.INVALID_AMOUNT,
    "INVALID_AMOUNT": Code.INVALID_AMOUNT,
}


def wallet_key(integration: str, transaction_id: str) -> str:
    """The wallet idempotency key of a provider transaction: `sb:<integration>:<id>`.

    Ids that do not fit a wallet key (over 128 characters in all, or not printable ASCII) and
    ids starting with `~` become `sb:<integration>:~<sha256 hex of the id>`, so the two forms
    never collide.
    """
    direct = f"sb:{integration}:{transaction_id}"
    if (
        len(direct) <= MAX_KEY
        and _PRINTABLE.match(transaction_id)
        and not transaction_id.startswith("~")
    ):
        return direct
    return f"sb:{integration}:~{hashlib.sha256(transaction_id.encode()).hexdigest()}"


def zero_result_id(integration: Integration, transaction_id: str) -> str:
    """The CLIENT-side id answered for a zero `result` (UUIDv5 of tenant, integration, id)."""
    name = f"{integration.tenant_id}\0{integration.name}\0{transaction_id}"
    return str(uuid.uuid5(_ZERO_RESULT_NS, name))


@dataclass(frozen=True, slots=True)
class Outcome:
    """The reply to a callback: `transaction_id` on success, `error` otherwise, and notes for
    the dispute record (`wallet_reason`: the wallet's ErrorInfo reason or gRPC code name;
    `note`: e.g. what a rollback did)."""

    transaction_id: str | None = None
    error: Code | None = None
    wallet_reason: str = ""
    note: str = ""

    def body(self) -> dict[str, str | None]:
        """The provider's JSON reply: `{"error": null, "transaction_id": ...}` or
        `{"error": CODE}`."""
        if self.error is None:
            return {"error": None, "transaction_id": self.transaction_id}
        return {"error": self.error.value}


def _money(m: Money) -> money_pb2.Money:
    return money_pb2.Money(minor_units=m.minor_units, currency=m.currency)


def _reason(exc: grpc.aio.AioRpcError) -> str:
    info = error_info(exc)
    if info is None:
        return ""
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT and info.metadata.get("field") == "player_id":
        return "INVALID_PLAYER_ID"
    return str(info.reason)


def _refusal(exc: grpc.aio.AioRpcError) -> Outcome:
    reason = _reason(exc)
    if reason == "INVALID_PLAYER_ID":
        return Outcome(error=Code.INVALID_USER_ID, wallet_reason=reason)
    code = _BY_REASON.get(reason)
    if code is None:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            code = Code.MALFORMED_REQUEST
        else:
            log.error("wallet call failed: %s %s %s", exc.code().name, reason, exc.details())
            code = Code.INTERNAL_ERROR
    return Outcome(error=code, wallet_reason=reason or exc.code().name)


# The trace id of the callback being forwarded (set by the HTTP handler).
trace_id: ContextVar[str] = ContextVar("croupier_edge_trace_id", default="")


class Forwarder:
    """Sends callbacks to the WalletService through `stub` (one channel, shared)."""

    def __init__(
        self,
        stub: WalletServiceAsyncStub,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.05,
    ) -> None:
        self.stub = stub
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = Backoff(backoff)

    async def forward(self, integration: Integration, callback: Callback) -> Outcome:
        """Make the one wallet call `callback` maps to; never raises for a wallet answer."""
        try:
            if isinstance(callback, Transfer):
                return await self._transfer(integration, callback)
            return await self._rollback(integration, callback)
        except grpc.aio.AioRpcError as exc:
            return _refusal(exc)

    def _metadata(self, integration: Integration, transaction_id: str) -> dict[str, str]:
        return {
            "sportsbook.integration": integration.name,
            "sportsbook.transaction_id": transaction_id,
        }

    async def _retry(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        integration: Integration,
    ) -> Resp:
        """Call with a deadline; retry transient failures with the same request (same key)."""
        metadata = (*integration.call_metadata(), ("x-trace-id", trace_id.get()))
        for attempt in range(self.attempts):
            try:
                return await method(request, timeout=self.timeout, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                if not retryable(exc.code(), write=True) or attempt + 1 >= self.attempts:
                    raise
                log.warning("wallet %s, retrying (attempt %d)", exc.code().name, attempt + 2)
                await asyncio.sleep(self.backoff.delay(attempt + 1))
        raise AssertionError("unreachable")

    async def _transfer(self, integration: Integration, cb: Transfer) -> Outcome:
        if cb.action == "result" and cb.amount.minor_units == 0:
            return Outcome(zero_result_id(integration, cb.transaction_id), note="zero result")
        tenant, key = integration.tenant_id, wallet_key(integration.name, cb.transaction_id)
        meta = self._metadata(integration, cb.transaction_id)
        fields: dict[str, Any] = {
            "tenant_id": tenant,
            "player_id": cb.user_id,
            "idempotency_key": key,
            "amount": _money(cb.amount),
            "game_id": GAME_ID,
            "metadata": meta,
        }
        if cb.action == "bet":
            debit = await self._retry(self.stub.Debit, pb.DebitRequest(**fields), integration)
            return Outcome(debit.transaction_id, note="debit")
        credit = await self._retry(self.stub.Credit, pb.CreditRequest(**fields), integration)
        return Outcome(credit.transaction_id, note="credit")

    async def _rollback(self, integration: Integration, cb: Rollback) -> Outcome:
        meta = self._metadata(integration, cb.transaction_id)
        meta["sportsbook.rollback_transaction_id"] = cb.rollback_transaction_id
        meta["sportsbook.amount"] = f"{format_decimal(cb.amount)} {cb.amount.currency}"
        request = pb.RollbackTransactionRequest(
            tenant_id=integration.tenant_id,
            player_id=cb.user_id,
            idempotency_key=wallet_key(integration.name, cb.transaction_id),
            target_idempotency_key=wallet_key(integration.name, cb.rollback_transaction_id),
            metadata=meta,
        )
        reply = await self._retry(self.stub.RollbackTransaction, request, integration)
        outcome = pb.RollbackOutcome.Name(reply.outcome).removeprefix("ROLLBACK_OUTCOME_").lower()
        note = outcome
        if reply.outcome == pb.ROLLBACK_OUTCOME_REVERSED:
            moved = Money(abs(reply.reversed.minor_units), reply.reversed.currency)
            note = f"reversed {format_decimal(moved)} {moved.currency}"
            if moved != cb.amount:
                log.warning(
                    "rollback %s of %s: the callback said %s %s, the wallet reversed %s",
                    cb.transaction_id,
                    cb.rollback_transaction_id,
                    format_decimal(cb.amount),
                    cb.amount.currency,
                    note,
                )
                note += f" (callback said {format_decimal(cb.amount)} {cb.amount.currency})"
        return Outcome(reply.transaction_id, note=note)

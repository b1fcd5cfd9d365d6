"""AuditService over gRPC: provider reconciliation uploads, disputes, round exports.

Thin: validation here, rules in server.recon, SQL in server.store.recon_sql.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import psycopg
import psycopg_pool
from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.audit.v1 import audit_service_pb2_grpc as pb_grpc
from croupier.common.v1 import money_pb2
from croupier.wallet.v1 import wallet_service_pb2 as wallet_pb
from google.rpc import error_details_pb2, status_pb2
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.idempotency import Scope
from server.money import Money, check_amount
from server.recon import disputes
from server.recon.export import ExportRounds, PayloadRow, RoundRow, check_range, export_rounds
from server.recon.provider import (
    DEFAULT_THRESHOLD_PPM,
    ReconcileProvider,
    Report,
    reconcile_provider,
)
from server.transport.common import (
    Ctx,
    money_out,
    parse_uuid,
    reply,
    request_key,
    serialize,
    timestamp,
)
from server.transport.guard import guarded
from server.transport.paging import decode_token, encode_token, page_size
from server.transport.status import abort_with, abort_with_status, encode_error, internal_status
from server.transport.wallet_servicer import balance_out, transfer_command, wallet_key
from server.validation import check_id
from server.wallet.ledger import Wallet
from server.wallet.model import TransferResult

log = logging.getLogger("croupier.rpc")

_FORMATS = {pb.FILE_FORMAT_CSV: "csv", pb.FILE_FORMAT_JSONL: "jsonl"}
KIND_TO_PB = {
    "missing_in_ledger": pb.DIFFERENCE_KIND_MISSING_IN_LEDGER,
    "missing_at_provider": pb.DIFFERENCE_KIND_MISSING_AT_PROVIDER,
    "amount_mismatch": pb.DIFFERENCE_KIND_AMOUNT_MISMATCH,
    "currency_mismatch": pb.DIFFERENCE_KIND_CURRENCY_MISMATCH,
    "type_mismatch": pb.DIFFERENCE_KIND_TYPE_MISMATCH,
}
MAX_CHUNK = 1024 * 1024


def money(minor: int | None, currency: str | None) -> money_pb2.Money | None:
    """Minor units and currency -> Money, or None when either is absent."""
    if minor is None or currency is None:
        return None
    return money_out(minor, currency)


def render_report(report: Report) -> bytes:
    """A run's Report -> serialized ReconcileProviderResponse (deterministic bytes)."""
    out = pb.ReconcileProviderResponse(
        run_id=str(report.run_id),
        rows=report.rows,
        matched=report.matched,
        missing_in_ledger=report.counts.get("missing_in_ledger", 0),
        missing_at_provider=report.counts.get("missing_at_provider", 0),
        amount_mismatches=report.counts.get("amount_mismatch", 0),
        currency_mismatches=report.counts.get("currency_mismatch", 0),
        type_mismatches=report.counts.get("type_mismatch", 0),
        mismatch_rate_ppm=report.mismatch_ppm,
        threshold_exceeded=report.threshold_exceeded,
        threshold_ppm=report.threshold_ppm,
    )
    for d in report.differences:
        out.differences.add(
            kind=KIND_TO_PB[d.kind],
            event_id=d.event_id,
            line=d.line,
            provider_amount=money(d.p_minor, d.p_currency),
            ledger_amount=money(d.l_minor, d.l_currency),
            provider_type=d.p_type or "",
            ledger_type=d.l_type or "",
            transaction_id=str(d.transaction_id or ""),
            dispute_id=str(d.dispute_id or ""),
        )
    for b in report.bad_lines:
        out.bad_lines.add(line=b.line, reason=b.reason, message=b.message)
    for day, currency, provider_net, ledger_net in report.net_positions:
        out.net_positions.add(
            day=day,
            currency=currency,
            provider_net_minor_units=provider_net,
            ledger_net_minor_units=ledger_net,
            difference_minor_units=provider_net - ledger_net,
        )
    if report.window_start is not None and report.window_end is not None:
        out.window_start.CopyFrom(timestamp(report.window_start))
        out.window_end.CopyFrom(timestamp(report.window_end))
    return serialize(out)


class AuditServicer(pb_grpc.AuditServiceServicer):
    """See protos/croupier/audit/v1/audit_service.proto."""

    def __init__(self, pool: AsyncConnectionPool, wallet: Wallet) -> None:
        self.pool = pool
        self.wallet = wallet

    @guarded
    async def ReconcileProvider(
        self, request_iterator: AsyncIterator[pb.ReconcileProviderRequest], context: Ctx
    ) -> pb.ReconcileProviderResponse:
        """Client-streaming upload of a provider export -> the run's report."""
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            raise invalid("tenant_id", "MISSING_FIELD", "the upload had no message")
        tenant = check_id(first.tenant_id, "tenant_id")
        provider = check_id(first.provider, "provider")
        key = check_id(first.idempotency_key, "idempotency_key")
        fmt = _FORMATS.get(first.format)
        if fmt is None:
            raise invalid("format", "INVALID_FORMAT", "format must be FILE_FORMAT_CSV or _JSONL")
        if first.threshold_ppm < 0 or first.threshold_ppm > 1_000_000:
            raise invalid("threshold_ppm", "INVALID_THRESHOLD", "threshold_ppm is 0..1000000")
        threshold = first.threshold_ppm or DEFAULT_THRESHOLD_PPM

        def chunk_of(msg: pb.ReconcileProviderRequest) -> bytes:
            if msg.tenant_id and msg.tenant_id != tenant:
                raise invalid("tenant_id", "TENANT_CHANGED", "every message names one tenant")
            if len(msg.chunk) > MAX_CHUNK:
                raise invalid("chunk", "CHUNK_TOO_LARGE", f"a chunk is at most {MAX_CHUNK} bytes")
            return msg.chunk

        async def chunks() -> AsyncIterator[bytes]:
            yield chunk_of(first)
            async for msg in messages:
                yield chunk_of(msg)

        cmd = ReconcileProvider(tenant, provider, fmt, key, threshold)
        payload = await reconcile_provider(self.pool, cmd, chunks(), render_report)
        return pb.ReconcileProviderResponse.FromString(payload)

    async def ExportRounds(
        self, request: pb.ExportRoundsRequest, context: Ctx
    ) -> AsyncIterator[pb.ExportRoundsResponse]:
        """Stream the tenant's rounds in pages (see server.recon.export)."""
        try:
            start, end = check_range(
                request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None,
                request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None,
            )
            cmd = ExportRounds(
                check_id(request.tenant_id, "tenant_id"),
                start,
                end,
                check_id(request.player_id, "player_id", required=False),
                check_id(request.game_id, "game_id", required=False),
                check_id(request.provider, "provider", required=False),
                request.include_payloads,
            )
            async for page, payloads in export_rounds(self.pool, cmd):
                yield pb.ExportRoundsResponse(rounds=[round_out(r, payloads) for r in page])
        except DomainError as err:
            await abort_with(context, encode_error(err))
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
            await abort_with(
                context,
                encode_error(
                    DomainError(
                        ErrorCode.UNAVAILABLE,
                        "DATABASE_UNAVAILABLE",
                        "the database is unavailable; export again",
                    )
                ),
            )
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("internal error in ExportRounds")
            await abort_with_status(context, internal_status())

    # -- disputes --------------------------------------------------------------------------

    async def _adjust(self, tenant: str, idempotency_key: str, adj: disputes.Adjust) -> uuid.UUID:
        """An adjustment as the ordinary WalletService Credit or Debit request it is (same
        validation, fingerprint and idempotency as over gRPC); a refusal is raised."""
        fields: dict[str, Any] = {
            "tenant_id": tenant,
            "player_id": adj.player_id,
            "idempotency_key": idempotency_key,
            "amount": money_out(abs(adj.amount.minor_units), adj.amount.currency),
            "metadata": {"dispute_id": idempotency_key.removeprefix("dispute:")},
        }
        request: wallet_pb.CreditRequest | wallet_pb.DebitRequest
        if adj.amount.minor_units > 0:
            method, request = "Credit", wallet_pb.CreditRequest(**fields)
            operation = self.wallet.credit
        else:
            method, request = "Debit", wallet_pb.DebitRequest(**fields)
            operation = self.wallet.debit
        cmd = transfer_command(request)

        def ok(r: TransferResult) -> bytes:
            response = wallet_pb.CreditResponse if method == "Credit" else wallet_pb.DebitResponse
            return serialize(
                response(transaction_id=str(r.transaction_id), balance=balance_out(r.balance))
            )

        stored = await self.wallet.execute(
            wallet_key(method, cmd.caller, request),
            lambda conn: operation(conn, cmd),
            ok,
            encode_error,
            currency=cmd.amount.currency,
        )
        if stored.code != 0:
            raise from_status(stored.payload)
        return uuid.UUID(wallet_pb.CreditResponse.FromString(stored.payload).transaction_id)

    @guarded
    async def MoveDispute(
        self, request: pb.MoveDisputeRequest, context: Ctx
    ) -> pb.MoveDisputeResponse:
        """Move a dispute (see server.recon.disputes.move)."""
        tenant = check_id(request.tenant_id, "tenant_id")
        dispute_id = check_uuid_field(request.dispute_id, "dispute_id")
        key = check_id(request.idempotency_key, "idempotency_key")
        to_state = _STATE_FROM_PB.get(request.to_state)
        if to_state is None or to_state == "auto_failed":
            raise invalid(
                "to_state", "INVALID_STATE", "to_state is IN_REVIEW, ESCALATED or RESOLVED"
            )
        actor = check_id(request.actor, "actor")
        reason = request.reason.strip()
        if not reason or len(reason) > 1000 or not reason.isprintable():
            raise invalid("reason", "INVALID_REASON", "reason is 1 to 1000 printable characters")
        adjustment = None
        if request.HasField("adjustment"):
            amount = request.adjustment.amount
            check_amount(Money(abs(amount.minor_units), amount.currency), "adjustment.amount")
            adjustment = disputes.Adjust(
                check_id(request.adjustment.player_id, "adjustment.player_id"),
                Money(amount.minor_units, amount.currency),
            )
        cmd = disputes.MoveDispute(tenant, dispute_id, key, to_state, actor, reason, adjustment)

        def ok(view: disputes.DisputeView) -> bytes:
            return serialize(pb.MoveDisputeResponse(dispute=dispute_out(view)))

        stored = await disputes.move(
            self.pool,
            cmd,
            request_key("MoveDispute", tenant, key, request, scope=Scope.AUDIT),
            self._adjust,
            ok,
            encode_error,
        )
        return await reply(context, stored, pb.MoveDisputeResponse)

    @guarded
    async def GetDispute(
        self, request: pb.GetDisputeRequest, context: Ctx
    ) -> pb.GetDisputeResponse:
        """One dispute with its history."""
        tenant = check_id(request.tenant_id, "tenant_id")
        dispute_id = check_uuid_field(request.dispute_id, "dispute_id")
        view = await disputes.get(self.pool, tenant, dispute_id)
        return pb.GetDisputeResponse(dispute=dispute_out(view))

    @guarded
    async def ListDisputes(
        self, request: pb.ListDisputesRequest, context: Ctx
    ) -> pb.ListDisputesResponse:
        """Disputes newest first, keyset-paginated."""
        tenant = check_id(request.tenant_id, "tenant_id")
        provider = check_id(request.provider, "provider", required=False)
        state = ""
        if request.state:
            if request.state not in _STATE_FROM_PB:
                raise invalid("state", "INVALID_STATE", "unknown state")
            state = _STATE_FROM_PB[request.state]
        size = page_size(request.page_size, 50, 500)
        filters = f"{tenant}\0{provider}\0{state}"
        cursor = decode_token(request.page_token, filters)
        after = None
        if cursor is not None:
            try:
                at, _, ident = cursor.partition("|")
                after = (datetime.fromisoformat(at), uuid.UUID(ident))
            except ValueError as exc:
                raise invalid(
                    "page_token", "INVALID_PAGE_TOKEN", "page_token is malformed"
                ) from exc
        rows = await disputes.list_disputes(self.pool, tenant, provider, state, after, size + 1)
        out = pb.ListDisputesResponse(
            disputes=[dispute_out(disputes.DisputeView(r, [])) for r in rows[:size]]
        )
        if len(rows) > size:
            last = rows[size - 1]
            out.next_page_token = encode_token(
                f"{last.created_at.isoformat()}|{last.dispute_id}", filters
            )
        return out


_STATE_TO_PB = {
    "auto_failed": pb.DISPUTE_STATE_AUTO_FAILED,
    "in_review": pb.DISPUTE_STATE_IN_REVIEW,
    "escalated": pb.DISPUTE_STATE_ESCALATED,
    "resolved": pb.DISPUTE_STATE_RESOLVED,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}


def check_uuid_field(value: str, field: str) -> uuid.UUID:
    """A UUID field; INVALID_ARGUMENT `MISSING_FIELD` / `INVALID_ID` naming it."""
    if not value:
        raise invalid(field, "MISSING_FIELD", f"{field} is required")
    return parse_uuid(value, field)


def from_status(payload: bytes) -> DomainError:
    """A stored google.rpc.Status -> the DomainError it encodes (code, reason, metadata)."""
    status = status_pb2.Status.FromString(payload)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return DomainError(
                ErrorCode(status.code), info.reason, status.message, dict(info.metadata)
            )
    return DomainError(ErrorCode(status.code), "WALLET_REFUSED", status.message)


def round_out(r: RoundRow, payloads: dict[uuid.UUID, list[PayloadRow]]) -> pb.Round:
    """RoundRow (and its payloads) -> Round."""
    out = pb.Round(
        round_id=r.round_id,
        player_id=r.player_id,
        game_id=r.game_id,
        provider=r.provider,
        bets=money(r.bets, r.currency),
        wins=money(r.wins, r.currency),
        refunds=money(r.refunds, r.currency),
        started_at=timestamp(r.started_at),
        ended_at=timestamp(r.ended_at),
        transactions=r.transactions,
        transaction_ids=[str(i) for i in r.transaction_ids],
    )
    for i in r.transaction_ids:
        for p in payloads.get(i, ()):
            out.payloads.add(received_at=timestamp(p.received_at), endpoint=p.endpoint, body=p.body)
    return out


def dispute_out(view: disputes.DisputeView) -> pb.Dispute:
    """DisputeView -> Dispute."""
    d = view.dispute
    out = pb.Dispute(
        dispute_id=str(d.dispute_id),
        tenant_id=d.tenant_id,
        provider=d.provider,
        event_id=d.event_id,
        kind=KIND_TO_PB[d.kind],
        state=_STATE_TO_PB[d.state],
        run_id=str(d.run_id),
        provider_amount=money(d.provider_minor, d.provider_currency),
        ledger_amount=money(d.ledger_minor, d.ledger_currency),
        transaction_id=str(d.transaction_id or ""),
        created_at=timestamp(d.created_at),
        player_id=d.player_id,
    )
    for h in view.history:
        out.history.add(
            from_state=_STATE_TO_PB.get(h.from_state or "", pb.DISPUTE_STATE_UNSPECIFIED),
            to_state=_STATE_TO_PB[h.to_state],
            actor=h.actor,
            reason=h.reason,
            created_at=timestamp(h.created_at),
            adjustment_transaction_id=str(h.adjustment_transaction_id or ""),
        )
    return out

"""AuditService over gRPC: provider reconciliation uploads, disputes, round exports.

Thin: validation here, rules in server.recon, SQL in server.store.recon_sql.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc
from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.audit.v1 import audit_service_pb2_grpc as pb_grpc
from croupier.common.v1 import money_pb2
from google.protobuf import timestamp_pb2
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.recon.provider import (
    DEFAULT_THRESHOLD_PPM,
    ReconcileProvider,
    Report,
    reconcile_provider,
)
from server.transport.guard import guarded
from server.wallet.ledger import Wallet
from server.wallet.validation import check_id

Ctx = grpc.aio.ServicerContext[Any, Any]

_FORMATS = {pb.FILE_FORMAT_CSV: "csv", pb.FILE_FORMAT_JSONL: "jsonl"}
KIND_TO_PB = {
    "missing_in_ledger": pb.DIFFERENCE_KIND_MISSING_IN_LEDGER,
    "missing_at_provider": pb.DIFFERENCE_KIND_MISSING_AT_PROVIDER,
    "amount_mismatch": pb.DIFFERENCE_KIND_AMOUNT_MISMATCH,
    "currency_mismatch": pb.DIFFERENCE_KIND_CURRENCY_MISMATCH,
    "type_mismatch": pb.DIFFERENCE_KIND_TYPE_MISMATCH,
}
MAX_CHUNK = 1024 * 1024


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    """datetime -> Timestamp."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def money(minor: int | None, currency: str | None) -> money_pb2.Money | None:
    """Minor units and currency -> Money, or None when either is absent."""
    if minor is None or currency is None:
        return None
    return money_pb2.Money(minor_units=minor, currency=currency)


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
        out.window_start.CopyFrom(ts(report.window_start))
        out.window_end.CopyFrom(ts(report.window_end))
    return out.SerializeToString(deterministic=True)


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


def not_found(reason: str, message: str) -> DomainError:
    """NOT_FOUND with `reason`."""
    return DomainError(ErrorCode.NOT_FOUND, reason, message)

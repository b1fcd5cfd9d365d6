"""Reconciling one provider export against the ledger (docs/reconciliation.md).

`reconcile_provider` reads the uploaded file as it streams in (`server.recon.parse`), copies
the readable rows into a temporary table, and in one transaction: collects the provider's
ledger transactions (by event id, and by time over the whole UTC days the file covers), works
out every difference, opens or refreshes one dispute per difference, and stores the run with
its idempotency key and response bytes. It reads the ledger and never writes to it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import Gauge
from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError, ErrorCode, invalid
from server.recon.parse import Bad, Row, parse
from server.store import recon_sql

DEFAULT_THRESHOLD_PPM = 1000  # 0.1%
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_LISTED = 100_000

MISMATCH_RATIO = Gauge(
    "croupier_recon_mismatch_ratio",
    "Differences (and unreadable lines) of the last provider reconciliation, as a fraction of "
    "the rows compared",
    ["tenant", "provider"],
)
KINDS = (
    "missing_in_ledger",
    "missing_at_provider",
    "amount_mismatch",
    "currency_mismatch",
    "type_mismatch",
)


@dataclass(frozen=True)
class ReconcileProvider:
    """The run's parameters: `fmt` is "csv" or "jsonl"; `threshold_ppm` in ppm (> 0)."""

    tenant_id: str
    provider: str
    fmt: str
    idempotency_key: str
    threshold_ppm: int = DEFAULT_THRESHOLD_PPM


@dataclass
class Report:
    """What a run found. Amounts in minor units; times UTC; the window is [start, end)."""

    run_id: uuid.UUID
    rows: int = 0
    matched: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    differences: list[recon_sql.DiffRow] = field(default_factory=list)
    bad_lines: list[Bad] = field(default_factory=list)
    net_positions: list[tuple[str, str, int, int]] = field(default_factory=list)
    window_start: datetime | None = None
    window_end: datetime | None = None
    threshold_ppm: int = DEFAULT_THRESHOLD_PPM

    @property
    def mismatches(self) -> int:
        """Differences of every kind plus unreadable lines."""
        return sum(self.counts.values()) + len(self.bad_lines)

    @property
    def mismatch_ppm(self) -> int:
        """mismatches / (file rows + ledger events missing from the file), in ppm, rounded up."""
        whole = self.rows + self.counts.get("missing_at_provider", 0)
        if self.mismatches == 0:
            return 0
        return -(-self.mismatches * 1_000_000 // max(whole, 1))

    @property
    def threshold_exceeded(self) -> bool:
        """True when the mismatch rate is above the run's threshold."""
        return self.mismatch_ppm > self.threshold_ppm


def _day(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, tzinfo=UTC)


async def reconcile_provider(
    pool: AsyncConnectionPool,
    cmd: ReconcileProvider,
    chunks: AsyncIterator[bytes],
    render: Callable[[Report], bytes],
) -> bytes:
    """Reconcile the file streamed in `chunks`; returns `render(report)` as stored with the
    run. A repeat with the same idempotency key and the same file (and parameters) returns
    the first run's bytes and does nothing more.

    Errors (nothing written): INVALID_ARGUMENT `FILE_TOO_LARGE` (over 256 MiB); ALREADY_EXISTS
    `IDEMPOTENCY_KEY_REUSED` (the key ran another file). Unreadable lines are not errors: they
    are listed in the report.
    """
    digest = hashlib.sha256(f"{cmd.provider}\0{cmd.fmt}\0{cmd.threshold_ppm}\0".encode())
    size = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal size
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise invalid("chunk", "FILE_TOO_LARGE", f"the file exceeds {MAX_FILE_BYTES} bytes")
            digest.update(chunk)
            yield chunk

    report = Report(run_id=uuid.uuid4(), threshold_ppm=cmd.threshold_ppm)
    first: datetime | None = None
    last: datetime | None = None
    async with pool.connection() as conn, conn.transaction():
        await recon_sql.create_input(conn)
        async with recon_sql.input_copier(conn) as copy:
            async for item in parse(counted(), cmd.fmt):
                report.rows += 1
                if isinstance(item, Row):
                    first = item.occurred_at if first is None else min(first, item.occurred_at)
                    last = item.occurred_at if last is None else max(last, item.occurred_at)
                    await copy.write_row(
                        (
                            item.line,
                            item.event_id,
                            item.type,
                            item.minor_units,
                            item.currency,
                            item.occurred_at,
                            item.player_id,
                            False,
                        )
                    )
                else:
                    if item.reason == "MISSING_COLUMN" and item.line == 1:
                        report.rows -= 1  # the header line is not a row
                    report.bad_lines.append(item)
                    if item.event_id:
                        await copy.write_row(
                            (item.line, item.event_id, None, None, None, None, None, True)
                        )
        fingerprint = digest.digest()
        stored = await recon_sql.find_run(conn, cmd.tenant_id, cmd.idempotency_key)
        if stored is not None:
            return _replay(stored, fingerprint)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        start = _day(first) if first is not None else epoch
        end = _day(last) + timedelta(days=1) if last is not None else epoch
        report.window_start, report.window_end = start, end
        await recon_sql.prepare_ledger(conn, cmd.tenant_id, cmd.provider, start, end)
        report.matched = await recon_sql.compute_differences(conn, start, end)
        report.counts = {k: 0 for k in KINDS} | await recon_sql.difference_counts(conn)
        await recon_sql.open_disputes(conn, cmd.tenant_id, cmd.provider, report.run_id)
        report.differences = await recon_sql.differences(
            conn, cmd.tenant_id, cmd.provider, MAX_LISTED
        )
        report.net_positions = await recon_sql.net_positions(conn, start, end)
        del report.bad_lines[MAX_LISTED:]
        response = render(report)
        if not await recon_sql.insert_run(
            conn,
            cmd.tenant_id,
            report.run_id,
            cmd.provider,
            cmd.idempotency_key,
            fingerprint,
            report.mismatch_ppm,
            response,
        ):
            raise _Raced()
    MISMATCH_RATIO.labels(cmd.tenant_id, cmd.provider).set(report.mismatch_ppm / 1_000_000)
    return response


class _Raced(DomainError):
    def __init__(self) -> None:
        super().__init__(
            ErrorCode.ABORTED,
            "CONCURRENT_RUN",
            "another run with this idempotency key committed first; retry to get its report",
        )


def _replay(stored: tuple[bytes, bytes], fingerprint: bytes) -> bytes:
    if stored[0] != fingerprint:
        raise DomainError(
            ErrorCode.ALREADY_EXISTS,
            "IDEMPOTENCY_KEY_REUSED",
            "this idempotency key reconciled a different file or parameters",
        )
    return stored[1]

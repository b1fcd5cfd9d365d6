"""Provider reconciliation: a provider export matched to the ledger by event id, every
difference and every unreadable line reported, nothing else, no money moved."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

import grpc
import pytest
from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.audit.v1.audit_service_pb2_grpc import AuditServiceStub
from psycopg_pool import AsyncConnectionPool

from tests.recon.helpers import LedgerEvent, upload, write_ledger
from tests.rpc import error_info

PROVIDER = "acme"
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
KIND = {
    pb.DIFFERENCE_KIND_MISSING_IN_LEDGER: "missing_in_ledger",
    pb.DIFFERENCE_KIND_MISSING_AT_PROVIDER: "missing_at_provider",
    pb.DIFFERENCE_KIND_AMOUNT_MISMATCH: "amount_mismatch",
    pb.DIFFERENCE_KIND_CURRENCY_MISMATCH: "currency_mismatch",
    pb.DIFFERENCE_KIND_TYPE_MISMATCH: "type_mismatch",
}


@pytest.fixture(scope="module")
def audit(channel: grpc.aio.Channel) -> AuditServiceStub:
    """The AuditService stub over the real channel."""
    return AuditServiceStub(channel)


def _decimal(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _stamp(at: datetime, n: int) -> str:
    # every third row with a +02:00 offset: the same instant, another way to write it
    if n % 3 == 0:
        return at.astimezone(timezone(timedelta(hours=2))).isoformat()
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_100k_row_export_reports_every_planted_difference_and_nothing_else(
    audit: AuditServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    rng = random.Random(19)
    total_rows = 100_000
    n_missing_in_ledger, n_missing_at_provider = 50, 40
    n_amount, n_currency, n_type = 30, 20, 10
    n_dup = 5
    ledger_count = total_rows - n_missing_in_ledger - n_dup + n_missing_at_provider
    events = [
        LedgerEvent(
            f"ev-{i:06d}",
            "debit" if i % 2 else "credit",
            rng.randint(1, 500_000),
            DAY0 + timedelta(seconds=i * 259_000 // ledger_count),  # three UTC days
        )
        for i in range(ledger_count)
    ]
    await write_ledger(pool, tenant, PROVIDER, events)

    picks = rng.sample(
        range(ledger_count - 1), n_missing_at_provider + n_amount + n_currency + n_type + 3 + 2
    )
    missing_at_provider = set(picks[:40])
    amount = set(picks[40:70])
    currency = set(picks[70:90])
    typed = set(picks[90:100])
    bad_decimal = picks[100:103]
    unknown_currency = picks[103:105]
    truncated = ledger_count - 1  # the last ledger event is the file's truncated last line

    lines = ["event_id,type,amount,currency,occurred_at,player_id"]
    expected: dict[str, tuple[str, int]] = {}  # event_id -> (kind, line)
    bad: dict[int, str] = {}
    for i, e in enumerate(events):
        if i in missing_at_provider or i == truncated:
            continue
        kind = "bet" if e.kind == "debit" else "win"
        minor, cur = e.minor, "EUR"
        amount_text = _decimal(minor)
        line = len(lines) + 1
        if i in amount:
            amount_text = _decimal(minor + rng.randint(1, 999))
            expected[e.event_id] = ("amount_mismatch", line)
        elif i in currency:
            cur = "USD"
            expected[e.event_id] = ("currency_mismatch", line)
        elif i in typed:
            kind = "win" if kind == "bet" else "bet"
            expected[e.event_id] = ("type_mismatch", line)
        elif i in bad_decimal:
            amount_text = ["12.345", "1.5.0", "-3.00"][bad_decimal.index(i)]
            bad[line] = ["TOO_MANY_DECIMALS", "INVALID_AMOUNT", "INVALID_AMOUNT"][
                bad_decimal.index(i)
            ]
        elif i in unknown_currency:
            cur = "XYZ"
            bad[line] = "UNKNOWN_CURRENCY"
        lines.append(f"{e.event_id},{kind},{amount_text},{cur},{_stamp(e.at, i)},p1")
    for j in range(n_missing_in_ledger):
        at = DAY0 + timedelta(hours=j)
        lines.append(f"ghost-{j},win,{_decimal(100 + j)},EUR,{_stamp(at, j)},p1")
        expected[f"ghost-{j}"] = ("missing_in_ledger", len(lines))
    for j in range(n_dup):
        lines.append(lines[10 + j])  # repeats rows 10..14 (already matched once)
        bad[len(lines)] = "DUPLICATE_EVENT_ID"
    for i in missing_at_provider:
        expected[events[i].event_id] = ("missing_at_provider", 0)
    last = events[truncated]
    lines.append(f"{last.event_id},bet,{_decimal(last.minor)},EU")  # cut short, no newline
    bad[len(lines)] = "TRUNCATED_LINE"
    body = ("\n".join(lines)).encode()
    assert len(lines) - 1 == total_rows

    async with pool.connection() as conn:
        before = await (
            await conn.execute("SELECT count(*) FROM transactions WHERE tenant_id = %s", (tenant,))
        ).fetchone()

    reply = await audit.ReconcileProvider(upload(tenant, PROVIDER, body))

    assert reply.rows == total_rows
    got = {d.event_id: (KIND[d.kind], d.line) for d in reply.differences}
    assert got == expected  # every planted difference, and nothing else
    assert {b.line: b.reason for b in reply.bad_lines} == bad
    assert reply.missing_in_ledger == n_missing_in_ledger
    assert reply.missing_at_provider == n_missing_at_provider
    assert reply.amount_mismatches == n_amount
    assert reply.currency_mismatches == n_currency
    assert reply.type_mismatches == n_type
    differences = len(expected) + len(bad)
    assert reply.matched == total_rows - len(bad) - (len(expected) - n_missing_at_provider)
    assert reply.mismatch_rate_ppm == -(
        -differences * 1_000_000 // (total_rows + n_missing_at_provider)
    )
    assert reply.threshold_exceeded  # 0.2% > 0.1%
    assert all(d.dispute_id for d in reply.differences)
    dup = next(b for b in reply.bad_lines if b.reason == "DUPLICATE_EVENT_ID")
    assert "already on line 11" in dup.message

    # daily net positions, each side computed here independently (house side: bets - wins)
    provider_net: dict[tuple[str, str], int] = defaultdict(int)
    for text in lines[1:]:
        f = text.split(",")
        if len(f) != 6 or f[3] not in ("EUR", "USD"):
            continue
        try:
            minor = (
                int(f[2].replace(".", ""))
                if f[2].count(".") == 1
                and len(f[2].split(".")[1]) == 2
                and not f[2].startswith("-")
                else None
            )
        except ValueError:
            minor = None
        if minor is None:
            continue
        day = datetime.fromisoformat(f[4].replace("Z", "+00:00")).astimezone(UTC)
        provider_net[(day.strftime("%Y-%m-%d"), f[3])] += minor if f[1] == "bet" else -minor
    for text in lines[10:15]:  # the duplicates count once
        f = text.split(",")
        day = datetime.fromisoformat(f[4].replace("Z", "+00:00")).astimezone(UTC)
        minor = int(f[2].replace(".", ""))
        provider_net[(day.strftime("%Y-%m-%d"), f[3])] -= minor if f[1] == "bet" else -minor
    ledger_net: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        ledger_net[(e.at.strftime("%Y-%m-%d"), "EUR")] += e.minor if e.kind == "debit" else -e.minor
    got_net = {
        (n.day, n.currency): (n.provider_net_minor_units, n.ledger_net_minor_units)
        for n in reply.net_positions
    }
    keys = set(provider_net) | set(ledger_net)
    assert got_net == {k: (provider_net.get(k, 0), ledger_net.get(k, 0)) for k in keys}
    assert all(
        n.difference_minor_units == n.provider_net_minor_units - n.ledger_net_minor_units
        for n in reply.net_positions
    )

    async with pool.connection() as conn:
        after = await (
            await conn.execute("SELECT count(*) FROM transactions WHERE tenant_id = %s", (tenant,))
        ).fetchone()
        opened = await (
            await conn.execute(
                "SELECT count(*) FROM disputes WHERE tenant_id = %s AND state = 'auto_failed'",
                (tenant,),
            )
        ).fetchone()
    assert after == before  # no money moved
    assert opened == (len(expected),)

    # a second run of the same file finds the same disputes (no duplicates opened)
    again = await audit.ReconcileProvider(upload(tenant, PROVIDER, body))
    assert {d.dispute_id for d in again.differences} == {d.dispute_id for d in reply.differences}


async def test_malformed_files_name_each_bad_line(audit: AuditServiceStub, tenant: str) -> None:
    jsonl = b"\n".join(
        [
            b'{"event_id": "a", "type": "bet", "amount": "1.00", "currency": "EUR",'
            b' "occurred_at": "2026-03-01T10:00:00Z"}',
            b'{"event_id": "b", "type": "bet", "amount": 1.5, "currency": "EUR",'
            b' "occurred_at": "2026-03-01T10:00:00Z"}',
            b'{"event_id": "c", "type": "bet", "amount": 1.005, "currency": "EUR",'
            b' "occurred_at": "2026-03-01T10:00:00Z"}',
            b'{"event_id": "d", "type": "jackpot", "amount": "1", "currency": "EUR",'
            b' "occurred_at": "2026-03-01T10:00:00Z"}',
            b'{"event_id": "e", "type": "bet", "amount": "1", "currency": "EUR",'
            b' "occurred_at": "2026-03-01 10:00:00"}',
            b"[1, 2]",
            b"\xff\xfe",
            b"[" * 50_000,
            b'{"event_id": "a", "type": "win", "amount": "2", "currency": "EUR",'
            b' "occurred_at": "2026-03-01T10:00:00Z"}',
            b'{"event_id": "f", "type": "bet", "amou',
        ]
    )
    reply = await audit.ReconcileProvider(upload(tenant, PROVIDER, jsonl, pb.FILE_FORMAT_JSONL))
    assert [(b.line, b.reason) for b in reply.bad_lines] == [
        (3, "TOO_MANY_DECIMALS"),
        (4, "INVALID_TYPE"),
        (5, "INVALID_TIME"),
        (6, "MALFORMED_LINE"),
        (7, "MALFORMED_LINE"),
        (8, "MALFORMED_LINE"),
        (9, "DUPLICATE_EVENT_ID"),
        (10, "TRUNCATED_LINE"),
    ]
    assert reply.rows == 10 and reply.missing_in_ledger == 2  # a and b (1.5 is exact)

    csv_body = b"event_id,amount\nx,1.00\n"
    reply = await audit.ReconcileProvider(upload(tenant, PROVIDER, csv_body))
    assert [(b.line, b.reason) for b in reply.bad_lines] == [
        (1, "MISSING_COLUMN"),
        (2, "MISSING_COLUMN"),
    ]
    assert reply.rows == 1


async def test_replay_and_key_reuse(audit: AuditServiceStub, tenant: str) -> None:
    body = b"event_id,type,amount,currency,occurred_at\nz1,bet,1.00,EUR,2026-03-01T00:00:00Z\n"
    first = await audit.ReconcileProvider(upload(tenant, PROVIDER, body, key="run-1"))
    again = await audit.ReconcileProvider(upload(tenant, PROVIDER, body, key="run-1"))
    assert again.SerializeToString(deterministic=True) == first.SerializeToString(
        deterministic=True
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await audit.ReconcileProvider(upload(tenant, PROVIDER, body + b"\n", key="run-1"))
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(exc.value).reason == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize(
    ("first", "field", "reason"),
    [
        (
            pb.ReconcileProviderRequest(provider="p", idempotency_key="k"),
            "tenant_id",
            "MISSING_FIELD",
        ),
        (
            pb.ReconcileProviderRequest(tenant_id="t", idempotency_key="k"),
            "provider",
            "MISSING_FIELD",
        ),
        (
            pb.ReconcileProviderRequest(tenant_id="t", provider="p"),
            "idempotency_key",
            "MISSING_FIELD",
        ),
        (
            pb.ReconcileProviderRequest(tenant_id="t", provider="p", idempotency_key="k"),
            "format",
            "INVALID_FORMAT",
        ),
    ],
)
async def test_bad_first_message_is_invalid_argument(
    audit: AuditServiceStub, first: pb.ReconcileProviderRequest, field: str, reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await audit.ReconcileProvider(iter([first]))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(exc.value)
    assert info.reason == reason and info.metadata["field"] == field


async def test_tenant_cannot_change_mid_upload(audit: AuditServiceStub, tenant: str) -> None:
    messages = [
        pb.ReconcileProviderRequest(
            tenant_id=tenant, provider="p", idempotency_key="k", format=pb.FILE_FORMAT_CSV
        ),
        pb.ReconcileProviderRequest(tenant_id="other", chunk=b"x"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await audit.ReconcileProvider(iter(messages))
    assert error_info(exc.value).reason == "TENANT_CHANGED"

"""Round export: exact decimal amounts, raw provider payloads, filters, constant memory."""

from __future__ import annotations

import asyncio
import csv
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from croupier.audit.v1 import audit_service_pb2 as pb
from croupier.audit.v1.audit_service_pb2_grpc import AuditServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from psycopg_pool import AsyncConnectionPool

from client.cli import main
from server.app import App
from tests.recon.helpers import LedgerEvent, write_ledger
from tests.rpc import error_info, eur, key


@pytest.fixture(scope="module")
def audit(channel: grpc.aio.Channel) -> AuditServiceStub:
    """The AuditService stub."""
    return AuditServiceStub(channel)


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


async def test_export_rounds_csv_and_jsonl_with_payloads(
    wallet: WalletServiceStub,
    pool: AsyncConnectionPool,
    app: App,
    tenant: str,
    tmp_path: Path,
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    await wallet.Credit(
        wpb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(1_000))
    )
    await wallet.AuthorizeBet(
        wpb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b1",
            round_id="r1",
            game_id="slots",
            amount=eur(300),
        )
    )
    await wallet.SettleBet(
        wpb.SettleBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b1",
            round_id="r1",
            game_id="slots",
            win=eur(1_005),
        )
    )
    debit = await wallet.Debit(
        wpb.DebitRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key="sb:book:tx-9",
            amount=eur(250),
            game_id="sportsbook",
            metadata={"sportsbook.integration": "book", "sportsbook.transaction_id": "tx-9"},
        )
    )
    body = b'{"transaction_id":"tx-9","amount":"2.50"}'
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO sportsbook_callbacks (tenant_id, integration, endpoint,"
            " provider_transaction_id, headers, raw_body, wallet_transaction_id)"
            " VALUES (%s, 'book', 'transaction', 'tx-9', '{}', %s, %s)",
            (tenant, body, debit.transaction_id),
        )
    end = datetime.now(UTC) + timedelta(minutes=1)
    common = [
        "--target",
        f"127.0.0.1:{app.port}",
        "--tenant",
        tenant,
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
    ]
    out = tmp_path / "rounds.jsonl"
    code = await asyncio.to_thread(
        _cli, ["export", "rounds", *common, "--payloads", "--output", str(out)]
    )
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["round_id"]: r for r in rows}
    assert set(by_id) == {"r1", "tx-9", next(i for i in by_id if i.startswith("k-"))}
    r1 = by_id["r1"]
    assert (r1["bets"], r1["wins"], r1["net"], r1["transactions"]) == ("3.00", "10.05", "-7.05", 2)
    assert r1["game_id"] == "slots" and r1["payloads"] == []
    sb = by_id["tx-9"]
    assert (sb["provider"], sb["bets"], sb["currency"]) == ("book", "2.50", "EUR")
    assert sb["payloads"][0]["body"] == body.decode()

    out_csv = tmp_path / "rounds.csv"
    code = await asyncio.to_thread(
        _cli,
        [
            "export",
            "rounds",
            *common,
            "--format",
            "csv",
            "--provider",
            "book",
            "--output",
            str(out_csv),
        ],
    )
    assert code == 0
    with out_csv.open() as f:
        lines = list(csv.DictReader(f))
    assert [(r["round_id"], r["bets"], r["payloads"]) for r in lines] == [("tx-9", "2.50", "")]


async def test_bad_range_is_invalid_argument(audit: AuditServiceStub, tenant: str) -> None:
    request = pb.ExportRoundsRequest(tenant_id=tenant)
    request.start_time.FromDatetime(datetime(2026, 3, 2, tzinfo=UTC))
    request.end_time.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in audit.ExportRounds(request):
            pass
    info = error_info(exc.value)
    assert (info.reason, info.metadata["field"]) == ("INVALID_TIME_RANGE", "end_time")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in audit.ExportRounds(pb.ExportRoundsRequest(tenant_id=tenant)):
            pass
    assert error_info(exc.value).reason == "MISSING_FIELD"


def rss_kib() -> int:
    """This process's resident set size in KiB (/proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def export_and_measure(
    audit: AuditServiceStub, tenant: str, start: datetime, end: datetime
) -> tuple[int, list[int]]:
    """Stream every round (server and client both in this process); RSS sampled per page."""
    request = pb.ExportRoundsRequest(tenant_id=tenant)
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)
    count, samples = 0, []
    async for page in audit.ExportRounds(request):
        count += len(page.rounds)
        samples.append(rss_kib())
    return count, samples


ROUNDS = int(os.environ.get("CROUPIER_EXPORT_ROUNDS", "200000"))


async def test_export_streams_in_constant_memory(
    audit: AuditServiceStub, pool: AsyncConnectionPool, tenant: str
) -> None:
    day = datetime(2026, 2, 1, tzinfo=UTC)
    events = [
        LedgerEvent(f"r-{i:07d}", "credit", 100 + i % 1000, day + timedelta(milliseconds=i * 50))
        for i in range(ROUNDS)
    ]
    await write_ledger(pool, tenant, "acme", events)
    del events
    count, samples = await export_and_measure(audit, tenant, day, day + timedelta(days=2))
    assert count == ROUNDS + 0  # the funding credit is outside the range
    warm = samples[len(samples) // 10]
    growth_mib = (max(samples[len(samples) // 10 :]) - warm) / 1024
    print(
        f"exported {count} rounds; RSS {warm // 1024} MiB at 10%, growth after {growth_mib:.1f} MiB"
    )
    assert growth_mib < 16, samples[:: max(1, len(samples) // 20)]

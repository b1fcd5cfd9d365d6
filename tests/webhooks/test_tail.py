"""`croupier events tail` as a real subprocess against the real RabbitMQ and relay."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from server.events.relay import Relay
from tests.rpc import eur, key
from tests.webhooks.conftest import AMQP_URL
from tests.webhooks.test_deliveries import credit, debit

ROOT = Path(__file__).resolve().parents[2]


async def start_tail(*args: str) -> asyncio.subprocess.Process:
    """Start `croupier events tail ARGS` and wait until its queue is bound."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "events",
        "tail",
        *args,
        cwd=ROOT,
        env={**os.environ, "CROUPIER_AMQP_URL": AMQP_URL},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 20)
    assert line.startswith(b"listening on"), line
    return proc


async def finish(proc: asyncio.subprocess.Process) -> list[str]:
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    return out.decode().splitlines()


async def test_tail_prints_the_requested_types_as_json_lines(
    wallet: WalletServiceStub, relay: Relay, tenant: str
) -> None:
    proc = await start_tail("--type", "wallet.credited", "--tenant", tenant, "--count", "2")
    await credit(wallet, tenant, 1000)
    await debit(wallet, tenant, 10)  # not a requested type
    await credit(wallet, tenant, 2000)
    lines = await finish(proc)
    events = [json.loads(line) for line in lines]
    assert [e["event_type"] for e in events] == ["wallet.credited", "wallet.credited"]
    assert [e["payload"]["amount"]["minor_units"] for e in events] == [1000, 2000]
    assert {e["tenant_id"] for e in events} == {tenant}


async def test_tail_crm_feed_keeps_exact_decimals(
    wallet: WalletServiceStub, relay: Relay, tenant: str
) -> None:
    proc = await start_tail("--crm", "--tenant", tenant, "--count", "2")
    await credit(wallet, tenant, 10_000)  # no round: not a CRM casino event
    await wallet.AuthorizeBet(
        pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b1",
            round_id="r1",
            amount=eur(1250),
        )
    )
    await wallet.SettleBet(
        pb.SettleBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            bet_id="b1",
            round_id="r1",
            win=eur(3010),
        )
    )
    lines = await finish(proc)
    events = [json.loads(line, parse_float=Decimal) for line in lines]
    assert [e["type"] for e in events] == ["Bet", "Win"]
    assert [e["amount"] for e in events] == [Decimal("12.50"), Decimal("30.10")]
    assert '"amount": 12.50' in lines[0] or '"amount":12.50' in lines[0]


async def test_tail_reports_an_unreachable_broker() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "events",
        "tail",
        "--count",
        "1",
        "--amqp-url",
        "amqp://guest:guest@127.0.0.1:9/",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and out == b""
    assert json.loads(err.decode().strip().splitlines()[-1])["reason"] == "BROKER_UNAVAILABLE"

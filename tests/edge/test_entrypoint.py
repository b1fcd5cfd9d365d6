"""`croupier-edge` as a process: started the way `make run` starts it (no integration config,
loopback, the server's database), the signed `curl` block of docs/sportsbook.md run verbatim
with bash (only the port differs), then SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from server.app import App
from tests.edge.provider import available

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def doc_block() -> str:
    """The shell block after the `tested` marker in docs/sportsbook.md."""
    text = (ROOT / "docs" / "sportsbook.md").read_text(encoding="utf-8")
    after = text.split("<!-- tested:", 1)[1]
    match = re.search(r"```sh\n(.*?)```", after, re.S)
    assert match is not None
    return match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_healthy(port: int, proc: asyncio.subprocess.Process) -> None:
    for _ in range(100):
        if proc.returncode is not None:
            raise AssertionError(f"croupier-edge exited {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError("croupier-edge did not listen")


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("openssl")),
    reason="the doc block uses curl, openssl",
)
async def test_croupier_edge_serves_the_documented_curl_calls(
    app: App, database_url: str, wallet: WalletServiceAsyncStub
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROUPIER_EDGE_")} | {
        "CROUPIER_DATABASE_URL": database_url,
        "CROUPIER_GRPC_ADDR": f"127.0.0.1:{app.port}",
        "CROUPIER_EDGE_ADDR": f"127.0.0.1:{port}",
    }
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "croupier-edge"), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_healthy(port, proc)
        script = doc_block().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        sh = await asyncio.create_subprocess_exec(
            "bash", "-euc", script, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(sh.communicate(), 30)
        assert sh.returncode == 0
        replies = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        assert [r["error"] for r in replies] == [None, None, None, None, "TOO_MANY_DECIMALS"]
        assert replies[1]["transaction_id"] == replies[2]["transaction_id"]
        assert await available(wallet, "dev", "player-1") == 10_000
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()[-2000:]
    log = err.decode()
    assert "development integration" in log and "public development secret" in log
    assert "croupier-dev-secret" not in log  # secrets are never logged

"""The TypeScript client (issue 7 item 5): the generated stubs in generated/ts type-check, and
`node --test` runs tests/ts/*.test.ts against this session's real servers (plain text and
mutual TLS) over HTTP/2 gRPC. Nothing is started here besides node; the ports and certificate
paths go to it in the environment."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

from server.app import App
from tests.certs import DevCerts

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NODE_BIN = ROOT / "node_modules" / ".bin"


def node() -> str:
    path = shutil.which("node")
    assert path, "node is not installed (Node 20+)"
    assert (NODE_BIN / "tsx").exists(), "run `make setup` (npm install)"
    return path


async def _run(*cmd: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `cmd` in the repository root without blocking the event loop the servers run on."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=180)
    return proc.returncode or 0, out.decode()


async def test_generated_typescript_and_the_test_type_check() -> None:
    node()
    code, out = await _run(str(NODE_BIN / "tsc"), "-p", str(HERE / "tsconfig.json"))
    assert code == 0, out


async def test_node_client_calls_the_python_server(
    app: App, mtls_app: App, certs: DevCerts
) -> None:
    tests = sorted(str(p.relative_to(ROOT)) for p in HERE.glob("*.test.ts"))
    code, out = await _run(
        node(),
        "--import",
        "tsx",
        "--test",
        "--test-reporter=spec",
        *tests,
        env={
            "CROUPIER_GRPC_PORT": str(app.port),
            "CROUPIER_MTLS_PORT": str(mtls_app.port),
            "CROUPIER_TLS_CA": str(certs.ca),
            "CROUPIER_TLS_CLIENT_CERT": str(certs.client_cert),
            "CROUPIER_TLS_CLIENT_KEY": str(certs.client_key),
        },
    )
    assert code == 0, out
    # every test ran (none skipped for want of a server or cancelled) and passed
    counts = dict(re.findall(r"^\S+ (pass|fail|cancelled|skipped|todo) (\d+)$", out, flags=re.M))
    assert int(counts["pass"]) >= 4, out
    assert (counts["fail"], counts["cancelled"], counts["skipped"]) == ("0", "0", "0"), out

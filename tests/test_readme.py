"""The README's commands work verbatim (issue 2 item 9, issue 3 item 10, issue 4): its wallet
grpcurl lines and its jackpot walk-through run against a real server (only the address is
replaced), and its signed-curl block is the one tests/edge/test_entrypoint.py runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from server.app import App

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = re.search(r"\n## ", text[start + len(heading) :])
    return text[start : start + len(heading) + (nxt.start() if nxt else len(text))]


def _commands(section: str, prefix: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line for b in blocks for line in b.splitlines() if line.startswith(prefix)]


def _run(line: str, port: int, env: dict[str, str]) -> str:
    line = line.replace("127.0.0.1:50051", f"127.0.0.1:{port}")
    proc = subprocess.run(
        shlex.split(line),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
    return proc.stdout


async def test_readme_wallet_grpcurl_lines_work_verbatim(app: App) -> None:
    lines = _commands(_section(README, "## Try it with grpcurl"), ".venv/bin/grpcurl")
    assert len(lines) >= 8
    env = dict(os.environ)

    def drive() -> None:
        for line in lines:
            out = _run(line, app.port, env)
            if "GetBalance" in line:
                balance = json.loads(out)["balances"][0]
                assert balance["available"] == {"minor_units": "10750", "currency": "EUR"}

    await asyncio.to_thread(drive)


async def test_readme_jackpot_walk_through_works_verbatim(app: App) -> None:
    section = _section(README, "### Jackpot walk-through (grpcurl)")
    lines = [ln for ln in _commands(section, ".venv/bin/") if "WatchPools" not in ln]
    assert len(lines) >= 10
    env = {**os.environ, "CROUPIER_TARGET": f"127.0.0.1:{app.port}"}

    def drive() -> None:
        hit = False
        for line in lines:
            out = _run(line, app.port, env)
            if "/Contribute" in line and '"hit": true' in out:
                hit = True
            if "/ListWins" in line:
                assert "PAYOUT_STATE_CREDITED" in out
        assert hit, "the must-drop major did not drop within the walk-through's bets"

    await asyncio.to_thread(drive)


def test_readme_sportsbook_block_is_the_tested_one() -> None:
    doc = (ROOT / "docs" / "sportsbook.md").read_text(encoding="utf-8")

    def block(text: str) -> str:
        after = text.split("<!-- tested:", 1)[1]
        match = re.search(r"```sh\n(.*?)```", after, re.S)
        assert match is not None
        return match.group(1)

    assert block(README) == block(doc)


async def test_readme_player_protection_lines_work_verbatim(app: App) -> None:
    lines = _commands(_section(README, "## Player protection (grpcurl)"), ".venv/bin/grpcurl")
    assert len(lines) >= 8
    env = dict(os.environ)

    def drive() -> None:
        for line in lines:
            out = _run(line, app.port, env)
            if "/ListLimits" in line:
                deposit = json.loads(out)["limits"][0]
                assert deposit["used"] == {"minor_units": "10000", "currency": "EUR"}
                assert deposit["remaining"] == {"minor_units": "5000", "currency": "EUR"}

    await asyncio.to_thread(drive)


async def test_readme_bonus_walk_through_reproduces_the_example(app: App) -> None:
    section = _section(README, "## Bonus money (grpcurl)")
    script = "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))
    script = script.replace("127.0.0.1:50051", f"127.0.0.1:{app.port}")

    def drive() -> str:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            check=False,
        )
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
        return proc.stdout

    out = await asyncio.to_thread(drive)
    outputs = re.findall(r"^\{.*?^\}", out, re.S | re.M)
    balance = json.loads(outputs[-1])["balances"][0]
    assert {
        k: balance[k].get("minor_units", "0") for k in ("available", "cash", "bonus", "locked")
    } == {
        "available": "30000",
        "cash": "30000",
        "bonus": "0",
        "locked": "0",
    }
    completed = json.loads(outputs[-2])["bonuses"][0]
    assert completed["converted"]["minor_units"] == "30000"
    assert completed["removed"]["minor_units"] == "10000"
    assert completed["requirement"]["minor_units"] == "1200000"

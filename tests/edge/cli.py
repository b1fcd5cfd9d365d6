"""Run the real `croupier` command line in a subprocess (the edge runs on the test loop, so
the CLI's own event loop must live in another process)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


async def croupier(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """`croupier ARGS...`: (exit status, stdout parsed as JSON or None, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "croupier"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, errb = await asyncio.wait_for(proc.communicate(), 60)
    try:
        doc = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        doc = None
    return proc.returncode or 0, doc, errb.decode()

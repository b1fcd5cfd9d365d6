"""`croupier reconcile provider` (exit codes, the sample file, the gauge) and the README."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from croupier.wallet.v1 import wallet_service_pb2 as wpb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from prometheus_client import REGISTRY

from client.cli import main
from server.app import App
from tests.rpc import eur

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "docs" / "samples" / "provider-export.csv"


def _cli(argv: list[str]) -> tuple[int, str]:
    out = StringIO()
    with redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


async def test_sample_file_reconciles_and_the_exit_code_follows_the_threshold(
    app: App, wallet: WalletServiceStub, tenant: str, tmp_path: Path
) -> None:
    target = ["--target", f"127.0.0.1:{app.port}", "--tenant", tenant]
    code, out = await asyncio.to_thread(
        _cli, ["reconcile", "provider", *target, "--provider", "acme", "--file", str(SAMPLE)]
    )
    report = json.loads(out)
    assert code == 3 and report["threshold_exceeded"] is True
    assert report["missing_in_ledger"] == "4" and report["bad_lines"] == []
    gauge = REGISTRY.get_sample_value(
        "croupier_recon_mismatch_ratio", {"tenant": tenant, "provider": "acme"}
    )
    assert gauge == 1.0

    # the ledger gets the events, tagged with the provider: everything matches, exit 0
    for event, kind, minor, cur, player in (
        ("bet-1001", "Debit", 250, "EUR", "p1"),
        ("win-1001", "Credit", 1200, "EUR", "p1"),
        ("bet-1002", "Debit", 1000, "JPY", "p2"),
    ):
        if kind == "Debit":
            await wallet.Credit(
                wpb.CreditRequest(
                    tenant_id=tenant,
                    player_id=player,
                    idempotency_key=f"fund-{event}",
                    amount=eur(minor, cur),
                )
            )
        request = getattr(wpb, f"{kind}Request")(
            tenant_id=tenant,
            player_id=player,
            idempotency_key=f"acme-{event}",
            amount=eur(minor, cur),
            metadata={"provider": "acme", "provider.event_id": event},
        )
        await getattr(wallet, kind)(request)
    only_matching = tmp_path / "export.csv"
    only_matching.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:4]))
    code, out = await asyncio.to_thread(
        _cli,
        ["reconcile", "provider", *target, "--provider", "acme", "--file", str(only_matching)],
    )
    report = json.loads(out)
    # the wallet's events were made now, outside the file's days: only the file is compared
    assert code == 0, report
    assert report["matched"] == "3" and report["mismatch_rate_ppm"] == "0"
    assert (
        REGISTRY.get_sample_value(
            "croupier_recon_mismatch_ratio", {"tenant": tenant, "provider": "acme"}
        )
        == 0.0
    )


def test_readme_sample_is_the_sample_file() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```csv\n(.*?)```", readme, re.S)
    assert block is not None
    assert SAMPLE.read_text().startswith(block.group(1))


async def test_unreadable_file_is_a_clean_error(app: App, tenant: str) -> None:
    target = ["--target", f"127.0.0.1:{app.port}", "--tenant", tenant]
    from contextlib import redirect_stderr

    err = StringIO()
    with redirect_stderr(err):
        code, _ = await asyncio.to_thread(
            _cli, ["reconcile", "provider", *target, "--provider", "a", "--file", "/nonexistent"]
        )
    assert code == 1 and json.loads(err.getvalue())["reason"] == "INVALID_FILE"

"""`croupier wallet limits|exclude` and `croupier admin review` against the real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub

from client import cli
from tests.jackpot.test_aml_review import reviewed_win
from tests.jackpot.test_payout import wait_state


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, Any]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else None, json.loads(err) if err else None


async def test_limits_and_exclusion_through_the_cli(
    capsys: pytest.CaptureFixture[str], target: str, tenant: str
) -> None:
    common = ("--target", target, "--tenant", tenant, "--player", "p")
    code, out, err = await run(
        capsys, "wallet", "credit", *common, "--amount", "50.00", "--currency", "EUR"
    )
    assert code == 0, err
    code, out, err = await run(
        capsys, "wallet", "limits", "set", *common, "--kind", "wager", "--window", "day",
        "--amount", "20.00", "--currency", "EUR", "--reason", "player asked",
    )  # fmt: skip
    assert code == 0, err
    assert out["applied"] is True and out["limit"]["amount"]["minor_units"] == "2000"
    code, out, err = await run(
        capsys, "wallet", "bet", *common, "--bet-id", "b1", "--amount", "20.01", "--currency", "EUR"
    )
    assert code == 1 and err["reason"] == "WAGER_LIMIT_EXCEEDED"
    assert err["metadata"]["remaining"] == "2000"
    code, out, err = await run(capsys, "wallet", "limits", "show", *common)
    assert code == 0, err
    assert [(x["kind"], x["window"]) for x in out["limits"]] == [
        ("LIMIT_KIND_WAGER", "LIMIT_WINDOW_DAY")
    ]
    code, out, err = await run(
        capsys, "wallet", "limits", "set", *common, "--kind", "wager", "--window", "day",
        "--currency", "EUR", "--remove",
    )  # fmt: skip
    assert code == 0 and out["applied"] is False and out["limit"]["pending_removal"] is True
    code, out, err = await run(
        capsys, "wallet", "exclude", *common, "--kind", "cooling-off", "--days", "1"
    )
    assert code == 0 and out["exclusion"]["active"] is True
    code, out, err = await run(
        capsys, "wallet", "bet", *common, "--bet-id", "b2", "--amount", "1.00", "--currency", "EUR"
    )
    assert code == 1 and err["reason"] == "PLAYER_COOLING_OFF"
    code, out, err = await run(
        capsys, "wallet", "exclude", *common, "--kind", "closure", "--until", "2001-01-01T00:00:00"
    )
    assert code == 1 and err["metadata"]["field"] == "--until"


async def test_admin_review_through_the_cli(
    capsys: pytest.CaptureFixture[str], target: str, tenant: str, channel: grpc.aio.Channel,
    wallet: WalletServiceStub,
) -> None:  # fmt: skip
    jackpot = JackpotServiceStub(channel)
    win, review = await reviewed_win(jackpot, wallet, tenant, "whale")
    common = ("--target", target, "--tenant", tenant)
    code, out, err = await run(capsys, "admin", "review", "list", *common, "--state", "open")
    assert code == 0, err
    assert [r["review_id"] for r in out["reviews"]] == [review.review_id]
    with pytest.raises(SystemExit):  # a rejection needs --reason: a usage error
        await run(capsys, "admin", "review", "reject", review.review_id, *common)
    code, out, err = await run(
        capsys, "admin", "review", "approve", review.review_id, *common, "--reason", "KYC ok"
    )
    assert code == 0 and out["review"]["state"] == "REVIEW_STATE_APPROVED"
    await wait_state(jackpot, tenant, win.win_id, jpb.PAYOUT_STATE_CREDITED)

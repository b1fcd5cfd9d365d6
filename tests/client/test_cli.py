"""`croupier wallet ...` against the real server: in-process `main([...])` and one subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from client import cli

ROOT = Path(__file__).resolve().parents[2]


class Croupier:
    """Runs `croupier wallet ...` in-process (in a worker thread: main is blocking)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], target: str, tenant: str) -> None:
        self.capsys, self.target, self.tenant = capsys, target, tenant

    async def run(self, *argv: str) -> tuple[int, Any, Any]:
        """Exit code, stdout JSON (or None), stderr JSON (or None)."""
        command, *rest = argv
        args = ["wallet", command, "--target", self.target, "--tenant", self.tenant, *rest]
        self.capsys.readouterr()
        code = await asyncio.to_thread(cli.main, args)
        out, err = self.capsys.readouterr()
        return code, json.loads(out) if out else None, json.loads(err) if err else None

    async def ok(self, *argv: str) -> Any:
        code, out, err = await self.run(*argv)
        assert code == 0 and err is None, err
        return out

    async def fails(self, *argv: str) -> Any:
        code, out, err = await self.run(*argv)
        assert code == 1 and out is None, out
        assert set(err) >= {"code", "reason", "message"}
        return err


@pytest.fixture
def croupier(capsys: pytest.CaptureFixture[str], target: str, tenant: str) -> Croupier:
    return Croupier(capsys, target, tenant)


async def test_a_round_through_the_cli(croupier: Croupier) -> None:
    c = croupier
    credited = await c.ok("credit", "--player", "p", "--amount", "100.00", "--currency", "EUR")
    assert credited["balance"]["available"] == {"minor_units": "10000", "currency": "EUR"}
    hold = await c.ok(
        "bet", "--player", "p", "--bet-id", "b1", "--amount", "2.5", "--currency", "EUR",
        "--round-id", "r1", "--game-id", "slots", "--meta", "seat=3", "--hold-ttl", "60",
    )  # fmt: skip
    assert hold["balance"]["held"]["minor_units"] == "250" and hold["hold_id"]
    settled = await c.ok(
        "settle", "--player", "p", "--bet-id", "b1", "--capture", "2.00", "--win", "10",
        "--currency", "EUR",
    )  # fmt: skip
    assert settled["captured"]["minor_units"] == "200"
    assert settled["released"]["minor_units"] == "50"
    assert settled["win"]["minor_units"] == "1000"
    balance = await c.ok("balance", "--player", "p")
    assert balance["player_status"] == "PLAYER_STATUS_ACTIVE"
    assert balance["balances"][0]["available"]["minor_units"] == "10800"
    assert balance["balances"][0]["held"]["minor_units"] == "0"

    tx = await c.ok("tx", "--id", hold["transaction_id"])
    assert tx["transaction"]["kind"] == "TRANSACTION_KIND_AUTHORIZE"
    assert tx["transaction"]["metadata"] == {"seat": "3"}
    assert len(tx["transaction"]["postings"]) == 2

    first = await c.ok("history", "--player", "p", "--page-size", "2")
    assert len(first["transactions"]) == 2 and first["next_page_token"]
    everything = await c.ok("history", "--player", "p", "--page-size", "2", "--all")
    kinds = [t["kind"] for t in everything["transactions"]]
    assert kinds == [
        "TRANSACTION_KIND_SETTLE",
        "TRANSACTION_KIND_AUTHORIZE",
        "TRANSACTION_KIND_CREDIT",
    ]
    assert everything["next_page_token"] == ""


async def test_debit_cancel_rollback_status(croupier: Croupier) -> None:
    c = croupier
    await c.ok("credit", "--player", "p", "--amount", "1000", "--currency", "JPY")
    debit = await c.ok(
        "debit", "--player", "p", "--amount", "300", "--currency", "JPY",
        "--idempotency-key", "d1",
    )  # fmt: skip
    assert debit["balance"]["available"]["minor_units"] == "700"
    back = await c.ok("rollback", "--player", "p", "--target-key", "d1")
    assert back["outcome"] == "ROLLBACK_OUTCOME_REVERSED"
    assert back["reversed"]["minor_units"] == "300"
    await c.ok("bet", "--player", "p", "--bet-id", "b", "--amount", "100", "--currency", "JPY")
    cancelled = await c.ok("cancel", "--player", "p", "--bet-id", "b", "--reason", "table closed")
    assert cancelled["released"]["minor_units"] == "100"
    assert cancelled["balance"]["available"]["minor_units"] == "1000"

    shown = await c.ok("status", "--player", "p")
    assert shown["status"] == "PLAYER_STATUS_ACTIVE"
    changed = await c.ok("status", "--player", "p", "--set", "blocked", "--reason", "AML")
    assert (changed["previous_status"], changed["status"]) == (
        "PLAYER_STATUS_ACTIVE",
        "PLAYER_STATUS_BLOCKED",
    )
    err = await c.fails(
        "bet", "--player", "p", "--bet-id", "b2", "--amount", "1", "--currency", "JPY"
    )
    assert (err["code"], err["reason"]) == ("FAILED_PRECONDITION", "PLAYER_BLOCKED")


async def test_replay_with_the_same_key_prints_the_same_response(croupier: Croupier) -> None:
    args = ("credit", "--player", "p", "--amount", "5.00", "--currency", "EUR")
    first = await croupier.ok(*args, "--idempotency-key", "cli-k1")
    again = await croupier.ok(*args, "--idempotency-key", "cli-k1")
    assert again == first
    err = await croupier.fails(
        "credit", "--player", "p", "--amount", "6.00", "--currency", "EUR",
        "--idempotency-key", "cli-k1",
    )  # fmt: skip
    assert (err["code"], err["reason"]) == ("ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED")
    assert err["idempotency_key"] == "cli-k1"


async def test_amounts_are_exact_never_rounded(croupier: Croupier) -> None:
    err = await croupier.fails("credit", "--player", "p", "--amount", "10.005", "--currency", "EUR")
    assert (err["code"], err["reason"]) == ("INVALID_ARGUMENT", "TOO_MANY_DECIMALS")
    assert err["metadata"]["field"] == "amount"
    err = await croupier.fails("credit", "--player", "p", "--amount", "1.5", "--currency", "JPY")
    assert err["reason"] == "TOO_MANY_DECIMALS"
    err = await croupier.fails("credit", "--player", "p", "--amount", "-1", "--currency", "EUR")
    assert err["reason"] == "INVALID_AMOUNT"
    err = await croupier.fails("credit", "--player", "p", "--amount", "1", "--currency", "EURO")
    assert err["reason"] == "UNKNOWN_CURRENCY"
    err = await croupier.fails("settle", "--player", "p", "--bet-id", "b", "--win", "1")
    assert (err["reason"], err["metadata"]["field"]) == ("MISSING_FIELD", "currency")
    # nothing reached the ledger
    err = await croupier.fails("balance", "--player", "p")
    assert (err["code"], err["reason"]) == ("NOT_FOUND", "PLAYER_NOT_FOUND")
    kwd = await croupier.ok("credit", "--player", "p", "--amount", "1.234", "--currency", "KWD")
    assert kwd["balance"]["available"]["minor_units"] == "1234"


async def test_server_errors_are_one_json_object(croupier: Croupier) -> None:
    await croupier.ok("credit", "--player", "p", "--amount", "1.00", "--currency", "EUR")
    err = await croupier.fails("debit", "--player", "p", "--amount", "1.01", "--currency", "EUR")
    assert err["code"] == "FAILED_PRECONDITION" and err["reason"] == "INSUFFICIENT_FUNDS"
    assert err["domain"] == "croupier" and err["message"]
    assert err["idempotency_key"]  # the generated key, to retry the same command with
    err = await croupier.fails("tx", "--id", "not-a-uuid")
    assert (err["reason"], err["metadata"]["field"]) == ("INVALID_ID", "transaction_id")


def test_groups_register_and_a_missing_group_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "GROUPS", (*cli.GROUPS, "client.no_such_group_cli"))
    parser = cli.build_parser()
    args = parser.parse_args(["wallet", "balance", "--tenant", "t", "--player", "p"])
    assert args.group == "wallet" and callable(args.run)
    assert args.target == (os.environ.get("CROUPIER_TARGET") or "127.0.0.1:50051")
    with pytest.raises(SystemExit) as usage:
        parser.parse_args(["wallet", "credit", "--tenant", "t", "--player", "p"])
    assert usage.value.code == 2  # --amount and --currency are required


async def installed(env: dict[str, str], *argv: str) -> tuple[int | None, bytes, bytes]:
    """Run the installed `croupier` command; exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "croupier"),
        *argv,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode, out, err


async def test_the_installed_command(target: str, tenant: str) -> None:
    env = {**os.environ, "CROUPIER_TARGET": target, "CROUPIER_TENANT": tenant}
    code, out, err = await installed(
        env, "wallet", "credit", "--player", "p", "--amount", "12.34", "--currency", "EUR"
    )
    assert code == 0, err
    assert json.loads(out)["balance"]["available"]["minor_units"] == "1234"
    code, out, err = await installed(
        env, "wallet", "debit", "--player", "p", "--amount", "99", "--currency", "EUR"
    )
    assert code == 1 and out == b""
    assert json.loads(err)["reason"] == "INSUFFICIENT_FUNDS"

"""`croupier wallet bonus grant|show|forfeit` against the real server."""

from __future__ import annotations

import pytest

from tests.client.test_protection_cli import run


async def test_bonus_through_the_cli(
    capsys: pytest.CaptureFixture[str], target: str, tenant: str
) -> None:
    common = ("--target", target, "--tenant", tenant, "--player", "p")
    code, out, err = await run(
        capsys, "wallet", "credit", *common, "--amount", "100.00", "--currency", "EUR"
    )
    assert code == 0, err
    code, out, err = await run(
        capsys, "wallet", "bonus", "grant", *common, "--amount", "200.00", "--currency", "EUR",
        "--lock-deposit", "100.00", "--multiplier", "40", "--weight", "category:slots=100",
        "--weight", "category:roulette=10", "--weight", "game:blackjack-classic=2.5",
        "--default-weight", "0", "--max-bet", "5.00", "--days", "7",
    )  # fmt: skip
    assert code == 0, err
    bonus = out["bonus"]
    assert bonus["requirement"]["minor_units"] == "1200000"
    assert bonus["category_weights_ppm"] == {"slots": 1_000_000, "roulette": 100_000}
    assert bonus["game_weights_ppm"] == {"blackjack-classic": 25_000}
    assert out["balance"]["locked"]["minor_units"] == "10000"
    code, out, err = await run(capsys, "wallet", "bonus", "show", *common)
    assert code == 0 and [b["state"] for b in out["bonuses"]] == ["BONUS_STATE_ACTIVE"]
    code, out, err = await run(
        capsys, "wallet", "bonus", "forfeit", *common, "--bonus-id", bonus["bonus_id"],
        "--reason", "player asked",
    )  # fmt: skip
    assert code == 0 and out["bonus"]["state"] == "BONUS_STATE_FORFEITED"
    assert out["balance"]["cash"]["minor_units"] == "10000"
    code, out, err = await run(
        capsys, "wallet", "bonus", "show", *common, "--bonus-id", bonus["bonus_id"]
    )
    assert code == 0 and out["bonus"]["reason"] == "player asked"
    code, out, err = await run(
        capsys, "wallet", "bonus", "grant", *common, "--amount", "1.00", "--currency", "EUR",
        "--multiplier", "1", "--weight", "category:slots=101",
    )  # fmt: skip
    assert code == 1 and err["reason"] == "INVALID_WEIGHT"

"""The conformance kit: golden signature vectors and replay scenarios (issue 4 item 3).

The vectors were computed with `openssl dgst -sha256 -hmac`; the scenarios are replayed through
the real `croupier sportsbook replay` against the real edge, in order and then duplicated and
shuffled, and must end with the same balances (seed 002 replay advice).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.app import App
from server.edge.app import EdgeApp
from server.edge.signature import sign, verify
from tests.edge.cli import croupier
from tests.edge.provider import Provider

KIT = Path(__file__).parent / "conformance"
SCENARIOS = sorted((KIT / "scenarios").glob("*.jsonl"))


def test_golden_signature_vectors() -> None:
    doc = json.loads((KIT / "signature_vectors.json").read_text(encoding="utf-8"))
    assert len(doc["vectors"]) >= 8
    for v in doc["vectors"]:
        body, secret = v["body"].encode(), v["secret"].encode()
        assert sign(body, secret) == v["x_security_hash"], v["name"]
        assert verify(body, secret, v["x_security_hash"])
        assert not verify(body + b" ", secret, v["x_security_hash"])


async def test_golden_vector_is_accepted_by_the_edge(provider: Provider) -> None:
    # the kit's bet body, signed with this integration's secret, reaches the wallet
    doc = json.loads((KIT / "signature_vectors.json").read_text(encoding="utf-8"))
    body = doc["vectors"][0]["body"].encode()
    reply = await provider.post_raw("transaction", body)
    assert reply == {"error": "PLAYER_NOT_FOUND"}  # authenticated and parsed: no such player


def _replay_args(edge: EdgeApp, provider: Provider, app_port: int, path: Path) -> list[str]:
    return [
        "sportsbook",
        "replay",
        str(path),
        "--edge",
        f"http://127.0.0.1:{edge.port}",
        "--prefix",
        provider.integration.path_prefix,
        "--target",
        f"127.0.0.1:{app_port}",
        "--tenant",
        provider.tenant,
    ]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenarios_replay_in_order_and_shuffled_with_duplicates(
    path: Path, edge: EdgeApp, provider: Provider, app: App
) -> None:
    env = {"CROUPIER_SB_SECRET": provider.integration.secret.decode()}
    base = _replay_args(edge, provider, app.port, path)
    code, out, err = await croupier(*base, env=env)
    assert code == 0, (out, err)
    assert out["ok"] and not out["failures"]
    code, out, err = await croupier(
        *base, "--duplicate", "2", "--shuffle", "--seed", "7", "--concurrency", "8", env=env
    )
    assert code == 0, (out, err)
    assert out["ok"] and out["sent"] % 3 == 0


async def test_replay_reports_a_wrong_expectation(
    tmp_path: Path, edge: EdgeApp, provider: Provider, app: App
) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = (KIT / "scenarios" / "bet_then_rollback.jsonl").read_text().splitlines()
    bad.write_text("\n".join([*lines[:-1], lines[-1].replace("20.00", "19.00")]) + "\n")
    env = {"CROUPIER_SB_SECRET": provider.integration.secret.decode()}
    code, out, _ = await croupier(*_replay_args(edge, provider, app.port, bad), env=env)
    assert code == 1
    assert not out["ok"] and "expected 19.00 EUR, got 20.00" in out["failures"][0]
    # a wrong secret: every callback is refused, nothing moves
    env = {"CROUPIER_SB_SECRET": "not-the-secret-0123456789"}
    code, out, _ = await croupier(*_replay_args(edge, provider, app.port, bad), env=env)
    assert code == 1 and out["errors"] == {"INVALID_SECURITY_HASH": 2}

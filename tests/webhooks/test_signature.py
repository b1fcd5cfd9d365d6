"""Webhook signatures against the golden vectors (tests/webhooks/vectors.json), replay window,
and the pure parts of delivery: patterns, validation, backoff."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from server.errors import DomainError
from server.events.catalog import EVENT_TYPES
from server.webhooks.delivery import backoff_delay
from server.webhooks.patterns import check_patterns, matches
from server.webhooks.signature import sign, verify
from server.webhooks.validation import check_callback_url, check_secret

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors.json").read_text(encoding="utf-8")
)["vectors"]


@pytest.mark.parametrize("v", VECTORS, ids=[v["note"] for v in VECTORS])
def test_golden_vectors(v: dict[str, Any]) -> None:
    body = v["body"].encode()
    assert sign(v["secret"], v["timestamp"], body) == v["signature"]
    assert sign(v["secret"].encode(), v["timestamp"], body) == v["signature"]
    now = v["timestamp"] + 10
    assert verify(v["secret"], str(v["timestamp"]), body, v["signature"], now=now)
    assert verify(
        v["secret"],
        v["timestamp"],
        body,
        v["signature"].upper().replace("SHA256=", "sha256="),
        now=now,
    )


def test_vectors_differ_by_timestamp_and_secret() -> None:
    assert len({v["signature"] for v in VECTORS}) == len(VECTORS)


def test_verify_rejects_tampering_replay_and_garbage() -> None:
    v = VECTORS[0]
    secret, ts, body, sig = v["secret"], v["timestamp"], v["body"].encode(), v["signature"]
    assert verify(secret, ts, body, sig, now=ts)
    assert not verify(secret, ts, body + b" ", sig, now=ts)  # body changed
    assert not verify(secret, ts + 1, body, sig, now=ts)  # timestamp changed
    assert not verify("wrong-secret-0123456789", ts, body, sig, now=ts)
    assert not verify(secret, ts, body, sig, now=ts + 301)  # replayed after the window
    assert not verify(secret, ts, body, sig, now=ts - 301)  # from the future
    assert verify(secret, ts, body, sig, now=ts + 3600, tolerance=3600)
    for bad_sig in (None, "", sig[7:], "sha1=" + sig[7:], sig + "0", "sha256=" + "z" * 64):
        assert not verify(secret, ts, body, bad_sig, now=ts)
    for bad_ts in (None, "", "-1", "1.5", "abc", " "):
        assert not verify(secret, bad_ts, body, sig, now=ts)


def test_patterns() -> None:
    assert matches("*", "jp.triggered")
    assert matches("wallet.*", "wallet.credited")
    assert matches("wallet.*", "wallet.bet.settled")
    assert not matches("wallet.*", "walletx.credited")
    assert not matches("wallet.bet.*", "wallet.credited")
    assert matches("wallet.credited", "wallet.credited")
    assert not matches("wallet.credited", "wallet.credited.extra")
    assert check_patterns(["wallet.*", "jp.triggered", "wallet.*"]) == ["wallet.*", "jp.triggered"]
    assert all(check_patterns([t]) == [t] for t in EVENT_TYPES)
    for bad in ("wallet", "nope.*", "wallet.nope", "wallet.**", "Wallet.credited", "#", ""):
        with pytest.raises(DomainError) as err:
            check_patterns(["wallet.credited", bad])
        assert err.value.metadata["field"] == "event_types[1]"
    with pytest.raises(DomainError):
        check_patterns([])
    with pytest.raises(DomainError):
        check_patterns(["*"] * 33)


def test_callback_url_and_secret_validation() -> None:
    assert check_callback_url("https://rgs.example/journal?x=1")
    assert check_callback_url("http://127.0.0.1:8080/hook")
    for bad in (
        "",
        "ftp://x/y",
        "https:///nohost",
        "https://user:pw@rgs.example/",
        "https://rgs.example/#frag",
        "https://rgs.example/ space",
        "https://rgs.example:99999/",
        "https://" + "a" * 2050,
        "/relative",
    ):
        with pytest.raises(DomainError) as err:
            check_callback_url(bad)
        assert err.value.metadata["field"] == "callback_url"
    assert check_secret("s" * 16) == b"s" * 16
    for bad in (
        "",
        "short",
        "x" * 257,
        "has space in it!!",
        "non-ascii-\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
    ):
        with pytest.raises(DomainError) as err:
            check_secret(bad)
        assert err.value.metadata["field"] == "secret"
        assert bad not in err.value.message or not bad


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(0.5, 0.05 * 2 ** (attempt - 1))
        samples = [backoff_delay(attempt, 0.05, 0.5, rng) for _ in range(400)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.9 and min(samples) < ceiling * 0.1  # full jitter
    assert backoff_delay(10_000, 1.0, 300.0, rng) <= 300.0  # no overflow

"""The HTTP contract: signature before parsing, size limit, malformed bodies, always 200 JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import aiohttp

from server.edge.app import EdgeApp
from server.edge.signature import sign
from tests.edge.conftest import MAX_BODY
from tests.edge.provider import Provider, available, err, fund, ok, uid

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub


def bet_body(user: str, amount: str = "1.00", tid: str | None = None) -> bytes:
    doc = {
        "transaction_id": tid or uid("bet"),
        "action": "bet",
        "user_id": user,
        "currency": "EUR",
        "amount": amount,
    }
    return json.dumps(doc).encode()


async def test_missing_and_bad_hashes_never_reach_the_wallet(
    provider: Provider, other_provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user = uid("u")
    await fund(wallet, provider.tenant, user, 1_000)
    body = bet_body(user)
    err(await provider.post_raw("transaction", body, sign_it=False), "MISSING_SECURITY_HASH")
    for bad in ("", "0" * 64, "zz", sign(body, b"wrong-secret-0123456789")[:-1] + "0"):
        err(await provider.post_raw("transaction", body, signature=bad), "INVALID_SECURITY_HASH")
    # the other integration's secret is not this one's
    theirs = sign(body, other_provider.integration.secret)
    err(await provider.post_raw("transaction", body, signature=theirs), "INVALID_SECURITY_HASH")
    # a body changed by one byte after signing
    good = sign(body, provider.integration.secret)
    tampered = body.replace(b'"1.00"', b'"9.00"')
    assert len(tampered) == len(body) and tampered != body
    err(await provider.post_raw("transaction", tampered, signature=good), "INVALID_SECURITY_HASH")
    flipped = body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]
    err(await provider.post_raw("transaction", flipped, signature=good), "INVALID_SECURITY_HASH")
    assert await available(wallet, provider.tenant, user) == 1_000
    # the hash covers the raw bytes: the same document re-serialized needs its own hash
    spaced = json.dumps(json.loads(body), indent=2).encode()
    err(await provider.post_raw("transaction", spaced, signature=good), "INVALID_SECURITY_HASH")
    # upper-case hex is the same hash; the original bytes pass
    ok(await provider.post_raw("transaction", body, signature=good.upper()))
    assert await available(wallet, provider.tenant, user) == 900


async def test_malformed_bodies(provider: Provider) -> None:
    user = uid("u")
    cases: list[tuple[bytes, str]] = [
        (b"", "MALFORMED_REQUEST"),
        (b"{", "MALFORMED_REQUEST"),
        (b"not json", "MALFORMED_REQUEST"),
        (b"[1, 2]", "MALFORMED_REQUEST"),
        (b'"text"', "MALFORMED_REQUEST"),
        (b"\xff\xfe{}", "MALFORMED_REQUEST"),
        (b'{"transaction_id": "a", "transaction_id": "b"}', "MALFORMED_REQUEST"),
        (b'{"amount": NaN}', "MALFORMED_REQUEST"),
        (b"[" * 100_000, "BODY_TOO_LARGE"),
        (b"[" * 4000, "MALFORMED_REQUEST"),
    ]
    base = {"transaction_id": uid("t"), "action": "bet", "user_id": user, "currency": "EUR"}
    for field in ("transaction_id", "action", "user_id", "currency", "amount"):
        doc = {**base, "amount": "1.00"}
        del doc[field]
        cases.append((json.dumps(doc).encode(), "MALFORMED_REQUEST"))
    for field, value in (("amount", True), ("user_id", None), ("currency", ["EUR"])):
        cases.append(
            (json.dumps({**base, "amount": "1", field: value}).encode(), "MALFORMED_REQUEST")
        )
    cases.append((json.dumps({**base, "amount": "1", "action": "win"}).encode(), "INVALID_ACTION"))
    cases.append(
        (json.dumps({**base, "amount": "1", "user_id": "has space"}).encode(), "INVALID_USER_ID")
    )
    for body, code in cases:
        err(await provider.post_raw("transaction", body), code)
    rb = {
        "transaction_id": uid("rb"),
        "rollback_transaction_id": uid("bet"),
        "user_id": user,
        "currency": "EUR",
        "amount": "1.00",
    }
    err(await provider.post("transaction-rollback", {**rb, "action": "bet"}), "INVALID_ACTION")
    err(await provider.post("transaction-rollback", rb), "MALFORMED_REQUEST")
    self_target = {**rb, "action": "rollback", "rollback_transaction_id": rb["transaction_id"]}
    err(await provider.post("transaction-rollback", self_target), "INVALID_TRANSACTION_ID")
    # a bet posted to the rollback path is refused, not rolled back
    err(await provider.post_raw("transaction-rollback", bet_body(user)), "INVALID_ACTION")


async def test_body_size_limit(provider: Provider, http: aiohttp.ClientSession) -> None:
    user = uid("u")
    body = bet_body(user)
    huge = body[:-1] + b', "pad": "' + b"x" * MAX_BODY + b'"}'
    sig = sign(huge, provider.integration.secret)
    err(await provider.post_raw("transaction", huge, signature=sig), "BODY_TOO_LARGE")

    async def chunks() -> object:  # no Content-Length: chunked transfer encoding
        for _ in range(10):
            yield b"x" * 1024

    async with http.post(
        provider.url("transaction"), data=chunks(), headers={"X-Security-Hash": sig}
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"error": "BODY_TOO_LARGE"}
    # just under the limit is fine (then refused for what it is, not for its size)
    fits = body[:-1] + b', "pad": "' + b"x" * (MAX_BODY - len(body) - 12) + b'"}'
    assert len(fits) <= MAX_BODY
    err(await provider.post_raw("transaction", fits), "PLAYER_NOT_FOUND")


async def test_unknown_paths_and_methods_are_200_json(
    edge: EdgeApp, http: aiohttp.ClientSession, provider: Provider
) -> None:
    base = f"http://127.0.0.1:{edge.port}"
    for method, path, code in (
        ("POST", "/transaction", "UNKNOWN_ENDPOINT"),
        ("POST", "/sportsbook/nobody/transaction", "UNKNOWN_ENDPOINT"),
        ("GET", "/", "UNKNOWN_ENDPOINT"),
        ("GET", "/sportsbook/main/transaction", "METHOD_NOT_ALLOWED"),
        ("PUT", "/sportsbook/main/transaction-rollback", "METHOD_NOT_ALLOWED"),
        ("GET", "/admin/sportsbook/main/transactions/x", None),
    ):
        async with http.request(method, base + path) as resp:
            if code is None:
                assert resp.status == 401
                continue
            assert resp.status == 200 and resp.content_type == "application/json"
            assert await resp.json() == {"error": code}
    async with http.get(base + "/healthz") as resp:
        assert await resp.json() == {"status": "ok"}

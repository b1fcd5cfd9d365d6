"""Hostile HTTP input to the edge (issue 8 item 3): random bodies and headers, signed or not,
never get anything but HTTP 200 JSON with an `error` field, and a refused callback never
moves money."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.edge.app import EdgeApp
from server.edge.signature import sign
from tests.edge.provider import Provider, available, fund, uid

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub

VALUES = st.one_of(
    st.text(max_size=50),
    st.integers(),
    st.none(),
    st.booleans(),
    st.sampled_from(
        ["bet", "result", "rollback", "EUR", "1e3", "-5", "0.001", "NaN", "1" * 400, "10.00", "€"]
    ),
    st.floats(allow_nan=True),
)
# amounts around the canonical form, and ids with control characters
AMOUNTS = st.builds(
    lambda pre, core, post: pre + core + post,
    st.sampled_from(["", " ", "\t", "\n", "+", "0", "-", "\x00", "\u00a0"]),
    st.sampled_from(["5.00", "5", "0.50", "0", "5.000", "5.", ".5", "5e0", "1" * 30, "\uff15"]),
    st.sampled_from(["", " ", "\t", "\n", "\r\n", "0", "\x00", "e2"]),
)
IDS = st.builds(
    lambda a, c, b: a + c + b,
    st.text(alphabet="abc-", max_size=8),
    st.sampled_from(["", "\x00", "\x01", "\x1f", "\x7f", "\n", "\ud800"]),
    st.text(alphabet="abc-", max_size=8),
)
_CANONICAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?")
FIELDS = ["transaction_id", "action", "user_id", "currency", "amount", "rollback_transaction_id"]


@st.composite
def transfers(draw: st.DrawFn, user: str) -> tuple[str, str, str]:
    """A well-formed, signed bet or result whose amount or id may be hostile."""
    return (
        draw(st.sampled_from(["bet", "result"])),
        draw(IDS | st.uuids().map(str)),
        draw(AMOUNTS),
    )


@st.composite
def callbacks(draw: st.DrawFn, user: str) -> tuple[str, bytes, dict[str, str], bool]:
    endpoint = draw(st.sampled_from(["transaction", "transaction-rollback", "nope"]))
    if draw(st.booleans()):
        doc: Any = {f: draw(VALUES) for f in FIELDS if draw(st.booleans())}
        if draw(st.booleans()):
            doc["user_id"] = user
        body = json.dumps(doc).encode()
    else:
        body = draw(st.binary(max_size=300))
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    signed = draw(st.booleans())
    extra = draw(
        st.dictionaries(
            st.sampled_from(["X-Trace-Id", "X-Forwarded-For", "X-Foo"]),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
            max_size=2,
        )
    )
    headers.update(extra)
    return endpoint, body, headers, signed


async def test_fuzzed_callbacks_always_answer_json_and_refusals_move_nothing(
    edge: EdgeApp, provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    user = uid("fz")
    await fund(wallet, provider.tenant, user, 100_000)
    secret = provider.integration.secret
    loop = asyncio.get_running_loop()
    results: list[tuple[dict[str, Any], int, int]] = []

    async def post(endpoint: str, body: bytes, headers: dict[str, str], signed: bool) -> None:
        h = dict(headers)
        h["X-Security-Hash"] = sign(body, secret) if signed else "00" * 32
        before = await available(wallet, provider.tenant, user)
        async with (
            aiohttp.ClientSession() as http,
            http.post(provider.url(endpoint), data=body, headers=h) as resp,
        ):
            assert resp.status == 200, resp.status
            reply = json.loads(await resp.read())
        results.append((reply, before, await available(wallet, provider.tenant, user)))

    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(callbacks(user))
    def check(call: tuple[str, bytes, dict[str, str], bool]) -> None:
        asyncio.run_coroutine_threadsafe(post(*call), loop).result(30)

    await asyncio.to_thread(check)
    assert len(results) >= 100
    for reply, before, after in results:
        assert "error" in reply
        if reply["error"] is not None:
            assert before == after, reply


async def test_fuzzed_amounts_and_ids_are_refused_unless_canonical(
    edge: EdgeApp, provider: Provider, wallet: WalletServiceAsyncStub
) -> None:
    """Signed bets and results around the canonical amount form and with control characters in
    the id: only a canonical amount with a clean id moves money; nothing answers INTERNAL_ERROR
    (the wallet and the database are up)."""
    user = uid("fa")
    await fund(wallet, provider.tenant, user, 10**9)
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, str, str, dict[str, Any], int, int]] = []

    async def post(action: str, tid: str, amount: str) -> None:
        before = await available(wallet, provider.tenant, user)
        reply = await provider.transaction(tid + uid(""), action, user, amount)
        seen.append(
            (action, tid, amount, reply, before, await available(wallet, provider.tenant, user))
        )

    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(transfers(user))
    def check(call: tuple[str, str, str]) -> None:
        asyncio.run_coroutine_threadsafe(post(*call), loop).result(30)

    await asyncio.to_thread(check)
    assert len(seen) >= 100
    for action, tid, amount, reply, before, after in seen:
        assert reply.get("error") != "INTERNAL_ERROR", (action, tid, amount, reply)
        clean_id = not re.search(r"[\x00-\x1f\x7f\ud800-\udfff]", tid)
        if not clean_id:
            assert reply == {"error": "INVALID_TRANSACTION_ID"}, (tid, reply)
        elif not _CANONICAL.fullmatch(amount):
            assert reply["error"] in ("INVALID_AMOUNT", "TOO_MANY_DECIMALS"), (amount, reply)
        elif int(amount.split(".")[0]) >= 2**63 // 100:
            assert reply == {"error": "INVALID_AMOUNT"}, (amount, reply)
        elif action == "bet" and amount.strip("0.") == "":
            assert reply == {"error": "INVALID_AMOUNT"}, (amount, reply)
        else:
            assert reply["error"] is None, (action, amount, reply)
        if reply.get("error") is not None:
            assert before == after, (action, tid, amount, reply)

"""The provider client (seed 001 "CLIENT requests") against a local fake provider over HTTP.

The fake provider is the only test double (engineering rule 4): a real aiohttp server on
loopback that issues tokens, checks them, and can be told to fail in the ways providers do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from client.sportsbook import (
    SportsbookAuthError,
    SportsbookClient,
    SportsbookProtocolError,
    SportsbookRequestError,
    SportsbookUnavailable,
)
from tests.edge.cli import croupier


@dataclass
class FakeProvider:
    """A sportsbook provider API: `/v1/auth` and `/v1/start-session`."""

    expires_in: Any = "3600"
    valid: set[str] = field(default_factory=set)
    auth_calls: int = 0
    session_calls: int = 0
    fail_next: list[int] = field(default_factory=list)  # statuses to answer next, in order
    stall_next: int = 0  # requests to answer after a long sleep
    revoke_all_after_auth: bool = False
    seen: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    async def _maybe_fail(self) -> web.Response | None:
        if self.stall_next:
            self.stall_next -= 1
            await asyncio.sleep(0.6)
        if self.fail_next:
            return web.Response(status=self.fail_next.pop(0), text="nope")
        return None

    async def auth(self, request: web.Request) -> web.Response:
        self.auth_calls += 1
        if (failed := await self._maybe_fail()) is not None:
            return failed
        doc = await request.json()
        if doc != {"username": "client", "password": "pw-123"}:
            return web.json_response({"error": "bad credentials"}, status=401)
        token = f"tok-{self.auth_calls}"
        if not self.revoke_all_after_auth:
            self.valid.add(token)
        return web.json_response({"token": token, "expires_in": self.expires_in})

    async def start_session(self, request: web.Request) -> web.Response:
        self.session_calls += 1
        if (failed := await self._maybe_fail()) is not None:
            return failed
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.valid:
            return web.json_response({"error": "token expired"}, status=401)
        doc = await request.json()
        self.seen.append(doc)
        if doc.get("currency") == "XXX":
            return web.json_response({"error": "currency"}, status=400)
        if doc.get("currency") == "BAD":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        return web.json_response({"url": f"https://sb.example/iframe?u={doc['user_id']}"})


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    f = FakeProvider()
    app = web.Application()
    app.router.add_post("/v1/auth", f.auth)
    app.router.add_post("/v1/start-session", f.start_session)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    f.port = runner.addresses[0][1]
    try:
        yield f
    finally:
        await runner.cleanup()


def client(fake: FakeProvider, **kw: Any) -> SportsbookClient:
    return SportsbookClient(
        f"http://127.0.0.1:{fake.port}", "v1", "client", "pw-123", backoff=0.01, **kw
    )


async def test_start_session_authenticates_once_and_caches_the_token(fake: FakeProvider) -> None:
    async with client(fake) as sb:
        url = await sb.start_session("player-1", "EUR", "en")
        assert url == "https://sb.example/iframe?u=player-1"
        await sb.start_session("player-2", "USD")
        await asyncio.gather(*(sb.start_session(f"p{i}", "EUR") for i in range(5)))
    assert fake.auth_calls == 1 and fake.session_calls == 7
    assert fake.seen[0] == {"user_id": "player-1", "currency": "EUR", "lang": "en"}
    assert fake.seen[1] == {"user_id": "player-2", "currency": "USD"}


async def test_token_is_refreshed_before_expires_in(fake: FakeProvider) -> None:
    fake.expires_in = 1  # a number works as well as the seed's string
    async with client(fake, refresh_margin=0.5) as sb:
        await sb.start_session("p", "EUR")
        await sb.start_session("p", "EUR")
        assert fake.auth_calls == 1
        await asyncio.sleep(0.95)  # past expires_in - min(margin, 10%)
        await sb.start_session("p", "EUR")
    assert fake.auth_calls == 2


async def test_401_refreshes_once_then_fails(fake: FakeProvider) -> None:
    async with client(fake) as sb:
        await sb.start_session("p", "EUR")
        fake.valid.clear()  # the provider revoked the token
        assert await sb.start_session("p", "EUR")  # refreshed once, then fine
        assert fake.auth_calls == 2
        fake.valid.clear()
        fake.revoke_all_after_auth = True  # new tokens are refused too
        with pytest.raises(SportsbookAuthError) as exc:
            await sb.start_session("p", "EUR")
        assert exc.value.status == 401
    assert fake.auth_calls == 3  # one refresh only, no loop


async def test_bad_credentials_are_an_auth_error(fake: FakeProvider) -> None:
    sb = SportsbookClient(f"http://127.0.0.1:{fake.port}", "v1", "client", "wrong")
    async with sb:
        with pytest.raises(SportsbookAuthError):
            await sb.start_session("p", "EUR")
    assert "wrong" not in repr(sb)


async def test_network_errors_and_5xx_are_retried(fake: FakeProvider) -> None:
    async with client(fake, attempts=3) as sb:
        fake.fail_next = [503, 502]
        assert await sb.start_session("p", "EUR")  # auth retried twice, then ok
        fake.fail_next = [504, 504, 504]
        with pytest.raises(SportsbookUnavailable):
            await sb.start_session("p", "EUR")
    async with client(fake, attempts=2, timeout=0.3) as sb:
        fake.stall_next = 1  # one timeout, then an answer
        assert await sb.start_session("p", "EUR")
    closed = SportsbookClient("http://127.0.0.1:9", "v1", "client", "pw", attempts=2, backoff=0)
    async with closed:
        with pytest.raises(SportsbookUnavailable):
            await closed.start_session("p", "EUR")


async def test_typed_errors_for_refusals_and_garbage(fake: FakeProvider) -> None:
    async with client(fake) as sb:
        with pytest.raises(SportsbookRequestError) as exc:
            await sb.start_session("p", "XXX")
        assert exc.value.status == 400 and "currency" in exc.value.body
        with pytest.raises(SportsbookProtocolError):
            await sb.start_session("p", "BAD")
        fake.fail_next = [500]
        with pytest.raises(SportsbookUnavailable):
            await sb.start_session("p", "EUR")
    fake.expires_in = "soon"
    async with client(fake) as sb:
        with pytest.raises(SportsbookProtocolError):
            await sb.auth()


async def test_cli_start_session(fake: FakeProvider) -> None:
    env = {
        "CROUPIER_SB_API_URL": f"http://127.0.0.1:{fake.port}",
        "CROUPIER_SB_USERNAME": "client",
        "CROUPIER_SB_PASSWORD": "pw-123",
    }
    code, out, err = await croupier(
        "sportsbook",
        "start-session",
        "--user-id",
        "p9",
        "--currency",
        "GBP",
        "--lang",
        "fr",
        env=env,
    )
    assert code == 0, err
    assert out == {"url": "https://sb.example/iframe?u=p9"}
    assert "pw-123" not in err
    env["CROUPIER_SB_PASSWORD"] = "wrong"
    code, out, err = await croupier(
        "sportsbook", "start-session", "--user-id", "p9", "--currency", "GBP", env=env
    )
    assert code == 1 and "SportsbookAuthError" in err and json.dumps(out) == "null"

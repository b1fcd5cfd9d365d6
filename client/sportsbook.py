"""The sportsbook provider client: the provider's "CLIENT requests" (`auth`, `start-session`).

    async with SportsbookClient(api_url, "v1", username, password) as sb:
        url = await sb.start_session("player-1", "EUR", lang="en")   # the iframe URL

- `auth` POSTs `<api_url>/<api_version>/auth` with the username and password and caches the
  token until `refresh_margin` seconds before `expires_in` (at most 10% of the lifetime early).
- `start_session(user_id, currency, lang)` POSTs `<api_url>/<api_version>/start-session` with
  `Authorization: Bearer <token>` and returns `url`. A 401 drops the token, authenticates once
  more and retries once; a second 401 is `SportsbookAuthError`.
- Every attempt has a timeout (`timeout`, seconds); network errors, timeouts and 502/503/504
  are retried up to `attempts` times with exponential backoff (`server.retry.Backoff`); then
  `SportsbookUnavailable`.
- Errors are typed: `SportsbookAuthError` (credentials or token refused), `SportsbookRequestError`
  (another 4xx, with the status and body), `SportsbookUnavailable` (network, timeout, 5xx),
  `SportsbookProtocolError` (a 200 that is not the documented JSON); all are `SportsbookError`.
The password and the token never appear in a repr, a message or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp

from server.retry import Backoff

log = logging.getLogger("croupier.client.sportsbook")

_RETRY_STATUSES = frozenset({502, 503, 504})


class SportsbookError(Exception):
    """A failed call to the sportsbook provider. `status` is the HTTP status, when any."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class SportsbookAuthError(SportsbookError):
    """The provider refused the credentials (auth) or the token twice (start-session)."""


class SportsbookRequestError(SportsbookError):
    """The provider refused the request (a 4xx other than 401)."""


class SportsbookUnavailable(SportsbookError):
    """The provider could not be reached, timed out, or answered 5xx, after all retries."""


class SportsbookProtocolError(SportsbookError):
    """The provider answered 200 with something that is not the documented JSON."""


@dataclass
class Token:
    """A bearer token and the monotonic time after which it is not used any more."""

    value: str = field(repr=False)
    expires_in: float
    use_until: float


@dataclass
class SportsbookClient:
    """The provider API of one CLIENT account (module doc for behaviour)."""

    api_url: str
    api_version: str
    username: str
    password: str = field(repr=False)
    timeout: float = 10.0
    attempts: int = 3
    backoff: float = 0.2
    refresh_margin: float = 30.0
    session: aiohttp.ClientSession | None = field(default=None, repr=False)
    _token: Token | None = field(default=None, init=False, repr=False)
    _owns_session: bool = field(default=False, init=False, repr=False)
    _auth_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._owns_session and self.session is not None:
            await self.session.close()
            self.session = None

    def _url(self, name: str) -> str:
        return f"{self.api_url.rstrip('/')}/{self.api_version.strip('/')}/{name}"

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession()
            self._owns_session = True
        return self.session

    async def _post(
        self, name: str, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """POST JSON with a timeout, retrying network errors and 502/503/504."""
        url = self._url(name)
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(Backoff(self.backoff).delay(attempt))
            try:
                async with self._session().post(
                    url,
                    json=payload,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as resp:
                    text = await resp.text()
                    if resp.status in _RETRY_STATUSES:
                        last = f"HTTP {resp.status}"
                        log.warning("sportsbook %s: %s (attempt %d)", name, last, attempt + 1)
                        continue
                    return resp.status, text
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                last = type(exc).__name__
                log.warning("sportsbook %s: %s (attempt %d)", name, last, attempt + 1)
        raise SportsbookUnavailable(f"{name}: {last} after {self.attempts} attempts")

    @staticmethod
    def _json(name: str, status: int, text: str, key: str) -> dict[str, Any]:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SportsbookProtocolError(f"{name}: not JSON", status=status) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get(key), str) or not doc[key]:
            raise SportsbookProtocolError(f"{name}: no {key!r} in the reply", status=status)
        return doc

    def _check(self, name: str, status: int, text: str) -> None:
        if status in (401, 403):
            raise SportsbookAuthError(f"{name}: HTTP {status}", status=status, body=text[:500])
        if 400 <= status < 500:
            raise SportsbookRequestError(f"{name}: HTTP {status}", status=status, body=text[:500])
        if status != 200:
            raise SportsbookUnavailable(f"{name}: HTTP {status}", status=status, body=text[:500])

    async def auth(self) -> Token:
        """Get a new token (the provider's "Auth") and cache it."""
        status, text = await self._post(
            "auth", {"username": self.username, "password": self.password}
        )
        self._check("auth", status, text)
        doc = self._json("auth", status, text, "token")
        try:
            expires_in = float(doc.get("expires_in", ""))
        except (TypeError, ValueError) as exc:
            raise SportsbookProtocolError(
                "auth: expires_in is not a number", status=status
            ) from exc
        if expires_in <= 0:
            raise SportsbookProtocolError("auth: expires_in is not positive", status=status)
        margin = min(self.refresh_margin, expires_in * 0.1)
        self._token = Token(doc["token"], expires_in, time.monotonic() + expires_in - margin)
        return self._token

    async def token(self) -> str:
        """The cached token, or a new one when it is about to expire (one auth at a time)."""
        async with self._auth_lock:
            t = self._token
            if t is None or time.monotonic() >= t.use_until:
                t = await self.auth()
            return t.value

    async def start_session(self, user_id: str, currency: str, lang: str | None = None) -> str:
        """The iframe URL for a player (the provider's "Start session"); refreshes once on 401."""
        payload: dict[str, Any] = {"user_id": user_id, "currency": currency}
        if lang:
            payload["lang"] = lang
        for retry_auth in (True, False):
            token = await self.token()
            status, text = await self._post(
                "start-session", payload, {"Authorization": f"Bearer {token}"}
            )
            if status == 401 and retry_auth:
                log.info("sportsbook start-session: token refused, authenticating again")
                async with self._auth_lock:
                    if self._token is not None and self._token.value == token:
                        self._token = None
                continue
            self._check("start-session", status, text)
            return str(self._json("start-session", status, text, "url")["url"])
        raise AssertionError("unreachable")

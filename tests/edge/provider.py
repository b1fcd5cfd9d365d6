"""Test helpers: a signing provider posting seed-001 callbacks, and wallet shortcuts."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
from croupier.common.v1 import account_pb2
from croupier.wallet.v1 import wallet_service_pb2 as pb

from server.edge.config import Integration
from server.edge.signature import sign
from tests.rpc import eur, key

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub


def uid(prefix: str) -> str:
    """A unique id (user or transaction)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Provider:
    """The sportsbook provider of one integration, posting to the real edge over HTTP."""

    def __init__(self, http: aiohttp.ClientSession, base: str, integration: Integration) -> None:
        self.http = http
        self.base = base
        self.integration = integration

    @property
    def tenant(self) -> str:
        """The integration's tenant."""
        return self.integration.tenant_id

    def url(self, endpoint: str) -> str:
        """The callback URL of `endpoint` ("transaction" or "transaction-rollback")."""
        return f"{self.base}{self.integration.path_prefix}/{endpoint}"

    async def post_raw(
        self,
        endpoint: str,
        body: bytes,
        *,
        signature: str | None = None,
        sign_it: bool = True,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST `body` as is; asserts HTTP 200 JSON and returns the decoded reply."""
        h = {"Content-Type": "application/json", **(headers or {})}
        if signature is not None:
            h["X-Security-Hash"] = signature
        elif sign_it:
            h["X-Security-Hash"] = sign(body, self.integration.secret)
        async with self.http.post(self.url(endpoint), data=body, headers=h) as resp:
            assert resp.status == 200, resp.status
            assert resp.content_type == "application/json"
            reply: dict[str, Any] = await resp.json()
        return reply

    async def post(self, endpoint: str, doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
        """Sign and POST a JSON document."""
        return await self.post_raw(endpoint, json.dumps(doc).encode(), **kw)

    async def bet(self, tid: str, user: str, amount: str, currency: str = "EUR") -> dict[str, Any]:
        """A `bet` callback."""
        return await self.transaction(tid, "bet", user, amount, currency)

    async def result(
        self, tid: str, user: str, amount: str, currency: str = "EUR"
    ) -> dict[str, Any]:
        """A `result` callback."""
        return await self.transaction(tid, "result", user, amount, currency)

    async def transaction(
        self, tid: str, action: str, user: str, amount: str, currency: str = "EUR"
    ) -> dict[str, Any]:
        """A `/transaction` callback."""
        doc = {
            "transaction_id": tid,
            "action": action,
            "user_id": user,
            "currency": currency,
            "amount": amount,
        }
        return await self.post("transaction", doc)

    async def rollback(
        self, tid: str, target: str, user: str, amount: str, currency: str = "EUR"
    ) -> dict[str, Any]:
        """A `/transaction-rollback` callback."""
        doc = {
            "transaction_id": tid,
            "rollback_transaction_id": target,
            "action": "rollback",
            "user_id": user,
            "currency": currency,
            "amount": amount,
        }
        return await self.post("transaction-rollback", doc)


async def fund(
    wallet: WalletServiceAsyncStub, tenant: str, user: str, minor: int, currency: str = "EUR"
) -> None:
    """Credit a player directly through the wallet (the casino's cashier)."""
    await wallet.Credit(
        pb.CreditRequest(
            tenant_id=tenant, player_id=user, idempotency_key=key(), amount=eur(minor, currency)
        )
    )


async def available(
    wallet: WalletServiceAsyncStub, tenant: str, user: str, currency: str = "EUR"
) -> int:
    """The player's available balance in minor units."""
    r = await wallet.GetBalance(
        pb.GetBalanceRequest(tenant_id=tenant, player_id=user, currency=currency)
    )
    return r.balances[0].available.minor_units if r.balances else 0


async def set_status(wallet: WalletServiceAsyncStub, tenant: str, user: str, status: str) -> None:
    """Block or self-exclude a player."""
    value = {
        "blocked": account_pb2.PLAYER_STATUS_BLOCKED,
        "self_excluded": account_pb2.PLAYER_STATUS_SELF_EXCLUDED,
        "active": account_pb2.PLAYER_STATUS_ACTIVE,
    }[status]
    await wallet.SetPlayerStatus(
        pb.SetPlayerStatusRequest(
            tenant_id=tenant, player_id=user, idempotency_key=key(), status=value
        )
    )


def ok(reply: dict[str, Any]) -> str:
    """Assert a seed-001 success and return the CLIENT-side transaction id."""
    assert reply["error"] is None, reply
    assert set(reply) == {"error", "transaction_id"}, reply
    tid = reply["transaction_id"]
    assert isinstance(tid, str) and tid
    return tid


def err(reply: dict[str, Any], code: str) -> None:
    """Assert a seed-001 error `{"error": code}`."""
    assert reply == {"error": code}, reply

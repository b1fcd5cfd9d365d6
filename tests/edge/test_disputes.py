"""Disputes (seed 002, issue 4): raw callbacks kept with their wallet transaction, retrievable by
the provider's transaction_id through the admin API and `croupier sportsbook show`."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import aiohttp

from server.edge.app import EdgeApp
from server.edge.main import open_dispute_pool
from server.edge.signature import sign
from tests.edge.cli import croupier
from tests.edge.conftest import ADMIN_TOKEN
from tests.edge.provider import Provider, available, err, fund, ok, uid

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub


async def show(
    http: aiohttp.ClientSession, edge: EdgeApp, integration: str, tid: str, token: str
) -> tuple[int, dict[str, Any]]:
    await edge.settled()  # answers are recorded just after the reply
    url = f"http://127.0.0.1:{edge.port}/admin/sportsbook/{integration}/transactions/{tid}"
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def test_raw_callbacks_are_kept_with_the_wallet_transaction(
    provider: Provider, wallet: WalletServiceAsyncStub, edge: EdgeApp, http: aiohttp.ClientSession
) -> None:
    user, bet, rb = uid("u"), uid("bet"), uid("rb")
    await fund(wallet, provider.tenant, user, 1_000)
    body = (
        f'{{"transaction_id": "{bet}", "action": "bet", "user_id": "{user}",\n "currency": "EUR", '
        '"amount": "2.50", "extra": "kept"}'
    ).encode()
    tx = ok(await provider.post_raw("transaction", body, headers={"X-Trace": "t-1"}))
    assert ok(await provider.post_raw("transaction", body)) == tx  # a second delivery
    rb_tx = ok(await provider.rollback(rb, bet, user, "2.50"))
    # a bad hash is neither stored nor forwarded
    err(await provider.post_raw("transaction", body, signature="0" * 64), "INVALID_SECURITY_HASH")

    status, doc = await show(http, edge, "main", bet, ADMIN_TOKEN)
    assert status == 200
    callbacks = doc["callbacks"]
    assert isinstance(callbacks, list) and len(callbacks) == 3
    first, second, rollback = callbacks
    assert first["body"] == body.decode() and base64.b64decode(first["body_base64"]) == body
    assert first["headers"]["x-trace"] == "t-1"
    assert first["headers"]["x-security-hash"] == sign(body, provider.integration.secret)
    assert first["response"] == {"error": None, "transaction_id": tx}
    assert first["wallet_transaction_id"] == second["wallet_transaction_id"] == tx
    assert rollback["endpoint"] == "transaction-rollback"
    assert rollback["rollback_transaction_id"] == bet
    assert rollback["wallet_transaction_id"] == rb_tx and rollback["note"].startswith("reversed")
    ledger = {t["transactionId"]: t for t in doc["wallet_transactions"]}
    assert ledger[tx]["kind"] == "TRANSACTION_KIND_DEBIT"
    assert ledger[tx]["metadata"]["sportsbook.transaction_id"] == bet
    assert ledger[rb_tx]["kind"] == "TRANSACTION_KIND_ROLLBACK"


async def test_refusals_and_malformed_bodies_are_kept_too(
    provider: Provider, edge: EdgeApp, http: aiohttp.ClientSession
) -> None:
    tid = uid("bet")
    doc = {"transaction_id": tid, "action": "bet", "user_id": uid("nobody"), "currency": "EUR"}
    err(await provider.post("transaction", {**doc, "amount": "1.005"}), "TOO_MANY_DECIMALS")
    err(await provider.post("transaction", {**doc, "amount": "1.00"}), "PLAYER_NOT_FOUND")
    status, shown = await show(http, edge, "main", tid, ADMIN_TOKEN)
    assert status == 200
    replies = [c["response"] for c in shown["callbacks"]]
    assert replies == [{"error": "TOO_MANY_DECIMALS"}, {"error": "PLAYER_NOT_FOUND"}]
    assert shown["callbacks"][1]["wallet_reason"] == "PLAYER_NOT_FOUND"


async def test_admin_api_needs_the_token(
    provider: Provider, edge: EdgeApp, http: aiohttp.ClientSession
) -> None:
    assert (await show(http, edge, "main", "x", "wrong"))[0] == 401
    assert (await show(http, edge, "nobody", "x", ADMIN_TOKEN))[0] == 404
    assert (await show(http, edge, "main", uid("never"), ADMIN_TOKEN))[0] == 404


async def test_croupier_sportsbook_show(
    provider: Provider, wallet: WalletServiceAsyncStub, edge: EdgeApp
) -> None:
    user, bet = uid("u"), uid("bet")
    await fund(wallet, provider.tenant, user, 1_000)
    tx = ok(await provider.bet(bet, user, "1.00"))
    await edge.settled()
    edge_url = f"http://127.0.0.1:{edge.port}"
    env = {"CROUPIER_EDGE_ADMIN_TOKEN": ADMIN_TOKEN}
    code, out, errtext = await croupier(
        "sportsbook", "show", bet, "--edge", edge_url, "--integration", "main", env=env
    )
    assert code == 0, errtext
    assert out["callbacks"][0]["wallet_transaction_id"] == tx
    assert json.loads(out["callbacks"][0]["body"])["transaction_id"] == bet
    code, _, errtext = await croupier(
        "sportsbook", "show", uid("never"), "--edge", edge_url, "--integration", "main", env=env
    )
    assert code == 1 and "404" in errtext


async def test_rollback_amount_mismatch_is_noted(
    provider: Provider, wallet: WalletServiceAsyncStub, edge: EdgeApp, http: aiohttp.ClientSession
) -> None:
    # the wallet reverses the target's recorded amount; the callback's amount is informational
    user, bet, rb = uid("u"), uid("bet"), uid("rb")
    await fund(wallet, provider.tenant, user, 1_000)
    ok(await provider.bet(bet, user, "4.00"))
    ok(await provider.rollback(rb, bet, user, "3.00"))
    assert await available(wallet, provider.tenant, user) == 1_000
    _, shown = await show(http, edge, "main", rb, ADMIN_TOKEN)
    assert shown["callbacks"][0]["note"] == "reversed 4.00 EUR (callback said 3.00 EUR)"


async def test_dispute_pool_commits_asynchronously(database_url: str) -> None:
    # durability rides on the wallet's synchronous commit (server.edge.main.open_dispute_pool)
    pool = await open_dispute_pool(database_url, 1, 1)
    try:
        async with pool.connection() as conn:
            cur = await conn.execute("SHOW synchronous_commit")
            assert await cur.fetchone() == ("off",)
    finally:
        await pool.close()

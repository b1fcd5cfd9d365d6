"""The dispute lookup API behind a bearer token (behind `croupier sportsbook show TX_ID`).

    GET /admin/sportsbook/{integration}/transactions/{transaction_id}
    Authorization: Bearer <CROUPIER_EDGE_ADMIN_TOKEN>

200 `{"integration", "tenant_id", "transaction_id", "wallet_key", "callbacks": [...],
"wallet_transactions": [...]}`: every stored delivery of the provider transaction and of the
rollbacks naming it (raw body, headers, answer; see disputes.Disputes.lookup) and the ledger
transactions they produced (WalletService.GetTransaction, postings included, as proto JSON).
404 `{"error": "NOT_FOUND"}` when nothing is stored, 401 without the right token, 404 when the
integration is unknown. Off when no admin token is configured (the paths then answer like
any unknown path).
Unlike the callbacks, this API uses ordinary HTTP statuses: it is ours, not the provider's.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from croupier.wallet.v1 import wallet_service_pb2 as pb
from google.protobuf import json_format

from server.edge.config import Integration
from server.edge.disputes import Disputes
from server.edge.forward import wallet_key

if TYPE_CHECKING:
    from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceAsyncStub

log = logging.getLogger("croupier.edge.admin")

PATH = "/admin/sportsbook/{integration}/transactions/{transaction_id}"


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


class Admin:
    """The admin routes over the dispute store and the wallet stub."""

    def __init__(
        self,
        integrations: tuple[Integration, ...],
        disputes: Disputes,
        stub: WalletServiceAsyncStub,
        token: str,
        timeout: float = 5.0,
    ) -> None:
        self.integrations = {i.name: i for i in integrations}
        self.disputes = disputes
        self.stub = stub
        self.token = token.encode()
        self.timeout = timeout

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp route table."""
        return [web.get(PATH, self.show)]

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), self.token
        )

    async def show(self, request: web.Request) -> web.Response:
        """The dispute record of one provider transaction (module doc)."""
        if not self._authorized(request):
            return _json({"error": "UNAUTHENTICATED"}, 401)
        integration = self.integrations.get(request.match_info["integration"])
        if integration is None:
            return _json({"error": "UNKNOWN_INTEGRATION"}, 404)
        tid = request.match_info["transaction_id"]
        callbacks = await self.disputes.lookup(integration, tid)
        if not callbacks:
            return _json({"error": "NOT_FOUND"}, 404)
        ids = sorted({c["wallet_transaction_id"] for c in callbacks if c["wallet_transaction_id"]})
        wallet_txs: list[dict[str, Any]] = []
        for tx_id in ids:
            try:
                got = await self.stub.GetTransaction(
                    pb.GetTransactionRequest(tenant_id=integration.tenant_id, transaction_id=tx_id),
                    timeout=self.timeout,
                    metadata=integration.call_metadata(),
                )
            except grpc.aio.AioRpcError as exc:
                wallet_txs.append({"transaction_id": tx_id, "error": exc.code().name})
                continue
            wallet_txs.append(json_format.MessageToDict(got.transaction))
        return _json(
            {
                "integration": integration.name,
                "tenant_id": integration.tenant_id,
                "transaction_id": tid,
                "wallet_key": wallet_key(integration.name, tid),
                "callbacks": callbacks,
                "wallet_transactions": wallet_txs,
            }
        )

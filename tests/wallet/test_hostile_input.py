"""Hostile input (issue 8 item 3): random and boundary values in every wallet request never
produce INTERNAL/UNKNOWN, and a rejected request changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import App
from tests.rpc import eur

INT64 = st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**62, 2**31, -(2**31)]) | st.integers(
    -(2**63), 2**63 - 1
)
TEXT = st.sampled_from(["", " ", "é", "💸", "a" * 129, "x" * 5000, "\x00", "EUR", "../../"]) | (
    st.text(max_size=200)
)
CURRENCY = st.sampled_from(["EUR", "eur", "", "XXX", "BTC", "JPY", "€", "EURO", "X" * 300]) | (
    st.text(max_size=5)
)
METHODS = [
    "Credit",
    "Debit",
    "AuthorizeBet",
    "SettleBet",
    "CancelBet",
    "RollbackTransaction",
    "SetPlayerStatus",
    "GetBalance",
    "GetTransaction",
    "ListTransactions",
]
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any]:
    method = draw(st.sampled_from(METHODS))
    req = getattr(pb, f"{method}Request")()
    for f in req.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if f.message_type is not None and f.message_type.name == "Money":
            getattr(req, f.name).minor_units = draw(INT64)
            getattr(req, f.name).currency = draw(CURRENCY)
        elif f.message_type is not None and f.message_type.name == "Duration":
            getattr(req, f.name).seconds = draw(st.integers(-(2**40), 2**40))
        elif f.message_type is not None:  # map<string, string> metadata
            for _ in range(draw(st.integers(0, 40))):
                getattr(req, f.name)[draw(TEXT)] = draw(TEXT)
        elif f.type == f.TYPE_STRING:
            setattr(req, f.name, draw(TEXT))
        elif f.type == f.TYPE_ENUM:
            setattr(req, f.name, draw(st.integers(-5, 99)))
        elif f.type in (f.TYPE_INT32,):
            setattr(req, f.name, draw(st.integers(-(2**31), 2**31 - 1)))
    if hasattr(req, "tenant_id") and draw(st.booleans()):
        req.tenant_id = "fuzz"
    if hasattr(req, "player_id") and draw(st.booleans()):
        req.player_id = "victim"
    return method, req


def _fuzz(port: int) -> int:
    count = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = WalletServiceStub(channel)
        stub.Credit(
            pb.CreditRequest(
                tenant_id="fuzz",
                player_id="victim",
                idempotency_key=uuid.uuid4().hex,
                amount=eur(10_000),
            )
        )

        def balance() -> bytes:
            r = stub.GetBalance(pb.GetBalanceRequest(tenant_id="fuzz", player_id="victim"))
            return bytes(r.SerializeToString())

        @settings(
            max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(requests())
        def check(call: tuple[str, Any]) -> None:
            nonlocal count
            count += 1
            method, req = call
            before = balance()
            try:
                getattr(stub, method)(req, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() not in BAD, (method, req, exc.code(), exc.details())
                assert "Traceback" not in (exc.details() or "")
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    assert balance() == before, "a rejected request changed the balance"

        check()
    return count


async def test_fuzzed_requests_never_fail_internally(app: App) -> None:
    assert await asyncio.to_thread(_fuzz, app.port) >= 100

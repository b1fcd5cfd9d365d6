"""Hostile input (issue 8 item 3): random and boundary values in every request of every
service (wallet, jackpot, subscriptions) never produce INTERNAL/UNKNOWN, and a rejected request
changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
from croupier.events.v1 import subscription_service_pb2 as spb
from croupier.events.v1.subscription_service_pb2_grpc import SubscriptionServiceStub
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
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
# every unary RPC of every Croupier service: (service module, stub class, method name)
SERVICES: list[tuple[Any, Any]] = [
    (pb, WalletServiceStub),
    (jpb, JackpotServiceStub),
    (spb, SubscriptionServiceStub),
]
METHODS = [
    (module, stub, m.name)
    for module, stub in SERVICES
    for service in module.DESCRIPTOR.services_by_name.values()
    for m in service.methods
    if not m.server_streaming
]
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}


def _fill(draw: st.DrawFn, req: Any) -> None:
    for f in req.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if f.message_type is not None and f.message_type.name == "Money":
            getattr(req, f.name).minor_units = draw(INT64)
            getattr(req, f.name).currency = draw(CURRENCY)
        elif f.message_type is not None and f.message_type.name == "Duration":
            getattr(req, f.name).seconds = draw(st.integers(-(2**40), 2**40))
        elif f.message_type is not None and f.message_type.GetOptions().map_entry:
            value = f.message_type.fields_by_name["value"]
            for _ in range(draw(st.integers(0, 40))):
                key = (
                    draw(TEXT)
                    if f.message_type.fields_by_name["key"].type == f.TYPE_STRING
                    else draw(st.integers(0, 100))
                )
                if value.type == value.TYPE_STRING:
                    getattr(req, f.name)[key] = draw(TEXT)
                elif value.type in (value.TYPE_INT64, value.TYPE_INT32):
                    getattr(req, f.name)[key] = draw(st.integers(-(2**31), 2**31 - 1))
        elif f.message_type is not None and not f.is_repeated:
            _fill(draw, getattr(req, f.name))  # nested configuration: fuzz it too
        elif f.is_repeated:
            if f.type == f.TYPE_STRING:
                getattr(req, f.name).extend(draw(st.lists(TEXT, max_size=5)))
            elif f.message_type is not None:
                for _ in range(draw(st.integers(0, 3))):
                    _fill(draw, getattr(req, f.name).add())
        elif f.type == f.TYPE_STRING:
            setattr(req, f.name, draw(TEXT))
        elif f.type == f.TYPE_ENUM:
            setattr(req, f.name, draw(st.integers(-5, 99)))
        elif f.type in (f.TYPE_INT32, f.TYPE_SINT32):
            setattr(req, f.name, draw(st.integers(-(2**31), 2**31 - 1)))
        elif f.type in (f.TYPE_INT64, f.TYPE_SINT64):
            setattr(req, f.name, draw(INT64))
        elif f.type in (f.TYPE_UINT32, f.TYPE_UINT64):
            setattr(req, f.name, draw(st.integers(0, 2**31)))
        elif f.type == f.TYPE_BOOL:
            setattr(req, f.name, draw(st.booleans()))
        elif f.type == f.TYPE_BYTES:
            setattr(req, f.name, draw(st.binary(max_size=64)))


@st.composite
def requests(draw: st.DrawFn) -> tuple[Any, str, Any]:
    module, stub, method = draw(st.sampled_from(METHODS))
    req = getattr(module, f"{method}Request")()
    _fill(draw, req)
    if hasattr(req, "tenant_id") and draw(st.booleans()):
        req.tenant_id = "fuzz"
    if hasattr(req, "player_id") and draw(st.booleans()):
        req.player_id = "victim"
    return stub, method, req


def _fuzz(port: int) -> int:
    count = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stubs = {cls: cls(channel) for _, cls in SERVICES}
        wallet = stubs[WalletServiceStub]
        wallet.Credit(
            pb.CreditRequest(
                tenant_id="fuzz",
                player_id="victim",
                idempotency_key=uuid.uuid4().hex,
                amount=eur(10_000),
            )
        )

        def balance() -> bytes:
            r = wallet.GetBalance(pb.GetBalanceRequest(tenant_id="fuzz", player_id="victim"))
            return bytes(r.SerializeToString())

        @settings(
            max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(requests())
        def check(call: tuple[Any, str, Any]) -> None:
            nonlocal count
            count += 1
            stub_class, method, req = call
            before = balance()
            try:
                getattr(stubs[stub_class], method)(req, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() not in BAD, (method, req, exc.code(), exc.details())
                assert "Traceback" not in (exc.details() or "")
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    assert balance() == before, "a rejected request changed the balance"

        check()
    return count


async def test_fuzzed_requests_never_fail_internally(app: App) -> None:
    assert await asyncio.to_thread(_fuzz, app.port) >= 100


async def test_huge_requests_are_refused_before_they_are_read(app: App) -> None:
    """Memory per request is bounded: a 5 MiB message is refused (RESOURCE_EXHAUSTED, the
    server's 4 MiB receive limit) and nothing is written."""
    tenant = f"huge-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{app.port}", options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
    ) as ch:
        stub = WalletServiceStub(ch)
        req = pb.CreditRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key="k",
            amount=eur(1),
            metadata={"blob": "x" * (5 * 1024 * 1024)},
        )
        try:
            await stub.Credit(req)
            raise AssertionError("a 5 MiB request was accepted")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.code()
        try:
            await stub.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
            raise AssertionError("the refused credit opened an account")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND

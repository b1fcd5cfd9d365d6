"""Hostile input (issue 8 item 3): random and boundary values in every request of every
service (wallet, jackpot, subscriptions) never produce INTERNAL/UNKNOWN, and a rejected request
changes nothing."""

from __future__ import annotations

import asyncio
import base64
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
# Timestamp and Duration values around and past their ranges (0001-01-01..9999-12-31, nanos
# 0..999999999; Durations +-10,000 years with nanos of the same sign)
WELL_KNOWN_TIME = ("google.protobuf.Timestamp", "google.protobuf.Duration")
SECONDS = st.sampled_from(
    [
        0,
        1,
        -1,
        253402300799,
        253402300800,
        -62135596800,
        -62135596801,
        315576000001,
        3600,
        2**63 - 1,
        -(2**63),
    ]
) | st.integers(-(2**63), 2**63 - 1)
NANOS = st.sampled_from([0, 1, -1, 999_999_999, 10**9, -(2**31), 2**31 - 1]) | st.integers(
    -(2**31), 2**31 - 1
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
        elif f.message_type is not None and f.message_type.full_name in WELL_KNOWN_TIME:
            value = getattr(req, f.name)
            value.seconds = draw(SECONDS)
            value.nanos = draw(NANOS)
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


# -- raw bodies: corrupt wire format and strings that are not UTF-8, on every RPC ------------


@st.composite
def raw_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A method and a body that is valid, mutated (bytes flipped, cut, bad UTF-8 put into a
    string) or random."""
    module, _, method = draw(st.sampled_from(METHODS))
    service = next(iter(module.DESCRIPTOR.services_by_name.values()))
    req = getattr(module, f"{method}Request")()
    _fill(draw, req)
    if hasattr(req, "tenant_id"):
        req.tenant_id = "fuzz"
    body = bytearray(req.SerializeToString())
    how = draw(st.sampled_from(["flip", "cut", "utf8", "random", "append"]))
    if how == "flip" and body:
        for _ in range(draw(st.integers(1, 4))):
            body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
    elif how == "cut" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif how == "utf8":
        strings = [
            f for f in req.DESCRIPTOR.fields if f.type == f.TYPE_STRING and not f.is_repeated
        ]
        if strings:
            f = draw(st.sampled_from(strings))
            marker = "\x01" * 6
            setattr(req, f.name, marker)
            bad = draw(st.sampled_from([b"\xff" * 6, b"\xc3\x28" * 3, b"\xed\xa0\x80" * 2]))
            body = bytearray(req.SerializeToString().replace(marker.encode(), bad))
    elif how == "random":
        body = bytearray(draw(st.binary(max_size=200)))
    else:
        body += draw(st.binary(min_size=1, max_size=20))
    return f"/{service.full_name}/{method}", bytes(body)


def _fuzz_raw(port: int) -> int:
    count = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        wallet = WalletServiceStub(channel)
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
            max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(raw_bodies())
        def check(call: tuple[str, bytes]) -> None:
            nonlocal count
            count += 1
            method, body = call
            before = balance()
            try:
                channel.unary_unary(method)(body, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() not in BAD, (method, body, exc.code(), exc.details())
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    assert balance() == before, "a rejected request changed the balance"

        check()
    return count


async def test_fuzzed_raw_bodies_never_fail_internally(app: App) -> None:
    assert await asyncio.to_thread(_fuzz_raw, app.port) >= 100


# -- page tokens: a real token's digest with a hostile cursor, on every paged RPC -------------

CURSORS = (
    st.sampled_from(
        [
            "²",
            "99999999999999999999",
            "9" * 5000,
            "\x00",
            "1\x00",
            "-1",
            "\uff11",
            " 7",
            "7 ",
            "0x10",
        ]
    )
    | st.text(max_size=40)
    | st.integers(-(2**70), 2**70).map(str)
)


def _tamper(token: str, cursor: str) -> str:
    digest = base64.urlsafe_b64decode(token).decode().split(":", 1)[0]
    return base64.urlsafe_b64encode(f"{digest}:{cursor}".encode()).decode()


def _fuzz_tokens(port: int) -> int:
    count = 0
    tenant = f"fz-{uuid.uuid4().hex[:8]}"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        wallet, jackpot = WalletServiceStub(channel), JackpotServiceStub(channel)
        subs = SubscriptionServiceStub(channel)
        tier = jpb.TierConfig(
            tier="t",
            kind=jpb.POOL_KIND_PROGRESSIVE,
            seed_minor_units=1000,
            contribution_rate_ppm=10_000,
            trigger=jpb.TRIGGER_KIND_EXTERNAL,
        )
        jp = jackpot.CreateJackpot(
            jpb.CreateJackpotRequest(
                tenant_id=tenant,
                idempotency_key=uuid.uuid4().hex,
                jackpot_id=f"jp-{uuid.uuid4().hex[:8]}",
                currency="EUR",
                scope=jpb.JACKPOT_SCOPE_LOCAL,
                tiers=[tier, jpb.TierConfig(**{**_tier_dict(tier), "tier": "u"})],
            )
        ).jackpot
        pool_id = jp.pools[0].pool_id
        for _ in range(2):
            wallet.Credit(
                pb.CreditRequest(
                    tenant_id=tenant,
                    player_id="p",
                    idempotency_key=uuid.uuid4().hex,
                    amount=eur(5),
                )
            )
            subs.CreateSubscription(
                spb.CreateSubscriptionRequest(
                    tenant_id=tenant,
                    idempotency_key=uuid.uuid4().hex,
                    callback_url="https://rgs.example/hook",
                    secret="s" * 32,
                    event_types=["wallet.*"],
                )
            )
            jackpot.Contribute(
                jpb.ContributeRequest(
                    tenant_id=tenant,
                    idempotency_key=uuid.uuid4().hex,
                    jackpot_id=jp.jackpot_id,
                    player_id="p",
                    round_id=uuid.uuid4().hex,
                    bet=eur(1000),
                )
            )
        paged: list[tuple[Any, Any]] = [
            (
                wallet.ListTransactions,
                pb.ListTransactionsRequest(tenant_id=tenant, player_id="p", page_size=1),
            ),
            (jackpot.ListPools, jpb.ListPoolsRequest(tenant_id=tenant, page_size=1)),
            (
                jackpot.ListContributions,
                jpb.ListContributionsRequest(
                    tenant_id=tenant, pool_id=pool_id, cycle=1, page_size=1
                ),
            ),
            (jackpot.GetAuditLog, jpb.GetAuditLogRequest(tenant_id=tenant, page_size=1)),
            (subs.ListSubscriptions, spb.ListSubscriptionsRequest(tenant_id=tenant, page_size=1)),
        ]
        tokens = [(call, first, call(first).next_page_token) for call, first in paged]
        assert all(token for _, _, token in tokens)

        @settings(
            max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(st.sampled_from(tokens), CURSORS)
        def check(paging: tuple[Any, Any, str], cursor: str) -> None:
            nonlocal count
            count += 1
            call, first, token = paging
            req = type(first)()
            req.CopyFrom(first)
            req.page_token = _tamper(token, cursor)
            try:
                call(req, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (
                    cursor,
                    exc.code(),
                    exc.details(),
                )

        check()
    return count


def _tier_dict(tier: Any) -> dict[str, Any]:
    return {f.name: v for f, v in tier.ListFields()}


async def test_fuzzed_page_token_cursors_never_fail_internally(app: App) -> None:
    assert await asyncio.to_thread(_fuzz_tokens, app.port) >= 100

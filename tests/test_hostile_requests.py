"""Hostile requests over real gRPC end in INVALID_ARGUMENT naming the field and write nothing:
tampered page-token cursors on every paged RPC, out-of-range Timestamps and Durations, tier
fields the trigger ignores, corrupt bodies and strings that are not UTF-8 (after
authentication when it is on)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from croupier.events.v1 import subscription_service_pb2 as spb
from croupier.events.v1.subscription_service_pb2_grpc import SubscriptionServiceStub
from croupier.jackpot.v1 import jackpot_service_pb2 as jpb
from croupier.jackpot.v1.jackpot_service_pb2_grpc import JackpotServiceStub
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1.wallet_service_pb2_grpc import WalletServiceStub
from google.protobuf import duration_pb2, timestamp_pb2
from psycopg_pool import AsyncConnectionPool

from server.app import App, build_server
from server.auth import KeyStore
from tests.jackpot.conftest import contribution, create, tier
from tests.rpc import error_info, eur, fails, key

INVALID = grpc.StatusCode.INVALID_ARGUMENT
# cursors a caller can put after a real token's digest
HOSTILE_CURSORS = ["²", "99999999999999999999", "9" * 5000, "1\x00", "\x00", "-1", " 1", "\uff11"]
# ListPools pages by pool id: "-1" and "999..." are plausible ids there (an empty page at worst)
PLAUSIBLE_IDS = {"-1", "99999999999999999999"}


def tamper(token: str, cursor: str) -> str:
    """`token` with its digest kept and its cursor replaced."""
    digest = base64.urlsafe_b64decode(token).decode().split(":", 1)[0]
    return base64.urlsafe_b64encode(f"{digest}:{cursor}".encode()).decode()


async def field_of(call: Awaitable[Any], reason: str) -> str:
    """Await a call that must fail INVALID_ARGUMENT `reason`; the field its ErrorInfo names."""
    exc = await fails(call, INVALID, reason)
    return error_info(exc).metadata["field"]


async def test_tampered_page_token_cursors_are_invalid_argument(
    channel: grpc.aio.Channel, tenant: str
) -> None:
    wallet, jackpot = WalletServiceStub(channel), JackpotServiceStub(channel)
    subs = SubscriptionServiceStub(channel)
    for _ in range(2):
        await wallet.Credit(
            pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(5))
        )
        await subs.CreateSubscription(
            spb.CreateSubscriptionRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                callback_url="https://rgs.example/hook",
                secret="s" * 32,
                event_types=["wallet.*"],
            )
        )
    jp = await create(jackpot, tenant, tier("a"), tier("b"))
    pools = await jackpot.ListPools(jpb.ListPoolsRequest(tenant_id=tenant))
    pool_id = pools.pools[0].pool_id
    for _ in range(2):
        await jackpot.Contribute(contribution(tenant, jp.jackpot_id, 1000))
    contributions = jpb.ListContributionsRequest(
        tenant_id=tenant, pool_id=pool_id, cycle=1, page_size=1
    )
    contributions_token = (await jackpot.ListContributions(contributions)).next_page_token
    for _ in range(2):
        await jackpot.Trigger(
            jpb.TriggerRequest(
                tenant_id=tenant,
                idempotency_key=key(),
                pool_id=pool_id,
                reason="hit",
                selector=jpb.TriggerSelector(player_id="p1", round_id=f"r-{key()}"),
            )
        )
    # each paged RPC: a first request with page_size 1, and how to call it with a token
    paged: list[tuple[str, Any, Callable[[Any], Awaitable[Any]]]] = [
        (
            "ListTransactions",
            pb.ListTransactionsRequest(tenant_id=tenant, player_id="p", page_size=1),
            wallet.ListTransactions,
        ),
        ("ListPools", jpb.ListPoolsRequest(tenant_id=tenant, page_size=1), jackpot.ListPools),
        (
            "ListWins",
            jpb.ListWinsRequest(tenant_id=tenant, pool_id=pool_id, page_size=1),
            jackpot.ListWins,
        ),
        (
            "ListContributions",
            contributions,
            jackpot.ListContributions,
        ),
        ("GetAuditLog", jpb.GetAuditLogRequest(tenant_id=tenant, page_size=1), jackpot.GetAuditLog),
        (
            "ListSubscriptions",
            spb.ListSubscriptionsRequest(tenant_id=tenant, page_size=1),
            subs.ListSubscriptions,
        ),
    ]
    for name, first, call in paged:
        token = (await call(first)).next_page_token
        if name == "ListContributions":  # of the cycle the triggers ended
            token = contributions_token
        assert token, f"{name} gave no next_page_token"
        for cursor in HOSTILE_CURSORS:
            req = type(first)()
            req.CopyFrom(first)
            req.page_token = tamper(token, cursor)
            if name == "ListPools" and cursor in PLAUSIBLE_IDS:
                await call(req)
                continue
            field = await field_of(call(req), "INVALID_PAGE_TOKEN")
            assert field == "page_token", (name, cursor)
        req = type(first)()
        req.CopyFrom(first)
        req.page_token = token
        assert await call(req)  # the real token still works


def _ts(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.seconds, t.nanos = seconds, nanos
    return t


BAD_TIMESTAMPS = [
    (253402300800, 0),
    (0, -1),
    (0, 1_000_000_000),
    (-(2**63), 0),
    (2**63 - 1, 0),
    (-62135596801, 0),
]


async def test_out_of_range_timestamps_and_durations_are_invalid_argument(
    channel: grpc.aio.Channel, tenant: str
) -> None:
    jackpot, wallet = JackpotServiceStub(channel), WalletServiceStub(channel)
    jp = await create(jackpot, tenant)
    pool_id = (await jackpot.ListPools(jpb.ListPoolsRequest(tenant_id=tenant))).pools[0].pool_id
    for seconds, nanos in BAD_TIMESTAMPS:
        req = contribution(tenant, jp.jackpot_id, 1000, occurred_time=_ts(seconds, nanos))
        assert await field_of(jackpot.Contribute(req), "INVALID_TIMESTAMP") == "occurred_time"
        trig = jpb.TriggerRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=pool_id,
            reason="hit",
            selector=jpb.TriggerSelector(player_id="p1", round_id="r1"),
            occurred_time=_ts(seconds, nanos),
        )
        assert await field_of(jackpot.Trigger(trig), "INVALID_TIMESTAMP") == "occurred_time"
    listed = await jackpot.ListContributions(
        jpb.ListContributionsRequest(tenant_id=tenant, pool_id=pool_id, cycle=1)
    )
    assert not listed.contributions, "a refused contribution was written"
    wins = await jackpot.ListWins(jpb.ListWinsRequest(tenant_id=tenant, pool_id=pool_id))
    assert not wins.wins, "a refused trigger was written"
    # the edges of the range are accepted
    for seconds, nanos in [(253402300799, 999_999_999), (-62135596800, 0)]:
        req = contribution(tenant, jp.jackpot_id, 1000, occurred_time=_ts(seconds, nanos))
        await jackpot.Contribute(req)
    await wallet.Credit(
        pb.CreditRequest(tenant_id=tenant, player_id="p", idempotency_key=key(), amount=eur(50))
    )
    for seconds, nanos in [(1, -1), (1, 10**9), (2**63 - 1, 0), (-1, 5)]:
        bet = pb.AuthorizeBetRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            round_id="r",
            amount=eur(10),
            hold_ttl=duration_pb2.Duration(seconds=seconds, nanos=nanos),
        )
        try:
            await wallet.AuthorizeBet(bet)
            raise AssertionError(f"hold_ttl {seconds}s {nanos}ns accepted")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == INVALID, (exc.code(), exc.details())
            assert error_info(exc).metadata["field"] == "hold_ttl"
    balance = await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
    assert balance.balances[0].available.minor_units == 50


async def test_tier_fields_the_trigger_ignores_are_still_validated(
    channel: grpc.aio.Channel, tenant: str
) -> None:
    jackpot = JackpotServiceStub(channel)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"must_drop_min_minor_units": -5}, "must_drop_min_minor_units"),
        ({"must_drop_max_minor_units": -5}, "must_drop_max_minor_units"),
        ({"deadline_min_seconds": -1}, "deadline_min_seconds"),
        ({"deadline_max_seconds": -1}, "deadline_max_seconds"),
        ({"deadline_max_seconds": 10**12}, "deadline_max_seconds"),
        ({"hit_probability_ppb": -1}, "hit_probability_ppb"),
        ({"reference_bet_minor_units": -1}, "reference_bet_minor_units"),
    ]
    for trigger in (jpb.TRIGGER_KIND_EXTERNAL, jpb.TRIGGER_KIND_RANDOM, jpb.TRIGGER_KIND_DEADLINE):
        base: dict[str, Any] = {"trigger": trigger}
        if trigger == jpb.TRIGGER_KIND_RANDOM:
            base["hit_probability_ppb"] = 1000
        if trigger == jpb.TRIGGER_KIND_DEADLINE:
            base["deadline_max_seconds"] = 3600
        for fields, name in bad:
            if name in base:
                continue
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await create(jackpot, tenant, tier(**{**base, **fields}))
            assert err.value.code() == INVALID, (fields, err.value.details())
            assert error_info(err.value).metadata["field"] == f"tiers[0].{name}"
    assert not (await jackpot.ListPools(jpb.ListPoolsRequest(tenant_id=tenant))).pools
    await create(jackpot, tenant)
    pool = (await jackpot.ListPools(jpb.ListPoolsRequest(tenant_id=tenant))).pools[0]
    for fields, name in bad:
        update = jpb.UpdatePoolRequest(
            tenant_id=tenant,
            idempotency_key=key(),
            pool_id=pool.pool_id,
            config=tier(**fields),
            expected_config_version=pool.config_version,
            reason="hostile",
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await jackpot.UpdatePool(update)
        assert err.value.code() == INVALID, (fields, err.value.details())
        assert error_info(err.value).metadata["field"].endswith(name), error_info(err.value)
    after = (await jackpot.ListPools(jpb.ListPoolsRequest(tenant_id=tenant))).pools[0]
    assert after.config_version == pool.config_version
    assert after.config == pool.config


# every unary RPC of every service: (full method name, request class)
def _unary_methods() -> list[tuple[str, Any]]:
    out = []
    for module in (pb, jpb, spb):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                request_class = getattr(module, m.input_type.name)
                out.append((f"/{service.full_name}/{m.name}", request_class, m.server_streaming))
    return out


METHODS = _unary_methods()


def not_utf8_body(request_class: Any) -> tuple[bytes, str] | None:
    """A serialized request whose first string field holds bytes that are not UTF-8, and the
    field's name (None when the message has no string field)."""
    for f in request_class.DESCRIPTOR.fields:
        if f.type == f.TYPE_STRING and not f.is_repeated:
            marker = "M" * 8
            good = request_class(**{f.name: marker}).SerializeToString()
            return good.replace(marker.encode(), b"\xff\xfe" * 4), f.name
    return None


CORRUPT_BODIES = [b"\xff\xff\xff\xff", b"\x0a\x7f", b"\x08", b"\x0a\x05ab", b"\x07"]


async def _raw_call(
    ch: grpc.aio.Channel, method: str, streaming: bool, body: bytes, md: Any = None
) -> grpc.aio.AioRpcError:
    if streaming:
        stream = ch.unary_stream(method)(body, metadata=md, timeout=10)
        try:
            async for _ in stream:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc
    else:
        try:
            await ch.unary_unary(method)(body, metadata=md, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc
    raise AssertionError(f"{method} accepted a malformed body")


async def test_malformed_bodies_are_invalid_argument_on_every_rpc(app: App, tenant: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        wallet = WalletServiceStub(ch)
        for method, request_class, streaming in METHODS:
            for body in CORRUPT_BODIES:
                exc = await _raw_call(ch, method, streaming, body)
                assert exc.code() == INVALID, (method, body, exc.code(), exc.details())
                assert error_info(exc).reason == "MALFORMED_REQUEST"
                assert error_info(exc).metadata["field"] == "request"
            made = not_utf8_body(request_class)
            if made is not None:
                body, name = made
                exc = await _raw_call(ch, method, streaming, body)
                assert exc.code() == INVALID, (method, exc.code(), exc.details())
                assert error_info(exc).metadata["field"] == name, (method, error_info(exc))
        # a Credit whose metadata value is not UTF-8 names the map field and writes nothing
        credit = pb.CreditRequest(
            tenant_id=tenant,
            player_id="p",
            idempotency_key=key(),
            amount=eur(100),
            metadata={"k": "MMMMMMMM"},
        )
        body = credit.SerializeToString().replace(b"MMMMMMMM", b"\xc3\x28" * 4)
        exc = await _raw_call(ch, "/croupier.wallet.v1.WalletService/Credit", False, body)
        assert exc.code() == INVALID
        assert error_info(exc).metadata["field"] == "metadata.value"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await wallet.GetBalance(pb.GetBalanceRequest(tenant_id=tenant, player_id="p"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, "the refused credit was written"


@pytest.fixture
async def secured(pool: AsyncConnectionPool) -> AsyncIterator[tuple[App, KeyStore]]:
    keys = KeyStore(pool, ttl_seconds=0.2)
    app = await build_server(pool, "127.0.0.1:0", keys=keys)
    try:
        yield app, keys
    finally:
        await app.server.stop(0)
        for t in app.tasks:
            t.cancel()


async def test_malformed_bodies_are_checked_after_authentication(
    secured: tuple[App, KeyStore], tenant: str
) -> None:
    """Without a valid key a malformed body is UNAUTHENTICATED, the same as a good one; with a
    key it is INVALID_ARGUMENT."""
    app, keys = secured
    _, api_key = await keys.create(tenant, ["admin"], "fuzz")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        for method, request_class, streaming in METHODS:
            made = not_utf8_body(request_class)
            bodies = CORRUPT_BODIES + ([made[0]] if made else [])
            for body in bodies:
                exc = await _raw_call(ch, method, streaming, body)
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, (method, exc.code())
                assert error_info(exc).reason == "MISSING_API_KEY"
                bad_key = (("authorization", "Bearer crp_nope_nope"),)
                exc = await _raw_call(ch, method, streaming, body, bad_key)
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, (method, exc.code())
                good = (("authorization", f"Bearer {api_key}"),)
                exc = await _raw_call(ch, method, streaming, body, good)
                assert exc.code() == INVALID, (method, exc.code(), exc.details())

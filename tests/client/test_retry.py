"""Retries: UNAVAILABLE (and DEADLINE_EXCEEDED for writes) are retried with the SAME idempotency
key, within the overall deadline, and a write takes effect exactly once.

Faults are real: a server that is not listening yet, a real server whose reply is lost or late
after the ledger committed (a server interceptor around the real servicer), a real server over
a database that does not answer.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
from croupier.wallet.v1 import wallet_service_pb2 as pb
from croupier.wallet.v1 import wallet_service_pb2_grpc as pb_grpc
from psycopg_pool import AsyncConnectionPool

from client import errors as e
from client.retry import RetryPolicy, RetrySchedule
from client.wallet import CHANNEL_OPTIONS, AsyncWalletClient
from server.app import App, build_server
from server.transport.wallet_servicer import WalletServicer
from server.wallet.ledger import Wallet

if TYPE_CHECKING:  # generic in the type stubs only
    _ClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    _ServerInterceptor = grpc.aio.ServerInterceptor


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder(_ClientInterceptor):
    """Client side: the idempotency key of every attempt the client sends."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        self.keys.append(getattr(request, "idempotency_key", ""))
        return await continuation(details, request)


class LoseReplies(_ServerInterceptor):
    """Server side: run the real handler (the ledger commits), then lose the first `times`
    replies, by answering UNAVAILABLE or by answering after `delay` seconds."""

    def __init__(self, times: int = 1, delay: float = 0.0) -> None:
        self.times, self.delay = times, delay
        self.keys: list[str] = []
        self.auth: list[str | None] = []

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self.keys.append(getattr(request, "idempotency_key", ""))
            self.auth.append(dict(context.invocation_metadata() or ()).get("authorization"))
            response = await inner(request, context)
            if self.times > 0:
                self.times -= 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                else:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "reply lost")
            return response

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def stop(app: App) -> None:
    """Stop a server built in a test, leaving the shared pool open."""
    await app.health.enter_graceful_shutdown()
    await app.server.stop(0)
    for task in app.tasks:
        task.cancel()


def client_to(target: str, recorder: Recorder, policy: RetryPolicy) -> AsyncWalletClient:
    channel = grpc.aio.insecure_channel(
        target,
        options=list(CHANNEL_OPTIONS),
        interceptors=[cast(grpc.aio.ClientInterceptor, recorder)],
    )
    client = AsyncWalletClient(channel=channel, retry=policy)
    client._owns_channel = True  # close it with the client
    return client


@pytest.fixture
async def faulty(pool: AsyncConnectionPool) -> AsyncIterator[tuple[LoseReplies, str]]:
    """A real WalletService over the test database whose replies a test can lose."""
    fault = LoseReplies(times=0)
    server = grpc.aio.server(interceptors=[fault])
    pb_grpc.add_WalletServiceServicer_to_server(WalletServicer(Wallet(pool)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fault, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def credits(w: AsyncWalletClient, tenant: str, player: str) -> list[pb.Transaction]:
    page = await w.list_transactions(tenant_id=tenant, player_id=player)
    return [t for t in page.transactions if t.kind == pb.TRANSACTION_KIND_CREDIT]


async def test_unavailable_until_the_server_starts(pool: AsyncConnectionPool, tenant: str) -> None:
    port = free_port()
    recorder = Recorder()
    policy = RetryPolicy(timeout=2.0, deadline=20.0, initial_backoff=0.05, max_backoff=0.5)
    async with client_to(f"127.0.0.1:{port}", recorder, policy) as w:
        call = asyncio.create_task(
            w.credit(tenant_id=tenant, player_id="p", amount=(500, "EUR"), game_id="g")
        )
        await asyncio.sleep(0.8)
        assert not call.done() and len(recorder.keys) >= 2  # refused, retried, still going
        app = await build_server(pool, f"127.0.0.1:{port}", hold_sweep_seconds=60)
        try:
            response = await asyncio.wait_for(call, 20)
            keys = list(recorder.keys)
            done = await credits(w, tenant, "p")
        finally:
            await stop(app)
    assert len(set(keys)) == 1, "every attempt carried the same idempotency key"
    assert response.balance.available.minor_units == 500
    assert [t.transaction_id for t in done] == [response.transaction_id]  # exactly once
    assert done[0].idempotency_key == keys[0]


async def test_lost_reply_is_replayed_not_repeated(
    faulty: tuple[LoseReplies, str], tenant: str
) -> None:
    fault, target = faulty
    recorder = Recorder()
    async with client_to(target, recorder, RetryPolicy(timeout=2, deadline=10)) as w:
        fault.times = 1  # the ledger commits the credit, the reply is lost (UNAVAILABLE)
        response = await w.credit(tenant_id=tenant, player_id="p", amount=(300, "EUR"))
        keys = list(fault.keys)
        done = await credits(w, tenant, "p")
    assert len(keys) == 2 and len(set(keys)) == 1  # both attempts reached the server
    assert [t.transaction_id for t in done] == [response.transaction_id]
    assert response.balance.available.minor_units == 300  # the original response, replayed


async def test_api_key_is_sent_on_every_attempt(
    faulty: tuple[LoseReplies, str], tenant: str
) -> None:
    fault, target = faulty
    async with AsyncWalletClient(target, api_key="crp_k1_secret") as w:
        fault.times = 1
        await w.credit(tenant_id=tenant, player_id="p", amount=(1, "EUR"))
    async with AsyncWalletClient(target) as w:
        await w.get_balance(tenant_id=tenant, player_id="p")
    assert fault.auth == ["Bearer crp_k1_secret", "Bearer crp_k1_secret", None]


async def test_late_write_reply_is_retried(faulty: tuple[LoseReplies, str], tenant: str) -> None:
    fault, target = faulty
    recorder = Recorder()
    policy = RetryPolicy(timeout=0.4, deadline=10)
    async with client_to(target, recorder, policy) as w:
        await w.credit(tenant_id=tenant, player_id="p", amount=(1_000, "EUR"))
        fault.times, fault.delay = 1, 1.0  # the hold commits; its reply misses the deadline
        hold = await w.authorize_bet(
            tenant_id=tenant, player_id="p", bet_id="b", amount=(250, "EUR")
        )
        balance = await w.get_balance(tenant_id=tenant, player_id="p")
    assert len(set(recorder.keys[1:3])) == 1 and len(recorder.keys) == 4
    assert (hold.balance.available.minor_units, hold.balance.held.minor_units) == (750, 250)
    assert balance.balances[0].held.minor_units == 250  # held once, not twice


async def test_late_read_is_not_retried(faulty: tuple[LoseReplies, str], tenant: str) -> None:
    fault, target = faulty
    recorder = Recorder()
    async with client_to(target, recorder, RetryPolicy(timeout=0.3, deadline=10)) as w:
        await w.credit(tenant_id=tenant, player_id="p", amount=(1, "EUR"))
        fault.times, fault.delay = 1, 1.0
        with pytest.raises(e.DeadlineExceeded) as info:
            await w.get_balance(tenant_id=tenant, player_id="p")
    assert info.value.attempts == 1 and info.value.reason == ""


async def test_business_errors_are_not_retried(target: str, tenant: str) -> None:
    recorder = Recorder()
    async with client_to(target, recorder, RetryPolicy()) as w:
        with pytest.raises(e.PlayerNotFound) as info:
            await w.debit(tenant_id=tenant, player_id="ghost", amount=(1, "EUR"))
    assert info.value.attempts == 1 and len(recorder.keys) == 1


async def test_overall_deadline_bounds_the_retries(tenant: str) -> None:
    recorder = Recorder()
    policy = RetryPolicy(timeout=0.5, deadline=1.5, initial_backoff=0.05, max_backoff=0.3)
    started = time.monotonic()
    async with client_to(f"127.0.0.1:{free_port()}", recorder, policy) as w:
        with pytest.raises(e.Unavailable) as info:
            await w.credit(tenant_id=tenant, player_id="p", amount=(1, "EUR"))
    elapsed = time.monotonic() - started
    assert info.value.attempts >= 2 and info.value.attempts == len(recorder.keys)
    assert len(set(recorder.keys)) == 1
    assert elapsed < 1.5 + 0.5, elapsed


async def test_database_outage_is_unavailable_and_retried(tenant: str) -> None:
    dead = AsyncConnectionPool(
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=1",
        min_size=0,
        max_size=2,
        timeout=0.3,
        open=False,
    )
    await dead.open(wait=False)
    app = await build_server(dead, "127.0.0.1:0", hold_sweep_seconds=3600)
    recorder = Recorder()
    policy = RetryPolicy(timeout=2, deadline=10, max_attempts=3, max_backoff=0.2)
    try:
        async with client_to(f"127.0.0.1:{app.port}", recorder, policy) as w:
            with pytest.raises(e.DatabaseUnavailable) as info:
                await w.credit(tenant_id=tenant, player_id="p", amount=(1, "EUR"))
    finally:
        await stop(app)
        await dead.close()
    assert isinstance(info.value, e.Unavailable) and info.value.domain == "croupier"
    assert info.value.attempts == 3 and len(recorder.keys) == 3 and len(set(recorder.keys)) == 1


class ManualClock:
    """A clock the test moves by hand (the schedule's only input besides the errors)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "test", "")


def test_backoff_grows_exponentially_within_the_deadline() -> None:
    clock = ManualClock()
    policy = RetryPolicy(timeout=5, deadline=12, initial_backoff=0.1, multiplier=2, max_backoff=0.5)
    schedule = RetrySchedule(policy, write=False, clock=clock, jitter=lambda lo, hi: hi)
    delays = []
    for _ in range(5):
        assert schedule.attempt_timeout() == 5
        delays.append(schedule.after_failure(rpc_error(grpc.StatusCode.UNAVAILABLE)))
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]
    clock.now += 9.0  # 3 s of the overall deadline left: the next attempt gets only that
    assert schedule.attempt_timeout() == pytest.approx(3.0)
    clock.now += 2.8  # a backoff of 0.5 s would pass the deadline: give up now
    with pytest.raises(e.Unavailable) as info:
        schedule.after_failure(rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert info.value.attempts == 6


def test_full_jitter_stays_within_the_ceiling() -> None:
    schedule = RetrySchedule(RetryPolicy(initial_backoff=0.2, max_attempts=100), write=True)
    for n in range(1, 30):
        schedule.attempt_timeout()
        delay = schedule.after_failure(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
        assert 0 <= delay <= min(2.0, 0.2 * 2 ** (n - 1))


def test_what_is_retried() -> None:
    for write, code, retried in [
        (False, grpc.StatusCode.UNAVAILABLE, True),
        (True, grpc.StatusCode.UNAVAILABLE, True),
        (True, grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (False, grpc.StatusCode.DEADLINE_EXCEEDED, False),
        (False, grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (True, grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (True, grpc.StatusCode.INTERNAL, False),
        (True, grpc.StatusCode.FAILED_PRECONDITION, False),
    ]:
        schedule = RetrySchedule(RetryPolicy(), write=write)
        schedule.attempt_timeout()
        if retried:
            assert schedule.after_failure(rpc_error(code)) >= 0
        else:
            with pytest.raises(e.CroupierError) as info:
                schedule.after_failure(rpc_error(code))
            assert info.value.code == code and info.value.attempts == 1
    one_shot = RetrySchedule(RetryPolicy(max_attempts=1), write=True)
    one_shot.attempt_timeout()
    with pytest.raises(e.Unavailable):
        one_shot.after_failure(rpc_error(grpc.StatusCode.UNAVAILABLE))

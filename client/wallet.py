"""WalletService clients: `WalletClient` (blocking, grpc) and `AsyncWalletClient` (grpc.aio).

Both have one method per RPC with the keyword arguments of `client.wallet_calls` (amounts as
Money protos or `(minor_units, currency)` pairs, idempotency keys generated when not given):

    with WalletClient("127.0.0.1:50051") as wallet:
        wallet.credit(tenant_id="t1", player_id="p1", amount=(10_000, "EUR"))
        hold = wallet.authorize_bet(tenant_id="t1", player_id="p1", bet_id="b1",
                                    amount=(250, "EUR"))

    async with AsyncWalletClient("127.0.0.1:50051") as wallet:
        await wallet.settle_bet(tenant_id="t1", player_id="p1", bet_id="b1", win=(500, "EUR"))

Each attempt has a deadline (`RetryPolicy.timeout`, default 5 s); UNAVAILABLE (and, for
writes, DEADLINE_EXCEEDED) is retried with the same request, hence the same idempotency key,
with exponential backoff and jitter, within `RetryPolicy.deadline` (see `client.retry`).
Failures are raised as `client.errors` classes (`InsufficientFunds`, `IdempotencyKeyReused`,
...). The method table is written once (`_WalletMethods`) and shared by both clients.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, overload

import grpc
from croupier.wallet.v1 import wallet_service_pb2_grpc as pb_grpc
from google.protobuf.message import Message

from client import wallet_calls
from client.retry import RetryPolicy, RetrySchedule, call_async, call_sync
from client.wallet_calls import Call

P = ParamSpec("P")
R = TypeVar("R", bound=Message)

DEFAULT_TARGET = "127.0.0.1:50051"
# Reconnect quickly after the server restarts, so retries within the deadline can reach it.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def _open_channel(
    grpc_module: Any,
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]],
) -> Any:
    """A channel from `grpc` or `grpc.aio`: TLS with `credentials`, else plain text."""
    if credentials is not None:
        return grpc_module.secure_channel(target, credentials, options=list(options))
    return grpc_module.insecure_channel(target, options=list(options))


class _Rpc(Generic[P, R]):
    """A client method made from a `wallet_calls` function: on a WalletClient it returns the
    response, on an AsyncWalletClient a coroutine of it."""

    def __init__(self, build: Callable[P, Call[R]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: WalletClient, owner: type[Any]) -> Callable[P, R]: ...
    @overload
    def __get__(
        self, obj: AsyncWalletClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build, invoke = self._build, obj.invoke

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return invoke(build(*args, **kwargs))

        return method


class _WalletMethods:
    """The WalletService methods and the call plumbing shared by the sync and async clients."""

    def __init__(
        self, channel: Any, owns_channel: bool, retry: RetryPolicy | None, api_key: str | None
    ) -> None:
        self.channel = channel
        self.retry = retry or RetryPolicy()
        self._owns_channel = owns_channel
        self._stub: Any = pb_grpc.WalletServiceStub(channel)
        # a tenant API key travels as `authorization: Bearer <key>` (server.auth)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None

    get_balance = _Rpc(wallet_calls.get_balance)
    authorize_bet = _Rpc(wallet_calls.authorize_bet)
    settle_bet = _Rpc(wallet_calls.settle_bet)
    cancel_bet = _Rpc(wallet_calls.cancel_bet)
    credit = _Rpc(wallet_calls.credit)
    debit = _Rpc(wallet_calls.debit)
    rollback_transaction = _Rpc(wallet_calls.rollback_transaction)
    set_player_status = _Rpc(wallet_calls.set_player_status)
    get_transaction = _Rpc(wallet_calls.get_transaction)
    list_transactions = _Rpc(wallet_calls.list_transactions)

    def _schedule(self, call: Call[Any]) -> RetrySchedule:
        policy = self.retry
        if call.timeout is not None:
            policy = dataclasses.replace(policy, timeout=call.timeout)
        return RetrySchedule(policy, call.write)

    def _attempt(self, call: Call[Any]) -> Callable[[float], Any]:
        """One attempt of `call` with a deadline of `timeout` seconds (same request each time)."""
        rpc, metadata = getattr(self._stub, call.method), self._metadata
        return lambda timeout: rpc(call.request, timeout=timeout, metadata=metadata)


class WalletClient(_WalletMethods):
    """Blocking WalletService client over a `grpc.Channel` (its own insecure channel to
    `target` unless `channel` is given; then closing the client leaves the channel open).
    `api_key`: the tenant API key sent with every call, when the server requires one;
    `credentials` (grpc.ssl_channel_credentials): TLS or mutual TLS instead of plain text."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.Channel | None = None,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS,
    ) -> None:
        own = channel is None
        channel = channel or _open_channel(grpc, target, credentials, options)
        super().__init__(channel, own, retry, api_key)

    def invoke(self, call: Call[R]) -> R:
        """Send `call` with retries; return the response or raise a client.errors class."""
        response: R = call_sync(self._schedule(call), self._attempt(call))
        return response

    def close(self) -> None:
        """Close the channel if the client opened it."""
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncWalletClient(_WalletMethods):
    """grpc.aio WalletService client (its own insecure channel to `target` unless `channel`
    is given; then closing the client leaves the channel open). `api_key`: the tenant API key
    sent with every call, when the server requires one; `credentials`
    (grpc.ssl_channel_credentials): TLS or mutual TLS instead of plain text. Create it inside
    the event loop that uses it."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.aio.Channel | None = None,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS,
    ) -> None:
        own = channel is None
        channel = channel or _open_channel(grpc.aio, target, credentials, options)
        super().__init__(channel, own, retry, api_key)

    async def invoke(self, call: Call[R]) -> R:
        """Send `call` with retries; return the response or raise a client.errors class."""
        response: R = await call_async(self._schedule(call), self._attempt(call))
        return response

    async def close(self) -> None:
        """Close the channel if the client opened it."""
        if self._owns_channel:
            await self.channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

"""Group commit: concurrent write requests of one process share database
transactions, as TigerBeetle batches transfers, because on a busy server the cost of a
transaction per request (connection checkout, BEGIN/COMMIT and its WAL flush, the driver's
pipeline machinery, the idempotency record) is what limits throughput, not the rows.

`Batcher` is the queue all batchers share (natural batching, no timer): a request starts a
transaction at once while fewer than `max_inflight` of this batcher's transactions are at the
database (the wallet's default: all but one of the pool's connections), running alone in its
caller's task when the batcher is idle, and queues only when all are busy; a finished batch
takes the next `max_batch` queued requests at once. So a lone request never waits behind
another request's COMMIT, and batches form under load. A queued request that finds nobody to
share with runs by itself on the one-request path (`alone`, server.idempotency.run_idempotent).
A subclass's `_commit` applies a batch and returns each applied request's stored reply by
batch index; a request it leaves out (or every request, when `_commit` raises) goes the
one-request way, which applies it or replays it exactly once. Nothing is answered before
COMMIT.

`WalletGroupCommit` batches wallet writes of one tenant that lock one player's account and
post between it and the tenant's house accounts (AuthorizeBet, SettleBet, Credit, Debit;
house balances are derived from postings, never a row to lock): the batch runs each request's
own operation in turn in one transaction, ordered by player so concurrent batches lock
accounts in one order, and stores every outcome in one statement. CancelBet and
RollbackTransaction run alone: they race with a settle or a bet on the same hold by nature,
and in a batch the account lock taken by an earlier request comes before that hold's lock
(the opposite of a lone request's order), so the race would wait for PostgreSQL's deadlock
detection (about a second) before the loser runs alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from psycopg_pool import AsyncConnectionPool

from server.errors import DomainError
from server.events.context import current_trace_id
from server.idempotency import RefusedAfterWriteError, RequestKey, StoredReply
from server.store import idempotency_sql
from server.telemetry import BATCH_FALLBACKS, BATCH_SIZE
from server.types import Conn

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Pending:
    """A queued request: its key, how to run it alone, its context (trace id, span) and the
    future its caller awaits (None: run it the one-request way)."""

    key: RequestKey
    alone: Callable[[], Awaitable[StoredReply]]
    context: contextvars.Context
    trace_id: str
    future: asyncio.Future[StoredReply | None]


E = TypeVar("E", bound=Pending)


class Batcher(Generic[E]):
    """The shared queue; subclasses implement `_commit`. `kind` labels the metrics."""

    def __init__(self, kind: str, *, max_batch: int, max_inflight: int = 1) -> None:
        self.kind = kind
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._queue: list[E] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._size = BATCH_SIZE.labels(kind)  # labels() takes a lock and builds a key

    @property
    def enabled(self) -> bool:
        """Whether requests are batched at all (max_batch > 1)."""
        return self.max_batch > 1

    def _idle(self) -> bool:
        """Whether a request may run at once, by itself, in its caller's task: nothing is
        queued and none of this batcher's transactions is at the database (then nobody can
        share its transaction; with one in flight, requests arriving together still go
        through the queue and share a batch)."""
        return not self._queue and self._inflight == 0

    async def _run_direct(self, alone: Callable[[], Awaitable[StoredReply]]) -> StoredReply:
        """Run a request alone in its caller's task, holding one in-flight slot: the idle
        case, without a batch task, a future or a copied context. Its errors propagate."""
        self._inflight += 1
        self._size.observe(1)
        try:
            return await alone()
        finally:
            self._inflight -= 1
            self._pump()

    async def _enqueue(self, entry: E) -> StoredReply | None:
        self._queue.append(entry)
        self._pump()
        return await entry.future

    def _pump(self) -> None:
        while self._queue and self._inflight < self.max_inflight:
            self._inflight += 1
            task = asyncio.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight -= 1
        self._pump()

    async def _run(self) -> None:
        # one turn of the event loop first: requests gRPC has already read join this batch
        await asyncio.sleep(0)
        if not self._queue:
            return
        group = self._group(self._queue[0])
        batch = [e for e in self._queue if self._group(e) == group][: self.max_batch]
        taken = {id(e) for e in batch}
        self._queue = [e for e in self._queue if id(e) not in taken]
        self._size.observe(len(batch))
        if len(batch) == 1:  # nobody to share with: the one-request path, still in turn
            await _alone(batch[0])
            return
        replies: dict[int, StoredReply] = {}
        try:
            replies = await self._commit(batch)
        except Exception as exc:  # every request goes the one-request way, which reports
            BATCH_FALLBACKS.labels(self.kind, type(exc).__name__).inc(len(batch))
            log.debug("%s batch of %d fell back", self.kind, len(batch), exc_info=True)
        else:
            if len(replies) < len(batch):  # keys already used, or repeated in the batch
                BATCH_FALLBACKS.labels(self.kind, "key_used").inc(len(batch) - len(replies))
        finally:  # also when cancelled: no caller is left waiting
            for i, entry in enumerate(batch):
                if not entry.future.done():
                    entry.future.set_result(replies.get(i))

    async def _commit(self, batch: list[E]) -> dict[int, StoredReply]:
        raise NotImplementedError

    def _group(self, entry: E) -> object:
        """Requests of one batch share this value (the oldest queued request's group goes
        first); the default puts every request in one group."""
        return None


async def _alone(entry: Pending) -> None:
    """Run one request by itself, in its own context, answering its future."""
    try:
        reply = await asyncio.create_task(_call(entry.alone), context=entry.context)
    except BaseException as exc:
        if not entry.future.done():
            entry.future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        if not entry.future.done():
            entry.future.set_result(reply)


async def _call(run: Callable[[], Awaitable[StoredReply]]) -> StoredReply:
    return await run()


def default_inflight(pool: AsyncConnectionPool) -> int:
    """Batches a process keeps at the database at once: all but one of the pool's connections
    (the last one stays free for requests that run alone and for background work). With more
    than one, a request that arrives while a batch is at the database starts its own
    transaction on a free connection instead of waiting for that batch's COMMIT; requests
    queue, and batches form, only when every one of them is busy."""
    return max(1, pool.max_size - 1)


def outcome_of(key: RequestKey, code: int, payload: bytes) -> idempotency_sql.Outcome:
    """A request's outcome to store under its key (grpc code, exact payload bytes)."""
    return idempotency_sql.Outcome(
        key.tenant_id,
        key.idempotency_key,
        key.method,
        key.fingerprint,
        code,
        payload,
        key.scope.value,
    )


def first_of_each_key(
    keys: list[idempotency_sql.Slot], used: set[idempotency_sql.Slot]
) -> list[int]:
    """Indexes of the requests a batch applies: the first of each key not already used (a
    repeat of a key in the batch runs after it, the one-request way, and replays)."""
    seen = set(used)
    members = []
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            members.append(i)
    return members


@dataclass(slots=True)
class _WalletEntry(Pending):
    operation: Callable[[Conn], Awaitable[Any]]
    encode_ok: Callable[[Any], bytes]
    encode_error: Callable[[DomainError], bytes]
    order: tuple[str, str]  # (tenant, player): the account lock order


class WalletGroupCommit(Batcher[_WalletEntry]):
    """Wallet writes of one process in shared transactions (see the module doc).

    A batch, in one pipelined transaction: which keys are already used (one round trip; those
    requests replay the one-request way); then each request's operation in player order (each
    reads in one round trip and queues its writes, so a later request of the same player sees
    the earlier one's postings); a DomainError is that request's stored outcome (operations
    raise it before their first write); then every outcome in one statement and COMMIT. Any
    other error (a lost race, a deadlock, a constraint) rolls the whole batch back and every
    request runs the one-request way.
    """

    def __init__(
        self, pool: AsyncConnectionPool, *, max_batch: int = 32, max_inflight: int | None = None
    ) -> None:
        super().__init__(
            "wallet", max_batch=max_batch, max_inflight=max_inflight or default_inflight(pool)
        )
        self.pool = pool

    async def submit(
        self,
        key: RequestKey,
        operation: Callable[[Conn], Awaitable[Any]],
        encode_ok: Callable[[Any], bytes],
        encode_error: Callable[[DomainError], bytes],
        *,
        player_id: str,
        alone: Callable[[], Awaitable[StoredReply]],
    ) -> StoredReply:
        """The stored reply of the request, batched with concurrent ones, or run `alone`."""
        if not self.enabled:
            return await alone()
        if self._idle():
            return await self._run_direct(alone)
        future: asyncio.Future[StoredReply | None] = asyncio.get_running_loop().create_future()
        entry = _WalletEntry(
            key,
            alone,
            contextvars.copy_context(),
            current_trace_id.get(),
            future,
            operation,
            encode_ok,
            encode_error,
            (key.tenant_id, player_id),
        )
        reply = await self._enqueue(entry)
        return reply if reply is not None else await alone()

    def _group(self, entry: _WalletEntry) -> object:
        """One tenant per batch: a tenant's rows are one shard group on a distributed
        database (docs/scaling.md), so a batch is a transaction on one node."""
        return entry.key.tenant_id

    async def _commit(self, batch: list[_WalletEntry]) -> dict[int, StoredReply]:
        keys = [e.key.slot for e in batch]
        replies: dict[int, StoredReply] = {}
        async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            used = await idempotency_sql.used_keys(conn, keys)
            members = sorted(first_of_each_key(keys, used), key=lambda i: batch[i].order)
            outcomes = []
            for i in members:
                entry = batch[i]
                current_trace_id.set(entry.trace_id)  # the events it writes carry its trace
                try:
                    code, payload = 0, entry.encode_ok(await entry.operation(conn))
                except RefusedAfterWriteError:
                    raise  # its writes are in the batch: the batch goes the one-request way
                except DomainError as err:
                    code, payload = int(err.code), entry.encode_error(err)
                outcomes.append(outcome_of(entry.key, code, payload))
                replies[i] = StoredReply(code, payload, False)
            await idempotency_sql.record_many(conn, outcomes)
        return replies

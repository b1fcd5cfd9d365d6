"""The group-commit queue's scheduling (server.group_commit.Batcher): a request starts its own
transaction while fewer than `max_inflight` are at the database, so a lone request never waits
for another request's COMMIT; requests queue, and batches form, only when all are busy."""

from __future__ import annotations

import asyncio
import contextvars

from psycopg_pool import AsyncConnectionPool

from server.group_commit import Batcher, Pending, default_inflight
from server.idempotency import RequestKey, Scope, StoredReply

DONE = StoredReply(0, b"ok", False)


class Probe(Batcher[Pending]):
    """A batcher whose work waits on gates, recording what ran alone and in batches."""

    def __init__(self, inflight: int) -> None:
        super().__init__("probe", max_batch=8, max_inflight=inflight)
        self.batches: list[list[str]] = []
        self.batch_gate = asyncio.Event()
        self.ran_in: dict[str, tuple[asyncio.Task[object] | None, int]] = {}

    async def submit(self, name: str, gate: asyncio.Event, direct: bool = False) -> StoredReply:
        """`direct`: the wallet's and the contributions' policy, an idle request runs at once
        in its caller's task."""

        async def alone() -> StoredReply:
            self.ran_in[name] = (asyncio.current_task(), self._inflight)
            await gate.wait()
            return DONE

        if direct and self._idle():
            return await self._run_direct(alone)
        key = RequestKey("t", name, "Probe", b"", Scope.WALLET)
        future: asyncio.Future[StoredReply | None] = asyncio.get_running_loop().create_future()
        entry = Pending(key, alone, contextvars.copy_context(), "", future)
        reply = await self._enqueue(entry)
        return reply if reply is not None else await alone()

    async def _commit(self, batch: list[Pending]) -> dict[int, StoredReply]:
        self.batches.append([e.key.idempotency_key for e in batch])
        await self.batch_gate.wait()
        return dict.fromkeys(range(len(batch)), DONE)


async def test_a_lone_request_does_not_wait_for_the_transaction_in_flight() -> None:
    """With two transactions allowed, B finishes while A's is still open; with one (the old
    policy), B waits for A."""
    for inflight, b_waits in ((2, False), (1, True)):
        probe = Probe(inflight)
        slow, fast = asyncio.Event(), asyncio.Event()
        fast.set()
        a = asyncio.create_task(probe.submit("a", slow))
        await asyncio.sleep(0.01)
        b = asyncio.create_task(probe.submit("b", fast))
        done, _ = await asyncio.wait({b}, timeout=0.2)
        assert (b not in done) is b_waits, inflight
        slow.set()
        assert await a == DONE and await b == DONE


async def test_requests_queue_and_share_a_transaction_only_when_all_are_busy() -> None:
    """Two slow requests hold both slots; three more queue and then run as one batch."""
    probe = Probe(2)
    slow = asyncio.Event()
    first = []
    for n in ("a", "b"):  # one after the other (requests of one loop turn share a batch)
        first.append(asyncio.create_task(probe.submit(n, slow)))
        await asyncio.sleep(0.01)
    assert probe.batches == [] and not probe._queue  # each runs alone, at once
    queued = [asyncio.create_task(probe.submit(n, slow)) for n in ("c", "d", "e")]
    await asyncio.sleep(0.01)
    assert len(probe._queue) == 3
    probe.batch_gate.set()
    slow.set()
    assert all(r == DONE for r in await asyncio.gather(*first, *queued))
    assert probe.batches == [["c", "d", "e"]]


async def test_an_idle_request_runs_in_its_callers_task_and_holds_a_slot() -> None:
    """Nothing queued and nothing in flight: the request runs at once in the caller's own
    task (no batch task, future or copied context), holding its slot; one arriving meanwhile
    queues, and runs when the slot is given back."""
    probe = Probe(1)
    slow, fast = asyncio.Event(), asyncio.Event()
    fast.set()
    a = asyncio.create_task(probe.submit("a", slow, direct=True))
    await asyncio.sleep(0.01)
    assert probe.ran_in["a"] == (a, 1) and probe._inflight == 1
    b = asyncio.create_task(probe.submit("b", fast, direct=True))
    await asyncio.sleep(0.01)
    assert len(probe._queue) == 1 and "b" not in probe.ran_in  # busy: b waits its turn
    slow.set()
    assert await a == DONE and await b == DONE
    assert probe.ran_in["b"][0] is not b and probe._inflight == 0  # b ran from the queue
    assert probe.batches == []  # alone, as a batch of one


async def test_with_a_transaction_in_flight_a_request_goes_through_the_queue() -> None:
    """A free slot but one transaction in flight: the request does not wait for it, but goes
    through the queue (so requests arriving together share a batch)."""
    probe = Probe(2)
    slow, fast = asyncio.Event(), asyncio.Event()
    fast.set()
    a = asyncio.create_task(probe.submit("a", slow, direct=True))
    await asyncio.sleep(0.01)
    b = asyncio.create_task(probe.submit("b", fast, direct=True))
    done, _ = await asyncio.wait({b}, timeout=0.2)
    assert b in done and probe.ran_in["b"][0] is not b  # ran at once, from the queue
    slow.set()
    assert await a == DONE and await b == DONE


async def test_default_keeps_one_pool_connection_free(pool: AsyncConnectionPool) -> None:
    """The wallet's default: all but one of the pool's connections (at least one)."""
    assert default_inflight(pool) == max(1, pool.max_size - 1)

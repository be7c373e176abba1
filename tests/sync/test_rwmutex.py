"""sync.RWMutex (issue #4): writer preference, fairness, cancellation, misuse.

Racy states are reached with ``anyio.wait_all_tasks_blocked()``; nothing here
asserts wall-clock time.
"""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from asyncgo.sync import Cond, RWMutex

pytestmark = pytest.mark.anyio


async def read_and_note(
    rw: RWMutex, name: str, order: list[str], hold: anyio.Event | None = None
) -> None:
    async with rw.read():
        order.append(name)
        if hold is not None:
            await hold.wait()


async def write_and_note(
    rw: RWMutex, name: str, order: list[str], hold: anyio.Event | None = None
) -> None:
    async with rw.write():
        order.append(name)
        if hold is not None:
            await hold.wait()


async def write_in_scope(
    rw: RWMutex, out: list[str], *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        await rw.lock()
        out.append("wrote")
        rw.unlock()


async def read_in_scope(
    rw: RWMutex, out: list[str], *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        await rw.rlock()
        out.append("read")
        rw.runlock()


# -- basics ----------------------------------------------------------------------------------


async def test_many_readers_at_once() -> None:
    rw = RWMutex()
    for _ in range(5):
        await rw.rlock()
    assert not rw.try_lock()
    for _ in range(5):
        rw.runlock()
    assert rw.try_lock()
    rw.unlock()


async def test_writer_excludes_readers_and_writers() -> None:
    rw = RWMutex()
    await rw.lock()
    assert not rw.try_rlock()
    assert not rw.try_lock()
    rw.unlock()
    assert rw.try_rlock()
    rw.runlock()


async def test_context_managers_release_on_exception() -> None:
    rw = RWMutex()
    with pytest.raises(KeyError):
        async with rw.read():
            raise KeyError
    with pytest.raises(KeyError):
        async with rw.write():
            raise KeyError
    assert rw.try_lock()
    rw.unlock()


async def test_read_and_write_sides_are_lockers() -> None:
    rw = RWMutex()
    r, w = rw.read(), rw.write()
    await r.lock()
    assert r.try_lock()
    assert not w.try_lock()
    r.unlock()
    r.unlock()
    await w.lock()
    assert not r.try_lock()
    w.unlock()
    assert "read side" in repr(r) and "write side" in repr(w)


def test_runlock_of_unlocked_rwmutex_raises() -> None:
    rw = RWMutex()
    with pytest.raises(RuntimeError, match=r"^sync: RUnlock of unlocked RWMutex$"):
        rw.runlock()


def test_unlock_of_unlocked_rwmutex_raises() -> None:
    rw = RWMutex()
    with pytest.raises(RuntimeError, match=r"^sync: Unlock of unlocked RWMutex$"):
        rw.unlock()
    assert rw.try_rlock()
    with pytest.raises(RuntimeError, match=r"^sync: Unlock of unlocked RWMutex$"):
        rw.unlock()  # a read lock is not the write lock
    rw.runlock()


# -- writer preference and fairness -------------------------------------------------------------


async def test_waiting_writer_blocks_new_readers() -> None:
    rw = RWMutex()
    order: list[str] = []
    await rw.rlock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(write_and_note, rw, "writer", order)
        await anyio.wait_all_tasks_blocked()
        assert not rw.try_rlock(), "a waiting writer must block new readers"
        tg.start_soon(read_and_note, rw, "late reader", order)
        await anyio.wait_all_tasks_blocked()
        assert order == []
        rw.runlock()  # the last reader out lets the writer in, before the late reader
    assert order == ["writer", "late reader"]


async def test_readers_queued_during_a_write_go_before_the_next_writer() -> None:
    """Go: Unlock releases the readers that waited, so writers cannot starve readers."""
    rw = RWMutex()
    order: list[str] = []
    await rw.lock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(read_and_note, rw, "r1", order)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(write_and_note, rw, "w2", order)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(read_and_note, rw, "r2", order)
        await anyio.wait_all_tasks_blocked()
        rw.unlock()
    # r1 and r2 both queued during the write; w2 waits for them.
    assert sorted(order[:2]) == ["r1", "r2"] and order[2] == "w2", order


async def test_writers_are_served_fifo() -> None:
    rw = RWMutex()
    order: list[str] = []
    await rw.lock()
    async with anyio.create_task_group() as tg:
        for name in ("w1", "w2", "w3"):
            tg.start_soon(write_and_note, rw, name, order)
            await anyio.wait_all_tasks_blocked()
        rw.unlock()
    assert order == ["w1", "w2", "w3"]


async def test_writer_not_starved_by_a_stream_of_overlapping_readers() -> None:
    """Readers overlap so the read count never drops to zero on its own; once a writer
    waits, only the readers already holding the lock finish before it."""
    rw = RWMutex()
    stop = False
    reads_after_writer_queued = 0
    writer_waiting = False

    async def reader() -> None:
        nonlocal reads_after_writer_queued
        while not stop:
            async with rw.read():
                if writer_waiting:
                    reads_after_writer_queued += 1
                await anyio.lowlevel.checkpoint()
                await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(reader)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        writer_waiting = True
        await rw.lock()  # would hang if readers could starve writers
        writer_waiting = False
        stop = True
        rw.unlock()
    # at most the 6 readers that held (or were granted) the lock when the writer queued
    assert reads_after_writer_queued <= 6, reads_after_writer_queued


async def test_readers_not_starved_by_a_stream_of_writers() -> None:
    rw = RWMutex()
    stop = False
    writes_while_reader_waited = 0
    reader_waiting = False

    async def writer() -> None:
        nonlocal writes_while_reader_waited
        while not stop:
            async with rw.write():
                if reader_waiting:
                    writes_while_reader_waited += 1
                await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(writer)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        reader_waiting = True
        await rw.rlock()  # would hang if writers could starve readers
        reader_waiting = False
        stop = True
        rw.runlock()
    # only a writer already granted the lock when the reader queued may go first
    assert writes_while_reader_waited <= 1, writes_while_reader_waited


# -- cancellation ---------------------------------------------------------------------------------


async def test_cancelled_waiting_writer_lets_queued_readers_in() -> None:
    rw = RWMutex()
    out: list[str] = []
    order: list[str] = []
    await rw.rlock()
    async with anyio.create_task_group() as tg:
        scope = await tg.start(write_in_scope, rw, out)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(read_and_note, rw, "reader", order)
        await anyio.wait_all_tasks_blocked()
        assert order == []
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert order == ["reader"], "readers stayed blocked behind a cancelled writer"
        rw.runlock()
    assert out == []
    assert rw.try_lock()


async def test_cancelled_writer_with_another_writer_behind_keeps_readers_out() -> None:
    rw = RWMutex()
    out: list[str] = []
    order: list[str] = []
    await rw.rlock()
    async with anyio.create_task_group() as tg:
        scope = await tg.start(write_in_scope, rw, out)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(write_and_note, rw, "w2", order)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(read_and_note, rw, "reader", order)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert order == [], "w2 still waits, so the reader must too"
        rw.runlock()
    assert order == ["w2", "reader"]
    assert out == []


@pytest.mark.parametrize("newcomer", ["try_lock", "lock-then-release", "try_rlock"])
async def test_readers_behind_a_cancelled_writer_go_before_a_newcomer(newcomer: str) -> None:
    """Between a waiting writer's cancellation and its task's next step, the lock
    must not look free with the readers it held back still queued: they go first
    (docs/sync.md rule 4, and "a cancelled lock() does not hold up the tasks queued
    behind it"). A newcomer used to barge in ahead of them, and a writer calling
    lock() then made them wait through its whole turn."""
    rw = RWMutex()
    out: list[str] = []
    order: list[str] = []
    assert rw.try_rlock()  # R0
    async with anyio.create_task_group() as tg:
        scope = await tg.start(write_in_scope, rw, out)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(read_and_note, rw, "R1", order, hold := anyio.Event())
        await anyio.wait_all_tasks_blocked()
        scope.cancel()  # the writer gives up; its task has not run yet
        if newcomer == "try_lock":
            rw.runlock()  # R0 leaves in the same step
            assert not rw.try_lock(), "a newcomer writer barged in ahead of R1"
        elif newcomer == "try_rlock":
            rw.runlock()
            assert rw.try_rlock()  # readers share: R1 and this one
            assert "readers=2" in repr(rw), repr(rw)  # R1 was let in first
            rw.runlock()
        else:
            # R0 still reads; a writer arrives: R1 joins R0 before it.
            tg.start_soon(write_and_note, rw, "W3", order)
            await anyio.wait_all_tasks_blocked()
            assert order == ["R1"], order
            rw.runlock()
        await anyio.wait_all_tasks_blocked()
        assert order[0] == "R1", order
        hold.set()
    assert out == []
    assert rw.try_lock()


async def test_cancelled_reader_holds_nothing() -> None:
    rw = RWMutex()
    out: list[str] = []
    await rw.lock()
    async with anyio.create_task_group() as tg:
        scope = await tg.start(read_in_scope, rw, out)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        rw.unlock()
    assert out == []
    assert rw.try_lock()


async def test_reader_granted_then_cancelled_keeps_its_read_lock_until_exit() -> None:
    rw = RWMutex()
    steps: list[str] = []

    async def reader(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            async with rw.read():
                steps.append("reading")
                await anyio.lowlevel.checkpoint()
        steps.append("cancelled" if scope.cancelled_caught else "?")

    await rw.lock()
    async with anyio.create_task_group() as tg:
        scope = await tg.start(reader)
        await anyio.wait_all_tasks_blocked()
        rw.unlock()  # grants the read lock...
        scope.cancel()  # ...then the cancellation arrives
    assert steps == ["reading", "cancelled"]
    assert rw.try_lock()


async def test_fast_paths_are_cancel_points() -> None:
    rw = RWMutex()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await rw.rlock()
    assert scope.cancelled_caught
    with anyio.CancelScope() as scope:
        scope.cancel()
        await rw.lock()
    assert scope.cancelled_caught
    assert rw.try_lock()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_cancellation_stress_keeps_the_invariants(seed: int) -> None:
    """Readers and writers cancelled at random points: a writer is always alone,
    nothing is lost, nobody stays blocked."""
    rng = random.Random(seed)
    rw = RWMutex()
    readers = 0
    writers = 0
    done_reads = done_writes = cancelled = 0
    scopes: list[anyio.CancelScope] = []
    stop = False

    async def worker() -> None:
        nonlocal readers, writers, done_reads, done_writes, cancelled
        for _ in range(50):
            write = rng.random() < 0.3
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                if write:
                    async with rw.write():
                        writers += 1
                        try:
                            assert writers == 1 and readers == 0
                            for _ in range(rng.randrange(3)):
                                await anyio.lowlevel.checkpoint()
                            done_writes += 1
                        finally:
                            writers -= 1
                else:
                    async with rw.read():
                        readers += 1
                        try:
                            assert writers == 0
                            for _ in range(rng.randrange(3)):
                                await anyio.lowlevel.checkpoint()
                            done_reads += 1
                        finally:
                            readers -= 1
            scopes.remove(scope)
            cancelled += scope.cancelled_caught

    async def chaos() -> None:
        while not stop:
            await anyio.lowlevel.checkpoint()
            if scopes and rng.random() < 0.25:
                rng.choice(scopes).cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(chaos)
        async with anyio.create_task_group() as workers_tg:
            for _ in range(12):
                workers_tg.start_soon(worker)
        stop = True
    assert done_reads and done_writes and cancelled
    assert readers == writers == 0
    assert rw._readers == 0 and not rw._writer
    assert rw._wq.head() is None and rw._rq.head() is None
    assert rw.try_lock()


# -- with Cond ---------------------------------------------------------------------------------


async def test_cond_on_the_write_side() -> None:
    rw = RWMutex()
    cond = Cond(rw.write())
    ready = False
    got: list[bool] = []

    async def waiter() -> None:
        async with cond:
            while not ready:
                await cond.wait()
            got.append(rw._writer)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        async with rw.write():
            ready = True
            cond.signal()
    assert got == [True]
    assert rw.try_lock()

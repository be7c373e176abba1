"""Rarely-taken code paths, found by a coverage run of the full suite.

Each test here drives a branch that no other test executed -- a cancellation
while contended, a misuse or refusal path, a hand-off refused from another
thread, a race settled during a checkpoint, a diagnostics path -- and asserts
what the contract (DESIGN.md, docs/) says must happen there, not just that the
line runs. One section per module.

Races "during a checkpoint" are set up deterministically: spending the fast
path's budget (``FAST.budget = 0``) makes the next operation that could complete
at once yield first, and a task started just before runs in that yield.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import pytest
from _guards import in_thread, race_in_checkpoint

import asyncgo._group as group_mod
import asyncgo.sync._rwmutex as rw_mod
import asyncgo.sync._semaphore as sem_mod
import asyncgo.sync._waitgroup as wg_mod
from asyncgo import (
    Canceled,
    Chan,
    DeadlineExceeded,
    Group,
    JobCancelled,
    JobHandle,
    WorkerPool,
    WouldBlock,
    background,
    debug,
    pipeline,
    recv,
    select,
    stages,
    with_cancel,
    with_timeout,
)
from asyncgo._backend import FAST
from asyncgo.sync import Cond, Mutex, RWMutex, Semaphore, WaitGroup, once_value

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]


async def in_scope(
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``fn(*args)`` in a cancel scope handed to the starter."""
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        await fn(*args)
        await anyio.lowlevel.checkpoint()  # meets a cancellation deferred by a grant


def spend_budget() -> None:
    """Make the next operation that could complete at once checkpoint first."""
    FAST.budget = 0


# -- sync.Semaphore: the contended path of ``async with sem`` ---------------------------


async def test_semaphore_cancelled_contended_async_with_takes_nothing() -> None:
    """A cancelled ``async with sem`` that was parked holds no token, leaves the
    queue, and the waiter behind it is served when the token comes back."""
    sem = Semaphore(1)
    await sem.acquire()
    entered: list[str] = []

    async def enter(tag: str) -> None:
        async with sem:
            entered.append(tag)

    async with anyio.create_task_group() as tg:
        scope_a = await tg.start(in_scope, enter, "a")
        tg.start_soon(enter, "b")
        await anyio.wait_all_tasks_blocked()
        assert len(sem._q.q) == 2
        scope_a.cancel()
        await anyio.wait_all_tasks_blocked()
        assert scope_a.cancelled_caught
        assert entered == []
        assert len(sem._q.q) == 1  # only b is left
        assert not sem.try_acquire()  # a took no token: still only ours is held
        sem.release()
    assert entered == ["b"]
    assert not sem._q.q
    assert sem.try_acquire()  # b gave its token back
    sem.release()


async def test_semaphore_contended_async_with_granted_then_cancelled_keeps_the_grant() -> None:
    """Handed the token and cancelled in the same step: the grant stands (the block
    runs and releases it), the cancellation comes at the next checkpoint, and the
    waiter behind it is still served."""
    sem = Semaphore(1)
    await sem.acquire()
    entered: list[str] = []

    async def enter(tag: str) -> None:
        async with sem:
            entered.append(tag)

    async with anyio.create_task_group() as tg:
        scope_a = await tg.start(in_scope, enter, "a")
        tg.start_soon(enter, "b")
        await anyio.wait_all_tasks_blocked()
        sem.release()  # hands the token to a ...
        scope_a.cancel()  # ... which is cancelled before it runs
    assert entered == ["a", "b"]
    assert scope_a.cancelled_caught
    assert not sem._q.q
    assert sem.try_acquire()
    sem.release()


async def test_semaphore_contended_async_with_shows_in_dump() -> None:
    with debug.enabled():
        sem = Semaphore(1)
        await sem.acquire()

        async def enter() -> None:
            async with sem:
                pass

        async with anyio.create_task_group() as tg:
            scope = await tg.start(in_scope, enter)
            await anyio.wait_all_tasks_blocked()
            [t] = [t for t in debug.tasks() if t.state == "parked"]
            assert t.op == "semaphore acquire"
            assert [p.kind for p in t.blocked_on] == ["Semaphore"]
            assert t.parked_for is not None
            assert "semaphore acquire" in debug.dump()
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            # Unparked on cancellation: nobody is shown waiting any more.
            assert [t for t in debug.tasks() if t.state == "parked"] == []
        sem.release()
        assert not sem._q.q


async def test_semaphore_async_with_exit_after_an_extra_release_raises() -> None:
    sem = Semaphore(2)
    with pytest.raises(ValueError, match="released more than held"):
        async with sem:
            sem.release()  # the block's token, given back early: the exit has none
    assert sem.try_acquire(2)  # nothing is counted twice
    sem.release(2)


@pytest.mark.parametrize("taken", [False, True])
async def test_semaphore_async_with_rechecks_after_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch, taken: bool
) -> None:
    """``async with sem`` on a free semaphore that must checkpoint first: if another
    task took the token meanwhile, it waits for it instead of over-counting."""
    sem = Semaphore(1)
    order: list[str] = []

    def grab() -> None:
        if taken:
            assert sem.try_acquire()
            order.append("grabbed")

    async def releaser() -> None:
        await anyio.wait_all_tasks_blocked()
        order.append("released")
        sem.release()

    async with anyio.create_task_group() as tg:
        if taken:
            tg.start_soon(releaser)
        race_in_checkpoint(monkeypatch, sem_mod, grab)
        async with sem:
            assert not sem.try_acquire()  # exactly one token held: ours
            order.append("in")
    assert order == (["grabbed", "released", "in"] if taken else ["in"])
    assert not sem._q.q
    assert sem.try_acquire()
    sem.release()


async def test_semaphore_acquire_with_ctx_cancelled_during_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """acquire(n, ctx) on a free semaphore checkpoints first (budget spent); the ctx,
    cancelled during that checkpoint, wins: Canceled and no token taken."""
    sem = Semaphore(1)
    ctx, cancel = with_cancel(background())
    race_in_checkpoint(monkeypatch, sem_mod, cancel)
    with pytest.raises(Canceled):
        await sem.acquire(1, ctx)
    assert not sem._q.q
    assert sem.try_acquire()  # the token was not taken
    sem.release()


# -- sync.WaitGroup, RWMutex, Cond, Once ----------------------------------------------


@pytest.mark.parametrize("added", [False, True])
async def test_waitgroup_wait_rechecks_after_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch, added: bool
) -> None:
    """wait() on a zero counter that must checkpoint first: if a task add()ed during
    that checkpoint, it waits for the matching done() instead of returning."""
    wg = WaitGroup()
    order: list[str] = []

    def add() -> None:
        if added:
            wg.add(1)
            order.append("added")

    async def finisher() -> None:
        await anyio.wait_all_tasks_blocked()
        order.append("done")
        wg.done()

    async with anyio.create_task_group() as tg:
        if added:
            tg.start_soon(finisher)
        race_in_checkpoint(monkeypatch, wg_mod, add)
        await wg.wait()
        order.append("waited")
    assert order == (["added", "done", "waited"] if added else ["waited"])


@pytest.mark.parametrize("contended", [False, True])
async def test_rwmutex_lock_rechecks_after_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch, contended: bool
) -> None:
    """lock() on a free RWMutex that must checkpoint first: a reader that came in
    during the checkpoint keeps it out until runlock()."""
    rw = RWMutex()
    order: list[str] = []

    def rlock() -> None:
        if contended:
            assert rw.try_rlock()
            order.append("rlocked")

    async def reader_leaves() -> None:
        await anyio.wait_all_tasks_blocked()
        order.append("runlock")
        rw.runlock()

    async with anyio.create_task_group() as tg:
        if contended:
            tg.start_soon(reader_leaves)
        race_in_checkpoint(monkeypatch, rw_mod, rlock)
        await rw.lock()
        order.append("locked")
        assert not rw.try_rlock()
        rw.unlock()
    assert order == (["rlocked", "runlock", "locked"] if contended else ["locked"])
    assert rw.try_lock()
    rw.unlock()


async def test_rwmutex_rlock_rechecks_after_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rlock() on a free RWMutex that must checkpoint first: a writer that came in
    during the checkpoint keeps it out until unlock()."""
    rw = RWMutex()
    order: list[str] = []

    def lock() -> None:
        assert rw.try_lock()
        order.append("locked")

    async def writer_leaves() -> None:
        await anyio.wait_all_tasks_blocked()
        order.append("unlock")
        rw.unlock()

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer_leaves)
        race_in_checkpoint(monkeypatch, rw_mod, lock)
        await rw.rlock()
        order.append("rlocked")
        assert not rw.try_lock()
        rw.runlock()
    assert order == ["locked", "unlock", "rlocked"]


async def test_cond_wait_for_is_a_cancel_point_even_when_the_predicate_holds() -> None:
    """Cancelled before wait_for(): it raises at once, never evaluates the predicate,
    and leaves cond.L held (as it was)."""
    mu = Mutex()
    cond = Cond(mu)
    calls: list[int] = []

    def pred() -> bool:
        calls.append(1)
        return True

    await mu.lock()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await cond.wait_for(pred)
        pytest.fail("wait_for() returned in a cancelled scope")
    assert scope.cancelled_caught
    assert calls == []
    assert mu.locked()
    assert await cond.wait_for(pred) is True  # (and works once not cancelled)
    mu.unlock()


async def test_once_value_later_calls_are_cancel_points() -> None:
    runs: list[int] = []

    async def compute() -> int:
        runs.append(1)
        return 42

    get = once_value(compute)
    assert await get() == 42
    with anyio.CancelScope() as scope:
        scope.cancel()
        await get()
        pytest.fail("a once_value call completed in a cancelled scope")
    assert scope.cancelled_caught
    assert await get() == 42
    assert runs == [1]


# -- Chan: hand-offs refused from another thread ----------------------------------------


async def test_send_nowait_from_another_thread_to_a_queued_receiver_is_refused() -> None:
    """A receiver parked in the queue (a select, not the single-receiver slot): a
    send_nowait from another thread raises and changes nothing; the receiver is
    still there for a send from its own loop."""
    ch = Chan[int]()
    got: list[Any] = []

    async def selector() -> None:
        got.append(await select(recv(ch)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(selector)
        await anyio.wait_all_tasks_blocked()
        assert ch._rw is None and ch._recvq  # the select waits in the queue
        err = in_thread(lambda: ch.send_nowait(1))
        assert isinstance(err, RuntimeError), repr(err)
        assert "another thread" in str(err)
        assert got == []
        assert len(ch._recvq) == 1  # put back
        ch.send_nowait(2)
    assert [(r.index, r.value, r.ok) for r in got] == [(0, 2, True)]


@pytest.mark.parametrize("dead_first", [False, True])
async def test_recv_nowait_from_another_thread_refuses_to_wake_a_parked_sender(
    dead_first: bool,
) -> None:
    """A full buffer with a parked sender: recv_nowait from another thread would wake
    it, so it raises and takes nothing (the buffer and the sender stay as they are),
    also when cancelled senders sit ahead of the live one."""
    ch = Chan[int](1)
    ch.send_nowait(0)
    sent: list[int] = []

    async def sender(v: int) -> None:
        await ch.send(v)
        sent.append(v)

    async with anyio.create_task_group() as tg:
        scopes = []
        if dead_first:
            for v in (10, 11):
                scopes.append(await tg.start(in_scope, sender, v))
        tg.start_soon(sender, 1)
        await anyio.wait_all_tasks_blocked()
        if dead_first:
            scopes[1].cancel()  # (from the middle of the queue: stays, dead)
            await anyio.wait_all_tasks_blocked()
            scopes[0].cancel()  # (from its head: leaves, the dead one is now first)
            await anyio.wait_all_tasks_blocked()
            assert ch._sendq[0][0].done()
        err = in_thread(ch.recv_nowait)
        assert isinstance(err, RuntimeError), repr(err)
        assert "another thread" in str(err)
        assert len(ch) == 1 and sent == []
        assert ch.recv_nowait() == 0  # from this loop: fine, and the sender moves in
        await anyio.wait_all_tasks_blocked()
    assert sent == [1]
    assert ch.recv_nowait() == 1


async def test_recv_nowait_from_another_thread_with_only_dead_senders_takes_the_item() -> None:
    """Nothing to wake (every parked sender was cancelled): taking from the buffer
    from another thread is a plain non-blocking receive."""
    ch = Chan[int](1)
    ch.send_nowait(0)

    async def sender(v: int) -> None:
        await ch.send(v)

    async with anyio.create_task_group() as tg:
        scopes = [await tg.start(in_scope, sender, v) for v in (10, 11, 12)]
        await anyio.wait_all_tasks_blocked()
        for i in (1, 2, 0):  # middle (stays, dead), tail, head
            scopes[i].cancel()
            await anyio.wait_all_tasks_blocked()
        assert ch._sendq and all(e[0].done() for e in ch._sendq)
        got: list[int] = []
        err = in_thread(lambda: got.append(ch.recv_nowait()))
        assert err is None, repr(err)
        assert got == [0]
        assert len(ch) == 0 and not ch._sendq


# -- Group: go() from outside while the group leaves its block ---------------------------


async def test_group_go_from_outside_refused_when_the_group_exits_during_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task outside the group calls go() as the owner leaves the block: go()'s
    checkpoint lets the owner finish, and go() then refuses (the block has exited)
    instead of starting a task nobody waits for."""
    started: list[int] = []
    leave, left = anyio.Event(), anyio.Event()

    async def job() -> None:
        started.append(1)

    async def owner(task_status: anyio.abc.TaskStatus[Group]) -> None:
        async with Group() as g:
            task_status.started(g)
            await leave.wait()
        left.set()

    async def exit_meanwhile() -> None:
        leave.set()
        await left.wait()

    async with anyio.create_task_group() as tg:
        g = await tg.start(owner)
        race_in_checkpoint(monkeypatch, group_mod, exit_meanwhile)
        with pytest.raises(RuntimeError, match="has exited"):
            await g.go(job)
    assert started == []


async def test_group_go_from_outside_refused_when_handed_a_slot_after_the_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """go() from outside waits for a slot (limit=1); the running task ends, hands it
    the slot, and the owner leaves the block before go() resumes: go() gives the slot
    back and refuses rather than start a task after the block ended."""
    started: list[str] = []
    finish, left = anyio.Event(), anyio.Event()
    real_wait_slot = Group._wait_slot

    async def wait_slot_then_lose_the_race(self: Group) -> None:
        await real_wait_slot(self)
        await left.wait()  # the owner's exit completes first

    monkeypatch.setattr(Group, "_wait_slot", wait_slot_then_lose_the_race)

    async def first() -> None:
        started.append("first")
        await finish.wait()

    async def late() -> None:
        started.append("late")

    async def owner(task_status: anyio.abc.TaskStatus[Group]) -> None:
        async with Group(limit=1) as g:
            await g.go(first)
            task_status.started(g)
            await anyio.wait_all_tasks_blocked()  # the outsider waits for a slot now
            finish.set()
        left.set()

    async with anyio.create_task_group() as tg:
        g = await tg.start(owner)
        with pytest.raises(RuntimeError, match="has exited"):
            await g.go(late)
    assert started == ["first"]
    assert g._running == 0  # the slot handed over was given back


async def test_group_slot_wait_shows_in_dump() -> None:
    started: list[str] = []
    finish = anyio.Event()

    async def first() -> None:
        started.append("first")
        await finish.wait()

    async def second() -> None:
        started.append("second")

    with debug.enabled():
        async with Group(limit=1) as g:
            await g.go(first)
            async with anyio.create_task_group() as tg:
                tg.start_soon(g.go, second)
                await anyio.wait_all_tasks_blocked()
                [t] = [t for t in debug.tasks() if t.state == "parked"]
                assert t.op == "group slot"
                assert [p.kind for p in t.blocked_on] == ["Group"]
                assert "group slot" in debug.dump()
                finish.set()
        assert [t for t in debug.tasks() if t.state == "parked"] == []
    assert started == ["first", "second"]


# -- WorkerPool ---------------------------------------------------------------------------


async def test_pool_cancel_twice_while_running_then_handle_raises_job_cancelled() -> None:
    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(anyio.sleep_forever)
        await anyio.wait_all_tasks_blocked()
        assert h.running()
        assert h.cancel() is True
        assert h.cancel() is True  # idempotent while the job unwinds
        with pytest.raises(WouldBlock):
            h.exception()  # not finished until it has unwound
        with pytest.raises(JobCancelled):
            await h
        assert h.cancelled()
        assert isinstance(h.exception(), JobCancelled)
        assert h.cancel() is True
        assert await (await pool.submit(anyio.sleep, 0)) is None  # the pool still serves
    s = pool.stats()
    assert (s.cancelled, s.failed, s.done) == (1, 0, 1)


async def test_pool_job_raising_while_cancelled_counts_as_cancelled() -> None:
    """A job that raises an error while it is being cancelled (its cleanup failed)
    is cancelled, not failed: JobCancelled, with that error as its __context__."""
    cancelled_exc = anyio.get_cancelled_exc_class()

    async def job() -> None:
        try:
            await anyio.sleep_forever()
        except cancelled_exc:
            raise OSError("cleanup failed") from None

    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(job)
        await anyio.wait_all_tasks_blocked()
        h.cancel()
        with pytest.raises(JobCancelled) as info:
            await h
        assert isinstance(info.value.__context__, OSError)
        assert await (await pool.submit(anyio.sleep, 0)) is None  # the pool still serves
    s = pool.stats()
    assert (s.cancelled, s.failed, s.done) == (1, 0, 1)


async def test_pool_cancelled_wait_leaves_the_job_and_other_waiters_alone() -> None:
    go_on = anyio.Event()
    got: list[int] = []

    async def job() -> int:
        await go_on.wait()
        return 7

    async def waiter(h: JobHandle[int]) -> None:
        got.append(await h.wait())

    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(job)
        async with anyio.create_task_group() as tg:
            scope = await tg.start(in_scope, waiter, h)
            tg.start_soon(waiter, h)
            await anyio.wait_all_tasks_blocked()
            assert len(h._waiters or ()) == 2
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert scope.cancelled_caught
            assert len(h._waiters or ()) == 1  # the cancelled waiter left
            assert not h.done()
            go_on.set()
        assert got == [7]
        assert h.result() == 7


async def test_pool_misuse_raises() -> None:
    with pytest.raises(ValueError, match="negative idle_timeout"):
        WorkerPool(min_workers=0, max_workers=2, idle_timeout=-1)
    pool = WorkerPool(workers=1)
    with pytest.raises(RuntimeError, match="outside its async with block"):
        await pool.shutdown()
    async with pool:
        with pytest.raises(RuntimeError, match="already entered"):
            async with pool:
                pass  # pragma: no cover
        assert await (await pool.submit(anyio.sleep, 0)) is None  # unaffected


async def test_pool_submit_of_a_coroutine_is_refused_and_closes_it() -> None:
    async def fetch() -> int:
        return 1

    async with WorkerPool(workers=1) as pool:
        coro = fetch()
        with pytest.raises(TypeError, match="is not callable"):
            await pool.submit(coro)  # type: ignore[arg-type]
        assert coro.cr_frame is None  # closed: no "never awaited" warning on top
        assert pool.stats().submitted == 0


async def test_pool_unordered_map_raises_a_failed_job_as_itself_and_stops() -> None:
    class Boom(Exception):
        pass

    async def fn(x: int) -> int:
        if x == 2:
            raise Boom(x)
        return x

    async with WorkerPool(workers=2) as pool:
        results = pool.map(fn, [2], ordered=False)
        with pytest.raises(Boom):
            await results.__anext__()
        with pytest.raises(StopAsyncIteration):
            await results.__anext__()  # stopped


async def test_pool_try_submit_without_room_starts_a_worker_for_next_time() -> None:
    """A dynamic pool with no queue (queue_size=0) and no idle worker: try_submit has
    no room now (None) but starts a worker, so that one is idle for the next call."""
    async with WorkerPool(min_workers=0, max_workers=1, queue_size=0) as pool:
        assert pool.stats().workers == 0
        assert pool.try_submit(anyio.sleep, 0) is None
        assert pool.stats().submitted == 0
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 1
        h = pool.try_submit(anyio.sleep, 0)
        assert h is not None
        assert await h is None


# -- pipeline and stages ------------------------------------------------------------------


async def numbers(n: int, seen: list[int] | None = None) -> AsyncIterator[int]:
    for i in range(n):
        if seen is not None:
            seen.append(i)
        yield i


async def test_flat_map_called_directly_flattens_async_iterables_and_closes_them() -> None:
    """A built-in stage is a plain stage too: flat_map(fn)(items) flattens async
    iterables, and closes the one it was reading when its reader stops early."""
    closed: list[int] = []

    async def twice(x: int) -> AsyncIterator[int]:
        try:
            yield x
            yield 10 * x
        finally:
            closed.append(x)

    out = stages.flat_map(twice)(numbers(3))
    assert [x async for x in out] == [0, 0, 1, 10, 2, 20]
    assert closed == [0, 1, 2]

    closed.clear()
    src = numbers(3)
    out = stages.flat_map(twice)(src)
    assert await anext(out) == 0
    assert await anext(out) == 0
    assert await anext(out) == 1
    await out.aclose()  # type: ignore[attr-defined]
    assert closed == [0, 1]  # the inner one it was reading is closed too
    await src.aclose()  # (the caller owns the iterator it handed in)


async def test_flat_map_with_async_iterables_in_a_pipeline() -> None:
    async def twice(x: int) -> AsyncIterator[int]:
        yield x
        yield 10 * x

    p = pipeline(numbers(3)) | stages.flat_map(twice)
    assert await p.collect() == [0, 0, 1, 10, 2, 20]


async def test_take_zero_called_directly_reads_nothing() -> None:
    seen: list[int] = []
    out = stages.take(0)(numbers(5, seen))
    assert [x async for x in out] == []
    assert seen == []  # the input was never read


async def test_stage_argument_misuse_raises() -> None:
    with pytest.raises(TypeError, match="must be an int"):
        stages.take("3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an int"):
        stages.buffer(2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sinks are stages or channels"):
        stages.tee(42)  # type: ignore[arg-type]


async def test_pipeline_stage_raising_its_own_deadline_is_an_error_not_ctx_end() -> None:
    """A stage whose own inner timeout fires raises DeadlineExceeded: that is the
    pipeline's error (raised as itself), not the pipeline's ctx ending."""
    mine = DeadlineExceeded()

    async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 2:
                raise mine
            yield x

    ctx, cancel = with_cancel(background())
    with pytest.raises(DeadlineExceeded) as info:
        await (pipeline(numbers(5)) | stage).collect(ctx)
    assert info.value is mine
    assert ctx.err() is None
    cancel()


# -- Context ------------------------------------------------------------------------------


@pytest.mark.parametrize("deadline", [True, False])
async def test_ctx_scope_cancel_scope_face(deadline: bool) -> None:
    """What ``with ctx.scope() as s`` binds acts as a cancel scope once entered
    (shield, cancel with a reason) and says so when used before. Its own cancel()
    ends it quietly, with or without a deadline (without one, its exit raised
    TypeError comparing the clock with None)."""
    if deadline:
        ctx, cancel = with_timeout(background(), 3600)  # never reached
    else:
        ctx, cancel = with_cancel(background())
    s = ctx.scope()
    for use in (lambda: s.cancel(), lambda: s.shield, lambda: setattr(s, "shield", True)):
        with pytest.raises(RuntimeError, match="once entered"):
            use()
    with s:
        assert s.shield is False
        s.shield = True
        assert s.shield is True
        s.shield = False
        s.cancel("enough")
        await anyio.lowlevel.checkpoint()
        pytest.fail("not cancelled")  # pragma: no cover
    assert s.cancelled_caught
    assert ctx.err() is None  # the scope's own cancel does not end the ctx
    cancel()


# -- debug --------------------------------------------------------------------------------


async def test_dump_of_an_empty_snapshot() -> None:
    assert debug.dump([]) == "no tasks\n"


async def test_grouped_dump_names_eight_tasks_then_counts_the_rest() -> None:
    with debug.enabled():
        ch = Chan[int]()
        async with anyio.create_task_group() as tg:
            for _ in range(11):
                tg.start_soon(ch.recv)
            await anyio.wait_all_tasks_blocked()
            text = debug.dump()
            assert "11 tasks [chan recv" in text
            assert "... (3 more)" in text
            tg.cancel_scope.cancel()


async def test_parks_made_before_diagnostics_were_on_are_found() -> None:
    """Tasks that parked while diagnostics were off (a WaitGroup wait, a Semaphore
    acquire with a ctx, a select on nothing) are found from their await stacks once
    diagnostics are on, and shown blocked on what they wait for."""
    wg = WaitGroup()
    wg.add(1)
    sem = Semaphore(1)
    await sem.acquire()
    ctx, cancel = with_cancel(background())
    assert not debug.is_enabled()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wg.wait)
        tg.start_soon(sem.acquire, 1, ctx)
        tg.start_soon(select, recv(None))
        await anyio.wait_all_tasks_blocked()
        with debug.enabled():
            parked = {t.op: t for t in debug.tasks() if t.state == "parked"}
        assert set(parked) == {"waitgroup wait", "semaphore acquire", "select"}
        assert [p.kind for p in parked["waitgroup wait"].blocked_on] == ["WaitGroup"]
        assert "Semaphore" in [p.kind for p in parked["semaphore acquire"].blocked_on]
        assert parked["select"].blocked_on == ()
        assert all(t.parked_for is None for t in parked.values())  # found, not recorded
        tg.cancel_scope.cancel()
    cancel()
    sem.release()
    assert not sem._q.q

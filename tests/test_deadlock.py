"""asyncgo.debug.detect_deadlocks: Go's "all goroutines are asleep", without false positives.

Every deadlock must be reported within a generous bound (``fail_after(10)`` around
the scope: a deadline *around* the scope does not hide the deadlock), naming the
primitives; every look-alike (a timer, a socket, a thread, a non-asyncgo
primitive, a deadline inside the scope) must run to completion untouched.
"""

from __future__ import annotations

import math
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

import anyio
import pytest
from _guards import wall_guard

from asyncgo import (
    Chan,
    ChanClosed,
    Context,
    DeadlineExceeded,
    Deadlock,
    WouldBlock,
    background,
    debug,
    rate,
    recv,
    select,
    with_cancel,
    with_timeout,
)
from asyncgo import time as gotime
from asyncgo.sync import Mutex, RWMutex, WaitGroup

pytestmark = pytest.mark.anyio

#: Tests of what happens outside any detection scope opt out of the asyncgo pytest
#: plugin's, which wraps every test in one when the plugin is loaded.
NO_AMBIENT_SCOPE = (
    pytest.mark.asyncgo_detect_deadlocks(False)
    if "asyncgo.testing.pytest_plugin" in sys.modules
    else pytest.mark.anyio
)

BOUND = 10  # seconds: generous, never reached unless detection is broken


async def send_one(ch: Chan[int], v: int) -> None:
    await ch.send(v)


async def test_two_senders_nobody_reads() -> None:
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                ch = Chan[int]()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send_one, ch, 1, name="sender-1")
                    tg.start_soon(send_one, ch, 2, name="sender-2")
    msg = str(ei.value)
    assert msg.startswith("all tasks are asleep - deadlock!")
    assert '"sender-1" [chan send, ' in msg and '"sender-2" [chan send, ' in msg
    assert "(owner of the detect_deadlocks() block) waits for its child tasks" in msg
    assert "Chan <Chan cap=0 " in msg and "> made at " in msg and "ch = Chan[int]()" in msg
    assert "test_deadlock.send_one(...)" in msg  # the stacks follow
    # the jammed sends were cancelled and left nothing behind
    with pytest.raises(WouldBlock):
        ch.recv_nowait()


async def test_owner_itself_parked() -> None:
    with anyio.fail_after(BOUND):
        with pytest.raises(
            Deadlock, match=r"\(owner of the detect_deadlocks\(\) block\) \[chan recv"
        ):
            async with debug.detect_deadlocks():
                await Chan[int]().recv()


async def test_owner_parked_gets_the_deadlock_where_it_waits() -> None:
    """The block's own task parked on a primitive gets Deadlock raised there: the body can
    catch it (``pytest.raises`` around the await), go on, and the block ends quietly."""
    got: list[int] = []
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int]()
            with pytest.raises(Deadlock, match=r"\(owner of the detect_deadlocks\(\) block\)"):
                await ch.recv()
            buffered = Chan[int](1)  # the body goes on
            await buffered.send(1)
            got.append(await buffered.recv())
            # A second deadlock in the same block: raised afresh, with its own report.
            mu = Mutex()
            await mu.lock()
            with pytest.raises(Deadlock, match=r"\[mutex lock, ") as second:
                await mu.lock()
            assert "[chan recv, " not in str(second.value)
        with pytest.raises(WouldBlock):
            ch.recv_nowait()  # the failed recv took nothing, and left nothing behind
    assert got == [1]


async def test_owner_deadlock_not_caught_leaves_the_block_as_itself() -> None:
    raised: list[Deadlock] = []
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                try:
                    await Chan[int]().send(1)
                except Deadlock as e:
                    raised.append(e)
                    raise
    assert ei.value is raised[0]
    assert "[chan send, " in str(ei.value)


async def test_lock_order_inversion() -> None:
    async def transfer(first: Mutex, second: Mutex, wg: WaitGroup) -> None:
        async with first:
            wg.done()
            await wg.wait()  # both hold their first lock now
            async with second:
                pass

    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                mu_a, mu_b = Mutex(), Mutex()
                wg = WaitGroup()
                wg.add(2)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(transfer, mu_a, mu_b, wg, name="a-then-b")
                    tg.start_soon(transfer, mu_b, mu_a, wg, name="b-then-a")
    msg = str(ei.value)
    assert '"a-then-b" [mutex lock, ' in msg and '"b-then-a" [mutex lock, ' in msg
    assert msg.count("mu_a, mu_b = Mutex(), Mutex()") >= 2  # both mutexes named by their line
    assert not mu_a.locked() and not mu_b.locked()  # cancelled holders released them


async def test_waitgroup_never_done() -> None:
    async def worker(wg: WaitGroup, forget: bool) -> None:
        await anyio.sleep(0)
        if not forget:
            wg.done()

    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                wg = WaitGroup()
                wg.add(2)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(worker, wg, False)
                    tg.start_soon(worker, wg, True)  # returns without done()
                    await wg.wait()
    msg = str(ei.value)
    assert "[waitgroup wait, " in msg
    assert "WaitGroup <WaitGroup count=1 " in msg and "wg = WaitGroup()" in msg


async def test_select_and_rwmutex() -> None:
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                a, b = Chan[int](), Chan[str]()
                rw = RWMutex()
                await rw.lock()

                async def reader() -> None:
                    await rw.rlock()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(reader, name="reader")
                    await select(recv(a), recv(b))
    msg = str(ei.value)
    assert "[select, " in msg and "a, b = Chan[int](), Chan[str]()" in msg
    assert '"reader" [rwmutex rlock, ' in msg and "rw = RWMutex()" in msg


# -- where Deadlock is raised when the block's task waits for its children --------------


async def test_children_get_the_deadlock_and_the_group_raises_it() -> None:
    """The block's task waits in a Group's exit for children parked on channels: each
    child gets Deadlock where it is parked, and the Group raises the first as itself, so
    ``pytest.raises`` around the Group catches it (as under the pytest plugin); the body
    goes on and the block ends quietly. The failed operations take or send nothing."""
    from asyncgo import Group

    got: list[int] = []
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks() as scope:
            a, b = Chan[int](), Chan[int]()
            with pytest.raises(Deadlock) as ei:
                async with Group() as g:
                    await g.go(a.recv)
                    await g.go(b.send, 1)
            buffered = Chan[int](1)  # the body goes on
            await buffered.send(1)
            got.append(await buffered.recv())
    assert got == [1]
    msg = str(ei.value)
    assert msg.startswith("all tasks are asleep - deadlock!")
    assert "[chan recv, " in msg and "[chan send, " in msg
    assert "(owner of the detect_deadlocks() block) waits for its child tasks" in msg
    assert scope.report == msg
    assert len(g.errors) == 2 and all(type(e) is Deadlock for e in g.errors)
    with pytest.raises(WouldBlock):
        a.send_nowait(1)  # the failed recv left no waiter behind
    with pytest.raises(WouldBlock):
        b.recv_nowait()  # the failed send left nothing behind


@pytest.mark.parametrize("shape", ["nested groups", "singleflight"])
async def test_deadlock_deep_in_groups_is_raised_as_itself(shape: str) -> None:
    """Tasks parked two groups down, or callers of a shared singleflight call: the
    Deadlock raised where they wait comes out of the outer Group as itself."""
    from asyncgo import Group, singleflight

    a = Chan[int]()

    async def inner() -> None:
        async with Group() as g:
            await g.go(a.recv)
            await g.go(a.recv)

    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            with pytest.raises(Deadlock, match="all tasks are asleep - deadlock!"):
                if shape == "nested groups":
                    async with Group() as g:
                        await g.go(inner)
                        await g.go(inner)
                else:
                    async with singleflight.Group() as sg, Group() as g:
                        for _ in range(3):
                            await g.go(sg.do, "k", a.recv)
    with pytest.raises(WouldBlock):
        a.send_nowait(1)  # no receiver left behind


async def test_a_second_deadlock_among_new_children_is_raised_afresh() -> None:
    from asyncgo import Group

    reports: list[str] = []
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            for make in (Mutex, WaitGroup):
                prim = make()
                if isinstance(prim, Mutex):
                    await prim.lock()
                    wait = prim.lock
                else:
                    prim.add(1)
                    wait = prim.wait
                with pytest.raises(Deadlock) as ei:
                    async with Group() as g:
                        await g.go(wait)
                reports.append(str(ei.value))
                if isinstance(prim, Mutex):
                    prim.unlock()
    assert "[mutex lock, " in reports[0] and "[waitgroup wait, " not in reports[0]
    assert "[waitgroup wait, " in reports[1] and "[mutex lock, " not in reports[1]


async def test_tasks_the_block_does_not_wait_for_are_left_alone() -> None:
    """Only the tasks of the group the block's task is leaving get Deadlock: the idle
    workers of a pool, or the stages of a pipeline, open around that group keep working,
    so the body can go on with them (found by review: they got Deadlock too, and the
    pool then failed the body)."""
    from asyncgo import Group, WorkerPool, pipeline

    async def job() -> int:
        return 41

    async def double(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            yield 2 * x

    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int]()
            src = Chan[int](1)
            async with WorkerPool(workers=2) as pool:
                async with (pipeline(src) | double).stream() as out:
                    with pytest.raises(Deadlock):
                        async with Group() as g:
                            await g.go(ch.recv)
                    assert pool.stats().workers == 2
                    assert await (await pool.submit(job)) == 41
                    await src.send(4)
                    assert await out.__anext__() == 8
                    src.close()


async def test_a_child_catching_its_own_groups_deadlock_keeps_its_pool() -> None:
    """The block's task waits for a child that waits for a group of its own: Deadlock goes
    to that innermost group's tasks, so the child can catch it and go on with the pool it
    opened around it (found by review: the block's task's group was taken, and the
    pool's idle workers got Deadlock too)."""
    from asyncgo import Group, WorkerPool

    async def job() -> int:
        return 41

    got: list[object] = []
    ch = Chan[int]()

    async def child() -> None:
        async with WorkerPool(workers=2) as pool:
            with pytest.raises(Deadlock):
                async with Group() as g:
                    await g.go(ch.recv)
            got.append(pool.stats().workers)
            got.append(await (await pool.submit(job)))

    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            async with Group() as g:
                await g.go(child)
    assert got == [2, 41]


@pytest.mark.parametrize("how", ["await", "gather"])
async def test_a_task_awaited_directly_gets_the_deadlock_not_a_pool_around(
    anyio_backend_name: str, how: str
) -> None:
    """The block's task awaits a plain asyncio task (``await t``, ``gather``): that task
    gets Deadlock, not the idle workers of a pool open around (found by review: the
    pool's scope was taken for the group being waited for)."""
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio tasks")
    import asyncio

    from asyncgo import WorkerPool

    async def job() -> int:
        return 41

    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int]()
            async with WorkerPool(workers=2) as pool:
                t = asyncio.create_task(ch.recv())
                with pytest.raises(Deadlock):
                    await (asyncio.gather(t) if how == "gather" else t)
                assert pool.stats().workers == 2
                assert await (await pool.submit(job)) == 41


async def test_a_cancelled_owner_waiting_for_a_shielded_child_is_a_deadlock() -> None:
    """The block's task, cancelled at a Group's exit, waits for a child parked in a
    shielded scope: the cancellation already delivered cannot wake it (found by
    review: on trio the detector counted it as a pending wake-up and hung)."""
    from asyncgo import Group

    ch = Chan[int]()

    async def shielded() -> None:
        with anyio.CancelScope(shield=True):
            await ch.recv()

    async with HangGuard(ch):
        with pytest.raises(Deadlock, match=r"\[chan recv, "):
            async with debug.detect_deadlocks():
                with anyio.CancelScope() as outer:
                    async with Group() as g:
                        await g.go(shielded)
                        await anyio.sleep(0)
                        outer.cancel()
                        await anyio.sleep(0)


async def test_an_error_after_a_handled_deadlock_comes_out_as_itself() -> None:
    """A later, unrelated error is not turned into the Deadlock the body handled; one
    a handler made of the Deadlock (chained to it) is."""
    from asyncgo import Group

    with anyio.fail_after(BOUND):
        with pytest.raises(ValueError, match="the real failure"):
            async with debug.detect_deadlocks():
                with pytest.raises(Deadlock):
                    async with Group() as g:
                        await g.go(Chan[int]().recv)
                raise ValueError("the real failure")
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                try:
                    async with Group() as g:
                        await g.go(Chan[int]().recv)
                except Deadlock as e:
                    raise ValueError("converted") from e
    assert isinstance(ei.value.__cause__, ValueError)


@pytest.mark.parametrize("who", ["the block's task", "a group's children"])
async def test_code_that_keeps_catching_deadlock_is_cancelled(who: str) -> None:
    """A loop that catches every error and deadlocks again (a supervisor restarting its
    workers) gets Deadlock a bounded number of times, then the body is cancelled and the
    block raises Deadlock (found by review: it spun forever)."""
    from asyncgo import Group

    caught = 0
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock, match="all tasks are asleep"):
            async with debug.detect_deadlocks():
                ch = Chan[int]()
                while True:
                    try:
                        if who == "the block's task":
                            await ch.recv()
                        else:
                            async with Group() as g:
                                await g.go(ch.recv)
                    except Exception:
                        caught += 1
    assert 1 <= caught <= 20


async def test_anyio_task_group_children_get_deadlock_in_an_exception_group() -> None:
    """A native task group wraps its children's Deadlocks: ``except*`` catches them; not
    caught, the block raises one Deadlock with the report (not the group)."""
    caught: list[int] = []
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int]()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send_one, ch, 1)
                    tg.start_soon(send_one, ch, 2)
            except* Deadlock as eg:
                caught.append(len(eg.exceptions))
    assert caught in ([1], [2])  # the first to raise cancels the other (or both raise)
    with pytest.raises(WouldBlock):
        ch.recv_nowait()
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send_one, ch, 1)
    assert type(ei.value) is Deadlock and "[chan send, " in str(ei.value)
    assert ei.value.__suppress_context__  # one report, not the group of its copies


async def test_a_child_that_swallows_deadlock_is_cancelled() -> None:
    """A child that catches Deadlock and parks again cannot end the deadlock: the body is
    then cancelled, and the block raises Deadlock."""
    seen: list[str] = []

    async def stubborn(ch: Chan[int]) -> None:
        while True:
            try:
                await ch.recv()
            except Deadlock:
                seen.append("deadlock")
            except BaseException:
                seen.append("cancelled")
                raise

    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stubborn, Chan[int](), name="stubborn")
    assert seen == ["deadlock", "cancelled"]
    assert '"stubborn" [chan recv, ' in str(ei.value)


@pytest.mark.parametrize("how", ["select()", "nil channels", "nil in a child"])
async def test_select_on_nothing(how: str) -> None:
    """Go: ``select {}`` and a select on nil channels only block forever, so a
    program whose every goroutine does that is deadlocked. Ours must be reported
    too (and shown as a parked select), not sleep until an outer timeout."""
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                if how == "select()":
                    await select()
                elif how == "nil channels":
                    await select(recv(None), recv(None))
                else:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(select, recv(None), name="nil-select")
                        await Chan[int]().recv()
    msg = str(ei.value)
    if how == "nil in a child":
        assert '"nil-select" [select, ' in msg and "[chan recv, " in msg
    else:
        assert "[select, " in msg


async def test_select_on_nothing_is_cancellable_and_leaves_nothing() -> None:
    with anyio.move_on_after(0.01) as scope:
        await select(recv(None))
    assert scope.cancelled_caught
    with anyio.CancelScope() as scope:
        scope.cancel()
        await select()
    assert scope.cancelled_caught


async def test_nested_scopes_innermost_reports() -> None:
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks() as outer:
            with pytest.raises(Deadlock):
                async with debug.detect_deadlocks() as inner:
                    await Chan[int]().recv()
            assert inner.report is not None
            ch = Chan[int](1)
            await ch.send(1)
            assert await ch.recv() == 1
        assert outer.report is None


async def test_one_block_per_scope_object() -> None:
    scope = debug.detect_deadlocks()
    async with scope:
        pass
    with pytest.raises(RuntimeError, match="entered already"):
        async with scope:
            pass


@NO_AMBIENT_SCOPE
async def test_detection_is_repeatable_and_scoped() -> None:
    """After a report, the same task can open another scope; outside a scope nothing watches."""
    for _ in range(2):
        with anyio.fail_after(BOUND):
            with pytest.raises(Deadlock):
                async with debug.detect_deadlocks():
                    await Chan[int]().send(1)
    assert not debug.is_enabled()
    with anyio.move_on_after(0.2) as scope:  # no scope: a real hang, ended by our deadline
        await Chan[int]().recv()
    assert scope.cancelled_caught


# -- look-alikes: not deadlocks ------------------------------------------------------


@pytest.mark.parametrize("timer", ["sleep", "context_deadline", "timer_stopped"])
async def test_a_deadlock_after_the_runs_timers_ended_is_reported(timer: str) -> None:
    """On trio the timer task outlives the timers (parked until the run's next one):
    while none is pending it can wake nothing, and a deadlock is still one."""
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock):
            async with debug.detect_deadlocks():
                if timer == "sleep":
                    await gotime.sleep(0.001)
                elif timer == "context_deadline":
                    ctx, _ = with_timeout(background(), 0.001)
                    await ctx.wait()
                else:
                    gotime.Timer(3600).stop()
                await anyio.lowlevel.checkpoint()
                await Chan[int]().recv()


def _timer_that_wakes_nobody(kind: str) -> object:
    """A timer whose firing moves no task: a no-op callback, or a value left in a
    channel nobody reads. The last one ends the only thing that could wake a task."""
    if kind == "after_func":
        return gotime.after_func(0.05, lambda: None)
    if kind == "timer":
        return gotime.Timer(0.05)  # (its channel gets a value nobody receives)
    return gotime.after(0.05)


TIMERS_THAT_WAKE_NOBODY = pytest.mark.parametrize("kind", ["after_func", "timer", "after"])


@TIMERS_THAT_WAKE_NOBODY
async def test_a_deadlock_that_begins_when_a_timer_fires_is_reported(kind: str) -> None:
    """While the timer is pending it is "not a deadlock" (it could wake a task);
    once it has fired, moving nobody, it is one. Nothing parked or ended at that
    moment, which the watcher waited for before looking again: it hung."""
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock, match=r"\[chan recv, "):
            async with debug.detect_deadlocks():
                keep = _timer_that_wakes_nobody(kind)
                await Chan[int]().recv()
    assert keep is not None


async def _deadline_cancels_a_group_whose_child_is_shielded(deadline: float = 0.05) -> None:
    async def child() -> None:
        with anyio.CancelScope(shield=True):
            await Chan[int]().recv()  # nothing can ever wake it

    with anyio.move_on_after(deadline):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)


# (Before and after the watcher's first back-off, 10 ms: the expiry moves no task.)
DEADLINES = pytest.mark.parametrize("deadline", [0.005, 0.05])


@DEADLINES
async def test_a_deadlock_that_begins_when_a_deadline_expires_is_reported(deadline: float) -> None:
    """The deadline cancels the group, which cannot reach its shielded child: from
    then on the owner waits for a task nothing can wake. An expired (cancelled)
    scope's deadline is no longer a pending wake-up; on trio it counted as one
    forever."""
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock, match=r"\[chan recv, "):
            async with debug.detect_deadlocks():
                await _deadline_cancels_a_group_whose_child_is_shielded(deadline)


async def test_the_watcher_does_not_slow_anyios_wait_all_tasks_blocked(
    anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """anyio's ``wait_all_tasks_blocked`` on asyncio sleeps 0.1 s whenever it sees a
    task runnable. The watcher, kicked at every park, was runnable right after the
    park the test waits for: 0.1 s per call (a test of 400 such steps took 40 s under
    the pytest plugin). It is now woken from loop callbacks once the loop is idle."""
    polls = 0
    if anyio_backend_name == "asyncio":
        import anyio._backends._asyncio as anyio_asyncio

        real = anyio_asyncio.sleep

        async def counting(delay: float, *args: object, **kwargs: object) -> object:
            nonlocal polls
            if delay == 0.1:  # (its poll: a task was not blocked)
                polls += 1
            return await real(delay, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(anyio_asyncio, "sleep", counting)
    ch = Chan[int]()
    got: list[int] = []

    async def take() -> None:
        got.append(await ch.recv())

    async with debug.detect_deadlocks():
        for i in range(300):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take)
                await anyio.wait_all_tasks_blocked()
                ch.send_nowait(i)  # (raises WouldBlock unless the receiver is parked)
    assert got == list(range(300))
    # (Before: 0-288 of the 300 calls slept, most on uvloop. A back-off timer may
    # coincide with a check now and then.)
    assert polls <= 5


@NO_AMBIENT_SCOPE
async def test_a_park_after_the_watcher_ended_leaves_no_poll_behind() -> None:
    """A task parking after the block's watcher ended, but before the block took it
    off the tracer (a fixture's worker going back to its channel), kicked it: on
    asyncio that started a wait for an idle loop nobody would cancel, whose timer,
    left pending as the loop closed, was taken for asyncgo's own timer afterwards
    (by its id, reused for a user's timer: a false Deadlock in a later test)."""
    from asyncgo._backend import _tasks

    ch = Chan[int]()
    seen: list[object] = []

    async def worker() -> None:
        async for _ in ch:
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        block = debug.detect_deadlocks()
        async with block:
            await ch.send(1)  # the worker parks again on its way out of the job
        watcher = block._watcher
        watcher.kick()  # (what such a park does)
        seen.append(watcher.idle)
        await anyio.wait_all_tasks_blocked()
        ch.close()
    assert seen == [None]
    assert len(_tasks.QUIET_TIMERS) == 0


class Looks:
    """How many times the deadlock watchers have looked at the tasks."""

    n = 0


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> Looks:
    counter = Looks()
    look = debug.detect_deadlocks._look

    def counting(self: debug.detect_deadlocks, me: object) -> tuple[str, str | None]:
        counter.n += 1
        return look(self, me)

    monkeypatch.setattr(debug.detect_deadlocks, "_look", counting)
    return counter


async def test_the_watcher_backs_off_while_nothing_moves(
    looks: Looks, anyio_backend_name: str
) -> None:
    """Looking again as time passes (for timers that fire without moving a task) must
    back off, not look every 10 ms: 1.3 s of a lone sleep is about 8 looks (10 ms
    doubling), not 130. On trio there is no back-off timer: one look as the task
    parks, perhaps one as its deadline passes."""
    async with debug.detect_deadlocks():
        await anyio.sleep(1.3)
    if anyio_backend_name == "trio":
        assert 1 <= looks.n <= 2
    else:
        assert 2 <= looks.n <= 20


async def _sleep_with_ctx(seconds: float) -> None:
    ctx, cancel = with_cancel(background())
    try:
        await gotime.sleep(seconds, ctx)
    finally:
        cancel()


SLEEPS = pytest.mark.parametrize(
    "nap",
    [anyio.sleep, gotime.sleep, _sleep_with_ctx],
    ids=["anyio.sleep", "asyncgo.time.sleep", "asyncgo.time.sleep(ctx)"],
)


@SLEEPS
async def test_not_a_deadlock_timer(nap: Callable[[float], Awaitable[None]]) -> None:
    async def late(ch: Chan[int]) -> None:
        await nap(0.2)
        await ch.send(7)

    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int]()
            async with anyio.create_task_group() as tg:
                tg.start_soon(late, ch)
                assert await ch.recv() == 7


async def test_not_a_deadlock_deadline_inside_the_scope() -> None:
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int]()
            with anyio.move_on_after(0.2) as scope:  # Go: select with time.After
                await ch.recv()
            assert scope.cancelled_caught


async def test_not_a_deadlock_socket() -> None:
    raw_a, raw_b = socket.socketpair()
    timer = threading.Timer(0.2, raw_b.send, (b"x",))  # a bare thread writes, nobody awaits it

    async def reader(ch: Chan[bytes]) -> None:
        await anyio.wait_readable(raw_a)
        await ch.send(raw_a.recv(1))

    try:
        with anyio.fail_after(BOUND):
            async with debug.detect_deadlocks():
                ch = Chan[bytes]()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reader, ch)
                    await anyio.wait_all_tasks_blocked()
                    timer.start()
                    assert await ch.recv() == b"x"
    finally:
        timer.join()
        raw_a.close()
        raw_b.close()


async def test_not_a_deadlock_thread() -> None:
    async def offload(ch: Chan[int]) -> None:
        def slow() -> int:
            time.sleep(0.2)
            return 9

        v = await anyio.to_thread.run_sync(slow)
        await ch.send(v)

    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int]()
            async with anyio.create_task_group() as tg:
                tg.start_soon(offload, ch)
                assert await ch.recv() == 9


async def test_not_a_deadlock_other_library_primitive() -> None:
    """A task on an anyio Event is invisible to asyncgo: never call that a deadlock.

    The anyio Event is never set here, so this *is* stuck -- but the detector cannot
    prove it, and must stay silent; the deadline around the scope ends it instead.
    """
    ev = anyio.Event()

    async def gated(ch: Chan[int]) -> None:
        await ev.wait()
        await ch.send(1)

    with anyio.move_on_after(0.3) as scope:
        async with debug.detect_deadlocks() as detector:
            ch = Chan[int]()
            async with anyio.create_task_group() as tg:
                tg.start_soon(gated, ch)
                await ch.recv()
    assert scope.cancelled_caught
    assert detector.report is None


async def test_not_a_deadlock_busy_pingpong() -> None:
    async def echo(ping: Chan[int], pong: Chan[int]) -> None:
        async for v in ping:
            await pong.send(v)
        pong.close()

    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ping, pong = Chan[int](), Chan[int]()
            async with anyio.create_task_group() as tg:
                tg.start_soon(echo, ping, pong)
                for i in range(2000):
                    await ping.send(i)
                    assert await pong.recv() == i
                ping.close()


async def test_not_a_deadlock_callbacks_without_tasks(anyio_backend_name: str) -> None:
    """asyncio only: a timer callback or an I/O callback (a protocol, ``add_reader``) can
    complete a channel operation with no task involved; the detector looks at the loop."""
    if anyio_backend_name != "asyncio":
        pytest.skip("trio has no task-less callbacks")
    import asyncio

    loop = asyncio.get_running_loop()
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int]()
            loop.call_later(0.2, ch.close)
            with pytest.raises(Exception, match="recv on closed channel"):
                await ch.recv()

    raw_a, raw_b = socket.socketpair()
    raw_a.setblocking(False)
    timer = threading.Timer(0.2, raw_b.send, (b"y",))
    try:
        with anyio.fail_after(BOUND):
            async with debug.detect_deadlocks():
                got = Chan[bytes](1)
                loop.add_reader(raw_a.fileno(), lambda: got.send_nowait(raw_a.recv(1)))
                try:
                    timer.start()
                    assert await got.recv() == b"y"
                finally:
                    loop.remove_reader(raw_a.fileno())
    finally:
        timer.join()
        raw_a.close()
        raw_b.close()


# -- contexts ------------------------------------------------------------------------


async def wait_done_or_job(ctx: Context, jobs: Chan[int]) -> None:
    while True:
        r = await select(recv(ctx.done()), recv(jobs))
        if r.index == 0:
            return


async def test_forgotten_cancel_is_reported() -> None:
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                jobs = Chan[int]()
                ctx, cancel = with_cancel(background())
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait_done_or_job, ctx, jobs, name="worker")
                # forgot: cancel()
    msg = str(ei.value)
    assert '"worker" [select, ' in msg
    assert "(via asyncgo._context.Context.done)" in msg
    assert "jobs = Chan[int]()" in msg
    cancel()


async def test_not_a_deadlock_context_deadline() -> None:
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            jobs = Chan[int]()
            with with_timeout(background(), 0.2) as ctx:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait_done_or_job, ctx, jobs)
            assert ctx.err() is not None


# -- tasks parked where the detector's cancellation cannot reach --------------------------


class HangGuard:
    """A hang guard for waits no cancel scope can reach (shielded): if the block is still
    running after BOUND seconds, a plain thread -- invisible to detection -- closes the
    channels from the loop's own thread, so the test fails instead of hanging."""

    def __init__(self, *chans: Chan[int]) -> None:
        self.chans = chans
        self.stop = threading.Event()
        self.fired = False

    def _close_all(self) -> None:
        self.fired = True
        for ch in self.chans:
            if not ch.closed:
                ch.close()

    async def __aenter__(self) -> Self:
        token = anyio.lowlevel.current_token()

        def watch() -> None:
            if not self.stop.wait(BOUND):
                anyio.from_thread.run_sync(self._close_all, token=token)

        self.thread = threading.Thread(target=watch, daemon=True)
        self.thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        assert not self.fired, "the shielded wait was never released: detection hung"


async def test_child_parked_in_a_shielded_scope_gets_deadlock() -> None:
    ch = Chan[int]()
    seen: list[type[BaseException]] = []

    async def shielded() -> None:
        with anyio.CancelScope(shield=True):
            try:
                await ch.recv()
            except BaseException as exc:
                seen.append(type(exc))
                raise

    async with HangGuard(ch):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(shielded, name="shielded")
    assert seen == [Deadlock]  # raised where it was parked, not a cancellation
    assert str(ei.value).startswith("all tasks are asleep - deadlock!")
    assert '"shielded" [chan recv, ' in str(ei.value)
    with pytest.raises(WouldBlock):  # the failed receive left no waiter behind
        ch.send_nowait(1)


async def test_owner_parked_in_a_shielded_scope_gets_deadlock() -> None:
    ch = Chan[int]()
    async with HangGuard(ch):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                with anyio.CancelScope(shield=True):
                    await ch.send(1)
    assert "(owner of the detect_deadlocks() block) [chan send, " in str(ei.value)
    with pytest.raises(WouldBlock):  # the failed send left nothing behind
        ch.recv_nowait()


async def test_shielded_wait_under_a_deadline_inside_the_block_is_a_deadlock() -> None:
    """The deadline inside the block cannot reach into the shield: it wakes nobody."""
    gate = Chan[int]()
    mu = Mutex()
    seen: list[str] = []

    async def holder() -> None:
        async with mu:
            with anyio.CancelScope(shield=True):
                await gate.recv()

    async def waiter() -> None:
        with anyio.fail_after(BOUND * 3):
            with anyio.CancelScope(shield=True):
                try:
                    await select(recv(gate), recv(background().done()))
                except Deadlock:
                    seen.append("select")
                    raise

    async with HangGuard(gate):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(holder, name="holder")
                    tg.start_soon(waiter, name="waiter")
                    await anyio.wait_all_tasks_blocked()
                    await mu.lock()  # the owner waits for the mutex: not shielded
    msg = str(ei.value)
    assert '"holder" [chan recv, ' in msg and '"waiter" [select, ' in msg
    assert "[mutex lock, " in msg
    assert seen == ["select"]
    assert not mu.locked()  # the holder's block released it on the way out


async def test_shielded_deadlock_fails_only_tasks_inside_the_block() -> None:
    """A task outside the block, parked on a channel the code after the block feeds, is
    reported (it is asleep too) but not failed: only the block's own tasks get Deadlock
    (found by review: the outside task got Deadlock as well)."""
    fed_later = Chan[int]()
    stuck = Chan[int]()
    entered = anyio.Event()
    outside_got: list[object] = []

    async def outside() -> None:
        await entered.wait()
        try:
            outside_got.append(await fed_later.recv())
        except Deadlock as exc:
            outside_got.append(exc)

    async with HangGuard(stuck, fed_later):
        async with anyio.create_task_group() as tg:
            tg.start_soon(outside)
            with pytest.raises(Deadlock) as ei:
                async with debug.detect_deadlocks():
                    entered.set()
                    with anyio.CancelScope(shield=True):
                        await stuck.recv()
            assert "[chan recv, " in str(ei.value)
            await fed_later.send(1)
    assert outside_got == [1]


@pytest.mark.parametrize("kind", ["error", "timeout", "ctx-deadline", "base"])
async def test_the_bodys_own_exception_comes_out_as_itself(kind: str) -> None:
    """Not wrapped in an ExceptionGroup by the watcher's task group."""

    class Fatal(BaseException):
        pass

    exc: BaseException = {"error": ValueError("x"), "base": Fatal("y")}.get(kind, ValueError())
    expected: type[BaseException] = {
        "error": ValueError,
        "timeout": TimeoutError,
        "ctx-deadline": DeadlineExceeded,
        "base": Fatal,
    }[kind]
    with pytest.raises(expected) as info:
        async with debug.detect_deadlocks():
            if kind == "timeout":
                with anyio.fail_after(0.01):
                    await anyio.sleep(BOUND)
            elif kind == "ctx-deadline":
                ctx, cancel = with_timeout(background(), 0.01)
                with ctx.scope():
                    await anyio.sleep(BOUND)
                cancel()  # pragma: no cover - the scope raised
            else:
                raise exc
    assert type(info.value) is expected
    if kind in ("error", "base"):
        assert info.value is exc


# -- tasks that parked before diagnostics were on --------------------------------------
#
# A fixture's or a server's worker parks in `async for job in jobs` while diagnostics
# are off; a `detect_deadlocks()` block opened later must still count it as asleep
# (the tracer has no record of it: the detector finds it from the task itself).


async def _park_before(kind: str, ch: Chan[int], mu: Mutex) -> None:
    if kind == "async for":
        async for _ in ch:
            pass  # pragma: no cover - nothing is sent
    elif kind == "recv":
        await ch.recv()
    elif kind == "recv_ok":
        await ch.recv_ok()
    elif kind == "send":
        await ch.send(1)
    elif kind == "buffered send":
        await ch.send(1)  # the buffer (1) is full already
    elif kind == "select":
        await select(recv(ch), recv(Chan[int]()))
    else:
        assert kind == "mutex"
        await mu.lock()


_OPS = {
    "async for": "chan recv",
    "recv": "chan recv",
    "recv_ok": "chan recv",
    "send": "chan send",
    "buffered send": "chan send",
    "select": "select",
    "mutex": "mutex lock",
}


@NO_AMBIENT_SCOPE
@pytest.mark.parametrize("kind", list(_OPS))
async def test_a_task_parked_before_diagnostics_were_on_counts_as_asleep(kind: str) -> None:
    assert not debug.is_enabled()  # (the worker parks untraced)
    ch = Chan[int](1) if kind == "buffered send" else Chan[int]()
    if kind == "buffered send":
        ch.send_nowait(0)
    mu = Mutex()
    await mu.lock()
    async with anyio.create_task_group() as outer:
        outer.start_soon(_park_before, kind, ch, mu, name="early-worker")
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(BOUND):
            with pytest.raises(Deadlock) as ei:
                async with debug.detect_deadlocks():
                    await Chan[int]().recv()
        msg = str(ei.value)
        assert f'"early-worker" [{_OPS[kind]}] waits on:' in msg  # (how long: unknown)
        assert "(made while diagnostics were off)" in msg
        outer.cancel_scope.cancel()


@NO_AMBIENT_SCOPE
@SLEEPS
async def test_a_task_parked_before_diagnostics_were_on_can_still_be_woken(
    nap: Callable[[float], Awaitable[None]],
) -> None:
    """No false positive: tasks parked early, one of which a sleeper will feed, are not a
    deadlock; the jam that follows, beside the other one, is reported."""
    assert not debug.is_enabled()
    jobs, idle = Chan[int](), Chan[int]()
    got: list[int] = []

    async def worker() -> None:
        async for j in jobs:
            got.append(j)

    async def feed_later() -> None:
        await nap(0.05)
        await jobs.send(7)

    async with anyio.create_task_group() as outer:
        outer.start_soon(worker, name="early-worker")
        outer.start_soon(idle.recv_ok, name="idle-worker")  # parked untraced throughout
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(BOUND):
            with pytest.raises(Deadlock) as ei:
                async with debug.detect_deadlocks():
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(feed_later)  # a timer: no deadlock meanwhile
                    while not got:  # (the worker runs after the send)
                        await anyio.lowlevel.checkpoint()
                    await Chan[int]().recv()  # now every task is asleep
        assert '"idle-worker" [chan recv] waits on:' in str(ei.value)
        jobs.close()
        idle.close()
    assert got == [7]


# -- found by a black-box audit (2026-12-05) ----------------------------------------


async def test_a_subprocess_whose_exit_will_complete_a_channel_is_not_a_deadlock(
    anyio_backend_name: str,
) -> None:
    # Python 3.11's asyncio waits for a child in a thread of its own (no fd in the
    # selector): its exit callback is what will send.
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio's subprocess protocols")
    import asyncio
    import subprocess

    class ExitProtocol(asyncio.SubprocessProtocol):
        def __init__(self, ch: Chan[int]) -> None:
            self.ch = ch

        def process_exited(self) -> None:
            self.ch.send_nowait(0)

    loop = asyncio.get_running_loop()
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            ch = Chan[int](1)
            transport, _ = await loop.subprocess_exec(
                lambda: ExitProtocol(ch),
                sys.executable,
                "-c",
                "import time; time.sleep(0.3)",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                assert await ch.recv() == 0
            finally:
                transport.close()


async def test_a_closed_connection_still_referenced_does_not_hide_a_deadlock() -> None:
    # uvloop keeps a closed transport in its fd map while something references it:
    # it counted as an open one that could wake a task, so the jam hung.
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, lambda s: s.aclose())
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            pass
        tg.cancel_scope.cancel()
    assert stream is not None  # still referenced
    with anyio.fail_after(BOUND), pytest.raises(Deadlock):
        async with debug.detect_deadlocks():
            await Chan[int]().recv()


class TestVirtualClock:
    """Under trio's MockClock the watcher's back-off runs on the virtual clock: with
    autojump it leapt to infinity while a thread held real time, and moved by hand it
    never fired -- a jam whose last step was a task ending was never reported."""

    @pytest.fixture(params=["autojump", "manual"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
        import trio.testing

        if request.param == "autojump":
            return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
        return "trio", {"clock": trio.testing.MockClock()}

    async def test_a_jam_after_a_thread_ends_is_reported(self) -> None:
        ch = Chan[int]()
        with wall_guard(BOUND) as guard, pytest.raises(Deadlock):
            async with debug.detect_deadlocks():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ch.recv)  # nobody will send once the thread is done
                    tg.start_soon(anyio.to_thread.run_sync, time.sleep, 0.3)
        assert not guard.cancelled_caught

    @TIMERS_THAT_WAKE_NOBODY
    async def test_a_deadlock_that_begins_when_a_timer_fires_is_reported(
        self, kind: str, request: pytest.FixtureRequest
    ) -> None:
        # No back-off timer under a virtual clock: the firing itself must kick the
        # watcher (autojump leaps to the timer; by hand, the test moves the clock).
        clock = request.getfixturevalue("anyio_backend")[1]["clock"]
        with wall_guard(BOUND) as guard, pytest.raises(Deadlock):
            async with debug.detect_deadlocks():
                keep = _timer_that_wakes_nobody(kind)
                if clock.autojump_threshold == math.inf:
                    clock.jump(0.1)
                await Chan[int]().recv()
        assert not guard.cancelled_caught
        assert keep is not None

    @DEADLINES
    async def test_a_deadlock_that_begins_when_a_deadline_expires_is_reported(
        self, request: pytest.FixtureRequest, deadline: float
    ) -> None:
        # Nothing parks, ends or fires then: the clock reaching the watcher's due time
        # (checked at each turn of the loop) kicks it. A deadline before the back-off
        # ran out, and then none left to jump to, hung the test: the due time is now
        # the run's next deadline when that comes first.
        clock = request.getfixturevalue("anyio_backend")[1]["clock"]
        with wall_guard(BOUND) as guard, pytest.raises(Deadlock):
            async with debug.detect_deadlocks():
                if clock.autojump_threshold == math.inf:
                    clock.rate = 1.0  # (by hand: nobody is left to move it, so let it flow)
                await _deadline_cancels_a_group_whose_child_is_shielded(deadline)
        assert not guard.cancelled_caught

    async def test_a_jam_after_a_wake_from_a_thread_is_reported(self) -> None:
        # The owner, woken as its to_thread job ends (a callback from the thread: no
        # park, no exit, and under autojump the loop never waits idle), leaves its
        # group for a child nobody will wake: the owner's step asks for a look.
        with wall_guard(BOUND) as guard, pytest.raises(Deadlock, match=r"\[chan recv, "):
            async with debug.detect_deadlocks():
                ch = Chan[int]()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ch.recv)
                    await anyio.to_thread.run_sync(time.sleep, 0.05)
        assert not guard.cancelled_caught

    async def test_a_task_woken_while_a_deadlock_is_confirmed_is_looked_at_again(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The voided verdict counts as transient: its pause must not be a timer on the
        # virtual clock, which a clock moved by hand never reaches (the test hung).
        await test_a_task_woken_while_a_deadlock_is_confirmed_is_looked_at_again(monkeypatch)

    async def test_trios_wait_all_tasks_blocked_reaches_its_cushion(self) -> None:
        # (A look asked for through the run's token, while the watcher paused, made
        # another one: a wake-up every turn, and the idle cushion never came.)
        import trio.testing

        ch = Chan[int]()
        with wall_guard(BOUND) as guard:
            async with debug.detect_deadlocks():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ch.recv)
                    await trio.testing.wait_all_tasks_blocked()
                    await trio.testing.wait_all_tasks_blocked(cushion=0.2)
                    await ch.send(1)
        assert not guard.cancelled_caught

    async def test_the_watcher_does_not_move_the_clock_while_a_thread_runs(self) -> None:
        # Its back-off timer was a deadline autojump leapt to whenever every task
        # waited (here on a thread): the clock the test reads moved by hours (a rate
        # limiter refilled, a breaker recovered) and the watcher spun.
        lim = rate.Limiter(1 / 60, 1)
        async with debug.detect_deadlocks():
            t0 = anyio.current_time()
            assert lim.allow()
            await anyio.to_thread.run_sync(time.sleep, 0.2)
            assert anyio.current_time() - t0 < 1.0
            assert not lim.allow()  # a minute per token: none has come back


async def test_a_task_woken_while_a_deadlock_is_confirmed_is_looked_at_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watcher confirms a deadlock after letting what is scheduled run; a task woken
    then (here by a send standing in for a thread's callback) voids it. The watcher
    must look again once that task settles: leaving its group for a child nobody will
    wake, it parks nothing and does not end. (The watcher now treats the voided
    verdict as transient; before, on trio, only a wake-up left over from an earlier
    idle wait of the loop made it look again.)"""
    from asyncgo._backend import _tasks

    ch_owner, ch_child = Chan[int](), Chan[int]()
    real = _tasks.let_threads_run
    fired: list[bool] = []

    def wake_the_owner() -> None:
        if not fired:
            fired.append(True)
            ch_owner.send_nowait(1)  # (its receiver is parked: the deadlock is off)
        real()

    monkeypatch.setattr(_tasks, "let_threads_run", wake_the_owner)
    with wall_guard(BOUND) as guard, pytest.raises(Deadlock, match=r"\[chan recv, "):
        async with debug.detect_deadlocks():
            async with anyio.create_task_group() as tg:
                tg.start_soon(ch_child.recv)
                assert await ch_owner.recv() == 1
    assert fired == [True]
    assert not guard.cancelled_caught


class TestTrioSystemClock:
    """On trio with the system clock the watcher sets no timer: task parks and exits,
    asyncgo timers firing and the run's next deadline passing wake it."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "trio"

    async def test_trios_wait_all_tasks_blocked_reaches_a_long_cushion(self, looks: Looks) -> None:
        """The watcher's back-off timer, capped at a look a second, ended every idle
        period of the loop: a cushion of 1 s or more was never reached (the test hung),
        a shorter one took about twice as long."""
        import trio.testing

        ch = Chan[int]()
        got: list[int] = []
        with wall_guard(BOUND) as guard:
            async with debug.detect_deadlocks():
                async with anyio.create_task_group() as tg:

                    async def take() -> None:
                        got.append(await ch.recv())

                    tg.start_soon(take)
                    await anyio.wait_all_tasks_blocked()
                    before = looks.n
                    await trio.testing.wait_all_tasks_blocked(cushion=1.0)
                    during = looks.n - before
                    await ch.send(1)
        assert not guard.cancelled_caught
        assert got == [1]
        # (the look the receiver's park asked for, if it came late, and one or two for
        # the wakes that end the waits before: not a look every so often)
        assert during <= 3

    async def test_a_jam_after_an_io_wake_is_reported(self) -> None:
        """The owner, woken by I/O (from a thread the block does not wait for), leaves
        its nursery for a child nobody will wake: no park, no task exit, no deadline
        tells the watcher. It looks at the turn after the loop's idle wait ended."""
        import trio

        a, b = socket.socketpair()
        writer = threading.Timer(0.2, b.send, (b"x",))
        writer.start()  # (before the block: a thread the watcher does not wait for)
        try:
            with wall_guard(BOUND) as guard, pytest.raises(Deadlock, match=r"\[chan recv, "):
                async with debug.detect_deadlocks():
                    ch = Chan[int]()
                    async with trio.open_nursery() as n:
                        n.start_soon(ch.recv)
                        await trio.lowlevel.wait_readable(a)
                        assert a.recv(1) == b"x"
            assert not guard.cancelled_caught
        finally:
            writer.cancel()
            a.close()
            b.close()

    async def test_a_jam_after_a_cushion_wake_is_reported(self) -> None:
        """The same after trio's idle cushion wakes the owner."""
        import trio.testing

        with wall_guard(BOUND) as guard, pytest.raises(Deadlock, match=r"\[chan recv, "):
            async with debug.detect_deadlocks():
                ch = Chan[int]()
                async with trio.open_nursery() as n:
                    n.start_soon(ch.recv)
                    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert not guard.cancelled_caught

    async def test_looks_forced_by_the_loops_wake_ups_are_spaced(self, looks: Looks) -> None:
        """Every wake-up of the idle loop (here a 1 ms sleep, 400 times) asks for a look,
        which walks every task: spaced 10 ms, doubling to a second while they find
        nothing new, not one a millisecond (about 400 here)."""
        ch = Chan[int]()
        async with debug.detect_deadlocks():
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(ch.recv)
                await anyio.wait_all_tasks_blocked()
                for _ in range(400):
                    await anyio.sleep(0.001)
                for i in range(50):
                    await ch.send(i)
        assert looks.n <= 60

    async def test_a_jam_after_a_sleep_is_reported(self) -> None:
        with wall_guard(BOUND) as guard, pytest.raises(Deadlock, match=r"\[chan recv, "):
            async with debug.detect_deadlocks():
                ch = Chan[int]()
                await anyio.sleep(0.05)
                await ch.recv()
        assert not guard.cancelled_caught


@pytest.mark.parametrize("how", ["leave-the-block", "shutdown"])
async def test_pool_shutdown_waiting_for_a_stuck_job(how: str) -> None:
    """A WorkerPool's graceful shutdown (leaving its block, or shutdown()) waits for a
    job parked on a channel nobody sends to: Go's wg.Wait() on a worker that never
    finishes. It waited on an anyio Event, which the detector cannot see through, and
    hung instead of raising Deadlock."""
    from asyncgo import WorkerPool

    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock, match=r"all tasks are asleep - deadlock!") as ei:
            async with debug.detect_deadlocks():
                ch = Chan[int]()
                async with WorkerPool(workers=1) as pool:
                    await pool.submit(ch.recv)
                    if how == "shutdown":
                        await pool.shutdown()
    assert "[chan recv, " in str(ei.value)


def _ident(x: int) -> int:
    return x


async def test_a_deadlock_after_a_process_job_on_trio(anyio_backend_name: str) -> None:
    """anyio's process-pool janitor (started by the loop's first process job) sleeps
    until the loop ends: it wakes nobody, so it no longer hides a deadlock. (On
    asyncio the idle worker processes' pipes stay registered with the loop, which
    counts as I/O that could wake a task: a documented limit.)"""
    if anyio_backend_name != "trio":
        pytest.skip("asyncio: anyio's idle worker processes keep pipes open (docs)")
    import anyio.to_process

    assert await anyio.to_process.run_sync(_ident, 1) == 1
    with anyio.fail_after(BOUND):
        with pytest.raises(Deadlock):
            async with debug.detect_deadlocks():
                await Chan[int]().recv()


async def test_a_shielded_task_that_keeps_catching_deadlock_is_left_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing can end a task that catches every Deadlock inside a shielded scope: after
    the cap the watcher stops raising it (it spun forever: found by review), logs why,
    and the block waits for it as it would without detection -- here until a thread
    closes the channel."""
    from asyncgo import Group

    ch = Chan[int]()
    caught = 0

    async def stubborn() -> None:
        nonlocal caught
        with anyio.CancelScope(shield=True):
            while True:
                try:
                    await ch.recv()
                except Deadlock:
                    caught += 1

    token = anyio.lowlevel.current_token()

    def close_later() -> None:
        time.sleep(1.0)
        anyio.from_thread.run_sync(ch.close, token=token)

    closer = threading.Thread(target=close_later, daemon=True)
    with caplog.at_level("WARNING", logger="asyncgo.debug"):
        closer.start()
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                async with Group() as g:
                    await g.go(stubborn)
        closer.join()
    assert 1 <= caught <= 40
    assert isinstance(ei.value.__cause__, ChanClosed)  # what ended the wait
    assert "keep catching Deadlock" in caplog.text

"""Go's own diagnostics tests, ported to asyncgo (acceptance tests).

Sources: golang/go ``src/runtime/crash_test.go`` with
``src/runtime/testdata/testprog/deadlock.go`` (the runtime deadlock detector and
the goroutine traceback), ``runtime.NumGoroutine`` / ``runtime.Stack`` (the dump),
``runtime/pprof`` labels, and uber-go/goleak (``VerifyNone``, ``IgnoreCurrent``,
``IgnoreTopFunction``, ``IgnoreAnyFunction``).

Each "fatal error: all goroutines are asleep - deadlock!" program is mapped to
asyncgo primitives inside ``debug.detect_deadlocks()``, which must raise
`Deadlock` naming what each task waits on -- within a generous bound (the
``fail_after`` around it; a deadline *around* the scope does not hide a
deadlock). Each negative case (a timer, a ticker, a thread, I/O) must run to
completion without a report.

Go cases with no asyncgo counterpart are listed, with the reason, in
``test_unported_go_cases_are_documented``.
"""

from __future__ import annotations

import sys
import time as systime

import anyio
import pytest
from trio.testing import MockClock

from asyncgo import (
    Chan,
    Deadlock,
    Group,
    WorkerPool,
    background,
    debug,
    recv,
    select,
    with_cancel,
)
from asyncgo import time as gotime
from asyncgo.sync import Cond, Mutex, Once, RWMutex, Semaphore, WaitGroup
from asyncgo.testing import TaskLeakError, no_leaks

pytestmark = pytest.mark.anyio

BOUND = 10  # seconds: generous, never reached unless detection is broken

#: Tests of what happens outside any detection scope opt out of the asyncgo pytest
#: plugin's, which wraps every test in one when the plugin is loaded.
NO_AMBIENT_SCOPE = (
    pytest.mark.asyncgo_detect_deadlocks(False)
    if "asyncgo.testing.pytest_plugin" in sys.modules
    else pytest.mark.anyio
)


async def expect_deadlock(body: object, *args: object, bound: float = BOUND) -> str:
    """Run ``body(*args)`` in a detection scope; it must deadlock. Returns the report."""
    with anyio.fail_after(bound):
        with pytest.raises(Deadlock) as ei:
            async with debug.detect_deadlocks():
                await body(*args)  # type: ignore[operator]
    msg = str(ei.value)
    assert msg.startswith("all tasks are asleep - deadlock!\n\n")
    return msg


def summary(report: str) -> str:
    """The "who waits on what" part of a report (the stacks follow it)."""
    return report.split("\n\n")[1]


# -- crash_test.go: the deadlock programs ------------------------------------------------


async def test_simple_deadlock() -> None:
    """SimpleDeadlock: ``select {}`` in main."""

    async def main() -> None:
        await select()

    msg = await expect_deadlock(main)
    assert "(owner of the detect_deadlocks() block) [select, " in msg


async def test_locked_deadlock2_sleep_first_then_select_forever() -> None:
    """LockedDeadlock2: a child does ``select {}``; main sleeps (not a deadlock yet: a
    timer is pending), then does ``select {}`` too (now it is one)."""
    slept = False

    async def main() -> None:
        nonlocal slept
        async with Group() as g:
            g.go_nowait(select)
            await anyio.sleep(0.05)  # Go: time.Sleep(time.Millisecond)
            slept = True
            await select()

    msg = await expect_deadlock(main)
    assert slept  # the sleep was not mistaken for a deadlock
    assert summary(msg).count("[select, ") == 2, msg


# Each Go "all goroutines are asleep" mistake, with asyncgo's primitives: the op the
# report must name for the stuck task, and the line that made the primitive.


async def recv_nobody_sends() -> None:
    ch = Chan[int]()
    await ch.recv()


async def send_nobody_receives() -> None:
    ch = Chan[int]()
    await ch.send(1)


async def send_full_buffer() -> None:
    ch = Chan[int](1)
    await ch.send(1)
    await ch.send(2)  # Go: ch <- 2 on a full buffer


async def range_over_unclosed() -> None:
    ch = Chan[int](1)
    await ch.send(1)
    async for _ in ch:  # Go: for v := range ch, nobody closes ch
        pass


async def mutex_locked_twice() -> None:
    mu = Mutex()
    await mu.lock()
    await mu.lock()  # Go: mu.Lock(); mu.Lock()


async def rlock_then_lock() -> None:
    rw = RWMutex()
    await rw.rlock()
    await rw.lock()  # Go: rw.RLock(); rw.Lock() in one goroutine


async def lock_then_rlock() -> None:
    rw = RWMutex()
    await rw.lock()
    await rw.rlock()


async def waitgroup_never_done() -> None:
    wg = WaitGroup()
    wg.add(1)
    await wg.wait()  # Go: wg.Add(1); wg.Wait() with no Done


async def cond_without_signal() -> None:
    mu = Mutex()
    cond = Cond(mu)
    async with mu:
        await cond.wait()  # Go: c.L.Lock(); c.Wait() and nobody signals


async def semaphore_exhausted() -> None:
    sem = Semaphore(2)
    await sem.acquire(2)
    await sem.acquire(1)  # Go: sem.Acquire(context.Background(), 1) with none free


async def background_done() -> None:
    await background().wait()  # Go: <-context.Background().Done() (a nil channel)


async def cancel_ctx_never_cancelled() -> None:
    ctx, _cancel = with_cancel(background())
    await ctx.wait()  # Go: <-ctx.Done() and nobody calls cancel


async def after_func_channel() -> None:
    t = gotime.after_func(3600, lambda: None)
    t.stop()
    await t.c.recv()  # Go: <-t.C of an AfterFunc timer: a nil channel


async def stopped_timer_channel() -> None:
    t = gotime.Timer(3600)
    t.stop()  # Go 1.23: nothing will ever be sent on t.C now
    await t.c.recv()


async def stopped_ticker_channel() -> None:
    t = gotime.Ticker(3600)
    t.stop()
    await t.c.recv()


async def once_do_recursive() -> None:
    once = Once()

    async def f() -> None:
        await once.do(f)  # Go: calling Do from f deadlocks

    await once.do(f)


async def select_on_two_unready() -> None:
    a, b = Chan[int](), Chan[int](1)
    await b.send(1)
    await select(recv(a), recv(None))  # b full, but nobody selects on it


CASES = {
    "chan recv": recv_nobody_sends,
    "chan send": send_nobody_receives,
    "chan send, full buffer": send_full_buffer,
    "range over unclosed chan": range_over_unclosed,
    "mutex locked twice": mutex_locked_twice,
    "rwmutex rlock then lock": rlock_then_lock,
    "rwmutex lock then rlock": lock_then_rlock,
    "waitgroup never done": waitgroup_never_done,
    "cond without signal": cond_without_signal,
    "semaphore exhausted": semaphore_exhausted,
    "ctx.wait() on background()": background_done,
    "ctx.wait(), cancel forgotten": cancel_ctx_never_cancelled,
    "after_func timer's c": after_func_channel,
    "stopped timer": stopped_timer_channel,
    "stopped ticker": stopped_ticker_channel,
    "once.do from its own f": once_do_recursive,
    "select on unready chans": select_on_two_unready,
}
OPS = {
    "chan recv": "chan recv",
    "chan send": "chan send",
    "chan send, full buffer": "chan send",
    "range over unclosed chan": "chan recv",
    "mutex locked twice": "mutex lock",
    "rwmutex rlock then lock": "rwmutex lock",
    "rwmutex lock then rlock": "rwmutex rlock",
    "waitgroup never done": "waitgroup wait",
    "cond without signal": "cond wait",
    "semaphore exhausted": "semaphore acquire",
    "ctx.wait() on background()": "chan recv",
    "ctx.wait(), cancel forgotten": "chan recv",
    "after_func timer's c": "chan recv",
    "stopped timer": "chan recv",
    "stopped ticker": "chan recv",
    "once.do from its own f": "mutex lock",
    "select on unready chans": "select",
}


@pytest.mark.parametrize("case", list(CASES))
async def test_all_asleep_in_the_owner(case: str) -> None:
    """The mistake made by the block's own task: reported, naming the op."""
    msg = await expect_deadlock(CASES[case])
    assert f"(owner of the detect_deadlocks() block) [{OPS[case]}, " in msg, msg


@pytest.mark.parametrize("case", list(CASES))
async def test_all_asleep_in_a_group_task(case: str) -> None:
    """The same mistake in a task of a `Group` the block waits on (Go: the mistake in a
    goroutine while main waits for it): the owner waits for children, the task is parked."""

    async def main() -> None:
        async with Group() as g:
            g.go_nowait(CASES[case])

    msg = await expect_deadlock(main)
    assert "(owner of the detect_deadlocks() block) waits for its child tasks" in msg, msg
    assert f"[{OPS[case]}, " in msg, msg


async def test_report_names_the_primitive_and_its_line() -> None:
    """Go names the wait reason; asyncgo also names the primitive and where it was made."""

    async def main() -> None:
        jobs = Chan[str]()
        async with Group() as g:
            with debug.labels(pool="resize"):
                g.go_nowait(jobs.recv)
                g.go_nowait(jobs.recv)

    msg = await expect_deadlock(main)
    assert summary(msg).count("[chan recv, ") == 2
    assert summary(msg).count("jobs = Chan[str]()") == 2  # each waiter names the channel's line
    assert "test_go_diag.py:" in msg
    assert "{pool=resize}" in msg  # labels in the stacks that follow


async def first_asks_for_the_never_done_channel() -> None:
    background().done()  # the first on this loop to ask: not where anyone else's comes from


async def test_never_done_channel_is_not_attributed_to_whoever_asked_first() -> None:
    """``<-context.Background().Done()`` blocks on a nil channel in Go; asyncgo shares one
    never-closed channel per loop. The report must say that, not name the line of
    whichever code happened to ask for it first."""

    async def main() -> None:
        with debug.enabled():
            await first_asks_for_the_never_done_channel()
        async with Group() as g:
            g.go_nowait(background().wait)

    msg = summary(await expect_deadlock(main))
    assert "[chan recv, " in msg
    assert "first_asks_for_the_never_done_channel" not in msg, msg
    assert "background().done()  # the first" not in msg, msg
    assert "can never be done" in msg and "nil Done() channel" in msg, msg
    assert "made while diagnostics were off" not in msg, msg


async def test_primitive_made_by_another_constructor_names_it() -> None:
    """A Mutex made by ``Once()`` (Go: the ``sync.Once``'s own mutex) is reported with
    the Once it belongs to, not as if the user had written ``Mutex()`` there."""
    msg = summary(await expect_deadlock(once_do_recursive))
    assert "Mutex <Mutex locked" in msg
    assert "(via asyncgo.sync._once.Once.__init__): `once = Once()`" in msg, msg
    msg = summary(await expect_deadlock(stopped_timer_channel))
    assert "(via asyncgo.time.Timer.__init__): `t = gotime.Timer(3600)`" in msg, msg
    msg = summary(await expect_deadlock(recv_nobody_sends))
    assert "(via " not in msg and "`ch = Chan[int]()`" in msg, msg


async def test_group_waiting_on_handle_of_parked_task() -> None:
    """Go: ``<-done`` of a goroutine that is itself stuck (``await handle``)."""

    async def main() -> None:
        ch = Chan[int]()
        async with Group() as g:
            h = g.go_nowait(ch.recv)
            await h

    msg = summary(await expect_deadlock(main))
    assert "[chan recv, " in msg
    assert "(owner of the detect_deadlocks() block) [task handle wait, " in msg
    assert "TaskHandle <TaskHandle Chan.recv pending>" in msg
    assert "made while diagnostics were off" not in msg, msg  # they were on


async def test_pool_job_waiting_on_stuck_worker() -> None:
    """``r := <-results`` from a worker pool whose only job is stuck."""

    async def main() -> None:
        ch = Chan[int]()
        async with WorkerPool(2) as pool:
            h = await pool.submit(ch.recv)
            await h

    with anyio.fail_after(2):  # it hangs until the pool's park is visible
        msg = summary(await expect_deadlock(main))
    assert "(owner of the detect_deadlocks() block) [job wait, " in msg
    assert "JobHandle <JobHandle " in msg and "made while diagnostics" not in msg


async def test_pipeline_of_stuck_stages() -> None:
    """Two goroutines each waiting for the other's send (a cycle of unbuffered channels)."""

    async def stage(inp: Chan[int], out: Chan[int]) -> None:
        v = await inp.recv()
        await out.send(v)

    async def main() -> None:
        a, b = Chan[int](), Chan[int]()
        async with Group() as g:
            g.go_nowait(stage, a, b)
            g.go_nowait(stage, b, a)

    msg = await expect_deadlock(main)
    assert summary(msg).count("[chan recv, ") == 2


async def test_deadlock_after_work_was_done() -> None:
    """A program that works for a while first: only the final state counts."""

    async def main() -> None:
        ch = Chan[int]()
        async with Group() as g:

            async def producer() -> None:
                for i in range(100):
                    await ch.send(i)
                # forgot: ch.close()

            g.go_nowait(producer)
            total = 0
            async for v in ch:
                total += v
            assert total == -1  # not reached

    msg = await expect_deadlock(main)
    assert "[chan recv, " in msg


# -- negative cases: asleep, but something will wake them ---------------------------------


async def not_deadlocked(body: object, *args: object) -> None:
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks() as scope:
            await body(*args)  # type: ignore[operator]
    assert scope.report is None


async def test_not_a_deadlock_timer_in_another_task() -> None:
    async def main() -> None:
        ch = Chan[int]()
        async with Group() as g:

            async def late() -> None:
                await anyio.sleep(0.1)
                await ch.send(1)

            g.go_nowait(late)
            assert await ch.recv() == 1

    await not_deadlocked(main)


async def test_not_a_deadlock_asyncgo_timers() -> None:
    """``<-time.After(d)``, ``t := time.NewTimer(d); <-t.C``, ``time.AfterFunc`` closing a
    channel: a pending asyncgo timer will wake the channel."""

    async def main() -> None:
        await gotime.after(0.05).recv()
        t = gotime.Timer(0.05)
        await t.c.recv()
        done = Chan[None]()
        gotime.after_func(0.05, done.close)
        assert await done.recv_ok() == (None, False)
        s = await select(recv(Chan[int]()), recv(gotime.after(0.05)))
        assert s.index == 1

    await not_deadlocked(main)


async def test_not_a_deadlock_ticker() -> None:
    async def main() -> None:
        with gotime.Ticker(0.02) as t:
            for _ in range(3):
                await t.c.recv()

    await not_deadlocked(main)


async def test_not_a_deadlock_reset_timer() -> None:
    async def main() -> None:
        t = gotime.Timer(3600)
        t.stop()
        t.reset(0.05)  # armed again: it will fire
        await t.c.recv()

    await not_deadlocked(main)


async def test_not_a_deadlock_thread() -> None:
    async def main() -> None:
        ch = Chan[int](1)
        async with Group() as g:

            async def offload() -> None:
                v = await anyio.to_thread.run_sync(lambda: (systime.sleep(0.1), 3)[1])
                await ch.send(v)

            g.go_nowait(offload)
            assert await ch.recv() == 3

    await not_deadlocked(main)


async def test_not_a_deadlock_cond_signalled_later() -> None:
    async def main() -> None:
        mu = Mutex()
        cond = Cond(mu)
        ready = False
        async with Group() as g:

            async def signaller() -> None:
                nonlocal ready
                await anyio.sleep(0.05)
                async with mu:
                    ready = True
                    cond.signal()

            g.go_nowait(signaller)
            async with mu:
                while not ready:
                    await cond.wait()

    await not_deadlocked(main)


# -- the dump: runtime.Stack / NumGoroutine / MainGoroutineID / NoHelperGoroutines ------


async def test_num_goroutine_matches_the_dump() -> None:
    """runtime TestNumGoroutine: NumGoroutine equals the goroutines the dump lists."""
    async with Group() as g:
        for _ in range(3):
            g.go_nowait(anyio.sleep, 0.05)
        await anyio.sleep(0)
        n = debug.num_tasks()
        snapshot = debug.tasks()
        text = debug.dump(group=False)
        assert n == len(snapshot)
        assert text.startswith(f"{n} task{'s' if n != 1 else ''}:\n")
        assert sum(line.startswith("task ") for line in text.splitlines()) == n


async def test_main_goroutine_is_running_in_its_own_dump() -> None:
    """MainGoroutineID: the goroutine that prints the traceback shows as ``[running]``."""
    text = debug.dump(group=False)
    [me] = [t for t in debug.tasks() if t.state == "running"]
    assert f'task {me.id} "{me.name}" [running]' in text
    assert me.entry is not None
    assert me.stack[0].function.endswith("test_main_goroutine_is_running_in_its_own_dump")


async def test_no_helper_tasks_in_the_dump() -> None:
    """NoHelperGoroutines: a pending ``time.AfterFunc`` (and the detector's watcher) add
    no task to the dump or to ``NumGoroutine``."""
    before = debug.num_tasks()
    names = {t.name for t in debug.tasks()}
    t = gotime.after_func(3600, lambda: None)
    ticker = gotime.Ticker(3600)
    try:
        await anyio.sleep(0.01)
        assert debug.num_tasks() == before
        assert {t.name for t in debug.tasks()} == names
        assert "asyncgo timers" not in debug.dump()
    finally:
        t.stop()
        ticker.stop()
    async with debug.detect_deadlocks():
        assert debug.num_tasks() == before
        assert "deadlock watcher" not in debug.dump()


async def test_ids_are_stable_and_distinct() -> None:
    """Goroutine ids: one per task, the same in every dump for the task's life."""
    with debug.enabled():
        ch = Chan[int]()
        async with Group() as g:
            for _ in range(3):
                g.go_nowait(ch.recv)
            await anyio.wait_all_tasks_blocked()
            first = {t.task: t.id for t in debug.tasks()}
            second = {t.task: t.id for t in debug.tasks()}
            assert first == second
            assert len(set(first.values())) == len(first)
            for i in range(3):
                await ch.send(i)


async def test_dump_wait_reasons_and_duration() -> None:
    """Go: ``goroutine 7 [chan receive, 2 minutes]:`` -- the wait reason and how long."""
    with debug.enabled():
        mu = Mutex()
        wg = WaitGroup()
        wg.add(1)
        out = Chan[int]()
        async with Group() as g:
            await mu.lock()
            with debug.labels(who="locker"):
                g.go_nowait(mu.lock)
            with debug.labels(who="waiter"):
                g.go_nowait(wg.wait)
            with debug.labels(who="sender"):
                g.go_nowait(out.send, 1)
            await anyio.wait_all_tasks_blocked()  # all three parked: from now on,
            await anyio.sleep(0.05)  # at least this long (however late they started)
            by = {t.labels.get("who"): t for t in debug.tasks() if t.labels.get("who")}
            assert {k: v.op for k, v in by.items()} == {
                "locker": "mutex lock",
                "waiter": "waitgroup wait",
                "sender": "chan send",
            }
            for t in by.values():
                assert t.state == "parked"
                assert t.parked_for is not None and t.parked_for >= 0.04
                assert t.status().startswith(f"{t.op}, ")
                [p] = t.blocked_on
                assert p.created_at is not None and p.created_at.filename == __file__
            mu.unlock()
            wg.done()
            assert await out.recv() == 1


# -- pprof labels ----------------------------------------------------------------------


async def test_labels_inherited_by_goroutines_started_inside_do() -> None:
    """pprof.Do: goroutines created inside carry the labels; later ones do not."""
    seen: dict[str, dict[str, str]] = {}

    async def record(key: str) -> None:
        await anyio.sleep(0)
        seen[key] = dict(debug.current_labels())

    async with Group() as g:
        with debug.labels(request="r1"):
            with debug.labels(stage="a"):
                g.go_nowait(record, "inner")
            g.go_nowait(record, "outer")
        g.go_nowait(record, "after")
    assert seen == {
        "inner": {"request": "r1", "stage": "a"},
        "outer": {"request": "r1"},
        "after": {},
    }


async def test_labels_in_child_do_not_leak_to_parent() -> None:
    """A child's own ``pprof.Do`` labels its goroutine only, never its parent."""

    async def child() -> None:
        with debug.labels(child="yes"):
            await anyio.sleep(0)

    with debug.labels(parent="p"):
        async with Group() as g:
            g.go_nowait(child)
        assert debug.current_labels() == {"parent": "p"}
    assert debug.current_labels() == {}


async def test_label_values_are_strings() -> None:
    with debug.labels(n=3, flag=True) as got:
        assert got == {"n": "3", "flag": "True"}
        with pytest.raises(TypeError):
            got["x"] = "y"  # type: ignore[index]


# -- goleak ----------------------------------------------------------------------------


async def leaky_worker(ch: Chan[int]) -> None:
    async for _ in ch:
        pass


async def test_goleak_verify_none_fails_with_the_dump() -> None:
    async with anyio.create_task_group() as server:
        ch = Chan[int]()
        with pytest.raises(TaskLeakError) as ei:
            async with no_leaks(grace=0.05):
                server.start_soon(leaky_worker, ch, name="leaky")
        msg = str(ei.value)
        assert msg.startswith("found 1 unexpected task")
        assert '"leaky" [chan recv, ' in msg
        assert "test_go_diag.leaky_worker(...)" in msg
        ch.close()


async def test_goleak_ignore_current() -> None:
    """IgnoreCurrent: goroutines running before the check are not its leaks."""
    async with anyio.create_task_group() as server:
        ev = anyio.Event()
        server.start_soon(ev.wait, name="already-running")
        await anyio.sleep(0)
        async with no_leaks(grace=0):
            await anyio.sleep(0)
        ev.set()


async def test_goleak_retries_until_goroutines_exit() -> None:
    """VerifyNone retries: a goroutine on its way out within the grace is no leak."""
    async with anyio.create_task_group() as server:
        async with no_leaks(grace=5):
            server.start_soon(anyio.sleep, 0.05, name="finishing")


async def test_goleak_ignore_top_function_by_the_users_function() -> None:
    """IgnoreTopFunction("pkg.worker"): Go's top frame of a goroutine blocked in a channel
    receive is the user's function (the runtime's own frames are not shown). Here the
    top function is the user's function too, not asyncgo's (or anyio's) internals."""
    ch = Chan[int]()
    async with anyio.create_task_group() as server:
        async with no_leaks(grace=0, ignore_top_function=[f"{__name__}.leaky_worker"]):
            server.start_soon(leaky_worker, ch, name="parked")
        with pytest.raises(TaskLeakError) as ei:
            async with no_leaks(grace=0):
                server.start_soon(leaky_worker, ch, name="parked-2")
        assert [t.name for t in ei.value.tasks] == ["parked-2"]
        top = ei.value.tasks[0].top  # the innermost frame (asyncgo's) matches too
        assert top is not None
        async with no_leaks(grace=0, ignore_top_function=[top]):
            server.start_soon(leaky_worker, ch, name="parked-3")
        ch.close()


async def test_goleak_ignore_top_function_is_not_any_function() -> None:
    """IgnoreTopFunction matches the top only; a function lower on the stack does not."""

    async def outer(ch: Chan[int]) -> None:
        await leaky_worker(ch)

    ch = Chan[int]()
    async with anyio.create_task_group() as server:
        name = f"{__name__}.test_goleak_ignore_top_function_is_not_any_function.<locals>.outer"
        with pytest.raises(TaskLeakError):
            async with no_leaks(grace=0, ignore_top_function=[name]):
                server.start_soon(outer, ch, name="wrapped")
        async with no_leaks(grace=0, ignore_any_function=[name]):
            server.start_soon(outer, ch, name="wrapped-2")
        ch.close()


async def test_goleak_top_function_of_a_sleeping_task() -> None:
    async def napper() -> None:
        await anyio.sleep(3600)

    name = f"{__name__}.test_goleak_top_function_of_a_sleeping_task.<locals>.napper"
    async with anyio.create_task_group() as server:
        async with no_leaks(grace=0, ignore_top_function=[name]):
            server.start_soon(napper)
        server.cancel_scope.cancel()


@NO_AMBIENT_SCOPE
async def test_goleak_leak_of_a_deadlocked_pair_outside_detection() -> None:
    """Outside a detection scope, two stuck goroutines are a leak, each in the report."""

    async def stage(inp: Chan[int], out: Chan[int]) -> None:
        await out.send(await inp.recv())

    a, b = Chan[int](), Chan[int]()
    async with anyio.create_task_group() as server:
        with pytest.raises(TaskLeakError) as ei:
            async with no_leaks(grace=0.01):
                server.start_soon(stage, a, b, name="s1")
                server.start_soon(stage, b, a, name="s2")
        assert sorted(t.name for t in ei.value.tasks) == ["s1", "s2"]
        assert all(t.op == "chan recv" for t in ei.value.tasks)
        server.cancel_scope.cancel()


# -- go of nil func value ------------------------------------------------------------------


async def test_go_nil() -> None:
    """GoNil: ``go f()`` with a nil f panics "go of nil func value"; here a clear TypeError."""
    async with Group() as g:
        with pytest.raises(TypeError, match="Group.go"):
            g.go_nowait(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Group.go"):
            await g.go(None)  # type: ignore[arg-type]


def test_unported_go_cases_are_documented() -> None:
    """The deadlock.go programs with no asyncgo counterpart (kept here as the record)."""
    unported = {
        "InitDeadlock": "no package init phase; a deadlock at start-up is SimpleDeadlock",
        "GoexitDeadlock": "no runtime.Goexit: a task cannot end while its children run",
        "GoexitExit": "no runtime.Goexit",
        "GoexitInPanic": "no runtime.Goexit",
        "PanicAfterGoexit": "no runtime.Goexit",
        "RecoveredPanicAfterGoexit": "no runtime.Goexit",
        "LockedDeadlock": "no LockOSThread; the nearest, a deadlock inside a shielded cancel "
        "scope, is detected but cannot be cancelled: the block hangs (see the report)",
        "StackOverflow": "Python's RecursionError, not a diagnostics matter",
        "ThreadExhaustion": "tasks are not threads; anyio's thread limiter bounds to_thread",
        "RecursivePanic": "exception chaining is Python's own (__context__)",
        "PanicTraceback": "exception chaining is Python's own",
        "Breakpoint": "breakpoint() is Python's own",
    }
    assert len(unported) == 12


# -- more Go deadlocks: the classic ones of sync ---------------------------------------------


async def test_recursive_read_lock_with_a_waiting_writer() -> None:
    """sync.RWMutex: "a blocked Lock call excludes new readers", so a goroutine that
    read-locks twice deadlocks once a writer waits in between (Go's documented trap)."""

    async def main() -> None:
        rw = RWMutex()
        await rw.rlock()
        async with Group() as g:
            g.go_nowait(rw.lock)
            await anyio.wait_all_tasks_blocked()
            await rw.rlock()  # behind the writer, which waits for us

    msg = summary(await expect_deadlock(main))
    assert "(owner of the detect_deadlocks() block) [rwmutex rlock, " in msg, msg
    assert "[rwmutex lock, " in msg, msg


async def test_cond_lost_wakeup() -> None:
    """A Signal before anyone Waits is lost (Go's Cond has no memory): the waiter sleeps on."""

    async def main() -> None:
        mu = Mutex()
        cond = Cond(mu)
        cond.signal()  # nobody waits yet: lost
        async with mu:
            await cond.wait()

    msg = summary(await expect_deadlock(main))
    assert "[cond wait, " in msg and "cond = Cond(mu)" in msg


async def test_waitgroup_add_after_wait_started_is_still_seen() -> None:
    """The classic Add/Done mismatch with several workers: one Done short."""

    async def worker(wg: WaitGroup, n: int) -> None:
        await anyio.sleep(0.01 * n)
        if n != 2:
            wg.done()

    async def main() -> None:
        wg = WaitGroup()
        async with Group() as g:
            for n in range(3):
                wg.add(1)
                g.go_nowait(worker, wg, n)
            await wg.wait()

    msg = summary(await expect_deadlock(main))
    assert "[waitgroup wait, " in msg and "WaitGroup <WaitGroup count=1 " in msg, msg


# -- on trio's virtual clock (Go's faketime) -----------------------------------------------


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
)
async def test_virtual_clock_hour_long_timer_is_not_a_deadlock_but_a_jam_is() -> None:
    """Go's checkdead: a pending timer means "not dead" (with faketime, time jumps to it).
    Under ``MockClock(autojump_threshold=0)`` an hour-long sleep passes in no real time
    and is no deadlock; a real jam after it is still reported."""

    async def main() -> None:
        ch = Chan[int]()
        async with Group() as g:

            async def late() -> None:
                await anyio.sleep(3600)
                await ch.send(1)

            g.go_nowait(late)
            assert await ch.recv() == 1
            await gotime.after(7200).recv()
            await ch.recv()  # now nobody sends

    t0 = anyio.current_time()
    msg = summary(await expect_deadlock(main, bound=10**6))  # virtual seconds
    assert "[chan recv, " in msg
    assert anyio.current_time() - t0 >= 3600 + 7200


# -- goleak options: misuse is named -------------------------------------------------------


async def test_no_leaks_bad_input_is_named() -> None:
    """goleak's options are typed; ours check what they are given and say what is wrong."""

    async def job() -> int:
        return 1

    with pytest.raises(TypeError, match=r"write @no_leaks\(\) \(with parentheses\)"):
        no_leaks(job)  # type: ignore[misc]  # @no_leaks without parentheses
    with pytest.raises(TypeError, match="ignore_names takes a list of names, not a str"):
        no_leaks(ignore_names="metrics")  # would have ignored "m", "e", "t", ...
    with pytest.raises(TypeError, match="ignore_top_function takes a list"):
        no_leaks(ignore_top_function="mod.worker")
    with pytest.raises(TypeError, match="ignore_any_function takes a list"):
        no_leaks(ignore_any_function="mod.worker")
    with pytest.raises(TypeError, match="grace must be a number of seconds, not str"):
        no_leaks(grace="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="grace must be a number of seconds, not bool"):
        no_leaks(grace=True)
    with pytest.raises(TypeError, match="ignore must be a predicate"):
        no_leaks(ignore="daemon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates an async function, not int"):
        no_leaks()(3)  # type: ignore[arg-type]

    @no_leaks(grace=0)
    def not_async() -> int:
        return 1

    with pytest.raises(TypeError, match=r"not_async\(\) returned int, not an awaitable"):
        await not_async()  # type: ignore[misc]
    assert await no_leaks(grace=0)(job)() == 1
    assert no_leaks(ignore_names=("a", "b")).ignore_names == ["a", "b"]

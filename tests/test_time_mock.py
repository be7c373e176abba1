"""Exact time arithmetic of contexts and asyncgo.time on trio's virtual clock.

``MockClock(autojump_threshold=0)`` jumps straight to the next deadline whenever
every task is blocked, so an hour-long timeout takes microseconds and every
time below is exact: it is the clock value itself, not a measurement.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
import trio
from trio.testing import MockClock

from asyncgo import (
    Canceled,
    Chan,
    DeadlineExceeded,
    after_func,
    background,
    recv,
    select,
    with_cancel,
    with_deadline,
    with_timeout,
)
from asyncgo import time as gotime
from asyncgo._chan import chan_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


def now() -> float:
    return anyio.current_time()


# -- contexts -------------------------------------------------------------------------------


async def test_timeout_ends_exactly_at_its_deadline() -> None:
    t0 = now()
    ctx, _ = with_timeout(background(), 3600)
    assert ctx.deadline() == t0 + 3600
    await ctx.wait()
    assert now() == t0 + 3600
    assert type(ctx.err()) is DeadlineExceeded


async def test_err_flips_exactly_at_the_deadline() -> None:
    t0 = now()
    ctx, _ = with_deadline(background(), t0 + 10)
    await trio.sleep_until(t0 + 10 - 1e-6)
    assert ctx.err() is None
    await trio.sleep_until(t0 + 10)
    assert type(ctx.err()) is DeadlineExceeded


async def test_scope_deadline_exact_and_nesting() -> None:
    for first, second in ((5, 50), (50, 5)):
        t0 = now()
        a, _ = with_timeout(background(), first)
        b, _ = with_timeout(background(), second)
        with pytest.raises(DeadlineExceeded) as info:
            with a.scope():
                with b.scope():
                    await trio.sleep(1000)
        assert now() == t0 + 5  # the earlier deadline wins, whichever is outside
        winner = a if first == 5 else b
        loser = b if first == 5 else a
        assert info.value is winner.err()
        assert loser.err() is None


async def test_child_deadline_is_the_minimum_along_the_chain() -> None:
    rng = random.Random(3)
    t0 = now()
    ctx = background()
    expected: float | None = None
    chain = []
    for _ in range(200):
        when = t0 + rng.uniform(1, 1000)
        ctx, _ = with_deadline(ctx, when)
        expected = when if expected is None else min(expected, when)
        assert ctx.deadline() == expected
        chain.append(ctx)
    assert expected is not None
    await chain[-1].wait()
    assert now() == expected
    # Every context whose own deadline is the minimum so far expired together.
    assert all(type(c.err()) is DeadlineExceeded for c in chain if c.deadline() == expected)


async def test_parent_deadline_reaches_a_child_waiting_on_done() -> None:
    t0 = now()
    parent, _ = with_timeout(background(), 30)
    child, _ = with_cancel(parent)
    r = await select(recv(child.done()), recv(gotime.after(100)))
    assert r.index == 0
    assert now() == t0 + 30
    assert child.err() is parent.err()


async def test_after_func_at_the_deadline_exactly() -> None:
    t0 = now()
    ctx, _ = with_timeout(background(), 7)
    fired: list[float] = []
    after_func(ctx, lambda: fired.append(now()))
    await trio.sleep(100)
    assert fired == [t0 + 7]


async def test_sleep_with_a_context_raises_exactly_at_its_deadline() -> None:
    t0 = now()
    ctx, _ = with_timeout(background(), 10)
    with pytest.raises(DeadlineExceeded):
        await gotime.sleep(3600, ctx)
    assert now() == t0 + 10
    t1 = now()
    ctx2, cancel2 = with_timeout(background(), 3600)
    await gotime.sleep(10, ctx2)
    assert now() == t1 + 10
    cancel2()


async def test_sleep_with_a_context_cancelled_midway() -> None:
    t0 = now()
    ctx, cancel = with_cancel(background())
    gotime.after_func(4, cancel)
    with pytest.raises(Canceled):
        await gotime.sleep(3600, ctx)
    assert now() == t0 + 4


# -- time --------------------------------------------------------------------------------


async def test_after_delivers_the_due_time() -> None:
    t0 = now()
    assert await gotime.after(2.5).recv() == t0 + 2.5
    assert now() == t0 + 2.5


async def test_sleeps_end_exactly_on_time_in_order() -> None:
    """``gotime.sleep`` on the run's timer heap: each of many sleepers wakes at exactly
    its own deadline (trio runs the ones due together in any order); a sleep cut
    short by a deadline ends at that deadline and leaves no timer."""
    rng = random.Random(5)
    t0 = now()
    woke: list[tuple[float, int]] = []

    async def sleeper(i: int, d: float) -> None:
        await gotime.sleep(d)
        woke.append((now(), i))

    plan = [(i, float(rng.randint(1, 20))) for i in range(100)]
    async with trio.open_nursery() as n:
        for i, d in plan:
            n.start_soon(sleeper, i, d)
    expected = sorted(((t0 + d, i) for i, d in plan), key=lambda e: e[0])
    assert [w for w, _ in woke] == [w for w, _ in expected]
    assert {i: w for w, i in woke} == {i: t0 + d for i, d in plan}
    t1 = now()
    with trio.move_on_at(t1 + 3):
        await gotime.sleep(3600)
    assert now() == t1 + 3
    assert check_no_timers()


@pytest.mark.parametrize("order", ["scope_first", "sleep_first"])
async def test_a_deadline_due_with_the_sleep_wins(order: str) -> None:
    """A cancel scope whose deadline is the sleep's own end cancels it, as it cancels
    ``trio.sleep``: the timer wakes the task first, but the cancellation is raised
    before the sleep returns (whichever was armed first)."""
    t0 = now()
    with trio.CancelScope() as scope:
        if order == "scope_first":
            scope.deadline = t0 + 1
            await gotime.sleep(1)
        else:
            async with trio.open_nursery() as n:

                async def arm() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    scope.deadline = t0 + 1

                n.start_soon(arm)
                await gotime.sleep(1)
        raise AssertionError("the sleep returned")  # pragma: no cover
    assert scope.cancelled_caught
    assert now() == t0 + 1
    assert check_no_timers()


@pytest.mark.parametrize("ends", ["sleep", "ctx_same_tick", "scope_same_tick", "cancel"])
async def test_sleep_with_a_context_on_the_timer_heap(ends: str) -> None:
    """``sleep(s, ctx)`` waits on the ctx's done channel with a timer of the run's heap:
    it ends exactly on time; a ctx ending at the same tick raises its err; a scope
    deadline at the same tick cancels it (as it cancels ``trio.sleep``); a cancel
    midway raises. No timer and no receiver is left on the done channel."""
    t0 = now()
    ctx, cancel = with_timeout(background(), 5 if ends == "ctx_same_tick" else 3600)
    outcome: object = None
    with trio.CancelScope() as scope:
        if ends == "scope_same_tick":
            scope.deadline = t0 + 5
        elif ends == "cancel":
            gotime.after_func(2, scope.cancel)
        try:
            await gotime.sleep(5, ctx)
            outcome = "slept"
        except DeadlineExceeded as exc:
            outcome = exc
    expected = {
        "sleep": ("slept", t0 + 5),
        "ctx_same_tick": (ctx.err(), t0 + 5),
        "scope_same_tick": (None, t0 + 5),
        "cancel": (None, t0 + 2),
    }[ends]
    assert (outcome, now()) == expected
    assert scope.cancelled_caught is (ends in ("scope_same_tick", "cancel"))
    done = chan_of(ctx.done())
    assert done._rw is None and not done._recvq
    cancel()
    assert check_no_timers()


def _timer_tasks() -> list[object]:
    system = trio.lowlevel.current_root_task().child_nurseries
    return [t for n in system for t in n.child_tasks if t.name == "asyncgo timers"]


async def test_one_timer_task_per_run_parked_between_timers() -> None:
    """A task that sleeps again and again (or arms a timeout per request) does not
    start a system task per timer: the run's timer task waits, parked with no
    deadline, between them, and the clock does not move for it."""
    await gotime.sleep(1)
    first = _timer_tasks()
    assert len(first) == 1
    for _ in range(5):
        t0 = now()
        await gotime.sleep(2)
        assert now() == t0 + 2
        ctx, cancel = with_timeout(background(), 10)
        ctx.done()  # arms the deadline's timer
        cancel()
        assert _timer_tasks() == first
    from asyncgo._backend._timers import TrioRuntime, runtime_or_none

    rt = runtime_or_none()
    assert type(rt) is TrioRuntime
    await trio.testing.wait_all_tasks_blocked()
    assert rt.idle() and rt.pending() == 0
    t0 = now()
    with trio.move_on_after(5):  # nothing pending: the MockClock jumps to this deadline
        await trio.sleep_forever()
    assert now() == t0 + 5
    assert _timer_tasks() == first


class _Steps(trio.abc.Instrument):
    """Counts the steps of the tasks named *name*."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == self.name:
            self.steps += 1


async def test_the_timer_task_is_not_woken_for_each_tick_that_fires_timers() -> None:
    """The run's timers fire in the ``after_io_wait`` hook, and the timer task's wait
    is moved on to the next deadline there (or to none, once none is left) before
    trio expires deadlines: 100 sleepers on 20 distinct deadlines, waves of them,
    and timeouts armed and dropped, cost the timer task no step at all. (It used to
    wake, through a ``Cancelled``, at every tick that fired a timer.) The sleeps still
    end exactly on time."""
    await gotime.sleep(1)  # (the timer task exists, and waits)
    await trio.testing.wait_all_tasks_blocked()
    steps = _Steps("asyncgo timers")
    trio.lowlevel.add_instrument(steps)
    try:
        rng = random.Random(3)
        for _ in range(3):
            t0 = now()
            woke: list[float] = []

            async def sleeper(d: float, t0: float = t0, woke: list[float] = woke) -> None:
                await gotime.sleep(d)
                woke.append(now() - t0)

            plan = [float(rng.randint(1, 20)) for _ in range(100)]
            async with trio.open_nursery() as n:
                for d in plan:
                    n.start_soon(sleeper, d)
            assert woke == sorted(plan)
            ctx, cancel = with_timeout(background(), 10)
            ctx.done()  # arms the deadline's timer
            cancel()  # drops it: no timer left
            await gotime.sleep(0.5)
        assert steps.steps == 0
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert check_no_timers()


@pytest.mark.parametrize("started", ["at_shutdown", "before_shutdown"])
def test_a_shielded_sleep_in_a_system_task_outlives_the_runs_end(started: str) -> None:
    """Found by a review: when the main task returns, trio cancels its system tasks,
    the timer task among them. A shielded sleep in another system task's cleanup
    (begun then, or earlier) must still end, as ``trio.sleep`` would, not hang the
    run's end: the timer task serves the sleeps' timers to the end, shielded."""
    import threading

    state: dict[str, float] = {}

    async def main() -> None:
        async def system_task() -> None:
            try:
                if started == "before_shutdown":
                    with trio.CancelScope(shield=True):
                        await gotime.sleep(10)
                else:
                    await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await gotime.sleep(2)
                state["ended"] = trio.current_time()

        trio.lowlevel.spawn_system_task(system_task)
        await gotime.sleep(0.5)  # (the timer task exists)

    def run() -> None:
        trio.run(main, clock=MockClock(autojump_threshold=0))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)  # (a hang guard, not a timing: the clock is virtual)
    assert not t.is_alive(), "the run's end hangs"
    assert state["ended"] == (12.0 if started == "before_shutdown" else 2.5)


def test_sleep_in_trio_guest_mode_on_asyncio() -> None:
    """Guest mode is not supported (docs/relation.md), but a plain sleep works there,
    as it did when it was anyio's: no asyncio task runs trio's code."""
    import asyncio

    async def trio_main() -> str:
        t0 = trio.current_time()
        await gotime.sleep(0.01)
        await gotime.sleep(0)
        assert trio.current_time() - t0 >= 0.01
        return "ok"

    async def host() -> object:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )
        return (await done).unwrap()

    assert asyncio.run(host()) == "ok"


def check_no_timers() -> bool:
    from asyncgo._backend._timers import TrioRuntime, runtime_or_none

    rt = runtime_or_none()
    return type(rt) is TrioRuntime and rt.pending() == 0


async def test_ticker_ticks_on_the_grid() -> None:
    t0 = now()
    with gotime.Ticker(2) as t:
        ticks = [await t.c.recv() for _ in range(5)]
    assert ticks == [t0 + 2 * k for k in range(1, 6)]


async def test_ticker_drops_ticks_for_a_slow_reader() -> None:
    t0 = now()
    t = gotime.Ticker(1)
    await trio.sleep(5.5)
    assert len(t.c) == 1  # at most one pending tick
    assert t.c.recv_nowait() == t0 + 1  # the first one; 2, 3, 4, 5 were dropped
    assert await t.c.recv() == t0 + 6  # the grid is kept
    assert now() == t0 + 6
    t.stop()


async def test_ticker_reset_restarts_the_grid() -> None:
    t0 = now()
    t = gotime.Ticker(10)
    await trio.sleep(3)
    t.reset(4)
    assert await t.c.recv() == t0 + 7
    assert await t.c.recv() == t0 + 11
    t.stop()
    await trio.sleep(100)
    assert len(t.c) == 0


async def test_timer_reset_and_stop_exact() -> None:
    t0 = now()
    t = gotime.Timer(10)
    await trio.sleep(4)
    assert t.reset(10) is True
    assert await t.c.recv() == t0 + 14
    assert t.reset(1) is False
    assert await t.c.recv() == t0 + 15
    t.reset(5)
    await trio.sleep(1)
    assert t.stop() is True
    await trio.sleep(100)
    assert len(t.c) == 0


async def test_after_func_timer_exact() -> None:
    t0 = now()
    fired: list[float] = []
    t = gotime.after_func(3, lambda: fired.append(now()))
    await trio.sleep(1)
    t.reset(5)  # from now: t0 + 6
    await trio.sleep(100)
    assert fired == [t0 + 6]


async def test_many_timers_fire_in_deadline_order() -> None:
    rng = random.Random(7)
    t0 = now()
    delays = [rng.uniform(0, 100) for _ in range(300)]
    out: Chan[float] = Chan(len(delays))
    timers = [gotime.after_func(d, lambda d=d: out.send_nowait(d)) for d in delays]
    stopped = {i for i in range(0, len(timers), 3) if timers[i].stop()}
    await trio.sleep(101)
    got = [out.recv_nowait() for _ in range(len(out))]
    assert got == sorted(d for i, d in enumerate(delays) if i not in stopped)
    assert now() == t0 + 101


async def test_an_hour_of_timeouts_takes_no_time() -> None:
    t0 = now()
    for _ in range(60):
        ctx, _ = with_timeout(background(), 60)
        await ctx.wait()
    assert now() == t0 + 3600

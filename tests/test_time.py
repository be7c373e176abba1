"""asyncgo.time on asyncio, uvloop and trio, in real time with generous bounds.

The exact arithmetic (tick times, dropped ticks, reset) runs on trio's MockClock in
test_time_mock.py; here the point is that every backend really fires, stops and
cleans up.
"""

from __future__ import annotations

import gc
import math
import random
import time
import weakref
from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest
from test_context import check_timers

from asyncgo import (
    Canceled,
    Chan,
    ChanClosed,
    DeadlineExceeded,
    Selected,
    WouldBlock,
    background,
    recv,
    select,
    with_cancel,
    with_cancel_cause,
    with_timeout,
)
from asyncgo._backend._timers import call_at
from asyncgo._chan import chan_of
from asyncgo.time import Ticker, Timer, _Alarm, after, after_func, sleep

pytestmark = pytest.mark.anyio

SLACK = 5.0  # seconds: an upper bound no healthy run gets near


def nothing_ready(c: Any) -> bool:
    try:
        c.recv_nowait()
    except WouldBlock:
        return True
    return False


# -- after -----------------------------------------------------------------------------


async def test_after_delivers_the_due_time_once() -> None:
    t0 = anyio.current_time()
    c = after(0.02)
    v = await c.recv()
    t1 = anyio.current_time()
    assert t0 + 0.02 <= v + 1e-3
    assert v <= t1 + 1e-3
    assert 0.015 <= t1 - t0 < SLACK
    assert nothing_ready(c)
    await anyio.sleep(0.03)
    assert nothing_ready(c)  # once only
    check_timers(0)


@pytest.mark.parametrize("seconds", [0, -5])
async def test_after_non_positive_fires_at_once(seconds: float) -> None:
    with anyio.fail_after(SLACK):
        await after(seconds).recv()


async def test_after_in_select_as_a_timeout() -> None:
    ch: Chan[int] = Chan()
    with anyio.fail_after(SLACK):
        r = await select(recv(ch), recv(after(0.01)))
    assert r.index == 1 and r.ok
    ch2: Chan[int] = Chan(1)
    ch2.send_nowait(7)
    r = await select(recv(ch2), recv(after(60)))
    assert r == Selected(0, 7, True)
    gc.collect()  # the losing after(60) is garbage: its timer is cancelled
    check_timers(0)


async def test_after_nobody_holds_leaves_nothing_scheduled() -> None:
    c = after(3600)
    check_timers(1)
    ch = weakref.ref(c._ch)  # type: ignore[attr-defined]
    del c
    gc.collect()
    assert ch() is None
    check_timers(0)


def test_timers_need_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match=r"^asyncgo: no running event loop"):
        after(1)
    with pytest.raises(RuntimeError, match=r"^asyncgo: no running event loop"):
        Timer(1)
    with pytest.raises(RuntimeError, match=r"^asyncgo: no running event loop"):
        Ticker(1)


TIMERS = {
    "after": lambda: after(3600),
    "Timer": lambda: Timer(3600).c,
    "Ticker": lambda: Ticker(3600).c,
}


@pytest.mark.parametrize("other", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", list(TIMERS))
def test_waiting_on_a_timer_from_another_event_loop_raises(
    anyio_backend: tuple[str, dict[str, object]], kind: str, other: str
) -> None:
    """Only the loop that armed a timer fills its channel: another loop's wait would never
    end, so it raises (as for a channel bound to another loop) instead."""
    made: list[Any] = []

    async def arm() -> None:
        made.append(TIMERS[kind]())

    async def wait_elsewhere() -> BaseException | None:
        with anyio.fail_after(SLACK):  # a hang guard only
            try:
                await made[0].recv()
            except RuntimeError as exc:
                return exc
        return None

    name, options = anyio_backend
    anyio.run(arm, backend=name, backend_options=options)
    err = anyio.run(wait_elsewhere, backend=other)
    assert isinstance(err, RuntimeError), err
    assert "event loop" in str(err) and "timer" in str(err)
    with pytest.raises(WouldBlock):  # nothing queued by the refused wait
        made[0].recv_nowait()


async def test_a_timer_channel_is_used_normally_on_its_own_loop() -> None:
    ch = after(0.001)
    with anyio.fail_after(SLACK):
        assert isinstance(await ch.recv(), float)
        t = Timer(0.001)
        assert isinstance(await t.c.recv(), float)
        with Ticker(0.001) as tk:
            assert isinstance(await tk.c.recv(), float)


@pytest.mark.parametrize(
    ("call", "exc", "msg"),
    [
        (lambda: after(math.nan), ValueError, r"^after: duration must not be NaN$"),
        (lambda: after("1"), TypeError, r"^after: duration must be a number of seconds, not str$"),
        (lambda: Timer(None), TypeError, r"^Timer: duration must be a number"),
        (lambda: Ticker(0), ValueError, r"^non-positive interval for Ticker \(0\.0 s\)$"),
        (lambda: Ticker(-1), ValueError, r"^non-positive interval for Ticker"),
        (lambda: Ticker(math.nan), ValueError, r"^Ticker: duration must not be NaN$"),
        (lambda: after_func(1, 42), TypeError, r"^time\.after_func: fn must be callable, not int$"),
        (lambda: after_func(True, print), TypeError, r"^after_func: duration must be a number"),
    ],
)
async def test_bad_input(call: Any, exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc, match=msg):
        call()


async def test_after_func_rejects_async_functions() -> None:
    async def later() -> None:
        pass

    with pytest.raises(TypeError, match=r"^time\.after_func: fn must be a plain \(sync\) function"):
        after_func(1, later)


# -- Timer -----------------------------------------------------------------------------


async def test_timer_fires() -> None:
    t0 = anyio.current_time()
    t = Timer(0.02)
    v = await t.c.recv()
    assert v >= t0 + 0.02 - 1e-3
    assert t.stop() is False  # already fired and received
    check_timers(0)


async def test_timer_stop_before_it_fires() -> None:
    t = Timer(0.02)
    assert t.stop() is True
    assert t.stop() is False
    await anyio.sleep(0.05)
    assert nothing_ready(t.c)
    check_timers(0)


async def test_timer_stop_discards_an_unreceived_value() -> None:
    """Go 1.23: no stale value after stop(), which reports the timer as stopped."""
    t = Timer(0)
    await anyio.sleep(0.02)
    assert len(t.c) == 1
    assert t.stop() is True
    assert nothing_ready(t.c)


async def test_timer_reset() -> None:
    t = Timer(60)
    assert t.reset(0.01) is True  # it was pending
    with anyio.fail_after(SLACK):
        await t.c.recv()
    assert t.reset(0.01) is False  # fired and received: not active
    with anyio.fail_after(SLACK):
        await t.c.recv()
    t2 = Timer(0)
    await anyio.sleep(0.02)
    assert t2.reset(60) is True  # the unreceived value is discarded (Go 1.23)
    assert nothing_ready(t2.c)
    t2.stop()
    check_timers(0)


async def test_timer_as_context_manager_stops_on_exit() -> None:
    with Timer(60) as t:
        check_timers(1)
    assert t.stop() is False
    check_timers(0)
    assert "idle" in repr(t)


# -- a due timer's value is there to receive (Go 1.23) -------------------------------------


def _hold_the_loop(seconds: float) -> None:
    """Keep the loop from running anything, its timers included, for *seconds*."""
    end = anyio.current_time() + seconds
    while anyio.current_time() < end:
        time.sleep(seconds / 4)


async def _take_nowait(c: Any) -> float:
    return float(c.recv_nowait())


async def _take_by_select(c: Any) -> float:
    r = await select(recv(c), default=True)
    assert r.index == 0, "nothing to receive from a timer past its due time"
    return float(r.value)


async def _take_by_len_then_recv(c: Any) -> float:
    assert len(c) == 1
    return float(await c.recv())


@pytest.mark.parametrize("take", [_take_nowait, _take_by_select, _take_by_len_then_recv])
async def test_a_receive_past_the_due_time_finds_the_value_before_the_loop_ran_the_timer(
    take: Any,
) -> None:
    """Go 1.23 runs a due timer on any receive from its channel: a task that kept the
    loop busy past the due time (so the loop could not run the timer) still gets it."""
    t0 = anyio.current_time()
    t = Timer(0.005)
    _hold_the_loop(0.02)
    v = await take(t.c)
    assert t0 + 0.005 <= v <= anyio.current_time()
    assert nothing_ready(t.c)
    assert t.stop() is False  # fired (just now) and received
    check_timers(0)


async def test_a_ticker_past_its_due_time_delivers_its_tick_and_stays_on_the_grid() -> None:
    tk = Ticker(0.005)
    first_due = tk._alarm.when
    _hold_the_loop(0.023)
    assert tk.c.recv_nowait() == first_due
    with anyio.fail_after(SLACK):
        nxt = await tk.c.recv()
    periods = (nxt - first_due) / 0.005
    assert round(periods) >= 4 and abs(periods - round(periods)) < 1e-6  # missed ones dropped
    tk.stop()
    check_timers(0)


async def test_stop_of_a_due_timer_the_loop_has_not_run_leaves_nothing_to_receive() -> None:
    t = Timer(0.005)
    _hold_the_loop(0.02)
    assert t.stop() is True  # Go: stop() runs it, then drains it: it was pending
    assert nothing_ready(t.c)
    check_timers(0)


async def test_a_sleep_until_the_due_time_finds_the_value() -> None:
    """On every loop: uvloop's timers count whole milliseconds, and a timer used to
    land a millisecond late (or a sleep to end a step early) now and then."""
    missed = []
    for i in range(150):
        t = Timer((0.001, 0.0015, 0.003)[i % 3])
        due = t._alarm.when
        await anyio.sleep_until(due)
        if anyio.current_time() >= due and nothing_ready(t.c):
            missed.append(i)
    assert not missed
    check_timers(0)


def _mock_trio() -> Any:
    import trio.testing

    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param("asyncio", id="asyncio"), pytest.param(_mock_trio(), id="trio-mockclock")],
)
@pytest.mark.parametrize("held", [False, True])
async def test_a_due_tick_is_dropped_while_the_last_one_waits(
    anyio_backend: Any, held: bool
) -> None:
    """Go runs a due ticker on a receive before it looks at the buffer: a tick due
    while the last one is still there is dropped, and the next one is on the grid.
    Exact on trio's MockClock (``held``: the clock jumps with no loop step between);
    asyncio sleeps in real time, with a period long enough for its steps."""
    clock: Any = None if anyio_backend == "asyncio" else anyio_backend[1]["clock"]
    p = 0.2 if clock is None else 0.01
    tk = Ticker(p)
    t0 = tk._alarm.when - p
    await anyio.sleep(1.5 * p)  # tick 1 waits in the buffer
    assert len(tk.c) == 1
    if held:  # tick 2 due, not run by the loop
        if clock is not None:
            clock.jump(p)
        else:
            _hold_the_loop(p)
    else:
        await anyio.sleep(p)  # tick 2 due and run by the loop: dropped there
    assert tk.c.recv_nowait() == t0 + p
    if clock is not None:
        assert nothing_ready(tk.c)  # tick 2 was dropped
    with anyio.fail_after(SLACK):
        v = await tk.c.recv()
    k = round((v - t0) / p, 6)
    # Tick 2 was dropped: tick 3 (or, on a real clock slowed down, a later one), on
    # the grid.
    assert k == 3.0 if clock is not None else (k >= 3.0 and k == int(k))
    tk.stop()


@pytest.mark.parametrize("kind", ["Timer", "Ticker"])
def test_a_timer_channel_read_once_its_loop_is_over_changes_nothing(
    anyio_backend: tuple[str, dict[str, object]], kind: str
) -> None:
    """A loop closed, or a trio run over, never fires its timers again: not even a
    receive, len() or repr() of a due timer's channel (in no loop, or in a later one)."""
    made: list[Any] = []

    async def arm() -> None:
        made.append(Timer(0.02) if kind == "Timer" else Ticker(0.02))

    name, options = anyio_backend
    anyio.run(arm, backend=name, backend_options=options)
    t = made[0]
    # (A run slowed down past the due time fired it already: the value is there.)
    n = 1 if t._alarm.handle is None or len(t.c._ch._buf) else 0
    time.sleep(0.03)  # due
    assert len(t.c) == n and f"len={n}" in repr(t.c)
    if n:
        t.c.recv_nowait()
    assert nothing_ready(t.c)

    async def read_in_a_later_run() -> int:
        return len(t.c)

    assert anyio.run(read_in_a_later_run, backend=name, backend_options=options) == 0
    assert nothing_ready(t.c)
    t.stop()


async def test_the_repr_of_a_due_timer_channel_changes_nothing() -> None:
    """(debug.dump() shows channels: looking must not run the timer.)"""
    t = Timer(0.001)
    _hold_the_loop(0.01)
    assert "len=0" in repr(t.c)
    assert t._alarm.handle is not None  # still the loop's to run
    assert len(t.c) == 1  # a receive-side look runs it
    t.stop()


def test_a_timer_on_a_millisecond_loop_is_due_at_the_first_tick_that_reaches_its_time() -> None:
    """uvloop counts a timer from its clock read again as the timer starts: a
    millisecond that ticked over in between must not make the timer late."""

    class Handle:
        def __init__(self, ms: int) -> None:
            self.ms, self.cancelled = ms, False

        def when(self) -> float:
            return self.ms / 1000

        def cancel(self) -> None:
            self.cancelled = True

    class MsLoop:  # uvloop's arithmetic, on a clock read from a script
        def __init__(self, *readings: int) -> None:
            self.readings = list(readings)
            self.started: list[Handle] = []

        def time(self) -> float:
            return self.readings.pop(0) / 1000

        def call_later(self, delay: float, fn: Any, *args: Any) -> Any:
            if round(delay * 1000) == 0:
                return object()  # uvloop: a call_soon handle, with no when()
            h = Handle(self.readings.pop(0) + round(delay * 1000))  # the clock, read anew
            self.started.append(h)
            return h

        def call_at(self, when: float, fn: Any, *args: Any) -> Any:
            raise AssertionError("uvloop's call_at rounds from a stale reading")

    MsLoop.__module__ = "uvloop.loop"
    # due 10.0105: the first tick at or after it is 10011 ms. The clock ticks over
    # between the reading and the start (10000 -> 10001): 10012, a tick late, so
    # the timer starts again and lands on 10011.
    loop = MsLoop(10000, 10001, 10001, 10001)
    h = call_at(cast("Any", loop), 10.0105, print)
    assert [x.ms for x in loop.started] == [10012, 10011]
    assert loop.started[0].cancelled and not loop.started[1].cancelled
    assert h is loop.started[1]
    # Just past a tick (float rounding): not that tick, the next one, never early.
    loop = MsLoop(10000, 10000)
    call_at(cast("Any", loop), 10.011000000001, print)
    assert [x.ms for x in loop.started] == [10012]
    loop = MsLoop(10000, 10000)
    call_at(cast("Any", loop), 10.011, print)
    assert [x.ms for x in loop.started] == [10011]
    # The clock ticks over at every try: the last try's timer is kept, late (a
    # cancelled one would never fire).
    loop = MsLoop(10000, 10001, 10001, 10002, 10002, 10003)
    h = call_at(cast("Any", loop), 10.0105, print)
    assert [x.cancelled for x in loop.started] == [True, True, False]
    assert h is loop.started[2] and h.ms == 10012
    # A subclass of uvloop's loop (defined elsewhere) counts milliseconds too.
    sub = type("MyLoop", (MsLoop,), {"__module__": "myapp"})(10000, 10000)
    call_at(cast("Any", sub), 10.0105, print)
    assert [x.ms for x in sub.started] == [10011]
    # Due already: at once.
    loop = MsLoop(10011)
    call_at(cast("Any", loop), 10.011, print)
    assert loop.started == []


def test_a_timer_run_early_waits_for_its_due_time() -> None:
    """asyncio runs a timer up to its clock's resolution early: never before the due time."""

    class Clock:
        now = 1.0
        armed: list[float] = []

        def time(self) -> float:
            return self.now

        def call_at(self, when: float, fn: Any, *args: Any) -> Any:
            self.armed.append(when)
            return SimpleNamespace(cancel=lambda: None)

    rt = Clock()
    ch: Chan[float] = Chan(1)
    alarm = _Alarm(cast("Any", rt), ch, None, 0.0)
    alarm.start(2.0)
    rt.now = 2.0 - 1e-9
    alarm._fire()  # early: armed again, nothing sent
    assert rt.armed == [2.0, 2.0]
    assert nothing_ready(ch)
    rt.now = 2.0
    alarm._fire()
    assert ch.recv_nowait() == 2.0


async def test_dropped_timer_cancels_its_alarm() -> None:
    t = Timer(3600)
    a = weakref.ref(t._alarm)
    del t
    await anyio.wait_all_tasks_blocked()
    gc.collect()
    assert a() is None  # nothing in the loop references it any more
    check_timers(0)


# -- Ticker ------------------------------------------------------------------------------


async def test_ticker_ticks_and_stops() -> None:
    with anyio.fail_after(SLACK):
        with Ticker(0.01) as t:
            ticks = [await t.c.recv() for _ in range(3)]
    assert ticks == sorted(ticks)
    assert all(b - a >= 0.01 - 1e-6 for a, b in zip(ticks, ticks[1:]))
    await anyio.sleep(0.03)
    assert nothing_ready(t.c)
    check_timers(0)
    assert "stopped" in repr(t)


async def test_ticker_keeps_one_pending_tick_for_a_slow_reader() -> None:
    t = Ticker(0.01)
    await anyio.sleep(0.1)
    assert len(t.c) == 1
    first = t.c.recv_nowait()
    # The next tick is a fresh one: the ones due while nobody read were dropped,
    # not queued. (It may be ready at once: the clock may just have crossed the
    # next grid point, and Go 1.23 delivers a due tick on any receive.)
    with anyio.fail_after(SLACK):
        nxt = await t.c.recv()
    assert nxt - first >= 0.05
    t.stop()


async def test_ticker_reset_changes_the_period() -> None:
    t = Ticker(60)
    t.reset(0.01)
    with anyio.fail_after(SLACK):
        a = await t.c.recv()
        b = await t.c.recv()
    steps = (b - a) / 0.01  # on the new grid (a tick may be dropped on a loaded machine)
    assert steps >= 1 - 1e-6 and steps == pytest.approx(round(steps))
    with pytest.raises(ValueError, match=r"^non-positive interval for Ticker\.reset"):
        t.reset(0)
    t.stop()


async def test_dropped_ticker_stops() -> None:
    t = Ticker(0.001)
    a = weakref.ref(t._alarm)
    await anyio.sleep(0.01)
    del t
    # trio: cancelling the timer task's sleep keeps the canceller's frames in a
    # traceback until that task runs once more.
    await anyio.wait_all_tasks_blocked()
    gc.collect()
    assert a() is None
    check_timers(0)


async def test_ticker_channel_alone_keeps_ticking() -> None:
    """Go's time.Tick: holding only the channel keeps the ticker alive."""
    c = Ticker(0.005).c
    gc.collect()
    with anyio.fail_after(SLACK):
        await c.recv()
        await c.recv()
    del c
    gc.collect()
    check_timers(0)


# -- after_func ------------------------------------------------------------------------------


async def test_after_func_runs_once() -> None:
    fired: list[float] = []
    t = after_func(0.01, lambda: fired.append(anyio.current_time()))
    await anyio.sleep(0.05)
    assert len(fired) == 1
    assert t.stop() is False
    assert nothing_ready(t.c)  # its channel never receives (Go: C is nil)
    check_timers(0)


async def test_after_func_stop_and_reset() -> None:
    fired: list[int] = []
    t = after_func(0.01, lambda: fired.append(1))
    assert t.stop() is True
    await anyio.sleep(0.03)
    assert fired == []
    assert t.reset(0.01) is False
    await anyio.sleep(0.05)
    assert fired == [1]
    assert t.reset(0) is False  # runs again after a reset
    await anyio.sleep(0.02)
    assert fired == [1, 1]


async def test_after_func_survives_its_dropped_timer() -> None:
    fired = anyio.Event()
    after_func(0.01, fired.set)  # Go's time.AfterFunc(d, f) without keeping the timer
    gc.collect()
    with anyio.fail_after(SLACK):
        await fired.wait()


async def test_after_func_exception_is_reported_and_later_timers_still_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An Exception is reported, not raised into the loop: on trio, raised from the
    instrument hook it would disable the instrument, and every later timer of the run."""
    from asyncgo._backend._timers import TrioRuntime, current_runtime

    reported: list[Any] = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)

    def bad() -> None:
        raise ArithmeticError("late")

    after_func(0, bad)
    await anyio.sleep(0.02)
    assert [type(r.exc_value) for r in reported] == [ArithmeticError]
    assert reported[0].object is bad
    t = Timer(0.001)
    await anyio.sleep(0.02)
    assert isinstance(t.c.recv_nowait(), float)
    t = Timer(3600)
    rt = current_runtime()
    if type(rt) is TrioRuntime:  # still an instrument while a timer is pending
        import trio

        trio.lowlevel.remove_instrument(rt)  # KeyError if trio had disabled it
        trio.lowlevel.add_instrument(rt)
    assert t.stop()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_after_func_base_exception_ends_the_run(
    anyio_backend: tuple[str, dict[str, object]], exc_type: type[BaseException]
) -> None:
    """A KeyboardInterrupt or SystemExit from the callback is not swallowed: on trio the
    callback runs in an instrument hook, where trio would print it and carry on."""

    def fn() -> None:
        raise exc_type

    async def main() -> str:
        after_func(0, fn)
        await anyio.sleep(0.05)  # wakes after the callback's due time
        return "the run went on"

    name, options = anyio_backend
    with pytest.raises(BaseException) as info:  # noqa: PT011 - checked below
        anyio.run(main, backend=name, backend_options=options)
    got: BaseException | None = info.value
    if name == "trio" and exc_type is not KeyboardInterrupt:
        # trio has no way to raise into a run: the timer task crashes it, caused by exc
        import trio

        assert isinstance(got, trio.TrioInternalError)
        while isinstance(got, BaseExceptionGroup) or isinstance(got, trio.TrioInternalError):
            got = got.exceptions[0] if isinstance(got, BaseExceptionGroup) else got.__cause__
    assert type(got) is exc_type


# -- timer methods belong to the loop's thread -----------------------------------------------

OFF_LOOP_CALLS = {
    "Timer.stop": lambda t, tk, af: t.stop(),
    "Timer.reset": lambda t, tk, af: t.reset(0.001),
    "Ticker.stop": lambda t, tk, af: tk.stop(),
    "Ticker.reset": lambda t, tk, af: tk.reset(0.001),
    "after_func timer": lambda t, tk, af: af.reset(0.001),
}


@pytest.mark.parametrize("where", ["thread", "asyncio", "trio"])
@pytest.mark.parametrize("call", list(OFF_LOOP_CALLS))
async def test_timer_methods_from_another_thread_raise(call: str, where: str) -> None:
    """From another thread (with or without an event loop of its own), while the timer's
    loop runs: RuntimeError naming the misuse, and the timer is left as it was."""
    t = Timer(3600)
    tk = Ticker(3600)
    af = after_func(3600, lambda: None)

    def attempt() -> object:
        try:
            return OFF_LOOP_CALLS[call](t, tk, af)
        except Exception as exc:
            return exc

    async def attempt_in_loop() -> object:
        return attempt()

    def other_thread() -> object:
        if where == "thread":
            return attempt()
        return anyio.run(attempt_in_loop, backend=where)

    err = await anyio.to_thread.run_sync(other_thread)
    assert isinstance(err, RuntimeError), err
    assert str(err).startswith("Timer.reset:" if call == "after_func timer" else f"{call}:")
    assert "another thread" in str(err)
    assert "must be called on that loop's thread" in str(err)
    # Nothing changed: all three are still pending, with their first deadline.
    assert "pending" in repr(t) and "pending" in repr(af) and "running" in repr(tk)
    assert t.stop() is True
    assert af.stop() is True
    tk.stop()
    check_timers(0)


MAKERS = {
    "Timer": lambda: Timer(3600),
    "Ticker": lambda: Ticker(3600),
    "after_func": lambda: after_func(3600, lambda: None),
}


@pytest.mark.parametrize("other", [None, "asyncio", "trio"])
@pytest.mark.parametrize("kind", list(MAKERS))
def test_reset_once_its_loop_is_over_raises_and_changes_nothing(
    anyio_backend: tuple[str, dict[str, object]], kind: str, other: str | None
) -> None:
    """That loop can never fire it again: reset raises before touching the timer (outside
    any loop or in a later one); stop still works."""
    made: list[Any] = []

    async def arm() -> None:
        made.append(MAKERS[kind]())

    name, options = anyio_backend
    anyio.run(arm, backend=name, backend_options=options)
    t = made[0]

    def reset() -> object:
        try:
            return t.reset(1)
        except Exception as exc:
            return exc

    async def reset_in_loop() -> object:
        return reset()

    err = reset() if other is None else anyio.run(reset_in_loop, backend=other)
    assert isinstance(err, RuntimeError), err
    assert str(err).startswith(f"{'Ticker' if kind == 'Ticker' else 'Timer'}.reset: ")
    assert "so it can never fire again" in str(err)
    if kind == "Ticker":
        assert "running" in repr(t)  # as it was
        t.stop()
        assert "stopped" in repr(t)
    else:
        assert "pending" in repr(t)
        assert t.stop() is True  # still scheduled (on a loop that will never run it)
        assert t.stop() is False


# -- sleep ---------------------------------------------------------------------------------


async def test_sleep_never_ends_before_its_time_on_the_loops_clock() -> None:
    """Go's TestSleep: the clock reads at least start + d after ``sleep(d)``.

    uvloop ends its own sleeps at a millisecond tick of its clock, and that tick can
    read below ``start + d`` in floats (``65911.865 + 0.001 == 65911.86600000001``:
    about one time in five on a clock of this machine's size, and half a millisecond
    short for a delay that rounds down): asyncgo's sleep there wakes at the first
    tick that reaches it, as its timers do."""
    for i in range(300):
        d = (0.001, 0.0015, 0.003, 0.0004)[i % 4]
        t0 = anyio.current_time()
        await sleep(d)
        assert anyio.current_time() >= t0 + d, (i, d)


async def test_sleep_without_context() -> None:
    t0 = anyio.current_time()
    await sleep(0.02)
    assert 0.015 <= anyio.current_time() - t0 < SLACK
    await sleep(-1)  # returns at once


@pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
        pytest.param(_mock_trio(), id="trio-mockclock"),
    ],
)
async def test_sleeps_wake_in_deadline_order_never_early(anyio_backend: Any) -> None:
    """Many tasks sleeping at once (on trio, all on the run's timer heap): a shorter
    sleep never wakes after a longer one, and each wakes no earlier than its own
    duration -- except on uvloop, which counts a timer from the time it cached when
    its loop iteration began, so a sleep begun late in a long iteration (a loaded
    machine) ends early by that much.

    The sleepers do not begin at the same instant on a real clock: each reads it in
    its own task step, and a loaded machine can stall between two steps for longer
    than the 5 ms between durations. So each is timed from its own start, and the
    order is checked on the deadlines that gives (on asyncio). On a real trio run,
    two sleeps due within one stall wake in the same tick, in trio's random order:
    the order is checked exactly on trio's MockClock (the run's same heap), where no
    stall exists."""
    uvloop = bool(anyio_backend[1].get("use_uvloop"))
    real_trio = anyio_backend == ("trio", {})
    rng = random.Random(11)
    durations = [0.005 * (i + 1) for i in range(12)]
    rng.shuffle(durations)
    woke: list[tuple[float, float, float]] = []  # (duration, start, end), in wake order
    await sleep(0.001)  # (the first sleep of a run sets up its timers: not between two reads)

    async def sleeper(d: float) -> None:
        start = anyio.current_time()
        await sleep(d)
        woke.append((d, start, anyio.current_time()))

    async with anyio.create_task_group() as tg:
        for d in durations:
            tg.start_soon(sleeper, d)
    assert len(woke) == len(durations)
    # (1e-9: start + d is rounded, e.g. 0.06 + 0.01 == 0.06999999999999999)
    assert all(
        (uvloop or end - start >= d - 1e-9) and end - start < SLACK for d, start, end in woke
    ), woke
    if not real_trio and not uvloop:
        # in deadline order (a sleeper's deadline is its start + d; the margin, under
        # the 5 ms between durations, is for the clock read inside sleep(), a few
        # microseconds after ours). Not on uvloop: its timers count from the time it
        # cached when the iteration began, not from our reads of the clock.
        due = [start + d for d, start, _ in woke]
        assert all(a <= b + 0.004 for a, b in zip(due, due[1:])), woke
    if "clock" in anyio_backend[1]:  # no stall on a virtual clock: all exact
        assert [d for d, _, _ in woke] == sorted(durations)
    check_timers(0)


@pytest.mark.parametrize("when", ["before", "while_asleep", "at_once_after"])
async def test_a_cancelled_sleep_raises_and_drops_its_timer(when: str) -> None:
    """Cancelled before it starts, while it sleeps, or in the same tick as other
    sleepers wake: the sleep raises the backend's cancellation, the others still
    wake, and no timer is left behind."""
    others_done: list[float] = []

    async def other(d: float) -> None:
        await sleep(d)
        others_done.append(d)

    async with anyio.create_task_group() as tg:
        for d in (0.001, 0.002):
            tg.start_soon(other, d)
        with anyio.CancelScope() as scope:
            if when == "before":
                scope.cancel()
            elif when == "while_asleep":
                tg.start_soon(_cancel_soon, scope, 0.0)
            else:
                tg.start_soon(_cancel_soon, scope, 0.001)
            await sleep(3600)
        assert scope.cancelled_caught
    assert sorted(others_done) == [0.001, 0.002]
    check_timers(0)


async def _cancel_soon(scope: anyio.CancelScope, after: float) -> None:
    if after:
        await sleep(after)
    else:
        await anyio.wait_all_tasks_blocked()
    scope.cancel()


async def test_sleep_forever_is_cancellable_and_leaves_no_timer() -> None:
    with anyio.move_on_after(0.01) as scope:
        await sleep(math.inf)
    assert scope.cancelled_caught
    check_timers(0)


@pytest.mark.parametrize("with_ctx", [False, True])
async def test_random_cancellation_of_many_sleepers(
    anyio_backend: tuple[str, dict[str, object]], with_ctx: bool
) -> None:
    """Seeded stress: 200 sleepers of random length, a random half cancelled at random
    moments; with a context, that context is also cancelled at a random moment.
    Each either slept its full time (uvloop: see the ordering test) or was
    cancelled, or got ``Canceled`` from its context, exactly one of them; no timer,
    no task and no receiver on the context's done channel is left."""
    uvloop = bool(anyio_backend[1].get("use_uvloop"))
    for seed in range(3):
        rng = random.Random(seed)
        outcome: dict[int, str] = {}
        t0 = anyio.current_time()
        ctx, cancel_ctx = with_cancel(background())

        async def sleeper(i: int, d: float, scope: anyio.CancelScope) -> None:
            with scope:
                try:
                    await (sleep(d, ctx) if with_ctx else sleep(d))
                except Canceled:
                    outcome[i] = "ctx"
                    return
                assert uvloop or anyio.current_time() - t0 >= d
                outcome[i] = "slept"
                return
            outcome[i] = "cancelled"

        async def canceller(scope: anyio.CancelScope, after: float) -> None:
            await sleep(after)
            scope.cancel()

        async def cancel_ctx_later(after: float) -> None:
            await sleep(after)
            cancel_ctx()

        async with anyio.create_task_group() as tg:
            if with_ctx:
                tg.start_soon(cancel_ctx_later, rng.uniform(0.005, 0.02))
            for i in range(200):
                scope = anyio.CancelScope()
                d = rng.uniform(0.0005, 0.02)
                tg.start_soon(sleeper, i, d, scope)
                if rng.random() < 0.5:
                    tg.start_soon(canceller, scope, rng.uniform(0, 0.02))
        assert len(outcome) == 200
        if with_ctx:
            done = chan_of(ctx.done())
            assert done._rw is None and not done._recvq
        cancel_ctx()
        check_timers(0)


async def test_sleep_returns_when_the_context_lasts() -> None:
    ctx, cancel = with_timeout(background(), 60)
    await sleep(0.01, ctx)
    cancel()


async def test_sleep_raises_err_when_the_context_ends_first() -> None:
    ctx, _ = with_timeout(background(), 0.02)
    t0 = anyio.current_time()
    with pytest.raises(DeadlineExceeded) as info:
        await sleep(60, ctx)
    assert anyio.current_time() - t0 < SLACK
    assert info.value is ctx.err()

    ctx2, cancel2 = with_cancel_cause(background())
    boom = RuntimeError("shutdown")
    async with anyio.create_task_group() as tg:

        async def stop_it() -> None:
            await anyio.wait_all_tasks_blocked()
            cancel2(boom)

        tg.start_soon(stop_it)
        with pytest.raises(Canceled) as info2:
            await sleep(60, ctx2)
    assert info2.value.__cause__ is boom


async def test_sleep_on_a_done_context_raises_at_once() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    with pytest.raises(Canceled):
        await sleep(0, ctx)
    with pytest.raises(Canceled):
        await sleep(60, ctx)


async def test_timer_and_context_in_one_select() -> None:
    ctx, cancel = with_cancel(background())
    t = Timer(60)
    async with anyio.create_task_group() as tg:

        async def stop_it() -> None:
            await anyio.wait_all_tasks_blocked()
            cancel()

        tg.start_soon(stop_it)
        r = await select(recv(t.c), recv(ctx.done()))
    assert r.index == 1
    assert t.stop() is True
    with pytest.raises(ChanClosed):
        ctx.done().recv_nowait()
    check_timers(0)


async def _a_timer() -> Timer:
    return Timer(3600)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_from_another_thread_once_the_loop_is_over_is_fine(backend: str) -> None:
    # A loop that is over is not "another loop": the same answer on every backend.
    import threading

    t = anyio.run(_a_timer, backend=backend)
    out: list[object] = []
    th = threading.Thread(target=lambda: out.append(t.stop()))
    th.start()
    th.join()
    assert out == [True]

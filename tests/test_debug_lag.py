"""asyncgo.debug.monitor_lag and watch_blocking: a blocked event loop (Go's ``go tool trace``).

Timing is only ever asserted with a wide margin: a loop blocked by ``time.sleep(0.3)``
must show a lag of at least half that, and be reported by a 50 ms watchdog; a loop
that only awaits must not be reported by a 250 ms one. What each test pins is
behaviour -- the report names the blocking function, comes once per episode, no
task or thread outlives its block, the body's exception is left alone.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from asyncgo import Chan, Deadlock, debug
from asyncgo._backend import _tasks

pytestmark = pytest.mark.anyio

WATCHDOG = "asyncgo blocking watchdog"
MONITOR = "asyncgo lag monitor"
BOUND = 10  # seconds: a hang guard, never reached unless something is broken

#: Tests of a block's own scope opt out of the asyncgo pytest plugin's ambient
#: deadlock detection, when the plugin is loaded (it is not by default here).
NO_AMBIENT_SCOPE = (
    pytest.mark.asyncgo_detect_deadlocks(False)
    if "asyncgo.testing.pytest_plugin" in sys.modules
    else pytest.mark.anyio
)


def parse_upload(until: Callable[[], bool] | None = None) -> None:
    """The bug under test: sync work on the event loop's thread.

    With *until*: 0.3 s at a time until ``until()`` holds (the watchdog has reported
    it), at most BOUND seconds -- one episode still, and the same blocking line; a
    single 0.3 s, under CPU load, could end before the watchdog thread had a turn.
    """
    deadline = time.monotonic() + BOUND
    while True:
        time.sleep(0.3)
        if until is None or until() or time.monotonic() >= deadline:
            return


def render_page(until: Callable[[], bool] | None = None) -> None:
    if until is None:
        time.sleep(0.3)
        return
    # Until *until()* holds (the watchdog has reported it), at most BOUND seconds: a
    # fixed 0.3 s, under CPU load, could end before the watchdog thread had a turn.
    deadline = time.monotonic() + BOUND
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)


def watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WATCHDOG]


def raw_tasks() -> dict[object, str]:
    """Every task of the loop, asyncgo's own helpers included: {task: name}."""
    return {t: _tasks.task_name(t) for t in _tasks.all_tasks()}


def reports_of(fn: Callable[[], None], reports: list[debug.BlockingReport]) -> list[Any]:
    return [r for r in reports if any(f.function.endswith("." + fn.__name__) for f in r.stack)]


# -- arguments -------------------------------------------------------------------------


BAD_SECONDS = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
@pytest.mark.parametrize(
    ("tool", "arg"), [(debug.monitor_lag, "interval"), (debug.watch_blocking, "threshold")]
)
def test_a_bad_number_of_seconds_is_rejected(tool: Any, arg: str, value: float) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^{tool.__name__}: {arg} must be a positive, finite number of seconds, "
        rf"got {value!r}$",
    ):
        tool(**{arg: value})


@pytest.mark.parametrize("value", ["0.1", None, True])
def test_seconds_must_be_numbers(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^monitor_lag: interval must be a number of seconds"):
        debug.monitor_lag(value)
    with pytest.raises(TypeError, match=r"^watch_blocking: threshold must be a number of seconds"):
        debug.watch_blocking(value)


def test_other_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^monitor_lag: window must be at least 1, got 0$"):
        debug.monitor_lag(0.05, window=0)
    with pytest.raises(TypeError, match=r"^monitor_lag: window must be an int, got 2.5$"):
        debug.monitor_lag(0.05, window=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^watch_blocking: on_block must be callable or None"):
        debug.watch_blocking(0.05, on_block="log")  # type: ignore[arg-type]
    # good ones are kept
    assert debug.monitor_lag(1).interval == 1.0
    assert debug.watch_blocking(0.25).threshold == 0.25


def test_watch_blocking_needs_a_running_loop() -> None:
    with (
        pytest.raises(RuntimeError, match=r"no running event loop"),
        debug.watch_blocking(0.05),
    ):
        pass  # pragma: no cover
    assert watchdogs() == []


# -- LagStats arithmetic, without an event loop ----------------------------------------------


def test_lag_stats_arithmetic() -> None:
    m = debug.monitor_lag(0.01, window=3)
    empty = m.stats()
    assert (empty.count, empty.mean, empty.max, empty.p50, empty.p99) == (0, 0.0, 0.0, 0.0, 0.0)
    assert empty.quantile(0.5) == 0.0
    for lag in (0.0005, 0.003, -0.001, 0.3, 0.004):  # a timer a hair early counts as 0
        m._record(lag)
    s = m.stats()
    assert s.interval == 0.01
    assert s.count == 5
    assert s.max == 0.3 and s.last == 0.004
    assert s.mean == pytest.approx((0.0005 + 0.003 + 0.0 + 0.3 + 0.004) / 5)
    assert s.recent == (0.0, 0.3, 0.004)  # the window: the latest 3, oldest first
    assert (s.p50, s.p99) == (0.004, 0.3)  # nearest rank over the window
    assert (s.quantile(0), s.quantile(1)) == (0.0, 0.3)
    buckets = dict(s.histogram)
    assert buckets[0.001] == 2  # 0.0005 and 0.0 (bounds are inclusive, as Prometheus' le)
    assert buckets[0.005] == 2  # 0.003, 0.004
    assert buckets[0.5] == 1  # 0.3
    assert sum(buckets.values()) == s.count and list(buckets)[-1] == math.inf
    m._record(0.001)
    assert dict(m.stats().histogram)[0.001] == 3
    assert str(s).startswith("loop lag over 5 wake-ups (every 10.0ms): mean 61.5ms")
    one = debug.monitor_lag(1.5)
    one._record(2.0)
    assert str(one.stats()) == (
        "loop lag over 1 wake-up (every 1.50s): mean 2.00s, p50 2.00s, p99 2.00s, max 2.00s"
    )
    with pytest.raises(ValueError, match=r"^quantile must be within 0..1, got 1.5$"):
        s.quantile(1.5)
    with pytest.raises(AttributeError):
        s.count = 0  # type: ignore[misc]  # frozen


# -- monitor_lag ------------------------------------------------------------------------


async def test_lag_monitor_sees_a_blocked_loop() -> None:
    async with debug.monitor_lag(interval=0.02) as lag:
        await anyio.sleep(0.05)
        parse_upload()  # blocks every task of the loop for 0.3 s
        # The monitor's timer is overdue: it runs (late) before this one fires.
        await anyio.sleep(0.05)
    s = lag.stats()
    assert s.max >= 0.15, s  # one wake-up came ~0.28 s late
    assert sum(n for bound, n in s.histogram if bound >= 0.2) >= 1
    assert s.quantile(1) == s.max  # the late wake-up is in the recent window
    assert s.count >= 2 and 0 < s.mean <= s.max


async def test_lag_monitor_counts_the_wake_up_overdue_at_exit() -> None:
    async with debug.monitor_lag(interval=0.02) as lag:
        await anyio.sleep(0)
        parse_upload()  # the block ends before the monitor could run again
    s = lag.stats()
    assert s.count >= 1 and s.max >= 0.15, s


async def test_lag_monitor_on_a_loop_that_only_awaits() -> None:
    def on_time(s: debug.LagStats) -> int:
        return sum(n for bound, n in s.histogram if bound < s.interval)

    async with debug.monitor_lag(interval=0.01) as lag:
        # Wait for the samples instead of sleeping a fixed 0.15 s: under CPU load one
        # wake-up came 0.19 s late, leaving 2 samples whose median was over the interval.
        with anyio.fail_after(10):
            while lag.stats().count < 3 or not on_time(lag.stats()):
                await anyio.sleep(0.01)
    s = lag.stats()
    assert s.count >= 3
    # Wake-ups measured on time: far below the interval a wrong measure (the whole
    # sleep instead of the lag) would show for every one of them.
    assert on_time(s) >= 1, s
    assert 0 <= s.p50 <= s.p99 <= s.max


async def test_lag_stats_are_readable_inside_and_frozen_after() -> None:
    lag = debug.monitor_lag(interval=0.01)
    assert lag.stats().count == 0
    async with lag as entered:
        assert entered is lag
        with anyio.fail_after(10):
            while lag.stats().count < 2:
                await anyio.sleep(0.01)
    after = lag.stats()
    await anyio.sleep(0.05)
    assert lag.stats().count == after.count >= 2  # nothing measures after the block


async def test_lag_monitor_task_lives_exactly_as_long_as_the_block() -> None:
    before = raw_tasks()
    visible = debug.num_tasks()
    async with debug.monitor_lag(interval=0.01):
        new = {t: n for t, n in raw_tasks().items() if t not in before}
        assert list(new.values()) == [MONITOR]
        # asyncgo's own helper: left out of the dump and the count, as Go's runtime's
        assert debug.num_tasks() == visible
        assert MONITOR not in debug.dump()
    assert [n for t, n in raw_tasks().items() if t not in before] == []


async def test_lag_monitor_leaves_the_body_exception_alone() -> None:
    before = raw_tasks()
    with pytest.raises(ValueError, match="^boom$") as info:
        async with debug.monitor_lag(interval=0.01):
            await anyio.sleep(0.02)
            raise ValueError("boom")
    assert type(info.value) is ValueError  # not an ExceptionGroup from the task group
    assert [n for t, n in raw_tasks().items() if t not in before] == []


async def test_lag_monitor_is_cancelled_with_its_body() -> None:
    # Cancelled once the monitor has measured (a 0.05 s deadline, under CPU load,
    # could expire while the block was being entered: no monitor, `lag` unbound).
    before = raw_tasks()
    lag = debug.monitor_lag(interval=0.01)
    with anyio.CancelScope() as scope:
        async with lag:
            with anyio.fail_after(BOUND):
                while lag.stats().count < 1:
                    await anyio.sleep(0.005)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert [n for t, n in raw_tasks().items() if t not in before] == []
    count = lag.stats().count
    assert count >= 1
    await anyio.sleep(0.03)
    assert lag.stats().count == count  # nothing measures after the cancelled block


async def test_lag_monitor_is_entered_once() -> None:
    lag = debug.monitor_lag(interval=0.01)
    async with lag:
        pass
    with pytest.raises(RuntimeError, match=r"^monitor_lag: this block was entered already"):
        async with lag:
            pass  # pragma: no cover


@NO_AMBIENT_SCOPE
@pytest.mark.parametrize("where", ["inside", "around"])
async def test_lag_monitor_keeps_deadlock_detection(where: str) -> None:
    """The monitor always has a timer pending: it must not hide a deadlock."""
    ch = Chan[int]()
    with anyio.fail_after(10), pytest.raises(Deadlock, match="chan recv"):
        if where == "inside":
            async with debug.detect_deadlocks(), debug.monitor_lag(interval=0.01):
                await ch.recv()
        else:
            async with debug.monitor_lag(interval=0.01), debug.detect_deadlocks():
                await ch.recv()


# -- watch_blocking ------------------------------------------------------------------------


async def test_watchdog_reports_the_blocking_function_once() -> None:
    reports: list[debug.BlockingReport] = []
    with debug.watch_blocking(threshold=0.05, on_block=reports.append) as w:
        assert len(watchdogs()) == 1
        parse_upload(until=lambda: bool(reports))
        await anyio.sleep(0)
    [r] = reports_of(parse_upload, reports)  # one report for the whole 0.3 s episode
    assert r.stack[0].function.endswith(".parse_upload")  # the blocking call's caller on top
    assert r.stack[0].filename == __file__
    assert any(f.function.endswith(".test_watchdog_reports_the_blocking_function_once")
               for f in r.stack)  # fmt: skip
    assert r.thread_id == threading.get_ident()
    assert r.threshold == 0.05 and r.duration >= 0.05
    assert w.episodes == len(reports) >= 1
    text = r.format()
    assert text.startswith("event loop blocked: no answer for ")
    assert "test_debug_lag.parse_upload(...)" in text
    assert "time.sleep(0.3)" in text  # the source line that blocks
    assert str(r) == text
    assert watchdogs() == []


async def test_watchdog_logs_a_warning_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asyncgo.debug")
    with debug.watch_blocking(threshold=0.05):
        render_page(until=lambda: any("render_page" in r.getMessage() for r in caplog.records))
        await anyio.sleep(0)
    [rec] = [r for r in caplog.records if "render_page" in r.getMessage()]
    assert rec.name == "asyncgo.debug" and rec.levelno == logging.WARNING
    assert rec.getMessage().startswith("event loop blocked: ")
    assert "test_debug_lag.render_page(...)" in rec.getMessage()


async def test_each_blocking_episode_is_reported() -> None:
    """Each blocking call is reported once, by name, and the loop's answer in between
    ends the first episode. Each call blocks until the watchdog has reported it (then
    0.25 s more, five thresholds, for a second report to show if there were one), and
    the loop answers before the second call: a fixed 0.3 s block and 0.1 s pause, under
    CPU load, could leave the watchdog thread no turn to ping inside the second block."""
    reports: list[debug.BlockingReport] = []
    reported = {"parse_upload": threading.Event(), "render_page": threading.Event()}

    def on_block(report: debug.BlockingReport) -> None:
        reports.append(report)
        for name, event in reported.items():
            if any(f.function.endswith("." + name) for f in report.stack):
                event.set()

    def parse_upload() -> None:
        reported["parse_upload"].wait(BOUND)  # (never reported: the asserts below fail)
        time.sleep(0.25)

    def render_page() -> None:
        reported["render_page"].wait(BOUND)
        time.sleep(0.25)

    with debug.watch_blocking(threshold=0.05, on_block=on_block) as w:
        parse_upload()
        answered = w._answered  # (the loop has not run since the block began)
        with anyio.fail_after(BOUND):  # the loop answers: the first episode ends
            while w._answered == answered:
                await anyio.sleep(0.001)
        render_page()
        await anyio.sleep(0)
    assert len(reports_of(parse_upload, reports)) == 1
    assert len(reports_of(render_page, reports)) == 1


async def test_no_report_for_a_loop_that_only_awaits() -> None:
    reports: list[debug.BlockingReport] = []
    ch = Chan[int]()

    async def producer() -> None:
        for i in range(30):
            await ch.send(i)
            await anyio.sleep(0.01)
        ch.close()

    with debug.watch_blocking(threshold=0.25, on_block=reports.append) as w:
        async with anyio.create_task_group() as tg:
            tg.start_soon(producer)
            async for _ in ch:
                pass
        await anyio.sleep(0.3)
    assert reports == [] and w.episodes == 0
    assert w._answered >= 2  # the watchdog did ping, and the loop answered


async def test_watchdog_thread_ends_with_the_block_also_on_exception() -> None:
    assert watchdogs() == []
    with pytest.raises(KeyError), debug.watch_blocking(threshold=0.05):
        [t] = watchdogs()
        assert t.daemon
        raise KeyError("boom")
    assert watchdogs() == [] and not t.is_alive()


async def test_watchdog_exit_is_prompt() -> None:
    """Leaving the block wakes the thread: it waits out neither the ping period nor a block."""
    started = time.monotonic()
    with debug.watch_blocking(threshold=30.0):
        await anyio.sleep(0.05)  # the first ping is answered; the thread waits 15 s for the next
    with debug.watch_blocking(threshold=30.0):
        time.sleep(0.05)  # leave while a ping is unanswered
    assert time.monotonic() - started < 10
    assert watchdogs() == []


async def test_watchdog_is_entered_once() -> None:
    w = debug.watch_blocking(threshold=0.05)
    with w:
        pass
    with pytest.raises(RuntimeError, match=r"^watch_blocking: this block was entered already"), w:
        pass  # pragma: no cover
    assert watchdogs() == []


async def test_an_on_block_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncgo.debug")

    def on_block(report: debug.BlockingReport) -> None:
        raise RuntimeError("exporter down")

    with debug.watch_blocking(threshold=0.05, on_block=on_block) as w:
        parse_upload(until=lambda: any("on_block" in r.getMessage() for r in caplog.records))
        await anyio.sleep(0)
    assert w.episodes >= 1
    [rec] = [r for r in caplog.records if "on_block" in r.getMessage()]
    assert rec.exc_info is not None and str(rec.exc_info[1]) == "exporter down"


@NO_AMBIENT_SCOPE
async def test_watchdog_keeps_deadlock_detection() -> None:
    """A ping in flight is a transient callback, not something that could wake a task."""
    ch = Chan[int]()
    with (
        anyio.fail_after(10),
        pytest.raises(Deadlock, match="chan recv"),
        debug.watch_blocking(threshold=0.01),
    ):
        async with debug.detect_deadlocks():
            await ch.recv()


BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


@pytest.mark.parametrize("runner", list(BACKENDS))
def test_watchdog_stops_when_the_loop_is_gone(runner: str) -> None:
    """A block never left (misuse) or left with a ping in flight: no hang, no error."""
    if runner == "uvloop":
        pytest.importorskip("uvloop")
    backend, options = BACKENDS[runner]
    leftover: list[debug.watch_blocking] = []

    async def main() -> None:
        with debug.watch_blocking(threshold=0.05):
            time.sleep(0.06)  # a ping is in flight as the block ends, and the loop closes
        w = debug.watch_blocking(threshold=0.05, on_block=lambda r: None)
        leftover.append(w.__enter__())  # never left: the loop ends under it
        await anyio.sleep(0.03)

    anyio.run(main, backend=backend, backend_options=options)
    [w] = leftover
    threads = watchdogs()
    for t in threads:
        t.join(timeout=10)  # its next ping fails: the loop is closed or the run finished
    assert not any(t.is_alive() for t in threads)
    w.__exit__(None, None, None)  # leaving late still works


@pytest.mark.parametrize("runner", list(BACKENDS))
def test_watchdog_reports_the_loop_thread_not_the_main_thread(runner: str) -> None:
    if runner == "uvloop":
        pytest.importorskip("uvloop")
    backend, options = BACKENDS[runner]
    reports: list[debug.BlockingReport] = []
    loop_thread: list[int] = []

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        with debug.watch_blocking(threshold=0.05, on_block=reports.append):
            parse_upload(until=lambda: bool(reports))
            await anyio.sleep(0)

    t = threading.Thread(
        target=anyio.run, args=(main,), kwargs={"backend": backend, "backend_options": options}
    )
    t.start()
    t.join(timeout=30)
    [r] = reports_of(parse_upload, reports)
    assert r.thread_id == loop_thread[0] != threading.get_ident()


class _Fatal(BaseException):
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["detect_deadlocks", "monitor_lag"])
@pytest.mark.parametrize("exc_type", [ValueError, _Fatal])
async def test_body_error_wins_over_an_enclosing_cancellation(
    which: str, exc_type: type[BaseException]
) -> None:
    """The body cancels an enclosing scope, then raises: the error comes out as
    itself (as from `asyncgo.Group`), neither lost to the cancellation nor wrapped
    in a group, on every backend."""
    err = exc_type("body error")
    with pytest.raises(exc_type) as info:
        with anyio.CancelScope() as outer:
            cm: Any = (
                debug.detect_deadlocks() if which == "detect_deadlocks" else debug.monitor_lag(0.01)
            )
            async with cm:
                outer.cancel()
                raise err
    assert info.value is err

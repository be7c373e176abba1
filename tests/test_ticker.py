"""The pools' ticker: loop wake-ups that keep short jobs' timers on time (Linux).

`WorkerPool` and ``stages.map(workers=n)`` hold their loop's ticker while they
run. These tests check its lifecycle on asyncio, uvloop and trio -- it starts
with the first job, stops when jobs stop starting (asyncio) and with the last
holder, and leaves no task, reader, descriptor or selector wrapper behind --
that asyncio and trio set the timer to each short wait (and none while busy),
that the deadlock detector does not take it for something that could wake a
task, and that it is off under trio's ``MockClock``, with ``ASYNCGO_TICK_US=0``
and where there is no ``timerfd``. Its effect on speed is measured in benchmarks/ (bench_pool.py,
bench_pipeline.py), not here.
"""

from __future__ import annotations

import asyncio
import gc
import os
import select
import sys
import warnings
from collections.abc import Awaitable, Callable

import anyio
import pytest
import trio
import trio.testing

from asyncgo import Chan, Deadlock, WorkerPool, debug, pipeline, stages
from asyncgo._backend import _tasks, _ticker

pytestmark = pytest.mark.anyio
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd: Linux")

BOUND = 10  # seconds: a hang guard, never reached unless something is broken


def current_ticker() -> _ticker.Ticker | None:
    """The running loop's ticker, if one was ever held on it (without holding it)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        if _ticker._trio_runvar is None:
            return None
        try:
            return _ticker._trio_runvar.get()  # type: ignore[no-any-return]
        except LookupError:
            return None
    return _ticker._asyncio_tickers.get(loop)


def ticker_tasks() -> list[trio.lowlevel.Task]:
    """trio: the ticker's system tasks alive now (none on asyncio: it has no task)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        found = []
        stack = [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            if task is None:
                continue
            if task.name == _ticker.TICKER_TASK:
                found.append(task)
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return found
    return []


def noting_the_ticker(seen: list[bool], factor: int) -> Callable[[int], Awaitable[int]]:
    """A job that notes whether the loop's ticker is active while it runs."""

    async def job(x: int) -> int:
        t = current_ticker()
        seen.append(t is not None and t.active)
        await anyio.sleep(0.001)
        return x * factor

    return job


async def sleep_then_return(x: int) -> int:
    await anyio.sleep(0.001)
    return x


def loop_selector() -> object | None:
    """asyncio: the running loop's selector (None on uvloop and trio)."""
    try:
        return getattr(asyncio.get_running_loop(), "_selector", None)
    except RuntimeError:
        return None


def assert_stopped(t: _ticker.Ticker) -> None:
    assert not t.active
    assert t._holders == 0
    assert t._fd is None and t._hook is None and t._selector is None
    assert not _tasks.QUIET_FDS
    assert ticker_tasks() == []
    selector = loop_selector()
    assert selector is None or "select" not in vars(selector), "the selector is still wrapped"


@linux_only
async def test_a_pool_ticks_while_jobs_run_and_stops_with_its_block() -> None:
    seen: list[bool] = []
    job = noting_the_ticker(seen, 1)

    with anyio.fail_after(BOUND):
        async with WorkerPool(workers=4) as pool:
            assert pool._ticker is not None and not pool._ticker.active  # no job yet
            hs = [await pool.submit(job, i) for i in range(20)]
            assert [await h for h in hs] == list(range(20))
            t = pool._ticker
    assert seen and all(seen), "a job ran while the ticker slept"
    assert pool._ticker is None
    assert_stopped(t)


@linux_only
async def test_map_ticks_while_calls_run_and_stops_with_the_stage() -> None:
    seen: list[bool] = []
    call = noting_the_ticker(seen, 2)

    with anyio.fail_after(BOUND):
        out = await (pipeline(range(30)) | stages.map(call, workers=5)).collect()
    assert out == [2 * x for x in range(30)]
    assert seen and all(seen)
    t = current_ticker()
    assert t is not None
    assert_stopped(t)


@linux_only
async def test_a_serial_map_and_an_executor_pool_hold_no_ticker() -> None:
    # (one call at a time cannot fall into lock-step waves; thread jobs use no loop timer)
    assert await (pipeline(range(3)) | stages.map(lambda x: x + 1)).collect() == [1, 2, 3]
    async with WorkerPool(workers=2, executor="thread") as pool:
        assert pool._ticker is None
        assert await (await pool.submit(abs, -3)) == 3
    t = current_ticker()
    assert t is None or (t._holders == 0 and not t.active)


@linux_only
async def test_pools_share_the_loop_ticker_until_the_last_one_ends() -> None:
    gate = anyio.Event()

    async def job() -> None:
        await gate.wait()

    with anyio.fail_after(BOUND):
        async with WorkerPool(workers=1) as a:
            ha = await a.submit(job)
            async with WorkerPool(workers=1) as b:
                assert a._ticker is b._ticker is not None
                t = a._ticker
                assert t._holders == 2
                hb = await b.submit(anyio.sleep, 0)
                await hb
            assert t._holders == 1
            gate.set()
            await ha
    assert_stopped(t)


@linux_only
async def test_the_ticker_stops_and_restarts_with_the_jobs(anyio_backend_name: str) -> None:
    if anyio_backend_name == "trio":
        pytest.skip("trio's ticker arms at each wait and stays until the pool ends")
    gate = anyio.Event()
    async with WorkerPool(workers=2) as pool:
        t = pool._ticker
        assert t is not None
        with anyio.fail_after(BOUND):
            h = await pool.submit(gate.wait)  # a long job: no job starts after it
            while t.active:  # (LINGER_NS, 5 ms, later)
                await anyio.sleep(0.002)
            assert t._fd is None and not _tasks.QUIET_FDS
            h2 = await pool.submit(anyio.sleep, 0)
            await h2
            assert t.active  # the next job started it again
            gate.set()
            await h
    assert_stopped(t)


@linux_only
async def test_the_timer_is_set_to_each_short_wait_while_jobs_start(
    anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if anyio_backend_name == "trio":
        pass  # (its instrument's before_io_wait)
    elif loop_selector() is None:
        pytest.skip("uvloop: no selector to wrap; its ticker is periodic")
    armed: list[tuple[int, int]] = []
    real_set = _ticker._TimerFd.set

    def spy(self: _ticker._TimerFd, first_ns: int, every_ns: int) -> None:
        armed.append((first_ns, every_ns))
        real_set(self, first_ns, every_ns)

    monkeypatch.setattr(_ticker._TimerFd, "set", spy)

    async def job() -> None:
        await anyio.sleep(0.002)

    # Few workers, long sleeps: the loop surely waits (a busy loop, which never
    # waits, sets nothing -- and a loaded machine could keep 10 workers busy).
    with anyio.fail_after(BOUND):
        async with WorkerPool(workers=2) as pool:
            hs = [await pool.submit(job) for _ in range(10)]
            for h in hs:
                await h
            t = pool._ticker
    assert armed, "no wait was shortened"
    # each shot is the loop's own timeout, once: at most the 2 ms sleep, never periodic
    assert all(0 < first <= 2_000_000 and every == 0 for first, every in armed), armed
    assert t is not None
    assert_stopped(t)


@linux_only
async def test_a_busy_loop_sets_no_timer(
    anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Jobs that never wait on a timer: the loop never waits for one, so nothing is set.
    if anyio_backend_name != "trio" and loop_selector() is None:
        pytest.skip("uvloop: its ticker is periodic")
    armed: list[int] = []
    monkeypatch.setattr(_ticker._TimerFd, "set", lambda self, a, b: armed.append(a))
    async with WorkerPool(workers=4) as pool:
        hs = [await pool.submit(anyio.sleep, 0) for _ in range(200)]
        for h in hs:
            await h
        assert pool._ticker is not None and pool._ticker.active
    assert armed == []


@linux_only
async def test_a_selector_wrapped_before_is_restored(anyio_backend_name: str) -> None:
    selector = loop_selector()
    if selector is None:
        pytest.skip("asyncio's selector loops only")
    calls: list[object] = []
    own = selector.select  # type: ignore[attr-defined]

    def theirs(timeout: float | None = None) -> object:
        calls.append(timeout)
        return own(timeout)

    selector.select = theirs  # type: ignore[attr-defined]
    try:
        async with WorkerPool(workers=2) as pool:
            hs = [await pool.submit(anyio.sleep, 0.001) for _ in range(6)]
            for h in hs:
                await h
            assert vars(selector)["select"] is not theirs  # (wrapped over it)
        assert vars(selector)["select"] is theirs
        n = len(calls)
        await anyio.sleep(0.001)
        assert len(calls) > n  # theirs still runs, and ran all along
    finally:
        del selector.select  # type: ignore[attr-defined]


@linux_only
async def test_a_deadlock_inside_a_ticking_pool_is_still_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_ticker, "LINGER_NS", 10**15)  # it ticks on while all are stuck
    never = Chan[int]()
    caught: list[Deadlock] = []
    with anyio.move_on_after(BOUND):  # (a hang guard)
        try:
            async with debug.detect_deadlocks():
                async with WorkerPool(workers=2) as pool:
                    h = await pool.submit(never.recv)
                    while not h.running():
                        await anyio.sleep(0)
                    assert pool._ticker is not None and pool._ticker.active
                    await h
        except Deadlock as e:
            caught.append(e)
        except ExceptionGroup as eg:  # pragma: no cover - reported as a group
            caught.extend(x for x in eg.exceptions if isinstance(x, Deadlock))
    assert caught, "the ticker hid the deadlock"
    t = current_ticker()
    assert t is not None
    assert_stopped(t)


@linux_only
async def test_debug_tasks_leaves_the_ticker_out() -> None:
    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(anyio.sleep, 0.05)
        names = {t.name for t in debug.tasks()}
        assert _ticker.TICKER_TASK not in names
        await h


class TestMockClock:
    """Under a virtual clock every wait is exact already: no ticker."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}

    async def test_no_ticker_under_mockclock(self) -> None:
        async with WorkerPool(workers=4) as pool:
            assert pool._ticker is None
            hs = [await pool.submit(anyio.sleep, 1) for _ in range(8)]
            for h in hs:
                await h
        assert ticker_tasks() == []


async def test_tick_us_zero_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ticker, "TICK_NS", 0)
    async with WorkerPool(workers=2) as pool:
        assert pool._ticker is None
        assert await (await pool.submit(anyio.sleep, 0.001)) is None
    assert await (pipeline(range(4)) | stages.map(abs, workers=2)).collect() == [0, 1, 2, 3]
    assert ticker_tasks() == []


async def test_no_timerfd_means_no_ticker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ticker, "_supported", False)
    async with WorkerPool(workers=2) as pool:
        assert pool._ticker is None
        assert await (await pool.submit(anyio.sleep, 0.001)) is None


@pytest.mark.parametrize(
    ("raw", "ns"),
    [("", 100_000), ("250", 250_000), ("0", 0), (" 50.5 ", 50_500), ("1000000", 10**9)],
)
def test_tick_us_setting(monkeypatch: pytest.MonkeyPatch, raw: str, ns: int) -> None:
    monkeypatch.setenv("ASYNCGO_TICK_US", raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _ticker._tick_ns() == ns


@pytest.mark.parametrize("raw", ["fast", "-1", "nan", "2000000"])
def test_a_bad_tick_us_setting_warns_and_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("ASYNCGO_TICK_US", raw)
    with pytest.warns(RuntimeWarning, match="ASYNCGO_TICK_US"):
        assert _ticker._tick_ns() == 100_000


@linux_only
@pytest.mark.parametrize("path", ["os", "ctypes"])
def test_timerfd_fires_once_or_periodically(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    if path == "os" and not hasattr(os, "timerfd_create"):
        pytest.skip("os.timerfd_create: Python 3.13+")
    if path == "ctypes":
        monkeypatch.delattr(os, "timerfd_create", raising=False)
    fd = _ticker._TimerFd()
    try:
        assert (fd._spec is None) == (path == "os")
        assert fd.read() == 0  # not armed: nothing to read, no blocking
        fd.set(1_000_000, 0)  # once, in 1 ms
        r, _, _ = select.select([fd.fd], [], [], BOUND)
        assert r == [fd.fd]
        assert fd.read() == 1
        assert fd.read() == 0
        fd.set(200_000, 200_000)  # every 0.2 ms
        total = 0
        while total < 3:
            r, _, _ = select.select([fd.fd], [], [], BOUND)
            assert r == [fd.fd]
            total += fd.read()
        fd.set(0, 0)  # disarmed
        fd.read()
        r, _, _ = select.select([fd.fd], [], [], 0.01)
        assert r == []
    finally:
        fd.close()


@linux_only
def test_a_loop_is_not_kept_alive_by_its_ticker() -> None:
    # The ticker is the loop's value in a WeakKeyDictionary: holding its loop strongly
    # would keep every loop that ever ran a pool (and its ticker) alive for good.
    async def main() -> None:
        async with WorkerPool(workers=2) as pool:
            await (await pool.submit(anyio.sleep, 0.001))

    for _ in range(200):
        asyncio.run(main())
    gc.collect()
    assert len(_ticker._asyncio_tickers) < 100


@linux_only
async def test_no_descriptor_left_means_the_jobs_run_without_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[int] = []

    def no_fd(self: _ticker._TimerFd) -> None:
        made.append(1)
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(_ticker, "_supported", True)  # (probed before: Linux has it)
    monkeypatch.setattr(_ticker._TimerFd, "__init__", no_fd)

    with anyio.fail_after(BOUND):
        async with WorkerPool(workers=4) as pool:
            hs = [await pool.submit(sleep_then_return, i) for i in range(20)]
            assert [await h for h in hs] == list(range(20))
        out = await (pipeline(range(20)) | stages.map(sleep_then_return, workers=4)).collect()
    assert out == list(range(20))
    assert len(made) == 2, "a job start retried the descriptor"  # once per holding
    t = current_ticker()
    assert t is not None
    assert_stopped(t)


@linux_only
async def test_a_failed_start_is_retried_after_some_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ticker, "_supported", True)
    monkeypatch.setattr(_ticker, "_RETRY_JOBS", 5)
    real_init = _ticker._TimerFd.__init__
    fail = [True]

    def flaky(self: _ticker._TimerFd) -> None:
        if fail[0]:
            fail[0] = False
            raise OSError(24, "Too many open files")
        real_init(self)

    monkeypatch.setattr(_ticker._TimerFd, "__init__", flaky)
    with anyio.fail_after(BOUND):
        async with WorkerPool(workers=1) as pool:
            t = pool._ticker
            assert t is not None
            for i in range(5):
                await (await pool.submit(anyio.sleep, 0))
                assert not t.active, f"retried at job {i + 1}"
            await (await pool.submit(anyio.sleep, 0))  # the 6th job: tried again
            assert t.active
    assert_stopped(t)


@linux_only
def test_running_out_of_descriptors_does_not_turn_the_ticker_off_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_ticker, "_supported", None)

    def no_fd(self: _ticker._TimerFd) -> None:
        raise OSError(24, "Too many open files")

    with monkeypatch.context() as m:
        m.setattr(_ticker._TimerFd, "__init__", no_fd)
        assert not _ticker._timerfd_works()
    assert _ticker._supported is None  # not remembered: asked again
    assert _ticker._timerfd_works()
    assert _ticker._supported is True


@linux_only
def test_threads_making_their_first_timers_at_once_share_one_ctypes_setup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each thread building its own itimerspec type and argtypes could mix one's type
    # with the other's function: every later timerfd_settime then fails.
    import ctypes
    import threading
    import time

    monkeypatch.delattr(os, "timerfd_create", raising=False)  # (3.13: the ctypes path)
    monkeypatch.setattr(_ticker, "_api", None)
    real_cdll = ctypes.CDLL

    def slow_cdll(*args: object, **kwargs: object) -> object:
        time.sleep(0.01)  # (every thread reaches the setup before one finishes it)
        return real_cdll(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ctypes, "CDLL", slow_cdll)
    start = threading.Barrier(8)
    got: list[object] = []

    def first_timer() -> None:
        start.wait()
        got.append(_ticker._libc())
        fd = _ticker._TimerFd()
        try:
            fd.set(1_000_000, 0)  # raised ctypes.ArgumentError with mixed types
        finally:
            fd.close()

    threads = [threading.Thread(target=first_timer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    assert len(got) == 8
    assert all(api is got[0] for api in got)


@linux_only
async def test_a_timer_that_cannot_be_set_fails_no_job_and_no_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: _ticker._TimerFd, first_ns: int, every_ns: int) -> None:
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(_ticker._TimerFd, "set", broken)

    with anyio.fail_after(BOUND):
        async with WorkerPool(workers=4) as pool:
            hs = [await pool.submit(sleep_then_return, i) for i in range(20)]
            assert [await h for h in hs] == list(range(20))
            t = pool._ticker
            assert t is not None
            assert t._retry_at > t.jobs  # given up for a while, not retried per job
    assert_stopped(t)

"""detect_deadlocks and threads the event loop did not start.

A bare ``threading.Thread`` or ``threading.Timer`` started inside the block that
will wake a task -- through ``from_thread``, ``call_soon_threadsafe``, trio's
``run_sync_soon``, a ``BlockingPortal`` or a context's thread-safe ``cancel()`` --
is invisible to the loop until it calls in. While it runs, the waiting tasks are
not asleep for good: no `Deadlock` (Go's detector counts a goroutine in a system
call as awake). A thread that ends without waking anyone, an idle worker of a
thread pool, and threads that were there before the block do not hold detection
off. On asyncio, uvloop and trio; under trio's ``MockClock`` too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
from _guards import wall_guard

from asyncgo import Canceled, Chan, ChanClosed, Deadlock, background, debug, with_cancel
from asyncgo.sync import WaitGroup

pytestmark = pytest.mark.anyio

BOUND = 10  # seconds: generous, never reached unless detection is broken
PAUSE = 0.15  # how long a thread works before it calls in


def call_in_later(fn: Callable[[], object], how: str) -> threading.Thread:
    """A bare thread that sleeps, then runs *fn* on the loop (or, "direct", in itself)."""
    token = anyio.lowlevel.current_token()
    native: Callable[[Callable[[], object]], object]
    if how == "native":
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio

            native = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            native = loop.call_soon_threadsafe

    def target() -> None:
        time.sleep(PAUSE)
        if how == "from_thread":
            anyio.from_thread.run_sync(fn, token=token)
        elif how == "native":
            native(fn)
        else:
            fn()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


# -- no false positive while such a thread runs ----------------------------------------


@pytest.mark.parametrize("how", ["from_thread", "native"])
async def test_a_thread_that_closes_a_channel_later(how: str) -> None:
    ch = Chan[int]()
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            t = call_in_later(ch.close, how)
            with pytest.raises(ChanClosed):
                await ch.recv()
    t.join()


async def test_a_thread_that_cancels_a_context_later() -> None:
    ctx, cancel = with_cancel(background())
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            t = call_in_later(cancel, "direct")  # cancel() is safe from any thread
            await ctx.wait()
    assert isinstance(ctx.err(), Canceled)
    t.join()


async def test_a_timer_that_cancels_a_context_later() -> None:
    ctx, cancel = with_cancel(background())
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            timer = threading.Timer(PAUSE, cancel)
            timer.start()
            await ctx.done().recv_ok()
    assert isinstance(ctx.err(), Canceled)
    timer.join()


async def test_tasks_wait_for_a_thread_that_sends_through_a_portal() -> None:
    ch = Chan[int]()
    got: list[int] = []

    async def recv_all() -> None:
        async for v in ch:
            got.append(v)

    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks(), anyio.from_thread.BlockingPortal() as portal:

            def produce() -> None:
                for i in range(3):
                    time.sleep(PAUSE / 3)
                    portal.call(ch.send, i)
                portal.call(ch.close)

            t = threading.Thread(target=produce, daemon=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(recv_all)
                t.start()
    t.join()
    assert got == [0, 1, 2]


async def test_a_waitgroup_released_by_a_thread() -> None:
    wg = WaitGroup()
    wg.add(1)
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            t = call_in_later(wg.done, "from_thread")
            await wg.wait()
    t.join()


def closer(ch: Chan[int]) -> Callable[..., None]:
    """A function that closes *ch* on its loop from any thread (any arguments)."""
    token = anyio.lowlevel.current_token()

    def close(*_: object) -> None:
        anyio.from_thread.run_sync(ch.close, token=token)

    return close


def slow_close(close: Callable[..., None]) -> None:
    time.sleep(PAUSE)
    close()


async def test_a_job_given_to_a_pool_thread_started_before_the_block() -> None:
    """A pool's worker is there before the block (a module-level executor, warmed
    up): a job it is given inside the block is seen, whenever its thread started."""
    ch = Chan[int]()
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        ex.submit(lambda: None).result()  # its worker now exists, idle
        with anyio.fail_after(BOUND):
            async with debug.detect_deadlocks():
                ex.submit(slow_close, closer(ch))
                with pytest.raises(ChanClosed):
                    await ch.recv()


async def test_a_job_handed_to_a_multiprocessing_thread_pool() -> None:
    """The job goes through the pool's own queue and handler thread: the watcher
    gives other threads real time before it reports."""
    import multiprocessing.pool

    ch = Chan[int]()
    pool = multiprocessing.pool.ThreadPool(1)
    try:
        with anyio.fail_after(BOUND):
            async with debug.detect_deadlocks():
                pool.apply_async(slow_close, (closer(ch),))
                with pytest.raises(ChanClosed):
                    await ch.recv()
    finally:
        pool.terminate()


async def test_a_callback_run_by_a_multiprocessing_pool() -> None:
    """The pool's result-handler thread runs a job's callback: it counts while results
    are due. (A thread pool here: a process pool's callbacks go the same way.)"""
    import multiprocessing.pool

    ch = Chan[int]()
    pool = multiprocessing.pool.ThreadPool(1)
    try:
        with anyio.fail_after(BOUND):
            async with debug.detect_deadlocks():
                pool.apply_async(time.sleep, (PAUSE,), callback=closer(ch))
                with pytest.raises(ChanClosed):
                    await ch.recv()
    finally:
        pool.terminate()


async def test_a_process_pool_executor_done_callback() -> None:
    """A job runs in another process; the executor's thread runs its done-callback."""
    import multiprocessing

    ch = Chan[int]()
    ex = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        with anyio.fail_after(BOUND):
            async with debug.detect_deadlocks():
                ex.submit(time.sleep, PAUSE).add_done_callback(closer(ch))
                with pytest.raises(ChanClosed):
                    await ch.recv()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# -- detection goes on ------------------------------------------------------------------


async def test_a_jam_after_a_bare_thread_ended_is_reported() -> None:
    """The thread ends without calling in: nothing kicks the watcher, which looks
    again after a pause."""
    with anyio.fail_after(BOUND), pytest.raises(Deadlock, match="chan recv"):
        async with debug.detect_deadlocks():
            t = threading.Thread(target=time.sleep, args=(PAUSE,), daemon=True)
            t.start()
            await Chan[int]().recv()
    assert not t.is_alive()


async def test_a_jam_after_a_timer_fired_is_reported() -> None:
    fired = threading.Event()
    with anyio.fail_after(BOUND), pytest.raises(Deadlock, match="chan recv"):
        async with debug.detect_deadlocks():
            threading.Timer(PAUSE, fired.set).start()
            await Chan[int]().recv()
    assert fired.is_set()


async def test_idle_pool_threads_do_not_hold_detection_off(anyio_backend_name: str) -> None:
    """Workers of anyio's, asyncio's and concurrent.futures' thread pools, and trio's
    thread cache, started in the block and idle since."""
    with anyio.fail_after(BOUND), pytest.raises(Deadlock, match="chan recv"):
        async with debug.detect_deadlocks():
            assert await anyio.to_thread.run_sync(lambda: 7) == 7
            if anyio_backend_name == "asyncio":
                assert await asyncio.to_thread(lambda: 8) == 8
                with concurrent.futures.ThreadPoolExecutor(2) as ex:
                    fut = ex.submit(lambda: 9)
                    assert await anyio.to_thread.run_sync(fut.result) == 9
                    await Chan[int]().recv()  # the executor's worker idles
            await Chan[int]().recv()


async def test_a_jam_once_a_pools_jobs_are_done_is_reported() -> None:
    """Pools started inside the block whose work is done do not hold a report off."""
    import multiprocessing.pool

    ch = Chan[int]()
    pool = multiprocessing.pool.ThreadPool(2)
    try:
        with anyio.fail_after(BOUND), pytest.raises(Deadlock, match="chan recv"):
            async with debug.detect_deadlocks():
                with concurrent.futures.ThreadPoolExecutor(2) as ex:
                    assert await anyio.to_thread.run_sync(ex.submit(lambda: 1).result) == 1
                    assert await anyio.to_thread.run_sync(pool.apply_async(int, ("2",)).get) == 2
                    await ch.recv()
    finally:
        pool.terminate()


async def test_a_raw_thread_started_in_the_block() -> None:
    """``_thread.start_new_thread``: `threading` does not know it, but counts it once
    it runs. (Unlike ``Thread.start()``, starting one does not wait for it to run:
    the watcher gives other threads a millisecond before it reports, which a loaded
    machine may not honour, so here the test waits for it.)"""
    import _thread

    ch = Chan[int]()
    close = closer(ch)
    running = threading.Event()

    def run() -> None:
        running.set()
        slow_close(close)

    from asyncgo._backend._tasks import _raw_threads

    base = _raw_threads()
    try:
        with anyio.fail_after(BOUND):
            async with debug.detect_deadlocks():
                _thread.start_new_thread(run, ())
                assert running.wait(BOUND)
                with pytest.raises(ChanClosed):
                    await ch.recv()
    finally:
        # Counted, not told apart (one ending as another starts goes unseen): let it
        # end before the next test (another backend's run of this one) starts one.
        deadline = time.monotonic() + BOUND
        while _raw_threads() > base and time.monotonic() < deadline:
            time.sleep(0.01)


async def test_threads_there_before_the_block_are_left_out() -> None:
    """A thread started before the block -- here one blocked for good -- is taken for
    the test's infrastructure (xdist's, pytest-timeout's, a server's): a jam is
    reported as before."""
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        with anyio.fail_after(BOUND), pytest.raises(Deadlock, match="chan recv"):
            async with debug.detect_deadlocks():
                await Chan[int]().recv()
    finally:
        stop.set()
        t.join()


async def test_a_thread_blocked_for_a_while_holds_the_report_off() -> None:
    """While a thread started in the block runs, the tasks it could wake are not
    asleep for good: nothing is reported. Here it waits until a timer started
    before the block (left out) releases it, well after a report would have come."""
    stop = threading.Event()
    ch = Chan[int]()
    token = anyio.lowlevel.current_token()

    def worker() -> None:
        stop.wait()
        anyio.from_thread.run_sync(ch.send_nowait, 5, token=token)

    release = threading.Timer(0.3, stop.set)
    release.start()
    with anyio.fail_after(BOUND):
        async with debug.detect_deadlocks():
            t = threading.Thread(target=worker, daemon=True)
            t.start()
            assert await ch.recv() == 5
    t.join()
    release.join()


class TestVirtualClock:
    """Under trio's MockClock the watcher waits for such a thread in real time, on a
    worker thread of its own: no timer on the virtual clock (autojump would leap to
    it)."""

    @pytest.fixture(params=["autojump", "manual"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
        import trio.testing

        if request.param == "autojump":
            return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
        return "trio", {"clock": trio.testing.MockClock()}

    async def test_a_thread_that_cancels_a_context_later(self) -> None:
        ctx, cancel = with_cancel(background())
        with wall_guard(BOUND) as guard:
            async with debug.detect_deadlocks():
                t0 = anyio.current_time()
                t = call_in_later(cancel, "direct")
                await ctx.done().recv_ok()
                assert anyio.current_time() - t0 < 1.0  # the watcher moved no clock
        assert not guard.cancelled_caught
        assert isinstance(ctx.err(), Canceled)
        t.join()

    async def test_a_jam_after_a_bare_thread_ended_is_reported(self) -> None:
        with wall_guard(BOUND) as guard, pytest.raises(Deadlock, match="chan recv"):
            async with debug.detect_deadlocks():
                threading.Thread(target=time.sleep, args=(PAUSE,), daemon=True).start()
                await Chan[int]().recv()
        assert not guard.cancelled_caught

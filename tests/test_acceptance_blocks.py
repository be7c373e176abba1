"""Black-box acceptance tests for DESIGN.md's "Building blocks" section.

Written from DESIGN.md and Go's semantics only (sync, x/sync/semaphore,
x/sync/singleflight, x/time/rate, time), through the public API. Timing logic
runs on trio's MockClock (the ``Test*Mock`` classes); everything else runs on
asyncio, uvloop and trio.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

import asyncgo
import asyncgo.rate as rate
import asyncgo.singleflight as singleflight
import asyncgo.sync as gosync
import asyncgo.time as gotime
from asyncgo import (
    Canceled,
    DeadlineExceeded,
    WouldBlock,
    background,
    with_cancel,
    with_timeout,
)

UNHELD = r"(?i)unlock|not (locked|held|acquired)|unheld|release"


async def settle(rounds: int = 30) -> None:
    """Let every runnable task run until it blocks (backend-agnostic)."""
    for _ in range(rounds):
        await anyio.lowlevel.checkpoint()


class _Mock:
    """Tests in subclasses run on trio with a fresh autojumping MockClock."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": MockClock(autojump_threshold=0)})


# --------------------------------------------------------------------------
# module layout
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "WaitGroup",
        "Mutex",
        "RWMutex",
        "Once",
        "once_func",
        "once_value",
        "Cond",
        "Semaphore",
        "Pool",
    ],
)
def test_sync_primitives_are_reexported_at_top_level(name: str) -> None:
    assert getattr(asyncgo, name) is getattr(gosync, name)


def test_singleflight_group_is_not_the_top_level_group() -> None:
    assert asyncgo.Group is not singleflight.Group
    assert not hasattr(singleflight.Group, "go")  # top-level Group is the errgroup
    assert hasattr(asyncgo.Group, "go")


async def test_top_level_after_func_is_context_after_func() -> None:
    called: list[str] = []
    ctx, cancel = with_cancel(background())
    stop = asyncgo.after_func(ctx, lambda: called.append("ctx done"))
    assert callable(stop)
    assert called == []
    cancel()
    with anyio.fail_after(5):
        while not called:
            await anyio.sleep(0.001)
    assert called == ["ctx done"]
    assert stop() is False  # already ran: Go's stop() reports false
    assert asyncgo.after_func is not gotime.after_func


async def test_context_after_func_stop_prevents_call() -> None:
    called: list[str] = []
    ctx, cancel = with_cancel(background())
    stop = asyncgo.after_func(ctx, lambda: called.append("x"))
    assert stop() is True
    assert stop() is False
    cancel()
    await anyio.sleep(0.01)
    assert called == []


# --------------------------------------------------------------------------
# sync.WaitGroup
# --------------------------------------------------------------------------


async def test_waitgroup_waits_for_every_done() -> None:
    wg = gosync.WaitGroup()
    finished: list[int] = []

    async def work(i: int) -> None:
        await anyio.sleep(0.001 * i)
        finished.append(i)
        wg.done()

    async with anyio.create_task_group() as tg:
        for i in range(5):
            wg.add(1)
            tg.start_soon(work, i)
        with anyio.fail_after(5):
            await wg.wait()
        assert sorted(finished) == [0, 1, 2, 3, 4]


async def test_waitgroup_wait_on_zero_returns_at_once_and_is_reusable() -> None:
    wg = gosync.WaitGroup()
    with anyio.fail_after(5):
        await wg.wait()
    wg.add(2)
    wg.done()
    wg.done()
    with anyio.fail_after(5):
        await wg.wait()


async def test_waitgroup_releases_every_waiter() -> None:
    wg = gosync.WaitGroup()
    wg.add(1)
    released: list[int] = []

    async def waiter(i: int) -> None:
        await wg.wait()
        released.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(waiter, i)
        await settle()
        assert released == []
        wg.done()
    assert sorted(released) == [0, 1, 2]


def test_waitgroup_negative_counter_raises() -> None:
    wg = gosync.WaitGroup()
    with pytest.raises((ValueError, RuntimeError), match=r"(?i)negative"):
        wg.done()
    wg2 = gosync.WaitGroup()
    wg2.add(1)
    with pytest.raises((ValueError, RuntimeError), match=r"(?i)negative"):
        wg2.add(-2)


async def test_waitgroup_cancelled_wait_leaves_no_trace() -> None:
    wg = gosync.WaitGroup()
    wg.add(1)
    with anyio.move_on_after(0.01) as scope:
        await wg.wait()
    assert scope.cancelled_caught
    wg.done()  # counter is still 1 -> 0, not disturbed by the cancelled wait
    with anyio.fail_after(5):
        await wg.wait()


# --------------------------------------------------------------------------
# sync.Mutex
# --------------------------------------------------------------------------


async def test_mutex_mutual_exclusion() -> None:
    mu = gosync.Mutex()
    inside = 0
    peak = 0

    async def worker() -> None:
        nonlocal inside, peak
        for _ in range(5):
            async with mu:
                inside += 1
                peak = max(peak, inside)
                await anyio.lowlevel.checkpoint()
                inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(worker)
    assert peak == 1


async def test_mutex_lock_unlock_try_lock() -> None:
    mu = gosync.Mutex()
    await mu.lock()
    assert mu.try_lock() is False
    mu.unlock()
    assert mu.try_lock() is True
    mu.unlock()


def test_mutex_unlock_of_unlocked_raises() -> None:
    mu = gosync.Mutex()
    with pytest.raises(RuntimeError, match=UNHELD):
        mu.unlock()


async def test_mutex_may_be_unlocked_by_another_task() -> None:
    # Go: "A locked Mutex is not associated with a particular goroutine."
    mu = gosync.Mutex()
    await mu.lock()

    async def unlocker() -> None:
        mu.unlock()

    async with anyio.create_task_group() as tg:
        tg.start_soon(unlocker)
    assert mu.try_lock() is True
    mu.unlock()


async def test_mutex_cancelled_waiter_leaves_no_trace() -> None:
    mu = gosync.Mutex()
    await mu.lock()
    with anyio.move_on_after(0.01) as scope:
        await mu.lock()
    assert scope.cancelled_caught
    mu.unlock()
    # the cancelled waiter did not take the lock on its way out
    assert mu.try_lock() is True
    mu.unlock()


async def test_mutex_waiter_gets_lock_after_unlock() -> None:
    mu = gosync.Mutex()
    await mu.lock()
    got: list[str] = []

    async def waiter() -> None:
        async with mu:
            got.append("w")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await settle()
        assert got == []
        mu.unlock()
    assert got == ["w"]


# --------------------------------------------------------------------------
# sync.RWMutex
# --------------------------------------------------------------------------


async def test_rwmutex_readers_share() -> None:
    rw = gosync.RWMutex()
    inside = 0
    peak = 0
    gate = anyio.Event()

    async def reader() -> None:
        nonlocal inside, peak
        async with rw.read():
            inside += 1
            peak = max(peak, inside)
            await gate.wait()
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(reader)
        await settle()
        assert peak == 3
        assert rw.try_lock() is False
        gate.set()
    assert rw.try_lock() is True
    rw.unlock()


async def test_rwmutex_writer_excludes_readers_and_writers() -> None:
    rw = gosync.RWMutex()
    async with rw.write():
        assert rw.try_rlock() is False
        assert rw.try_lock() is False
    assert rw.try_rlock() is True
    rw.runlock()


async def test_rwmutex_waiting_writer_blocks_new_readers() -> None:
    rw = gosync.RWMutex()
    order: list[str] = []
    await rw.rlock()

    async def writer() -> None:
        await rw.lock()
        order.append("writer")
        await anyio.lowlevel.checkpoint()
        rw.unlock()

    async def late_reader() -> None:
        await rw.rlock()
        order.append("late reader")
        rw.runlock()

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        await settle()
        # writer-preferring: a pending writer keeps new readers out
        assert rw.try_rlock() is False
        tg.start_soon(late_reader)
        await settle()
        assert order == []
        rw.runlock()
    assert order == ["writer", "late reader"]


async def test_rwmutex_cancelled_writer_lets_blocked_readers_in() -> None:
    rw = gosync.RWMutex()
    await rw.rlock()
    got: list[str] = []

    async def late_reader() -> None:
        async with rw.read():
            got.append("r")

    async with anyio.create_task_group() as tg:
        wscope = anyio.CancelScope()

        async def writer() -> None:
            with wscope:
                await rw.lock()
                rw.unlock()

        tg.start_soon(writer)
        await settle()
        tg.start_soon(late_reader)
        await settle()
        assert got == []
        wscope.cancel()  # the waiting writer leaves: no trace
        with anyio.fail_after(5):
            while not got:
                await anyio.sleep(0.001)
        assert got == ["r"]
    rw.runlock()
    assert rw.try_lock() is True
    rw.unlock()


def test_rwmutex_unlock_of_unlocked_raises() -> None:
    rw = gosync.RWMutex()
    with pytest.raises(RuntimeError, match=UNHELD):
        rw.runlock()
    with pytest.raises(RuntimeError, match=UNHELD):
        rw.unlock()


# --------------------------------------------------------------------------
# sync.Once / once_func / once_value
# --------------------------------------------------------------------------


async def test_once_runs_fn_once_and_callers_wait_for_it() -> None:
    once = gosync.Once()
    calls = 0
    done_flag = False
    seen: list[bool] = []

    async def init() -> None:
        nonlocal calls, done_flag
        calls += 1
        await anyio.sleep(0.01)
        done_flag = True

    async def caller() -> None:
        await once.do(init)
        seen.append(done_flag)  # Go: no Do returns before f returned

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(caller)
    assert calls == 1
    assert seen == [True] * 5
    await once.do(init)
    assert calls == 1


async def test_once_error_reaches_runner_and_once_is_done() -> None:
    once = gosync.Once()
    calls = 0

    async def boom() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await once.do(boom)
    await once.do(boom)  # Go: a panicking f still counts as done
    assert calls == 1


async def test_once_func_calls_once() -> None:
    calls = 0

    async def init() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.001)

    f = gosync.once_func(init)
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(f)
    await f()
    assert calls == 1


async def test_once_func_reraises_on_every_call() -> None:
    # Go's OnceFunc: if f panics, the returned function panics with the same
    # value on every call.
    calls = 0

    async def boom() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad init")

    f = gosync.once_func(boom)
    for _ in range(3):
        with pytest.raises(ValueError, match="bad init"):
            await f()
    assert calls == 1


async def test_once_value_returns_the_one_value() -> None:
    calls = 0

    async def make() -> list[int]:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.001)
        return [calls]

    get = gosync.once_value(make)
    results: list[list[int]] = []

    async def caller() -> None:
        results.append(await get())

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(caller)
    results.append(await get())
    assert calls == 1
    assert all(r is results[0] for r in results)
    assert results[0] == [1]


async def test_once_value_reraises_on_every_call() -> None:
    calls = 0

    async def boom() -> int:
        nonlocal calls
        calls += 1
        raise ValueError("no value")

    get = gosync.once_value(boom)
    for _ in range(3):
        with pytest.raises(ValueError, match="no value"):
            await get()
    assert calls == 1


# --------------------------------------------------------------------------
# sync.Cond
# --------------------------------------------------------------------------


async def test_cond_signal_wakes_one_broadcast_wakes_all() -> None:
    cond = gosync.Cond()
    woken: list[int] = []

    async def waiter(i: int) -> None:
        async with cond:
            await cond.wait()
            woken.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(waiter, i)
        await settle()
        assert woken == []
        cond.signal()
        await settle()
        assert len(woken) == 1
        cond.broadcast()
        await settle()
        assert sorted(woken) == [0, 1, 2]


async def test_cond_wait_relocks_before_returning() -> None:
    mu = gosync.Mutex()
    cond = gosync.Cond(mu)
    ready = False
    held_after_wait: list[bool] = []

    async def waiter() -> None:
        await mu.lock()
        while not ready:
            await cond.wait()
        held_after_wait.append(mu.try_lock() is False)
        mu.unlock()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await settle()
        # wait() released the lock while waiting
        assert mu.try_lock() is True
        ready = True
        cond.signal()
        mu.unlock()
    assert held_after_wait == [True]


async def test_cond_cancelled_wait_consumes_no_signal() -> None:
    cond = gosync.Cond()
    woken: list[str] = []
    scope = anyio.CancelScope()

    async def victim() -> None:
        with scope:
            async with cond:
                await cond.wait()
                woken.append("victim")

    async def other() -> None:
        async with cond:
            await cond.wait()
            woken.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(victim)
        await settle()
        tg.start_soon(other)
        await settle()
        scope.cancel()
        await settle()
        cond.signal()
        with anyio.fail_after(5):
            while not woken:
                await anyio.sleep(0.001)
    assert woken == ["other"]
    assert cond.L.try_lock() is True  # type: ignore[attr-defined]


async def test_cond_wait_without_lock_raises() -> None:
    cond = gosync.Cond()
    with anyio.fail_after(5), pytest.raises(RuntimeError):
        await cond.wait()


# --------------------------------------------------------------------------
# sync.Semaphore (x/sync/semaphore.Weighted)
# --------------------------------------------------------------------------


async def test_semaphore_weighted_acquire_release() -> None:
    sem = gosync.Semaphore(10)
    await sem.acquire(7)
    assert sem.try_acquire(4) is False
    assert sem.try_acquire(3) is True
    assert sem.try_acquire(1) is False
    sem.release(10)
    assert sem.try_acquire(10) is True
    sem.release(10)
    async with sem:
        assert sem.try_acquire(10) is False
    assert sem.try_acquire(10) is True


async def test_semaphore_is_fifo_large_request_not_starved() -> None:
    sem = gosync.Semaphore(10)
    await sem.acquire(8)
    order: list[str] = []

    async def take(name: str, n: int) -> None:
        await sem.acquire(n)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "big", 5)
        await settle()
        # 2 are free, but a waiter is queued: Go's TryAcquire fails, Acquire queues
        assert sem.try_acquire(1) is False
        tg.start_soon(take, "small", 1)
        await settle()
        assert order == []
        sem.release(3)  # 5 free: exactly the head's request
        await settle()
        assert order == ["big"]  # the small one stays queued behind it
        sem.release(1)
    assert order == ["big", "small"]
    sem.release(10)  # 5 of ours + 5 (big) - 1 + 1 (small)
    assert sem.try_acquire(10) is True


async def test_semaphore_acquire_with_done_ctx_fails_and_takes_nothing() -> None:
    sem = gosync.Semaphore(3)
    ctx, cancel = with_cancel(background())
    cancel()
    with pytest.raises(Canceled):
        await sem.acquire(1, ctx)
    assert sem.try_acquire(3) is True


async def test_semaphore_cancelled_head_waiter_unblocks_those_behind() -> None:
    sem = gosync.Semaphore(10)
    await sem.acquire(8)
    ctx, cancel = with_cancel(background())
    got: list[str] = []
    errors: list[BaseException] = []

    async def big() -> None:
        try:
            await sem.acquire(5, ctx)
        except Canceled as exc:
            errors.append(exc)

    async def small() -> None:
        await sem.acquire(1)
        got.append("small")

    async with anyio.create_task_group() as tg:
        tg.start_soon(big)
        await settle()
        tg.start_soon(small)
        await settle()
        assert got == []
        cancel()  # the big waiter leaves; the small one now fits in the 2 free
        with anyio.fail_after(5):
            while not got:
                await anyio.sleep(0.001)
    assert len(errors) == 1
    sem.release(9)
    assert sem.try_acquire(10) is True


async def test_semaphore_anyio_cancelled_acquire_leaves_no_trace() -> None:
    sem = gosync.Semaphore(2)
    await sem.acquire(2)
    with anyio.move_on_after(0.01):
        await sem.acquire(1)
    sem.release(2)
    assert sem.try_acquire(2) is True


def test_semaphore_release_more_than_held_raises() -> None:
    sem = gosync.Semaphore(2)
    with pytest.raises((RuntimeError, ValueError), match=r"(?i)release|held"):
        sem.release(1)


class TestSemaphoreMock(_Mock):
    async def test_acquire_raises_deadline_exceeded_when_ctx_times_out(self) -> None:
        sem = gosync.Semaphore(1)
        await sem.acquire(1)
        start = anyio.current_time()
        ctx, _cancel = with_timeout(background(), 2.0)
        with pytest.raises(DeadlineExceeded):
            await sem.acquire(1, ctx)
        assert anyio.current_time() - start == pytest.approx(2.0)
        sem.release(1)
        assert sem.try_acquire(1) is True

    async def test_acquire_more_than_size_does_not_hang_past_ctx(self) -> None:
        sem = gosync.Semaphore(2)
        ctx, _cancel = with_timeout(background(), 1.0)
        with anyio.fail_after(10), pytest.raises(Exception):  # noqa: B017, PT011
            await sem.acquire(3, ctx)
        assert sem.try_acquire(2) is True


# --------------------------------------------------------------------------
# sync.Pool
# --------------------------------------------------------------------------


def test_pool_factory_and_reuse() -> None:
    made: list[bytearray] = []

    def new() -> bytearray:
        b = bytearray()
        made.append(b)
        return b

    pool = gosync.Pool(new)
    assert made == []
    a = pool.get()
    assert len(made) == 1
    pool.put(a)
    assert pool.get() is a
    b = pool.get()  # empty again: factory
    assert b is not a
    assert len(made) == 2


# --------------------------------------------------------------------------
# rate.Limiter (x/time/rate)
# --------------------------------------------------------------------------


def test_every_and_inf() -> None:
    assert rate.every(0.1) == pytest.approx(10.0)
    assert rate.every(2) == pytest.approx(0.5)
    assert rate.every(0) == rate.INF  # Go: Every(d <= 0) is Inf
    assert math.isinf(rate.INF)


async def test_limiter_inf_allows_everything() -> None:
    lim = rate.Limiter(rate.INF, 0)
    assert all(lim.allow() for _ in range(1000))
    assert lim.allow(10_000)
    r = lim.reserve(50)
    assert r.ok
    assert r.delay() == 0
    with anyio.fail_after(5):
        await lim.wait(100)  # n > burst is fine with an infinite limit (Go)


async def test_limiter_wait_n_greater_than_burst_fails_at_once() -> None:
    lim = rate.Limiter(1, 3)
    with anyio.fail_after(5), pytest.raises(Exception, match=r"(?i)burst"):  # noqa: PT011
        await lim.wait(4)
    assert lim.tokens() == pytest.approx(3, abs=0.5)


async def test_limiter_wait_with_done_ctx_raises_ctx_err() -> None:
    lim = rate.Limiter(1, 1)
    ctx, cancel = with_cancel(background())
    cancel()
    with pytest.raises(Canceled):
        await lim.wait(1, ctx)


async def test_limiter_limit_zero_allows_only_burst() -> None:
    lim = rate.Limiter(0, 2)
    assert lim.allow()
    assert lim.allow()
    assert not lim.allow()
    # current x/time/rate: a reservation on a drained zero-rate limiter never comes due
    assert math.isinf(lim.reserve().delay())


class TestRateMock(_Mock):
    async def test_initial_tokens_equal_burst(self) -> None:
        lim = rate.Limiter(10, 5)
        assert lim.tokens() == pytest.approx(5)
        assert lim.limit == 10
        assert lim.burst == 5

    async def test_allow_consumes_burst_then_refills(self) -> None:
        lim = rate.Limiter(10, 5)
        assert [lim.allow() for _ in range(6)] == [True] * 5 + [False]
        assert lim.tokens() == pytest.approx(0)
        await anyio.sleep(0.1)
        assert lim.tokens() == pytest.approx(1)
        assert lim.allow()
        assert not lim.allow()
        await anyio.sleep(10)
        assert lim.tokens() == pytest.approx(5)  # capped at burst

    async def test_allow_n(self) -> None:
        lim = rate.Limiter(1, 5)
        assert not lim.allow(6)  # more than burst: never
        assert lim.allow(3)
        assert not lim.allow(3)  # a failed allow takes nothing
        assert lim.allow(2)

    async def test_reserve_delay(self) -> None:
        lim = rate.Limiter(10, 1)
        r1 = lim.reserve()
        assert r1.ok
        assert r1.delay() == pytest.approx(0)
        r2 = lim.reserve()
        assert r2.ok
        assert r2.delay() == pytest.approx(0.1)
        r3 = lim.reserve(1)
        assert r3.delay() == pytest.approx(0.2)
        await anyio.sleep(0.05)
        assert r3.delay() == pytest.approx(0.15)

    async def test_reserve_more_than_burst_is_not_ok(self) -> None:
        lim = rate.Limiter(10, 2)
        r = lim.reserve(3)
        assert not r.ok
        assert math.isinf(r.delay())  # Go: InfDuration
        assert lim.tokens() == pytest.approx(2)  # nothing taken

    async def test_reservation_cancel_returns_tokens(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        r = lim.reserve()
        assert r.delay() == pytest.approx(1.0)
        assert lim.tokens() == pytest.approx(-1)
        r.cancel()
        assert lim.tokens() == pytest.approx(0)
        r2 = lim.reserve()
        assert r2.delay() == pytest.approx(1.0)  # not 2.0: the slot came back

    async def test_reservation_cancel_after_its_time_does_nothing(self) -> None:
        lim = rate.Limiter(1, 3)
        assert lim.allow(3)
        r = lim.reserve()
        assert r.delay() == pytest.approx(1.0)
        await anyio.sleep(1.5)
        assert lim.tokens() == pytest.approx(0.5)
        r.cancel()  # Go: a reservation whose time has passed is not restored
        assert lim.tokens() == pytest.approx(0.5)

    async def test_wait_blocks_until_token(self) -> None:
        lim = rate.Limiter(10, 1)
        start = anyio.current_time()
        await lim.wait()
        assert anyio.current_time() == pytest.approx(start)
        await lim.wait()
        assert anyio.current_time() - start == pytest.approx(0.1)
        await lim.wait(1, background())
        assert anyio.current_time() - start == pytest.approx(0.2)

    async def test_wait_fails_at_once_when_deadline_comes_first(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        start = anyio.current_time()
        ctx, _cancel = with_timeout(background(), 0.5)
        with pytest.raises(Exception):  # noqa: B017, PT011
            await lim.wait(1, ctx)
        assert anyio.current_time() == pytest.approx(start)  # at once
        assert lim.tokens() == pytest.approx(0)  # nothing reserved

    async def test_wait_succeeds_when_deadline_is_later(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        ctx, _cancel = with_timeout(background(), 2.0)
        start = anyio.current_time()
        await lim.wait(1, ctx)
        assert anyio.current_time() - start == pytest.approx(1.0)

    async def test_wait_cancelled_by_ctx_returns_tokens(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        ctx, cancel = with_cancel(background())
        errors: list[BaseException] = []

        async def waiter() -> None:
            try:
                await lim.wait(1, ctx)
            except Canceled as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.3)
            cancel()
        assert len(errors) == 1
        assert lim.tokens() == pytest.approx(0.3)  # not -0.7: reservation undone

    async def test_wait_cancelled_by_anyio_leaves_no_trace(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        with anyio.move_on_after(0.3) as scope:
            await lim.wait()
        assert scope.cancelled_caught
        assert lim.tokens() == pytest.approx(0.3)

    async def test_set_limit_keeps_accumulated_tokens(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        await anyio.sleep(0.5)
        lim.set_limit(10)
        assert lim.limit == 10
        assert lim.tokens() == pytest.approx(0.5)
        await anyio.sleep(0.02)
        assert lim.tokens() == pytest.approx(0.7)

    async def test_set_burst(self) -> None:
        lim = rate.Limiter(1, 1)
        lim.set_burst(5)
        assert lim.burst == 5
        await anyio.sleep(10)
        assert lim.tokens() == pytest.approx(5)
        assert lim.allow(5)
        lim.set_burst(2)
        with pytest.raises(Exception, match=r"(?i)burst"):  # noqa: PT011
            await lim.wait(3)


# --------------------------------------------------------------------------
# singleflight
# --------------------------------------------------------------------------


async def test_singleflight_single_caller_not_shared() -> None:
    async def fetch(x: int) -> int:
        return x * 2

    async with singleflight.Group() as sf:
        assert await sf.do("k", fetch, 21) == (42, False)
        # nothing is cached: a later call runs fn again
        assert await sf.do("k", fetch, 5) == (10, False)


async def test_singleflight_concurrent_callers_share_one_call() -> None:
    calls = 0
    gate = anyio.Event()

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "v"

    results: list[tuple[str, bool]] = []

    async def caller() -> None:
        results.append(await sf.do("key", fetch))

    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(caller)
        await settle()
        gate.set()
    assert calls == 1
    assert results == [("v", True)] * 4


async def test_singleflight_distinct_keys_do_not_share() -> None:
    calls: list[str] = []
    gate = anyio.Event()

    async def fetch(key: str) -> str:
        calls.append(key)
        await gate.wait()
        return key

    results: dict[str, Any] = {}

    async def caller(key: str) -> None:
        results[key] = await sf.do(key, fetch, key)

    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(caller, "a")
        tg.start_soon(caller, "b")
        await settle()
        gate.set()
    assert sorted(calls) == ["a", "b"]
    assert results == {"a": ("a", False), "b": ("b", False)}


async def test_singleflight_error_reaches_every_waiter() -> None:
    gate = anyio.Event()
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise LookupError("db down")

    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await sf.do("k", fail)
        except LookupError as exc:
            errors.append(exc)

    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(caller)
        await settle()
        gate.set()
    assert calls == 1
    assert len(errors) == 3
    assert all(str(e) == "db down" for e in errors)


async def test_singleflight_one_waiter_cancelled_others_unaffected() -> None:
    gate = anyio.Event()
    calls = 0
    fn_cancelled = False

    async def fetch() -> int:
        nonlocal calls, fn_cancelled
        calls += 1
        try:
            await gate.wait()
        except BaseException:
            fn_cancelled = True
            raise
        return 7

    results: list[tuple[int, bool]] = []
    victim = anyio.CancelScope()

    async def caller(scope: anyio.CancelScope | None) -> None:
        if scope is None:
            results.append(await sf.do("k", fetch))
        else:
            with scope:
                await sf.do("k", fetch)

    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(caller, victim)
        await settle()
        tg.start_soon(caller, None)
        tg.start_soon(caller, None)
        await settle()
        victim.cancel()
        await settle()
        gate.set()
    assert victim.cancelled_caught
    assert not fn_cancelled
    assert calls == 1
    assert results == [(7, True), (7, True)]


async def test_singleflight_first_caller_cancelled_others_still_served() -> None:
    # the caller that started the call leaving must not cancel it
    gate = anyio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 1

    results: list[tuple[int, bool]] = []
    first = anyio.CancelScope()

    async def starter() -> None:
        with first:
            await sf.do("k", fetch)

    async def follower() -> None:
        results.append(await sf.do("k", fetch))

    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(starter)
        await settle()
        tg.start_soon(follower)
        await settle()
        first.cancel()
        await settle()
        gate.set()
    assert calls == 1
    assert results == [(1, True)]


async def test_singleflight_call_cancelled_when_every_waiter_left() -> None:
    calls = 0
    fn_cancelled = anyio.Event()

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        try:
            await anyio.sleep_forever()
        finally:
            fn_cancelled.set()
        return 0  # pragma: no cover

    scopes = [anyio.CancelScope(), anyio.CancelScope()]

    async def caller(scope: anyio.CancelScope) -> None:
        with scope:
            await sf.do("k", fetch)

    async with singleflight.Group() as sf:
        async with anyio.create_task_group() as tg:
            for s in scopes:
                tg.start_soon(caller, s)
            await settle()
            scopes[0].cancel()
            await settle()
            assert not fn_cancelled.is_set()  # one waiter is still there
            scopes[1].cancel()
            with anyio.fail_after(5):
                await fn_cancelled.wait()
        assert calls == 1
        assert all(s.cancelled_caught for s in scopes)  # each saw its own cancellation

        # the key is free again: a new do starts a new call
        async def quick() -> str:
            return "fresh"

        with anyio.fail_after(5):
            assert await sf.do("k", quick) == ("fresh", False)


async def test_singleflight_forget_starts_a_new_call() -> None:
    gate = anyio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        n = calls
        await gate.wait()
        return n

    results: list[tuple[int, bool]] = []

    async def caller() -> None:
        results.append(await sf.do("k", fetch))

    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await settle()
        sf.forget("k")
        tg.start_soon(caller)
        await settle()
        assert calls == 2  # Go: after Forget, Do calls fn instead of waiting
        gate.set()
    assert sorted(v for v, _ in results) == [1, 2]


# --------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------


async def test_time_after_func_runs_and_stop() -> None:
    fired: list[str] = []
    t = gotime.after_func(0.001, lambda: fired.append("ding"))
    assert isinstance(t, gotime.Timer)
    with anyio.fail_after(5):
        while not fired:
            await anyio.sleep(0.001)
    assert fired == ["ding"]
    assert t.stop() is False
    later = gotime.after_func(60, lambda: fired.append("never"))
    assert later.stop() is True
    assert later.stop() is False


async def test_ticker_non_positive_raises() -> None:
    with pytest.raises(ValueError):
        gotime.Ticker(0)
    with pytest.raises(ValueError):
        gotime.Ticker(-1)


class TestTimeMock(_Mock):
    async def test_after_delivers_once(self) -> None:
        start = anyio.current_time()
        ch = gotime.after(1.0)
        v = await ch.recv()
        assert isinstance(v, float)
        assert anyio.current_time() - start == pytest.approx(1.0)
        await anyio.sleep(5)
        with pytest.raises(WouldBlock):
            ch.recv_nowait()

    async def test_after_in_select_times_out(self) -> None:
        never: asyncgo.Chan[int] = asyncgo.Chan()
        start = anyio.current_time()
        r = await asyncgo.select(asyncgo.recv(never), asyncgo.recv(gotime.after(0.5)))
        assert r.index == 1
        assert anyio.current_time() - start == pytest.approx(0.5)

    async def test_ticker_ticks_every_period(self) -> None:
        start = anyio.current_time()
        t = gotime.Ticker(1.0)
        try:
            ticks = [await t.c.recv() for _ in range(3)]
        finally:
            t.stop()
        assert [x - start for x in ticks] == pytest.approx([1.0, 2.0, 3.0])

    async def test_ticker_drops_ticks_for_slow_reader(self) -> None:
        start = anyio.current_time()
        t = gotime.Ticker(1.0)
        try:
            await anyio.sleep(5.5)
            first = t.c.recv_nowait()  # one tick kept
            assert first - start == pytest.approx(1.0)
            with pytest.raises(WouldBlock):
                t.c.recv_nowait()  # the ticks at 2..5 were dropped
            nxt = await t.c.recv()
            assert anyio.current_time() - start == pytest.approx(6.0)
            assert nxt - start == pytest.approx(6.0)
        finally:
            t.stop()

    async def test_ticker_stop_no_more_ticks(self) -> None:
        t = gotime.Ticker(1.0)
        await t.c.recv()
        t.stop()
        await anyio.sleep(5)
        with pytest.raises(WouldBlock):
            t.c.recv_nowait()

    async def test_ticker_stop_discards_pending_tick(self) -> None:
        # Go 1.23: after Stop no stale value is received (Timer and Ticker)
        t = gotime.Ticker(1.0)
        await anyio.sleep(1.5)
        t.stop()
        with pytest.raises(WouldBlock):
            t.c.recv_nowait()

    async def test_ticker_reset_changes_period(self) -> None:
        start = anyio.current_time()
        t = gotime.Ticker(1.0)
        try:
            t.reset(3.0)
            a = await t.c.recv()
            b = await t.c.recv()
        finally:
            t.stop()
        assert a - start == pytest.approx(3.0)
        assert b - start == pytest.approx(6.0)

    async def test_timer_fires_once(self) -> None:
        start = anyio.current_time()
        t = gotime.Timer(2.0)
        v = await t.c.recv()
        assert v - start == pytest.approx(2.0)
        await anyio.sleep(10)
        with pytest.raises(WouldBlock):
            t.c.recv_nowait()
        assert t.stop() is False

    async def test_timer_stop_before_fire(self) -> None:
        t = gotime.Timer(1.0)
        assert t.stop() is True
        assert t.stop() is False
        await anyio.sleep(5)
        with pytest.raises(WouldBlock):
            t.c.recv_nowait()

    async def test_timer_stop_after_unreceived_fire_is_go123(self) -> None:
        # Go 1.23: the channel is synchronous; an expired but unreceived timer
        # is stopped by Stop (returns true) and no stale value is received.
        t = gotime.Timer(1.0)
        await anyio.sleep(2.0)
        assert t.stop() is True
        with pytest.raises(WouldBlock):
            t.c.recv_nowait()

    async def test_timer_reset_after_unreceived_fire_no_stale_value(self) -> None:
        start = anyio.current_time()
        t = gotime.Timer(1.0)
        await anyio.sleep(2.0)
        assert t.reset(3.0) is True  # Go 1.23: the unreceived value counts as active
        with pytest.raises(WouldBlock):
            t.c.recv_nowait()  # the stale tick from t=1 is gone
        v = await t.c.recv()
        assert v - start == pytest.approx(5.0)
        assert anyio.current_time() - start == pytest.approx(5.0)

    async def test_timer_reset_after_stop_rearms(self) -> None:
        start = anyio.current_time()
        t = gotime.Timer(1.0)
        assert t.stop() is True
        assert t.reset(4.0) is False
        v = await t.c.recv()
        assert v - start == pytest.approx(4.0)

    async def test_timer_reset_while_active_moves_deadline(self) -> None:
        start = anyio.current_time()
        t = gotime.Timer(1.0)
        await anyio.sleep(0.5)
        assert t.reset(2.0) is True
        v = await t.c.recv()
        assert v - start == pytest.approx(2.5)

    async def test_time_after_func_at_due_time(self) -> None:
        start = anyio.current_time()
        fired: list[float] = []
        gotime.after_func(3.0, lambda: fired.append(anyio.current_time()))
        await anyio.sleep(2.9)
        assert fired == []
        await anyio.sleep(0.2)
        assert [x - start for x in fired] == pytest.approx([3.0])

    async def test_sleep_plain(self) -> None:
        start = anyio.current_time()
        await gotime.sleep(2.0)
        assert anyio.current_time() - start == pytest.approx(2.0)
        await gotime.sleep(1.0, background())
        assert anyio.current_time() - start == pytest.approx(3.0)

    async def test_sleep_ends_with_ctx_err_when_ctx_ends_first(self) -> None:
        start = anyio.current_time()
        ctx, _cancel = with_timeout(background(), 1.0)
        with pytest.raises(DeadlineExceeded):
            await gotime.sleep(10.0, ctx)
        assert anyio.current_time() - start == pytest.approx(1.0)

        ctx2, cancel2 = with_cancel(background())

        async def later() -> None:
            await anyio.sleep(0.5)
            cancel2()

        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            with pytest.raises(Canceled):
                await gotime.sleep(10.0, ctx2)
        assert anyio.current_time() - start == pytest.approx(1.5)

    async def test_sleep_is_cancellable_by_anyio(self) -> None:
        start = anyio.current_time()
        with anyio.move_on_after(1.0) as scope:
            await gotime.sleep(10.0)
        assert scope.cancelled_caught
        assert anyio.current_time() - start == pytest.approx(1.0)


# --------------------------------------------------------------------------
# Principle 4: a primitive used from another event loop
# --------------------------------------------------------------------------

LOOP_PAIRS = [
    pytest.param("asyncio", "trio", id="asyncio-then-trio"),
    pytest.param("trio", "asyncio", id="trio-then-asyncio"),
    pytest.param("asyncio", "asyncio", id="asyncio-then-asyncio"),
]


def _cross_loop(
    first: str, second: str, bind: Callable[[], Any], misuse: Callable[[], Any]
) -> None:
    """Bind a primitive to one loop (a blocked, then cancelled, waiter), then
    block on it from another loop: must raise RuntimeError, never hang."""

    async def phase1() -> None:
        await bind()

    async def phase2() -> None:
        with anyio.fail_after(5):
            await misuse()

    anyio.run(phase1, backend=first)
    with pytest.raises(RuntimeError, match=r"(?i)loop"):
        anyio.run(phase2, backend=second)


@pytest.mark.parametrize(("first", "second"), LOOP_PAIRS)
def test_mutex_from_another_event_loop_raises(first: str, second: str) -> None:
    mu = gosync.Mutex()

    async def bind() -> None:
        await mu.lock()
        with anyio.move_on_after(0.01):
            await mu.lock()

    _cross_loop(first, second, bind, mu.lock)


@pytest.mark.parametrize(("first", "second"), LOOP_PAIRS)
def test_waitgroup_from_another_event_loop_raises(first: str, second: str) -> None:
    wg = gosync.WaitGroup()
    wg.add(1)

    async def bind() -> None:
        with anyio.move_on_after(0.01):
            await wg.wait()

    _cross_loop(first, second, bind, wg.wait)


@pytest.mark.parametrize(("first", "second"), LOOP_PAIRS)
def test_semaphore_from_another_event_loop_raises(first: str, second: str) -> None:
    sem = gosync.Semaphore(1)

    async def bind() -> None:
        await sem.acquire()
        with anyio.move_on_after(0.01):
            await sem.acquire()

    _cross_loop(first, second, bind, sem.acquire)


# --------------------------------------------------------------------------
# teardown races: cancellation at the moment of hand-off leaves no trace
# --------------------------------------------------------------------------


async def test_mutex_handoff_racing_cancellation_leaks_no_lock() -> None:
    for _ in range(20):
        mu = gosync.Mutex()
        await mu.lock()
        acquired = False
        scope = anyio.CancelScope()

        async def waiter() -> None:
            nonlocal acquired
            with scope:
                await mu.lock()
                acquired = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await settle()
            mu.unlock()  # hands the lock over...
            scope.cancel()  # ...while the waiter is being cancelled
        if acquired:
            mu.unlock()
        assert mu.try_lock() is True  # either the waiter holds it, or nobody does
        mu.unlock()


async def test_semaphore_release_racing_cancellation_leaks_no_tokens() -> None:
    for _ in range(20):
        sem = gosync.Semaphore(3)
        await sem.acquire(3)
        acquired = False
        ctx, cancel = with_cancel(background())

        async def waiter() -> None:
            nonlocal acquired
            try:
                await sem.acquire(2, ctx)
                acquired = True
            except Canceled:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await settle()
            sem.release(3)
            cancel()
        if acquired:
            sem.release(2)
        assert sem.try_acquire(3) is True


async def test_rwmutex_cancelled_reader_waiter_leaves_no_trace() -> None:
    rw = gosync.RWMutex()
    await rw.lock()
    with anyio.move_on_after(0.01) as scope:
        await rw.rlock()
    assert scope.cancelled_caught
    rw.unlock()
    assert rw.try_lock() is True  # no phantom reader holds it
    rw.unlock()


async def test_once_cancelled_runner_leaves_once_not_done() -> None:
    once = gosync.Once()
    calls = 0

    async def init() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05 if calls == 1 else 0)

    with anyio.move_on_after(0.005):
        await once.do(init)
    assert calls == 1
    await once.do(init)  # the first call never completed: run fn again
    assert calls == 2
    await once.do(init)
    assert calls == 2


def test_semaphore_negative_size_raises() -> None:
    with pytest.raises(ValueError):
        gosync.Semaphore(-1)


# --------------------------------------------------------------------------
# more x/time/rate and time details
# --------------------------------------------------------------------------


class TestRateMockMore(_Mock):
    async def test_cancel_of_earlier_reservation_keeps_later_ones(self) -> None:
        # Go: restoreTokens = r.tokens - tokensFromDuration(lastEvent - timeToAct):
        # tokens reserved after r are not restored, so later reservations keep
        # their time to act.
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        r1 = lim.reserve()
        r2 = lim.reserve()
        assert r1.delay() == pytest.approx(1.0)
        assert r2.delay() == pytest.approx(2.0)
        r1.cancel()
        assert lim.tokens() == pytest.approx(-2)
        assert r2.delay() == pytest.approx(2.0)

    async def test_cancel_of_not_ok_reservation_is_a_no_op(self) -> None:
        lim = rate.Limiter(1, 1)
        r = lim.reserve(5)
        assert not r.ok
        r.cancel()
        assert lim.tokens() == pytest.approx(1)


class TestTimeMockMore(_Mock):
    async def test_ticker_reset_restarts_a_stopped_ticker(self) -> None:
        start = anyio.current_time()
        t = gotime.Ticker(1.0)
        t.stop()
        t.reset(2.0)
        try:
            v = await t.c.recv()
        finally:
            t.stop()
        assert v - start == pytest.approx(2.0)

    async def test_ticker_reset_discards_pending_tick(self) -> None:
        # Go 1.23: after Reset no stale value is received
        start = anyio.current_time()
        t = gotime.Ticker(1.0)
        try:
            await anyio.sleep(1.5)
            t.reset(2.0)
            with pytest.raises(WouldBlock):
                t.c.recv_nowait()
            v = await t.c.recv()
        finally:
            t.stop()
        assert v - start == pytest.approx(3.5)

    async def test_after_non_positive_fires_at_once(self) -> None:
        start = anyio.current_time()
        await gotime.after(0).recv()
        await gotime.after(-1).recv()
        t = gotime.Timer(-5)
        await t.c.recv()
        assert anyio.current_time() == pytest.approx(start)

    async def test_timer_channel_in_select(self) -> None:
        start = anyio.current_time()
        t = gotime.Timer(1.0)
        never: asyncgo.Chan[int] = asyncgo.Chan()
        r = await asyncgo.select(asyncgo.recv(never), asyncgo.recv(t.c))
        assert r.index == 1
        assert r.value - start == pytest.approx(1.0)

    async def test_cancelled_select_on_timer_keeps_the_value(self) -> None:
        # a cancelled recv consumes nothing: the tick is still there afterwards
        t = gotime.Timer(1.0)
        await anyio.sleep(1.0)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await t.c.recv()
        v = t.c.recv_nowait()
        assert isinstance(v, float)


# --------------------------------------------------------------------------
# more Go details
# --------------------------------------------------------------------------


async def test_semaphore_doomed_request_does_not_block_others() -> None:
    # x/sync/semaphore: a request larger than the size waits for ctx only and
    # does not queue ahead of others ("don't make other Acquire calls block on
    # one that's doomed to fail") -- or it fails at once; either way no blocking.
    sem = gosync.Semaphore(2)
    ctx, cancel = with_cancel(background())
    outcome: list[str] = []

    async def doomed() -> None:
        try:
            await sem.acquire(3, ctx)
            outcome.append("acquired")  # pragma: no cover
        except Exception as exc:  # noqa: BLE001
            outcome.append(type(exc).__name__)

    async with anyio.create_task_group() as tg:
        tg.start_soon(doomed)
        await settle()
        assert sem.try_acquire(1) is True
        with anyio.fail_after(5):
            await sem.acquire(1)
        cancel()
    assert outcome and outcome != ["acquired"]
    sem.release(2)


async def test_semaphore_release_wakes_every_waiter_that_fits() -> None:
    sem = gosync.Semaphore(3)
    await sem.acquire(3)
    got: list[int] = []

    async def take(i: int) -> None:
        await sem.acquire(1)
        got.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(take, i)
        await settle()
        assert got == []
        sem.release(3)
        with anyio.fail_after(5):
            while len(got) < 3:
                await anyio.sleep(0.001)
    assert sorted(got) == [0, 1, 2]


async def test_semaphore_acquire_with_live_ctx_and_free_tokens_is_immediate() -> None:
    sem = gosync.Semaphore(2)
    ctx, cancel = with_cancel(background())
    with anyio.fail_after(5):
        await sem.acquire(2, ctx)
    cancel()
    sem.release(2)


async def test_cond_signal_without_waiters_is_not_remembered() -> None:
    cond = gosync.Cond()
    cond.signal()
    cond.broadcast()
    async with cond:
        with anyio.move_on_after(0.02) as scope:
            await cond.wait()
    assert scope.cancelled_caught


async def test_singleflight_group_usable_after_an_error() -> None:
    async def boom() -> int:
        raise LookupError("x")

    async def ok() -> int:
        return 3

    async with singleflight.Group() as sf:
        with pytest.raises(LookupError):
            await sf.do("k", boom)
        assert await sf.do("k", ok) == (3, False)


def test_limiter_set_limit_inf_allows_everything() -> None:
    async def main() -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        assert not lim.allow()
        lim.set_limit(rate.INF)
        assert all(lim.allow() for _ in range(100))

    anyio.run(main)


class TestMoreMock(_Mock):
    async def test_limiter_waiters_are_spaced_by_the_rate(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        start = anyio.current_time()
        done_at: list[float] = []

        async def waiter() -> None:
            await lim.wait()
            done_at.append(anyio.current_time() - start)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(waiter)
        assert sorted(done_at) == pytest.approx([1.0, 2.0, 3.0])

    async def test_ticker_reset_non_positive_raises(self) -> None:
        t = gotime.Ticker(1.0)
        try:
            with pytest.raises(ValueError):
                t.reset(0)
        finally:
            t.stop()

    async def test_sleep_non_positive_returns_at_once(self) -> None:
        start = anyio.current_time()
        await gotime.sleep(0)
        await gotime.sleep(-1)
        assert anyio.current_time() == pytest.approx(start)

    async def test_sleep_with_done_ctx_raises_at_once(self) -> None:
        ctx, cancel = with_cancel(background())
        cancel()
        start = anyio.current_time()
        with pytest.raises(Canceled):
            await gotime.sleep(5, ctx)
        assert anyio.current_time() == pytest.approx(start)


@pytest.mark.parametrize(("first", "second"), LOOP_PAIRS)
def test_rwmutex_from_another_event_loop_raises(first: str, second: str) -> None:
    rw = gosync.RWMutex()

    async def bind() -> None:
        await rw.lock()
        with anyio.move_on_after(0.01):
            await rw.rlock()

    _cross_loop(first, second, bind, rw.rlock)


@pytest.mark.parametrize(("first", "second"), LOOP_PAIRS)
def test_cond_from_another_event_loop_raises(first: str, second: str) -> None:
    cond = gosync.Cond()

    async def bind() -> None:
        async with cond:
            with anyio.move_on_after(0.01):
                await cond.wait()

    async def misuse() -> None:
        async with cond:
            await cond.wait()

    _cross_loop(first, second, bind, misuse)


async def test_cond_signal_racing_cancellation_is_not_lost() -> None:
    for _ in range(20):
        cond = gosync.Cond()
        woken: list[str] = []
        scope = anyio.CancelScope()

        async def first() -> None:
            with scope:
                async with cond:
                    await cond.wait()
                    woken.append("first")

        async def second() -> None:
            async with cond:
                await cond.wait()
                woken.append("second")

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await settle()
            tg.start_soon(second)
            await settle()
            cond.signal()  # meant for "first"...
            scope.cancel()  # ...which is cancelled at the same moment
            with anyio.move_on_after(2):
                while not woken:
                    await anyio.sleep(0.001)
            assert woken, "the signal was lost: neither waiter woke"
            cond.broadcast()  # release "second" if "first" took the signal


async def test_rwmutex_handoff_racing_writer_cancellation() -> None:
    for _ in range(20):
        rw = gosync.RWMutex()
        await rw.rlock()
        acquired = False
        scope = anyio.CancelScope()

        async def writer() -> None:
            nonlocal acquired
            with scope:
                await rw.lock()
                acquired = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await settle()
            rw.runlock()
            scope.cancel()
        if acquired:
            rw.unlock()
        assert rw.try_lock() is True
        rw.unlock()


class TestTimerRaces(_Mock):
    @pytest.mark.parametrize("at", [0.999, 1.0, 1.001, 3.0])
    async def test_stop_of_unreceived_timer_leaves_no_stale_value(self, at: float) -> None:
        t = gotime.Timer(1.0)
        await anyio.sleep(at)
        assert t.stop() is True  # Go 1.23: nothing was received, so this stops it
        await anyio.sleep(5)
        with pytest.raises(WouldBlock):
            t.c.recv_nowait()

    async def test_reset_while_a_receiver_waits(self) -> None:
        start = anyio.current_time()
        t = gotime.Timer(1.0)
        got: list[float] = []

        async def receiver() -> None:
            got.append(await t.c.recv())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.sleep(0.5)
            assert t.reset(3.0) is True
        assert [g - start for g in got] == pytest.approx([3.5])
        assert anyio.current_time() - start == pytest.approx(3.5)

    async def test_after_func_reset_reschedules(self) -> None:
        start = anyio.current_time()
        fired: list[float] = []
        t = gotime.after_func(1.0, lambda: fired.append(anyio.current_time() - start))
        assert t.reset(3.0) is True
        await anyio.sleep(4.0)
        assert fired == pytest.approx([3.0])
        assert t.reset(1.0) is False  # Go: Reset after f ran schedules f again
        await anyio.sleep(2.0)
        assert fired == pytest.approx([3.0, 5.0])


async def test_context_after_func_on_done_ctx_runs_promptly() -> None:
    # Go: AfterFunc on a context that is already done calls f at once
    ctx, cancel = with_cancel(background())
    cancel()
    called: list[str] = []
    asyncgo.after_func(ctx, lambda: called.append("x"))
    with anyio.fail_after(5):
        while not called:
            await anyio.sleep(0.001)
    assert called == ["x"]


def test_every_negative_is_inf() -> None:
    assert rate.every(-1) == rate.INF


class TestRateMockEdges(_Mock):
    async def test_delay_clamps_to_zero_once_due(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        r = lim.reserve()
        assert r.delay() == pytest.approx(1.0)
        await anyio.sleep(2.0)
        assert r.delay() == 0

    async def test_wait_zero_returns_at_once(self) -> None:
        lim = rate.Limiter(1, 1)
        assert lim.allow()
        start = anyio.current_time()
        await lim.wait(0)
        assert anyio.current_time() == pytest.approx(start)
        assert lim.tokens() == pytest.approx(0)

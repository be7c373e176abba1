"""Go's own test suites for sync and x/sync/semaphore, ported to asyncgo.sync.

Each test names the Go test it ports (golang/go src/sync/*_test.go and
golang/sync semaphore/semaphore_test.go). Goroutines become tasks, Go channels
asyncgo channels, ``runtime.Gosched()`` a checkpoint; where Go checks "not yet"
with a racy ``select { default: }``, the port first lets every task run
(``anyio.wait_all_tasks_blocked()``) so that the check means something. Loop
counts are smaller than Go's (three backends, one thread). Nothing asserts
wall-clock time; ``fail_after`` bounds only turn a hang into a failure.

Not ported (Go-runtime specific, or a documented asyncgo difference):

* TestSemaphore, BenchmarkXxx: the runtime semaphore and benchmarks.
* TestWaitGroupMisuse2/3: opportunistic detection of Add racing Wait across
  threads; the single-threaded analogue (reuse before an earlier wait has
  returned) is ported as test_waitgroup_reused_before_wait_returned.
* TestWaitGroupAlign: 64-bit field alignment on 32-bit platforms.
* TestWaitGroupGo (Go 1.25 ``wg.Go``): asyncgo's WaitGroup has no ``go``; tasks
  are started in a task group (Group.go), never fire-and-forget (DESIGN.md, principle 1).
* TestOnceFuncPanicNil: Python cannot raise None.
* TestOnceFuncGoexit: a cancelled call is deliberately *not* done in asyncgo
  (docs/sync.md, "Once and errors"); test_once.py covers that rule.
* TestOnceXGC "panic" variants: a stored exception's traceback keeps the frames
  of the function, and with them its closure, alive (a Python difference); the
  returning variants are ported.
* TestCondCopy: copy detection of a Go struct.
* TestPool (Get order and nil Get without New), TestPoolRelease (drop at GC),
  TestPoolDequeue/TestPoolChain (runtime internals): asyncgo's Pool is a
  deterministic LIFO with a mandatory factory (docs/sync.md, Pool).
* TestWeightedDoesntBlockIfTooBig is ported with asyncgo's documented
  difference: ``acquire(n > size)`` raises ValueError at once instead of
  blocking until its ctx ends.
"""

from __future__ import annotations

import gc
import random
import threading
import traceback
import weakref
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncgo import (
    Canceled,
    Chan,
    DeadlineExceeded,
    WouldBlock,
    background,
    with_cancel,
    with_timeout,
)
from asyncgo.sync import (
    Cond,
    Locker,
    Mutex,
    Once,
    Pool,
    RWMutex,
    Semaphore,
    WaitGroup,
    once_func,
    once_value,
)

pytestmark = pytest.mark.anyio

HANG = 60  # seconds before a hang fails the test (never a timing assertion)


async def gosched() -> None:
    """runtime.Gosched()."""
    await anyio.lowlevel.checkpoint()


def ready(ch: Chan[Any]) -> bool:
    """``select { case <-ch: return true; default: return false }``."""
    try:
        ch.recv_nowait()
    except WouldBlock:
        return False
    return True


# == WaitGroup (src/sync/waitgroup_test.go) ==========================================


async def _test_wait_group(wg1: WaitGroup, wg2: WaitGroup) -> None:
    n = 16
    wg1.add(n)
    wg2.add(n)
    exited: Chan[bool] = Chan(n)

    async def worker() -> None:
        wg1.done()
        await wg2.wait()
        await exited.send(True)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(worker)
        await wg1.wait()
        for _ in range(n):
            await anyio.wait_all_tasks_blocked()
            assert not ready(exited), "WaitGroup released group too soon"
            wg2.done()
        for _ in range(n):
            await exited.recv()  # blocks if the barrier fails to release someone


@pytest.mark.usefixtures("no_leaks")
async def test_waitgroup() -> None:
    """TestWaitGroup: a WaitGroup is a reusable barrier."""
    wg1, wg2 = WaitGroup(), WaitGroup()
    with anyio.fail_after(HANG):
        for _ in range(8):  # the barrier is in a proper state every time
            await _test_wait_group(wg1, wg2)


async def test_waitgroup_misuse() -> None:
    """TestWaitGroupMisuse: one Done too many is 'sync: negative WaitGroup counter'."""
    wg = WaitGroup()
    wg.add(1)
    wg.done()
    with pytest.raises(ValueError, match="^sync: negative WaitGroup counter"):
        wg.done()
    with pytest.raises(ValueError, match="^sync: negative WaitGroup counter"):
        wg.add(-1)
    await wg.wait()  # the counter is still zero, not -1
    wg.add(1)
    with pytest.raises(ValueError, match="negative WaitGroup counter"):
        wg.add(-2)
    wg.done()  # still 1 after the refused add(-2)
    await wg.wait()


async def test_waitgroup_reused_before_wait_returned() -> None:
    """TestWaitGroupMisuse3, single-threaded: reuse before the woken Wait has returned.

    Go may panic on this race; asyncgo allows it, and the waiter released by the
    counter reaching zero returns all the same (it is not stranded by the new add).
    """
    wg = WaitGroup()
    wg.add(1)
    returned: list[int] = []

    async def waiter(i: int) -> None:
        await wg.wait()
        returned.append(i)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, 1)
            await anyio.wait_all_tasks_blocked()
            wg.done()  # releases waiter 1...
            wg.add(1)  # ...and the WaitGroup is reused before it has run
            tg.start_soon(waiter, 2)
            await anyio.wait_all_tasks_blocked()
            assert returned == [1]
            wg.done()
    assert returned == [1, 2]


async def test_waitgroup_race() -> None:
    """TestWaitGroupRace: no spurious wake-up from Wait."""
    with anyio.fail_after(HANG):
        for _ in range(200):
            wg = WaitGroup()
            n = [0]

            async def work(wg: WaitGroup = wg, n: list[int] = n) -> None:
                if random.random() < 0.5:
                    await gosched()
                n[0] += 1
                wg.done()

            async with anyio.create_task_group() as tg:
                wg.add(1)
                tg.start_soon(work)
                wg.add(1)
                tg.start_soon(work)
                await wg.wait()
                assert n[0] == 2, "spurious wake-up from Wait"


# == Mutex (src/sync/mutex_test.go) ==================================================


async def test_mutex_hammer() -> None:
    """TestMutex (HammerMutex): 10 tasks lock and unlock 1000 times; never two inside."""
    m = Mutex()
    inside = [0]
    done: Chan[bool] = Chan()

    async def hammer(loops: int) -> None:
        for i in range(loops):
            await m.lock()
            inside[0] += 1
            assert inside[0] == 1
            if i % 7 == 0:
                await gosched()  # someone else runs while we hold it
            inside[0] -= 1
            m.unlock()
        await done.send(True)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(hammer, 1000)
            for _ in range(10):
                await done.recv()
    assert not m.locked()


async def _rw_unlock(mu: RWMutex) -> None:
    mu.unlock()


async def _mutex_unlock() -> None:
    Mutex().unlock()


async def _mutex_unlock2() -> None:
    mu = Mutex()
    await mu.lock()
    mu.unlock()
    mu.unlock()


async def _rwmutex_unlock() -> None:
    RWMutex().unlock()


async def _rwmutex_unlock2() -> None:
    mu = RWMutex()
    await mu.rlock()
    mu.unlock()


async def _rwmutex_unlock3() -> None:
    mu = RWMutex()
    await mu.lock()
    mu.unlock()
    mu.unlock()


async def _rwmutex_runlock() -> None:
    RWMutex().runlock()


async def _rwmutex_runlock2() -> None:
    mu = RWMutex()
    await mu.lock()
    mu.runlock()


async def _rwmutex_runlock3() -> None:
    mu = RWMutex()
    await mu.rlock()
    mu.runlock()
    mu.runlock()


async def _rlocker_unlock() -> None:
    RWMutex().read().unlock()


async def _mutex_aexit_unlocked() -> None:
    mu = Mutex()
    async with mu:
        mu.unlock()


MISUSE = {
    "Mutex.Unlock": (_mutex_unlock, "sync: unlock of unlocked mutex"),
    "Mutex.Unlock2": (_mutex_unlock2, "sync: unlock of unlocked mutex"),
    "RWMutex.Unlock": (_rwmutex_unlock, "sync: Unlock of unlocked RWMutex"),
    "RWMutex.Unlock2": (_rwmutex_unlock2, "sync: Unlock of unlocked RWMutex"),
    "RWMutex.Unlock3": (_rwmutex_unlock3, "sync: Unlock of unlocked RWMutex"),
    "RWMutex.RUnlock": (_rwmutex_runlock, "sync: RUnlock of unlocked RWMutex"),
    "RWMutex.RUnlock2": (_rwmutex_runlock2, "sync: RUnlock of unlocked RWMutex"),
    "RWMutex.RUnlock3": (_rwmutex_runlock3, "sync: RUnlock of unlocked RWMutex"),
    "RLocker.Unlock": (_rlocker_unlock, "sync: RUnlock of unlocked RWMutex"),
    "Mutex.__aexit__": (_mutex_aexit_unlocked, "sync: unlock of unlocked mutex"),
}


@pytest.mark.parametrize("case", list(MISUSE))
async def test_mutex_misuse(case: str) -> None:
    """TestMutexMisuse: each misuse fails with a message about an unlocked lock.

    Go's is a fatal error; asyncgo raises RuntimeError with Go's wording.
    """
    fn, message = MISUSE[case]
    with pytest.raises(RuntimeError, match=f"^{message}$") as info:
        await fn()
    assert "unlocked" in str(info.value)


async def test_mutex_misuse_leaves_the_lock_usable() -> None:
    """After a refused unlock the state is unchanged: a held lock is still held."""
    mu = RWMutex()
    await mu.rlock()
    with pytest.raises(RuntimeError):
        mu.unlock()
    assert not mu.try_lock()  # the read lock is still held
    mu.runlock()
    assert mu.try_lock()
    with pytest.raises(RuntimeError):
        mu.runlock()
    assert not mu.try_rlock()  # the write lock is still held
    mu.unlock()


async def test_mutex_fairness() -> None:
    """TestMutexFairness: a task that re-locks in a loop cannot starve another.

    Go bounds it by time (10 s); here by the hog's iterations, which a barging
    lock (one that a just-unlocked holder can take again at once) would let run
    into the hundreds.
    """
    mu = Mutex()
    stop = anyio.Event()
    hog_loops = [0]

    async def hog() -> None:
        while not stop.is_set():
            await mu.lock()
            await gosched()  # time.Sleep(100 * time.Microsecond) while holding it
            mu.unlock()
            hog_loops[0] += 1

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hog)
            for _ in range(10):
                await gosched()
                await mu.lock()
                mu.unlock()
            stop.set()
    assert hog_loops[0] <= 40, f"the hog locked {hog_loops[0]} times while we locked 10"


async def test_mutex_unlocked_by_another_task() -> None:
    """Go's doc: "a locked Mutex is not associated with a particular goroutine"."""
    m = Mutex()
    rw = RWMutex()
    got: list[str] = []

    async def take() -> None:
        await m.lock()
        await rw.lock()
        got.append("locked")

    async def waiter() -> None:
        async with m:
            got.append("mutex")
        async with rw.read():
            got.append("read")

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert got == ["locked"]
            m.unlock()  # locked by the other task, unlocked here
            await anyio.wait_all_tasks_blocked()
            assert got == ["locked", "mutex"]
            rw.unlock()
    assert got == ["locked", "mutex", "read"]
    await rw.rlock()

    async def runlock() -> None:
        rw.runlock()  # read-locked by the test's task, released by another

    async with anyio.create_task_group() as tg:
        tg.start_soon(runlock)
    assert rw.try_lock()


# == RWMutex (src/sync/rwmutex_test.go) ==============================================


async def _parallel_readers(num_readers: int) -> None:
    m = RWMutex()
    clocked: Chan[bool] = Chan()
    cunlock: Chan[bool] = Chan()
    cdone: Chan[bool] = Chan()

    async def parallel_reader() -> None:
        await m.rlock()
        await clocked.send(True)
        await cunlock.recv()
        m.runlock()
        await cdone.send(True)

    async with anyio.create_task_group() as tg:
        for _ in range(num_readers):
            tg.start_soon(parallel_reader)
        for _ in range(num_readers):  # every RLock succeeds while the others hold theirs
            await clocked.recv()
        for _ in range(num_readers):
            await cunlock.send(True)
        for _ in range(num_readers):
            await cdone.recv()


@pytest.mark.parametrize("num_readers", [1, 3, 4])
async def test_parallel_readers(num_readers: int) -> None:
    """TestParallelReaders: read locks are held at the same time."""
    with anyio.fail_after(HANG):
        await _parallel_readers(num_readers)


async def _hammer_rwmutex(num_readers: int, iterations: int) -> None:
    activity = [0]  # active readers + 10000 * active writers
    rwm = RWMutex()
    cdone: Chan[bool] = Chan()

    async def reader() -> None:
        for i in range(iterations):
            await rwm.rlock()
            activity[0] += 1
            n = activity[0]
            assert 1 <= n < 10000, f"wlock({n})"
            if i % 3 == 0:
                await gosched()
            activity[0] -= 1
            rwm.runlock()
        await cdone.send(True)

    async def writer() -> None:
        for i in range(iterations):
            await rwm.lock()
            activity[0] += 10000
            n = activity[0]
            assert n == 10000, f"wlock({n})"
            if i % 3 == 0:
                await gosched()
            activity[0] -= 10000
            rwm.unlock()
        await cdone.send(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        i = 0
        while i < num_readers // 2:
            tg.start_soon(reader)
            i += 1
        tg.start_soon(writer)
        while i < num_readers:
            tg.start_soon(reader)
            i += 1
        for _ in range(2 + num_readers):
            await cdone.recv()


@pytest.mark.parametrize("num_readers", [1, 3, 10, 5])
async def test_rwmutex_hammer(num_readers: int) -> None:
    """TestRWMutex (HammerRWMutex): 2 writers and n readers; never a writer with anyone."""
    with anyio.fail_after(HANG):
        await _hammer_rwmutex(num_readers, 200)


async def test_rlocker() -> None:
    """TestRLocker: rw.read() is the read side as a Locker (Go: rw.RLocker())."""
    wl = RWMutex()
    rl: Locker = wl.read()
    wlocked: Chan[bool] = Chan(1)
    rlocked: Chan[bool] = Chan(1)
    n = 10

    async def locker() -> None:
        for _ in range(n):
            await rl.lock()
            await rl.lock()  # a second read lock: no writer waits yet
            await rlocked.send(True)
            await wl.lock()
            await wlocked.send(True)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(locker)
            for _ in range(n):
                await rlocked.recv()
                rl.unlock()
                await anyio.wait_all_tasks_blocked()
                assert not ready(wlocked), "RLocker() didn't read-lock it"
                rl.unlock()
                await wlocked.recv()
                await anyio.wait_all_tasks_blocked()
                assert not ready(rlocked), "RLocker() didn't respect the write lock"
                wl.unlock()


async def test_rwmutex_writer_preference() -> None:
    """Go's RWMutex: a waiting writer holds back new readers, which go before the next writer."""
    rw = RWMutex()
    order: list[str] = []
    await rw.rlock()  # reader 0 holds the lock

    async def reader(name: str) -> None:
        async with rw.read():
            order.append(name)
            await anyio.wait_all_tasks_blocked()

    async def writer(name: str) -> None:
        async with rw.write():
            order.append(name)
            await anyio.wait_all_tasks_blocked()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer, "w1")
            await anyio.wait_all_tasks_blocked()
            assert not rw.try_rlock()  # Go's TryRLock fails once a writer is pending
            assert not rw.try_lock()
            tg.start_soon(reader, "r1")  # arrives while w1 waits: must wait for w1
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(writer, "w2")
            await anyio.wait_all_tasks_blocked()
            assert order == []  # r1 did not overtake the waiting writer
            rw.runlock()  # the last reader out lets w1 in
    # r1 queued during w1's turn and goes before w2
    assert order == ["w1", "r1", "w2"]


# == Once (src/sync/once_test.go, oncefunc_test.go) ==================================


async def test_once() -> None:
    """TestOnce: ten concurrent Do calls run f once, and all return after it ran."""
    o = [0]
    once = Once()
    c: Chan[bool] = Chan()

    async def increment() -> None:
        await gosched()
        o[0] += 1

    async def run() -> None:
        await once.do(increment)
        assert o[0] == 1, f"once failed inside run: {o[0]} is not 1"
        await c.send(True)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(run)
            for _ in range(10):
                await c.recv()
    assert o[0] == 1


async def test_once_panic() -> None:
    """TestOncePanic: a raising f counts as done: the second Do does not raise or call it."""
    once = Once()

    async def fail() -> None:
        raise RuntimeError("failed")

    with pytest.raises(RuntimeError, match="failed"):
        await once.do(fail)
    await once.do(fail)  # no exception on the second call

    async def nothing() -> None:
        pass

    async def twice() -> None:
        raise AssertionError("Once called twice")

    await once.do(nothing)
    await once.do(twice)


async def test_once_func() -> None:
    """TestOnceFunc: the function runs once however often it is called."""
    calls = [0]

    async def f() -> None:
        calls[0] += 1

    g = once_func(f)
    for _ in range(10):
        assert await g() is None
    assert calls == [1]


async def test_once_value() -> None:
    """TestOnceValue / TestOnceValues: the first call's value on every call."""
    calls = [0]

    async def f() -> int:
        calls[0] += 1
        return calls[0]

    v = once_value(f)
    for _ in range(10):
        await v()
    assert await v() == 1
    assert calls == [1]

    async def pair() -> tuple[int, int]:
        calls[0] += 1
        return calls[0], calls[0] + 1

    vs = once_value(pair)
    for _ in range(10):
        await vs()
    assert await vs() == (2, 3)
    assert calls == [2]


class X(Exception):
    pass


async def _once_panic_x(calls: list[int], f: Any) -> None:
    """testOncePanicX: every call raises the same exception; the function ran once."""
    seen: list[BaseException] = []
    for _label in ("first time", "second time"):
        with pytest.raises(X, match="^x$") as info:
            await f()
        seen.append(info.value)
    assert seen[0] is seen[1]
    assert calls == [1]


async def test_once_func_panic() -> None:
    """TestOnceFuncPanic."""
    calls = [0]

    async def f() -> None:
        calls[0] += 1
        raise X("x")

    await _once_panic_x(calls, once_func(f))


async def test_once_value_panic() -> None:
    """TestOnceValuePanic / TestOnceValuesPanic."""
    calls = [0]

    async def f() -> int:
        calls[0] += 1
        raise X("x")

    await _once_panic_x(calls, once_value(f))


async def test_once_value_panic_concurrent() -> None:
    """Concurrent callers waiting for a raising call all raise it; f runs once."""
    calls = [0]
    gate = anyio.Event()

    async def f() -> int:
        calls[0] += 1
        await gate.wait()
        raise X("x")

    v = once_value(f)
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await v()
        except X as exc:
            errors.append(exc)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    assert len(errors) == 5 and all(e is errors[0] for e in errors)
    assert calls == [1]


async def _once_func_panic_origin() -> None:
    raise X("x")


async def test_once_func_panic_traceback() -> None:
    """TestOnceFuncPanicTraceback: the traceback reaches the origin of the exception.

    Also on later calls, which re-raise it with the failed call's traceback.
    """
    f = once_func(_once_func_panic_origin)
    for _ in range(2):
        with pytest.raises(X) as info:
            await f()
        frames = [fs.name for fs in traceback.extract_tb(info.value.__traceback__)]
        assert "_once_func_panic_origin" in frames


def _make_once(kind: str, buf: bytearray) -> Any:
    if kind == "once_func":

        async def set_func() -> None:
            buf[0] = 1

        return once_func(set_func)

    async def set_value() -> object:
        buf[0] = 1
        return None

    return once_value(set_value)


class Buf(bytearray):
    """A bytearray that can be weakly referenced (runtime.AddCleanup's stand-in)."""


@pytest.mark.parametrize("kind", ["once_func", "once_value"])
async def test_once_x_gc(kind: str) -> None:
    """TestOnceXGC: the wrapped function is not kept alive after the first call."""
    buf = Buf(1024)
    collected = weakref.ref(buf)
    f = _make_once(kind, buf)
    del buf
    gc.collect()
    assert collected() is not None, "wrapped function garbage collected too early"
    await f()
    gc.collect()
    assert collected() is None, "wrapped function should be garbage collected, but still live"
    await f()  # still works, without it


async def test_once_value_keeps_fn_until_it_succeeds() -> None:
    """With retry_on_error the function is kept (and called again) until a call succeeds."""
    calls = [0]

    async def flaky() -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise X("x")
        return calls[0]

    v = once_value(flaky, retry_on_error=True)
    ref = weakref.ref(flaky)
    del flaky
    gc.collect()
    with pytest.raises(X):
        await v()
    gc.collect()
    assert ref() is not None
    assert await v() == 2
    assert await v() == 2
    gc.collect()
    assert ref() is None
    assert calls == [2]


# == Cond (src/sync/cond_test.go) ====================================================


async def test_cond_signal() -> None:
    """TestCondSignal: each Signal wakes exactly one waiter."""
    m = Mutex()
    c = Cond(m)
    n = 2
    running: Chan[bool] = Chan(n)
    awake: Chan[bool] = Chan(n)

    async def waiter() -> None:
        await m.lock()
        await running.send(True)
        await c.wait()
        await awake.send(True)
        m.unlock()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(waiter)
            for _ in range(n):
                await running.recv()  # wait for everyone to run
            while n > 0:
                await anyio.wait_all_tasks_blocked()
                assert not ready(awake), "goroutine not asleep"
                await m.lock()
                c.signal()
                m.unlock()
                await awake.recv()  # deadlocks if no task wakes up
                await anyio.wait_all_tasks_blocked()
                assert not ready(awake), "too many goroutines awake"
                n -= 1
            c.signal()  # with nobody waiting: a no-op


async def test_cond_signal_generations() -> None:
    """TestCondSignalGenerations: Signal wakes the longest-waiting task."""
    m = Mutex()
    c = Cond(m)
    n = 100
    running: Chan[bool] = Chan(n)
    awake: Chan[int] = Chan(n)

    async def waiter(i: int) -> None:
        await m.lock()
        await running.send(True)
        await c.wait()
        await awake.send(i)
        m.unlock()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(waiter, i)
                if i > 0:
                    a = await awake.recv()
                    assert a == i - 1, f"wrong goroutine woke up: want {i - 1}, got {a}"
                await running.recv()
                await m.lock()
                c.signal()
                m.unlock()
            assert await awake.recv() == n - 1


async def test_cond_broadcast() -> None:
    """TestCondBroadcast: Broadcast wakes every waiter, each exactly once."""
    m = Mutex()
    c = Cond(m)
    n = 50
    running: Chan[int] = Chan(n)
    awake: Chan[int] = Chan(n)
    exit_ = [False]

    async def waiter(g: int) -> None:
        await m.lock()
        while not exit_[0]:
            await running.send(g)
            await c.wait()
            await awake.send(g)
        m.unlock()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(waiter, i)
            for i in range(n):
                for _ in range(n):
                    await running.recv()  # deadlocks unless n are running
                if i == n - 1:
                    await m.lock()
                    exit_[0] = True
                    m.unlock()
                await anyio.wait_all_tasks_blocked()
                assert not ready(awake), "goroutine not asleep"
                await m.lock()
                c.broadcast()
                m.unlock()
                seen = [False] * n
                for _ in range(n):
                    g = await awake.recv()
                    assert not seen[g], "goroutine woke up twice"
                    seen[g] = True
        assert not ready(running), "goroutine did not exit"
        c.broadcast()


async def test_cond_race() -> None:
    """TestRace: Wait releases L and returns holding it, between Signals."""
    x = [0]
    c = Cond(Mutex())
    done: Chan[bool] = Chan()

    async def one() -> None:
        await c.L.lock()
        x[0] = 1
        await c.wait()
        assert x[0] == 2, "want 2"
        x[0] = 3
        c.signal()
        c.L.unlock()
        await done.send(True)

    async def two() -> None:
        await c.L.lock()
        while True:
            if x[0] == 1:
                x[0] = 2
                c.signal()
                break
            c.L.unlock()
            await gosched()
            await c.L.lock()
        c.L.unlock()
        await done.send(True)

    async def three() -> None:
        await c.L.lock()
        while True:
            if x[0] == 2:
                await c.wait()
                assert x[0] == 3, "want 3"
                break
            if x[0] == 3:
                break
            c.L.unlock()
            await gosched()
            await c.L.lock()
        c.L.unlock()
        await done.send(True)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(two)
            tg.start_soon(three)
            for _ in range(3):
                await done.recv()


async def test_cond_signal_stealing() -> None:
    """TestCondSignalStealing: a Broadcast racing a new Wait still wakes the earlier waiter."""
    with anyio.fail_after(HANG):
        for _ in range(100):
            m = Mutex()
            cond = Cond(m)
            ch: Chan[None] = Chan()
            done = [False]

            async def first(m: Mutex = m, cond: Cond = cond, ch: Chan[None] = ch) -> None:
                await m.lock()
                await ch.send(None)
                await cond.wait()
                m.unlock()
                await ch.send(None)

            async def broadcast(cond: Cond = cond) -> None:
                cond.broadcast()

            async def second(m: Mutex = m, cond: Cond = cond, done: list[bool] = done) -> None:
                await m.lock()
                while not done[0]:
                    await cond.wait()
                m.unlock()

            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                await ch.recv()
                await m.lock()  # the first waiter is inside cond.wait() now
                m.unlock()
                racers = [broadcast, second]
                random.shuffle(racers)
                for racer in racers:
                    tg.start_soon(racer)
                await ch.recv()  # the first waiter must get the broadcast
                await m.lock()
                done[0] = True
                m.unlock()
                cond.broadcast()  # release the second waiter if it missed it


# == Pool (src/sync/pool_test.go; the semantics of a pool with a factory) ============


def test_pool_new() -> None:
    """TestPoolNew: New makes a value when the pool is empty; a Put value comes back."""
    i = [0]

    def new() -> int:
        i[0] += 1
        return i[0]

    p = Pool(new)
    assert p.get() == 1
    assert p.get() == 2
    p.put(42)
    assert p.get() == 42
    assert p.get() == 3


class Item:
    pass


def test_pool_gc() -> None:
    """TestPoolGC: the pool holds no reference to objects taken out of it."""
    p: Pool[Item] = Pool(Item)
    n = 100
    items = [Item() for _ in range(n)]
    refs = [weakref.ref(v) for v in items]
    for v in items:
        p.put(v)
    del items, v
    for _ in range(n):
        p.get()
    gc.collect()
    assert sum(r() is None for r in refs) == n


def test_pool_clear_releases() -> None:
    """TestPoolRelease, deterministically: clear() (Go: a GC) drops the idle objects."""
    p: Pool[Item] = Pool(Item)
    items = [Item() for _ in range(100)]
    refs = [weakref.ref(v) for v in items]
    for v in items:
        p.put(v)
    del items, v
    gc.collect()
    assert all(r() is not None for r in refs)  # deterministic: kept until cleared
    p.clear()
    gc.collect()
    assert all(r() is None for r in refs)
    assert len(p) == 0


def test_pool_stress() -> None:
    """TestPoolStress: Put/Get from 10 threads; every Get returns a value that was Put."""
    p: Pool[int] = Pool(lambda: 0)
    errors: list[str] = []

    def worker() -> None:
        v = 0
        for _ in range(10_000):
            p.put(v)
            v = p.get()
            if v != 0:
                errors.append(f"expect 0, got {v}")
                break

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# == Weighted semaphore (golang/sync semaphore/semaphore_test.go) ====================


async def test_weighted() -> None:
    """TestWeighted (HammerWeighted): task i takes i tokens of n in a loop."""
    n = 4
    loops = 1000 // n
    sem = Semaphore(n)
    wg = WaitGroup()
    held = [0]

    async def hammer(k: int) -> None:
        try:
            for _ in range(loops):
                await sem.acquire(k, background())
                held[0] += k
                assert held[0] <= n
                if random.random() < 0.5:
                    await gosched()
                held[0] -= k
                sem.release(k)
        finally:
            wg.done()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            wg.add(n)
            for i in range(n):
                tg.start_soon(hammer, i)
            await wg.wait()
    assert sem.try_acquire(n)


async def test_weighted_panic() -> None:
    """TestWeightedPanic: releasing an unacquired semaphore fails (Go: panics)."""
    w = Semaphore(1)
    with pytest.raises(ValueError, match="^semaphore: released more than held"):
        w.release(1)
    assert w.try_acquire(1)  # nothing was released: 1 free token, not 2
    assert not w.try_acquire(1)


async def test_weighted_try_acquire() -> None:
    """TestWeightedTryAcquire."""
    ctx = background()
    sem = Semaphore(2)
    tries: list[bool] = []
    await sem.acquire(1, ctx)
    tries.append(sem.try_acquire(1))
    tries.append(sem.try_acquire(1))
    sem.release(2)
    tries.append(sem.try_acquire(1))
    await sem.acquire(1, ctx)
    tries.append(sem.try_acquire(1))
    assert tries == [True, False, True, False]


async def test_weighted_acquire() -> None:
    """TestWeightedAcquire: Acquire with a timeout ctx gives up with the ctx's error."""
    ctx = background()
    sem = Semaphore(2)

    async def try_acquire(n: int, timeout: float = 0.05) -> bool:
        # (a try expected to succeed gets a long timeout: a ctx already done fails at
        # once, even with tokens free, and 0.05 s can pass before the acquire under load)
        tctx, cancel = with_timeout(ctx, timeout)
        try:
            await sem.acquire(n, tctx)
        except DeadlineExceeded:
            return False
        finally:
            cancel()
        return True

    tries: list[bool] = []
    with anyio.fail_after(HANG):
        await sem.acquire(1, ctx)
        tries.append(await try_acquire(1, HANG))
        tries.append(await try_acquire(1))
        sem.release(2)
        tries.append(await try_acquire(1, HANG))
        await sem.acquire(1, ctx)
        tries.append(await try_acquire(1))
    assert tries == [True, False, True, False]
    assert not sem.try_acquire(1)  # the failed acquires left nothing taken or queued
    sem.release(2)
    assert sem.try_acquire(2)


async def test_weighted_doesnt_block_if_too_big() -> None:
    """TestWeightedDoesntBlockIfTooBig: a doomed Acquire(n+1) does not block Acquire(1)s.

    As in Go, the doomed acquire waits for its ctx (it never enters the queue) and
    then fails with ``ctx.err()``.
    """
    n = 2
    sem = Semaphore(n)
    ctx, cancel = with_cancel(background())
    doomed: list[BaseException] = []

    async def too_big() -> None:
        try:
            await sem.acquire(n + 1, ctx)
        except Canceled as e:
            doomed.append(e)

    async def one() -> None:
        await sem.acquire(1, background())
        await gosched()
        sem.release(1)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as outer:
            outer.start_soon(too_big)
            await anyio.wait_all_tasks_blocked()
            async with anyio.create_task_group() as tg:
                for _ in range(n * 3):
                    tg.start_soon(one)
            assert not sem.try_acquire(n + 1)  # TryAcquire(n > size) is just false, as in Go
            cancel()
    assert len(doomed) == 1 and doomed[0] is ctx.err()
    assert sem.try_acquire(n)


async def test_large_acquire_doesnt_starve() -> None:
    """TestLargeAcquireDoesntStarve: Acquire(n) gets in despite a stream of Acquire(1)s."""
    ctx = background()
    n = 4
    sem = Semaphore(n)
    running = [True]
    wg = WaitGroup()
    wg.add(n)

    async def churn() -> None:
        try:
            while running[0]:
                await gosched()
                sem.release(1)
                await sem.acquire(1, ctx)
        finally:
            sem.release(1)
            wg.done()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                await sem.acquire(1, ctx)
                tg.start_soon(churn)
            await sem.acquire(n, ctx)
            running[0] = False
            sem.release(n)
            await wg.wait()


async def test_alloc_cancel_doesnt_starve() -> None:
    """TestAllocCancelDoesntStarve: when a queued large request gives up, those behind it go."""
    sem = Semaphore(10)
    await sem.acquire(1, background())  # hold one "read lock"
    wctx, wcancel = with_cancel(background())
    gave_up: list[BaseException] = []
    done = anyio.Event()

    async def write_lock() -> None:
        try:
            await sem.acquire(10, wctx)
        except Canceled as exc:
            gave_up.append(exc)

    async def read_lock() -> None:
        await sem.acquire(1, background())  # queued behind the write request
        sem.release(1)
        done.set()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write_lock)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(read_lock)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()  # FIFO: it waits behind the large request
            wcancel()  # the write request gives up (Go: its 300 ms timeout)
            await done.wait()
    assert len(gave_up) == 1
    sem.release(1)
    assert sem.try_acquire(10)


async def test_alloc_cancel_doesnt_starve_anyio_cancel() -> None:
    """The same with the large request cancelled by its cancel scope instead of a ctx."""
    sem = Semaphore(10)
    await sem.acquire(1)
    done = anyio.Event()

    async def read_lock() -> None:
        await sem.acquire(1)
        sem.release(1)
        done.set()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                tg.start_soon(read_lock)  # starts after we park: queued behind us

                async def cancel_soon() -> None:
                    await anyio.wait_all_tasks_blocked()
                    assert not done.is_set()
                    scope.cancel()

                tg.start_soon(cancel_soon)
                await sem.acquire(10)
            assert scope.cancelled_caught
            await done.wait()
    sem.release(1)
    assert sem.try_acquire(10)


async def test_weighted_acquire_canceled() -> None:
    """TestWeightedAcquireCanceled (go.dev/issue/63615): a ctx ended before tokens free up fails.

    And the tokens freed afterwards are not lost; and a done ctx fails even when
    the tokens are free.
    """
    sem = Semaphore(2)
    ctx, cancel = with_cancel(background())
    await sem.acquire(1, background())
    ch: Chan[None] = Chan()

    async def other() -> None:
        while sem.try_acquire(1):  # synchronise with the acquire(2) below
            sem.release(1)
            await gosched()
        cancel()  # cancel ctx, then free the token
        sem.release(1)
        ch.close()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            with pytest.raises(Canceled):
                await sem.acquire(2, ctx)
            await ch.recv_ok()
    assert sem.try_acquire(2), "try_acquire after a canceled acquire failed"
    sem.release(2)
    with pytest.raises(Canceled):
        await sem.acquire(1, ctx)  # no blocking needed, but the ctx is done
    assert sem.try_acquire(2)


async def test_weighted_acquire_canceled_same_turn() -> None:
    """The ctx ends and the tokens free up in the same turn: the call fails, nothing is lost."""
    for first in ("cancel", "release"):
        sem = Semaphore(2)
        ctx, cancel = with_cancel(background())
        await sem.acquire(1)
        outcome: list[str] = []

        async def acquire(
            sem: Semaphore = sem, ctx: Any = ctx, outcome: list[str] = outcome
        ) -> None:
            try:
                await sem.acquire(2, ctx)
            except Canceled:
                outcome.append("canceled")
            else:
                outcome.append("acquired")
                sem.release(2)

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(acquire)
                await anyio.wait_all_tasks_blocked()
                if first == "cancel":
                    cancel()
                    sem.release(1)
                else:
                    sem.release(1)  # grants the waiter...
                    cancel()  # ...whose ctx ends before it runs: Go gives the tokens back
        assert outcome == ["canceled"], first
        assert sem.try_acquire(2), first


# == Misuse a Go programmer makes in Python: passing f() or a sync f ================


async def _init() -> int:
    return 1


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no "coroutine was never awaited"
async def test_once_do_with_a_coroutine_object_names_the_misuse() -> None:
    """``once.do(init())`` raises a TypeError naming it, and leaves the Once not done."""
    once = Once()
    with pytest.raises(
        TypeError, match=r"Once.do\(\) takes an async function.*not once.do\(f\(\)\)"
    ):
        await once.do(_init())  # type: ignore[arg-type]
    ran: list[int] = []

    async def init() -> None:
        ran.append(1)

    await once.do(init)  # the misuse did not count as the one call
    assert ran == [1]


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("make", [once_func, once_value])
def test_once_func_with_a_coroutine_object_names_the_misuse(make: Any) -> None:
    """``once_value(init())`` fails at once, not at the first call."""
    with pytest.raises(TypeError, match=r"takes an async function, not coroutine"):
        make(_init())
    with pytest.raises(TypeError, match=r"takes an async function, not int"):
        make(42)


async def test_once_do_with_a_plain_function_runs_it_once_like_go() -> None:
    """Go's ``once.Do(f)`` takes a plain func: so does ``once.do``, and ``once_value`` /
    ``once_func`` (their calls are still awaited)."""
    once = Once()
    ran: list[int] = []

    def init() -> None:
        ran.append(1)

    await once.do(init)
    await once.do(init)
    assert ran == [1]

    def compute() -> int:
        ran.append(2)
        return 42

    v = once_value(compute)
    assert await v() == 42 and await v() == 42
    f = once_func(init)
    await f()
    await f()
    assert ran == [1, 2, 1]

    def fail() -> None:
        raise ValueError("boom")

    failing = Once()
    with pytest.raises(ValueError, match="boom"):
        await failing.do(fail)
    await failing.do(fail)  # a raising call counts as done, as in Go

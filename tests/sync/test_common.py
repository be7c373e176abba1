"""Rules every parking primitive of asyncgo.sync shares (issue #4, DESIGN.md principles 2 and 4).

* waiting on a primitive bound to another event loop raises `RuntimeError` and
  leaves no queue entry behind;
* a call that could complete at once is still a cancel point;
* waking a primitive's waiters from another thread's event loop raises `RuntimeError`
  and changes nothing.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncgo import Canceled, background, with_cancel
from asyncgo.sync import Cond, Mutex, RWMutex, Semaphore, WaitGroup

pytestmark = pytest.mark.anyio

# name -> (make a primitive in its "must wait" state, a call that then waits, its queues)
Blocked = tuple[Any, Callable[[], Coroutine[Any, Any, object]], list[Any]]


def _mutex() -> Blocked:
    m = Mutex()
    assert m.try_lock()
    return m, m.lock, [m._q]


def _rwmutex_write() -> Blocked:
    rw = RWMutex()
    assert rw.try_rlock()
    return rw, rw.lock, [rw._wq, rw._rq]


def _rwmutex_read() -> Blocked:
    rw = RWMutex()
    assert rw.try_lock()
    return rw, rw.rlock, [rw._wq, rw._rq]


def _semaphore() -> Blocked:
    s = Semaphore(1)
    assert s.try_acquire()
    return s, s.acquire, [s._q]


def _waitgroup() -> Blocked:
    wg = WaitGroup()
    wg.add(1)
    return wg, wg.wait, [wg._q]


def _cond() -> Blocked:
    c = Cond()

    async def wait() -> None:
        async with c:
            await c.wait()

    return c, wait, [c._q]


BLOCKED = {
    "Mutex.lock": _mutex,
    "RWMutex.lock": _rwmutex_write,
    "RWMutex.rlock": _rwmutex_read,
    "Semaphore.acquire": _semaphore,
    "WaitGroup.wait": _waitgroup,
    "Cond.wait": _cond,
}


@pytest.mark.parametrize("what", list(BLOCKED))
def test_waiting_from_a_second_event_loop_raises(
    anyio_backend: tuple[str, dict[str, object]], what: str
) -> None:
    name, options = anyio_backend
    obj, wait, queues = BLOCKED[what]()

    async def bind() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()  # parked: the queue is bound to this loop
            tg.cancel_scope.cancel()

    async def second() -> BaseException:
        with pytest.raises(RuntimeError, match="event loop") as info:
            await wait()
        return info.value

    anyio.run(bind, backend=name, backend_options=options)
    for backend in ("asyncio", "trio"):
        err = anyio.run(second, backend=backend)
        assert type(obj).__name__ in str(err)
    assert all(q.head() is None for q in queues), "the rejected waiter was left queued"


FREE: dict[str, Callable[[], Callable[[], Awaitable[object]]]] = {
    "Mutex.lock": lambda: Mutex().lock,
    "RWMutex.lock": lambda: RWMutex().lock,
    "RWMutex.rlock": lambda: RWMutex().rlock,
    "Semaphore.acquire": lambda: Semaphore(1).acquire,
    "WaitGroup.wait": lambda: WaitGroup().wait,
}


@pytest.mark.parametrize("what", list(FREE))
async def test_fast_path_is_a_cancel_point(what: str) -> None:
    call = FREE[what]()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await call()
        pytest.fail(f"{what}() completed in a cancelled scope")
    assert scope.cancelled_caught


@pytest.mark.parametrize("what", list(BLOCKED))
async def test_waiting_in_an_already_cancelled_scope_raises_and_holds_nothing(what: str) -> None:
    """The wait path skips the fast path's checkpoint: parking itself must be the cancel point."""
    obj, wait, queues = BLOCKED[what]()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await wait()
        pytest.fail(f"{what}() waited in a cancelled scope and returned")
    assert scope.cancelled_caught
    assert all(q.head() is None for q in queues)


def _busy_mutex() -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
    m = Mutex()
    assert m.try_lock()
    return m.lock, m.unlock


def _busy_semaphore() -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
    s = Semaphore(1)
    assert s.try_acquire(1)
    return s.acquire, s.release


def _write_locked() -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
    rw = RWMutex()
    assert rw.try_lock()
    return rw.rlock, rw.unlock


def _read_locked() -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
    rw = RWMutex()
    assert rw.try_rlock()
    return rw.lock, rw.runlock


def _counting() -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
    wg = WaitGroup()
    wg.add(1)
    return wg.wait, wg.done


FREED_AT_ONCE = {
    "Mutex.lock": _busy_mutex,
    "Semaphore.acquire": _busy_semaphore,
    "RWMutex.rlock": _write_locked,
    "RWMutex.lock": _read_locked,
    "WaitGroup.wait": _counting,
}


@pytest.mark.parametrize("how", ["scope", "ctx.scope"])
@pytest.mark.parametrize("what", list(FREED_AT_ONCE))
async def test_a_wait_in_an_already_cancelled_scope_is_not_granted(what: str, how: str) -> None:
    """Freed in the same loop step as the wait started: still no grant, on every backend.
    On asyncio anyio delivers a scope's cancellation one step late, and the waiter,
    queued, used to be granted the lock (or tokens, or its wake-up) and return
    holding it inside its cancelled scope (found by a fuzzer)."""
    wait, free = FREED_AT_ONCE[what]()
    outcome: list[str] = []

    async def waiter() -> None:
        if how == "scope":
            with anyio.CancelScope() as scope:
                scope.cancel()
                await wait()
                outcome.append("returned")
            outcome.append("cancelled" if scope.cancelled_caught else "not cancelled")
        else:
            ctx, cancel = with_cancel(background())
            cancel()
            with pytest.raises(Canceled):
                with ctx.scope():
                    await wait()
                    outcome.append("returned")
            outcome.append("cancelled")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.lowlevel.checkpoint()  # the waiter runs and waits
        free()  # in the same loop step
    assert outcome == ["cancelled"]


@pytest.mark.parametrize("what", list(BLOCKED))
def test_used_under_trio_then_waited_on_under_asyncio(what: str) -> None:
    """A runtime hint cached under trio (by a fast path) must not break a later asyncio wait."""
    from asyncgo._backend import TRIO, must_checkpoint

    obj, wait, queues = BLOCKED[what]()

    async def fast_path_under_trio() -> None:
        must_checkpoint(obj)  # what every fast path does first
        assert obj._rt is TRIO

    async def wait_under_asyncio() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert any(q.head() is not None for q in queues), "not parked"
            tg.cancel_scope.cancel()

    anyio.run(fast_path_under_trio, backend="trio")
    anyio.run(wait_under_asyncio, backend="asyncio")


# -- waking from another thread's event loop ------------------------------------------------
#
# name -> (make the primitive with a task about to wait on it, that wait, the call that
# wakes it). The waking call is made first from a second thread running its own event
# loop (refused: RuntimeError, nothing changed), then from the waiter's own loop.


def _held_mutex() -> Any:
    m = Mutex()
    assert m.try_lock()
    return m


def _mutex_exit(m: Mutex) -> Awaitable[object]:
    return m.__aexit__(None, None, None)


def _write_held() -> Any:
    rw = RWMutex()
    assert rw.try_lock()
    return rw


def _read_held() -> Any:
    rw = RWMutex()
    assert rw.try_rlock()
    return rw


def _held_semaphore() -> Any:
    s = Semaphore(1)
    assert s.try_acquire()
    return s


def _sem_exit(s: Semaphore) -> Awaitable[object]:
    return s.__aexit__(None, None, None)


def _counting_waitgroup() -> Any:
    wg = WaitGroup()
    wg.add(1)
    return wg


async def _cond_wait(c: Cond) -> None:
    async with c:
        await c.wait()


WAKERS: dict[
    str, tuple[Callable[[], Any], Callable[[Any], Awaitable[object]], Callable[[Any], object]]
] = {
    "Mutex.unlock": (_held_mutex, lambda m: m.lock(), lambda m: m.unlock()),
    "Mutex.__aexit__": (_held_mutex, lambda m: m.lock(), _mutex_exit),
    "RWMutex.unlock (readers wait)": (_write_held, lambda rw: rw.rlock(), lambda rw: rw.unlock()),
    "RWMutex.unlock (writer waits)": (_write_held, lambda rw: rw.lock(), lambda rw: rw.unlock()),
    "RWMutex.runlock": (_read_held, lambda rw: rw.lock(), lambda rw: rw.runlock()),
    "Semaphore.release": (_held_semaphore, lambda s: s.acquire(), lambda s: s.release()),
    "Semaphore.__aexit__": (_held_semaphore, lambda s: s.acquire(), _sem_exit),
    "WaitGroup.done": (_counting_waitgroup, lambda wg: wg.wait(), lambda wg: wg.done()),
    "Cond.signal": (Cond, _cond_wait, lambda c: c.signal()),
    "Cond.broadcast": (Cond, _cond_wait, lambda c: c.broadcast()),
}


async def _call(fn: Callable[[Any], object], obj: Any) -> None:
    r = fn(obj)
    if inspect.isawaitable(r):
        await r


@pytest.mark.parametrize("other", ["asyncio", "trio"])
@pytest.mark.parametrize("what", list(WAKERS))
def test_waking_from_another_threads_loop_raises_and_changes_nothing(
    anyio_backend: tuple[str, dict[str, object]], what: str, other: str
) -> None:
    make, wait, wake = WAKERS[what]
    obj = make()
    bound, tried = threading.Event(), threading.Event()
    woken: list[str] = []
    foreign: list[BaseException | None] = []

    async def owner() -> None:
        async def waiter() -> None:
            await wait(obj)
            woken.append("woken")

        # A hang guard only (the bug this test catches hangs or crashes the loop).
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                parked = repr(obj)  # counts, holders, waiters
                bound.set()
                await anyio.to_thread.run_sync(tried.wait, 20)
                assert woken == [], "the waiter was woken from the other thread"
                assert repr(obj) == parked, "the refused call changed the primitive"
                await _call(wake, obj)  # from the waiter's own loop: works

    async def other_loop() -> None:
        try:
            await _call(wake, obj)
            foreign.append(None)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            foreign.append(exc)

    def other_thread() -> None:
        bound.wait(20)
        try:
            anyio.run(other_loop, backend=other)
        finally:
            tried.set()

    t = threading.Thread(target=other_thread)
    t.start()
    name, options = anyio_backend
    try:
        anyio.run(owner, backend=name, backend_options=options)
    finally:
        bound.set()
        t.join(30)
    assert not t.is_alive()
    (err,) = foreign
    assert isinstance(err, RuntimeError), repr(err)
    assert "another thread" in str(err) and type(obj).__name__ in str(err), str(err)
    assert woken == ["woken"]


@pytest.mark.parametrize("first, then", [("rlock", "lock"), ("lock", "rlock")])
def test_rwmutex_readers_and_writers_of_two_loops_do_not_wait_on_each_other(
    anyio_backend: tuple[str, dict[str, object]], first: str, then: str
) -> None:
    """An RWMutex's two queues belong to one loop: the first to wait on either.

    Each queue used to bind on its own, so a reader parked by one loop and a writer
    of another (or the reverse) both waited, each on a lock the other loop held:
    the second loop hung instead of getting the RuntimeError every primitive gives.
    """
    name, options = anyio_backend
    rw = RWMutex()
    assert rw.try_lock()  # held: both rlock() and lock() wait

    async def bind() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(getattr(rw, first))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()

    async def second() -> None:
        with anyio.fail_after(10):  # (a hang is the bug)
            with pytest.raises(RuntimeError, match="event loop"):
                await getattr(rw, then)()

    anyio.run(bind, backend=name, backend_options=options)
    for backend in ("asyncio", "trio"):
        anyio.run(second, backend=backend)
    assert rw._rq.head() is None and rw._wq.head() is None

"""sync.Mutex (issue #4), rule by rule, on asyncio, uvloop and trio.

Racy states are reached with ``anyio.wait_all_tasks_blocked()``; nothing here
asserts wall-clock time.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncgo.sync import Mutex

pytestmark = pytest.mark.anyio


async def lock_and_note(
    m: Mutex, name: str, order: list[str], hold: anyio.Event | None = None
) -> None:
    async with m:
        order.append(name)
        if hold is not None:
            await hold.wait()


async def lock_in_scope(
    m: Mutex, out: list[str], *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        await m.lock()
        out.append("locked")
        m.unlock()


# -- basics -----------------------------------------------------------------------------


async def test_lock_unlock_and_locked() -> None:
    m = Mutex()
    assert not m.locked()
    await m.lock()
    assert m.locked()
    m.unlock()
    assert not m.locked()


async def test_async_with_releases_on_exception() -> None:
    m = Mutex()
    with pytest.raises(ZeroDivisionError):
        async with m:
            assert m.locked()
            1 / 0  # noqa: B018
    assert not m.locked()


async def test_try_lock() -> None:
    m = Mutex()
    assert m.try_lock()
    assert not m.try_lock()
    m.unlock()
    assert m.try_lock()
    m.unlock()


async def test_try_lock_fails_while_waiters_queued_for_a_handoff() -> None:
    """unlock() hands the lock to the first waiter: a barging try_lock() must not win."""
    m = Mutex()
    order: list[str] = []
    await m.lock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lock_and_note, m, "waiter", order)
        await anyio.wait_all_tasks_blocked()
        m.unlock()
        assert m.locked(), "the lock was handed over, not released"
        assert not m.try_lock()
    assert order == ["waiter"]
    assert not m.locked()


def test_unlock_of_unlocked_mutex_raises() -> None:
    m = Mutex()
    with pytest.raises(RuntimeError, match=r"^sync: unlock of unlocked mutex$"):
        m.unlock()


async def test_double_unlock_raises_and_keeps_state() -> None:
    m = Mutex()
    await m.lock()
    m.unlock()
    with pytest.raises(RuntimeError, match=r"^sync: unlock of unlocked mutex$"):
        m.unlock()
    assert m.try_lock()


async def test_any_task_may_unlock_like_go() -> None:
    m = Mutex()
    await m.lock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _unlock_soon(m))
    assert not m.locked()


async def _unlock_soon(m: Mutex) -> None:
    m.unlock()


def test_repr_names_state() -> None:
    m = Mutex()
    assert "unlocked" in repr(m)
    assert m.try_lock()
    assert "locked" in repr(m)


# -- mutual exclusion and order ---------------------------------------------------------------


async def test_mutual_exclusion_across_checkpoints() -> None:
    m = Mutex()
    counter = 0

    async def inc() -> None:
        nonlocal counter
        for _ in range(50):
            async with m:
                v = counter
                await anyio.lowlevel.checkpoint()
                counter = v + 1

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(inc)
    assert counter == 400


async def test_waiters_served_fifo() -> None:
    m = Mutex()
    order: list[str] = []
    await m.lock()
    async with anyio.create_task_group() as tg:
        for name in "abcde":
            tg.start_soon(lock_and_note, m, name, order)
            await anyio.wait_all_tasks_blocked()
        m.unlock()
    assert order == list("abcde")


async def test_unlock_then_relock_in_a_loop_cannot_starve_a_waiter() -> None:
    """Handoff: a task that unlocks and locks again queues behind the waiter."""
    m = Mutex()
    order: list[str] = []
    await m.lock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lock_and_note, m, "waiter", order)
        await anyio.wait_all_tasks_blocked()
        m.unlock()
        await m.lock()  # must wait for the waiter's turn
        order.append("me")
        m.unlock()
    assert order == ["waiter", "me"]


# -- cancellation -----------------------------------------------------------------------------


async def test_lock_cancelled_while_parked_holds_nothing() -> None:
    m = Mutex()
    out: list[str] = []
    await m.lock()
    async with anyio.create_task_group() as tg:
        scope = await tg.start(lock_in_scope, m, out)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
    assert out == []
    m.unlock()
    assert not m.locked(), "the cancelled waiter was handed the lock"


async def test_cancelled_head_waiter_does_not_block_the_next() -> None:
    m = Mutex()
    out: list[str] = []
    order: list[str] = []
    await m.lock()
    async with anyio.create_task_group() as tg:
        scope = await tg.start(lock_in_scope, m, out)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(lock_and_note, m, "second", order)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        m.unlock()
    assert out == []
    assert order == ["second"]
    assert not m.locked()


async def test_cancelled_waiters_in_the_middle_keep_fifo_order() -> None:
    m = Mutex()
    order: list[str] = []
    out: list[str] = []
    await m.lock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lock_and_note, m, "a", order)
        await anyio.wait_all_tasks_blocked()
        scopes = [await tg.start(lock_in_scope, m, out) for _ in range(40)]
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(lock_and_note, m, "b", order)
        await anyio.wait_all_tasks_blocked()
        for s in scopes:
            s.cancel()
        await anyio.wait_all_tasks_blocked()
        m.unlock()
    assert order == ["a", "b"]
    assert out == []
    assert len(m._q) == 0


async def test_grant_then_cancel_keeps_the_lock_and_async_with_releases() -> None:
    """Handed the lock at the moment it is cancelled: lock() returns, the body's
    next checkpoint raises, and ``async with`` unlocks. Nothing is lost."""
    m = Mutex()
    steps: list[str] = []

    async def waiter(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            async with m:
                steps.append("got it")
                await anyio.lowlevel.checkpoint()
                steps.append("not reached")
        steps.append("cancelled" if scope.cancelled_caught else "not cancelled")

    await m.lock()
    async with anyio.create_task_group() as tg:
        scope = await tg.start(waiter)
        await anyio.wait_all_tasks_blocked()
        m.unlock()  # hand-off claims the waiter...
        scope.cancel()  # ...then its cancellation arrives before it runs
    assert steps == ["got it", "cancelled"]
    assert not m.locked()
    assert m.try_lock()


async def test_fast_path_lock_is_a_cancel_point() -> None:
    m = Mutex()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await m.lock()
        pytest.fail("lock() completed in a cancelled scope")
    assert scope.cancelled_caught
    assert not m.locked()


async def test_native_asyncio_cancel_is_honoured_on_fast_path(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio-specific")
    m = Mutex()

    async def op() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await m.lock()

    task = asyncio.ensure_future(op())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not m.locked()


async def test_tight_uncontended_loop_cannot_starve_other_tasks() -> None:
    m = Mutex()
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    n = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        while not ran:
            n += 1
            assert n < 10_000, "a tight lock/unlock loop starved another task"
            async with m:
                pass


async def test_uncontended_lock_needs_no_scheduler_round_trip() -> None:
    m = Mutex()
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0)
        start = ticks
        for _ in range(1000):
            async with m:
                pass
        yielded = ticks - start
        stop = True
    assert yielded < 250, yielded


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_cancellation_stress_never_loses_or_double_grants(seed: int) -> None:
    """Workers lock, hold across random checkpoints and unlock, while a chaos task
    cancels them at random points (waiting, just granted, or holding)."""
    rng = random.Random(seed)
    m = Mutex()
    holders = 0
    entered = 0
    attempts = 0
    cancelled = 0
    scopes: list[anyio.CancelScope] = []
    stop = False

    async def worker() -> None:
        nonlocal holders, entered, attempts, cancelled
        for _ in range(60):
            attempts += 1
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                async with m:
                    holders += 1
                    try:
                        assert holders == 1, "two tasks hold the mutex"
                        entered += 1
                        for _ in range(rng.randrange(3)):
                            await anyio.lowlevel.checkpoint()
                    finally:
                        holders -= 1
            scopes.remove(scope)
            if scope.cancelled_caught:
                cancelled += 1

    async def chaos() -> None:
        while not stop:
            await anyio.lowlevel.checkpoint()
            if scopes and rng.random() < 0.3:
                rng.choice(scopes).cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(chaos)
        async with anyio.create_task_group() as workers:
            for _ in range(12):
                workers.start_soon(worker)
        stop = True
    assert attempts == 12 * 60
    assert cancelled > 0 and entered > 0
    assert holders == 0
    assert not m.locked(), "the lock was lost"
    assert m._q.head() is None
    assert m.try_lock()


# -- event loops -------------------------------------------------------------------------------


def test_waiting_from_a_second_event_loop_raises(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    name, options = anyio_backend
    m = Mutex()

    async def bind() -> None:
        await m.lock()
        async with anyio.create_task_group() as tg:
            tg.start_soon(m.lock)  # parks: binds m to this loop
            await anyio.wait_all_tasks_blocked()
            m.unlock()
        m.unlock()

    async def second() -> Any:
        assert m.try_lock()
        with pytest.raises(RuntimeError, match="event loop") as info:
            await m.lock()
        m.unlock()
        return info.value

    anyio.run(bind, backend=name, backend_options=options)
    for backend in ("asyncio", "trio"):
        err = anyio.run(second, backend=backend)
        assert "Mutex" in str(err)
    assert len(m._q) == 0


async def test_native_cancel_after_handoff_keeps_the_lock_then_cancels(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """asyncio only: Task.cancel() between the hand-off and the waiter resuming. The
    hand-off stands (lock() returns) and the cancellation fires at the next await."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio-specific")
    m = Mutex()
    steps: list[str] = []

    async def waiter() -> None:
        await m.lock()
        steps.append("locked")
        try:
            await asyncio.sleep(0)
            steps.append("not reached")
        finally:
            m.unlock()

    await m.lock()
    task = asyncio.ensure_future(waiter())
    await anyio.wait_all_tasks_blocked()
    m.unlock()  # resolves the waiter's future
    task.cancel()  # native cancel of a task whose future is already resolved
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["locked"]
    assert not m.locked()
    assert task.cancelling() == 1  # the cancel request was re-delivered, not duplicated

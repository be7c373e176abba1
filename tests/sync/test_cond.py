"""sync.Cond (issue #4): signal/broadcast, the lock across wait, cancellation."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest
from _guards import LogLocker

from asyncgo.sync import Cond, Mutex, RWMutex

pytestmark = pytest.mark.anyio


async def wait_and_note(cond: Cond, name: str, order: list[str]) -> None:
    async with cond:
        await cond.wait()
        assert cond.L.locked()  # type: ignore[attr-defined]
        order.append(name)


async def wait_in_scope(
    cond: Cond, out: list[str], *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        async with cond:
            try:
                await cond.wait()
                out.append("woke")
            finally:
                out.append("held" if cond.L.locked() else "NOT HELD")  # type: ignore[attr-defined]


async def test_default_lock_is_a_mutex() -> None:
    cond = Cond()
    assert isinstance(cond.L, Mutex)
    m = Mutex()
    assert Cond(m).L is m


async def test_signal_wakes_one_waiter_in_fifo_order() -> None:
    cond = Cond()
    order: list[str] = []
    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(wait_and_note, cond, name, order)
            await anyio.wait_all_tasks_blocked()
        cond.signal()
        await anyio.wait_all_tasks_blocked()
        assert order == ["a"]
        cond.signal()
        await anyio.wait_all_tasks_blocked()
        assert order == ["a", "b"]
        cond.signal()
    assert order == ["a", "b", "c"]


async def test_signal_without_waiters_is_not_remembered() -> None:
    cond = Cond()
    order: list[str] = []
    cond.signal()
    cond.broadcast()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_and_note, cond, "a", order)
        await anyio.wait_all_tasks_blocked()
        assert order == []
        cond.signal()


async def test_broadcast_wakes_everyone() -> None:
    cond = Cond()
    order: list[str] = []
    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(wait_and_note, cond, name, order)
        await anyio.wait_all_tasks_blocked()
        async with cond:
            cond.broadcast()
    assert sorted(order) == list("abcd")


async def test_wait_releases_the_lock_while_waiting() -> None:
    cond = Cond()
    order: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_and_note, cond, "a", order)
        await anyio.wait_all_tasks_blocked()
        assert not cond.L.locked()  # type: ignore[attr-defined]
        async with cond:
            cond.signal()
            await anyio.wait_all_tasks_blocked()
            assert order == [], "the waiter returned without re-locking"
    assert order == ["a"]


async def test_wait_without_holding_the_lock_raises() -> None:
    cond = Cond()
    with pytest.raises(RuntimeError, match=r"^sync: unlock of unlocked mutex$"):
        await cond.wait()
    assert len(cond._q) == 0


async def test_wait_for_predicate() -> None:
    cond = Cond()
    items: deque[int] = deque()
    got: list[int] = []

    async def consumer() -> None:
        for _ in range(3):
            async with cond:
                assert await cond.wait_for(lambda: len(items)) > 0
                got.append(items.popleft())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        for i in range(3):
            await anyio.wait_all_tasks_blocked()
            async with cond:
                items.append(i)
                cond.signal()
    assert got == [0, 1, 2]


async def test_cancelled_wait_relocks_and_consumes_no_signal() -> None:
    cond = Cond()
    out: list[str] = []
    order: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(wait_in_scope, cond, out)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(wait_and_note, cond, "second", order)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        cond.signal()  # must reach the second waiter, not the cancelled one
    assert out == ["held"]
    assert order == ["second"]
    assert not cond.L.locked()  # type: ignore[attr-defined]


async def test_cancelled_wait_waits_for_the_lock_before_raising() -> None:
    """Cancelled while another task holds L: wait() re-locks (shielded) before raising."""
    cond = Cond()
    out: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(wait_in_scope, cond, out)
        await anyio.wait_all_tasks_blocked()
        await cond.L.lock()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert out == [], "wait() raised without holding the lock"
        cond.L.unlock()
    assert out == ["held"]
    assert not cond.L.locked()  # type: ignore[attr-defined]


async def test_signal_then_cancel_keeps_the_wakeup() -> None:
    cond = Cond()
    steps: list[str] = []

    async def waiter(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            async with cond:
                await cond.wait()
                steps.append("woke holding" if cond.L.locked() else "woke NOT holding")  # type: ignore[attr-defined]
                await anyio.lowlevel.checkpoint()
        steps.append("cancelled" if scope.cancelled_caught else "?")

    async with anyio.create_task_group() as tg:
        scope = await tg.start(waiter)
        await anyio.wait_all_tasks_blocked()
        cond.signal()
        scope.cancel()
    assert steps == ["woke holding", "cancelled"]
    assert not cond.L.locked()  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["scope", "native"])
async def test_wait_with_a_pending_cancellation_never_lets_go_of_L(
    anyio_backend: tuple[str, dict[str, object]], how: str
) -> None:
    """A cancellation already pending when wait() is called fires before wait()
    unlocks L: nothing else can take L in between, and no wake-up is consumed."""
    if how == "native" and anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio-specific")
    lk = LogLocker()
    cond = Cond(lk)
    await lk.lock()
    if how == "scope":
        with anyio.CancelScope() as scope:
            scope.cancel()
            await cond.wait()
        assert scope.cancelled_caught
    else:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cond.wait()
        task.uncancel()
    assert lk.log == ["lock"]  # never unlocked, never re-locked
    assert lk.m.locked()
    lk.unlock()


async def test_broadcast_forms_no_lock_convoy(monkeypatch: pytest.MonkeyPatch) -> None:
    """wait() does not yield with L held for the fast-path budget (it parks anyway):
    if it did, the waiters a broadcast woke meanwhile would find L taken and queue
    for it, one loop step each (a lock convoy), round after round."""
    from asyncgo._backend import FAST

    relocks = 0
    relock = Cond._relock

    async def counting(self: Cond) -> BaseException | None:
        nonlocal relocks
        relocks += 1
        return await relock(self)

    monkeypatch.setattr(Cond, "_relock", counting)
    cond = Cond()
    gen = 0
    rounds, waiters = 20, 5

    async def waiter() -> None:
        for r in range(rounds):
            async with cond:
                while gen <= r:
                    FAST.budget = 0  # spent: a must_checkpoint() would yield now
                    await cond.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(waiters):
            tg.start_soon(waiter)
        for _ in range(rounds):
            await anyio.wait_all_tasks_blocked()
            async with cond:
                gen += 1
                cond.broadcast()
    assert relocks == 0


async def test_native_asyncio_cancel_during_relock(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """asyncio only: a native Task.cancel() while wait() re-locks is held back until
    the lock is re-acquired, then raised."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio-specific")
    cond = Cond()
    out: list[str] = []

    async def waiter() -> None:
        async with cond:
            try:
                await cond.wait()
            finally:
                out.append("held" if cond.L.locked() else "NOT HELD")  # type: ignore[attr-defined]

    task = asyncio.ensure_future(waiter())
    await anyio.wait_all_tasks_blocked()
    await cond.L.lock()
    cond.signal()  # the waiter wakes and queues for the lock we hold
    await anyio.wait_all_tasks_blocked()
    task.cancel()  # native cancellation while it waits for the lock
    await anyio.wait_all_tasks_blocked()
    assert out == []
    cond.L.unlock()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert out == ["held"]
    assert not cond.L.locked()  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["as signalled", "while re-locking"])
async def test_native_asyncio_cancel_of_a_signalled_waiter_passes_the_signal_on(
    anyio_backend: tuple[str, dict[str, object]], where: str
) -> None:
    """asyncio only: a consumer signalled and natively cancelled (asyncio.timeout,
    TaskGroup, a web framework) raises -- and the wake-up it consumed goes to the
    next waiter, which takes the item, instead of being lost with it."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio-specific")
    cond = Cond()
    items: list[str] = []
    taken: list[tuple[int, str]] = []

    async def consumer(i: int) -> None:
        async with cond:
            while not items:
                await cond.wait()
            taken.append((i, items.pop()))

    first = asyncio.ensure_future(consumer(0))
    await anyio.wait_all_tasks_blocked()
    second = asyncio.ensure_future(consumer(1))
    await anyio.wait_all_tasks_blocked()
    async with cond:
        items.append("x")
        cond.signal()  # wakes consumer 0 (FIFO), which then needs the lock we hold
        if where == "while re-locking":
            await anyio.wait_all_tasks_blocked()
        first.cancel()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
    with anyio.fail_after(10):
        await asyncio.gather(first, second, return_exceptions=True)
    assert first.cancelled() and taken == [(1, "x")]
    assert not cond.L.locked()  # type: ignore[attr-defined]


async def test_cond_on_a_read_lock() -> None:
    rw = RWMutex()
    cond = Cond(rw.read())
    ready = False
    woke: list[int] = []

    async def reader(i: int) -> None:
        async with cond:
            while not ready:
                await cond.wait()
            woke.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(reader, i)
        await anyio.wait_all_tasks_blocked()
        async with rw.write():
            ready = True
        cond.broadcast()
    assert sorted(woke) == [0, 1, 2]
    assert rw.try_lock()


@pytest.mark.parametrize("seed", [1, 2])
async def test_producer_consumer_stress_with_random_cancellation(seed: int) -> None:
    """Consumers wait on the Cond and get cancelled at random: every item is taken
    exactly once and the lock is never lost."""
    rng = random.Random(seed)
    cond = Cond()
    items: deque[int] = deque()
    taken: list[int] = []
    scopes: list[anyio.CancelScope] = []
    n_items = 300
    finished = False

    async def consumer() -> None:
        while not finished:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                async with cond:
                    while not items and not finished:
                        await cond.wait()
                    if items:
                        taken.append(items.popleft())
            scopes.remove(scope)

    async def producer() -> None:
        for i in range(n_items):
            async with cond:
                items.append(i)
                if rng.random() < 0.5:
                    cond.signal()
                else:
                    cond.broadcast()
            if rng.random() < 0.3 and scopes:
                rng.choice(scopes).cancel()
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(consumer)
        await producer()
        while items:
            async with cond:
                cond.broadcast()
            await anyio.lowlevel.checkpoint()
        async with cond:
            finished = True
            cond.broadcast()
    assert sorted(taken) == list(range(n_items))
    assert not cond.L.locked()  # type: ignore[attr-defined]


async def _deadlock_in_the_relock(
    cond: Cond, hold: Callable[[], Awaitable[None]], wait: Callable[[], Awaitable[None]]
) -> bool:
    """B, outside a detect_deadlocks() block, runs *hold* (signal, then park for good
    holding cond.L) once A, inside it, has parked in *wait*: A's re-lock can never
    succeed, so the detector raises Deadlock in it. Returns whether cond.L was still
    locked then (B is cancelled after)."""
    from asyncgo import Chan, Deadlock, debug

    go = Chan[int]()
    async with anyio.create_task_group() as outer:

        async def b() -> None:
            await go.recv()
            await hold()

        outer.start_soon(b)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(Deadlock):
            async with debug.detect_deadlocks():
                async with anyio.create_task_group() as tg:

                    async def kick() -> None:
                        await anyio.wait_all_tasks_blocked()
                        await go.send(1)

                    tg.start_soon(kick)
                    await wait()
        locked = cond.L.locked()  # type: ignore[attr-defined]
        outer.cancel_scope.cancel()
    return bool(locked)


def _signal_and_hold(cond: Cond) -> tuple[Callable[[], Awaitable[None]], list[BaseException]]:
    """B's part for `_deadlock_in_the_relock`: in ``async with cond:``, signal, then park
    for good; and the list of the errors (not cancellations) B met."""
    from asyncgo import Chan

    never = Chan[int]()
    errors: list[BaseException] = []

    async def hold() -> None:
        try:
            async with cond:
                cond.signal()
                await never.recv()
        except BaseException as e:
            if not isinstance(e, anyio.get_cancelled_exc_class()):
                errors.append(e)
            raise

    return hold, errors


async def test_deadlock_in_the_relock_leaves_the_other_tasks_lock_alone() -> None:
    """The detector failing wait()'s shielded re-lock must not free a lock held by another.

    A's `async with cond:` used to unlock cond.L on the way out -- B's lock (a Mutex
    has no owner) -- and B's own unlock then failed.
    """
    cond = Cond()
    hold, b_errors = _signal_and_hold(cond)

    async def wait() -> None:
        async with cond:
            await cond.wait()  # signalled; the re-lock waits for B for ever

    assert await _deadlock_in_the_relock(cond, hold, wait)  # still B's
    assert b_errors == []
    assert not cond.L.locked()  # type: ignore[attr-defined]
    async with cond:  # and the Cond works on
        cond.broadcast()


async def test_a_failed_relock_outside_any_block_leaves_no_mark_on_the_next_block() -> None:
    """wait() used Go-style (no ``async with cond:``) whose re-lock failed must not
    make the task's next ``async with cond:`` skip its unlock (the lock held for good)."""
    from asyncgo import Chan

    cond = Cond()
    never = Chan[int]()

    async def hold() -> None:
        await cond.L.lock()
        cond.signal()
        await never.recv()

    async def wait() -> None:
        await cond.L.lock()  # Go style: L.Lock(); c.Wait(); L.Unlock()
        await cond.wait()  # the re-lock fails with Deadlock

    await _deadlock_in_the_relock(cond, hold, wait)
    cond.L.unlock()  # B was cancelled holding it
    async with cond:
        cond.broadcast()
    assert not cond.L.locked()  # type: ignore[attr-defined]


async def test_a_failed_enter_inside_a_block_whose_relock_failed_leaves_the_lock_alone() -> None:
    """A's wait() re-lock failed (Deadlock: B holds cond.L for good); A catches it and
    tries ``async with cond:`` again, which fails too. Leaving A's block must still
    leave B's lock alone: the enter cleared the block's "not held" mark before its
    lock had succeeded (review of 986126f)."""
    from asyncgo import Deadlock

    cond = Cond()
    hold, b_errors = _signal_and_hold(cond)

    async def wait() -> None:
        async with cond:  # block A
            with pytest.raises(Deadlock):
                await cond.wait()  # signalled; the re-lock waits for B for ever
            async with cond:  # fails too: Deadlock, and propagates
                pass

    assert await _deadlock_in_the_relock(cond, hold, wait)  # still B's after block A
    assert b_errors == []

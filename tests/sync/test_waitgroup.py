"""sync.WaitGroup (issue #4) on asyncio, uvloop and trio."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from asyncgo.sync import WaitGroup

pytestmark = pytest.mark.anyio


async def test_wait_on_zero_counter_returns_at_once() -> None:
    wg = WaitGroup()
    await wg.wait()


async def test_wait_returns_when_all_done() -> None:
    wg = WaitGroup()
    finished: list[int] = []

    async def work(i: int) -> None:
        for _ in range(i):
            await anyio.lowlevel.checkpoint()
        finished.append(i)
        wg.done()

    async with anyio.create_task_group() as tg:
        for i in range(5):
            wg.add(1)
            tg.start_soon(work, i)
        await wg.wait()
        assert sorted(finished) == [0, 1, 2, 3, 4]


async def test_every_waiter_wakes() -> None:
    wg = WaitGroup()
    wg.add(2)
    woke: list[int] = []

    async def waiter(i: int) -> None:
        await wg.wait()
        woke.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(waiter, i)
        await anyio.wait_all_tasks_blocked()
        wg.done()
        await anyio.wait_all_tasks_blocked()
        assert woke == []
        wg.add(-1)
    assert sorted(woke) == [0, 1, 2, 3]


async def test_reuse_after_reaching_zero() -> None:
    wg = WaitGroup()
    for _ in range(3):
        wg.add(2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(wg.wait)
            await anyio.wait_all_tasks_blocked()
            wg.done()
            wg.done()
    await wg.wait()


def test_negative_counter_raises_and_leaves_the_counter_unchanged() -> None:
    wg = WaitGroup()
    with pytest.raises(
        ValueError, match=r"^sync: negative WaitGroup counter \(0 -1 = -1\): done\(\) was called"
    ):
        wg.done()
    wg.add(2)
    with pytest.raises(
        ValueError, match=r"^sync: negative WaitGroup counter \(2 -3 = -1\): add\(-3\) takes away"
    ):
        wg.add(-3)
    wg.add(-2)  # the failed add changed nothing
    assert "count=0" in repr(wg)


def test_add_takes_an_int() -> None:
    wg = WaitGroup()
    with pytest.raises(TypeError, match="int"):
        wg.add(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        wg.add(True)


async def test_cancelled_wait_leaves_no_trace() -> None:
    wg = WaitGroup()
    wg.add(1)
    woke: list[str] = []
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wg.wait)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught

    async def waiter() -> None:
        await wg.wait()
        woke.append("w")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        wg.done()
    assert woke == ["w"]
    assert len(wg._q) == 0


async def test_fast_path_wait_is_a_cancel_point() -> None:
    wg = WaitGroup()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await wg.wait()
    assert scope.cancelled_caught


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_cancellation_stress(seed: int) -> None:
    """Waiters cancelled at random: the ones left always wake when the counter hits zero."""
    rng = random.Random(seed)
    wg = WaitGroup()
    for _round in range(20):
        n = rng.randint(1, 5)
        wg.add(n)
        woke = 0
        scopes: list[anyio.CancelScope] = []

        async def waiter() -> None:
            nonlocal woke
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                await wg.wait()
                woke += 1

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            for s in rng.sample(scopes, rng.randint(0, 8)):
                s.cancel()
            for _ in range(n):
                wg.done()
                await anyio.lowlevel.checkpoint()
        assert woke == sum(not s.cancelled_caught for s in scopes)
        assert len(wg._q) == 0


async def test_add_without_a_delta_adds_one() -> None:
    wg = WaitGroup()
    wg.add()
    wg.add()
    assert "count=2" in repr(wg)
    wg.done()
    wg.done()
    with anyio.fail_after(10):
        await wg.wait()  # zero: returns at once

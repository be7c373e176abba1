"""asyncgo.testing.no_leaks: goleak for async tasks, on asyncio, uvloop and trio."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_process
import pytest
from _guards import wall_guard

from asyncgo import Chan, debug
from asyncgo import time as gotime
from asyncgo.testing import TaskLeakError, no_leaks

pytestmark = pytest.mark.anyio


async def leaky_worker(ch: Chan[int]) -> None:
    async for _ in ch:  # nobody ever closes ch: the seed articles' leakyWorker
        pass


async def test_leaked_task_is_reported_with_its_stack() -> None:
    async with anyio.create_task_group() as outer:  # outlives the block: the leak's home
        ch = Chan[int]()
        with pytest.raises(TaskLeakError) as ei:
            async with no_leaks(grace=0.05):  # diagnostics are on inside: sites are recorded
                line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
                ch2 = Chan[int]()
                with debug.labels(job="ingest"):
                    outer.start_soon(leaky_worker, ch2, name="leaky")
                async with anyio.create_task_group() as inner:  # this one is fine
                    inner.start_soon(ch.send, 1)
                    assert await ch.recv() == 1
        err = ei.value
        msg = str(err)
        assert msg.startswith("found 1 unexpected task still alive 0.05s after the no_leaks()")
        assert '"leaky" [chan recv, ' in msg
        assert "{job=ingest}" in msg
        assert "test_leaks.leaky_worker(...)" in msg
        assert f"test_leaks.py:{line}" in msg  # where the channel it is stuck on was made
        assert "ch2 = Chan[int]()" in msg
        (info,) = err.tasks
        assert info.name == "leaky" and info.op == "chan recv"
        assert info.entry is not None and info.entry.endswith("leaky_worker")
        ch2.close()


async def test_tasks_started_outside_meanwhile_are_not_the_blocks_leaks() -> None:
    """Only tasks started inside count (by the block or by its tasks, however deep):
    a sibling outside the block that starts a task meanwhile is not a leak of it."""
    async with anyio.create_task_group() as outer:

        async def sibling() -> None:
            await anyio.sleep(0.01)
            outer.start_soon(anyio.sleep_forever, name="not-mine")

        async def starts_one_more() -> None:
            outer.start_soon(anyio.sleep_forever, name="mine-too")

        outer.start_soon(sibling)
        with pytest.raises(TaskLeakError) as ei:
            async with no_leaks(grace=0.01):
                outer.start_soon(starts_one_more, name="mine")  # its child is ours too
                with anyio.fail_after(10):
                    while not any(t.name == "not-mine" for t in debug.tasks()):
                        await anyio.sleep(0.005)
        assert sorted(t.name for t in ei.value.tasks) == ["mine-too"]
        async with no_leaks(grace=0.01):  # a later block: none of those are its tasks
            await anyio.sleep(0)
        outer.cancel_scope.cancel()


async def test_clean_block_passes() -> None:
    ch = Chan[int](10)
    async with no_leaks():
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(ch.send, i)
        assert sorted([ch.recv_nowait() for _ in range(10)]) == list(range(10))


async def test_grace_lets_finishing_tasks_end() -> None:
    async with anyio.create_task_group() as outer:
        async with no_leaks(grace=5):
            outer.start_soon(anyio.sleep, 0.05, name="almost-done")
        # and without grace it is a leak (a task that surely has not ended at the check:
        # a 0.05 s sleep could, after a stall of a loaded machine)
        ev = anyio.Event()
        with pytest.raises(TaskLeakError, match='"almost-done-2" \\[waiting\\]'):
            async with no_leaks(grace=0):
                outer.start_soon(ev.wait, name="almost-done-2")
        ev.set()


async def test_allow_list() -> None:
    ev = anyio.Event()

    async def long_lived() -> None:
        await ev.wait()

    async with anyio.create_task_group() as outer:
        async with no_leaks(grace=0, ignore_names=["metrics"]):
            outer.start_soon(long_lived, name="metrics")
        async with no_leaks(
            grace=0, ignore_any_function=[f"{__name__}.test_allow_list.<locals>.long_lived"]
        ):
            outer.start_soon(long_lived, name="by-function")
        async with no_leaks(grace=0, ignore=lambda t: t.labels.get("role") == "daemon"):
            with debug.labels(role="daemon"):
                outer.start_soon(long_lived, name="by-label")
        check = no_leaks(grace=0)
        async with check:
            outer.start_soon(long_lived, name="added-later")
            check.ignore_names.append("added-later")  # read at exit
        with pytest.raises(TaskLeakError) as ei:
            async with no_leaks(grace=0, ignore_names=["metrics"]):
                outer.start_soon(long_lived, name="unexpected")
        assert [t.name for t in ei.value.tasks] == ["unexpected"]
        ev.set()


async def test_ignore_top_function() -> None:
    ch = Chan[int]()
    async with anyio.create_task_group() as outer:
        with pytest.raises(TaskLeakError) as ei:
            async with no_leaks(grace=0):
                outer.start_soon(leaky_worker, ch, name="parked")
        top = ei.value.tasks[0].top
        assert top is not None
        async with no_leaks(grace=0, ignore_top_function=[top]):
            outer.start_soon(leaky_worker, ch, name="parked-2")
        ch.close()


async def test_decorator() -> None:
    async with anyio.create_task_group() as outer:

        @no_leaks(grace=0)
        async def clean(x: int) -> int:
            return x + 1

        @no_leaks(grace=0)
        async def leaky() -> None:
            outer.start_soon(anyio.sleep_forever, name="forever")

        assert await clean(1) == 2
        assert await clean(2) == 3  # a fresh check per call
        with pytest.raises(TaskLeakError, match='"forever"'):
            await leaky()
        outer.cancel_scope.cancel()


async def test_errors_in_the_block_pass_through_unchecked() -> None:
    async with anyio.create_task_group() as outer:
        with pytest.raises(ZeroDivisionError):
            async with no_leaks(grace=0):
                outer.start_soon(anyio.sleep_forever)
                1 / 0  # noqa: B018
        outer.cancel_scope.cancel()


async def test_misuse() -> None:
    with pytest.raises(ValueError, match="grace must be >= 0"):
        no_leaks(grace=-1)
    check = no_leaks()
    async with check:
        with pytest.raises(RuntimeError, match="already entered"):
            await check.__aenter__()


async def test_fire_and_forget_asyncio_task(anyio_backend_name: str) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio.create_task is asyncio's own fire-and-forget")
    with pytest.raises(TaskLeakError, match='"fire-and-forget"'):
        async with no_leaks(grace=0.01):
            task = asyncio.get_running_loop().create_task(asyncio.sleep(10), name="fire-and-forget")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_plain_with_names_the_misuse() -> None:
    with pytest.raises(TypeError, match="async with no_leaks"):
        with no_leaks():  # type: ignore[attr-defined]
            pass


class TestMockClockMovedByHand:
    """Found by an audit: the grace was slept on the run's clock, which a MockClock
    without autojump never moves by itself: the block's exit waited forever."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        import trio.testing

        return "trio", {"clock": trio.testing.MockClock()}

    async def test_grace_is_wall_time(self) -> None:
        async with anyio.create_task_group() as tg:
            # (wall_guard, not fail_after: the run's clock stands still)
            with wall_guard(30) as guard, pytest.raises(TaskLeakError):
                async with no_leaks(grace=0.2):
                    tg.start_soon(Chan[int]().recv, name="leaked")
            assert not guard.cancelled_caught
            tg.cancel_scope.cancel()


async def test_anyio_process_pool_janitor_is_infrastructure() -> None:
    """Found by an audit: the first ``anyio.to_process.run_sync`` of an event loop (so
    also ``stages.map(executor="process")``, ``WorkerPool(executor="process")``)
    starts anyio's process-pool shutdown task, which lives as long as the loop: the
    run's infrastructure, not the block's leak (it was one on asyncio and uvloop)."""
    async with no_leaks(grace=0):
        assert await anyio.to_process.run_sync(os.getpid) != os.getpid()


async def test_the_janitor_is_known_by_its_function_too(anyio_backend_name: str) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("the asyncio backend's janitor, started under another name")
    from anyio._backends._asyncio import _shutdown_process_pool_on_exit

    async with no_leaks(grace=0):
        task = asyncio.get_running_loop().create_task(
            _shutdown_process_pool_on_exit(set()), name="renamed"
        )
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class TestMockClockAutojump:
    """Found by an audit: under autojump the grace was waited out in a thread, every
    task blocked meanwhile, so the clock jumped to a leaked sleeper's deadline and it
    ended "within grace": never reported. Autojump is now off during the grace, the
    clock moved by the pauses instead (about the grace in all, as a real one)."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        import trio.testing

        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}

    @pytest.mark.parametrize("nap", [anyio.sleep, gotime.sleep], ids=["anyio", "asyncgo"])
    async def test_a_leaked_sleeper_is_reported(
        self, nap: Callable[[float], Awaitable[None]]
    ) -> None:
        import trio

        clock = trio.lowlevel.current_clock()
        async with anyio.create_task_group() as tg:
            with wall_guard(30) as guard:
                start = trio.current_time()
                with pytest.raises(TaskLeakError, match='"hour-sleeper"'):
                    async with no_leaks(grace=0.2):
                        tg.start_soon(nap, 3600, name="hour-sleeper")
                assert trio.current_time() - start < 60  # not jumped to its deadline
                assert clock.autojump_threshold == 0  # type: ignore[attr-defined]
                # a task sleeping less than the grace ends within it, as on a real clock
                async with no_leaks(grace=5):
                    tg.start_soon(nap, 0.05, name="almost-done")

                async def spin() -> None:  # never lets every task block: no jumps
                    while True:
                        await anyio.lowlevel.checkpoint()

                with pytest.raises(TaskLeakError, match='"spinner"'):
                    async with no_leaks(grace=0.05):
                        tg.start_soon(spin, name="spinner")
            assert not guard.cancelled_caught
            tg.cancel_scope.cancel()

"""WorkerPool (issue #7) on asyncio, uvloop and trio; scaling also under trio's MockClock.

The autouse ``no_leaks`` fixture fails a test that leaves a task running.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import trio.testing

from asyncgo import Canceled, WouldBlock, background, with_cancel
from asyncgo._pool import JobCancelled, JobHandle, PoolClosed, PoolStats, WorkerPool

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]


async def double(x: int) -> int:
    await anyio.sleep(0)
    return 2 * x


async def boom(x: int) -> int:
    raise ValueError(f"bad {x}")


def sync_square(x: int) -> int:
    return x * x


def pid_of(_: int) -> int:
    return os.getpid()


# -- results and failures ------------------------------------------------------------


async def test_results_and_failures_per_job() -> None:
    async with WorkerPool(workers=4) as pool:
        ok = [await pool.submit(double, i) for i in range(20)]
        bad = await pool.submit(boom, 7)
        assert [await h for h in ok] == [2 * i for i in range(20)]
        with pytest.raises(ValueError, match=r"^bad 7$"):
            await bad
        assert isinstance(bad.exception(), ValueError)
        with pytest.raises(ValueError):
            bad.result()
    s = pool.stats()
    assert s == PoolStats(
        submitted=21, running=0, queued=0, done=20, failed=1, cancelled=0, workers=0
    )


class _Big:
    """A result (or an error's payload) whose lifetime the test watches."""


async def test_idle_workers_keep_no_job_or_result_alive() -> None:
    """Once the caller lets go of a handle, an idle worker must not keep it, its
    result or its exception (and traceback) alive -- as concurrent.futures' workers."""
    refs: list[weakref.ref[_Big]] = []

    async def make() -> _Big:
        await anyio.sleep(0)
        big = _Big()
        refs.append(weakref.ref(big))
        return big

    async def fail() -> None:
        big = _Big()
        refs.append(weakref.ref(big))
        raise ValueError(big)

    async with WorkerPool(workers=4) as pool:
        handles = [await pool.submit(make) for _ in range(6)]
        handles += [await pool.submit(fail) for _ in range(2)]
        for h in handles:
            try:
                await h
            except ValueError:
                pass
        del h, handles
        await anyio.wait_all_tasks_blocked()  # every worker parked, waiting for a job
        gc.collect()
        assert len(refs) == 8
        assert [r() for r in refs] == [None] * 8


async def test_submit_after_shutdown_raises_pool_closed() -> None:
    async with WorkerPool(workers=2) as pool:
        await pool.shutdown()
        with pytest.raises(PoolClosed, match=r"^submit to a closed WorkerPool$"):
            await pool.submit(double, 1)
        with pytest.raises(PoolClosed):
            pool.try_submit(double, 1)


async def test_fail_fast_raises_first_error_and_cancels_rest() -> None:
    gate = anyio.Event()

    async def wait_gate(_: int) -> None:
        await gate.wait()

    with pytest.raises(ValueError, match="bad 1"):
        async with WorkerPool(workers=2, fail_fast=True) as pool:
            slow = await pool.submit(wait_gate, 0)
            await pool.submit(boom, 1)
            await anyio.wait_all_tasks_blocked()
    assert slow.cancelled()
    with pytest.raises(Canceled):
        await slow


async def test_progress_callback() -> None:
    seen: list[PoolStats] = []
    async with WorkerPool(workers=2, on_progress=seen.append) as pool:
        for i in range(5):
            await pool.submit(double, i)
    assert len(seen) == 5
    assert seen[-1].done == 5


# -- backpressure --------------------------------------------------------------------


async def test_backpressure_submit_waits_when_queue_full() -> None:
    gate = anyio.Event()

    async def wait_gate(x: int) -> int:
        await gate.wait()
        return x

    async with WorkerPool(workers=1, queue_size=2) as pool:
        handles = [await pool.submit(wait_gate, 0)]
        await anyio.wait_all_tasks_blocked()  # the worker holds job 0
        handles += [await pool.submit(wait_gate, i) for i in (1, 2)]
        assert pool.try_submit(wait_gate, 3) is None
        submitted = anyio.Event()

        async def submit_more() -> None:
            handles.append(await pool.submit(wait_gate, 3))
            submitted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_more)
            await anyio.wait_all_tasks_blocked()
            assert not submitted.is_set()
            assert pool.stats().queued == 2
            gate.set()
        assert [await h for h in handles] == [0, 1, 2, 3]


async def test_cancelled_waiting_submit_queues_nothing() -> None:
    gate = anyio.Event()

    async def wait_gate(x: int) -> int:
        await gate.wait()
        return x

    async with WorkerPool(workers=1, queue_size=1) as pool:
        await pool.submit(wait_gate, 0)
        await anyio.wait_all_tasks_blocked()
        await pool.submit(wait_gate, 1)
        with anyio.move_on_after(0.01) as scope:
            await pool.submit(wait_gate, 2)
        assert scope.cancelled_caught
        assert pool.stats().submitted == 2
        gate.set()
    assert pool.stats().done == 2


async def test_submit_waiting_for_room_gets_pool_closed() -> None:
    gate = anyio.Event()

    async def wait_gate(x: int) -> int:
        await gate.wait()
        return x

    async with WorkerPool(workers=1, queue_size=1) as pool:
        await pool.submit(wait_gate, 0)
        await anyio.wait_all_tasks_blocked()
        await pool.submit(wait_gate, 1)
        errors: list[BaseException] = []

        async def blocked_submit() -> None:
            try:
                await pool.submit(wait_gate, 2)
            except PoolClosed as e:
                errors.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_submit)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(pool.shutdown)
            await anyio.wait_all_tasks_blocked()
            gate.set()
        assert len(errors) == 1


# -- shutdown ------------------------------------------------------------------------


async def test_graceful_shutdown_finishes_queued_jobs() -> None:
    async with WorkerPool(workers=2, queue_size=100) as pool:
        handles = [await pool.submit(double, i) for i in range(50)]
        assert await pool.shutdown() == []
        assert all(h.done() for h in handles)
    assert pool.stats().done == 50


async def test_shutdown_timeout_cancels_and_reports_the_rest() -> None:
    async def sleepy(x: int) -> int:
        await anyio.sleep(3600)
        return x

    async with WorkerPool(workers=2, queue_size=10) as pool:
        quick = [await pool.submit(double, i) for i in range(3)]
        await anyio.wait_all_tasks_blocked()
        slow = [await pool.submit(sleepy, i) for i in range(5)]
        await anyio.wait_all_tasks_blocked()
        cancelled = await pool.shutdown(timeout=0.05)
    assert set(cancelled) == set(slow)
    assert all(h.done() and not h.cancelled() for h in quick)
    s = pool.stats()
    # Nothing lost: every submitted job completed, failed or is reported cancelled.
    assert s.submitted == s.done + s.failed + s.cancelled == 8
    assert s.cancelled == len(cancelled) == 5
    with pytest.raises(Canceled):
        await slow[0]


async def test_body_error_aborts_pool() -> None:
    async def sleepy(x: int) -> int:
        await anyio.sleep(3600)
        return x

    with pytest.raises(KeyError):
        async with WorkerPool(workers=1) as pool:
            h = await pool.submit(sleepy, 1)
            await anyio.wait_all_tasks_blocked()
            raise KeyError("body")
    assert h.cancelled()


async def test_ctx_cancel_aborts_pool() -> None:
    async def sleepy(x: int) -> int:
        await anyio.sleep(3600)
        return x

    ctx, cancel = with_cancel(background())
    async with WorkerPool(workers=1, ctx=ctx) as pool:
        h = await pool.submit(sleepy, 1)
        await anyio.wait_all_tasks_blocked()
        cancel()
        with pytest.raises(Canceled):
            await h
        with pytest.raises(PoolClosed, match=r"closed by its context \(Canceled\)") as info:
            await pool.submit(sleepy, 2)
        assert info.value.__cause__ is ctx.err()  # why it closed, for a ctx-sharing caller
        with pytest.raises(PoolClosed) as info:
            pool.try_submit(sleepy, 3)
        assert info.value.__cause__ is ctx.err()


async def test_submit_racing_the_ctx_abort_is_chained_to_the_ctx_error() -> None:
    """A submitter sharing the pool's ctx, woken by the ctx's end before the pool's
    watcher: its submit waits for room until the abort closes the queue."""
    gate = anyio.Event()

    async def held() -> None:
        await gate.wait()

    ctx, cancel = with_cancel(background())
    async with WorkerPool(workers=1, queue_size=1, ctx=ctx) as pool:
        await pool.submit(held)
        await pool.submit(held)  # the queue is full now
        async with anyio.create_task_group() as tg:
            caught: list[BaseException] = []

            async def submitter() -> None:
                try:
                    await pool.submit(held)
                except PoolClosed as e:
                    caught.append(e)

            tg.start_soon(submitter)
            await anyio.wait_all_tasks_blocked()
            cancel()
        assert len(caught) == 1 and isinstance(caught[0].__cause__, Canceled)
        assert caught[0].__cause__ is ctx.err()
    with pytest.raises(PoolClosed) as info:
        async with WorkerPool(workers=1) as pool:
            await pool.shutdown()
            await pool.submit(held)
    assert info.value.__cause__ is None and str(info.value) == "submit to a closed WorkerPool"


# -- map -----------------------------------------------------------------------------


async def test_map_ordered_and_unordered() -> None:
    async with WorkerPool(workers=4, queue_size=2) as pool:
        got = [r async for r in pool.map(double, range(30))]
        assert got == [2 * i for i in range(30)]
        got = [r async for r in pool.map(double, range(30), ordered=False)]
        assert sorted(got) == [2 * i for i in range(30)]


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_map_over_an_async_iterable(ordered: bool) -> None:
    closed_in: list[object] = []
    readers: list[object] = []

    async def items() -> AsyncIterator[int]:
        try:
            for i in range(50):
                readers.append(anyio.get_current_task().id)
                await anyio.sleep(0)
                yield i
        finally:
            closed_in.append(anyio.get_current_task().id)

    async with WorkerPool(workers=4, queue_size=2) as pool:
        got = [r async for r in pool.map(double, items(), ordered=ordered)]
        assert (got if ordered else sorted(got)) == [2 * i for i in range(50)]
        assert closed_in == readers[:1]  # closed, in the task that read it
        # a consumer that breaks early: the generator is closed too
        closed_in.clear()
        readers.clear()
        async with pool.map(double, items(), ordered=ordered) as it:
            async for r in it:
                if r == 4:
                    break
        await anyio.wait_all_tasks_blocked()
        assert closed_in == readers[:1]


async def test_map_of_a_non_iterable_is_a_type_error_at_the_call() -> None:
    async with WorkerPool(workers=2) as pool:
        with pytest.raises(TypeError, match="items must be an iterable or an async iterable"):
            pool.map(double, 42)  # type: ignore[call-overload]


@pytest.mark.parametrize("ordered", ["false", None, 0])
async def test_map_ordered_must_be_a_bool(ordered: object) -> None:
    # As stages.map: a truthy string was taken as ordered, None as unordered.
    async with WorkerPool(workers=2) as pool:
        with pytest.raises(TypeError, match="WorkerPool.map: ordered must be a bool, not"):
            pool.map(double, [1], ordered=ordered)  # type: ignore[call-overload]


async def test_map_raises_failure_and_break_is_safe() -> None:
    async def maybe(x: int) -> int:
        if x == 5:
            raise ValueError("five")
        return x

    async with WorkerPool(workers=2) as pool:
        with pytest.raises(ValueError, match="five"):
            async for _ in pool.map(maybe, range(100)):
                pass
        async with pool.map(double, range(1000)) as it:
            async for r in it:
                if r == 4:
                    break


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("window", [1, 2, 5])
async def test_map_window_is_exact_while_the_head_job_runs(ordered: bool, window: int) -> None:
    """At most *window* jobs are submitted and not yet yielded, also while waiting (#7).

    The first job blocks; the consumer waits for it. Ordered mode used to free the
    head job's slot as soon as it started waiting, so window + 1 jobs were in flight.
    """
    gate = anyio.Event()
    active = peak = 0

    async def job(x: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if x == 0:
            with anyio.fail_after(10):  # a failing test must not hang the pool exit
                await gate.wait()
        else:
            await anyio.sleep(0)
        active -= 1
        return x

    async with WorkerPool(workers=10) as pool:
        got: list[int] = []
        async with pool.map(job, range(20), ordered=ordered, window=window) as it:
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    got.append(await it.__anext__())

                tg.start_soon(first)
                await anyio.wait_all_tasks_blocked()
                # Job 0 blocks; the other jobs of the window have finished. Ordered:
                # they wait for their turn behind job 0 and nothing was yielded.
                # Unordered: the first of them was yielded, the rest wait to be read.
                # Either way the window is full and nothing more was submitted.
                assert pool.stats().submitted == window + len(got)
                assert len(got) == (0 if ordered or window == 1 else 1)
                gate.set()
            got.extend([r async for r in it])
        assert peak <= window
    if ordered:
        assert got == list(range(20))
    else:
        assert sorted(got) == list(range(20))


async def test_map_window_holds_results_not_yet_yielded() -> None:
    """Ordered: finished results waiting behind a slow head count against the window."""
    gate = anyio.Event()

    async def job(x: int) -> int:
        if x == 0:
            with anyio.fail_after(10):  # a failing test must not hang the pool exit
                await gate.wait()
        return x

    async with WorkerPool(workers=4) as pool:
        it = pool.map(job, range(10), window=3)
        with anyio.move_on_after(0.01):  # the head (job 0) blocks: nothing is yielded
            await it.__anext__()
        await anyio.wait_all_tasks_blocked()
        s = pool.stats()
        assert (s.submitted, s.done, s.running) == (3, 2, 1)
        gate.set()
        assert [r async for r in it] == list(range(10))


async def test_map_ordered_cancelled_next_keeps_the_head() -> None:
    """A cancelled __anext__ consumes nothing: the next call yields that result (#7)."""
    gates = [anyio.Event() for _ in range(4)]

    async def job(x: int) -> int:
        with anyio.fail_after(10):  # a failing test must not hang the pool exit
            await gates[x].wait()
        return x

    async with WorkerPool(workers=4) as pool:
        async with pool.map(job, range(4)) as it:
            with anyio.CancelScope() as scope:  # cancelled while it waits for job 0
                scope.cancel()
                await it.__anext__()
            for _ in range(3):  # cancelled again and again while it waits
                with anyio.move_on_after(0.001):
                    await it.__anext__()
            gates[0].set()
            gates[1].set()
            await anyio.wait_all_tasks_blocked()
            with anyio.CancelScope() as scope:  # cancelled with job 0 done: still kept
                scope.cancel()
                await it.__anext__()
            assert await it.__anext__() == 0
            assert await it.__anext__() == 1
            with anyio.move_on_after(0.001):  # waiting for job 2
                await it.__anext__()
            gates[2].set()
            gates[3].set()
            assert [r async for r in it] == [2, 3]


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_map_cancel_right_after_the_result_arrives_loses_nothing(ordered: bool) -> None:
    """The consumer's scope is cancelled just after its result was handed to it.

    The job's progress callback runs after the result was delivered to the waiting
    consumer and before it resumes: the cancellation then finds it with the result
    in hand. It must either return it or leave it for the next call -- never drop it
    (unordered mode used to drop it at the checkpoint of awaiting the done handle).
    """
    scope = anyio.CancelScope()
    armed = False

    def progress(_: PoolStats) -> None:
        if armed:
            scope.cancel()

    gate = anyio.Event()

    async def job(x: int) -> int:
        if x == 0:
            with anyio.fail_after(10):  # a failing test must not hang the pool exit
                await gate.wait()
        return x

    got: list[int] = []
    async with WorkerPool(workers=1, on_progress=progress) as pool:
        it = pool.map(job, range(3), ordered=ordered, window=1)

        async def consume_once() -> None:
            with scope:
                got.append(await it.__anext__())

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume_once)
            await anyio.wait_all_tasks_blocked()
            armed = True
            gate.set()
        armed = False
        got.extend([r async for r in it])
    assert got == [0, 1, 2]


# -- executors -----------------------------------------------------------------------


async def test_thread_executor() -> None:
    main = threading.get_ident()

    def where(x: int) -> tuple[int, int]:
        return x, threading.get_ident()

    async with WorkerPool(workers=3, executor="thread") as pool:
        hs = [await pool.submit(where, i) for i in range(6)]
        res = [await h for h in hs]
    assert [r[0] for r in res] == list(range(6))
    assert all(r[1] != main for r in res)


async def test_process_executor() -> None:
    async with WorkerPool(workers=2, executor="process") as pool:
        hs = [await pool.submit(sync_square, i) for i in range(4)]
        pids = [await pool.submit(pid_of, 0)]
        assert [await h for h in hs] == [0, 1, 4, 9]
        assert await pids[0] != os.getpid()


async def test_executor_rejects_async_fn() -> None:
    async with WorkerPool(workers=1, executor="thread") as pool:
        with pytest.raises(TypeError, match="runs sync functions"):
            await pool.submit(double, 1)


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_workers"):
        WorkerPool(min_workers=5, max_workers=2)
    with pytest.raises(ValueError, match="executor"):
        WorkerPool(executor="fiber")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue_size"):
        WorkerPool(queue_size=-1)
    for kw in ("workers", "min_workers", "max_workers", "queue_size"):
        with pytest.raises(TypeError, match=rf"WorkerPool: {kw} must be an int, not float"):
            WorkerPool(**{kw: 2.5})  # type: ignore[arg-type]


async def test_sync_callable_without_executor_runs_on_the_loop() -> None:
    """Like a pipeline stage: its return value is the result; an awaitable it
    returns is awaited (whatever earlier jobs returned)."""
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def triple(x: int) -> int:
        threads.append(threading.get_ident())
        return 3 * x

    async def plus(x: int) -> int:
        return x + 100

    def mixed(x: int) -> Any:
        return x if x % 2 else plus(x)

    async with WorkerPool(workers=2) as pool:
        assert await (await pool.submit(triple, 2)) == 6
        handles = [await pool.submit(mixed, x) for x in range(6)]
        assert [await h for h in handles] == [100, 1, 102, 3, 104, 5]
        assert [r async for r in pool.map(triple, range(4))] == [0, 3, 6, 9]
        assert pool.stats().failed == 0
    assert set(threads) == {loop_thread}


async def test_handle_result_before_done() -> None:
    gate = anyio.Event()

    async def wait_gate() -> None:
        await gate.wait()

    async with WorkerPool(workers=1) as pool:
        h: JobHandle[None] = await pool.submit(wait_gate)
        with pytest.raises(WouldBlock):
            h.result()
        gate.set()


# -- scaling (real time, generous bounds) ----------------------------------------------


async def test_scales_up_under_backlog_and_down_when_idle() -> None:
    gate = anyio.Event()

    async def wait_gate(x: int) -> int:
        await gate.wait()
        return x

    async with WorkerPool(min_workers=1, max_workers=8, queue_size=4, idle_timeout=0.05) as pool:
        assert pool.stats().workers == 1
        hs = [await pool.submit(wait_gate, i) for i in range(12)]
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 8
        assert pool.stats().running == 8
        gate.set()
        assert [await h for h in hs] == list(range(12))
        with anyio.fail_after(10):
            while pool.stats().workers > 1:
                await anyio.sleep(0.02)
        assert pool.stats().workers == 1


@pytest.mark.parametrize("queue_size", [0, 1])
async def test_scales_up_for_submits_parked_on_a_full_queue(queue_size: int) -> None:
    """Every worker busy and below max_workers: a submit that has to wait for room
    starts a worker (also with queue_size=0, where the queue never holds a job and
    the submit is parked on the channel until a worker takes it)."""
    gate = anyio.Event()

    async def wait_gate(x: int) -> int:
        await gate.wait()  # set only once every job is submitted
        return x

    async with WorkerPool(min_workers=1, max_workers=3, queue_size=queue_size) as pool:
        hs = []
        with anyio.fail_after(30):  # (a submit left waiting for ever would hang here)
            for i in range(3 + queue_size):
                hs.append(await pool.submit(wait_gate, i))
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 3
        gate.set()
        assert [await h for h in hs] == list(range(3 + queue_size))


class TestScalingMockClock:
    """Scaling where time matters, on trio's virtual clock (an hour takes no time)."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}

    async def test_idle_workers_retire_after_idle_timeout(self) -> None:
        async def job(x: int) -> int:
            await anyio.sleep(1)
            return x

        async with WorkerPool(
            min_workers=2, max_workers=10, queue_size=10, idle_timeout=60
        ) as pool:
            t0 = anyio.current_time()
            hs = [await pool.submit(job, i) for i in range(10)]
            assert pool.stats().workers == 10
            assert [await h for h in hs] == list(range(10))
            await anyio.sleep(59)
            assert pool.stats().workers == 10  # not idle long enough yet
            await anyio.sleep(2)
            assert pool.stats().workers == 2  # back to min_workers
            await anyio.sleep(3600)
            assert pool.stats().workers == 2
            assert anyio.current_time() - t0 >= 3600

    async def test_scale_to_zero_and_back(self) -> None:
        async with WorkerPool(min_workers=0, max_workers=3, idle_timeout=5) as pool:
            assert pool.stats().workers == 0
            assert await (await pool.submit(double, 4)) == 8
            await anyio.sleep(10)
            assert pool.stats().workers == 0
            assert await (await pool.submit(double, 5)) == 10

    async def test_resize_a_fixed_pool_to_bounds_lets_idle_workers_retire(self) -> None:
        async with WorkerPool(workers=4, idle_timeout=30) as pool:
            await anyio.sleep(1)  # all 4 parked on the queue, with no idle timer
            pool.resize(min_workers=1, max_workers=4)
            await anyio.sleep(29)
            assert pool.stats().workers == 4  # not idle long enough yet (since the resize)
            await anyio.sleep(2)
            assert pool.stats().workers == 1
            assert await (await pool.submit(double, 3)) == 6

    async def test_lowering_the_minimum_lets_idle_workers_retire(self) -> None:
        """Workers at the minimum park without an idle timer: lowering the minimum of a
        dynamic pool wakes them to park again with one (they stayed for ever)."""
        async with WorkerPool(min_workers=2, max_workers=4, idle_timeout=5) as pool:
            await anyio.sleep(1)  # the 2 workers at the minimum are idle
            pool.resize(min_workers=0)
            await anyio.sleep(4)
            assert pool.stats().workers == 2  # not idle long enough yet (since the resize)
            await anyio.sleep(2)
            assert pool.stats().workers == 0  # as WorkerPool(min_workers=0, ...) would
            assert await (await pool.submit(double, 3)) == 6

    async def test_shutdown_timeout_on_virtual_clock(self) -> None:
        async def job(x: int) -> int:
            await anyio.sleep(x)
            return x

        async with WorkerPool(workers=2, queue_size=10) as pool:
            hs = [await pool.submit(job, s) for s in (1, 2, 100, 200, 3)]
            cancelled = await pool.shutdown(timeout=10)
        # Two workers: 1 s and 2 s finish, 100 s and 200 s run into the timeout, and
        # the 3 s job is still queued behind them: both kinds are cancelled and reported.
        assert [h.cancelled() for h in hs] == [False, False, True, True, True]
        assert set(cancelled) == {hs[2], hs[3], hs[4]}


async def test_abandoned_map_does_not_hang_exit() -> None:
    """A map left unread (no aclose) must not keep the pool's exit waiting on its feeder."""
    async with WorkerPool(workers=2, queue_size=2) as pool:
        it = pool.map(double, range(1000), window=4)
        assert await it.__anext__() == 0
        await anyio.wait_all_tasks_blocked()  # the feeder waits for a window slot
    assert pool.stats().submitted < 1000


async def test_map_reports_items_never_submitted() -> None:
    async with WorkerPool(workers=2, queue_size=2) as pool:
        got: list[int] = []
        with pytest.raises(PoolClosed, match="before map"):
            async for r in pool.map(double, range(1000), window=4):
                got.append(r)
                if r == 4:
                    await pool.shutdown()
        assert got[:3] == [0, 2, 4]


# -- JobHandle.cancel ----------------------------------------------------------------


def assert_accounted(pool: WorkerPool) -> None:
    s = pool.stats()
    assert s.submitted == s.done + s.failed + s.cancelled + s.queued + s.running, s


async def test_cancel_queued_job_never_runs() -> None:
    gate = anyio.Event()
    ran: list[int] = []

    async def job(x: int) -> int:
        ran.append(x)
        await gate.wait()
        return x

    async with WorkerPool(workers=1, queue_size=5) as pool:
        first = await pool.submit(job, 0)
        await anyio.wait_all_tasks_blocked()  # the worker runs job 0
        queued = await pool.submit(job, 1)
        last = await pool.submit(job, 2)
        assert pool.stats().queued == 2
        assert queued.cancel() is True
        assert queued.done() and queued.cancelled() and not queued.running()
        assert pool.stats() == PoolStats(
            submitted=3, running=1, queued=1, done=0, failed=0, cancelled=1, workers=1
        )
        with pytest.raises(JobCancelled, match=r"^job cancelled by JobHandle\.cancel\(\)$"):
            await queued
        with pytest.raises(JobCancelled):
            queued.result()
        assert isinstance(queued.exception(), JobCancelled)
        assert queued.cancel() is True  # idempotent
        gate.set()
        assert await first == 0
        assert await last == 2
    assert ran == [0, 2]
    assert pool.stats() == PoolStats(
        submitted=3, running=0, queued=0, done=2, failed=0, cancelled=1, workers=0
    )


async def test_cancel_running_job_cancels_its_task_and_worker_goes_on() -> None:
    started = anyio.Event()
    unwound: list[str] = []

    async def sleepy(x: int) -> int:
        started.set()
        try:
            await anyio.sleep(3600)
        finally:
            unwound.append("sleepy")
        return x

    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(sleepy, 1)
        await started.wait()
        assert h.running()
        assert h.cancel() is True
        assert not h.done()  # still unwinding: counted as running until it has
        assert h.running()
        assert_accounted(pool)
        with pytest.raises(JobCancelled, match="JobHandle.cancel"):
            await h
        assert unwound == ["sleepy"]
        assert h.cancelled() and h.cancel() is True
        # The same (only) worker takes further jobs: its fresh scope is not cancelled.
        assert await (await pool.submit(double, 5)) == 10
        assert pool.stats().workers == 1
    assert pool.stats() == PoolStats(
        submitted=2, running=0, queued=0, done=1, failed=0, cancelled=1, workers=0
    )


async def test_cancel_running_job_that_swallows_cancellation_still_ends_cancelled() -> None:
    started = anyio.Event()

    async def stubborn() -> str:
        started.set()
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.01)  # cannot be interrupted: runs to its end
        return "finished anyway"

    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(stubborn)
        await started.wait()
        assert h.cancel()
        with pytest.raises(JobCancelled):
            await h
        assert h.cancelled()
        assert await (await pool.submit(double, 2)) == 4  # the worker is fine
    s = pool.stats()
    assert (s.done, s.cancelled) == (1, 1)


async def test_cancel_after_completion_is_a_noop() -> None:
    async with WorkerPool(workers=2) as pool:
        ok = await pool.submit(double, 3)
        bad = await pool.submit(boom, 4)
        assert await ok == 6
        with pytest.raises(ValueError):
            await bad
        assert ok.cancel() is False
        assert bad.cancel() is False
        assert not ok.cancelled() and not bad.cancelled()
        assert ok.result() == 6
        assert isinstance(bad.exception(), ValueError)
    assert pool.stats().cancelled == 0


async def test_cancel_wakes_a_task_awaiting_the_handle() -> None:
    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(anyio.sleep, 3600)
        got: list[BaseException] = []

        async def waiter() -> None:
            try:
                await h
            except JobCancelled as e:
                got.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert h.cancel()
        assert len(got) == 1


async def test_cancel_concurrent_with_shutdown_loses_nothing() -> None:
    async def sleepy(x: int) -> int:
        await anyio.sleep(3600)
        return x

    async with WorkerPool(workers=2, queue_size=10) as pool:
        quick = [await pool.submit(double, i) for i in range(3)]
        await anyio.wait_all_tasks_blocked()
        slow = [await pool.submit(sleepy, i) for i in range(6)]
        await anyio.wait_all_tasks_blocked()  # slow[0], slow[1] run; the rest is queued
        by_user = [slow[0], slow[3]]  # one running, one queued
        results: list[list[JobHandle[int]]] = []

        async def do_shutdown() -> None:
            # (0.5 s, not less: the cancels below must come first on a loaded machine)
            results.append(await pool.shutdown(timeout=0.5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(do_shutdown)
            await anyio.wait_all_tasks_blocked()  # intake closed, waiting for the timeout
            assert all(h.cancel() for h in by_user)
            assert_accounted(pool)
        (by_timeout,) = results
        assert_accounted(pool)
    assert set(by_timeout) == set(slow) - set(by_user)
    for h in by_user:
        with pytest.raises(JobCancelled, match="JobHandle.cancel"):
            await h
    for h in by_timeout:
        with pytest.raises(JobCancelled, match=r"shutdown\(timeout=0\.5\)"):
            await h
    assert all(h.cancel() is True for h in slow)  # idempotent after shutdown too
    assert all(not h.cancel() for h in quick)
    s = pool.stats()
    # Nothing lost: every job completed or is cancelled, by the user or the timeout.
    assert s == PoolStats(
        submitted=9, running=0, queued=0, done=3, failed=0, cancelled=6, workers=0
    )


async def test_cancel_many_concurrently_stats_always_add_up() -> None:
    seen: list[PoolStats] = []

    async def job(x: int) -> int:
        await anyio.sleep(0.001 * (x % 3))
        return x

    async with WorkerPool(workers=4, queue_size=8, on_progress=seen.append) as pool:
        handles = []
        for i in range(60):
            handles.append(await pool.submit(job, i))
            if i % 4 == 1:
                handles[i - 1].cancel()  # queued or running, whichever it is now
            assert_accounted(pool)
    cancelled = [h for h in handles if h.cancelled()]
    done = [h for h in handles if h.done() and not h.cancelled()]
    assert len(cancelled) + len(done) == 60
    assert all(h.result() == i for i, h in enumerate(handles) if h in done)
    assert pool.stats().cancelled == len(cancelled) >= 1
    for s in seen:
        assert s.submitted == s.done + s.failed + s.cancelled + s.queued + s.running


async def test_cancel_thread_job_drops_its_result() -> None:
    release = threading.Event()

    def blocking() -> str:
        release.wait(10)
        return "late"

    async with WorkerPool(workers=1, executor="thread") as pool:
        h = await pool.submit(blocking)
        with anyio.fail_after(10):
            while not h.running():
                await anyio.sleep(0.001)
        assert h.cancel()
        release.set()  # a thread cannot be interrupted: it finishes, its result is dropped
        with pytest.raises(JobCancelled):
            await h
        assert await (await pool.submit(sync_square, 3)) == 9


async def test_cancel_job_in_dynamic_pool_and_fail_fast_not_triggered() -> None:
    started = anyio.Event()

    async def sleepy() -> None:
        started.set()
        await anyio.sleep(3600)

    async with WorkerPool(min_workers=1, max_workers=3, fail_fast=True) as pool:
        h = await pool.submit(sleepy)
        await started.wait()
        h.cancel()
        with pytest.raises(JobCancelled):
            await h
        assert await (await pool.submit(double, 1)) == 2  # the pool was not aborted


# -- what escapes a job: BaseException, and the owner's own cancellation ----------------------


async def run_until_cancelled(started: anyio.Event) -> None:
    started.set()
    await anyio.sleep_forever()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_base_exception_from_a_job_ends_the_block_unwrapped(
    exc_type: type[BaseException],
) -> None:
    """As in a task group (and `Group`): everything is cancelled, the exit raises it as itself."""
    exc = exc_type()
    started = anyio.Event()

    async def fatal() -> None:
        raise exc

    body_cancelled = False
    with pytest.raises(exc_type) as info:
        async with WorkerPool(workers=2) as pool:
            slow = await pool.submit(run_until_cancelled, started)
            await started.wait()
            await pool.submit(fatal)
            try:
                await anyio.sleep_forever()  # the body is cancelled too
            except anyio.get_cancelled_exc_class():
                body_cancelled = True
                raise
    assert info.value is exc
    assert body_cancelled
    with pytest.raises(JobCancelled):
        await slow  # the other worker's job was cancelled, and says so
    assert_accounted(pool)


class Fatal(BaseException):
    pass


async def test_base_exception_while_the_exit_waits_is_raised_not_the_cancellation() -> None:
    """The crew fails while the block's graceful exit waits for the jobs: the pool
    cancels its own wait, and the exit raises the task's error -- never the event
    loop's cancellation exception, which would hide it."""
    exc = Fatal("fatal job")

    async def fatal_later() -> None:
        await anyio.wait_all_tasks_blocked()  # the owner waits in the exit by now
        raise exc

    with pytest.raises(Fatal) as info:
        async with WorkerPool(workers=2) as pool:
            await pool.submit(fatal_later)
            slow = await pool.submit(run_until_cancelled, anyio.Event())
        # (the exit: shutdown() waits for both jobs)
    assert info.value is exc
    with pytest.raises(JobCancelled):
        await slow
    assert_accounted(pool)


@pytest.mark.parametrize("workers", [1, 2, 4])
async def test_on_progress_error_ends_the_block_as_itself(workers: int) -> None:
    """A progress callback that raises fails its worker task: the block raises the
    error as itself, whether or not the exit is already waiting when it happens."""
    err = RuntimeError("bug in callback")

    def progress(stats: PoolStats) -> None:
        raise err

    async def at_once() -> int:
        return 1

    with pytest.raises(RuntimeError) as info:
        async with WorkerPool(workers=workers, on_progress=progress) as pool:
            await pool.submit(at_once)
    assert info.value is err


async def test_map_of_a_non_callable_raises_type_error_from_the_block() -> None:
    got: list[int] = []
    with pytest.raises(TypeError, match="not callable"):
        async with WorkerPool(workers=2) as pool:
            got = [r async for r in pool.map(42, range(3))]  # type: ignore[call-overload]
    assert got == []


async def test_owner_cancelled_from_outside_cancels_running_jobs_and_propagates() -> None:
    started = anyio.Event()
    with anyio.CancelScope() as outer:
        async with WorkerPool(workers=2) as pool:
            h = await pool.submit(run_until_cancelled, started)
            await started.wait()
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught  # the cancellation propagated out of the pool block
    with pytest.raises(JobCancelled):
        await h
    assert_accounted(pool)


async def test_owner_cancelled_while_waiting_for_jobs_at_exit() -> None:
    """The graceful exit waits for running jobs; cancelling it cancels them, and propagates."""
    started = anyio.Event()
    scope = anyio.CancelScope()
    reached_exit: list[bool] = []
    handles: list[JobHandle[None]] = []

    async def owner() -> None:
        with scope:
            async with WorkerPool(workers=1) as pool:
                handles.append(await pool.submit(run_until_cancelled, started))
                await started.wait()
                reached_exit.append(True)
            # leaving the block is a graceful shutdown: it waits for the running job

    async with anyio.create_task_group() as tg:
        tg.start_soon(owner)
        await started.wait()
        await anyio.wait_all_tasks_blocked()  # the owner waits in the pool's exit
        assert reached_exit == [True]
        scope.cancel()
    assert scope.cancelled_caught
    with pytest.raises(JobCancelled):
        await handles[0]


# -- resize: the seed's "hot" reconfiguration (20 -> 100 workers under load) -------------------


async def test_resize_grows_a_running_pool_at_once() -> None:
    gate = anyio.Event()

    async def held(x: int) -> int:
        await gate.wait()
        return x

    async with WorkerPool(workers=2, queue_size=16) as pool:
        handles = [await pool.submit(held, i) for i in range(8)]
        await anyio.wait_all_tasks_blocked()
        assert (pool.stats().running, pool.stats().queued) == (2, 6)
        pool.resize(8)
        assert pool.stats().workers == 8
        await anyio.wait_all_tasks_blocked()
        assert (pool.stats().running, pool.stats().queued) == (8, 0)
        gate.set()
        assert [await h for h in handles] == list(range(8))
    assert_accounted(pool)


async def test_resize_shrinks_idle_workers_at_once_and_keeps_serving() -> None:
    async with WorkerPool(workers=8) as pool:
        await anyio.wait_all_tasks_blocked()  # all 8 idle, parked on the queue
        pool.resize(2)
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 2
        handles = [await pool.submit(double, i) for i in range(20)]
        assert [await h for h in handles] == [2 * i for i in range(20)]
        assert pool.stats().workers == 2
    assert_accounted(pool)


async def test_resize_shrink_never_cancels_a_running_job() -> None:
    gate = anyio.Event()
    peak = 0

    async def held(x: int) -> int:
        nonlocal peak
        peak = max(peak, pool.stats().running)
        await gate.wait()
        return x

    async with WorkerPool(workers=4, queue_size=8) as pool:
        handles = [await pool.submit(held, i) for i in range(4)]
        await anyio.wait_all_tasks_blocked()
        pool.resize(1)
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 4  # busy: they finish their jobs first
        later = [await pool.submit(held, i) for i in range(4, 7)]
        peak = 0
        gate.set()
        assert [await h for h in handles + later] == list(range(7))
        assert pool.stats().workers == 1
        assert peak <= 1  # the later jobs ran on the one worker left
    s = pool.stats()
    assert (s.done, s.cancelled, s.failed) == (7, 0, 0)


async def test_resize_to_bounds_scales_on_backlog_up_to_the_new_max() -> None:
    gate = anyio.Event()

    async def held(x: int) -> int:
        await gate.wait()
        return x

    async with WorkerPool(workers=1, queue_size=4) as pool:
        pool.resize(min_workers=1, max_workers=3)
        handles = [await pool.submit(held, i) for i in range(6)]
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 3  # backlog: scaled up, not past the new max
        assert pool.stats().running == 3
        pool.resize(max_workers=5)  # min kept (1)
        handles += [await pool.submit(held, i) for i in range(6, 8)]
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 5
        gate.set()
        assert sorted([await h for h in handles]) == list(range(8))


async def test_resize_before_the_block_sets_the_starting_size() -> None:
    pool = WorkerPool(workers=2)
    pool.resize(5)
    async with pool:
        assert pool.stats().workers == 5
        assert await (await pool.submit(double, 4)) == 8


async def test_resize_while_shutting_down_starts_nobody() -> None:
    gate = anyio.Event()

    async def held() -> None:
        await gate.wait()

    async with anyio.create_task_group() as tg:
        async with WorkerPool(workers=1) as pool:
            await pool.submit(held)
            await pool.submit(held)  # queued
            tg.start_soon(pool.shutdown)
            await anyio.wait_all_tasks_blocked()
            pool.resize(4)
            assert pool.stats().workers == 1
            gate.set()
    assert pool.stats().done == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((), {}, TypeError, "pass workers, or min_workers"),
        ((2,), {"max_workers": 3}, ValueError, "not both"),
        ((0,), {}, ValueError, "at least one worker"),
        ((), {"min_workers": 5, "max_workers": 2}, ValueError, r"0 <= min_workers \(5\)"),
        ((), {"min_workers": -1}, ValueError, "0 <= min_workers"),
        (("3",), {}, TypeError, "workers must be an int, not str"),
        ((True,), {}, TypeError, "workers must be an int, not bool"),
        ((), {"max_workers": 2.0}, TypeError, "max_workers must be an int, not float"),
    ],
)
async def test_resize_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], exc: type[Exception], match: str
) -> None:
    async with WorkerPool(workers=2) as pool:
        with pytest.raises(exc, match=match):
            pool.resize(*args, **kwargs)
        assert pool.stats().workers == 2  # unchanged


@pytest.mark.parametrize("seed", range(3))
async def test_random_resizes_under_load_lose_nothing(seed: int) -> None:
    import random

    rng = random.Random(seed)

    async def job(x: int) -> int:
        for _ in range(rng.randrange(3)):
            await anyio.sleep(0)
        return x

    with anyio.fail_after(30):
        async with WorkerPool(workers=3, queue_size=4) as pool:
            handles = []
            for i in range(300):
                handles.append(await pool.submit(job, i))
                if rng.random() < 0.05:
                    if rng.random() < 0.5:
                        pool.resize(rng.randrange(1, 8))
                    else:
                        lo = rng.randrange(0, 4)
                        pool.resize(min_workers=lo, max_workers=lo + rng.randrange(1, 5))
            assert [await h for h in handles] == list(range(300))
            pool.resize(2)
            await anyio.wait_all_tasks_blocked()
            assert pool.stats().workers == 2
    s = pool.stats()
    assert (s.submitted, s.done, s.cancelled, s.failed) == (300, 300, 0, 0)


async def test_body_error_wins_over_an_enclosing_cancellation_while_jobs_unwind() -> None:
    """As in Group: the body cancels an enclosing scope and raises; the exit waits for
    a job that takes time to unwind, and the body's error -- not the cancellation --
    comes out of the block."""
    unwinding = anyio.Event()

    async def slow_unwind() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            unwinding.set()
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)

    err = ValueError("body error")
    with pytest.raises(ValueError) as info:
        with anyio.CancelScope() as outer:
            async with WorkerPool(workers=2) as pool:
                await pool.submit(slow_unwind)
                await anyio.wait_all_tasks_blocked()
                outer.cancel()
                raise err
    assert info.value is err
    assert unwinding.is_set()


async def test_resize_raises_the_executor_limit_too() -> None:
    """Thread jobs run one per worker: a resized pool runs as many at once."""
    gate = threading.Event()
    inside: list[int] = []
    lock = threading.Lock()
    peak = 0

    def blocking(x: int) -> int:
        nonlocal peak
        with lock:
            inside.append(x)
            peak = max(peak, len(inside))
        gate.wait(10)
        with lock:
            inside.remove(x)
        return x

    async with WorkerPool(workers=2, executor="thread", queue_size=8) as pool:
        pool.resize(6)
        handles = [await pool.submit(blocking, i) for i in range(6)]
        with anyio.fail_after(10):
            while len(inside) < 6:  # all six start, not two
                await anyio.sleep(0.01)
        gate.set()
        assert [await h for h in handles] == list(range(6))
    assert peak == 6


async def test_resize_shrinks_idle_workers_after_a_workload() -> None:
    """Workers that have served jobs park on the queue in whatever way the channel
    chose (on asyncio a value may go through the buffer to a woken receiver):
    every wake-up call must still reach one, and the pool shrinks at once."""

    async def job(x: int) -> int:
        await anyio.sleep(0.01)
        return x

    async with WorkerPool(workers=20, queue_size=200) as pool:
        handles = [await pool.submit(job, i) for i in range(100)]
        pool.resize(100)
        handles += [await pool.submit(job, i) for i in range(100, 300)]
        assert [await h for h in handles] == list(range(300))
        pool.resize(20)  # (at once: the workers have just parked)
        with anyio.fail_after(10):
            while pool.stats().workers > 20:
                await anyio.sleep(0.001)
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 20
    assert_accounted(pool)


# -- scaling to zero: a submit never waits for a retiring worker ----------------------


class TestIdleRetirementRace:
    """The last worker's idle timer firing in the tick a submit arrives (trio's MockClock)."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}

    @pytest.mark.parametrize("queue_size", [0, 1])
    async def test_submit_in_the_tick_of_the_last_idle_timeout_is_served(
        self, queue_size: int
    ) -> None:
        # The worker's timeout has cancelled its wait but it has not run yet: the
        # submit finds no receiver (queue_size=0: it parks on the channel) and a
        # worker still counted idle, so it starts none. The worker must take that
        # job, not retire and leave the submit waiting in a pool of zero workers.
        for _ in range(10):
            async with WorkerPool(
                workers=1, min_workers=0, max_workers=1, queue_size=queue_size, idle_timeout=5
            ) as pool:
                await anyio.sleep(5)  # the worker's idle deadline, to the tick
                with anyio.move_on_after(1000) as guard:
                    assert await (await pool.submit(double, 4)) == 8
                if guard.cancelled_caught:
                    await pool.shutdown(timeout=0)
                    pytest.fail(f"submit stranded with no worker: {pool.stats()}")
            assert_accounted(pool)


# -- executors: a running job is killed (process) or waited for (thread) ----------------


def wait_for_file(started: str, release: str) -> int:
    """A process/thread job: write its pid to *started*, block until *release* exists.

    The pid is written aside and renamed into place: *started* never exists empty
    (the test reads it as soon as it exists, and may kill the process right after).
    """
    with open(started + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(started + ".tmp", started)
    while not os.path.exists(release):
        time.sleep(0.005)
    return os.getpid()


async def wait_for_path(path: Any) -> None:
    with anyio.fail_after(30):
        while not path.exists():
            await anyio.sleep(0.005)


async def release_later(path: Any) -> None:
    """Before the fix, a process job ran to its end: let it end (the test then fails)."""
    await anyio.sleep(15)
    path.touch()


async def test_cancel_running_process_job_kills_its_process(tmp_path: Any) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    async with WorkerPool(workers=1, executor="process") as pool, anyio.create_task_group() as tg:
        tg.start_soon(release_later, release)
        h = await pool.submit(wait_for_file, str(started), str(release))
        await wait_for_path(started)
        assert h.cancel()
        with pytest.raises(JobCancelled, match="JobHandle.cancel"):
            await h
        assert not release.exists(), "the job ran to its end: its process was not killed"
        with pytest.raises(ProcessLookupError):  # killed (and reaped) before the handle ended
            os.kill(int(started.read_text()), 0)
        assert await (await pool.submit(sync_square, 3)) == 9  # a new worker goes on
        tg.cancel_scope.cancel()
    assert pool.stats().cancelled == 1


async def test_shutdown_timeout_kills_running_process_job_and_reports_it(tmp_path: Any) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    async with WorkerPool(workers=1, executor="process") as pool, anyio.create_task_group() as tg:
        tg.start_soon(release_later, release)
        h = await pool.submit(wait_for_file, str(started), str(release))
        queued = await pool.submit(sync_square, 2)
        await wait_for_path(started)
        cancelled = await pool.shutdown(timeout=0)
        assert not release.exists(), "the job ran to its end: its process was not killed"
        tg.cancel_scope.cancel()
    assert set(cancelled) == {h, queued}
    with pytest.raises(JobCancelled, match=r"shutdown\(timeout=0\)"):
        await h
    assert_accounted(pool)


async def test_shutdown_timeout_waits_for_a_running_thread_job_and_reports_it(
    tmp_path: Any,
) -> None:
    # A thread cannot be interrupted: the shutdown waits for it (no thread of the
    # pool outlives it), drops its result and reports the job cancelled.
    started, release = tmp_path / "started", tmp_path / "release"
    cancelled: list[JobHandle[Any]] = []
    async with WorkerPool(workers=1, executor="thread") as pool:
        h = await pool.submit(wait_for_file, str(started), str(release))
        await wait_for_path(started)

        async def stop() -> None:
            cancelled.extend(await pool.shutdown(timeout=0))

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            await anyio.wait_all_tasks_blocked()  # timed out; waits for the thread
            assert not h.done()
            release.touch()
    assert cancelled == [h]
    with pytest.raises(JobCancelled, match=r"shutdown\(timeout=0\)"):
        await h
    assert_accounted(pool)


async def test_shutdown_timeout_job_that_returns_anyway_ends_cancelled() -> None:
    # As for JobHandle.cancel: what a job does while it unwinds does not matter.
    async def stubborn() -> str:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            pass
        return "late"

    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(stubborn)
        await anyio.wait_all_tasks_blocked()
        cancelled = await pool.shutdown(timeout=0)
    assert cancelled == [h]
    assert h.cancelled()
    assert_accounted(pool)


# -- shutdown() from inside a job -------------------------------------------------------


@pytest.mark.parametrize("timeout", [None, 1])
@pytest.mark.parametrize("where", ["job", "child task"])
async def test_shutdown_from_inside_its_own_job_is_a_runtime_error(
    where: str, timeout: float | None
) -> None:
    async with WorkerPool(workers=2) as pool:

        async def job() -> None:
            if where == "job":
                await pool.shutdown(timeout)
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pool.shutdown, timeout)

        h = await pool.submit(job)
        with anyio.move_on_after(10) as guard:
            with pytest.raises(Exception) as info:
                await h
        if guard.cancelled_caught:
            await pool.shutdown(timeout=0)
            pytest.fail("shutdown() inside a job waits for itself")
        err = info.value
        if where == "child task":
            assert isinstance(err, ExceptionGroup)
            (err,) = err.exceptions
        assert isinstance(err, RuntimeError)
        assert "inside one of the pool's own jobs" in str(err)
        # Nothing was closed: the pool goes on, and its exit shuts it down.
        assert await (await pool.submit(double, 2)) == 4
        other = WorkerPool(workers=1)
        async with other:
            # Another pool's shutdown from this pool's job is fine.
            assert await (await pool.submit(other.shutdown)) == []
    assert pool.stats().failed == 1


# -- a pool is used from the event loop it was entered on -------------------------------


async def test_use_from_another_event_loop_is_a_runtime_error(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    backend, options = anyio_backend
    gate = anyio.Event()
    errors: dict[str, BaseException | None] = {}

    async with WorkerPool(workers=1, queue_size=4) as pool:
        busy = await pool.submit(gate.wait)  # not done: awaiting it would park

        async def other_loop() -> None:
            async def submit() -> None:
                await pool.submit(double, 1)

            async def wait() -> None:
                with anyio.fail_after(5):  # (before the fix: a hang, or loop A's crash)
                    await busy

            for name, op in (("submit", submit), ("await handle", wait)):
                try:
                    await op()
                    errors[name] = None
                except Exception as e:
                    errors[name] = e
            for name, call in (
                ("try_submit", lambda: pool.try_submit(double, 1)),
                ("map", lambda: pool.map(double, [])),
            ):
                try:
                    call()
                    errors[name] = None
                except Exception as e:
                    errors[name] = e

        def run_other() -> None:
            anyio.run(other_loop, backend=backend, backend_options=options)

        await anyio.to_thread.run_sync(run_other)
        gate.set()
        assert await busy is None
    for name, err in errors.items():
        assert isinstance(err, RuntimeError), (name, err)
        assert "another thread or event loop" in str(err), (name, err)
    assert set(errors) == {"submit", "await handle", "try_submit", "map"}
    assert pool.stats().submitted == 1


# -- on_progress --------------------------------------------------------------------------


async def test_on_progress_after_cancelled_jobs_too() -> None:
    seen: list[PoolStats] = []

    async with WorkerPool(workers=1, on_progress=seen.append) as pool:
        running = await pool.submit(anyio.sleep, 3600)
        queued = await pool.submit(double, 1)
        await anyio.wait_all_tasks_blocked()
        queued.cancel()  # cancelled while queued
        assert len(seen) == 1 and seen[-1].cancelled == 1
        running.cancel()  # cancelled while running: reported once it has unwound
        with pytest.raises(JobCancelled):
            await running
        assert len(seen) == 2 and seen[-1].cancelled == 2
        assert await (await pool.submit(double, 2)) == 4
        await pool.submit(anyio.sleep, 3600)
        await pool.submit(anyio.sleep, 3600)
        await anyio.wait_all_tasks_blocked()
        assert len(await pool.shutdown(timeout=0)) == 2  # one running, one queued
    assert len(seen) == 5  # every job that ended: done, failed or cancelled
    assert dataclasses.replace(seen[-1], workers=0) == pool.stats()


async def test_on_progress_error_for_a_cancelled_queued_job_ends_the_block_as_itself() -> None:
    err = RuntimeError("bug in callback")

    def progress(stats: PoolStats) -> None:
        raise err

    with pytest.raises(RuntimeError) as info:
        async with WorkerPool(workers=1, on_progress=progress) as pool:
            await pool.submit(anyio.sleep, 3600)
            queued = await pool.submit(anyio.sleep, 0)
            assert queued.cancel()  # the callback's error is not raised by cancel()
            with anyio.fail_after(10):  # (it cancels the body, as a failed worker does)
                await anyio.sleep_forever()
    assert info.value is err


# -- context variables: a worker a submit adds does not keep its submitter's -------------

_WHO: Any = __import__("contextvars").ContextVar("who", default="nobody")


async def who_and_current() -> tuple[str, object]:
    from asyncgo import current

    await anyio.sleep(0)
    return _WHO.get(), current()


async def test_a_worker_added_by_a_submit_starts_with_the_pools_context_vars() -> None:
    """A dynamic pool adds a worker in a submit(): it used to start with the submitter's
    context variables -- its ``current()`` context, a span, a test's leak marker -- and
    keep them for life, running every later job under them. Every worker now starts
    with those where the block was entered, like the first ones."""
    token = _WHO.set("entry")
    try:
        await _pool_with_a_worker_added_by_a_submit()
    finally:
        _WHO.reset(token)


async def _pool_with_a_worker_added_by_a_submit() -> None:
    async with WorkerPool(min_workers=0, max_workers=1, idle_timeout=3600) as pool:
        ctx, cancel = with_cancel(background())

        async def submit_as(who: str) -> JobHandle[tuple[str, object]]:
            _WHO.set(who)  # (this task's own context)
            with ctx.scope():
                return await pool.submit(who_and_current)

        async with anyio.create_task_group() as tg:
            first: list[Any] = []

            async def first_submit() -> None:
                first.append(await submit_as("request-A"))

            tg.start_soon(first_submit)
        assert pool.stats().workers == 1  # added by request A's submit
        assert await first[0] == ("entry", background())
        second = await submit_as("request-B")
        assert await second == ("entry", background())  # not request A's
        cancel()


# -- found by a randomized model of the pool ------------------------------------------


async def doubled(x: int) -> int:
    return 2 * x


async def source_that_waits() -> AsyncIterator[int]:
    yield 1
    yield 2
    await anyio.sleep(3600)  # e.g. waiting for the next message
    yield 3  # pragma: no cover


@pytest.mark.parametrize("close", [False, True])
async def test_leaving_a_map_over_a_waiting_source_stops_its_feeder(close: bool) -> None:
    """map() over an async source that is waiting for its next item: break (and
    aclose()) stop the feeder, so the pool's exit does not wait for the source (it hung
    until the source's next item). The source is closed in the feeder's task."""
    closed = anyio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            async for x in source_that_waits():
                yield x
        finally:
            closed.set()

    with anyio.fail_after(30):
        async with WorkerPool(workers=2) as pool:
            it = pool.map(doubled, source())
            got = []
            async for r in it:
                got.append(r)
                if len(got) == 2:
                    break
            if close:
                await it.aclose()
    assert got == [2, 4]
    assert closed.is_set()


async def test_a_graceful_shutdown_stops_a_map_waiting_for_its_source() -> None:
    """shutdown() while a map's source waits: the feeder stops, and a consumer still
    reading gets its results, then PoolClosed (not every item was submitted)."""
    with anyio.fail_after(30):
        async with WorkerPool(workers=2) as pool:
            it = pool.map(doubled, source_that_waits())
            assert [await it.__anext__(), await it.__anext__()] == [2, 4]
            await pool.shutdown()
            with pytest.raises(PoolClosed, match="before map\\(\\) submitted every item"):
                await it.__anext__()


class Boom(Exception):
    pass


async def boom_now() -> None:
    raise Boom("job failed")


@pytest.mark.parametrize("body", ["submits-again", "awaits-a-cancelled-handle"])
async def test_fail_fast_error_wins_over_what_its_abort_did_to_the_body(body: str) -> None:
    """fail_fast: the first failure is the block's error, as itself, also when the body
    then hit the abort's consequences -- a refused submit (PoolClosed) or a handle it
    cancelled (JobCancelled); those were raised instead, and the failure was lost."""
    with pytest.raises(Boom) as info:
        async with WorkerPool(workers=2, fail_fast=True) as pool:
            first = await pool.submit(anyio.sleep, 3600)
            failing = await pool.submit(boom_now)
            with pytest.raises(Boom):
                await failing
            if body == "submits-again":
                await pool.submit(anyio.sleep, 0)
            else:
                await first
    assert isinstance(info.value.__context__, (PoolClosed, JobCancelled))


async def test_a_job_raising_a_base_exception_finishes_its_handle() -> None:
    """A job raising a BaseException (KeyboardInterrupt, SystemExit...) ends the block
    as itself; its handle used to stay "running" for ever (a waiter hung), and the
    stats never added up."""

    async def fatal() -> None:
        raise Fatal

    with pytest.raises(Fatal):
        async with WorkerPool(workers=1, queue_size=4) as pool:
            h = await pool.submit(fatal)
            queued = await pool.submit(anyio.sleep, 3600)
            await anyio.sleep_forever()
    assert h.done() and isinstance(h.exception(), Fatal)
    assert queued.cancelled()
    assert_accounted(pool)


async def test_an_idle_worker_at_the_minimum_parks_without_a_timer() -> None:
    """idle_timeout=0: a worker at min_workers went round its idle timer for ever (a
    busy loop: a whole core; under trio's MockClock, time never moved)."""
    with anyio.fail_after(30):
        async with WorkerPool(min_workers=1, max_workers=2, idle_timeout=0) as pool:
            await anyio.wait_all_tasks_blocked()  # it returns: the worker is parked
            assert pool.stats().workers == 1
            assert await (await pool.submit(doubled, 4)) == 8


async def test_shutdown_lists_only_what_its_timeout_cancelled() -> None:
    """shutdown() returns the jobs its timeout cancelled: not those a ctx, fail_fast or
    JobHandle.cancel() cancelled before."""
    ctx, cancel = with_cancel(background())
    async with WorkerPool(workers=1, ctx=ctx) as pool:
        h = await pool.submit(anyio.sleep, 3600)
        await anyio.wait_all_tasks_blocked()
        cancel()  # the ctx aborts the pool
        with pytest.raises(JobCancelled, match="context"):
            await h
        assert await pool.shutdown(timeout=5) == []
    with pytest.raises(Boom):
        async with WorkerPool(workers=2, fail_fast=True) as pool:
            await pool.submit(anyio.sleep, 3600)
            await pool.submit(boom_now)
            assert await pool.shutdown() == []
    async with WorkerPool(workers=1) as pool:
        running = await pool.submit(anyio.sleep, 3600)
        await anyio.wait_all_tasks_blocked()
        assert await pool.shutdown(timeout=0) == [running]  # this one: listed


async def test_a_job_raising_a_cancellation_of_its_own_fails_its_handle_only(
    anyio_backend: Any,
) -> None:
    """asyncio: a job that awaited a future cancelled elsewhere raises CancelledError
    that no cancellation of the pool caused. Its handle fails with a RuntimeError
    chained from it, and its worker goes on: it used to exit (a fixed pool of 2 fell
    to 0 workers after 5 such jobs) and blame "WorkerPool shutdown"."""
    if "trio" in str(anyio_backend):
        pytest.skip("asyncio futures: trio has no cancellation outside a scope")
    import asyncio

    async def job() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        await fut

    async with WorkerPool(workers=2) as pool:
        hs = [await pool.submit(job) for _ in range(5)]
        for h in hs:
            with pytest.raises(RuntimeError, match="raised CancelledError, a cancellation") as info:
                await h
            assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert pool.stats().workers == 2
        assert pool.stats().failed == 5
        assert await (await pool.submit(doubled, 3)) == 6
        assert await pool.shutdown(timeout=10) == []


async def test_fail_fast_keeps_the_failures_own_context() -> None:
    """The failure raised by the block is the job's exception with its own chain: Python
    chained it to the body's PoolClosed as __aexit__ raised it, losing its context."""

    async def fails_while_handling() -> None:
        try:
            {}["missing"]
        except KeyError:
            raise ValueError("job failed while handling KeyError") from None

    async def fails_in_except() -> None:
        try:
            {}["missing"]
        except KeyError:
            raise ValueError("job failed while handling KeyError")  # noqa: B904

    for job, context in ((fails_in_except, KeyError), (fails_while_handling, KeyError)):
        with pytest.raises(ValueError) as info:
            async with WorkerPool(workers=2, fail_fast=True) as pool:
                h = await pool.submit(job)
                with pytest.raises(ValueError):
                    await h
                await pool.submit(anyio.sleep, 0)  # runs into the abort: PoolClosed
        assert info.value is h.exception()
        assert isinstance(info.value.__context__, context), repr(info.value.__context__)


async def returns_one() -> int:
    return 1


async def test_await_of_a_handle_in_an_already_cancelled_scope_raises() -> None:
    """As ``await h`` of a `Group` task: the cancellation, not the result of a job that
    finished in the loop step before it landed (asyncio used to return it)."""
    caught: list[bool] = []
    async with WorkerPool(workers=2) as pool:
        for _ in range(10):
            h = pool.try_submit(returns_one)
            assert h is not None
            with anyio.CancelScope() as scope:
                scope.cancel()
                await h
                pytest.fail("await h returned in a cancelled scope")
            caught.append(scope.cancelled_caught)
            assert await h == 1
    assert caught == [True] * 10


# -- what crosses the process boundary ---------------------------------------------


class NeedsTwo(Exception):
    """An exception that pickles but cannot be rebuilt (two __init__ arguments, one
    passed on to Exception)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code={code} detail={detail}")
        self.detail = detail


def raise_needs_two(x: int) -> int:
    raise NeedsTwo(x, "boom")


def raise_holding_a_lock(x: int) -> int:
    e = ValueError(f"job {x} failed")
    e.lock = threading.Lock()  # type: ignore[attr-defined]
    raise e


def return_a_lock(x: int) -> object:
    return threading.Lock()


def exit_4(x: int) -> int:
    raise SystemExit(4)


def plus_one(x: int) -> int:
    return x + 1


def _refuse_to_load() -> object:
    raise ValueError("this argument cannot be rebuilt in a worker")


class FailsToLoad:
    """Pickles, but cannot be unpickled (as a class the worker cannot import)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


async def test_an_argument_the_worker_cannot_rebuild_fails_its_job_only() -> None:
    # anyio's worker read the call straight from its input: a failure halfway left
    # the rest of it there, and every later job of that worker failed with it.
    async with WorkerPool(workers=1, executor="process") as pool:
        assert await (await pool.submit(plus_one, 1)) == 2
        h = await pool.submit(plus_one, FailsToLoad())
        with pytest.raises(TypeError, match=r"plus_one\(...\) pickles but cannot be rebuilt"):
            await h
        assert [await (await pool.submit(plus_one, i)) for i in range(3)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("fn", "arg", "error", "words"),
    [
        (raise_needs_two, 1, RuntimeError, "raise_needs_two raised NeedsTwo: code=1 detail=boom"),
        (raise_holding_a_lock, 1, RuntimeError, "raised ValueError: job 1 failed, which cannot"),
        (return_a_lock, 1, TypeError, "return_a_lock ran in a worker process, but what it"),
        (plus_one, threading.Lock(), TypeError, "the job plus_one(...) cannot be sent"),
    ],
    ids=["exception-not-rebuilt", "exception-not-pickled", "result", "argument"],
)
async def test_a_process_job_whose_data_cannot_cross_says_what(
    fn: Any, arg: Any, error: type[Exception], words: str
) -> None:
    # Before, the bare pickling error came back (the same for an argument, a result
    # or an exception), or a TypeError about NeedsTwo.__init__ that hid the job's own.
    async with WorkerPool(workers=1, executor="process") as pool:
        h = await pool.submit(fn, arg)
        with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
            await h
        assert await (await pool.submit(plus_one, 1)) == 2  # the pool goes on


async def test_a_process_job_raising_system_exit_leaves_the_next_job_a_working_process() -> None:
    # anyio's worker kept the exiting process for the next job, which then failed
    # with BrokenWorkerProcess.
    with pytest.raises(SystemExit):
        async with WorkerPool(workers=1, executor="process") as pool:
            await (await pool.submit(exit_4, 1))
    async with WorkerPool(workers=1, executor="process") as pool:
        assert await (await pool.submit(plus_one, 1)) == 2


def _child_processes() -> list[str]:
    """The states of this process's children (Linux /proc), e.g. ['S', 'Z']."""
    me, states = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                states.append(fields[0])
    return states


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
async def test_retired_workers_are_reaped_not_left_as_zombies() -> None:
    # A worker retired after a call it could not load was killed but not waited
    # for: on trio each one stayed a zombie, with its pipes open, until the run ended.
    async with WorkerPool(workers=1, executor="process") as pool:
        for _ in range(5):
            with pytest.raises(TypeError, match="pickles but cannot be rebuilt"):
                await (await pool.submit(plus_one, FailsToLoad()))
        assert await (await pool.submit(plus_one, 1)) == 2
        assert "Z" not in _child_processes()

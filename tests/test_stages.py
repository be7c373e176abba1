"""Built-in stages (asyncgo.stages) on asyncio, uvloop and trio, plus a virtual clock.

``map`` ordering is shown with events, not timing: job k finishes only after job
k + 1, so an unordered map emits in reverse and an ordered one in input order.
Batch timeouts run on trio's ``MockClock`` (exact virtual times) and, with the
same structure, on every backend with a short real timeout and no time assertion.
The autouse ``no_leaks`` fixture checks that no task outlives a test.
"""

from __future__ import annotations

import gc
import os
import re
import threading
import time
import warnings
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from asyncgo import (
    Canceled,
    Chan,
    ChanClosed,
    DeadlineExceeded,
    RecvChan,
    SendChan,
    background,
    current,
    rate,
    stages,
    with_cancel,
    with_timeout,
)
from asyncgo import time as gotime
from asyncgo._pipeline import pipeline
from asyncgo.stages import Stage

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]


def task_id() -> int:
    return anyio.get_current_task().id


async def agen(n: int) -> AsyncGenerator[int, None]:
    for i in range(n):
        yield i


class Boom(Exception):
    pass


# -- map -----------------------------------------------------------------------------


async def test_map_sync_and_async() -> None:
    async def double(x: int) -> int:
        await anyio.sleep(0)
        return 2 * x

    assert await (pipeline(range(300)) | stages.map(lambda x: x + 1)).collect() == list(
        range(1, 301)
    )
    assert await (pipeline(range(300)) | stages.map(double)).collect() == list(range(0, 600, 2))
    # a sync callable returning awaitables is awaited
    assert await (pipeline(range(5)) | stages.map(lambda x: double(x))).collect() == [0, 2, 4, 6, 8]


class _Obj:
    """An item or result whose lifetime a test watches."""


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_pipeline_waiting_for_input_keeps_no_old_items_or_results(ordered: bool) -> None:
    """A long-lived pipeline (reading a channel) that waits for more input must not
    keep old items and results alive meanwhile -- in its workers, its source pump or
    its output -- once the consumer has let go of them. (Only the last item, a
    sentinel here, may stay where it was last handled.)"""
    refs: list[weakref.ref[_Obj]] = []

    async def work(item: _Obj | int) -> _Obj | int:
        await anyio.sleep(0)
        if isinstance(item, int):
            return item
        out = _Obj()
        refs.append(weakref.ref(out))
        return out

    src = Chan[_Obj | int]()
    async with (pipeline(src) | stages.map(work, workers=8, ordered=ordered)).stream() as out:
        async with anyio.create_task_group() as tg:

            async def feed() -> None:
                for _ in range(64):
                    item = _Obj()
                    refs.append(weakref.ref(item))
                    await src.send(item)
                    del item

            tg.start_soon(feed)
            for _ in range(64):
                await out.__anext__()
        await src.send(-1)  # the sentinel: every worker has run a job since
        assert await out.__anext__() == -1
        await anyio.wait_all_tasks_blocked()  # every stage waits for input
        gc.collect()
        assert len(refs) == 128
        assert sum(r() is not None for r in refs) == 0
        src.close()


async def plus100(x: int) -> int:
    await anyio.sleep(0)
    return x + 100


class Later:
    """An awaitable that is not a coroutine (its type is learnt as it is met)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self) -> Any:
        yield from anyio.sleep(0).__await__()
        return self.value


def sometimes_async(x: int) -> Any:
    """A sync callable returning a plain value for some items, an awaitable for others."""
    if x % 3 == 0:
        return x + 100
    if x % 3 == 1:
        return plus100(x)
    return Later(x + 100)


@pytest.mark.parametrize("workers", [1, 3])
async def test_map_awaits_every_awaitable_result_whatever_came_before(workers: int) -> None:
    # The first result is plain, later ones awaitables (and the reverse below): each
    # result is looked at, not just the first one.
    p = pipeline(range(4)) | stages.map(lambda x: x if x == 0 else plus100(x), workers=workers)
    assert await p.collect() == [0, 101, 102, 103]
    p = pipeline(range(4)) | stages.map(lambda x: plus100(x) if x == 0 else x, workers=workers)
    assert await p.collect() == [100, 1, 2, 3]
    p = pipeline(range(600)) | stages.map(sometimes_async, workers=workers)
    assert await p.collect() == [x + 100 for x in range(600)]
    # the first awaitable only in a later batch, after many plain results
    p = pipeline(range(2000)) | stages.map(lambda x: plus100(x) if x == 1500 else x)
    assert await p.collect() == [*range(1500), 1600, *range(1501, 2000)]
    direct: Stage[int, int] = stages.map(sometimes_async)
    assert [x async for x in direct(agen(6))] == [100, 101, 102, 103, 104, 105]


async def test_map_failing_awaitable_result_closes_the_rest_of_its_batch() -> None:
    async def fail_on(x: int) -> int:
        await anyio.sleep(0)
        if x == 2:
            raise Boom
        return x

    # filterwarnings = error: a coroutine left unawaited would fail the test on gc
    with pytest.raises(Boom):
        await (pipeline(range(50)) | stages.map(lambda x: x if x == 0 else fail_on(x))).collect()
    gc.collect()


async def test_filter_awaits_every_awaitable_verdict() -> None:
    async def odd(x: int) -> bool:
        await anyio.sleep(0)
        return x % 2 == 1

    # A coroutine is truthy: without awaiting it, every item would pass.
    p = pipeline(range(8)) | stages.filter(lambda x: x > 100 if x == 0 else odd(x))
    assert await p.collect() == [1, 3, 5, 7]
    p = pipeline(range(8)) | stages.filter(lambda x: odd(x) if x == 0 else x % 2 == 1)
    assert await p.collect() == [1, 3, 5, 7]
    p = pipeline(range(600)) | stages.filter(lambda x: Later(x % 5 == 0) if x > 300 else True)
    assert await p.collect() == [*range(301), *range(305, 600, 5)]
    direct: Stage[int, int] = stages.filter(lambda x: x > 100 if x == 0 else odd(x))
    assert [x async for x in direct(agen(6))] == [1, 3, 5]


async def test_tap_awaits_every_awaitable_result() -> None:
    seen: list[int] = []

    async def record(x: int) -> None:
        await anyio.sleep(0)
        seen.append(x)

    p = pipeline(range(300)) | stages.tap(lambda x: None if x == 0 else record(x))
    assert await p.collect() == list(range(300))
    assert seen == list(range(1, 300))
    seen.clear()
    direct: Stage[int, int] = stages.tap(lambda x: None if x == 0 else record(x))
    assert [x async for x in direct(agen(3))] == [0, 1, 2]
    assert seen == [1, 2]


async def test_flat_map_awaits_every_awaitable_result() -> None:
    async def pair(x: int) -> list[int]:
        await anyio.sleep(0)
        return [x, -x]

    p = pipeline(range(4)) | stages.flat_map(lambda x: [x] if x == 0 else pair(x))
    assert await p.collect() == [0, 1, -1, 2, -2, 3, -3]
    # a generator is not awaitable: its items are passed on
    p = pipeline(range(4)) | stages.flat_map(lambda x: (x for _ in range(x)) if x else pair(9))
    assert await p.collect() == [9, -9, 1, 2, 2, 3, 3, 3]


def chained_jobs(n: int) -> tuple[Any, list[anyio.Event]]:
    """Job k finishes only after job k + 1 has: completion order is the reverse."""
    done = [anyio.Event() for _ in range(n)]

    async def job(k: int) -> int:
        if k + 1 < n:
            await done[k + 1].wait()
        done[k].set()
        return k

    return job, done


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_workers_ordering(ordered: bool) -> None:
    n = 8
    job, _ = chained_jobs(n)
    with anyio.fail_after(10):
        out = await (pipeline(range(n)) | stages.map(job, workers=n, ordered=ordered)).collect()
    assert out == (list(range(n)) if ordered else list(reversed(range(n))))


async def test_map_ordered_keeps_order_under_random_delays() -> None:
    import random

    rng = random.Random(6)
    delays = [rng.random() * 0.002 for _ in range(200)]

    async def job(k: int) -> int:
        await anyio.sleep(delays[k])
        return k

    out = await (pipeline(range(200)) | stages.map(job, workers=16)).collect()
    assert out == list(range(200))


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
async def test_map_pool_stress_no_lost_wakeups(workers: int) -> None:
    """Many items, small windows, random yields: every item, in order, no hang.

    (Each channel operation may checkpoint before it parks, every few hundred
    operations: a wake-up sent in that gap used to be lost.)
    """
    import random

    rng = random.Random(workers)
    yields = [rng.randrange(4) for _ in range(5000)]

    async def job(k: int) -> int:
        for _ in range(yields[k]):
            await anyio.sleep(0)
        return k

    with anyio.fail_after(20):
        for ordered in (True, False):
            p = pipeline(range(5000), buffer=8) | stages.map(job, workers=workers, ordered=ordered)
            out = await p.collect()
            assert (out if ordered else sorted(out)) == list(range(5000))


async def test_map_ordered_memory_is_bounded_behind_a_slow_item() -> None:
    workers = 3
    release = anyio.Event()
    started: list[int] = []

    async def job(k: int) -> int:
        started.append(k)
        if k == 0:
            await release.wait()
        return k

    out: list[int] = []
    with anyio.fail_after(10):
        async with (pipeline(range(1000)) | stages.map(job, workers=workers)).stream() as items:
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    async for x in items:
                        out.append(x)

                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                # item 0 holds everything back: at most 2 * workers results wait
                # behind it, plus one slot the feeder holds.
                assert len(started) <= 1 + 2 * workers + 1, started
                assert out == []
                release.set()
    assert out == list(range(1000))


async def test_map_runs_exactly_workers_calls_at_once() -> None:
    workers = 4
    inflight = 0
    peak = 0
    all_in = anyio.Event()

    async def job(x: int) -> int:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        if inflight == workers:
            all_in.set()
        await all_in.wait()  # deadlocks (and fails) unless `workers` calls overlap
        await anyio.sleep(0)
        inflight -= 1
        return x

    with anyio.fail_after(10):
        out = await (pipeline(range(40)) | stages.map(job, workers=workers)).collect()
    assert out == list(range(40)) and peak == workers


async def test_map_error_in_worker_is_raised_as_itself() -> None:
    err = Boom("job 17")

    async def job(x: int) -> int:
        await anyio.sleep(0)
        if x == 17:
            raise err
        return x

    for ordered in (True, False):
        with pytest.raises(Boom) as info:
            await (pipeline(range(100)) | stages.map(job, workers=5, ordered=ordered)).collect()
        assert info.value is err


def blocking(x: int) -> tuple[int, int]:
    time.sleep(0.001)
    return x * x, threading.get_ident()


async def test_map_thread_executor() -> None:
    out = await (pipeline(range(20)) | stages.map(blocking, executor="thread", workers=4)).collect()
    assert [v for v, _ in out] == [x * x for x in range(20)]
    assert threading.get_ident() not in {t for _, t in out}


def cpu_bound(n: int) -> tuple[int, int]:
    total = 0
    for i in range(n):
        total += i * i % 7
    return os.getpid(), total


async def test_map_process_executor_on_cpu_bound_function() -> None:
    jobs = [20_000 + i for i in range(6)]
    p = pipeline(jobs) | stages.map(cpu_bound, executor="process", workers=2)
    with anyio.fail_after(60):
        out = await p.collect()
    assert [t for _, t in out] == [cpu_bound(n)[1] for n in jobs]
    pids = {pid for pid, _ in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


async def test_map_arguments() -> None:
    async def f(x: int) -> int:
        return x

    for workers in (0, -1):  # the message states the real rule for both
        with pytest.raises(
            ValueError, match=rf"^stages\.map\(\) workers must be >= 1, not {workers}$"
        ):
            stages.map(f, workers=workers)
        with pytest.raises(ValueError, match=r"workers must be >= 1, not"):
            stages.map(str, workers=workers, executor="thread")
    with pytest.raises(
        TypeError, match=r"^stages\.map\(\) workers must be an int >= 1, not float$"
    ):
        stages.map(f, workers=2.0)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="executor="):
        stages.map(f, executor="fiber")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="is async"):
        stages.map(f, executor="thread")
    with pytest.raises(TypeError, match="needs a callable"):
        stages.map(3)  # type: ignore[call-overload]


# -- filter, flat_map, tap, take, buffer -----------------------------------------------


async def test_filter_sync_and_async() -> None:
    async def odd(x: int) -> bool:
        return x % 2 == 1

    assert await (pipeline(range(10)) | stages.filter(lambda x: x > 6)).collect() == [7, 8, 9]
    assert await (pipeline(range(10)) | stages.filter(odd)).collect() == [1, 3, 5, 7, 9]


async def test_flat_map() -> None:
    closed = []

    async def repeat(x: int) -> AsyncIterator[int]:
        try:
            for _ in range(x):
                yield x
        finally:
            closed.append(x)

    async def as_list(x: int) -> list[int]:
        return [x, -x]

    assert await (pipeline(range(4)) | stages.flat_map(lambda x: [x] * x)).collect() == [
        1,
        2,
        2,
        3,
        3,
        3,
    ]
    assert await (pipeline(range(4)) | stages.flat_map(repeat)).collect() == [1, 2, 2, 3, 3, 3]
    assert closed == [0, 1, 2, 3]
    assert await (pipeline(range(1, 3)) | stages.flat_map(as_list)).collect() == [1, -1, 2, -2]


async def test_tap_sync_and_async() -> None:
    seen: list[int] = []

    async def record(x: int) -> None:
        seen.append(-x)

    p = pipeline(range(5)) | stages.tap(seen.append) | stages.tap(record)
    assert await p.collect() == [0, 1, 2, 3, 4]
    assert sorted(seen) == [-4, -3, -2, -1, 0, 0, 1, 2, 3, 4]


async def test_take() -> None:
    assert await (pipeline(range(10)) | stages.take(3)).collect() == [0, 1, 2]
    assert await (pipeline(range(10)) | stages.take(0)).collect() == []
    assert await (pipeline(range(3)) | stages.take(10)).collect() == [0, 1, 2]

    async def endless() -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    with anyio.fail_after(10):
        assert await (pipeline(endless) | stages.take(1000)).collect() == list(range(1000))


# -- batch ---------------------------------------------------------------------------


async def test_batch_by_size() -> None:
    out = await (pipeline(range(10)) | stages.batch(4)).collect()
    assert out == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_batch_timeout_sends_a_short_batch() -> None:
    """Same structure as the virtual-clock test; a real 20 ms timeout, no time assertion.

    Only the timeout can release the first items, so no batch mixes them with the
    later ones; how they are grouped is the virtual-clock test's to check (a stall of
    20 ms between two yields on a loaded machine splits them here)."""
    first_seen = anyio.Event()

    async def source() -> AsyncIterator[int]:
        for i in range(3):
            yield i
        await first_seen.wait()  # only the timeout can release [0, 1, 2]
        for i in range(3, 5):
            yield i

    out = []
    with anyio.fail_after(10):
        async with (pipeline(source) | stages.batch(5, timeout=0.02)).stream() as items:
            async for b in items:
                out.append(b)
                first_seen.set()
    assert [x for b in out for x in b] == [0, 1, 2, 3, 4]
    assert all(set(b) <= {0, 1, 2} or set(b) <= {3, 4} for b in out), out
    assert all(b for b in out)  # no empty batch


class TestBatchOnVirtualClock:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    async def test_short_batch_exactly_at_timeout(self) -> None:
        async def source() -> AsyncIterator[int]:
            for i in range(3):
                yield i
            await anyio.sleep(10)
            for i in range(3, 10):
                yield i
            await anyio.sleep(0.5)
            yield 10

        t0 = anyio.current_time()
        got: list[tuple[Any, list[int]]] = []
        async with (pipeline(source) | stages.batch(5, timeout=1.0)).stream() as items:
            async for b in items:
                got.append((anyio.current_time() - t0, b))
        assert got == [
            (pytest.approx(1.0), [0, 1, 2]),  # the oldest item waited 1 s
            (pytest.approx(10.0), [3, 4, 5, 6, 7]),  # full: sent at once
            (pytest.approx(10.5), [8, 9, 10]),  # input ended before the timeout
        ]

    async def test_timeout_counts_from_the_first_item(self) -> None:
        async def source() -> AsyncIterator[int]:
            for i in range(4):
                yield i
                await anyio.sleep(0.4)

        t0 = anyio.current_time()
        got: list[tuple[Any, list[int]]] = []
        async with (pipeline(source) | stages.batch(10, timeout=1.0)).stream() as items:
            async for b in items:
                got.append((anyio.current_time() - t0, b))
        assert got == [(pytest.approx(1.0), [0, 1, 2]), (pytest.approx(1.6), [3])]


async def test_batch_arguments() -> None:
    # Every message states the real rule (>= 1), for 0 and for negatives alike.
    for size in (0, -1):
        with pytest.raises(ValueError, match=rf"^stages\.batch\(\) size must be >= 1, not {size}$"):
            stages.batch(size)
    with pytest.raises(TypeError, match=r"^stages\.batch\(\) size must be an int >= 1, not str$"):
        stages.batch("3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be >= 0 seconds, not -1"):
        stages.batch(3, timeout=-1)
    with pytest.raises(ValueError, match="timeout must be >= 0 seconds, not nan"):
        stages.batch(3, timeout=float("nan"))
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None, not str"):
        stages.batch(3, timeout="1")  # type: ignore[arg-type]
    stages.batch(1, timeout=0)  # the limits themselves are fine


# -- merge, fan_out, tee -------------------------------------------------------------


async def test_merge_totals_and_per_source_order() -> None:
    ch = Chan[int](8)

    async def fill() -> None:
        for i in range(3000, 3500):
            await ch.send(i)
        ch.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(fill)
        p = pipeline(range(1000)) | stages.merge(
            range(1000, 2000), lambda: agen_from(2000, 3000), ch, pipeline(range(3500, 4000))
        )
        out = await p.collect()
    assert sorted(out) == list(range(4000))
    for lo in (0, 1000, 2000, 3000, 3500):
        part = [x for x in out if lo <= x < lo + 500]
        assert part == sorted(part)


async def agen_from(lo: int, hi: int) -> AsyncIterator[int]:
    for i in range(lo, hi):
        yield i


async def test_merge_error_in_a_branch() -> None:
    async def bad() -> AsyncIterator[int]:
        yield 1
        raise Boom

    with pytest.raises(Boom):
        await (pipeline(range(10**6)) | stages.merge(bad)).collect()


async def test_fan_out_totals_and_one_task_per_copy() -> None:
    ran: dict[int, int] = {}
    closed: list[int] = []

    async def worker(items: AsyncIterator[int]) -> AsyncIterator[int]:
        me = task_id()
        try:
            async for x in items:
                ran[me] = ran.get(me, 0) + 1
                await anyio.sleep(0)
                yield x * x
        finally:
            closed.append(me)

    out = await (pipeline(range(2000)) | stages.fan_out(3, worker)).collect()
    assert sorted(out) == [x * x for x in range(2000)]
    assert len(ran) == 3 and sum(ran.values()) == 2000
    assert sorted(closed) == sorted(ran)


async def test_fan_out_arguments() -> None:
    for n in (0, -1):  # the message states the real rule (>= 1) for both
        with pytest.raises(ValueError, match=rf"^stages\.fan_out\(\) n must be >= 1, not {n}$"):
            stages.fan_out(n, stages.map(str))
    with pytest.raises(TypeError, match=r"^stages\.fan_out\(\) n must be an int >= 1, not bool$"):
        stages.fan_out(True, stages.map(str))
    with pytest.raises(TypeError, match="needs a stage"):
        stages.fan_out(2, 3)  # type: ignore[arg-type]
    # take and buffer do allow 0: their messages say >= 0
    with pytest.raises(ValueError, match=r"^stages\.take\(\) n must be >= 0, not -1$"):
        stages.take(-1)
    with pytest.raises(ValueError, match=r"^stages\.buffer\(\) n must be >= 0, not -1$"):
        stages.buffer(-1)


async def test_fan_out_then_merge_like_the_seed() -> None:
    """Go's fanOut(ctx, in, 3) + fanIn(ctx, workers...): every item processed once."""

    async def square(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for n in items:
            await anyio.sleep(0)
            yield n * n

    out = await (pipeline(range(1, 11)) | stages.fan_out(3, square)).collect()
    assert sorted(out) == [n * n for n in range(1, 11)] and sum(out) == 385


async def test_tee_every_sink_sees_every_item() -> None:
    seen_a: list[int] = []
    seen_b: list[int] = []
    ch = Chan[int](1000)

    async def sink_a(items: AsyncIterator[int]) -> AsyncIterator[None]:
        async for x in items:
            seen_a.append(x)
            if x < 0:
                yield None

    async def sink_b(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            seen_b.append(x)
            yield x

    out = await (pipeline(range(500)) | stages.tee(sink_a, sink_b, ch, stages.take(2))).collect()
    assert out == seen_a == seen_b == list(range(500))
    assert ch.closed and [x async for x in ch] == list(range(500))
    assert stages.broadcast is stages.tee


async def naturals() -> AsyncIterator[int]:
    i = 0
    while True:
        yield i
        i += 1


async def test_tee_channel_sink_with_room_holds_everything_that_went_downstream() -> None:
    """Go's tee: an output with room gets item i before downstream can see it."""
    for stop in (0, 3, 100, 450):  # within the first batch, or later ones
        for _ in range(5):  # trio's scheduling is randomised
            audit = Chan[int](500)
            seen_by_stage: list[int] = []

            async def stage_sink(items: AsyncIterator[int]) -> AsyncIterator[int]:
                async for x in items:
                    seen_by_stage.append(x)
                    yield x

            down: list[int] = []
            with anyio.fail_after(10):
                p = pipeline(naturals) | stages.tee(stage_sink, audit)
                async with p.stream() as items:
                    async for x in items:
                        down.append(x)
                        if x == stop:
                            break
            assert audit.closed
            seen = [x async for x in audit]
            assert seen == list(range(len(seen)))  # in order, nothing duplicated
            assert seen[: len(down)] == down, (stop, len(down), len(seen))
            assert seen_by_stage == list(range(len(seen_by_stage)))


async def test_tee_full_channel_sink_lags_downstream_by_one_item_at_most() -> None:
    audit = Chan[int](5)  # nobody reads it: it fills up, then stalls everything
    down: list[int] = []

    async def consume() -> None:
        async with (pipeline(naturals, buffer=8) | stages.tee(audit)).stream() as items:
            async for x in items:
                down.append(x)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        with anyio.fail_after(10):
            await anyio.wait_all_tasks_blocked()
        # The sink holds 0..4; item 5 went downstream (Go's select over the outputs)
        # and the tee waits to hand it to the sink; nothing further was read.
        assert down == list(range(6))
        tg.cancel_scope.cancel()
    assert audit.closed and [x async for x in audit] == list(range(5))


async def test_tee_lockstep_reader_of_unbuffered_sinks() -> None:
    """Go: ``for v := range out1 { fmt.Println(v, <-out2) }`` with unbuffered channels."""
    audit = Chan[int]()
    got: list[tuple[int, int]] = []
    with anyio.fail_after(10):
        async with (pipeline(range(300)) | stages.tee(audit)).stream() as items:
            async for x in items:
                got.append((x, await audit.recv()))
    assert got == [(i, i) for i in range(300)]
    assert audit.closed

    # Two unbuffered sinks, read in the opposite order to the one tee() lists them in.
    a, b = Chan[int](), Chan[int]()
    triples: list[tuple[int, int, int]] = []
    with anyio.fail_after(10):
        async with (pipeline(range(300)) | stages.tee(a, b)).stream() as items:
            async for x in items:
                y = await b.recv()
                triples.append((x, y, await a.recv()))
    assert triples == [(i, i, i) for i in range(300)]


async def test_tee_closed_channel_sink_fails_the_pipeline() -> None:
    audit = Chan[int](10)
    audit.close()
    with anyio.fail_after(10), pytest.raises(ChanClosed, match="closed"):
        await (pipeline(range(3)) | stages.tee(audit)).collect()


# -- rate_limit ------------------------------------------------------------------------


class FakeLimiter:
    """Stands in for asyncgo.rate.Limiter: records each wait()."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, object]] = []

    async def wait(self, n: int = 1, ctx: Any = None) -> None:
        self.calls.append((n, ctx))
        await anyio.sleep(0)


async def test_rate_limit_waits_once_per_item() -> None:
    lim = FakeLimiter()
    assert await (pipeline(range(50)) | stages.rate_limit(lim)).collect() == list(range(50))
    assert lim.calls == [(1, None)] * 50
    with pytest.raises(TypeError, match="limiter"):
        stages.rate_limit(object())  # type: ignore[arg-type]


async def test_rate_limit_runs_until_the_deadline_and_ends_with_ctx_err() -> None:
    """A limiter that refuses at once for the deadline does not end the run early.

    No lower bound on the items: on a loaded machine the 0.05 s deadline can pass
    before the first one comes (the race of the clean-stop test below, seen in CI).
    How many flow, and when, is asserted on the virtual clock
    (TestRateLimitOnVirtualClock.test_items_flow_until_the_deadline)."""
    ctx, cancel = with_timeout(background(), 0.05)
    got: list[int] = []
    with anyio.fail_after(10), pytest.raises(DeadlineExceeded) as info:
        async with (pipeline(range(10_000)) | stages.rate_limit(rate.Limiter(200, 1))).stream(
            ctx
        ) as items:
            async for x in items:
                got.append(x)
    ended = anyio.current_time()
    cancel()
    assert info.value is ctx.err()  # the ctx's own error, not the limiter's refusal
    assert ended >= ctx.deadline()  # type: ignore[operator]  # not when the limiter knew
    assert got == list(range(len(got))) and len(got) < 10_000


async def test_rate_limit_refusal_that_crosses_the_deadline_ends_with_ctx_err() -> None:
    """A limiter refuses for the deadline, and by the time it has, the deadline has
    passed (the clock ticked between the two readings): the run still ends with the
    ctx's own error, not the limiter's refusal."""

    class LateRefusal:
        async def wait(self, n: int = 1, ctx: Any = None) -> None:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.1)  # past the ctx's deadline, before refusing
            raise DeadlineExceeded("rate: wait(n=1) would exceed context deadline")

    ctx, cancel = with_timeout(background(), 0.01)
    with anyio.fail_after(10), pytest.raises(DeadlineExceeded) as info:
        await (pipeline(range(5)) | stages.rate_limit(LateRefusal())).collect(ctx)  # type: ignore[arg-type]
    cancel()
    assert info.value is ctx.err()


async def test_rate_limit_cancelled_ctx_ends_with_ctx_err() -> None:
    ctx, cancel = with_cancel(background())
    got: list[int] = []
    with anyio.fail_after(10), pytest.raises(Canceled) as info:
        async with (pipeline(range(100)) | stages.rate_limit(rate.Limiter(100, 1))).stream(
            ctx
        ) as items:
            async for x in items:
                got.append(x)
                if x == 2:
                    cancel()
    assert info.value is ctx.err()
    assert got == [0, 1, 2]


class TestRateLimitOnVirtualClock:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    async def test_items_flow_until_the_deadline(self) -> None:
        # 10 tokens/s, burst 1: items at 0, 0.1 and 0.2 s; the next token (0.3 s)
        # comes after the deadline (0.25 s), which the limiter knows at 0.2 s.
        t0 = anyio.current_time()
        ctx, cancel = with_timeout(background(), 0.25)
        got: list[tuple[Any, int]] = []
        with pytest.raises(DeadlineExceeded) as info:
            async with (pipeline(range(100)) | stages.rate_limit(rate.Limiter(10, 1))).stream(
                ctx
            ) as items:
                async for x in items:
                    got.append((anyio.current_time() - t0, x))
        ended = anyio.current_time() - t0
        cancel()
        assert got == [(pytest.approx(0.0), 0), (pytest.approx(0.1), 1), (pytest.approx(0.2), 2)]
        assert ended == pytest.approx(0.25)  # at the deadline, not when the limiter knew
        assert info.value is ctx.err()


# -- called directly, outside a pipeline ---------------------------------------------


async def test_stages_called_directly() -> None:
    async def inc(x: int) -> int:
        return x + 1

    assert [x async for x in stages.map(inc, workers=4)(agen(5))] == [1, 2, 3, 4, 5]
    odd: Stage[int, int] = stages.filter(lambda x: x % 2)
    assert [x async for x in odd(agen(5))] == [1, 3]
    twice: Stage[int, int] = stages.flat_map(lambda x: [x, x])
    assert [x async for x in twice(agen(2))] == [0, 0, 1, 1]
    src = agen(5)
    take2: Stage[int, int] = stages.take(2)
    assert [x async for x in take2(src)] == [0, 1]
    await src.aclose()  # the caller owns the input it hands to a stage
    pairs: Stage[int, list[int]] = stages.batch(2)
    assert [x async for x in pairs(agen(5))] == [[0, 1], [2, 3], [4]]
    show: Stage[int, int] = stages.tap(print)
    assert [x async for x in show(agen(0))] == []
    same: Stage[int, int] = stages.buffer(3)
    assert [x async for x in same(agen(3))] == [0, 1, 2]
    limited: Stage[int, int] = stages.rate_limit(FakeLimiter())
    assert [x async for x in limited(agen(2))] == [0, 1]
    needs_tasks: list[Stage[int, int]] = [
        stages.merge(range(3)),
        stages.fan_out(2, stages.map(inc)),
        stages.tee(take2),
        stages.batch(2, timeout=1.0),  # type: ignore[list-item]
    ]
    for stage in needs_tasks:
        with pytest.raises(TypeError, match="pipeline"):
            stage(agen(3))


async def test_fan_out_balances_single_items() -> None:
    """An idle copy takes the next item: a busy copy never holds a list of them."""
    release = anyio.Event()
    by_copy: dict[int, list[int]] = {}

    async def worker(items: AsyncIterator[int]) -> AsyncIterator[int]:
        me = task_id()
        async for x in items:
            by_copy.setdefault(me, []).append(x)
            if x == 0:
                await release.wait()  # copy holding item 0 is stuck until the end
            yield x

    out: list[int] = []
    with anyio.fail_after(10):
        async with (pipeline(range(10)) | stages.fan_out(3, worker)).stream() as items:
            async for x in items:
                out.append(x)
                if len(out) == 9:
                    release.set()
    assert sorted(out) == list(range(10))
    assert sorted(len(v) for v in by_copy.values())[0] == 1  # the stuck copy took one item


async def test_fan_out_of_builtin_stages() -> None:
    async def inc(x: int) -> int:
        await anyio.sleep(0)
        return x + 1

    out = await (pipeline(range(300)) | stages.fan_out(3, stages.map(inc))).collect()
    assert sorted(out) == list(range(1, 301))
    # each copy of take(2) takes two, then the fan-out ends when all copies did
    with anyio.fail_after(10):
        out = await (pipeline(range(100)) | stages.fan_out(3, stages.take(2))).collect()
    assert len(out) == 6 and len(set(out)) == 6


class _CopyBoom(Exception):
    pass


def _bad_at_5(x: int) -> int:
    if x == 5:
        raise _CopyBoom(x)
    return x


@pytest.mark.parametrize(
    "copy",
    [
        pytest.param(lambda: stages.map(_bad_at_5), id="map"),
        pytest.param(lambda: stages.filter(_bad_at_5), id="filter"),
        pytest.param(lambda: stages.tap(_bad_at_5), id="tap"),
        pytest.param(lambda: stages.map(_bad_at_5, workers=2), id="map-workers"),
    ],
)
async def test_fan_out_of_a_failing_builtin_stage_raises_the_error_as_itself(copy: Any) -> None:
    """An error in a copy of a built-in stage ends the pipeline and reaches the
    consumer as itself, not wrapped in the copy's task group."""
    with pytest.raises(_CopyBoom) as info:
        await (pipeline(range(10)) | stages.fan_out(2, copy())).collect()
    assert info.value.args == (5,)


# -- fan_out: copies that end early lose nothing and strand nobody ----------------------


async def trickle(n: int) -> AsyncIterator[int]:
    """A slow source: each item comes only once every other task is idle."""
    for i in range(n):
        await anyio.wait_all_tasks_blocked()
        yield i


async def take3(items: AsyncIterator[int]) -> AsyncIterator[int]:
    n = 0
    async for x in items:
        yield x
        n += 1
        if n == 3:
            return


@pytest.mark.parametrize(
    "copy", [pytest.param(take3, id="generator"), pytest.param(stages.take(3), id="take")]
)
async def test_fan_out_copy_ending_while_it_fetches_wakes_the_others(copy: Any) -> None:
    """A copy that ends while it is the one waiting for the input hands that job on:
    the other copies, parked until it brings items, do not wait forever."""
    with anyio.fail_after(10):  # a hang guard, not a timing assertion
        out = await (pipeline(lambda: trickle(100)) | stages.fan_out(2, copy)).collect()
    assert len(out) == 6 and len(set(out)) == 6


class StopOnPoison(stages.TaskStage[int, int]):
    """Passes items on; a negative item (poison) ends this copy."""

    async def run(self, inp: RecvChan[int], out: SendChan[int]) -> None:
        async for x in inp:
            if x < 0:
                return
            await anyio.sleep(0)
            await out.send(x)


async def stop_on_poison(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        if x < 0:
            return
        await anyio.sleep(0)
        yield x


@pytest.mark.parametrize("at", [0, 47, 49])
@pytest.mark.parametrize("buffer", [0, 256])
@pytest.mark.parametrize(
    "copy",
    [
        pytest.param(stop_on_poison, id="generator"),
        pytest.param(StopOnPoison(), id="task-stage"),
        pytest.param(stages.fan_out(2, StopOnPoison()), id="nested-fan-out"),
    ],
)
async def test_fan_out_copy_ending_early_drops_no_item_it_did_not_take(
    copy: Any, buffer: int, at: int
) -> None:
    """Each item goes to exactly one copy: the items a copy's input had fetched but
    not handed to it when it ended go to the other copies, in order -- also near
    the end of the input, where the others must not have ended already."""
    poisons = [-1, -1] if isinstance(copy, type(stages.fan_out(1, take3))) else [-1]
    items = list(range(50))
    items[at:at] = poisons  # (nested: 4 copies, two poisoned)
    with anyio.fail_after(10):
        out = await (pipeline(items, buffer=buffer) | stages.fan_out(2, copy)).collect()
    assert sorted(out) == list(range(50))


class Rows:
    """An async iterable whose ``__aiter__`` is an async generator (a cursor)."""

    def __init__(self, n: int, log: list[str]) -> None:
        self.n = n
        self.log = log

    async def __aiter__(self) -> AsyncIterator[int]:
        me = anyio.get_current_task().id
        try:
            for i in range(self.n):
                yield i
        finally:
            self.log.append("closed in its task" if anyio.get_current_task().id == me else "?")


async def test_flat_map_closes_the_generator_behind_an_async_iterable_in_its_task() -> None:
    """fn returns an async iterable, not an iterator: the generator its __aiter__
    made is closed by the stage, in the stage's task, before the block exits (it was
    left to the loop's finalizer, or to trio's "abandoned" sweep, later)."""
    log: list[str] = []
    async with (
        pipeline([1000]) | stages.flat_map(lambda n: Rows(n, log)) | stages.buffer(0)
    ).stream() as items:
        async for x in items:
            if x == 2:
                break
    assert log == ["closed in its task"]
    log.clear()
    got = await (pipeline([3]) | stages.flat_map(lambda n: Rows(n, log))).collect()
    assert got == [0, 1, 2]
    assert log == ["closed in its task"]


@pytest.mark.parametrize("depth", [2, 3])
async def test_nested_fan_outs_share_one_input_and_lose_no_item(depth: int) -> None:
    """Nested fan_outs whose copies end early, near the end of the input, many times
    over: each item goes to exactly one copy, none is lost (one was, on trio, about
    once in 300 runs, while an inner fan_out kept an input of its own)."""
    import random

    rng = random.Random(depth)
    copies = 2**depth
    for _ in range(200):
        stage: Any = StopOnPoison()
        for _ in range(depth):
            stage = stages.fan_out(2, stage)
        poisons = rng.randint(1, copies - 1)  # at least one copy lives to the end
        items: list[int] = list(range(30))
        at = rng.choice([0, 25, 28, 30])
        items[at:at] = [-1] * poisons
        with anyio.fail_after(10):
            out = await (pipeline(items, buffer=rng.choice([0, 256])) | stage).collect()
        assert sorted(out) == list(range(30)), (poisons, at)


class StopOnPoisonAtOnce(stages.TaskStage[int, int]):
    """`StopOnPoison` without the checkpoint: each item is sent on as it comes."""

    async def run(self, inp: RecvChan[int], out: SendChan[int]) -> None:
        async for x in inp:
            if x < 0:
                return
            await out.send(x)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: stages.fan_out(3, StopOnPoisonAtOnce()), id="3-copies"),
        pytest.param(lambda: stages.fan_out(3, stages.fan_out(1, StopOnPoisonAtOnce())), id="3x1"),
    ],
)
async def test_fan_out_input_does_not_end_while_a_given_back_item_waits(make: Any) -> None:
    """Two copies end on poisons, the third lives to the end: the item one of them
    gave back is the third's, also when the copy woken to take it has not run yet as
    the last of the others leaves (the input ended with it queued, on trio about one
    run in ten)."""
    for _ in range(300):
        with anyio.fail_after(10):
            out = await (pipeline([0, 1, 2, 3, -1, 4, -1], buffer=256) | make()).collect()
        assert sorted(out) == [0, 1, 2, 3, 4]


async def sleeps_on_the_run_ctx(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        if x:
            await gotime.sleep(10, current())  # ends with ctx.err() at the deadline
        yield x


async def sleep_on_the_run_ctx(x: int) -> int:
    if x:
        await gotime.sleep(10, current())
    return x


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: sleeps_on_the_run_ctx, id="stage"),
        pytest.param(lambda: stages.map(sleep_on_the_run_ctx), id="map"),
        pytest.param(lambda: stages.map(sleep_on_the_run_ctx, workers=2), id="map-workers"),
        pytest.param(lambda: stages.fan_out(2, sleeps_on_the_run_ctx), id="fan_out"),
        pytest.param(
            lambda: stages.fan_out(2, stages.fan_out(2, sleeps_on_the_run_ctx)), id="nested"
        ),
        pytest.param(lambda: stages.fan_out(2, stages.rate_limit(rate.Limiter(1, 1))), id="rate"),
    ],
)
async def test_a_stage_ending_with_the_run_ctx_err_is_a_clean_stop(make: Any) -> None:
    """A stage -- or a map worker, a fan_out copy -- that waited on the run's ctx and
    raises its ``ctx.err()`` at the deadline stops the run cleanly: leaving the block
    without reading again raises nothing (docs/pipelines.md), reading raises
    ``ctx.err()`` itself. A worker or a copy used to fail the run with it instead.

    The streaming half cancels the ctx itself once it has read the first item: a
    0.05 s deadline could pass before that item arrived on a loaded machine (seen
    once in CI). The ``collect`` half keeps the deadline, which may pass at any time."""
    ctx, cancel = with_cancel(background())
    with anyio.fail_after(30):
        async with (pipeline(range(100), buffer=0) | make()).stream(ctx) as it:
            assert await it.__anext__() == 0
            cancel()
            await anyio.sleep(0.05)  # the stages see the end too; we read no more
    assert isinstance(ctx.err(), Canceled)
    with with_timeout(background(), 0.05) as ctx:
        with anyio.fail_after(30), pytest.raises(DeadlineExceeded) as caught:
            await (pipeline(range(100), buffer=0) | make()).collect(ctx)
    assert caught.value is ctx.err()


async def test_fan_out_of_a_tee_closes_its_channel_when_the_last_copy_ends() -> None:
    ch = Chan[int](1)
    got: list[int] = []

    async def reader() -> None:
        async for x in ch:
            got.append(x)
            await anyio.sleep(0)  # a slow reader: the copies wait for it

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            p = pipeline(range(50), buffer=0) | stages.fan_out(3, stages.tee(ch))
            out = await p.collect()
    assert sorted(out) == list(range(50))
    assert sorted(got) == list(range(50))
    assert ch.closed


@pytest.mark.parametrize("how", ["stream", "collect", "run"])
async def test_tee_closes_its_channels_when_the_ctx_was_done_before_the_start(how: str) -> None:
    """No stage runs when the ctx is done already, but the tee's channels are closed
    as when it stops (Go: the tee goroutine's ``defer close(out)``): readers of them,
    nested in ``fan_out``, in a stage sink or in a merged pipeline, do not hang."""
    ctx, cancel = with_cancel(background())
    cancel()
    a, b, c, d = Chan[int](4), Chan[int](4), Chan[int](4), Chan[int](4)
    p = (
        pipeline(range(3))
        | stages.tee(a, stages.tee(b))
        | stages.fan_out(2, stages.tee(c))
        | stages.merge(pipeline([7]) | stages.tee(d))
    )
    with pytest.raises(Canceled):
        if how == "stream":
            async with p.stream(ctx) as items:
                async for _ in items:
                    pass
        elif how == "collect":
            await p.collect(ctx)
        else:
            await p.run(ctx)
    assert [ch.closed for ch in (a, b, c, d)] == [True] * 4
    for ch in (a, b, c, d):
        assert [x async for x in ch] == []  # (closed and empty: no stage ran)


def awaitable_until_3(x: int) -> Any:
    if x == 3:
        raise ValueError("bad item")
    return fetch10(x)  # a sync callable returning an awaitable: awaited (docs)


@pytest.mark.parametrize("make", [stages.map, stages.filter, stages.tap])
async def test_coroutines_made_before_a_sync_call_raised_are_closed(make: Any) -> None:
    """A sync callable that returned coroutines for the first items of a batch and
    then raised: those coroutines are closed, not left to warn "never awaited" (which
    ``-W error`` turns into a failure). They used to be dropped (found by a fuzzer)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="bad item"):
            await (pipeline(range(10)) | make(awaitable_until_3)).collect()
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


# -- executors: a sync function that returns an awaitable is refused -------------------


async def fetch10(x: int) -> int:
    await anyio.sleep(0)
    return x * 10


def returns_a_coroutine(x: int) -> Any:
    return fetch10(x)


async def test_thread_executor_refuses_a_function_returning_a_coroutine() -> None:
    msg = (
        r"^stages\.map\(executor='thread'\) runs sync functions; "
        r"test_thread_executor_refuses_a_function_returning_a_coroutine\.<locals>\.<lambda> "
        r"returned a coroutine"
    )
    p = pipeline(range(3)) | stages.map(lambda x: fetch10(x), executor="thread", workers=2)
    with pytest.raises(TypeError, match=msg):
        await p.collect()
    gc.collect()  # (the coroutine was closed: no "never awaited" warning either)


async def test_process_executor_refuses_a_function_returning_a_coroutine() -> None:
    p = pipeline(range(2)) | stages.map(returns_a_coroutine, executor="process", workers=1)
    with anyio.fail_after(60), pytest.raises(TypeError, match=r"returns_a_coroutine returned a"):
        await p.collect()


# -- misuse caught when the pipeline is built ------------------------------------------


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("map", "map(fn)"),
        ("filter", "filter(pred)"),
        ("flat_map", "flat_map(fn)"),
        ("tap", "tap(fn)"),
        ("take", "take(n)"),
        ("batch", "batch(size)"),
        ("buffer", "buffer(n)"),
        ("merge", "merge(*sources)"),
        ("tee", "tee(*sinks)"),
        ("rate_limit", "rate_limit(limiter)"),
        ("fan_out", "fan_out(n, stage)"),
    ],
)
async def test_an_uncalled_stage_factory_is_refused(name: str, example: str) -> None:
    factory = getattr(stages, name)
    msg = "^" + re.escape(f"stages.{name} is a stage factory: call it, e.g. stages.{example}")
    with pytest.raises(TypeError, match=msg):
        _ = pipeline(range(3)) | factory
    with pytest.raises(TypeError, match=msg):
        pipeline(factory)  # (as a source it would be called with no arguments)
    with pytest.raises(TypeError, match=msg):
        stages.fan_out(2, factory)
    with pytest.raises(TypeError, match=msg):
        stages.tee(factory)


async def test_map_refuses_a_non_bool_ordered_and_an_unpicklable_process_function() -> None:
    with pytest.raises(TypeError, match=r"^stages\.map\(\) ordered must be a bool, not str$"):
        stages.map(str, ordered="no")  # type: ignore[call-overload]

    def local(x: int) -> int:
        return x

    for fn in (local, lambda x: x):
        with pytest.raises(
            TypeError,
            match=r"^stages\.map\(executor='process'\) needs a picklable, module-level "
            rf"function: .*{fn.__qualname__.replace('<', '.').replace('>', '.')} is not",
        ):
            stages.map(fn, executor="process")
    stages.map(cpu_bound, executor="process")  # a module-level function is fine


def _returns_a_lock(x: int) -> object:
    return threading.Lock()


async def test_map_in_a_process_says_which_result_cannot_come_back() -> None:
    p = pipeline([1]) | stages.map(_returns_a_lock, executor="process")
    with pytest.raises(TypeError, match="_returns_a_lock ran in a worker process, but what it"):
        await p.collect()


def _raises_cancelled(x: int) -> int:
    import asyncio

    raise asyncio.CancelledError("from the job")


def _raises_generator_exit(x: int) -> int:
    if x == 2:
        raise GeneratorExit
    return x


@pytest.mark.parametrize("executor", ["thread", "process"])
@pytest.mark.parametrize(
    ("fn", "name"),
    [(_raises_cancelled, "CancelledError"), (_raises_generator_exit, "GeneratorExit")],
    ids=["CancelledError", "GeneratorExit"],
)
async def test_map_fn_raising_cancelled_error_in_an_executor_is_an_error(
    executor: Any, fn: Any, name: str
) -> None:
    # Back on the loop it passed for a cancellation (or a coroutine being closed): on
    # asyncio the pipeline ended quietly, its output looking complete.
    p = pipeline([1, 2, 3]) | stages.map(fn, executor=executor)
    with pytest.raises(RuntimeError, match=f"raised {name} in a worker thread or process"):
        await p.collect()

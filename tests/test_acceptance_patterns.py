"""Black-box acceptance tests: DESIGN.md "Patterns", "Diagnostics", "Integrations", issues #6/#7.

Written from the contract (DESIGN.md), the issue texts and Go semantics only, through the
public API. Every async test runs on asyncio, uvloop and trio (tests/conftest.py); tests
whose point is time run on trio's MockClock (``on_mock_clock``), and most of those have a
real-time twin on every backend that checks the behaviour without timing it.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time as walltime
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

import asyncgo
from asyncgo import (
    Broadcast,
    Canceled,
    Chan,
    ChanClosed,
    CircuitBreaker,
    CircuitOpen,
    DeadlineExceeded,
    Deadlock,
    Disconnected,
    Group,
    JobCancelled,
    PoolClosed,
    PubSub,
    WorkerPool,
    WouldBlock,
    background,
    debug,
    pipeline,
    rate,
    resilience,
    retry,
    stages,
    testing,
    with_cancel,
    with_timeout,
)

try:  # the fastapi extra: annotations must resolve at module level for FastAPI
    import fastapi
    import httpx

    from asyncgo.contrib.fastapi import ContextMiddleware, RequestContext
except ImportError:  # pragma: no cover
    fastapi = None

pytest_plugins = ["pytester"]

HERE = os.path.basename(__file__)


def on_mock_clock() -> pytest.MarkDecorator:
    """Run the test on trio with an autojumping MockClock (time passes only when all sleep)."""
    return pytest.mark.parametrize(
        "anyio_backend",
        [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock")],
    )


def backend_name() -> str:
    import sniffio

    return sniffio.current_async_library()


class Boom(Exception):
    """A distinctive error to check that errors arrive as themselves."""


async def naturals_forever() -> AsyncIterator[int]:
    n = 0
    while True:
        yield n
        n += 1


async def identity(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for x in items:
        yield x


# Module-level functions: picklable for executor="process".
def cpu_square(x: int) -> tuple[int, int]:
    total = 0
    for i in range(20_000):  # a little CPU work
        total += i % 7
    return x * x, os.getpid()


def pid_of(_: object) -> int:
    return os.getpid()


def sleepy(x: int) -> int:
    if x > 0:
        walltime.sleep(60)  # a stuck CPU-bound call: cancelling must kill its process
    return x


# ---------------------------------------------------------------------------------------
# Pipelines (issue #6): sources
# ---------------------------------------------------------------------------------------


class AsyncRange:
    """An async iterable that is not a generator."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __aiter__(self) -> AsyncIterator[int]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[int]:
        for i in range(self.n):
            await anyio.sleep(0)
            yield i


@pytest.mark.usefixtures("no_leaks")
async def test_pipeline_sources_of_every_kind() -> None:
    async def agen_fn() -> AsyncIterator[int]:
        for i in range(4):
            yield i

    assert await pipeline([0, 1, 2, 3]).collect() == [0, 1, 2, 3]
    assert await pipeline(range(4)).collect() == [0, 1, 2, 3]
    assert await pipeline(x for x in range(4)).collect() == [0, 1, 2, 3]
    assert await pipeline(AsyncRange(4)).collect() == [0, 1, 2, 3]
    assert await pipeline(agen_fn).collect() == [0, 1, 2, 3]  # called in the source task
    assert await pipeline(agen_fn()).collect() == [0, 1, 2, 3]  # a generator object
    inner = pipeline(range(4)) | stages.map(lambda x: x * 10)
    assert await (pipeline(inner) | stages.map(lambda x: x + 1)).collect() == [1, 11, 21, 31]

    ch = Chan[int](10)
    for i in range(4):
        await ch.send(i)
    ch.close()
    assert await pipeline(ch).collect() == [0, 1, 2, 3]


@pytest.mark.usefixtures("no_leaks")
async def test_channel_source_is_not_closed_by_the_pipeline() -> None:
    ch = Chan[int](100)
    for i in range(50):
        await ch.send(i)
    assert await (pipeline(ch) | stages.take(3)).collect() == [0, 1, 2]
    assert not ch.closed  # the channel's owner closes it, never a reader (Go)
    await ch.send(99)  # still usable


@pytest.mark.usefixtures("no_leaks")
async def test_channel_source_fed_concurrently() -> None:
    ch = Chan[int]()  # unbuffered: each item is a rendezvous with the source task
    out: list[int] = []

    async def feed() -> None:
        for i in range(20):
            await ch.send(i)
        ch.close()

    async with Group() as g:
        await g.go(feed)
        out = await (pipeline(ch) | stages.map(lambda x: x * 2)).collect()
    assert out == [2 * i for i in range(20)]


async def test_pipeline_is_an_immutable_reusable_description() -> None:
    base = pipeline(range(5))
    doubled = base | stages.map(lambda x: 2 * x)
    assert await base.collect() == [0, 1, 2, 3, 4]  # `|` did not change `base`
    assert await doubled.collect() == [0, 2, 4, 6, 8]
    assert await doubled.collect() == [0, 2, 4, 6, 8]  # runs afresh each time


async def test_pipeline_bad_input_is_named() -> None:
    with pytest.raises(TypeError):
        pipeline(42)
    with pytest.raises(TypeError):
        pipeline([1]) | 5  # type: ignore[operator]
    with pytest.raises(ValueError):
        pipeline([1], buffer=-1)
    with pytest.raises(ValueError):
        stages.map(str, workers=0)
    with pytest.raises(ValueError):
        stages.batch(0)
    with pytest.raises(ValueError):
        stages.take(-1)
    with pytest.raises(ValueError):
        stages.buffer(-1)
    with pytest.raises(ValueError):
        stages.fan_out(0, identity)
    with pytest.raises(ValueError):
        stages.map(str, executor="gpu")  # type: ignore[arg-type]

    async def afn(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        stages.map(afn, executor="thread")


async def test_run_drains_for_side_effects() -> None:
    seen: list[int] = []
    result = await (pipeline(range(5)) | stages.tap(seen.append)).run()
    assert result is None
    assert seen == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------
# Pipelines: stages
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_plain_async_generator_function_is_a_stage_and_stages_overlap() -> None:
    """Each stage runs in its own task: a stage can be ahead of the one after it."""
    first_started = anyio.Event()
    events: list[str] = []

    async def slow_sink_stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            events.append(f"sink {x}")
            first_started.set()
            yield x

    async def src() -> AsyncIterator[int]:
        for i in range(3):
            events.append(f"src {i}")
            yield i

    out = await (pipeline(src) | slow_sink_stage).collect()
    assert out == [0, 1, 2]
    # the source ran ahead of the sink (bounded channels, not lock-step generators)
    assert events.index("src 2") < events.index("sink 2")


@pytest.mark.usefixtures("no_leaks")
async def test_map_filter_tap_sync_and_async_callables() -> None:
    async def adouble(x: int) -> int:
        await anyio.sleep(0)
        return 2 * x

    async def is_small(x: int) -> bool:
        await anyio.sleep(0)
        return x < 10

    tapped: list[int] = []

    async def atap(x: int) -> None:
        tapped.append(x)

    p = (
        pipeline(range(10))
        | stages.map(adouble)
        | stages.map(lambda x: x + 1)
        | stages.filter(lambda x: x % 3 != 0)
        | stages.filter(is_small)
        | stages.tap(atap)
    )
    assert await p.collect() == [1, 5, 7]
    assert tapped == [1, 5, 7]


@pytest.mark.usefixtures("no_leaks")
async def test_flat_map_sync_async_and_generator_results() -> None:
    async def agen(x: int) -> AsyncIterator[int]:
        for _ in range(x):
            yield x

    async def alist(x: int) -> list[int]:
        await anyio.sleep(0)
        return [x, -x]

    assert await (pipeline([1, 2, 3]) | stages.flat_map(agen)).collect() == [1, 2, 2, 3, 3, 3]
    assert await (pipeline([1, 2]) | stages.flat_map(alist)).collect() == [1, -1, 2, -2]
    assert await (pipeline(["a b", "", "c"]) | stages.flat_map(str.split)).collect() == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.usefixtures("no_leaks")
async def test_map_ordered_keeps_input_order_unordered_does_not() -> None:
    async def run(ordered: bool) -> list[int]:
        one_done = anyio.Event()

        async def fn(x: int) -> int:
            if x == 0:
                await one_done.wait()  # item 0 finishes only after item 1
            else:
                one_done.set()
            return x

        p = pipeline([0, 1]) | stages.map(fn, workers=2, ordered=ordered)
        with anyio.fail_after(10):
            return await p.collect()

    assert await run(ordered=True) == [0, 1]
    assert await run(ordered=False) == [1, 0]


@pytest.mark.usefixtures("no_leaks")
async def test_map_runs_exactly_workers_calls_at_once() -> None:
    active = peak = 0

    async def fn(x: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.005)
        active -= 1
        return x

    out = await (pipeline(range(40)) | stages.map(fn, workers=4, ordered=False)).collect()
    assert sorted(out) == list(range(40))
    assert peak == 4


@pytest.mark.usefixtures("no_leaks")
async def test_ordered_map_bounds_its_reordering_memory() -> None:
    """A slow first item must not let the other workers run arbitrarily far ahead."""
    workers = 2
    started: list[int] = []
    gate = anyio.Event()
    seen_while_blocked = -1

    async def fn(x: int) -> int:
        started.append(x)
        if x == 0:
            await gate.wait()
        return x

    async def release() -> None:
        nonlocal seen_while_blocked
        await anyio.wait_all_tasks_blocked()
        seen_while_blocked = len(started)
        gate.set()

    p = pipeline(range(1000)) | stages.map(fn, workers=workers, ordered=True)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(release)
            out = await p.collect()
    assert out == list(range(1000))
    # item 0 running + at most 2*workers held back + one per other worker in hand
    assert 2 <= seen_while_blocked <= 1 + 3 * workers + 1, seen_while_blocked


@pytest.mark.usefixtures("no_leaks")
async def test_map_thread_executor_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()

    def blocking(x: int) -> tuple[int, int]:
        walltime.sleep(0.002)  # blocking I/O stand-in
        return x, threading.get_ident()

    out = await (pipeline(range(12)) | stages.map(blocking, executor="thread", workers=4)).collect()
    assert [x for x, _ in out] == list(range(12))  # ordered by default
    assert loop_thread not in {tid for _, tid in out}


@pytest.mark.usefixtures("no_leaks")
async def test_map_process_executor_on_a_cpu_bound_function() -> None:
    p = pipeline(range(8)) | stages.map(cpu_square, executor="process", workers=2)
    with anyio.fail_after(60):
        out = await p.collect()
    assert [sq for sq, _ in out] == [x * x for x in range(8)]
    assert os.getpid() not in {pid for _, pid in out}


@pytest.mark.usefixtures("no_leaks")
async def test_batch_by_size() -> None:
    assert await (pipeline(range(7)) | stages.batch(3)).collect() == [[0, 1, 2], [3, 4, 5], [6]]
    assert await (pipeline([]) | stages.batch(3)).collect() == []


@pytest.mark.usefixtures("no_leaks")
async def test_batch_timeout_flushes_a_short_batch_real_time() -> None:
    """Any backend: a batch whose rest never comes is sent short after the timeout."""
    release = anyio.Event()

    async def src() -> AsyncIterator[int]:
        yield 0
        yield 1
        await release.wait()  # the rest comes only after the first batch went out
        yield 2

    got: list[list[int]] = []
    with anyio.fail_after(20):
        async with (pipeline(src) | stages.batch(3, timeout=0.02)).stream() as items:
            async for b in items:
                got.append(b)
                release.set()
    assert got == [[0, 1], [2]]


@on_mock_clock()
@pytest.mark.usefixtures("no_leaks")
async def test_batch_timeout_starts_at_the_first_item_mock_clock() -> None:
    async def src() -> AsyncIterator[int]:
        yield 0  # t=0: batch 1 starts, due at t=1
        await anyio.sleep(0.6)
        yield 1  # t=0.6 (does not restart the clock)
        await anyio.sleep(0.6)
        yield 2  # t=1.2: batch 2 starts, due at t=2.2
        await anyio.sleep(10)
        yield 3  # t=11.2: batch 3, flushed at the end of input
        yield 4

    t0 = anyio.current_time()
    got: list[tuple[list[int], float]] = []
    async with (pipeline(src) | stages.batch(5, timeout=1.0)).stream() as items:
        async for b in items:
            got.append((b, anyio.current_time() - t0))
    assert [b for b, _ in got] == [[0, 1], [2], [3, 4]]
    assert [t for _, t in got] == pytest.approx([1.0, 2.2, 11.2], abs=1e-6)


@pytest.mark.usefixtures("no_leaks")
async def test_take_stops_an_endless_source_and_closes_it_in_its_own_task() -> None:
    closed_in: list[object] = []
    consumer_task = anyio.get_current_task().id

    async def endless() -> AsyncIterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed_in.append(anyio.get_current_task().id)

    assert await (pipeline(endless) | stages.take(3)).collect() == [0, 1, 2]
    assert len(closed_in) == 1  # aclose()d before collect() returned
    assert closed_in[0] != consumer_task  # in the source's own task
    assert await (pipeline(naturals_forever) | stages.take(0)).collect() == []


@pytest.mark.usefixtures("no_leaks")
async def test_buffer_sets_the_link_size() -> None:
    assert await (pipeline(range(5)) | stages.buffer(0) | stages.map(str)).collect() == [
        "0",
        "1",
        "2",
        "3",
        "4",
    ]
    assert await (pipeline(range(5)) | stages.buffer(1000)).collect() == list(range(5))


@pytest.mark.usefixtures("no_leaks")
async def test_merge_fan_in_totals_and_per_source_order() -> None:
    async def letters() -> AsyncIterator[str]:
        for c in "abc":
            await anyio.sleep(0)
            yield c

    ch = Chan[str](10)
    for s in ["x", "y"]:
        await ch.send(s)
    ch.close()

    got = await (pipeline(range(3)) | stages.merge(letters, ch, ["p", "q"])).collect()
    assert sorted(map(str, got)) == sorted(["0", "1", "2", "a", "b", "c", "x", "y", "p", "q"])
    for group in ([0, 1, 2], ["a", "b", "c"], ["x", "y"], ["p", "q"]):
        assert [v for v in got if v in group] == group  # each source keeps its order

    got2 = await pipeline(stages.merge(range(100), range(100, 200))).collect()
    assert sorted(got2) == list(range(200))


@pytest.mark.usefixtures("no_leaks")
async def test_fan_out_each_item_once_copies_run_concurrently() -> None:
    active = peak = 0
    copies: set[int] = set()

    async def worker(items: AsyncIterator[int]) -> AsyncIterator[int]:
        nonlocal active, peak
        copies.add(anyio.get_current_task().id)
        async for n in items:
            active += 1
            peak = max(peak, active)
            await anyio.sleep(0.002)
            active -= 1
            yield n * n

    got = await (pipeline(range(60)) | stages.fan_out(3, worker)).collect()
    assert sorted(got) == sorted(n * n for n in range(60))  # each item exactly once
    assert len(copies) == 3
    assert peak == 3


@pytest.mark.usefixtures("no_leaks")
async def test_tee_every_sink_sees_every_item_in_order() -> None:
    audit = Chan[int](1000)
    sink_seen: list[int] = []

    async def sink(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            sink_seen.append(x)
            yield x

    out = await (pipeline(range(50)) | stages.tee(audit, sink) | stages.map(lambda x: -x)).collect()
    assert out == [-x for x in range(50)]
    assert sink_seen == list(range(50))
    assert [x async for x in audit] == list(range(50))  # closed by the tee at the end
    assert audit.closed

    audit2 = Chan[int](100)
    assert await (pipeline(range(3)) | stages.broadcast(audit2)).collect() == [0, 1, 2]
    assert [x async for x in audit2] == [0, 1, 2]


@pytest.mark.usefixtures("no_leaks")
async def test_tee_slowest_sink_sets_the_pace_nothing_dropped() -> None:
    audit = Chan[int]()  # unbuffered: the tee waits for this reader on every item
    got: list[int] = []

    async def slow_reader() -> None:
        async for x in audit:
            await anyio.sleep(0.001)
            got.append(x)

    async with Group() as g:
        await g.go(slow_reader)
        out = await (pipeline(range(20)) | stages.tee(audit)).collect()
    assert out == list(range(20))
    assert got == list(range(20))


@pytest.mark.usefixtures("no_leaks")
async def test_rate_limit_passes_everything() -> None:
    lim = rate.Limiter(10_000, 5)
    assert await (pipeline(range(20)) | stages.rate_limit(lim)).collect() == list(range(20))


@on_mock_clock()
async def test_rate_limit_paces_items_mock_clock() -> None:
    lim = rate.Limiter(10, 1)  # one item each 0.1 s after a burst of 1
    t0 = anyio.current_time()
    stamps: list[float] = []
    p = (
        pipeline(range(6))
        | stages.rate_limit(lim)
        | stages.tap(lambda _: stamps.append(anyio.current_time() - t0))
    )
    assert await p.collect() == list(range(6))
    assert stamps == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-6)


@on_mock_clock()
async def test_rate_limit_under_a_ctx_deadline_ends_with_ctx_err_mock_clock() -> None:
    lim = rate.Limiter(1, 1)  # items at t = 0, 1, 2, 3, ...
    ctx, cancel = with_timeout(background(), 3.5)
    got: list[int] = []
    t0 = anyio.current_time()
    with pytest.raises(DeadlineExceeded):
        async with (pipeline(range(10)) | stages.rate_limit(lim)).stream(ctx) as items:
            async for x in items:
                got.append(x)
    cancel()
    assert got == [0, 1, 2, 3]
    assert anyio.current_time() - t0 <= 3.5 + 1e-6  # never waited past the deadline


# ---------------------------------------------------------------------------------------
# Pipelines: errors, cancellation, early exit, backpressure
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_error_in_middle_stage_is_reraised_as_itself_and_stops_everything() -> None:
    err = Boom("item 3")
    source_closed = anyio.Event()

    async def src() -> AsyncIterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            source_closed.set()

    async def middle(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 3:
                raise err
            yield x

    p = pipeline(src) | middle | stages.map(lambda x: x)
    with anyio.fail_after(10):
        with pytest.raises(Boom) as info:  # not wrapped in an ExceptionGroup
            await p.collect()
    assert info.value is err
    assert source_closed.is_set()

    got: list[int] = []
    with pytest.raises(Boom) as info2:
        async with p.stream() as items:
            async for x in items:
                got.append(x)
    assert info2.value is err
    assert got == [0, 1, 2][: len(got)]


@pytest.mark.usefixtures("no_leaks")
async def test_error_cancels_stages_that_would_block_forever() -> None:
    err = Boom("fails")

    async def stuck() -> AsyncIterator[int]:
        yield 1
        await anyio.sleep_forever()
        yield 2  # pragma: no cover

    async def failing() -> AsyncIterator[int]:
        await anyio.sleep(0.01)
        raise err
        yield 0  # pragma: no cover

    with anyio.fail_after(10):
        with pytest.raises(Boom) as info:
            await pipeline(stages.merge(stuck, failing)).collect()
    assert info.value is err


@pytest.mark.usefixtures("no_leaks")
async def test_error_in_map_worker_is_reraised_as_itself() -> None:
    err = Boom("job 7")

    async def fn(x: int) -> int:
        await anyio.sleep(0)
        if x == 7:
            raise err
        return x

    for ordered in (True, False):
        with anyio.fail_after(10), pytest.raises(Boom) as info:
            await (pipeline(range(100)) | stages.map(fn, workers=4, ordered=ordered)).collect()
        assert info.value is err


@pytest.mark.usefixtures("no_leaks")
async def test_error_in_source_is_reraised_as_itself() -> None:
    err = Boom("source")

    def gen() -> Any:
        yield 1
        raise err

    with pytest.raises(Boom) as info:
        await (pipeline(gen()) | identity).collect()
    assert info.value is err


@pytest.mark.usefixtures("no_leaks")
async def test_ctx_cancel_ends_stream_with_canceled() -> None:
    ctx, cancel = with_cancel(background())
    got: list[int] = []
    with anyio.fail_after(10), pytest.raises(Canceled):
        async with (pipeline(naturals_forever) | identity | stages.map(lambda x: x)).stream(
            ctx
        ) as items:
            async for x in items:
                got.append(x)
                if x == 5:
                    cancel()
    assert isinstance(ctx.err(), Canceled)
    assert got[:6] == [0, 1, 2, 3, 4, 5]


@pytest.mark.usefixtures("no_leaks")
async def test_ctx_already_cancelled_collect_raises_canceled() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    with anyio.fail_after(10), pytest.raises(Canceled):
        await (pipeline(naturals_forever) | identity).collect(ctx)


@pytest.mark.usefixtures("no_leaks")
async def test_ctx_deadline_ends_collect_with_deadline_exceeded() -> None:
    async def ticking() -> AsyncIterator[int]:
        n = 0
        while True:
            await anyio.sleep(0.001)
            yield n
            n += 1

    ctx, cancel = with_timeout(background(), 0.05)
    with anyio.fail_after(10), pytest.raises(DeadlineExceeded):
        await (pipeline(ticking) | identity).collect(ctx)
    cancel()
    with anyio.fail_after(10), pytest.raises(DeadlineExceeded):
        with with_timeout(background(), 0.05) as ctx2:
            await (pipeline(ticking) | stages.map(lambda x: x, workers=3)).run(ctx2)


@on_mock_clock()
@pytest.mark.usefixtures("no_leaks")
async def test_ctx_deadline_mock_clock_ends_at_the_deadline() -> None:
    async def each_second() -> AsyncIterator[int]:
        n = 0
        while True:
            yield n
            n += 1
            await anyio.sleep(1)

    ctx, cancel = with_timeout(background(), 5.5)
    t0 = anyio.current_time()
    got: list[int] = []
    with pytest.raises(DeadlineExceeded):
        async with (pipeline(each_second) | identity).stream(ctx) as items:
            async for x in items:
                got.append(x)
    cancel()
    assert got == [0, 1, 2, 3, 4, 5]
    assert anyio.current_time() - t0 == pytest.approx(5.5, abs=1e-6)


@pytest.mark.usefixtures("no_leaks")
async def test_early_break_stops_every_stage_and_closes_generators() -> None:
    closed: list[str] = []

    async def src() -> AsyncIterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append("source")

    async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        try:
            async for x in items:
                yield x
        finally:
            closed.append("stage")

    async with testing.no_leaks(grace=0):
        async with (pipeline(src) | stage | stages.map(lambda x: x, workers=3)).stream() as items:
            async for x in items:
                if x == 10:
                    break
    assert sorted(closed) == ["source", "stage"]


@pytest.mark.usefixtures("no_leaks")
async def test_exception_in_consumer_body_propagates_as_itself_and_stops_stages() -> None:
    err = KeyError("consumer")
    closed = anyio.Event()

    async def src() -> AsyncIterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    with pytest.raises(KeyError) as info:
        async with (pipeline(src) | identity).stream() as items:
            async for x in items:
                if x == 3:
                    raise err
    assert info.value is err
    assert closed.is_set()


@pytest.mark.usefixtures("no_leaks")
async def test_consumer_cancelled_from_outside_leaves_no_task() -> None:
    closed = anyio.Event()

    async def src() -> AsyncIterator[int]:
        try:
            n = 0
            while True:
                await anyio.sleep(0.001)
                yield n
                n += 1
        finally:
            closed.set()

    got = 0
    with anyio.move_on_after(0.05) as scope:
        async with (pipeline(src) | identity | stages.batch(2)).stream() as items:
            async for _ in items:
                got += 1
    assert scope.cancelled_caught
    assert closed.is_set()


async def _produced_while_consumer_stalls(p_builder: Any) -> tuple[int, int]:
    """Return (items the source produced, consumed) once everything blocks on a stalled sink."""
    produced = 0

    async def src() -> AsyncIterator[int]:
        nonlocal produced
        for i in range(100_000):
            produced += 1
            yield i

    async with p_builder(src).stream() as items:
        await items.__anext__()
        with anyio.fail_after(20):
            await anyio.wait_all_tasks_blocked()
        return produced, 1


@pytest.mark.usefixtures("no_leaks")
async def test_backpressure_plain_stages_bound_the_source() -> None:
    # Go: a source can be ahead of the sink by the channels' capacity, plus one item
    # in hand per stage goroutine, plus the one blocked in its send.
    produced, consumed = await _produced_while_consumer_stalls(
        lambda s: pipeline(s, buffer=4) | identity | identity
    )
    assert produced <= consumed + 3 * 4 + 2 + 1, produced


@pytest.mark.usefixtures("no_leaks")
async def test_backpressure_builtin_stages_bound_the_source() -> None:
    def builder(s: Any) -> Any:
        return (
            pipeline(s, buffer=8)
            | stages.map(lambda x: x)
            | stages.filter(lambda x: True)
            | stages.tap(lambda x: None)
        )

    produced, consumed = await _produced_while_consumer_stalls(builder)
    assert produced <= consumed + 4 * 8 + 3 + 1, produced


@pytest.mark.usefixtures("no_leaks")
async def test_backpressure_default_buffers_bound_the_source() -> None:
    """Issue #6: a slow sink bounds how far the source runs ahead: the sum of the buffers."""

    def builder(s: Any) -> Any:
        return pipeline(s) | stages.map(lambda x: x) | stages.map(lambda x: x)

    produced, consumed = await _produced_while_consumer_stalls(builder)
    assert produced < 100_000  # it stopped at all
    # 3 links of the default 256: 768, plus a few items in hand
    assert produced <= consumed + 3 * 256 + 3 + 1, produced


@pytest.mark.usefixtures("no_leaks")
async def test_backpressure_unbuffered_links_hand_over_one_by_one() -> None:
    produced, consumed = await _produced_while_consumer_stalls(
        lambda s: pipeline(s, buffer=0) | identity | stages.map(lambda x: x)
    )
    assert produced <= consumed + 2 + 1 + 1, produced


@pytest.mark.usefixtures("no_leaks")
async def test_labels_reach_pipeline_stage_tasks() -> None:
    seen: list[dict[str, str]] = []

    async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            seen.append(dict(debug.current_labels()))
            yield x

    with debug.labels(request="r-1"):
        await (pipeline(range(2)) | stage).collect()
    assert seen == [{"request": "r-1"}] * 2


# ---------------------------------------------------------------------------------------
# WorkerPool (issue #7)
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_pool_submit_results_and_graceful_exit_finishes_queued_jobs() -> None:
    async def square(x: int) -> int:
        await anyio.sleep(0.001)
        return x * x

    async with WorkerPool(workers=3) as pool:
        handles = [await pool.submit(square, x) for x in range(30)]
    # leaving the block finished every queued job
    assert all(h.done() for h in handles)
    assert [h.result() for h in handles] == [x * x for x in range(30)]
    s = pool.stats()
    assert (s.submitted, s.done, s.failed, s.cancelled, s.queued, s.running) == (30, 30, 0, 0, 0, 0)


@pytest.mark.usefixtures("no_leaks")
async def test_pool_sync_callable_runs_and_await_handle() -> None:
    async with WorkerPool(workers=2) as pool:
        h = await pool.submit(lambda a, b: a + b, 2, 3)
        assert await h == 5
        assert await h.wait() == 5


@pytest.mark.usefixtures("no_leaks")
async def test_pool_backpressure_on_full_queue_and_try_submit() -> None:
    gate = anyio.Event()
    async with WorkerPool(workers=1, queue_size=1) as pool:
        running = await pool.submit(gate.wait)
        await anyio.wait_all_tasks_blocked()  # the worker took it
        queued = await pool.submit(gate.wait)
        assert pool.try_submit(gate.wait) is None  # no room now
        s = pool.stats()
        assert (s.running, s.queued, s.submitted) == (1, 1, 2)

        third_done = anyio.Event()
        handles = []

        async def submit_third() -> None:
            handles.append(await pool.submit(lambda: "third"))
            third_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_third)
            await anyio.wait_all_tasks_blocked()
            assert not third_done.is_set()  # waits for room (backpressure)
            gate.set()
        assert await handles[0] == "third"
        assert running.done() or await running is None
        await queued


@pytest.mark.usefixtures("no_leaks")
async def test_pool_cancelled_waiting_submit_queues_nothing() -> None:
    gate = anyio.Event()
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)
        await gate.wait()

    async with WorkerPool(workers=1, queue_size=1) as pool:
        await pool.submit(job, "a")
        await anyio.wait_all_tasks_blocked()
        await pool.submit(job, "b")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pool.submit(job, "c")  # would wait: cancelled
        with anyio.move_on_after(0.02):
            await pool.submit(job, "d")
        assert pool.stats().submitted == 2
        gate.set()
    assert ran == ["a", "b"]
    assert pool.stats().submitted == 2


@pytest.mark.usefixtures("no_leaks")
async def test_pool_closed_after_shutdown_intake() -> None:
    async with WorkerPool(workers=2) as pool:
        h = await pool.submit(anyio.sleep, 0)
        assert await pool.shutdown() == []
        with pytest.raises(PoolClosed):
            await pool.submit(anyio.sleep, 0)
        with pytest.raises(PoolClosed):
            pool.try_submit(anyio.sleep, 0)
        assert await pool.shutdown() == []  # idempotent
    assert h.done()
    with pytest.raises(PoolClosed):
        await pool.submit(anyio.sleep, 0)


@pytest.mark.usefixtures("no_leaks")
async def test_pool_shutdown_fails_waiting_submits_and_finishes_queued() -> None:
    gate = anyio.Event()
    results: list[object] = []

    async def job(x: int) -> int:
        await gate.wait()
        return x

    async with WorkerPool(workers=1, queue_size=1) as pool:
        a = await pool.submit(job, 1)
        await anyio.wait_all_tasks_blocked()
        b = await pool.submit(job, 2)

        async def waiting_submit() -> None:
            try:
                await pool.submit(job, 3)
                results.append("accepted")
            except PoolClosed:
                results.append("PoolClosed")

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting_submit)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(pool.shutdown)
            await anyio.wait_all_tasks_blocked()
            assert results == ["PoolClosed"]  # step 1: intake stopped, waiters too
            assert not a.done() and not b.done()  # step 2 still waiting for jobs
            gate.set()
        assert (a.result(), b.result()) == (1, 2)  # queued job finished, not dropped
    assert pool.stats().workers == 0


@pytest.mark.usefixtures("no_leaks")
async def test_pool_shutdown_timeout_cancels_and_reports_the_rest() -> None:
    async def quick() -> str:
        return "ok"

    async with WorkerPool(workers=2, queue_size=10) as pool:
        done = await pool.submit(quick)
        await anyio.wait_all_tasks_blocked()
        stuck = [await pool.submit(anyio.sleep_forever) for _ in range(5)]  # 2 run, 3 queued
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(10):
            cancelled = await pool.shutdown(timeout=0.02)
    assert set(map(id, cancelled)) == set(map(id, stuck))
    for h in stuck:
        assert h.cancelled() and h.done()
        with pytest.raises(JobCancelled):
            await h
        assert isinstance(h.exception(), JobCancelled)
    assert isinstance(JobCancelled(), Canceled)
    assert done.result() == "ok"
    s = pool.stats()
    assert s.submitted == s.done + s.failed + s.cancelled == 6  # nothing lost
    assert (s.cancelled, s.running, s.queued) == (5, 0, 0)


@on_mock_clock()
@pytest.mark.usefixtures("no_leaks")
async def test_pool_shutdown_timeout_mock_clock() -> None:
    async def job(seconds: float) -> float:
        await anyio.sleep(seconds)
        return seconds

    async with WorkerPool(workers=3) as pool:
        hs = [await pool.submit(job, s) for s in (1.0, 2.0, 100.0)]
        t0 = anyio.current_time()
        cancelled = await pool.shutdown(timeout=5.0)
        assert anyio.current_time() - t0 == pytest.approx(5.0, abs=1e-6)
    assert cancelled == [hs[2]]
    assert [hs[0].result(), hs[1].result()] == [1.0, 2.0]


@pytest.mark.usefixtures("no_leaks")
async def test_pool_failing_job_fails_only_its_handle() -> None:
    err = Boom("job 3")

    async def job(x: int) -> int:
        await anyio.sleep(0)
        if x == 3:
            raise err
        return x

    async with WorkerPool(workers=2) as pool:
        hs = [await pool.submit(job, x) for x in range(6)]
        with pytest.raises(Boom) as info:
            await hs[3]
        assert info.value is err
        assert hs[3].exception() is err
        with pytest.raises(Boom):
            hs[3].result()
        assert [await hs[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
        after = await pool.submit(job, 10)  # the pool still works
        assert await after == 10
    s = pool.stats()
    assert (s.failed, s.done, s.submitted) == (1, 6, 7)


@pytest.mark.usefixtures("no_leaks")
async def test_pool_fail_fast_aborts_and_raises_first_error_as_itself() -> None:
    err = Boom("first")

    async def bad() -> None:
        await anyio.sleep(0.001)
        raise err

    with anyio.fail_after(10), pytest.raises(Boom) as info:
        async with WorkerPool(workers=2, fail_fast=True) as pool:
            slow = await pool.submit(anyio.sleep_forever)
            await pool.submit(bad)
            with pytest.raises(JobCancelled):
                await slow  # the abort cancels the other jobs
            with pytest.raises(PoolClosed):
                await pool.submit(anyio.sleep, 0)  # an aborted pool takes no jobs
    assert info.value is err  # raised on leaving the block, as itself
    assert slow.cancelled()
    with pytest.raises(JobCancelled):
        slow.result()


@pytest.mark.usefixtures("no_leaks")
async def test_pool_job_handle_cancel() -> None:
    gate = anyio.Event()
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)
        await gate.wait()

    async with WorkerPool(workers=1, queue_size=5) as pool:
        running = await pool.submit(job, "running")
        await anyio.wait_all_tasks_blocked()
        queued = await pool.submit(job, "queued")
        assert queued.cancel() is True
        assert queued.done() and queued.cancelled()
        assert running.cancel() is True
        with pytest.raises(JobCancelled):
            await running
        gate.set()
        finished = await pool.submit(lambda: 1)
        assert await finished == 1
        assert finished.cancel() is False  # already finished with a result
    assert ran == ["running"]  # the cancelled queued job never ran
    s = pool.stats()
    assert s.cancelled == 2 and s.submitted == s.done + s.failed + s.cancelled


@pytest.mark.usefixtures("no_leaks")
async def test_pool_stats_invariant_and_progress_callback() -> None:
    snapshots: list[Any] = []
    gate = anyio.Event()

    async def job(x: int) -> int:
        await gate.wait()
        if x == 0:
            raise Boom("x")
        return x

    async with WorkerPool(workers=2, queue_size=10, on_progress=snapshots.append) as pool:
        hs = [await pool.submit(job, x) for x in range(5)]
        await anyio.wait_all_tasks_blocked()
        s = pool.stats()
        assert (s.submitted, s.running, s.queued, s.workers) == (5, 2, 3, 2)
        assert s.submitted == s.done + s.failed + s.cancelled + s.queued + s.running
        gate.set()
    assert isinstance(hs[0].exception(), Boom)
    s = pool.stats()
    assert (s.submitted, s.done, s.failed, s.running, s.queued) == (5, 4, 1, 0, 0)
    assert len(snapshots) == 5  # once per job that returned or raised
    for snap in snapshots:
        assert (
            snap.submitted == snap.done + snap.failed + snap.cancelled + snap.queued + snap.running
        )


@pytest.mark.usefixtures("no_leaks")
async def test_pool_map_ordered_and_unordered() -> None:
    async def fn(x: int) -> int:
        await anyio.sleep(0.001 * (5 - x))  # earlier items are slower
        return x

    async with WorkerPool(workers=5) as pool:
        assert [r async for r in pool.map(fn, range(5))] == [0, 1, 2, 3, 4]
        got = [r async for r in pool.map(fn, range(5), ordered=False)]
        assert sorted(got) == [0, 1, 2, 3, 4]

        one_done = anyio.Event()

        async def gated(x: int) -> int:
            if x == 0:
                await one_done.wait()
            else:
                one_done.set()
            return x

        with anyio.fail_after(10):
            assert [r async for r in pool.map(gated, [0, 1], ordered=False)] == [1, 0]


@pytest.mark.usefixtures("no_leaks")
async def test_pool_map_raises_first_failure_as_itself() -> None:
    err = Boom("item 2")

    async def fn(x: int) -> int:
        if x == 2:
            raise err
        return x

    async with WorkerPool(workers=2) as pool:
        got: list[int] = []
        with pytest.raises(Boom) as info:
            async for r in pool.map(fn, range(10)):
                got.append(r)
        assert info.value is err
        assert got == [0, 1]


@pytest.mark.usefixtures("no_leaks")
async def test_pool_outside_block_is_a_clear_error() -> None:
    pool = WorkerPool(workers=1)
    with pytest.raises(RuntimeError):
        await pool.submit(anyio.sleep, 0)


@pytest.mark.usefixtures("no_leaks")
async def test_pool_ctx_cancel_aborts_jobs() -> None:
    ctx, cancel = with_cancel(background())
    with anyio.fail_after(10):
        try:
            async with WorkerPool(workers=1, ctx=ctx) as pool:
                h = await pool.submit(anyio.sleep_forever)
                await anyio.wait_all_tasks_blocked()
                cancel()
                with pytest.raises(JobCancelled):
                    await h
        except Canceled:
            pass  # the contract does not say whether the block re-raises ctx.err()
    assert h.cancelled()


@pytest.mark.usefixtures("no_leaks")
async def test_pool_scales_up_under_backlog_and_down_when_idle_real_time() -> None:
    gate = anyio.Event()
    async with WorkerPool(min_workers=1, max_workers=4, idle_timeout=0.02) as pool:
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 1
        hs = []
        for _ in range(6):
            hs.append(await pool.submit(gate.wait))
            await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 4  # capped at max_workers
        assert (pool.stats().running, pool.stats().queued) == (4, 2)
        gate.set()
        for h in hs:
            await h
        with anyio.fail_after(10):
            while pool.stats().workers > 1:
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)
        assert pool.stats().workers == 1  # never below min_workers


@on_mock_clock()
@pytest.mark.usefixtures("no_leaks")
async def test_pool_scaling_mock_clock() -> None:
    gate = anyio.Event()
    async with WorkerPool(min_workers=1, max_workers=3, idle_timeout=1.0) as pool:
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 1
        hs = []
        for _ in range(3):
            hs.append(await pool.submit(gate.wait))
            await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 3
        gate.set()
        for h in hs:
            await h
        await anyio.sleep(0.5)
        assert pool.stats().workers == 3  # not idle long enough yet
        await anyio.sleep(1.0)
        assert pool.stats().workers == 1


@pytest.mark.usefixtures("no_leaks")
async def test_pool_thread_and_process_executors() -> None:
    loop_thread = threading.get_ident()

    def blocking(x: int) -> int:
        walltime.sleep(0.001)
        return threading.get_ident()

    async with WorkerPool(workers=3, executor="thread") as pool:
        tids = [await h for h in [await pool.submit(blocking, i) for i in range(6)]]
        assert loop_thread not in tids

        async def afn() -> None:
            pass

        with pytest.raises(TypeError):
            await pool.submit(afn)

    with anyio.fail_after(60):
        async with WorkerPool(workers=2, executor="process") as ppool:
            hs = [await ppool.submit(cpu_square, i) for i in range(4)]
            results = [await h for h in hs]
    assert [sq for sq, _ in results] == [0, 1, 4, 9]
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.usefixtures("no_leaks")
async def test_pool_jobs_keep_labels_of_the_pool() -> None:
    async def job() -> dict[str, str]:
        return dict(debug.current_labels())

    with debug.labels(service="thumbs"):
        async with WorkerPool(workers=1) as pool:
            h = await pool.submit(job)
    assert h.result().get("service") == "thumbs"


# ---------------------------------------------------------------------------------------
# Broadcast / PubSub (issue #7)
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_broadcast_every_subscriber_gets_every_value_and_close_drains() -> None:
    bus = Broadcast[int]()
    totals: list[list[int]] = []

    async def consumer(sub: Any) -> None:
        async with sub:
            totals.append([v async for v in sub])

    async with Group() as g:
        for _ in range(3):
            await g.go(consumer, bus.subscribe(buffer=4))
        for i in range(20):
            await bus.publish(i)
        bus.close()
        bus.close()  # idempotent
    assert totals == [list(range(20))] * 3
    assert bus.closed
    with pytest.raises(ChanClosed):
        await bus.publish(1)
    with pytest.raises(ChanClosed):
        bus.publish_nowait(1)
    with pytest.raises(ChanClosed):
        bus.subscribe()


@pytest.mark.usefixtures("no_leaks")
async def test_broadcast_close_ends_subscriptions_after_their_buffer() -> None:
    bus = Broadcast[str]()
    async with bus.subscribe(buffer=8) as sub:
        for v in "abc":
            await bus.publish(v)
        bus.close()
        assert [v async for v in sub] == ["a", "b", "c"]
        with pytest.raises(ChanClosed):
            await sub.recv()


@pytest.mark.usefixtures("no_leaks")
async def test_broadcast_close_while_subscriber_waits() -> None:
    bus = Broadcast[int]()
    ended = anyio.Event()

    async def reader(sub: Any) -> None:
        async with sub:
            async for _ in sub:
                pass
        ended.set()

    async with Group() as g:
        await g.go(reader, bus.subscribe())
        await anyio.wait_all_tasks_blocked()
        bus.close()
    assert ended.is_set()


@pytest.mark.usefixtures("no_leaks")
async def test_policy_block_publish_waits_for_the_slowest() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=1, policy="block") as slow, bus.subscribe(buffer=10) as fast:
        await bus.publish(1)  # room in both
        published = anyio.Event()

        async def pub() -> None:
            await bus.publish(2)
            published.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pub)
            await anyio.wait_all_tasks_blocked()
            assert not published.is_set()  # waits for `slow`
            with pytest.raises(WouldBlock):
                bus.publish_nowait(3)  # to every subscriber or to none
            assert await slow.recv() == 1
        assert published.is_set()
        assert await slow.recv() == 2
        assert [await fast.recv(), await fast.recv()] == [1, 2]  # 3 reached nobody
        assert (slow.dropped, fast.dropped) == (0, 0)


@pytest.mark.usefixtures("no_leaks")
async def test_policy_drop_oldest_and_drop_newest_count_drops() -> None:
    bus = Broadcast[int]()
    async with (
        bus.subscribe(buffer=2, policy="drop_oldest") as oldest,
        bus.subscribe(buffer=3, policy="drop_newest") as newest,
        bus.subscribe(buffer=10) as roomy,
    ):
        for i in range(6):
            await bus.publish(i)  # never waits for a dropping subscriber
        for i in range(6, 8):
            bus.publish_nowait(i)
        bus.close()
        assert [v async for v in oldest] == [6, 7]
        assert [v async for v in newest] == [0, 1, 2]
        assert [v async for v in roomy] == list(range(8))
        assert (oldest.dropped, newest.dropped, roomy.dropped) == (6, 5, 0)
        assert oldest.policy == "drop_oldest"


@pytest.mark.usefixtures("no_leaks")
async def test_policy_disconnect_closes_the_laggard_with_a_reason() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=2, policy="disconnect") as lag, bus.subscribe(buffer=10) as ok:
        for i in range(5):
            await bus.publish(i)  # does not wait for the laggard
        got: list[int] = []
        with pytest.raises(Disconnected) as info:
            async for v in lag:
                got.append(v)
        assert got == [0, 1]  # what arrived before is still delivered
        assert str(info.value)  # a clear reason
        assert lag.reason
        assert lag.closed
        bus.close()
        assert [v async for v in ok] == [0, 1, 2, 3, 4]  # others unaffected


@pytest.mark.usefixtures("no_leaks")
async def test_leaving_the_block_unsubscribes() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=0, policy="block"):
        pass
    with anyio.fail_after(10):
        await bus.publish(1)  # no ex-subscriber to wait for
        bus.publish_nowait(2)

    ps = PubSub[str, int]()
    async with ps.subscribe("t", buffer=1):
        assert ps.topics() == ["t"]
        assert ps.subscribers("t") == 1
    assert ps.topics() == []
    assert ps.subscribers("t") == 0


@pytest.mark.usefixtures("no_leaks")
async def test_unsubscribe_during_a_waiting_publish_lets_it_move_on() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=10) as other:
        published = anyio.Event()
        leave = anyio.Event()

        async def slow_subscriber() -> None:
            async with bus.subscribe(buffer=0, policy="block"):
                await leave.wait()  # never reads

        async def pub() -> None:
            await bus.publish(42)
            published.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_subscriber)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(pub)
            await anyio.wait_all_tasks_blocked()
            assert not published.is_set()
            leave.set()  # the slow subscriber leaves its block
        assert published.is_set()
        assert await other.recv() == 42


@pytest.mark.usefixtures("no_leaks")
async def test_pubsub_topics_route_values() -> None:
    ps = PubSub[str, str]()
    async with (
        ps.subscribe("orders", buffer=4) as orders,
        ps.subscribe("refunds", buffer=4) as refunds,
    ):
        await ps.publish("orders", "o1")
        await ps.publish("refunds", "r1")
        await ps.publish("nobody", "dropped")
        ps.publish_nowait("orders", "o2")
        assert sorted(ps.topics()) == ["orders", "refunds"]
        assert await orders.recv() == "o1"
        assert await orders.recv() == "o2"
        assert await refunds.recv() == "r1"
        ps.close()
        assert [v async for v in orders] == []
        with pytest.raises(ChanClosed):
            await ps.publish("orders", "late")


async def test_subscribe_bad_input_is_named() -> None:
    bus = Broadcast[int]()
    with pytest.raises(ValueError):
        bus.subscribe(buffer=-1)
    with pytest.raises(ValueError):
        bus.subscribe(policy="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.subscribe(buffer=1.5)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_leaks")
async def test_cancelled_subscription_recv_takes_nothing() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=4) as sub:
        with anyio.move_on_after(0.01):
            await sub.recv()
        await bus.publish(7)
        assert await sub.recv() == 7


# ---------------------------------------------------------------------------------------
# Resilience
# ---------------------------------------------------------------------------------------


@on_mock_clock()
async def test_circuit_breaker_states_mock_clock() -> None:
    State = resilience.State
    calls = 0
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        failure_threshold=2,
        window=60,
        recovery_time=10,
        on_state_change=lambda old, new: changes.append((old.value, new.value)),
    )

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async def up() -> str:
        nonlocal calls
        calls += 1
        return "up"

    assert breaker.state is State.CLOSED
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(down)
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpen) as info:
        await breaker.call(up)
    assert calls == 2  # fail fast: not called
    assert info.value.retry_after == pytest.approx(10, abs=1e-6)

    await anyio.sleep(10)
    assert breaker.state is State.HALF_OPEN
    with pytest.raises(ConnectionError):
        await breaker.call(down)  # a failed probe opens it again
    assert breaker.state is State.OPEN
    await anyio.sleep(5)
    with pytest.raises(CircuitOpen):
        await breaker.call(up)
    await anyio.sleep(5)
    assert await breaker.call(up) == "up"  # a successful probe closes it
    assert breaker.state is State.CLOSED
    assert ("closed", "open") in changes and changes[-1] == ("half_open", "closed")


@on_mock_clock()
async def test_circuit_breaker_half_open_admits_one_probe_mock_clock() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, half_open_max_calls=1)
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError
    await anyio.sleep(1)
    release = anyio.Event()

    async def probe() -> str:
        await release.wait()
        return "ok"

    async with Group() as g:
        h = await g.go(breaker.call, probe)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(CircuitOpen):
            await breaker.call(probe)  # the one probe slot is taken
        release.set()
    assert h.result() == "ok"
    assert breaker.state is resilience.State.CLOSED


async def test_circuit_breaker_ignores_non_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=1, failure_on=ConnectionError)
    with pytest.raises(KeyError):
        async with breaker:
            raise KeyError("not a dependency failure")
    assert breaker.state is resilience.State.CLOSED


@on_mock_clock()
async def test_retry_backs_off_exponentially_mock_clock() -> None:
    stamps: list[float] = []
    t0 = anyio.current_time()

    async def flaky() -> str:
        stamps.append(anyio.current_time() - t0)
        if len(stamps) < 4:
            raise ConnectionError("again")
        return "ok"

    backoff = resilience.Backoff(initial=1, multiplier=2, maximum=100, jitter=False)
    assert await retry(flaky, attempts=5, backoff=backoff) == "ok"
    assert stamps == pytest.approx([0, 1, 3, 7], abs=1e-6)


@on_mock_clock()
async def test_retry_gives_up_with_the_last_error_as_itself_mock_clock() -> None:
    errors: list[Exception] = []

    async def down() -> None:
        errors.append(ConnectionError(len(errors)))
        raise errors[-1]

    with pytest.raises(ConnectionError) as info:
        await retry(down, attempts=3, backoff=resilience.Backoff(initial=0.5, jitter=False))
    assert len(errors) == 3
    assert info.value is errors[-1]

    calls = 0

    async def wrong() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("not retried")

    with pytest.raises(KeyError):
        await retry(wrong, attempts=5, retry_on=ConnectionError)
    assert calls == 1


@on_mock_clock()
async def test_retry_never_sleeps_past_the_ctx_deadline_mock_clock() -> None:
    stamps: list[float] = []
    t0 = anyio.current_time()

    async def down() -> None:
        stamps.append(anyio.current_time() - t0)
        raise ConnectionError("down")

    ctx, cancel = with_timeout(background(), 2.5)
    backoff = resilience.Backoff(initial=1, multiplier=2, maximum=100, jitter=False)
    with pytest.raises((ConnectionError, DeadlineExceeded)):
        await retry(down, attempts=10, backoff=backoff, ctx=ctx)
    # attempts at t=0 and t=1; the next backoff (2 s) would end past the deadline (2.5)
    assert stamps == pytest.approx([0, 1], abs=1e-6)
    assert anyio.current_time() - t0 <= 2.5 + 1e-6
    cancel()


@on_mock_clock()
async def test_retry_ctx_cancelled_during_backoff_raises_canceled_mock_clock() -> None:
    ctx, cancel = with_cancel(background())

    async def down() -> None:
        raise ConnectionError("down")

    async with Group() as g:

        async def cancel_later() -> None:
            await anyio.sleep(0.5)
            cancel()

        await g.go(cancel_later)
        t0 = anyio.current_time()
        with pytest.raises(Canceled):
            await retry(
                down, attempts=5, backoff=resilience.Backoff(initial=10, jitter=False), ctx=ctx
            )
        assert anyio.current_time() - t0 == pytest.approx(0.5, abs=1e-6)


# ---------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_tasks_and_dump_show_name_labels_blocked_on_creation_site_and_stack() -> None:
    with debug.enabled():
        made_at = sys._getframe().f_lineno + 1
        jobs = Chan[int]()

        async def resize_worker() -> None:
            await jobs.recv()

        async with Group() as g:
            with debug.labels(job="resize"):
                await g.go(resize_worker)
            await anyio.wait_all_tasks_blocked()
            await anyio.sleep(0.01)
            infos = [t for t in debug.tasks() if t.labels.get("job") == "resize"]
            text = debug.dump()
            text2 = debug.dump(group=False)
            await jobs.send(1)

    assert len(infos) == 1
    t = infos[0]
    assert isinstance(t.name, str) and t.name
    assert t.state == "parked"
    assert t.op == "chan recv"
    assert t.parked_for is not None and t.parked_for >= 0
    [prim] = t.blocked_on
    assert prim.created_at is not None
    assert os.path.basename(prim.created_at.filename) == HERE
    assert prim.created_at.lineno == made_at
    assert any(f.function.endswith("resize_worker") for f in t.stack)
    for out in (text, text2):
        assert "chan recv" in out
        assert f"{HERE}:{made_at}" in out
        assert "resize" in out and "job" in out
        assert "resize_worker" in out


@pytest.mark.usefixtures("no_leaks")
async def test_dump_shows_a_send_blocked_task() -> None:
    with debug.enabled():
        ch = Chan[int]()
        async with Group() as g:
            await g.go(ch.send, 1)
            await anyio.wait_all_tasks_blocked()
            text = debug.dump()
            assert await ch.recv() == 1
    assert "chan send" in text


async def test_labels_nest_and_reach_group_tasks() -> None:
    async def read() -> dict[str, str]:
        return dict(debug.current_labels())

    with debug.labels(request="r-1"):
        with debug.labels(stage="fetch", request="r-2"):
            async with Group() as g:
                h = await g.go(read)
        assert debug.current_labels() == {"request": "r-1"}
    assert debug.current_labels() == {}
    assert h.result() == {"request": "r-2", "stage": "fetch"}


async def test_no_leaks_fails_with_the_dump() -> None:
    async with anyio.create_task_group() as outer:
        ch = Chan[int]()
        with pytest.raises(testing.TaskLeakError) as info:
            async with testing.no_leaks(grace=0.01):
                outer.start_soon(ch.recv, name="forgotten-reader")
                await anyio.wait_all_tasks_blocked()
        outer.cancel_scope.cancel()
    msg = str(info.value)
    assert "forgotten-reader" in msg
    assert "chan recv" in msg
    assert [t.name for t in info.value.tasks] == ["forgotten-reader"]


async def test_no_leaks_passes_for_structured_code() -> None:
    async with testing.no_leaks(grace=0):
        async with Group() as g:
            g.go_nowait(anyio.sleep, 0.001)
        await (pipeline(range(10)) | stages.map(lambda x: x, workers=3)).collect()
        async with WorkerPool(workers=2) as pool:
            await pool.submit(anyio.sleep, 0)


async def test_deadlock_detection_reports_who_waits_on_what() -> None:
    a = Chan[int]()
    b = Chan[int]()

    async def left() -> None:
        await a.recv()
        await b.send(1)

    async def right() -> None:
        await b.recv()
        await a.send(1)

    with anyio.fail_after(20), pytest.raises(Deadlock) as info:
        async with debug.detect_deadlocks():
            async with Group() as g:
                await g.go(left)
                await g.go(right)
    msg = str(info.value)
    assert "chan recv" in msg
    assert "left" in msg and "right" in msg


async def test_deadlock_detection_in_a_stuck_pipeline() -> None:
    never = Chan[int]()

    async def stuck(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            await never.recv()  # nobody will ever send
            yield x

    with anyio.fail_after(20), pytest.raises(Deadlock) as info:
        async with debug.detect_deadlocks():
            await (pipeline(range(10)) | stuck).collect()
    assert "chan recv" in str(info.value)


async def test_deadlock_detection_on_a_stuck_pool_job() -> None:
    never = Chan[int]()
    with anyio.fail_after(20), pytest.raises(Deadlock):
        async with debug.detect_deadlocks():
            async with WorkerPool(workers=1) as pool:
                h = await pool.submit(never.recv)
                await h


async def test_deadlock_detection_no_false_positive_with_a_timer() -> None:
    ch = Chan[int]()

    async def late_sender() -> None:
        await anyio.sleep(0.05)
        await ch.send(5)

    with anyio.fail_after(20):
        async with debug.detect_deadlocks():
            async with Group() as g:
                await g.go(late_sender)
                assert await ch.recv() == 5


# ---------------------------------------------------------------------------------------
# pytest plugin (via pytester, in a subprocess of its own)
# ---------------------------------------------------------------------------------------

PLUGIN_TESTS = """
import asyncio
import pytest
import asyncgo

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


async def test_ctx_fixture(asyncgo_ctx):
    assert isinstance(asyncgo_ctx, asyncgo.Context)
    assert asyncgo_ctx.err() is None


@pytest.mark.asyncgo_context(timeout=0.05)
async def test_ctx_fixture_deadline(asyncgo_ctx):
    assert asyncgo_ctx.deadline() is not None
    await asyncgo_ctx.wait()
    assert isinstance(asyncgo_ctx.err(), asyncgo.DeadlineExceeded)


async def test_deadlocked_test_fails_fast():
    await asyncgo.Chan().recv()


async def test_structured_code_passes_leak_check(asyncgo_no_leaks):
    async with asyncgo.Group() as g:
        g.go_nowait(asyncgo.time.sleep, 0.001)
"""

PLUGIN_LEAK_TEST = """
import asyncio
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


KEEP = []


@pytest.mark.asyncgo_no_leaks(grace=0.05)
async def test_leaky():
    KEEP.append(asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="leaked-sleeper"))
"""


def test_pytest_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plugin_use=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-p", "no:cacheprovider", "-q", timeout=120
    )
    result.assert_outcomes(passed=6, failed=2)
    out = result.stdout.str()
    assert "Deadlock" in out
    assert "chan recv" in out


def test_pytest_plugin_leak_check_fails_with_the_dump(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leak=PLUGIN_LEAK_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-p", "no:cacheprovider", "-q", timeout=120
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "leaked-sleeper" in out


# ---------------------------------------------------------------------------------------
# Integrations
# ---------------------------------------------------------------------------------------


@pytest.mark.skipif(fastapi is None, reason="the fastapi extra is not installed")
async def test_fastapi_request_context_deadline_gives_504() -> None:
    app = fastapi.FastAPI()
    app.add_middleware(ContextMiddleware, timeout=10.0)
    seen: list[object] = []

    @app.get("/slow")
    async def slow(ctx: RequestContext) -> dict[str, str]:
        try:
            await asyncgo.time.sleep(60, ctx)
        finally:
            seen.append(ctx.err())
        return {"status": "done"}

    @app.get("/fast")
    async def fast(ctx: RequestContext) -> dict[str, object]:
        async with Group(ctx) as g:
            h = await g.go(anyio.sleep, 0)
        await h
        return {"deadline": ctx.deadline() is not None, "current": asyncgo.current() is ctx}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with anyio.fail_after(20):
            r = await client.get("/fast")
            assert r.status_code == 200
            assert r.json() == {"deadline": True, "current": True}
            r = await client.get("/slow", headers={"Request-Timeout": "0.05"})
    assert r.status_code == 504
    assert len(seen) == 1 and isinstance(seen[0], DeadlineExceeded)


async def test_aiohttp_client_disconnect_cancels_request_context() -> None:
    if backend_name() != "asyncio":
        pytest.skip("aiohttp runs on asyncio only")
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    from asyncgo.contrib.aiohttp import ClientDisconnected, get_context, setup

    cancelled = anyio.Event()
    causes: list[BaseException | None] = []

    async def handler(request: web.Request) -> web.Response:
        ctx = get_context(request)
        try:
            await ctx.wait()  # the request's scope may cancel this: the ctx is done
        finally:
            causes.append(ctx.cause())
            cancelled.set()
        return web.Response(text="late")

    app = web.Application()
    setup(app, timeout=30.0, poll_interval=0.01)
    app.router.add_get("/wait", handler)
    runner = web.AppRunner(app)  # a real server, without aiohttp's own handler cancellation
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session:
            with anyio.move_on_after(0.2):
                await session.get(f"http://127.0.0.1:{port}/wait")  # the client gives up
        with anyio.fail_after(10):
            await cancelled.wait()
    finally:
        await runner.cleanup()
    assert isinstance(causes[0], ClientDisconnected)


async def test_otel_spans_for_pipeline_stages_and_pool_jobs() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from asyncgo.contrib import otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(tracer_provider=provider)
    try:
        await (pipeline(range(3)) | identity | stages.map(lambda x: x)).collect()
        async with WorkerPool(workers=2) as pool:
            for _ in range(3):
                await pool.submit(anyio.sleep, 0)
    finally:
        otel.uninstrument()
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("asyncgo.pipeline.stage") == 3  # the source and two stages
    assert names.count("asyncgo.pool.job") == 3


# keep `math` used for NaN checks of stage arguments
def test_batch_timeout_nan_is_rejected() -> None:
    with pytest.raises(ValueError):
        stages.batch(2, timeout=math.nan)
    with pytest.raises(ValueError):
        stages.batch(2, timeout=-1)


# ---------------------------------------------------------------------------------------
# Second round: teardown races, cancellation safety, custom task stages
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_stage_error_while_consumer_is_not_iterating_is_raised_on_leaving() -> None:
    err = Boom("while the consumer was busy")

    async def failing(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 1:
                raise err
            yield x

    with anyio.fail_after(10), pytest.raises(Boom) as info:
        async with (pipeline(range(10)) | failing).stream() as items:
            assert await items.__anext__() == 0
            await anyio.sleep(0.05)  # the stage fails meanwhile
    assert info.value is err


@pytest.mark.usefixtures("no_leaks")
async def test_merge_of_endless_sources_early_break_closes_all() -> None:
    closed: list[str] = []

    def endless(name: str) -> Any:
        async def gen() -> AsyncIterator[str]:
            try:
                while True:
                    await anyio.sleep(0)
                    yield name
            finally:
                closed.append(name)

        return gen

    p = pipeline(stages.merge(endless("a"), endless("b"))) | stages.merge(endless("c"))
    n = 0
    with anyio.fail_after(10):
        async with p.stream() as items:
            async for _ in items:
                n += 1
                if n == 50:
                    break
    assert sorted(closed) == ["a", "b", "c"]


@pytest.mark.usefixtures("no_leaks")
async def test_take_after_parallel_map_on_an_endless_source() -> None:
    async def slow_id(x: int) -> int:
        await anyio.sleep(0.001)
        return x

    with anyio.fail_after(10):
        got = await (
            pipeline(naturals_forever) | stages.map(slow_id, workers=4) | stages.take(5)
        ).collect()
    assert got == [0, 1, 2, 3, 4]


@pytest.mark.usefixtures("no_leaks")
async def test_tee_sink_error_is_reraised_as_itself() -> None:
    err = Boom("sink")

    async def bad_sink(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 2:
                raise err
            yield x

    with anyio.fail_after(10), pytest.raises(Boom) as info:
        await (pipeline(naturals_forever) | stages.tee(bad_sink)).collect()
    assert info.value is err


@pytest.mark.usefixtures("no_leaks")
async def test_tee_closes_its_channel_sink_when_the_stream_stops_early() -> None:
    audit = Chan[int](1000)
    async with (pipeline(naturals_forever) | stages.tee(audit)).stream() as items:
        async for x in items:
            if x == 3:
                break
    assert audit.closed
    seen = [x async for x in audit]
    assert seen == list(range(len(seen)))  # in order, nothing duplicated


@pytest.mark.usefixtures("no_leaks")
async def test_tee_channel_sink_gets_every_item_that_went_downstream() -> None:
    """Go's tee hands v to every output before reading the next: no output can be ahead.

    A consumer that breaks after item 3 has seen 0..3; the audit channel had room for
    1000 items, so it must hold at least 0..3 too (Principle 2: no item is lost).
    """
    for _ in range(20):  # trio's scheduling is randomised: make a loss certain to show
        audit = Chan[int](1000)
        downstream: list[int] = []
        async with (pipeline(naturals_forever) | stages.tee(audit)).stream() as items:
            async for x in items:
                downstream.append(x)
                if x == 3:
                    break
        seen = [x async for x in audit]
        assert seen[: len(downstream)] == downstream, (downstream, seen[:10])


class Duplicate(stages.TaskStage[int, int]):
    """A user-written stage that starts tasks: each item is sent twice, from two tasks."""

    async def run(self, inp: asyncgo.RecvChan[int], out: asyncgo.SendChan[int]) -> None:
        async with Group() as g:

            async def copy() -> None:
                async for x in inp:
                    await out.send(x)
                    await out.send(x)

            for _ in range(2):
                await g.go(copy)


class FailOn(stages.TaskStage[int, int]):
    def __init__(self, bad: int, err: Exception) -> None:
        self.bad, self.err = bad, err

    async def run(self, inp: asyncgo.RecvChan[int], out: asyncgo.SendChan[int]) -> None:
        async for x in inp:
            if x == self.bad:
                raise self.err
            await out.send(x)


@pytest.mark.usefixtures("no_leaks")
async def test_user_task_stage_may_start_tasks_and_fail_as_itself() -> None:
    got = await (pipeline(range(20)) | Duplicate() | stages.map(lambda x: x)).collect()
    assert sorted(got) == sorted(list(range(20)) * 2)

    err = Boom("task stage")
    with anyio.fail_after(10), pytest.raises(Boom) as info:
        await (pipeline(naturals_forever) | FailOn(5, err) | identity).collect()
    assert info.value is err


@pytest.mark.usefixtures("no_leaks")
async def test_pool_cancelling_the_awaiter_does_not_cancel_the_job() -> None:
    gate = anyio.Event()

    async def job() -> str:
        await gate.wait()
        return "finished"

    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(job)
        with anyio.move_on_after(0.01):
            await h
        assert not h.done() and not h.cancelled()
        gate.set()
        assert await h == "finished"


@pytest.mark.usefixtures("no_leaks")
async def test_pool_map_early_break_leaves_nothing_behind() -> None:
    async def fn(x: int) -> int:
        await anyio.sleep(0.001)
        return x

    async with WorkerPool(workers=4) as pool:
        m = pool.map(fn, range(10_000))
        async for r in m:
            if r == 5:
                break
        await m.aclose()
    s = pool.stats()
    assert s.submitted < 10_000  # it stopped submitting
    assert s.submitted == s.done + s.failed + s.cancelled
    assert (s.running, s.queued, s.workers) == (0, 0, 0)


@pytest.mark.usefixtures("no_leaks")
async def test_pool_block_raising_aborts_queued_and_running_jobs() -> None:
    err = KeyError("body")
    with anyio.fail_after(10), pytest.raises(KeyError) as info:
        async with WorkerPool(workers=1, queue_size=4) as pool:
            running = await pool.submit(anyio.sleep_forever)
            await anyio.wait_all_tasks_blocked()
            queued = await pool.submit(anyio.sleep_forever)
            raise err
    assert info.value is err
    assert running.cancelled() and queued.cancelled()
    s = pool.stats()
    assert s.submitted == s.done + s.failed + s.cancelled == 2


@pytest.mark.usefixtures("no_leaks")
async def test_cancelled_publish_keeps_what_it_delivered_and_nothing_more() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=4) as roomy, bus.subscribe(buffer=0) as full:
        with anyio.move_on_after(0.02) as scope:
            await bus.publish(1)  # `full` never reads: the publish is cancelled
        assert scope.cancelled_caught
        bus.close()
        assert [v async for v in roomy] == [1]  # served before the cancellation
        assert [v async for v in full] == []  # never got it


@pytest.mark.usefixtures("no_leaks")
async def test_unsubscribe_ends_a_waiting_reader() -> None:
    bus = Broadcast[int]()
    sub = bus.subscribe(buffer=4)
    async with sub:
        ended = anyio.Event()

        async def reader() -> None:
            async for _ in sub:
                pass
            ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            sub.unsubscribe()
            sub.unsubscribe()  # idempotent
        assert ended.is_set()
        assert sub.closed
        with pytest.raises(ChanClosed):
            await sub.recv()
        await bus.publish(1)  # does not reach (or wait for) the ex-subscriber


@pytest.mark.usefixtures("no_leaks")
async def test_publish_without_subscribers_returns_at_once() -> None:
    bus = Broadcast[int]()
    with anyio.fail_after(10):
        for i in range(100):
            await bus.publish(i)
            bus.publish_nowait(i)
    async with bus.subscribe() as sub:  # nothing published before subscribing arrives
        bus.close()
        assert [v async for v in sub] == []


@on_mock_clock()
async def test_circuit_breaker_counts_failures_within_the_window_only_mock_clock() -> None:
    breaker = CircuitBreaker(failure_threshold=2, window=10, recovery_time=5)
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError  # t=0
    await anyio.sleep(11)  # the first failure leaves the window
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError  # t=11: one failure in the last 10 s
    assert breaker.state is resilience.State.CLOSED
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError
    assert breaker.state is resilience.State.OPEN  # two within 10 s


async def test_no_leaks_allow_list() -> None:
    async with anyio.create_task_group() as outer:
        ch = Chan[int]()
        async with testing.no_leaks(grace=0.01, ignore_names=["known-background"]):
            outer.start_soon(ch.recv, name="known-background")
            await anyio.wait_all_tasks_blocked()
        outer.cancel_scope.cancel()


async def test_deadlock_report_names_the_channel_creation_site() -> None:
    with anyio.fail_after(20), pytest.raises(Deadlock) as info:
        async with debug.detect_deadlocks():
            made_at = sys._getframe().f_lineno + 1
            orphan = Chan[int]()
            await orphan.recv()
    assert f"{HERE}:{made_at}" in str(info.value)


async def test_deadlock_detection_on_select_and_wait_group() -> None:
    a, b = Chan[int](), Chan[int]()
    with anyio.fail_after(20), pytest.raises(Deadlock):
        async with debug.detect_deadlocks():
            await asyncgo.select(asyncgo.recv(a), asyncgo.recv(b))

    wg = asyncgo.WaitGroup()
    wg.add(1)
    with anyio.fail_after(20), pytest.raises(Deadlock):
        async with debug.detect_deadlocks():
            await wg.wait()  # one Done short


@pytest.mark.usefixtures("no_leaks")
async def test_dump_shows_a_mutex_waiter() -> None:
    with debug.enabled():
        mu = asyncgo.Mutex()
        async with Group() as g:
            async with mu:
                await g.go(mu.lock)
                await anyio.wait_all_tasks_blocked()
                text = debug.dump()
            # the waiter got the lock when we released it
        mu.unlock()
    assert "mutex lock" in text


@pytest.mark.usefixtures("no_leaks")
async def test_tee_a_stalled_sink_stalls_downstream() -> None:
    """The slowest sink sets the pace: downstream cannot run away from a stuck sink."""
    gate = anyio.Event()

    async def stuck_sink(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            await gate.wait()
            yield x

    down: list[int] = []

    async def consume() -> None:
        p = pipeline(naturals_forever, buffer=4) | stages.tee(stuck_sink)
        async with p.stream() as items:
            async for x in items:
                down.append(x)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        with anyio.fail_after(20):
            await anyio.wait_all_tasks_blocked()
        assert 1 <= len(down) <= 3 * 4 + 3, len(down)
        tg.cancel_scope.cancel()


@pytest.mark.usefixtures("no_leaks")
async def test_recv_only_view_is_a_source_and_stage_generators_close_in_their_task() -> None:
    ch = Chan[int](10)
    for i in range(3):
        await ch.send(i)
    ch.close()
    closed_in: list[int] = []
    consumer = anyio.get_current_task().id

    async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        try:
            async for x in items:
                yield x
        finally:
            closed_in.append(anyio.get_current_task().id)

    assert await (pipeline(ch.recv_only()) | stage).collect() == [0, 1, 2]
    assert len(closed_in) == 1 and closed_in[0] != consumer


@pytest.mark.usefixtures("no_leaks")
async def test_error_keeps_its_traceback() -> None:
    async def explode_at_two(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 2:
                raise Boom("tb")
            yield x

    with pytest.raises(Boom) as info:
        await (pipeline(range(5)) | explode_at_two | identity).collect()
    names = []
    tb = info.value.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "explode_at_two" in names


@pytest.mark.parametrize(
    "ordered",
    [pytest.param(True, id="ordered"), pytest.param(False, id="unordered")],
)
@pytest.mark.usefixtures("no_leaks")
async def test_pool_map_window_bounds_jobs_in_flight(ordered: bool) -> None:
    active = peak = 0

    async def fn(x: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.002)
        active -= 1
        return x

    async with WorkerPool(workers=10) as pool:
        got = [r async for r in pool.map(fn, range(30), window=3, ordered=ordered)]
        with pytest.raises(ValueError):
            pool.map(fn, range(3), window=0)
    assert sorted(got) == list(range(30))
    assert peak == 3  # "at most *window* jobs are in flight"


async def test_pool_bad_input_is_named() -> None:
    with pytest.raises(ValueError):
        WorkerPool(workers=0)
    with pytest.raises(ValueError):
        WorkerPool(workers=1, queue_size=-1)
    with pytest.raises(ValueError):
        WorkerPool(min_workers=3, max_workers=2)
    with pytest.raises(ValueError):
        WorkerPool(workers=1, executor="gpu")  # type: ignore[arg-type]
    async with WorkerPool(workers=1) as pool:
        with pytest.raises(TypeError):
            await pool.submit(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await retry(anyio.sleep, 0, attempts=0)  # type: ignore[arg-type]


@on_mock_clock()
@pytest.mark.usefixtures("no_leaks")
async def test_pool_min_workers_zero_starts_on_demand_and_drains_to_zero_mock_clock() -> None:
    async def job(x: int) -> int:
        await anyio.sleep(0.1)
        return x

    async with WorkerPool(min_workers=0, max_workers=2, idle_timeout=1.0) as pool:
        await anyio.wait_all_tasks_blocked()
        assert pool.stats().workers == 0
        hs = [await pool.submit(job, i) for i in range(4)]
        assert [await h for h in hs] == [0, 1, 2, 3]
        assert 1 <= pool.stats().workers <= 2
        await anyio.sleep(2)
        assert pool.stats().workers == 0


@pytest.mark.usefixtures("no_leaks")
async def test_task_stack_is_innermost_first() -> None:
    with debug.enabled():
        ch = Chan[int]()

        async def inner_wait() -> None:
            await ch.recv()

        async def outer_job() -> None:
            await inner_wait()

        async with Group() as g:
            with debug.labels(probe="stack"):
                await g.go(outer_job)
            await anyio.wait_all_tasks_blocked()
            [t] = [t for t in debug.tasks() if t.labels.get("probe") == "stack"]
            await ch.send(0)
    funcs = [f.function for f in t.stack]
    i_inner = next(i for i, f in enumerate(funcs) if f.endswith("inner_wait"))
    i_outer = next(i for i, f in enumerate(funcs) if f.endswith("outer_job"))
    assert i_inner < i_outer
    assert all(f.lineno > 0 and f.filename for f in t.stack)


PLUGIN_PYTEST_ASYNCIO = """
import pytest
import asyncgo


@pytest.mark.asyncio
async def test_ctx(asyncgo_ctx):
    assert isinstance(asyncgo_ctx, asyncgo.Context) and asyncgo_ctx.err() is None


@pytest.mark.asyncio
async def test_deadlock():
    ch = asyncgo.Chan()
    await ch.send(1)
"""


def test_pytest_plugin_with_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makepyfile(test_with_pytest_asyncio=PLUGIN_PYTEST_ASYNCIO)
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:anyio", "-q", timeout=120
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "Deadlock" in out and "chan send" in out


@pytest.mark.usefixtures("no_leaks")
async def test_cancelled_next_on_a_stream_loses_no_item() -> None:
    """Principle 2 on the stream's iterator: a cancelled wait for the next item takes none."""

    async def slow() -> AsyncIterator[int]:
        for i in range(5):
            await anyio.sleep(0.02)
            yield i

    got: list[int] = []
    async with (pipeline(slow) | identity).stream() as items:
        with anyio.move_on_after(0.005):
            got.append(await items.__anext__())
        got.extend([x async for x in items])
    assert got == [0, 1, 2, 3, 4]


@pytest.mark.usefixtures("no_leaks")
async def test_job_handle_awaited_by_several_tasks() -> None:
    gate = anyio.Event()

    async def job() -> str:
        await gate.wait()
        return "shared"

    results: list[str] = []
    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(job)

        async def waiter() -> None:
            results.append(await h)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    assert results == ["shared"] * 3


@on_mock_clock()
@pytest.mark.usefixtures("no_leaks")
async def test_pool_ctx_deadline_cancels_jobs_at_the_deadline_mock_clock() -> None:
    ctx, cancel = with_timeout(background(), 5)
    t0 = anyio.current_time()
    try:
        async with WorkerPool(workers=1, ctx=ctx) as pool:
            h = await pool.submit(anyio.sleep, 100)
            with pytest.raises(JobCancelled):
                await h
            assert anyio.current_time() - t0 == pytest.approx(5, abs=1e-6)
    except DeadlineExceeded:
        pass  # the contract does not say whether the block re-raises ctx.err()
    cancel()
    assert h.cancelled()


@pytest.mark.usefixtures("no_leaks")
async def test_early_break_kills_a_stuck_process_call() -> None:
    p = pipeline(range(4)) | stages.map(sleepy, executor="process", workers=2)
    with anyio.fail_after(30):  # not 60 s: the stuck worker process is killed
        async with p.stream() as items:
            async for x in items:
                assert x == 0
                break


@pytest.mark.usefixtures("no_leaks")
async def test_dump_of_a_parked_pipeline_stage_shows_the_stage() -> None:
    with debug.enabled():
        never = Chan[int]()

        async def my_parked_stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in items:
                await never.recv()
                yield x

        with anyio.move_on_after(10):
            async with (pipeline(range(3)) | my_parked_stage).stream() as items:

                async def peek() -> str:
                    await anyio.wait_all_tasks_blocked()
                    return debug.dump()

                async with Group() as g:
                    h = await g.go(peek)
                text = h.result()
                never.close()
                with pytest.raises(ChanClosed):
                    async for _ in items:
                        pass
    assert "chan recv" in text
    assert "my_parked_stage" in text  # where it waits: the user's stage, not only machinery


@pytest.mark.usefixtures("no_leaks")
async def test_dump_shows_a_parked_map_function_and_pool_job() -> None:
    with debug.enabled():
        never = Chan[int]()

        async def my_map_fn(x: int) -> int:
            await never.recv()
            return x  # pragma: no cover

        async def my_pool_job() -> None:
            await never.recv()

        async def peek() -> str:
            await anyio.wait_all_tasks_blocked()
            return debug.dump(group=False)

        with pytest.raises(ChanClosed):
            async with (pipeline(range(3)) | stages.map(my_map_fn)).stream() as items:
                async with Group() as g:
                    h = await g.go(peek)
                never.close()
                async for _ in items:
                    pass
        assert "my_map_fn" in h.result() and "chan recv" in h.result()

        never = Chan[int]()
        async with WorkerPool(workers=1) as pool:
            job = await pool.submit(my_pool_job)
            async with Group() as g:
                h = await g.go(peek)
            never.close()
        assert isinstance(job.exception(), ChanClosed)
        assert "my_pool_job" in h.result() and "chan recv" in h.result()


@pytest.mark.usefixtures("no_leaks")
async def test_fan_out_copy_error_is_reraised_as_itself() -> None:
    err = Boom("copy")

    async def worker(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 10:
                raise err
            yield x

    with anyio.fail_after(10), pytest.raises(Boom) as info:
        await (pipeline(naturals_forever) | stages.fan_out(3, worker)).collect()
    assert info.value is err


@pytest.mark.usefixtures("no_leaks")
async def test_flat_map_generator_is_closed_in_the_stage_task_on_early_stop() -> None:
    closed_in: list[int] = []
    consumer = anyio.get_current_task().id

    async def expand(x: int) -> AsyncIterator[int]:
        try:
            while True:
                yield x
        finally:
            closed_in.append(anyio.get_current_task().id)

    with anyio.fail_after(10):
        assert await (pipeline([7]) | stages.flat_map(expand) | stages.take(3)).collect() == [7] * 3
    assert len(closed_in) == 1 and closed_in[0] != consumer


@on_mock_clock()
async def test_retry_with_a_backoff_function_mock_clock() -> None:
    stamps: list[float] = []
    t0 = anyio.current_time()

    async def flaky() -> str:
        stamps.append(anyio.current_time() - t0)
        if len(stamps) < 3:
            raise ConnectionError
        return "ok"

    assert await retry(flaky, attempts=3, backoff=lambda i: 0.5 * i) == "ok"
    assert stamps == pytest.approx([0, 0.5, 1.5], abs=1e-6)


@on_mock_clock()
async def test_retry_with_jitter_never_passes_the_deadline_mock_clock() -> None:
    for _ in range(20):
        ctx, cancel = with_timeout(background(), 3.0)
        t0 = anyio.current_time()

        async def down() -> None:
            raise ConnectionError

        with pytest.raises((ConnectionError, DeadlineExceeded)):
            await retry(down, attempts=50, backoff=resilience.Backoff(initial=1), ctx=ctx)
        assert anyio.current_time() - t0 <= 3.0 + 1e-6
        cancel()


async def test_deadlock_detection_no_false_positive_with_a_thread() -> None:
    ch = Chan[int]()

    async def via_thread() -> None:
        await anyio.to_thread.run_sync(walltime.sleep, 0.05)
        await ch.send(1)

    with anyio.fail_after(20):
        async with debug.detect_deadlocks():
            async with Group() as g:
                await g.go(via_thread)
                assert await ch.recv() == 1


@pytest.mark.parametrize(
    "ordered",
    [pytest.param(True, id="ordered"), pytest.param(False, id="unordered")],
)
@pytest.mark.usefixtures("no_leaks")
async def test_pool_map_cancelled_next_loses_no_result(ordered: bool) -> None:
    async def fn(x: int) -> int:
        await anyio.sleep(0.02)
        return x

    got: list[int] = []
    async with WorkerPool(workers=2) as pool:
        results = pool.map(fn, range(5), ordered=ordered)
        with anyio.move_on_after(0.005):
            got.append(await results.__anext__())  # cancelled: took nothing
        got.extend([r async for r in results])
    assert sorted(got) == [0, 1, 2, 3, 4]
    if ordered:
        assert got == [0, 1, 2, 3, 4]


@pytest.mark.usefixtures("no_leaks")
async def test_subscription_cancelled_next_loses_no_value() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=10) as sub:
        it = sub.__aiter__()
        with anyio.move_on_after(0.01):
            await it.__anext__()
        for i in range(3):
            await bus.publish(i)
        bus.close()
        assert [v async for v in it] == [0, 1, 2]


@pytest.mark.usefixtures("no_leaks")
async def test_asgi_client_disconnect_cancels_the_request_context() -> None:
    from asyncgo.contrib.starlette import ClientDisconnected, get_context
    from asyncgo.contrib.starlette import ContextMiddleware as AsgiContextMiddleware

    seen: list[tuple[object, object]] = []
    leave = anyio.Event()

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        ctx = get_context(scope)
        try:
            await ctx.wait()  # the request's scope may cancel this instead: the ctx is done
        finally:
            seen.append((ctx.err(), ctx.cause()))

    app = AsgiContextMiddleware(inner, timeout=None, watch_after=0)
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, object]:
        if messages:
            return messages.pop(0)
        await anyio.sleep(0.05)  # then the client goes away
        leave.set()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        pass

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
    }
    with anyio.fail_after(10):
        await app(scope, receive, send)
    assert leave.is_set()
    [(err, cause)] = seen
    assert isinstance(err, Canceled)
    assert isinstance(cause, ClientDisconnected)


@pytest.mark.skipif(fastapi is None, reason="the fastapi extra is not installed")
async def test_event_stream_response_from_a_pipeline() -> None:
    from asyncgo.contrib.fastapi import EventStreamResponse

    app = fastapi.FastAPI()
    app.add_middleware(ContextMiddleware, timeout=10.0)

    @app.get("/events")
    async def events() -> Any:
        return EventStreamResponse(pipeline(range(3)) | stages.map(lambda x: {"n": x}))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with anyio.fail_after(20):
            r = await client.get("/events")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    data = [line for line in r.text.splitlines() if line.startswith("data:")]
    assert len(data) == 3
    assert '"n": 2' in data[-1] or '"n":2' in data[-1]


@pytest.mark.usefixtures("no_leaks")
async def test_select_waiter_is_shown_on_every_channel() -> None:
    with debug.enabled():
        a, b = Chan[int](), Chan[int]()
        async with Group() as g:
            with debug.labels(probe="select"):
                await g.go(asyncgo.select, asyncgo.recv(a), asyncgo.recv(b))
            await anyio.wait_all_tasks_blocked()
            [t] = [t for t in debug.tasks() if t.labels.get("probe") == "select"]
            await b.send(1)
    assert t.state == "parked"
    assert len(t.blocked_on) == 2
    assert {p.created_at.lineno for p in t.blocked_on if p.created_at} != set()


@pytest.mark.usefixtures("no_leaks")
async def test_ctx_cancel_raises_ctx_err_itself() -> None:
    ctx, cancel = with_cancel(background())
    with anyio.fail_after(10), pytest.raises(Canceled) as info:
        async with (pipeline(naturals_forever) | identity).stream(ctx) as items:
            async for x in items:
                if x == 2:
                    cancel()
    assert info.value is ctx.err()


@pytest.mark.usefixtures("no_leaks")
async def test_pool_block_cancelled_from_outside_aborts_its_jobs() -> None:
    handles: list[Any] = []
    with anyio.move_on_after(0.05) as scope:
        async with WorkerPool(workers=2) as pool:
            for _ in range(4):
                handles.append(await pool.submit(anyio.sleep_forever))
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert all(h.cancelled() for h in handles)
    assert pool.stats().workers == 0


@pytest.mark.usefixtures("no_leaks")
async def test_close_releases_a_publish_waiting_on_a_block_subscriber() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=0, policy="block"):
        outcome: list[str] = []

        async def pub() -> None:
            try:
                await bus.publish(1)
                outcome.append("returned")
            except ChanClosed:
                outcome.append("ChanClosed")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pub)
                await anyio.wait_all_tasks_blocked()
                assert outcome == []
                bus.close()
        assert len(outcome) == 1  # released either way, never left hanging


@pytest.mark.usefixtures("no_leaks")
async def test_unbuffered_drop_subscriber_gets_a_value_only_when_it_waits() -> None:
    """Go: ``select { case sub <- v: default: }`` on an unbuffered channel."""
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=0, policy="drop_newest") as sub:
        bus.publish_nowait(1)  # nobody receiving: dropped
        assert sub.dropped == 1
        async with Group() as g:
            h = await g.go(sub.recv)
            await anyio.wait_all_tasks_blocked()
            bus.publish_nowait(2)  # a receiver is parked: handed over
        assert h.result() == 2
        assert sub.dropped == 1


async def test_retry_with_a_done_ctx_makes_no_attempt() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(Canceled):
        await retry(fn, ctx=ctx)
    assert calls == 0


@pytest.mark.parametrize("shape", ["merge", "fan_out", "flat_map", "batch_timeout", "tee", "map"])
@pytest.mark.usefixtures("no_leaks")
async def test_backpressure_through_every_task_stage(shape: str) -> None:
    """A stalled consumer stops endless producers behind any built-in stage (bounded memory)."""
    produced = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal produced
        n = 0
        while True:
            produced += 1
            yield n
            n += 1

    def expand(x: int) -> Any:
        nonlocal produced
        for i in range(10**9):
            produced += 1
            yield i

    build = {
        "merge": lambda: pipeline(stages.merge(endless, endless), buffer=8),
        "fan_out": lambda: pipeline(endless, buffer=8) | stages.fan_out(4, identity),
        "flat_map": lambda: pipeline([1], buffer=8) | stages.flat_map(expand),
        "batch_timeout": lambda: pipeline(endless, buffer=8) | stages.batch(4, timeout=60),
        "tee": lambda: pipeline(endless, buffer=8) | stages.tee(identity),
        "map": lambda: pipeline(endless, buffer=8) | stages.map(identity_fn, workers=4),
    }[shape]
    async with build().stream() as items:
        await items.__anext__()
        with anyio.fail_after(20):
            await anyio.wait_all_tasks_blocked()
        assert produced <= 100, produced  # a handful of 8-item links, not a runaway


def identity_fn(x: int) -> int:
    return x

"""The pipeline runner: sources, one task per stage, backpressure, errors, early exit, ctx.

Every test runs on asyncio, uvloop and trio, and the autouse ``no_leaks`` fixture
checks that no task started by the test is still alive when it ends. Racy states
are reached with ``anyio.wait_all_tasks_blocked()``, never with sleeps; nothing
asserts wall-clock time.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from asyncgo import Chan, stages
from asyncgo._pipeline import DEFAULT_BUFFER, Pipeline, _shape, pipeline

pytestmark = pytest.mark.anyio


# -- leak check ----------------------------------------------------------------------


def live_tasks() -> set[object]:
    """Every task alive in this event loop (anyio's process-pool janitor aside)."""
    try:
        import asyncio

        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        found: set[object] = set()
        stack = [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            if task is None:
                continue
            if "process_pool" not in task.name:
                found.add(task)
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return found
    return {
        t
        for t in asyncio.all_tasks()
        if "process pool" not in t.get_name()
        # anyio's pytest runner wraps each fixture and test call in a task of its own
        and not getattr(t.get_coro(), "__qualname__", "").startswith("TestRunner.")
    }


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    before = live_tasks()
    yield
    leaked = live_tasks() - before
    assert not leaked, f"tasks left running: {leaked}"


def task_id() -> int:
    return anyio.get_current_task().id


# -- stages used below ---------------------------------------------------------------


async def square(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        yield x * x


async def even(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        if x % 2 == 0:
            yield x


async def triple(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        yield 3 * x


class Probe:
    """A stage that records the task it runs in and the task that closed it."""

    def __init__(self) -> None:
        self.ran_in: int | None = None
        self.closed_in: int | None = None
        self.seen = 0

    async def __call__(self, items: AsyncIterator[int]) -> AsyncIterator[int]:
        self.ran_in = task_id()
        try:
            async for x in items:
                self.seen += 1
                yield x
        finally:
            self.closed_in = task_id()


def expected(n: int) -> list[int]:
    return [3 * x * x for x in range(n) if x * x % 2 == 0]


# -- sources -------------------------------------------------------------------------


def sync_gen(n: int) -> Iterator[int]:
    yield from range(n)


async def async_gen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def from_chan(n: int) -> list[int]:
    ch = Chan[int](4)
    async with anyio.create_task_group() as tg:

        async def fill() -> None:
            for i in range(n):
                await ch.send(i)
            ch.close()

        tg.start_soon(fill)
        out = await (pipeline(ch) | square).collect()
    return out


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda n: list(range(n)), id="list"),
        pytest.param(lambda n: range(n), id="range"),
        pytest.param(sync_gen, id="sync-generator"),
        pytest.param(async_gen, id="async-generator"),
        pytest.param(lambda n: lambda: async_gen(n), id="async-generator-function"),
        pytest.param(lambda n: pipeline(range(n)), id="pipeline"),
        pytest.param(lambda n: stages.merge(range(n)), id="merge"),
    ],
)
async def test_sources(make: Any) -> None:
    n = 1000
    assert await (pipeline(make(n)) | square).collect() == [x * x for x in range(n)]


async def test_channel_source_is_read_until_closed_and_not_closed_again() -> None:
    assert await from_chan(300) == [x * x for x in range(300)]


async def test_async_generator_source_closed_in_its_own_task() -> None:
    where: list[int] = []

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in itertools.count():
                yield i
        finally:
            where.append(task_id())

    async with (pipeline(numbers) | square).stream() as items:
        async for x in items:
            if x >= 100:
                break
    assert len(where) == 1 and where[0] != task_id()


async def test_three_stages_in_order() -> None:
    n = 5000
    assert await (pipeline(range(n)) | square | even | triple).collect() == expected(n)
    out = []
    async with (pipeline(range(n)) | square | even | triple).stream() as items:
        async for x in items:
            out.append(x)
    assert out == expected(n)


@pytest.mark.parametrize("buffer", [0, 1, 5, 16, DEFAULT_BUFFER])
async def test_any_buffer_size_delivers_everything(buffer: int) -> None:
    n = 700
    p = pipeline(range(n), buffer=buffer) | square | even | triple
    assert await p.collect() == expected(n)


async def test_run_drains_for_effects() -> None:
    seen: list[int] = []

    async def record(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            seen.append(x)
            yield x

    await (pipeline(range(100)) | record).run()
    assert seen == list(range(100))


async def test_each_stage_runs_in_its_own_task_and_is_closed_there() -> None:
    probes = [Probe() for _ in range(3)]
    p = pipeline(range(50)) | probes[0] | probes[1] | probes[2]
    assert await p.collect() == list(range(50))
    ids = [pr.ran_in for pr in probes]
    assert len(set(ids)) == 3 and task_id() not in ids
    assert [pr.closed_in for pr in probes] == ids


async def test_stages_overlap() -> None:
    """The source waits for the last stage to see item 0: only concurrent stages finish."""
    reached_end = anyio.Event()

    async def source() -> AsyncIterator[int]:
        yield 0
        await reached_end.wait()  # nested generators would deadlock here
        yield 1

    async def last(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            reached_end.set()
            yield x

    with anyio.fail_after(10):
        assert await (pipeline(source) | square | last).collect() == [0, 1]


async def test_an_idle_consumer_gets_each_item_at_once() -> None:
    """Batching never holds an item back while the next stage waits for it."""
    go = [anyio.Event() for _ in range(5)]

    async def source() -> AsyncIterator[int]:
        for i in range(5):
            yield i
            await go[i].wait()  # the next item only after the consumer saw this one

    out = []
    with anyio.fail_after(10):
        async with (pipeline(source) | square | triple).stream() as items:
            async for x in items:
                out.append(x)
                go[len(out) - 1].set()
    assert out == [3 * i * i for i in range(5)]


# -- backpressure --------------------------------------------------------------------


def link_bound(size: int) -> int:
    """Most items one link may hold (see _pipeline's docstring)."""
    batch, cap = _shape(size)
    return size + 1 if batch == 1 else size


@pytest.mark.parametrize("buffer", [0, 3, 16, 64])
async def test_slow_sink_bounds_how_far_the_source_runs_ahead(buffer: int) -> None:
    produced = 0

    async def source() -> AsyncIterator[int]:
        nonlocal produced
        for i in itertools.count():
            produced += 1
            yield i

    p = pipeline(source, buffer=buffer) | square | triple | Probe()
    n_links, n_tasks = 4, 4
    consumed = 0
    async with p.stream() as items:
        async for _ in items:
            consumed += 1
            if consumed in (1, 50):
                await anyio.wait_all_tasks_blocked()
                ahead = produced - consumed
                # Each link holds at most its buffer (+1 for a parked unbatched
                # sender); each stage task holds one item in hand.
                assert ahead <= n_links * link_bound(buffer) + n_tasks, (produced, consumed)
                assert ahead >= buffer  # ... and the buffers are used
            if consumed == 50:
                break


async def test_buffer_stage_sets_one_link() -> None:
    produced = 0

    async def source() -> AsyncIterator[int]:
        nonlocal produced
        for i in itertools.count():
            produced += 1
            yield i

    p = pipeline(source, buffer=0) | stages.buffer(100) | square
    async with p.stream() as items:
        async for _ in items:
            await anyio.wait_all_tasks_blocked()
            # link 0 holds up to 100, the unbuffered link 1 at most one parked item
            assert 90 <= produced - 1 <= 100 + 1 + 3
            break


# -- errors --------------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_error_in_middle_stage_is_raised_as_itself_and_stops_everything() -> None:
    probes = [Probe(), Probe()]
    err = Boom("stage 2 failed")

    async def failing(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 100:
                raise err
            yield x

    p = pipeline(itertools.count()) | probes[0] | failing | probes[1]
    with pytest.raises(Boom) as info:
        await p.collect()
    assert info.value is err
    # the traceback still shows where it was raised
    assert any(tb.name == "failing" for tb in info.traceback)
    assert all(pr.closed_in == pr.ran_in for pr in probes)


async def test_error_reaches_the_async_for() -> None:
    async def failing(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 10:
                raise Boom
            yield x

    got = []
    with pytest.raises(Boom):
        async with (pipeline(itertools.count()) | failing | square).stream() as items:
            async for x in items:
                got.append(x)
    assert got == [x * x for x in range(len(got))] and len(got) <= 10


async def test_error_in_source() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise Boom

    with pytest.raises(Boom):
        await (pipeline(source) | square).collect()


async def test_error_not_yet_seen_is_raised_on_leaving_the_block() -> None:
    async def failing(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            yield x
            raise Boom

    with pytest.raises(Boom):
        async with (pipeline(range(10)) | failing).stream() as items:
            async for _ in items:
                await anyio.wait_all_tasks_blocked()  # the stage fails meanwhile
                break


async def test_first_error_wins() -> None:
    first = Boom("first")

    async def fail_first(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x >= 0:
                raise first
            yield x

    async def fail_on_close(items: AsyncIterator[int]) -> AsyncIterator[int]:
        try:
            async for x in items:
                yield x
        finally:
            raise ValueError("late")  # raised while the pipeline stops: ignored

    with pytest.raises(Boom) as info:
        await (pipeline(range(10)) | fail_first | fail_on_close).collect()
    assert info.value is first


async def test_consumer_error_propagates_as_itself() -> None:
    probe = Probe()
    with pytest.raises(KeyError):
        async with (pipeline(itertools.count()) | probe).stream() as items:
            async for x in items:
                if x == 3:
                    raise KeyError(x)
    assert probe.closed_in == probe.ran_in


async def test_stage_returning_a_non_iterator_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="returned int, not an async iterator"):
        await (pipeline(range(3)) | (lambda items: 42)).collect()  # type: ignore[operator]


async def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="source must be"):
        pipeline(42)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="buffer must be >= 0"):
        pipeline([], buffer=-1)
    with pytest.raises(TypeError, match="must be callable"):
        pipeline([]) | 3  # type: ignore[operator]


async def test_stream_enters_once() -> None:
    s = pipeline(range(3)).stream()
    async with s as items:
        assert [x async for x in items] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="only once"):
        async with s:
            pass


# -- early exit ----------------------------------------------------------------------


async def test_break_stops_every_stage_and_closes_generators() -> None:
    probes = [Probe() for _ in range(3)]
    p = pipeline(itertools.count()) | probes[0] | probes[1] | probes[2]
    async with p.stream() as items:
        async for x in items:
            if x == 7:
                break
    assert all(pr.closed_in is not None and pr.closed_in == pr.ran_in for pr in probes)


async def test_consumer_cancelled_leaves_nothing_behind() -> None:
    probes = [Probe(), Probe()]

    async def forever() -> AsyncIterator[int]:
        for i in itertools.count():
            yield i
            if i > 20:
                await anyio.sleep_forever()

    with anyio.CancelScope() as scope:
        async with (pipeline(forever) | probes[0] | probes[1]).stream() as items:
            async for x in items:
                if x == 5:
                    scope.cancel()
    assert scope.cancelled_caught
    assert all(pr.closed_in == pr.ran_in for pr in probes)


async def test_a_stage_ending_early_stops_the_stages_before_it() -> None:
    """take(3) over a source blocked forever: the pipeline still ends."""
    closed = anyio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            for i in range(5):
                yield i
            await anyio.sleep_forever()
            yield -1
        finally:
            closed.set()

    with anyio.fail_after(10):
        assert await (pipeline(source) | square | stages.take(3)).collect() == [0, 1, 4]
    assert closed.is_set()


async def test_generator_cleanup_that_awaits_sees_cancellation() -> None:
    """A stage's `finally` may await: it runs in its own task, under cancellation."""
    cleaned = []

    async def careful(items: AsyncIterator[int]) -> AsyncIterator[int]:
        try:
            async for x in items:
                yield x
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0)
            cleaned.append(True)

    async with (pipeline(itertools.count()) | careful).stream() as items:
        async for _ in items:
            break
    assert cleaned == [True]


async def test_pipeline_is_a_reusable_description() -> None:
    base = pipeline(range(5))
    p = base | square
    assert isinstance(p, Pipeline) and p is not base
    assert "square" in repr(p)
    assert await base.collect() == [0, 1, 2, 3, 4]
    assert await p.collect() == [0, 1, 4, 9, 16]
    assert await p.collect() == [0, 1, 4, 9, 16]

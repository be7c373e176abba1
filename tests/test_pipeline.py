"""The pipeline runner: sources, one task per stage, backpressure, errors, early exit, ctx.

Every test runs on asyncio, uvloop and trio, and the autouse ``no_leaks`` fixture
checks that no task started by the test is still alive when it ends. Racy states
are reached with ``anyio.wait_all_tasks_blocked()``, never with sleeps; nothing
asserts wall-clock time.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from asyncgo import (
    Canceled,
    Chan,
    DeadlineExceeded,
    Group,
    RecvChan,
    Selected,
    SendChan,
    background,
    current,
    recv,
    select,
    stages,
    with_cancel,
    with_timeout,
)
from asyncgo import time as gotime
from asyncgo._pipeline import DEFAULT_BUFFER, Pipeline, _Link, _shape, pipeline

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]


# -- leak check ----------------------------------------------------------------------


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


@pytest.mark.parametrize("stop", ["break", "take", "merged"])
async def test_sync_generator_source_is_closed_when_the_pipeline_stops(stop: str) -> None:
    # Its finally (closing a file, say) runs before the block exits, not whenever
    # the garbage collector gets to it.
    closed: list[int] = []

    def numbers() -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.append(1)

    if stop == "break":
        async with (pipeline(numbers()) | square).stream() as items:
            async for x in items:
                if x >= 100:
                    break
    elif stop == "take":
        assert await (pipeline(numbers()) | stages.take(5)).collect() == [0, 1, 2, 3, 4]
    else:
        p = pipeline(stages.merge(numbers(), range(3))) | stages.take(10)
        assert len(await p.collect()) == 10
    assert closed == [1]


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


class Counting:
    """An endless source, 0, 1, 2, ...; `produced` counts what it has yielded."""

    def __init__(self) -> None:
        self.produced = 0

    async def source(self) -> AsyncIterator[int]:
        for i in itertools.count():
            self.produced += 1
            yield i


def link_bound(size: int) -> int:
    """Most items one link may hold (see _pipeline's docstring)."""
    batch, cap = _shape(size)
    return size + 1 if batch == 1 else size


@pytest.mark.parametrize("buffer", [0, 3, 16, 64])
async def test_slow_sink_bounds_how_far_the_source_runs_ahead(buffer: int) -> None:
    counting = Counting()

    p = pipeline(counting.source, buffer=buffer) | square | triple | Probe()
    n_links, n_tasks = 4, 4
    consumed = 0
    async with p.stream() as items:
        async for _ in items:
            consumed += 1
            if consumed in (1, 50):
                await anyio.wait_all_tasks_blocked()
                ahead = counting.produced - consumed
                # Each link holds at most its buffer (+1 for a parked unbatched
                # sender); each stage task holds one item in hand.
                assert ahead <= n_links * link_bound(buffer) + n_tasks, (
                    counting.produced,
                    consumed,
                )
                assert ahead >= buffer  # ... and the buffers are used
            if consumed == 50:
                break


@pytest.mark.parametrize("n", [2, 4, 8])
async def test_ordered_map_behind_a_slow_item_holds_at_most_2n(n: int) -> None:
    """Item 0 is slow, so 1 .. 2n-1 finish ahead of it; once it is done they go on
    together. The results on their way downstream still count against the window:
    the workers used to take another 2n items while they waited for room in the
    link (4n + 2 ahead of the consumer, against the 2n + one list documented)."""
    counting = Counting()
    gate = anyio.Event()

    async def f(x: int) -> int:
        if x == 0:
            await gate.wait()
        await anyio.sleep(0)
        return x

    buffer = 1
    p = pipeline(counting.source, buffer=buffer) | stages.map(f, workers=n)
    async with p.stream() as items:
        await anyio.wait_all_tasks_blocked()
        gate.set()
        await anyio.wait_all_tasks_blocked()
        ahead = counting.produced  # the consumer has read nothing
        # docs/pipelines.md: the buffers (2 links), one item in the hands of each
        # stage (and the consumer's side), map: 2n items plus one list of its input
        assert ahead <= 2 * link_bound(buffer) + 3 + 2 * n + 1, ahead
        assert [await items.__anext__() for _ in range(ahead)] == list(range(ahead))


class CleanupError(Exception):
    pass


async def fails_on_cleanup(items: AsyncIterator[int]) -> AsyncIterator[int]:
    try:
        async for x in items:
            yield x
    finally:
        raise CleanupError("cleanup failed")  # noqa: B012 - the point of the test


async def job_fails_on_cleanup(x: int) -> int:
    try:
        await anyio.sleep(0 if x < 3 else 3600)
        return x
    finally:
        if x >= 3:
            raise CleanupError("cleanup failed")  # noqa: B012


@pytest.mark.parametrize("where", ["stage", "map-worker"])
async def test_stages_cut_off_by_take_drop_their_cleanup_errors(where: str) -> None:
    """The stages before a finished take(n) are cancelled (no reader any more) and the
    stages after finish normally (docs/pipelines.md): an error raised while the cut-off
    ones unwind is dropped, as when the whole pipeline stops. It used to fail the
    pipeline, and the items taken were thrown away on their way."""
    if where == "stage":
        p = pipeline(itertools.count()) | fails_on_cleanup | stages.take(3) | ident_slowly
    else:
        p = (
            pipeline(itertools.count())
            | stages.map(job_fails_on_cleanup, workers=4, ordered=False)
            | stages.take(3)
            | ident_slowly
        )
    async with p.stream() as items:
        assert sorted([x async for x in items]) == [0, 1, 2]


async def fails_on_cleanup_once_stopped(items: AsyncIterator[int]) -> AsyncIterator[int]:
    try:
        async for x in items:
            yield x
            await anyio.sleep_forever()  # waits on something slow: only a stop ends it
    finally:
        raise CleanupError("cleanup failed once interrupted")  # noqa: B012


async def test_a_cleanup_error_raised_because_the_ctx_ended_is_dropped() -> None:
    """A stage's ``finally`` that fails because the run's ctx ended (and cancelled it)
    fails while the pipeline stops: dropped (docs/pipelines.md), ``ctx.err()`` comes
    out. The CleanupError used to replace it (found by a fuzzer)."""
    ctx, cancel = with_cancel(background())
    seen: list[int] = []
    with pytest.raises(Canceled) as caught:
        async with (pipeline([1, 2, 3]) | fails_on_cleanup_once_stopped).stream(ctx) as items:
            async for x in items:
                seen.append(x)
                await anyio.wait_all_tasks_blocked()  # the stage is in its sleep
                cancel()
    assert caught.value is ctx.err()
    assert seen == [1]
    with with_timeout(background(), 0.05) as ctx, pytest.raises(DeadlineExceeded) as late:
        await (pipeline([1, 2, 3]) | fails_on_cleanup_once_stopped).collect(ctx)
    assert late.value is ctx.err()


async def test_a_cleanup_error_raised_because_an_outer_scope_was_cancelled_is_dropped() -> None:
    """The same when a scope around the whole stream is cancelled: the cancellation
    propagates to that scope, which catches it; the CleanupError used to come out
    instead and the cancellation was lost."""
    seen: list[int] = []
    with anyio.CancelScope() as scope:
        async with (pipeline([1, 2, 3]) | fails_on_cleanup_once_stopped).stream() as items:
            async for x in items:
                seen.append(x)
                scope.cancel()
                with anyio.CancelScope(shield=True):  # the stages unwind meanwhile
                    await anyio.wait_all_tasks_blocked()
    assert scope.cancelled_caught
    assert seen == [1]


async def test_a_stage_error_racing_an_outer_cancel_is_not_dropped() -> None:
    """Only errors raised *because of* the stop are dropped: a stage that fails on its
    own (a timeout of its own, whose TimeoutError carries a cancellation as context)
    still fails the pipeline."""

    async def times_out(x: int) -> int:
        with anyio.fail_after(0):
            await anyio.sleep_forever()
        return x

    with pytest.raises(TimeoutError):
        await (pipeline([1]) | stages.map(times_out)).collect()
    with pytest.raises(TimeoutError):
        await (pipeline([1]) | stages.map(times_out, workers=2)).collect()


async def test_an_error_after_take_still_fails_the_pipeline() -> None:
    """Only the stages cut off are let off: one after take(n) raising is an error."""

    async def boom_at_end(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            yield x
        raise CleanupError("downstream")

    p = pipeline(itertools.count()) | fails_on_cleanup | stages.take(3) | boom_at_end
    with pytest.raises(CleanupError, match="downstream"):
        await p.collect()


async def ident_slowly(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        await anyio.sleep(0)
        yield x


async def job_slowly(x: int) -> int:
    await anyio.sleep(0)
    return x


@pytest.mark.parametrize("n", [3, 16, 100])
@pytest.mark.parametrize("how", ["map-unordered", "map-ordered", "fan_out", "merge"])
async def test_tasks_sharing_an_output_link_do_not_add_a_list_each(how: str, n: int) -> None:
    """Several tasks writing to one link (a map's workers, fan_out's copies, merge's
    sources) wait for each other's send instead of each holding a list of its own:
    the bound of docs/pipelines.md (Bounded links) holds however many they are."""
    buffer = 256
    counting = Counting()

    batch = _shape(buffer)[0]
    if how == "merge":
        p = pipeline(counting.source, buffer=buffer) | stages.merge(
            *(counting.source for _ in range(n - 1))
        )
        # two links, one list in the forwarder's hands (from the first link), one
        # item in each source's
        bound = 2 * buffer + batch + n
    else:
        stage = {
            "map-unordered": stages.map(job_slowly, workers=n, ordered=False),
            "map-ordered": stages.map(job_slowly, workers=n),
            "fan_out": stages.fan_out(n, ident_slowly),
        }[how]
        p = pipeline(counting.source, buffer=buffer) | stage
        # two links, one item in the source's hands, 2 * n in the workers' (or the
        # copies') and one list taken from the input
        bound = 2 * buffer + 1 + 2 * n + batch
    with anyio.fail_after(30):  # a hang guard
        async with p.stream() as items:
            async for _ in items:
                for _ in range(5):  # stall: let everything upstream fill up
                    await anyio.wait_all_tasks_blocked()
                    await anyio.sleep(0)
                break
    assert buffer <= counting.produced - 1 <= bound, (counting.produced - 1, bound)


@pytest.mark.parametrize("buffer", [0, 1, 16])
async def test_merge_keeps_each_sources_order_on_any_link(buffer: int) -> None:
    """Items from one source keep their order, even on an unbuffered link, where the
    consumer could otherwise take pending items added while a send is waiting."""

    async def numbered(tag: int) -> AsyncIterator[tuple[int, int]]:
        for i in range(200):
            yield tag, i
            if i % 7 == tag:
                await anyio.sleep(0)

    def source(tag: int) -> Any:
        return lambda: numbered(tag)

    p = pipeline(source(0), buffer=buffer) | stages.merge(*(source(t) for t in (1, 2, 3)))
    got = await p.collect()
    for tag in range(4):
        assert [i for t, i in got if t == tag] == list(range(200))


async def test_shared_link_producer_cancelled_while_waiting_or_sending_strands_nobody() -> None:
    """Producers sharing a link take turns; cancelling the one sending (its list goes
    back to the front of pending) or one waiting leaves the others going and loses
    and reorders nothing."""
    link = _Link(16)  # lists of 4, 2 of them in the channel
    link.share()
    batch = link.batch
    scopes = [anyio.CancelScope() for _ in range(3)]

    async def produce(k: int) -> None:
        with scopes[k]:
            for i in range(100):
                await link.put((k, i))

    got: list[Any] = []
    waiting = link.waiting
    assert waiting is not None
    release = anyio.Event()

    async def producers() -> None:
        async with anyio.create_task_group() as tg:
            for k in range(3):
                tg.start_soon(produce, k)
            await anyio.wait_all_tasks_blocked()
            # Two lists in the channel, one producer waiting to send a third, each
            # other one with one item in pending, waiting its turn.
            assert link.sending and len(link.chan) == 2
            assert len(link.pending) == 2 and waiting.parked == 2
            scopes[0].cancel()  # the sender (producer 0 started first: it filled a list)
            await anyio.wait_all_tasks_blocked()
            assert link.sending and waiting.parked == 1  # another one took over
            scopes[2].cancel()  # the one waiting
            await anyio.wait_all_tasks_blocked()
            release.set()
        await link.flush()
        link.close()

    with anyio.fail_after(10):  # a hang guard
        async with anyio.create_task_group() as tg:
            tg.start_soon(producers)
            await release.wait()
            while (b := await link.next_batch()) is not None:
                assert len(b) <= batch
                got.extend(b)
    for k in range(3):
        mine = [i for t, i in got if t == k]
        assert mine == list(range(len(mine)))  # in order, no gap
    assert len([1 for t, _ in got if t == 1]) == 100  # the survivor finished


async def test_buffer_stage_sets_one_link() -> None:
    counting = Counting()

    p = pipeline(counting.source, buffer=0) | stages.buffer(100) | square
    async with p.stream() as items:
        async for _ in items:
            await anyio.wait_all_tasks_blocked()
            # link 0 holds up to 100, the unbuffered link 1 at most one parked item
            assert 90 <= counting.produced - 1 <= 100 + 1 + 3
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


class Fatal(BaseException):
    """Not an Exception, not cancellation: like KeyboardInterrupt or SystemExit."""


def _raise(exc: BaseException) -> Any:
    raise exc


async def _fatal_stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        if x == 3:
            raise Fatal("stage")
        yield x


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: pipeline(range(10)) | _fatal_stage, id="stage"),
        pytest.param(
            lambda: pipeline(range(10)) | stages.map(lambda x: _raise(Fatal()), workers=2),
            id="map-workers",
        ),
        pytest.param(
            lambda: pipeline(stages.merge(range(5), pipeline(range(10)) | _fatal_stage)),
            id="merge-source",
        ),
        pytest.param(
            lambda: pipeline(range(10)) | stages.fan_out(2, _fatal_stage), id="fan-out-copy"
        ),
        pytest.param(lambda: pipeline(range(10)) | stages.tee(_fatal_stage), id="tee-sink"),
    ],
)
async def test_base_exception_in_a_stage_is_raised_as_itself(make: Any) -> None:
    # Like Group: a BaseException that is not cancellation comes out as itself,
    # never in a BaseExceptionGroup, whether the consumer iterates or collects.
    with pytest.raises(Fatal) as info:
        await make().collect()
    assert type(info.value) is Fatal
    with pytest.raises(Fatal):
        async with make().stream() as items:
            async for _ in items:
                pass


async def test_keyboard_interrupt_in_a_stage_is_raised_as_itself() -> None:
    async def interrupted(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            yield x
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await (pipeline(range(10)) | interrupted).collect()


async def test_base_exception_from_a_stage_wins_over_the_consumers_error() -> None:
    # The consumer fails; tearing the stage down raises a BaseException in its
    # finally: that one comes out (it cannot be dropped), as in a task group.
    async def stubborn(items: AsyncIterator[int]) -> AsyncIterator[int]:
        try:
            async for x in items:
                yield x
        finally:
            raise Fatal("teardown")

    with pytest.raises(Fatal, match="teardown"):
        async with (pipeline(itertools.count()) | stubborn).stream() as items:
            async for _ in items:
                raise Boom


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


@pytest.mark.parametrize("error", [Boom, Fatal])
async def test_a_stage_error_not_yet_seen_wins_over_the_consumers_cancellation(
    error: type[BaseException],
) -> None:
    """A stage failed while the consumer was not reading; then the consumer's scope
    is cancelled: the error comes out of the block (errors win over cancellation,
    as in `Group` and a task group), not the cancellation, which dropped it."""
    boom = error("boom")
    raised = anyio.Event()

    async def source() -> AsyncIterator[int]:
        yield 1
        raised.set()
        raise boom

    with pytest.raises(error) as info, anyio.CancelScope() as outer:
        async with (pipeline(source) | stages.map(lambda x: x)).stream():
            await raised.wait()
            await anyio.wait_all_tasks_blocked()
            outer.cancel()
            await anyio.sleep_forever()
    assert info.value is boom
    assert not outer.cancelled_caught


async def test_a_fatal_stage_error_raised_as_the_scope_is_cancelled_is_not_dropped() -> None:
    with pytest.raises(Fatal, match="now"), anyio.CancelScope() as outer:

        async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in items:
                outer.cancel()
                raise Fatal("now")
                yield x

        await (pipeline([1, 2]) | stage).collect()


def _fatal_on_teardown(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async def stage() -> AsyncIterator[int]:
        try:
            async for x in items:
                yield x
        finally:
            raise Fatal("teardown")  # e.g. a KeyboardInterrupt during cleanup

    return stage()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: pipeline(itertools.count()) | _fatal_on_teardown, id="stage"),
        pytest.param(
            lambda: (
                pipeline(pipeline(itertools.count()) | _fatal_on_teardown) | stages.map(lambda x: x)
            ),
            id="pipeline-source",
        ),
        pytest.param(
            lambda: pipeline([]) | stages.merge(pipeline(itertools.count()) | _fatal_on_teardown),
            id="merge-source",
        ),
    ],
)
async def test_a_fatal_error_in_a_nested_pipelines_teardown_is_not_dropped(make: Any) -> None:
    """A pipeline used as a source (or merged) is stopped by the outer one's
    cancellation: a BaseException its stage raises then comes out, as it does from
    a stage of the outer pipeline -- also when it reaches the inner stream's consumer
    while that task is being cancelled (trio's task group exit, a checkpoint, used to
    replace it with the cancellation, in about one run in eight: hence the rounds)."""
    for _ in range(30):
        with pytest.raises(Fatal, match="teardown"):
            async with make().stream() as items:
                async for x in items:
                    if x == 3:
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


async def _stage_fails_then_consumer_raises(
    stage_error: BaseException, consumer_error: BaseException
) -> BaseException:
    """A stage raises *stage_error* after its first item, which the consumer has read
    (and then not reading on); then the consumer raises *consumer_error*: what
    comes out of the block."""
    got, raised = anyio.Event(), anyio.Event()

    async def source() -> AsyncIterator[int]:
        yield 1
        await got.wait()
        raised.set()
        raise stage_error

    try:
        async with (pipeline(source) | stages.map(lambda x: x)).stream() as items:
            assert await items.__anext__() == 1
            got.set()
            await raised.wait()
            await anyio.wait_all_tasks_blocked()  # the stage's error has reached the run
            raise consumer_error
    except BaseException as exc:
        return exc
    raise AssertionError("the block raised nothing")


async def test_a_stage_error_not_read_is_named_on_the_consumers_own_error() -> None:
    """The consumer's exception propagates as itself; a stage's error it never read
    is not dropped without a trace: a note names it (black-box review)."""
    mine = KeyError("consumer")
    assert await _stage_fails_then_consumer_raises(Boom("the root cause"), mine) is mine
    assert mine.__notes__ == [
        "(asyncgo: a stage of this pipeline also failed, with Boom: the root cause; "
        "the consumer's error propagates)"
    ]

    async def source() -> AsyncIterator[int]:
        yield 1
        raise Boom("read")

    # Read, the stage's error comes out instead, and no note is added anywhere.
    with pytest.raises(Boom) as info:
        async with (pipeline(source) | stages.map(lambda x: x)).stream() as items:
            async for _ in items:
                pass
    assert not hasattr(info.value, "__notes__")


async def test_no_note_for_the_consumers_own_error_object_or_a_bad_str() -> None:
    """The note is not added when the stage's error is the very object the consumer
    raises (e.g. both got it from one singleflight call), and an error whose str()
    fails is named without it: the consumer's exception still comes out (review)."""
    shared = Boom("shared")
    assert await _stage_fails_then_consumer_raises(shared, shared) is shared
    assert not hasattr(shared, "__notes__")

    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    mine = KeyError("consumer")
    assert await _stage_fails_then_consumer_raises(Weird(), mine) is mine
    assert mine.__notes__ == [
        "(asyncgo: a stage of this pipeline also failed, with "
        "test_no_note_for_the_consumers_own_error_object_or_a_bad_str.<locals>.Weird: "
        "<exception str() failed>; the consumer's error propagates)"
    ]


async def test_no_note_on_a_contexts_shared_error_raised_by_the_consumer() -> None:
    """A consumer that raises ``ctx.err()`` raises one object every task of that
    context raises: a note there would follow it everywhere (review, 2026-12-07)."""
    ctx, cancel = with_cancel(background())
    cancel()
    err = ctx.err()
    assert err is not None
    assert await _stage_fails_then_consumer_raises(Boom("stage"), err) is err
    assert not getattr(err, "__notes__", None)


async def test_the_note_is_not_added_twice_to_a_shared_consumer_error() -> None:
    """The consumer may raise one object again and again (a once_value's error):
    the note names the stage's error once, not once per pipeline (review)."""
    shared = KeyError("shared")
    for _ in range(3):
        assert await _stage_fails_then_consumer_raises(Boom("stage"), shared) is shared
    assert shared.__notes__ == [
        "(asyncgo: a stage of this pipeline also failed, with Boom: stage; "
        "the consumer's error propagates)"
    ]


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


@pytest.mark.parametrize("where", ["source", "consumer"])
async def test_enclosing_cancel_never_looks_like_a_complete_output(where: str) -> None:
    """Cancelled from a scope around the whole stream, collect() must not return
    the items it had so far as if they were everything."""
    got: list[int] | None = None
    with anyio.CancelScope() as scope:

        async def source() -> AsyncIterator[int]:
            for i in itertools.count():
                yield i
                if i == 50:
                    if where == "source":
                        scope.cancel()
                    await anyio.sleep_forever()

        async def consumer_cancels(items: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in items:
                if x == 100 and where == "consumer":
                    scope.cancel()
                yield x

        got = await (pipeline(source) | square | consumer_cancels).collect()
    assert scope.cancelled_caught and got is None


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


# -- ctx -----------------------------------------------------------------------------


async def test_ctx_cancel_ends_the_stream_with_canceled() -> None:
    ctx, cancel = with_cancel(background())
    probes = [Probe(), Probe()]
    got = 0
    with pytest.raises(Canceled) as info:
        async with (pipeline(itertools.count()) | probes[0] | probes[1]).stream(ctx) as items:
            async for _ in items:
                got += 1
                if got == 10:
                    cancel()
    assert info.value is ctx.err()
    assert all(pr.closed_in == pr.ran_in for pr in probes)


async def test_ctx_cancelled_after_the_consumer_stopped_reading_is_not_raised_on_exit() -> None:
    # Documented choice (docs/pipelines.md): like a break, the ctx's end is the
    # caller's to see; a stage's own error would be raised here instead.
    ctx, cancel = with_cancel(background())
    async with (pipeline(itertools.count()) | square).stream(ctx) as items:
        assert await anext(items) == 0
        cancel()
        await anyio.wait_all_tasks_blocked()
    assert isinstance(ctx.err(), Canceled)


async def test_ctx_cancelled_while_the_consumer_waits() -> None:
    ctx, cancel = with_cancel(background())

    async def stuck() -> AsyncIterator[int]:
        yield 1
        await anyio.sleep_forever()
        yield 2

    async def cancel_when_blocked() -> None:
        await anyio.wait_all_tasks_blocked()
        cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_when_blocked)
        got = []
        with pytest.raises(Canceled):
            async with (pipeline(stuck) | square).stream(ctx) as items:
                async for x in items:
                    got.append(x)
        assert got == [1]


async def test_ctx_deadline_ends_it_with_deadline_exceeded() -> None:
    async def slow() -> AsyncIterator[int]:
        for i in itertools.count():
            yield i
            await anyio.sleep(0.01)

    with with_timeout(background(), 0.05) as ctx:
        with pytest.raises(DeadlineExceeded):
            await (pipeline(slow) | square).collect(ctx)
        with pytest.raises(DeadlineExceeded):
            await (pipeline(slow) | square).run(ctx)


async def test_ctx_already_done_fails_at_once() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    ran: list[int] = []
    with pytest.raises(Canceled):
        await (pipeline(range(3)) | stages.tap(ran.append)).collect(ctx)
    assert ran == []


async def test_ctx_cancel_from_inside_a_stage_is_not_a_stage_error() -> None:
    ctx, cancel = with_cancel(background())

    async def cancelling(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 5:
                cancel()
                await anyio.sleep(0)  # the ctx's scope cancels us here
            yield x

    with pytest.raises(Canceled) as info:
        await (pipeline(itertools.count()) | cancelling).collect(ctx)
    assert info.value is ctx.err()


async def test_stages_and_their_tasks_see_the_ctx_as_current() -> None:
    ctx, cancel = with_cancel(background())
    seen: set[object] = set()

    async def look(x: int) -> int:
        seen.add(current())
        return x

    async def stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            seen.add(current())
            yield x

    p = pipeline(range(20)) | stage | stages.map(look, workers=4) | stages.fan_out(2, stage)
    assert sorted(await p.collect(ctx)) == list(range(20))
    assert seen == {ctx}
    cancel()


async def test_ctx_finished_pipeline_is_not_an_error() -> None:
    with with_cancel(background()) as ctx:
        assert await (pipeline(range(5)) | square).collect(ctx) == [0, 1, 4, 9, 16]


async def test_rate_limit_gets_the_ctx() -> None:
    class Limiter:
        def __init__(self) -> None:
            self.ctxs: list[object] = []

        async def wait(self, n: int = 1, ctx: object = None) -> None:
            self.ctxs.append(ctx)

    lim = Limiter()
    with with_cancel(background()) as ctx:
        await (pipeline(range(3)) | stages.rate_limit(lim)).run(ctx)
    assert lim.ctxs == [ctx, ctx, ctx]


class TestCtxOnVirtualClock:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    async def test_deadline_stops_the_pipeline_exactly_on_time(self) -> None:
        async def ticks() -> AsyncIterator[int]:
            for i in itertools.count():
                yield i
                await anyio.sleep(1.0)

        t0 = anyio.current_time()
        got = []
        with with_timeout(background(), 5.5) as ctx:
            with pytest.raises(DeadlineExceeded):
                async with (pipeline(ticks) | square).stream(ctx) as items:
                    async for x in items:
                        got.append(x)
        assert got == [0, 1, 4, 9, 16, 25]
        assert anyio.current_time() - t0 == pytest.approx(5.5)


# -- the seed examples (examples/pipeline_*.py) ----------------------------------------

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("pipeline_*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
async def test_seed_example_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncgo

    if not hasattr(asyncgo, "pipeline"):  # until asyncgo/__init__.py exports it
        monkeypatch.setattr(asyncgo, "pipeline", pipeline, raising=False)
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look it up
    spec.loader.exec_module(module)
    with anyio.fail_after(30):
        await module.main(quick=True)


# -- randomized: shapes x early exits x failures ----------------------------------------


@pytest.mark.parametrize("seed", range(12))
async def test_random_pipelines_deliver_fail_and_stop_cleanly(seed: int) -> None:
    """Random chains of stages and buffers; each run either completes with the right
    items, fails with the injected error, or is left early -- and every generator
    the pipeline iterated is closed in the task that ran it."""
    import random

    rng = random.Random(seed)
    n = rng.choice([0, 1, 7, 100, 1000])
    probes: list[Probe] = []

    async def inc(x: int) -> int:
        if rng.random() < 0.3:
            await anyio.sleep(0)
        return x + 1

    def add_stage(p: Pipeline[int]) -> tuple[Pipeline[int], Any]:
        kind = rng.randrange(7)
        if kind == 6:
            return p | Relay(), lambda xs: xs
        if kind == 0:
            probe = Probe()
            probes.append(probe)
            return p | probe, lambda xs: xs
        if kind == 1:
            w = rng.choice([1, 2, 5])
            return p | stages.map(inc, workers=w), lambda xs: [x + 1 for x in xs]
        if kind == 2:
            return p | stages.filter(lambda x: x % 3 != 0), lambda xs: [x for x in xs if x % 3]
        if kind == 3:
            return p | stages.buffer(rng.choice([0, 1, 9, 300])), lambda xs: xs
        if kind == 4:
            return p | stages.tap(lambda x: None), lambda xs: xs
        return p | stages.flat_map(lambda x: [x, x]), lambda xs: [y for x in xs for y in (x, x)]

    p: Pipeline[int] = pipeline(range(n), buffer=rng.choice([0, 2, 16, 256]))
    model: list[int] = list(range(n))
    for _ in range(rng.randrange(1, 5)):
        p, f = add_stage(p)
        model = f(model)

    mode = rng.choice(["complete", "break", "fail"])
    if mode == "fail":
        bad_at = rng.randrange(max(n, 1))

        async def failing(items: AsyncIterator[int]) -> AsyncIterator[int]:
            i = 0
            async for x in items:
                if i == bad_at:
                    raise Boom(seed)
                i += 1
                yield x

        p = p | failing
    got: list[int] = []
    stop_at = rng.randrange(len(model) + 1)
    with anyio.fail_after(20):
        try:
            async with p.stream() as items:
                async for x in items:
                    if mode == "break" and len(got) == stop_at:
                        break
                    got.append(x)
        except Boom:
            assert mode == "fail" and len(got) <= len(model)
        else:
            assert mode != "fail" or n == 0 or len(model) <= bad_at
    if mode == "complete" or (mode == "fail" and len(got) == len(model)):
        assert got == model
    else:
        assert got == model[: len(got)]
    assert all(pr.closed_in == pr.ran_in for pr in probes if pr.ran_in is not None)


# -- TaskStage: the public protocol of stages that start tasks -----------------------


class Relay(stages.TaskStage[Any, Any]):
    """Passes every item on from a task of its own (order kept)."""

    def __init__(self) -> None:
        self.ran_in: int | None = None
        self.current: object = None

    async def run(self, inp: RecvChan[Any], out: SendChan[Any]) -> None:
        self.ran_in = task_id()
        self.current = current()

        async def forward() -> None:
            async for x in inp:
                await out.send(x)

        async with Group() as g:
            g.go_nowait(forward)


class PerKey(stages.TaskStage[int, tuple[int, int]]):
    """Items of one key one at a time, in order; different keys at once (a task per key)."""

    def __init__(self, key: Any, buffer: int = 4) -> None:
        self.key = key
        self.buffer = buffer
        self.running: dict[object, int] = {}
        self.peak_keys = 0

    async def run(self, inp: RecvChan[int], out: SendChan[tuple[int, int]]) -> None:
        queues: dict[object, Chan[int]] = {}

        async def worker(k: object, q: Chan[int]) -> None:
            async for x in q:
                self.running[k] = self.running.get(k, 0) + 1
                assert self.running[k] == 1  # never two items of one key at once
                self.peak_keys = max(self.peak_keys, len([v for v in self.running.values() if v]))
                await anyio.sleep(0)
                self.running[k] -= 1
                await out.send((k, x))  # type: ignore[arg-type]

        async with Group() as g:
            async for x in inp:
                k = self.key(x)
                q = queues.get(k)
                if q is None:
                    q = queues[k] = Chan[int](self.buffer)
                    g.go_nowait(worker, k, q)
                await q.send(x)
            for q in queues.values():
                q.close()


async def test_task_stage_runs_tasks_of_its_own() -> None:
    stage = PerKey(lambda x: x % 5)
    got = await (pipeline(range(1000)) | stage).collect()
    assert sorted(x for _, x in got) == list(range(1000))
    for k in range(5):
        assert [x for key, x in got if key == k] == list(range(k, 1000, 5))  # per-key order
    assert stage.peak_keys > 1  # keys did run at once


@pytest.mark.parametrize("buffer", [0, 1, 7, DEFAULT_BUFFER])
async def test_task_stage_in_a_chain_keeps_order_and_sees_the_ctx(buffer: int) -> None:
    first, second = Relay(), Relay()
    ctx, cancel = with_cancel(background())
    p = pipeline(range(500), buffer=buffer) | first | square | second
    assert await p.collect(ctx) == [x * x for x in range(500)]
    assert first.ran_in is not None and first.ran_in != second.ran_in
    assert first.current is ctx and second.current is ctx
    cancel()


async def test_task_stage_with_select_on_its_input_and_a_timer() -> None:
    class Debounce(stages.TaskStage[str, str]):
        async def run(self, inp: RecvChan[str], out: SendChan[str]) -> None:
            last: str | None = None
            timer: RecvChan[float] | None = None
            while True:
                match await select(recv(inp), recv(timer)):
                    case Selected(0, item, True):
                        last, timer = item, gotime.after(60)
                    case Selected(0, _, False):
                        if last is not None:
                            await out.send(last)
                        return
                    case _:  # pragma: no cover - 60 s never pass here
                        raise AssertionError("the timer fired")

    typed = ["h", "he", "hel", "hello"]
    assert await (pipeline(typed) | Debounce()).collect() == ["hello"]


async def test_task_stage_returning_early_stops_the_stages_before() -> None:
    class FirstThree(stages.TaskStage[int, int]):
        async def run(self, inp: RecvChan[int], out: SendChan[int]) -> None:
            for _ in range(3):
                await out.send(await inp.recv())

    probe = Probe()
    with anyio.fail_after(10):
        got = await (pipeline(itertools.count()) | probe | FirstThree() | square).collect()
    assert got == [0, 1, 4]
    assert probe.closed_in == probe.ran_in  # the endless stage before was stopped and closed


async def test_task_stage_may_close_its_output_itself() -> None:
    class CloseEarly(stages.TaskStage[int, int]):
        async def run(self, inp: RecvChan[int], out: SendChan[int]) -> None:
            async for x in inp:
                await out.send(x)
            out.close()

    assert await (pipeline(range(10)) | CloseEarly()).collect() == list(range(10))


@pytest.mark.parametrize("where", ["run", "task"])
async def test_task_stage_error_is_raised_as_itself(where: str) -> None:
    err = Boom(where)

    class Failing(stages.TaskStage[int, int]):
        async def run(self, inp: RecvChan[int], out: SendChan[int]) -> None:
            async def fail_at_5() -> None:
                async for x in inp:
                    if x == 5:
                        raise err
                    await out.send(x)

            if where == "run":
                await fail_at_5()
            else:
                async with Group() as g:
                    g.go_nowait(fail_at_5)

    with pytest.raises(Boom) as info:
        await (pipeline(itertools.count()) | Failing() | square).collect()
    assert info.value is err


async def test_task_stage_stops_on_break_and_on_ctx_cancel() -> None:
    stopped: list[str] = []

    class Forever(stages.TaskStage[int, int]):
        async def run(self, inp: RecvChan[int], out: SendChan[int]) -> None:
            async def pulse() -> None:
                try:
                    await anyio.sleep_forever()
                finally:
                    stopped.append("task")

            try:
                async with Group() as g:
                    g.go_nowait(pulse)
                    async for x in inp:
                        await out.send(x)
            finally:
                stopped.append("run")

    with anyio.fail_after(10):
        async with (pipeline(itertools.count()) | Forever()).stream() as items:
            async for x in items:
                if x == 100:
                    break
    assert sorted(stopped) == ["run", "task"]

    stopped.clear()
    ctx, cancel = with_cancel(background())
    with anyio.fail_after(10), pytest.raises(Canceled) as info:
        async with (pipeline(itertools.count()) | Forever()).stream(ctx) as items:
            async for x in items:
                if x == 100:
                    cancel()
    assert info.value is ctx.err()
    assert sorted(stopped) == ["run", "task"]


async def test_task_stage_backpressure_is_bounded() -> None:
    counting = Counting()

    buffer = 16
    async with (pipeline(counting.source, buffer=buffer) | Relay()).stream() as items:
        async for _ in items:
            await anyio.wait_all_tasks_blocked()
            # two links of 16, the stage's two channels (a batch of 4 each), one item
            # in each task's hands (the counting.source, two pumps, the relay task)
            assert counting.produced <= 2 * buffer + 2 * _shape(buffer)[0] + 4, counting.produced
            break


async def test_task_stage_as_a_source() -> None:
    class Countdown(stages.TaskStage[None, int]):
        async def run(self, inp: RecvChan[None], out: SendChan[int]) -> None:
            assert (await inp.recv_ok())[1] is False  # nothing comes in
            async with Group() as g:
                for k in range(3):
                    g.go_nowait(out.send, k)

    assert sorted(await pipeline(Countdown()).collect()) == [0, 1, 2]
    assert sorted(await (pipeline(stages.merge(Countdown(), [7]))).collect()) == [0, 1, 2, 7]


async def test_task_stage_in_fan_out_and_tee() -> None:
    seen = Chan[int](1000)
    got = await (pipeline(range(300)) | stages.fan_out(3, Relay()) | stages.tee(seen)).collect()
    assert sorted(got) == list(range(300))
    assert sorted([x async for x in seen]) == list(range(300))
    got = await (pipeline(range(300)) | stages.tee(Relay())).collect()
    assert got == list(range(300))


async def test_task_stage_misuse_is_named() -> None:
    class NoRun(stages.TaskStage[int, int]):
        pass

    with pytest.raises(TypeError, match="NoRun subclasses stages.TaskStage but does not"):
        _ = pipeline(range(3)) | NoRun()
    with pytest.raises(TypeError, match="NoRun subclasses stages.TaskStage"):
        pipeline(NoRun())
    with pytest.raises(TypeError, match="runs only inside a pipeline"):
        Relay()(async_gen(3))


# -- map: workers start as the input needs them --------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_starts_no_more_workers_than_items(ordered: bool) -> None:
    tasks: set[int] = set()

    async def job(x: int) -> int:
        tasks.add(task_id())
        await anyio.sleep(0)
        return x

    p = pipeline(range(3)) | stages.map(job, workers=100, ordered=ordered)
    assert sorted(await p.collect()) == [0, 1, 2]
    assert 1 <= len(tasks) <= 3  # (and at most one more, waiting for the input's end)


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_reaches_every_worker_and_no_more(ordered: bool) -> None:
    workers = 50
    inflight = peak = 0
    gate = anyio.Event()

    async def job(x: int) -> int:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        if inflight == workers:
            gate.set()
        await gate.wait()  # hangs (and fails) unless `workers` calls run at once
        inflight -= 1
        return x

    with anyio.fail_after(10):
        p = pipeline(range(1000), buffer=8) | stages.map(job, workers=workers, ordered=ordered)
        got = await p.collect()
    assert (got if ordered else sorted(got)) == list(range(1000))
    assert peak == workers


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_workers_see_the_ctx_and_stop_with_it(ordered: bool) -> None:
    ctx, cancel = with_cancel(background())
    started = 0

    async def job(x: int) -> int:
        nonlocal started
        assert current() is ctx
        started += 1
        if started == 20:
            cancel()
        await anyio.sleep_forever()
        raise AssertionError("not reached")  # pragma: no cover

    with anyio.fail_after(10), pytest.raises(Canceled) as info:
        await (pipeline(range(1000)) | stages.map(job, workers=20, ordered=ordered)).collect(ctx)
    assert info.value is ctx.err()


def _inc(x: int) -> int:
    return x + 1


async def test_nested_pipeline_cut_short_closes_its_output_generator() -> None:
    """A pipeline used as the source of another, cut short downstream (take): the
    inner pipeline's output generator is closed by the runner, not left to the
    garbage collector (which trio reports with a ResourceWarning)."""
    import gc
    import warnings

    big = list(range(10_000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = await (pipeline(pipeline(big) | stages.map(_inc)) | stages.take(2)).collect()
        gc.collect()
        await anyio.sleep(0)
        gc.collect()
    assert out == [1, 2]
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- the stream's iterator: cancellation-safe (Principle 2) --------------------------


async def test_cancelled_next_on_the_stream_takes_no_item() -> None:
    """A cancelled wait for the next item takes none; iteration then goes on as before."""
    gate = anyio.Event()

    async def gated() -> AsyncIterator[int]:
        for i in range(200):
            if i % 50 == 0:  # stall at 0, 50, 100, 150: the consumer waits empty-handed
                await gate.wait()
            yield i

    got: list[int] = []
    with anyio.fail_after(10):
        async with (pipeline(gated) | stages.map(lambda x: x)).stream() as items:
            it = aiter(items)
            assert it is items
            while len(got) < 200:
                with anyio.CancelScope() as scope:
                    scope.cancel()  # cancelled at its first await, whatever it is
                    got.append(await anext(it))
                if len(got) % 50 == 0:  # the source is stalled at the gate
                    with anyio.move_on_after(0.01):  # cancelled while parked
                        got.append(await anext(it))
                    gate.set()
                    gate = anyio.Event()
                got.append(await anext(it))
            with pytest.raises(StopAsyncIteration):
                await anext(it)
            with pytest.raises(StopAsyncIteration):  # ended: stays ended
                await anext(it)
    assert got == list(range(200))


async def test_stream_iterator_after_an_error_or_aclose() -> None:
    err = Boom("stage")

    async def fail_at_3(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 3:
                raise err
            yield x

    got: list[int] = []
    with pytest.raises(Boom) as info:
        async with (pipeline(range(10)) | fail_at_3).stream() as items:
            try:
                async for x in items:
                    got.append(x)
            finally:
                with pytest.raises(StopAsyncIteration):  # raised once, then ended
                    await anext(items)
    assert info.value is err and got == list(range(len(got))) and len(got) <= 3

    async with (pipeline(range(1000)) | stages.map(lambda x: x)).stream() as items:
        assert await anext(items) == 0
        await items.aclose()  # type: ignore[attr-defined]
        with pytest.raises(StopAsyncIteration):
            await anext(items)


async def _resize(x: int) -> int:
    return x


async def _upload(x: int) -> int:
    return x


async def test_stage_tasks_are_named_after_their_stage() -> None:
    """A task dump tells the stages apart: each task is named after what it runs.

    Every stage task was named ``asyncgo._pipeline._Stream._node`` and every map
    worker ``asyncgo.stages._Pool.work_ordered``, so the starved workers of two
    ``stages.map`` stages could not be told apart.
    """
    from asyncgo import Chan, debug

    gate = Chan[int]()

    async def source() -> AsyncIterator[int]:
        await gate.recv()
        yield 1

    p = pipeline(source) | stages.map(_resize, workers=2) | stages.map(_upload, workers=3)
    with debug.enabled():
        async with anyio.create_task_group() as tg:
            tg.start_soon(p.collect)
            await anyio.wait_all_tasks_blocked()
            names = sorted(t.name for t in debug.tasks())
            tg.cancel_scope.cancel()
    assert "pipeline source: test_stage_tasks_are_named_after_their_stage.<locals>.source" in names
    assert "pipeline stage 1: stages.map(_resize, workers=2)" in names
    assert "pipeline stage 2: stages.map(_upload, workers=3)" in names
    # Workers start as input arrives: each stage has at least one, named after it.
    assert "stages.map(_resize, workers=2) worker" in names
    assert "stages.map(_upload, workers=3) worker" in names


async def test_pipeline_repr_shows_a_long_source_by_its_first_items() -> None:
    p = pipeline(list(range(10**6))) | stages.map(abs, workers=2)
    assert repr(p) == "<Pipeline [0, 1, 2, 3, 4, 5, ...] | stages.map(abs, workers=2)>"


async def test_iterating_the_output_after_the_block_exited_raises() -> None:
    """An output that escaped its stream() block, unfinished, must not end silently.

    It used to end at once, the items it had not delivered lost without a word.
    """

    async def escape(p: Pipeline[int], read: int) -> Any:
        async with p.stream() as items:
            for _ in range(read):
                await items.__anext__()
            return items

    items = await escape(pipeline([1, 2, 3]), 1)
    with pytest.raises(RuntimeError, match="after its stream\\(\\) block exited"):
        await items.__anext__()
    # One that had run out, or that was closed, just ends.
    async with pipeline([1, 2]).stream() as done:
        assert [x async for x in done] == [1, 2]
    assert [x async for x in done] == []
    async with pipeline([1, 2]).stream() as closed:
        await closed.aclose()
    assert [x async for x in closed] == []


async def test_iterating_after_an_outer_scope_cut_the_stream_short_raises() -> None:
    """A scope around the block cancelled mid-stream: the output did not end, so a
    later ``__anext__`` raises RuntimeError too. It used to end silently, because the
    stages, killed, closed their links (found by a fuzzer)."""

    async def naturals() -> AsyncIterator[int]:
        for n in itertools.count():
            await anyio.sleep(0)
            yield n

    seen: list[int] = []
    with anyio.CancelScope() as scope:
        async with pipeline(naturals, buffer=0).stream() as items:
            async for x in items:
                seen.append(x)
                if len(seen) == 3:
                    scope.cancel()
    assert scope.cancelled_caught
    assert seen == [0, 1, 2]
    with pytest.raises(RuntimeError, match="after its stream\\(\\) block exited"):
        await items.__anext__()


async def _count_up() -> AsyncIterator[int]:
    i = 0
    while True:
        yield i
        i += 1
        await anyio.lowlevel.checkpoint()


async def _slow(x: int) -> int:
    await anyio.sleep(10)
    return x


async def _forever() -> AsyncIterator[int]:
    while True:
        await anyio.sleep(0.001)
        yield 1


def _ident(x: int) -> int:
    return x


_CONSUMERS = {
    "stream": lambda: pipeline(_count_up()) | square,
    "map_workers": lambda: pipeline(_count_up()) | stages.map(_slow, workers=3),
    "merge": lambda: pipeline(_count_up()) | stages.merge(_forever()),
    # A stage that cancels scopes of its own as it stops (a task group, a deadline).
    "tee_stage_sink": lambda: pipeline(_count_up()) | stages.tee(stages.map(_ident)),
    "batch_timeout": lambda: pipeline(_count_up()) | stages.batch(4, timeout=0.001),
}


@pytest.mark.parametrize("shape", sorted(_CONSUMERS))
@pytest.mark.parametrize("how", ["task_cancel", "timeout_and_task_cancel"])
async def test_a_native_cancel_of_the_consumer_is_not_swallowed(
    anyio_backend: tuple[str, dict[str, object]], shape: str, how: str
) -> None:
    """A native ``Task.cancel()`` of a task consuming a pipeline keeps its cancelling()
    count, so it is not swallowed: anyio moved the uncancel count of the stages' own
    cancelled scopes to the task group's scope, whose exit uncancelled the consumer
    (0 instead of 1), and an asyncio.timeout() that expired in the same step then
    turned the outside cancel into a TimeoutError (native-cancel review)."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() and asyncio.timeout() are asyncio's")
    import asyncio

    make = _CONSUMERS[shape]
    seen: dict[str, object] = {}
    holder: dict[str, asyncio.Timeout] = {}

    async def consume() -> None:
        async with make().stream() as items:
            seen = 0
            async for _ in items:
                seen += 1
                if seen > 50:
                    await asyncio.sleep(10)

    async def victim() -> None:
        me = asyncio.current_task()
        assert me is not None
        try:
            if how == "task_cancel":
                await consume()
            else:
                async with asyncio.timeout(None) as cm:
                    holder["cm"] = cm
                    await consume()
        except asyncio.CancelledError:
            seen["outcome"] = "CancelledError"
            seen["cancelling"] = me.cancelling()
            raise
        except TimeoutError:
            seen["outcome"] = "TimeoutError"
        else:
            seen["outcome"] = "returned"

    t = asyncio.ensure_future(victim())
    for _ in range(200):
        await asyncio.sleep(0)
        if "cm" in holder or how == "task_cancel":
            break
    await asyncio.sleep(0.02)  # the consumer is parked in its sleep or on the link
    if how == "timeout_and_task_cancel":
        holder["cm"].reschedule(asyncio.get_running_loop().time())  # expires now
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert seen == {"outcome": "CancelledError", "cancelling": 1}


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_native_cancel_at_a_random_moment_keeps_the_count(
    anyio_backend: tuple[str, dict[str, object]], seed: int
) -> None:
    """The same, with the cancel landing at random moments while a map stage runs: a
    stage task just woken was skipped by the group scope's first delivery, its own
    scope (cancelled by the stop) got to it first, and the consumer was uncancelled
    once too often (about half the runs; rev19)."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio's")
    import asyncio
    import random

    rnd = random.Random(seed)

    async def src() -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.0005)

    def ident(x: int) -> int:
        return x

    counts: list[int] = []

    async def consumer() -> None:
        try:
            async with (pipeline(src()) | stages.map(ident)).stream() as items:
                async for _ in items:
                    pass
        except asyncio.CancelledError:
            me = asyncio.current_task()
            assert me is not None
            counts.append(me.cancelling())
            raise

    for _ in range(40):
        t = asyncio.ensure_future(consumer())
        await asyncio.sleep(rnd.random() * 0.003)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
    assert counts == [1] * 40


@pytest.mark.parametrize("shape", ["map", "finally_raises", "tee_stage_sink", "batch_timeout"])
async def test_an_outside_cancel_while_the_block_unwinds_from_a_timeout_is_not_swallowed(
    anyio_backend: tuple[str, dict[str, object]], shape: str
) -> None:
    """asyncio.timeout() expires, the block unwinds (a stage's slow cleanup), and an
    outside Task.cancel() lands meanwhile: CancelledError, not TimeoutError. A stage
    whose ``finally`` raises as it stops re-cancelled the stages' scopes (rev20)."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() and asyncio.timeout() are asyncio's")
    import asyncio

    async def src() -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.001)
        finally:
            with anyio.CancelScope(shield=True):
                await asyncio.sleep(0.01)  # slow cleanup: the consumer's exit waits

    def ident(x: int) -> int:
        return x

    async def fin_stage(items: AsyncIterator[int]) -> AsyncIterator[int]:
        try:
            async for x in items:
                yield x
        finally:
            raise KeyError("in finally")  # dropped: raised because it was stopped

    outcomes: list[str] = []
    for _ in range(10):

        async def consumer() -> None:
            async with asyncio.timeout(0.002):
                stage: Any = {
                    "map": stages.map(ident),
                    "finally_raises": fin_stage,
                    "tee_stage_sink": stages.tee(stages.map(ident)),
                    "batch_timeout": stages.batch(4, timeout=0.001),
                }[shape]
                async with (pipeline(src()) | stage).stream() as items:
                    async for _ in items:
                        pass

        t = asyncio.ensure_future(consumer())
        await asyncio.sleep(0.006)  # (any moment while it unwinds will do)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            outcomes.append("CancelledError")
        except BaseException as e:
            outcomes.append(type(e).__name__)
        else:
            outcomes.append("returned")
    assert "TimeoutError" not in outcomes and "KeyError" not in outcomes, outcomes


@pytest.mark.parametrize("kind", ["move_on_after", "fail_after"])
async def test_an_outside_cancel_while_a_cancelled_anyio_scope_stops_the_stream(
    anyio_backend: tuple[str, dict[str, object]], kind: str
) -> None:
    """An anyio scope around the block is cancelled; while its stages stop (one is in
    a shielded wait), an outside Task.cancel() arrives: CancelledError. With the
    stages' own scopes cancelled under the cancelled scope, anyio passed their counts
    up to it and its exit ate the outside cancel: the task went on, or raised
    TimeoutError (rev22)."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio's")
    import asyncio

    class Busy(stages.TaskStage[int, int]):
        async def run(self, inp: Any, out: Any) -> None:
            async for x in inp:
                with anyio.CancelScope(shield=True):
                    await asyncio.sleep(0.02)
                await out.send(x)

    async def src() -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0)

    async def consumer() -> str:
        cm = anyio.move_on_after(0.005) if kind == "move_on_after" else anyio.fail_after(0.005)
        with cm:
            async with (pipeline(src()) | Busy()).stream() as items:
                async for _ in items:
                    pass
        await asyncio.sleep(0.05)
        return "went on"

    for _ in range(3):
        t = asyncio.ensure_future(consumer())
        await asyncio.sleep(0.012)  # the scope fired at 5 ms; Busy is in its shielded wait
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

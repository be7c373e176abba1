"""OpenTelemetry: spans for Group tasks, pipeline stages and pool jobs; the current span
propagates into tasks asyncgo starts. Runs on asyncio, uvloop and trio (no server involved)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from asyncgo import with_cancel  # noqa: E402
from asyncgo._group import Group  # noqa: E402
from asyncgo._pipeline import pipeline  # noqa: E402
from asyncgo.contrib import otel  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, trace.Tracer]]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    otel.instrument(tracer_provider=provider)
    try:
        yield exp, provider.get_tracer("test")
    finally:
        otel.uninstrument()
        provider.shutdown()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_current_span_is_inherited_without_instrumentation() -> None:
    """Context variables -- hence OTel's current span -- flow into Group tasks as they are."""
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracer = provider.get_tracer("test")
    assert not otel.is_instrumented()

    async def child() -> None:
        with tracer.start_as_current_span("child"):
            await anyio.sleep(0)

    with tracer.start_as_current_span("request") as parent:
        async with Group() as g:
            for _ in range(3):
                await g.go(child)
    spans = exp.get_finished_spans()
    kids = by_name(spans, "child")
    assert len(kids) == 3
    for k in kids:
        assert k.parent is not None
        assert k.parent.span_id == parent.get_span_context().span_id
    provider.shutdown()


async def test_group_task_spans(exporter: tuple[InMemorySpanExporter, trace.Tracer]) -> None:
    exp, tracer = exporter

    async def ok() -> int:
        with tracer.start_as_current_span("inner"):
            await anyio.sleep(0)
        return 1

    async def boom() -> None:
        await anyio.sleep(0)
        raise ValueError("boom")

    with tracer.start_as_current_span("request") as req:
        with pytest.raises(ValueError, match="boom"):
            async with Group() as g:
                await g.go(ok)
                await g.go(boom)
    spans = exp.get_finished_spans()
    tasks = by_name(spans, "asyncgo.group.task")
    assert len(tasks) == 2
    rid = req.get_span_context().span_id
    assert all(t.parent is not None and t.parent.span_id == rid for t in tasks)
    fns = {t.attributes["asyncgo.fn"]: t for t in tasks}  # type: ignore[index]
    failed = next(t for name, t in fns.items() if name.endswith("boom"))
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert any(e.name == "exception" for e in failed.events)
    # A span started inside the task is a child of the task's span.
    inner = by_name(spans, "inner")
    okspan = next(t for name, t in fns.items() if name.endswith("ok"))
    if inner:  # ok may have been cancelled by boom before it started its span
        assert inner[0].parent is not None
        assert inner[0].parent.span_id == okspan.context.span_id


async def test_cancelled_task_span_is_not_an_error(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    exp, _ = exporter
    ctx, cancel = with_cancel(__import__("asyncgo").background())

    async def forever() -> None:
        await anyio.sleep_forever()

    with pytest.raises(Exception):  # noqa: B017, PT011 - the ctx's Canceled
        async with Group(ctx) as g:
            await g.go(forever)
            await anyio.sleep(0.01)
            cancel()
    (span,) = by_name(exp.get_finished_spans(), "asyncgo.group.task")
    assert span.attributes is not None
    assert span.attributes.get("asyncgo.cancelled") is True
    assert span.status.status_code != trace.StatusCode.ERROR


async def test_pipeline_stage_spans(exporter: tuple[InMemorySpanExporter, trace.Tracer]) -> None:
    exp, tracer = exporter

    async def square(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            yield x * x

    async def fail_on_3(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            if x == 9:
                raise RuntimeError("nine")
            yield x

    with tracer.start_as_current_span("job") as job:
        assert await (pipeline(range(5)) | square).collect() == [0, 1, 4, 9, 16]
        with pytest.raises(RuntimeError, match="nine"):
            await (pipeline(range(5)) | square | fail_on_3).collect()
    spans = by_name(exp.get_finished_spans(), "asyncgo.pipeline.stage")
    assert len(spans) == 2 + 3
    jid = job.get_span_context().span_id
    assert all(s.parent is not None and s.parent.span_id == jid for s in spans)
    names = [str(s.attributes["asyncgo.stage"]) for s in spans]  # type: ignore[index]
    assert any("square" in n for n in names)
    failed = [s for s in spans if s.status.status_code == trace.StatusCode.ERROR]
    assert len(failed) == 1
    assert "fail_on_3" in str(failed[0].attributes["asyncgo.stage"])  # type: ignore[index]


async def test_worker_pool_job_spans_follow_the_submitter(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, tracer = exporter

    async def job(x: int) -> int:
        await anyio.sleep(0)
        return x + 1

    async with pool_mod.WorkerPool(workers=2) as pool:
        with tracer.start_as_current_span("submitter") as sub:
            h = await pool.submit(job, 1)
            assert await h == 2
    (span,) = by_name(exp.get_finished_spans(), "asyncgo.pool.job")
    assert span.parent is not None
    assert span.parent.span_id == sub.get_span_context().span_id


def _square(x: int) -> int:  # module level: pickled to a worker process
    return x * x


def _fail_in_process(x: int) -> int:
    raise ValueError(f"bad {x}")


async def test_worker_pool_process_job_spans_are_made_in_the_parent(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, tracer = exporter
    async with pool_mod.WorkerPool(workers=2, executor="process") as pool:
        with tracer.start_as_current_span("submitter") as sub:
            ok = await pool.submit(_square, 7)
            bad = await pool.submit(_fail_in_process, 3)
        assert await ok == 49
        with pytest.raises(ValueError, match="bad 3"):
            await bad
    spans = by_name(exp.get_finished_spans(), "asyncgo.pool.job")
    assert len(spans) == 2
    sid = sub.get_span_context().span_id
    for s in spans:
        assert s.parent is not None and s.parent.span_id == sid
        assert s.attributes is not None
        assert s.attributes["asyncgo.executor"] == "process"
    by_fn = {str(s.attributes["asyncgo.fn"]): s for s in spans}  # type: ignore[index]
    (failed,) = [s for n, s in by_fn.items() if n.endswith("_fail_in_process")]
    (fine,) = [s for n, s in by_fn.items() if n.endswith("_square")]
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert fine.status.status_code != trace.StatusCode.ERROR
    # The span covers the wait for the child process: it ends after it started.
    assert fine.end_time is not None and fine.start_time is not None
    assert fine.end_time > fine.start_time


async def test_worker_pool_thread_job_span_is_current_in_the_thread(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, tracer = exporter

    def work(x: int) -> int:
        with tracer.start_as_current_span("in-thread"):
            return x + 1

    async with pool_mod.WorkerPool(workers=1, executor="thread") as pool:
        with tracer.start_as_current_span("submitter") as sub:
            h = await pool.submit(work, 1)
        assert await h == 2
    spans = exp.get_finished_spans()
    (job,) = by_name(spans, "asyncgo.pool.job")
    (inner,) = by_name(spans, "in-thread")
    assert job.parent is not None and job.parent.span_id == sub.get_span_context().span_id
    assert inner.parent is not None and inner.parent.span_id == job.context.span_id


async def test_cancelled_pool_job_span_is_marked_cancelled(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, _ = exporter
    started = anyio.Event()

    async def sleepy() -> None:
        started.set()
        await anyio.sleep(3600)

    async with pool_mod.WorkerPool(workers=1) as pool:
        h = await pool.submit(sleepy)
        await started.wait()
        assert h.cancel()
        with pytest.raises(pool_mod.JobCancelled):
            await h
    (span,) = by_name(exp.get_finished_spans(), "asyncgo.pool.job")
    assert span.attributes is not None
    assert span.attributes.get("asyncgo.cancelled") is True
    assert span.status.status_code != trace.StatusCode.ERROR


def test_instrument_is_idempotent_and_reversible() -> None:
    from asyncgo._group import Group as G

    original = G._start
    otel.instrument()
    otel.instrument()
    assert otel.is_instrumented()
    otel.uninstrument()
    assert not otel.is_instrumented()
    assert G._start is original
    from asyncgo._pool import WorkerPool

    assert WorkerPool._in_executor.__module__ == "asyncgo._pool"
    assert WorkerPool._make_job.__module__ == "asyncgo._pool"


def _thread_job_fails() -> None:
    raise KeyError("thread job")


async def test_failing_thread_job_raises_its_own_error_and_marks_the_span(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    """The error path of a job in a worker thread needs no event loop (#9)."""
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, _ = exporter
    async with pool_mod.WorkerPool(workers=1, executor="thread") as pool:
        h = await pool.submit(_thread_job_fails)
        with pytest.raises(KeyError, match="thread job"):
            await h
    (span,) = by_name(exp.get_finished_spans(), "asyncgo.pool.job")
    assert span.status.status_code == trace.StatusCode.ERROR
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "KeyError"
    assert span.attributes is not None
    assert "asyncgo.cancelled" not in span.attributes


async def _thread_fetch(x: int) -> int:
    return x


def _thread_job_returns_a_coroutine(x: int) -> object:
    return _thread_fetch(x)


async def test_thread_job_returning_a_coroutine_marks_its_span(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    """The pool refuses an awaitable from a thread job; the span must see that error
    (it was checked after the span had closed: UNSET, nothing recorded)."""
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, _ = exporter
    async with pool_mod.WorkerPool(workers=1, executor="thread") as pool:
        h = await pool.submit(_thread_job_returns_a_coroutine, 1)
        with pytest.raises(TypeError, match="returned a coroutine"):
            await h
    (span,) = by_name(exp.get_finished_spans(), "asyncgo.pool.job")
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


# -- uninstrument() / instrument() while work is in flight (#9) ---------------------


async def test_group_task_started_before_uninstrument_runs_without_a_span(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    exp, _ = exporter
    ran: list[int] = []

    async def job(x: int) -> int:
        await anyio.sleep(0)
        ran.append(x)
        return x

    async with Group() as g:
        h = g.go_nowait(job, 1)  # started, not yet run
        otel.uninstrument()
    assert ran == [1]
    assert await h == 1
    assert by_name(exp.get_finished_spans(), "asyncgo.group.task") == []


@pytest.mark.parametrize("executor", [None, "thread"])
async def test_pool_job_queued_before_uninstrument_runs_without_a_span(
    exporter: tuple[InMemorySpanExporter, trace.Tracer], executor: str | None
) -> None:
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, _ = exporter
    import threading

    release = threading.Event()
    running = anyio.Event()

    def blocker_sync() -> str:
        release.wait(30)
        return "first"

    async def blocker_async() -> str:
        running.set()
        while not release.is_set():
            await anyio.sleep(0.001)
        return "first"

    def second_sync() -> str:
        return "second"

    async def second_async() -> str:
        await anyio.sleep(0)
        return "second"

    async with pool_mod.WorkerPool(workers=1, executor=executor) as pool:
        if executor is None:
            h1 = await pool.submit(blocker_async)
            await running.wait()  # the only worker is busy: the next job stays queued
            h2 = await pool.submit(second_async)
        else:
            h1 = await pool.submit(blocker_sync)
            h2 = await pool.submit(second_sync)
        otel.uninstrument()
        release.set()
        assert await h1 == "first"
        assert await h2 == "second"
    spans = by_name(exp.get_finished_spans(), "asyncgo.pool.job")
    names = [str(s.attributes["asyncgo.fn"]) for s in spans]  # type: ignore[index]
    assert not any("second" in n for n in names)
    if executor is None:  # already running when uninstrument() came: it keeps its span
        assert len(spans) == 1 and "blocker" in names[0]


async def test_pipeline_stages_scheduled_before_uninstrument_run_without_spans(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    exp, _ = exporter

    async def double(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in items:
            yield 2 * x

    async with (pipeline(range(4)) | double).stream() as items:
        otel.uninstrument()  # the stages are scheduled, not yet running
        got = [x async for x in items]
    assert got == [0, 2, 4, 6]
    assert by_name(exp.get_finished_spans(), "asyncgo.pipeline.stage") == []


async def test_instrument_while_stages_are_scheduled_records_nothing_on_the_callers_span() -> None:
    """A stage scheduled before instrument() has no span of its own: its error must not
    land on whatever span is current (the caller's)."""
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracer = provider.get_tracer("test")

    async def fail(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for _ in items:
            raise RuntimeError("stage failed")
        yield 0  # pragma: no cover

    try:
        with tracer.start_as_current_span("request"):
            with pytest.raises(RuntimeError, match="stage failed"):
                async with (pipeline(range(3)) | fail).stream() as items:
                    otel.instrument(tracer_provider=provider)
                    async for _ in items:
                        pass  # pragma: no cover
    finally:
        otel.uninstrument()
        provider.shutdown()
    (req,) = by_name(exp.get_finished_spans(), "request")
    assert req.status.status_code != trace.StatusCode.ERROR
    assert [e for e in req.events if e.name == "exception"] == []


# -- the asyncgo.stage attribute is short, whatever the source holds (#9) ----------


class _LoudIterable:
    """An iterable whose repr must not be built for a span attribute."""

    def __iter__(self) -> Iterator[int]:
        return iter(range(3))

    def __repr__(self) -> str:
        raise AssertionError("repr() of a pipeline source built for a span attribute")


async def test_stage_attribute_is_bounded_for_big_sources(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    from asyncgo import stages

    exp, _ = exporter
    big = list(range(200_000))

    def inc(x: int) -> int:
        return x + 1

    assert len(await (pipeline(big) | stages.map(inc)).collect()) == 200_000
    # (read to the end: a pipeline source cut short by take() leaks its inner
    # iterator on trio, with or without instrumentation -- a pipeline issue)
    assert len(
        await (pipeline(pipeline(big) | stages.map(inc)) | stages.map(inc)).collect()
    ) == len(big)
    assert len(await (pipeline(stages.merge(big, big)) | stages.take(2)).collect()) == 2
    assert await (pipeline(_LoudIterable()) | stages.map(inc)).collect() == [1, 2, 3]
    spans = by_name(exp.get_finished_spans(), "asyncgo.pipeline.stage")
    names = {
        (int(s.attributes["asyncgo.stage.index"]), str(s.attributes["asyncgo.stage"]))  # type: ignore[index, arg-type]
        for s in spans
    }
    assert len(spans) == 2 + (2 + 2) + 2 + 2  # (the inner pipeline's stages have theirs)
    assert all(len(n) <= 100 for _, n in names), sorted(len(n) for _, n in names)
    sources = [n for i, n in names if i == 0]
    assert any(n.startswith("[0, 1, 2") for n in sources)  # a list: its first items
    assert any(n.startswith("<Pipeline [0, 1, 2") for n in sources)  # a pipeline: its parts
    assert any(n.startswith("stages.merge(") for n in sources)
    assert any("_LoudIterable" in n for n in sources)  # anything else: its type
    # Stages keep their full, short names.
    assert (1, "stages.map(test_stage_attribute_is_bounded_for_big_sources.<locals>.inc)") in names


# -- a sync callable as a pool job (no executor): the span covers what it returns (#9)


async def test_pool_job_returning_an_awaitable_is_covered_by_its_span(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, tracer = exporter

    async def boom() -> None:
        with tracer.start_as_current_span("inner"):
            await anyio.sleep(0)
        raise ValueError("awaited boom")

    async with pool_mod.WorkerPool(workers=1) as pool:
        with tracer.start_as_current_span("submitter") as sub:
            h = await pool.submit(lambda: boom())
        with pytest.raises(ValueError, match="awaited boom"):
            await h
    spans = exp.get_finished_spans()
    (job,) = by_name(spans, "asyncgo.pool.job")
    (inner,) = by_name(spans, "inner")
    assert job.parent is not None and job.parent.span_id == sub.get_span_context().span_id
    assert inner.parent is not None and inner.parent.span_id == job.context.span_id
    assert job.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in job.events] == ["exception"]
    assert job.end_time is not None and inner.end_time is not None
    assert job.end_time >= inner.end_time


async def test_plain_sync_pool_job_on_the_loop_has_a_span(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, tracer = exporter

    def add(x: int) -> int:
        with tracer.start_as_current_span("inner"):
            return x + 1

    def fails(x: int) -> int:
        raise LookupError(f"no {x}")

    async with pool_mod.WorkerPool(workers=1) as pool:
        with tracer.start_as_current_span("submitter") as sub:
            ok = await pool.submit(add, 41)
            bad = await pool.submit(fails, 7)
        assert await ok == 42
        with pytest.raises(LookupError, match="no 7"):
            await bad
    spans = exp.get_finished_spans()
    jobs = {
        str(s.attributes["asyncgo.fn"]).rsplit(".", 1)[-1]: s
        for s in by_name(spans, "asyncgo.pool.job")
    }  # type: ignore[index]
    assert set(jobs) == {"add", "fails"}
    sid = sub.get_span_context().span_id
    assert all(j.parent is not None and j.parent.span_id == sid for j in jobs.values())
    assert jobs["add"].status.status_code == trace.StatusCode.UNSET
    assert jobs["fails"].status.status_code == trace.StatusCode.ERROR
    (inner,) = by_name(spans, "inner")
    assert inner.parent is not None and inner.parent.span_id == jobs["add"].context.span_id


async def test_docs_page_names_every_span_and_attribute(
    exporter: tuple[InMemorySpanExporter, trace.Tracer],
) -> None:
    """docs/otel.md lists what the instrumentation records, process-pool jobs included."""
    from pathlib import Path

    pool_mod = pytest.importorskip("asyncgo._pool")
    exp, _ = exporter
    page = Path(__file__).resolve().parents[2] / "docs" / "otel.md"
    if not page.exists():  # pragma: no cover - an installed package without docs
        pytest.skip("no docs/otel.md")

    async def forever() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0.05):  # a Group task, cancelled
        async with Group() as g:
            await g.go(forever)
    await pipeline(range(2)).collect()
    async with pool_mod.WorkerPool(workers=1, executor="process") as pool:
        assert await (await pool.submit(_square, 3)) == 9
    spans = exp.get_finished_spans()
    names = {s.name for s in spans}
    keys = {k for s in spans for k in (s.attributes or {})}
    assert names == {"asyncgo.group.task", "asyncgo.pipeline.stage", "asyncgo.pool.job"}
    assert "asyncgo.executor" in keys and "asyncgo.cancelled" in keys
    text = page.read_text()
    missing = sorted(f"`{n}`" for n in names | keys if f"`{n}`" not in text)
    assert missing == [], f"docs/otel.md does not name {missing}"
    assert "not traced" not in text  # every kind of pool job is
    assert otel.__doc__ is not None and "asyncgo.executor" in otel.__doc__


def _three(x: int) -> int:
    if x == 3:
        raise RuntimeError("three")
    return x


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("ordered", [True, False])
async def test_a_map_workers_error_is_recorded_on_the_stage_span(
    exporter: tuple[InMemorySpanExporter, trace.Tracer], workers: int, ordered: bool
) -> None:
    # Found by an audit: with workers > 1 the workers hand the error to the run and
    # the stage is only cancelled: no span had ERROR, the stage's read "cancelled".
    from asyncgo import stages

    exp, _ = exporter
    with pytest.raises(RuntimeError, match="three"):
        await (pipeline(range(10)) | stages.map(_three, workers=workers, ordered=ordered)).collect()
    spans = exp.get_finished_spans()
    errored = [s for s in spans if s.status.status_code == trace.StatusCode.ERROR]
    (stage,) = [
        s
        for s in by_name(spans, "asyncgo.pipeline.stage")
        if s.attributes is not None and s.attributes["asyncgo.stage.index"] == 1
    ]
    assert errored == [stage]
    assert stage.attributes is not None and "asyncgo.cancelled" not in stage.attributes
    assert len(stage.events) == 1 and stage.events[0].name == "exception"

"""OpenTelemetry spans for the tasks asyncgo starts: Group tasks, pipeline stages, pool jobs.

Call `instrument()` once at start-up (after configuring the tracer provider);
`uninstrument()` undoes it. Then

* every task started by ``Group.go`` / ``try_go`` / ``go_nowait`` runs in a span
  ``asyncgo.group.task`` (attribute ``asyncgo.fn``);
* every stage of a running pipeline runs in a span ``asyncgo.pipeline.stage``
  (attributes ``asyncgo.stage`` and ``asyncgo.stage.index``; index 0 is the source);
  ``asyncgo.stage`` is a short name of at most 100 characters: a function's name,
  a container's first items, or the type of any other object;
* every ``WorkerPool`` job (when the pool module is present) runs in a span
  ``asyncgo.pool.job``, whose parent is the span current where the job was
  *submitted* -- pool workers are long-lived tasks, so that context is carried
  with the job. Jobs on the loop (``async def`` jobs, sync callables -- the span
  also covers the awaitable such a callable returns, which the pool awaits) and
  ``executor="thread"`` jobs run inside their span (spans they start are its
  children); an ``executor="process"`` job's span is
  made in the parent process, around the wait for the child (the tracer lives in
  the parent; the child gets no context), with ``asyncgo.executor = "process"``.

A task's span is a child of the span that was current where the task was
started: OpenTelemetry keeps the current span in a context variable, and tasks
inherit the context variables of the task that starts them (asyncio copies
them in ``create_task``, trio in ``start_soon``) -- no instrumentation needed
for that part, only for the spans themselves.

Whether a task, job or stage gets a span is decided when it starts running:
after `uninstrument()`, work started or queued earlier runs without one.

An exception other than cancellation marks the span as an error and is recorded
on it; cancellation (the backend's, or `Canceled` / `DeadlineExceeded`) sets
``asyncgo.cancelled = true`` and leaves the status unset.

Instrumentation wraps private functions of the core (``Group._start``,
``_Stream._node`` and ``_body``, ``WorkerPool._make_job`` and ``_in_executor``); see the
module's tests for what is relied on.
"""

from __future__ import annotations

import functools
import inspect
import sys
from asyncio import CancelledError as _AsyncioCancelled
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from . import _missing_extra

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ModuleNotFoundError as _exc:
    raise _missing_extra(__name__, "otel", _exc) from _exc

from .._exceptions import Canceled, DeadlineExceeded, call_sync
from .._group import Group
from .._pipeline import _Run, _Stream
from .._pipeline import describe as _describe
from .._pool import _EXECUTOR_ADVICE

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_TRACER_NAME = "asyncgo"
_originals: dict[str, Any] = {}
_tracer: trace.Tracer | None = None
# In a pipeline node's task: the node's output link while the node's span is current,
# so that _stream_body records a stage's error on that span and on no other.
_stage_link: ContextVar[object] = ContextVar("asyncgo_otel_stage_link", default=None)
# The node's span, inherited by the tasks the stage starts (a map's workers, a tee's
# sinks): an error they hand to the run (_Run.fail) is recorded on it.
_stage_span: ContextVar[trace.Span | None] = ContextVar("asyncgo_otel_stage_span", default=None)
# The core's pipeline hooks, for wrappers that run after uninstrument() (a node task
# scheduled while instrumented holds the wrapper; _originals is emptied by then).
_ORIGINAL_NODE = _Stream._node
_ORIGINAL_BODY = _Stream._body
_ORIGINAL_FAIL = _Run.fail


def _fn_name(fn: object) -> str:
    f = fn
    while isinstance(f, functools.partial):
        f = f.func
    mod = getattr(f, "__module__", None)
    qual = getattr(f, "__qualname__", None) or type(f).__name__
    return f"{mod}.{qual}" if mod else qual


def _is_cancellation(exc: BaseException) -> bool:
    """Whether *exc* is a cancellation: ours, asyncio's (uvloop's) or trio's.

    Decided from the exception alone, with no event loop: a job in a worker
    thread ends here too, and there ``get_cancelled_exc_class()`` would raise.
    """
    if isinstance(exc, (Canceled, DeadlineExceeded, _AsyncioCancelled)):
        return True
    trio = sys.modules.get("trio")  # (not imported: no trio exception can exist)
    return trio is not None and isinstance(exc, trio.Cancelled)


class _SpanGuard:
    """Record how a span's body ended: error, cancelled, or fine."""

    __slots__ = ("span",)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def ended(self, exc: BaseException | None) -> None:
        if exc is None:
            return
        span = self.span
        if _is_cancellation(exc):
            # (not for a stage cancelled by its own worker's error, recorded already)
            status = getattr(span, "status", None)
            if getattr(status, "status_code", None) is not trace.StatusCode.ERROR:
                span.set_attribute("asyncgo.cancelled", True)
        elif isinstance(exc, Exception):
            if getattr(exc, "_asyncgo_otel_span", None) == id(span):
                return  # recorded on this span already (by _run_fail)
            try:
                exc._asyncgo_otel_span = id(span)  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover - an exception without a __dict__
                pass
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, repr(exc)))


def _start_span(tracer: trace.Tracer, name: str, attrs: dict[str, Any]) -> Any:
    return tracer.start_as_current_span(
        name, attributes=attrs, record_exception=False, set_status_on_exception=False
    )


def _traced_task(fn: Callable[..., Any]) -> Callable[..., Any]:
    name = _fn_name(fn)

    @functools.wraps(fn)
    async def task(*args: Any) -> Any:
        tracer = _tracer  # (read once: uninstrument() may come from another thread)
        if tracer is None:  # uninstrument() came before the task ran: no span
            return await fn(*args)
        with _start_span(tracer, "asyncgo.group.task", {"asyncgo.fn": name}) as span:
            g = _SpanGuard(span)
            try:
                return await fn(*args)
            except BaseException as exc:
                g.ended(exc)
                raise

    return task


def _group_start(self: Group, fn: Any, args: tuple[object, ...], what: str = "go") -> Any:
    if callable(fn) and _tracer is not None:
        fn = _traced_task(fn)
    return _originals["group_start"](self, fn, args, what)


async def _stream_node(
    self: _Stream[Any], index: int, rx: Any, what: object, tx: Any, scope: Any
) -> None:
    original = _ORIGINAL_NODE
    tracer = _tracer
    if tracer is None:  # scheduled before uninstrument(), running after it: no span
        await original(self, index, rx, what, tx, scope)
        return
    attrs = {"asyncgo.stage": _describe(what), "asyncgo.stage.index": index}
    with _start_span(tracer, "asyncgo.pipeline.stage", attrs) as span:
        g = _SpanGuard(span)
        token = _stage_link.set(tx)
        span_token = _stage_span.set(span)
        try:
            await original(self, index, rx, what, tx, scope)
        except BaseException as exc:
            g.ended(exc)
            raise
        finally:
            _stage_span.reset(span_token)
            _stage_link.reset(token)


def _run_fail(self: _Run, exc: BaseException) -> None:
    # An error a stage's own task or one of its workers hands to the run (a map with
    # workers catches its function's error and stops the run; the stage itself is
    # then only cancelled): recorded on the stage's span.
    span = _stage_span.get()
    if span is not None and isinstance(exc, Exception) and not _is_cancellation(exc):
        _SpanGuard(span).ended(exc)
    _ORIGINAL_FAIL(self, exc)


async def _stream_body(self: _Stream[Any], rx: Any, what: object, tx: Any) -> None:
    # _node hands a stage's own error to the run instead of raising it: record it
    # here, on the stage's span (current in this task) -- if _stream_node made one
    # for this node: not if the node was scheduled before instrument() (the current
    # span is then the caller's).
    try:
        await _ORIGINAL_BODY(self, rx, what, tx)
    except BaseException as exc:
        if _stage_link.get() is tx:
            _SpanGuard(trace.get_current_span()).ended(exc)
        raise


def _traced_job(
    fn: Callable[..., Any], parent: otel_context.Context, on_loop: bool, who: str = ""
) -> Callable[..., Any]:
    """*fn* as a pool job in a span ``asyncgo.pool.job``, child of *parent*.

    *on_loop* (a pool with no executor): an async wrapper doing what the pool does
    with a job -- call it, and await the result if it is awaitable -- so the span
    covers an ``async def`` job, a sync callable returning an awaitable
    (``lambda: fetch(url)``) and a plain sync one alike. Otherwise (a worker
    thread) a sync wrapper, run in the thread, which refuses an awaitable result
    inside the span, as the pool does (*who*: the pool, named in the error).
    """
    name = _fn_name(fn)

    if on_loop:

        @functools.wraps(fn)
        async def ajob(*args: Any) -> Any:
            tracer = _tracer
            if tracer is None:  # queued before uninstrument(), run after it: no span
                value = fn(*args)
                return (await value) if inspect.isawaitable(value) else value
            token = otel_context.attach(parent)
            try:
                with _start_span(tracer, "asyncgo.pool.job", {"asyncgo.fn": name}) as span:
                    g = _SpanGuard(span)
                    try:
                        value = fn(*args)
                        return (await value) if inspect.isawaitable(value) else value
                    except BaseException as exc:
                        g.ended(exc)
                        raise
            finally:
                otel_context.detach(token)

        return ajob

    @functools.wraps(fn)
    def job(*args: Any) -> Any:
        tracer = _tracer
        if tracer is None:  # queued before uninstrument(), run after it: no span
            return fn(*args)
        token = otel_context.attach(parent)
        try:
            with _start_span(tracer, "asyncgo.pool.job", {"asyncgo.fn": name}) as span:
                g = _SpanGuard(span)
                try:
                    return call_sync(fn, who, _EXECUTOR_ADVICE, *args)
                except BaseException as exc:
                    g.ended(exc)
                    raise
        finally:
            otel_context.detach(token)

    return job


def _pool_make_job(self: Any, fn: Any, args: tuple[Any, ...]) -> Any:
    job = _originals["pool_make_job"](self, fn, args)
    if _tracer is not None:
        if getattr(self, "_executor", None) == "process":
            # The function is pickled to another process: it cannot carry a span.
            # Keep the submitter's context; _pool_in_executor spans the wait for it.
            job._meta = otel_context.get_current()
        else:
            on_loop = getattr(self, "_executor", None) is None
            job._fn = _traced_job(
                job._fn, otel_context.get_current(), on_loop, getattr(self, "_who", "")
            )
    return job


async def _pool_in_executor(self: Any, run_sync: Any, job: Any) -> Any:
    original = _originals.get("pool_in_executor") or type(self)._in_executor
    parent = getattr(job, "_meta", None)
    tracer = _tracer
    if tracer is None or not isinstance(parent, otel_context.Context):
        return await original(self, run_sync, job)
    attrs = {"asyncgo.fn": _fn_name(job._fn), "asyncgo.executor": "process"}
    token = otel_context.attach(parent)
    try:
        with _start_span(tracer, "asyncgo.pool.job", attrs) as span:
            g = _SpanGuard(span)
            try:
                return await original(self, run_sync, job)
            except BaseException as exc:
                g.ended(exc)
                raise
    finally:
        otel_context.detach(token)


def instrument(*, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace Group tasks, pipeline stages and WorkerPool jobs (idempotent).

    Args:
        tracer_provider: Where spans go; default: the global provider.
    """
    global _tracer
    _tracer = trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)
    if _originals:
        return
    _originals["group_start"] = Group._start
    Group._start = _group_start  # type: ignore[method-assign]
    _originals["stream_node"] = _Stream._node
    _Stream._node = _stream_node  # type: ignore[method-assign]
    _originals["stream_body"] = _Stream._body
    _Stream._body = _stream_body  # type: ignore[method-assign]
    _originals["run_fail"] = _Run.fail
    _Run.fail = _run_fail  # type: ignore[method-assign]
    try:
        from .. import _pool
    except ImportError:  # the worker pool is not part of this version
        return
    make_job = getattr(getattr(_pool, "WorkerPool", None), "_make_job", None)
    if make_job is not None:
        _originals["pool_make_job"] = make_job
        setattr(_pool.WorkerPool, "_make_job", _pool_make_job)  # noqa: B010
    in_executor = getattr(getattr(_pool, "WorkerPool", None), "_in_executor", None)
    if in_executor is not None:
        _originals["pool_in_executor"] = in_executor
        setattr(_pool.WorkerPool, "_in_executor", _pool_in_executor)  # noqa: B010


def uninstrument() -> None:
    """Undo `instrument`: work that starts running from now on gets no span.

    That includes work already handed over but not yet running -- Group tasks
    started but not yet scheduled, queued pool jobs, pipeline stages not yet
    running: it runs as usual, without a span. Work already running keeps its
    span until it ends.
    """
    global _tracer
    if not _originals:
        return
    Group._start = _originals.pop("group_start")  # type: ignore[method-assign]
    _Stream._node = _originals.pop("stream_node")  # type: ignore[method-assign]
    _Stream._body = _originals.pop("stream_body")  # type: ignore[method-assign]
    _Run.fail = _originals.pop("run_fail")  # type: ignore[method-assign]
    make_job = _originals.pop("pool_make_job", None)
    in_executor = _originals.pop("pool_in_executor", None)
    if make_job is not None or in_executor is not None:
        from .. import _pool

        if make_job is not None:
            setattr(_pool.WorkerPool, "_make_job", make_job)  # noqa: B010
        if in_executor is not None:
            setattr(_pool.WorkerPool, "_in_executor", in_executor)  # noqa: B010
    _tracer = None


def is_instrumented() -> bool:
    """Whether `instrument` is in effect."""
    return bool(_originals)

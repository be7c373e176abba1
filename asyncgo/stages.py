"""Built-in pipeline stages: ``pipeline(source) | stages.map(fn) | stages.filter(pred) ...``.

A stage is any callable taking an `AsyncIterator` and returning one (`Stage`), so a
plain async generator function is a stage and mixes freely with these. Every stage
below is one too; inside a pipeline the runner gives each its own task and moves
items to and from it a list at a time, which is where their speed comes from.

Where a function is expected (``map``, ``filter``, ``flat_map``, ``tap``), a sync or
an async callable works: an async one is awaited, and so is every result of a sync
one that is awaitable (checked result by result, not decided on the first).
``map(..., executor="thread" | "process")`` runs a sync function off the event loop
for blocking or CPU-bound work.

Stages that need tasks (``map`` with workers or an executor, ``batch`` with a
timeout, ``merge``, ``fan_out``, ``tee``) start them inside their own node's task, in
a task group that ends with the stage, so no task outlives the pipeline. Called
directly on an async iterator, outside a pipeline, ``map`` runs one item at a time
(same items, same order) and ``merge``, ``fan_out``, ``tee`` and ``batch(timeout=...)``
raise `TypeError`: they cannot work without tasks.
"""

from __future__ import annotations

import builtins
import inspect
import math
import os
import pickle
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from functools import partial
from itertools import compress
from types import FrameType, GeneratorType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, final, overload

from ._backend import CancelScope, _ticker, anyio, create_task_group, current_time, to_thread
from ._backend._tasks import TASK_NAMERS
from ._chan import RecvChan, SendChan
from ._context import Context, _current, background, current, ended
from ._exceptions import (
    DeadlineExceeded,
    WouldBlock,
    call_sync,
    is_async,
    run_in_process,
    to_seconds,
)
from ._group import Group
from ._pipeline import (
    _FACTORIES,
    Pipeline,
    Stage,
    TaskStage,
    _aiter_of,
    _check_size,
    _Keeps,
    _Link,
    _Lot,
    _never_ran,
    _NullLink,
    _refuse_factory,
    _Run,
    _Sink,
    feed,
    run_stage,
)
from ._select import select
from ._select import send as send_case

__all__ = [
    "Limiter",
    "Merge",
    "Stage",
    "TaskStage",
    "batch",
    "broadcast",
    "buffer",
    "fan_out",
    "filter",
    "flat_map",
    "map",
    "merge",
    "rate_limit",
    "take",
    "tap",
    "tee",
]

T = TypeVar("T")
U = TypeVar("U")

if TYPE_CHECKING:
    from typing_extensions import deprecated
else:

    def deprecated(msg: str, /) -> Callable[[T], T]:  # typing_extensions is no dependency
        return lambda f: f


Executor = Literal["thread", "process"]

#: Anything `pipeline()` accepts as a source (and `merge` as a branch).
Source = Iterable[T] | AsyncIterable[T] | RecvChan[T] | Callable[[], AsyncIterator[T]] | Pipeline[T]


class Limiter(Protocol):
    """What `rate_limit` needs: ``await limiter.wait(n, ctx)`` (e.g. `asyncgo.rate.Limiter`).

    Example:
        ```python
        limiter = rate.Limiter(1000, 5)  # asyncgo.rate.Limiter is one
        assert await (pipeline(range(10)) | stages.rate_limit(limiter)).collect() == list(range(10))
        ```
    """

    async def wait(self, n: int = 1, ctx: Any = None) -> None:
        """Wait until *n* events may happen."""
        ...


# -- calling user functions, sync or async ------------------------------------------


#: Result types never awaitable: a result of one of these is passed on as is.
_PLAIN_TYPES = frozenset(
    {int, float, complex, bool, str, bytes, type(None), list, tuple, dict, set, frozenset}
)
_MAX_PLAIN = 64  # types learnt per callable, at most (classes made on the fly stay bounded)


class _Fn:
    """A user callable, sync or async, and how to get its results.

    A coroutine function (``is_async``) is called and awaited. Any other callable
    may return an awaitable for some items and a plain value for others
    (``lambda x: x if x < 0 else fetch(x)``), so each of its results is checked:
    one whose type is in `plain` (types seen not to be awaitable) goes on as is,
    for the price of a set lookup; any other is awaited if `inspect.isawaitable`.
    The stages' batch loops check a whole list of results at once
    (`all_plain`, C speed) and fall back to one result at a time only when it fails.
    """

    __slots__ = ("fn", "is_async", "plain")

    def __init__(self, fn: Callable[..., Any], what: str) -> None:
        if not callable(fn):
            raise TypeError(f"stages.{what}() needs a callable, not {type(fn).__name__}")
        self.fn = fn
        self.is_async = is_async(fn)
        self.plain = set(_PLAIN_TYPES)

    def awaitable(self, result: object) -> bool:
        """Whether *result* must be awaited (learns the type of a plain one)."""
        cls = type(result)
        if cls in self.plain:
            return False
        if inspect.isawaitable(result):
            return True
        # A generator is awaitable or not by its code's flags (@types.coroutine),
        # not its type: never cache that type.
        if cls is not GeneratorType and len(self.plain) < _MAX_PLAIN:
            self.plain.add(cls)
        return False

    def all_plain(self, results: list[Any]) -> bool:
        """True when no result in *results* is awaitable (most often: one C-level pass)."""
        if self.plain.issuperset(builtins.map(type, results)):
            return True
        return not any(builtins.map(self.awaitable, results))

    async def settle(self, result: Any) -> Any:
        """*result*, awaited if it is awaitable."""
        if type(result) in self.plain or not self.awaitable(result):
            return result
        return await result

    async def __call__(self, item: object) -> Any:
        if self.is_async:
            return await self.fn(item)
        result = self.fn(item)
        if type(result) in self.plain or not self.awaitable(result):
            return result
        return await result


def _call_each(fn: Callable[[Any], Any], batch: list[Any]) -> list[Any]:
    """``[fn(x) for x in batch]``; if a call raises, the coroutines returned before it are
    closed (they will never be awaited: no "never awaited" warning)."""
    out: list[Any] = []
    append = out.append
    try:
        for x in batch:
            append(fn(x))
    except BaseException:
        for r in out:
            if inspect.iscoroutine(r):
                r.close()
        raise
    return out


_EXECUTOR_ADVICE = "drop executor= to await it on the event loop"


async def _settle_all(w: _Fn, results: list[Any]) -> list[Any]:
    """*results* with each awaitable one awaited, in order.

    If one fails, the awaitables not awaited yet are closed (no "never awaited"
    warning for coroutines) and the error propagates.
    """
    out: list[Any] = []
    try:
        for r in results:
            out.append(await w.settle(r))  # noqa: PERF401 - len(out) is used below
    except BaseException:
        for r in results[len(out) + 1 :]:
            close = getattr(r, "close", None)
            if close is not None and inspect.iscoroutine(r):
                close()
        raise
    return out


# -- the stages --------------------------------------------------------------------


@final
class _Map(TaskStage[T, U]):
    __slots__ = ("_executor", "_fn", "_ordered", "_workers")

    def __init__(
        self, fn: Callable[[T], Any], workers: int, ordered: bool, executor: Executor | None
    ) -> None:
        self._fn = _Fn(fn, "map")
        self._workers = workers
        self._ordered = ordered
        self._executor = executor
        if executor is not None:
            self._fn.is_async = False

    def __repr__(self) -> str:
        opts = "" if self._workers == 1 else f", workers={self._workers}"
        if not self._ordered:
            opts += ", ordered=False"
        if self._executor:
            opts += f", executor={self._executor!r}"
        return f"stages.map({_qualname(self._fn.fn)}{opts})"

    def __call__(self, items: AsyncIterator[T], /) -> AsyncIterator[U]:
        return self._direct(items)

    async def _direct(self, items: AsyncIterator[T]) -> AsyncIterator[U]:
        call = self._caller(None)
        async for item in items:
            yield await call(item)

    def _caller(self, limiter: Any) -> Callable[[Any], Awaitable[Any]]:
        fn = self._fn.fn
        if self._executor == "thread":
            call = partial(call_sync, fn, "stages.map(executor='thread')", _EXECUTOR_ADVICE)
            return lambda item: to_thread.run_sync(call, item, limiter=limiter)
        if self._executor == "process":
            run_sync = partial(anyio.to_process.run_sync, cancellable=True, limiter=limiter)
            who = "stages.map(executor='process')"
            return lambda item: run_in_process(run_sync, fn, who, _EXECUTOR_ADVICE, item)
        if self._fn.is_async:
            return fn  # no wrapper layer per call
        return self._fn  # checks each result: awaited if awaitable

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        if self._workers == 1 and self._executor is None:
            await self._serial(rx, tx)
        else:
            await self._pool(rx, tx, run)

    async def _serial(self, rx: _Link, tx: _Sink) -> None:
        w = self._fn
        fn = w.fn
        if w.is_async:
            while (batch := await rx.next_batch()) is not None:
                # One item at a time: each result goes on as soon as it is ready.
                for item in batch:
                    await tx.put(await fn(item))
            return
        while (batch := await rx.next_batch()) is not None:
            out = _call_each(fn, batch)
            if w.all_plain(out):
                await tx.put_many(out)
                continue
            # Some results are awaitables: await each in order, then go on with
            # every later result checked one by one (the calls of this batch are
            # made already: their awaitables wait their turn).
            await tx.put_many(await _settle_all(w, out))
            while (batch := await rx.next_batch()) is not None:
                for item in batch:
                    await tx.put(await w(item))

    async def _pool(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        # No feeder or emitter task: each worker takes the next item itself (one of
        # them refills a shared queue from the input, a list at a time) and sends its
        # result on itself, so a job costs no task switch beyond the job's own awaits.
        # Workers start as the input needs them, up to `workers`, in a `Group`: it
        # spawns at the event loop's own cost, about 4x cheaper than anyio's task
        # group (100 workers: ~0.5 ms instead of ~2 ms on asyncio, a tenth of a
        # 1000 x 1 ms run). The group's ctx is background(), so the workers stop only
        # with this node -- its cancel scope, inside the pipeline ctx's scope -- as
        # the tasks of an anyio task group here would; each worker rebinds
        # current() to this node's ctx.
        workers = self._workers
        limiter = anyio.CapacityLimiter(workers) if self._executor else None
        pool = _Pool(rx, tx, self._caller(limiter), self._ordered, workers, run, self)
        if self._executor is None:
            pool.ticker = _ticker.hold()  # timers on time for short calls (see _ticker)
        try:
            async with Group(background()) as g:
                work = pool.work_ordered if self._ordered else pool.work_unordered
                pool.spawn = partial(g.go_nowait, work)
                pool.grow()
        finally:
            if pool.ticker is not None:
                await pool.ticker.release()


@final
class _Pool:
    """The shared state of a `map` stage's workers.

    Per item, a worker pops the shared queue (no await), runs the call, and appends
    the result to the output link's pending list -- a channel send only when the
    consumer is idle or a batch is full. Ordered, results finishing ahead of the
    oldest running one wait in `done` (at most ``window - 1`` of them), and whichever
    worker finishes the oldest sends on every consecutive finished result in one
    list.
    """

    __slots__ = (
        "call",
        "cur",
        "done",
        "emitting",
        "eof",
        "fetching",
        "more",
        "next_out",
        "ordered",
        "queue",
        "room",
        "run",
        "rx",
        "spare",
        "spawn",
        "stage",
        "starting",
        "taken",
        "ticker",
        "tx",
        "window",
    )

    def __init__(
        self,
        rx: _Link,
        tx: _Sink,
        call: Callable[[Any], Awaitable[Any]],
        ordered: bool,
        workers: int,
        run: _Run,
        stage: object,
    ) -> None:
        self.stage = stage  # names the workers in a task dump (_worker_name)
        self.rx = rx
        self.tx = tx
        self.call = call
        self.ordered = ordered
        self.run = run
        self.cur = current()  # the node's ctx: current() in the workers too
        # Ordered: a worker takes a new item only while fewer than `window` items
        # are taken but not yet sent on, so `done` stays small.
        self.window = 2 * workers
        self.spare = workers  # workers not started yet
        self.starting = 0  # workers started but not running yet
        self.spawn: Callable[[], object] = _no_spawn
        self.queue: deque[Any] = deque()  # taken from the input, not yet by a worker
        self.taken = 0  # items handed to workers (the next one's sequence number)
        self.next_out = 0  # sequence number of the next result to send on (ordered)
        self.done: dict[int, Any] = {}
        self.emitting = False
        self.fetching = False
        self.eof = False
        self.more = _Lot()  # workers waiting for the input
        self.room = _Lot()  # workers waiting for the window to move (ordered)
        self.ticker: _ticker.Ticker | None = None  # the loop's, held while the stage runs
        if not ordered and workers > 1 and isinstance(tx, _Link):
            # Every worker sends its own results: they take turns (ordered, only the
            # emitting worker sends).
            tx.share()

    def grow(self) -> None:
        """Start workers for the input no idle worker will take (up to `workers` in all).

        Wanted idle: one per queued item, plus one to wait for more input until it
        ends. Idle: the workers parked for input, the one fetching it, and those
        started but not running yet. So a pool over 3 items starts at most 4
        workers, and one whose workers are all busy still reads on.
        """
        n = min(
            len(self.queue) + (not self.eof) - self.more.parked - self.starting - self.fetching,
            self.spare,
        )
        if n <= 0:
            return
        self.starting += n
        self.spare -= n
        spawn = self.spawn
        for _ in range(n):
            spawn()

    async def _refill(self) -> bool:
        """The slow path of taking an item: wait until the queue has one.

        False once the input is exhausted. Ordered, it also waits for the window.
        """
        queue = self.queue
        while True:
            if self.ordered and self.taken - self.next_out >= self.window:
                await self.room.park()
                continue
            if queue:
                return True
            if self.eof:
                return False
            if self.fetching:
                await self.more.park()
                continue
            self.fetching = True
            try:
                batch = await self.rx.next_batch()
            except BaseException:
                self.more.unpark(1)  # someone else fetches (if this was not the end)
                raise
            finally:
                self.fetching = False
            if batch is None:
                self.eof = True
                self.more.unpark(self.more.parked)  # every waiting worker: it is over
                return False
            queue.extend(batch)
            self.more.unpark(len(batch) - 1)  # this worker takes one of them

    async def work_unordered(self) -> None:
        """A worker of ``ordered=False``: results go on in the order they finish."""
        _current.set(self.cur)  # (this task's own context: nothing to reset)
        self.starting -= 1
        call = self.call
        ticker = self.ticker
        queue = self.queue
        tx = self.tx
        link = tx if isinstance(tx, _Link) else None
        try:
            while True:
                if not queue:
                    item = result = pending = None  # (waiting for input, hold no old items)
                    if not await self._refill():
                        return
                item = queue.popleft()
                if self.spare:
                    self.grow()
                if ticker is not None:
                    ticker.job()
                result = await call(item)
                if link is None:
                    await tx.put(result)
                    continue
                # link.put(result), inlined (the hot path)
                pending = link.pending
                pending.append(result)
                if link.hungry or len(pending) >= link.limit:
                    if link.shared:
                        await link._send_shared(False)
                        continue
                    link.hungry = False
                    link.pending = []
                    await link.chan.send(pending)
        except Exception as exc:  # run.guard(), inlined: one frame less on every resume
            self.run.fail(exc)

    async def work_ordered(self) -> None:
        """A worker of ``ordered=True``: results go on in input order."""
        _current.set(self.cur)
        self.starting -= 1
        call = self.call
        ticker = self.ticker
        queue = self.queue
        done = self.done
        window = self.window
        tx = self.tx
        link = tx if isinstance(tx, _Link) else None
        try:
            while True:
                seq = self.taken
                if not queue or seq - self.next_out >= window:
                    item = result = pending = None  # (waiting for input, hold no old items)
                    if not await self._refill():
                        return
                    continue
                self.taken = seq + 1
                item = queue.popleft()
                if self.spare:
                    self.grow()
                if ticker is not None:
                    ticker.job()
                result = await call(item)
                if seq != self.next_out or self.emitting:
                    # An earlier item is still running, or being sent on (that worker's
                    # loop picks this one up).
                    done[seq] = result
                    continue
                nxt = seq + 1
                if nxt not in done and link is not None and not self.room.parked:
                    # The oldest item and nothing finished after it (the common case on
                    # a FIFO scheduler): link.put(result), inlined.
                    self.next_out = nxt
                    pending = link.pending
                    pending.append(result)
                    if link.hungry or len(pending) >= link.limit:
                        self.emitting = True
                        try:
                            if link.shared:  # (a copy of fan_out: the copies take turns)
                                await link._send_shared(False)
                            else:
                                link.hungry = False
                                link.pending = []
                                await link.chan.send(pending)
                        finally:
                            self.emitting = False
                        if self.next_out in done:
                            await self._emit([])
                    continue
                await self._emit([result])
        except Exception as exc:  # run.guard(), inlined
            self.run.fail(exc)

    async def _emit(self, out: list[Any]) -> None:
        """Send on *out* (results up to ``next_out``) and every consecutive finished one."""
        done = self.done
        nxt = self.next_out + len(out)
        self.emitting = True
        try:
            while True:
                while nxt in done:
                    out.append(done.pop(nxt))
                    nxt += 1
                await self.tx.put_many(out)
                # Only now do they leave the window: while put_many() waits for room
                # downstream, the results in hand count, so the workers cannot take
                # another window's worth of items meanwhile (2 * n in hand, not 4 * n).
                self.next_out = nxt
                room = self.room
                if room.parked:
                    room.unpark(len(out))
                # Others may have finished while put_many() waited.
                if nxt not in done:
                    return
                out = []
        finally:
            self.emitting = False


def _no_spawn() -> object:
    raise AssertionError("the map pool spawned before its group was open")  # pragma: no cover


@overload
def map(  # noqa: A001 - the stage is called map, like Go's and aiostream's
    fn: Callable[[T], Awaitable[U]],
    *,
    workers: int = ...,
    ordered: bool = ...,
    executor: None = ...,
) -> TaskStage[T, U]: ...
@overload
@deprecated(
    "stages.map(fn, executor=...) runs sync functions: a fn returning an awaitable "
    "raises TypeError; drop executor= to await it on the event loop"
)
def map(  # noqa: A001
    fn: Callable[[T], Awaitable[U]],
    *,
    workers: int | None = ...,
    ordered: bool = ...,
    executor: Executor,
) -> TaskStage[T, U]: ...
@overload
def map(  # noqa: A001
    fn: Callable[[T], U],
    *,
    workers: int | None = ...,
    ordered: bool = ...,
    executor: Executor | None = ...,
) -> TaskStage[T, U]: ...
def map(  # noqa: A001
    fn: Callable[[T], Any],
    *,
    workers: int | None = None,
    ordered: bool = True,
    executor: Executor | None = None,
) -> TaskStage[T, Any]:
    """Apply *fn* to every item; with *workers*, to several items at once.

    *fn* may be sync or async. ``workers=n`` runs up to *n* calls concurrently in
    *n* worker tasks. ``ordered=True`` (the default) emits results in input order,
    holding at most ``2 * workers`` finished results back behind a slow one (so
    memory stays bounded); ``ordered=False`` emits each result as soon as it is
    ready. ``executor="thread"`` runs a sync *fn* in worker threads (blocking
    I/O), ``executor="process"`` in worker processes (CPU-bound work: real
    multi-core speed-up; *fn*, its items and results must be picklable, so *fn*
    must be a module-level function). *workers* defaults to 1, or to the number of
    CPUs with ``executor="process"``, or to ``min(32, CPUs + 4)`` with
    ``executor="thread"``. The first exception from *fn* stops the pipeline and
    is raised as itself. Cancellation: running calls are cancelled (a process
    call kills its worker process; a thread call runs to completion first).
    Go: a stage with ``n`` goroutines reading ``in`` (fan-out) and a fan-in of
    their results.

    Example:
        ```python
        async def fetch(n: int) -> int:
            await anyio.sleep(0.01)  # I/O
            return n * 10

        out = await (pipeline(range(20)) | stages.map(fetch, workers=10)).collect()
        assert out == [n * 10 for n in range(20)]  # 10 at a time, in input order
        ```

    Raises:
        TypeError: *fn* is not callable, *workers* is not an int, *ordered* is not a
            bool, an executor is given an async *fn* (or, when it runs, a *fn*
            returning an awaitable), or ``executor="process"`` a *fn* that does
            not pickle.
        ValueError: *workers* < 1, or an unknown *executor*.
    """
    if executor not in (None, "thread", "process"):
        raise ValueError(f"stages.map(executor={executor!r}): expected 'thread', 'process' or None")
    if executor is not None and is_async(fn):
        raise TypeError(
            f"stages.map(executor={executor!r}) runs sync functions; {_qualname(fn)} is "
            "async: drop executor= to run it on the event loop"
        )
    if not isinstance(ordered, bool):
        raise TypeError(f"stages.map() ordered must be a bool, not {type(ordered).__name__}")
    if inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"stages.map(fn): {_qualname(fn)} is an async generator function, which gives "
            "an iterator per item, not a value: use stages.flat_map(fn) to pass on what it "
            "yields"
        )
    if executor == "process":
        # Checked now, not when the first item reaches a worker process.
        try:
            pickle.dumps(fn)
        except Exception as exc:
            raise TypeError(
                f"stages.map(executor='process') needs a picklable, module-level function: "
                f"{_qualname(fn)} is not ({exc})"
            ) from exc
    if workers is None:
        if executor is None:
            workers = 1
        else:  # (os.cpu_count() is a system call: only when it is needed)
            cpus = os.cpu_count() or 1
            workers = cpus if executor == "process" else min(32, cpus + 4)
    _check_count(workers, "stages.map() workers")
    return _Map(fn, workers, ordered, executor)


@final
class _Filter(_Keeps[T]):
    __slots__ = ("_fn",)

    def __init__(self, pred: Callable[[T], Any]) -> None:
        self._fn = _Fn(pred, "filter")

    def __repr__(self) -> str:
        return f"stages.filter({_qualname(self._fn.fn)})"

    async def _direct(self, items: AsyncIterator[T], /) -> AsyncIterator[T]:
        w = self._fn
        async for item in items:
            if await w(item):
                yield item

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        w = self._fn
        pred = w.fn
        if w.is_async:
            while (batch := await rx.next_batch()) is not None:
                for item in batch:
                    if await pred(item):
                        await tx.put(item)
            return
        while (batch := await rx.next_batch()) is not None:
            keep = _call_each(pred, batch)
            if w.all_plain(keep):
                await tx.put_many(list(compress(batch, keep)))
                continue
            # Some verdicts are awaitables (see _Map._serial).
            await tx.put_many(list(compress(batch, await _settle_all(w, keep))))
            while (batch := await rx.next_batch()) is not None:
                for item in batch:
                    if await w(item):
                        await tx.put(item)


def filter(pred: Callable[[T], Any]) -> _Keeps[T]:  # noqa: A001
    """Pass on the items for which *pred* (sync or async) is true.

    Go: ``for n := range in { if pred(n) { out <- n } }``

    Example:
        ```python
        p = pipeline(range(10)) | stages.filter(lambda n: n % 3 == 0)
        assert await p.collect() == [0, 3, 6, 9]
        ```

    Raises:
        TypeError: *pred* is not callable.
    """
    return _Filter(pred)


@final
class _FlatMap(TaskStage[T, U]):
    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[T], Any]) -> None:
        self._fn = _Fn(fn, "flat_map")

    def __repr__(self) -> str:
        return f"stages.flat_map({_qualname(self._fn.fn)})"

    async def __call__(self, items: AsyncIterator[T], /) -> AsyncIterator[U]:
        w = self._fn
        async for item in items:
            many = await w(item)
            if isinstance(many, AsyncIterable):
                it = _aiter_of(many, w.fn)  # (its iterator is what to close: a generator)
                try:
                    async for x in it:
                        yield x
                finally:
                    await _aclose(it)
                    if it is not many:
                        await _aclose(many)
            else:
                for x in many:
                    yield x

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        w = self._fn
        while (batch := await rx.next_batch()) is not None:
            for item in batch:
                many = await w(item)
                if isinstance(many, AsyncIterable):
                    it = _aiter_of(many, w.fn)
                    try:
                        async for x in it:
                            await tx.put(x)
                    finally:
                        await _aclose(it)
                        if it is not many:
                            await _aclose(many)
                else:
                    for x in many:
                        await tx.put(x)


def flat_map(
    fn: Callable[[T], Iterable[U] | AsyncIterable[U] | Awaitable[Iterable[U] | AsyncIterable[U]]],
) -> TaskStage[T, U]:
    """Pass on every item of ``fn(item)``, a sync or async iterable, in order.

    *fn* may be async. An async generator *fn* returns is closed in the stage's task.
    Go: ``for n := range in { for _, m := range fn(n) { out <- m } }``

    Example:
        ```python
        p = pipeline(["a b", "c"]) | stages.flat_map(str.split)
        assert await p.collect() == ["a", "b", "c"]
        ```

    Raises:
        TypeError: *fn* is not callable.
    """
    return _FlatMap(fn)


@final
class _Batch(TaskStage[Any, list[Any]]):
    # Not generic: its __call__ is, so ``pipeline(range(3)) | stages.batch(...)`` is a
    # Pipeline[list[int]]; TaskStage[T, list[T]] would leave T to nothing in the factory's
    # arguments (Unknown to pyright).
    __slots__ = ("_size", "_timeout")

    def __init__(self, size: int, timeout: float | None) -> None:
        self._size = size
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"stages.batch({self._size}, timeout={self._timeout})"

    def __call__(self, items: AsyncIterator[T], /) -> AsyncIterator[list[T]]:
        if self._timeout is not None:
            raise TypeError(
                "stages.batch(timeout=...) waits for input with a deadline, which needs the "
                "pipeline runner: use it in pipeline(...) | stages.batch(...)"
            )
        return self._direct(items)

    async def _direct(self, items: AsyncIterator[T]) -> AsyncIterator[list[T]]:
        size = self._size
        buf: list[T] = []
        async for item in items:
            buf.append(item)
            if len(buf) >= size:
                yield buf
                buf = []
        if buf:
            yield buf

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        size = self._size
        timeout = self._timeout
        buf: list[Any] = []
        deadline = 0.0
        while True:
            if buf and timeout is not None:
                batch: list[Any] | object | None = _TIMED_OUT
                with CancelScope(deadline=deadline):
                    batch = await rx.next_batch()
                if batch is _TIMED_OUT:
                    # The oldest item has waited `timeout` seconds: send what we have.
                    await tx.put(buf)
                    buf = []
                    continue
            else:
                batch = await rx.next_batch()
            if batch is None:
                break
            assert isinstance(batch, list)
            for item in batch:
                if not buf and timeout is not None:
                    deadline = current_time() + timeout
                buf.append(item)
                if len(buf) >= size:
                    await tx.put(buf)
                    buf = []
        if buf:
            await tx.put(buf)


_TIMED_OUT = object()


def batch(size: int, timeout: float | None = None) -> _Batch:
    """Group items into lists of *size*; the last list may be shorter.

    With *timeout* (seconds), a list is also sent, short, once its first item has
    waited *timeout* seconds for the rest (on the backend's clock, so trio's
    ``MockClock`` drives it). Go: a loop ``select``-ing on ``in`` and a
    ``time.After(timeout)`` started at a batch's first item.

    Example:
        ```python
        assert await (pipeline(range(5)) | stages.batch(2)).collect() == [[0, 1], [2, 3], [4]]
        ```

    Raises:
        TypeError: *size* is not an int, or *timeout* is not a number or None.
        ValueError: *size* < 1, or *timeout* is negative or NaN.
    """
    _check_count(size, "stages.batch() size")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(
                f"stages.batch() timeout must be a number of seconds or None, "
                f"not {type(timeout).__name__}"
            )
        timeout = to_seconds(timeout)
        if not timeout >= 0:  # NaN too
            raise ValueError(f"stages.batch() timeout must be >= 0 seconds, not {timeout}")
    return _Batch(size, timeout)


@final
class _Take(TaskStage[Any, Any]):
    # Not generic: its __call__ is, so ``pipeline(range(3)) | stages.take(...)`` is a
    # Pipeline[int]; TaskStage[T, T] would leave T to nothing in the factory's
    # arguments (Unknown to pyright).
    __slots__ = ("_n",)

    def __init__(self, n: int) -> None:
        self._n = n

    def __repr__(self) -> str:
        return f"stages.take({self._n})"

    async def __call__(self, items: AsyncIterator[T], /) -> AsyncIterator[T]:
        left = self._n
        if left <= 0:
            return
        async for item in items:
            yield item
            left -= 1
            if not left:
                return

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        left = self._n
        while left > 0 and (batch := await rx.next_batch()) is not None:
            if len(batch) >= left:
                batch = batch[:left]
            left -= len(batch)
            await tx.put_many(batch)
        # Returning stops the stages before this one: they have no reader any more.


def take(n: int) -> _Take:
    """Pass on the first *n* items, then end the stream and stop the stages before.

    Go: ``for i := 0; i < n; i++ { out <- <-in }`` then ``cancel()`` upstream.

    Example:
        ```python
        async def naturals():
            n = 0
            while True:  # endless: take(3) stops it
                yield n
                n += 1

        assert await (pipeline(naturals) | stages.take(3)).collect() == [0, 1, 2]
        ```

    Raises:
        TypeError: *n* is not an int.
        ValueError: *n* is negative.
    """
    return _Take(_check_size(n, "stages.take() n", math.inf))


@final
class _Buffer:
    """An identity stage that sets the size of the link it sits on."""

    __slots__ = ("_asyncgo_buffer",)

    def __init__(self, n: int) -> None:
        self._asyncgo_buffer = n

    def __repr__(self) -> str:
        return f"stages.buffer({self._asyncgo_buffer})"

    def __call__(self, items: AsyncIterator[T], /) -> AsyncIterator[T]:
        return items


def buffer(n: int) -> _Buffer:
    """Let up to *n* items wait between the stage before and the stage after.

    It starts no task: it sets the size of that one link, instead of the
    pipeline's default (``pipeline(src, buffer=...)``). ``buffer(0)`` makes the
    two stages hand over each item directly (Go's unbuffered channel). Called
    directly, it returns its input. Go: ``make(chan T, n)``

    Example:
        ```python
        p = pipeline(range(3)) | stages.buffer(0) | stages.map(str)  # hand over one by one
        assert await p.collect() == ["0", "1", "2"]
        ```

    Raises:
        TypeError: *n* is not an int.
        ValueError: *n* is negative, or larger than ``sys.maxsize``.
    """
    return _Buffer(_check_size(n, "stages.buffer() n"))


@final
class Merge(TaskStage[T, T]):
    """The stage `merge` returns; also a pipeline source: ``pipeline(merge(a, b))``.

    Example:
        ```python
        assert sorted(await pipeline(stages.merge([1, 2], [3])).collect()) == [1, 2, 3]
        ```
    """

    __slots__ = ("_sources",)

    def __init__(self, sources: tuple[object, ...]) -> None:
        from ._pipeline import _source_kind

        for s in sources:
            _source_kind(s)
        self._sources = sources

    def __repr__(self) -> str:
        return f"stages.merge({', '.join(_qualname(s) for s in self._sources)})"

    if TYPE_CHECKING:
        # The input's items pass on too: ``Pipeline[int] | merge(strs)`` gives
        # ``int | str``. (At run time: TaskStage's, which raises TypeError.)
        def __call__(self, items: AsyncIterator[U], /) -> AsyncIterator[T | U]: ...

    def _never_ran(self) -> None:
        for source in self._sources:
            _never_ran(source)

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        async def forward() -> None:
            while (batch := await rx.next_batch()) is not None:
                await tx.put_many(batch)

        if isinstance(tx, _Link):
            tx.share()  # the input's forwarder and each source: they take turns
        async with create_task_group() as tg:
            tg.start_soon(run.guard, forward)
            for source in self._sources:
                tg.start_soon(run.guard, partial(feed, source, tx, run, shared=True))
        await tx.flush()


def merge(*sources: Source[T]) -> Merge[T]:
    """Fan in: pass on the stage's input and every item of each of *sources*.

    Each source (anything `pipeline()` accepts) is read by a task of its own;
    items from one source keep their order, items from different sources
    interleave as they come. The output ends when the input and every source have
    ended. As the first element of a pipeline, ``pipeline(stages.merge(a, b))``
    merges just *a* and *b*. Go: ``fanIn(chans ...<-chan int) <-chan int``

    Example:
        ```python
        got = await (pipeline(range(3)) | stages.merge([10, 11])).collect()
        assert sorted(got) == [0, 1, 2, 10, 11]
        ```

    Raises:
        TypeError: A source is of an unsupported type (also when called directly
            on an async iterator, outside a pipeline: merging needs tasks).
    """
    return Merge(sources)


@final
class _FanOut(TaskStage[T, U]):
    __slots__ = ("_n", "_stage")

    def __init__(self, n: int, stage: Stage[T, U]) -> None:
        self._n = n
        self._stage = stage

    def __repr__(self) -> str:
        return f"stages.fan_out({self._n}, {_qualname(self._stage)})"

    def _never_ran(self) -> None:
        _never_ran(self._stage)

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        # The copies share one queue of single items (the link hands over lists), so
        # an idle copy takes the next item instead of a busy one holding a list.
        shared = _SharedInput(rx, self._n)
        if self._n > 1 and isinstance(tx, _Link):
            tx.share()  # every copy sends its own output: they take turns
        async with create_task_group() as tg:
            for _ in range(self._n):
                tg.start_soon(run.guard, partial(_run_copy, self._stage, shared, tx, run))
        if shared.queue:
            # Every copy ended before the input (take(n)): what is left goes back.
            rx.unread(list(shared.queue))
        await tx.flush()

    async def _join(self, shared: _SharedInput, tx: _Sink, run: _Run) -> None:
        """Run as a copy of an enclosing fan_out: these copies become its copies.

        An input of our own between the two would hold items its copies were handed
        but did not use while the enclosing one, seeing this copy ask for more,
        decided that the input was over for every copy: those items were lost. So
        nested fan_outs share one input, flat: each of our copies counts as one of
        its copies (and leaves it when it ends).
        """
        shared.alive += self._n - 1
        if self._n > 1 and isinstance(tx, _Link):
            tx.share()
        async with create_task_group() as tg:
            for _ in range(self._n):
                tg.start_soon(run.guard, partial(_run_copy, self._stage, shared, tx, run))


async def _run_copy(stage: Stage[Any, Any], shared: _SharedInput, tx: _Sink, run: _Run) -> None:
    if isinstance(stage, _FanOut):
        await stage._join(shared, tx, run)  # its copies leave *shared* themselves
        return
    try:
        if isinstance(stage, TaskStage):
            # A built-in stage, or the input pump of a TaskStage's run(), reads the
            # shared input as a link: one item per next_batch(), taken when asked for,
            # and what it took but did not use when it ends goes back (unread) to the
            # other copies. No task of ours in between, which would hold an item.
            await stage._run(shared, tx, run)
            return
        src = shared.items()
        try:
            it = _aiter_of(stage(src), stage)
            try:
                async for item in it:
                    await tx.put(item)
            finally:
                await _aclose(it)
        finally:
            await src.aclose()
    finally:
        shared.leave()


_EOF: Any = object()  # _SharedInput.take(): the input has ended


@final
class _SharedInput(_Link):
    """`fan_out`'s input: one link read by several copies, one item at a time.

    The items are read from the stage's input link *rx* a list at a time into
    `queue`, by one copy while the others park on `more`, and handed out one by
    one, only when a copy asks. To a copy that is a built-in stage it is a link
    (`next_batch` returns a list of one item), so a copy that ends early never
    holds items it did not ask for, and those it was handed but did not use come
    back through `unread` to the front of the queue, for the other copies. So the
    end of the input is final only once every copy still running asks for more
    (or has ended): until then, a copy that finds the input over waits, in case
    another one gives items back.
    """

    __slots__ = ("alive", "at_end", "done", "eof", "fetching", "more", "queue", "rx")

    def __init__(self, rx: _Link, copies: int) -> None:
        super().__init__(0)
        self.rx = rx
        self.queue: deque[Any] = deque()
        self.fetching = False
        self.eof = False  # rx has ended
        self.done = False  # ... and no copy can give items back: every take() ends
        self.alive = copies  # copies not ended yet
        self.at_end = 0  # copies waiting in take() after eof
        self.more = _Lot()  # copies waiting for the one fetching, or after eof

    def __repr__(self) -> str:
        return f"<fan_out input of {self.rx!r}>"

    async def take(self) -> Any:
        """The next item, or `_EOF`. Cancellation-safe: a cancelled call took nothing."""
        queue = self.queue
        more = self.more
        while not queue:
            if self.eof:
                if self.done or self.at_end + 1 >= self.alive:
                    self._finish()
                    return _EOF
                self.at_end += 1
                try:
                    await more.park()
                finally:
                    self.at_end -= 1
                continue
            if self.fetching:
                await more.park()
                continue
            self.fetching = True
            try:
                batch = await self.rx.next_batch()
            except BaseException:
                # This copy is cancelled (it ended, or the run stops) while the
                # others wait for it to fetch: one of them takes over.
                more.unpark(1)
                raise
            finally:
                self.fetching = False
            if batch is None:
                self.eof = True
                more.unpark(more.parked)  # every waiting copy: to wait for the end
                continue
            queue.extend(batch)
            # One more than the items left after ours: this copy may not ask again
            # (a copy can end at any item), so one waiting copy must go on fetching.
            more.unpark(len(batch))
        return queue.popleft()

    async def next_batch(self) -> list[Any] | None:
        item = await self.take()
        return None if item is _EOF else [item]

    async def items(self) -> AsyncGenerator[Any, None]:
        take = self.take
        while (item := await take()) is not _EOF:
            yield item

    def unread(self, items: list[Any]) -> None:
        self.queue.extendleft(reversed(items))
        more = self.more
        if more.parked:
            more.unpark(len(items))

    def leave(self) -> None:
        """A copy has ended: it gives nothing back any more."""
        self.alive -= 1
        # Not while items wait in the queue: a copy woken to take one still counts
        # in at_end until it runs (the input would end with items in it).
        if self.eof and not self.queue and self.at_end and self.at_end >= self.alive:
            self._finish()

    def _finish(self) -> None:
        self.done = True
        more = self.more
        more.unpark(more.parked)


@overload
def fan_out(n: int, stage: _Keeps[T]) -> _Keeps[T]: ...
@overload
def fan_out(n: int, stage: Stage[T, U]) -> TaskStage[T, U]: ...
def fan_out(n: int, stage: Stage[T, U]) -> TaskStage[T, U]:
    """Run *n* copies of *stage*, each in its own task, sharing the input.

    Each item goes to exactly one copy (whichever asks first: load balancing); the
    copies' outputs are merged (fan-in), so the output order is not the input
    order. A copy that ends early (``take(k)``, a stage that returns) leaves every
    item it did not take to the others (so the input ends for the copies together,
    once each one still running has asked for more); the stage ends when all
    copies have. Use it for a stage that keeps state per worker (a connection, a
    session); for a plain function, ``map(fn, workers=n)`` is simpler.
    Go: ``fanOut(ctx, in, n)`` then ``fanIn(ctx, workers...)``

    Example:
        ```python
        async def worker(items):  # one copy per task: state here is per worker
            async for n in items:
                await anyio.sleep(0.01)
                yield n * n

        got = await (pipeline(range(6)) | stages.fan_out(3, worker)).collect()
        assert sorted(got) == [0, 1, 4, 9, 16, 25]
        ```

    Raises:
        TypeError: *n* is not an int, or *stage* is not callable (or is a
            `stages` factory not called).
        ValueError: *n* < 1.
    """
    _check_count(n, "stages.fan_out() n")
    if not callable(stage):
        raise TypeError(f"stages.fan_out() needs a stage, not {type(stage).__name__}")
    _refuse_factory(stage)
    return _FanOut(n, stage)


@final
class _Tee(_Keeps[T]):
    __slots__ = ("_running", "_sinks")

    def __init__(self, sinks: tuple[Stage[T, Any] | SendChan[T], ...]) -> None:
        for sink in sinks:
            if not (isinstance(sink, SendChan) or callable(sink)):
                raise TypeError(
                    f"stages.tee() sinks are stages or channels, not {type(sink).__name__}"
                )
            _refuse_factory(sink)
        self._sinks = sinks
        # Runs of this tee not ended yet: the copies of fan_out(n, tee(ch)) share
        # its channel sinks, which only the last one to end closes.
        self._running = 0

    def __repr__(self) -> str:
        return f"stages.tee({', '.join(_qualname(s) for s in self._sinks)})"

    def _never_ran(self) -> None:
        for sink in self._sinks:
            if isinstance(sink, SendChan):
                if not self._running and not sink.closed:
                    sink.close()
            else:
                _never_ran(sink)

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        size = tx.size if isinstance(tx, _Link) else rx.size
        chans = [s for s in self._sinks if isinstance(s, SendChan)]
        sinks = [s for s in self._sinks if not isinstance(s, SendChan)]
        links = [_Link(size) for _ in sinks]
        error: Exception | None = None
        self._running += 1
        async with create_task_group() as tg:
            for sink, link in zip(sinks, links, strict=True):
                tg.start_soon(run.guard, partial(_to_sink, sink, link, run))
            try:
                while (batch := await rx.next_batch()) is not None:
                    for link in links:
                        await link.put_many(batch)
                    if chans:
                        await _to_chans(chans, batch, tx)
                    else:
                        await tx.put_many(batch)
                for link in links:
                    await link.flush()
            except Exception as exc:  # e.g. a sink closed by its owner: ChanClosed
                error = exc  # raised as itself below, not in an ExceptionGroup
                tg.cancel_scope.cancel()
            finally:
                for link in links:
                    link.close()
                self._running -= 1
                if not self._running:  # (else another copy of it still sends)
                    for ch in chans:
                        if not ch.closed:
                            ch.close()
        if error is not None:
            raise error
        await tx.flush()


async def _to_sink(sink: Stage[Any, Any], link: _Link, run: _Run) -> None:
    await run_stage(sink, link, _NullLink(), run)
    # The sink ended before its input (e.g. take(n)): keep the tee from blocking on it.
    while await link.next_batch() is not None:
        pass


async def _to_chans(chans: list[SendChan[Any]], batch: list[Any], tx: _Sink) -> None:
    """Hand each item of *batch* to every channel sink, and downstream (*tx*).

    Go's tee: every output gets item i before item i+1 is read. A sink that can take
    an item at once gets it before downstream does, so however the stream stops, a
    channel sink with room holds every item that went downstream. An item a full
    sink cannot take goes downstream first (Go's ``select`` over all the outputs),
    then the tee waits until every full sink has it: a stuck sink stalls downstream
    (backpressure), and a consumer that reads downstream, then the sink, in one task
    (Go's lockstep ``for v := range out1 { <-out2 }``) works even when unbuffered.
    """
    start = 0  # batch[:start] is downstream already
    for i, item in enumerate(batch):
        full: list[SendChan[Any]] | None = None
        for ch in chans:
            try:
                ch.send_nowait(item)
            except WouldBlock:
                full = [ch] if full is None else [*full, ch]
        if full is not None:
            await tx.put_many(batch[start : i + 1])
            start = i + 1
            if len(full) == 1:
                await full[0].send(item)
            else:  # whichever sink is read first, like Go's select
                cases = [send_case(ch, item) for ch in full]
                while cases:
                    del cases[(await select(*cases)).index]
    if start < len(batch):
        await tx.put_many(batch[start:] if start else batch)


def tee(*sinks: Stage[T, Any] | SendChan[T]) -> _Keeps[T]:
    """Broadcast: give every item to each of *sinks* and pass it on downstream.

    A sink is a stage (run in its own task; its output is discarded) or a
    `SendChan` (every item is sent on it; the tee closes it when the stream ends
    or stops -- in ``fan_out(n, tee(ch))``, when the last copy ends). Every
    sink sees every item, in order; the slowest sink sets the pace (no item is
    dropped). Like Go's tee, every output gets an item before the next one is
    read, and a channel sink that has room gets it before downstream does: when
    the stream stops early, such a sink holds every item that went downstream.
    An item a full channel sink cannot take at once goes downstream first, then
    the tee waits for the sink, so reading downstream and then the sink in one
    task works even with an unbuffered sink. Go: a
    ``tee``/broadcast goroutine ``select``-ing to send each value to every output.

    Example:
        ```python
        audit = Chan[int](10)
        assert await (pipeline(range(3)) | stages.tee(audit)).collect() == [0, 1, 2]
        assert [x async for x in audit] == [0, 1, 2]  # the tee closed it at the end
        ```

    Raises:
        TypeError: A sink is neither a stage nor a channel (also when called
            directly on an async iterator, outside a pipeline).
    """
    return _Tee(sinks)


broadcast = tee


@final
class _RateLimit(TaskStage[Any, Any]):
    # Not generic: its __call__ is, so ``pipeline(range(3)) | stages.rate_limit(...)`` is a
    # Pipeline[int]; TaskStage[T, T] would leave T to nothing in the factory's
    # arguments (Unknown to pyright).
    __slots__ = ("_limiter",)

    def __init__(self, limiter: Limiter) -> None:
        if not callable(getattr(limiter, "wait", None)):
            raise TypeError(
                f"stages.rate_limit() needs a limiter with `async wait(n, ctx)`, "
                f"not {type(limiter).__name__}"
            )
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"stages.rate_limit({self._limiter!r})"

    async def __call__(self, items: AsyncIterator[T], /) -> AsyncIterator[T]:
        wait = self._limiter.wait
        async for item in items:
            await wait(1)
            yield item

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        wait = self._limiter.wait
        ctx = run.ctx
        while (batch := await rx.next_batch()) is not None:
            for item in batch:
                if ctx is None:
                    await wait(1)
                else:
                    if not await _wait_or_refused(wait, ctx):
                        # The limiter failed fast: its next token comes after the
                        # deadline (Go's Limiter.Wait). The pipeline still runs until
                        # then, and ends with ctx.err() like any other stage.
                        await ctx.wait()
                        err = ended(ctx)
                        assert err is not None
                        raise err
                await tx.put(item)


async def _wait_or_refused(wait: Callable[..., Awaitable[None]], ctx: Context) -> bool:
    """``await wait(1, ctx)``; False if it refused at once for *ctx*'s deadline."""
    try:
        await wait(1, ctx)
    except DeadlineExceeded as e:
        err = ctx.err()
        if err is not None and err is not e:
            # The deadline has passed by now (perhaps just after a refusal that
            # counted on the time before it): the run ends with ctx's own error.
            raise err from None
        if err is not None or ctx.deadline() is None:
            raise  # ctx's error itself, or not ours to judge
        return False
    return True


def rate_limit(limiter: Limiter) -> _RateLimit:
    """Pass items on no faster than *limiter* allows: ``await limiter.wait(1, ctx)`` each.

    *limiter* is an `asyncgo.rate.Limiter` or anything with the same ``wait``;
    inside a pipeline run with a ctx, that ctx is passed on. When the limiter
    refuses at once because its next token would come after the ctx's deadline
    (`DeadlineExceeded` while ``ctx.err()`` is still None, as ``rate.Limiter``
    does), the stage waits for the deadline instead: items already through keep
    flowing until then, and the pipeline ends with ``ctx.err()``, as on any
    deadline. Go: ``limiter.Wait(ctx)`` before each ``out <- v``

    Example:
        ```python
        limiter = rate.Limiter(1000, 5)  # 1000 items/s after a burst of 5
        assert await (pipeline(range(10)) | stages.rate_limit(limiter)).collect() == list(range(10))
        ```

    Raises:
        TypeError: *limiter* has no ``wait`` method.
    """
    return _RateLimit(limiter)


@final
class _Tap(_Keeps[T]):
    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[T], Any]) -> None:
        self._fn = _Fn(fn, "tap")

    def __repr__(self) -> str:
        return f"stages.tap({_qualname(self._fn.fn)})"

    async def _direct(self, items: AsyncIterator[T], /) -> AsyncIterator[T]:
        w = self._fn
        async for item in items:
            await w(item)
            yield item

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        w = self._fn
        fn = w.fn
        if w.is_async:
            while (batch := await rx.next_batch()) is not None:
                for item in batch:
                    await fn(item)
                    await tx.put(item)
            return
        while (batch := await rx.next_batch()) is not None:
            results = _call_each(fn, batch)
            if not w.all_plain(results):
                # Some results are awaitables (see _Map._serial).
                await _settle_all(w, results)
                await tx.put_many(batch)
                while (batch := await rx.next_batch()) is not None:
                    for item in batch:
                        await w(item)
                        await tx.put(item)
                return
            await tx.put_many(batch)


def tap(fn: Callable[[T], Any]) -> _Keeps[T]:
    """Call *fn* (sync or async) on every item for its side effect; pass the item on.

    Go: ``for n := range in { log(n); out <- n }``

    Example:
        ```python
        seen: list[int] = []
        assert await (pipeline(range(3)) | stages.tap(seen.append)).collect() == [0, 1, 2]
        assert seen == [0, 1, 2]
        ```

    Raises:
        TypeError: *fn* is not callable.
    """
    return _Tap(fn)


# -- helpers -----------------------------------------------------------------------

_FACTORIES.update(
    {
        id(factory): f"stages.{name} is a stage factory: call it, e.g. stages.{name}({args})"
        for factory, name, args in [
            (map, "map", "fn"),
            (filter, "filter", "pred"),
            (flat_map, "flat_map", "fn"),
            (tap, "tap", "fn"),
            (take, "take", "n"),
            (batch, "batch", "size"),
            (buffer, "buffer", "n"),
            (merge, "merge", "*sources"),
            (tee, "tee", "*sinks"),
            (rate_limit, "rate_limit", "limiter"),
            (fan_out, "fan_out", "n, stage"),
        ]
    }
)


def _check_count(n: int, what: str) -> int:
    """*n* as a count of at least 1: an int >= 1 (`_check_size` allows 0)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int >= 1, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{what} must be >= 1, not {n}")
    return n


async def _aclose(it: object) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


def _qualname(obj: object) -> str:
    name = getattr(obj, "__qualname__", None)
    return name if isinstance(name, str) else repr(obj)


def _worker_name(f: FrameType) -> str:
    """A map worker's name in a task dump (`_backend._tasks.TASK_NAMERS`)."""
    pool = f.f_locals.get("self")
    return f"{pool.stage!r} worker" if isinstance(pool, _Pool) else "stages.map worker"


TASK_NAMERS[_Pool.work_ordered.__code__] = _worker_name
TASK_NAMERS[_Pool.work_unordered.__code__] = _worker_name

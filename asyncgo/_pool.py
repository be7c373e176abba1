"""WorkerPool: a bounded job queue served by long-lived worker tasks (issue #7).

Workers are started once and pull jobs from a `Chan`, so starting a job costs a
channel receive, never a task spawn (Go's worker pool: ``for j := range jobs``).
The pool scales between ``min_workers`` and ``max_workers``: `submit` starts a
worker when the queue has a backlog and no worker is idle; a worker that finds
no job for ``idle_timeout`` seconds exits while more than ``min_workers`` run.

Every worker runs inside its own cancel scope, so a shutdown timeout cancels
the jobs, never the code that called `shutdown`, and `JobHandle.cancel` cancels
the one job its worker is running (that worker then exits and a new one takes
its place). The workers are spawned by the native task-group core `Group` uses
(``asyncgo._backend._taskgroup``: the loop's own ``create_task``, or a trio
nursery), which costs less than an anyio task group's spawn: starting and
stopping 100 workers takes about two thirds of the time on asyncio and uvloop.

The hot path, per job: the submitter appends the handle to the channel's buffer
(or hands it to a parked worker); a worker that finishes a job takes the next
one from the buffer without yielding, runs it in its own frame (no task, no
cancel scope, no coroutine of ours per job) and sets the handle's result, which
wakes an awaiting consumer only if it parked. The counters behind `stats` are
plain integers updated at each transition, so ``submitted == done + failed +
cancelled + queued + running`` holds at every moment.
"""

from __future__ import annotations

import inspect
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
)
from contextvars import Context as _VarContext
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from functools import partial
from inspect import isawaitable as _isawaitable
from threading import get_ident as _get_ident
from types import CoroutineType as _Coroutine
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, TypeVarTuple, cast, final, overload

from ._backend import (
    NOT_CLAIMED,
    CancelScope,
    _diag,
    _ticker,
    abandon,
    anyio,
    cancel_pending,
    checkpoint,
    get_cancelled_exc_class,
    must_checkpoint,
    new_parker,
    park_runtime,
    rescue,
    runtime,
)
from ._backend import to_thread as _to_thread
from ._backend._taskgroup import PENDING, Core, checkpoint_if_cancelled, make_core
from ._backend._timers import Runtime, elsewhere, runtime_or_none
from ._chan import Chan
from ._context import Context, check_ctx
from ._exceptions import (
    Canceled,
    ChanClosed,
    WouldBlock,
    call_sync,
    check_sync_callable,
    is_async,
    raise_shared,
    run_in_process,
    stray_cancellation,
)
from .debug import _LABELS
from .time import _seconds

__all__ = ["JobCancelled", "JobHandle", "PoolClosed", "PoolStats", "WorkerPool"]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

Executor = Literal["thread", "process"]

# Job states, in order: a handle is done() from _DONE on.
# _NEW: made by submit, not yet accepted by the queue (the submit may still wait for room).
# _CANCELLING: JobHandle.cancel() was called while it ran; it ends _CANCELLED once unwound.
_NEW, _QUEUED, _RUNNING, _CANCELLING, _DONE, _FAILED, _CANCELLED = range(7)
_STATE_NAMES = ("new", "queued", "running", "cancelling", "done", "failed", "cancelled")

_BY_CANCEL = "job cancelled by JobHandle.cancel()"

#: The pool whose worker runs the current task (set once per worker task, inherited
#: by the tasks a job starts): `WorkerPool.shutdown` there would wait for itself.
_serving: ContextVar[WorkerPool | None] = ContextVar("asyncgo_pool_worker", default=None)

# debug.labels(): a job runs with the labels in force where it was submitted (the
# handle keeps them), in place of its worker's; an idle worker shows the labels in
# force where the pool was entered. (With no labels anywhere, every one of these is
# the same empty mapping: a get per submit and per job, never a set.)
_labels_get = _LABELS.get
_labels_set = _LABELS.set


_EXECUTOR_ADVICE = "submit async functions to a pool without executor="


class PoolClosed(Exception):
    """Raised by `WorkerPool.submit` (and `map`) once the pool stops taking jobs.

    Example:
        ```python
        async with WorkerPool(workers=2) as pool:
            await pool.shutdown()
            try:
                await pool.submit(anyio.sleep, 0)
            except PoolClosed as e:
                print(e)  # submit to a closed WorkerPool
        ```
    """


class JobCancelled(Canceled):
    """A `WorkerPool` job was cancelled; raised by ``await handle`` and ``handle.result()``.

    The message says who cancelled it: `JobHandle.cancel`, a shutdown timeout,
    the pool's ``ctx``, ``fail_fast`` or the pool's block ending with an error.
    A `Canceled` (so ``except Canceled`` still catches it), never the backend's
    own cancellation exception: awaiting a cancelled job does not cancel the
    task that awaits it. Python: ``concurrent.futures.CancelledError``.

    Example:
        ```python
        async with WorkerPool(workers=1) as pool:
            h = await pool.submit(anyio.sleep, 3600)
            h.cancel()
            try:
                await h
            except JobCancelled as e:
                print(e)  # job cancelled by JobHandle.cancel()
        ```
    """


@final
@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a `WorkerPool`'s counters (`WorkerPool.stats`).

    At every moment ``submitted == done + failed + cancelled + queued + running``.

    Attributes:
        submitted: Jobs accepted by `submit` / `try_submit` / `map`.
        running: Jobs running now (a job being cancelled counts here until it has unwound).
        queued: Jobs waiting to start (a job cancelled while queued leaves this count at once).
        done: Jobs that returned a result.
        failed: Jobs that raised an exception.
        cancelled: Jobs cancelled by `JobHandle.cancel`, a shutdown timeout, ``ctx``
            or ``fail_fast``.
        workers: Worker tasks alive now.

    Example:
        ```python
        async with WorkerPool(workers=2) as pool:
            for _ in range(5):
                await pool.submit(anyio.sleep, 0)
            s = pool.stats()
            assert s.submitted == s.done + s.failed + s.cancelled + s.queued + s.running
        print(pool.stats())  # PoolStats(submitted=5, running=0, queued=0, done=5, ...)
        ```
    """

    submitted: int
    running: int
    queued: int
    done: int
    failed: int
    cancelled: int
    workers: int


@final
class JobHandle(Generic[R_co]):
    """The result of one submitted job: ``await handle`` returns it or raises its error.

    A job that raised fails its own handle only (the error is raised by ``await
    handle``, as itself). A cancelled job -- by `cancel`, a shutdown timeout,
    ``ctx`` or ``fail_fast`` -- raises `JobCancelled`. Awaiting is a cancel point;
    cancelling the awaiting task does not cancel the job (call `cancel` for that).
    Go: the ``results`` channel of a worker pool, one slot per job.

    Example:
        ```python
        async def double(x: int) -> int:
            await anyio.sleep(0)
            return 2 * x

        async with WorkerPool(workers=4) as pool:
            h = await pool.submit(double, 21)
            assert await h == 42
            slow = await pool.submit(anyio.sleep, 3600)
            assert slow.cancel()
            try:
                await slow
            except Canceled:  # JobCancelled, a Canceled
                pass
        ```
    """

    __slots__ = (
        "_args",
        "_exc",
        "_fn",
        "_labels",
        "_meta",
        "_on_done",
        "_pool",
        "_result",
        "_scope",
        "_state",
        "_waiters",
    )

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], pool: WorkerPool) -> None:
        self._fn = fn
        self._args = args
        self._pool = pool
        self._state = _NEW
        self._result: Any = None
        self._exc: BaseException | None = None
        self._waiters: list[Any] | None = None
        self._on_done: Callable[[JobHandle[R_co]], None] | None = None
        self._scope: _Worker | None = None  # the worker that runs the job
        self._meta: Any = None  # free for instrumentation (contrib.otel: the trace context)
        self._labels = _labels_get()  # debug.labels() of the submitter: the job runs with them

    def __repr__(self) -> str:
        return (
            f"<JobHandle {getattr(self._fn, '__name__', self._fn)!s} {_STATE_NAMES[self._state]}>"
        )

    def done(self) -> bool:
        """Return True once the job has finished: result, error or cancelled."""
        return self._state >= _DONE

    def running(self) -> bool:
        """Return True while a worker runs the job (also while a cancelled job unwinds)."""
        return self._state == _RUNNING or self._state == _CANCELLING

    def cancelled(self) -> bool:
        """Return True if the job was cancelled (and, if it was running, has unwound)."""
        return self._state == _CANCELLED

    def cancel(self) -> bool:
        """Cancel the job; return False if it had already finished with a result or an error.

        A queued job is cancelled at once: it never runs, and the handle is done
        (it keeps its slot in the bounded queue until a worker reaches and skips
        it, as in ``concurrent.futures``).
        A running job is cancelled at its next checkpoint (its worker's cancel
        scope); the handle is done once the job has unwound, whatever it then
        returns or raises -- ``await handle`` waits for that. Either way,
        ``await handle`` then raises `JobCancelled`, and ``stats().cancelled``
        counts the job. Idempotent: True again for a job already cancelled.
        A job in a worker thread (``executor="thread"``) cannot be interrupted: it
        runs to its end (the handle is done then), and its result is dropped; a
        process job's worker process is killed (anyio's ``to_process`` rule).
        Never waits.
        Python: ``concurrent.futures.Future.cancel()``, which also returns a bool
        (but cannot cancel a running job); Go: cancelling the job's context.

        Example:
            ```python title="fragment"
            h = await pool.submit(crawl, url)
            h.cancel()  # True: queued -> never runs; running -> cancelled at its next await
            await h  # raises JobCancelled (once a running job has unwound)
            ```
        """
        state = self._state
        if state >= _DONE:
            return state == _CANCELLED
        if state == _CANCELLING:
            return True
        if state == _RUNNING:
            self._state = _CANCELLING
            worker = self._scope
            if worker is not None:
                worker.cancel_job()
            return True
        self._pool._cancel_queued(self, JobCancelled(_BY_CANCEL))
        return True

    def result(self) -> R_co:
        """Return the job's result without waiting.

        Raises:
            WouldBlock: The job has not finished yet.
            JobCancelled: The job was cancelled.
            Exception: The job's own exception, as itself.
        """
        state = self._state
        if state == _DONE:
            return self._result  # type: ignore[no-any-return]
        if state < _DONE:
            raise WouldBlock("job has not finished")
        assert self._exc is not None
        # The same exception each time, with the job's own traceback (raised as it
        # is, it would grow by every caller's frames) and its own __context__.
        raise_shared(self._exc, self._result)

    def exception(self) -> BaseException | None:
        """Return the job's exception (`JobCancelled` if cancelled), None if it succeeded.

        Raises:
            WouldBlock: The job has not finished yet.
        """
        if self._state < _DONE:
            raise WouldBlock("job has not finished")
        return self._exc

    async def wait(self) -> R_co:
        """Wait for the job to finish and return its result (same as ``await handle``).

        Go: ``r := <-results``

        Raises:
            JobCancelled: The job was cancelled.
            Exception: The job's own exception, as itself.
        """
        return await self

    def __await__(self) -> Generator[Any, None, R_co]:
        # A generator, not a coroutine: awaiting a finished handle (the common case
        # when results are collected after submitting) costs no coroutine object.
        # (A finished handle is a value: like result(), any thread may read it.)
        if self._state < _DONE and cancel_pending(self._pool):
            # A cancellation on its way (asyncio delivers it a step late): take it
            # before waiting, or a job finishing meanwhile would be our result.
            yield from checkpoint().__await__()
        if self._state < _DONE:
            yield from self._park()
        elif must_checkpoint(self._pool):
            yield from checkpoint().__await__()
        return self.result()

    def _park(self) -> Generator[Any, None, None]:
        # A generator too, not a coroutine: ``yield from coro.__await__()`` would put
        # a coroutine wrapper in the await stack, which hides this frame (and the
        # parker it holds) from asyncgo.debug's discovery of parks made before
        # diagnostics were on (a park site: debug._PARK_SITES).
        # The handle is finished by a worker on the pool's loop, which wakes the
        # parked task with that loop's calls: a task of another loop would never
        # wake (asyncio), or break the pool's loop (trio).
        pool = self._pool
        if _get_ident() != pool._tid:  # (first: park_runtime would re-point the hint)
            pool._wrong_loop("await of a JobHandle")
        rt = park_runtime(pool)  # the runtime of this thread's running loop
        if rt is not pool._home:  # (trio's is not its runtime: the exact check)
            pool._check_loop("await of a JobHandle")
        p = new_parker(rt)
        ws = self._waiters
        if ws is None:
            ws = self._waiters = []
        ws.append(p)
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(p, self, "job wait")
        try:
            yield from p.__await__()
        except BaseException as exc:
            if rescue(p, exc) is NOT_CLAIMED:
                abandon(p)
                if p in ws:
                    ws.remove(p)
                raise
        finally:
            if tracer is not None:
                tracer.unparked(p)

    def _finish(self, state: int, value: Any, exc: BaseException | None) -> None:
        self._state = state
        # (A failed job's result slot keeps its exception's own traceback: result()
        # re-raises the exception with it alone.)
        self._result = value if exc is None else exc.__traceback__
        self._exc = exc
        self._args = None  # type: ignore[assignment]
        self._scope = None
        ws = self._waiters
        if ws is not None:
            self._waiters = None
            for p in ws:
                if not p.done():
                    p.set_result(None)
        if self._on_done is not None:
            self._on_done(self)


class _Crew:
    """The pool's tasks as one group for the native task-group core (`_GroupLike`).

    A task that raises (a job's KeyboardInterrupt, or a bug) ends the block like
    in a task group: everything is cancelled and the exit raises it, as itself.
    """

    __slots__ = ("_cut", "_limit", "core", "error")

    core: Core  # set once made (make_core needs the crew)

    def __init__(self) -> None:
        self._limit: int | None = None  # (no Group.limit: _release is never called)
        self._cut = False
        self.error: BaseException | None = None

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self.core.abort()

    def _release(self) -> None:  # pragma: no cover - no limit
        pass


class _Member:
    """A pool task's outcome slot for the core (`_HandleLike`); nobody waits on it."""

    __slots__ = ("_state", "_task", "_tb", "_value", "_waiters")

    def __init__(self) -> None:
        self._state = PENDING
        self._value: object = None
        self._tb: TracebackType | None = None
        self._waiters: list[Any] | None = None
        self._task: Any = None

    def _wake(self) -> None:  # pragma: no cover - _waiters is always None
        pass


class _Worker:
    """One worker task: how to cancel it, and whether a new worker must replace it."""

    __slots__ = ("replace", "scope")

    def __init__(self) -> None:
        self.scope: CancelScope | None = None  # entered by the worker
        self.replace = False

    def stop(self) -> None:
        """Cancel the worker task (whatever it is running)."""
        if self.scope is not None:
            self.scope.cancel()

    def cancel_job(self) -> None:
        """Cancel the job it runs; a new worker takes this one's place."""
        self.replace = True
        self.stop()


def _check_ints(where: str, **counts: int | None) -> None:
    for name, v in counts.items():
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise TypeError(f"{where}: {name} must be an int, not {type(v).__name__}")


def _wake_up_call() -> None:  # pragma: no cover - never run (see WorkerPool.resize)
    pass


@final
class WorkerPool:
    """A pool of worker tasks serving a bounded job queue, entered with ``async with``.

    ``async with WorkerPool(workers=10) as pool: h = await pool.submit(fn, x)``;
    ``await h`` gives the result; ``h.cancel()`` cancels that one job. `submit`
    waits while the queue is full (backpressure). Leaving the block is a
    graceful `shutdown`: intake stops, queued and running jobs finish, workers
    exit. If the block raises (or is cancelled), the pool is aborted instead:
    queued and running jobs are cancelled. A job's exception fails that job's
    handle only (counted in ``stats().failed``) unless ``fail_fast=True``: then
    the first failure aborts the pool and is raised, as itself, when the block
    is left. With ``executor="thread"`` or ``"process"``, *fn* is a sync
    callable run in a worker thread or process; without one, a sync callable
    runs on the event loop (like a pipeline stage).

    Scaling: ``workers`` fixes the count; ``min_workers`` / ``max_workers`` make it
    dynamic (``workers`` is then the initial count, default ``min_workers``). A
    submit that finds a backlog and no idle worker starts one (up to
    ``max_workers``); a worker idle for ``idle_timeout`` seconds exits while more
    than ``min_workers`` run. ``queue_size`` defaults to the maximum worker count.
    When *ctx* is done, the pool is aborted. *on_progress* is called with
    `stats()` after every job that ends: returns, raises or is cancelled.
    The pool belongs to the event loop (and thread) that entered it: `submit`,
    `try_submit`, `map` or awaiting an unfinished handle from another one raises
    `RuntimeError`.

    Cost: a job costs one channel send and one receive (workers are long-lived);
    a worker that finishes a job takes the next queued one without yielding.
    Starting (and joining) a worker costs a native task (the loop's
    ``create_task``, or a trio nursery's): about 9 µs on asyncio, 17 µs on trio
    (``docs/worker-pools.md``).
    Go: a ``jobs`` channel ranged over by N goroutines, plus a ``sync.WaitGroup``.

    Example:
        ```python
        async def square(x: int) -> int:
            await anyio.sleep(0.001)  # stands for an I/O call
            return x * x

        async with WorkerPool(workers=10) as pool:
            handles = [await pool.submit(square, x) for x in range(100)]
            assert [await h for h in handles] == [x * x for x in range(100)]
            assert [r async for r in pool.map(square, range(5))] == [0, 1, 4, 9, 16]
        ```
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        queue_size: int | None = None,
        min_workers: int | None = None,
        max_workers: int | None = None,
        idle_timeout: float = 1.0,
        ctx: Context | None = None,
        executor: Executor | None = None,
        fail_fast: bool = False,
        on_progress: Callable[[PoolStats], object] | None = None,
    ) -> None:
        """Configure the pool; workers start when the ``async with`` block is entered.

        Raises:
            ValueError: A negative or inconsistent worker count, ``max_workers < 1``,
                a negative ``queue_size`` or ``idle_timeout``, or an unknown executor.
            TypeError: A worker count or ``queue_size`` that is not an int.
        """
        if executor not in (None, "thread", "process"):
            raise ValueError(f"WorkerPool(executor={executor!r}): expected 'thread' or 'process'")
        _check_ints(
            "WorkerPool",
            workers=workers,
            min_workers=min_workers,
            max_workers=max_workers,
            queue_size=queue_size,
        )
        dynamic = min_workers is not None or max_workers is not None
        if not dynamic:
            n = 10 if workers is None else workers
            lo = hi = n
        else:
            hi = max_workers if max_workers is not None else max(workers or 1, min_workers or 1)
            lo = min_workers if min_workers is not None else 0
            n = workers if workers is not None else lo
        if hi < 1:
            raise ValueError(f"WorkerPool: need at least one worker (max {hi})")
        if not 0 <= lo <= n <= hi:
            raise ValueError(
                f"WorkerPool: need 0 <= min_workers ({lo}) <= workers ({n}) <= max_workers ({hi})"
            )
        if queue_size is None:
            queue_size = hi
        if queue_size < 0:
            raise ValueError(f"WorkerPool: negative queue_size ({queue_size})")
        idle_timeout = _seconds(idle_timeout, "WorkerPool(idle_timeout=...)")
        if idle_timeout < 0:
            raise ValueError(f"WorkerPool: negative idle_timeout ({idle_timeout})")
        check_ctx(ctx, "WorkerPool(ctx=...)")
        if on_progress is not None:
            check_sync_callable(
                on_progress, "WorkerPool(on_progress=...)", "a plain function fn(stats)"
            )
        self._initial = n
        self._min = lo
        self._max = hi
        self._dynamic = dynamic and lo < hi
        self._idle_timeout = idle_timeout
        self._queue_size = queue_size
        self._ctx = ctx
        self._executor = executor
        self._who = f"WorkerPool(executor={executor!r})"  # (names a misused executor job)
        self._fail_fast = fail_fast
        self._on_progress = on_progress
        self._jobs: Chan[JobHandle[Any]] = Chan(queue_size)
        self._rt: object = None  # runtime hint for parking handles (see _backend.must_checkpoint)
        self._home: Runtime | None = None  # the event loop that entered the block
        self._tid = 0  # and its thread
        # _tid while the pool takes jobs, else 0: submit's one check (see _check_open).
        self._open_tid = 0
        self._crew: _Crew | None = None  # while the async with block runs
        self._labels = _labels_get()  # debug.labels() of idle workers (set on entry)
        # The context variables every worker starts with: those where the block was
        # entered, also for a worker a submit() adds later (not the submitter's, whose
        # current() context, span or test marker would stay with the worker for life).
        self._worker_vars: _VarContext | None = None
        self._spawning = False  # inside _worker_vars.run (which cannot be re-entered)
        self._workers: set[_Worker] = set()
        self._maps: set[PoolMap[Any]] = set()  # live map() iterators
        self._closed = False
        self._aborted = False
        self._abort_msg = "job cancelled by WorkerPool shutdown"
        self._closed_by: BaseException | None = None  # the ctx's err(), if it closed us
        self._error: BaseException | None = None
        # Closed once the intake is closed and every worker has exited: shutdown()
        # waits on it -- a channel, so that a shutdown waiting for a job stuck on
        # another channel is seen by debug.detect_deadlocks().
        self._all_exited: Chan[None] = Chan()
        self._ctx_scope: CancelScope | None = None
        self._limiter: Any = None
        self._cancelled_list: list[JobHandle[Any]] = []  # by the abort (see shutdown)
        self._aborted_by_timeout = False  # the abort was a shutdown(timeout)'s
        self._cancelled_exc: type[BaseException] = BaseException  # set on entry
        self._ticker: _ticker.Ticker | None = None  # held while the block runs
        self._nworkers = 0
        self._idle = 0
        # Counters (stats): queued and running are derived from them, so the sum holds.
        self._submitted = self._started = self._done = self._failed = 0
        self._cancelled = 0
        self._qcancelled = 0  # of _cancelled: jobs cancelled before they started

    def __repr__(self) -> str:
        s = self.stats()
        state = "closed" if self._closed else "open"
        return f"<WorkerPool {state} workers={s.workers} queued={s.queued} running={s.running}>"

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> WorkerPool:
        if self._crew is not None:
            raise RuntimeError("WorkerPool: the async with block was already entered")
        self._cancelled_exc = get_cancelled_exc_class()
        self._home = runtime_or_none()
        self._tid = _get_ident()
        self._labels = _labels_get()
        self._worker_vars = copy_context()
        if self._executor is not None:
            self._limiter = anyio.CapacityLimiter(self._max)
        crew = _Crew()
        core = crew.core = make_core(crew, runtime())
        await core.enter()
        self._crew = crew
        self._open_tid = self._tid
        for _ in range(self._initial):
            self._spawn()
        if self._ctx is not None:
            self._ctx_scope = CancelScope()
            self._start(self._watch_ctx, self._ctx, self._ctx_scope)
        if self._executor is None:
            # Timers on time for short jobs (see _ticker). Last: nothing can fail
            # after it (a failed __aenter__ gets no __aexit__ to release it). The
            # workers read it at each job (an eager task factory runs them earlier).
            self._ticker = _ticker.hold()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._crew is None:
            raise RuntimeError(
                "WorkerPool: __aexit__ without __aenter__ (use `async with WorkerPool() as pool:`)"
            )
        try:
            return await self._exit(exc)
        finally:
            ticker, self._ticker = self._ticker, None
            if ticker is not None:
                await ticker.release()

    async def _exit(self, exc: BaseException | None) -> bool | None:
        crew = self._crew
        assert crew is not None
        # What propagates from the block: the body's exception, or what interrupted
        # the graceful shutdown -- a cancellation (from outside, or the pool's own
        # when a task of the crew failed and aborted it: see _Crew) or e.g. a
        # KeyboardInterrupt.
        pending = exc
        try:
            if exc is None:
                await self.shutdown()
            else:
                self._abort("job cancelled: the WorkerPool block ended with an exception")
        except BaseException as e:
            self._abort("job cancelled: WorkerPool shutdown was interrupted")
            pending = e
        finally:
            if self._ctx_scope is not None:
                self._ctx_scope.cancel()
        # The body's own exception propagates as itself (not in a group): the workers
        # were told to stop, so the core exits without it. A cancellation goes
        # through, for the core's scope to take back its own: a pool that aborted
        # itself raises its task's error, not the cancellation that stopped the wait.
        cancel_exc = await crew.core.exit(
            pending if isinstance(pending, self._cancelled_exc) else None
        )
        if crew.error is not None:
            raise crew.error
        if (
            cancel_exc is not None
            and cancel_exc is not exc
            and (exc is None or isinstance(exc, self._cancelled_exc))
        ):
            # Cancelled from outside while waiting for the workers. (The body's own
            # error wins over that cancellation, as in Group: it propagates below.)
            raise cancel_exc
        if (
            pending is not None
            and pending is not exc
            and not isinstance(pending, self._cancelled_exc)
        ):
            raise pending  # e.g. KeyboardInterrupt while shutting down
        error = self._error
        if error is not None and (exc is None or isinstance(exc, (PoolClosed, JobCancelled))):
            # fail_fast: the first failure, not what the abort it caused did to the
            # body (a submit refused, a handle cancelled), is the block's error. Raised
            # here, Python would chain it to the body's exception in place of its own
            # context: that is put back (and the body's exception set only if it had
            # none, and is not chained to the failure already).
            context = error.__context__
            if context is None and exc is not None and not _chained_to(exc, error):
                context = exc
            try:
                raise error
            finally:
                error.__context__ = context
                del error, context
        return None

    async def _watch_ctx(self, ctx: Context, scope: CancelScope) -> None:
        with scope:
            await ctx.wait()
            err = self._closed_by = ctx.err()
            self._abort(f"job cancelled: the WorkerPool's context is done ({err!r})")

    def _start(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start ``fn(*args)`` as one of the pool's tasks."""
        crew = self._crew
        assert crew is not None
        if not crew.core.spawn(_Member(), fn, args):  # pragma: no cover - trio, all ended
            raise RuntimeError("WorkerPool: its task group has already ended")

    def _spawn(self) -> None:
        self._nworkers += 1
        w = _Worker()
        self._workers.add(w)
        try:
            wvars = self._worker_vars
            if wvars is None or self._spawning:  # (an eager task spawning as it starts)
                self._start(self._worker, w)
            else:
                self._spawning = True
                try:
                    wvars.run(self._start, self._worker, w)  # the task copies it there
                finally:
                    self._spawning = False
        except BaseException:
            self._workers.discard(w)
            self._nworkers -= 1
            raise

    async def shutdown(self, timeout: float | None = None) -> list[JobHandle[Any]]:
        """Stop intake, let queued and running jobs finish, then stop the workers.

        Step 1: `submit` raises `PoolClosed` from now on (also submits waiting for
        room). Step 2: wait for every queued and running job. Step 3: the workers
        exit. If *timeout* seconds pass first, the jobs left (running or queued)
        are cancelled; their handles raise `JobCancelled` and are returned, so every
        submitted job is accounted for: done, failed, or cancelled (by this
        timeout: in the returned list; by `JobHandle.cancel`: on its handle).
        A job that ends anyway once cancelled (it swallowed the cancellation, or
        its thread ran to its end) is cancelled all the same. A running process
        job's process is killed; a thread cannot be interrupted: the shutdown
        waits for it, then drops its result.
        Idempotent. Go: ``close(jobs); wg.Wait()`` with a ``select`` on a timer.

        Returns:
            The jobs the timeout cancelled (empty when everything finished).

        Raises:
            RuntimeError: The pool's ``async with`` block was never entered, or
                shutdown() was called from one of the pool's own jobs (or a task
                one started), which would wait for itself; it then does nothing.
        """
        if self._crew is None:
            raise RuntimeError("WorkerPool.shutdown() outside its async with block")
        if _serving.get() is self:
            # Go: wg.Wait() in one of the goroutines it waits for, a deadlock;
            # Python: Thread.join() of the current thread, a RuntimeError.
            raise RuntimeError(
                "WorkerPool.shutdown() from inside one of the pool's own jobs would wait "
                "for itself: call it from the code that owns the pool (e.g. after the "
                "job has signalled it), or pass ctx= and cancel that context to abort"
            )
        if timeout is not None:  # (checked before anything changes)
            seconds = _seconds(timeout, "WorkerPool.shutdown(timeout=...)")
        self._close_intake()
        if timeout is None:
            await self._all_exited.recv_ok()
        else:
            with anyio.move_on_after(seconds):
                await self._all_exited.recv_ok()
            if not self._all_exited.closed:
                if not self._aborted:
                    self._aborted_by_timeout = True
                self._abort(f"job cancelled by WorkerPool.shutdown(timeout={timeout!r})")
                with CancelScope(shield=True):
                    await self._all_exited.recv_ok()
        if not self._aborted_by_timeout:  # (a ctx, fail_fast or the block's abort: not ours)
            return []
        return [job for job in self._cancelled_list if job.cancelled()]

    def _close_intake(self) -> None:
        if not self._closed:
            self._closed = True
            self._open_tid = 0
            self._jobs.close()
            for m in list(self._maps):
                m._stop(results=False)  # a feeder waiting for a window slot stops too
            if self._nworkers == 0:
                self._exited()

    def _exited(self) -> None:
        """The intake is closed and every worker has exited: wake the shutdowns."""
        if not self._all_exited.closed:
            self._all_exited.close()

    def _abort(self, msg: str) -> None:
        """Cancel every queued and running job and stop the workers (no waiting)."""
        if self._aborted:
            return
        self._aborted = True
        self._abort_msg = msg
        self._close_intake()
        cancelled = self._cancelled_list
        while True:
            try:
                job = self._jobs.recv_nowait()
            except (ChanClosed, WouldBlock):
                break
            if job._state <= _QUEUED:  # not one cancelled by JobHandle.cancel() already
                self._cancel_queued(job, JobCancelled(msg))
                cancelled.append(job)
        # Running jobs are cancelled through their workers, and each worker
        # finishes (and lists) its own job as it unwinds: see _serve.
        for w in self._workers:
            w.stop()
        for m in list(self._maps):
            m._stop(results=True)

    def _cancel_queued(self, job: JobHandle[Any], exc: JobCancelled) -> None:
        if job._state == _NEW:  # taken off a submit still parked for room: accepted now
            job._state = _QUEUED
            self._submitted += 1
        self._cancelled += 1
        self._qcancelled += 1
        job._finish(_CANCELLED, None, exc)
        if self._on_progress is not None:
            # Called by JobHandle.cancel() or an abort, not by a worker: a callback
            # that raises fails the pool as it does from a worker (the block raises
            # it, as itself), never the code that cancelled.
            try:
                self._on_progress(self.stats())
            except Exception as e:
                assert self._crew is not None
                self._crew._fail(e)

    def stats(self) -> PoolStats:
        """Return a snapshot of the pool's counters (never blocks).

        Example:
            ```python title="fragment"
            print(pool.stats())  # PoolStats(submitted=..., running=..., ...)
            ```
        """
        started = self._started
        submitted = self._submitted
        cancelled = self._cancelled
        qcancelled = self._qcancelled
        return PoolStats(
            submitted=submitted,
            running=started - (self._done + self._failed + cancelled - qcancelled),
            queued=submitted - started - qcancelled,
            done=self._done,
            failed=self._failed,
            cancelled=cancelled,
            workers=self._nworkers,
        )

    def resize(
        self,
        workers: int | None = None,
        *,
        min_workers: int | None = None,
        max_workers: int | None = None,
    ) -> None:
        """Change how many workers serve the queue, while the pool runs.

        ``resize(n)``: exactly *n* workers from now on, as ``WorkerPool(workers=n)``.
        ``resize(min_workers=a, max_workers=b)``: scale between new bounds, as
        the constructor's dynamic pools do (a bound left out keeps its value).
        Growing starts the missing workers at once (up to *n*, or *min_workers*);
        more start on backlog up to *max_workers*. Shrinking never cancels a job:
        idle workers above the new maximum exit at once, busy ones when their
        job is done. Never waits. The queue's size stays what it was. Once the
        pool is shutting down, only the bounds change (no worker is started).
        Java: ``setCorePoolSize`` / ``setMaximumPoolSize``; the seed's "hot"
        reconfiguration (raising a pool from 20 to 100 workers under load).

        Example:
            ```python
            async with WorkerPool(workers=2) as pool:
                pool.resize(8)                                   # a sale starts
                assert pool.stats().workers == 8
                pool.resize(min_workers=1, max_workers=4)        # back to normal
            ```

        Raises:
            ValueError: A worker count below 0, ``max_workers < 1``, bounds out
                of order, or *workers* together with a bound.
            TypeError: A count that is not an int.
        """
        _check_ints(
            "WorkerPool.resize", workers=workers, min_workers=min_workers, max_workers=max_workers
        )
        if workers is not None:
            if min_workers is not None or max_workers is not None:
                raise ValueError(
                    "WorkerPool.resize: pass workers (a fixed size) or "
                    "min_workers/max_workers (bounds), not both"
                )
            lo = hi = workers
        elif min_workers is None and max_workers is None:
            raise TypeError("WorkerPool.resize: pass workers, or min_workers and/or max_workers")
        else:
            lo = self._min if min_workers is None else min_workers
            hi = self._max if max_workers is None else max_workers
        if hi < 1:
            raise ValueError(f"WorkerPool.resize: need at least one worker (max {hi})")
        if not 0 <= lo <= hi:
            raise ValueError(
                f"WorkerPool.resize: need 0 <= min_workers ({lo}) <= max_workers ({hi})"
            )
        was_dynamic = self._dynamic
        old_min = self._min
        self._min = lo
        self._max = hi
        self._dynamic = lo < hi
        if self._limiter is not None:  # thread/process jobs at once: one per worker
            self._limiter.total_tokens = hi
        if self._crew is None:  # not entered yet: the block starts with the new size
            self._initial = min(max(self._initial, lo), hi)
            return
        if self._closed:
            return
        while self._nworkers < lo:
            self._spawn()
        # Idle workers above the maximum are parked on the queue: wake each with a
        # handle that is already cancelled, which workers skip -- and then retire.
        # (One that finds a worker already woken waits in the queue for the next
        # one, who skips it.) A fixed pool turned dynamic, or a dynamic one whose
        # minimum went down, wakes those above the (new) minimum too: parked without
        # an idle timer (as workers at the minimum park), they park again with one.
        keep = lo if self._dynamic and (not was_dynamic or lo < old_min) else hi
        for _ in range(min(self._nworkers - keep, self._idle)):
            call: JobHandle[None] = JobHandle(_wake_up_call, (), self)
            call._state = _CANCELLED
            try:
                self._jobs.send_nowait(call)
            except WouldBlock:
                break

    # -- workers ---------------------------------------------------------------

    async def _worker(self, w: _Worker) -> None:
        _serving.set(self)  # (this task's own context: see shutdown)
        if _labels_get() is not self._labels:  # started by a submit() (or a job) with labels
            _labels_set(self._labels)
        try:
            scope = w.scope = CancelScope()
            with scope:
                if not self._aborted:
                    await self._serve(w)
        finally:
            # Cancelled (or ended) by JobHandle.cancel() of its job: a new worker takes
            # its place, so the count stays (spawned first: it never drops to zero here).
            self._workers.discard(w)
            if w.replace and not self._aborted and self._nworkers <= self._max:
                self._spawn()
            self._nworkers -= 1
            if self._nworkers == 0 and self._closed:
                self._exited()

    async def _serve(self, w: _Worker) -> bool:
        """Run jobs until the queue is closed and drained (True) or a job is cancelled (False)."""
        jobs = self._jobs
        recv_nowait = jobs.recv_nowait
        executor = self._executor
        if executor is None:
            run_sync: Any = None
        elif executor == "thread":
            run_sync = partial(_to_thread.run_sync, limiter=self._limiter)
        else:
            # cancellable: JobHandle.cancel() or an abort kills the job's process.
            # (A thread cannot be killed, and anyio's cancellable=True for threads
            # would abandon it, still running, past the pool's block: the worker
            # waits for it instead.)
            run_sync = partial(anyio.to_process.run_sync, cancellable=True, limiter=self._limiter)
        cancelled_exc = self._cancelled_exc
        # debug.labels(): those of the job it runs, else the pool's (set by _worker).
        # Tracked here, not read back: a job's own labels() blocks restore them.
        labels = idle_labels = self._labels
        job: JobHandle[Any] | None
        value: Any = None
        while True:
            if self._nworkers > self._max:
                return True  # resize() shrank the pool: retire between jobs
            # The next job without a scheduler round trip. (Looked at before the call:
            # an idle worker would raise and catch WouldBlock after every job.)
            job = None
            if jobs._buf or jobs._sendq or jobs._closed:
                try:
                    job = recv_nowait()
                except WouldBlock:
                    pass
                except ChanClosed:
                    return True
            if job is None:
                # An idle worker holds neither its last job nor that job's result: the
                # caller may have let go of them (a large response, an exception with
                # its traceback), and the worker may wait a long time.
                job = value = None
                if labels is not idle_labels:  # (the last job's: not while idle)
                    labels = idle_labels
                    _labels_set(labels)
                self._idle += 1
                try:
                    if self._dynamic and self._nworkers > self._min:
                        got = False
                        with anyio.move_on_after(self._idle_timeout):
                            job, ok = await jobs.recv_ok()
                            got = True
                        if not got:
                            # Idle for idle_timeout: retire while above min_workers.
                            if self._nworkers <= self._min:
                                continue
                            # Not if a job came in as the timer fired: it may be in the
                            # buffer, or (queue_size=0) its submit may be parked on the
                            # channel, after it counted this worker idle and so started
                            # no other -- retiring would strand it.
                            try:
                                job = recv_nowait()
                            except (WouldBlock, ChanClosed):  # (closed: the pool is ending)
                                return True
                            ok = True
                    else:
                        job, ok = await jobs.recv_ok()
                    if not ok:
                        return True
                finally:
                    self._idle -= 1
            assert job is not None
            state = job._state
            if state != _QUEUED:
                if state != _NEW:
                    continue  # cancelled while queued (or resize()'s wake-up call): skip it
                self._submitted += 1  # taken off a submit still parked for room
            job._state = _RUNNING
            job._scope = w
            self._started += 1
            ticker = self._ticker  # (read per job: a worker may run before it is held)
            if ticker is not None:
                ticker.job()
            if job._labels is not labels:  # the submitter's, in place of the worker's
                labels = job._labels
                _labels_set(labels)
            if (
                self._dynamic
                and self._idle == 0
                and (len(jobs) or jobs._sendq)
                and self._nworkers < self._max
            ):
                # Still a backlog now that this worker is busy -- jobs in the queue, or
                # submits parked for room (queue_size=0: always there): the submitter
                # may have counted it idle while it was woken but not yet running.
                self._spawn()
            try:
                if run_sync is None:
                    value = job._fn(*job._args)
                    # (a sync callable with no executor ran on the loop: that is its result)
                    if type(value) is _Coroutine or _isawaitable(value):
                        value = await value
                else:
                    value = await self._in_executor(run_sync, job)
            except cancelled_exc as e:
                if w.scope is not None and not w.scope.cancel_called and not self._aborted:
                    # No cancel of the job or the pool: an enclosing scope's (raised
                    # here), or the job's own -- it awaited something cancelled
                    # elsewhere (asyncio: a future, another task).
                    try:
                        await checkpoint_if_cancelled()
                    except BaseException:
                        self._cancel_running(job, None)
                        raise
                    self._failed += 1
                    err = stray_cancellation(
                        f"WorkerPool job {getattr(job._fn, '__qualname__', job._fn)!s}",
                        e,
                        "its handle fails with this error; the worker goes on",
                    )
                    job._finish(_FAILED, None, err)
                    del e, err
                    if self._on_progress is not None:
                        self._on_progress(self.stats())
                    continue
                self._cancel_running(job, None)
                raise
            except Exception as e:
                if job._state == _CANCELLING or self._aborted:
                    self._cancel_running(job, e)
                    return False
                self._failed += 1
                job._finish(_FAILED, None, e)
                if self._fail_fast and self._error is None:
                    self._error = e
                    self._abort("job cancelled: another job failed (fail_fast=True)")
            except BaseException as e:
                # KeyboardInterrupt, SystemExit...: it ends the pool's block, as
                # itself; its handle fails with it too (it never stays running).
                self._failed += 1
                job._finish(_FAILED, None, e)
                raise
            else:
                # It returned although cancelled -- by JobHandle.cancel(), or by an
                # abort (its worker's scope): a job that swallowed the cancellation,
                # or a thread, which cannot be interrupted.
                if job._state == _CANCELLING or self._aborted:
                    self._cancel_running(job, None)
                    return False
                self._done += 1
                job._finish(_DONE, value, None)
            if self._on_progress is not None:
                self._on_progress(self.stats())

    async def _in_executor(
        self, run_sync: Callable[..., Awaitable[Any]], job: JobHandle[Any]
    ) -> Any:
        """Run a sync job in a worker thread or process (contrib.otel wraps this)."""
        if self._executor == "process":
            return await run_in_process(run_sync, job._fn, self._who, _EXECUTOR_ADVICE, *job._args)
        return await run_sync(call_sync, job._fn, self._who, _EXECUTOR_ADVICE, *job._args)

    def _cancel_running(self, job: JobHandle[Any], error: BaseException | None) -> None:
        if job._state == _CANCELLING:
            exc = JobCancelled(_BY_CANCEL)
        else:
            exc = JobCancelled(self._abort_msg)
            self._cancelled_list.append(job)
        if error is not None:
            exc.__context__ = error  # what the job raised while it was being cancelled
        self._cancelled += 1
        job._finish(_CANCELLED, None, exc)
        if self._on_progress is not None:
            self._on_progress(self.stats())

    # -- intake ----------------------------------------------------------------

    def _make_job(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> JobHandle[Any]:
        if not callable(fn) or (self._executor is not None and is_async(fn)):
            self._check_fn(fn, "submit")
        return JobHandle(fn, args, self)

    def _check_fn(self, fn: object, where: str) -> None:
        if not callable(fn):
            if inspect.iscoroutine(fn):
                fn.close()  # (f() for f: no "never awaited" warning on top)
            raise TypeError(f"WorkerPool.{where}: {fn!r} is not callable")
        if self._executor is not None and is_async(fn):
            raise TypeError(
                f"WorkerPool(executor={self._executor!r}) runs sync functions; "
                f"{fn!r} is async: drop the executor"
            )

    def _check_open(self, where: str = "submit()") -> None:
        """Raise if the pool takes no jobs, or not from this thread (the slow path of
        submit's ``_get_ident() != self._open_tid``)."""
        if self._crew is None:
            raise RuntimeError("WorkerPool: submit outside its async with block")
        if self._closed:
            raise self._refused()
        # The thread tells a foreign loop apart at the cost of one call (the running
        # loop costs a system call on Python 3.11); _check_loop is exact.
        if _get_ident() != self._tid:
            self._wrong_loop(where)

    def _check_loop(self, where: str) -> None:
        if _get_ident() != self._tid or elsewhere(self._home):
            self._wrong_loop(where)

    def _refused(self) -> PoolClosed:
        """What a submit to the closed pool raises: chained from the ctx's error when the
        pool's context closed it (a submitter sharing that ctx may get here before its
        own next checkpoint raises that error)."""
        by = self._closed_by
        if by is None:
            return PoolClosed("submit to a closed WorkerPool")
        e = PoolClosed(f"submit to a WorkerPool closed by its context ({type(by).__name__})")
        e.__cause__ = by
        return e

    def _wrong_loop(self, where: str) -> None:
        raise RuntimeError(
            f"WorkerPool: {where} from another thread or event loop: {self!r} was entered "
            f"on {self._home!r}, whose tasks run its jobs; use it from that loop (from a "
            "thread: anyio.from_thread.run), or give each loop a pool of its own"
        )

    def _accepted(self, job: JobHandle[Any]) -> None:
        if job._state == _NEW:  # (a worker may have taken it off the parked send already)
            job._state = _QUEUED
            self._submitted += 1
        # Backlog and nobody idle: start a worker (Go's dynamic pools do the same).
        if self._idle == 0 and self._nworkers < self._max and len(self._jobs) > 0:
            self._spawn()

    @overload
    async def submit(self, fn: Callable[[*Ts], Awaitable[R]], *args: *Ts) -> JobHandle[R]: ...
    @overload
    async def submit(self, fn: Callable[[*Ts], R], *args: *Ts) -> JobHandle[R]: ...
    async def submit(self, fn: Callable[[*Ts], Any], *args: *Ts) -> JobHandle[Any]:
        """Queue ``fn(*args)``, waiting while the queue is full; return its handle.

        ``await handle`` gives the result; ``handle.cancel()`` cancels the job.
        Cancellation: a submit cancelled while waiting for room queued nothing.
        Checkpoint: a cancel point; yields to the scheduler only when it must
        wait (or every few hundred submits, so a tight loop cannot starve others).
        Go: ``jobs <- j``

        Raises:
            PoolClosed: The pool is shutting down or closed (also while waiting).
            TypeError: *fn* is not callable, or async with a thread/process executor.
            RuntimeError: Called outside the pool's ``async with`` block, or from
                another thread or event loop.
        """
        if _get_ident() != self._open_tid:  # closed, not entered, or another thread
            self._check_open()
        job = self._make_job(fn, args)
        if must_checkpoint(self):
            await checkpoint()
        jobs = self._jobs
        try:
            jobs.send_nowait(job)
        except WouldBlock:
            if self._nworkers < self._max and self._idle == 0:
                self._spawn()  # about to wait for room: add a worker first
            try:
                await jobs.send(job)
            except ChanClosed:
                raise self._refused() from self._closed_by
        except ChanClosed:
            raise self._refused() from self._closed_by
        else:
            job._state = _QUEUED
            self._submitted += 1
            if self._idle == 0 and self._nworkers < self._max and len(jobs) > 0:
                self._spawn()
            return job
        self._accepted(job)
        return job

    @overload
    def try_submit(self, fn: Callable[[*Ts], Awaitable[R]], *args: *Ts) -> JobHandle[R] | None: ...
    @overload
    def try_submit(self, fn: Callable[[*Ts], R], *args: *Ts) -> JobHandle[R] | None: ...
    def try_submit(self, fn: Callable[[*Ts], Any], *args: *Ts) -> JobHandle[Any] | None:
        """Queue ``fn(*args)`` if there is room now; return its handle, else None.

        Go: ``select { case jobs <- j: default: }``

        Raises:
            PoolClosed: The pool is shutting down or closed.
            TypeError: *fn* is not callable, or async with a thread/process executor.
            RuntimeError: Called outside the pool's ``async with`` block, or from
                another thread or event loop.
        """
        self._check_open("try_submit()")
        job = self._make_job(fn, args)
        try:
            self._jobs.send_nowait(job)
        except WouldBlock:
            if self._nworkers < self._max and self._idle == 0:
                self._spawn()
                try:
                    self._jobs.send_nowait(job)
                except WouldBlock:
                    return None
            else:
                return None
        self._accepted(job)
        return job

    @overload
    def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        ordered: bool = ...,
        window: int | None = ...,
    ) -> PoolMap[R]: ...
    @overload
    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T] | AsyncIterable[T],
        *,
        ordered: bool = ...,
        window: int | None = ...,
    ) -> PoolMap[R]: ...
    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool = True,
        window: int | None = None,
    ) -> PoolMap[Any]:
        """Run ``fn(item)`` for every item on the pool; iterate over the results.

        *items* is a sync or an async iterable (an async generator is read, and
        closed, in a task of the pool).
        ``async for r in pool.map(fn, items, ordered=True)`` yields results in
        input order (``ordered=False``: as they finish). At most *window* jobs
        (default: max workers + queue size) are in flight: a job counts from its
        submission until its result has been yielded (in ordered mode, finished
        results waiting behind a slower job hold their places; ``window=1`` runs
        one job at a time). A cancelled ``__anext__`` consumes nothing: the next
        call yields the result it was waiting for. The first failed job's
        exception is raised, as itself, by the iterator, which then stops. Leaving
        the loop early (``break``) is safe: call ``aclose()`` or use ``async with``
        to stop submitting at once; the pool's exit stops it in any case.
        Go: a worker pool's ``results`` channel ranged over after ``close(jobs)``.

        Raises:
            PoolClosed: (from the iterator) the pool closed before every item was queued.
            RuntimeError: Called outside the pool's ``async with`` block, or from
                another thread or event loop.
            TypeError: *items* is not an iterable or an async iterable, or
                *ordered* is not a bool.
            ValueError: *window* < 1.

        Example:
            ```python
            async def square(x: int) -> int:
                await anyio.sleep(0)
                return x * x

            async with WorkerPool(workers=4) as pool:
                assert [r async for r in pool.map(square, range(5))] == [0, 1, 4, 9, 16]
                async with pool.map(square, range(100), ordered=False) as results:
                    assert sorted([r async for r in results]) == [x * x for x in range(100)]
            ```
        """
        self._check_open("map()")
        self._check_fn(fn, "map")
        if not isinstance(items, Iterable | AsyncIterable):
            raise TypeError(
                f"WorkerPool.map: items must be an iterable or an async iterable, "
                f"not {type(items).__name__}"
            )
        if not isinstance(ordered, bool):
            raise TypeError(f"WorkerPool.map: ordered must be a bool, not {type(ordered).__name__}")
        if window is None:
            window = self._max + self._queue_size
        _check_ints("WorkerPool.map", window=window)
        if window < 1:
            raise ValueError(f"WorkerPool.map: window must be >= 1 ({window})")
        return PoolMap(self, fn, items, ordered, window)


def _chained_to(exc: BaseException, target: BaseException) -> bool:
    """Whether *target* is *exc* or in its ``__context__`` chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if e is target:
            return True
        seen.add(id(e))
        e = e.__context__
    return False


@final
class PoolMap(AsyncIterator[R]):
    """The async iterator returned by `WorkerPool.map` (also an async context manager)."""

    def __init__(
        self,
        pool: WorkerPool,
        fn: Callable[..., Any],
        items: Iterable[Any] | AsyncIterable[Any],
        ordered: bool,
        window: int,
    ) -> None:
        self._pool = pool
        self._out: Chan[JobHandle[Any] | BaseException] = Chan(window + 1)
        self._ordered = ordered
        self._slots: Chan[None] = Chan(window)
        # The feeder's scope: stopping the map (aclose, break in `async with`, the
        # pool closing) cancels it, also while it waits for its source's next item.
        self._feed_scope = CancelScope()
        pool._maps.add(self)
        pool._start(self._feed, fn, items)

    async def _feed(
        self, fn: Callable[..., Any], items: Iterable[Any] | AsyncIterable[Any]
    ) -> None:
        out = self._out
        _serving.set(None)  # (not a worker: a map started by a job may shut the pool down)
        fed_all = False
        try:
            with self._feed_scope:
                if isinstance(items, AsyncIterable):
                    it = aiter(items)
                    try:
                        async for item in it:
                            await self._submit(fn, item)
                    finally:
                        if inspect.isasyncgen(it):
                            with CancelScope(shield=True):  # (the feeder may be cancelled)
                                await it.aclose()  # in the task that iterated it
                else:
                    for item in items:
                        await self._submit(fn, item)
                fed_all = True
            if not fed_all:
                raise PoolClosed  # stopped (its scope cancelled) before the source ended
        except (ChanClosed, PoolClosed):
            # The pool closed (or the consumer called aclose, closing out): tell a
            # consumer still reading that some items were never submitted.
            if not out.closed:
                out.send_nowait(PoolClosed("WorkerPool closed before map() submitted every item"))
        finally:
            self._fed = True
            if not out.closed and (self._ordered or self._inflight() == 0):
                out.close()
        return

    _fed = False

    async def _submit(self, fn: Callable[..., Any], item: Any) -> None:
        await self._slots.send(None)  # wait for a free slot in the window
        job = await self._pool.submit(fn, item)
        if self._ordered:
            self._out.send_nowait(job)
        elif job.done():
            self._deliver(job)
        else:
            job._on_done = self._deliver

    def _inflight(self) -> int:
        return len(self._slots)

    def _deliver(self, job: JobHandle[Any]) -> None:
        out = self._out
        if not out.closed:
            out.send_nowait(job)

    def __aiter__(self) -> PoolMap[R]:
        return self

    async def __anext__(self) -> R:
        # Cancellation-safe (DESIGN.md, Principle 2): a cancelled call consumes nothing.
        # Ordered: the head handle stays at the front (self._head) until awaiting it
        # has returned, so a call cancelled while it waits leaves it for the next call.
        # Unordered: the channel holds finished jobs only, taken without another
        # await. A job keeps its window slot until its result is handed out, so at
        # most *window* jobs are submitted and not yet yielded -- running, queued or
        # finished and waiting for their turn.
        head = self._head
        if head is None:
            item, ok = await self._out.recv_ok()
            if not ok:
                raise StopAsyncIteration
            if isinstance(item, BaseException):
                await self.aclose()
                raise item
            head = cast("JobHandle[Any]", item)
            if not self._ordered:
                self._release()
                try:
                    return head.result()  # type: ignore[no-any-return]
                except Exception:
                    await self.aclose()
                    raise
            self._head = head
        try:
            value = await head
        except Exception:
            self._head = None
            await self.aclose()
            raise
        self._head = None
        self._release()
        return value  # type: ignore[no-any-return]

    _head: JobHandle[Any] | None = None

    def _release(self) -> None:
        """Free the window slot of the job whose result is handed out now."""
        try:
            self._slots.recv_nowait()
        except (WouldBlock, ChanClosed):  # pragma: no cover
            pass
        if not self._ordered and self._fed and len(self._slots) == 0 and not self._out.closed:
            self._out.close()

    def _stop(self, results: bool) -> None:
        if not self._slots.closed:
            self._slots.close()
        self._feed_scope.cancel()
        if results and not self._out.closed:
            self._out.close()
        if results:
            self._pool._maps.discard(self)

    async def aclose(self) -> None:
        """Stop submitting items; results not yet read are discarded."""
        self._stop(results=True)

    async def __aenter__(self) -> PoolMap[R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

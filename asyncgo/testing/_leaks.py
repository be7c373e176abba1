"""`no_leaks`: fail when tasks started inside a block outlive it (Go's goleak)."""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, cast, final

from asyncgo import debug
from asyncgo._backend import _tasks, to_thread

__all__ = ["TaskLeakError", "no_leaks"]

P = ParamSpec("P")
R = TypeVar("R")


#: The `no_leaks` blocks open in this context. A task inherits its starter's context,
#: so a task started inside a block carries the block here; one that a task outside
#: the block started meanwhile does not, and is not this block's leak.
_INSIDE: ContextVar[tuple[object, ...]] = ContextVar("asyncgo_no_leaks", default=())


async def _wall_sleep(seconds: float) -> None:
    """Sleep *seconds* of wall time, whatever the run's clock does (in a worker thread)."""
    await to_thread.run_sync(time.sleep, seconds)


@contextmanager
def _grace_pause() -> Iterator[Callable[[float], Awaitable[None]]]:
    """How to wait while the grace runs; the grace is wall time (`time.monotonic`).

    On the run's clock when that is the system's. Under trio's ``MockClock``, which
    may stand still (moved by hand), in a worker thread. With autojump, which jumps
    to the next deadline once every task is blocked (as all are while the thread
    waits), a leaked sleeper would end "within grace" however long it sleeps:
    autojump is off meanwhile, and each pause moves the clock by its own length
    instead -- by about the grace in all, as a real clock would move.
    """
    if not _tasks.virtual_clock():
        yield _tasks.sleep
        return
    clock = _tasks._trio_mod().lowlevel.current_clock()
    threshold = getattr(clock, "autojump_threshold", math.inf)
    if threshold == math.inf or not hasattr(clock, "jump"):
        yield _wall_sleep
        return

    async def pause(seconds: float) -> None:
        clock.jump(seconds)  # first: what it wakes ends during the wait
        await _wall_sleep(seconds)

    clock.autojump_threshold = math.inf
    try:
        yield pause
    finally:
        clock.autojump_threshold = threshold


def _infrastructure(task: Any) -> bool:
    """The run's own tasks, ignored like goleak ignores the runtime's goroutines:
    asyncgo's helpers (`debug._is_helper`: e.g. the timer service on trio, which ends
    on its own) and anyio's process-pool janitor, which lives until the loop ends."""
    return debug._is_helper(task) or _tasks.is_anyio_janitor(task)


def _names(names: Iterable[str], what: str) -> list[str]:
    if isinstance(names, str):  # would silently become a list of its characters
        raise TypeError(f"no_leaks: {what} takes a list of names, not a str: [{names!r}]")
    return list(names)


def _top_functions(info: debug.TaskInfo) -> set[str]:
    """What ``ignore_top_function`` matches: the innermost frame, and the innermost one
    that is not asyncgo's, anyio's or the event loop's own machinery (Go's traceback
    hides the runtime's frames, so goleak's top function of a goroutine blocked in a
    channel receive is the user's function that receives)."""
    found = set()
    if info.top is not None:
        found.add(info.top)
    for f in info.stack:
        if not f.function.startswith(debug._MACHINERY):
            found.add(f.function)
            break
    return found


class TaskLeakError(AssertionError):
    """Tasks started inside a `no_leaks` block were still alive at its end.

    The message is the dump of those tasks (state, what they are parked on,
    stack, labels); `tasks` holds their `asyncgo.debug.TaskInfo` snapshots (a
    pickled or copied error keeps the message, and its `tasks` is empty).
    Go: goleak's ``found unexpected goroutines``.

    Example:
        ```python
        async with anyio.create_task_group() as tg:  # a task group that outlives...
            try:
                async with testing.no_leaks(grace=0.01):  # ...this block
                    tg.start_soon(anyio.sleep, 60, name="forgotten")
                leaked = []
            except testing.TaskLeakError as e:
                leaked = [t.name for t in e.tasks]
                assert "found 1 unexpected task" in str(e)  # and a dump of it
            tg.cancel_scope.cancel()
        assert leaked == ["forgotten"]
        ```
    """

    def __init__(self, message: str, tasks: list[debug.TaskInfo]) -> None:
        super().__init__(message)
        self.tasks = tasks

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy keep the message (the dump), not `tasks`: snapshots of this
        # process's live tasks, which hold the tasks themselves.
        state = {k: v for k, v in self.__dict__.items() if k != "tasks"}
        return (type(self), (*self.args[:1], []), state)


@final
class no_leaks:
    """Fail with `TaskLeakError` when tasks started inside the block are still alive at its end.

    ``async with no_leaks():`` takes a snapshot of the event loop's tasks on
    entry; on exit, every task that is alive, was not there on entry and was
    started inside the block (by the block's code or by tasks started inside it:
    a task inherits its starter's `contextvars` context, which marks it) is a
    leak -- unless it ends within *grace* seconds of wall time (the check is
    retried, with a growing pause, until then; under trio's ``MockClock`` with
    autojump, the clock moves with the pauses meanwhile, not by jumps) or the
    allow-list matches it. Tasks that other tasks start meanwhile, outside the
    block, are not its business.
    The allow-list:

    * *ignore_names*: task names (e.g. a known long-lived background task);
    * *ignore_top_function*: ``module.qualname`` of the innermost function of its
      stack, where it waits (goleak's ``IgnoreTopFunction``): the innermost frame,
      or the innermost one outside asyncgo's, anyio's and the event loop's own
      code (a worker blocked in ``await jobs.recv()`` has ``mod.worker`` on top,
      as a goroutine blocked in ``<-jobs`` has in Go);
    * *ignore_any_function*: ``module.qualname`` of any function on its stack,
      such as the task's own function (goleak's ``IgnoreAnyFunction``);
    * *ignore*: a predicate on its `asyncgo.debug.TaskInfo` (labels, state, ...).

    The run's own infrastructure is never a leak (as goleak leaves out the
    runtime's goroutines): asyncgo's helper tasks, and anyio's process-pool
    shutdown task, which the first ``anyio.to_process.run_sync`` of an event loop
    starts (so do ``stages.map(executor="process")`` and
    ``WorkerPool(executor="process")``) and which lives as long as the loop.

    The allow-list is read at exit: it may be extended inside the block.
    Diagnostics are on inside the block (`asyncgo.debug.enabled`), so the
    report shows what each leaked task is parked on and where that was made.
    When the block raises, nothing is checked (the error is the news).

    Also a decorator for async functions such as tests (a fresh check per call).

    With structured concurrency a leak means a task was started into a task
    group that outlives the block (one passed in, a fixture's, a server's) or
    with ``asyncio.create_task``. Go: ``defer goleak.VerifyNone(t)``.

    Example:
        ```python
        async with testing.no_leaks():       # Go: defer goleak.VerifyNone(t)
            async with Group() as g:
                g.go_nowait(anyio.sleep, 0.001)  # joined before the block ends: no leak

        @testing.no_leaks(grace=0.5)         # e.g. on a test: a fresh check per call
        async def test_pipeline_cleans_up() -> None:
            ch = Chan[int]()
            async with Group() as g:
                g.go_nowait(ch.send, 1)
                assert await ch.recv() == 1

        await test_pipeline_cleans_up()
        ```

    A leak raises `TaskLeakError` (see its example).
    """

    __slots__ = (
        "_before",
        "_enabled",
        "_me",
        "_token",
        "grace",
        "ignore",
        "ignore_any_function",
        "ignore_names",
        "ignore_top_function",
    )

    def __init__(
        self,
        *args: object,
        grace: float = 1.0,
        ignore_names: Iterable[str] = (),
        ignore_top_function: Iterable[str] = (),
        ignore_any_function: Iterable[str] = (),
        ignore: Callable[[debug.TaskInfo], bool] | None = None,
    ) -> None:
        """Configure the check; see the class docstring for the options.

        Raises:
            TypeError: a positional argument (``@no_leaks`` without parentheses), a
                *grace* that is not a number, a single string for a list of names, or
                an *ignore* that is not callable.
            ValueError: a negative *grace*.
        """
        if args:
            hint = (
                ": write @no_leaks() (with parentheses) to decorate an async function"
                if len(args) == 1 and callable(args[0])
                else ""
            )
            raise TypeError(f"no_leaks() takes keyword arguments only{hint}")
        if isinstance(grace, bool) or not isinstance(grace, int | float):
            raise TypeError(
                f"no_leaks: grace must be a number of seconds, not {type(grace).__name__}"
            )
        if not grace >= 0:
            raise ValueError(f"no_leaks: grace must be >= 0 seconds, not {grace!r}")
        if ignore is not None and not callable(ignore):
            raise TypeError(
                "no_leaks: ignore must be a predicate on a debug.TaskInfo, "
                f"not {type(ignore).__name__}"
            )
        self.grace = float(grace)
        self.ignore_names = _names(ignore_names, "ignore_names")
        self.ignore_top_function = _names(ignore_top_function, "ignore_top_function")
        self.ignore_any_function = _names(ignore_any_function, "ignore_any_function")
        self.ignore = ignore
        self._before: set[Any] | None = None

    def _copy(self) -> no_leaks:
        return no_leaks(
            grace=self.grace,
            ignore_names=self.ignore_names,
            ignore_top_function=self.ignore_top_function,
            ignore_any_function=self.ignore_any_function,
            ignore=self.ignore,
        )

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        """Decorate an async function: each call runs inside its own `no_leaks` block."""

        target = cast("object", fn)  # checked at run time too: an untyped caller may pass anything
        if not callable(target):
            raise TypeError(f"no_leaks() decorates an async function, not {type(target).__name__}")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            async with self._copy():
                aw: object = fn(*args, **kwargs)  # an untyped caller may decorate a sync def
                if not inspect.isawaitable(aw):
                    name = getattr(fn, "__qualname__", repr(fn))
                    raise TypeError(
                        f"no_leaks() decorates async functions: {name}() returned "
                        f"{type(aw).__name__}, not an awaitable (make it an async def)"
                    )
                return cast("R", await aw)

        return wrapper

    if not TYPE_CHECKING:  # (a type checker flags a plain `with` by itself)

        def __enter__(self) -> NoReturn:
            raise TypeError(
                "no_leaks() is an async context manager: use 'async with no_leaks():' "
                "(or decorate an async function with @no_leaks())"
            )

        def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ raised
            pass

    async def __aenter__(self) -> no_leaks:
        if self._before is not None:
            raise RuntimeError("no_leaks: this block is already entered (make one per block)")
        self._enabled = debug.enabled()
        self._enabled.__enter__()
        self._me = _tasks.current_task()
        self._before = set(_tasks.all_tasks())
        self._token = _INSIDE.set((*_INSIDE.get(), self))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                return
            leaked = self._leaked()
            rounds = 0
            while rounds < 20 and any(t.state == "runnable" for t in leaked):
                # let tasks started just now run up to their first wait (trio runs a
                # batch of ready tasks in random order: one checkpoint may not do)
                await _tasks.sleep(0)
                leaked = self._leaked()
                rounds += 1
            if leaked:
                with _grace_pause() as pause:
                    deadline = monotonic() + self.grace
                    delay = 0.001
                    while leaked and (left := deadline - monotonic()) > 0:
                        await pause(min(delay, left))
                        delay = min(delay * 2, 0.1)
                        leaked = self._leaked()
            if leaked:
                n = len(leaked)
                raise TaskLeakError(
                    f"found {n} unexpected task{'s' if n != 1 else ''} still alive "
                    f"{self.grace:g}s after the no_leaks() block ended:\n\n"
                    + debug.dump(leaked, group=False),
                    leaked,
                )
        finally:
            self._before = None
            try:
                _INSIDE.reset(self._token)
            except ValueError:  # exited in another context than entered (a misused fixture)
                pass
            self._enabled.__exit__(None, None, None)

    def _started_inside(self, task: Any) -> bool:
        ctx = _tasks.task_context(task)
        return ctx is None or self in ctx.get(_INSIDE, ())  # (unknown context: count it)

    def _leaked(self) -> list[debug.TaskInfo]:
        before = self._before or set()
        fresh = [
            t
            for t in _tasks.all_tasks()
            if t not in before
            and t is not self._me
            and not _infrastructure(t)
            and self._started_inside(t)
        ]
        if not fresh:
            return []
        names = frozenset(self.ignore_names)
        top = frozenset(self.ignore_top_function)
        any_ = frozenset(self.ignore_any_function)
        pred = self.ignore
        return [
            i
            for i in debug._snapshots(fresh)
            if i.name not in names
            and not (top and _top_functions(i) & top)
            and not any(f.function in any_ for f in i.stack)
            and not (pred is not None and pred(i))
        ]

"""Task enumeration and inspection for `asyncgo.debug` and `asyncgo.testing`.

Everything the diagnostics need to know about the running event loop and its
tasks, behind one small set of functions, for asyncio (and uvloop) and trio:

* `all_tasks()`, `current_task()`, `task_name()`, `task_context()`,
  `task_frames()`, `task_state()`, `task_parent()`: what a goroutine dump shows;
* `waits_for_children()`, `pending_deadline()`, `loop_activity()`: what the
  deadlock detector needs to prove that nothing can wake a task -- no child
  task, no cancel-scope deadline, no timer, ready callback, I/O source or
  thread callback of the event loop;
* `wait_all_blocked()`, `BodyScope`: what its watcher task needs.

Much of this reads private attributes of asyncio, uvloop, anyio and trio (the
same ones anyio's own ``wait_all_tasks_blocked`` reads). Every such read is
guarded: when an implementation changes, a dump loses a detail and the
deadlock detector becomes *more* conservative (it reports nothing), never wrong.
Nothing here runs unless diagnostics are used.
"""

from __future__ import annotations

import _thread
import asyncio
import contextvars
import gc
import math
import sys
import threading
import time
import weakref
from asyncio import _get_running_loop
from collections import deque
from collections.abc import Callable, Iterator
from types import CodeType, FrameType, TracebackType
from typing import Any, Self

__all__ = [
    "QUIET_TIMERS",
    "BodyScope",
    "IdleWait",
    "all_tasks",
    "awaited_tasks",
    "backend_name",
    "current_task",
    "loop_activity",
    "loop_token",
    "num_tasks_hint",
    "pending_deadline",
    "scope_chain",
    "sleep",
    "task_context",
    "task_done",
    "task_frames",
    "task_name",
    "task_parent",
    "task_state",
    "virtual_clock",
    "wait_all_blocked",
    "waits_for_children",
]

_anyio_task_states: Any = None
_AnyioTaskGroup: Any = None
_anyio_asyncio: Any = None
try:  # anyio's per-task cancel-scope state on asyncio (parent task id, innermost scope)
    from anyio._backends import _asyncio as _anyio_asyncio

    _anyio_task_states = _anyio_asyncio._task_states
    _AnyioTaskGroup = _anyio_asyncio.TaskGroup
except Exception:  # pragma: no cover - anyio changed its internals
    pass


def _code(fn: Any) -> Any:
    return getattr(fn, "__code__", None)


#: Frames in which an asyncio task waits for its child tasks (a task group's exit,
#: or ``start()`` waiting for ``task_status.started()``).
_CHILD_WAIT_CODES: frozenset[Any] = frozenset(
    c
    for c in (
        _code(getattr(_AnyioTaskGroup, "__aexit__", None)),
        _code(getattr(_AnyioTaskGroup, "start", None)),
        _code(getattr(getattr(asyncio, "TaskGroup", None), "__aexit__", None)),
    )
    if c is not None
)

#: Frames in which an asyncio task waits for another task's outcome through a plain
#: future: anyio's pytest runner, which hands each test to its runner task and waits.
_RESULT_WAIT_CODES: frozenset[Any] = frozenset(
    c
    for c in (
        _code(getattr(getattr(_anyio_asyncio, "TestRunner", None), "_call_in_runner_task", None)),
    )
    if c is not None
)

_trio: Any = None


def _trio_mod() -> Any:
    global _trio
    if _trio is None:
        import trio
        import trio.testing  # wait_all_tasks_blocked

        _trio = trio
    return _trio


def backend_name() -> str:
    """``"asyncio"`` (also under uvloop) or ``"trio"``.

    Raises:
        RuntimeError: No event loop runs in this thread.
    """
    if _get_running_loop() is not None:
        return "asyncio"
    if "trio" in sys.modules:
        try:
            _trio_mod().lowlevel.current_task()
            return "trio"
        except RuntimeError:
            pass
    raise RuntimeError("asyncgo.debug: no running event loop (call this from async code)")


def loop_token() -> object:
    """The running asyncio loop, or the running trio run's token."""
    loop = _get_running_loop()
    if loop is not None:
        return loop
    return _trio_mod().lowlevel.current_trio_token()


try:  # asyncio's {loop: running task}: asyncio.current_task() is slower on 3.11
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    _current_tasks_get: Any = _current_tasks.get
except ImportError:  # pragma: no cover - Python >= 3.14 keeps it elsewhere
    _current_tasks_get = asyncio.current_task


def current_task() -> Any:
    """The running task (asyncio ``Task`` or ``trio.lowlevel.Task``)."""
    loop = _get_running_loop()
    if loop is not None:
        return _current_tasks_get(loop)
    if "trio" not in sys.modules:
        backend_name()  # raises the clear RuntimeError
    return _trio_mod().lowlevel.current_task()


# -- enumeration -------------------------------------------------------------------

#: trio's own system tasks: never a user's, never able to touch asyncgo objects
#: except through ``run_sync_soon`` callbacks (checked by `loop_activity`).
_TRIO_INTERNAL_NAMES = frozenset({"<init>", "<TrioToken.run_sync_soon task>"})


def _trio_walk(task: Any) -> Iterator[Any]:
    stack = [task]
    while stack:
        t = stack.pop()
        yield t
        for nursery in t.child_nurseries:
            stack.extend(nursery.child_tasks)


def all_tasks() -> list[Any]:
    """Every live task of the running event loop (trio: without trio's own system tasks)."""
    loop = _get_running_loop()
    if loop is not None:
        return [t for t in asyncio.all_tasks(loop) if not t.done()]
    backend_name()  # a clear RuntimeError outside any event loop
    trio = _trio_mod()
    root = trio.lowlevel.current_root_task()
    if root is None:  # pragma: no cover - only during trio's start-up
        return []
    return [t for t in _trio_walk(root) if t.name not in _TRIO_INTERNAL_NAMES]


def task_done(task: Any) -> bool:
    """Whether *task* has finished."""
    done = getattr(task, "done", None)
    if done is not None:  # asyncio
        return bool(done())
    return task.coro.cr_frame is None  # trio: a finished coroutine has no frame


#: Tasks named after what they run, the name worked out only when a dump asks (naming
#: at every spawn costs): the code of a function the task runs -> a function of that
#: function's frame giving the name (a pipeline stage: ``pipeline stage 2:
#: stages.map(fetch)``). The outermost frame with an entry names the task.
TASK_NAMERS: dict[CodeType, Callable[[FrameType], str]] = {}


#: anyio's process-pool janitor: the first ``anyio.to_process.run_sync`` of an event
#: loop starts it (so do ``stages.map(executor="process")`` and
#: ``WorkerPool(executor="process")``), and it sleeps until the loop ends, to stop the
#: pool's worker processes. The run's infrastructure: never a leak, and it wakes
#: nobody (so it does not hide a deadlock). Known by its name or by its function.
_JANITOR_NAME = "AnyIO process pool shutdown task"
_JANITOR_FUNCTIONS = frozenset(
    {
        "anyio._backends._asyncio._shutdown_process_pool_on_exit",
        "anyio._backends._trio._shutdown_process_pool",
    }
)


def entry_function(task: Any) -> str:
    """``module.qualname`` of the coroutine function *task* runs ("" if unknown)."""
    get_coro = getattr(task, "get_coro", None)  # asyncio
    coro = get_coro() if get_coro is not None else getattr(task, "coro", None)  # trio
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        return ""
    return f"{frame.f_globals.get('__name__', '?')}.{getattr(coro, '__qualname__', '?')}"


def is_anyio_janitor(task: Any) -> bool:
    """Whether *task* is anyio's process-pool janitor (see `_JANITOR_FUNCTIONS`)."""
    name = getattr(task, "name", None)  # trio
    if name is None:
        get_name = getattr(task, "get_name", None)  # asyncio
        name = get_name() if get_name is not None else None
    return name == _JANITOR_NAME or entry_function(task) in _JANITOR_FUNCTIONS


def task_name(task: Any, frames: list[tuple[FrameType, int]] | None = None) -> str:
    """The task's name (asyncio: ``get_name()``; trio: ``.name``).

    An asyncgo `Group` task on asyncio is started unnamed (naming costs at every
    spawn), so asyncio calls it ``Task-N``; it is shown as trio names it instead,
    after the function it runs (``module.qualname``). A task running a function in
    `TASK_NAMERS` is named by it (*frames*: its await stack, if already at hand).
    """
    if TASK_NAMERS:
        for f, _ in frames if frames is not None else task_frames(task)[0]:
            namer = TASK_NAMERS.get(f.f_code)
            if namer is not None:
                return namer(f)
    get_name = getattr(task, "get_name", None)
    if get_name is not None:
        name = str(get_name())
        if name.startswith("Task-"):
            fn = _group_task_fn(task)
            if fn is not None:
                from ._taskgroup import _task_name

                return _task_name(fn)
        return name
    return str(task.name)


def _group_task_fn(task: Any) -> Any:
    """The function an asyncgo Group task on asyncio runs, if *task* is one."""
    from ._taskgroup import AsyncioCore

    get_coro = getattr(task, "get_coro", None)
    coro = get_coro() if get_coro is not None else None
    if getattr(coro, "cr_code", None) is not AsyncioCore._run.__code__:
        return None
    frame = coro.cr_frame  # type: ignore[union-attr]
    return None if frame is None else frame.f_locals.get("fn")


def task_context(task: Any) -> contextvars.Context | None:
    """The `contextvars.Context` the task runs in (how labels and scopes reach it)."""
    ctx = getattr(task, "context", None)  # trio
    if isinstance(ctx, contextvars.Context):
        return ctx
    get_context = getattr(task, "get_context", None)  # asyncio, Python >= 3.12
    if get_context is not None:
        try:
            return get_context()  # type: ignore[no-any-return]
        except Exception:  # pragma: no cover
            return None
    ctx = getattr(task, "_context", None)  # the pure-Python Task
    if isinstance(ctx, contextvars.Context):
        return ctx
    # Python 3.11's C Task keeps its context in a C field that only the GC sees.
    for r in gc.get_referents(task):
        if isinstance(r, contextvars.Context):
            return r
    return None


def task_parent(task: Any, tasks: list[Any]) -> Any:
    """The task that started *task* (None if unknown or gone)."""
    nursery = getattr(task, "parent_nursery", None)  # trio
    if nursery is not None:
        parent = nursery.parent_task
        return None if parent.name in _TRIO_INTERNAL_NAMES else parent
    if _anyio_task_states is not None:
        try:
            state = _anyio_task_states.get(task)
        except TypeError:  # pragma: no cover
            state = None
        parent_id = getattr(state, "parent_id", None)
        if parent_id is not None:
            for t in tasks:
                if id(t) == parent_id:
                    return t
    return None


#: Types of ``agen.asend()`` / ``agen.__anext__()`` and ``agen.athrow()`` /
#: ``agen.aclose()`` step objects, which a task awaits in ``async for``.
_AGEN_STEPS = frozenset({"async_generator_asend", "async_generator_athrow"})


def task_frames(task: Any) -> tuple[list[tuple[FrameType, int]], object]:
    """The task's await stack, outermost first, and the awaitable it waits on last.

    Follows ``cr_await`` / ``ag_await`` / ``gi_yieldfrom`` from the task's
    coroutine, and into the async generator an ``async for`` is stepping, down
    to the first object that is not a coroutine or generator (a future, trio's
    low-level trap, ...), which is returned as the leaf.
    """
    coro = task.get_coro() if hasattr(task, "get_coro") else task.coro
    frames: list[tuple[FrameType, int]] = []
    root = getattr(coro, "cr_frame", None)
    if root is not None and root.f_back is not None:
        # The running task: its awaits are live calls, linked by f_back, not cr_await.
        f: FrameType | None = sys._getframe(1)
        live: list[tuple[FrameType, int]] = []
        while f is not None:
            live.append((f, f.f_lineno))
            if f is root:
                live.reverse()
                return live, None
            f = f.f_back
    obj: Any = coro
    leaf: object = None
    for _ in range(1000):  # a cycle is impossible, but never loop forever in a dump
        if obj is None:
            break
        if hasattr(obj, "cr_frame"):
            frame, nxt = obj.cr_frame, obj.cr_await
        elif hasattr(obj, "ag_frame"):
            frame, nxt = obj.ag_frame, obj.ag_await
        elif hasattr(obj, "gi_frame"):
            frame, nxt = obj.gi_frame, obj.gi_yieldfrom
        elif type(obj).__name__ in _AGEN_STEPS:
            # ``await agen.__anext__()`` (``async for``): the step object does not
            # expose its generator, but holds a reference to it.
            nxt = next((r for r in gc.get_referents(obj) if hasattr(r, "ag_frame")), None)
            if nxt is None:  # pragma: no cover - always found on CPython
                leaf = obj
                break
            obj = nxt
            continue
        else:
            leaf = obj
            break
        if frame is None:  # finished (or not started)
            break
        frames.append((frame, frame.f_lineno))
        obj = nxt
    return frames, leaf


def task_state(task: Any, current: Any) -> str:
    """``"running"`` (the caller), ``"runnable"`` (scheduled) or ``"waiting"`` (blocked)."""
    if task is current:
        return "running"
    if hasattr(task, "_fut_waiter"):  # asyncio
        try:
            w = task._fut_waiter
        except AttributeError:  # pragma: no cover
            return "runnable"
        return "waiting" if w is not None and not w.done() else "runnable"
    # trio: a scheduled task has its next send set; a blocked one does not.
    return "runnable" if getattr(task, "_next_send_fn", None) is not None else "waiting"


# -- what could still wake a blocked task -------------------------------------------


def waits_for_children(task: Any) -> bool:
    """Whether *task* is blocked until other tasks of the same loop finish (or start).

    That is a task group's ``__aexit__`` (anyio, trio nursery, asyncio.TaskGroup),
    ``start()`` waiting for ``task_status.started()``, ``await task``,
    ``asyncio.gather()`` of tasks, or anyio's pytest runner waiting for the task
    running the test: such a task can only be woken by those tasks.
    """
    nurseries = getattr(task, "child_nurseries", None)
    if nurseries is not None:  # trio
        return any(getattr(n, "_parent_waiting_in_aexit", False) for n in nurseries)
    waiter = getattr(task, "_fut_waiter", None)
    if isinstance(waiter, asyncio.Task):  # `await other_task`
        return True
    children = getattr(waiter, "_children", None)  # asyncio.gather()'s future
    if children is not None and type(waiter).__name__ == "_GatheringFuture":
        return all(isinstance(c, asyncio.Task) for c in children)
    frames, _ = task_frames(task)
    if not frames:
        return False
    code = frames[-1][0].f_code
    return code in _CHILD_WAIT_CODES or code in _RESULT_WAIT_CODES or code in _group_wait_codes()


_GROUP_WAIT_CODES: frozenset[Any] | None = None


def _group_wait_codes() -> frozenset[Any]:
    """`asyncgo.Group`'s own wait for its children on asyncio (its native task group)."""
    global _GROUP_WAIT_CODES
    if _GROUP_WAIT_CODES is None:
        codes: set[Any] = set()
        mod = sys.modules.get(__package__ + "._taskgroup")
        if mod is not None:
            c = _code(getattr(getattr(mod, "AsyncioCore", None), "exit", None))
            if c is not None:
                codes.add(c)
            _GROUP_WAIT_CODES = frozenset(codes)
        else:
            return frozenset()  # not imported (yet): nobody can be waiting in it
    return _GROUP_WAIT_CODES


def pending_deadline(
    task: Any, stop: object, handles: set[int], *, deadlines_only: bool = False
) -> bool:
    """Whether a cancel scope below *stop* can still wake *task* (a deadline or a pending cancel).

    Walks the task's cancel scopes from the innermost outwards (through its
    parents' scopes: a child task's scopes continue in the task that started
    it). A shielded scope's own deadline counts, scopes outside it do not (their
    cancellation cannot reach the task). Scopes from *stop* outwards are not
    counted -- they enclose the deadlock-detection scope, whose report should
    come first -- but the ids of their timer handles are still added to
    *handles*, as are every scope's, so that `loop_activity` does not count
    those timers as unknown wake-ups. *deadlines_only*: a scope already
    cancelled does not count (its cancellation has been delivered). Nor does the
    deadline of a scope already cancelled: it has passed, or can only cancel the
    scope again, which wakes nothing more.
    """
    cancels = not deadlines_only
    found = False
    counting = True
    if hasattr(task, "_cancel_status"):  # trio
        status = task._cancel_status
        while status is not None:
            scope = status._scope
            if scope is stop:
                counting = False
            if counting and (cancels if scope.cancel_called else scope.deadline != math.inf):
                found = True
            if scope.shield:  # nothing further out can cancel this task
                counting = False
            status = status._parent
        return found
    if _anyio_task_states is None:  # pragma: no cover
        return False
    state = _anyio_task_states.get(task)
    scope = getattr(state, "cancel_scope", None)
    while scope is not None:
        if scope is stop:
            counting = False
        h = getattr(scope, "_timeout_handle", None)
        if h is not None:
            handles.add(id(h))
        if counting and (cancels if scope._cancel_called else scope._deadline != math.inf):
            found = True
        if scope._shield:  # nothing further out can cancel this task
            counting = False
        scope = scope._parent_scope
    return found


def awaited_tasks(task: Any) -> list[Any]:
    """The tasks *task* awaits directly (``await other_task``, ``asyncio.gather()``
    of tasks); empty if it awaits none (trio has no such wait)."""
    waiter = getattr(task, "_fut_waiter", None)
    if isinstance(waiter, asyncio.Task):
        return [waiter]
    children = getattr(waiter, "_children", None)
    if children is not None and type(waiter).__name__ == "_GatheringFuture":
        return [c for c in children if isinstance(c, asyncio.Task)]
    return []


def scope_chain(task: Any) -> list[Any]:
    """*task*'s cancel scopes, innermost first, through those of the tasks that
    started it (a child's scopes continue in its parent's); empty if unknown.

    A task started in a task group has that group's scope in its chain: the tasks
    a group waits for are those with its owner's innermost scope in theirs.
    """
    out: list[Any] = []
    if hasattr(task, "_cancel_status"):  # trio
        status = task._cancel_status
        while status is not None:
            out.append(status._scope)
            status = status._parent
        return out
    if _anyio_task_states is None:  # pragma: no cover
        return out
    scope = getattr(_anyio_task_states.get(task), "cancel_scope", None)
    while scope is not None:
        out.append(scope)
        scope = getattr(scope, "_parent_scope", None)
    return out


def loop_activity(handles: set[int]) -> tuple[str, bool] | None:
    """Something other than a task that could wake one: ``(what, transient)``, or None.

    Ready callbacks (transient: look again soon), timers (other than the cancel
    scopes' in *handles*), I/O sources without a task (protocols, readers),
    signal handlers, and trio's ``run_sync_soon`` queue. An event loop this
    does not know how to inspect always answers ``("unknown event loop", False)``.
    """
    loop = _get_running_loop()
    if loop is None:
        stats = _trio_mod().lowlevel.current_statistics()
        if getattr(stats, "run_sync_soon_queue_size", 0):
            return "callbacks from other threads pending", True
        return None
    if isinstance(loop, asyncio.BaseEventLoop):
        return _asyncio_activity(loop, handles)
    if type(loop).__module__.startswith("uvloop"):
        return _uvloop_activity(loop, handles)
    return "unknown event loop", False  # pragma: no cover


def _asyncio_activity(loop: Any, handles: set[int]) -> tuple[str, bool] | None:
    try:
        if any(not h._cancelled for h in loop._ready):
            return "ready callbacks", True
        for h in loop._scheduled:
            # (anyio's sleep_forever() is a timer at +inf: it never fires)
            if (
                not h._cancelled
                and id(h) not in handles
                and h._when != math.inf
                and h not in QUIET_TIMERS
            ):
                return f"a pending timer ({h!r})", False
        if getattr(loop, "_signal_handlers", None):
            return "signal handlers", False
        if _child_watcher_threads():
            # A subprocess on Python < 3.12 (ThreadedChildWatcher): its exit reaches the
            # loop from asyncio's own waitpid thread, with no fd in the selector.
            return "a subprocess (asyncio's thread waiting for it to exit)", False
        selector = getattr(loop, "_selector", None)
        if selector is not None:
            own = loop._ssock.fileno() if getattr(loop, "_ssock", None) is not None else -1
            if any(fd != own and fd not in QUIET_FDS for fd in selector.get_map()):
                return "I/O sources (sockets, pipes or readers)", False
        elif not hasattr(loop, "_proactor"):  # pragma: no cover
            return "unknown event loop", False
        else:  # pragma: no cover - Windows: pending overlapped I/O
            if getattr(loop._proactor, "_cache", None):
                return "I/O pending", False
    except AttributeError:  # pragma: no cover - asyncio changed its internals
        return "unknown event loop", False
    return None


def _child_watcher_threads() -> bool:
    """Whether asyncio's ThreadedChildWatcher is waiting for a child process."""
    return any("waitpid-" in t.name and t.is_alive() and t.daemon for t in threading.enumerate())


def _uvloop_activity(loop: Any, handles: set[int]) -> tuple[str, bool] | None:
    # uvloop keeps its state in C fields; the GC sees them as the loop's referents:
    # the ready deque, the set of pending TimerHandles, the set of servers, the
    # transports by fd (a WeakValueDictionary) and the UVPoll handles by fd (its
    # own self-pipe is one of them).
    import weakref

    polls = 0
    for r in gc.get_referents(loop):
        if type(r) is deque:
            if any(not h.cancelled() for h in r if hasattr(h, "cancelled")):
                return "ready callbacks", True
        elif type(r) is set:
            for h in r:
                name = type(h).__name__
                if name == "TimerHandle":
                    if (
                        not h.cancelled()
                        and id(h) not in handles
                        and h.when() != math.inf
                        and h not in QUIET_TIMERS
                    ):
                        return f"a pending timer ({h!r})", False
                elif name == "Server":
                    return "a listening server", False
                elif name in ("UVProcessTransport", "UVProcess"):
                    return "a subprocess", False
        elif isinstance(r, weakref.WeakValueDictionary):
            # (a closed transport stays here for as long as something references it)
            if any(not getattr(t, "is_closing", bool)() for t in list(r.values())):
                return "open transports", False
        elif type(r) is dict:
            for k, v in r.items():
                if type(v).__name__ == "UVPoll":
                    if k not in QUIET_FDS:
                        polls += 1
                elif type(v).__name__ == "Handle" and callable(getattr(v, "cancelled", None)):
                    return "signal handlers", False
    if polls > 1:
        return "I/O sources (readers or writers)", False
    return None


# -- threads the loop did not start --------------------------------------------------------
#
# Told apart by their `threading.Thread` objects only -- never by their frames: on
# CPython 3.12.1 and 3.13.0, ``sys._current_frames()`` called while another thread
# pickles (a `multiprocessing.pool.ThreadPool` job) corrupts memory and crashes.

#: File descriptors of asyncgo's own that wake the loop but never a task (the
#: ticker's timerfd: asyncgo._backend._ticker).
QUIET_FDS: set[int] = set()

#: Timers of asyncgo's own that never wake a task (`IdleWait`'s polls). Held weakly
#: and told apart by identity: a poll left pending in a loop that closed is never
#: mistaken for a timer made later at the same address.
QUIET_TIMERS: weakref.WeakSet[Any] = weakref.WeakSet()

#: Threads of asyncgo's own that never wake a task (the blocking watchdog).
QUIET_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

# Where the thread classes and entry points of threads that never call into an event
# loop by themselves live: the workers of anyio's and trio's thread pools (their jobs
# are awaited by a task, which the watcher sees) and trio's guest-mode I/O wait;
# process and thread pools' bookkeeping (their jobs and callbacks:
# `_library_work_pending`); pytest-xdist's execnet I/O, pytest-timeout,
# OpenTelemetry's exporters. (A thread whose entry point is ``anyio.from_thread``
# or a context's ``cancel`` counts.)
_QUIET_MODULES = (
    "anyio._backends.",
    "trio._core.",
    "concurrent.futures.",
    "multiprocessing.",
    "execnet.",
    "pytest_timeout.",
    "opentelemetry.",
)


class ThreadsSeen:
    """The threads running now: every `threading` thread by ident, and how many
    others (``_thread.start_new_thread``: counted, not known)."""

    __slots__ = ("raw", "threads")

    def __init__(self) -> None:
        self.threads = {t.ident: t for t in threading.enumerate() if t.ident is not None}
        self.raw = _raw_threads()


def busy_threads(before: ThreadsSeen) -> list[threading.Thread | None]:
    """Threads that may yet wake a task, though the loop cannot see them.

    A bare ``threading.Thread`` or ``threading.Timer`` started since *before* (a
    `ThreadsSeen`) -- one that may call ``from_thread``, ``call_soon_threadsafe``,
    ``run_sync_soon`` or a context's ``cancel()`` -- and, whenever they were
    started, a thread pool with jobs queued or running, and a process pool with
    jobs out, whose done-callbacks its thread will run. Left out: this thread,
    other threads there before (a test's infrastructure), idle pools, and the
    threads of libraries that never call into a loop. None stands for threads
    started with ``_thread.start_new_thread`` since *before*: `threading` does
    not know them, only how many there are.
    """
    me = threading.current_thread()
    out: list[threading.Thread | None] = []
    if _raw_threads() > before.raw:
        out.append(None)
    for t in threading.enumerate():
        if t is me or t in QUIET_THREADS or not t.is_alive():
            continue
        if _library_work_pending(t):
            out.append(t)
            continue
        if before.threads.get(t.ident or 0) is t:
            continue  # there before: the test's infrastructure
        if isinstance(t, threading.Timer):
            fn = t.function
            if not t.finished.is_set() and not _quiet_module(getattr(fn, "__module__", None)):
                out.append(t)
            continue
        target = getattr(t, "_target", None)
        if _quiet_module(type(t).__module__) or (
            target is not None and _quiet_module(getattr(target, "__module__", None))
        ):
            continue
        out.append(t)
    return out


def _raw_threads() -> int:
    """How many threads run that `threading` does not know (``_thread.start_new_thread``)."""
    main = threading.main_thread()
    known = sum(
        1
        for t in threading.enumerate()
        if t is not main and not isinstance(t, threading._DummyThread)
    )
    return max(0, _thread._count() - known)


def _library_work_pending(thread: threading.Thread) -> bool:
    """Whether *thread* belongs to a pool with work out that may end in a call into
    the loop: a `ThreadPoolExecutor` worker while the executor has jobs queued or
    running (a job given to a pool started before the block counts too), a
    `multiprocessing` pool (threads or processes) with results due, whose
    callbacks its result handler runs, a `ProcessPoolExecutor` with jobs out."""
    target = getattr(thread, "_target", None)
    cft = sys.modules.get("concurrent.futures.thread")
    if cft is not None and target is getattr(cft, "_worker", None):
        args: Any = getattr(thread, "_args", ())
        executor = args[0]() if args and callable(args[0]) else None
        if executor is None:
            return False
        try:
            idle = executor._idle_semaphore._value
            return bool(executor._work_queue.qsize()) or len(executor._threads) > idle
        except AttributeError:  # pragma: no cover - concurrent.futures changed
            return True
    items = getattr(thread, "pending_work_items", None)  # concurrent.futures.process
    if isinstance(items, dict):
        return bool(items)
    mp = sys.modules.get("multiprocessing.pool")
    handle = getattr(getattr(mp, "Pool", None), "_handle_results", None)
    if handle is not None and target is handle:
        args = getattr(thread, "_args", ())
        return len(args) > 2 and bool(args[2])  # (outqueue, get, cache): results due
    return False


def _quiet_module(name: object) -> bool:
    return isinstance(name, str) and (name + ".").startswith(_QUIET_MODULES)


def let_threads_run() -> None:
    """Block this thread for a millisecond, so that other threads take the GIL.

    A thread started by ``_thread.start_new_thread`` (unlike ``Thread.start()``)
    runs, and is counted, only once it gets the GIL, and the loop's thread
    releases it only when it blocks or every 5 ms. Called before a deadlock is
    reported: the loop is idle then anyway.
    """
    if threading.active_count() > 1 or _thread._count():
        time.sleep(0.001)


async def join_threads(threads: list[threading.Thread | None], timeout: float) -> None:
    """Wait, in a worker thread, until the first of *threads* ends or *timeout*
    (seconds of real time) passes: no timer on the loop's (virtual) clock."""
    import anyio.to_thread

    first = next((t for t in threads if t is not None), None)
    await anyio.to_thread.run_sync(_join, first, timeout, abandon_on_cancel=True)


def _join(thread: threading.Thread | None, timeout: float) -> None:
    if thread is None:
        threading.Event().wait(timeout)
    else:
        thread.join(timeout)


# -- the watcher's tools ---------------------------------------------------------------


async def wait_all_blocked() -> None:
    """Return once every other task of the loop is blocked (trio: and no I/O is ready)."""
    loop = _get_running_loop()
    if loop is None:
        await _trio_mod().testing.wait_all_tasks_blocked()
        return
    me = asyncio.current_task(loop)
    # (Not checked at once: callbacks already scheduled run first -- such as anyio's
    # delivery of a cancellation to a scope just left.)
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():  # (cancelled)
            fut.set_result(None)

    idle = IdleWait(loop, me, wake)
    try:
        await fut
    finally:
        idle.cancel()


class IdleWait:
    """asyncio: call *fn* once every task of *loop* but *me* is blocked.

    Checked from loop callbacks, first at once and then after a short, growing
    pause while the loop is busy -- not by a task polling: the task waiting for
    this stays parked on a pending future meanwhile. A task that is runnable, or
    woken but not yet run, counts as busy for anyone else polling the same way
    (anyio's ``wait_all_tasks_blocked`` sleeps 0.1 s whenever it sees one), and a
    deadlock watcher woken at every park would be seen so right after each park.
    Its timers are in `QUIET_TIMERS`: they wake no task.
    """

    __slots__ = ("fn", "handle", "loop", "me")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, me: object, fn: Callable[[], object]
    ) -> None:
        self.loop = loop
        self.me = me
        self.fn: Callable[[], object] | None = fn
        self.handle: asyncio.Handle | None = loop.call_soon(self._poll, 0.0)

    def _poll(self, delay: float) -> None:
        if self.handle is not None:
            QUIET_TIMERS.discard(self.handle)
            self.handle = None
        fn = self.fn
        if fn is None:
            return
        if _all_blocked(self.loop, self.me):
            self.fn = None
            fn()
            return
        delay = min(delay * 2 or 0.001, 0.1)  # (anyio polls every 0.1 s)
        h = self.handle = self.loop.call_later(delay, self._poll, delay)
        QUIET_TIMERS.add(h)

    def cancel(self) -> None:
        self.fn = None
        h = self.handle
        if h is not None:
            self.handle = None
            h.cancel()
            QUIET_TIMERS.discard(h)


def _all_blocked(loop: asyncio.AbstractEventLoop, me: object) -> bool:
    # (A function of its own: no local of the waiting frame holds a task while it
    # sleeps, which would keep a task that ends meanwhile, and its frames, alive.)
    for t in asyncio.all_tasks(loop):
        if t is not me:
            w = getattr(t, "_fut_waiter", None)
            if w is None or w.done():
                return False
    return True


async def sleep(seconds: float) -> None:
    """The running backend's sleep, on a cancel-scope deadline.

    On asyncio a plain ``asyncio.sleep`` is an anonymous timer that would make
    another scope's deadlock watcher see "a pending timer"; the scope's timer is
    one `pending_deadline` accounts for.
    """
    if _get_running_loop() is None:
        await _trio_mod().sleep(seconds)
    elif seconds <= 0:
        await asyncio.sleep(0)
    else:
        import anyio

        with anyio.move_on_after(seconds):
            await anyio.Event().wait()


class BodyScope:
    """The cancel scope a deadlock-detection scope runs its body in.

    trio: a native ``trio.CancelScope`` (what a trio task's cancel status points
    at); asyncio: anyio's scope (what anyio's task states point at).
    """

    __slots__ = ("native",)

    def __init__(self) -> None:
        if _get_running_loop() is None:
            self.native: Any = _trio_mod().CancelScope()
        else:
            import anyio

            self.native = anyio.CancelScope()

    def __enter__(self) -> Self:
        self.native.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return bool(self.native.__exit__(exc_type, exc, tb))

    def cancel(self) -> None:
        self.native.cancel()

    @property
    def cancelled_caught(self) -> bool:
        return bool(self.native.cancelled_caught)


def num_tasks_hint() -> int:
    """How many tasks the loop has (cheaper than `all_tasks` on asyncio)."""
    loop = _get_running_loop()
    if loop is not None:
        return len(asyncio.all_tasks(loop))
    return len(all_tasks())


class _Hook:
    """A trio instrument with one hook, *name*, which calls *fn* (with the hook's
    arguments when *args*)."""

    def __init__(self, name: str, fn: Callable[..., object], args: bool = False) -> None:
        setattr(self, name, fn if args else lambda *_: fn())  # (trio finds hooks with dir())


def on_task_exit(fn: Callable[[], object]) -> Callable[[], None]:
    """trio: call ``fn()`` whenever a task of the run exits, until the returned
    function is called. (asyncio: a no-op; its loops have no virtual clock.)"""
    return _add_instrument(_Hook("task_exited", fn))


def on_loop_turn(fn: Callable[[float], object]) -> Callable[[], None]:
    """trio: call ``fn(timeout)`` at every turn of the run loop, just before its wait
    for I/O (*timeout*: how long that wait may last, 0 when tasks are runnable;
    the deadlines that passed have been expired and the tasks they woke have run),
    until the returned function is called. (asyncio: a no-op, as `on_task_exit`.)
    *fn* must be cheap, and must not raise."""
    return _add_instrument(_Hook("before_io_wait", fn, args=True))


def on_task_step(fn: Callable[[object], object]) -> Callable[[], None]:
    """trio: call ``fn(task)`` before each step of a task of the run, until the
    returned function is called. (asyncio: a no-op, as `on_task_exit`.) *fn* must
    be cheap, and must not raise."""
    return _add_instrument(_Hook("before_task_step", fn, args=True))


def trio_token() -> Any:
    """The running trio run's token (``run_sync_soon`` wakes its loop)."""
    return _trio_mod().lowlevel.current_trio_token()


def _add_instrument(hook: object) -> Callable[[], None]:
    if _get_running_loop() is not None:
        return lambda: None
    lowlevel = _trio_mod().lowlevel
    lowlevel.add_instrument(hook)

    def remove() -> None:
        try:
            lowlevel.remove_instrument(hook)
        except (KeyError, RuntimeError):  # already gone, or the run is over
            pass

    return remove


def trio_now() -> float:
    """The running trio run's clock (its ``current_time()``)."""
    return _trio_mod().current_time()  # type: ignore[no-any-return]


def trio_next_deadline() -> float:
    """The running trio run's next deadline on its clock (inf: none), as
    ``current_statistics()`` tells it."""
    trio = _trio_mod()
    left = trio.lowlevel.current_statistics().seconds_to_next_deadline
    return math.inf if left == math.inf else trio.current_time() + left


def virtual_clock() -> bool:
    """Whether the run's clock is not the system's (trio's ``MockClock``): waits are free."""
    if _get_running_loop() is not None:
        return False
    clock = _trio_mod().lowlevel.current_clock()
    return type(clock).__name__ != "SystemClock"

"""Diagnostics: Go's goroutine dump, pprof labels and deadlock detector for async tasks.

* `tasks()` / `dump()` / `num_tasks()`: every live task of the running event
  loop with its name, labels, state, what asyncgo primitive it is parked on
  (and where that primitive was made), for how long, and its await stack.
  Go: ``runtime.Stack(buf, true)``, ``/debug/pprof/goroutine?debug=1|2``,
  ``runtime.NumGoroutine()``.
* `labels()`: key/value labels carried to every task started inside.
  Go: ``pprof.Do(ctx, pprof.Labels(...), f)``.
* `detect_deadlocks()`: raise `asyncgo.Deadlock`, with who waits on what,
  instead of hanging when every task is parked on asyncgo primitives that no
  task, timer, I/O source or thread can complete.
  Go: ``fatal error: all goroutines are asleep - deadlock!``.
* `asgi_app()` / `aiohttp_handler()`: serve `dump()` over HTTP, off unless
  enabled and loopback-only by default. Go: ``net/http/pprof``.
* `monitor_lag()`: how late the event loop wakes a sleeping task (count, mean,
  max, recent percentiles, a histogram): the symptom of a blocked or overloaded
  loop. Go: the scheduling latency of ``go tool trace``,
  ``runtime/metrics`` ``/sched/latencies:seconds``.
* `watch_blocking()`: a watchdog thread that pings the loop and, when it does
  not answer within a threshold, logs (or hands you) the stack of what is
  blocking it. Go: ``go tool trace``'s view of a P stuck running one goroutine.

Diagnostics are off by default and then cost nothing: channels, select and the
sync primitives read one module attribute per park. `enable()` (or the
`enabled()` block, which `detect_deadlocks()` and `asyncgo.testing.no_leaks()`
enter for you) turns on the tracer, which records where each primitive is made
(a frame walk per construction) and which task parks on what (a dictionary
entry per park); `tasks()` works without it, but then shows only stacks.
`monitor_lag()` and `watch_blocking()` work whether diagnostics are on or not.
See docs/diagnostics.md.
"""

from __future__ import annotations

import linecache
import logging
import math
import os
import sys
import threading
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from time import monotonic
from types import FrameType, MappingProxyType, TracebackType
from typing import Any, final

from ._backend import _diag, _tasks, _ticker, _timers, anyio, create_task_group, fail_parker
from ._backend._taskgroup import _leaves
from ._debug_http import aiohttp_handler as aiohttp_handler
from ._debug_http import asgi_app as asgi_app
from ._exceptions import Deadlock

__all__ = [
    "BlockingReport",
    "Frame",
    "LagStats",
    "Primitive",
    "TaskInfo",
    "aiohttp_handler",
    "asgi_app",
    "current_labels",
    "detect_deadlocks",
    "disable",
    "dump",
    "enable",
    "enabled",
    "is_enabled",
    "labels",
    "monitor_lag",
    "num_tasks",
    "tasks",
    "watch_blocking",
]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# ``Chan[int]()`` constructs through typing's generic alias: not the user's frame either.
_SELF_FILES = frozenset(
    os.path.join(_PKG_DIR, *p)
    for p in (("debug.py",), ("_debug_http.py",), ("_backend", "_tasks.py"))
)
_MACHINERY = ("anyio.", "asyncio.", "trio.", "asyncgo.", "outcome.", "uvloop.")
#: What tasks can park on without it being a primitive with a creation site of its own:
#: the handles of a task (`Group.go`) or a pool job; their ``repr`` names the task.
_NO_SITE_KINDS = frozenset({"TaskHandle", "JobHandle"})
_TYPING_FILE = getattr(sys.modules.get("typing"), "__file__", None) or "<typing>"


# -- records -------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class Frame:
    """One entry of an await stack, or the place where a primitive was made.

    Example:
        ```python
        async def handler() -> tuple[debug.Frame, ...]:
            [me] = [t for t in debug.tasks() if t.state == "running"]
            return me.stack                  # innermost call first, as Go prints it

        async with Group() as g:
            h = await g.go(handler)
        top = h.result()[0]
        assert top.function.endswith("handler") and top.lineno > 0
        print(top)                           # the function, then file:line on a new line
        ```
    """

    function: str
    """``module.qualname`` of the function."""
    filename: str
    lineno: int

    def __str__(self) -> str:
        return f"{self.function}\n\t{_short_path(self.filename)}:{self.lineno}"

    @property
    def where(self) -> str:
        """``file:line`` (the file relative to the working directory when inside it)."""
        return f"{_short_path(self.filename)}:{self.lineno}"


@final
@dataclass(frozen=True, slots=True)
class Primitive:
    """An asyncgo primitive a task is parked on.

    Example:
        ```python
        with debug.enabled():                # record where primitives are made
            jobs = Chan[int]()
            async with Group() as g:
                await g.go(jobs.recv)
                await anyio.wait_all_tasks_blocked()  # until it parks
                [t] = [t for t in debug.tasks() if t.state == "parked"]
                [p] = t.blocked_on
                await jobs.send(1)
        assert p.kind == "Chan" and p.created_at is not None
        print(p.describe())                  # Chan <Chan ...> made at file:line in ...
        ```
    """

    kind: str
    """Its type name: ``"Chan"``, ``"Mutex"``, ``"WaitGroup"``, ..."""
    description: str
    """Its ``repr()`` at the time of the snapshot."""
    created_at: Frame | None
    """Where user code made it (directly or through *via*); None if it was made
    while diagnostics were off."""
    via: str | None = None
    """The asyncgo function that made it for the user (``asyncgo._context.Context.done``),
    when it was not constructed directly. For the one channel shared by every context
    that can never be done (`asyncgo.background()`, ...; Go's nil ``Done()``), which
    has no creation site of its own, it says so and `created_at` is None; so it does,
    naming the function, for one made inside a task that asyncgo runs (a pipeline's
    link, a publisher's lock), where no frame of the user's code is on the stack."""

    def __str__(self) -> str:
        return self.describe()

    def describe(self, state: bool = True) -> str:
        """One line: kind, (with *state*) its ``repr``, and where it was made, with the source."""
        s = f"{self.kind} {self.description}" if state else self.kind
        if self.created_at is None:
            if self.via:  # made by asyncgo for everyone: the never-done channel
                return f"{s}: {self.via}"
            if self.kind in _NO_SITE_KINDS:  # a handle: its repr names the task
                return s
            return s + " (made while diagnostics were off)"
        s += f" made at {self.created_at.where} in {self.created_at.function}"
        if self.via:
            s += f" (via {self.via})"
        src = linecache.getline(self.created_at.filename, self.created_at.lineno).strip()
        if src:
            s += f": `{src}`"
        return s


@final
@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task: what `tasks()` returns and `dump()` prints.

    Example:
        ```python
        with debug.enabled():
            jobs = Chan[str]()
            async with Group() as g:
                with debug.labels(job="resize"):
                    await g.go(jobs.recv)
                await anyio.wait_all_tasks_blocked()
                [t] = [t for t in debug.tasks() if t.labels.get("job") == "resize"]
                await jobs.send("cat.png")
        assert (t.state, t.op) == ("parked", "chan recv")
        assert t.blocked_on[0].kind == "Chan" and t.parked_for is not None
        print(f'task {t.id} "{t.name}" [{t.status()}]')  # task 6 "...Chan.recv" [chan recv, 0.00s]
        ```
    """

    id: int
    """A small number, stable for the task's life (Go's goroutine id)."""
    name: str
    labels: Mapping[str, str]
    """The task's `labels()`."""
    state: str
    """``"running"`` (the caller), ``"runnable"`` (scheduled to run), ``"parked"``
    (on an asyncgo primitive: see `op`) or ``"waiting"`` (on anything else: a
    timer, I/O, a thread, another library's primitive, child tasks)."""
    op: str | None
    """What it is parked doing: ``"chan recv"``, ``"chan send"``, ``"select"``,
    ``"mutex lock"``, ``"waitgroup wait"``, ... (None unless parked)."""
    blocked_on: tuple[Primitive, ...]
    """The primitives it is parked on (several for a select)."""
    parked_for: float | None
    """Seconds since it parked (None unless parked, or when it parked while
    diagnostics were off: found then from its await stack, not recorded)."""
    stack: tuple[Frame, ...]
    """Its await stack, innermost call first (Go's order)."""
    created_by: str | None
    """The task that started it, as ``'task 3 "main"'``, when known."""
    task: object = field(repr=False, compare=False)
    """The backend's task object (``asyncio.Task`` or ``trio.lowlevel.Task``)."""

    @property
    def entry(self) -> str | None:
        """The task's own function, ``module.qualname``.

        The outermost frame of its stack that is not the machinery starting it
        (anyio's, asyncio's, trio's or asyncgo's own wrappers).
        """
        for f in reversed(self.stack):
            if not f.function.startswith(_MACHINERY):
                return f.function
        return self.stack[-1].function if self.stack else None

    @property
    def top(self) -> str | None:
        """The innermost function of its stack, where it waits (asyncgo's own frames included).

        `asyncgo.testing.no_leaks` matches ``ignore_top_function`` against it and
        against the innermost function outside asyncgo's, anyio's and the event
        loop's code (goleak's "top function": Go's traceback hides the runtime).
        """
        return self.stack[0].function if self.stack else None

    def status(self) -> str:
        """The bracketed part of a dump header: ``chan recv, 2.5s``, ``waiting``, ..."""
        if self.op is None:
            return self.state
        if self.parked_for is None:  # pragma: no cover
            return self.op
        return f"{self.op}, {_duration(self.parked_for)}"


# -- the tracer ------------------------------------------------------------------------


@final
class _Wait:
    """What a parked task waits on (built from the tracer's tuple when asked)."""

    __slots__ = ("obj", "op", "since", "task", "waiter")

    def __init__(
        self, waiter: object, task: object, obj: object, op: str, since: float | None
    ) -> None:
        self.waiter = waiter
        self.task = task
        self.obj = obj
        self.op = op
        self.since = since

    def claimed(self) -> bool:
        """Whether the parked operation was completed or cancelled (the task is about to run)."""
        w: Any = self.waiter
        done = getattr(w, "done", None)
        if done is not None:
            return bool(done())
        alive = getattr(w, "alive", None)
        return not alive() if alive is not None else False


_Site = tuple[str, int, str, str | None]  # filename, line, function, via


def _creation_site(obj: object) -> _Site | None:
    # Skip asyncgo's own frames: the site is the user's call. The last asyncgo frame
    # seen is the API the user called, unless it is the object's own constructor (a
    # direct `Chan()`); another object's constructor counts (`Once()` makes a Mutex).
    f: FrameType | None = sys._getframe(2)
    via: FrameType | None = None
    while f is not None:
        filename = f.f_code.co_filename
        if filename.startswith(_PKG_DIR):
            via = f
        elif filename != _TYPING_FILE:
            break
        f = f.f_back
    if f is None:
        return None
    if _func_name(f).startswith(_MACHINERY):
        # Below asyncgo's frames lies a task runner (anyio's, asyncio's, trio's), not
        # user code: asyncgo made it in one of its own tasks (a pipeline link, a
        # publisher's lock). There is no line of the user's to show.
        return ("", 0, "", _func_name(via) if via is not None else None)
    via_name = None
    if via is not None and (
        via.f_code.co_name != "__init__" or via.f_locals.get("self") is not obj
    ):
        via_name = _func_name(via)
    return (f.f_code.co_filename, f.f_lineno, _func_name(f), via_name)


@final
class _Tracer:
    """`asyncgo._backend._diag.Tracer`: records creation sites and parked tasks."""

    __slots__ = ("generation", "sites", "waits", "watchers")

    def __init__(self) -> None:
        # parker -> (task, primitive(s), op, since): a tuple, the cheapest record per park
        self.waits: dict[object, tuple[object, object, str, float]] = {}
        self.sites: dict[int, tuple[weakref.ref[Any], _Site]] = {}  # id(obj) -> site
        self.generation = 0  # bumped by every park and unpark: "has anything moved?"
        self.watchers: list[_Watcher] = []

    def created(self, obj: object) -> None:
        site = _creation_site(obj)
        if site is None:  # pragma: no cover - made from asyncgo's own top level
            return
        key = id(obj)
        sites = self.sites

        def forget(r: weakref.ref[Any], key: int = key) -> None:
            e = sites.get(key)
            if e is not None and e[0] is r:
                del sites[key]

        try:
            sites[key] = (weakref.ref(obj, forget), site)
        except TypeError:  # pragma: no cover - not weak-referenceable
            pass

    def parked(self, waiter: object, obj: object, op: str) -> None:
        task = getattr(waiter, "task", None)  # trio's waiter knows its task
        if task is None:
            task = _tasks.current_task()
        self.waits[waiter] = (task, obj, op, monotonic())
        self.generation += 1
        if self.watchers:
            me = threading.get_ident()
            for w in self.watchers:
                if w.thread == me and not w.kicked:
                    try:
                        w.kick()
                    except Exception:  # a scope whose loop died without exiting it
                        self.watchers.remove(w)
                        break

    def unparked(self, waiter: object) -> None:
        self.waits.pop(waiter, None)
        self.generation += 1

    def site(self, obj: object) -> _Site | None:
        e = self.sites.get(id(obj))
        if e is None or e[0]() is not obj:
            return None
        return e[1]

    def by_task(self) -> dict[object, _Wait]:
        return {r[0]: _Wait(w, *r) for w, r in list(self.waits.items())}


# -- parks the tracer did not see ------------------------------------------------------
#
# A task that parked while diagnostics were off has no record (the park path reads the
# tracer once, before it parks, and the channels' inline parks skip it altogether): a
# worker of a fixture or a server parked in `async for job in jobs` before a
# `detect_deadlocks()` block opened. Such a task is found from its own state: the
# parker it awaits (asyncio: ``Task._fut_waiter``; trio: the waiter whose abort
# function the task is blocked in) held by one of asyncgo's park sites, the innermost
# frame of its await stack that names it. Costs nothing until someone looks.

#: asyncgo's park sites (``module.qualname``) -> the operation; None: the site's
#: locals say (`_site_wait`).
_PARK_SITES: dict[str, str | None] = {
    "asyncgo._chan.Chan.recv": "chan recv",
    "asyncgo._chan.Chan.recv_ok": "chan recv",
    "asyncgo._chan.Chan.__anext__": "chan recv",
    "asyncgo._chan.Chan.send": "chan send",
    "asyncgo._chan.Chan._park": None,
    "asyncgo._select.select": "select",
    "asyncgo._select._park_forever": "select",
    "asyncgo._pool.JobHandle._park": "job wait",
    "asyncgo._group.TaskHandle.wait": "task handle wait",
    "asyncgo._group.Group._wait_slot": "group slot",
    "asyncgo.singleflight.Group.do": "singleflight do",
    "asyncgo.sync._semaphore.Semaphore._park": "semaphore acquire",
    "asyncgo.sync._semaphore.Semaphore.__aenter__": "semaphore acquire",
    "asyncgo.sync._cond.Cond.wait": "cond wait",
    "asyncgo.sync._mutex.park": None,
    "asyncgo.sync._mutex.Mutex.lock": "mutex lock",
}


def _awaited_parker(task: Any) -> Any:
    """The not yet claimed parker-like object *task* is blocked on, or None."""
    if hasattr(task, "_fut_waiter"):  # asyncio
        w = getattr(task, "_fut_waiter", None)
    else:  # trio: blocked in wait_task_rescheduled(waiter._abort)
        w = getattr(getattr(task, "_abort_func", None), "__self__", None)
        if w is not None and getattr(w, "task", None) is not task:
            return None
    done = getattr(w, "done", None)
    if done is None or done():
        return None
    return w


def _holds(locals_: Mapping[str, object], parker: object) -> bool:
    """Whether a frame's locals hold *parker*, bare or as a queue entry ``(parker, ...)``."""
    return any(v is parker or (type(v) is tuple and v and v[0] is parker) for v in locals_.values())


def _site_wait(site: str, op: str | None, loc: Mapping[str, Any]) -> tuple[object, str] | None:
    """What the park site *site* (its frame's locals *loc*) parks on: ``(primitive(s), op)``."""
    if site == "asyncgo._select.select":
        cases = loc.get("cases")
        return (tuple(getattr(c, "chan", None) for c in cases), "select") if cases else None
    if site == "asyncgo._select._park_forever":
        return (), "select"
    if site == "asyncgo.sync._mutex.park":
        owner, op = loc.get("owner"), loc.get("op")
        return (owner, op) if owner is not None and isinstance(op, str) else None
    obj = loc.get("self")
    if obj is None:
        return None
    if site == "asyncgo._chan.Chan._park":
        op = "chan recv" if loc.get("recv") else "chan send"
    elif site == "asyncgo.sync._semaphore.Semaphore._park" and loc.get("done") is not None:
        obj = (obj, loc["done"])
    assert op is not None
    return obj, op


def _discover(task: Any) -> _Wait | None:
    """The park of *task* on an asyncgo primitive that the tracer did not record, if any."""
    parker = _awaited_parker(task)
    if parker is None:
        return None
    frames, _ = _tasks.task_frames(task)
    for f, _line in reversed(frames):  # innermost first
        if not f.f_code.co_filename.startswith(_PKG_DIR):
            continue
        site = _func_name(f)
        if site not in _PARK_SITES:
            continue
        loc = f.f_locals
        if not _holds(loc, parker):
            continue  # (an outer call of an inner park: keep looking inward-out)
        found = _site_wait(site, _PARK_SITES[site], loc)
        if found is None:  # pragma: no cover - a park site changed shape
            return None
        return _Wait(parker, task, found[0], found[1], None)
    return None


def _with_unrecorded(tasks_: Iterable[Any], waits: dict[object, _Wait], current: object) -> None:
    """Add to *waits* the parks of *tasks_* (blocked, not in it) the tracer did not record."""
    for t in tasks_:
        if t not in waits and t is not current and _tasks.task_state(t, current) == "waiting":
            w = _discover(t)
            if w is not None:
                waits[t] = w


_TRACER = _Tracer()
_on = False  # enable() / disable()
_scoped = 0  # enabled() blocks (and the scopes that enter one) currently open


def _install() -> None:
    _diag.tracer = _TRACER if (_on or _scoped) else None


def enable() -> None:
    """Turn diagnostics on for the whole process (until `disable()`).

    From now on asyncgo records where each channel and sync primitive is made
    (a frame walk per construction) and which task is parked on what (a dict
    entry per park). Turn it on at start-up in development, or around a test.

    Example:
        ```python
        debug.enable()                       # e.g. at start-up, in development
        try:
            assert debug.is_enabled()
            mu = Mutex()                     # where it is made is recorded now
            async with Group() as g:
                async with mu:
                    await g.go(mu.lock)
                    await anyio.wait_all_tasks_blocked()
                    assert "mutex lock" in debug.dump()  # who waits, on what, since when
        finally:
            debug.disable()
        ```
    """
    global _on
    _on = True
    _install()


def disable() -> None:
    """Turn off what `enable()` turned on (`enabled()` blocks stay on until they end).

    Example:
        ```python
        with debug.enabled():
            debug.enable()
            debug.disable()
            assert debug.is_enabled()        # the block keeps diagnostics on...
        assert not debug.is_enabled()        # ...until it ends
        ```
    """
    global _on
    _on = False
    _install()


def is_enabled() -> bool:
    """Whether diagnostics are on (by `enable()` or an open `enabled()` block).

    Example:
        ```python
        assert not debug.is_enabled()        # off by default: they cost nothing
        with debug.enabled():
            assert debug.is_enabled()
        ```
    """
    return _diag.tracer is not None


@contextmanager
def enabled() -> Iterator[None]:
    """Turn diagnostics on inside the block (nests; `disable()` does not end it).

    Example:
        ```python
        with debug.enabled():
            async with Group() as g:
                ...
                print(debug.dump())  # parked tasks show the primitive and where it was made
        ```
    """
    global _scoped
    _scoped += 1
    _install()
    try:
        yield
    finally:
        _scoped -= 1
        _install()


# -- labels ----------------------------------------------------------------------------

_NO_LABELS: Mapping[str, str] = MappingProxyType({})
_LABELS: ContextVar[Mapping[str, str]] = ContextVar("asyncgo.debug.labels", default=_NO_LABELS)


def _reset(var: ContextVar[Any], token: Token[Any], previous: object) -> None:
    try:
        var.reset(token)
    except ValueError:  # left in another context (an async generator, a callback)
        var.set(previous)


@contextmanager
def labels(**kv: object) -> Iterator[Mapping[str, str]]:
    """Label the current task, and every task started inside the block, with *kv*.

    Labels are strings (other values are converted with `str`); inner blocks add
    to the outer ones and override equal keys. They travel with
    `contextvars`, which every backend copies into a task when it is started,
    so tasks started inside -- through `Group`, pipelines, anyio task groups or
    ``asyncio.create_task`` -- keep them for life; a `WorkerPool` job runs with
    the labels in force at its ``submit()``, in place of its worker's. `tasks()`
    and `dump()` show them. Yields the task's labels inside the block.
    Go: ``pprof.Do(ctx, pprof.Labels("k", "v"), f)``

    Example:
        ```python
        async def fetch(url: str) -> dict[str, str]:
            return dict(debug.current_labels())  # what tasks() and dump() show

        with debug.labels(request="r-42", stage="fetch"):
            async with Group() as g:
                h = await g.go(fetch, "https://example.com")
        assert h.result() == {"request": "r-42", "stage": "fetch"}
        ```
    """
    previous = _LABELS.get()
    merged = MappingProxyType({**previous, **{str(k): str(v) for k, v in kv.items()}})
    token = _LABELS.set(merged)
    try:
        yield merged
    finally:
        _reset(_LABELS, token, previous)


def current_labels() -> Mapping[str, str]:
    """The current task's labels (see `labels`).

    Example:
        ```python
        assert debug.current_labels() == {}
        with debug.labels(request="r-1"):
            with debug.labels(stage="fetch", request="r-2"):  # inner blocks add and override
                assert debug.current_labels() == {"request": "r-2", "stage": "fetch"}
            assert debug.current_labels() == {"request": "r-1"}
        ```
    """
    return _LABELS.get()


# -- snapshots ---------------------------------------------------------------------------

_numbers: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_next_number = 0


def _number(task: object) -> int:
    global _next_number
    try:
        n = _numbers.get(task)
        if n is None:
            _next_number += 1
            n = _numbers[task] = _next_number
        return n
    except TypeError:  # pragma: no cover - not weak-referenceable
        return id(task)


def _func_name(f: FrameType) -> str:
    mod = f.f_globals.get("__name__", "?")
    qual = getattr(f.f_code, "co_qualname", f.f_code.co_name)
    return f"{mod}.{qual}"


def _short_path(filename: str) -> str:
    try:
        rel = os.path.relpath(filename)
    except ValueError:  # pragma: no cover - another drive on Windows
        rel = filename
    if not rel.startswith(".."):
        return rel
    i = filename.rfind("site-packages" + os.sep)
    if i >= 0:
        return filename[i + len("site-packages" + os.sep) :]
    return filename


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


_NEVER_DONE = (
    "the done() channel of every context that can never be done (background(), "
    "without_cancel(), ...): nothing ever closes it (Go: a nil Done() channel)"
)
_IN_OUR_TASK = "made by {} in a task asyncgo runs for you (no line of yours made it)"


def _is_never_done(obj: object) -> bool:
    # The channel asyncgo._context shares between all never-done contexts of a loop:
    # whoever first asked for it is not where it "was made" for anyone else.
    ctxmod = sys.modules.get("asyncgo._context")
    never = getattr(ctxmod, "_never", None)
    return never is not None and getattr(never[1], "_ch", None) is obj


def _primitive(obj: object) -> Primitive:
    site = _TRACER.site(obj)
    try:
        desc = repr(obj)
    except Exception:  # pragma: no cover - a broken repr must not break a dump
        desc = f"<{type(obj).__name__} at {id(obj):#x}>"
    if _is_never_done(obj):
        return Primitive(type(obj).__name__, desc, None, _NEVER_DONE)
    if site is None:
        return Primitive(type(obj).__name__, desc, None)
    filename, lineno, func, via = site
    if not filename:  # made in a task of asyncgo's own, with no frame of the user's
        return Primitive(type(obj).__name__, desc, None, _IN_OUR_TASK.format(via or "asyncgo"))
    return Primitive(type(obj).__name__, desc, Frame(func, filename, lineno), via)


def _primitives(obj: object) -> tuple[Primitive, ...]:
    if isinstance(obj, tuple):
        return tuple(_primitive(o) for o in obj if o is not None)
    return (_primitive(obj),)


def _labels_of(task: object) -> Mapping[str, str]:
    ctx = _tasks.task_context(task)
    if ctx is None:
        return _NO_LABELS
    return ctx.get(_LABELS, _NO_LABELS)


def _snapshot(
    task: Any, all_: list[Any], current: object, waits: dict[object, _Wait], now: float
) -> TaskInfo:
    frames, _leaf = _tasks.task_frames(task)
    stack = tuple(
        Frame(_func_name(f), f.f_code.co_filename, line)
        for f, line in reversed(frames)
        if f.f_code.co_filename not in _SELF_FILES  # the running task's call into us
    )
    state = _tasks.task_state(task, current)
    op: str | None = None
    on: tuple[Primitive, ...] = ()
    since: float | None = None
    w = waits.get(task)
    if w is not None and state == "waiting" and not w.claimed():
        state, op, on = "parked", w.op, _primitives(w.obj)
        since = None if w.since is None else now - w.since  # (None: found, not recorded)
    parent = _tasks.task_parent(task, all_)
    created_by = None
    if parent is not None:
        created_by = f'task {_number(parent)} "{_tasks.task_name(parent)}"'
    return TaskInfo(
        id=_number(task),
        name=_tasks.task_name(task, frames),
        labels=_labels_of(task),
        state=state,
        op=op,
        blocked_on=on,
        parked_for=since,
        stack=stack,
        created_by=created_by,
        task=task,
    )


def _live_tasks() -> list[Any]:
    ts = [t for t in _tasks.all_tasks() if not _is_helper(t)]
    if _tasks.backend_name() == "asyncio":
        ts.sort(key=_number)  # creation order as far as we saw it; trio's is already a tree walk
    return ts


def tasks() -> list[TaskInfo]:
    """A snapshot of every live task of the running event loop.

    Tasks parked on asyncgo primitives show the operation, the primitives (and,
    when diagnostics were on as they were made, where), and for how long; other
    tasks show their state and await stack. Call it from async code (any
    backend); it does not yield. trio's own two internal system tasks, asyncgo's
    timer service and pool ticker on trio, and the deadlock detector's watcher
    tasks are left out.

    Example:
        ```python
        async with Group() as g:
            with debug.labels(job="poll"):
                g.go_nowait(anyio.sleep, 0.01)
            snapshot = debug.tasks()         # Go: runtime.Stack(buf, true)
            [me] = [t for t in snapshot if t.state == "running"]  # the caller
            [poll] = [t for t in snapshot if t.labels == {"job": "poll"}]
        assert poll.id != me.id and poll.state in ("runnable", "waiting")
        ```
    """
    ts = _live_tasks()
    current = _tasks.current_task()
    waits = _TRACER.by_task()
    if is_enabled():  # also the tasks that parked before diagnostics were turned on
        _with_unrecorded(ts, waits, current)
    now = monotonic()
    return [_snapshot(t, ts, current, waits, now) for t in ts]


def _snapshots(raw: Iterable[Any]) -> list[TaskInfo]:
    """Snapshots of the given backend tasks (for asyncgo.testing)."""
    raw = list(raw)
    all_ = _tasks.all_tasks()
    current = _tasks.current_task()
    waits = _TRACER.by_task()
    if is_enabled():
        _with_unrecorded(raw, waits, current)
    now = monotonic()
    return [_snapshot(t, all_, current, waits, now) for t in raw]


def num_tasks() -> int:
    """How many tasks the running event loop has (Go: ``runtime.NumGoroutine()``).

    Example:
        ```python
        before = debug.num_tasks()
        async with Group() as g:
            for _ in range(3):
                g.go_nowait(anyio.sleep, 0.001)
            assert debug.num_tasks() == before + 3
        assert debug.num_tasks() == before
        ```
    """
    return sum(1 for t in _tasks.all_tasks() if not _is_helper(t))


def _labels_str(lab: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(lab.items())) + "}"


def _format_one(t: TaskInfo) -> list[str]:
    head = f'task {t.id} "{t.name}" [{t.status()}]'
    if t.labels:
        head += " " + _labels_str(t.labels)
    out = [head + ":"]
    out.extend(f"    on {p}" for p in t.blocked_on)
    for fr in t.stack:
        out.append(f"{fr.function}(...)")
        out.append(f"\t{fr.where}")
    if t.created_by:
        out.append(f"created by {t.created_by}")
    return out


def _group_key(t: TaskInfo) -> tuple[object, ...]:
    sites = tuple((p.kind, p.created_at) for p in t.blocked_on)
    return (t.state, t.op, sites, t.stack)


def _format_group(members: list[TaskInfo]) -> list[str]:
    first = members[0]
    n = len(members)
    status = first.op or first.state
    durations = [m.parked_for for m in members if m.parked_for is not None]
    if durations:
        lo, hi = min(durations), max(durations)
        a, b = _duration(lo), _duration(hi)
        status += f", {a}" if a == b else f", {a}..{b}"
    out = [f"{n} task{'s' if n != 1 else ''} [{status}]:"]
    names = ", ".join(f'{m.id} "{m.name}"' for m in members[:8])
    if n > 8:
        names += f", ... ({n - 8} more)"
    out.append(f"    tasks: {names}")
    label_sets = sorted({_labels_str(m.labels) for m in members if m.labels})
    if label_sets:
        more = " ..." if len(label_sets) > 4 else ""
        out.append(f"    labels: {'; '.join(label_sets[:4])}{more}")
    out.extend(f"    on {p.describe(state=n == 1)}" for p in first.blocked_on)
    for fr in first.stack:
        out.append(f"{fr.function}(...)")
        out.append(f"\t{fr.where}")
    creators = sorted({m.created_by for m in members if m.created_by})
    if creators:
        out.append(f"created by {', '.join(creators[:4])}" + (" ..." if len(creators) > 4 else ""))
    return out


def dump(snapshot: Iterable[TaskInfo] | None = None, *, group: bool = True) -> str:
    """Every live task as text, in the spirit of Go's goroutine dump.

    With *group* (the default; Go's ``?debug=1``), tasks in the same state with
    the same await stack, parked on primitives made at the same place, are
    printed once with their count, names and labels; else (``?debug=2``) each
    task is printed on its own. The stack is innermost call first. *snapshot*
    prints those tasks instead of the live ones (e.g. a filtered `tasks()`).

    Example:
        ```python
        with debug.enabled():
            jobs = Chan[int]()
            async with Group() as g:
                for _ in range(3):
                    g.go_nowait(jobs.recv)
                await anyio.wait_all_tasks_blocked()
                text = debug.dump()          # Go: /debug/pprof/goroutine?debug=1
                each = debug.dump(group=False)  # ?debug=2
                for i in range(3):
                    await jobs.send(i)
        assert "3 tasks [chan recv" in text  # identical stacks are printed once
        assert each.count("[chan recv") == 3
        ```
    """
    ts = tasks() if snapshot is None else list(snapshot)
    for t in ts if snapshot is not None else ():
        if not isinstance(t, TaskInfo):
            raise TypeError(
                f"debug.dump(snapshot): takes TaskInfo items (from debug.tasks()), "
                f"not {type(t).__name__}"
            )
    if not ts:
        return "no tasks\n"
    lines: list[str]
    if not group:
        lines = [f"{len(ts)} task{'s' if len(ts) != 1 else ''}:", ""]
        for t in ts:
            lines.extend(_format_one(t))
            lines.append("")
        return "\n".join(lines)
    groups: dict[tuple[object, ...], list[TaskInfo]] = {}
    for t in ts:
        groups.setdefault(_group_key(t), []).append(t)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0].id))
    lines = [f"{len(ts)} task{'s' if len(ts) != 1 else ''}, {len(groups)} distinct stacks:", ""]
    for g in ordered:
        lines.extend(_format_group(g))
        lines.append("")
    return "\n".join(lines)


# -- deadlock detection -------------------------------------------------------------------

_SCOPES: ContextVar[tuple[detect_deadlocks, ...]] = ContextVar(
    "asyncgo.debug.deadlock_scopes", default=()
)
_active: list[detect_deadlocks] = []  # open scopes, any loop
_internal: weakref.WeakSet[Any] = weakref.WeakSet()  # watcher tasks: never reported


def _is_internal(task: object) -> bool:
    try:
        return task in _internal
    except TypeError:  # pragma: no cover
        return False


#: asyncgo's own helper tasks, left out of `tasks()`, `dump()` and `num_tasks()` like
#: Go's dump leaves out the runtime's: trio's timer service (a system task that exists
#: from a run's first asyncgo timer, sleep or context deadline to the run's end, parked
#: while none is pending) and the pools' ticker (one that exists while a `WorkerPool`
#: or ``stages.map`` runs: _backend._ticker). The deadlock detector still sees the
#: timer service while a timer is pending (then it is "not a deadlock"), not the
#: ticker, which wakes the loop but never a task.
_HELPERS = frozenset({_timers.TIMERS_TASK, _ticker.TICKER_TASK})


def _is_helper(task: object) -> bool:
    return _is_internal(task) or _tasks.task_name(task) in _HELPERS


def _wakes_nothing(task: object) -> bool:
    """*task* is asyncgo's helper and can wake no task: the ticker, or trio's timer
    service parked with no timer pending."""
    name = _tasks.task_name(task)
    if name == _ticker.TICKER_TASK:
        return True
    if name != _timers.TIMERS_TASK:
        return False
    rt = _timers.runtime_or_none()
    return type(rt) is _timers.TrioRuntime and rt.idle()


def _only_cancelled(exc: BaseException) -> bool:
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, cancelled)


async def _exit_beside(tg: Any, exc: BaseException | None) -> bool:
    """Exit the task group of a helper task (already told to stop) that ran beside a
    body which raised *exc*; True if the group took *exc* back (its own cancellation).

    The body's own error goes around the group, which would wrap it in an
    ExceptionGroup; if the wait for the helper is cancelled from outside, the
    error still wins, as it does in `asyncgo.Group`. A cancellation goes
    through the group, which must see it.
    """
    if exc is None or _only_cancelled(exc):
        tb = None if exc is None else exc.__traceback__
        return bool(await tg.__aexit__(None if exc is None else type(exc), exc, tb))
    try:
        await tg.__aexit__(None, None, None)
    except BaseException as e:
        if not _only_cancelled(e):
            raise
    return False


def _first_ours(exc: BaseException, raised: list[Deadlock]) -> Deadlock | None:
    """If *exc* is an exception group of *raised* Deadlocks (and cancellations), the
    one of them raised first; else None."""
    leaves = _leaves(exc)
    cancelled = anyio.get_cancelled_exc_class()
    if not all(isinstance(e, cancelled) or any(e is r for r in raised) for e in leaves):
        return None
    return next((r for r in raised if any(e is r for e in leaves)), None)


def _involves(exc: BaseException, raised: list[Deadlock]) -> bool:
    """Whether one of *raised* is in *exc* (a group) or in its cause or context chain."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if any(e is r for r in raised):
            return True
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return False


#: Deadlocks one block raises where tasks are parked before it cancels its body
#: instead: code that catches every Deadlock and deadlocks again (a retry loop)
#: would otherwise never end.
_MAX_RAISES = 20


def _waits_under(
    v: Any, t: Any, scope: int | None, chains: dict[int, set[int]], tasks: list[Any]
) -> bool:
    """Whether task *v* is among those *t* waits for: under the scope (id) that holds
    them, or, when *t* awaits tasks directly (*scope* None), started by *t* or below."""
    if scope is not None:
        return scope in chains.get(id(v), set())
    return _descends(_tasks.task_parent(v, tasks), [t], tasks)


def _descends(v: Any, roots: list[Any], tasks: list[Any]) -> bool:
    """Whether task *v* is one of *roots* or was started by one of them (or below)."""
    for _ in range(1000):  # (a bound: parents form no cycle)
        if v is None:
            return False
        if any(v is r for r in roots):
            return True
        v = _tasks.task_parent(v, tasks)
    return False


class _Watcher:
    """The kick a parked task gives a scope's watcher (same thread: same loop)."""

    __slots__ = (
        "due", "event", "idle", "kicked", "last", "loop", "moved", "owed", "spacing", "stale",
        "task", "thread", "token", "waiting", "woke",
    )  # fmt: skip

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.event: Any = None
        self.kicked = False  # set by the first kick since the watcher last armed its event
        # asyncio: the watcher's loop and task (None under trio), and the pending wait
        # for the loop to go idle that a kick starts.
        self.loop: Any = None
        self.task: Any = None
        self.idle: _tasks.IdleWait | None = None
        # trio (no back-off timer): whether time passed since the last look (an
        # asyncgo timer fired, or the clock reached `due`); the clock time to look
        # again at (the run's next deadline, or under a virtual clock where the
        # back-off runs out if sooner); whether the loop's last wait for I/O was an
        # idle one.
        self.stale = False
        self.due = math.inf
        self.woke = False
        # Under a virtual clock: whether a task other than the watcher took a step
        # since the last turn of the loop (autojump waits for I/O with no timeout:
        # `woke` cannot tell an idle wait there).
        self.moved = False
        self.token: Any = None  # trio: the run's token
        self.waiting = False  # trio: the watcher waits for a kick (not in a pause)
        # trio, system clock: looks forced by the loop's wake-ups are spaced (a task
        # sleeping 1 ms in a loop beside many parked ones would make one a
        # millisecond): the time of the last look, the spacing (10 ms, doubling to
        # a second while the looks find nothing new; 0 under a virtual clock), the
        # time a look is owed at (inf: none).
        self.last = -math.inf
        self.spacing = 0.0
        self.owed = math.inf

    def look_again(self) -> None:
        self.stale = True
        self.kick()

    def clock_turn(self, timeout: float) -> None:
        """Each turn of a trio run, before its wait for I/O (*timeout*: how long it
        may wait; 0 while tasks are runnable).

        Look if the clock reached `due` (a deadline that expired moving no task may
        have been all that could wake one), or if the last wait was an idle one and
        something ended it -- I/O, a thread's callback, a deadline, trio's
        ``wait_all_tasks_blocked(cushion)`` -- since what it woke may have moved
        with no park or exit to tell, and has run by now. (Not as that wait ends:
        a watcher runnable then would keep trio from seeing the idle cushion it
        waited for.) About to wait idle, the look is asked for through the run's
        token, which ends the wait at once -- if the watcher waits for a kick: in
        a pause of its own, a callback pending would only look like activity.
        """
        if self.woke or self.moved or (self.due != math.inf and _tasks.trio_now() >= self.due):
            self.due = math.inf
            self.moved = False
            now = _tasks.trio_now()
            if now - self.last >= self.spacing:
                if timeout > 0 and self.waiting:
                    self.token.run_sync_soon(self.look_again)
                else:  # (or it will look when its pause ends, see _watch_loop)
                    self.look_again()
            elif self.owed == math.inf:
                # Too soon after the last look: owe one when the spacing runs out. A
                # waiting watcher is woken to wait with that deadline (a plain kick:
                # it looks at once only if a task parked or ended meanwhile).
                self.owed = self.last + self.spacing
                if self.waiting:
                    if timeout > 0:
                        self.token.run_sync_soon(self.kick)
                    else:
                        self.kick()
        self.woke = timeout > 0

    def stepped(self, task: object) -> None:
        """Before each step of a task, under a virtual clock: one moved, unseen?"""
        if task is not self.task:
            self.moved = True

    def arm(self) -> Any:
        self.kicked = False
        self.event = ev = anyio.Event()
        return ev

    def kick(self) -> None:
        self.kicked = True
        ev = self.event
        if ev is not None:
            if self.loop is None:
                ev.set()
            elif self.idle is None:
                # asyncio: wake the watcher once the loop is idle, not now (see
                # IdleWait): woken but not yet run at every park, it would make a
                # test's anyio.wait_all_tasks_blocked() sleep 0.1 s each time.
                self.idle = _tasks.IdleWait(self.loop, self.task, self._idle)

    def _idle(self) -> None:
        self.idle = None
        ev = self.event
        if ev is not None:
            ev.set()

    def stop(self) -> None:
        """The watcher has ended: later kicks (tasks parking until the block has
        removed it from the tracer) do nothing."""
        self.event = None
        idle = self.idle
        if idle is not None:
            self.idle = None
            idle.cancel()


# Verdicts of one look at the loop.
_DEADLOCK, _TRANSIENT, _NO = "deadlock", "transient", "no"
_THREAD = "thread"  # every task asleep, but a thread started in the block runs


@final
class detect_deadlocks:
    """Raise `asyncgo.Deadlock` instead of hanging when every task is asleep.

    ``async with debug.detect_deadlocks():`` runs its body with a watcher task
    beside it. When every task of the event loop is parked on asyncgo
    primitives (channels, select, the `asyncgo.sync` primitives,
    singleflight) or waits for child tasks that are, and nothing else can wake
    any of them -- no cancel-scope deadline inside the block, no pending timer,
    ready callback, I/O source (socket, pipe, server, reader), signal handler
    or callback from another thread -- `Deadlock` is raised, its message
    listing who waits on what and the tasks' stacks. Where: if the block's own
    task is parked on an asyncgo primitive, at that operation; if it waits for
    child tasks (a `Group`'s exit), where each parked task of the innermost such
    group waits (tasks nobody waits for, such as a pool's idle workers, are left
    alone)
    -- a `Group` re-raises the first as itself, a native task group raises them
    in an ExceptionGroup. The body may catch it and go on; the block then ends
    quietly (not caught, it raises one `Deadlock`). If that cannot end the
    deadlock (a task caught it and parked again; the 21st deadlock of a block),
    the body is cancelled and the block raises it. Go: ``fatal error: all
    goroutines are asleep - deadlock!``
    A task parked inside a shielded cancel scope, which a cancellation cannot
    reach, gets `Deadlock` raised where it is parked.

    No false positives is the rule: a task sleeping, waiting on a socket, on
    ``anyio.to_thread``, on an anyio or asyncio primitive, or on a Context with
    a deadline means no deadlock -- so a deadlock that involves only some
    tasks while another task waits on I/O is not reported (neither does Go's).
    A thread started inside the block (a bare ``threading.Thread`` or
    ``threading.Timer`` that may call ``from_thread`` or a context's
    ``cancel()``) holds reports off while it runs, as does a thread pool with
    jobs out (a `ThreadPoolExecutor`, a `multiprocessing` pool); other threads
    that were running before the block, and idle pools, do not. Deadlines of scopes
    *around* the block do not count: the block reports before an enclosing
    ``fail_after`` fires.

    Cost: diagnostics are on inside the block (see `enabled`), each park kicks
    the watcher, which then waits for the loop to go idle and looks at every
    task once; on asyncio an idle loop costs it a wake-up now and then (backing
    off to one a second), on trio none (a wake-up of the loop, by I/O or a
    deadline, costs a look, spaced as that back-off). Nested blocks: the
    innermost reports. Tasks the body started in task groups from outside the
    block are reported but not cancelled.

    Example:
        ```python
        results = Chan[int]()
        try:
            async with debug.detect_deadlocks():
                async with Group() as g:
                    await g.go(results.recv)  # waits for a send...
                    await results.recv()     # ...and so does the body: nobody sends
        except Deadlock as e:
            report = str(e)
        assert report.startswith("all tasks are asleep - deadlock!")
        ```
    """

    __slots__ = (
        "_body",
        "_busy",
        "_cancelled",
        "_chain",
        "_closing",
        "_enabled",
        "_failed",
        "_prev",
        "_raised",
        "_rounds",
        "_stuck",
        "_tg",
        "_threads",
        "_token",
        "_watcher",
        "_wscope",
        "owner",
        "report",
    )

    def __init__(self) -> None:
        """Make the scope; enter it with ``async with``."""
        self.report: str | None = None
        """The deadlock report once one was detected (also the `Deadlock` message)."""
        self.owner: object = None
        self._closing = False
        self._wscope: Any = None
        self._watcher = _Watcher()
        self._stuck: list[tuple[Any, _Wait | None]] = []  # the last look's, inside the block
        # Deadlock raised where tasks of the block were parked (and those tasks): the
        # body or its task groups may catch it; and whether the body was cancelled.
        self._raised: list[Deadlock] = []
        self._failed: weakref.WeakSet[Any] = weakref.WeakSet()
        self._cancelled = False
        self._rounds = 0  # deadlocks raised where tasks are parked
        # Threads there before the block (left out), and those running since that
        # may still wake a task (the last look's).
        self._threads: _tasks.ThreadsSeen | None = None
        self._busy: list[threading.Thread | None] = []

    async def __aenter__(self) -> detect_deadlocks:
        if self.owner is not None:
            raise RuntimeError(
                "detect_deadlocks: this block was entered already (make one per block)"
            )
        self._enabled = enabled()
        self._enabled.__enter__()
        self.owner = _tasks.current_task()
        self._threads = _tasks.ThreadsSeen()
        self._tg = create_task_group()
        await self._tg.__aenter__()
        try:
            # start(): the watcher is marked internal before anyone can count tasks
            await self._tg.start(self._watch, name="asyncgo deadlock watcher")
            self._prev = _SCOPES.get()
            self._chain = (*self._prev, self)
            self._token = _SCOPES.set(self._chain)
            self._body = _tasks.BodyScope().__enter__()
        except BaseException as exc:  # pragma: no cover - start_soon failed
            self._stop_watcher()
            await self._tg.__aexit__(type(exc), exc, exc.__traceback__)
            self._enabled.__exit__(None, None, None)
            raise
        _active.append(self)
        _TRACER.watchers.append(self._watcher)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        given = exc
        try:
            try:
                if self._body.__exit__(exc_type, exc, tb):
                    exc = None  # our own cancellation of the body (a deadlock was found)
            except BaseException as e:
                exc = e
            self._stop_watcher()
            _reset(_SCOPES, self._token, self._prev)
            try:
                if await _exit_beside(self._tg, exc):
                    exc = None
            except BaseException as e:
                exc = e
        finally:
            if self in _active:
                _active.remove(self)
            if self._watcher in _TRACER.watchers:
                _TRACER.watchers.remove(self._watcher)
            self._enabled.__exit__(None, None, None)
        raised, self._raised = self._raised, []
        self._failed = weakref.WeakSet()
        if self.report is not None and not self._cancelled and raised:
            # Raised where tasks were parked: handled (exc None), or on its way out --
            # as itself, or from a task group (an ExceptionGroup of them: one report).
            if exc is not None and not any(exc is r for r in raised):
                first = _first_ours(exc, raised)
                if first is not None:  # the earliest report: later ones follow from it
                    raise Deadlock(str(first)) from None
                if isinstance(exc, Exception) and _involves(exc, raised):
                    raise Deadlock(self.report) from exc  # (what a handler made of it)
                # Else raised after the Deadlock was handled: itself.
        elif self.report is not None and (exc is None or isinstance(exc, Exception)):
            raise Deadlock(self.report) from exc
        if exc is None:
            return given is not None
        if exc is given:
            return False
        raise exc

    def _stop_watcher(self) -> None:
        self._closing = True
        self._stuck = []  # (holds tasks)
        self._busy = []
        if self._wscope is not None:
            self._wscope.cancel()

    # -- the watcher ----------------------------------------------------------------

    async def _watch(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        me = _tasks.current_task()
        _internal.add(me)
        task_status.started()
        with anyio.CancelScope() as self._wscope:
            if self._closing:
                return
            virtual = _tasks.virtual_clock()
            # Under a virtual clock the back-off's timer fires only when the clock
            # moves (a MockClock moved by hand, or autojump, which leaps at once):
            # a task that ends without parking anything must kick the watcher.
            # So must an asyncgo timer that fires without moving any task (the last
            # thing that could wake one, perhaps), and the clock moving past where the
            # back-off would have run out (a deadline that expired, moving no task):
            # checked at each turn of the loop, a timer no clock can jump to.
            # On trio with the system clock, the same hooks, and no timer either: a
            # back-off timer would end each idle period of the loop, and
            # trio.testing.wait_all_tasks_blocked(cushion) would never see one. There
            # a task only moves unseen (no park, no exit) when something ends an idle
            # wait of the loop -- I/O, a thread, a deadline, that cushion -- and time
            # only acts through a deadline: the watcher looks at the turn after such
            # a wait, and at the turn that passes the run's next deadline (`due`,
            # see clock_turn). Under autojump the loop never waits idle (it jumps the
            # clock instead): there a step of any other task asks for that look.
            w = self._watcher
            w.loop = _timers.asyncio_loop()
            w.task = me
            hooks = w.loop is None  # trio
            if hooks:
                w.token = _tasks.trio_token()
            stops = (
                [
                    _tasks.on_task_exit(w.kick),
                    _timers.on_fire(w.look_again),
                    _tasks.on_loop_turn(w.clock_turn),
                ]
                if hooks
                else []
            )
            if virtual:
                stops.append(_tasks.on_task_step(w.stepped))
            try:
                await self._watch_loop(me, virtual, hooks)
            finally:
                w.stop()
                for stop in stops:
                    stop()

    async def _watch_loop(self, me: object, virtual: bool, hooks: bool) -> None:
        seen: tuple[int, int] | None = None
        delay = 0.01
        threads = 0.005  # the pause between looks while a thread runs
        time_passed = False
        while True:
            self._watcher.arm()
            await _tasks.wait_all_blocked()
            sig = (_TRACER.generation, _tasks.num_tasks_hint())
            # Nothing parked, woke or ended since the last look: the same verdict,
            # unless time passed -- a timer that fired without moving a task (a no-op
            # callback, a value nobody receives) may have been the last thing able to
            # wake one. So a back-off that ran out looks again.
            if sig != seen or time_passed:
                verdict, report = self._look(me)
                if hooks and not virtual:
                    w = self._watcher
                    w.last = _tasks.trio_now()
                    w.owed = math.inf
                    w.spacing = 0.01 if sig != seen else min(w.spacing * 2, 1.0)
                if verdict == _DEADLOCK:
                    # Confirm after letting anything already scheduled run (a callback
                    # from a thread, a cancellation in flight): nothing may have moved.
                    _tasks.let_threads_run()
                    await _tasks.sleep(0)
                    await _tasks.sleep(0)
                    if _TRACER.generation == sig[0]:
                        verdict, report = self._look(me)
                        if verdict == _DEADLOCK:
                            assert report is not None
                            self._on_deadlock(report)
                            # Keep watching until the block ends.
                            seen = None
                            continue
                    else:
                        # A task moved meanwhile (woken from a thread, say): look again
                        # once it settles -- it may leave no park or exit to tell.
                        verdict = _TRANSIENT
                if verdict == _TRANSIENT:
                    # (Under a virtual clock no timer: moved by hand, the clock might
                    # never reach it. The next wait for the others to block is the
                    # pause there.)
                    await _tasks.sleep(0 if virtual else 0.001)
                    continue
                if verdict == _THREAD:
                    # A thread started in the block runs: it may yet wake a task, or
                    # end without a word. Look again when it ends, or after a pause
                    # growing to 0.25 s, even if nothing moved.
                    busy, self._busy = self._busy, []
                    seen = None
                    if virtual:  # (real time, not a timer on the virtual clock)
                        await _tasks.join_threads(busy, 0.05)
                        continue
                    threads = min(threads * 2, 0.25)
                    with anyio.move_on_after(threads):
                        await self._watcher.event.wait()
                    continue
                threads = 0.005
                # Back off while nothing moves (looking only because time passed):
                # a timer firing, or a task that ends without parking anything, is
                # seen at the next look, hence the 1 s cap.
                delay = 0.01 if sig != seen else min(delay * 2, 1.0)
                seen = sig
            else:
                delay = min(delay * 2, 1.0)
            time_passed = False
            if hooks:
                # Under a virtual clock no timer of ours: autojump would leap to it
                # whenever every task waits (on a thread, a socket), moving the
                # clock the test reads by hours. Parks, task exits and asyncgo timers
                # firing kick us, and the clock reaching `due` (see clock_turn).
                # That is where the back-off runs out, or the run's next deadline if
                # sooner: one that expires cancelling no task (a parent's scope,
                # around children in a shielded scope, or none at all) may have been
                # all that could wake one. On trio with the system clock, only the
                # deadline (see _watch).
                # (A look asked for while we were not waiting here -- in the pause
                # of a transient verdict, say -- is owed now.)
                w = self._watcher
                if not w.stale:
                    due = _tasks.trio_next_deadline()
                    w.due = min(due, anyio.current_time() + delay) if virtual else due
                    w.waiting = True
                    try:
                        if w.owed == math.inf:
                            await w.event.wait()
                        else:  # (system clock only: see clock_turn)
                            with anyio.move_on_at(w.owed) as pause:
                                await w.event.wait()
                            if pause.cancelled_caught:
                                w.stale = True
                    finally:
                        w.waiting = False
                        w.due = math.inf
                time_passed, w.stale = w.stale, False
                continue
            with anyio.move_on_after(delay) as backoff:
                await self._watcher.event.wait()
            time_passed = backoff.cancelled_caught

    def _on_deadlock(self, report: str) -> None:
        """Act on a deadlock found: raise `Deadlock` where the tasks of the block are
        parked -- the block's own task if it is, else those it waits for -- and if that
        cannot end it (a task caught it and parked again, or `_MAX_RAISES` were raised
        already), cancel the body instead."""
        if self._cancelled:
            # Asleep again after the body was cancelled: tasks parked where no
            # cancellation reaches them (shielded scopes) would keep the block from
            # ever ending. Raise Deadlock where they are parked -- up to the cap
            # again: a shielded task that keeps catching it is left hanging (as
            # without detection) rather than spinning.
            if self._rounds < 2 * _MAX_RAISES:
                self._rounds += 1
                self._fail_stuck()
            elif self._rounds == 2 * _MAX_RAISES:
                self._rounds += 1
                _log.warning(
                    "detect_deadlocks: tasks in shielded scopes keep catching Deadlock "
                    "and parking again; nothing can end them, and the block waits for "
                    "them:\n%s",
                    report,
                )
            return
        if self._rounds < _MAX_RAISES:
            self._rounds += 1
            if self._fail_owner(report):
                # (Also a new deadlock after the body went on from an earlier one, e.g.
                # caught by a test's ``pytest.raises``: reported afresh.)
                self.report = report
                return
            parked = self._awaited([(t, w) for t, w in self._stuck if w is not None])
            if not any(t in self._failed for t, _ in parked) and self._fail_parked(parked, report):
                self.report = report
                return
        # A task got Deadlock already and is parked again (it caught it), the code
        # keeps catching it, or no task could be woken: cancel the body, and the
        # block raises Deadlock.
        self.report = report
        self._cancelled = True
        self._stuck = []
        self._body.cancel()

    def _awaited(self, parked: list[tuple[Any, _Wait]]) -> list[tuple[Any, _Wait]]:
        """Of *parked*, those the waiting tasks of the block wait for -- the tasks a
        group holds, for the innermost waiting tasks (a child leaving a group of its
        own, rather than the block's task leaving the group around it) -- so that
        tasks nobody waits for, such as the idle workers of a pool open around that
        group, are left alone. All of them if that cannot be told."""
        if not parked:
            return parked
        tasks = _tasks.all_tasks()
        chains = {id(t): {id(s) for s in _tasks.scope_chain(t)} for t, _ in self._stuck}
        waits: list[tuple[Any, int | None, list[tuple[Any, _Wait]]]] = []
        for t, w in self._stuck:
            if w is None or t is self.owner:
                scope, under = self._waited_for(t, parked, chains, tasks)
                if under:
                    waits.append((t, scope, under))
        # The innermost waiters: those none of whose waited-for tasks waits itself.
        out: list[tuple[Any, _Wait]] = []
        for t, scope, under in waits:
            if not any(
                v is not t and _waits_under(v, t, scope, chains, tasks) for v, _, _ in waits
            ):
                out.extend(e for e in under if not any(e[0] is o[0] for o in out))
        return out or parked

    def _waited_for(
        self,
        t: Any,
        parked: list[tuple[Any, _Wait]],
        chains: dict[int, set[int]],
        tasks: list[Any],
    ) -> tuple[int | None, list[tuple[Any, _Wait]]]:
        """The parked tasks *t* waits for, and the id of the scope that holds them
        (None when it awaits tasks directly: those and their descendants)."""
        awaited = _tasks.awaited_tasks(t)
        if awaited:  # ``await task`` or ``gather()``
            return None, [(v, w) for v, w in parked if _descends(v, awaited, tasks)]
        for scope in _tasks.scope_chain(t):
            under = [(v, w) for v, w in parked if id(scope) in chains.get(id(v), set())]
            if under:
                return id(scope), under
        return None, []

    def _fail_owner(self, report: str) -> bool:
        """Raise `Deadlock` where the block's own task is parked on an asyncgo primitive
        (``await ch.recv()`` raises it: the body can catch it, e.g. ``pytest.raises``)."""
        return self._fail_parked([(t, w) for t, w in self._stuck if t is self.owner], report)

    def _fail_parked(self, parked: Iterable[tuple[Any, _Wait | None]], report: str) -> bool:
        """Raise `Deadlock` where each of *parked* waits (their groups pass it on)."""
        done = False
        for t, w in parked:
            if w is not None:
                exc = Deadlock(report)
                if fail_parker(w.waiter, exc):
                    self._raised.append(exc)
                    self._failed.add(t)
                    done = True
        if done:
            self._stuck = []
        return done

    def _fail_stuck(self) -> None:
        for _, w in self._stuck:
            if w is not None:
                fail_parker(w.waiter, Deadlock(self.report or ""))
        self._stuck = []

    def _inner_scope_open(self) -> bool:
        return any(s is not self and self in s._chain for s in _active)

    def _look(self, me: object) -> tuple[str, str | None]:
        """One look at the loop: is every task asleep with nothing able to wake it?"""
        all_ = _tasks.all_tasks()
        waits = _TRACER.by_task()
        handles: set[int] = set()
        stop = self._body.native
        for t in all_:  # every scope's timer is accounted for, watchers' included
            _tasks.pending_deadline(t, None, handles)
        stuck: list[tuple[Any, _Wait | None]] = []
        ours: list[tuple[Any, _Wait | None]] = []  # of them, the tasks inside the block
        owner_seen = False
        for t in all_:
            if t is me or _is_internal(t) or _tasks.is_anyio_janitor(t) or _wakes_nothing(t):
                continue  # (the janitor sleeps until the loop ends, the ticker wakes the loop)
            if _tasks.task_state(t, me) != "waiting":
                return _TRANSIENT, None
            w = waits.get(t)
            if w is not None:
                if w.claimed():
                    return _TRANSIENT, None
            elif not _tasks.waits_for_children(t):
                # Parked on an asyncgo primitive before diagnostics were on (a fixture's
                # worker in `async for job in jobs`)? Else it waits on a timer, I/O, a
                # thread, another library: no deadlock.
                w = _discover(t)
                if w is None:
                    return _NO, None
            ctx = _tasks.task_context(t)
            inside = ctx is not None and self in ctx.get(_SCOPES, ())
            # A task waiting for its children is not woken by a cancellation already
            # delivered (the body's, once a deadlock was found, or any other): only
            # they can end its wait; a deadline still could, by cancelling them.
            if _tasks.pending_deadline(
                t, stop if inside else None, set(), deadlines_only=w is None
            ):
                return _NO, None
            if t is self.owner:
                owner_seen = True
            stuck.append((t, w))
            if inside:
                ours.append((t, w))
        if not owner_seen or not any(w is not None for _, w in stuck):
            return _NO, None
        activity = _tasks.loop_activity(handles)
        if activity is not None:
            return (_TRANSIENT if activity[1] else _NO), None
        if self._inner_scope_open():
            return _NO, None  # the innermost scope reports (it sees the same)
        assert self._threads is not None  # (taken as the block is entered)
        busy = _tasks.busy_threads(self._threads)
        if busy:
            self._busy = busy
            return _THREAD, None
        self._stuck = ours
        return _DEADLOCK, self._report(all_, stuck, me)

    def _report(self, all_: list[Any], stuck: list[tuple[Any, _Wait | None]], me: object) -> str:
        now = monotonic()
        stuck = sorted(stuck, key=lambda e: (e[0] is not self.owner, _number(e[0])))
        waits = {t: w for t, w in stuck if w is not None}
        infos = [_snapshot(t, all_, me, waits, now) for t, _ in stuck]
        lines = ["all tasks are asleep - deadlock!", ""]
        for (t, w), info in zip(stuck, infos, strict=True):
            who = f'task {info.id} "{info.name}"'
            if t is self.owner:
                who += " (owner of the detect_deadlocks() block)"
            if w is None:
                lines.append(f"{who} waits for its child tasks")
                continue
            lines.append(f"{who} [{info.status()}] waits on:")
            lines.extend(f"    {p}" for p in info.blocked_on)
        lines.append("")
        lines.append(dump(infos, group=False))
        return "\n".join(lines)


# -- a blocked event loop: lag monitor and blocking watchdog ------------------------------

_log = logging.getLogger(__name__)  # "asyncgo.debug"

#: Upper bounds (seconds) of `LagStats.histogram`'s buckets, as Prometheus' ``le``.
_LAG_BOUNDS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, math.inf,
)  # fmt: skip


def _positive_seconds(what: str, value: float) -> float:
    """*value* as a positive, finite float; else a TypeError or ValueError naming *what*."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    if not 0 < value < math.inf:  # NaN fails every comparison
        raise ValueError(f"{what} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def _nearest_rank(ordered: list[float] | tuple[float, ...], q: float) -> float:
    """The *q* quantile (0..1) of sorted samples, nearest-rank; 0.0 without samples."""
    if not ordered:
        return 0.0
    k = math.ceil(q * len(ordered)) - 1
    return ordered[min(max(k, 0), len(ordered) - 1)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


@final
@dataclass(frozen=True, slots=True)
class LagStats:
    """How late the event loop woke `monitor_lag`'s task: what its `stats()` returns.

    A lag is how much later than asked the task, sleeping `interval` seconds,
    ran again: the time the loop was busy with other work (or blocked) when it
    should have woken it -- the delay every task of the loop sees, Go's
    scheduling latency. ``count``, ``mean`` and ``max`` cover every sample since
    the monitor started, ``p50``, ``p99`` and `quantile` the recent ones (the
    monitor's ``window``), ``histogram`` every sample.

    Example:
        ```python
        async with debug.monitor_lag(interval=0.01) as lag:
            await anyio.sleep(0.05)
        s = lag.stats()
        assert s.count >= 1 and 0 <= s.p50 <= s.p99 <= s.max
        assert sum(n for _, n in s.histogram) == s.count
        print(s)                             # loop lag over 5 wake-ups (every 10.0ms): mean ...
        ```
    """

    interval: float
    """The monitor's sleep, seconds."""
    count: int
    """Wake-ups measured since the monitor started."""
    mean: float
    """Mean lag, seconds (0.0 before the first sample)."""
    max: float
    """Largest lag, seconds."""
    last: float
    """The latest lag, seconds."""
    p50: float
    """Median lag of the recent samples, seconds."""
    p99: float
    """99th percentile lag of the recent samples, seconds."""
    histogram: tuple[tuple[float, int], ...]
    """``(upper bound, samples)`` pairs: how many lags fell in ``(previous bound,
    bound]``, from 1 ms up to ``inf`` (Prometheus' ``le`` buckets, not cumulative)."""
    recent: tuple[float, ...] = field(repr=False)
    """The recent lags, oldest first (at most the monitor's ``window``)."""

    def quantile(self, q: float) -> float:
        """The *q* quantile (``0 <= q <= 1``) of the recent lags, nearest-rank; 0.0 without any.

        Raises:
            ValueError: *q* is not within 0..1.
        """
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be within 0..1, got {q!r}")
        return _nearest_rank(sorted(self.recent), q)

    def __str__(self) -> str:
        return (
            f"loop lag over {self.count} wake-up{'s' if self.count != 1 else ''} "
            f"(every {_ms(self.interval)}): "
            f"mean {_ms(self.mean)}, p50 {_ms(self.p50)}, p99 {_ms(self.p99)}, "
            f"max {_ms(self.max)}"
        )


@final
class monitor_lag:
    """Measure how late the event loop runs tasks: a blocked or overloaded loop.

    ``async with debug.monitor_lag(interval) as lag:`` runs, beside its body,
    a task that sleeps *interval* seconds again and again and records how much
    later than asked it woke up. On a healthy loop that lag is a fraction of a
    millisecond; a callback or task step that runs too long -- ``time.sleep``,
    CPU work, blocking I/O, a sync client -- delays every task of the loop, and
    shows here as a lag about as long as the step. `stats()` returns a
    `LagStats` snapshot at any time, inside the block and after it (the numbers
    stop at its end). A late wake-up counts once the task runs, or when the
    block ends while it is overdue (a block that ends with a blocking call
    still shows it). To see *what* blocks the loop, use `watch_blocking`.
    Go: the scheduling latency of ``go tool trace``, ``runtime/metrics``
    ``/sched/latencies:seconds``.

    Lags are measured on the wall clock (``time.monotonic``), so under a
    virtual clock (trio's ``MockClock``) only real blocking shows. uvloop's
    timers tick in milliseconds: lags under ~1 ms are its rounding. The task is
    asyncgo's own: `tasks()`, `dump()`, `num_tasks()`, `asyncgo.testing.no_leaks`
    and `detect_deadlocks` leave it out (its timer does not hide a deadlock).
    Leaving the block cancels the task and waits for it, also on an exception
    or a cancellation, which propagate unchanged. Cost: one timer wake-up per
    *interval* (20 a second at the default 50 ms, each a few microseconds of
    loop time): within the noise of the channel benchmarks.

    Args:
        interval: How long the task sleeps between measurements, seconds.
        window: How many recent lags `LagStats.p50`, ``p99`` and ``quantile`` cover.

    Raises:
        ValueError: *interval* is not a positive, finite number, or *window* < 1.
        TypeError: *interval* is not a number, or *window* not an int.

    Example:
        ```python
        import time

        async with debug.monitor_lag(interval=0.01) as lag:
            await anyio.sleep(0.05)          # an idle loop: wake-ups are on time
            time.sleep(0.2)                  # BUG: blocks the loop (sync I/O, CPU work)
            await anyio.sleep(0.02)          # (the monitor wakes, late, before this does)
        s = lag.stats()                      # readable after the block too
        assert s.max >= 0.1                  # one wake-up came ~0.19 s late
        print(s)                             # loop lag over 6 wake-ups (...): ..., max 190.3ms
        ```
    """

    __slots__ = (
        "_buckets",
        "_closing",
        "_count",
        "_due",
        "_interval",
        "_last",
        "_max",
        "_recent",
        "_scope",
        "_tg",
        "_total",
    )

    def __init__(self, interval: float = 0.05, *, window: int = 1000) -> None:
        """Make the monitor; enter it with ``async with``."""
        self._interval = _positive_seconds("monitor_lag: interval", interval)
        if isinstance(window, bool) or not isinstance(window, int):
            raise TypeError(f"monitor_lag: window must be an int, got {window!r}")
        if window < 1:
            raise ValueError(f"monitor_lag: window must be at least 1, got {window}")
        self._recent: deque[float] = deque(maxlen=window)
        self._buckets = [0] * len(_LAG_BOUNDS)
        self._count = 0
        self._total = 0.0
        self._max = 0.0
        self._last = 0.0
        self._tg: Any = None
        self._scope: Any = None
        self._closing = False
        self._due: float | None = None  # when the monitor's current sleep should end

    @property
    def interval(self) -> float:
        """The monitor's sleep between measurements, seconds."""
        return self._interval

    def stats(self) -> LagStats:
        """A snapshot of the lags measured so far (any time: inside the block or after it).

        Example:
            ```python
            lag = debug.monitor_lag(interval=0.01)
            assert lag.stats().count == 0     # nothing measured before the block
            async with lag:
                await anyio.sleep(0.03)
                assert lag.stats().count >= 1
            ```
        """
        recent = tuple(self._recent)
        ordered = sorted(recent)
        count = self._count
        return LagStats(
            interval=self._interval,
            count=count,
            mean=self._total / count if count else 0.0,
            max=self._max,
            last=self._last,
            p50=_nearest_rank(ordered, 0.5),
            p99=_nearest_rank(ordered, 0.99),
            histogram=tuple(zip(_LAG_BOUNDS, self._buckets, strict=True)),
            recent=recent,
        )

    def _record(self, lag: float) -> None:
        # A timer may fire a hair early (the loop's clock resolution): that is no lag.
        lag = max(lag, 0.0)
        self._count += 1
        self._total += lag
        self._last = lag
        if lag > self._max:
            self._max = lag
        self._recent.append(lag)
        self._buckets[bisect_left(_LAG_BOUNDS, lag)] += 1

    async def __aenter__(self) -> monitor_lag:
        if self._tg is not None:
            raise RuntimeError("monitor_lag: this block was entered already (make one per block)")
        self._tg = create_task_group()
        await self._tg.__aenter__()
        try:
            # start(): the task is marked internal before the body can count tasks
            await self._tg.start(self._run, name="asyncgo lag monitor")
        except BaseException as exc:  # pragma: no cover - cancelled while starting
            self._stop()
            await self._tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._stop()
        # A monitor must not change what the body raises
        # (test_debug_lag.py::test_lag_monitor_leaves_the_body_exception_alone).
        return await _exit_beside(self._tg, exc)

    def _stop(self) -> None:
        if not self._closing:
            self._closing = True
            # A block that ends with a blocking call leaves the wake-up it delayed
            # overdue: count it now, or the worst lag would never show
            # (test_debug_lag.py::test_lag_monitor_counts_the_wake_up_overdue_at_exit).
            due, self._due = self._due, None
            if due is not None:
                late = monotonic() - due
                if late > 0:
                    self._record(late)
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        _internal.add(_tasks.current_task())
        interval = self._interval
        with anyio.CancelScope() as self._scope:
            task_status.started()
            while not self._closing:
                self._due = monotonic() + interval
                # A cancel-scope deadline, not an anonymous timer: the deadlock detector
                # accounts for it (test_debug_lag.py::test_lag_monitor_keeps_deadlock_detection).
                await _tasks.sleep(interval)
                due, self._due = self._due, None
                if due is not None:  # (else _stop() counted this wake-up already)
                    self._record(monotonic() - due)


@final
@dataclass(frozen=True, slots=True)
class BlockingReport:
    """What `watch_blocking` saw: the event loop not answering, and what its thread ran.

    Example:
        ```python
        import time

        def parse_upload() -> None:          # sync work called from async code
            time.sleep(0.2)                  # BUG: blocks the event loop

        reports: list[debug.BlockingReport] = []
        with debug.watch_blocking(threshold=0.05, on_block=reports.append):
            parse_upload()
        [r] = [r for r in reports if "parse_upload" in r.format()]
        assert r.duration >= 0.05 and r.stack[0].function.endswith("parse_upload")
        print(r)                             # event loop blocked: no answer for 0.05s ...
        ```
    """

    duration: float
    """How long the loop had not answered a ping when its stack was taken, seconds
    (at least the threshold; the block itself may last longer)."""
    threshold: float
    """The watchdog's threshold, seconds."""
    thread_id: int
    """The event loop's thread (``threading.get_ident()``, a key of ``sys._current_frames()``)."""
    stack: tuple[Frame, ...]
    """What that thread was running, innermost call first (Go's order): the blocking
    call's caller on top, the event loop's own frames at the bottom."""

    def format(self) -> str:
        """The report as the watchdog logs it: a header, then the stack as `dump()` prints one."""
        lines = [
            f"event loop blocked: no answer for {_duration(self.duration)} "
            f"(threshold {_duration(self.threshold)}); its thread {self.thread_id} is running:"
        ]
        for i, fr in enumerate(self.stack):
            lines.append(f"{fr.function}(...)")
            lines.append(f"\t{fr.where}")
            if i == 0:  # the line that blocks
                src = linecache.getline(fr.filename, fr.lineno).strip()
                if src:
                    lines.append(f"\t    {src}")
        if not self.stack:
            lines.append("(no Python frame: the thread ended)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


@final
class watch_blocking:
    """Report what blocks the event loop, with its stack, while it blocks.

    ``with debug.watch_blocking(threshold):`` (from async code; a plain
    ``with`` works in tests and apps alike) starts a watchdog thread that pings
    the running event loop -- asyncio's ``loop.call_soon_threadsafe``, trio's
    ``TrioToken.run_sync_soon``, the only way it touches the loop -- every
    *threshold* / 2 seconds. When a ping has waited *threshold* seconds for the
    loop to run it, the watchdog takes the loop thread's Python stack
    (``sys._current_frames()``) and reports it once for that blocking episode
    (the loop answering ends it): by default a warning on the ``asyncgo.debug``
    `logging` logger; with *on_block*, a call ``on_block(report)`` with a
    `BlockingReport` instead. So a block is reported while it lasts, at most
    about 1.5 times *threshold* after it began (a shorter one may go unnoticed).
    Go: ``go tool trace`` showing a goroutine that hogs its P while others wait.

    The stack is that of whatever holds the loop's thread: the function calling
    ``time.sleep``, doing CPU work or blocking I/O, inside the task step or
    callback that called it. A C extension that holds the GIL while it blocks
    keeps the watchdog from running too: it reports once the GIL is released.
    Below ~20 ms, thresholds measure thread switching (the GIL hands over every
    5 ms, ``sys.getswitchinterval()``) and a merely busy loop more than blocking:
    reports then show wherever the loop happened to be; 50 ms and up find
    blocking calls.
    Leaving the block stops and joins the thread (the thread never keeps the
    loop alive; a loop that closes under it stops it too). *on_block* runs in
    the watchdog thread: keep it short, and never wait there for the event
    loop (leaving the block waits for it). Cost: a thread that sleeps, and one
    callback on the loop per *threshold* / 2 seconds (20 a second at the
    default 0.1 s, a few microseconds each). Works whether diagnostics are on or not.

    Args:
        threshold: How long the loop may leave a ping unanswered before it is
            reported, seconds.
        on_block: Called, in the watchdog thread, with each report instead of
            logging it; what it returns is ignored, an exception it raises is logged.

    Raises:
        ValueError: *threshold* is not a positive, finite number.
        TypeError: *threshold* is not a number, or *on_block* is not callable.
        RuntimeError: Entered outside a running event loop, or twice.

    Example:
        ```python
        import time

        async def handler() -> None:
            time.sleep(0.2)                  # BUG: a sync call in async code

        with debug.watch_blocking(threshold=0.05) as watchdog:
            await handler()                  # logs "event loop blocked: ..." and the stack
        assert watchdog.episodes >= 1        # on the "asyncgo.debug" logger
        ```
    """

    __slots__ = (
        "_answered",
        "_episodes",
        "_loop_thread",
        "_on_block",
        "_schedule",
        "_stop",
        "_thread",
        "_threshold",
        "_wake",
    )

    def __init__(
        self,
        threshold: float = 0.1,
        *,
        on_block: Callable[[BlockingReport], object] | None = None,
    ) -> None:
        """Make the watchdog; enter it with ``with`` from async code."""
        self._threshold = _positive_seconds("watch_blocking: threshold", threshold)
        if on_block is not None and not callable(on_block):
            raise TypeError(f"watch_blocking: on_block must be callable or None, got {on_block!r}")
        self._on_block = on_block
        self._episodes = 0
        self._answered = 0  # the latest ping the loop ran (written by the loop thread only)
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by an answer and by the stop
        self._thread: threading.Thread | None = None
        self._schedule: Callable[..., object] | None = None
        self._loop_thread = 0

    @property
    def threshold(self) -> float:
        """How long a ping may wait before the loop counts as blocked, seconds."""
        return self._threshold

    @property
    def episodes(self) -> int:
        """How many blocking episodes were reported so far."""
        return self._episodes

    def __enter__(self) -> watch_blocking:
        if self._thread is not None:
            raise RuntimeError(
                "watch_blocking: this block was entered already (make one per block)"
            )
        backend = _tasks.backend_name()  # a clear RuntimeError outside an event loop
        token: Any = _tasks.loop_token()  # the asyncio loop, or the trio run's token
        self._schedule = token.call_soon_threadsafe if backend == "asyncio" else token.run_sync_soon
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(
            target=self._watch, name="asyncgo blocking watchdog", daemon=True
        )
        _tasks.QUIET_THREADS.add(self._thread)  # it calls into the loop, but wakes no task
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # stop before wake: the watchdog checks the stop after every wake-up and
        # after clearing the wake (test_debug_lag.py::test_watchdog_exit_is_prompt).
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()

    # -- the loop side: the only code that runs in the event loop's thread -----------------

    def _pong(self, seq: int) -> None:
        if seq > self._answered:
            self._answered = seq
        self._wake.set()

    # -- the watchdog thread -------------------------------------------------------------------

    def _ping(self, seq: int) -> bool:
        assert self._schedule is not None
        try:
            self._schedule(self._pong, seq)
        except RuntimeError:  # the loop is closed, or the trio run finished: nothing to watch
            return False
        return True

    def _watch(self) -> None:
        threshold = self._threshold
        period = threshold / 2
        # While blocked, ping again now and then: an error then means the loop is gone
        # (closed with our ping unrun), and the thread must not wait for it forever.
        reprobe = max(threshold, 1.0)
        stop, wake = self._stop, self._wake
        seq = 0
        while not stop.is_set():
            wake.clear()
            if stop.is_set():  # set before the clear: its wake-up was just erased
                return
            seq += 1
            sent = monotonic()
            if not self._ping(seq):
                return
            first = seq  # any answer from this one on ends the episode
            reported = False
            while True:
                if reported:
                    if not wake.wait(reprobe) and not stop.is_set():
                        wake.clear()
                        seq += 1
                        if not self._ping(seq):
                            return
                else:
                    wake.wait(max(sent + threshold - monotonic(), 0.0))
                if stop.is_set():
                    return
                if self._answered >= first:
                    break
                # Not our answer: a late one to an earlier episode's re-ping, or the
                # wait timed out. Clear the wake-up (or a stale one would make this a
                # busy loop), then look again: an answer or a stop may have just come.
                wake.clear()
                if stop.is_set():
                    return
                if self._answered >= first:
                    break
                if not reported and monotonic() - sent >= threshold:
                    if not self._report(first, sent):
                        break  # answered while we looked
                    reported = True
            stop.wait(period)

    def _report(self, seq: int, sent: float) -> bool:
        """Take the loop thread's stack and report it; False if the loop answered meanwhile."""
        current = sys._current_frames()
        f: FrameType | None = current.get(self._loop_thread)
        del current
        if f is None:  # pragma: no cover - the loop's thread ended without leaving the block
            self._stop.set()
            return False
        raw: list[tuple[str, str, int]] = []
        while f is not None:
            raw.append((_func_name(f), f.f_code.co_filename, f.f_lineno or 0))
            f = f.f_back
        duration = monotonic() - sent
        if self._stop.is_set():  # leaving the block: its thread is in __exit__, not blocked
            return False
        # An answer before the snapshot would make it a stack from after the block (the
        # loop idle): the answer is read after it, so a stack reported was taken before.
        if self._answered >= seq:
            return False
        report = BlockingReport(
            duration=duration,
            threshold=self._threshold,
            thread_id=self._loop_thread,
            stack=tuple(Frame(fn, filename, lineno) for fn, filename, lineno in raw),
        )
        self._episodes += 1
        if self._on_block is None:
            _log.warning("%s", report)
        else:
            try:
                self._on_block(report)
            except Exception:
                _log.exception("watch_blocking: on_block(%r) raised", self._on_block)
        return True

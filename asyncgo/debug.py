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

Diagnostics are off by default and then cost nothing: channels, select and the
sync primitives read one module attribute per park. `enable()` (or the
`enabled()` block, which `detect_deadlocks()` and `asyncgo.testing.no_leaks()`
enter for you) turns on the tracer, which records where each primitive is made
(a frame walk per construction) and which task parks on what (a dictionary
entry per park); `tasks()` works without it, but then shows only stacks.
See docs/diagnostics.md.
"""

from __future__ import annotations

import linecache
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from time import monotonic
from types import FrameType, MappingProxyType, TracebackType
from typing import Any, final

from ._backend import _diag, _tasks, anyio, create_task_group, fail_parker
from ._debug_http import aiohttp_handler as aiohttp_handler
from ._debug_http import asgi_app as asgi_app
from ._exceptions import Deadlock

__all__ = [
    "Frame",
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
    "num_tasks",
    "tasks",
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
    has no creation site of its own, it says so and `created_at` is None."""

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
    """Seconds since it parked (None unless parked)."""
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

    def __init__(self, waiter: object, task: object, obj: object, op: str, since: float) -> None:
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
    so tasks started inside -- through `Group`, pipelines, pools, anyio task
    groups or ``asyncio.create_task`` -- keep them for life. `tasks()` and
    `dump()` show them. Yields the task's labels inside the block.
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
        state, op, on, since = "parked", w.op, _primitives(w.obj), now - w.since
    parent = _tasks.task_parent(task, all_)
    created_by = None
    if parent is not None:
        created_by = f'task {_number(parent)} "{_tasks.task_name(parent)}"'
    return TaskInfo(
        id=_number(task),
        name=_tasks.task_name(task),
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
    timer service on trio and the deadlock detector's watcher tasks are left out.

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
    now = monotonic()
    return [_snapshot(t, ts, current, waits, now) for t in ts]


def _snapshots(raw: Iterable[Any]) -> list[TaskInfo]:
    """Snapshots of the given backend tasks (for asyncgo.testing)."""
    all_ = _tasks.all_tasks()
    current = _tasks.current_task()
    waits = _TRACER.by_task()
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
#: while an asyncgo timer or context deadline is pending). The deadlock detector still
#: sees it: a pending timer means "not a deadlock".
_HELPERS = frozenset({"asyncgo timers"})


def _is_helper(task: object) -> bool:
    return _is_internal(task) or _tasks.task_name(task) in _HELPERS


class _Watcher:
    """The kick a parked task gives a scope's watcher (same thread: same loop)."""

    __slots__ = ("event", "kicked", "thread")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.event: Any = None
        self.kicked = False  # set by the first kick since the watcher last armed its event

    def arm(self) -> Any:
        self.kicked = False
        self.event = ev = anyio.Event()
        return ev

    def kick(self) -> None:
        self.kicked = True
        ev = self.event
        if ev is not None:
            ev.set()


# Verdicts of one look at the loop.
_DEADLOCK, _TRANSIENT, _NO = "deadlock", "transient", "no"


@final
class detect_deadlocks:
    """Raise `asyncgo.Deadlock` instead of hanging when every task is asleep.

    ``async with debug.detect_deadlocks():`` runs its body with a watcher task
    beside it. When every task of the event loop is parked on asyncgo
    primitives (channels, select, the `asyncgo.sync` primitives,
    singleflight) or waits for child tasks that are, and nothing else can wake
    any of them -- no cancel-scope deadline inside the block, no pending timer,
    ready callback, I/O source (socket, pipe, server, reader), signal handler
    or callback from another thread -- the body is cancelled and the block
    raises `Deadlock`, whose message lists who waits on what and the tasks'
    stacks. Go: ``fatal error: all goroutines are asleep - deadlock!``
    A task parked inside a shielded cancel scope, which that cancellation
    cannot reach, gets `Deadlock` raised where it is parked instead.

    No false positives is the rule: a task sleeping, waiting on a socket, on
    ``anyio.to_thread``, on an anyio or asyncio primitive, or on a Context with
    a deadline means no deadlock -- so a deadlock that involves only some
    tasks while another task waits on I/O is not reported (neither does Go's).
    A thread that was not started through ``to_thread`` (a bare
    ``threading.Thread`` calling ``from_thread``) is invisible: do not rely on
    detection then. Deadlines of scopes *around* the block do not count: the
    block reports before an enclosing ``fail_after`` fires.

    Cost: diagnostics are on inside the block (see `enabled`), each park kicks
    the watcher, which then waits for the loop to go idle and looks at every
    task once; an idle loop costs it a wake-up now and then (backing off to one
    a second). Nested blocks: the innermost reports. Tasks the body started
    in task groups from outside the block are reported but not cancelled.

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
        "_chain",
        "_closing",
        "_enabled",
        "_prev",
        "_stuck",
        "_tg",
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

    async def __aenter__(self) -> detect_deadlocks:
        if self.owner is not None:
            raise RuntimeError(
                "detect_deadlocks: this block was entered already (make one per block)"
            )
        self._enabled = enabled()
        self._enabled.__enter__()
        self.owner = _tasks.current_task()
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
    ) -> bool:
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
                if await self._tg.__aexit__(
                    type(exc) if exc is not None else None,
                    exc,
                    exc.__traceback__ if exc is not None else None,
                ):
                    exc = None
            except BaseException as e:
                exc = e
        finally:
            if self in _active:
                _active.remove(self)
            if self._watcher in _TRACER.watchers:
                _TRACER.watchers.remove(self._watcher)
            self._enabled.__exit__(None, None, None)
        if self.report is not None and (exc is None or isinstance(exc, Exception)):
            raise Deadlock(self.report) from exc
        if exc is None:
            return given is not None
        if exc is given:
            return False
        raise exc

    def _stop_watcher(self) -> None:
        self._closing = True
        self._stuck = []  # (holds tasks)
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
            seen: tuple[int, int] | None = None
            delay = 0.01
            virtual = _tasks.virtual_clock()
            while True:
                self._watcher.arm()
                await _tasks.wait_all_blocked()
                sig = (_TRACER.generation, _tasks.num_tasks_hint())
                if sig != seen:
                    verdict, report = self._look(me)
                    if verdict == _DEADLOCK:
                        # Confirm after letting anything already scheduled run (a callback
                        # from a thread, a cancellation in flight): nothing may have moved.
                        await _tasks.sleep(0)
                        await _tasks.sleep(0)
                        if _TRACER.generation == sig[0]:
                            verdict, report = self._look(me)
                            if verdict == _DEADLOCK:
                                if self.report is None:
                                    self.report = report
                                    self._body.cancel()
                                else:
                                    # Asleep again after the body was cancelled: tasks
                                    # parked where the cancellation cannot reach them
                                    # (shielded scopes) would keep the block from ever
                                    # ending. Raise Deadlock where they are parked.
                                    self._fail_stuck()
                                # Keep watching until the block ends.
                                seen = None
                                continue
                    if verdict == _TRANSIENT:
                        await _tasks.sleep(0.001)
                        continue
                    seen = sig
                    delay = 0.01
                else:
                    # Nothing moved: back off. A task that ends without parking
                    # anything is only seen at the next look, hence the 1 s cap
                    # (none under a virtual clock, where waiting is free).
                    delay = delay * 2 if virtual else min(delay * 2, 1.0)
                with anyio.move_on_after(delay):
                    await self._watcher.event.wait()

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
            if t is me or _is_internal(t):
                continue
            if _tasks.task_state(t, me) != "waiting":
                return _TRANSIENT, None
            w = waits.get(t)
            if w is not None:
                if w.claimed():
                    return _TRANSIENT, None
            elif not _tasks.waits_for_children(t):
                return _NO, None  # waits on a timer, I/O, a thread, another library
            ctx = _tasks.task_context(t)
            inside = ctx is not None and self in ctx.get(_SCOPES, ())
            # Once the body was cancelled (a deadlock found), a task waiting for its
            # children is not woken by that cancellation: only they can end its wait.
            settled = w is None and self.report is not None
            if _tasks.pending_deadline(t, stop if inside else None, set(), deadlines_only=settled):
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

"""Native task groups for `asyncgo.Group`: spawning at the event loop's own speed.

anyio's task group costs a cancel scope, an event and a done callback per task
(about four times asyncio.TaskGroup's spawn cost, issue #4), so `Group` spawns
with the running loop's own primitives instead:

* asyncio / uvloop (`AsyncioCore`): ``loop.create_task`` on a small wrapper
  coroutine, asyncio.TaskGroup's shape. The owner's body runs inside an anyio
  cancel scope of our own, so that cancelling it (first error, parent context)
  respects anyio shields and anyio counts its ``Task.cancel()`` /
  ``Task.uncancel()`` calls, and so that an enclosing anyio scope or a native
  ``Task.cancel()`` of the owner is told apart from our own cancellation.
  Children are plain tasks registered with anyio in one scope of the group's
  (made at the first spawn, under the owner's body scope), as anyio's own task
  group registers its tasks: so an enclosing scope that is cancelled reaches
  them at once, even while the owner's body is shielded, and
  ``current_effective_deadline()`` in a task sees an enclosing deadline. Aborting
  the group cancels that scope, so anyio delivers the cancellation: level
  triggered like trio, only once a task has started, and never into a shielded
  scope -- as anyio's own task group would.
* trio (`TrioCore`): a trio nursery, used directly.

In both, every child runs inside a wrapper that catches its outcome -- a value,
an exception, or the backend's cancellation -- and stores it on the task's
handle, so errors never reach the native group: it only ever sees cancellation
(and, on trio, what the owner itself raises while waiting). What to raise on
exit is `asyncgo.Group`'s decision (``_group.py``); the cores report the
owner's cancellation exception to it, unwrapped.

The handle and the group are duck-typed here (see `_GroupLike` / `_HandleLike`)
to keep this module free of imports from above ``_backend``.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from asyncio import CancelledError
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from weakref import ref as _ref

from anyio._backends._asyncio import CancelScope as _AsyncioScope
from anyio._backends._asyncio import TaskState as _TaskState
from anyio._backends._asyncio import _task_states
from anyio.lowlevel import checkpoint_if_cancelled

from . import TRIO, forget_clean

_NOTHING: Any = object()  # fn(*args) has not returned
# anyio's task states, a WeakKeyDictionary, written as its __setitem__ does (its
# ``data`` and ``_remove`` are not in typeshed).
_states: Any = _task_states
_states_setdefault: Callable[[Any, _TaskState], _TaskState] = _states.data.setdefault
_states_remove: Callable[[Any], None] = _states._remove
# anyio's CancelScope.__enter__, without asyncgo's wrapper (see AsyncioCore.enter_now).
_raw_enter: Callable[[_AsyncioScope], object] = getattr(
    _AsyncioScope.__enter__, "__wrapped__", _AsyncioScope.__enter__
)

if TYPE_CHECKING:
    import trio

__all__ = [
    "AsyncioCore",
    "Core",
    "TrioCore",
    "checkpoint_if_cancelled",
    "make_core",
    "PENDING",
    "OK",
    "FAILED",
    "CANCELLED",
]

#: Handle states (``handle._state``).
PENDING, OK, FAILED, CANCELLED = 0, 1, 2, 3


class _HandleLike(Protocol):
    """What the cores write on a `TaskHandle` when its task ends."""

    _state: int
    _value: object
    _tb: TracebackType | None  # the task's traceback, when it failed
    _waiters: list[Any] | None
    _task: Any

    def _wake(self) -> None: ...


class _GroupLike(Protocol):
    """What the cores call back on their `Group`."""

    _limit: int | None
    _cut: bool  # a child was cancelled (cut short)

    def _fail(self, exc: BaseException) -> None: ...

    def _release(self) -> None: ...


class Core(Protocol):
    """The interface `Group` drives: one core per entered group."""

    async def enter(self) -> None:
        """Open the native group in the owner task (``async with`` entry)."""

    def spawn(
        self, h: _HandleLike, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> bool:
        """Start ``fn(*args)`` as a child whose outcome goes to *h*.

        False (nothing started) when the native group takes no more tasks: its
        last child ended while the owner is leaving the block.
        """

    def abort(self) -> None:
        """Cancel every child, and the owner's body if it is still running."""

    async def exit(self, exc: BaseException | None) -> BaseException | None:
        """Wait for every child; return the owner's cancellation, if it must propagate.

        *exc* is what the body raised. Its errors have been handed to
        ``group._fail`` (so were the owner's own non-cancellation exceptions
        while waiting). Returns the backend cancellation exception to
        propagate (the owner was cancelled from outside), else None -- the
        group's own cancellation is swallowed here.
        """


def make_core(group: _GroupLike, rt: object) -> Core:
    """The core for runtime *rt*: an asyncio loop, or `asyncgo._backend.TRIO`."""
    if rt is TRIO:
        return TrioCore(group)
    return AsyncioCore(group, rt)  # type: ignore[arg-type]


def _not_awaitable(fn: object, r: object) -> TypeError:
    """The error for ``g.go(fn)`` where ``fn(*args)`` returned *r*, not an awaitable."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return TypeError(
        f"Group.go(): {name}() returned {type(r).__name__}, not an awaitable: pass an "
        "async function (run blocking sync code with anyio.to_thread.run_sync)"
    )


# -- asyncio / uvloop ---------------------------------------------------------------------


def _is_anyio_cancel(exc: BaseException) -> bool:
    # anyio >= 4.? says "Cancelled via cancel scope", older ones "Cancelled by cancel scope".
    args = exc.args
    return bool(args) and isinstance(args[0], str) and args[0].startswith("Cancelled ")


def _adopt(task: asyncio.Task[Any], scope: _AsyncioScope, old: _AsyncioScope | None) -> None:
    """Put a child that hangs from *old* (None: from nothing) under *scope*.

    A task directly in *old* (or with no anyio scope at all) gets *scope* as its
    root; one that entered scopes of its own has the outermost of them
    re-parented under *scope*, so anyio's delivery walks down to it and stops at
    shields, and its scopes see the cancellations and deadlines of *scope* and
    its parents (trio's ``parent_cancellation_is_visible``). A task already under
    *scope* is left as it is.
    """
    state = _task_states.get(task)
    if state is None:
        _task_states[task] = _TaskState(None, scope)
        scope._tasks.add(task)
        return
    s = state.cancel_scope
    if s is old or s is None:
        state.cancel_scope = scope
        if s is not None:
            s._tasks.discard(task)
        scope._tasks.add(task)
        return
    while s is not scope:
        parent = s._parent_scope
        if parent is old:  # s is the task's outermost scope of its own
            if old is not None:
                old._child_scopes.discard(s)
            s._parent_scope = scope
            scope._child_scopes.add(s)
            forget_clean()  # its scopes' walks now reach *scope* (maybe cancelled)
            if type(s) is _BodyScope and s.core is not None:  # a Group's body: now enclosed
                s.core._enrol_all()
            return
        if parent is None:  # pragma: no cover - hangs from neither: leave it
            return
        s = parent


class _BodyScope(_AsyncioScope):
    """The anyio scope of a `Group` block's body, which knows its core: when `_adopt`
    puts it under another group's scope, the group's tasks get registered too."""

    __slots__ = ("core",)

    # None once the block is left: no cycle core <-> scope, so that a finished group is
    # freed when its last reference goes, not by the garbage collector.
    core: AsyncioCore | None


def _slots(cls: type) -> list[str]:
    return [n for c in cls.__mro__ for n in c.__dict__.get("__slots__", ()) if n != "__weakref__"]


def _fast_body_scope() -> _BodyScope:
    """``_BodyScope()``: anyio's ``CancelScope()`` (no deadline, no shield), its
    attributes written directly -- its ``__new__`` and ``__init__`` are Python code."""
    s: Any = _new_scope(_BodyScope)
    s._deadline = _INF
    s._shield = False
    s._parent_scope = None
    s._child_scopes = set()
    s._cancel_called = False
    s._cancel_reason = None
    s._cancelled_caught = False
    s._active = False
    s._timeout_handle = None
    s._cancel_handle = None
    s._tasks = set()
    s._host_task = None
    s._cancelling_at_enter = 0
    s._pending_uncancellations = 0
    return s  # type: ignore[no-any-return]


def _check_fast_body_scope() -> bool:
    """Whether `_fast_body_scope` builds what anyio's constructor does (this anyio)."""
    try:
        ref_, fast = _BodyScope(), _fast_body_scope()
        names = _slots(_BodyScope)
        return all(n == "core" or getattr(ref_, n) == getattr(fast, n) for n in names) and all(
            hasattr(ref_, n) == hasattr(fast, n) for n in names
        )
    except Exception:  # pragma: no cover - anyio changed
        return False


_INF = float("inf")

# Python 3.12: an eager task (``asyncio.eager_task_factory``) runs its first step
# inside ``create_task``, in its spawner's step. If it fails there, the group's abort
# cancels the owner's body scope while the owner is mid-step but not the current
# task, so anyio delivers a ``Task.cancel()`` to it at once; the body may then end
# without another await, and the scope's exit ``uncancel()``s -- which on 3.12 leaves
# the pending cancellation set (3.13 clears it), a stray CancelledError after the
# block. So an abort during a spawn cancels the body a loop step later, as anyio does
# for an owner that is the running task. (Only 3.12 has eager tasks and that uncancel.)
_DEFER_IN_SPAWN = sys.version_info[:2] == (3, 12)
_new_scope: Any = object.__new__
_new_body_scope: Callable[[], _BodyScope] = (
    _fast_body_scope if _check_fast_body_scope() else _BodyScope
)


class AsyncioCore:
    """asyncio.TaskGroup's design, with anyio-compatible cancellation (module docstring)."""

    __slots__ = (
        "_aborted",
        "_cscope",
        "_dead",
        "_enrol",
        "_group",
        "_in_body",
        "_live",
        "_loop",
        "_owner",
        "_scope",
        "_spawning",
        "_waiter",
    )

    def __init__(self, group: _GroupLike, loop: asyncio.AbstractEventLoop) -> None:
        self._group = group
        self._loop = loop
        self._live: set[_HandleLike] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._aborted = False
        self._in_body = False
        self._cscope: _AsyncioScope | None = None  # the children's scope (first spawn)
        self._dead: _AsyncioScope | None = None  # cancelled, for children cancelled alone
        self._owner = 0  # id of the owner task, once the children's scope is made
        self._enrol = False  # register each child with anyio at spawn (see enter)
        self._spawning = 0  # create_task calls under way (3.12, see _DEFER_IN_SPAWN)
        scope = self._scope = _new_body_scope()  # the owner's body
        scope.core = self

    async def enter(self) -> None:
        self.enter_now()

    def enter_now(self) -> None:
        """`enter`, which awaits nothing on asyncio: `Group` calls it directly."""
        scope = self._scope
        # anyio's own __enter__, not asyncgo's wrapper (`watch_anyio_scopes`): that one
        # forgets the host task's clean-scope memo if it remembers this scope, which
        # a scope never entered before cannot be.
        _raw_enter(scope)
        self._in_body = True
        # Inside an anyio scope, the children are registered with anyio at spawn, so
        # that its cancellation and deadline reach them directly (trio's rule). With
        # no anyio scope around the block nothing can: registering a task costs about
        # 1 us (2 us with 100 000 of them alive), so they are registered only when
        # the group is cancelled -- the same outcome.
        self._enrol = scope._parent_scope is not None

    def spawn(
        self, h: _HandleLike, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> bool:
        self._live.add(h)  # before create_task: an eager task factory may finish it inside
        coro = self._run(h, fn, args)
        try:
            if _DEFER_IN_SPAWN:
                self._spawning += 1
                try:
                    task = self._loop.create_task(coro)
                finally:
                    self._spawning -= 1
            else:
                task = self._loop.create_task(coro)
        except BaseException:  # e.g. a task factory that raises: no child was started
            coro.close()  # (finishes it if an eager factory had started it)
            self._live.discard(h)  # or exit() would wait for it forever
            raise
        if not task.done():  # (an eager task factory may have run it to the end)
            h._task = task
            if self._enrol or self._aborted:
                self._register(task)
        return True

    def _register(self, task: asyncio.Task[Any]) -> None:
        """anyio's registration of a task-group child: in the children's scope."""
        cs = self._cscope or self._children_scope()
        # In one dict operation: a WeakKeyDictionary's own methods cost twice as much.
        st = _TaskState(self._owner, cs)
        if _states_setdefault(_ref(task, _states_remove), st) is st:
            cs._tasks.add(task)
        else:  # an eager task factory has run it into a scope of its own
            _adopt(task, cs, None)
        if cs._cancel_handle is None:
            # A child started after a cancellation is cancelled once it starts, like in
            # a trio nursery, but anyio's delivery loop stops once everything it
            # reached has ended: restart it -- ours after an abort, else that of the
            # nearest cancelled scope around the block, if no shield is in between.
            if self._aborted:
                cs._deliver_cancellation(cs)
            else:
                cs._restart_cancellation_in_parent()

    def _enrol_all(self) -> None:
        """Register the live children now: a scope around the block appeared (`_adopt`
        put the owner's body scope under the scope of another group's children)."""
        if not self._enrol:
            self._enrol = True
            for h in list(self._live):
                t = h._task
                if t is not None and not t.done():
                    self._register(t)

    async def _run(
        self, h: _HandleLike, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None:
        value: Any = _NOTHING
        try:
            value = fn(*args)
            value = await value
        except CancelledError:
            h._state = CANCELLED
            self._group._cut = True
            raise
        except GeneratorExit:  # the coroutine is being closed (loop shutdown): not an error
            h._state = CANCELLED
            raise
        except BaseException as exc:
            if type(exc) is TypeError and value is not _NOTHING and not hasattr(value, "__await__"):
                exc = _not_awaitable(fn, value)
            h._value = exc
            h._tb = exc.__traceback__  # (re-raised with it alone: see TaskHandle.result)
            h._state = FAILED
            self._group._fail(exc)
        else:
            h._value = value
            h._state = OK
        finally:
            live = self._live
            live.discard(h)
            if h._waiters is not None:
                h._wake()
            if self._group._limit is not None:
                self._group._release()
            cs = self._cscope
            if cs is not None and h._task is not None:
                # A done task left in an anyio scope would make older anyio retry forever.
                # (It ends in the scope it was put in: any scope it entered is exited.)
                # No local names the task: the frame is in its exception's traceback.
                cs._tasks.discard(h._task)
                if self._dead is not None:
                    self._dead._tasks.discard(h._task)
            h._task = None  # a finished task holds its frames (and its cancellation's)
            if not live:
                w = self._waiter
                if w is not None and not w.done():
                    w.set_result(None)

    def abort(self) -> None:
        if self._aborted:
            return
        self._aborted = True
        live = self._live
        cs = self._cscope
        if cs is None and live:
            cs = self._children_scope()
        if cs is not None:
            cs.cancel()  # never entered: this only marks it (no host task to deliver to)
        if self._in_body:
            if self._spawning:  # (3.12: a child failed in its eager first step)
                self._loop.call_soon(self._cancel_body)
            else:
                self._scope.cancel()  # anyio defers it if the owner is the running task
        if cs is not None and live:
            if not self._enrol:  # registered only now (see enter)
                for h in list(live):
                    t = h._task
                    if t is not None and not t.done():
                        _adopt(t, cs, None)
            if cs._cancel_handle is None:  # (a nested group's registration may have)
                cs._deliver_cancellation(cs)

    def _cancel_body(self) -> None:
        if self._in_body:
            self._scope.cancel()

    def _children_scope(self) -> _AsyncioScope:
        """The scope the children run in: a child of the owner's body scope."""
        cs = self._cscope
        if cs is None:
            cs = self._cscope = _AsyncioScope()
            parent = self._scope
            self._owner = id(parent._host_task)  # anyio's TaskState.parent_id
            cs._parent_scope = parent
            parent._child_scopes.add(cs)
            if self._aborted:
                cs.cancel()
        return cs

    def cancel_task(self, task: asyncio.Task[Any]) -> None:
        """Cancel one child as a cancel scope of its own would (singleflight's ``_stop``).

        It is moved under a cancelled scope of the group's, which delivers the
        cancellation: once the task has started, and never into a shielded scope.
        """
        cs = self._children_scope()
        dead = self._dead
        if dead is None:
            dead = self._dead = _AsyncioScope()
            dead._parent_scope = cs
            cs._child_scopes.add(dead)
            dead.cancel()  # never entered: this only marks it
        _adopt(task, dead, cs if self._enrol or self._aborted else None)
        if dead._cancel_handle is None:  # anyio's delivery loop has stopped: restart it
            dead._deliver_cancellation(dead)

    def exit_now(self) -> bool:
        """``exit(None)`` when it would await nothing (no child left, none cut short):
        True if done, else call `exit`. `Group` calls it directly."""
        if self._live or self._group._cut:
            return False
        self._in_body = False
        scope = self._scope
        try:
            scope.__exit__(None, None, None)
        finally:
            scope.core = None
        return True

    async def exit(self, exc: BaseException | None) -> BaseException | None:
        self._in_body = False
        group = self._group
        cancel_exc: BaseException | None = None
        if exc is not None:
            if isinstance(exc, CancelledError):
                cancel_exc = exc
                self.abort()
            else:
                group._fail(exc)
        if self._live:
            shield: _AsyncioScope | None = None
            try:
                while self._live:
                    fut = self._waiter = self._loop.create_future()
                    try:
                        await fut
                    except CancelledError as e:
                        if shield is None:
                            # Like anyio's task group: once cancelled, shield the wait, or a
                            # cancelled enclosing scope would wake us on every loop
                            # iteration until the children end. Entered only now: a scope
                            # costs as much as spawning a task.
                            shield = _AsyncioScope(shield=True)
                            shield.__enter__()
                        self.abort()
                        # A native Task.cancel() wins over a cancel scope's (anyio's rule).
                        if cancel_exc is None or (
                            _is_anyio_cancel(cancel_exc) and not _is_anyio_cancel(e)
                        ):
                            cancel_exc = e
                    finally:
                        self._waiter = None
            finally:
                if shield is not None:
                    shield.__exit__(None, None, None)
        if cancel_exc is None and group._cut:
            # A child was cancelled, maybe by a scope enclosing the block while the
            # body was shielded: then, as a trio nursery re-raises its children's
            # Cancelled, the exit is where the owner's cancellation lands.
            try:
                await checkpoint_if_cancelled()
            except CancelledError as e:
                cancel_exc = e
        scope = self._scope
        if cancel_exc is not None:
            # Our scope takes back its own cancellation (and its Task.cancel() counts);
            # anything else -- an enclosing scope, a native cancel -- propagates.
            try:
                if scope.__exit__(type(cancel_exc), cancel_exc, cancel_exc.__traceback__):
                    return None
                return cancel_exc
            finally:
                scope.core = None
                cancel_exc = exc = None  # this frame is in its traceback
        try:
            scope.__exit__(None, None, None)
        finally:
            scope.core = None
        return None


# -- trio -----------------------------------------------------------------------------------


def _task_name(fn: object) -> str:
    """trio's default task name for *fn* (``module.qualname``), computed once per function."""
    while hasattr(fn, "func") and hasattr(fn, "args"):  # functools.partial
        fn = fn.func
    try:
        return f"{fn.__module__}.{fn.__qualname__}"  # type: ignore[attr-defined]
    except AttributeError:
        return repr(fn)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(_leaves(e))
        return out
    return [exc]


_trio: Any = None  # the trio module, once a TrioCore was made


class TrioCore:
    """A trio nursery, with the children's outcomes caught before it sees them."""

    __slots__ = ("_cm", "_group", "_last_fn", "_last_name", "_nursery", "_trio")

    def __init__(self, group: _GroupLike) -> None:
        global _trio
        trio = _trio
        if trio is None:  # (an import statement costs a lookup in sys.modules each time)
            import trio as trio_

            trio = _trio = trio_
        self._trio = trio
        self._group = group
        self._last_fn: object = None
        self._last_name = ""

    async def enter(self) -> None:
        cm = self._cm = self._trio.open_nursery()
        self._nursery: trio.Nursery = await cm.__aenter__()

    def spawn(
        self, h: _HandleLike, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> bool:
        # Name the task after fn, not after our wrapper (trio would format it every time).
        if fn is self._last_fn:
            name = self._last_name
        else:
            name = self._last_name = _task_name(fn)
            self._last_fn = fn
        try:
            self._nursery.start_soon(self._run, h, fn, args, name=name)
        except RuntimeError:  # "Nursery is closed to new arrivals"
            return False
        return True

    async def _run(
        self, h: _HandleLike, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None:
        value: Any = _NOTHING
        try:
            value = fn(*args)
            value = await value
        except self._trio.Cancelled:
            h._state = CANCELLED
            self._group._cut = True
            raise
        except GeneratorExit:
            h._state = CANCELLED
            raise
        except BaseException as exc:
            if type(exc) is TypeError and value is not _NOTHING and not hasattr(value, "__await__"):
                exc = _not_awaitable(fn, value)
            h._value = exc
            h._tb = exc.__traceback__  # (re-raised with it alone: see TaskHandle.result)
            h._state = FAILED
            self._group._fail(exc)
        else:
            h._value = value
            h._state = OK
        finally:
            if h._waiters is not None:
                h._wake()
            if self._group._limit is not None:
                self._group._release()

    def abort(self) -> None:
        self._nursery.cancel_scope.cancel()

    async def exit(self, exc: BaseException | None) -> BaseException | None:
        group = self._group
        trio = self._trio
        cancelled: BaseException | None = None
        if exc is not None:
            if isinstance(exc, trio.Cancelled):
                cancelled = exc  # trio must route it: it may be ours or an enclosing scope's
            else:
                group._fail(exc)  # kept away from the nursery, which would wrap it
        try:
            swallowed = await self._cm.__aexit__(
                None if cancelled is None else type(cancelled),
                cancelled,
                None if cancelled is None else cancelled.__traceback__,
            )
        except BaseException as raised:
            # Only cancellations reach the nursery from the children; the owner may add
            # what trio raised into it while waiting (KeyboardInterrupt). Unwrap.
            cancel_exc: BaseException | None = None
            for leaf in _leaves(raised):
                if isinstance(leaf, trio.Cancelled):
                    if cancel_exc is None:
                        cancel_exc = leaf
                else:
                    group._fail(leaf)
            return cancel_exc
        return None if swallowed else cancelled


def spawn_detached(
    rt: object, fn: Callable[..., Awaitable[object]], args: tuple[object, ...], name: str
) -> Any:
    """Start ``fn(*args)`` in a task of no task group, in a copy of the caller's context.

    Its supervisor is the calling code, not a task group: `singleflight.Group` used
    without ``async with`` (Go's zero value), whose last caller to leave cancels the
    call and waits for its end. asyncio: a plain task, returned (keep it: the loop
    holds its tasks weakly); trio: a system task (None is returned), which must end
    by returning or by a cancellation -- anything else would crash the run.
    """
    ctx = contextvars.copy_context()
    if rt is TRIO:
        import trio

        trio.lowlevel.spawn_system_task(fn, *args, name=name, context=ctx)
        return None
    return rt.create_task(fn(*args), name=name, context=ctx)  # type: ignore[attr-defined]

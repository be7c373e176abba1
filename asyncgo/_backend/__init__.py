"""The only place that knows which event loop runs us.

Everything above this package writes ``from ._backend import ...``; the names
here are the whole interface between asyncgo and anyio / asyncio / trio:

* `new_parker(rt)` / `park_runtime(holder)` / `rescue` / `abandon`: a parked task
  that can be claimed exactly once (Go's ``sudog`` + ``selectDone``): an asyncio
  Future, or a future-like `TrioWaiter`; ``r = await parker`` parks, ``set_result``
  claims and wakes it (check ``done()`` first: a claimed or cancelled parker is done).
* `must_checkpoint()`: the fast-path question "may this operation complete
  without a scheduler round trip?" -- False unless a cancellation is pending or
  the anti-starvation budget is spent.
* `checkpoint()`: a real schedule point, raising the backend's cancellation.
* `loop_token()`: identifies the running event loop (to reject cross-loop use).
* `sleep()`: anyio's, cheaper under trio;
* a few anyio re-exports for the modules that need tasks, time or threads.

Parking uses the backends' low-level primitives directly (an asyncio future,
``trio.lowlevel.wait_task_rescheduled``) because anyio's `Event` costs several
allocations and a scheduler round trip more than a channel operation should.
"""

from __future__ import annotations

import functools
from asyncio import CancelledError as AsyncioCancelled
from asyncio import _get_running_loop
from asyncio import sleep as _asyncio_sleep
from collections.abc import Callable, Coroutine
from threading import get_ident as _get_ident
from typing import TYPE_CHECKING, Any, cast
from weakref import WeakSet
from weakref import ref as _ref

import anyio
import anyio.lowlevel
from anyio import (
    CancelScope,
    create_task_group,
    current_effective_deadline,
    current_time,
    get_cancelled_exc_class,
    sleep_forever,
    to_thread,
)
from anyio.abc import TaskGroup

from . import _asyncio, _diag, _timers
from ._asyncio import anyio_states_get as _anyio_states_get
from ._asyncio import checkpoint as _asyncio_yield
from ._asyncio import current_tasks_get as _current_tasks_get
from ._timers import _MS_LOOPS

if TYPE_CHECKING:
    from ._timers import TrioRuntime

#: The running asyncio loop, or None (a system call on Python 3.11: use sparingly).
running_loop = _get_running_loop

#: One bare yield to the asyncio loop (``asyncio.sleep(0)``), for code that knows
#: it runs under asyncio: the channels' fairness yield.
asyncio_yield = _asyncio_yield

#: ``{loop: running task}.get``: the current asyncio task of a loop (None under trio).
current_tasks_get = _current_tasks_get

__all__ = [
    "AsyncioCancelled",
    "retire_last_process_worker",
    "BUDGET",
    "FAST",
    "FastCheck",
    "_diag",
    "CancelScope",
    "TaskGroup",
    "anyio",
    "asyncio_yield",
    "checkpoint",
    "create_task_group",
    "current_effective_deadline",
    "current_time",
    "get_cancelled_exc_class",
    "loop_token",
    "check_slow",
    "current_tasks_get",
    "must_checkpoint",
    "cancel_pending",
    "cancel_due",
    "new_parker",
    "parker_for",
    "park_runtime",
    "NOT_CLAIMED",
    "TASK_STATES",
    "abandon",
    "fail_parker",
    "forget_clean",
    "task_cancelled",
    "thread_id",
    "rescue",
    "running_loop",
    "runtime",
    "TRIO",
    "sleep",
    "sleep_forever",
    "to_thread",
]

#: How many operations may complete on the fast path, back to back, before one
#: of them yields to the scheduler anyway. Bounds how long a tight producer or
#: consumer loop can keep other tasks from running (test_chan.py::test_no_starvation).
BUDGET = 256

_trio_impl: Any = None  # the asyncgo._backend._trio module, imported on first use


def _trio_mod() -> Any:
    global _trio_impl
    if _trio_impl is None:
        import importlib

        _trio_impl = importlib.import_module(__name__ + "._trio")
    return _trio_impl


def sleep(seconds: float) -> Coroutine[Any, Any, None]:
    """``anyio.sleep(seconds)``; under trio, on the run's timer heap when *seconds* > 0.

    trio's own sleep raises and catches a ``Cancelled`` in the sleeping task when
    its deadline passes (15-25 us of CPU time); `TrioRuntime.sleep` parks the task
    and reschedules it from a timer, a fraction of that. Same checkpoint, same
    clock (a ``MockClock`` included). (A plain function returning the coroutine to
    await: one coroutine layer less per sleep.)
    """
    loop = _get_running_loop()
    if loop is not None:
        if _current_tasks_get(loop) is not None:
            ms_loop = _MS_LOOPS.get(type(loop))
            if ms_loop is None:
                ms_loop = _timers.ms_loop(loop)
            if ms_loop and 0 < seconds < 1e9:
                # uvloop rounds the delay to a millisecond and ends the sleep at that
                # tick of its clock, which reads T / 1000: a tick that can read below
                # now + seconds in floats (65911.865 + 0.001 == 65911.86600000001; and
                # half a millisecond short for a delay that rounds down), so a task
                # would wake before a timer or deadline due then, and measure a sleep
                # shorter than asked. The next tick is the first that reaches it.
                now = loop.time()
                ms = round(seconds * 1000.0)
                if (round(now * 1000.0) + ms) / 1000.0 < now + seconds:
                    seconds = (ms + 1) / 1000.0
            return _asyncio_sleep(seconds)  # (what anyio.sleep awaits there, two layers down)
        return anyio.sleep(seconds)  # (no asyncio task: trio as a guest of that loop)
    if seconds <= 0:
        return anyio.lowlevel.checkpoint()
    return cast("TrioRuntime", _timers.current_runtime()).sleep(seconds)


def _trio_cancel_pending() -> bool | None:
    if _trio_impl is None:
        return None  # trio never ran here
    return _trio_mod().cancel_pending()  # type: ignore[no-any-return]


#: ``ch._rt`` value of a channel last used under trio.
TRIO: object = type("TrioRuntime", (), {"__repr__": lambda self: "<trio>"})()


#: Loop classes that record the thread running them in ``_thread_id`` (asyncio's
#: own; not uvloop's), learnt by `runtime`: `parker_for` trusts such a hint
#: without a ``getattr`` that would raise and catch AttributeError on the others.
_THREAD_ID_LOOPS: set[type] = set()

#: ``{task: thread id}`` for loops that do not record their thread (uvloop): tasks an
#: exact check found running in that thread. `parker_for` trusts a hint whose loop's
#: current task is one of them, seen from the same thread: a loop runs one task at a
#: time, and that task is the caller's only if the caller runs in its thread. (A loop
#: that moves to another thread runs its new tasks there, never found here; only a
#: task that outlives such a move could mislead it, and the await of a future of the
#: wrong loop then raises RuntimeError.) Bounded: cleared when full.
_RUNNING_IN: dict[object, int] = {}
_RUNNING_IN_MAX = 256


def _found_running(loop: object) -> None:
    """Record the current task of *loop*, just found running in this thread."""
    if type(loop) not in _THREAD_ID_LOOPS:
        task = _current_tasks_get(loop)
        if task is not None:
            if len(_RUNNING_IN) >= _RUNNING_IN_MAX:
                _RUNNING_IN.clear()
            _RUNNING_IN[task] = _get_ident()


def runtime() -> object:
    """The running asyncio loop, or `TRIO` (slow: use a cached hint where possible)."""
    loop = _get_running_loop()
    if loop is not None:
        if type(loop) in _THREAD_ID_LOOPS:
            return loop
        if isinstance(getattr(loop, "_thread_id", None), int):
            _THREAD_ID_LOOPS.add(type(loop))
        else:
            _found_running(loop)
        return loop
    global _trio_cancel_pending
    mod = _trio_mod()
    mod.loop_token()  # raises a clear RuntimeError outside any event loop
    _trio_cancel_pending = FAST.trio = mod.cancel_pending
    return TRIO


def park_runtime(holder: Any) -> object:
    """The validated runtime for parking: ``holder._rt`` checked against the running loop.

    The fast path trusts the hint when its asyncio loop is running a task, which
    is also true when that loop runs in *another* thread; parking must not
    trust it (it would build a future on the other loop): it checks the
    thread (as `parker_for` does), else pays for the exact check.
    """
    rt = holder._rt
    if type(rt) in _THREAD_ID_LOOPS:
        if rt._thread_id == _get_ident():
            return rt
    elif _RUNNING_IN.get(_current_tasks_get(rt)) == _get_ident():
        return rt  # (see _RUNNING_IN)
    loop = _get_running_loop()
    if rt is loop and rt is not None:
        _found_running(loop)
        return rt
    if rt is TRIO and loop is None:
        return rt
    rt = holder._rt = runtime()
    return rt


def new_parker(rt: object) -> Any:
    """A future-like parker for the current task (the channels' waiter).

    On asyncio it *is* an asyncio Future (no wrapper object on the hot path); on
    trio a `TrioWaiter`. Both offer ``done()`` (claimed or cancelled),
    ``set_result(r)`` (claim and wake with *r*; check ``done()`` first),
    ``get_loop()``, and ``r = await parker``. After an exception interrupts the
    await, `rescue` tells whether it had been claimed first.
    """
    if rt is TRIO:
        return _trio_mod().new_parker()
    return rt.create_future()  # type: ignore[attr-defined]


def parker_for(holder: Any) -> Any:
    """``new_parker(park_runtime(holder))`` in one call: the channels' park path.

    An asyncio loop records the thread running it (``_thread_id``): when that
    is this thread, the hint is the running loop, without asking
    ``_get_running_loop()``, which costs a system call on Python 3.11 (uvloop
    does not expose the attribute: there ``_RUNNING_IN`` records the tasks found
    running in each thread).
    """
    rt = holder._rt
    if type(rt) in _THREAD_ID_LOOPS:
        if rt._thread_id == _get_ident():
            return rt.create_future()
    elif _RUNNING_IN.get(_current_tasks_get(rt)) == _get_ident():
        return rt.create_future()  # (see _RUNNING_IN)
    loop = _get_running_loop()
    if rt is not loop or rt is None:
        if rt is not TRIO or loop is not None:
            rt = holder._rt = runtime()
        if rt is TRIO:
            return _trio_mod().new_parker()
    else:
        _found_running(loop)
    return rt.create_future()


_THREAD_IDS: dict[int, int] = {}


def thread_id() -> int:
    """``threading.get_ident()``, one shared int object per thread.

    For objects that remember the thread of their loop: a fresh int of that
    size costs 32 bytes each (a parked receiver on a channel of its own is
    measured against an ``asyncio.Queue`` getter).
    """
    tid = _get_ident()
    return _THREAD_IDS.setdefault(tid, tid)


#: `rescue` result: the parker had not been claimed.
NOT_CLAIMED: Any = object()


def rescue(parker: Any, exc: BaseException) -> Any:
    """After *exc* interrupted ``await parker``: its result if it had been claimed first.

    Only asyncio can interrupt a claimed parker (``Task.cancel()`` between the
    claim and the task resuming); the operation then counts as completed and the
    cancellation is re-delivered at the task's next checkpoint, as trio does.
    Returns `NOT_CLAIMED` otherwise: the operation did not happen, and the
    parker is made dead so that no one can claim it any more.
    """
    if isinstance(parker, _asyncio.Future):
        task = _asyncio.rescue_future(parker, exc, _redelivered)
        if task is not None:
            # Until the cancellation is re-delivered, the task's fast operations
            # must yield (and so meet it) instead of completing.
            _redelivering.add(task)
            _states[task] = _REDELIVERING
            return parker.result()
    # Not claimed: make sure no one can claim it later. A cancellation has done
    # so already, but another exception (KeyboardInterrupt, GeneratorExit)
    # leaves the parker live in the queues, and an item handed to it would be
    # lost (test_chan_stress.py::test_non_cancel_exception_in_parked_recv_...).
    abandon(parker)
    return NOT_CLAIMED


def fail_parker(parker: Any, exc: BaseException) -> bool:
    """Wake an unclaimed parker's task with *exc* raised where it is parked.

    The operation does not happen: its park code takes *exc* like a
    cancellation (`rescue` returns `NOT_CLAIMED`, the entry leaves its queue)
    and lets it propagate. False if *parker* was claimed or dead already, or is
    not a parker this knows. Deadlock detection's last resort for tasks that
    its cancellation cannot reach (shielded scopes).
    """
    if parker.done():
        return False
    if isinstance(parker, _asyncio.Future):
        parker.set_exception(exc)
        return True
    fail = getattr(parker, "fail", None)
    if fail is None:
        return False
    fail(exc)
    return True


def abandon(parker: Any) -> None:
    """Make an unclaimed parker dead (``done()``) so that no one claims it later."""
    if not parker.done():
        if isinstance(parker, _asyncio.Future):
            parker.cancel()
        else:
            parker.dead = True


def loop_token() -> object:
    """An object identifying the running event loop (trio: the run's token)."""
    loop = _get_running_loop()
    if loop is not None:
        return loop
    return _trio_mod().loop_token()


class FastCheck:
    """What the fast path's cancellation check remembers between operations.

    ``budget`` counts the fast operations left before one must yield
    (`BUDGET`); ``trio()`` tells whether the current trio task has a
    cancellation pending (None when no trio run is current). The anyio state
    of each asyncio task (whose ``cancel_scope`` chain says whether an anyio
    cancellation is pending) is cached in `TASK_STATES`, in a `TaskCheck` that
    also remembers the innermost scope its last walk of that chain found clean.
    `must_checkpoint` is the readable version of the check; the channels
    inline it (``asyncgo/_chan.py``: the hottest code of the library),
    reading `TASK_STATES` and these fields directly and falling back to
    `check_slow` when the current task is not cached.

    The cache is exact, not a heuristic: a hit still reads
    ``task._must_cancel`` (asyncio's own pending cancel) and either walks every
    scope of the chain up to the first shield, as anyio's
    ``checkpoint_if_cancelled`` does, or finds that nothing that could change
    the walk's result has happened since it last found none (the clean-scope
    memo, below). It saves finding the anyio state of the task (a weak
    reference and a dictionary lookup) and, on a memo hit, the walk.
    """

    __slots__ = ("budget", "trio")

    def __init__(self) -> None:
        self.budget = BUDGET
        # trio's pending-cancel test: True / False, or None outside a trio run
        # (then the fast path asks `must_checkpoint`, which finds the runtime).
        self.trio: Any = _trio_cancel_pending


# The tasks checked lately, each with its anyio state (a `TaskCheck`): a task
# finds its state here instead of through anyio's weak dictionary, including
# tasks that take turns (a producer and its consumer, a pool's workers). anyio
# gives a task its state once and never replaces it: before the task first runs,
# or (a plain asyncio task) when it enters its first anyio scope -- until then
# its entry holds a `_LateState` that keeps looking -- so an entry never goes
# stale. Swept of finished tasks whenever it has doubled since the last sweep
# (amortized O(1) per entry): it holds every task that takes turns, however many
# (emptying it when 64 were in, as it did, made 65 producers on one channel miss
# on nearly every send), and keeps about as many finished tasks alive as there
# are live ones. Emptied past `_STATES_MAX`.
_states: dict[Any, Any] = globals().get("_states", {})  # (a reload keeps the one _chan reads)
_STATES_MAX = 1 << 16
_SWEEP_MIN = 64
_sweep_at = _SWEEP_MIN  # the size at which the next sweep runs


def _sweep_states() -> None:
    """Drop the entries of finished tasks; empty the cache past `_STATES_MAX`."""
    global _sweep_at
    for t in [t for t in _states if t.done()]:
        del _states[t]
    n = len(_states)
    if n > _STATES_MAX:
        _states.clear()
        n = 0
    _sweep_at = max(_SWEEP_MIN, 2 * n)


#: ``_states`` for the channels' inlined check: a hit is a task seen lately
#: whose anyio state is known; a miss (None) goes to `check_slow`, which adds it.
TASK_STATES = _states

# -- the clean-scope memo -----------------------------------------------------------
#
# Whether an anyio cancellation is pending for a task is a walk of its cancel
# scopes, innermost out, up to the first shield (anyio's checkpoint_if_cancelled).
# The fast paths run it on every operation that can complete at once, and a task
# has a scope or two (from anyio 4.14, a task group gives each task a scope of its
# own under the group's): the walk was the largest part of a buffered send. Its
# result can change only when
#
# * a scope is cancelled, a shield is lowered, or a scope is moved under another
#   one -- anyio's asyncio ``CancelScope`` does each in one method (``cancel``,
#   which delivers through ``_deliver_cancellation``; the ``shield`` setter;
#   ``_reparent``, anyio >= 4.15; and ``__enter__``, which gives a scope entered a
#   second time a new parent), and asyncgo re-parents in ``_taskgroup._adopt``; or
# * the task enters or leaves a scope, which changes its innermost scope.
#
# So each task's entry remembers the innermost scope its last walk found clean
# (``TaskCheck.clean``), and the fast paths compare it with the task's innermost
# scope now instead of walking: the same scope means nothing changed since a walk
# found no cancellation. `watch_anyio_scopes` wraps those methods to call
# `forget_clean`, which resets every entry (``__enter__`` only the entry of the
# scope's task, if it remembers that scope). tests/test_chan_fastpath.py checks
# that anyio changes those attributes nowhere else. The task's own asyncio
# cancellation (``task._must_cancel``) is still read on every operation.

_UNKNOWN: Any = object()  # TaskCheck.clean: no walk to trust
# Bumped by `forget_clean`: a walk that raced it (a scope cancelled from another
# thread, against anyio's rules) does not keep its result.
_generation = [0]
# True once anyio's scope methods are wrapped; until then no walk is remembered.
_memo_on = False
# False while no entry remembers a walk: `forget_clean` then has nothing to reset
# (anyio delivers a cancellation again on every loop iteration until it lands).
# Set after an entry is written, so a reset never misses one.
_dirty = True


class TaskCheck:
    """A `TASK_STATES` entry: an asyncio task's anyio state and its clean-scope memo.

    ``st`` is anyio's ``TaskState`` of the task (``st.cancel_scope`` is the
    task's innermost anyio scope, None if it has none) or a stand-in with the
    same attribute (`_LateState`, `_Redelivering`). ``clean`` is the innermost
    scope its last walk found uncancelled (None: no scope), or `_UNKNOWN`.
    The fast paths test ``entry.st.cancel_scope is entry.clean`` and call
    `task_cancelled` when that fails.
    """

    __slots__ = ("clean", "st")

    def __init__(self, st: Any) -> None:
        self.st = st
        self.clean: Any = _UNKNOWN


def task_cancelled(entry: TaskCheck) -> bool:
    """True if an anyio scope of the entry's task, up to the first shield, is cancelled.

    The walk that the fast paths skip while the memo holds; a clean result is
    remembered in ``entry.clean`` (when the memo is on).
    """
    gen = _generation[0]
    scope = s = entry.st.cancel_scope
    while s is not None and not s._cancel_called:
        s = None if s._shield else s._parent_scope
    if s is not None:
        return True
    if _memo_on:
        global _dirty
        entry.clean = scope
        _dirty = True
        if gen != _generation[0]:  # forget_clean ran meanwhile (another thread)
            entry.clean = _UNKNOWN
    return False


def forget_clean() -> None:
    """Drop every remembered walk: a scope was cancelled, unshielded or re-parented."""
    global _dirty
    _generation[0] += 1
    if _dirty:
        _dirty = False
        for entry in list(_states.values()):
            entry.clean = _UNKNOWN


def watch_anyio_scopes() -> bool:
    """Make anyio's asyncio ``CancelScope`` tell the memo about every change that
    could make a clean scope chain cancelled (see above); False if it cannot.

    The wrappers are installed once per process and call the hooks of every copy
    of this module that has registered (a second import of asyncgo, a vendored
    copy), so none of them keeps a memo nobody resets; a reload of this module
    keeps its tables. Each wrapped method still does exactly what it did.
    """
    global _memo_on
    try:
        from anyio._backends._asyncio import CancelScope as Scope

        shield = Scope.__dict__["shield"]
        cancel = Scope.cancel
        enter = Scope.__enter__
    except (ImportError, AttributeError, KeyError):  # pragma: no cover - anyio changed
        return False
    hooks: Any = Scope.__dict__.get("_asyncgo_hooks")
    if hooks is None:
        if not isinstance(shield, property) or shield.fset is None:  # pragma: no cover
            return False
        set_shield = shield.fset
        reparent = getattr(Scope, "_reparent", None)  # anyio >= 4.15
        deliver = Scope._deliver_cancellation
        forgets: list[Callable[[], None]] = []  # each copy's forget_clean
        tables: list[tuple[dict[Any, Any], Any]] = []  # each copy's (_states, _UNKNOWN)

        def cancel_(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return cancel(self, *args, **kwargs)
            finally:
                for forget in forgets:
                    forget()

        def deliver_(self: Any, origin: Any, *args: Any) -> Any:
            # A ``cancel`` bound before the wrapping (a callback stored before
            # asyncgo was imported, even in an earlier event loop) skips cancel_
            # but still delivers through here. anyio calls this again for each
            # child scope and on every loop iteration until a cancellation lands:
            # a fired timeout costs ~13 % more for it.
            try:
                return deliver(self, origin, *args)
            finally:
                if origin is self:  # (not for each child scope it recurses into)
                    for forget in forgets:
                        forget()

        def shield_(self: Any, value: bool) -> None:
            try:
                set_shield(self, value)
            finally:
                for forget in forgets:
                    forget()

        def reparent_(self: Any, new_parent: Any) -> Any:
            try:
                return reparent(self, new_parent)  # type: ignore[misc]
            finally:
                for forget in forgets:
                    forget()

        def enter_(self: Any) -> Any:
            scope = enter(self)
            # The scope its task remembers clean: entered before (its walk is
            # stale: a new parent just now). Other tasks can have this scope as
            # their innermost only while it is active (children of a task group,
            # TaskGroup.start), and an active scope cannot be entered again: by
            # then they have ended, so only the host task's entry can be stale.
            host = self._host_task
            for states, unknown in tables:
                entry = states.get(host)
                if entry is not None and entry.clean is self:
                    entry.clean = unknown
            return scope

        for new, old in (
            (cancel_, cancel),
            (deliver_, deliver),
            (shield_, set_shield),
            (enter_, enter),
        ):
            functools.update_wrapper(new, old)
        Scope.cancel = cancel_  # type: ignore[method-assign]
        Scope._deliver_cancellation = deliver_  # type: ignore[method-assign]
        Scope.shield = shield.setter(shield_)  # type: ignore[assignment,method-assign]
        Scope.__enter__ = enter_  # type: ignore[method-assign]
        if reparent is not None:
            functools.update_wrapper(reparent_, reparent)
            Scope._reparent = reparent_  # type: ignore[method-assign]
        hooks = Scope._asyncgo_hooks = (forgets, tables)  # type: ignore[attr-defined]
    hooks[0].append(forget_clean)
    hooks[1].append((_states, _UNKNOWN))
    _memo_on = True
    return True


watch_anyio_scopes()


class _LateState:
    """The state in a `TaskCheck` of an asyncio task that anyio has not given one yet.

    A plain asyncio task (``asyncio.create_task``, ``gather``, a web framework's
    request task) gets anyio state only when it first enters an anyio cancel
    scope, and may do so at any time. Until it has one, no anyio scope can cancel
    it, so ``cancel_scope`` is None; each read looks the state up again (one
    weak-reference lookup, far cheaper than the slow check) and, once anyio has
    made it, puts the real state in this one's place.
    """

    __slots__ = ("key",)

    def __init__(self, task: Any) -> None:
        self.key = _ref(task)

    @property
    def cancel_scope(self) -> Any:
        state = _anyio_states_get(self.key)
        if state is None:
            return None
        task = self.key()
        entry = None if task is None else _states.get(task)
        if entry is not None and entry.st is self:
            entry.st = state
        return state.cancel_scope


class _CancelPending:
    """A stand-in cancel scope that is cancelled: the fast path's check sees a pending
    cancellation, so the operation takes the slow road, which yields."""

    __slots__ = ()
    _cancel_called = True
    _shield = False
    _parent_scope = None


class _Redelivering:
    """The state of the `_states` entry of an asyncio task whose cancellation
    `rescue` deferred."""

    __slots__ = ()
    cancel_scope = _CancelPending()


_REDELIVERING = TaskCheck(_Redelivering())
# Tasks with a deferred cancellation not yet re-delivered (a few at most): check_slow
# consults it when it makes an entry, in case the cache was emptied meanwhile. Weak:
# a loop closed before the re-delivery ran must not keep its task alive here.
_redelivering: WeakSet[Any] = WeakSet()


def _redelivered(task: Any) -> None:
    _redelivering.discard(task)
    if _states.get(task) is _REDELIVERING:
        del _states[task]  # found again by check_slow


#: The one `FastCheck` of the process.
FAST = FastCheck()


def must_checkpoint(holder: Any) -> bool:
    """True when an operation that could complete at once must checkpoint first.

    That is when the current task has a pending cancellation (so a fast
    operation is still a cancel point) or when the budget of back-to-back fast
    operations is spent (so a tight loop cannot starve other tasks).

    *holder* (a channel, lock, ...) caches which runtime it was last used on in
    ``_rt``: finding the running loop costs a system call on Python 3.11, so the
    hint is checked instead -- an asyncio loop is right if it is running a task
    now -- and refreshed when wrong. `park_runtime` re-validates it before
    parking. The common case (an asyncio task whose state is cached) is the
    first branch; the channels inline exactly that branch.
    """
    fc = FAST
    task = _current_tasks_get(holder._rt)
    if task is not None and fc.budget > 0 and not task._must_cancel:
        entry = _states.get(task)
        if entry is not None:
            fc.budget -= 1
            return entry.st.cancel_scope is not entry.clean and task_cancelled(entry)
    return check_slow(holder, task)


def cancel_pending(holder: Any) -> bool:
    """True when the current asyncio task has an anyio cancellation on its way.

    For the park paths, just before they queue a waiter: parking is their cancel
    point, but anyio delivers a scope's cancellation on asyncio one loop step
    after ``cancel()`` (or after entering an already-cancelled scope), so a waiter
    queued meanwhile could be handed a value or a lock first, and its operation
    would complete inside a cancelled scope. Raising it first (``await
    checkpoint()``) is what trio does by itself: a wait in a cancelled scope is
    aborted at once (False there). Unlike `must_checkpoint`, the budget is not
    involved: the park yields anyway.
    """
    rt = holder._rt
    task = _current_tasks_get(rt)
    if task is None:
        if rt is TRIO and _trio_cancel_pending() is not None:
            return False  # trio aborts a wait in a cancelled scope itself
        rt = park_runtime(holder)  # the hint was unset or stale: refresh it
        task = None if rt is TRIO else _current_tasks_get(rt)
        if task is None:
            return False
    entry = _states.get(task)
    if entry is None:
        # (Not must_checkpoint: a spent budget would yield here, before the park,
        # where a cancellation could cut a select on a ctx's done() that has just
        # been closed -- which `Context.scope` promises the select sees as a result.)
        if task._must_cancel:
            return True
        entry = _new_entry(task)
        if entry is None:  # pragma: no cover - anyio changed its internals
            return False
    return entry.st.cancel_scope is not entry.clean and task_cancelled(entry)


def cancel_due(holder: Any) -> bool:
    """True when the current task has a cancellation pending, on any backend.

    For operations that always park right after (so the budget of `must_checkpoint`
    would only add a second yield) but must raise a pending cancellation before
    they change any state: `Cond.wait` does, so that it raises with ``cond.L``
    still held.
    """
    if cancel_pending(holder):
        return True
    rt = holder._rt  # (checked by cancel_pending, refreshed if it was stale)
    if rt is TRIO:
        return bool(_trio_cancel_pending())
    task = _current_tasks_get(rt)  # (cancel_pending sees a native cancel only uncached)
    return task is not None and bool(task._must_cancel)


def check_slow(holder: Any, task: Any) -> bool:
    """`must_checkpoint` when the fast branch does not apply.

    *task* is ``_current_tasks.get(holder._rt)``: None under trio, with a stale
    or unset hint, or outside any task; otherwise a task other than the cached
    one, or one whose budget is spent or with an asyncio cancel pending.
    """
    fc = FAST
    fc.budget -= 1
    if task is None:
        rt = holder._rt
        pending = _trio_cancel_pending() if rt is TRIO else None
        if pending is None:  # not under trio (any more), or the hint is unset or stale
            rt = holder._rt = runtime()
            if rt is TRIO:
                pending = bool(_trio_cancel_pending())
            else:
                task = _current_tasks_get(rt)
                if task is None:
                    return False  # a loop but no task: nothing to cancel
        if task is None:  # trio
            if pending:
                return True
            if fc.budget <= 0:
                fc.budget = BUDGET
                return True
            return False
    if task._must_cancel:
        return True
    if fc.budget <= 0:
        fc.budget = BUDGET
        return True
    entry = _states.get(task)
    if entry is None:
        entry = _new_entry(task)
        if entry is None:  # pragma: no cover - anyio changed its internals
            return False
    return entry.st.cancel_scope is not entry.clean and task_cancelled(entry)


def _new_entry(task: Any) -> TaskCheck | None:
    """Cache and return *task*'s `TaskCheck` (None if anyio's internals moved)."""
    if _anyio_states_get is None:  # pragma: no cover - anyio changed its internals
        return None
    if _redelivering and task in _redelivering:
        entry = _REDELIVERING
    else:
        state = _anyio_states_get(_ref(task))
        if state is None:
            # Not (yet) an anyio task: entering its first anyio cancel scope
            # will give it a state, which the entry looks up until then.
            state = _LateState(task)
        entry = TaskCheck(state)
    if len(_states) >= _sweep_at:
        _sweep_states()
    _states[task] = entry
    return entry


async def checkpoint() -> None:
    """Yield to the scheduler once; raise the backend's cancellation if pending."""
    FAST.budget = BUDGET
    if _get_running_loop() is not None:
        await _asyncio_yield()
    else:
        await _trio_mod().checkpoint()


async def retire_last_process_worker() -> None:
    """Stop the anyio worker process that served the ``to_process`` call that just
    failed (the last one anyio put back among the idle ones), so that no later job is
    given to it: one that failed to load its call may have stopped halfway through
    its input. Done as anyio does for a broken worker: out of its sets, killed, and
    waited for (trio reaps a child only when it is waited for)."""
    try:
        from anyio import to_process

        idle = to_process._process_pool_idle_workers.get()
        workers = to_process._process_pool_workers.get()
    except Exception:  # pragma: no cover - anyio changed its internals
        return
    if not idle:  # pragma: no cover - anyio put it back: it is there
        return
    process, _ = idle.pop()
    workers.discard(process)
    try:
        process.kill()
    except ProcessLookupError:  # pragma: no cover - it had exited
        pass
    with CancelScope(shield=True):
        await process.aclose()

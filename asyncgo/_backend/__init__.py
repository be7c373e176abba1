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
* a few anyio re-exports for the modules that need tasks, time or threads.

Parking uses the backends' low-level primitives directly (an asyncio future,
``trio.lowlevel.wait_task_rescheduled``) because anyio's `Event` costs several
allocations and a scheduler round trip more than a channel operation should.
"""

from __future__ import annotations

from asyncio import _get_running_loop
from typing import Any
from weakref import ref as _ref

import anyio
import anyio.lowlevel
from anyio import (
    CancelScope,
    create_task_group,
    current_time,
    get_cancelled_exc_class,
    sleep,
    sleep_forever,
    to_thread,
)
from anyio.abc import TaskGroup

from . import _asyncio, _diag
from ._asyncio import anyio_states_get as _anyio_states_get
from ._asyncio import current_tasks_get as _current_tasks_get

__all__ = [
    "BUDGET",
    "_diag",
    "CancelScope",
    "TaskGroup",
    "anyio",
    "checkpoint",
    "create_task_group",
    "current_time",
    "get_cancelled_exc_class",
    "loop_token",
    "must_checkpoint",
    "new_parker",
    "park_runtime",
    "NOT_CLAIMED",
    "abandon",
    "rescue",
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

_budget = BUDGET

_trio_impl: Any = None  # the asyncgo._backend._trio module, imported on first use


def _trio_mod() -> Any:
    global _trio_impl
    if _trio_impl is None:
        import importlib

        _trio_impl = importlib.import_module(__name__ + "._trio")
    return _trio_impl


def _trio_cancel_pending() -> bool:
    return _trio_mod().cancel_pending()  # type: ignore[no-any-return]


#: ``ch._rt`` value of a channel last used under trio.
TRIO: object = type("TrioRuntime", (), {"__repr__": lambda self: "<trio>"})()


def runtime() -> object:
    """The running asyncio loop, or `TRIO` (slow: use a cached hint where possible)."""
    loop = _get_running_loop()
    if loop is not None:
        return loop
    global _trio_cancel_pending
    mod = _trio_mod()
    mod.loop_token()  # raises a clear RuntimeError outside any event loop
    _trio_cancel_pending = mod.cancel_pending
    return TRIO


def park_runtime(holder: Any) -> object:
    """The validated runtime for parking: ``holder._rt`` checked against the running loop.

    The fast path trusts the hint when its asyncio loop is running a task, which
    is also true when that loop runs in *another* thread; parking must not
    trust it (it would build a future on the other loop), so it pays for the
    exact check here.
    """
    loop = _get_running_loop()
    rt = holder._rt
    if rt is loop and rt is not None:
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
    if isinstance(parker, _asyncio.Future) and _asyncio.rescue_future(parker, exc):
        return parker.result()
    # Not claimed: make sure no one can claim it later. A cancellation has done
    # so already, but another exception (KeyboardInterrupt, GeneratorExit)
    # leaves the parker live in the queues, and an item handed to it would be
    # lost (test_chan_stress.py::test_non_cancel_exception_in_parked_recv_...).
    abandon(parker)
    return NOT_CLAIMED


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


_last_task: Any = None  # single-entry cache of anyio's TaskState lookup
_last_state: Any = None


def must_checkpoint(holder: Any) -> bool:
    """True when an operation that could complete at once must checkpoint first.

    That is when the current task has a pending cancellation (so a fast
    operation is still a cancel point) or when the budget of back-to-back fast
    operations is spent (so a tight loop cannot starve other tasks).

    *holder* (a channel) caches which runtime it was last used on in ``_rt``:
    finding the running loop costs a system call on Python 3.11, so the hint is
    checked instead -- an asyncio loop is right if it is running a task now --
    and refreshed when wrong. `park_runtime` re-validates it before parking.
    This is the hottest function of the library, hence inlined by hand.
    """
    global _budget, _last_task, _last_state
    _budget -= 1
    rt = holder._rt
    if rt is TRIO:
        try:
            if _trio_cancel_pending():
                return True
        except RuntimeError:  # not under trio any more
            holder._rt = runtime()
            return must_checkpoint(holder)
    else:
        task = _current_tasks_get(rt)
        if task is None:
            holder._rt = runtime()
            if holder._rt is TRIO:
                return must_checkpoint(holder)
            task = _current_tasks_get(holder._rt)
            if task is None:
                return False  # a loop but no task: nothing to cancel
        if task._must_cancel:
            return True
        # anyio's cancel scopes (what anyio.lowlevel.checkpoint_if_cancelled reads)
        if task is _last_task:
            state = _last_state
        else:
            state = _anyio_states_get(_ref(task)) if _anyio_states_get is not None else None
            if state is not None:
                _last_task = task
                _last_state = state
        if state is not None:
            scope = state.cancel_scope
            while scope is not None:
                if scope._cancel_called:
                    return True
                if scope._shield:
                    break
                scope = scope._parent_scope
    if _budget <= 0:
        _budget = BUDGET
        return True
    return False


async def checkpoint() -> None:
    """Yield to the scheduler once; raise the backend's cancellation if pending."""
    global _budget
    _budget = BUDGET
    if _get_running_loop() is not None:
        await _asyncio.checkpoint()
    else:
        await _trio_mod().checkpoint()

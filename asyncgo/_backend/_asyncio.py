"""asyncio (and uvloop) implementation of the park/wake interface."""

from __future__ import annotations

import asyncio
import types
from asyncio import CancelledError, Future, current_task
from collections.abc import Callable, Generator
from typing import Any

try:  # anyio's per-task cancel-scope state, read without a scheduler round trip
    from anyio._backends._asyncio import _task_states

    anyio_states_get: Any = _task_states.data.get  # type: ignore[attr-defined]
except Exception:  # pragma: no cover - anyio changed its internals
    anyio_states_get = None

__all__ = [
    "Future",
    "rescue_future",
    "anyio_states_get",
    "checkpoint",
    "current_tasks_get",
]


def rescue_future(
    fut: Future[Any], exc: BaseException, done: Callable[[asyncio.Task[Any]], None]
) -> asyncio.Task[Any] | None:
    """The current task if *fut* was claimed (result set) before *exc* interrupted its await.

    Claimed first, cancelled after (``Task.cancel()`` between ``set_result`` and
    the task resuming): the operation has completed, so it is reported, and the
    cancellation is delivered again once the task next yields, as trio does.
    Until then the caller must make the task's operations take the slow road
    (which yields): a fast operation would complete under a pending cancel.
    ``done(task)`` is called when the re-delivery has run.
    Not with cancel() now: that sets Task._must_cancel, which
    Task.uncancel() does not clear before Python 3.13, so an
    asyncio.timeout() block ending right after this operation would leak
    the cancellation past its exit (tests/test_chan_stress.py pins it).
    """
    if fut.cancelled() or not fut.done() or not isinstance(exc, CancelledError):
        return None
    task = current_task()
    if task is None:  # pragma: no cover - parked outside a task is impossible
        return None
    fut.get_loop().call_soon(_redeliver_cancel, task, exc.args[:1], done)
    return task


def _redeliver_cancel(
    task: asyncio.Task[Any], args: tuple[object, ...], done: Callable[[asyncio.Task[Any]], None]
) -> None:
    done(task)
    # Still wanted? An asyncio.timeout() that ended meanwhile has uncancelled it.
    # Already on its way? A cancellation requested since (an anyio scope's) is
    # pending: it will be delivered anyway, and its message must stay -- anyio
    # recognises its own cancellations by it, and would let one carrying ours
    # escape its scope. The count still holds ours if it is still wanted.
    if not task.done() and task.cancelling() and not _cancel_pending(task):
        task.uncancel()  # cancel() counts again: keep the count unchanged
        task.cancel(*args)


def _cancel_pending(task: asyncio.Task[Any]) -> bool:
    """Whether a ``CancelledError`` is already on its way to *task*."""
    if getattr(task, "_must_cancel", False):  # cancelled while scheduled to run
        return True
    waiter = getattr(task, "_fut_waiter", None)  # cancelled while waiting
    return waiter is not None and bool(waiter.cancelled())


try:  # asyncio's {loop: running task}; asyncio.current_task() costs a getpid() on 3.11
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    current_tasks_get: Any = _current_tasks.get
except ImportError:  # pragma: no cover - Python >= 3.14 keeps it elsewhere

    def current_tasks_get(loop: object) -> Any:
        if loop is None or loop is not asyncio._get_running_loop():
            return None
        return current_task()


@types.coroutine
def checkpoint() -> Generator[None, None, None]:
    """``asyncio.sleep(0)`` without its coroutine layer: one bare yield to the loop."""
    yield

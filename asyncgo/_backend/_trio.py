"""trio implementation of the park/wake interface (imported only under trio)."""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import trio
from outcome import Error, Value
from trio.lowlevel import (
    Abort,
    Task,
    current_task,
    current_trio_token,
    reschedule,
    wait_task_rescheduled,
)

__all__ = ["TrioWaiter", "cancel_pending", "checkpoint", "loop_token", "new_parker"]


class TrioWaiter:
    """A waiter parked with ``wait_task_rescheduled``.

    trio makes claim and abort mutually exclusive: once rescheduled, the task
    cannot be aborted, and once aborted it is never rescheduled.
    """

    __slots__ = ("dead", "task")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.dead = False

    def _abort(self, raise_cancel: Any) -> Abort:
        self.dead = True
        return Abort.SUCCEEDED

    def done(self) -> bool:
        return self.dead

    def set_result(self, result: object) -> None:
        self.dead = True
        reschedule(self.task, Value(result))

    def fail(self, exc: BaseException) -> None:
        """Wake the task with *exc* raised where it waits (like a claim: check ``done()``)."""
        self.dead = True
        reschedule(self.task, Error(exc))

    def get_loop(self) -> object:
        return current_trio_token()

    def __await__(self) -> Generator[Any, Any, Any]:
        return wait_task_rescheduled(self._abort).__await__()  # noqa: ASYNC105


def new_parker() -> TrioWaiter:
    return TrioWaiter(current_task())


def loop_token() -> object:
    try:
        return current_trio_token()
    except RuntimeError:
        raise RuntimeError(
            "asyncgo: no running event loop (call this from asyncio, uvloop or trio code)"
        ) from None


# The run's thread-local context: ``.task`` is the current task (what current_task() reads).
_RUN: Any
try:
    from trio._core._run_context import GLOBAL_RUN_CONTEXT as _RUN
except ImportError:  # pragma: no cover - trio moved its internals
    _RUN = None


def cancel_pending() -> bool | None:
    """Whether the current task would be cancelled at its next checkpoint; None outside trio.

    Read on every fast channel operation under trio, so it reads trio's state
    directly: the task's cancel status, which trio keeps up to date eagerly.
    """
    try:
        task = _RUN.task
    except AttributeError:
        if _RUN is not None:
            return None  # no trio run in this thread
        try:  # pragma: no cover - trio moved its internals
            task = current_task()
        except RuntimeError:  # pragma: no cover
            return None
    try:
        return task._cancel_status.effectively_cancelled  # type: ignore[no-any-return]
    except AttributeError:  # pragma: no cover - trio changed its internals
        return trio.current_effective_deadline() == -math.inf


checkpoint = trio.lowlevel.checkpoint

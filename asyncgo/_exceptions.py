"""Every exception asyncgo raises.

The hierarchy::

    Exception
    ├── ChanClosed            send on / close of a closed channel; recv on a closed, drained one
    ├── WouldBlock            a *_nowait() call that would have had to wait
    ├── Canceled              ctx.err() after cancel()                    (Go: context.Canceled)
    ├── Deadlock              every task of a detect_deadlocks() scope is asleep
    └── TimeoutError
        └── DeadlineExceeded  ctx.err() after the deadline passed (Go: context.DeadlineExceeded)

The backends' own cancellation exceptions (``asyncio.CancelledError``,
``trio.Cancelled``) are never raised, wrapped or swallowed by asyncgo: they are
how anyio cancels a task, while `Canceled` is a value a context reports.
"""

from __future__ import annotations

__all__ = ["Canceled", "ChanClosed", "DeadlineExceeded", "Deadlock", "WouldBlock"]


class ChanClosed(Exception):
    """The channel is closed.

    Raised by a send on a closed channel (``"send on closed channel"``), by a
    second ``close()`` (``"close of closed channel"``), and by ``recv()`` once the
    channel is closed *and* drained (``"recv on closed channel"``).
    Go: the ``panic`` of a send on a closed channel; ``v, ok := <-ch`` with ``ok == false``.
    """


class WouldBlock(Exception):
    """A ``*_nowait()`` operation could not complete without waiting."""


class Canceled(Exception):
    """The context was cancelled. Go: ``context.Canceled``."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("context canceled",)))


class DeadlineExceeded(TimeoutError):
    """The context's deadline passed. Go: ``context.DeadlineExceeded``.

    A `TimeoutError`, like the exception of ``anyio.fail_after``.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("context deadline exceeded",)))


class Deadlock(Exception):
    """Every task of a deadlock-detection scope is asleep on asyncgo primitives.

    Go: ``fatal error: all goroutines are asleep - deadlock!``. The message
    lists who waits on what.
    """

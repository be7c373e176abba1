"""The backend-neutral waiter interface."""

from __future__ import annotations

from collections.abc import Awaitable

__all__ = ["Waiter"]


class Waiter:
    """A parked task: claimable once, by whoever completes its operation.

    ``index``, ``value`` and ``ok`` carry the outcome to the parked task: the
    case that fired (select), the value received, and False when the channel
    was closed rather than an item delivered. They are set by `wake` and only
    read after a successful park, so they are not initialised.

    Parking protocol (see ``Chan._park_recv``)::

        try:
            await w.park()
        except BaseException as exc:
            if not w.rescue(exc):   # not claimed: the operation did not happen
                forget the queue entry
                raise
        # claimed: w.index / w.value / w.ok hold the outcome
    """

    __slots__ = ("index", "ok", "value")

    index: int
    value: object
    ok: bool

    def alive(self) -> bool:  # pragma: no cover - overridden
        """Whether the waiter is still parked and unclaimed."""
        raise NotImplementedError

    def wake(self, index: int, value: object, ok: bool) -> bool:  # pragma: no cover
        """Claim the waiter and wake it with the outcome; False if it cannot be claimed."""
        raise NotImplementedError

    def park(self) -> Awaitable[object]:  # pragma: no cover - overridden
        """An awaitable that sleeps until claimed, or raises the backend's cancellation."""
        raise NotImplementedError

    def rescue(self, exc: BaseException) -> bool:  # pragma: no cover - overridden
        """After *exc* interrupted `park`: True if the waiter had been claimed first.

        Then the operation completed and the caller must report success; the
        backend re-delivers the cancellation at the task's next checkpoint.
        """
        raise NotImplementedError

    def loop(self) -> object:  # pragma: no cover - overridden
        """The event loop the waiter belongs to."""
        raise NotImplementedError

"""The backend-neutral waiter interface."""

from __future__ import annotations

__all__ = ["Waiter"]


class Waiter:
    """A parked task: claimable once, by whoever completes its operation.

    ``index``, ``value`` and ``ok`` carry the outcome to the parked task: the
    case that fired (select), the value received, and False when the channel
    was closed rather than an item delivered.
    """

    __slots__ = ("index", "ok", "value")

    def __init__(self) -> None:
        self.index = -1
        self.value: object = None
        self.ok = False

    def alive(self) -> bool:  # pragma: no cover - overridden
        """Whether the waiter is still parked and unclaimed."""
        raise NotImplementedError

    def wake(self, index: int, value: object, ok: bool) -> bool:  # pragma: no cover
        """Claim the waiter and wake it with the outcome; False if it cannot be claimed."""
        raise NotImplementedError

    async def park(self) -> None:  # pragma: no cover - overridden
        """Sleep until claimed; raise the backend's cancellation if cancelled first."""
        raise NotImplementedError

    def loop(self) -> object:  # pragma: no cover - overridden
        """The event loop the waiter belongs to."""
        raise NotImplementedError

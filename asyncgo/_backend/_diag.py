"""The diagnostics hook: ``tracer`` is None unless `asyncgo.debug` installs one.

Primitives call ``tracer.created(obj)`` when made, and ``tracer.parked(waiter,
obj, op)`` / ``tracer.unparked(waiter)`` around every park, only when a tracer is
installed; with diagnostics off the cost is one module-attribute read per park
(and per channel creation), nothing on the fast path.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Tracer", "tracer"]


class Tracer(Protocol):
    """What `asyncgo.debug` implements to see primitives and parked tasks."""

    def created(self, obj: object) -> None:
        """A primitive was made (record where)."""

    def parked(self, parker: Any, obj: object, op: str) -> None:
        """The current task parks on *obj* (a primitive, or a tuple of them) doing *op*."""

    def unparked(self, parker: Any) -> None:
        """The task parked with *parker* resumed (claimed, cancelled or failed)."""


tracer: Any = None

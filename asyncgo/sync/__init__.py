"""Go's ``sync`` package (and x/sync/semaphore) for async code.

`Mutex`, `RWMutex`, `WaitGroup`, `Once` / `once_func` / `once_value`, `Cond`,
the weighted `Semaphore` and `Pool`. Every blocking method is a cancel point
and cancellation-safe: a cancelled wait holds nothing and holds up no one.
Waiters are served first come, first served. See docs/sync.md.
"""

from __future__ import annotations

from ._cond import Cond as Cond
from ._mutex import Locker as Locker
from ._mutex import Mutex as Mutex
from ._once import Once as Once
from ._once import once_func as once_func
from ._once import once_value as once_value
from ._pool import Pool as Pool
from ._rwmutex import RWMutex as RWMutex
from ._semaphore import Semaphore as Semaphore
from ._waitgroup import WaitGroup as WaitGroup

__all__ = [
    "Cond",
    "Locker",
    "Mutex",
    "Once",
    "Pool",
    "RWMutex",
    "Semaphore",
    "WaitGroup",
    "once_func",
    "once_value",
]


def _fixup_module_metadata() -> None:
    # Reprs, tracebacks and pickles say asyncgo.sync.Mutex, not asyncgo.sync._mutex.Mutex.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith(__name__ + "."):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover
                pass


_fixup_module_metadata()

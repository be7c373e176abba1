"""asyncgo: Go's concurrency model for async Python, on asyncio, uvloop and trio.

Channels and ``select``, Go's ``context`` on cancel scopes, and ``asyncgo.time``;
see the documentation for the full tour.
"""

from __future__ import annotations

from . import debug as debug
from . import rate as rate
from . import resilience as resilience
from . import singleflight as singleflight
from . import stages as stages
from . import sync as sync
from . import testing as testing
from . import time as time
from ._chan import Chan as Chan
from ._chan import RecvChan as RecvChan
from ._chan import SendChan as SendChan
from ._chan import WrongDirection as WrongDirection
from ._context import Context as Context
from ._context import after_func as after_func
from ._context import background as background
from ._context import current as current
from ._context import with_cancel as with_cancel
from ._context import with_cancel_cause as with_cancel_cause
from ._context import with_deadline as with_deadline
from ._context import with_deadline_cause as with_deadline_cause
from ._context import with_timeout as with_timeout
from ._context import with_timeout_cause as with_timeout_cause
from ._context import with_value as with_value
from ._context import without_cancel as without_cancel
from ._exceptions import Canceled as Canceled
from ._exceptions import ChanClosed as ChanClosed
from ._exceptions import DeadlineExceeded as DeadlineExceeded
from ._exceptions import Deadlock as Deadlock
from ._exceptions import WouldBlock as WouldBlock
from ._group import Group as Group
from ._group import TaskHandle as TaskHandle
from ._pipeline import Pipeline as Pipeline
from ._pipeline import pipeline as pipeline
from ._pool import JobCancelled as JobCancelled
from ._pool import JobHandle as JobHandle
from ._pool import PoolClosed as PoolClosed
from ._pool import PoolStats as PoolStats
from ._pool import WorkerPool as WorkerPool
from ._pubsub import Broadcast as Broadcast
from ._pubsub import Disconnected as Disconnected
from ._pubsub import PubSub as PubSub
from ._pubsub import Subscription as Subscription
from ._select import Case as Case
from ._select import Selected as Selected
from ._select import recv as recv
from ._select import select as select
from ._select import send as send
from ._version import __version__ as __version__
from .resilience import CircuitBreaker as CircuitBreaker
from .resilience import CircuitOpen as CircuitOpen
from .resilience import retry as retry
from .sync import Cond as Cond
from .sync import Mutex as Mutex
from .sync import Once as Once
from .sync import Pool as Pool
from .sync import RWMutex as RWMutex
from .sync import Semaphore as Semaphore
from .sync import WaitGroup as WaitGroup
from .sync import once_func as once_func
from .sync import once_value as once_value

__all__ = [
    "Broadcast",
    "Canceled",
    "Case",
    "Chan",
    "ChanClosed",
    "CircuitBreaker",
    "CircuitOpen",
    "Cond",
    "Context",
    "DeadlineExceeded",
    "Deadlock",
    "Disconnected",
    "Group",
    "JobCancelled",
    "JobHandle",
    "Mutex",
    "Once",
    "Pipeline",
    "Pool",
    "PoolClosed",
    "PoolStats",
    "PubSub",
    "RWMutex",
    "RecvChan",
    "Selected",
    "Semaphore",
    "SendChan",
    "Subscription",
    "TaskHandle",
    "WaitGroup",
    "WorkerPool",
    "WouldBlock",
    "WrongDirection",
    "after_func",
    "background",
    "current",
    "once_func",
    "once_value",
    "pipeline",
    "recv",
    "retry",
    "select",
    "send",
    "with_cancel",
    "with_cancel_cause",
    "with_deadline",
    "with_deadline_cause",
    "with_timeout",
    "with_timeout_cause",
    "with_value",
    "without_cancel",
]


def _fixup_module_metadata() -> None:
    # Tracebacks, reprs and pickles say asyncgo.Chan, not asyncgo._chan.Chan (trio, httpx).
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("asyncgo."):
            own = getattr(obj, "__dict__", {}).get("__annotations__")
            if own and isinstance(obj, type):
                # typing.get_type_hints() looks a class's (string) annotations up in
                # the module that __module__ names: resolve them where they were written.
                import typing

                try:
                    hints = typing.get_type_hints(obj)
                except NameError:  # pragma: no cover - a name only known to type checkers
                    pass
                else:
                    obj.__annotations__ = {k: hints[k] for k in own}
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover
                pass


_fixup_module_metadata()

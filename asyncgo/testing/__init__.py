"""Testing helpers: `no_leaks` (Go's goleak), `detect_deadlocks` and the pytest plugin.

The pytest plugin (``asyncgo.testing.pytest_plugin``, registered as the
``asyncgo`` pytest11 entry point) runs every async test with deadlock
detection, and offers leak checking and a per-test `asyncgo.Context`; see
docs/diagnostics.md.
"""

from __future__ import annotations

from .._exceptions import Deadlock as Deadlock
from ..debug import detect_deadlocks as detect_deadlocks
from ._leaks import TaskLeakError as TaskLeakError
from ._leaks import no_leaks as no_leaks

# detect_deadlocks and Deadlock live in asyncgo.debug and asyncgo; they are here too,
# beside no_leaks, where a test looks for them.
__all__ = ["Deadlock", "TaskLeakError", "detect_deadlocks", "no_leaks"]


def _fixup_module_metadata() -> None:
    # Tracebacks and reprs say asyncgo.testing.no_leaks, not asyncgo.testing._leaks.no_leaks.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith(__name__ + "."):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover
                pass


_fixup_module_metadata()

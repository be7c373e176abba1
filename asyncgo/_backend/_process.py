"""Worker-process calls (``executor="process"``): anyio's ``to_process``, minus a leak.

anyio's ``to_process.run_sync`` re-raises a cancellation that lands while it is
still starting a worker process without killing that process: the worker is left
running, idle and outside anyio's pool, until the program exits (anyio pull
request #1337, open as of anyio 4.16). `run_sync` avoids the window: when no
idle worker is there to take the call, it first has one started under a shield
-- a call of `_ready`, which cannot be cancelled half-way -- so that the job's
own cancellable call finds that worker up and idle. A cancellation during the
start-up then lands once the worker is up (within the 0.1-0.5 s a start takes),
before the job runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_process


def _ready() -> None:
    """The start-up call: runs in the new worker process, does nothing."""


def _idle_worker() -> bool:
    """Whether anyio's pool of this event loop has a live idle worker (or cannot tell)."""
    idle_var: Any = getattr(anyio.to_process, "_process_pool_idle_workers", None)
    if idle_var is None:  # another anyio: take its own way
        return True
    try:
        idle = idle_var.get()
    except LookupError:  # no call yet in this event loop
        return False
    try:
        return any(process.returncode is None for process, _since in idle)
    except (TypeError, ValueError, AttributeError):  # another anyio's layout
        return True


async def run_sync(fn: Callable[..., Any], *args: object, limiter: Any = None) -> Any:
    """``anyio.to_process.run_sync(fn, *args, cancellable=True, limiter=limiter)``:
    a cancellation kills the call's worker, and never leaves one half-started."""
    if not _idle_worker():
        with anyio.CancelScope(shield=True):
            await anyio.to_process.run_sync(_ready, cancellable=False, limiter=limiter)
    return await anyio.to_process.run_sync(fn, *args, cancellable=True, limiter=limiter)

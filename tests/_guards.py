"""Test helpers that bound a test in wall time, whatever its event loop's clock does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio


@contextmanager
def wall_guard(seconds: float) -> Iterator[anyio.CancelScope]:
    """A cancel scope cancelled after *seconds* of wall time (trio): a bound that a
    virtual clock standing still cannot hold off, so a regression fails, not hangs."""
    import trio

    token = trio.lowlevel.current_trio_token()
    with anyio.CancelScope() as scope:
        timer = threading.Timer(seconds, token.run_sync_soon, (scope.cancel,))
        timer.daemon = True
        timer.start()
        try:
            yield scope
        finally:
            timer.cancel()

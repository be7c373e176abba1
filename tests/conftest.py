"""Every async test runs under asyncio, asyncio + uvloop, and trio (anyio's pytest plugin)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

needs_uvloop = pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
)

BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop", marks=needs_uvloop),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]


def live_tasks() -> set[object]:
    """Every task alive in this event loop (anyio's process-pool janitor aside)."""
    try:
        import asyncio

        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        found: set[object] = set()
        stack = [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            if task is None:
                continue
            # (asyncgo's timer task is the run's infrastructure, started and ended
            # lazily: a test that cancels its last timer may end before it exits)
            if "process_pool" not in task.name and task.name != "asyncgo timers":
                found.add(task)
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return found
    return {
        t
        for t in asyncio.all_tasks()
        if "process pool" not in t.get_name()
        # anyio's pytest runner wraps each fixture and test call in a task of its own
        and not getattr(t.get_coro(), "__qualname__", "").startswith("TestRunner.")
    }


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    """Fail the test if it leaves a task running (use with ``pytest.mark.usefixtures``)."""
    before = live_tasks()
    yield
    leaked = live_tasks() - before
    assert not leaked, f"tasks left running: {leaked}"

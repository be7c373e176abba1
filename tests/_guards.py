"""Test helpers: bounds in wall time whatever the event loop's clock does, a call in
another thread, and a race set up inside a checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
import anyio.lowlevel
import pytest

from asyncgo._backend import FAST


@contextmanager
def wall_guard(seconds: float) -> Iterator[anyio.CancelScope]:
    """A cancel scope cancelled after *seconds* of wall time (any backend): a bound
    that a virtual clock standing still cannot hold off, and that is no deadline
    inside a `detect_deadlocks` block, so a regression fails, not hangs."""

    try:
        call_soon = asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # trio
        import trio

        call_soon = trio.lowlevel.current_trio_token().run_sync_soon
    with anyio.CancelScope() as scope:
        timer = threading.Timer(seconds, call_soon, (scope.cancel,))
        timer.daemon = True
        timer.start()
        try:
            yield scope
        finally:
            timer.cancel()


def in_thread(fn: Callable[[], object]) -> BaseException | None:
    """Run *fn* in a new thread (blocking this one); return what it raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    return errors[0] if errors else None


def race_in_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
    module: object,
    action: Callable[[], Awaitable[object] | object],
) -> None:
    """Make the next operation of *module* that could complete at once checkpoint
    first (its budget is spent), and run *action* -- what another task does
    meanwhile -- in that checkpoint.

    Deterministic on every backend (trio runs the tasks of one batch in a random
    order: a real second task might run before or after the yield)."""
    real = module.checkpoint  # type: ignore[attr-defined]

    async def racing_checkpoint() -> None:
        monkeypatch.setattr(module, "checkpoint", real)
        r = action()
        if r is not None:
            await r  # type: ignore[misc]
        await real()

    monkeypatch.setattr(module, "checkpoint", racing_checkpoint)
    FAST.budget = 0


class Turns:
    """How many times another task ran: `count` (see `turns_of_another_task`)."""

    count = 0


@contextlib.asynccontextmanager
async def turns_of_another_task() -> AsyncIterator[Turns]:
    """Run a task that counts its turns (one checkpoint each) while the block runs:
    a tight loop in the block that never yields leaves ``turns.count`` where it was."""
    turns = Turns()

    async def ticker() -> None:
        while True:
            turns.count += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()
        turns.count = 0
        yield turns
        tg.cancel_scope.cancel()


REGISTRATIONS = ["enrolled", "lazy"]


def registration_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """For an autouse fixture parametrized over `REGISTRATIONS`: on asyncio and uvloop a
    `Group` block inside an anyio cancel scope registers its tasks with anyio at spawn
    ("enrolled"); one with no scope around it registers them only when it is cancelled
    ("lazy", `asyncio.run` / `anyio.run` at top level). Whether a test's task has an
    anyio scope around it depends on anyio's runner, so each mode is forced on every
    block of the test. "lazy" is skipped on trio and for tests that run no event
    loop; "enrolled" changes nothing there."""
    mode: str = request.param
    if mode == "lazy":
        if "anyio_backend" not in request.fixturenames:
            pytest.skip("no event loop")
        if request.getfixturevalue("anyio_backend")[0] != "asyncio":
            pytest.skip("the lazy registration is asyncio's")
    from asyncgo._backend import _taskgroup

    enter_now = _taskgroup.AsyncioCore.enter_now  # (Group's; `enter` calls it too)
    enrol = mode == "enrolled"

    def forced_enter_now(self: _taskgroup.AsyncioCore) -> None:
        enter_now(self)
        self._enrol = enrol

    monkeypatch.setattr(_taskgroup.AsyncioCore, "enter_now", forced_enter_now)
    return mode


class LogLocker:
    """A `Locker` that records its calls, around a real `asyncgo.Mutex` (for a Cond's L)."""

    def __init__(self) -> None:
        from asyncgo import Mutex

        self.m = Mutex()
        self.log: list[str] = []

    async def lock(self) -> None:
        await self.m.lock()
        self.log.append("lock")

    def unlock(self) -> None:
        self.log.append("unlock")
        self.m.unlock()


@contextmanager
def eager_tasks(anyio_backend: tuple[str, dict[str, object]]) -> Iterator[None]:
    """Run the block with asyncio's eager task factory (Python 3.12+, asyncio's own
    loop); skip the test elsewhere."""
    if not hasattr(asyncio, "eager_task_factory"):
        pytest.skip("eager tasks need Python 3.12+")
    if anyio_backend[0] != "asyncio" or anyio_backend[1].get("use_uvloop"):
        pytest.skip("asyncio's eager task factory, on asyncio's own loop")
    loop = asyncio.get_running_loop()
    old = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        loop.set_task_factory(old)

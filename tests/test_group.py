"""Group (errgroup): DESIGN.md "Group (errgroup)" and issue #4, on asyncio, uvloop and trio.

Racy states are reached with ``anyio.wait_all_tasks_blocked()``, never with
``sleep()``; nothing here asserts wall-clock time. Every test that cancels
checks that no task of the group is left running afterwards (`Live`).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import sys
import traceback
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from _guards import REGISTRATIONS, eager_tasks, registration_mode

from asyncgo import (
    Canceled,
    DeadlineExceeded,
    WouldBlock,
    background,
    current,
    with_cancel,
    with_cancel_cause,
    with_deadline,
)
from asyncgo._backend import _taskgroup
from asyncgo._group import Group, TaskHandle

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, params=REGISTRATIONS)
def registration(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test in both registration modes of asyncio's task group (see _guards)."""
    return registration_mode(request, monkeypatch)


Cancelled = anyio.get_cancelled_exc_class


class Boom(Exception):
    """A task's error."""


class Live:
    """Counts the tasks running `run` right now (and the most at once)."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.started = 0
        self.cancelled = 0

    async def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        self.now += 1
        self.started += 1
        self.most = max(self.most, self.now)
        try:
            return await fn(*args)
        except Cancelled():
            self.cancelled += 1
            raise
        finally:
            self.now -= 1

    async def forever(self) -> None:
        await self.run(anyio.sleep_forever)


async def fail(exc: BaseException, ev: anyio.Event | None = None) -> None:
    if ev is not None:
        await ev.wait()
    else:
        await anyio.lowlevel.checkpoint()
    raise exc


async def value(x: Any) -> Any:
    await anyio.lowlevel.checkpoint()
    return x


# -- results and handles -----------------------------------------------------------


async def test_results_through_handles() -> None:
    async with Group() as g:
        hs = [await g.go(value, i) for i in range(20)]
        assert await hs[3] == 3
        assert await hs[3].wait() == 3
    assert [h.result() for h in hs] == list(range(20))
    assert all(h.done() and not h.cancelled() and h.exception() is None for h in hs)
    assert g.errors == []


async def test_sync_result_before_first_checkpoint() -> None:
    async def instant() -> str:
        return "now"

    async with Group() as g:
        h = await g.go(instant)
        assert not h.done()
        assert "pending" in repr(h) and "instant" in repr(h)
        with pytest.raises(RuntimeError, match=r"has not finished yet"):
            h.result()
        with pytest.raises(RuntimeError, match=r"has not finished yet"):
            h.exception()
    assert h.result() == "now"
    assert "done" in repr(h)


async def test_handle_cannot_be_built() -> None:
    with pytest.raises(TypeError, match=r"returned by Group.go"):
        TaskHandle()


async def test_await_handle_of_failed_task_raises_same_object() -> None:
    err = Boom("x")
    with pytest.raises(Boom) as info:
        async with Group() as g:
            h = await g.go(fail, err)
            with pytest.raises(Boom) as inner:
                await h
            assert inner.value is err
    assert info.value is err
    assert h.exception() is err
    assert "failed" in repr(h)
    with pytest.raises(Boom):
        h.result()


async def test_cancelled_handle_raises_canceled() -> None:
    live = Live()
    with pytest.raises(Boom):
        async with Group() as g:
            h = await g.go(live.forever)
            await anyio.wait_all_tasks_blocked()
            await g.go(fail, Boom())
    assert h.cancelled() and h.done()
    exc = h.exception()
    assert isinstance(exc, Canceled) and "forever" in str(exc)
    assert h.exception() is exc
    with pytest.raises(Canceled):
        h.result()
    assert "cancelled" in repr(h)
    assert live.now == 0 and live.cancelled == 1


async def test_waiter_cancelled_does_not_cancel_task() -> None:
    ev = anyio.Event()
    async with Group() as g:
        h = await g.go(fail_or_value, ev)
        with anyio.move_on_after(0) as scope:
            await h
        assert scope.cancelled_caught
        assert not h.done()
        ev.set()
        assert await h == "ok"


async def fail_or_value(ev: anyio.Event) -> str:
    await ev.wait()
    return "ok"


async def test_await_done_handle_is_cancel_point() -> None:
    async with Group() as g:
        h = await g.go(value, 1)
        await h
        with anyio.CancelScope() as scope:
            scope.cancel()
            await h
            pytest.fail("not a cancel point")  # pragma: no cover
        assert scope.cancelled_caught


async def test_several_waiters_on_one_handle() -> None:
    ev = anyio.Event()
    got: list[str] = []

    async def waiter(h: TaskHandle[str]) -> None:
        got.append(await h)

    async with Group() as g:
        h = await g.go(fail_or_value, ev)
        for _ in range(3):
            await g.go(waiter, h)
        await anyio.wait_all_tasks_blocked()
        ev.set()
    assert got == ["ok"] * 3


# -- errors ---------------------------------------------------------------------------


async def test_first_error_reraised_as_itself_with_traceback() -> None:
    err = Boom("first")
    live = Live()
    with pytest.raises(Boom) as info:
        async with Group() as g:
            for _ in range(3):
                await g.go(live.forever)
            await anyio.wait_all_tasks_blocked()
            await g.go(fail, err)
    assert info.value is err
    assert not isinstance(info.value, BaseExceptionGroup)
    names = [f.name for f in traceback.extract_tb(err.__traceback__)]
    assert "fail" in names
    assert g.errors == [err]
    assert live.now == 0 and live.cancelled == 3


async def test_a_tasks_error_reraised_by_the_body_is_listed_once() -> None:
    """``await h`` of a failed task raises its error (the same object); the body letting
    it out does not make it a second error: one happened, ``g.errors`` lists one. It
    used to be listed twice (found by a fuzzer)."""
    err = Boom("once")
    with pytest.raises(Boom) as info:
        async with Group() as g:
            h = await g.go(fail, err)
            with anyio.CancelScope(shield=True):  # the body sees the error, not a cancel
                await h
    assert info.value is err
    assert g.errors == [err]


async def test_first_error_cancels_ctx_with_cause() -> None:
    err = Boom()
    seen: list[BaseException | None] = []

    async def watcher() -> None:
        ctx = current()
        await ctx.wait()
        seen.append(ctx.cause())

    with pytest.raises(Boom):
        async with Group() as g:
            with anyio.CancelScope(shield=True):
                await g.go(watcher)  # shielded so that the body keeps going
                await anyio.wait_all_tasks_blocked()
                assert g.ctx.err() is None
                await g.go(fail, err)
                await anyio.wait_all_tasks_blocked()
                assert isinstance(g.ctx.err(), Canceled)
                assert g.ctx.cause() is err
    assert seen == [err]


async def test_other_errors_listed_in_order() -> None:
    errs = [Boom(i) for i in range(5)]
    ev = anyio.Event()

    async def fail_even_cancelled(e: Boom) -> None:
        try:
            await ev.wait()
        finally:
            raise e  # noqa: B012 - fails whatever happens, cancellation included

    with pytest.raises(Boom) as info:
        async with Group() as g:
            for e in errs:
                await g.go(fail_even_cancelled, e)
            await anyio.wait_all_tasks_blocked()
            ev.set()
    assert g.errors[0] is info.value
    assert sorted(g.errors, key=lambda e: e.args[0]) == errs
    assert g.errors is not g.errors  # a copy


async def test_errors_racing_one_wins() -> None:
    ev = anyio.Event()
    errs = [Boom(i) for i in range(10)]
    with pytest.raises(Boom) as info:
        async with Group() as g:
            for e in errs:
                await g.go(fail, e, ev)
            await anyio.wait_all_tasks_blocked()
            ev.set()
    assert info.value in errs
    assert g.errors[0] is info.value
    assert len(set(map(id, g.errors))) == len(g.errors) >= 1


async def test_error_cancels_body() -> None:
    reached = False
    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(fail, Boom())
            await anyio.sleep_forever()
            reached = True  # pragma: no cover
    assert not reached


async def test_error_while_owner_waits_on_exit() -> None:
    ev = anyio.Event()
    live = Live()
    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(live.forever)
            await g.go(fail, Boom(), ev)
            await g.go(set_later, ev)
    assert live.now == 0


async def set_later(ev: anyio.Event) -> None:
    await anyio.wait_all_tasks_blocked()
    ev.set()


async def test_body_error_cancels_tasks_and_is_reraised_as_itself() -> None:
    err = Boom("body")
    live = Live()
    with pytest.raises(Boom) as info:
        async with Group() as g:
            await g.go(live.forever)
            await anyio.wait_all_tasks_blocked()
            raise err
    assert info.value is err
    assert g.errors == [err]
    assert g.ctx.cause() is err
    assert live.now == 0 and live.cancelled == 1


async def test_body_error_keeps_context_chain() -> None:
    try:
        async with Group() as g:
            await g.go(value, 1)
            try:
                raise KeyError("inner")
            except KeyError:
                raise Boom("outer")  # noqa: B904
    except Boom as e:
        assert isinstance(e.__context__, KeyError)


async def test_task_error_keeps_its_context() -> None:
    async def chained() -> None:
        await anyio.lowlevel.checkpoint()
        try:
            raise KeyError("k")
        except KeyError:
            raise Boom("b")  # noqa: B904

    with pytest.raises(Boom) as info:
        async with Group() as g:
            await g.go(chained)
            await anyio.sleep_forever()
    assert isinstance(info.value.__context__, KeyError)


async def test_error_after_body_swallowed_exception_raises_first() -> None:
    first = Boom(1)
    with pytest.raises(Boom) as info:
        async with Group() as g:
            await g.go(fail, first)
            try:
                await anyio.sleep_forever()
            except Cancelled():
                raise Boom(2) from None
    assert info.value is first
    assert g.errors[0] is first and g.errors[1].args == (2,)


# -- BaseException and cancellation pass through -----------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_base_exception_from_task_passes_unwrapped(exc_type: type[BaseException]) -> None:
    live = Live()
    exc = exc_type()
    with pytest.raises(exc_type) as info:
        async with Group() as g:
            await g.go(live.forever)
            await anyio.wait_all_tasks_blocked()
            await g.go(fail, exc)
            await anyio.sleep_forever()
    assert info.value is exc
    assert g.errors == []
    assert live.now == 0


async def test_base_exception_wins_over_error() -> None:
    ev = anyio.Event()
    ki = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as info:
        async with Group() as g:
            await g.go(fail, Boom(), ev)
            await g.go(fail, ki, ev)
            await anyio.wait_all_tasks_blocked()
            ev.set()
    assert info.value is ki


async def test_base_exception_from_body_passes_unwrapped() -> None:
    live = Live()
    exc = SystemExit(3)
    with pytest.raises(SystemExit) as info:
        async with Group() as g:
            await g.go(live.forever)
            await anyio.wait_all_tasks_blocked()
            raise exc
    assert info.value is exc
    assert live.now == 0


@pytest.mark.parametrize("where", ["body", "exit", "slot", "handle", "child-group"])
async def test_owner_cancelled_cancels_everything(where: str) -> None:
    live = Live()
    caught: list[BaseException] = []
    with anyio.CancelScope() as outer:
        try:
            async with Group(limit=2 if where == "slot" else None) as g:
                await g.go(live.forever)
                h = await g.go(live.forever)
                if where == "child-group":
                    await g.go(nested_forever, live)
                await anyio.wait_all_tasks_blocked()
                outer.cancel()
                if where == "body":
                    await anyio.sleep_forever()
                elif where == "slot":
                    await g.go(live.forever)  # parks: no slot free
                    pytest.fail("got a slot")  # pragma: no cover
                elif where == "handle":
                    await h
                    pytest.fail("the handle of a task that runs forever")  # pragma: no cover
        except BaseException as e:
            caught.append(e)
            raise
    assert outer.cancelled_caught
    assert len(caught) == 1 and isinstance(caught[0], Cancelled())  # unwrapped
    assert live.now == 0
    assert live.started == (4 if where == "child-group" else 2)
    assert g.errors == []


async def nested_forever(live: Live) -> None:
    async with Group() as inner:
        await inner.go(live.forever)
        await inner.go(live.forever)


async def test_move_on_after_around_group() -> None:
    live = Live()
    with anyio.move_on_after(0.01) as scope:
        async with Group() as g:
            for _ in range(5):
                await g.go(live.forever)
    assert scope.cancelled_caught
    assert live.now == 0 and live.cancelled == 5


async def test_cancelled_before_entering() -> None:
    live = Live()
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with Group() as g:
            assert g.try_go(live.forever)  # sync: starts, cancelled at its first checkpoint
            await g.go(live.forever)  # a cancel point
            pytest.fail("go() is a cancel point")  # pragma: no cover
    assert scope.cancelled_caught
    assert live.now == 0 and live.started == 1


async def test_error_wins_over_owner_cancellation() -> None:
    err = Boom()

    async def fail_on_cancel() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise err

    with anyio.CancelScope() as outer:
        with pytest.raises(Boom) as info:
            async with Group() as g:
                await g.go(fail_on_cancel)
                await anyio.wait_all_tasks_blocked()
                outer.cancel()
                await anyio.sleep_forever()
    assert info.value is err


async def test_native_task_cancel_of_owner(anyio_backend_name: str) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio's Task.cancel()")
    live = Live()
    started = anyio.Event()
    result: list[object] = []

    async def owner() -> None:
        try:
            async with Group() as g:
                await g.go(live.forever)
                started.set()
                await anyio.sleep_forever()
        except BaseException as e:
            result.append(e)
            raise

    task = asyncio.ensure_future(owner())
    await started.wait()
    await anyio.wait_all_tasks_blocked()
    task.cancel("by test")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(result[0], asyncio.CancelledError)
    assert result[0].args == ("by test",)
    assert live.now == 0 and live.cancelled == 1


async def test_uncancel_counts_restored(anyio_backend_name: str) -> None:
    """The group's own cancellation of the owner leaves Task.cancelling() as it found it."""
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio's Task.cancelling()")
    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    for _ in range(3):
        with pytest.raises(Boom):
            async with Group() as g:
                await g.go(fail, Boom())
                await anyio.sleep_forever()
    assert task.cancelling() == before
    # and asyncio.timeout() still works after it
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            async with Group() as g:
                await g.go(anyio.sleep_forever)
    assert task.cancelling() == before


async def test_asyncio_timeout_around_group(anyio_backend_name: str) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio.timeout")
    live = Live()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            async with Group() as g:
                await g.go(live.forever)
                await anyio.sleep_forever()
    assert live.now == 0


async def test_inside_asyncio_taskgroup(anyio_backend_name: str) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio.TaskGroup")
    live = Live()

    async def sibling_fails() -> None:
        await anyio.wait_all_tasks_blocked()
        raise Boom()

    async def with_group() -> None:
        async with Group() as g:
            await g.go(live.forever)
            await anyio.sleep_forever()

    with pytest.raises(BaseExceptionGroup) as info:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(with_group())
            tg.create_task(sibling_fails())
    assert info.group_contains(Boom)
    assert live.now == 0


@pytest.mark.parametrize("limit", [None, 1])
async def test_task_factory_that_raises(anyio_backend_name: str, limit: int | None) -> None:
    """The loop refusing a task (a task factory raising; uvloop with Python 3.13's
    eager_task_factory does) fails that go() with the loop's error. The group must
    not wait for the task that never started, nor keep its limit slot."""
    if anyio_backend_name != "asyncio":
        pytest.skip("task factories are asyncio's (and uvloop's)")
    loop = asyncio.get_running_loop()
    old = loop.get_task_factory()
    refuse = [True]
    made: list[Awaitable[object]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        made.append(coro)
        if refuse[0]:
            raise TypeError("factory refuses")
        return asyncio.Task(coro, loop=loop, **kw)

    ran: list[str] = []

    async def child(tag: str) -> str:
        ran.append(tag)
        return tag

    loop.set_task_factory(factory)
    try:
        with anyio.fail_after(30):  # the bug was a hang: fail instead
            async with Group(limit=limit) as g:
                with pytest.raises(TypeError, match="factory refuses"):
                    g.go_nowait(child, "refused")
                with pytest.raises(TypeError, match="factory refuses"):
                    await g.go(child, "refused too")
                refuse[0] = False
                h = await g.go(child, "accepted")  # limit=1: the slot is free again
            assert await h == "accepted"
    finally:
        loop.set_task_factory(old)
    assert ran == ["accepted"]
    assert len(made) == 3
    assert all(inspect.getcoroutinestate(c) == "CORO_CLOSED" for c in made)  # type: ignore[arg-type]


# -- shields and scopes inside ----------------------------------------------------------


async def test_shielded_cleanup_in_task_not_interrupted() -> None:
    finished = []

    async def cleans_up() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                for _ in range(10):
                    await anyio.lowlevel.checkpoint()
                finished.append("cleanup")

    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(cleans_up)
            await anyio.wait_all_tasks_blocked()
            await g.go(fail, Boom())
    assert finished == ["cleanup"]


async def test_shielded_task_keeps_running_until_shield_ends() -> None:
    ev = anyio.Event()
    order: list[str] = []

    async def shielded() -> None:
        with anyio.CancelScope(shield=True):
            await ev.wait()
            order.append("shield done")
        try:
            await anyio.sleep_forever()
        except Cancelled():
            order.append("cancelled after shield")
            raise

    failed = anyio.Event()

    async def failer() -> None:
        await anyio.wait_all_tasks_blocked()
        order.append("fail")
        failed.set()
        raise Boom()

    async def releaser() -> None:
        with anyio.CancelScope(shield=True):
            await failed.wait()
            await anyio.wait_all_tasks_blocked()
            order.append("release")
            ev.set()

    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(shielded)
            await g.go(failer)
            await g.go(releaser)
    assert order == ["fail", "release", "shield done", "cancelled after shield"]


async def test_shielded_body_not_interrupted_by_group_error() -> None:
    order: list[str] = []
    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(fail, Boom())
            with anyio.CancelScope(shield=True):
                await anyio.wait_all_tasks_blocked()
                order.append("shielded body")
            await anyio.sleep_forever()
    assert order == ["shielded body"]


# -- scopes enclosing the block reach the tasks directly (trio's rule, every backend) --


@pytest.mark.parametrize("own_scope", [False, True])
async def test_enclosing_scope_cancels_tasks_while_the_body_is_shielded(
    own_scope: bool, registration: str
) -> None:
    """A cancelled scope around the block cancels the tasks at once, not through the
    owner: the owner's shielded body sees them end, and the exit raises the
    cancellation (the code after the block inside the scope does not run). A task's
    own scope, not the one cancelled, does not swallow that cancellation."""
    if registration == "lazy":
        pytest.skip("forced lazy registration: no scope around the block in production")
    live = Live()
    ended = anyio.Event()
    reached: list[str] = []

    async def task() -> None:
        try:
            if own_scope:
                with anyio.CancelScope():
                    await live.forever()
                reached.append("past its own scope")  # pragma: no cover
            else:
                await live.forever()
        finally:
            ended.set()

    with anyio.CancelScope() as outer:
        async with Group() as g:
            h = await g.go(task)
            await anyio.wait_all_tasks_blocked()
            outer.cancel()
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(30) as guard:  # before: the task ran on, a hang
                    await ended.wait()
                assert not guard.cancelled_caught
                assert live.now == 0 and live.cancelled == 1
                with pytest.raises(Canceled):  # the waiter is shielded: the task's outcome
                    await h
        reached.append("after the block")  # pragma: no cover
    assert outer.cancelled_caught
    assert reached == []
    assert h.cancelled()


async def test_tasks_see_the_enclosing_deadline(registration: str) -> None:
    """``anyio.current_effective_deadline()`` in a task, in a nested group's task and
    inside a task's own scope is the deadline of the scope around the block."""
    if registration == "lazy":
        pytest.skip("forced lazy registration: no scope around the block in production")
    seen: list[float] = []

    async def task() -> None:
        seen.append(anyio.current_effective_deadline())
        with anyio.CancelScope():
            seen.append(anyio.current_effective_deadline())

    async def nested() -> None:
        async with Group() as inner:
            await inner.go(task)

    with anyio.fail_after(1000) as scope:
        async with Group() as g:
            await g.go(task)
            await g.go(nested)
    assert seen == [scope.deadline] * 4
    seen.clear()
    with anyio.fail_after(1000):
        with anyio.CancelScope(shield=True):  # a shield around the block hides it
            async with Group() as g:
                await g.go(task)
    assert seen == [math.inf, math.inf]


async def test_enclosing_deadline_cancels_a_task_with_a_shielded_body(registration: str) -> None:
    """The deadline of a scope around the block fires while the body is shielded:
    the task is cancelled then, not when the body ends (MockClock-free: the body
    waits for the task's end, with a generous guard)."""
    if registration == "lazy":
        pytest.skip("forced lazy registration: no scope around the block in production")
    live = Live()
    ended = anyio.Event()

    async def task() -> None:
        try:
            await live.forever()
        finally:
            ended.set()

    with anyio.move_on_after(0.01) as outer:
        async with Group() as g:
            await g.go(task)
            with anyio.CancelScope(shield=True), anyio.move_on_after(30) as guard:
                await ended.wait()
            assert not guard.cancelled_caught
    assert outer.cancelled_caught
    assert live.now == 0


def _skip_unless_eager_and_enrolled(
    anyio_backend: tuple[str, dict[str, object]], registration: str
) -> None:
    """The eager-task tests need asyncio's eager task factory on asyncio's own loop,
    with tasks registered at spawn (an anyio scope around the block)."""
    if not hasattr(asyncio, "eager_task_factory"):
        pytest.skip("eager tasks need Python 3.12+")
    if anyio_backend[0] != "asyncio" or anyio_backend[1].get("use_uvloop"):
        pytest.skip("asyncio's eager task factory, on asyncio's own loop")
    if registration == "lazy":
        pytest.skip("forced lazy registration: no scope around the block in production")


async def test_enclosing_scope_reaches_an_eager_task_in_its_own_scope(
    anyio_backend: tuple[str, dict[str, object]], registration: str
) -> None:
    """A task that an eager task factory ran into a scope of its own inside the
    spawn is put under the group's scope as well."""
    _skip_unless_eager_and_enrolled(anyio_backend, registration)
    ended = anyio.Event()
    reached: list[str] = []

    async def task() -> None:
        try:
            with anyio.CancelScope():  # entered eagerly, inside go()
                await anyio.sleep_forever()
            reached.append("past its own scope")
        finally:
            ended.set()

    loop = asyncio.get_running_loop()
    old = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        with anyio.CancelScope() as outer:
            async with Group() as g:
                await g.go(task)
                outer.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(30) as guard:
                    await ended.wait()
                assert not guard.cancelled_caught
    finally:
        loop.set_task_factory(old)
    assert outer.cancelled_caught
    assert reached == []


@pytest.mark.parametrize("how", ["go", "slot"])
async def test_a_task_started_after_the_enclosing_cancellation_is_cancelled(
    how: str, registration: str
) -> None:
    """A task started (from a shielded body) after the scope around the block was
    cancelled is cancelled at its first checkpoint, as in a trio nursery -- also
    when anyio had stopped delivering that cancellation (everything it reached had
    ended), and when the task takes the slot of one the cancellation ended."""
    if registration == "lazy":
        pytest.skip("forced lazy registration: no scope around the block in production")
    live = Live()
    with anyio.CancelScope() as outer:
        async with Group(limit=1 if how == "slot" else None) as g:
            if how == "slot":
                await g.go(live.forever)
                await anyio.wait_all_tasks_blocked()
            with anyio.CancelScope(shield=True), anyio.move_on_after(30) as guard:
                outer.cancel()
                await anyio.wait_all_tasks_blocked()  # anyio's delivery has stopped
                h = await g.go(live.run, anyio.sleep, 20)  # "slot": waits for the first
                with pytest.raises(Canceled):
                    await h
            assert not guard.cancelled_caught
        pytest.fail("the code after the block ran")  # pragma: no cover
    assert outer.cancelled_caught
    assert live.now == 0 and live.cancelled == live.started


async def test_a_nested_group_entered_in_an_eager_first_step_is_enclosed(
    anyio_backend: tuple[str, dict[str, object]], registration: str
) -> None:
    """A Group entered in a task's eager first step (before the outer group has
    registered the task) has no scope around it yet; once the outer group puts the
    task under its own, the inner group's tasks see the enclosing deadline and are
    cancelled by it while the middle body is shielded."""
    _skip_unless_eager_and_enrolled(anyio_backend, registration)
    log: list[str] = []
    leaf_ended = anyio.Event()

    async def leaf() -> None:
        await anyio.lowlevel.checkpoint()  # past its own eager first step
        log.append(f"leaf deadline {anyio.current_effective_deadline()}")
        try:
            await anyio.sleep_forever()
        except Cancelled():
            log.append("leaf cancelled")
            raise
        finally:
            leaf_ended.set()

    async def mid() -> None:
        async with Group() as inner:  # entered eagerly, inside the outer go()
            await inner.go(leaf)
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await leaf_ended.wait()
                log.append("mid shield done")

    loop = asyncio.get_running_loop()
    old = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        with anyio.CancelScope(deadline=anyio.current_time() + 1000) as outer:
            async with Group() as g:
                await g.go(mid)
                await anyio.wait_all_tasks_blocked()
                outer.cancel()
    finally:
        loop.set_task_factory(old)
    assert log == [f"leaf deadline {outer.deadline}", "leaf cancelled", "mid shield done"]


async def test_cancelled_tasks_are_freed_without_the_cycle_collector(
    anyio_backend_name: str,
) -> None:
    """A task that ends by cancellation keeps its exception, whose traceback holds
    the frames it ran: none of the group's frames may name the task, or every
    cancelled task (and its anyio state) lives on until a full garbage collection."""
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio's task objects")
    refs: list[Any] = []

    async def blocked() -> None:
        refs.append(weakref.ref(asyncio.current_task()))  # type: ignore[arg-type]
        await anyio.sleep_forever()

    gc.disable()
    try:
        with pytest.raises(Boom):
            async with Group() as g:
                for _ in range(10):
                    await g.go(blocked)
                await anyio.wait_all_tasks_blocked()
                await g.go(fail, Boom())
        await anyio.lowlevel.checkpoint()  # (the loop drops its last references)
        assert len(refs) == 10
        assert [r for r in refs if r() is not None] == []
    finally:
        gc.enable()


@pytest.mark.parametrize("where", ["group", "stream"])
async def test_an_owner_cancelled_at_exit_leaves_no_cycle(
    anyio_backend_name: str, where: str
) -> None:
    """The frames of a task cancelled while its ``async with Group()`` (or a pipeline's
    ``stream()``) waits at exit are freed by refcounting: no exit frame keeps naming
    the cancellation, whose traceback holds it (a cycle through every frame of the
    task, and their locals, until a full garbage collection)."""
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio's frames")
    import asyncgo._backend as backend
    from asyncgo import pipeline

    class Payload:
        pass

    refs: list[Any] = []

    async def source() -> Any:
        await anyio.sleep_forever()
        yield 1  # pragma: no cover

    async def owner() -> None:
        payload = Payload()
        refs.append(weakref.ref(payload))
        if where == "group":
            async with Group() as g:
                await g.go(anyio.sleep_forever)
        else:
            async with pipeline(source()).stream() as items:
                async for _ in items:  # pragma: no cover
                    pass

    gc.collect()
    gc.disable()
    try:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def run() -> None:
                with scope:
                    await owner()

            tg.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        backend._states.clear()  # (bounded caches of recent tasks, not cycles)
        backend._RUNNING_IN.clear()
        assert refs[0]() is None
    finally:
        gc.enable()


async def test_block_with_no_anyio_scope_around_it(
    anyio_backend_name: str, registration: str
) -> None:
    """In a task that anyio knows nothing of (``asyncio.run``'s main task, a plain
    ``create_task``), no anyio scope encloses the block: the tasks are registered with
    anyio only when the group is cancelled, and that cancellation still waits for a
    task's shield and is not swallowed by a task's own scope."""
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio's tasks (on trio every task is the runner's)")
    order: list[str] = []
    enrolled: list[bool] = []

    async def shielded() -> None:
        with anyio.CancelScope(shield=True):
            await anyio.wait_all_tasks_blocked()
            order.append("shielded work done")
        await anyio.sleep_forever()

    async def own_scope() -> None:
        with anyio.CancelScope():
            await anyio.sleep_forever()
        order.append("past its own scope")  # pragma: no cover

    async def bare() -> None:
        with pytest.raises(Boom):
            async with Group() as g:
                enrolled.append(g._core._enrol)  # type: ignore[union-attr]
                await g.go(shielded)
                await g.go(own_scope)
                await anyio.wait_all_tasks_blocked()
                await g.go(fail, Boom())
                await anyio.sleep_forever()

    with anyio.fail_after(30):
        await asyncio.get_running_loop().create_task(bare())
    assert enrolled == [registration == "enrolled"]  # ("lazy": what such a block gets)
    assert order == ["shielded work done"]


async def test_task_own_timeouts_work() -> None:
    async def with_timeout() -> str:
        with anyio.move_on_after(0):
            await anyio.sleep_forever()
        with anyio.CancelScope() as s:
            s.cancel()
            await anyio.lowlevel.checkpoint()
        return "ok"

    async with Group() as g:
        hs = [await g.go(with_timeout) for _ in range(3)]
    assert [h.result() for h in hs] == ["ok"] * 3


async def test_task_inner_scope_cancelled_same_time_as_group() -> None:
    """A task's own cancelled scope must not swallow the group's cancellation."""
    live = Live()
    ev = anyio.Event()

    async def inner_scope() -> None:
        with anyio.CancelScope() as s:
            await ev.wait()
            s.cancel()
            await live.forever()
        await live.forever()  # reached only if the scope swallowed the group's cancel

    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(inner_scope)
            await g.go(fail, Boom(), ev)
            await anyio.wait_all_tasks_blocked()
            ev.set()
    assert live.now == 0


async def test_task_uses_anyio_task_group() -> None:
    live = Live()

    async def runs_anyio_group() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(live.forever)
            tg.start_soon(live.forever)

    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(runs_anyio_group)
            await anyio.wait_all_tasks_blocked()
            await g.go(fail, Boom())
    assert live.started == 2 and live.now == 0


async def test_task_started_after_abort_runs_to_first_checkpoint() -> None:
    ran: list[str] = []
    late: list[TaskHandle[None]] = []

    async def late_task() -> None:
        ran.append("before checkpoint")
        await anyio.lowlevel.checkpoint()
        ran.append("after checkpoint")  # pragma: no cover

    async def spawns_in_cleanup(g: Group) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            late.append(g.go_nowait(late_task))

    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(spawns_in_cleanup, g)
            await anyio.wait_all_tasks_blocked()
            await g.go(fail, Boom())
    assert ran == ["before checkpoint"]
    assert late[0].cancelled()


async def test_go_is_cancel_point_and_starts_nothing() -> None:
    live = Live()
    async with Group() as g:
        with anyio.CancelScope() as s:
            s.cancel()
            await g.go(live.forever)
            pytest.fail("go() is a cancel point")  # pragma: no cover
    assert live.started == 0


# -- nesting -----------------------------------------------------------------------------


async def test_nested_inner_error_propagates_as_itself() -> None:
    err = Boom("inner")
    live = Live()

    async def inner_group() -> None:
        async with Group() as inner:
            await inner.go(live.forever)
            await inner.go(fail, err)

    with pytest.raises(Boom) as info:
        async with Group() as outer:
            await outer.go(live.forever)
            await outer.go(inner_group)
    assert info.value is err
    assert outer.errors == [err]
    assert live.now == 0 and live.cancelled == 2


async def test_nested_outer_error_cancels_inner_group() -> None:
    err = Boom("outer")
    live = Live()
    inner_errors: list[list[Exception]] = []

    async def inner_group() -> None:
        async with Group() as inner:
            try:
                for _ in range(3):
                    await inner.go(live.forever)
                await anyio.sleep_forever()
            finally:
                inner_errors.append(inner.errors)

    with pytest.raises(Boom) as info:
        async with Group() as outer:
            await outer.go(inner_group)
            await anyio.wait_all_tasks_blocked()
            await outer.go(fail, err)
    assert info.value is err
    assert outer.errors == [err]  # the inner group propagated cancellation, not an error
    assert inner_errors == [[]]
    assert live.now == 0 and live.cancelled == 3


async def test_nested_inner_ctx_is_child_of_outer() -> None:
    parent, cancel = with_cancel(background())
    live = Live()
    inner_ctx: list[Any] = []

    async def inner_group(outer: Group) -> None:
        async with Group() as inner:
            inner_ctx.append(inner.ctx)
            assert inner.ctx is not outer.ctx
            await inner.go(live.forever)
            await anyio.sleep_forever()

    with pytest.raises(Canceled):
        async with Group(parent) as outer:
            await outer.go(inner_group, outer)
            await anyio.wait_all_tasks_blocked()
            cancel()
    assert isinstance(inner_ctx[0].err(), Canceled)
    assert live.now == 0 and live.cancelled == 1


async def test_deep_nesting_no_leak() -> None:
    live = Live()

    async def level(n: int) -> None:
        async with Group() as g:
            await g.go(live.forever)
            if n:
                await g.go(level, n - 1)
            else:
                await g.go(fail, Boom("deep"))

    with pytest.raises(Boom, match="deep"):
        await level(10)
    assert live.started == 11 and live.now == 0


# -- limit -------------------------------------------------------------------------------


async def test_limit_never_exceeded_and_go_waits() -> None:
    live = Live()
    async with Group(limit=3) as g:
        assert g.limit == 3
        hs = [await g.go(live.run, value, i) for i in range(50)]
    assert live.most == 3
    assert [h.result() for h in hs] == list(range(50))


async def test_limit_with_tasks_spawning_tasks() -> None:
    live = Live()

    async def spawner(g: Group, n: int) -> None:
        if n:
            await g.go(live.run, spawner, g, n - 1)

    async with Group(limit=2) as g:
        for _ in range(4):
            await g.go(live.run, value, 0)
        g.try_go(live.run, spawner, g, 5)
    assert live.most <= 2


async def test_try_go_and_go_nowait_when_full() -> None:
    ev = anyio.Event()
    async with Group(limit=1) as g:
        assert g.try_go(ev.wait) is True
        assert g.try_go(ev.wait) is False
        with pytest.raises(WouldBlock, match=r"all 1 slots are taken"):
            g.go_nowait(ev.wait)
        ev.set()
        await anyio.wait_all_tasks_blocked()
        h = g.go_nowait(value, 5)
        assert await h == 5
        assert g.try_go(value, 1) is True


async def test_slot_waiters_served_fifo() -> None:
    order: list[int] = []
    ev = anyio.Event()

    async def waiter(g: Group, i: int) -> None:
        await g.go(record, order, i)

    async with Group(limit=1) as g:
        await g.go(ev.wait)
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(waiter, g, i)
                await anyio.wait_all_tasks_blocked()
            ev.set()
    assert order == [0, 1, 2, 3, 4]


async def record(out: list[int], i: int) -> None:
    out.append(i)


async def test_go_cancelled_waiting_for_slot_starts_nothing() -> None:
    ev = anyio.Event()
    live = Live()
    async with Group(limit=1) as g:
        await g.go(ev.wait)
        with anyio.move_on_after(0) as s:
            await g.go(live.forever)
        assert s.cancelled_caught
        async with anyio.create_task_group() as tg:
            tg.start_soon(g.go, value, 1)  # parks behind the cancelled waiter's old place
            await anyio.wait_all_tasks_blocked()
            ev.set()
    assert live.started == 0


async def test_slot_handed_over_then_cancelled_completes_go(anyio_backend_name: str) -> None:
    """Handed a slot, then cancelled before resuming: go() started its task (not lost)."""
    if anyio_backend_name != "asyncio":
        pytest.skip("only asyncio can interrupt a task that was already woken")
    ev = anyio.Event()
    ran: list[str] = []
    owner = asyncio.current_task()
    assert owner is not None

    async def holder() -> None:
        await ev.wait()  # woken first: frees the slot, handing it to the parked go()

    async def canceller() -> None:
        await ev.wait()  # woken second, same iteration: cancels the owner natively
        owner.cancel()

    async def b() -> None:
        ran.append("b")

    async with anyio.create_task_group() as tg:
        async with Group(limit=1) as g:
            await g.go(holder)
            tg.start_soon(canceller)
            tg.start_soon(set_later, ev)
            try:
                h = await g.go(b)  # parks for the slot
            except asyncio.CancelledError:  # pragma: no cover
                pytest.fail("the slot was lost")
            with pytest.raises(asyncio.CancelledError):
                await anyio.lowlevel.checkpoint()  # the cancellation comes here instead
            owner.uncancel()
    assert h.result() is None and ran == ["b"]


@pytest.mark.parametrize("limit", [0, -1])
async def test_limit_below_one_rejected(limit: int) -> None:
    with pytest.raises(ValueError, match=rf"^Group: limit must be at least 1 \(got {limit}\)"):
        Group(limit=limit)


@pytest.mark.parametrize("limit", ["2", 1.5, True])
async def test_limit_type_checked(limit: Any) -> None:
    with pytest.raises(TypeError, match=r"limit must be an int"):
        Group(limit=limit)


async def test_ctx_type_checked() -> None:
    with pytest.raises(TypeError, match=r"ctx must be an asyncgo Context"):
        Group("ctx")  # type: ignore[arg-type]


# -- misuse -----------------------------------------------------------------------------


async def test_go_after_exit_raises() -> None:
    async with Group() as g:
        pass
    with pytest.raises(RuntimeError, match=r"^Group.go\(\) after the group's async with block"):
        await g.go(value, 1)
    with pytest.raises(RuntimeError, match=r"^Group.try_go\(\) after"):
        g.try_go(value, 1)
    with pytest.raises(RuntimeError, match=r"^Group.go_nowait\(\) after"):
        g.go_nowait(value, 1)
    assert "exited" in repr(g)


async def test_go_with_coroutine_object_is_a_clear_error() -> None:
    async with Group(limit=1) as g:
        coro = value(1)
        with pytest.raises(TypeError, match=r"not g.go\(fetch\(url\)\)"):
            await g.go(coro)  # type: ignore[arg-type]
        assert coro.cr_frame is None  # type: ignore[attr-defined]  # closed: no "never awaited" warning
        with pytest.raises(TypeError, match=r"^Group.try_go\(\) takes an async function, not int"):
            g.try_go(3)  # type: ignore[arg-type]
        assert g.try_go(value, 1)  # the slot was given back


async def test_go_with_sync_function_fails_the_group() -> None:
    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match=r"await"):
        async with Group() as g:
            await g.go(sync)  # type: ignore[arg-type]


async def test_go_before_enter_raises() -> None:
    g = Group()
    with pytest.raises(RuntimeError, match=r"^Group.go\(\) before the group was entered"):
        await g.go(value, 1)
    with pytest.raises(RuntimeError, match=r"exists once the group is entered"):
        g.ctx  # noqa: B018
    assert "new" in repr(g)


async def test_enter_twice_raises() -> None:
    g = Group()
    async with g:
        with pytest.raises(RuntimeError, match=r"entered only once"):
            async with g:
                pass  # pragma: no cover
    with pytest.raises(RuntimeError, match=r"entered only once"):
        async with g:
            pass  # pragma: no cover


async def test_go_from_foreign_task_after_exit() -> None:
    """A task outside the group waiting for a slot gets RuntimeError if the group exits."""
    ev = anyio.Event()
    errors: list[BaseException] = []

    async def foreign(g: Group) -> None:
        try:
            await g.go(value, 1)
        except RuntimeError as e:
            errors.append(e)

    async with anyio.create_task_group() as tg:
        async with Group(limit=1) as g:
            await g.go(ev.wait)
            tg.start_soon(foreign, g)
            await anyio.wait_all_tasks_blocked()
            ev.set()
            # the slot goes to the foreign waiter, who runs after the group has exited
    assert len(errors) <= 1
    if errors:
        assert "after the group's async with block has exited" in str(errors[0])


# -- context -----------------------------------------------------------------------------


async def test_ctx_is_child_of_current_and_cancelled_on_exit() -> None:
    parent, cancel = with_cancel(background())
    with parent.scope():
        async with Group() as g:
            assert g.ctx.err() is None
            assert current() is g.ctx
        assert current() is parent
    assert isinstance(g.ctx.err(), Canceled)
    assert parent.err() is None
    cancel()


async def test_current_inside_tasks_is_group_ctx() -> None:
    seen: list[object] = []

    async def look() -> None:
        seen.append(current())

    async with Group() as g:
        await g.go(look)
        async with anyio.create_task_group() as tg:
            tg.start_soon(spawn_from_outside, g, look)
    assert seen == [g.ctx, g.ctx]
    assert current() is background()


async def spawn_from_outside(g: Group, fn: Callable[[], Awaitable[None]]) -> None:
    await g.go(fn)


async def test_parent_ctx_cancel_cuts_group_short() -> None:
    parent, cancel = with_cancel_cause(background())
    live = Live()
    cause = Boom("why")
    with pytest.raises(Canceled) as info:
        async with Group(parent) as g:
            for _ in range(3):
                await g.go(live.forever)
            await anyio.wait_all_tasks_blocked()
            cancel(cause)
            await anyio.sleep_forever()
    assert info.value is g.ctx.err()
    assert info.value.__cause__ is cause
    assert g.ctx.cause() is cause
    assert g.errors == []
    assert live.now == 0 and live.cancelled == 3


async def test_parent_ctx_cancel_while_exiting() -> None:
    parent, cancel = with_cancel(background())
    live = Live()

    async def canceller() -> None:
        await anyio.wait_all_tasks_blocked()
        cancel()

    with pytest.raises(Canceled):
        async with Group(parent) as g:
            await g.go(live.forever)
            async with anyio.create_task_group() as tg:
                tg.start_soon(canceller)
                await g.go(live.forever)
    assert live.now == 0


async def test_parent_ctx_deadline(anyio_backend_name: str) -> None:
    parent, cancel = with_deadline(background(), anyio.current_time() + 0.01)
    live = Live()
    with pytest.raises(DeadlineExceeded):
        async with Group(parent) as g:
            await g.go(live.forever)
            await anyio.sleep_forever()
    assert live.now == 0
    cancel()


@pytest.mark.parametrize("how", ["cancelled", "deadline passed unnoticed"])
async def test_parent_already_done(how: str) -> None:
    """A parent done before the block -- also one whose deadline passed while the loop
    was held (no timer has run, nobody asked err()): the group's context is done at
    entry, and the block ends with the parent's error."""
    import time as _time

    if how == "cancelled":
        parent, cancel = with_cancel(background())
        cancel()
        expected: type[Exception] = Canceled
    else:
        parent, cancel = with_deadline(background(), anyio.current_time() + 0.001)
        _time.sleep(0.01)  # past the deadline without a checkpoint: nothing noticed it
        expected = DeadlineExceeded
    live = Live()
    with pytest.raises(expected):
        async with Group(parent) as g:
            assert isinstance(g.ctx.err(), expected)
            g.try_go(live.forever)
            await anyio.sleep_forever()
    assert live.now == 0
    cancel()


async def test_well_behaved_tasks_return_ctx_err() -> None:
    """Go's pattern: tasks watch ctx; Wait returns ctx.Err()."""
    parent, cancel = with_cancel(background())

    async def watches_ctx() -> None:
        with current().scope():
            await anyio.sleep_forever()

    with pytest.raises(Canceled) as info:
        async with Group(parent) as g:
            await g.go(watches_ctx)
            await anyio.wait_all_tasks_blocked()
            cancel()
    assert info.value is parent.err()


async def test_ctx_error_from_task_scope_after_first_error() -> None:
    err = Boom()

    async def watches_ctx() -> None:
        with current().scope():
            await anyio.sleep_forever()

    with pytest.raises(Boom) as info:
        async with Group() as g:
            await g.go(watches_ctx)
            await anyio.wait_all_tasks_blocked()
            await g.go(fail, err)
    assert info.value is err
    # The group cancels the task itself too, so (on current anyio) its scope lets that
    # cancellation through instead of turning it into Canceled; older anyio versions
    # (4.4) swallow it there and the scope raises Canceled, listed after the error.
    assert g.errors[0] is err
    assert all(isinstance(e, Canceled) for e in g.errors[1:])


async def test_group_under_cancelled_scope_of_ctx() -> None:
    """An enclosing ctx.scope() cancels the owner: cancellation wins over ctx err."""
    ctx, cancel = with_cancel(background())
    live = Live()
    with pytest.raises(Canceled):
        with ctx.scope():
            async with Group() as g:
                await g.go(live.forever)
                await anyio.wait_all_tasks_blocked()
                cancel()
                await anyio.sleep_forever()
    assert live.now == 0


# -- structure: nothing left behind ----------------------------------------------------------


async def test_many_tasks_nothing_left_running() -> None:
    live = Live()
    with pytest.raises(Boom):
        async with Group() as g:
            for i in range(500):
                await g.go(live.forever)
                if i == 250:
                    await g.go(fail, Boom())
    assert live.now == 0


async def test_handles_and_group_do_not_keep_cycles_alive() -> None:
    async with Group() as g:
        h = await g.go(value, 1)
    del g
    gc.collect()
    assert h.result() == 1


async def test_exception_traceback_frames_not_duplicated_across_runs() -> None:
    err = Boom()
    with pytest.raises(Boom):
        async with Group() as g:
            await g.go(fail, err)
    n = len(traceback.extract_tb(err.__traceback__))
    assert n < 10


async def test_generic_handle_typing() -> None:
    async with Group() as g:
        h: TaskHandle[int] = await g.go(value, 1)
    assert h.result() == 1


async def test_core_internals_exist() -> None:
    """The anyio internals the asyncio core relies on (pinned anyio range)."""
    if sys.version_info >= (3, 99):  # pragma: no cover
        return
    from anyio._backends import _asyncio as a

    s = a.CancelScope()
    for attr in ("_tasks", "_child_scopes", "_parent_scope", "_cancel_handle"):
        assert hasattr(s, attr)
    assert hasattr(s, "_deliver_cancellation")
    assert _taskgroup.PENDING == 0


async def test_values_of_parent_ctx_visible() -> None:
    from asyncgo import with_value

    parent = with_value(background(), "k", "v")
    async with Group(parent) as g:
        assert g.ctx.value("k") == "v"
        assert current().value("k") == "v"


@pytest.mark.parametrize("seed", range(40))
async def test_random_outcomes_and_cancellation(seed: int) -> None:
    """Random task outcomes, nested groups and an outer cancel at a random point.

    Whatever happens: nothing is left running, every handle is done, and exit
    follows the precedence (first error, else the outer cancellation, else success).
    """
    import random

    rnd = random.Random(seed)
    live = Live()
    handles: list[TaskHandle[Any]] = []
    errors: list[Boom] = []

    async def task(g: Group, depth: int) -> int:
        for _ in range(rnd.randrange(3)):
            await anyio.lowlevel.checkpoint()
        r = rnd.random()
        if r < 0.15:
            e = Boom(seed)
            errors.append(e)
            raise e
        if r < 0.3:
            await anyio.sleep_forever()
        if r < 0.45 and depth < 3:
            async with Group(limit=rnd.choice([None, 1, 2])) as inner:
                for _ in range(rnd.randrange(4)):
                    handles.append(await inner.go(live.run, task, inner, depth + 1))
        if r < 0.6:
            handles.append(await g.go(live.run, task, g, depth + 1))
        return depth

    cancel_at = rnd.randrange(12)
    outcome: list[BaseException] = []

    async def watchdog(scope: anyio.CancelScope) -> None:
        # Tasks that wait forever, or for slots their own group never frees, are
        # part of the game: once everything is stuck, the owner is cancelled.
        await anyio.wait_all_tasks_blocked()
        scope.cancel()

    async def body(scope: anyio.CancelScope) -> None:
        try:
            async with Group(limit=rnd.choice([None, 2, 5])) as g:
                groups.append(g)
                for i in range(8):
                    if i == cancel_at:
                        scope.cancel()
                    handles.append(await g.go(live.run, task, g, 0))
                for _ in range(rnd.randrange(4)):
                    await anyio.lowlevel.checkpoint()
        except BaseException as e:
            outcome.append(e)
            if not isinstance(e, Boom):
                raise

    groups: list[Group] = []
    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watchdog, outer)
            await body(outer)
            tg.cancel_scope.cancel()
    g = groups[0]
    assert live.now == 0
    assert all(h.done() for h in handles)
    if g.errors:
        assert outcome == [g.errors[0]] and outcome[0] in errors
    elif outcome:
        assert outer.cancelled_caught
        assert isinstance(outcome[0], Cancelled())


@pytest.mark.usefixtures("no_leaks")
async def test_go_with_a_sync_function_names_the_mistake() -> None:
    def compute(x: int) -> int:  # not async: its result cannot be awaited
        return x * 2

    async def raises_type_error() -> None:
        raise TypeError("its own")

    with pytest.raises(TypeError, match=r"^Group\.go\(\): .*compute\(\) returned int, not an"):
        async with Group() as g:
            await g.go(compute, 21)  # type: ignore[arg-type]
    # A TypeError raised by the function itself, sync or async, stays as it is.
    with pytest.raises(TypeError, match="^its own$"):
        async with Group() as g:
            await g.go(raises_type_error)

    def bad_sync() -> Awaitable[None]:
        raise TypeError("sync, before returning")

    with pytest.raises(TypeError, match="^sync, before returning$"):
        async with Group() as g:
            await g.go(bad_sync)


@pytest.mark.usefixtures("no_leaks")
async def test_parent_ending_after_everything_finished_is_not_an_error() -> None:
    # Go: Wait returns nil when every task returned nil, whatever the parent did.
    async def ok() -> int:
        await anyio.sleep(0)
        return 1

    parent, cancel = with_cancel(background())
    async with Group(parent) as g:
        h = await g.go(ok)
        assert await h == 1
        cancel()  # nothing is running, and the body does not reach a checkpoint again
    assert g.errors == [] and type(g.ctx.err()) is Canceled


@pytest.mark.usefixtures("no_leaks")
async def test_parent_ending_cuts_short_a_task_or_the_body() -> None:
    parent, cancel = with_cancel(background())
    with pytest.raises(Canceled):  # a task was cut short
        async with Group(parent) as g:
            h = await g.go(anyio.sleep_forever)
            await anyio.wait_all_tasks_blocked()
            cancel()
    assert h.cancelled()

    parent, cancel = with_cancel(background())
    reached = False
    with pytest.raises(Canceled):  # the body was cut short
        async with Group(parent) as g:
            cancel()
            await anyio.sleep(0)
            reached = True
    assert not reached


@pytest.mark.parametrize("how", ["go", "try_go", "go_nowait"])
async def test_starting_a_task_from_another_threads_loop_raises(how: str) -> None:
    """A Group belongs to the loop it was entered on; only that loop may start its tasks.

    From a second event loop in another thread, go() used to start the task anyway:
    asyncio's create_task of the group's loop called from a foreign thread, or (trio)
    the task run inside the second run while belonging to the first one's nursery.
    """
    import threading

    ran: list[str] = []

    async def job() -> None:
        ran.append(threading.current_thread().name)

    async with Group() as g:

        async def elsewhere() -> None:
            if how == "go":
                await g.go(job)
            else:
                getattr(g, how)(job)

        def in_thread() -> BaseException | None:
            for backend in ("asyncio", "trio"):
                try:
                    anyio.run(elsewhere, backend=backend)
                except BaseException as exc:  # noqa: BLE001 - checked below
                    if not isinstance(exc, RuntimeError) or "another thread" not in str(exc):
                        return exc
                else:
                    return AssertionError(f"Group.{how}() from another thread started a task")
            return None

        err = await anyio.to_thread.run_sync(in_thread)
        assert err is None, repr(err)
        await g.go(job)  # the group works on, on its own loop
    assert ran == [threading.current_thread().name]


async def returns_one() -> int:
    return 1


async def test_await_h_in_an_already_cancelled_scope_raises_though_the_task_ended() -> None:
    """``await h`` in a scope already cancelled raises the cancellation, on every backend.
    On asyncio anyio delivers it a loop step late, and a task finishing in that step
    used to hand the waiter its result inside the cancelled scope (trio was right)."""
    caught: list[bool] = []
    async with Group() as g:
        for _ in range(10):
            h = g.go_nowait(returns_one)  # it runs before the cancellation lands
            with anyio.CancelScope() as scope:
                scope.cancel()
                await h
                pytest.fail("await h returned in a cancelled scope")
            caught.append(scope.cancelled_caught)
            assert await h == 1
    assert caught == [True] * 10


def test_body_scope_built_directly_matches_anyios_constructor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The body's anyio scope is built without anyio's (Python) constructor when a
    check at import finds both give the same scope -- else anyio's is used."""
    from importlib.metadata import version
    from pathlib import Path

    pins = (Path(__file__).parent.parent / "constraints.txt").read_text().splitlines()
    if f"anyio=={version('anyio')}" not in pins:
        # Another anyio than the pinned one (the lowest supported, say): the check
        # may fail, and then anyio's own constructor is used.
        if not _taskgroup._check_fast_body_scope():
            assert _taskgroup._new_body_scope is _taskgroup._BodyScope
            return
    assert _taskgroup._check_fast_body_scope()  # the pinned anyio: the fast path is on
    assert _taskgroup._new_body_scope is _taskgroup._fast_body_scope
    made, fast = _taskgroup._BodyScope(), _taskgroup._fast_body_scope()
    for name in _taskgroup._slots(_taskgroup._BodyScope):
        assert hasattr(made, name) == hasattr(fast, name), name
        if name != "core" and hasattr(made, name):
            assert getattr(made, name) == getattr(fast, name), name
    assert type(fast._child_scopes) is set and fast._child_scopes is not made._child_scopes

    original = _taskgroup._fast_body_scope

    def missing_one() -> Any:
        s = original()
        del s._tasks  # as if anyio had gained a field this does not set
        return s

    monkeypatch.setattr(_taskgroup, "_fast_body_scope", missing_one)
    assert not _taskgroup._check_fast_body_scope()


async def test_a_finished_group_is_freed_without_the_garbage_collector() -> None:
    """No reference cycle through a group's core (asyncio: core <-> body scope): a
    request's group goes when its last reference does, not at the next collection."""

    async def nop() -> None:
        pass

    gc.collect()
    gc.disable()
    try:
        g = Group()
        async with g:
            await g.go(nop)
            await g.go(nop)
        r = weakref.ref(g)
        del g
        assert r() is None
    finally:
        gc.enable()


async def test_the_registration_mode_is_in_force(
    registration: str, anyio_backend_name: str
) -> None:
    """The fixture's "lazy" mode really makes the blocks lazy (guards the guard)."""
    async with Group() as g:
        core = g._core
        if anyio_backend_name == "trio":
            assert not isinstance(core, _taskgroup.AsyncioCore)
        else:
            assert isinstance(core, _taskgroup.AsyncioCore)
            assert core._enrol is (registration == "enrolled")


@pytest.mark.parametrize("body_awaits", [False, True])
async def test_a_task_failing_in_its_eager_first_step_leaves_no_stray_cancellation(
    anyio_backend: tuple[str, dict[str, object]], registration: str, body_awaits: bool
) -> None:
    """Python 3.12, eager tasks: a task that fails inside go() aborts the group while
    the owner is mid-step. The body is still cancelled at its next await, and no
    cancellation is left over for the owner's first await after the block."""

    async def boom() -> None:
        raise ValueError("failed in its first step")

    reached: list[str] = []
    with eager_tasks(anyio_backend):
        with pytest.raises(ValueError, match="first step"):
            async with Group() as g:
                assert g.try_go(boom)  # ran, and failed, inside try_go()
                if body_awaits:
                    await anyio.sleep(30)  # cancelled by the group's abort
                    reached.append("slept")  # pragma: no cover
        await anyio.sleep(0)  # no stray cancellation lands here
        reached.append("next await")
    assert reached == ["next await"]

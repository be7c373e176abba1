"""with_deadline_cause / with_timeout_cause (Go 1.21's WithDeadlineCause and
WithTimeoutCause) on asyncio, uvloop and trio; the timing cases on trio's MockClock."""

from __future__ import annotations

import math
import threading
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from asyncgo import (
    Canceled,
    DeadlineExceeded,
    Group,
    background,
    recv,
    select,
    with_cancel_cause,
    with_deadline,
    with_deadline_cause,
    with_timeout,
    with_timeout_cause,
)
from asyncgo import time as gotime

pytestmark = pytest.mark.anyio


class TooSlow(Exception):
    pass


async def test_timer_ends_it_with_the_cause_and_reaches_the_descendants() -> None:
    slow = TooSlow("backend too slow")
    ctx, cancel = with_timeout_cause(background(), 0.001, slow)
    child, cancel_child = with_cancel_cause(ctx)
    with anyio.fail_after(10):
        r = await select(recv(child.done()))  # the timer, not a lazy err()
    assert r.index == 0
    assert type(ctx.err()) is DeadlineExceeded
    assert ctx.cause() is slow
    assert child.err() is ctx.err()
    assert child.cause() is slow  # Go: a child ended by its parent has the parent's cause
    cancel_child(RuntimeError("late"))  # too late: nothing changes
    assert child.cause() is slow
    cancel()


async def test_scope_raises_the_deadline_error_from_the_cause() -> None:
    slow = TooSlow()
    ctx, cancel = with_timeout_cause(background(), 0.001, slow)
    with pytest.raises(DeadlineExceeded) as info:
        with ctx.scope():
            await anyio.sleep(10)
    assert info.value.__cause__ is slow
    cancel()


async def test_sleep_given_the_context_raises_err_and_cause_says_why() -> None:
    slow = TooSlow()
    with with_timeout_cause(background(), 0.001, slow) as ctx:
        with pytest.raises(DeadlineExceeded):
            await gotime.sleep(10, ctx)
        assert ctx.cause() is slow


async def test_cancel_first_gives_canceled_as_the_cause() -> None:
    ctx, cancel = with_timeout_cause(background(), 3600, TooSlow())
    cancel()
    assert type(ctx.err()) is Canceled
    assert ctx.cause() is ctx.err()


async def test_parent_end_first_gives_the_parents_cause() -> None:
    boom = RuntimeError("shutdown")
    parent, cancel_parent = with_cancel_cause(background())
    ctx, cancel = with_timeout_cause(parent, 3600, TooSlow())
    cancel_parent(boom)
    assert type(ctx.err()) is Canceled
    assert ctx.cause() is boom
    cancel()


async def test_an_earlier_parent_deadline_wins_and_the_cause_is_not_used() -> None:
    """Go returns WithCancel(parent) then: the cause is dropped."""
    parent, cancel_parent = with_timeout(background(), 0)
    ctx, cancel = with_timeout_cause(parent, 3600, TooSlow())
    assert ctx.deadline() == parent.deadline()
    assert type(ctx.err()) is DeadlineExceeded
    assert ctx.cause() is ctx.err()
    cancel()
    cancel_parent()


async def test_deadline_already_passed_is_done_at_once_with_the_cause() -> None:
    slow = TooSlow()
    now = anyio.current_time()
    for when in (now - 1, now):
        ctx, cancel = with_deadline_cause(background(), when, slow)
        assert type(ctx.err()) is DeadlineExceeded
        assert ctx.cause() is slow
        cancel()  # Go: cancel after the deadline changes nothing
        assert ctx.cause() is slow


async def test_a_passed_deadline_noticed_by_the_parents_cancel_keeps_its_cause() -> None:
    """Go's "WithTimeoutCause stacked": the timer would have fired first."""
    slow = TooSlow()
    parent, cancel_parent = with_cancel_cause(background())
    ctx, _ = with_timeout_cause(parent, 0, slow)
    grandchild, _ = with_cancel_cause(ctx)
    cancel_parent(RuntimeError("finished early"))
    assert type(ctx.err()) is DeadlineExceeded
    assert ctx.cause() is slow
    assert grandchild.cause() is slow


async def test_none_cause_is_with_deadline() -> None:
    ctx, cancel = with_deadline_cause(background(), anyio.current_time(), None)
    assert type(ctx.err()) is DeadlineExceeded
    assert ctx.cause() is ctx.err()
    ctx2, cancel2 = with_timeout_cause(background(), math.inf, None)
    assert ctx2.deadline() is None
    cancel()
    cancel2()


async def test_cause_read_from_another_thread_before_the_loop_ends_it() -> None:
    """err() is lazy off the loop's thread: cause() must still give the cause."""
    slow = TooSlow()
    ctx, cancel = with_deadline_cause(background(), anyio.current_time() - 1, slow)
    seen: list[object] = []

    def read() -> None:
        seen.extend([type(ctx.err()), ctx.cause()])

    t = threading.Thread(target=read)
    t.start()
    t.join()
    assert seen == [DeadlineExceeded, slow]
    assert ctx.cause() is slow
    cancel()


async def test_group_exit_raises_the_deadline_error_chained_from_the_cause() -> None:
    slow = TooSlow()
    ctx, cancel = with_timeout_cause(background(), 0.001, slow)
    with pytest.raises(DeadlineExceeded) as info:
        async with Group(ctx) as g:
            await g.go(anyio.sleep, 10)
    assert info.value.__cause__ is slow
    cancel()


def test_bad_arguments_name_the_misuse() -> None:
    with pytest.raises(TypeError, match=r"^with_deadline_cause: the cause must be an exception"):
        with_deadline_cause(background(), 1.0, "slow")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^with_timeout_cause: the cause must be an exception"):
        anyio.run(_timeout_cause_with, "slow")
    with pytest.raises(TypeError, match=r"with_deadline_cause: when"):
        with_deadline_cause(background(), "soon", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"with_deadline_cause"):
        with_deadline_cause(None, 1.0, None)  # type: ignore[arg-type]


async def _timeout_cause_with(cause: object) -> None:
    with_timeout_cause(background(), 1, cause)  # type: ignore[arg-type]


def test_exact_times_on_mock_clock() -> None:
    async def main() -> None:
        t0 = anyio.current_time()
        slow = TooSlow()
        ctx, cancel = with_timeout_cause(background(), 5, slow)
        other, cancel_other = with_deadline(background(), t0 + 7)
        assert ctx.deadline() == t0 + 5
        await ctx.wait()
        assert anyio.current_time() == t0 + 5
        assert ctx.cause() is slow and other.err() is None
        await other.wait()
        assert anyio.current_time() == t0 + 7
        assert other.cause() is other.err()
        cancel()
        cancel_other()

    anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


class ChildSlow(Exception):
    pass


@pytest.mark.parametrize("who_reads_first", ["parent", "child"])
def test_a_childs_earlier_deadline_keeps_its_own_cause(who_reads_first: str) -> None:
    """The parent's later deadline ending the child must not replace the cause of the
    child's own deadline, which passed first (Go: the child's timer fired first)."""

    async def main() -> None:
        t0 = anyio.current_time()
        parent, cancel_parent = with_deadline_cause(background(), t0 + 10, TooSlow())
        child, cancel_child = with_deadline_cause(parent, t0 + 5, ChildSlow())
        grandchild, cancel_grandchild = with_cancel_cause(child)
        await anyio.sleep(20)  # both passed, no timer armed: ended lazily
        first, second = (parent, child) if who_reads_first == "parent" else (child, parent)
        first.err()
        second.err()
        assert isinstance(parent.cause(), TooSlow)
        assert isinstance(child.cause(), ChildSlow)
        assert isinstance(grandchild.cause(), ChildSlow)
        for c in (cancel_grandchild, cancel_child, cancel_parent):
            c()

    anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


def test_a_childs_earlier_deadline_keeps_its_cause_with_the_parents_timer_armed() -> None:
    async def main() -> None:
        t0 = anyio.current_time()
        parent, cancel_parent = with_deadline_cause(background(), t0 + 10, TooSlow())
        child, cancel_child = with_deadline_cause(parent, t0 + 5, ChildSlow())
        await parent.wait()  # the parent's timer: its walk reaches the child
        assert anyio.current_time() == t0 + 10
        assert isinstance(parent.cause(), TooSlow)
        assert isinstance(child.cause(), ChildSlow)
        cancel_parent()
        cancel_child()

    anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


def test_an_equal_deadline_is_the_parents() -> None:
    """Go gives the child a timer of its own then, and which fires first is a race;
    asyncgo's child shares the parent's deadline, and so its cause (docs/context.md)."""

    async def main() -> None:
        t0 = anyio.current_time()
        parent, cancel_parent = with_deadline_cause(background(), t0 + 5, TooSlow())
        child, cancel_child = with_deadline_cause(parent, t0 + 5, ChildSlow())
        await child.wait()
        assert isinstance(child.cause(), TooSlow)
        cancel_parent()
        cancel_child()

    anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


async def test_a_cause_that_refers_back_to_its_context_is_collected() -> None:
    import gc
    import weakref

    def make() -> weakref.ref[Any]:
        err = TooSlow()
        ctx, cancel = with_timeout_cause(background(), 3600, err)
        err.ctx = ctx  # type: ignore[attr-defined]  # (a traceback frame does the same)
        cancel()
        return weakref.ref(ctx)

    def make_unended() -> weakref.ref[Any]:
        err = TooSlow()
        ctx, _ = with_timeout_cause(background(), 3600, err)
        err.ctx = ctx  # type: ignore[attr-defined]
        return weakref.ref(ctx)  # never cancelled, its deadline never reached

    refs = [make(), make_unended()]
    gc.collect()
    assert [r() for r in refs] == [None, None]

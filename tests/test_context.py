"""Contexts: DESIGN.md "Context" and issue #3, rule by rule, on asyncio, uvloop and trio.

Time-driven checks here use short real deadlines with generous bounds; the exact
arithmetic runs on trio's MockClock in test_time_mock.py. Racy states are reached
with ``anyio.wait_all_tasks_blocked()``.
"""

from __future__ import annotations

import asyncio
import gc
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from asyncgo import (
    Canceled,
    Chan,
    ChanClosed,
    Context,
    DeadlineExceeded,
    Selected,
    WouldBlock,
    after_func,
    background,
    current,
    recv,
    select,
    with_cancel,
    with_cancel_cause,
    with_deadline,
    with_timeout,
    with_value,
    without_cancel,
)
from asyncgo import time as gotime

pytestmark = pytest.mark.anyio


def is_done(ctx: Context) -> bool:
    """Whether ctx.done() is closed, without waiting."""
    try:
        ctx.done().recv_nowait()
    except WouldBlock:
        return False
    except ChanClosed:
        return True
    raise AssertionError("a done channel never delivers a value")


async def waiter(ctx: Context, out: list[Any]) -> None:
    await ctx.wait()
    out.append(ctx.err())


def asyncgo_timers() -> int | None:
    """Timers of ours still scheduled on the running loop; None where that cannot be seen.

    uvloop keeps its timers in C: there, the tests check the handles themselves.
    """
    from asyncgo._backend._timers import TrioRuntime, runtime_or_none

    rt = runtime_or_none()
    if type(rt) is TrioRuntime:
        return rt.pending()
    scheduled = getattr(rt, "_scheduled", None)
    if scheduled is None:
        return None
    count = 0
    for h in scheduled:
        cb = h._callback
        owner = getattr(cb, "__self__", cb)
        if h.cancelled():
            continue
        if type(owner).__module__.startswith("asyncgo") or getattr(cb, "__module__", "").startswith(
            "asyncgo"
        ):
            count += 1
    return count


def check_timers(n: int) -> None:
    got = asyncgo_timers()
    assert got is None or got == n, f"{got} asyncgo timers scheduled, expected {n}"


# -- background, construction ------------------------------------------------------


async def test_background() -> None:
    bg = background()
    assert bg is background()
    assert (bg.err(), bg.cause(), bg.deadline(), bg.value("k")) == (None, None, None, None)
    assert not is_done(bg)
    assert current() is bg
    r = await select(recv(bg.done()), default=True)
    assert r.index == -1
    assert "background" in repr(bg)


def test_context_cannot_be_built_directly() -> None:
    with pytest.raises(TypeError, match=r"^Context cannot be built directly"):
        Context()


@pytest.mark.parametrize(
    "make",
    [with_cancel, with_cancel_cause, without_cancel, lambda p: with_value(p, "k", 1)],
)
def test_parent_must_be_a_context(make: Any) -> None:
    with pytest.raises(TypeError, match=r"parent must be a Context .* not NoneType$"):
        make(None)


# -- err() and cause() ----------------------------------------------------------------


async def test_with_cancel_err_and_cause() -> None:
    ctx, cancel = with_cancel(background())
    assert (ctx.err(), ctx.cause()) == (None, None)
    assert not is_done(ctx)
    cancel()
    err = ctx.err()
    assert type(err) is Canceled
    assert str(err) == "context canceled"
    assert ctx.cause() is err
    assert is_done(ctx)
    cancel()  # idempotent: nothing changes
    assert ctx.err() is err
    await ctx.wait()  # returns at once


async def test_with_cancel_cause_values() -> None:
    ctx, cancel = with_cancel_cause(background())
    boom = ValueError("boom")
    cancel(boom)
    assert type(ctx.err()) is Canceled
    assert ctx.cause() is boom
    cancel(KeyError("later"))  # the first cause wins
    assert ctx.cause() is boom

    ctx2, cancel2 = with_cancel_cause(background())
    cancel2(None)  # Go: cancel(nil) makes the cause Canceled
    assert ctx2.cause() is ctx2.err()
    ctx3, cancel3 = with_cancel_cause(background())
    cancel3()
    assert ctx3.cause() is ctx3.err()


async def test_cancel_rejects_a_cause_that_is_not_an_exception() -> None:
    ctx, cancel = with_cancel_cause(background())
    with pytest.raises(
        TypeError,
        match=r"^cancel\(cause\): the cause must be an exception instance or None, not str$",
    ):
        cancel("why")  # type: ignore[arg-type]
    assert ctx.err() is None


async def test_children_share_the_parent_err_and_cause() -> None:
    parent, cancel = with_cancel_cause(background())
    child, _ = with_cancel(parent)
    grandchild = with_value(child, "k", "v")
    timed, _ = with_timeout(grandchild, 60)
    boom = RuntimeError("boom")
    cancel(boom)
    for c in (child, grandchild, timed):
        assert c.err() is parent.err()
        assert c.cause() is boom


async def test_cancelling_a_child_leaves_parent_and_siblings_alone() -> None:
    parent, _ = with_cancel(background())
    a, cancel_a = with_cancel(parent)
    b, _ = with_cancel(parent)
    cancel_a()
    assert a.err() is not None
    assert (parent.err(), b.err()) == (None, None)


async def test_child_of_a_done_parent_is_done_at_once() -> None:
    parent, cancel = with_cancel_cause(background())
    boom = OSError("gone")
    cancel(boom)
    child, _ = with_cancel(parent)
    assert child.err() is parent.err()
    assert child.cause() is boom
    assert is_done(child)
    await child.wait()


async def test_deadline_err_and_cause() -> None:
    ctx, _ = with_timeout(background(), 0.01)
    await ctx.wait()
    err = ctx.err()
    assert type(err) is DeadlineExceeded
    assert isinstance(err, TimeoutError)
    assert str(err) == "context deadline exceeded"
    assert ctx.cause() is err
    child, _ = with_cancel(ctx)
    assert child.err() is err


async def test_cancel_before_the_deadline_is_canceled() -> None:
    ctx, cancel = with_timeout(background(), 60)
    cancel()
    assert type(ctx.err()) is Canceled
    await anyio.sleep(0)
    assert type(ctx.err()) is Canceled


async def test_a_passed_deadline_is_noticed_without_a_timer() -> None:
    """err() reads the clock: no one asked for done(), so no timer was armed."""
    ctx, _ = with_timeout(background(), 0)
    assert type(ctx.err()) is DeadlineExceeded
    past, _ = with_deadline(background(), anyio.current_time() - 1)
    assert type(past.err()) is DeadlineExceeded
    assert is_done(past)


async def test_cancel_after_an_unnoticed_deadline_keeps_deadline_exceeded() -> None:
    """Go's timer would have fired first: the late cancel() changes nothing."""
    ctx, cancel = with_timeout(background(), 0.01)
    child, _ = with_cancel(ctx)
    await anyio.sleep(0.05)
    cancel()
    assert type(ctx.err()) is DeadlineExceeded
    assert type(child.err()) is DeadlineExceeded


async def test_parent_cancel_after_a_childs_unnoticed_deadline() -> None:
    parent, cancel = with_cancel(background())
    child, _ = with_timeout(parent, 0.01)
    grandchild, _ = with_cancel(child)
    sibling, _ = with_cancel(parent)
    await anyio.sleep(0.05)
    cancel()
    assert type(parent.err()) is Canceled
    assert type(sibling.err()) is Canceled
    assert type(child.err()) is DeadlineExceeded
    assert grandchild.err() is child.err()


# -- propagation ------------------------------------------------------------------------


async def test_cancelling_a_parent_cancels_hundreds_of_descendants_at_once() -> None:
    """One cancel() marks the whole tree done before it returns: no await in between."""
    root, cancel = with_cancel_cause(background())
    nodes: list[Context] = []
    frontier = [root]
    makers: list[Any] = [
        lambda p: with_cancel(p)[0],
        lambda p: with_value(p, "depth", len(nodes)),
        lambda p: with_timeout(p, 3600)[0],
        lambda p: with_cancel_cause(p)[0],
        lambda p: with_deadline(p, anyio.current_time() + 3600)[0],
    ]
    while len(nodes) < 1000:
        nxt = []
        for p in frontier:
            for i in range(10):
                c = makers[(len(nodes) + i) % len(makers)](p)
                nodes.append(c)
                nxt.append(c)
        frontier = nxt
    outside, _ = with_cancel(background())
    woken: list[Any] = []
    async with anyio.create_task_group() as tg:
        for c in nodes[::97]:  # some of them have a task waiting on done()
            tg.start_soon(waiter, c, woken)
        await anyio.wait_all_tasks_blocked()
        boom = ValueError("stop everything")
        cancel(boom)
        assert all(c.err() is root.err() for c in nodes)
        assert all(c.cause() is boom for c in nodes)
        assert all(is_done(c) for c in nodes)
    assert len(woken) == len(nodes[::97])
    assert outside.err() is None
    assert len(nodes) >= 1000


async def test_a_long_chain_cancels_and_looks_values_up_without_recursion() -> None:
    ctx = background()
    depth = 3000
    cancel_root = None
    for i in range(depth):
        if i % 3 == 0:
            ctx = with_value(ctx, i, f"v{i}")
        elif i % 3 == 1:
            ctx, c = with_cancel(ctx)
            if cancel_root is None:
                cancel_root = c
        else:
            ctx, _ = with_timeout(ctx, 3600)
    for i in range(0, depth, 3):
        assert ctx.value(i) == f"v{i}"
    assert ctx.value(-1) is None
    assert cancel_root is not None
    cancel_root()
    assert type(ctx.err()) is Canceled
    assert is_done(ctx)
    del ctx  # a 3000-deep chain is freed without recursion trouble
    gc.collect()


async def test_cancel_wakes_a_select_on_done() -> None:
    ctx, cancel = with_cancel(background())
    jobs: Chan[int] = Chan()
    results: list[Any] = []

    async def worker() -> None:
        results.append(await select(recv(jobs), recv(ctx.done())))

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        cancel()
    assert results == [Selected(1, None, False)]


async def test_done_is_the_same_channel_and_closed_once_done() -> None:
    ctx, cancel = with_cancel(background())
    d = ctx.done()
    assert ctx.done() is d
    assert with_value(ctx, "k", 1).done() is d  # a value context reports its parent's
    cancel()
    with pytest.raises(ChanClosed):
        d.recv_nowait()
    assert await d.recv_ok() == (None, False)
    late, cancel_late = with_cancel(background())
    cancel_late()
    with pytest.raises(ChanClosed):  # asked for only after it was done: already closed
        late.done().recv_nowait()


# -- deadlines -------------------------------------------------------------------------


async def test_deadline_is_never_later_than_the_parents() -> None:
    now = anyio.current_time()
    parent, _ = with_deadline(background(), now + 10)
    assert parent.deadline() == now + 10
    later, _ = with_deadline(parent, now + 20)
    assert later.deadline() == now + 10
    earlier, _ = with_deadline(parent, now + 5)
    assert earlier.deadline() == now + 5
    t, _ = with_timeout(parent, 100)
    assert t.deadline() == now + 10
    assert with_cancel(parent)[0].deadline() == now + 10
    assert with_value(earlier, "k", 1).deadline() == now + 5
    assert without_cancel(parent).deadline() is None
    assert with_deadline(background(), math.inf)[0].deadline() is None
    assert with_timeout(background(), math.inf)[0].deadline() is None


async def test_with_timeout_deadline_is_on_the_backend_clock() -> None:
    before = anyio.current_time()
    ctx, _ = with_timeout(background(), 5)
    after = anyio.current_time()
    d = ctx.deadline()
    assert d is not None
    assert before + 5 <= d <= after + 5  # as computed (uvloop too: see on_tick)


async def test_a_sleep_as_long_as_the_timeout_ends_it() -> None:
    """A task that sleeps as long as a context's timeout, begun after it, finds it done.

    On uvloop ``now + 0.001`` used to come out an ulp past the next millisecond tick
    (about one time in five, on a clock of this machine's size), and a sleep that
    uvloop ended at that tick found ``err()`` still None."""
    for _ in range(200):
        ctx, cancel = with_timeout(background(), 0.001)
        await gotime.sleep(0.001)
        assert type(ctx.err()) is DeadlineExceeded
        cancel()


async def test_a_child_with_a_later_deadline_ends_with_its_parent() -> None:
    parent, _ = with_timeout(background(), 0.02)
    child, _ = with_timeout(parent, 60)
    t0 = anyio.current_time()
    await child.wait()
    assert anyio.current_time() - t0 < 5
    assert type(child.err()) is DeadlineExceeded
    assert child.err() is parent.err()


@pytest.mark.parametrize("seconds", [0, -0.001, -1, -math.inf])
async def test_a_zero_or_negative_timeout_is_done_at_once(seconds: float) -> None:
    # Go: WithTimeout(parent, d) with d <= 0 returns a context whose deadline has
    # passed (asyncio.timeout and anyio.fail_after agree).
    c, cancel = with_timeout(background(), seconds)
    assert type(c.err()) is DeadlineExceeded
    assert c.done().closed
    assert c.deadline() is not None and c.deadline() <= anyio.current_time()  # type: ignore[operator]
    with pytest.raises(DeadlineExceeded):
        with c.scope():
            await anyio.sleep(10)
    cancel()
    assert type(c.err()) is DeadlineExceeded  # cancel() after the deadline changes nothing


@pytest.mark.parametrize(
    ("seconds", "exc", "msg"),
    [
        (math.nan, ValueError, r"^with_timeout: seconds must not be NaN$"),
        ("1", TypeError, r"^with_timeout: seconds must be a number of seconds, not str$"),
        (True, TypeError, r"^with_timeout: seconds must be a number of seconds, not bool$"),
        (None, TypeError, r"^with_timeout: seconds must be a number of seconds, not NoneType$"),
    ],
)
async def test_with_timeout_bad_input(seconds: Any, exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc, match=msg):
        with_timeout(background(), seconds)


async def test_with_deadline_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^with_deadline: when must not be NaN$"):
        with_deadline(background(), math.nan)
    with pytest.raises(TypeError, match=r"^with_deadline: when must be a number"):
        with_deadline(background(), "soon")  # type: ignore[arg-type]


def test_with_timeout_outside_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match=r"^asyncgo: no running event loop"):
        with_timeout(background(), 1)


# -- values ------------------------------------------------------------------------------


async def test_values_nearest_wins_and_inherit_through_every_kind() -> None:
    a = with_value(background(), "user", "alice")
    b, _ = with_cancel(a)
    c = with_value(b, "user", "bob")
    d = without_cancel(c)
    e, _ = with_timeout(d, 60)
    assert a.value("user") == "alice"
    assert b.value("user") == "alice"
    assert (c.value("user"), d.value("user"), e.value("user")) == ("bob", "bob", "bob")
    assert e.value("missing") is None
    assert e.value("missing", 42) == 42


async def test_value_keys_match_by_type_and_equality() -> None:
    """Go compares interface values: a key of another type never matches."""

    class Key:
        pass

    k1, k2 = Key(), Key()
    ctx = with_value(with_value(with_value(background(), 1, "int"), k1, "k1"), (1, 2), "tuple")
    assert ctx.value(1) == "int"
    assert ctx.value(1.0) is None
    assert ctx.value(True) is None
    assert ctx.value(k1) == "k1"
    assert ctx.value(k2) is None
    assert ctx.value((1, 2)) == "tuple"


async def test_with_value_bad_keys() -> None:
    with pytest.raises(TypeError, match=r"^with_value: key is not comparable: list is not hash"):
        with_value(background(), [1], "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^with_value: nil key"):
        with_value(background(), None, "v")


async def test_with_value_is_cancelled_with_its_parent() -> None:
    parent, cancel = with_cancel(background())
    ctx = with_value(parent, "k", "v")
    cancel()
    assert ctx.err() is parent.err()
    assert is_done(ctx)


# -- without_cancel ----------------------------------------------------------------------


async def test_without_cancel() -> None:
    parent, cancel = with_timeout(with_value(background(), "k", "v"), 0.01)
    detached = without_cancel(parent)
    child, cancel_child = with_cancel(detached)
    await parent.wait()
    assert type(parent.err()) is DeadlineExceeded
    assert (detached.err(), detached.cause(), detached.deadline()) == (None, None, None)
    assert detached.value("k") == "v"
    assert not is_done(detached)
    assert child.err() is None
    cancel_child()  # its own children can still be cancelled
    assert type(child.err()) is Canceled
    assert detached.err() is None
    own, _ = with_timeout(detached, 60)  # and get deadlines of their own
    d = own.deadline()
    assert d is not None and d > anyio.current_time() + 50


# -- with_* as context managers ------------------------------------------------------------


async def test_with_results_unpack_and_cancel_on_exit() -> None:
    pair = with_timeout(background(), 60)
    assert len(pair) == 2
    ctx, cancel = pair
    assert callable(cancel)
    with with_cancel(background()) as c1:
        assert isinstance(c1, Context)
        assert c1.err() is None
    assert type(c1.err()) is Canceled
    with pytest.raises(KeyError):
        with with_timeout(background(), 60) as c2:
            raise KeyError("x")
    assert type(c2.err()) is Canceled
    with with_cancel_cause(background()) as c3:
        pass
    assert type(c3.err()) is Canceled
    with with_deadline(background(), anyio.current_time() + 60) as c4:
        pass
    assert type(c4.err()) is Canceled
    cancel()


# -- after_func ------------------------------------------------------------------------------


async def test_after_func_runs_once_after_the_tree_is_done() -> None:
    parent, cancel = with_cancel(background())
    child, _ = with_cancel(parent)
    seen: list[Any] = []
    stop = after_func(child, lambda: seen.append((parent.err(), child.err())))
    assert seen == []
    cancel()
    assert seen == [(parent.err(), parent.err())]
    cancel()
    assert len(seen) == 1
    assert stop() is False


async def test_after_func_stop() -> None:
    ctx, cancel = with_cancel(background())
    seen: list[int] = []
    stop = after_func(ctx, lambda: seen.append(1))
    assert stop() is True
    assert stop() is False
    cancel()
    assert seen == []


async def test_after_func_on_a_done_context_runs_at_once() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    seen: list[int] = []
    stop = after_func(ctx, lambda: seen.append(1))
    assert seen == [1]
    assert stop() is False


async def test_after_func_on_a_context_that_is_never_done() -> None:
    seen: list[int] = []
    stop = after_func(without_cancel(background()), lambda: seen.append(1))
    assert stop() is True  # Go: stopping it stopped f from ever running
    assert stop() is False
    assert seen == []


async def test_after_func_at_the_deadline() -> None:
    ctx, _ = with_timeout(background(), 0.01)
    fired = anyio.Event()
    after_func(ctx, fired.set)
    with anyio.fail_after(10):
        await fired.wait()
    assert type(ctx.err()) is DeadlineExceeded


async def test_after_func_callbacks_run_in_registration_order() -> None:
    ctx, cancel = with_cancel(background())
    seen: list[int] = []
    for i in range(5):
        after_func(ctx, lambda i=i: seen.append(i))
    cancel()
    assert seen == [0, 1, 2, 3, 4]


async def test_after_func_stop_inside_a_callback_of_the_same_cancellation() -> None:
    # Go starts every AfterFunc of a cancellation before any runs: once the context
    # is done, stop() returns False and the other fn still runs -- on the same
    # context, and on a descendant reached by the same walk.
    ctx, cancel = with_cancel(background())
    child, cancel_child = with_cancel(ctx)
    seen: list[tuple[str, bool]] = []
    stops: list[Callable[[], bool]] = []
    stops.append(after_func(ctx, lambda: seen.append(("a", stops[1]()))))
    stops.append(after_func(ctx, lambda: seen.append(("b", stops[2]()))))
    stops.append(after_func(child, lambda: seen.append(("c", True))))
    cancel()
    assert sorted(seen) == [("a", False), ("b", False), ("c", True)]
    assert [stop() for stop in stops] == [False, False, False]
    cancel_child()


async def test_after_func_stop_from_a_callback_of_another_context() -> None:
    # A callback of one cancellation may still stop an fn of a context that is not done.
    ctx, cancel = with_cancel(background())
    other, cancel_other = with_cancel(background())
    seen: list[object] = []
    stop_other = after_func(other, lambda: seen.append("other"))
    after_func(ctx, lambda: seen.append(stop_other()))
    cancel()
    cancel_other()
    assert seen == [True]


async def test_after_func_bad_input() -> None:
    ctx, _ = with_cancel(background())
    with pytest.raises(TypeError, match=r"^after_func: fn must be callable, not int$"):
        after_func(ctx, 42)  # type: ignore[arg-type]

    async def coro_fn() -> None:
        pass

    with pytest.raises(TypeError, match=r"^after_func: fn must be a plain \(sync\) function"):
        after_func(ctx, coro_fn)


async def test_after_func_exception_is_reported_and_stops_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[Any] = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)
    ctx, cancel = with_cancel(background())
    child, _ = with_cancel(ctx)
    seen: list[int] = []

    def bad() -> None:
        raise ZeroDivisionError("oops")

    after_func(ctx, bad)
    after_func(child, lambda: seen.append(1))
    cancel()  # does not raise
    assert seen == [1]
    assert is_done(child)
    assert len(reported) == 1
    assert type(reported[0].exc_value) is ZeroDivisionError
    assert reported[0].object is bad
    assert "after_func" in reported[0].err_msg


# -- scope() -----------------------------------------------------------------------------


async def test_scope_raises_canceled_when_the_context_is_cancelled() -> None:
    ctx, cancel = with_cancel(background())
    reached = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_soon, cancel)
        with pytest.raises(Canceled) as info:
            with ctx.scope():
                await anyio.sleep_forever()
            reached.append("after")  # pragma: no cover
    assert info.value is ctx.err()
    assert info.value.__cause__ is None  # the cause is the error itself
    assert info.value.__suppress_context__
    assert reached == []


async def _cancel_soon(cancel: Any, cause: BaseException | None = None) -> None:
    await anyio.wait_all_tasks_blocked()
    if cause is None:
        cancel()
    else:
        cancel(cause)


async def test_scope_chains_the_cause() -> None:
    ctx, cancel = with_cancel_cause(background())
    boom = ConnectionResetError("peer went away")
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_soon, cancel, boom)
        with pytest.raises(Canceled) as info:
            with ctx.scope():
                await anyio.sleep_forever()
    assert info.value.__cause__ is boom
    assert ctx.cause() is boom


@pytest.mark.parametrize(
    "how", ["deadline", "cancel", "parent-cancel", "parent-scope", "parent-deadline"]
)
async def test_waits_given_the_ctx_see_its_end_first_inside_its_scope(how: str) -> None:
    # A handler runs inside its request's ctx.scope() (FastAPI, aiohttp) and selects
    # on ctx.done() (DESIGN: Integrations): when the ctx ends, the select returns
    # the done case -- it is not cancelled by the scope -- so the handler can answer
    # by itself; its next await is cancelled, and the block raises ctx.err(). Many
    # rounds with tiny timeouts: the deadline and the scope used to race.
    from asyncgo.sync import Semaphore

    sem = Semaphore(1)
    await sem.acquire()
    reached = 0
    in_time = False
    for i in range(40):
        if how == "parent-deadline":  # the scope's deadline is the parent's, inherited
            root, cancel_root = with_timeout(background(), 0.0005 * (1 + i % 4))
        else:
            root, cancel_root = with_cancel(background())
        if how == "deadline":
            ctx, cancel = with_timeout(root, 0.0005 * (1 + i % 4))
        else:
            ctx, cancel = with_cancel(root)
        stop = cancel_root if how in ("parent-cancel", "parent-scope") else cancel
        # parent-scope: the scope is the parent's, the waits are on the child: every
        # done channel of the subtree is closed before any scope is cancelled
        scoped = root if how in ("parent-scope", "parent-deadline") else ctx
        seen: list[object] = []
        with pytest.raises((Canceled, DeadlineExceeded)) as info:
            with scoped.scope():
                async with anyio.create_task_group() as tg:
                    if how not in ("deadline", "parent-deadline"):
                        tg.start_soon(_cancel_soon, stop)
                    ch: Chan[int] = Chan()
                    # (a slow machine may get here after the deadline: then the
                    # scope is cancelled already. done() notices a passed deadline;
                    # from this check to the select's park there is no await.)
                    done = ctx.done()
                    in_time = ctx.err() is None
                    reached += in_time
                    r = await select(recv(ch), recv(done))
                    seen.append(r.index)
                    try:
                        await sem.acquire(1, ctx)
                    except (Canceled, DeadlineExceeded) as exc:
                        seen.append(exc)
                    try:
                        await gotime.sleep(10, ctx)
                    except (Canceled, DeadlineExceeded) as exc:
                        seen.append(exc)
                    await anyio.sleep(10)  # cancelled by the scope
                    seen.append("not cancelled")
        assert info.value is ctx.err()
        assert seen == ([1, ctx.err(), ctx.err()] if in_time else [])
        cancel_root()
    assert reached >= 20
    sem.release()


@pytest.mark.parametrize("budget", [1, 2, 256])
async def test_a_new_tasks_select_on_done_parks_without_yielding_first(budget: int) -> None:
    """Found by a flaky test: a task's first park used the fast path's budget, so one
    new task in 256 yielded before its select on ``ctx.done()`` parked; a cancel made
    meanwhile (here: as soon as the task says it is about to wait) then cut the select
    with the scope's cancellation instead of returning the done case."""
    from asyncgo import _backend

    ctx, cancel = with_cancel(background())
    seen: list[object] = []
    about_to_wait = anyio.Event()

    async def handler() -> None:
        try:
            with ctx.scope():
                about_to_wait.set()
                _backend.FAST.budget = budget  # (1: the next budgeted check yields)
                r = await select(recv(ctx.done()))
                seen.append(r.index)
        except Canceled as exc:
            seen.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(handler)
        await about_to_wait.wait()
        cancel()
    assert seen == [0]


async def test_a_collected_childs_done_channel_closes_before_the_parents_scope_is_cancelled() -> (
    None
):
    # A child context dropped while its done channel is still waited on: its parent
    # closes that channel (as an orphan) in the same first pass as its own.
    import gc

    root, cancel_root = with_cancel(background())
    seen: list[object] = []
    with pytest.raises(Canceled):
        with root.scope():
            child, cancel_child = with_cancel(root)
            done = child.done()
            del child, cancel_child
            gc.collect()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_soon, cancel_root)
                r = await select(recv(Chan[int]()), recv(done))
                seen.append(r.index)
                await anyio.sleep(10)
    assert seen == [1]


@pytest.mark.parametrize("armed", ["before", "inside", "never"])
async def test_the_scopes_deadline_is_the_backends_effective_deadline(armed: str) -> None:
    # Code inside passes the remaining time on (threads, sockets): anyio's effective
    # deadline is the ctx's -- SCOPE_MARGIN later once the ctx's own timer is armed,
    # which then ends the scope (docs/context.md).
    from asyncgo._context import SCOPE_MARGIN

    ctx, cancel = with_timeout(background(), 3600)
    if armed == "before":
        ctx.done()
    with ctx.scope() as scope:
        if armed == "inside":
            ctx.done()
        d = ctx.deadline()
        assert d is not None and scope.deadline == d
        margin = 0.0 if armed == "never" else SCOPE_MARGIN
        assert anyio.current_effective_deadline() == d + margin
        scope.deadline = d + 60  # never later than the ctx's
        assert scope.deadline == d and anyio.current_effective_deadline() == d + margin
    cancel()


@pytest.mark.parametrize("armed", [False, True])
async def test_a_deadline_passed_unnoticed_cancels_the_body_at_its_first_checkpoint(
    armed: bool,
) -> None:
    # The same on every backend, whether or not the ctx's timer was armed (and could
    # not run: the loop was blocked past the deadline).
    import time

    ctx, cancel = with_timeout(background(), 0.005)
    done = ctx.done() if armed else None
    time.sleep(0.02)  # blocks the loop: the deadline passes, no timer runs
    seen: list[int] = []
    with pytest.raises(DeadlineExceeded) as info:
        with ctx.scope():
            r = await select(recv(Chan[int]()), recv(done))
            seen.append(r.index)
    assert seen == [] and info.value is ctx.err()
    cancel()


async def test_a_deadline_never_ends_the_ctx_before_the_clock_reaches_it() -> None:
    # uvloop rounds timers to whole milliseconds: its timer may fire early; the ctx
    # re-arms then, so err() and wait() agree with the clock (as anyio's scopes do).
    import random

    rnd = random.Random(7)
    for _ in range(100):
        ctx, cancel = with_timeout(background(), rnd.uniform(0.0001, 0.003))
        await ctx.wait()
        assert anyio.current_time() >= ctx.deadline()  # type: ignore[operator]
        cancel()


async def test_a_deadline_set_on_the_scope_itself_still_works() -> None:
    ctx, cancel = with_timeout(background(), 3600)
    with ctx.scope() as scope:
        assert scope.deadline == ctx.deadline()
        scope.deadline = anyio.current_time() + 0.01  # the scope's own, earlier
        assert scope.deadline < ctx.deadline()  # type: ignore[operator]
        await anyio.sleep(10)
    assert scope.cancelled_caught and ctx.err() is None  # ended quietly: not the ctx
    cancel()


async def test_scope_raises_deadline_exceeded_at_the_deadline() -> None:
    # t0 before the deadline is set: read after it, a stall between the two lines (a
    # loaded machine) would shorten the measured wait below the timeout.
    t0 = anyio.current_time()
    ctx, _ = with_timeout(background(), 0.05)
    with pytest.raises(DeadlineExceeded) as info:
        with ctx.scope() as scope:
            assert scope.deadline == ctx.deadline()
            await anyio.sleep(10)
    elapsed = anyio.current_time() - t0
    assert 0.04 <= elapsed < 5
    assert info.value is ctx.err()
    assert isinstance(info.value, TimeoutError)


async def test_scope_of_a_done_context_cancels_at_the_first_checkpoint() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    steps = []
    with pytest.raises(Canceled):
        with ctx.scope() as scope:
            assert scope.cancel_called
            steps.append("entered")
            await anyio.lowlevel.checkpoint()
            steps.append("not reached")  # pragma: no cover
    assert steps == ["entered"]


async def test_scope_that_finishes_its_body_ends_normally() -> None:
    ctx, cancel = with_timeout(background(), 60)
    with ctx.scope() as scope:
        await anyio.sleep(0)
    assert not scope.cancelled_caught
    cancel()


async def test_scope_nested_contexts_the_earlier_deadline_wins() -> None:
    soon, _ = with_timeout(background(), 0.05)
    late, _ = with_timeout(background(), 30)
    for outer, inner in ((late, soon), (soon, late)):
        t0 = anyio.current_time()
        with pytest.raises(DeadlineExceeded) as info:
            with outer.scope():
                with inner.scope():
                    await anyio.sleep(10)
        assert anyio.current_time() - t0 < 5
        assert info.value is soon.err()
        assert late.err() is None


async def test_scope_nested_cancel_of_the_outer_context() -> None:
    outer, cancel_outer = with_cancel(background())
    inner, _ = with_timeout(background(), 30)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_soon, cancel_outer)
        with pytest.raises(Canceled) as info:
            with outer.scope():
                with inner.scope():
                    await anyio.sleep_forever()
    assert info.value is outer.err()
    assert inner.err() is None


async def test_scope_lets_an_enclosing_cancellation_through() -> None:
    ctx, cancel = with_cancel(background())
    with anyio.CancelScope() as outer:
        with ctx.scope():
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert ctx.err() is None
    cancel()


async def test_scope_lets_other_exceptions_through() -> None:
    ctx, cancel = with_cancel(background())
    with pytest.raises(KeyError):
        with ctx.scope():
            cancel()
            raise KeyError("mine")


async def test_scope_cancelled_by_hand_behaves_like_a_cancel_scope() -> None:
    ctx, cancel = with_timeout(background(), 60)
    with ctx.scope() as scope:
        scope.cancel()
        await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert ctx.err() is None
    cancel()


async def test_scope_binds_current_and_restores_it() -> None:
    a, _ = with_cancel(background())
    b = with_value(a, "k", 1)
    assert current() is background()
    with a.scope():
        assert current() is a
        with b.scope():
            assert current() is b
            assert current().value("k") == 1
        assert current() is a
        with pytest.raises(KeyError):
            with b.scope():
                raise KeyError
        assert current() is a
    assert current() is background()


async def test_current_is_inherited_by_tasks_started_inside() -> None:
    ctx, _ = with_cancel(background())
    seen: list[Context] = []

    async def look() -> None:
        seen.append(current())

    with ctx.scope():
        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
    assert seen == [ctx]


async def test_a_scope_is_entered_once() -> None:
    ctx, cancel = with_cancel(background())
    s = ctx.scope()
    with s:
        pass
    with pytest.raises(RuntimeError, match=r"^a ctx.scope\(\) is entered once"):
        with s:
            pass
    cancel()


async def test_scope_of_background_is_a_plain_cancel_scope() -> None:
    with background().scope() as scope:
        assert scope.deadline == math.inf
        scope.cancel()
        await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_scope_cancelled_from_inside_its_body() -> None:
    ctx, cancel = with_cancel(background())
    with pytest.raises(Canceled):
        with ctx.scope():
            cancel()
            await anyio.sleep(10)


# -- threads -----------------------------------------------------------------------------


async def test_cancel_from_another_thread() -> None:
    parent, cancel = with_cancel_cause(background())
    child, _ = with_cancel(parent)
    boom = InterruptedError("from a thread")
    woken: list[Any] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, child, woken)
            await anyio.wait_all_tasks_blocked()
            threading.Thread(target=cancel, args=(boom,)).start()
    assert woken == [parent.err()]
    assert child.cause() is boom


async def test_cancel_from_a_worker_thread_is_seen_when_it_returns() -> None:
    ctx, cancel = with_cancel(background())
    await anyio.to_thread.run_sync(cancel)
    assert type(ctx.err()) is Canceled


async def test_cancel_from_another_thread_cancels_a_scope() -> None:
    ctx, cancel = with_cancel(background())
    with anyio.fail_after(10):
        with pytest.raises(Canceled):
            with ctx.scope():
                threading.Timer(0.01, cancel).start()
                await anyio.sleep_forever()


def _on_another_loop(backend: str, body: Any) -> BaseException | None:
    """Run ``await body()`` in a new event loop of *backend* (call in a worker thread);
    return what it raised."""
    try:
        anyio.run(body, backend=backend)
    except BaseException as exc:  # noqa: BLE001 - handed to the test to check
        return exc
    return None


@pytest.mark.parametrize("other", ["asyncio", "trio"])
@pytest.mark.parametrize("asked_here_first", [False, True], ids=["fresh", "done-asked-here"])
async def test_waiting_from_another_loop_raises_and_leaves_the_context_whole(
    other: str, asked_here_first: bool
) -> None:
    # Principle 4: a wait from another event loop raises, naming the misuse, instead
    # of waiting forever -- and it must not take the done channel away from the
    # context's own loop, whose cancel() still marks the subtree done and runs
    # after_func callbacks.
    ctx, cancel = with_cancel(background())
    child, _ = with_cancel(ctx)
    ran: list[int] = []
    after_func(child, lambda: ran.append(1))
    if asked_here_first:
        ctx.done()

    async def wait_there() -> None:
        with anyio.fail_after(5):
            await ctx.wait()

    def scope_there() -> BaseException | None:
        async def body() -> None:
            with ctx.scope():
                pass

        return _on_another_loop(other, body)

    err = await anyio.to_thread.run_sync(_on_another_loop, other, wait_there)
    assert isinstance(err, RuntimeError), repr(err)
    # the context's message, or (its done channel handed out already) the channel's
    assert "belongs to" in str(err) and "event loop" in str(err)
    err = await anyio.to_thread.run_sync(scope_there)
    assert isinstance(err, RuntimeError) and "ctx.scope()" in str(err), repr(err)
    cancel()
    assert ran == [1]
    with anyio.fail_after(5):
        await child.wait()
        await ctx.wait()


async def test_a_context_of_a_finished_loop_can_still_be_used() -> None:
    # Made on a loop that is over: not "another loop" any more (nothing else can
    # touch it), so a later loop may wait on it, as before.
    made: list[Any] = []

    async def make() -> None:
        made.extend(with_cancel(background()))

    await anyio.to_thread.run_sync(anyio.run, make)
    ctx, cancel = made
    cancel()
    with anyio.fail_after(5):
        await ctx.wait()
    assert type(ctx.err()) is Canceled


# -- garbage and leftovers ------------------------------------------------------------------


async def test_a_dropped_context_is_garbage_and_leaves_nothing_behind() -> None:
    parent, cancel = with_cancel(background())
    child = with_timeout(parent, 3600)[0]
    child.done()  # arms its deadline timer
    check_timers(1)
    timer = child._timer
    ref = weakref.ref(child)
    del child
    gc.collect()
    assert ref() is None
    assert not parent._kids  # unregistered from the parent
    check_timers(0)
    assert timer is not None and timer.cancelled()  # type: ignore[attr-defined]
    cancel()


async def test_a_finished_timeout_leaves_nothing_scheduled() -> None:
    ctx, cancel = with_timeout(background(), 0.01)
    ctx.done()
    await ctx.wait()
    assert ctx._timer is None
    check_timers(0)
    other, cancel_other = with_timeout(background(), 3600)
    other.done()
    timer = other._timer
    cancel_other()
    assert other._timer is None and timer is not None and timer.cancelled()  # type: ignore[attr-defined]
    check_timers(0)
    cancel()


async def test_no_task_per_context() -> None:
    from test_chan import other_tasks

    before = other_tasks()
    ctxs = [with_timeout(background(), 3600 + i) for i in range(500)]
    for ctx, _ in ctxs:
        ctx.done()
    new = other_tasks() - before
    assert len(new) <= 1  # asyncio: none (loop.call_at); trio: one shared timer task
    check_timers(500)
    for _, cancel in ctxs:
        cancel()
    check_timers(0)
    # Not a fixed sleep: under a stall that outlasts it, trio wakes this task in the
    # same batch as the (cancelled) timer task, in random order.
    await anyio.wait_all_tasks_blocked()
    left = other_tasks() - before
    # trio's timer task waits, parked, for the run's next timer (it ends with the run)
    assert len(left) <= 1
    if left:
        from asyncgo._backend._timers import TrioRuntime, runtime_or_none

        rt = runtime_or_none()
        assert type(rt) is TrioRuntime and rt.idle() and rt.serving


async def test_a_waiter_outlives_its_dropped_context() -> None:
    """The done channel still closes when the parent is cancelled (Go semantics)."""
    parent, cancel = with_cancel(background())
    done = with_cancel(parent)[0].done()  # the context itself is garbage at once
    gc.collect()
    woken: list[Any] = []

    async def wait_on(d: Any) -> None:
        woken.append(await d.recv_ok())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_on, done)
            await anyio.wait_all_tasks_blocked()
            cancel()
    assert woken == [(None, False)]


async def test_a_waiter_outlives_its_dropped_context_until_its_deadline() -> None:
    done = with_timeout(background(), 0.02)[0].done()
    gc.collect()
    with anyio.fail_after(10):
        assert await done.recv_ok() == (None, False)
    check_timers(0)


async def test_after_func_of_a_dropped_context_still_runs() -> None:
    parent, cancel = with_cancel(background())
    seen: list[int] = []
    after_func(with_cancel(parent)[0], lambda: seen.append(1))  # ctx and stop dropped
    gc.collect()
    cancel()
    assert seen == [1]


@pytest.mark.parametrize("how", ["cancel", "deadline"])
@pytest.mark.parametrize("depth", [2, 3, 5])
async def test_a_dropped_chain_still_fires_what_its_last_node_owes(how: str, depth: int) -> None:
    """Several dropped levels are collected together, in whatever order the collector
    finalizes them: what the last one owes (a done channel someone waits on, an
    after_func) must still fire when the live root is cancelled -- or, when the
    first dropped level set a deadline, at that deadline."""
    root, cancel_root = with_cancel(background())
    seen: list[str] = []

    def build() -> Any:
        ctx: Any = with_timeout(root, 0.02)[0] if how == "deadline" else with_cancel(root)[0]
        for _ in range(depth - 1):
            ctx = with_cancel(ctx)[0]
        after_func(ctx, lambda: seen.append("fired"))
        return ctx.done()

    done = build()  # every context of the chain is garbage now
    gc.collect()
    if how == "cancel":
        cancel_root()
    with anyio.fail_after(10):
        assert await done.recv_ok() == (None, False)
    assert seen == ["fired"]
    cancel_root()
    check_timers(0)


async def test_repr() -> None:
    ctx, cancel = with_timeout(background(), 60)
    assert repr(ctx).startswith("<Context with_timeout deadline=")
    assert "active" in repr(ctx)
    cancel()
    assert "done: Canceled" in repr(ctx)
    assert "key='k'" in repr(with_value(ctx, "k", 1))


def test_asyncio_loop_time_is_anyio_time() -> None:
    """The contract's clock: on asyncio, anyio.current_time() is loop.time()."""

    async def main() -> None:
        ctx, _ = with_timeout(background(), 1)
        loop = asyncio.get_running_loop()
        d = ctx.deadline()
        assert d is not None and loop.time() <= d <= loop.time() + 1

    anyio.run(main, backend="asyncio")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_cancel_and_err_after_the_event_loop_is_gone(backend: str) -> None:
    """With its loop closed, nothing else can touch the context: cancel() acts at once."""

    async def make() -> Any:
        ctx, cancel = with_cancel(background())
        ctx.done()
        timed, _ = with_timeout(background(), 0.001)
        timed.done()
        return ctx, cancel, timed

    ctx, cancel, timed = anyio.run(make, backend=backend)
    assert ctx.err() is None
    cancel()
    assert type(ctx.err()) is Canceled
    assert is_done(ctx)
    import time

    time.sleep(0.01)
    assert type(timed.err()) is DeadlineExceeded  # noticed from the clock, loop or not


@pytest.mark.parametrize("first", ["asyncio", "trio"])
@pytest.mark.parametrize("later", ["asyncio", "uvloop", "trio"])
def test_timed_context_waited_on_in_a_later_loop(first: str, later: str) -> None:
    """A deadline context made in a loop that is over can still be waited on later.

    The later loop takes it over (docs/context.md, threads) and sees its end through
    cancel(). Arming its timer on the closed asyncio loop raised asyncio's bare
    "Event loop is closed"; made on trio and waited on by asyncio, it failed outside
    the dead run (trio then trio passed before too).
    """

    async def make() -> Any:
        return with_timeout(background(), 30)

    ctx, cancel = anyio.run(make, backend=first)
    seen: list[bool] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                seen.append((await ctx.done().recv_ok())[1])

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await gotime.sleep(0, ctx)  # a sleep bound to it arms nothing either
            cancel()
        assert type(ctx.err()) is Canceled

    backend, options = ("asyncio", {"use_uvloop": True}) if later == "uvloop" else (later, {})
    anyio.run(main, backend=backend, backend_options=options)
    assert seen == [False]


async def test_repr_tells_a_passed_deadline_without_ending_the_context() -> None:
    # It said "active" until something called err(); a far deadline printed 300 digits.
    ctx, cancel = with_timeout(background(), 0.001)
    await anyio.sleep(0.01)  # (the loop's clock has passed the deadline after this)
    assert "deadline passed" in repr(ctx)
    assert ctx._cn is not None and ctx._cn._err is None  # repr did not end it
    assert isinstance(ctx.err(), DeadlineExceeded)
    assert "done: DeadlineExceeded" in repr(ctx)
    cancel()
    far, cancel = with_timeout(background(), 1e300)
    assert "deadline=1e+300 active" in repr(far) and len(repr(far)) < 100
    cancel()

"""Contexts across threads and loops: a context made before any event loop ran and
cancelled from another thread, a context of a loop running in another thread given to
`Group` / `after_func`, err() read from another thread, and callbacks that raise a
BaseException during the cancellation walk. On asyncio, uvloop and trio.

Deterministic: a cancel() from another thread is awaited (``anyio.to_thread``), and
what it hands to the loop is waited for with a generous ``fail_after`` (a hang is a
failure, not a stuck run); no wall-clock bound is asserted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import anyio
import pytest

from asyncgo import (
    Canceled,
    Context,
    DeadlineExceeded,
    Group,
    after_func,
    background,
    with_cancel,
    with_cancel_cause,
    with_timeout,
)

pytestmark = pytest.mark.anyio

LONG = 30.0  # a wait that must be cut short
BOUND = 10.0  # generous: only a hang reaches it


def _no_loop_here() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise AssertionError("this fixture must run outside the event loop")


@pytest.fixture
def app() -> tuple[Context, Callable[[], None]]:
    """An app-wide context made before any event loop runs (a sync fixture: like one
    made at module level), so it belongs to no loop."""
    _no_loop_here()
    return with_cancel(background())


@pytest.fixture
def app_chain() -> tuple[Context, Callable[[], None], Context]:
    """A root made outside any loop, and a child of it made outside any loop too."""
    _no_loop_here()
    root, cancel = with_cancel(background())
    mid, _ = with_cancel(root)
    return root, cancel, mid


async def _until(cond: Callable[[], bool]) -> None:
    with anyio.fail_after(BOUND):
        while not cond():
            await anyio.sleep(0.001)


# -- a context made before any loop, cancelled from another thread ---------------------


async def test_unbound_after_func_runs_on_loop_thread(
    app: tuple[Context, Callable[[], None]],
) -> None:
    ctx, cancel = app
    where: list[int] = []
    after_func(ctx, lambda: where.append(threading.get_ident()))
    await anyio.to_thread.run_sync(cancel)
    await _until(lambda: bool(where))
    assert where == [threading.get_ident()]
    assert isinstance(ctx.err(), Canceled)


async def test_unbound_group_ends_when_cancelled_from_thread(
    app: tuple[Context, Callable[[], None]],
) -> None:
    ctx, cancel = app
    out: list[str] = []
    with anyio.fail_after(BOUND):
        try:
            async with Group(ctx) as g:
                await g.go(anyio.sleep_forever)
                await anyio.to_thread.run_sync(cancel)
                await anyio.sleep(LONG)
            out.append("ended normally")
        except Canceled:
            out.append("Canceled")
    assert out == ["Canceled"]
    assert g.ctx.err() is ctx.err()


async def test_unbound_child_scope_cut_short_from_thread(
    app: tuple[Context, Callable[[], None]],
) -> None:
    root, shutdown = app
    with anyio.fail_after(BOUND):
        with pytest.raises(Canceled):
            with with_cancel(root) as ctx, ctx.scope():  # a request's ctx, made in the loop
                await anyio.to_thread.run_sync(shutdown)
                await anyio.sleep(LONG)
    assert ctx.err() is root.err()


async def test_unbound_chain_hands_bound_grandchild_to_loop(
    app_chain: tuple[Context, Callable[[], None], Context],
) -> None:
    root, cancel, mid = app_chain
    child, cancel_child = with_cancel_cause(mid)  # made in the loop: belongs to it
    where: list[int] = []
    after_func(child, lambda: where.append(threading.get_ident()))
    with anyio.fail_after(BOUND):
        with pytest.raises(Canceled):
            with child.scope():
                await anyio.to_thread.run_sync(cancel)
                assert isinstance(mid.err(), Canceled)  # marked done on the cancelling thread
                await anyio.sleep(LONG)
    assert where == [threading.get_ident()]
    assert child.err() is root.err() and child.cause() is root.err()
    cancel_child()


# -- a context of a loop that runs in another thread -------------------------------------


@pytest.fixture
def foreign_ctx() -> Iterator[Context]:
    """A context made on an asyncio loop that keeps running in another thread."""
    box: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        async def main() -> None:
            box["ctx"], box["cancel"] = with_cancel(background())
            box["loop"] = asyncio.get_running_loop()
            box["stop"] = asyncio.Event()
            ready.set()
            await box["stop"].wait()

        asyncio.run(main())

    th = threading.Thread(target=run, daemon=True)
    th.start()
    assert ready.wait(BOUND)
    try:
        yield box["ctx"]
    finally:
        box["loop"].call_soon_threadsafe(box["cancel"])
        box["loop"].call_soon_threadsafe(box["stop"].set)
        th.join(BOUND)


async def test_group_of_ctx_from_loop_in_other_thread_raises(foreign_ctx: Context) -> None:
    g = Group(foreign_ctx)
    with anyio.fail_after(BOUND):
        with pytest.raises(RuntimeError, match=r"Group\(ctx\).*another thread"):
            async with g:
                pass


async def test_after_func_on_ctx_of_loop_in_other_thread_raises(foreign_ctx: Context) -> None:
    ran: list[int] = []
    with pytest.raises(RuntimeError, match=r"after_func\(\).*another thread"):
        after_func(foreign_ctx, lambda: ran.append(1))
    assert ran == []


# -- err() read from another thread --------------------------------------------------------


async def test_err_from_other_thread_is_the_instance_the_loop_keeps() -> None:
    c, cancel = with_timeout(background(), -1)  # already past; nobody has looked yet
    child, cancel_child = with_cancel(c)
    box: list[object] = []
    th = threading.Thread(target=lambda: box.append(c.err()))
    th.start()
    th.join()  # (the loop is blocked meanwhile: the hand-over runs on its next turn)
    assert isinstance(box[0], DeadlineExceeded)
    await _until(lambda: c._cn is not None and c._cn._err is not None)
    assert c.err() is box[0]
    assert child.err() is box[0]
    cancel_child()
    cancel()


async def test_first_cancel_wins_even_while_on_its_way_to_the_loop() -> None:
    # cancel(X) from another thread has returned, but the loop has not run it yet: a
    # later cancel(Y) on the loop's thread changes nothing (Go: the first cancel wins).
    ctx, cancel = with_cancel_cause(background())
    x, y = ValueError("X"), KeyError("Y")
    th = threading.Thread(target=cancel, args=(x,))
    th.start()
    th.join()  # (the loop is blocked meanwhile: the hand-over is still queued)
    cancel(y)
    assert type(ctx.err()) is Canceled
    assert ctx.cause() is x
    with anyio.fail_after(BOUND):
        await ctx.wait()
    assert ctx.cause() is x


async def test_first_cancel_from_a_thread_wins_over_the_parents_walk() -> None:
    # The child's own cancel(X), made first (off the loop), is still on its way when the
    # parent is cancelled on the loop: the child, and its subtree, keep X as cause.
    parent, cancel_parent = with_cancel_cause(background())
    child, cancel_child = with_cancel_cause(parent)
    grandchild, cancel_grandchild = with_cancel(child)
    x, p = ValueError("X"), KeyError("P")
    th = threading.Thread(target=cancel_child, args=(x,))
    th.start()
    th.join()
    cancel_parent(p)
    assert parent.cause() is p
    assert child.cause() is x
    assert grandchild.cause() is x
    assert grandchild.err() is child.err()
    assert child.err() is not parent.err()
    await anyio.sleep(0)
    await anyio.sleep(0)  # the hand-over ran: it changed nothing
    assert child.cause() is x
    cancel_grandchild()


# -- a BaseException raised by a callback does not stop the walk --------------------------


def _raise(exc: BaseException) -> Callable[[], NoReturn]:
    def fn() -> NoReturn:
        raise exc

    return fn


async def test_after_func_baseexception_runs_every_other_callback() -> None:
    c, cancel = with_cancel(background())
    ran: list[str] = []
    after_func(c, _raise(KeyboardInterrupt()))
    stop2 = after_func(c, lambda: ran.append("second"))
    with pytest.raises(KeyboardInterrupt):
        cancel()
    assert ran == ["second"]
    assert stop2() is False


async def test_after_func_baseexception_still_cancels_scope() -> None:
    c, cancel = with_cancel(background())
    after_func(c, _raise(SystemExit(1)))
    with anyio.fail_after(BOUND):
        with pytest.raises(Canceled):
            with c.scope():
                with pytest.raises(SystemExit):
                    cancel()
                await anyio.sleep(LONG)


async def test_after_func_baseexception_in_subtree_walk() -> None:
    parent, cancel = with_cancel(background())
    kids = [with_cancel(parent) for _ in range(3)]
    ran: list[int] = []
    after_func(parent, _raise(KeyboardInterrupt()))
    for i, (k, _) in enumerate(kids):
        after_func(k, lambda i=i: ran.append(i))  # type: ignore[misc]
    with anyio.fail_after(BOUND):
        with pytest.raises(Canceled):
            with kids[0][0].scope():
                with pytest.raises(KeyboardInterrupt):
                    cancel()
                await anyio.sleep(LONG)
    assert sorted(ran) == [0, 1, 2]
    for _, cancel_kid in kids:
        cancel_kid()


# -- bad input ------------------------------------------------------------------------------


async def test_bad_cause_raises_on_a_done_context_too() -> None:
    c, cancel = with_cancel_cause(background())
    cancel()
    with pytest.raises(TypeError, match="cause"):
        cancel("not an exception")  # type: ignore[arg-type]


# -- a context kept from one event loop run to the next ------------------------------------
# (plain test functions: each runs its own loops, one after the other, in this thread)


def _made_in_trio_run(seconds: float, start: float) -> tuple[Context, Callable[[], None]]:
    """A with_timeout context made in a trio run whose (mock) clock reads *start*."""
    import trio
    import trio.testing

    box: list[tuple[Context, Callable[[], None]]] = []

    async def make() -> None:
        box.append(with_timeout(background(), seconds))

    clock = trio.testing.MockClock()
    clock.jump(start)
    trio.run(make, clock=clock)
    return box[0]


@pytest.mark.parametrize("start", [0.0, 1000.0], ids=["next-run-ahead", "next-run-behind"])
def test_deadline_kept_across_trio_runs_scope(start: float) -> None:
    """trio gives each run its own clock: the deadline keeps its remaining time."""
    import trio
    import trio.testing

    c, cancel = _made_in_trio_run(1.0, start)
    out: list[object] = []

    async def use() -> None:
        t0 = trio.current_time()
        with trio.fail_after(100):
            with c.scope() as sc:
                await trio.sleep(0.5)  # well before the deadline
            out.append(sc.cancelled_caught)
            out.append(trio.current_time() - t0)
            out.append(c.err())
            out.append(c.deadline() - t0)  # type: ignore[operator]
            try:
                with c.scope():
                    await trio.sleep(10)
            except DeadlineExceeded:
                out.append("DeadlineExceeded")
            out.append(trio.current_time() - t0)

    clock = trio.testing.MockClock(autojump_threshold=0)
    clock.jump(1000.0 - start)  # the other clock: ahead of or behind the first run's
    trio.run(use, clock=clock)
    assert out[0] is False and out[1] == pytest.approx(0.5) and out[2] is None, out
    assert out[3] == pytest.approx(1.0), out
    assert out[4] == "DeadlineExceeded" and out[5] == pytest.approx(1.0), out
    assert isinstance(c.err(), DeadlineExceeded)
    cancel()


def test_deadline_kept_across_trio_runs_wait() -> None:
    import trio
    import trio.testing

    c, cancel = _made_in_trio_run(1.0, 1000.0)
    out: list[object] = []

    async def use() -> None:
        t0 = trio.current_time()
        with trio.move_on_after(100) as ms:  # (virtual time: instant on a hang)
            await c.wait()
        out.append(ms.cancelled_caught)
        out.append(trio.current_time() - t0)

    trio.run(use, clock=trio.testing.MockClock(autojump_threshold=0))
    assert out[0] is False and out[1] == pytest.approx(1.0), out
    assert isinstance(c.err(), DeadlineExceeded)
    cancel()


def test_deadline_kept_from_asyncio_to_trio() -> None:
    import trio

    async def make() -> tuple[Context, Callable[[], None]]:
        return with_timeout(background(), 60)

    c, cancel = asyncio.run(make())
    out: list[object] = []

    async def use() -> None:
        with c.scope() as sc:
            await trio.sleep(0)
        out.append(sc.cancelled_caught)
        out.append(c.deadline() - trio.current_time())  # type: ignore[operator]

    trio.run(use)  # (trio's clock has a random offset from the monotonic clock)
    assert out[0] is False and 0 < out[1] <= 60, out  # type: ignore[operator]
    assert c.err() is None
    cancel()


def test_a_paused_loop_keeps_its_context_and_its_deadline() -> None:
    """A context of a loop that is only paused is not taken over by another loop.

    Between two ``Runner.run()`` calls (pytest-asyncio's module and session loops,
    between tests) the loop is stopped but not over: another loop entering the
    context's scope took the context over and dropped its armed timer, and the
    paused loop's waiter never saw the deadline.
    """
    runner = asyncio.Runner()
    box: dict[str, Any] = {}

    async def setup() -> None:
        ctx, cancel = with_timeout(background(), 0.2)

        async def waiter() -> str:
            await ctx.wait()  # arms the deadline timer on this loop
            return type(ctx.err()).__name__

        box.update(ctx=ctx, cancel=cancel, task=asyncio.create_task(waiter()))
        await asyncio.sleep(0)

    async def other_loop() -> None:
        with box["ctx"].scope():
            await asyncio.sleep(0)

    async def back() -> str:
        return await asyncio.wait_for(asyncio.shield(box["task"]), 10)  # (a hang: the bug)

    try:
        runner.run(setup())
        asyncio.run(other_loop())
        assert runner.run(back()) == "DeadlineExceeded"
    finally:
        runner.close()

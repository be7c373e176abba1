"""Channels: DESIGN.md "Channels" and issue #2, rule by rule, on asyncio, uvloop and trio.

Racy states are reached with ``anyio.wait_all_tasks_blocked()``, never with
``sleep()``, and nothing here asserts wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _guards import in_thread
from _mypy import run_mypy

from asyncgo import (
    Canceled,
    Chan,
    ChanClosed,
    RecvChan,
    SendChan,
    WouldBlock,
    background,
    debug,
    recv,
    select,
    send,
    with_cancel,
)

pytestmark = pytest.mark.anyio

Cancelled = anyio.get_cancelled_exc_class


# -- helpers ---------------------------------------------------------------------


async def parked(tg: anyio.abc.TaskGroup, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Start ``fn(*args)`` and return once it (and every other task) is blocked."""
    tg.start_soon(fn, *args)
    await anyio.wait_all_tasks_blocked()


async def recv_into(ch: RecvChan[Any], out: list[Any]) -> None:
    out.append(await ch.recv())


async def recv_ok_into(ch: RecvChan[Any], out: list[Any]) -> None:
    out.append(await ch.recv_ok())


async def send_then_note(ch: SendChan[Any], value: Any, out: list[Any]) -> None:
    await ch.send(value)
    out.append(value)


async def recv_in_cancel_scope(
    ch: RecvChan[Any], out: list[Any], *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        out.append(await ch.recv())


async def send_in_cancel_scope(
    ch: SendChan[Any],
    value: Any,
    out: list[Any],
    *,
    task_status: anyio.abc.TaskStatus[anyio.CancelScope],
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        await ch.send(value)
        out.append(value)


def other_tasks() -> set[object]:
    """Every task of the running event loop except the current one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio

        found: set[object] = set()
        stack = [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            found.add(task)
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        found.discard(trio.lowlevel.current_task())
        return found
    return set(asyncio.all_tasks(loop)) - {asyncio.current_task()}


# -- construction and introspection ----------------------------------------------


async def test_unbuffered_by_default() -> None:
    ch = Chan[int]()
    assert (ch.cap, len(ch), ch.closed) == (0, 0, False)


async def test_buffered_len_cap_closed() -> None:
    ch = Chan[str](3)
    assert (ch.cap, len(ch), ch.closed) == (3, 0, False)
    await ch.send("a")
    ch.send_nowait("b")
    assert (ch.cap, len(ch)) == (3, 2)
    ch.close()
    assert (ch.cap, len(ch), ch.closed) == (3, 2, True)
    assert await ch.recv() == "a"
    assert len(ch) == 1


def test_generic_subscription_works_at_runtime() -> None:
    ch = Chan[int](5)
    assert type(ch) is Chan
    assert ch.cap == 5


@pytest.mark.parametrize("cap", [-1, -100])
def test_negative_capacity_raises_value_error(cap: int) -> None:
    with pytest.raises(ValueError, match=rf"negative|{cap}"):
        Chan(cap)


@pytest.mark.parametrize("cap", [2**70, sys.maxsize + 1])
def test_absurd_capacity_raises_value_error_like_go(cap: int) -> None:
    # Go: make(chan T, 1<<62) panics "makechan: size out of range"; sys.maxsize is
    # the most len() could ever report.
    with pytest.raises(ValueError, match=r"makechan: size out of range.*sys\.maxsize"):
        Chan(cap)
    assert Chan(sys.maxsize).cap == sys.maxsize  # the bound itself is fine (and lazy)


@pytest.mark.parametrize("cap", [1.5, 2.0, "3", None, b"1", True, False])
def test_non_int_capacity_raises_type_error(cap: object) -> None:
    with pytest.raises(TypeError, match="capacity"):
        Chan(cap)  # type: ignore[arg-type]


def test_int_subclass_capacity_is_accepted() -> None:
    class Size(enum.IntEnum):
        SMALL = 2

    ch = Chan[int](Size.SMALL)
    assert ch.cap == 2
    assert type(ch.cap) is int


@pytest.mark.parametrize(
    "make", [Chan, lambda: Chan(1), lambda: Chan().send_only(), lambda: Chan().recv_only()]
)
def test_channel_has_no_truth_value(make: Callable[[], object]) -> None:
    ch = make()
    with pytest.raises(TypeError, match="truth value"):
        bool(ch)
    with pytest.raises(TypeError, match="truth value"):
        if ch:  # the bug this prevents: `if ch:` reading as "if ch is open/non-empty"
            pass


def test_repr_names_state() -> None:
    ch = Chan[int](2)
    ch.send_nowait(1)
    assert "cap=2" in repr(ch) and "len=1" in repr(ch) and "open" in repr(ch)
    ch.close()
    assert "closed" in repr(ch)


# -- unbuffered: rendezvous ----------------------------------------------------------


async def test_unbuffered_send_waits_for_a_receiver() -> None:
    ch = Chan[str]()
    sent: list[str] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, send_then_note, ch, "x", sent)
        assert sent == []  # parked: nobody has taken the value
        assert len(ch) == 0
        assert await ch.recv() == "x"
    assert sent == ["x"]


async def test_unbuffered_recv_waits_for_a_sender() -> None:
    ch = Chan[str]()
    got: list[str] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, recv_into, ch, got)
        assert got == []
        await ch.send("y")  # a receiver is parked: completes without waiting
    assert got == ["y"]


async def test_unbuffered_send_nowait_without_receiver_would_block() -> None:
    ch = Chan[int]()
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)
    with pytest.raises(WouldBlock):
        ch.recv_nowait()
    assert len(ch) == 0


async def test_nowait_messages_name_what_is_missing() -> None:
    """Principle 4: an unbuffered channel is never "full"; say that no one is waiting."""
    ch = Chan[int]()
    with pytest.raises(WouldBlock, match="no receiver is waiting") as e:
        ch.send_nowait(1)
    assert "full" not in str(e.value)
    with pytest.raises(WouldBlock, match="no sender is waiting"):
        ch.recv_nowait()
    buffered = Chan[int](1)
    buffered.send_nowait(1)
    with pytest.raises(WouldBlock, match="the channel is full"):
        buffered.send_nowait(2)
    buffered.recv_nowait()
    with pytest.raises(WouldBlock, match="the channel is empty"):
        buffered.recv_nowait()


async def test_unbuffered_send_nowait_hands_to_parked_receiver() -> None:
    ch = Chan[int]()
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, recv_into, ch, got)
        ch.send_nowait(7)
        with pytest.raises(WouldBlock):  # the receiver was used up
            ch.send_nowait(8)
    assert got == [7]


async def test_unbuffered_recv_nowait_takes_from_parked_sender() -> None:
    ch = Chan[int]()
    sent: list[int] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, send_then_note, ch, 5, sent)
        assert ch.recv_nowait() == 5
        with pytest.raises(WouldBlock):
            ch.recv_nowait()
    assert sent == [5]


async def test_unbuffered_many_pairs() -> None:
    ch = Chan[int]()
    got: list[int] = []

    async def consumer() -> None:
        async for v in ch:
            got.append(v)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        for i in range(200):
            await ch.send(i)
        ch.close()
    assert got == list(range(200))


# -- buffered: FIFO ------------------------------------------------------------------


async def test_buffered_fifo() -> None:
    ch = Chan[int](5)
    for i in range(5):
        await ch.send(i)
    with pytest.raises(WouldBlock):
        ch.send_nowait(99)
    assert [await ch.recv() for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(WouldBlock):
        ch.recv_nowait()


async def test_buffered_send_waits_while_full() -> None:
    ch = Chan[int](1)
    sent: list[int] = []
    await ch.send(1)
    async with anyio.create_task_group() as tg:
        await parked(tg, send_then_note, ch, 2, sent)
        assert sent == [] and len(ch) == 1
        assert await ch.recv() == 1
        # The freed slot went to the parked sender at once.
        assert len(ch) == 1
    assert sent == [2]
    assert ch.recv_nowait() == 2


async def test_buffered_recv_nowait_refills_from_parked_sender_in_order() -> None:
    ch = Chan[int](2)
    ch.send_nowait(1)
    ch.send_nowait(2)
    sent: list[int] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, send_then_note, ch, 3, sent)
        await parked(tg, send_then_note, ch, 4, sent)
        assert [ch.recv_nowait() for _ in range(4)] == [1, 2, 3, 4]
    assert sorted(sent) == [3, 4]  # the woken senders may run in either order


async def test_buffered_interleaved_with_cap_one_producer_consumer() -> None:
    ch = Chan[int](1)
    got: list[int] = []

    async def producer() -> None:
        for i in range(300):
            await ch.send(i)
        ch.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        async for v in ch:
            got.append(v)
    assert got == list(range(300))


# -- close ---------------------------------------------------------------------------


async def test_close_twice_raises() -> None:
    ch = Chan[int]()
    ch.close()
    with pytest.raises(ChanClosed, match=r"^close of closed channel$"):
        ch.close()
    assert ch.closed


@pytest.mark.parametrize("cap", [0, 3])
async def test_send_on_closed_channel_raises(cap: int) -> None:
    ch = Chan[int](cap)
    ch.close()
    with pytest.raises(ChanClosed, match=r"^send on closed channel$"):
        await ch.send(1)
    with pytest.raises(ChanClosed, match=r"^send on closed channel$"):
        ch.send_nowait(1)
    assert len(ch) == 0


@pytest.mark.parametrize("cap", [0, 3])
async def test_recv_on_closed_drained_channel(cap: int) -> None:
    ch = Chan[int](cap)
    ch.close()
    with pytest.raises(ChanClosed, match=r"^recv on closed channel$"):
        await ch.recv()
    with pytest.raises(ChanClosed, match=r"^recv on closed channel$"):
        ch.recv_nowait()
    assert await ch.recv_ok() == (None, False)
    assert [v async for v in ch] == []
    # and it stays that way
    assert await ch.recv_ok() == (None, False)


async def test_buffered_items_survive_close() -> None:
    ch = Chan[int](3)
    for i in range(3):
        await ch.send(i)
    ch.close()
    with pytest.raises(ChanClosed, match=r"^send on closed channel$"):
        await ch.send(9)
    assert await ch.recv() == 0
    assert await ch.recv_ok() == (1, True)
    assert ch.recv_nowait() == 2
    assert await ch.recv_ok() == (None, False)
    with pytest.raises(ChanClosed):
        ch.recv_nowait()


async def test_async_for_drains_then_ends_after_close() -> None:
    ch = Chan[int](10)
    for i in range(4):
        ch.send_nowait(i)
    ch.close()
    assert [v async for v in ch] == [0, 1, 2, 3]
    assert [v async for v in ch] == []


async def test_close_wakes_parked_receivers() -> None:
    ch = Chan[int]()
    errors: list[BaseException] = []
    oks: list[Any] = []
    iterated: list[list[int]] = []

    async def recv_expecting_close() -> None:
        try:
            await ch.recv()
        except ChanClosed as exc:
            errors.append(exc)

    async def iterate() -> None:
        iterated.append([v async for v in ch])

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(recv_expecting_close)
            tg.start_soon(recv_ok_into, ch, oks)
        tg.start_soon(iterate)
        await anyio.wait_all_tasks_blocked()
        ch.close()
    assert [str(e) for e in errors] == ["recv on closed channel"] * 3
    assert oks == [(None, False)] * 3
    assert iterated == [[]]


@pytest.mark.parametrize("cap", [0, 1, 2])
async def test_close_fails_parked_senders(cap: int) -> None:
    ch = Chan[int](cap)
    for i in range(cap):
        ch.send_nowait(100 + i)  # fill the buffer so senders park
    errors: list[str] = []
    sent: list[int] = []

    async def sender(v: int) -> None:
        try:
            await ch.send(v)
            sent.append(v)
        except ChanClosed as exc:
            errors.append(str(exc))

    async with anyio.create_task_group() as tg:
        for v in range(4):
            tg.start_soon(sender, v)
        await anyio.wait_all_tasks_blocked()
        ch.close()
    assert sent == []
    assert errors == ["send on closed channel"] * 4
    # buffered items stay receivable; the failed sends delivered nothing
    assert [v async for v in ch] == [100 + i for i in range(cap)]


async def test_close_from_another_task_while_iterating() -> None:
    ch = Chan[int](2)
    got: list[int] = []

    async def consumer() -> None:
        async for v in ch:
            got.append(v)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        for i in range(5):
            await ch.send(i)
        ch.close()
    assert got == [0, 1, 2, 3, 4]


# -- FIFO service of waiters -------------------------------------------------------------


@pytest.mark.parametrize("cap", [0, 2])
async def test_parked_receivers_served_fifo(cap: int) -> None:
    ch = Chan[str](cap)
    got: list[tuple[int, str]] = []

    async def receiver(n: int) -> None:
        got.append((n, await ch.recv()))

    async with anyio.create_task_group() as tg:
        for n in range(5):
            await parked(tg, receiver, n)
        for v in "abcde":
            await ch.send(v)
    assert sorted(got) == [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e")]


@pytest.mark.parametrize("cap", [0, 2])
async def test_parked_senders_served_fifo(cap: int) -> None:
    ch = Chan[int](cap)
    for i in range(cap):
        ch.send_nowait(-1 - i)
    async with anyio.create_task_group() as tg:
        for n in range(5):
            await parked(tg, ch.send, n)
        got = [await ch.recv() for _ in range(5 + cap)]
    assert got == [-1 - i for i in range(cap)] + [0, 1, 2, 3, 4]


async def test_fifo_buffer_then_parked_receivers() -> None:
    """A receiver parks only on an empty buffer; values go to parked receivers in order."""
    ch = Chan[int](3)
    got: list[tuple[int, int]] = []

    async def receiver(n: int) -> None:
        got.append((n, await ch.recv()))

    async with anyio.create_task_group() as tg:
        for n in range(3):
            await parked(tg, receiver, n)
        for v in (10, 11, 12, 13):
            ch.send_nowait(v)
        assert len(ch) == 1  # three went to parked receivers, one to the buffer
    assert sorted(got) == [(0, 10), (1, 11), (2, 12)]
    assert ch.recv_nowait() == 13


# -- cancellation ----------------------------------------------------------------------


async def test_recv_cancelled_while_parked_loses_nothing() -> None:
    """A recv() cancelled while parked must not take the item sent next."""
    ch = Chan[str]()
    lost: list[str] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(recv_in_cancel_scope, ch, lost)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        got: list[str] = []
        await parked(tg, recv_into, ch, got)
        await ch.send("hello")
    assert lost == []
    assert got == ["hello"]


async def test_recv_cancelled_while_parked_then_send_nowait_has_no_receiver() -> None:
    ch = Chan[int]()
    lost: list[int] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(recv_in_cancel_scope, ch, lost)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        # Even before the cancelled task has run again, it must not be handed a value.
        with pytest.raises(WouldBlock):
            ch.send_nowait(1)
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)
    assert lost == []


@pytest.mark.parametrize("cap", [0, 1])
async def test_send_cancelled_while_parked_delivered_nothing(cap: int) -> None:
    ch = Chan[int](cap)
    if cap:
        ch.send_nowait(1)
    sent: list[int] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(send_in_cancel_scope, ch, 2, sent)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        # Before and after the cancelled sender runs again: its value is not receivable.
        if cap:
            assert ch.recv_nowait() == 1
        with pytest.raises(WouldBlock):
            ch.recv_nowait()
    with pytest.raises(WouldBlock):
        ch.recv_nowait()
    assert sent == []
    assert len(ch) == 0


@pytest.mark.parametrize("cap", [0, 1])
async def test_recv_nowait_after_close_skips_a_cancelled_sender(cap: int) -> None:
    """A cancelled sender still queued when the channel closes: recv_nowait() drains the
    buffer, then raises ChanClosed (not WouldBlock, and never the cancelled value)."""
    ch = Chan[int](cap)
    if cap:
        ch.send_nowait(1)
    sent: list[int] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(send_in_cancel_scope, ch, 2, sent)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        ch.close()  # before the cancelled sender has run again
        if cap:
            assert ch.recv_nowait() == 1
        with pytest.raises(ChanClosed):
            ch.recv_nowait()
    with pytest.raises(ChanClosed):
        ch.recv_nowait()
    assert sent == []


async def test_cancelled_receivers_in_the_middle_keep_fifo_order() -> None:
    """Cancel every other one of many parked receivers (forcing queue compaction)."""
    ch = Chan[int]()
    got: list[tuple[int, int]] = []
    scopes: list[anyio.CancelScope] = []

    async def receiver(n: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            task_status.started()
            got.append((n, await ch.recv()))

    async with anyio.create_task_group() as tg:
        for n in range(100):
            await tg.start(receiver, n)
            await anyio.wait_all_tasks_blocked()
        for n in range(0, 100, 2):
            scopes[n].cancel()
        await anyio.wait_all_tasks_blocked()
        for v in range(50):
            await ch.send(v)
        with pytest.raises(WouldBlock):
            ch.send_nowait(-1)
    assert sorted(got) == [(2 * i + 1, i) for i in range(50)]
    assert len(ch._recvq or ()) == 0


async def test_cancelled_head_receiver_passes_value_to_next() -> None:
    ch = Chan[int]()
    first: list[int] = []
    second: list[int] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(recv_in_cancel_scope, ch, first)
        await anyio.wait_all_tasks_blocked()
        await parked(tg, recv_into, ch, second)
        scope.cancel()
        ch.send_nowait(1)  # before the cancelled head has even run again
    assert first == [] and second == [1]


@pytest.mark.parametrize("cap", [0, 2])
async def test_fast_path_send_is_a_cancel_point(cap: int) -> None:
    """In an already-cancelled scope a send that could complete at once raises and sends nothing."""
    ch = Chan[int](cap)
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        if cap == 0:
            await parked(tg, recv_into, ch, got)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ch.send(1)
            pytest.fail("send() completed in a cancelled scope")
        assert scope.cancelled_caught
        assert len(ch) == 0
        if cap == 0:
            assert got == []
            ch.send_nowait(2)  # the receiver is still parked and gets the next value
        else:
            ch.send_nowait(2)
            assert ch.recv_nowait() == 2
    assert got == ([2] if cap == 0 else [])


@pytest.mark.parametrize("op", ["recv", "recv_ok", "anext"])
@pytest.mark.parametrize("cap", [0, 2])
async def test_fast_path_recv_is_a_cancel_point(op: str, cap: int) -> None:
    ch = Chan[int](cap)
    sent: list[int] = []
    async with anyio.create_task_group() as tg:
        if cap:
            ch.send_nowait(1)
        else:
            await parked(tg, send_then_note, ch, 1, sent)
        with anyio.CancelScope() as scope:
            scope.cancel()
            if op == "recv":
                await ch.recv()
            elif op == "recv_ok":
                await ch.recv_ok()
            else:
                await ch.__anext__()
            pytest.fail(f"{op} completed in a cancelled scope")
        assert scope.cancelled_caught
        assert sent == []
        assert ch.recv_nowait() == 1  # still there
    assert sent == ([1] if cap == 0 else [])


async def test_fast_path_on_closed_channel_is_a_cancel_point() -> None:
    ch = Chan[int](1)
    ch.close()
    for op in (ch.recv, ch.recv_ok, ch.__anext__, lambda: ch.send(1)):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await op()
        assert scope.cancelled_caught


async def test_shielded_scope_inside_cancelled_scope_completes_fast_path() -> None:
    ch = Chan[int](1)
    with anyio.CancelScope() as outer:
        outer.cancel()
        with anyio.CancelScope(shield=True):
            await ch.send(1)
            assert await ch.recv() == 1
        await ch.send(2)  # outside the shield: a cancel point again
        pytest.fail("send() completed in a cancelled scope")
    assert outer.cancelled_caught
    assert len(ch) == 0


async def test_native_asyncio_cancel_request_is_honoured_on_fast_path(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio-specific")
    ch = Chan[int](1)

    async def op() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await ch.send(1)

    task = asyncio.ensure_future(op())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(ch) == 0


async def test_cancel_scope_deadline_in_the_past_cancels_fast_path() -> None:
    ch = Chan[int](1)
    ch.send_nowait(5)
    with anyio.move_on_after(-1) as scope:
        await ch.recv()
    assert scope.cancelled_caught
    assert ch.recv_nowait() == 5


# -- fast path and starvation ---------------------------------------------------------------


async def test_fast_path_needs_no_scheduler_round_trip() -> None:
    """Operations that complete at once yield to the scheduler only now and then."""
    ch = Chan[int](1)
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0)
        start = ticks
        for i in range(1000):
            await ch.send(i)
            assert await ch.recv() == i
        yielded = ticks - start
        stop = True
    # 2000 operations; a round trip each would let the ticker run ~2000 times.
    assert yielded < 500, yielded


@pytest.mark.parametrize("kind", ["send_recv", "recv_ok", "anext", "select_default"])
async def test_tight_loop_cannot_starve_other_tasks(kind: str) -> None:
    from asyncgo import recv, select

    ch = Chan[int](10_001)
    for i in range(10_000):
        ch.send_nowait(i)
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    n = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        it = aiter(ch)
        while not ran:
            n += 1
            assert n < 10_000, "a tight loop of ready channel operations starved another task"
            if kind == "send_recv":
                await ch.send(n)
                await ch.recv()
            elif kind == "recv_ok":
                await ch.recv_ok()
            elif kind == "anext":
                await anext(it)
            else:
                await select(recv(ch), default=True)


async def test_tight_loop_can_be_cancelled_by_another_task() -> None:
    ch = Chan[int](1)
    n = 0

    async def canceller(scope: anyio.CancelScope) -> None:
        scope.cancel()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(canceller, scope)
            while True:
                n += 1
                assert n < 100_000
                await ch.send(n)
                await ch.recv()
    assert scope.cancelled_caught


# -- directional views ------------------------------------------------------------------------


async def test_send_only_view() -> None:
    ch = Chan[int](2)
    tx = ch.send_only()
    assert isinstance(tx, SendChan) and not isinstance(tx, RecvChan)
    await tx.send(1)
    tx.send_nowait(2)
    assert (len(tx), tx.cap, tx.closed) == (2, 2, False)
    for name in ("recv", "recv_ok", "recv_nowait"):
        with pytest.raises(AttributeError, match=r"send-only"):
            getattr(tx, name)
        with pytest.raises(TypeError, match=r"send-only"):  # (also a TypeError, as in Go)
            getattr(tx, name)
        assert not hasattr(tx, name)
    with pytest.raises(TypeError, match=r"SendChan. object is not an async iterable"):
        aiter(tx)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"'async for' requires .* got SendChan$"):
        async for _ in tx:  # type: ignore[attr-defined]
            pass
    assert repr(type(tx)).endswith(".SendChan'>") and type(ch.recv_only()).__name__ == "RecvChan"
    tx.close()
    assert ch.closed and tx.closed
    assert [v async for v in ch] == [1, 2]


async def test_recv_only_view() -> None:
    ch = Chan[int](3)
    rx = ch.recv_only()
    assert isinstance(rx, RecvChan) and not isinstance(rx, SendChan)
    for name in ("send", "send_nowait", "close"):
        with pytest.raises(AttributeError, match=r"receive-only"):
            getattr(rx, name)
        with pytest.raises(TypeError, match=r"receive-only"):  # (also a TypeError, as in Go)
            getattr(rx, name)
        assert not hasattr(rx, name)
    for i in range(3):
        ch.send_nowait(i)
    assert (len(rx), rx.cap, rx.closed) == (3, 3, False)
    assert await rx.recv() == 0
    assert await rx.recv_ok() == (1, True)
    assert rx.recv_nowait() == 2
    ch.send_nowait(3)
    ch.close()
    assert rx.closed
    assert [v async for v in rx] == [3]
    assert await rx.recv_ok() == (None, False)


async def test_views_share_waiters_with_the_channel() -> None:
    ch = Chan[int]()
    tx, rx = ch.send_only(), ch.recv_only()
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, recv_into, rx, got)
        await tx.send(4)
    assert got == [4]


def test_chan_is_both_directions() -> None:
    ch = Chan[int]()
    assert isinstance(ch, SendChan) and isinstance(ch, RecvChan)


def test_type_checker_rejects_the_wrong_direction(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent("""\
        from asyncgo import Chan, RecvChan, SendChan, recv, select, send

        async def f(ch: Chan[int]) -> None:
            tx: SendChan[int] = ch.send_only()
            rx: RecvChan[int] = ch.recv_only()
            await tx.recv()  # E1
            await rx.send(1)  # E2
            rx.close()  # E3
            await select(recv(tx))  # E4
            await select(send(rx, 1))  # E5
            await ch.send("x")  # E6
    """)
    )
    good = tmp_path / "good.py"
    good.write_text(
        textwrap.dedent("""\
        from typing import assert_type
        from asyncgo import Chan, RecvChan, Selected, SendChan, recv, select, send

        async def producer(tx: SendChan[int]) -> None:
            await tx.send(1)
            tx.close()

        async def consumer(rx: RecvChan[int]) -> list[int]:
            return [v async for v in rx]

        async def f() -> None:
            ch = Chan[int](1)
            await producer(ch)
            await producer(ch.send_only())
            assert_type(await consumer(ch.recv_only()), list[int])
            assert_type(await ch.recv(), int)
            r = await select(recv(ch.recv_only()), send(ch.send_only(), 2))
            assert isinstance(r, Selected)
    """)
    )
    out = run_mypy(tmp_path / "cache", bad, good)
    good_errors = [line for line in out.splitlines() if "good.py" in line]
    assert good_errors == [], out
    lines = bad.read_text().splitlines()
    flagged = {int(line.split(":")[1]) for line in out.splitlines() if "bad.py:" in line}
    for n, text in enumerate(lines, 1):
        if "# E" in text:
            assert n in flagged, f"mypy accepted {text.strip()!r}:\n{out}"


# -- event loop binding ----------------------------------------------------------------------


def _block_on_chan_in_new_loop(ch: Chan[int], backend: str) -> BaseException | None:
    async def blocked() -> None:
        # A hang guard only (the bug this test catches would hang); not a timing assertion.
        with anyio.fail_after(10):
            await ch.recv()

    if backend == "uvloop":
        return in_thread(
            lambda: anyio.run(blocked, backend="asyncio", backend_options={"use_uvloop": True})
        )
    return in_thread(lambda: anyio.run(blocked, backend=backend))


async def _bind_by_blocking(ch: Chan[int]) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.recv)
        await anyio.wait_all_tasks_blocked()
        ch.send_nowait(1)


def _run_on(backend: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    """``anyio.run(fn)`` on *backend*: "asyncio", "uvloop" or "trio"."""
    if backend == "uvloop":
        pytest.importorskip("uvloop")
        return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(fn, backend=backend)


@pytest.mark.parametrize("second", ["asyncio", "trio"])
def test_blocking_from_a_second_event_loop_raises(
    anyio_backend: tuple[str, dict[str, object]], second: str
) -> None:
    name, options = anyio_backend
    ch = Chan[int]()
    anyio.run(_bind_by_blocking, ch, backend=name, backend_options=options)
    err = _block_on_chan_in_new_loop(ch, second)
    assert isinstance(err, RuntimeError), repr(err)
    assert "event loop" in str(err)
    assert not ch._recvq, "the rejected waiter was left in the queue"
    # non-blocking use is still fine
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)


@pytest.mark.parametrize("where", ["same thread", "another thread"])
@pytest.mark.parametrize("second", ["asyncio", "uvloop", "trio"])
def test_a_channel_of_a_loop_that_is_over_is_refused_saying_so(
    anyio_backend: tuple[str, dict[str, object]], second: str, where: str
) -> None:
    """A channel stays bound to its first loop once that loop is over (the contract:
    test_acceptance_core.py::test_channel_bound_in_one_run_rejected_in_another); the
    error says the loop is over and what to do (pytest's loop per test hits this)."""
    name, options = anyio_backend
    ch = Chan[int]()
    anyio.run(_bind_by_blocking, ch, backend=name, backend_options=options)

    async def use() -> None:
        with anyio.fail_after(10):  # a hang guard only
            await ch.recv()

    if where == "same thread":
        with pytest.raises(RuntimeError) as info:
            _run_on(second, use)
        err: BaseException | None = info.value
    else:
        err = in_thread(lambda: _run_on(second, use))
        if isinstance(err, pytest.skip.Exception):
            raise err
    assert isinstance(err, RuntimeError), repr(err)
    assert "which is over" in str(err) and "Make it in the loop that uses it" in str(err)
    assert ch._rw is None and not ch._recvq, "the refused waiter was left parked"


@pytest.mark.parametrize("second", ["asyncio", "uvloop", "trio"])
def test_a_contexts_done_channel_stays_with_the_loop_that_waited_on_it(
    anyio_backend: tuple[str, dict[str, object]], second: str
) -> None:
    """Like any channel (and a timer's): a context's done channel, once a loop waited on
    it, belongs to that loop; the next loop gets the clear error, not a hang (its timer
    and its cancel() hand-offs belong to the first loop too)."""
    name, options = anyio_backend
    ctx, cancel = with_cancel(background())

    async def give_up_waiting() -> None:
        async with anyio.create_task_group() as tg:
            await parked(tg, ctx.wait)
            tg.cancel_scope.cancel()

    anyio.run(give_up_waiting, backend=name, backend_options=options)

    async def wait() -> None:
        with anyio.fail_after(10):  # a hang guard only
            await ctx.wait()

    if second == "uvloop":
        pytest.importorskip("uvloop")
    with pytest.raises(RuntimeError, match="which is over"):
        _run_on(second, wait)
    cancel()
    assert type(ctx.err()) is Canceled


@pytest.mark.parametrize("second", ["asyncio", "uvloop", "trio"])
@pytest.mark.parametrize("op", ["send", "recv", "select send", "select recv"])
async def test_a_hand_off_from_another_thread_is_refused_while_the_loop_runs_a_task(
    op: str, second: str
) -> None:
    """This loop is inside a step of a task asyncgo checked lately (its task cache) when a
    loop in another thread would complete at once by waking a task parked here: it must
    raise and change nothing. Found by audit: the fast path checked this loop's current
    task instead of the caller's thread, and handed the value over across threads."""
    if second == "uvloop":
        pytest.importorskip("uvloop")
    ch = Chan[int]()
    got: list[int] = []
    to_receiver = op in ("send", "select send")
    async with anyio.create_task_group() as tg:
        if to_receiver:
            await parked(tg, recv_into, ch, got)
        else:
            await parked(tg, send_then_note, ch, 7, got)
        warm = Chan[int](1)  # makes this task one asyncgo has seen lately
        await warm.send(0)
        await warm.recv()

        async def there() -> None:
            with anyio.fail_after(10):  # a hang guard only
                if op == "send":
                    await ch.send(1)
                elif op == "recv":
                    await ch.recv()
                elif op == "select send":
                    await select(send(ch, 1))
                else:
                    await select(recv(ch))

        # Blocks this loop inside this task's step while the other thread acts.
        err = in_thread(lambda: _run_on(second, there))
        assert isinstance(err, RuntimeError), repr(err)
        assert "another thread" in str(err) and "channel" in str(err), str(err)
        assert got == []  # the parked task still waits: nothing taken, nothing lost
        if to_receiver:
            ch.send_nowait(2)
        else:
            assert ch.recv_nowait() == 7
    assert got == [2 if to_receiver else 7]


@pytest.mark.parametrize("second", ["asyncio", "trio"])
async def test_blocking_from_a_second_loop_while_first_still_blocked(second: str) -> None:
    """The first loop still has a task parked on the channel when a second loop blocks on it."""
    ch = Chan[int]()
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, recv_into, ch, got)
        err = await anyio.to_thread.run_sync(_block_on_chan_in_new_loop, ch, second)
        assert isinstance(err, RuntimeError), repr(err)
        assert "event loop" in str(err)
        ch.send_nowait(3)  # the first loop's receiver is unaffected
    assert got == [3]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("asyncio", "asyncio"),
        pytest.param("asyncio", "trio"),
        pytest.param("uvloop", "trio"),
        pytest.param("uvloop", "uvloop"),
        pytest.param("asyncio", "uvloop"),
        pytest.param("trio", "asyncio"),
        pytest.param("trio", "trio"),
    ],
)
def test_blocking_from_a_second_loop_while_first_loop_is_busy(first: str, second: str) -> None:
    """The first loop is *running a task* (blocked in a thread join) when the second blocks.

    So the first loop has a current task while the second thread parks: a hint that
    trusted "the loop is running a task" without checking the thread would build the
    second thread's waiter on the first loop.
    """
    if "uvloop" in (first, second):
        pytest.importorskip("uvloop")
    ch = Chan[int]()
    result: list[BaseException | None] = []

    async def main() -> None:
        await _bind_by_blocking(ch)
        # Deliberately block this loop inside a running task: the loop's current
        # task stays set while the other thread uses the channel.
        result.append(_block_on_chan_in_new_loop(ch, second))

    backend, options = ("asyncio", {"use_uvloop": True}) if first == "uvloop" else (first, {})
    anyio.run(main, backend=backend, backend_options=options)
    err = result[0]
    assert isinstance(err, RuntimeError), repr(err)
    assert "event loop" in str(err) and "channel" in str(err), str(err)


# -- structure -----------------------------------------------------------------------------


async def test_bound_channels_share_one_thread_id_object() -> None:
    """A bound channel remembers its loop's thread; all of them share one int object
    (a fresh one would cost 32 bytes per channel: a parked receiver on a channel of its
    own must stay within an asyncio.Queue getter's memory)."""
    chans = [Chan[int]() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for ch in chans:
            tg.start_soon(ch.recv)
        await anyio.wait_all_tasks_blocked()
        for ch in chans:
            ch.send_nowait(1)
    assert chans[0]._tid is not None
    assert chans[0]._tid is chans[1]._tid is chans[2]._tid


async def test_no_task_left_after_task_group_exits() -> None:
    before = other_tasks()
    ch = Chan[int]()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(ch.recv)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert other_tasks() <= before
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)


async def test_mpmc_consumers_share_fairly() -> None:
    """4 producers -> 4 consumers over Chan(64): each consumer gets >= half its fair share.

    Producers start first, so they fill the buffer and park before any consumer
    runs: the start that made one consumer take nearly everything on asyncio.
    """
    ch = Chan[int | None](64)
    n, per = 40_000, 10_000
    counts = [0, 0, 0, 0]
    finished = [0]
    go = anyio.Event()

    async def producer() -> None:
        await go.wait()
        for i in range(per):
            await ch.send(i)
        finished[0] += 1
        if finished[0] == 4:
            for _ in range(4):
                await ch.send(None)

    async def consumer(k: int) -> None:
        await go.wait()
        while await ch.recv() is not None:
            counts[k] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(producer)
        for k in range(4):
            tg.start_soon(consumer, k)
        await anyio.wait_all_tasks_blocked()
        go.set()
    assert sum(counts) == n
    assert min(counts) >= 0.5 * n / 4, counts


@pytest.mark.parametrize("second", ["asyncio", "uvloop", "trio"])
def test_a_loop_that_moved_to_another_thread_does_not_fool_parking(second: str) -> None:
    """uvloop does not record its thread: a loop found running in this thread, then run by
    another thread, must not be taken for this thread's loop when a channel last used on
    it (never waited on, so not bound) first waits here (found by review: the receive
    failed with "Future attached to a different loop", or a TypeError under trio)."""
    uvloop = pytest.importorskip("uvloop")
    import asyncio

    l1 = uvloop.new_event_loop()
    ch = Chan[int](1)

    async def on_l1() -> None:
        c2 = Chan[int]()

        async def send_later() -> None:
            await asyncio.sleep(0.01)
            await c2.send(1)

        t = asyncio.ensure_future(send_later())
        await c2.recv()  # an exact check here records l1 as running in this thread
        await t
        await ch.send(1)  # ch's hint is l1; it never waited, so it is not bound
        await ch.recv()

    l1.run_until_complete(on_l1())
    started, release = threading.Event(), threading.Event()

    async def busy() -> None:  # one long task step of l1, in another thread
        started.set()
        release.wait(10)

    other = threading.Thread(target=lambda: l1.run_until_complete(busy()))
    other.start()
    started.wait(10)

    async def here() -> int:
        async def send_later() -> None:
            await anyio.sleep(0.02)
            await ch.send(2)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_later)
            with anyio.fail_after(10):  # a hang guard only
                return await ch.recv()  # parks: must be on this thread's loop

    try:
        if second == "uvloop":
            got = anyio.run(here, backend="asyncio", backend_options={"use_uvloop": True})
        else:
            got = anyio.run(here, backend=second)
    finally:
        release.set()
        other.join()
        l1.close()
    assert got == 2


# -- a wait started in an already-cancelled scope --------------------------------------


def _wait_to_recv(ch: Chan[int]) -> Callable[[], Awaitable[object]]:
    return ch.recv


def _wait_to_recv_ok(ch: Chan[int]) -> Callable[[], Awaitable[object]]:
    return ch.recv_ok


def _wait_in_async_for(ch: Chan[int]) -> Callable[[], Awaitable[object]]:
    return ch.__anext__


def _wait_in_select(ch: Chan[int]) -> Callable[[], Awaitable[object]]:
    return lambda: select(recv(ch), recv(None))


PRECANCELLED_RECEIVES = {
    "recv": _wait_to_recv,
    "recv_ok": _wait_to_recv_ok,
    "anext": _wait_in_async_for,
    "select": _wait_in_select,
}


@pytest.mark.parametrize("traced", [False, True], ids=["plain", "traced"])
@pytest.mark.parametrize("what", list(PRECANCELLED_RECEIVES))
async def test_a_receive_in_an_already_cancelled_scope_takes_nothing(
    what: str, traced: bool
) -> None:
    """A sender arriving in the same loop step finds no receiver: the receive raised
    before queueing, on every backend. On asyncio anyio delivers the cancellation a
    step late, and the receive used to be queued and handed the item, returning it
    inside its cancelled scope (trio was right)."""
    ch = Chan[int]()
    wait = PRECANCELLED_RECEIVES[what](ch)
    outcome: list[object] = []

    async def receiver() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            outcome.append(await wait())
        outcome.append("cancelled" if scope.cancelled_caught else "not cancelled")

    with debug.enabled() if traced else contextlib.nullcontext():
        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.lowlevel.checkpoint()  # the receiver runs and waits
            with pytest.raises(WouldBlock):
                ch.send_nowait(1)  # in the same loop step
    assert outcome == ["cancelled"]


@pytest.mark.parametrize("traced", [False, True], ids=["plain", "traced"])
@pytest.mark.parametrize("how", ["send", "select"])
async def test_a_send_in_an_already_cancelled_scope_delivers_nothing(
    how: str, traced: bool
) -> None:
    """The same for a sender: a receiver polling in the same loop step finds nothing."""
    ch = Chan[int]()
    outcome: list[object] = []

    async def sender() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            if how == "send":
                await ch.send(1)
            else:
                await select(send(ch, 1))
            outcome.append("sent")
        outcome.append("cancelled" if scope.cancelled_caught else "not cancelled")

    with debug.enabled() if traced else contextlib.nullcontext():
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await anyio.lowlevel.checkpoint()  # the sender runs and waits
            with pytest.raises(WouldBlock):
                ch.recv_nowait()
    assert outcome == ["cancelled"]

"""Black-box acceptance tests for DESIGN.md's "Core (contract)" section.

Written from the contract text and Go's semantics only (channels, select,
context, errgroup), against the public API. Every async test runs on asyncio,
uvloop and trio (conftest's ``anyio_backend``); sync tests that need a fresh
event loop of their own start it with ``anyio.run`` for each backend.
"""

from __future__ import annotations

import importlib.util
import random
import threading
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import asyncgo
from asyncgo import (
    Canceled,
    Chan,
    ChanClosed,
    Context,
    DeadlineExceeded,
    Group,
    RecvChan,
    Selected,
    SendChan,
    WouldBlock,
    after_func,
    background,
    current,
    recv,
    select,
    send,
    with_cancel,
    with_cancel_cause,
    with_deadline,
    with_timeout,
    with_value,
    without_cancel,
)
from asyncgo.time import after

needs_uvloop = pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
)

# (backend, backend_options) for tests that start their own event loops
RUNS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop", marks=needs_uvloop),
    pytest.param(("trio", {}), id="trio"),
]

LOOP_MSG = r"(?i)loop"


def run_on(backend: tuple[str, dict[str, Any]], fn: Callable[[], Awaitable[Any]]) -> Any:
    name, options = backend
    return anyio.run(fn, backend=name, backend_options=options)


def run_trio_mock(fn: Callable[[], Awaitable[Any]], **clock_kw: Any) -> Any:
    from trio.testing import MockClock

    clock = MockClock(**clock_kw)
    return anyio.run(fn, backend="trio", backend_options={"clock": clock}), clock


async def blocked() -> None:
    """Return once every other task is parked."""
    await anyio.wait_all_tasks_blocked()


def is_done(ctx: Context) -> bool:
    return select_nowait_closed(ctx.done())


def select_nowait_closed(ch: RecvChan[Any] | None) -> bool:
    """True if *ch* is a closed channel (a recv on it completes with ok=False)."""
    if ch is None:
        return False
    try:
        ch.recv_nowait()
    except ChanClosed:
        return True
    except WouldBlock:
        return False
    raise AssertionError("done() channel delivered a value")


# ---------------------------------------------------------------- Channels ----


async def test_unbuffered_send_completes_only_when_received() -> None:
    ch: Chan[int] = Chan()
    sent = anyio.Event()

    async def sender() -> None:
        await ch.send(7)
        sent.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await blocked()
        await anyio.sleep(0.01)
        assert not sent.is_set(), "an unbuffered send completed without a receiver"
        assert len(ch) == 0
        assert await ch.recv() == 7
        with anyio.fail_after(5):
            await sent.wait()


async def test_unbuffered_nowait_needs_a_waiting_partner() -> None:
    ch: Chan[int] = Chan()
    assert ch.cap == 0
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)
    with pytest.raises(WouldBlock):
        ch.recv_nowait()
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _append(got, ch.recv()))
        await blocked()
        ch.send_nowait(5)  # a receiver is waiting: hands over at once
    assert got == [5]

    done: list[bool] = []

    async def sender() -> None:
        await ch.send(6)
        done.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await blocked()
        assert ch.recv_nowait() == 6  # a sender is waiting
    assert done == [True]


async def _append(out: list[Any], aw: Awaitable[Any]) -> None:
    out.append(await aw)


async def test_buffered_is_fifo_and_bounded() -> None:
    ch = Chan[int](3)
    assert (ch.cap, len(ch), ch.closed) == (3, 0, False)
    for i in range(3):
        ch.send_nowait(i)
    assert len(ch) == 3
    with pytest.raises(WouldBlock):
        ch.send_nowait(99)
    assert len(ch) == 3
    assert [await ch.recv(), ch.recv_nowait(), (await ch.recv_ok())] == [0, 1, (2, True)]
    assert len(ch) == 0
    with pytest.raises(WouldBlock):
        ch.recv_nowait()
    # a send into free buffer space completes at once, without a receiver
    with anyio.fail_after(5):
        await ch.send(4)
    assert len(ch) == 1


async def test_buffered_send_waits_when_full_then_proceeds_fifo() -> None:
    ch = Chan[int](1)
    await ch.send(0)
    finished: list[int] = []

    async def sender(v: int) -> None:
        await ch.send(v)
        finished.append(v)

    async with anyio.create_task_group() as tg:
        for v in (1, 2, 3):
            tg.start_soon(sender, v)
            await blocked()
        assert finished == []
        assert [await ch.recv() for _ in range(4)] == [0, 1, 2, 3]
    assert sorted(finished) == [1, 2, 3]


def test_negative_capacity_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"(?i)capacity|negative"):
        Chan[int](-1)


async def test_close_keeps_buffered_items_then_reports_closed() -> None:
    ch = Chan[str](4)
    ch.send_nowait("a")
    ch.send_nowait("b")
    ch.send_nowait("c")
    ch.close()
    assert ch.closed
    assert len(ch) == 3
    assert await ch.recv() == "a"
    assert await ch.recv_ok() == ("b", True)
    assert ch.recv_nowait() == "c"
    assert len(ch) == 0
    with pytest.raises(ChanClosed):
        await ch.recv()
    with pytest.raises(ChanClosed):
        ch.recv_nowait()
    v, ok = await ch.recv_ok()
    assert (v, ok) == (None, False)
    assert await ch.recv_ok() == (None, False)  # stays so


async def test_recv_ok_distinguishes_a_sent_none() -> None:
    ch = Chan[None](1)
    ch.send_nowait(None)
    ch.close()
    assert await ch.recv_ok() == (None, True)
    assert await ch.recv_ok() == (None, False)


async def test_send_on_closed_raises_even_with_room() -> None:
    for cap in (0, 5):
        ch = Chan[int](cap)
        ch.close()
        with pytest.raises(ChanClosed):
            await ch.send(1)
        with pytest.raises(ChanClosed):
            ch.send_nowait(1)
        assert len(ch) == 0


async def test_second_close_raises() -> None:
    ch = Chan[int](1)
    ch.close()
    with pytest.raises(ChanClosed, match=r"(?i)clos"):
        ch.close()
    assert ch.closed


@pytest.mark.parametrize("cap", [0, 1])
async def test_senders_blocked_at_close_get_chanclosed(cap: int) -> None:
    ch = Chan[int](cap)
    for i in range(cap):
        ch.send_nowait(100 + i)  # fill the buffer
    outcomes: list[str] = []

    async def sender(v: int) -> None:
        try:
            await ch.send(v)
        except ChanClosed:
            outcomes.append("closed")
        else:
            outcomes.append("sent")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for v in (1, 2):
                tg.start_soon(sender, v)
            await blocked()
            ch.close()
    assert outcomes == ["closed", "closed"]
    # the buffered items survive, the blocked senders' items were not added
    assert [x async for x in ch] == [100 + i for i in range(cap)]


async def test_receivers_blocked_at_close_are_woken() -> None:
    ch: Chan[int] = Chan()
    results: list[Any] = []

    async def plain() -> None:
        try:
            await ch.recv()
        except ChanClosed:
            results.append("closed")

    async def with_ok() -> None:
        results.append(await ch.recv_ok())

    async def looping() -> None:
        results.append([x async for x in ch])

    async def selecting() -> None:
        r = await select(recv(ch))
        results.append((r.index, r.value, r.ok))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for f in (plain, with_ok, looping, selecting):
                tg.start_soon(f)
            await blocked()
            ch.close()
    assert sorted(map(repr, results)) == sorted(
        map(repr, ["closed", (None, False), [], (0, None, False)])
    )


async def test_async_for_yields_everything_then_ends() -> None:
    ch = Chan[int](2)

    async def producer() -> None:
        for i in range(10):
            await ch.send(i)
        ch.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        with anyio.fail_after(5):
            got = [x async for x in ch]
    assert got == list(range(10))


async def test_len_cap_closed() -> None:
    ch = Chan[int](5)
    assert (len(ch), ch.cap, ch.closed) == (0, 5, False)
    ch.send_nowait(1)
    ch.send_nowait(2)
    assert len(ch) == 2
    ch.close()
    assert (len(ch), ch.cap, ch.closed) == (2, 5, True)
    unbuf: Chan[int] = Chan()
    assert (len(unbuf), unbuf.cap, unbuf.closed) == (0, 0, False)


async def test_views_share_the_channel() -> None:
    ch = Chan[int](3)
    tx: SendChan[int] = ch.send_only()
    rx: RecvChan[int] = ch.recv_only()
    assert isinstance(tx, SendChan)
    assert isinstance(rx, RecvChan)
    await tx.send(1)
    tx.send_nowait(2)
    assert (len(tx), len(rx), tx.cap, rx.cap) == (2, 2, 3, 3)
    assert await rx.recv() == 1
    tx.close()
    assert rx.closed and tx.closed and ch.closed
    assert await rx.recv_ok() == (2, True)
    assert await rx.recv_ok() == (None, False)
    with pytest.raises(ChanClosed):
        rx.recv_nowait()
    ch2 = Chan[int](2)
    ch2.send_nowait(1)
    ch2.close()
    assert [x async for x in ch2.recv_only()] == [1]
    r = await select(recv(ch2.recv_only()), default=True)
    assert (r.index, r.ok) == (0, False)


async def test_views_reject_the_other_direction_at_runtime() -> None:
    ch: Chan[int] = Chan(1)
    tx: Any = ch.send_only()
    rx: Any = ch.recv_only()
    with pytest.raises((AttributeError, TypeError), match=r"(?i)receive-only|recv-only"):
        await rx.send(1)
    with pytest.raises((AttributeError, TypeError), match=r"(?i)receive-only|recv-only"):
        rx.send_nowait(1)
    with pytest.raises((AttributeError, TypeError), match=r"(?i)send-only"):
        await tx.recv()
    with pytest.raises((AttributeError, TypeError), match=r"(?i)send-only"):
        tx.recv_nowait()
    with pytest.raises((AttributeError, TypeError), match=r"(?i)send-only"):
        await tx.recv_ok()
    with pytest.raises((AttributeError, TypeError), match=r"(?i)receive-only|recv-only"):
        await select(send(rx, 1))
    with pytest.raises((AttributeError, TypeError), match=r"(?i)send-only"):
        await select(recv(tx))
    # nothing was sent or consumed by the rejected calls
    assert len(ch) == 0 and not ch.closed


async def test_receivers_are_served_fifo() -> None:
    ch: Chan[int] = Chan()
    got: dict[str, int] = {}

    async def receiver(name: str) -> None:
        got[name] = await ch.recv()

    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(receiver, name)
            await blocked()
        for i in range(4):
            await ch.send(i)
    assert got == {"a": 0, "b": 1, "c": 2, "d": 3}


async def test_senders_are_served_fifo() -> None:
    ch: Chan[str] = Chan()
    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(ch.send, name)
            await blocked()
        assert [await ch.recv() for _ in range(4)] == list("abcd")


async def test_fifo_survives_a_cancelled_waiter() -> None:
    ch: Chan[int] = Chan()
    got: dict[str, int] = {}
    scopes: dict[str, anyio.CancelScope] = {}

    async def receiver(name: str) -> None:
        with anyio.CancelScope() as scopes[name]:
            got[name] = await ch.recv()

    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(receiver, name)
            await blocked()
        scopes["b"].cancel()
        await blocked()
        await ch.send(1)
        await ch.send(2)
        with pytest.raises(WouldBlock):
            ch.send_nowait(3)  # b is gone, not a ghost receiver
    assert got == {"a": 1, "c": 2}


# ----------------------------------------- channels across event loops ----


@pytest.mark.parametrize("first", RUNS)
@pytest.mark.parametrize("second", RUNS)
def test_channel_bound_in_one_run_rejected_in_another(
    first: tuple[str, dict[str, Any]], second: tuple[str, dict[str, Any]]
) -> None:
    ch: Chan[int] = Chan()

    async def bind() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ch.recv)
            await blocked()  # ch has now blocked on this loop
            tg.cancel_scope.cancel()

    run_on(first, bind)

    async def use() -> str:
        with anyio.fail_after(5):  # must raise, never hang
            with pytest.raises(RuntimeError, match=LOOP_MSG):
                await ch.recv()
            with pytest.raises(RuntimeError, match=LOOP_MSG):
                await ch.send(1)
            with pytest.raises(RuntimeError, match=LOOP_MSG):
                await select(recv(ch))
        return "ok"

    assert run_on(second, use) == "ok"


@pytest.mark.parametrize(
    "foreign_op",
    ["recv", "send", "send_nowait", "select_send", "close"]
    + ["recv*", "recv_nowait*", "select_recv*"],
)
@pytest.mark.parametrize("other", RUNS)
@pytest.mark.parametrize("owner", RUNS)
def test_channel_used_from_two_threads_each_with_its_loop(
    owner: tuple[str, dict[str, Any]], other: tuple[str, dict[str, Any]], foreign_op: str
) -> None:
    """Thread A parks a receiver on ch (a sender for the ops marked ``*``); thread B (its
    own loop) then uses ch: refused with a RuntimeError naming the loop, nothing lost."""
    parked_sender = foreign_op.endswith("*")
    ch: Chan[int] = Chan()
    bound = threading.Event()
    finished = threading.Event()
    seen: list[object] = []
    received: list[int] = []

    async def owner_main() -> None:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                if parked_sender:
                    tg.start_soon(ch.send, 5)
                else:
                    tg.start_soon(_append, received, ch.recv())
                await blocked()
                bound.set()
                await anyio.to_thread.run_sync(finished.wait, 20)
                # the owner's parked operation is still there and still works
                try:
                    if parked_sender:
                        received.append(ch.recv_nowait())
                    else:
                        ch.send_nowait(5)
                except WouldBlock:
                    tg.cancel_scope.cancel()

    async def other_main() -> None:
        await anyio.to_thread.run_sync(bound.wait, 20)
        try:
            with anyio.fail_after(5):
                if foreign_op in ("recv", "recv*"):
                    await ch.recv()
                elif foreign_op == "recv_nowait*":
                    ch.recv_nowait()
                elif foreign_op == "select_recv*":
                    await select(recv(ch), default=True)
                elif foreign_op == "send":
                    await ch.send(1)
                elif foreign_op == "send_nowait":
                    ch.send_nowait(1)
                elif foreign_op == "select_send":
                    await select(send(ch, 1), default=True)
                else:
                    ch.close()
            seen.append("completed")
        except BaseException as exc:  # noqa: BLE001  (report, then fail below)
            seen.append(exc)
        finally:
            finished.set()

    errors: list[BaseException] = []

    def thread(backend: tuple[str, dict[str, Any]], fn: Callable[[], Awaitable[None]]) -> None:
        try:
            run_on(backend, fn)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            bound.set()
            finished.set()

    threads = [
        threading.Thread(target=thread, args=(owner, owner_main)),
        threading.Thread(target=thread, args=(other, other_main)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a loop hung"
    assert errors == []
    assert len(seen) == 1
    assert isinstance(seen[0], RuntimeError), seen[0]
    assert "loop" in str(seen[0]).lower()
    assert received == [5]  # the foreign op delivered/consumed nothing


# ------------------------------------------------------------------ select ----


async def test_select_result_is_a_matchable_namedtuple() -> None:
    a = Chan[int](1)
    b = Chan[int](1)
    b.send_nowait(42)
    r = await select(recv(a), recv(b))
    assert isinstance(r, Selected)
    assert isinstance(r, tuple)
    assert set(r._fields) >= {"index", "value", "ok"}
    assert (r.index, r.value, r.ok) == (1, 42, True)
    match r:
        case Selected(index=1, value=v, ok=True):
            assert v == 42
        case _:
            pytest.fail(f"match failed on {r!r}")
    r2 = await select(send(a, 5))
    assert (r2.index, r2.value) == (0, None)
    assert a.recv_nowait() == 5


async def test_select_misuse_is_named_and_empty_select_blocks() -> None:
    ch = Chan[int](1)
    bad: Any = ch
    with pytest.raises(TypeError, match=r"(?i)case|recv|send"):
        await select(bad)  # a channel is not a case
    with pytest.raises(TypeError):
        recv(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Chan(1.5)  # type: ignore[arg-type]
    r = await select(default=True)
    assert r.index == -1
    with anyio.move_on_after(0.02) as scope:
        await select()  # Go's `select {}`: blocks forever
    assert scope.cancelled_caught


async def test_select_default_when_nothing_ready() -> None:
    a: Chan[int] = Chan()
    b = Chan[int](1)
    r = await select(recv(a), recv(b), send(a, 1), default=True)
    assert r.index == -1
    assert len(a) == len(b) == 0
    with pytest.raises(WouldBlock):
        a.recv_nowait()
    b.send_nowait(3)
    r = await select(recv(a), recv(b), default=True)
    assert (r.index, r.value, r.ok) == (1, 3, True)


async def test_select_default_still_pairs_with_parked_partners() -> None:
    a: Chan[int] = Chan()
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_append, got, a.recv())
        await blocked()
        r = await select(send(a, 8), default=True)  # a receiver waits: ready
        assert r.index == 0
    assert got == [8]
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.send, 9)
        await blocked()
        r = await select(recv(a), default=True)  # a sender waits: ready
        assert (r.index, r.value, r.ok) == (0, 9, True)


async def test_select_never_pairs_with_itself() -> None:
    a: Chan[int] = Chan()
    r = await select(send(a, 1), recv(a), default=True)
    assert r.index == -1
    out: list[Selected[Any]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_append, out, select(send(a, 1), recv(a)))
            tg.start_soon(_append, out, select(send(a, 2), recv(a)))
    assert sorted(r.index for r in out) == [0, 1]
    (receiver,) = [r for r in out if r.index == 1]
    assert receiver.value in (1, 2) and receiver.ok


def _live_task_count() -> int:
    """How many tasks this event loop runs (every task of trio's tree, or asyncio's)."""
    try:
        import asyncio

        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        count, stack = 0, [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            if task is not None:
                count += 1
                for nursery in task.child_nurseries:
                    stack.extend(nursery.child_tasks)
        return count
    return len(asyncio.all_tasks())


async def test_select_with_a_long_after_starts_no_task_per_call() -> None:
    a = Chan[int](1)

    async def burst(n: int) -> int:
        for i in range(n):
            a.send_nowait(i)
            r = await select(recv(a), recv(after(1000)))
            assert (r.index, r.value) == (0, i)
        await anyio.sleep(0)
        return _live_task_count()

    first = await burst(5)
    # A task per call would add ~100; the one shared timer service (trio) may be
    # started or ended in between, as the collector drops the losing after() channels.
    assert await burst(100) <= first + 1


async def test_select_same_channel_twice_commits_once() -> None:
    a = Chan[int](2)
    seen: Counter[int] = Counter()
    for _ in range(200):
        a.send_nowait(1)
        r = await select(recv(a), recv(a))
        seen[r.index] += 1
        assert len(a) == 0
    assert seen[0] > 0 and seen[1] > 0


async def test_select_commits_exactly_one_ready_case() -> None:
    for _ in range(50):
        a = Chan[int](5)
        b = Chan[int](5)
        c = Chan[int](5)
        a.send_nowait(1)
        b.send_nowait(2)
        r = await select(recv(a), recv(b), send(c, 3))
        lens = (len(a), len(b), len(c))
        if r.index == 0:
            assert (r.value, lens) == (1, (0, 1, 0)), "more than one case committed"
        elif r.index == 1:
            assert (r.value, lens) == (2, (1, 0, 0)), "more than one case committed"
        else:
            assert (r.index, r.value, lens) == (2, None, (1, 1, 1))


async def test_select_chooses_uniformly_among_ready_cases() -> None:
    chans = [Chan[int](1) for _ in range(3)]
    counts: Counter[int] = Counter()
    n = 3000
    for _ in range(n):
        for ch in chans:
            if len(ch) == 0:
                ch.send_nowait(0)
        counts[(await select(*(recv(ch) for ch in chans))).index] += 1
    # binomial(3000, 1/3): sd ~26, so +-200 is ~8 sd
    assert all(800 <= counts[i] <= 1200 for i in range(3)), counts
    # send cases too
    counts.clear()
    for _ in range(2000):
        outs = [Chan[int](1) for _ in range(2)]
        counts[(await select(send(outs[0], 0), send(outs[1], 1))).index] += 1
    assert all(800 <= counts[i] <= 1200 for i in range(2)), counts


async def test_select_blocks_until_a_case_is_ready_and_deregisters_the_rest() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    results: list[Selected[Any]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_append, results, select(recv(a), recv(b)))
        await blocked()
        assert results == []
        await b.send(9)
    assert [(r.index, r.value, r.ok) for r in results] == [(1, 9, True)]
    # the select no longer waits on a
    with pytest.raises(WouldBlock):
        a.send_nowait(1)


async def test_two_selects_rendezvous_exactly_once() -> None:
    for _ in range(30):
        a: Chan[int] = Chan()
        b: Chan[int] = Chan()
        r1: list[Selected[Any]] = []
        r2: list[Selected[Any]] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_append, r1, select(send(a, 1), recv(b)))
                tg.start_soon(_append, r2, select(recv(a), send(b, 2)))
        (x,), (y,) = r1, r2
        assert (x.index, y.index) in {(0, 0), (1, 1)}
        if x.index == 0:
            assert y.value == 1
        else:
            assert x.value == 2
        for ch in (a, b):
            with pytest.raises(WouldBlock):
                ch.recv_nowait()
            with pytest.raises(WouldBlock):
                ch.send_nowait(0)


async def test_select_none_is_a_nil_channel() -> None:
    a = Chan[int](1)
    r = await select(recv(None), send(None, 1), default=True)
    assert r.index == -1
    a.send_nowait(4)
    r = await select(recv(None), recv(a), send(None, 1))
    assert (r.index, r.value) == (1, 4)
    with anyio.move_on_after(0.05) as scope:
        await select(recv(None), send(None, 2))
    assert scope.cancelled_caught, "a nil channel became ready"


async def test_select_recv_on_closed_channel_has_ok_false() -> None:
    a = Chan[int](2)
    a.send_nowait(1)
    a.close()
    r = await select(recv(a))
    assert (r.index, r.value, r.ok) == (0, 1, True)  # drained first
    r = await select(recv(a))
    assert (r.index, r.value, r.ok) == (0, None, False)
    r = await select(recv(a), default=True)
    assert (r.index, r.ok) == (0, False)  # closed counts as ready


async def test_select_send_on_closed_raises() -> None:
    a: Chan[int] = Chan()
    a.close()
    with pytest.raises(ChanClosed):
        await select(send(a, 1))
    with pytest.raises(ChanClosed):
        await select(send(a, 1), default=True)

    b: Chan[int] = Chan()
    c: Chan[int] = Chan()
    outcome: list[object] = []

    async def waiter() -> None:
        try:
            await select(send(b, 1), recv(c))
        except ChanClosed:
            outcome.append("closed")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await blocked()
            b.close()  # closed while the select waits
    assert outcome == ["closed"]


async def test_select_on_ctx_done_and_after() -> None:
    a: Chan[int] = Chan()
    ctx, cancel = with_cancel(background())
    r = await select(recv(a), recv(ctx.done()), default=True)
    assert r.index == -1
    cancel()
    r = await select(recv(a), recv(ctx.done()))
    assert (r.index, r.ok) == (1, False)
    with anyio.fail_after(5):
        r = await select(recv(a), recv(after(0.01)))
    assert (r.index, r.ok) == (1, True)


async def test_select_woken_by_ctx_done_from_another_task() -> None:
    a: Chan[int] = Chan()
    ctx, cancel = with_cancel(background())
    out: list[Selected[Any]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_append, out, select(recv(a), recv(ctx.done())))
            await blocked()
            cancel()
    assert (out[0].index, out[0].ok) == (1, False)


# ------------------------------------------ cancellation leaves no trace ----


async def test_cancelled_blocked_ops_leave_no_trace() -> None:
    unbuf: Chan[int] = Chan()
    full = Chan[int](1)
    full.send_nowait(0)
    empty = Chan[int](1)
    ops: list[Callable[[], Awaitable[Any]]] = [
        lambda: unbuf.send(1),
        lambda: unbuf.recv(),
        lambda: unbuf.recv_ok(),
        lambda: full.send(2),
        lambda: empty.recv(),
        lambda: select(send(unbuf, 3), recv(empty), send(full, 4)),
    ]
    for op in ops:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(op)
                await blocked()
                scope.cancel()
        assert scope.cancelled_caught
    # nothing delivered, nothing consumed, no ghost waiter left behind
    with pytest.raises(WouldBlock):
        unbuf.recv_nowait()
    with pytest.raises(WouldBlock):
        unbuf.send_nowait(5)
    assert len(full) == 1 and full.recv_nowait() == 0
    with pytest.raises(WouldBlock):
        full.recv_nowait()
    empty.send_nowait(6)
    assert empty.recv_nowait() == 6


async def test_cancel_racing_a_handoff_to_a_receiver_loses_nothing() -> None:
    for i in range(40):
        ch = Chan[int](i % 2)  # unbuffered and buffered
        other: Chan[int] = Chan()
        got: list[Any] = []
        use_select = i % 4 >= 2

        async def receiver(scope: anyio.CancelScope) -> None:
            with scope:
                if use_select:
                    got.append((await select(recv(other), recv(ch))).value)
                else:
                    got.append(await ch.recv())

        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver, scope)
            await blocked()
            if i % 3 == 0:
                scope.cancel()
            delivered = _try(lambda: ch.send_nowait(i))
            scope.cancel()
        if delivered:
            leftover = _try(ch.recv_nowait)
            # the value went either to the receiver or stayed in the buffer, once
            assert (got == [i]) != (leftover is not None and leftover == i), (got, leftover)
        else:
            assert got == []


async def test_cancel_racing_a_handoff_from_a_sender_loses_nothing() -> None:
    for i in range(40):
        ch: Chan[int] = Chan()
        other: Chan[int] = Chan()
        sent: list[bool] = []
        use_select = i % 2 == 1

        async def sender(scope: anyio.CancelScope) -> None:
            with scope:
                if use_select:
                    await select(send(ch, i), recv(other))
                else:
                    await ch.send(i)
                sent.append(True)

        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender, scope)
            await blocked()
            if i % 3 == 0:
                scope.cancel()
            taken = _try(ch.recv_nowait)
            scope.cancel()
        # a receiver took the value <=> the send reported success
        assert (taken == i) == (sent == [True]), (taken, sent)


async def test_cancel_racing_a_full_buffer_slot_loses_nothing() -> None:
    for i in range(20):
        ch = Chan[int](1)
        ch.send_nowait(-1)
        sent: list[bool] = []

        async def sender(scope: anyio.CancelScope) -> None:
            with scope:
                await ch.send(i)
                sent.append(True)

        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender, scope)
            await blocked()
            if i % 2:
                scope.cancel()
            assert ch.recv_nowait() == -1  # frees the slot for the parked sender
            scope.cancel()
        rest = [x async for x in _drain(ch)]
        assert (rest == [i]) == (sent == [True]), (rest, sent)


async def _drain(ch: Chan[int]) -> Any:
    while True:
        try:
            yield ch.recv_nowait()
        except WouldBlock:
            return


async def test_no_item_lost_or_duplicated_under_random_cancellation() -> None:
    rng = random.Random(20261204)
    a = Chan[int](2)
    b: Chan[int] = Chan()
    producers, per = 4, 150
    received: list[int] = []
    scopes: list[anyio.CancelScope] = []
    stop_chaos = anyio.Event()
    interrupted = [0, 0]  # cancelled sends, cancelled selects

    async def producer(p: int) -> None:
        for k in range(per):
            item = p * per + k
            delivered = False
            while not delivered:
                with anyio.CancelScope() as sc:
                    scopes.append(sc)
                    if item % 3 == 0:
                        await a.send(item)
                    elif item % 3 == 1:
                        await b.send(item)
                    else:
                        await select(send(a, item), send(b, item))
                    delivered = True
                scopes.remove(sc)
                interrupted[0] += sc.cancelled_caught

    async def consumer() -> None:
        chans: list[Chan[int] | None] = [a, b]
        while chans != [None, None]:
            with anyio.CancelScope() as sc:
                scopes.append(sc)
                r = await select(recv(chans[0]), recv(chans[1]))
                if r.ok:
                    received.append(r.value)
                else:
                    chans[r.index] = None  # closed: a nil channel from now on
            scopes.remove(sc)
            interrupted[1] += sc.cancelled_caught

    async def chaos() -> None:
        while not stop_chaos.is_set():
            await anyio.sleep(0)
            if scopes and rng.random() < 0.5:
                rng.choice(scopes).cancel()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as outer:
            outer.start_soon(chaos)
            async with anyio.create_task_group() as cons:
                for _ in range(3):
                    cons.start_soon(consumer)
                async with anyio.create_task_group() as prods:
                    for p in range(producers):
                        prods.start_soon(producer, p)
                a.close()
                b.close()
            stop_chaos.set()
    assert sorted(received) == list(range(producers * per))
    assert interrupted[0] > 0 and interrupted[1] > 0, interrupted  # the chaos did bite


def _try(fn: Callable[[], Any]) -> Any:
    try:
        r = fn()
    except WouldBlock:
        return None
    return True if r is None else r


async def test_context_cancellation_of_a_blocked_send_delivers_nothing() -> None:
    ch: Chan[int] = Chan()
    ctx, cancel = with_cancel(background())
    outcome: list[object] = []

    async def sender() -> None:
        try:
            with ctx.scope():
                await ch.send(1)
        except Canceled as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await blocked()
            cancel()
    assert len(outcome) == 1 and isinstance(outcome[0], Canceled)
    with pytest.raises(WouldBlock):
        ch.recv_nowait()


# ----------------------------------------------------------------- Context ----


def test_canceled_and_deadline_exceeded_types() -> None:
    assert issubclass(Canceled, Exception)
    assert issubclass(DeadlineExceeded, Exception)
    assert issubclass(DeadlineExceeded, TimeoutError)
    import asyncio

    import trio

    for backend_exc in (asyncio.CancelledError, trio.Cancelled):
        assert not issubclass(Canceled, backend_exc)
        assert not issubclass(DeadlineExceeded, backend_exc)
        assert not issubclass(backend_exc, Canceled)
        assert not issubclass(backend_exc, DeadlineExceeded)


async def test_background_is_never_done() -> None:
    bg = background()
    assert isinstance(bg, Context)
    assert bg.err() is None
    assert bg.cause() is None
    assert bg.deadline() is None
    assert bg.value("missing") is None
    assert not is_done(bg)
    r = await select(recv(bg.done()), default=True)
    assert r.index == -1


async def test_done_is_a_receive_only_channel() -> None:
    ctx, cancel = with_cancel(background())
    done: Any = ctx.done()
    assert isinstance(done, RecvChan)
    with pytest.raises((AttributeError, TypeError)):
        done.close()  # only the context closes it
    with pytest.raises((AttributeError, TypeError)):
        done.send_nowait(None)
    assert not ctx.done().closed
    cancel()
    assert ctx.done().closed
    assert [x async for x in ctx.done()] == []


@pytest.mark.parametrize("second", RUNS)
@pytest.mark.parametrize("first", RUNS)
def test_background_is_usable_from_every_event_loop(
    first: tuple[str, dict[str, Any]], second: tuple[str, dict[str, Any]]
) -> None:
    """background() is process-wide: waiting on it in one run must not bind it there."""

    async def main() -> str:
        x: Chan[int] = Chan()
        for ctx in (background(), without_cancel(background())):
            with anyio.move_on_after(0.01) as scope:
                await select(recv(x), recv(ctx.done()))
            assert scope.cancelled_caught
            with anyio.move_on_after(0.01) as scope:
                await ctx.wait()
            assert scope.cancelled_caught
        return "ok"

    assert run_on(first, main) == "ok"
    assert run_on(second, main) == "ok"


async def test_with_cancel_cancels_self_and_descendants_at_once() -> None:
    root, cancel_root = with_cancel(background())
    child, cancel_child = with_cancel(root)
    grand, _ = with_timeout(child, 1000)
    grand2 = with_value(grand, "k", 1)
    sibling, _ = with_cancel(root)
    assert all(c.err() is None for c in (root, child, grand, grand2, sibling))

    cancel_child()
    assert isinstance(child.err(), Canceled)
    assert isinstance(grand.err(), Canceled) and isinstance(grand2.err(), Canceled)
    assert root.err() is None and sibling.err() is None  # cancellation flows down only
    assert is_done(child) and is_done(grand2) and not is_done(root)

    cancel_root()  # synchronous, no await in between
    for c in (root, sibling):
        assert isinstance(c.err(), Canceled)
        assert not isinstance(c.err(), DeadlineExceeded)
        assert is_done(c)
        assert await c.done().recv_ok() == (None, False)
    assert isinstance(root.cause(), Canceled)


async def test_cancel_reaches_deep_and_wide_trees_in_one_pass() -> None:
    root, cancel = with_cancel(background())
    leaf = root
    for i in range(5000):  # deeper than the recursion limit
        leaf = with_value(leaf, "depth", i) if i % 2 else with_cancel(leaf)[0]
    wide = [with_timeout(root, 1000)[0] for _ in range(2000)]
    cancel()
    assert isinstance(leaf.err(), Canceled)
    assert is_done(leaf)
    assert all(isinstance(c.err(), Canceled) for c in wide)


_KEEP_ALIVE: list[object] = []


@pytest.mark.usefixtures("no_leaks")
async def test_timeouts_need_no_background_task() -> None:
    for _ in range(50):
        ctx, cancel = with_timeout(background(), 1000)
        _KEEP_ALIVE.append((ctx, cancel, with_deadline(ctx, anyio.current_time() + 500)))
    await anyio.sleep(0)
    assert all(c.err() is None for c, _, _ in _KEEP_ALIVE)  # type: ignore[misc]


async def test_children_of_a_done_context_are_born_done() -> None:
    class Why(Exception):
        pass

    parent, cancel = with_cancel_cause(background())
    why = Why()
    cancel(why)
    for child in (
        with_cancel(parent)[0],
        with_timeout(parent, 1000)[0],
        with_deadline(parent, anyio.current_time() + 1000)[0],
        with_cancel_cause(parent)[0],
        with_value(parent, "k", 1),
    ):
        assert isinstance(child.err(), Canceled)
        assert child.cause() is why
        assert is_done(child)
    zero, _ = with_timeout(background(), 0)
    assert isinstance(zero.err(), DeadlineExceeded)  # Go: a zero timeout is already past


async def test_cancel_is_idempotent() -> None:
    ctx, cancel = with_cancel(background())
    fired: list[int] = []
    after_func(ctx, lambda: fired.append(1))
    cancel()
    first = ctx.err()
    cancel()
    cancel()
    assert ctx.err() is first or type(ctx.err()) is type(first)
    await anyio.sleep(0)
    assert fired == [1]


async def test_cancel_after_child_done_keeps_child_error() -> None:
    parent, cancel_parent = with_cancel(background())
    child, _ = with_timeout(parent, -1)  # deadline already past
    assert isinstance(child.err(), DeadlineExceeded)
    cancel_parent()
    assert isinstance(child.err(), DeadlineExceeded)  # first error sticks


async def test_with_timeout_fires_deadline_exceeded() -> None:
    t0 = anyio.current_time()
    ctx, cancel = with_timeout(background(), 0.05)
    t1 = anyio.current_time()
    d = ctx.deadline()
    assert d is not None and t0 + 0.05 <= d <= t1 + 0.05
    assert ctx.err() is None
    with anyio.fail_after(10):
        await ctx.wait()
    assert anyio.current_time() >= d - 1e-3
    err = ctx.err()
    assert isinstance(err, DeadlineExceeded) and isinstance(err, TimeoutError)
    assert isinstance(ctx.cause(), DeadlineExceeded)
    assert is_done(ctx)
    cancel()  # after the fact: no change
    assert isinstance(ctx.err(), DeadlineExceeded)


async def test_with_deadline_uses_anyio_clock() -> None:
    when = anyio.current_time() + 0.05
    ctx, _ = with_deadline(background(), when)
    assert ctx.deadline() == when
    assert ctx.err() is None
    with anyio.fail_after(10):
        await ctx.wait()
    assert anyio.current_time() >= when - 1e-3
    assert isinstance(ctx.err(), DeadlineExceeded)

    past, _ = with_deadline(background(), anyio.current_time() - 1)
    assert isinstance(past.err(), DeadlineExceeded)
    assert is_done(past)


async def test_deadlines_inherit_and_never_extend() -> None:
    parent, _ = with_timeout(background(), 100)
    pd = parent.deadline()
    assert pd is not None
    later, _ = with_timeout(parent, 10_000)
    assert later.deadline() == pd  # a child cannot outlive its parent's deadline
    cancel_child, _ = with_cancel(parent)
    assert cancel_child.deadline() == pd
    assert with_value(parent, "k", "v").deadline() == pd
    sooner, _ = with_timeout(parent, 1)
    sd = sooner.deadline()
    assert sd is not None and sd < pd

    short, _ = with_timeout(background(), 0.02)
    kid, _ = with_cancel(short)
    with anyio.fail_after(10):
        await kid.wait()
    assert isinstance(kid.err(), DeadlineExceeded)  # the parent's error


async def test_with_cancel_cause() -> None:
    class Boom(Exception):
        pass

    ctx, cancel = with_cancel_cause(background())
    child, _ = with_cancel(ctx)
    assert ctx.cause() is None
    boom = Boom("why")
    cancel(boom)
    assert isinstance(ctx.err(), Canceled)
    assert ctx.cause() is boom
    assert isinstance(child.err(), Canceled)
    assert child.cause() is boom  # Go: Cause(child) is the parent's cause
    cancel(Boom("later"))  # idempotent: the first cause stays
    assert ctx.cause() is boom

    plain, cancel_plain = with_cancel(background())
    cancel_plain()
    assert plain.cause() is plain.err()


async def test_with_cancel_cause_with_no_cause_uses_canceled() -> None:
    ctx, cancel = with_cancel_cause(background())
    cancel(None)  # Go: CancelCauseFunc(nil) sets the cause to Canceled
    assert isinstance(ctx.err(), Canceled)
    assert isinstance(ctx.cause(), Canceled)


async def test_with_value_lookup_chain() -> None:
    a = with_value(background(), "user", "ann")
    b = with_value(a, "req", 7)
    c = with_value(b, "user", "bob")  # shadows
    d, _ = with_cancel(c)
    assert a.value("user") == "ann" and a.value("req") is None
    assert b.value("user") == "ann" and b.value("req") == 7
    assert c.value("user") == "bob" and d.value("user") == "bob" and d.value("req") == 7
    assert d.value("nope") is None
    key = object()
    assert with_value(d, key, [1]).value(key) == [1]
    assert a.err() is None and a.deadline() is None


async def test_without_cancel_keeps_values_not_cancellation() -> None:
    parent, cancel = with_timeout(with_value(background(), "k", "v"), 0.01)
    detached = without_cancel(parent)
    assert detached.value("k") == "v"
    assert detached.deadline() is None
    cancel()
    assert isinstance(parent.err(), Canceled)
    assert detached.err() is None and detached.cause() is None
    assert not is_done(detached)
    r = await select(recv(detached.done()), default=True)
    assert r.index == -1
    child, cancel_child = with_cancel(detached)
    assert child.err() is None
    cancel_child()
    assert isinstance(child.err(), Canceled) and detached.err() is None


async def test_after_func_runs_once_when_done() -> None:
    ctx, cancel = with_cancel(background())
    child, _ = with_cancel(ctx)
    calls: list[str] = []
    stop = after_func(child, lambda: calls.append("x"))
    await anyio.sleep(0)
    assert calls == []
    cancel()  # the parent: the child is done too
    cancel()
    for _ in range(3):
        await anyio.sleep(0)
    assert calls == ["x"]
    assert stop() is False  # already ran


async def test_after_func_stop_prevents_the_call() -> None:
    ctx, cancel = with_cancel(background())
    calls: list[int] = []
    stop = after_func(ctx, lambda: calls.append(1))
    assert stop() is True
    assert stop() is False  # already stopped
    cancel()
    for _ in range(3):
        await anyio.sleep(0)
    assert calls == []


async def test_after_func_on_done_ctx_and_on_deadline() -> None:
    done, cancel = with_cancel(background())
    cancel()
    calls: list[str] = []
    after_func(done, lambda: calls.append("done"))
    for _ in range(3):
        await anyio.sleep(0)
    assert calls == ["done"]

    timed, _ = with_timeout(background(), 0.02)
    after_func(timed, lambda: calls.append("deadline"))
    with anyio.fail_after(10):
        await timed.wait()
        while len(calls) < 2:
            await anyio.sleep(0.001)
    assert calls == ["done", "deadline"]


async def test_wait_returns_when_another_task_cancels() -> None:
    ctx, cancel = with_cancel(background())
    woke: list[object] = []

    async def waiter() -> None:
        await ctx.wait()
        woke.append(ctx.err())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await blocked()
            assert woke == []
            cancel()
    assert len(woke) == 2 and all(isinstance(e, Canceled) for e in woke)
    with anyio.fail_after(5):
        await ctx.wait()  # already done: returns at once


async def test_scope_cancels_body_and_raises_err() -> None:
    ctx, cancel = with_cancel(background())
    reached: list[str] = []

    async def canceller() -> None:
        await blocked()
        cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(canceller)
        with pytest.raises(Canceled):
            with anyio.fail_after(5):
                with ctx.scope():
                    await anyio.sleep_forever()
                reached.append("after")
    assert reached == []

    # a ctx already done: the body is cancelled at its first await
    with pytest.raises(Canceled):
        with ctx.scope():
            await anyio.sleep(0)
            reached.append("body")
    assert reached == []


async def test_scope_raises_err_not_cause() -> None:
    ctx, cancel = with_cancel_cause(background())
    cancel(KeyError("why"))
    with pytest.raises(Canceled):
        with ctx.scope():
            await anyio.sleep_forever()


async def test_scope_raises_deadline_exceeded_on_timeout() -> None:
    ctx, _ = with_timeout(background(), 0.02)
    with pytest.raises(DeadlineExceeded):
        with anyio.fail_after(10):
            with ctx.scope():
                await anyio.sleep_forever()


async def test_scope_is_silent_when_ctx_stays_live() -> None:
    ctx, cancel = with_cancel(background())
    with ctx.scope():
        await anyio.sleep(0)
    assert ctx.err() is None
    cancel()


async def test_scope_lets_backend_cancellation_through() -> None:
    ctx, _ = with_cancel(background())
    with anyio.CancelScope() as outer:
        with ctx.scope():
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert ctx.err() is None


async def test_current_follows_innermost_scope() -> None:
    assert current().err() is None and current().deadline() is None
    assert current() is background() or current().value("x") is None
    outer, cancel_outer = with_cancel(with_value(background(), "x", 1))
    inner, cancel_inner = with_cancel(outer)
    seen: list[Context] = []
    with outer.scope():
        assert current() is outer
        with inner.scope():
            assert current() is inner
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _append(seen, _current()))
        assert current() is outer
    assert current() is not outer and current().err() is None
    assert seen == [inner]
    cancel_inner()
    cancel_outer()


async def _current() -> Context:
    return current()


@pytest.mark.parametrize("make", ["cancel", "timeout", "deadline", "cause"])
async def test_with_results_are_context_managers(make: str) -> None:
    def build() -> Any:
        if make == "cancel":
            return with_cancel(background())
        if make == "timeout":
            return with_timeout(background(), 1000)
        if make == "deadline":
            return with_deadline(background(), anyio.current_time() + 1000)
        return with_cancel_cause(background())

    with build() as ctx:
        assert isinstance(ctx, Context)
        assert ctx.err() is None
    assert isinstance(ctx.err(), Canceled)
    assert not isinstance(ctx.err(), DeadlineExceeded)

    with pytest.raises(KeyError):
        with build() as ctx2:
            raise KeyError("body")
    assert isinstance(ctx2.err(), Canceled)

    # and still unpack as a (ctx, cancel) pair
    ctx3, cancel3 = build()
    assert isinstance(ctx3, Context) and callable(cancel3)


async def test_cancel_from_another_thread_wakes_waiters() -> None:
    ctx, cancel = with_cancel(background())
    child, _ = with_cancel(ctx)
    go = threading.Event()

    def worker() -> None:
        go.wait(10)
        cancel()

    t = threading.Thread(target=worker)
    t.start()
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(child.wait)
                await blocked()
                go.set()  # the loop is now idle, waiting for the thread
                r = await select(recv(ctx.done()))
    finally:
        go.set()
        t.join(10)
    assert (r.index, r.ok) == (0, False)
    assert isinstance(child.err(), Canceled)


async def test_cancel_from_many_threads_at_once() -> None:
    ctxs = [with_cancel(background()) for _ in range(20)]
    fired: list[int] = []
    for i, (c, _) in enumerate(ctxs):
        after_func(c, lambda i=i: fired.append(i))
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait(10)
        for _, cancel in ctxs:
            cancel()

    with anyio.fail_after(10):
        await anyio.to_thread.run_sync(lambda: _run_threads(worker, 4))
        for c, _ in ctxs:
            await c.wait()
        while len(fired) < len(ctxs):
            await anyio.sleep(0.001)
    await anyio.sleep(0.01)
    assert sorted(fired) == list(range(len(ctxs)))  # each after_func exactly once
    assert all(isinstance(c.err(), Canceled) for c, _ in ctxs)


def _run_threads(fn: Callable[[], None], n: int) -> None:
    ts = [threading.Thread(target=fn) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)


def test_timeouts_follow_trio_mock_clock() -> None:
    async def main() -> tuple[float, float | None, object]:
        import trio

        start = trio.current_time()
        ctx, _ = with_timeout(background(), 3600)
        with trio.move_on_after(7200):  # a mock-clock bound: autojumps, no wall time
            await ctx.wait()
        return trio.current_time() - start, ctx.deadline(), ctx.err()

    (elapsed, deadline, err), _ = run_trio_mock(main, autojump_threshold=0)
    assert 3600 <= elapsed < 3601
    assert deadline is not None
    assert isinstance(err, DeadlineExceeded)


def test_deadline_checked_against_jumped_mock_clock() -> None:
    async def main() -> list[object]:
        import trio

        clock = trio.lowlevel.current_clock()
        ctx, _ = with_timeout(background(), 10)
        fired: list[object] = []
        after_func(ctx, lambda: fired.append("fired"))
        out: list[object] = []
        clock.jump(9.5)  # type: ignore[attr-defined]
        for _ in range(3):
            await trio.sleep(0)
        out.append(ctx.err())
        clock.jump(1)  # type: ignore[attr-defined]
        for _ in range(3):
            await trio.sleep(0)
        out.append(ctx.err())
        out.append(list(fired))
        return out

    (before, after_jump, fired), _ = run_trio_mock(main)
    assert before is None
    assert isinstance(after_jump, DeadlineExceeded)
    assert fired == ["fired"]


def test_scope_deadline_on_trio_mock_clock() -> None:
    async def main() -> float:
        import trio

        start = trio.current_time()
        with with_timeout(background(), 100) as ctx:
            with pytest.raises(DeadlineExceeded):
                with ctx.scope():
                    await trio.sleep(1000)
        return trio.current_time() - start

    elapsed, _ = run_trio_mock(main, autojump_threshold=0)
    assert 100 <= elapsed < 101


# ------------------------------------------------------------------- Group ----


class Boom(Exception):
    pass


class Other(Exception):
    pass


@pytest.mark.usefixtures("no_leaks")
async def test_group_waits_for_every_task() -> None:
    done: list[int] = []

    async def work(i: int) -> None:
        await anyio.sleep(0.01 * (i % 3))
        done.append(i)

    with anyio.fail_after(10):
        async with Group() as g:
            for i in range(6):
                await g.go(work, i)
            assert g.try_go(work, 6) is True  # no limit: always a slot
    assert sorted(done) == list(range(7))
    assert g.errors == [] or list(g.errors) == []


@pytest.mark.usefixtures("no_leaks")
async def test_group_limit_waits_for_a_slot_and_try_go_refuses() -> None:
    release: Chan[None] = Chan()
    running = 0
    peak = 0
    finished: list[int] = []

    async def work(i: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.recv()
        finally:
            running -= 1
        finished.append(i)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer:
            async with Group(limit=2) as g:
                await g.go(work, 0)
                assert g.try_go(work, 1) is True
                await blocked()
                assert running == 2
                assert g.try_go(work, 99) is False  # no free slot: not started
                go_returned = anyio.Event()

                async def releaser() -> None:
                    await blocked()
                    assert not go_returned.is_set(), "go() did not wait for a slot"
                    for _ in range(4):
                        await release.send(None)

                outer.start_soon(releaser)
                await g.go(work, 2)  # waits until a slot frees up
                go_returned.set()
                await g.go(work, 3)
    assert peak == 2
    assert sorted(finished) == [0, 1, 2, 3]


@pytest.mark.usefixtures("no_leaks")
async def test_group_cancelled_go_starts_nothing() -> None:
    gate: Chan[None] = Chan()
    started: list[str] = []

    async def blocker() -> None:
        started.append("blocker")
        await gate.recv()

    async def extra() -> None:
        started.append("extra")

    with anyio.fail_after(10):
        async with Group(limit=1) as g:
            await g.go(blocker)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(g.go, extra)
                    await blocked()
                    scope.cancel()
            await gate.send(None)
    assert started == ["blocker"]


@pytest.mark.usefixtures("no_leaks")
async def test_group_first_error_cancels_ctx_and_is_reraised_as_itself() -> None:
    raised: list[BaseException] = []
    saw_cancel: list[object] = []
    cancelled_sleepers: list[bool] = []

    async def failing() -> None:
        await anyio.sleep(0)
        exc = Boom("first")
        raised.append(exc)
        raise exc

    async def watcher(ctx: Context) -> None:
        await ctx.wait()  # g.ctx is cancelled on the first error
        saw_cancel.append(ctx.err())

    async def sleeper() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled_sleepers.append(True)
            raise

    with anyio.fail_after(10):
        with pytest.raises(Boom) as info:
            async with Group() as g:
                await g.go(watcher, g.ctx)
                await g.go(sleeper)
                await g.go(failing)
    assert type(info.value) is Boom
    assert info.value is raised[0]
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "failing" in names  # the task's own traceback is kept
    assert len(saw_cancel) == 1 and saw_cancel[0] is not None
    assert cancelled_sleepers == [True]
    assert g.ctx.err() is not None


@pytest.mark.usefixtures("no_leaks")
async def test_group_later_errors_are_collected() -> None:
    async def first() -> None:
        raise Boom("first")

    async def second() -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.02)
        raise Other("second")

    with anyio.fail_after(10):
        with pytest.raises(Boom):
            async with Group() as g:
                await g.go(second)
                await g.go(first)
    errors = list(g.errors)
    assert any(isinstance(e, Other) for e in errors)
    # no backend cancellation is listed as an error
    assert not any(isinstance(e, anyio.get_cancelled_exc_class()) for e in errors)
    if errors and isinstance(errors[0], Boom):
        assert all(not isinstance(e, Boom) for e in errors[1:])


@pytest.mark.usefixtures("no_leaks")
async def test_group_ctx_cancelled_on_normal_exit_and_inherits_parent() -> None:
    parent = with_value(background(), "k", "v")
    async with Group(parent) as g:
        assert g.ctx.value("k") == "v"
        assert g.ctx.err() is None
        await g.go(anyio.sleep, 0)
    assert g.ctx.err() is not None
    assert parent.err() is None


@pytest.mark.usefixtures("no_leaks")
async def test_group_ctx_follows_parent_cancellation() -> None:
    parent, cancel = with_cancel(background())
    seen: list[object] = []

    async def worker(ctx: Context) -> None:
        await ctx.wait()
        seen.append(ctx.err())

    with anyio.fail_after(10):
        try:
            async with Group(parent) as g:
                await g.go(worker, g.ctx)
                await blocked()
                cancel()
        except Canceled:
            pass  # the contract is silent on whether the exit reports it
    assert len(seen) == 1 and isinstance(seen[0], Canceled)


@pytest.mark.usefixtures("no_leaks")
async def test_group_body_error_cancels_tasks_and_propagates() -> None:
    cancelled: list[bool] = []

    async def sleeper() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    with anyio.fail_after(10):
        with pytest.raises(Boom) as info:
            async with Group() as g:
                await g.go(sleeper)
                await blocked()
                raise Boom("body")
    assert type(info.value) is Boom
    assert cancelled == [True]


@pytest.mark.usefixtures("no_leaks")
async def test_group_first_error_wins_over_a_body_waiting_on_the_group() -> None:
    async def failing() -> None:
        await anyio.sleep(0)
        raise Boom("task")

    with anyio.fail_after(10):
        with pytest.raises(Boom) as info:
            async with Group(limit=1) as g:
                await g.go(failing)
                await g.ctx.wait()  # woken by the first error
                await g.go(anyio.sleep, 0)
    assert type(info.value) is Boom
    assert str(info.value) == "task"

    with anyio.fail_after(10):
        with pytest.raises(Boom) as info:
            async with Group(limit=1) as g:
                await g.go(failing)
                await g.go(anyio.sleep_forever)  # the slot frees when failing() ends
                await anyio.sleep_forever()
    assert type(info.value) is Boom


class CustomBase(BaseException):
    pass


@pytest.mark.usefixtures("no_leaks")
async def test_group_base_exception_propagates_untouched() -> None:
    exc = CustomBase("stop")

    async def task() -> None:
        await anyio.sleep(0)
        raise exc

    async def sleeper() -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        with pytest.raises(CustomBase) as info:
            async with Group() as g:
                await g.go(sleeper)
                await g.go(task)
    assert info.value is exc
    assert not any(isinstance(e, CustomBase) for e in g.errors)


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("backend", RUNS)
def test_group_system_exit_and_keyboard_interrupt_propagate(
    backend: tuple[str, dict[str, Any]], kind: type[BaseException]
) -> None:
    exc = kind(3)

    async def main() -> None:
        async def task() -> None:
            await anyio.sleep(0)
            raise exc

        async with Group() as g:
            await g.go(anyio.sleep_forever)
            await g.go(task)

    with pytest.raises(kind) as info:
        run_on(backend, main)
    assert info.value is exc


@pytest.mark.usefixtures("no_leaks")
async def test_group_does_not_swallow_backend_cancellation() -> None:
    cancelled: list[bool] = []

    async def sleeper() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    # cancelled while the body runs
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            async with Group() as g:
                await g.go(sleeper)
                await blocked()
                scope.cancel()
                await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert cancelled == [True]
    assert list(g.errors) == []

    # cancelled while the exit waits for the tasks
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope2:
            async with anyio.create_task_group() as tg:

                async def cancel_later() -> None:
                    await blocked()
                    scope2.cancel()

                tg.start_soon(cancel_later)
                async with Group() as g2:
                    await g2.go(sleeper)
                # not reached: the cancellation must propagate out of the group
                pytest.fail("group exit swallowed the backend cancellation")
    assert scope2.cancelled_caught
    assert cancelled == [True, True]
    assert list(g2.errors) == []


@pytest.mark.usefixtures("no_leaks")
async def test_group_tasks_run_concurrently_with_body() -> None:
    ch: Chan[int] = Chan()
    with anyio.fail_after(10):
        async with Group() as g:
            await g.go(ch.send, 1)
            assert await ch.recv() == 1  # the body talks to its own task


def test_public_names_exist() -> None:
    for name in (
        "Chan",
        "SendChan",
        "RecvChan",
        "ChanClosed",
        "WouldBlock",
        "select",
        "recv",
        "send",
        "Selected",
        "Context",
        "background",
        "with_cancel",
        "with_timeout",
        "with_deadline",
        "with_cancel_cause",
        "with_value",
        "without_cancel",
        "after_func",
        "current",
        "Canceled",
        "DeadlineExceeded",
        "Group",
    ):
        assert hasattr(asyncgo, name), name

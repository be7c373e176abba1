"""select: DESIGN.md "select" and issue #2, rule by rule, on asyncio, uvloop and trio."""

from __future__ import annotations

import textwrap
from collections import Counter, deque
from pathlib import Path
from typing import Any

import anyio
import pytest
from _guards import turns_of_another_task
from _mypy import run_mypy

from asyncgo import Case, Chan, ChanClosed, Selected, WouldBlock, recv, select, send

pytestmark = pytest.mark.anyio


async def parked(tg: anyio.abc.TaskGroup, fn: Any, *args: Any) -> None:
    """Start ``fn(*args)`` and return once it (and every other task) is blocked."""
    tg.start_soon(fn, *args)
    await anyio.wait_all_tasks_blocked()


async def select_into(out: list[Selected[Any]], *cases: Case[Any]) -> None:
    out.append(await select(*cases))


async def select_in_cancel_scope(
    out: list[Any], *cases: Case[Any], task_status: anyio.abc.TaskStatus[anyio.CancelScope]
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        out.append(await select(*cases))


# -- the result --------------------------------------------------------------------------


async def test_result_is_a_named_tuple_usable_with_match() -> None:
    a = Chan[int](1)
    b = Chan[str](1)
    await b.send("hi")
    r = await select(recv(a), recv(b))
    assert isinstance(r, Selected) and isinstance(r, tuple)
    assert r == (1, "hi", True)
    assert (r.index, r.value, r.ok) == (1, "hi", True)
    index, value, ok = r
    assert (index, value, ok) == (1, "hi", True)
    match r:
        case Selected(0, _, _):
            pytest.fail("wrong case")
        case Selected(1, str() as s, True):
            assert s == "hi"
        case _:
            pytest.fail("no case matched")
    match r:
        case Selected(index=1, value="hi", ok=True):
            pass
        case _:
            pytest.fail("keyword pattern did not match")
    assert Selected[int](0, 1, True) == (0, 1, True)  # generic at run time too


async def test_send_case_result() -> None:
    a = Chan[int](1)
    r = await select(send(a, 5))
    assert r == Selected(0, None, True)
    assert a.recv_nowait() == 5


async def test_non_case_arguments_are_rejected() -> None:
    a = Chan[int](1)
    with pytest.raises(TypeError, match="recv"):
        await select(a)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="case 1"):
        await select(recv(a), 3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"recv\(\) expects a Chan, .* not int"):
        recv(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        send("not a channel", 1)  # type: ignore[arg-type]


# -- exactly one case commits ---------------------------------------------------------------


async def test_exactly_one_ready_case_commits() -> None:
    a, b, c = Chan[int](1), Chan[int](1), Chan[int](1)
    for _ in range(200):
        a.send_nowait(1)
        b.send_nowait(2)
        r = await select(recv(a), recv(b), send(c, 3))
        assert sum((len(a) == 0, len(b) == 0, len(c) == 1)) == 1
        assert r.ok
        if r.index == 0:
            assert r.value == 1
        elif r.index == 1:
            assert r.value == 2
        else:
            assert r.value is None and c.recv_nowait() == 3
        for ch in (a, b):
            if len(ch):
                ch.recv_nowait()


async def test_parked_select_commits_exactly_one_case() -> None:
    a, b = Chan[int](), Chan[int]()
    out: list[Selected[Any]] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, select_into, out, recv(a), recv(b))
        a.send_nowait(1)
        # The select was claimed by a: b's entry is dead even before the task runs.
        with pytest.raises(WouldBlock):
            b.send_nowait(2)
    assert out == [(0, 1, True)]
    with pytest.raises(WouldBlock):
        a.send_nowait(3)
    assert not b._recvq and not a._recvq


async def test_parked_select_send_case_taken_by_receiver() -> None:
    a, b = Chan[int](), Chan[int]()
    out: list[Selected[Any]] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, select_into, out, send(a, 10), send(b, 20))
        assert b.recv_nowait() == 20
        with pytest.raises(WouldBlock):
            a.recv_nowait()
    assert out == [(1, None, True)]


async def test_parked_select_send_case_on_full_buffer() -> None:
    a = Chan[int](1)
    a.send_nowait(1)
    out: list[Selected[Any]] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, select_into, out, send(a, 2))
        assert a.recv_nowait() == 1  # frees the slot: the parked select's value moves in
        assert len(a) == 1
    assert out == [(0, None, True)]
    assert a.recv_nowait() == 2


# -- fairness --------------------------------------------------------------------------------


async def test_fairness_two_always_ready_channels() -> None:
    a, b = Chan[int](1), Chan[int](1)
    a.send_nowait(0)
    b.send_nowait(1)
    wins = Counter[int]()
    for _ in range(2000):
        r = await select(recv(a), recv(b))
        wins[r.index] += 1
        (a, b)[r.index].send_nowait(r.index)  # keep both ready
    assert 800 <= wins[0] <= 1200, wins
    assert 800 <= wins[1] <= 1200, wins


async def test_fairness_mixed_send_and_recv_cases_and_nil_never_chosen() -> None:
    a = Chan[int](1)  # recv ready
    b = Chan[int](5)  # send ready
    c = Chan[int]()  # never ready
    a.send_nowait(0)
    wins = Counter[int]()
    for _ in range(3000):
        r = await select(recv(a), send(b, 1), recv(c), recv(None), send(None, 1), send(c, 1))
        wins[r.index] += 1
        if r.index == 0:
            a.send_nowait(0)
        else:
            b.recv_nowait()
    assert set(wins) == {0, 1}, wins
    assert 1200 <= wins[0] <= 1800, wins


@pytest.mark.parametrize("other", ["send", "closed", "parked_sender", "nil", "empty"])
async def test_two_cases_one_buffered_recv_fair_against_any_other_ready_case(other: str) -> None:
    """Two cases, one a buffered receive (select's unrolled fast path): when the
    other case is ready in another way, each still wins half the time; when it
    is not ready (a nil or empty channel), the buffered one always wins."""
    a = Chan[int](1)
    a.send_nowait(0)
    b = Chan[int](0 if other in ("parked_sender", "empty") else 5)
    if other == "closed":
        b.close()
    wins = Counter[int]()
    async with anyio.create_task_group() as tg:
        for _ in range(2000):
            if other == "parked_sender" and not b._sendq:
                tg.start_soon(b.send, 9)
                await anyio.wait_all_tasks_blocked()
            if other == "send":
                case = send(b, 1)
            else:
                case = recv(None if other == "nil" else b)
            r = await select(recv(a), case)
            wins[r.index] += 1
            if r.index == 0:
                a.send_nowait(0)
            elif other == "send":
                b.recv_nowait()
        tg.cancel_scope.cancel()
    if other in ("nil", "empty"):
        assert wins == {0: 2000}, wins
    else:
        assert 800 <= wins[0] <= 1200, wins


async def test_fairness_three_ready_cases() -> None:
    chans = [Chan[int](1) for _ in range(3)]
    for ch in chans:
        ch.send_nowait(0)
    wins = Counter[int]()
    for _ in range(3000):
        r = await select(*(recv(ch) for ch in chans))
        wins[r.index] += 1
        chans[r.index].send_nowait(0)
    for i in range(3):
        assert 800 <= wins[i] <= 1200, wins


@pytest.mark.parametrize("n", [4, 5, 6, 7, 9])
async def test_fairness_many_ready_cases_some_not_ready(n: int) -> None:
    """Up to six cases the poll order comes from a table of permutations, beyond
    from a shuffle: either way every ready case wins equally often, the cases
    that are not ready (every third one, and a nil case) never."""
    chans = [Chan[int](1) for _ in range(n)]
    ready = [i for i in range(n) if i % 3 != 1]
    for i in ready:
        chans[i].send_nowait(0)
    cases = [recv(ch) for ch in chans]
    wins = Counter[int]()
    rounds = 1000 * len(ready)
    for _ in range(rounds):
        r = await select(*cases, recv(None))
        wins[r.index] += 1
        chans[r.index].send_nowait(0)
    assert set(wins) == set(ready), wins
    for i in ready:  # expected 1000 each; the bounds are about 7 standard deviations
        assert 780 <= wins[i] <= 1220, wins


def test_every_poll_order_is_drawn() -> None:
    """The permutation tables hold every order once; the shuffle draws every order."""
    from itertools import permutations

    from asyncgo._select import _PERM_MAX, _PERMS, _shuffled

    for k in range(3, _PERM_MAX + 1):
        assert sorted(_PERMS[k]) == sorted(permutations(range(k)))
    seen = Counter(tuple(_shuffled(4)) for _ in range(24 * 400))
    assert len(seen) == 24 and min(seen.values()) > 250, seen


async def test_same_channel_twice_is_fair_and_takes_one_item() -> None:
    a = Chan[int](2)
    wins = Counter[int]()
    for i in range(1000):
        a.send_nowait(i)
        r = await select(recv(a), recv(a))
        assert r.value == i and r.ok
        assert len(a) == 0
        wins[r.index] += 1
    assert 350 <= wins[0] <= 650, wins


# -- default ---------------------------------------------------------------------------------


async def test_default_when_nothing_ready() -> None:
    a, b = Chan[int](), Chan[int](1)
    b.send_nowait(1)
    b_full = await select(recv(a), send(b, 2), default=True)
    assert b_full == Selected(-1, None, False)
    assert b.recv_nowait() == 1 and len(b) == 0
    assert await select(default=True) == (-1, None, False)
    assert await select(recv(None), default=True) == (-1, None, False)


async def test_default_not_taken_when_a_case_is_ready() -> None:
    a = Chan[int](1)
    a.send_nowait(1)
    assert await select(recv(a), default=True) == (0, 1, True)


async def test_default_select_takes_parked_partner() -> None:
    a = Chan[int]()
    got: list[int] = []

    async def receiver() -> None:
        got.append(await a.recv())

    async with anyio.create_task_group() as tg:
        await parked(tg, receiver)
        assert await select(send(a, 9), default=True) == (0, None, True)
    assert got == [9]


async def test_default_select_is_a_cancel_point() -> None:
    a = Chan[int](1)
    a.send_nowait(1)
    for default in (True, False):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await select(recv(a), default=default)
            pytest.fail("select() completed in a cancelled scope")
        assert scope.cancelled_caught
        assert len(a) == 1
    with anyio.CancelScope() as scope:
        scope.cancel()
        await select(default=True)
    assert scope.cancelled_caught


async def test_one_case_with_default_is_gos_non_blocking_send_and_receive() -> None:
    """``select { case ch <- v: ... default: }`` and its receive: the one-case form
    (which has a path of its own) commits nothing when the case is not ready, and
    is still a cancel point and a budgeted yield in a polling loop."""
    a, u = Chan[int](1), Chan[int]()
    assert await select(send(a, 1), default=True) == (0, None, True)
    assert await select(send(a, 2), default=True) == (-1, None, False)  # full
    assert await select(send(u, 3), default=True) == (-1, None, False)  # nobody receives
    assert (len(a), len(u)) == (1, 0)
    assert await select(recv(a), default=True) == (0, 1, True)
    assert await select(recv(a), default=True) == (-1, None, False)
    assert await select(recv(u), default=True) == (-1, None, False)
    for case in (recv(a), send(u, 4)):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await select(case, default=True)
            pytest.fail("select() completed in a cancelled scope")
        assert scope.cancelled_caught
    async with turns_of_another_task() as turns:
        for _ in range(3000):  # a polling loop that never finds the case ready
            assert (await select(recv(u), default=True)).index == -1
        assert turns.count >= 2, "a polling loop of select(default=True) never yielded"
    a.close()
    assert await select(recv(a), default=True) == (0, None, False)
    with pytest.raises(ChanClosed):
        await select(send(a, 5), default=True)


# -- nil channels ------------------------------------------------------------------------------


async def test_none_is_a_nil_channel() -> None:
    a = Chan[int](1)
    a.send_nowait(4)
    assert await select(recv(None), send(None, 1), recv(a)) == (2, 4, True)


@pytest.mark.parametrize("cases", [(), (recv(None),), (recv(None), send(None, 1))])
async def test_select_on_only_nil_channels_blocks_until_cancelled(cases: tuple[Any, ...]) -> None:
    out: list[Any] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(select_in_cancel_scope, out, *cases)
        await anyio.wait_all_tasks_blocked()
        assert out == []
        scope.cancel()
    assert out == []


# -- closed channels ----------------------------------------------------------------------------


async def test_recv_case_on_closed_channel_fires_with_ok_false() -> None:
    a, b = Chan[int](), Chan[int]()
    a.close()
    assert await select(recv(a), recv(b)) == (0, None, False)


async def test_recv_case_on_closed_buffered_channel_drains_first() -> None:
    a = Chan[int](2)
    a.send_nowait(1)
    a.close()
    assert await select(recv(a)) == (0, 1, True)
    assert await select(recv(a)) == (0, None, False)


async def test_parked_recv_case_woken_by_close() -> None:
    a, b = Chan[int](), Chan[int]()
    out: list[Selected[Any]] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, select_into, out, recv(a), recv(b))
        b.close()
    assert out == [(1, None, False)]
    assert not a._recvq


@pytest.mark.parametrize("cap", [0, 1])
async def test_send_case_on_closed_channel_raises(cap: int) -> None:
    a = Chan[int](cap)
    a.close()
    with pytest.raises(ChanClosed, match=r"^send on closed channel$"):
        await select(send(a, 1))
    with pytest.raises(ChanClosed, match=r"^send on closed channel$"):
        await select(send(a, 1), default=True)


async def test_parked_send_case_raises_when_channel_closed() -> None:
    a, b = Chan[int](), Chan[int]()
    errors: list[str] = []

    async def selector() -> None:
        try:
            await select(send(a, 1), recv(b))
        except ChanClosed as exc:
            errors.append(str(exc))

    async with anyio.create_task_group() as tg:
        await parked(tg, selector)
        a.close()
        with pytest.raises(WouldBlock):  # b's entry is dead already
            b.send_nowait(1)
    assert errors == ["send on closed channel"]
    assert not b._recvq


# -- cancellation ----------------------------------------------------------------------------------


async def test_cancelled_parked_select_commits_nothing() -> None:
    a, b = Chan[int](), Chan[int]()
    out: list[Any] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(select_in_cancel_scope, out, send(a, 1), recv(b))
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        # Before the cancelled task runs again: neither case can commit any more.
        with pytest.raises(WouldBlock):
            a.recv_nowait()
        with pytest.raises(WouldBlock):
            b.send_nowait(2)
    with pytest.raises(WouldBlock):
        a.recv_nowait()
    with pytest.raises(WouldBlock):
        b.send_nowait(2)
    assert out == []
    assert not a._sendq and not b._recvq


async def test_cancelled_select_leaves_no_dead_waiter_for_later_operations() -> None:
    a = Chan[int]()
    out: list[Any] = []
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(select_in_cancel_scope, out, recv(a), recv(a))
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()

        async def receiver() -> None:
            got.append(await a.recv())

        await parked(tg, receiver)
        await a.send(1)
        await parked(tg, receiver)
        a.send_nowait(2)
    assert out == [] and got == [1, 2]


@pytest.mark.parametrize("ready", ["recv", "send"])
async def test_select_with_ready_case_in_cancelled_scope_commits_nothing(ready: str) -> None:
    a = Chan[int](1)
    if ready == "recv":
        a.send_nowait(1)
    case = recv(a) if ready == "recv" else send(a, 1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await select(case, recv(None))
        pytest.fail("select() completed in a cancelled scope")
    assert scope.cancelled_caught
    assert len(a) == (1 if ready == "recv" else 0)


async def test_queues_stay_bounded_under_select_and_cancel() -> None:
    """10k timeout-like selects on one channel, cancelled or lost, do not grow its queues.

    Three tasks keep a select parked on ``ch`` each; the oldest of the three (never
    the queue's tail) is ended in turn, alternately by cancellation and by losing
    to another channel, as ``select(recv(ch), recv(after(t)))`` loops do.
    """
    ch = Chan[int]()
    tick = [Chan[int]() for _ in range(3)]
    scopes = Chan[tuple[int, anyio.CancelScope]](3)
    per_task = 3334
    total = 3 * per_task
    biggest = 0

    async def selector(n: int) -> None:
        for _ in range(per_task):
            with anyio.CancelScope() as scope:
                scopes.send_nowait((n, scope))
                r = await select(recv(ch), recv(tick[n]))
                assert r == (1, 0, True)  # nothing is ever sent on ch

    async def driver() -> None:
        nonlocal biggest
        pending: deque[tuple[int, anyio.CancelScope]] = deque()
        for i in range(total):
            while len(pending) < min(3, total - i):
                pending.append(await scopes.recv())
            biggest = max(biggest, len(ch._recvq or ()))
            n, scope = pending.popleft()
            if i % 2:
                scope.cancel()
            else:
                try:
                    tick[n].send_nowait(0)
                except WouldBlock:  # not parked yet (it yielded first): cancel instead
                    scope.cancel()

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(selector, n)
        await driver()
    biggest = max(biggest, len(ch._recvq or ()))
    assert biggest <= 80, biggest
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)


# -- rendezvous between selects --------------------------------------------------------------------


async def test_two_selects_rendezvous_on_unbuffered_channels() -> None:
    for _ in range(50):
        a, b = Chan[int](), Chan[int]()
        x: list[Selected[Any]] = []
        y: list[Selected[Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(select_into, x, send(a, 1), recv(b))
            tg.start_soon(select_into, y, recv(a), send(b, 2))
        assert (x[0], y[0]) in [((0, None, True), (0, 1, True)), ((1, 2, True), (1, None, True))]
        assert not a._sendq and not a._recvq and not b._sendq and not b._recvq


async def test_send_and_recv_on_the_same_channel_from_two_tasks() -> None:
    for _ in range(50):
        a = Chan[str]()
        x: list[Selected[Any]] = []
        y: list[Selected[Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(select_into, x, send(a, "x"), recv(a))
            tg.start_soon(select_into, y, send(a, "y"), recv(a))
        assert sorted([x[0], y[0]], key=repr) in (
            sorted([(0, None, True), (1, "x", True)], key=repr),
            sorted([(1, "y", True), (0, None, True)], key=repr),
        )
        # the sender's value reached the other one
        (sx, sy) = (x[0], y[0])
        if sx.index == 0:
            assert sy == (1, "x", True)
        else:
            assert sx == (1, "y", True) and sy.index == 0


async def test_select_does_not_rendezvous_with_itself() -> None:
    a = Chan[int]()
    out: list[Any] = []
    async with anyio.create_task_group() as tg:
        scope = await tg.start(select_in_cancel_scope, out, send(a, 1), recv(a))
        await anyio.wait_all_tasks_blocked()
        assert out == []
        scope.cancel()


async def test_parked_select_on_same_channel_twice() -> None:
    a = Chan[int]()
    out: list[Selected[Any]] = []
    async with anyio.create_task_group() as tg:
        await parked(tg, select_into, out, recv(a), recv(a))
        a.send_nowait(5)
        with pytest.raises(WouldBlock):
            a.send_nowait(6)
    assert out[0].value == 5 and out[0].index in (0, 1)
    assert not a._recvq

    out.clear()
    async with anyio.create_task_group() as tg:
        await parked(tg, select_into, out, send(a, 1), send(a, 2))
        v = a.recv_nowait()
        with pytest.raises(WouldBlock):
            a.recv_nowait()
    assert out == [(v - 1, None, True)]


async def test_select_views() -> None:
    a = Chan[int](1)
    tx, rx = a.send_only(), a.recv_only()
    assert await select(send(tx, 3)) == (0, None, True)
    assert await select(recv(rx)) == (0, 3, True)


async def test_send_case_on_recv_only_view_is_rejected() -> None:
    a = Chan[int](1)
    with pytest.raises((TypeError, AttributeError), match="receive-only"):
        await select(send(a.recv_only(), 1), default=True)  # type: ignore[arg-type]
    assert len(a) == 0


async def test_recv_case_on_send_only_view_is_rejected() -> None:
    a = Chan[int](1)
    a.send_nowait(1)
    with pytest.raises((TypeError, AttributeError), match="send-only"):
        await select(recv(a.send_only()), default=True)  # type: ignore[arg-type]
    assert len(a) == 1


# -- many tasks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [0, 1, 3])
async def test_many_selecting_senders_and_receivers_pair_up(cap: int) -> None:
    """Senders select over two channels, receivers select over both: every value arrives once."""
    a, b = Chan[int](cap), Chan[int](cap)
    got: list[int] = []
    n_senders, per_sender = 6, 40

    async def sender(k: int) -> None:
        for j in range(per_sender):
            await select(send(a, k * 1000 + j), send(b, k * 1000 + j))

    async def receiver() -> None:
        cases = [recv(a), recv(b)]
        while any(c.chan is not None for c in cases):
            r = await select(*cases)
            if r.ok:
                got.append(r.value)
            else:
                cases[r.index] = recv(None)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(receiver)
        async with anyio.create_task_group() as senders:
            for k in range(n_senders):
                senders.start_soon(sender, k)
        a.close()
        b.close()
    assert sorted(got) == sorted(k * 1000 + j for k in range(n_senders) for j in range(per_sender))


# -- event loop binding ----------------------------------------------------------------------------


def test_select_over_a_channel_bound_to_another_loop_raises(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """A select that would park on a channel bound to another loop raises and leaves no entry."""
    import threading

    name, options = anyio_backend
    old, fresh = Chan[int](), Chan[int]()

    async def bind() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(old.recv)
            await anyio.wait_all_tasks_blocked()
            old.send_nowait(1)

    anyio.run(bind, backend=name, backend_options=options)
    errors: list[BaseException] = []

    def other() -> None:
        async def blocked() -> None:
            with anyio.fail_after(10):  # a hang guard, not a timing assertion
                await select(recv(fresh), recv(old))

        try:
            anyio.run(blocked, backend=name, backend_options=options)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
    assert "event loop" in str(errors[0])
    assert not fresh._recvq and not old._recvq


def test_result_type_is_the_union_of_the_case_types(tmp_path: Path) -> None:
    # Regression: the catch-all overload (``*cases: Case[T]``) overlapped the
    # 1-4-case ones, and a Case holds a Chan[Any], so mypy gave up on a select of
    # mixed item types and typed it Any. One mypy run checks every assert_type.
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent("""\
        from typing import Never, assert_type
        from asyncgo import Case, Chan, Selected, recv, select, send

        async def f(same: list[Case[int]]) -> None:
            a, b, c, d = Chan[int](), Chan[str](), Chan[bytes](), Chan[float]()
            assert_type(await select(default=True), Selected[Never])
            assert_type(await select(recv(a)), Selected[int])
            assert_type(await select(recv(a), default=True), Selected[int])
            r = await select(recv(a), recv(b))
            assert_type(r, Selected[int | str])
            assert_type(r.value, int | str | None)
            assert_type(await select(recv(a), recv(b), default=True), Selected[int | str])
            assert_type(await select(recv(a), send(b, "x")), Selected[int | None])
            assert_type(await select(recv(a), recv(b.recv_only())), Selected[int | str])
            assert_type(await select(recv(a), recv(b), recv(c)), Selected[int | str | bytes])
            assert_type(
                await select(recv(a), recv(b), recv(c), recv(d)),
                Selected[int | str | bytes | float],
            )
            assert_type(
                await select(recv(a), recv(a), recv(a), recv(a), recv(a), recv(a)), Selected[int]
            )
            assert_type(
                await select(recv(a), recv(b), recv(c), recv(d), recv(a)), Selected[object]
            )
            assert_type(await select(*same), Selected[int])
            assert_type(await select(*same, default=True), Selected[int])
    """)
    )
    out = run_mypy(tmp_path / "cache", snippet)
    assert not out.strip(), out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_select_refused_for_another_loops_channel_binds_none_of_the_others(
    backend: str,
) -> None:
    """A select that raises because one channel belongs to another loop changes nothing.

    Its cases were queued (and their channels bound) in random order, and the check
    came channel by channel: a fresh channel queued before the foreign one stayed
    bound to the failing loop, unusable by the loop it was meant for.
    """
    a, fresh = Chan[int](), Chan[int]()

    async def bind_a() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.recv)  # parked: a belongs to this (then finished) loop
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()

    async def refused() -> None:
        for _ in range(20):  # the cases are queued in random order: fresh first, surely
            with pytest.raises(RuntimeError, match="event loop"):
                await select(recv(fresh), recv(a))

    async def use_fresh() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fresh.send, 5)
            with anyio.fail_after(5):
                assert await fresh.recv() == 5

    anyio.run(bind_a, backend=backend)
    anyio.run(refused, backend=backend)
    anyio.run(use_fresh, backend=backend)

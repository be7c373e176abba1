"""The fast path's cancellation check and the parked-waiter layout (issue #2 performance work).

`asyncgo._backend.must_checkpoint` caches the current task's anyio state, and the
channels inline that check. These tests pin what the cache must never change:
a pending cancellation raises on the fast path whatever task ran the previous
operation, and whatever scope of the chain was cancelled, by whom. They also pin
the waiter layout that keeps a parked receiver as small as an ``asyncio.Queue``
getter: the first plain receiver waits in ``_rw`` (no queue), later ones and
select entries in ``_recvq``, all served FIFO.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from _guards import REGISTRATIONS, registration_mode

from asyncgo import Chan, ChanClosed, Group, Selected, recv, select
from asyncgo._backend import BUDGET, FAST

pytestmark = pytest.mark.anyio


@pytest.fixture(params=REGISTRATIONS)
def registration(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Group test in both registration modes of asyncio's task group (see _guards)."""
    return registration_mode(request, monkeypatch)


async def recv_into(ch: Chan[Any], out: list[Any]) -> None:
    out.append(await ch.recv())


async def select_into(out: list[Any], *cases: Any) -> None:
    out.append(await select(*cases))


# -- the cancellation check -----------------------------------------------------------


@pytest.mark.parametrize("op", ["send", "recv", "recv_ok", "anext", "select"])
async def test_own_outer_scope_cancelled_after_fast_ops_raises(op: str) -> None:
    """The check reads every scope of the chain each time: an outer scope cancelled
    by the task itself, after fast operations cached its state, still cancels."""
    ch = Chan[int](100)
    for i in range(50):
        ch.send_nowait(i)
    with anyio.CancelScope() as outer:
        with anyio.CancelScope():
            for _ in range(5):  # fast operations: the task's state is cached now
                await ch.send(1)
                await ch.recv()
            before = len(ch)
            outer.cancel()
            await fast_op(op, ch)
            pytest.fail(f"{op} completed in a cancelled scope")
    assert outer.cancelled_caught
    assert len(ch) == before  # nothing sent or taken


async def test_scope_cancelled_by_another_task_between_alternating_ops() -> None:
    """Another task runs fast operations (the cache holds it now) and cancels our
    scope while we wait shielded: our next fast operation raises and takes nothing."""
    ch = Chan[int](1000)
    for i in range(500):
        ch.send_nowait(i)
    turn, cancelled = anyio.Event(), anyio.Event()
    victim_scope = anyio.CancelScope()
    left: list[int] = []

    async def victim() -> None:
        with victim_scope:
            for _ in range(10):
                await ch.recv()  # fast: the buffer is full
            turn.set()
            with anyio.CancelScope(shield=True):
                await cancelled.wait()
            left.append(len(ch))
            await ch.recv()
            pytest.fail("recv completed in a cancelled scope")
        assert victim_scope.cancelled_caught
        assert len(ch) == left[0]

    async def canceller() -> None:
        await turn.wait()
        for _ in range(3):
            await ch.send(1)  # fast operations of this task
        victim_scope.cancel()
        cancelled.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(canceller)
        tg.start_soon(victim)


async def test_many_tasks_taking_turns_each_honour_their_own_cancel() -> None:
    """More tasks than the cache holds: each task's own cancelled scope is seen."""
    ch = Chan[int](10_000)
    for i in range(5_000):
        ch.send_nowait(i)
    caught: list[bool] = []

    async def worker(k: int) -> None:
        with anyio.CancelScope() as scope:
            for _ in range(20):
                await ch.recv()
                await anyio.sleep(0)  # take turns with the other workers
            scope.cancel()
            await ch.recv()
            pytest.fail("recv completed in a cancelled scope")
        caught.append(scope.cancelled_caught)

    async with anyio.create_task_group() as tg:
        for k in range(100):
            tg.start_soon(worker, k)
    assert caught == [True] * 100


async def test_native_task_without_anyio_state_then_scope(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """A plain asyncio task has no anyio state until it enters its first anyio
    scope: the check must find the state then (it is never cached as absent)."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("native asyncio tasks")
    ch = Chan[int](10)
    ch.send_nowait(1)
    ch.send_nowait(2)

    async def op() -> bool:
        assert await ch.recv() == 1  # fast path, no anyio state yet
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ch.recv()
        return scope.cancelled_caught

    assert await asyncio.ensure_future(op())
    assert ch.recv_nowait() == 2


@pytest.mark.parametrize("op", ["send", "recv", "recv_ok", "anext", "select"])
@pytest.mark.parametrize("how", ["Task.cancel", "Task.cancel in scope", "scope.cancel"])
async def test_cancel_after_claim_is_met_by_the_next_fast_op(
    anyio_backend_name: str, op: str, how: str
) -> None:
    """A parked recv claimed by a sender and cancelled before it resumes completes
    (the claim wins, as on trio); the cancellation is then pending, and the very next
    operation must raise it even when it could complete at once -- taking and
    delivering nothing. On asyncio, Task.cancel() is re-delivered a little later:
    meanwhile the task's fast operations must yield rather than complete."""
    if how != "scope.cancel" and anyio_backend_name != "asyncio":
        pytest.skip("Task.cancel() is asyncio's")
    ch = Chan[int]()
    data = Chan[int](100)
    for i in range(50):
        data.send_nowait(i)
    got: list[int] = []
    outcome: list[str] = []
    scopes: list[anyio.CancelScope] = []

    async def victim() -> None:
        with anyio.CancelScope() if how != "Task.cancel" else _no_scope() as scope:
            scopes.append(scope)
            got.append(await ch.recv())  # parked: claimed, then cancelled
            try:
                for _ in range(10):
                    await fast_op(op, data)
            except BaseException:
                outcome.append("cancelled")
                raise
            outcome.append("completed")

    if how == "scope.cancel":
        async with anyio.create_task_group() as tg:
            tg.start_soon(victim)
            await anyio.wait_all_tasks_blocked()
            ch.send_nowait(1)  # claims the parked receiver
            scopes[0].cancel()  # before it resumes
    else:
        task = asyncio.ensure_future(victim())
        await anyio.wait_all_tasks_blocked()
        ch.send_nowait(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert got == [1]  # the claim won
    assert outcome == ["cancelled"]
    assert len(data) == 50  # the next operation took and delivered nothing


class _no_scope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_budget_yields_with_tasks_taking_turns() -> None:
    """The budget counts fast operations of every task: the slow branch of the
    check (a different task each time) still ends in a yield every BUDGET ops."""
    a, b = Chan[int](10 * BUDGET), Chan[int](10 * BUDGET)
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await anyio.sleep(0)

    async def pump(src: Chan[int], dst: Chan[int], n: int) -> None:
        for i in range(n):
            await dst.send(i)
            await src.recv()

    for i in range(5 * BUDGET):
        a.send_nowait(i)
        b.send_nowait(i)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0)
        start = ticks
        await pump(a, b, 2 * BUDGET)  # 4*BUDGET fast operations in one task
        stop = True
    assert ticks - start >= 2, "a tight loop of fast operations never yielded"


def test_fast_check_state_is_exposed_for_the_inlined_copies() -> None:
    assert FAST.budget <= BUDGET
    assert hasattr(FAST, "trio")


# -- the parked-waiter layout -----------------------------------------------------------


async def test_single_parked_receiver_needs_no_queue() -> None:
    ch = Chan[int]()
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(recv_into, ch, got)
        await anyio.wait_all_tasks_blocked()
        assert ch._rw is not None and ch._recvq is None  # what keeps it small
        ch.send_nowait(7)
    assert got == [7]
    assert ch._rw is None and ch._recvq is None


async def test_fifo_across_the_first_slot_selects_and_later_receivers() -> None:
    """Plain receiver, select, plain receiver, select on another channel too:
    served in arrival order, whichever holds which slot."""
    ch = Chan[int]()
    other = Chan[int]()
    order: list[tuple[str, Any]] = []

    async def plain(tag: str) -> None:
        order.append((tag, await ch.recv()))

    async def sel(tag: str) -> None:
        r = await select(recv(other), recv(ch))
        order.append((tag, r.value))

    async with anyio.create_task_group() as tg:
        for tag, fn in (("r1", plain), ("s1", sel), ("r2", plain), ("s2", sel)):
            tg.start_soon(fn, tag)
            await anyio.wait_all_tasks_blocked()
        for i in range(4):
            await ch.send(i)
    assert sorted(order) == [("r1", 0), ("r2", 2), ("s1", 1), ("s2", 3)]
    assert not other._recvq and ch._rw is None and not ch._recvq


async def test_cancelled_first_receiver_hands_its_place_on_in_order() -> None:
    ch = Chan[int]()
    got: list[tuple[str, int]] = []

    async def r(tag: str, *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            got.append((tag, await ch.recv()))

    async with anyio.create_task_group() as tg:
        first = await tg.start(r, "first")
        await tg.start(r, "second")
        await anyio.wait_all_tasks_blocked()
        await tg.start(r, "third")
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await anyio.wait_all_tasks_blocked()
        assert ch._rw is None  # the first slot emptied; the others wait in the queue
        # A newcomer queues behind them, not in the free first slot.
        await tg.start(r, "fourth")
        await anyio.wait_all_tasks_blocked()
        assert ch._rw is None
        for i in range(3):
            ch.send_nowait(i)
    assert sorted(got) == [("fourth", 2), ("second", 0), ("third", 1)]


async def test_close_wakes_the_first_slot_and_the_queue() -> None:
    ch = Chan[int]()
    got: list[Any] = []

    async def r() -> None:
        got.append(await ch.recv_ok())

    async def s() -> None:
        got.append(await select(recv(ch)))

    async with anyio.create_task_group() as tg:
        for fn in (r, s, r):
            tg.start_soon(fn)
            await anyio.wait_all_tasks_blocked()
        ch.close()
    assert sorted(map(repr, got)) == sorted(
        map(repr, [(None, False), Selected(0, None, False), (None, False)])
    )
    assert ch._rw is None and ch._recvq is None


async def test_parked_receiver_of_closed_then_recv_raises() -> None:
    ch = Chan[int]()
    errors: list[BaseException] = []

    async def r() -> None:
        try:
            await ch.recv()
        except ChanClosed as e:
            errors.append(e)

    async with anyio.create_task_group() as tg:
        tg.start_soon(r)
        await anyio.wait_all_tasks_blocked()
        ch.close()
    assert len(errors) == 1 and "recv on closed channel" in str(errors[0])


async def test_handoff_skips_a_dead_first_receiver_then_buffers() -> None:
    """A receiver cancelled before it could leave the first slot is skipped; with
    no live receiver left, a buffered send buffers."""
    ch = Chan[int](1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.recv)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert ch._rw is None
    await ch.send(5)
    assert len(ch) == 1 and ch.recv_nowait() == 5


async def test_sender_parks_without_helper_and_is_cancel_safe() -> None:
    ch = Chan[int]()
    with anyio.move_on_after(0.01) as scope:
        await ch.send(1)  # nobody receives: parks, then cancelled
    assert scope.cancelled_caught
    assert not ch._sendq
    with pytest.raises(Exception):  # noqa: B017 - WouldBlock: nothing was left behind
        ch.recv_nowait()


# -- select case reuse -----------------------------------------------------------------------


async def test_recv_case_is_made_once_per_channel_and_view() -> None:
    ch = Chan[int](1)
    assert recv(ch) is recv(ch)
    view = ch.recv_only()
    assert recv(view) is recv(view)
    assert recv(view).chan is ch and recv(ch).chan is ch
    assert recv(None) is recv(None) and recv(None).chan is None
    with pytest.raises(TypeError, match="send-only"):
        recv(ch.send_only())  # type: ignore[arg-type]
    ch.send_nowait(3)
    assert await select(recv(view)) == Selected(0, 3, True)


# -- asyncio: a receive on an empty buffered channel yields once before parking --------------


async def test_receive_yields_once_before_parking_on_asyncio(anyio_backend_name: str) -> None:
    """asyncio: an item sent while the receiver yields lands in the buffer and is
    taken without a park; trio parks at once (the sender hands the item over)."""
    ch = Chan[int](4)
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(recv_into, ch, got)
        if anyio_backend_name == "asyncio":
            await anyio.sleep(0)  # FIFO run queue: the receiver runs once, finds it empty
        else:
            await anyio.wait_all_tasks_blocked()  # trio runs a batch in random order
        ch.send_nowait(5)
        if anyio_backend_name == "asyncio":
            assert len(ch) == 1 and ch._rw is None  # not parked: still yielding
        else:
            assert len(ch) == 0  # handed to the parked receiver
    assert got == [5]
    assert ch._rw is None and not ch._recvq


async def test_receive_cancelled_while_yielding_before_park_takes_nothing() -> None:
    ch = Chan[int](4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.recv)
        await anyio.sleep(0)  # asyncio: it yields before parking; trio: it may park
        tg.cancel_scope.cancel()
    assert ch._rw is None and not ch._recvq
    ch.send_nowait(1)
    assert ch.recv_nowait() == 1


async def test_receivers_already_parked_keep_their_order_on_a_buffered_channel() -> None:
    ch = Chan[int](4)
    got: dict[str, int] = {}

    async def r(tag: str) -> None:
        got[tag] = await ch.recv()

    async with anyio.create_task_group() as tg:
        for tag in ("a", "b", "c"):
            tg.start_soon(r, tag)
            await anyio.wait_all_tasks_blocked()
        for i in range(3):
            await ch.send(i)
    assert got == {"a": 0, "b": 1, "c": 2}


# -- plain asyncio tasks (no anyio state until they enter an anyio scope) ----------------


async def test_native_task_fast_ops_then_late_scope_cancels_next_op(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """A plain asyncio task's cache entry looks its anyio state up until anyio makes
    it: a scope entered after many fast operations still cancels the very next one."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("native asyncio tasks")
    from asyncgo._backend import TASK_STATES

    ch = Chan[int](1000)

    async def op() -> tuple[bool, int]:
        for i in range(300):  # fast operations: the task is cached, with no anyio state
            await ch.send(i)
            assert await ch.recv() == i
        task = asyncio.current_task()
        assert task in TASK_STATES  # cached while it has no anyio state
        with anyio.move_on_after(-1) as scope:  # deadline passed: cancelled on entry
            await ch.send(-1)
            pytest.fail("send completed in a cancelled scope")
        assert scope.cancelled_caught
        with anyio.CancelScope() as outer:
            await ch.send(1)  # fast, not cancelled
            outer.cancel()
            await ch.recv()
            pytest.fail("recv completed in a cancelled scope")
        return outer.cancelled_caught, len(ch)

    caught, left = await asyncio.ensure_future(op())
    assert caught and left == 1  # the send in the cancelled scope sent nothing
    assert ch.recv_nowait() == 1


async def test_native_tasks_taking_turns_each_see_their_own_scope(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """Several plain asyncio tasks alternate fast operations; each one's own
    late anyio scope cancels only its own next operation."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("native asyncio tasks")
    ch = Chan[int](10_000)
    for i in range(5_000):
        ch.send_nowait(i)

    async def worker(k: int) -> bool:
        for _ in range(20):
            await ch.recv()
            await asyncio.sleep(0)  # take turns with the other tasks
        if k % 2:
            return False  # odd workers never enter a scope
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ch.recv()
            pytest.fail("recv completed in a cancelled scope")
        return scope.cancelled_caught

    results = await asyncio.gather(*(worker(k) for k in range(80)))
    assert results == [k % 2 == 0 for k in range(80)]
    assert len(ch) == 5_000 - 80 * 20


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_plain_tasks_random_cancellation_lose_and_duplicate_nothing(
    anyio_backend: tuple[str, dict[str, object]], seed: int
) -> None:
    """More plain asyncio tasks than the state cache holds (it is emptied as it
    fills), each entering anyio scopes at random times and cancelling them at
    random points: what was received is exactly what was reported sent."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("native asyncio tasks")
    import random

    rng = random.Random(seed)
    ch = Chan[int](rng.choice([0, 1, 8]))
    sent: list[int] = []
    got: list[int] = []
    cancelled = 0

    async def sender(k: int) -> None:
        nonlocal cancelled
        for j in range(30):
            v = k * 1000 + j
            if rng.random() < 0.3:
                with anyio.CancelScope() as scope:
                    if rng.random() < 0.5:
                        scope.cancel()  # pending before the operation
                    else:
                        asyncio.get_running_loop().call_soon(scope.cancel)
                    await ch.send(v)
                    sent.append(v)
                cancelled += scope.cancelled_caught
            else:
                await ch.send(v)
                sent.append(v)

    async def receiver() -> None:
        nonlocal cancelled
        while True:
            if rng.random() < 0.3:
                with anyio.CancelScope() as scope:
                    asyncio.get_running_loop().call_soon(scope.cancel)
                    v = await ch.recv()
                    got.append(v)
                    if v < 0:
                        return
                cancelled += scope.cancelled_caught
            else:
                v = await ch.recv()
                got.append(v)
                if v < 0:
                    return

    receivers = [asyncio.ensure_future(receiver()) for _ in range(20)]
    await asyncio.gather(*(asyncio.ensure_future(sender(k)) for k in range(80)))
    for _ in receivers:
        await ch.send(-1)
    await asyncio.gather(*receivers)
    assert sorted(v for v in got if v >= 0) == sorted(sent)
    assert cancelled > 0  # the cancellations did happen


@pytest.mark.parametrize("eager", [False, True])
async def test_group_task_cached_before_its_group_aborts_sees_the_abort(
    anyio_backend: tuple[str, dict[str, object]], eager: bool, registration: str
) -> None:
    """asyncgo's Group starts plain asyncio tasks, registered with anyio in a scope of
    the group's, which its abort cancels. A task whose fast operations were cached
    before that must see the abort at its very next fast operation (also when an
    eager task factory ran its first operations inside the spawn)."""
    if eager and not hasattr(asyncio, "eager_task_factory"):
        pytest.skip("eager tasks need Python 3.12+")
    if eager and (anyio_backend[0] != "asyncio" or anyio_backend[1].get("use_uvloop")):
        # uvloop (0.23) cannot run asyncio.eager_task_factory: its create_task raises
        # TypeError (the factory's keyword arguments differ); see test_group's
        # test_task_factory_that_raises for what a Group does then.
        pytest.skip("asyncio's eager task factory, on asyncio's own loop")
    ch = Chan[int](1000)
    for i in range(100):
        ch.send_nowait(i)
    ready, go = anyio.Event(), anyio.Event()
    outcome: list[str] = []

    async def consumer() -> None:
        for _ in range(10):
            await ch.recv()  # fast operations: the task is cached now
        ready.set()
        with anyio.CancelScope(shield=True):
            await go.wait()  # the group aborts meanwhile
        try:
            await ch.recv()  # fast path: must raise, taking nothing
        except BaseException:
            outcome.append("cancelled")
            raise
        outcome.append("completed")

    async def failing() -> None:
        await ready.wait()
        go.set()
        raise ValueError("boom")

    loop = asyncio.get_running_loop() if anyio_backend[0] == "asyncio" else None
    old_factory = loop.get_task_factory() if loop is not None else None
    if eager and loop is not None:
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        with pytest.raises(ValueError, match="boom"):
            async with Group() as g:
                g.go_nowait(consumer)
                g.go_nowait(failing)
    finally:
        if loop is not None:
            loop.set_task_factory(old_factory)
    assert outcome == ["cancelled"]
    assert len(ch) == 90


# -- the clean-scope memo -------------------------------------------------------------
#
# On asyncio the fast path remembers, per task, the innermost anyio scope whose walk
# found no cancellation, and trusts it until a scope is cancelled, a shield lowered
# or a scope re-parented (asyncgo._backend.forget_clean). These tests populate the
# memo with fast operations first, then make each of those changes without any
# scheduler round trip in between, and check that the very next fast operation
# raises and takes or sends nothing. Under trio they check the same behaviour.

MEMO_OPS = ["send", "recv", "recv_ok", "select", "mutex", "semaphore"]


async def fast_op(op: str, ch: Chan[int]) -> None:
    """One operation that can complete at once (unless a cancellation is pending)."""
    from asyncgo import Mutex, Semaphore

    if op == "send":
        await ch.send(1)
    elif op == "recv":
        await ch.recv()
    elif op == "recv_ok":
        await ch.recv_ok()
    elif op == "anext":
        await ch.__anext__()
    elif op == "select":
        await select(recv(ch))
    elif op == "mutex":
        m = Mutex()
        await m.lock()  # free: completes at once unless cancelled
        m.unlock()
    else:
        s = Semaphore(1)
        await s.acquire()
        s.release()


async def populate(ch: Chan[int]) -> None:
    for _ in range(5):  # fast operations: the memo holds the innermost scope now
        await ch.send(1)  # (as many items out as in, and never from an empty buffer)
        await ch.send(1)
        await ch.recv()
        await select(recv(ch))


def full_chan() -> Chan[int]:
    ch = Chan[int](100)
    for i in range(50):
        ch.send_nowait(i)
    return ch


@pytest.mark.parametrize("op", MEMO_OPS)
async def test_memo_shield_lowered_exposes_an_outer_cancel(op: str) -> None:
    """A shielded scope stops the walk: the outer cancel is invisible until the
    shield is lowered, and visible at the very next fast operation after that."""
    ch = full_chan()
    with anyio.CancelScope() as outer:
        with anyio.CancelScope(shield=True) as inner:
            await populate(ch)
            outer.cancel()
            await populate(ch)  # shielded: still completes, memo populated again
            before = len(ch)
            inner.shield = False
            await fast_op(op, ch)
            pytest.fail(f"{op} completed after the shield was lowered")
    assert outer.cancelled_caught
    assert len(ch) == before


@pytest.mark.parametrize("op", MEMO_OPS)
async def test_memo_own_innermost_scope_cancelled(op: str) -> None:
    ch = full_chan()
    with anyio.CancelScope() as scope:
        await populate(ch)
        before = len(ch)
        scope.cancel()
        await fast_op(op, ch)
        pytest.fail(f"{op} completed in a cancelled scope")
    assert scope.cancelled_caught
    assert len(ch) == before


@pytest.mark.parametrize("op", MEMO_OPS)
async def test_memo_deadline_set_in_the_past(anyio_backend_name: str, op: str) -> None:
    """Moving a deadline into the past: anyio on asyncio cancels the scope at once,
    so the next fast op raises. trio expires deadlines when it schedules, and a fast
    op does not schedule (trio's own channels complete then too): there the next
    yield raises."""
    ch = full_chan()
    with anyio.CancelScope() as scope:
        await populate(ch)
        before = len(ch)
        scope.deadline = anyio.current_time() - 1
        if anyio_backend_name == "trio":
            await fast_op(op, ch)
            before = len(ch)
            await anyio.sleep(0)
            pytest.fail("a yield completed past the deadline")
        await fast_op(op, ch)
        pytest.fail(f"{op} completed past its deadline")
    assert scope.cancelled_caught
    assert len(ch) == before


async def test_memo_task_started_into_a_cancelled_group(anyio_backend_name: str) -> None:
    """``TaskGroup.start``: the child's scopes move under the target group's scope
    when it calls ``started()`` (anyio's ``_reparent``). That group was cancelled
    while the child ran under ``start``'s own scope: its next fast op must raise."""
    ch = full_chan()
    outcome: list[str] = []

    async def child(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.CancelScope():  # a scope of its own, moved as a whole
            try:
                await populate(ch)  # memo: clean (start's scope is not cancelled)
            except anyio.get_cancelled_exc_class():
                outcome.append("cancelled before started()")
                raise
            task_status.started()
            before = len(ch)
            try:
                await ch.recv()
            except anyio.get_cancelled_exc_class():
                outcome.append("cancelled" if len(ch) == before else "took an item")
                raise
            outcome.append("completed")

    async with anyio.create_task_group() as tg:
        tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await tg.start(child)
    if anyio_backend_name == "trio" or not reparents():
        # trio and anyio < 4.15 run the child in the target group from the start
        assert outcome in (["cancelled"], ["cancelled before started()"])
    else:
        assert outcome == ["cancelled"]


def reparents() -> bool:
    """anyio >= 4.15 on asyncio: ``start`` moves the child when it calls ``started()``."""
    from anyio._backends._asyncio import CancelScope

    return hasattr(CancelScope, "_reparent")


async def test_memo_group_abort_adopts_a_woken_task_with_its_own_scope(registration: str) -> None:
    """asyncgo's Group re-parents a running child's outermost scope under its
    cancelled children's scope when it aborts (``_adopt``). A child woken by the
    failing task just before (its waiter done, so anyio's delivery skips it this
    round) resumes with the item it was given, and its next fast op must raise."""
    ch = Chan[int](100)
    outcome: list[str] = []
    ready = anyio.Event()

    async def consumer() -> None:
        with anyio.CancelScope():  # an anyio state of its own before the abort
            await populate(ch)  # memo: clean
            ready.set()
            got = await ch.recv()  # parks: the buffer is empty
            assert got == 7  # claimed before the abort: the operation completed
            ch.send_nowait(8)
            ch.send_nowait(9)
            try:
                await ch.recv()  # fast path after the abort: must raise
            except BaseException:
                outcome.append(f"cancelled, {len(ch)} left")
                raise
            outcome.append("completed")

    async def failing() -> None:
        await ready.wait()
        await anyio.sleep(0)
        await anyio.sleep(0)  # the consumer is parked now
        ch.send_nowait(7)  # wakes it (its waiter is done) ...
        raise ValueError("boom")  # ... and aborts the group before it runs

    with pytest.raises(ValueError, match="boom"):
        async with Group() as g:
            g.go_nowait(consumer)
            g.go_nowait(failing)
    assert outcome == ["cancelled, 2 left"]


async def test_memo_off_still_checks_every_time(
    anyio_backend: tuple[str, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without anyio's methods to watch (a future anyio), nothing is remembered:
    every fast operation walks, and a cancel is still seen at once."""
    import asyncgo._backend as backend

    monkeypatch.setattr(backend, "_memo_on", False)
    backend.forget_clean()
    ch = full_chan()
    with anyio.CancelScope() as scope:
        await populate(ch)
        if anyio_backend[0] == "asyncio":
            entry = backend.TASK_STATES[asyncio.current_task()]
            assert entry.clean is backend._UNKNOWN
        before = len(ch)
        scope.cancel()
        await ch.recv()
        pytest.fail("recv completed in a cancelled scope")
    assert scope.cancelled_caught
    assert len(ch) == before


async def test_memo_is_used_and_reset(anyio_backend: tuple[str, dict[str, object]]) -> None:
    """The memo does remember (asyncio): an entry holds the innermost scope after a
    fast op, and any scope's cancel (here an unrelated one) resets every entry."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("the memo is asyncio's (trio asks trio)")
    import asyncgo._backend as backend

    ch = full_chan()
    with anyio.CancelScope() as scope:
        await populate(ch)
        entry = backend.TASK_STATES[asyncio.current_task()]
        assert entry.clean is scope
        anyio.CancelScope().cancel()  # any cancel
        assert entry.clean is backend._UNKNOWN
        await ch.recv()
        assert entry.clean is scope


async def test_anyio_scope_methods_are_wrapped_transparently(anyio_backend_name: str) -> None:
    if anyio_backend_name == "trio":
        pytest.skip("anyio's asyncio CancelScope is the one wrapped")
    from anyio._backends._asyncio import CancelScope

    assert CancelScope.cancel.__wrapped__ is not None  # type: ignore[attr-defined]
    s = CancelScope()
    assert s.shield is False
    s.shield = True
    assert s.shield is True
    s.cancel("a reason")
    assert s.cancel_called


def test_anyio_changes_scope_chains_only_where_watched() -> None:
    """The memo is exact only while anyio's asyncio backend cancels a scope, lowers
    a shield or gives a scope a new parent in the methods asyncgo wraps (``cancel``,
    the ``shield`` setter, ``_reparent``, ``__enter__``; ``__init__`` makes a scope
    no chain holds yet). A new place in a future anyio fails here."""
    import ast
    import inspect

    from anyio._backends import _asyncio as anyio_asyncio

    allowed = {
        "_cancel_called": {"__init__", "cancel"},
        "_shield": {"__init__", "shield"},
        "_parent_scope": {"__init__", "__enter__", "_reparent"},
    }
    found: dict[str, set[str]] = {name: set() for name in allowed}
    tree = ast.parse(inspect.getsource(anyio_asyncio))
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr in allowed:
                    found[t.attr].add(fn.name)
    for name, where in found.items():
        assert where <= allowed[name], f"anyio assigns {name} in {where - allowed[name]}"


async def test_memo_scope_entered_a_second_time_under_a_cancelled_scope(
    anyio_backend_name: str,
) -> None:
    """anyio's asyncio backend lets a scope be entered again once it has exited, and
    gives it a new parent then: a scope the memo holds, re-entered under a cancelled
    scope, must make the next fast op raise. (anyio on trio refuses the re-entry.)"""
    ch = full_chan()
    reused = anyio.CancelScope()
    cancelled = anyio.CancelScope()
    cancelled.cancel()
    with reused:
        await populate(ch)  # the memo holds `reused` (no parent)
    if anyio_backend_name == "trio":
        with pytest.raises(RuntimeError):
            with reused:
                pass
        return
    with cancelled:
        with reused:
            before = len(ch)
            await ch.send(2)
            pytest.fail("send completed under a cancelled scope")
    assert cancelled.cancelled_caught
    assert len(ch) == before


def run_script(*parts: str) -> str:
    """Run the parts (each dedented) as one script in a fresh interpreter; its stdout."""
    import subprocess
    import sys
    import textwrap

    out = subprocess.run(
        [sys.executable, "-c", "\n".join(textwrap.dedent(p) for p in parts)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


CHECK_SEND_RAISES = """
    async def check(Chan):
        ch = Chan[int](100)
        with anyio.CancelScope() as scope:
            for _ in range(3):
                await ch.send(1)  # the memo holds `scope`
            scope.cancel()
            try:
                await ch.send(2)
                print("completed", len(ch))
            except anyio.get_cancelled_exc_class():
                print("raised", len(ch))
                raise
"""


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_memo_of_a_second_copy_of_asyncgo_is_reset_too(backend: str) -> None:
    """A second copy of the package (sys.modules purged, a vendored copy) finds
    anyio's methods wrapped already: the wrappers reset its memo as well."""
    out = run_script(
        """
        import sys
        import anyio
        import asyncgo  # the first copy wraps anyio's CancelScope

        for name in [m for m in sys.modules if m.split(".")[0] == "asyncgo"]:
            del sys.modules[name]
        import asyncgo as second
        assert second.Chan is not asyncgo.Chan
        """,
        CHECK_SEND_RAISES,
        f"""
        async def main():
            with anyio.CancelScope() as outer:
                await check(second.Chan)
        anyio.run(main, backend="asyncio",
                  backend_options={{"use_uvloop": {backend == "uvloop"}}})
        """,
    )
    assert out.split() == ["raised", "3"]


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_memo_with_a_cancel_bound_before_asyncgo_was_imported(backend: str) -> None:
    """``scope.cancel`` taken (as a callback, say) before asyncgo's first import is
    anyio's unwrapped method; it still delivers through the wrapped
    ``_deliver_cancellation``, so the memo is reset."""
    out = run_script(
        f"""
        import anyio

        async def main():
            with anyio.CancelScope() as scope:
                cancel_later = scope.cancel  # before asyncgo is imported
                import asyncgo
                ch = asyncgo.Chan[int](100)
                for _ in range(3):
                    await ch.send(1)
                cancel_later()
                try:
                    await ch.send(2)
                    print("completed", len(ch))
                except anyio.get_cancelled_exc_class():
                    print("raised", len(ch))
                    raise

        anyio.run(main, backend="asyncio",
                  backend_options={{"use_uvloop": {backend == "uvloop"}}})
        """
    )
    assert out.split() == ["raised", "3"]


async def test_memo_many_fresh_scopes_then_an_outer_cancel() -> None:
    """A task entering a fresh scope per operation (``with fail_after(...)`` around
    each receive, say): each scope is walked once and remembered; an outer cancel
    still reaches the next operation in the next fresh scope, and in the same one."""
    ch = Chan[int](1000)
    with anyio.CancelScope() as outer:
        for _ in range(600):
            with anyio.CancelScope():
                await ch.send(0)  # a walk: the scope is remembered
                await ch.recv()  # the memo
        with anyio.CancelScope():
            await ch.send(0)
            outer.cancel()
            before = len(ch)
            await ch.send(1)
            pytest.fail("send completed in a cancelled scope")
    assert outer.cancelled_caught
    assert len(ch) == before


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_memo_with_a_cancel_bound_before_an_import_from_a_worker_thread(backend: str) -> None:
    """asyncgo first imported from a worker thread (no loop there, no anyio task yet)
    while a scope's bound ``cancel`` is held: the cancel still resets the memo."""
    out = run_script(
        f"""
        import asyncio
        import importlib
        import anyio

        async def main():
            scope = anyio.CancelScope()  # not entered yet: no anyio task state anywhere
            cancel_later = scope.cancel
            loop = asyncio.get_running_loop()
            asyncgo = await loop.run_in_executor(None, importlib.import_module, "asyncgo")
            with scope:
                ch = asyncgo.Chan[int](100)
                for _ in range(3):
                    await ch.send(1)
                cancel_later()
                try:
                    await ch.send(2)
                    print("completed", len(ch))
                except asyncio.CancelledError:
                    print("raised", len(ch))
                    raise

        if {backend == "uvloop"}:
            import uvloop
            uvloop.run(main())
        else:
            asyncio.run(main())
        """
    )
    assert out.split() == ["raised", "3"]


def test_memo_after_a_reload_of_the_backend_module() -> None:
    """``importlib.reload(asyncgo._backend)``: the channels keep reading the same
    table of task entries, which the reloaded module still resets."""
    out = run_script(
        """
        import importlib
        import anyio
        import asyncgo
        import asyncgo._backend

        async def main():
            ch = asyncgo.Chan[int](100)
            with anyio.CancelScope() as scope:
                for _ in range(3):
                    await ch.send(1)
                importlib.reload(asyncgo._backend)
                scope.cancel()
                try:
                    await ch.send(2)
                    print("completed", len(ch))
                except anyio.get_cancelled_exc_class():
                    print("raised", len(ch))
                    raise

        anyio.run(main, backend="asyncio")
        """
    )
    assert out.split() == ["raised", "3"]


def test_memo_with_a_cancel_bound_in_an_earlier_event_loop() -> None:
    """A scope made and its ``cancel`` stored in one event loop, asyncgo first
    imported between runs (no loop, no task), the scope entered in a second run:
    the stored cancel still resets the memo."""
    out = run_script(
        """
        import asyncio
        import importlib
        import anyio

        stash = {}

        async def first():
            scope = anyio.CancelScope()
            stash["scope"], stash["cancel"] = scope, scope.cancel

        async def second():
            asyncgo = importlib.import_module("asyncgo")
            with stash["scope"]:
                ch = asyncgo.Chan[int](100)
                for _ in range(3):
                    await ch.send(1)
                stash["cancel"]()
                try:
                    await ch.send(2)
                    print("completed", len(ch))
                except asyncio.CancelledError:
                    print("raised", len(ch))
                    raise

        anyio.run(first, backend="asyncio")
        importlib.import_module("asyncgo")  # between the runs
        anyio.run(second, backend="asyncio")
        """
    )
    assert out.split() == ["raised", "3"]


# -- the per-task cache: every task that takes turns, finished ones swept ----------------


async def test_the_task_cache_keeps_every_live_task_and_sweeps_finished_ones(
    anyio_backend_name: str,
) -> None:
    """More than 64 tasks taking turns on channels all stay cached (it was emptied when
    64 were in: 65 producers on one channel then missed on nearly every send, 0.7x an
    asyncio.Queue), and finished tasks leave it as it grows: it keeps about as many as
    are alive, not every task that ever sent."""
    import weakref

    from asyncgo import _backend as backend

    n = 300
    ch = Chan[int](n)
    go = Chan[None]()
    seen: list[asyncio.Task[Any]] = []

    async def producer(i: int) -> None:
        await ch.send(i)
        if anyio_backend_name == "asyncio":
            seen.append(asyncio.current_task())  # type: ignore[arg-type]
        await go.recv_ok()  # all alive at once
        await ch.send(i)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(producer, i)
        for _ in range(n):
            await ch.recv()
        await anyio.wait_all_tasks_blocked()
        if anyio_backend_name == "asyncio":
            assert len(seen) == n
            assert all(t in backend.TASK_STATES for t in seen)  # none dropped
        go.close()
        for _ in range(n):
            await ch.recv()
    refs = [weakref.ref(t) for t in seen]
    seen.clear()

    async def short(i: int) -> None:
        await ch.send(i)
        assert await ch.recv() == i

    for batch in range(20):  # many short-lived tasks, a few alive at a time
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(short, i)
    assert len(backend.TASK_STATES) <= max(backend._SWEEP_MIN, 2 * 50) + 50
    import gc

    gc.collect()
    assert sum(r() is not None for r in refs) == 0  # the finished producers were let go

"""Broadcast and PubSub (issue #7) on asyncio, uvloop and trio, with a leak check per test."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from _guards import race_in_checkpoint

from asyncgo import ChanClosed, WouldBlock
from asyncgo._pubsub import Broadcast, Disconnected, PubSub, Subscription

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leaks")]


async def collect(sub: Subscription[int], out: list[int]) -> None:
    async for v in sub:
        out.append(v)


async def test_every_subscriber_gets_every_value_and_close_drains() -> None:
    bus = Broadcast[int]()
    got: list[list[int]] = [[], [], []]
    async with anyio.create_task_group() as tg:
        subs = [bus.subscribe(buffer=4) for _ in got]
        for sub, out in zip(subs, got, strict=True):
            tg.start_soon(collect, sub, out)
        for i in range(20):
            await bus.publish(i)
        bus.close()  # subscribers read what they have, then their loops end
    assert got == [list(range(20))] * 3
    with pytest.raises(ChanClosed, match=r"^publish on closed Broadcast$"):
        await bus.publish(1)
    with pytest.raises(ChanClosed, match=r"^subscribe to closed Broadcast$"):
        bus.subscribe()


async def test_block_policy_waits_for_slowest_subscriber() -> None:
    bus = Broadcast[int]()
    fast = bus.subscribe(buffer=10)
    slow = bus.subscribe(buffer=1, policy="block")
    await bus.publish(1)
    published = anyio.Event()

    async def publish_two() -> None:
        await bus.publish(2)
        published.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish_two)
        await anyio.wait_all_tasks_blocked()
        assert not published.is_set()  # slow's buffer is full
        assert len(fast) == 2  # fast already has it
        assert await slow.recv() == 1
    assert published.is_set()
    assert await slow.recv() == 2
    bus.publish_nowait(3)  # slow has room again
    with pytest.raises(WouldBlock, match="buffer is full"):
        bus.publish_nowait(4)
    assert len(fast) == 3  # all or nothing: fast did not get 4 either
    fast.unsubscribe()
    slow.unsubscribe()
    assert len(bus) == 0


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("drop_oldest", [7, 8, 9]), ("drop_newest", [0, 1, 2])],
)
async def test_drop_policies_with_slow_subscriber(policy: str, expected: list[int]) -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=3, policy=policy) as slow, bus.subscribe(buffer=10) as fast:  # type: ignore[arg-type]
        for i in range(10):
            bus.publish_nowait(i)  # never blocks: slow drops, fast has room
        assert slow.dropped == 7
        assert fast.dropped == 0
        bus.close()
        assert [v async for v in slow] == expected
        assert [v async for v in fast] == list(range(10))


async def test_disconnect_policy_closes_slow_subscriber_with_reason() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=2, policy="disconnect") as slow:
        await bus.publish(1)
        await bus.publish(2)
        await bus.publish(3)  # full: slow is disconnected, publish does not wait
        assert slow.closed
        assert slow.dropped == 1
        assert len(bus) == 0
        got = []
        with pytest.raises(Disconnected, match=r"^subscriber fell behind: buffer of 2 full$"):
            async for v in slow:
                got.append(v)
        assert got == [1, 2]
        assert slow.reason == "subscriber fell behind: buffer of 2 full"


async def test_unsubscribe_during_blocked_publish() -> None:
    bus = Broadcast[int]()
    stuck = bus.subscribe(buffer=0)
    other = bus.subscribe(buffer=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(bus.publish, 1)
        await anyio.wait_all_tasks_blocked()  # publish waits on `stuck`
        stuck.unsubscribe()  # the publish moves on
    assert await other.recv() == 1
    assert len(bus) == 1
    other.unsubscribe()


async def test_leaving_block_unsubscribes() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=1) as sub:
        assert len(bus) == 1
        await bus.publish(1)
    assert len(bus) == 0
    assert sub.closed
    assert len(sub) == 0  # its queue was freed
    await bus.publish(2)  # nobody listens: nothing waits


async def test_close_while_subscribers_read() -> None:
    bus = Broadcast[int]()
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        sub = bus.subscribe(buffer=0)
        tg.start_soon(collect, sub, got)
        await anyio.wait_all_tasks_blocked()  # reader parked in recv
        await bus.publish(1)
        await anyio.wait_all_tasks_blocked()
        bus.close()
    assert got == [1]


async def test_cancelled_recv_takes_nothing() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=1) as sub:
        with anyio.move_on_after(0.01):
            await sub.recv()
        await bus.publish(5)
        assert await sub.recv() == 5


async def test_bad_arguments() -> None:
    bus = Broadcast[int]()
    with pytest.raises(ValueError, match="policy"):
        bus.subscribe(policy="lossy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative buffer"):
        bus.subscribe(buffer=-1)
    with pytest.raises(TypeError, match="buffer must be an int, not float"):
        bus.subscribe(buffer=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="buffer must be an int, not float"):
        PubSub[str, int]().subscribe("t", buffer=1.5)  # type: ignore[arg-type]


async def test_pubsub_topics() -> None:
    ps = PubSub[str, int]()
    async with ps.subscribe("a", buffer=4) as a, ps.subscribe("b", buffer=4) as b:
        assert sorted(ps.topics()) == ["a", "b"]
        await ps.publish("a", 1)
        ps.publish_nowait("b", 2)
        await ps.publish("nobody", 3)
        assert await a.recv() == 1
        assert await b.recv() == 2
        assert len(a) == len(b) == 0
    assert ps.topics() == []
    assert ps.subscribers("a") == 0
    sub = ps.subscribe("a")
    await ps.publish("a", 9)
    ps.close()
    assert [v async for v in sub] == [9]
    with pytest.raises(ChanClosed):
        await ps.publish("a", 1)


# -- order across concurrent publishers ------------------------------------------------


async def test_concurrent_publishes_reach_every_subscriber_in_the_same_order() -> None:
    """The audit's case: publish "1" waits for full y; z gets room; publish "2" must
    not reach z before "1" does (Go: both publishers send to y first, then z)."""
    bus = Broadcast[str]()
    y = bus.subscribe(buffer=1)
    z = bus.subscribe(buffer=1)
    await bus.publish("x")  # both full now
    async with anyio.create_task_group() as tg:
        tg.start_soon(bus.publish, "1")
        await anyio.wait_all_tasks_blocked()  # "1" waits for y
        assert await z.recv() == "x"  # z has room
        tg.start_soon(bus.publish, "2")
        await anyio.wait_all_tasks_blocked()  # "2" queues behind "1"
        with pytest.raises(WouldBlock):
            bus.publish_nowait("3")  # would overtake "1" too
        ys = [await y.recv() for _ in range(3)]
        zs = [await z.recv() for _ in range(2)]
    assert ys == ["x", "1", "2"]
    assert ["x", *zs] == ["x", "1", "2"]


@pytest.mark.parametrize("seed", range(4))
async def test_random_publishers_and_slow_readers_agree_on_one_order(seed: int) -> None:
    import random

    rng = random.Random(seed)
    bus = Broadcast[tuple[int, int]]()
    subs = [bus.subscribe(buffer=rng.choice([0, 1, 2])) for _ in range(3)]
    per_publisher = 20
    seen: list[list[tuple[int, int]]] = [[] for _ in subs]

    async def publisher(k: int) -> None:
        for i in range(per_publisher):
            await bus.publish((k, i))
            for _ in range(rng.randrange(3)):
                await anyio.sleep(0)

    async def reader(j: int, sub: Subscription[tuple[int, int]]) -> None:
        async for v in sub:
            seen[j].append(v)
            for _ in range(rng.randrange(3)):
                await anyio.sleep(0)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as readers:
            for j, sub in enumerate(subs):
                readers.start_soon(reader, j, sub)
            async with anyio.create_task_group() as pubs:
                for k in range(3):
                    pubs.start_soon(publisher, k)
            bus.close()
    assert len(seen[0]) == 3 * per_publisher
    assert seen[1] == seen[0] and seen[2] == seen[0]  # one order for everyone...
    for k in range(3):  # ... that keeps each publisher's own order
        assert [i for kk, i in seen[0] if kk == k] == list(range(per_publisher))


async def test_a_publish_cancelled_while_queued_delivers_nothing() -> None:
    bus = Broadcast[int]()
    a = bus.subscribe(buffer=0)
    b = bus.subscribe(buffer=4)
    scope = anyio.CancelScope()

    async def queued() -> None:
        with scope:
            await bus.publish(2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bus.publish, 1)  # b gets 1; waits for a reader of a
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(queued)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert await a.recv() == 1
    assert scope.cancelled_caught
    assert len(b) == 1  # never 2
    assert await b.recv() == 1
    with anyio.fail_after(10):  # the cancelled publish left the queue: a new one goes through
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.publish, 3)
            assert await a.recv() == 3
    assert len(b) == 1
    assert await b.recv() == 3


async def test_close_makes_waiting_and_queued_publishes_raise_chan_closed() -> None:
    """Go: senders blocked on a channel that is closed panic. The publish waiting for
    a full "block" subscriber used to return normally, its value lost for that
    subscriber without a count, while the one queued behind it raised."""
    bus = Broadcast[int]()
    a = bus.subscribe(buffer=1)
    b = bus.subscribe(buffer=4)
    bus.publish_nowait(0)  # a is full
    outcome: dict[str, str] = {}

    async def publish(v: int, key: str) -> None:
        try:
            await bus.publish(v)
            outcome[key] = "returned"
        except ChanClosed as e:
            outcome[key] = str(e)

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish, 1, "waiting")  # b gets 1; waits for room in a
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(publish, 2, "queued")
        await anyio.wait_all_tasks_blocked()
        bus.close()
    assert outcome == {
        "waiting": "publish on closed Broadcast",
        "queued": "publish on closed Broadcast",
    }
    assert [v async for v in a] == [0]
    assert [v async for v in b] == [0, 1]  # served before the close: it keeps the value
    assert (a.dropped, b.dropped) == (0, 0)  # not dropped by a policy: the publish failed


async def test_close_while_queued_raises_chan_closed_in_pubsub() -> None:
    ps = PubSub[str, int]()
    a = ps.subscribe("t", buffer=0)
    errors: list[BaseException] = []

    async def publish(v: int) -> None:
        try:
            await ps.publish("t", v)
        except ChanClosed as e:
            errors.append(e)

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish, 1)  # waits for a reader of a
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(publish, 2)
        await anyio.wait_all_tasks_blocked()
        ps.close()
    assert len(errors) == 2
    assert [v async for v in a] == []


async def test_publish_is_a_cancel_point_even_with_room() -> None:
    """A publish cancelled on entry delivers nothing (it used to deliver, then return)."""
    bus = Broadcast[int]()
    ps = PubSub[str, int]()
    async with bus.subscribe(buffer=4) as sub:
        with anyio.CancelScope() as cs:
            cs.cancel()
            await bus.publish(1)
        assert cs.cancelled_caught
        assert len(sub) == 0
        with anyio.CancelScope() as cs:
            cs.cancel()
            await ps.publish("nobody", 1)  # no subscriber: still a cancel point
        assert cs.cancelled_caught


async def test_a_tight_publish_loop_lets_readers_run() -> None:
    """5000 publishes that never wait (a drop subscriber) yield now and then: the reader
    runs meanwhile instead of finding 4999 drops at the end."""
    bus = Broadcast[int]()
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        sub = bus.subscribe(buffer=1, policy="drop_newest")

        async def reader() -> None:
            async with sub:
                await collect(sub, seen)

        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        for i in range(5000):
            await bus.publish(i)
        during = len(seen)
        bus.close()
    assert during > 1, (during, sub.dropped)
    assert len(seen) + sub.dropped == 5000


async def test_close_and_unsubscribe_from_a_thread_raise_and_change_nothing() -> None:
    """From another thread, close() and unsubscribe() raise RuntimeError before changing
    anything (they used to drop the subscriber, then fail to close its channel: its
    reader hung)."""
    bus = Broadcast[int]()
    ps = PubSub[str, int]()
    sub = bus.subscribe(buffer=1)
    topic_sub = ps.subscribe("t", buffer=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, sub, [])
        tg.start_soon(collect, topic_sub, [])
        await anyio.wait_all_tasks_blocked()  # both readers parked in recv
        for call, what in [
            (bus.close, "close"),
            (sub.unsubscribe, "unsubscribe"),
            (ps.close, "close"),
            (topic_sub.unsubscribe, "unsubscribe"),
        ]:
            with pytest.raises(RuntimeError, match=rf"^Broadcast\.{what}: .*another thread"):
                await anyio.to_thread.run_sync(call)
        assert (bus.closed, len(bus), sub.closed) == (False, 1, False)
        assert (ps.topics(), topic_sub.closed) == (["t"], False)
        bus.close()  # from the loop's own thread: the readers end
        ps.close()
    assert sub.closed and topic_sub.closed


async def test_drop_oldest_needs_a_buffer() -> None:
    bus = Broadcast[int]()
    with pytest.raises(ValueError, match=r"buffer=0, policy='drop_oldest'.*no\s+oldest value"):
        bus.subscribe(buffer=0, policy="drop_oldest")
    with pytest.raises(ValueError, match=r"PubSub\.subscribe\(buffer=0, policy='drop_oldest'\)"):
        PubSub[str, int]().subscribe("t", buffer=0, policy="drop_oldest")
    async with bus.subscribe(buffer=1, policy="drop_oldest") as sub:
        for i in range(5):
            bus.publish_nowait(i)
        assert (await sub.recv(), sub.dropped) == (4, 4)  # buffer=1 keeps the latest


async def test_a_subscription_is_entered_once() -> None:
    """async with on a subscription whose block exited raises (it used to be accepted and
    receive nothing, uncounted); one the bus closed may still be entered to drain it."""
    bus = Broadcast[int]()
    sub = bus.subscribe(buffer=4)
    async with sub:
        pass
    with pytest.raises(RuntimeError, match=r"was unsubscribed .*subscribe again"):
        async with sub:
            pass
    kept = bus.subscribe(buffer=4)
    await bus.publish(7)
    bus.close()
    async with kept:
        assert [v async for v in kept] == [7]


def yield_with(monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    """The next publish that could deliver at once yields first, running *action*."""
    import asyncgo._pubsub as pubsub_mod

    race_in_checkpoint(monkeypatch, pubsub_mod, action)


async def test_a_publish_yielding_for_its_budget_keeps_its_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The publish whose yield falls due ("every few hundred") takes its turn first:
    publishes called while it yields queue behind it instead of delivering first --
    also behind one waiting for a full subscriber (the subscriber got 0, 1, 3, 2)."""
    from asyncgo._backend import FAST

    bus = Broadcast[int]()
    async with bus.subscribe(buffer=1, policy="block") as sub:
        await bus.publish(0)  # the subscriber's buffer is full now
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.publish, 1)  # waits for room
            await anyio.wait_all_tasks_blocked()

            async def second() -> None:
                FAST.budget = 0  # its yield falls due: it queues first all the same
                await bus.publish(2)

            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(bus.publish, 3)  # called after it
            await anyio.wait_all_tasks_blocked()
            assert [await sub.recv() for _ in range(4)] == [0, 1, 2, 3]

    async with bus.subscribe(buffer=8) as sub2, anyio.create_task_group() as tg:

        def publish_11() -> None:  # (returns nothing to await: it runs meanwhile)
            tg.start_soon(bus.publish, 11)

        yield_with(monkeypatch, publish_11)
        await bus.publish(10)  # yields; publish(11) is called meanwhile
        await anyio.wait_all_tasks_blocked()
        assert [await sub2.recv() for _ in range(2)] == [10, 11]


async def test_a_topic_is_kept_while_a_publish_to_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a publish to a topic waits (its turn, or a full subscriber), the topic's
    last subscriber leaves and a new one subscribes: the new one joins the same bus and
    gets the value. The topic used to be forgotten at once, the new subscriber got a
    bus of its own, and the value went to nobody."""
    ps = PubSub[str, int]()
    first = ps.subscribe("t", buffer=4)
    later: list[Subscription[int]] = []

    def swap() -> None:
        first.unsubscribe()  # the topic's last subscriber leaves
        assert ps.topics() == []
        later.append(ps.subscribe("t", buffer=4))  # a new one, before the delivery

    yield_with(monkeypatch, swap)
    await ps.publish("t", 42)
    async with later[0] as sub:
        assert len(sub) == 1
        assert await sub.recv() == 42
    assert repr(ps) == "<PubSub topics=0>"  # forgotten once idle


async def test_a_disconnect_is_a_chan_closed_with_its_reason() -> None:
    """The disconnected subscriber's channel is closed: `except ChanClosed` around recv()
    catches it too, and the reason says why."""
    assert issubclass(Disconnected, ChanClosed)
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=1, policy="disconnect") as sub:
        bus.publish_nowait(1)
        bus.publish_nowait(2)  # the buffer is full: disconnected
        assert await sub.recv() == 1  # what it had is still read
        with pytest.raises(ChanClosed, match=r"^subscriber fell behind: buffer of 1 full$") as ei:
            await sub.recv()
        assert isinstance(ei.value, Disconnected)
        assert sub.reason == str(ei.value)


async def test_a_publish_waits_for_full_block_subscribers_in_subscription_order() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=1) as first, bus.subscribe(buffer=1) as second:
        await bus.publish(1)  # both full now
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.publish, 2)
            await anyio.wait_all_tasks_blocked()
            assert await second.recv() == 1  # room in `second`, but it waits for `first`
            await anyio.wait_all_tasks_blocked()
            assert len(second) == 0
            assert await first.recv() == 1
        assert await first.recv() == 2
        assert await second.recv() == 2


async def test_a_queued_publish_serves_who_subscribed_while_it_was_queued() -> None:
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=0) as stuck:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.publish, 1)  # waits for a reader of `stuck`
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(bus.publish, 2)  # queued behind it
            await anyio.wait_all_tasks_blocked()
            async with bus.subscribe(buffer=4) as late:
                assert await stuck.recv() == 1
                assert await stuck.recv() == 2
                await anyio.wait_all_tasks_blocked()
                assert len(late) == 1  # 1 was published before it subscribed...
                assert await late.recv() == 2  # ...2 after: not missed


# -- selecting on a subscription (sub.c) ---------------------------------------------


@pytest.mark.parametrize("policy", ["block", "drop_newest", "drop_oldest", "disconnect"])
async def test_select_on_a_subscription_channel(policy: Any) -> None:
    """``sub.c`` is the subscriber's channel: a select case receives the values in
    order, and fires with ok False once the subscription has ended."""
    from asyncgo import background, recv, select, with_cancel

    ctx, cancel = with_cancel(background())
    bus = Broadcast[int]()
    async with bus.subscribe(buffer=3, policy=policy) as sub:
        for i in range(3):
            bus.publish_nowait(i)
        got = []
        for _ in range(3):
            r = await select(recv(ctx.done()), recv(sub.c))
            assert (r.index, r.ok) == (1, True)
            got.append(r.value)
        assert got == [0, 1, 2]
        assert (await select(recv(sub.c), default=True)).index == -1  # nothing more
        cancel()
        assert (await select(recv(ctx.done()), recv(sub.c))).index == 0
        if policy == "disconnect":
            for i in range(4):
                bus.publish_nowait(i)  # the fourth finds the buffer full
            assert [(await select(recv(sub.c))).value for _ in range(3)] == [0, 1, 2]
            r = await select(recv(sub.c))
            assert (r.value, r.ok) == (None, False)
            assert sub.reason == "subscriber fell behind: buffer of 3 full"
            with pytest.raises(Disconnected):
                await sub.recv()  # the same ending, told by recv()
        else:
            bus.publish_nowait(7)
            bus.close()
            r1, r2 = await select(recv(sub.c)), await select(recv(sub.c))
            assert (r1.value, r1.ok, r2.ok) == (7, True, False)
            assert sub.reason is None


async def test_cancelled_select_on_a_subscription_takes_nothing() -> None:
    from asyncgo import recv, select

    bus = Broadcast[int]()
    async with bus.subscribe(buffer=1) as sub:
        bus.publish_nowait(5)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await select(recv(sub.c))  # cancelled on entry: a value ready, not taken
        assert scope.cancelled_caught
        assert len(sub) == 1

        async def parked(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
            with anyio.CancelScope() as s:
                task_status.started(s)
                await select(recv(sub.c), recv(None))

        assert await sub.recv() == 5
        async with anyio.create_task_group() as tg:
            s = await tg.start(parked)
            await anyio.wait_all_tasks_blocked()
            s.cancel()
        assert s.cancelled_caught
        bus.publish_nowait(6)  # after the cancelled select: it is the subscriber's
        assert await sub.recv() == 6


async def test_unsubscribe_ends_a_pending_select_and_async_for() -> None:
    """``unsubscribe()`` from another task wakes a select on ``sub.c`` (ok False) and
    ends an ``async for`` over the subscription, as the bus's ``close()`` does."""
    from asyncgo import recv, select

    bus = Broadcast[int]()
    s1, s2 = bus.subscribe(), bus.subscribe()
    seen: list[object] = []

    async def selecting() -> None:
        r = await select(recv(s1.c))
        seen.append(("select", r.ok))

    async def iterating() -> None:
        async for v in s2:
            seen.append(v)
        seen.append("for ended")

    async with anyio.create_task_group() as tg:
        tg.start_soon(selecting)
        tg.start_soon(iterating)
        await anyio.wait_all_tasks_blocked()
        s1.unsubscribe()
        s2.unsubscribe()
    assert sorted(map(str, seen)) == sorted(map(str, [("select", False), "for ended"]))
    assert len(bus) == 0


async def test_recv_of_a_subscription_names_its_channel() -> None:
    from asyncgo import recv

    bus = Broadcast[int]()
    async with bus.subscribe() as sub:
        with pytest.raises(
            TypeError, match=r"not Subscription \(select on its channel: recv\(x\.c\)\)"
        ):
            recv(sub)  # type: ignore[arg-type]

"""A Broadcast used from one event loop after another, or from two at once (sync
tests: each runs its own loops, some in threads)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import anyio
import pytest

from asyncgo._pubsub import Broadcast, PubSub

T = TypeVar("T")


@pytest.mark.parametrize(
    "runs",
    [("asyncio", "asyncio"), ("asyncio", "uvloop"), ("trio", "asyncio"), ("asyncio", "trio")],
)
def test_a_bus_outlives_its_event_loop(runs: tuple[str, str]) -> None:
    """Publishes that queue behind one another in one anyio.run, then again in a
    later one (a module-level bus, test loops): the ordering lock of the first run
    does not tie the bus to that loop."""
    bus = Broadcast[int]()

    async def main() -> list[int]:
        async with bus.subscribe(buffer=1) as sub:
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(bus.publish, i)  # the 2nd and 3rd queue
                return [await sub.recv() for _ in range(3)]

    for backend in runs:
        if backend == "uvloop":
            pytest.importorskip("uvloop")
            got = anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
        else:
            got = anyio.run(main, backend=backend)
        assert sorted(got) == [0, 1, 2]  # (trio starts tasks in its own order)


def run(main: Callable[[], Awaitable[T]], backend: str) -> T:
    if backend == "uvloop":
        return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(main, backend=backend)


def in_thread(
    main: Callable[[], Awaitable[object]], backend: str
) -> tuple[threading.Thread, list[BaseException | None]]:
    """Run *main* in a new event loop of its own thread; the box gets its error or None."""
    box: list[BaseException | None] = []

    def target() -> None:
        try:
            run(main, backend)
            box.append(None)
        except BaseException as e:  # noqa: BLE001 (reported to the test)
            box.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


LOOP_PAIRS = [
    ("asyncio", "asyncio"),
    ("uvloop", "uvloop"),
    ("trio", "trio"),
    ("asyncio", "trio"),
    ("trio", "asyncio"),
]


@pytest.mark.parametrize(("home", "other"), LOOP_PAIRS)
def test_a_publish_from_another_loop_raises_there_and_spares_the_waiting_one(
    home: str, other: str
) -> None:
    """Loop A's publish waits for a full "block" subscriber; loop B (another thread)
    publishes meanwhile: B gets RuntimeError at once (it used to queue behind A's
    publish, hang, and make A's unlock raise); A's publish completes."""
    if "uvloop" in (home, other):
        pytest.importorskip("uvloop")
    result: dict[str, object] = {}

    async def main_a() -> None:
        bus = Broadcast[int]()
        async with bus.subscribe(buffer=1) as sub:
            bus.publish_nowait(0)  # full

            async def publish_b() -> None:
                await bus.publish(2)

            async with anyio.create_task_group() as tg:
                tg.start_soon(bus.publish, 1)
                await anyio.wait_all_tasks_blocked()  # waits for room in sub
                t, box = in_thread(publish_b, other)
                await anyio.to_thread.run_sync(t.join, 10)
                result["b_alive"] = t.is_alive()
                result["b"] = box[0] if box else None
                result["got"] = [await sub.recv() for _ in range(2)]  # A's publish goes on
            result["len"] = len(sub)

    run(main_a, home)
    assert result["b_alive"] is False, "loop B hangs"
    err = result["b"]
    assert isinstance(err, RuntimeError), repr(err)
    assert "Broadcast.publish: " in str(err) and "belongs to one event loop" in str(err)
    assert result["got"] == [0, 1]
    assert result["len"] == 0


@pytest.mark.parametrize(("home", "other"), LOOP_PAIRS)
def test_publish_nowait_from_another_loop_delivers_to_none(home: str, other: str) -> None:
    """publish_nowait from loop B to subscribers of loop A (one of them parked in recv):
    RuntimeError before any delivery ("every subscriber now or none"); subscribe too."""
    if "uvloop" in (home, other):
        pytest.importorskip("uvloop")
    result: dict[str, object] = {}

    async def main_a() -> None:
        bus = Broadcast[int]()
        ps = PubSub[str, int]()
        async with (
            bus.subscribe(buffer=4) as s1,
            bus.subscribe(buffer=4) as s2,
            ps.subscribe("t") as s3,
        ):

            async def from_b() -> None:
                for name, call in [
                    ("publish_nowait", partial(bus.publish_nowait, 7)),
                    ("subscribe", bus.subscribe),
                    ("pubsub", partial(ps.publish_nowait, "t", 7)),
                ]:
                    try:
                        call()
                        result[name] = None
                    except RuntimeError as e:
                        result[name] = e

            async with anyio.create_task_group() as tg:
                tg.start_soon(s2.recv)
                await anyio.wait_all_tasks_blocked()  # s2's reader parked in A
                t, box = in_thread(from_b, other)
                await anyio.to_thread.run_sync(t.join, 10)
                result["b_alive"] = t.is_alive()
                result["b"] = box[0] if box else None
                result["lens"] = (len(s1), len(s2), len(s3), len(bus))
                bus.publish_nowait(8)  # the home loop still can
            result["after"] = (await s1.recv(), len(s2))

    run(main_a, home)
    assert result["b_alive"] is False
    assert result["b"] is None
    assert result["lens"] == (0, 0, 0, 2)  # nobody got 7, no subscriber was added
    for name in ("publish_nowait", "subscribe", "pubsub"):
        assert isinstance(result[name], RuntimeError), (name, result[name])
    assert "Broadcast.subscribe: " in str(result["subscribe"])
    assert result["after"] == (8, 0)  # s2's reader took 8


def test_subscribers_made_outside_a_loop_belong_to_the_first_loop_that_publishes() -> None:
    bus = Broadcast[int]()
    sub = bus.subscribe(buffer=1)  # no event loop yet: the bus has no home
    errors: list[BaseException | None] = []

    async def main_a() -> None:
        await bus.publish(1)  # the bus is now this loop's
        t, box = in_thread(partial(bus.publish, 2), "asyncio")
        await anyio.to_thread.run_sync(t.join, 10)
        errors.extend(box)
        assert await sub.recv() == 1

    run(main_a, "trio")
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    sub.unsubscribe()  # idle again: a later loop may use the bus

    async def later() -> int:
        async with bus.subscribe() as again:
            await bus.publish(3)
            return await again.recv()

    assert run(later, "asyncio") == 3


def test_a_refused_subscribe_binds_nothing_and_makes_no_topic() -> None:
    """subscribe() with bad arguments raises before binding the bus to the caller's loop
    (a later loop was refused) or making a PubSub topic (one was kept per call)."""
    bus = Broadcast[int]()
    ps = PubSub[str, int]()
    done, release = threading.Event(), threading.Event()

    def worker() -> None:
        async def bad() -> None:
            for args in [{"policy": "nope"}, {"buffer": -1}, {"buffer": "2"}]:
                with pytest.raises((ValueError, TypeError)):
                    bus.subscribe(**args)  # type: ignore[arg-type]
                with pytest.raises((ValueError, TypeError)):
                    ps.subscribe("t", **args)  # type: ignore[arg-type]

        anyio.run(bad)
        done.set()
        release.wait(30)  # the thread stays alive: its id is not reused

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert done.wait(30)
        assert (len(bus), repr(ps)) == (0, "<PubSub topics=0>")

        async def later() -> int:  # another event loop, in this thread
            async with bus.subscribe(buffer=1) as sub:
                await bus.publish(1)
                return await sub.recv()

        assert anyio.run(later) == 1
    finally:
        release.set()
        t.join()

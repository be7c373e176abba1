"""Seed 000 "发布订阅模式": non-blocking broadcast that skips a slow subscriber, and unsubscribe.

Go::

    subscribers map[chan Event]struct{}
    for ch := range subscribers {
        select {
        case ch <- event:   // non-blocking send
        default:            // skip the blocked subscriber
        }
    }
    func unsubscribe(ch chan Event) { delete(subscribers, ch) }   // no leaked channel

asyncgo: ``bus.subscribe(buffer=..., policy="drop_newest")`` is that ``select``
with ``default`` (and counts what it skipped in ``sub.dropped``);
``"drop_oldest"`` keeps the latest events instead, ``"disconnect"`` closes a
subscriber that falls behind, ``"block"`` waits for it. Leaving ``async with``
is unsubscribe.

Run: ``python examples/pubsub_nonblocking.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import Broadcast, Disconnected, Subscription


async def reader(
    name: str, sub: Subscription[int], delay: float, out: dict[str, list[int]]
) -> None:
    got = out.setdefault(name, [])
    try:
        async for ev in sub:
            got.append(ev)
            await anyio.sleep(delay)
    except Disconnected as e:
        print(f"{name}: disconnected ({e})")


async def main() -> None:
    bus = Broadcast[int]()
    out: dict[str, list[int]] = {}
    async with anyio.create_task_group() as tg:
        fast = bus.subscribe(buffer=100)
        slow = bus.subscribe(buffer=2, policy="drop_newest")
        latest = bus.subscribe(buffer=2, policy="drop_oldest")
        cut = bus.subscribe(buffer=2, policy="disconnect")
        tg.start_soon(reader, "fast", fast, 0, out)
        tg.start_soon(reader, "slow", slow, 0.05, out)
        tg.start_soon(reader, "latest", latest, 0.05, out)
        tg.start_soon(reader, "cut", cut, 0.05, out)
        await anyio.sleep(0.01)  # let the readers start
        for ev in range(20):
            bus.publish_nowait(ev)  # never waits: no subscriber uses "block"
        bus.close()  # subscribers read what they have, then stop
    for name, sub in [("fast", fast), ("slow", slow), ("latest", latest), ("cut", cut)]:
        print(f"{name}: got {out[name]}, dropped {sub.dropped}")
    assert out["fast"] == list(range(20))
    assert out["slow"][:1] == [0] and out["latest"][-2:] == [18, 19]
    assert slow.dropped > 0 and latest.dropped > 0 and cut.reason is not None

    # Unsubscribe: leaving the block removes the subscriber (no leaked queue).
    bus2 = Broadcast[str]()
    async with bus2.subscribe(buffer=1) as sub2:
        await bus2.publish("hello")
        assert await sub2.recv() == "hello"
        assert len(bus2) == 1
    assert len(bus2) == 0
    await bus2.publish("nobody listens")  # does not wait for the gone subscriber
    print("ok")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)

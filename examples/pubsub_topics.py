"""Topic-keyed pub/sub (a Go broker with ``map[string][]chan Event``).

asyncgo: ``PubSub[str, Event]``; ``subscribe(topic, buffer=..., policy=...)``;
``publish(topic, event)`` reaches that topic's subscribers only; a topic whose
last subscriber leaves is forgotten; ``close()`` ends every subscription after it
has read what was published.

Run: ``python examples/pubsub_topics.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import PubSub, Subscription


async def consumer(name: str, sub: Subscription[str], out: list[str]) -> None:
    async with sub:  # leaving the block unsubscribes
        async for ev in sub:
            out.append(f"{name}:{ev}")


async def main() -> None:
    ps = PubSub[str, str]()
    out: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer, "billing", ps.subscribe("orders", buffer=4), out)
        tg.start_soon(consumer, "shipping", ps.subscribe("orders", buffer=4), out)
        tg.start_soon(consumer, "audit", ps.subscribe("users", buffer=4), out)
        for i in range(3):
            await ps.publish("orders", f"order-{i}")  # waits if a buffer is full ("block")
        await ps.publish("users", "alice signed up")
        await ps.publish("nobody", "dropped: no subscribers")
        print("topics:", sorted(ps.topics()))
        ps.close()
    print("\n".join(out))
    assert sorted(out) == sorted(
        [f"{who}:order-{i}" for who in ("billing", "shipping") for i in range(3)]
        + ["audit:alice signed up"]
    )
    assert ps.topics() == []
    print("ok")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)

"""Seed 000 §3, 惰性生成器模式 (lazy generator): values made on demand.

Go::

    func generator() func() (int, bool) {
        count := 0
        return func() (int, bool) {
            if count < 5 {
                count++
                return count, true
            }
            return 0, false // 结束标志
        }
    }

asyncgo: an async generator function *is* a lazy generator (``yield`` instead of
the closure, the end of the function instead of ``false``), and it is a pipeline
source as it is. A pipeline pulls from it only as fast as the stages after it
consume, bounded by the buffers: ``take(3)`` from an endless generator makes only a
few values more than three, then closes the generator (its ``finally`` runs, in
its own task).

Run: ``python examples/pipeline_generator.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import anyio

from asyncgo import pipeline, stages


async def generator() -> AsyncIterator[int]:
    count = 0
    while count < 5:
        count += 1
        yield count  # return count, true
    # falling off the end is Go's `return 0, false`


made = 0
closed = False


async def naturals() -> AsyncIterator[int]:
    """Endless and lazy: counts how many values it was asked for."""
    global made, closed
    try:
        n = 0
        while True:
            n += 1
            made += 1
            yield n
    finally:
        closed = True


async def main(quick: bool = False) -> None:
    global made, closed
    made, closed = 0, False
    values = await pipeline(generator).collect()
    print("generator():", values)
    assert values == [1, 2, 3, 4, 5]

    # Laziness: with buffer(0) links, the source runs at most a step ahead.
    first = await (pipeline(naturals, buffer=0) | stages.take(3)).collect()
    print(f"take(3) of an endless generator: {first}; it made {made} values, closed={closed}")
    assert first == [1, 2, 3] and made <= 6 and closed
    print("ok")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)


if __name__ == "__main__":
    cli()

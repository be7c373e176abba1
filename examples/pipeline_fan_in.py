"""Seed 000 §2.5, 扇入 (fan-in): merge several channels into one.

Go::

    func fanIn(chans ...<-chan int) <-chan int {
        out := make(chan int)
        for _, ch := range chans {
            go func(c <-chan int) {
                for n := range c {
                    out <- n
                }
            }(ch)
        }
        return out
    }

asyncgo: ``stages.merge(*sources)`` is fanIn. Each source (a channel, an async
generator, a list, another pipeline) is read by a task of its own; the merged
output ends when every source has ended -- the part the seed leaves out (its
``out`` is never closed, so a ``range`` over it never ends).

Run: ``python examples/pipeline_fan_in.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import anyio

from asyncgo import Chan, pipeline, stages


async def produce(ch: Chan[int], first: int, n: int) -> None:
    for i in range(first, first + n):
        await ch.send(i)
    ch.close()  # the sender closes


async def evens(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield 1000 + 2 * i


async def main(quick: bool = False) -> None:
    n = 100 if quick else 1000
    a, b, c = Chan[int](), Chan[int](8), Chan[int](64)
    async with anyio.create_task_group() as tg:
        for k, ch in enumerate((a, b, c)):
            tg.start_soon(produce, ch, k * n * 10, n)
        merged = await pipeline(stages.merge(a, b, c)).collect()  # fanIn(a, b, c)
    print(f"fanIn of 3 channels: {len(merged)} items, sum {sum(merged)}")
    assert sorted(merged) == sorted(i for k in range(3) for i in range(k * n * 10, k * n * 10 + n))

    # Any source mixes in, and merge() is also a stage: its input joins the sources.
    out = await (pipeline(range(5)) | stages.merge(evens(3), [-1, -2])).collect()
    print("merged:", sorted(out))
    assert sorted(out) == [-2, -1, 0, 1, 2, 3, 4, 1000, 1002, 1004]
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

"""Seed 002 §2, 简单Pipeline: generator -> square -> filterEven.

Go::

    func generator(nums ...int) <-chan int   // a goroutine sends nums, then close(out)
    func square(in <-chan int) <-chan int    // out <- n * n
    func filterEven(in <-chan int) <-chan int // if n%2 == 0 { out <- n }

    nums := generator(1, 2, 3, 4, 5)
    squared := square(nums)
    filtered := filterEven(squared)
    for n := range filtered {
        fmt.Println(n) // 4, 16
    }

asyncgo: the same three stages as async generator functions; ``pipeline(...)``
runs each in its own task, linked by bounded channels, and ``stream()`` is the
``range`` over the last channel.

Run: ``python examples/pipeline_simple.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import anyio

from asyncgo import pipeline


async def generator(*nums: int) -> AsyncIterator[int]:
    for n in nums:
        yield n


async def square(numbers: AsyncIterator[int]) -> AsyncIterator[int]:
    async for n in numbers:
        yield n * n


async def filter_even(numbers: AsyncIterator[int]) -> AsyncIterator[int]:
    async for n in numbers:
        if n % 2 == 0:
            yield n


async def main(quick: bool = False) -> None:
    got = []
    p = pipeline(generator(1, 2, 3, 4, 5)) | square | filter_even
    async with p.stream() as filtered:
        async for n in filtered:  # for n := range filtered
            print(n)
            got.append(n)
    assert got == [4, 16]
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

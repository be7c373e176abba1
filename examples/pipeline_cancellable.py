"""Seed 002 §2, 可取消的Pipeline: every stage selects on ctx.Done().

Go::

    func square(ctx context.Context, in <-chan int) <-chan int {
        out := make(chan int)
        go func() {
            defer close(out)
            for n := range in {
                select {
                case out <- n * n:
                case <-ctx.Done():
                    return
                }
            }
        }()
        return out
    }

    ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
    defer cancel()
    for n := range square(ctx, generator(ctx, 1, 2, 3, 4, 5)) { fmt.Println(n) }

asyncgo: the stages stay plain loops; ``stream(ctx)`` runs every stage bound to
ctx, so when ctx is cancelled or its deadline passes every stage is cancelled at
its next await, every generator is closed, and the ``async for`` raises
``ctx.err()`` (``Canceled`` or ``DeadlineExceeded``) instead of hanging or ending
silently. Inside a stage, ``asyncgo.current()`` is that ctx.

Run: ``python examples/pipeline_cancellable.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import AsyncIterator

import anyio

from asyncgo import Canceled, DeadlineExceeded, background, pipeline, with_cancel, with_timeout


async def generator(*nums: int) -> AsyncIterator[int]:
    for n in nums:
        yield n


async def square(numbers: AsyncIterator[int]) -> AsyncIterator[int]:
    async for n in numbers:
        yield n * n


async def ticker(period: float) -> AsyncIterator[int]:
    """An endless source: one number every *period* seconds."""
    for i in itertools.count(1):
        yield i
        await anyio.sleep(period)


async def main(quick: bool = False) -> None:
    # 1. The seed: a 5 s timeout the pipeline finishes well within.
    with with_timeout(background(), 5.0) as ctx:
        got = []
        async with (pipeline(generator(1, 2, 3, 4, 5)) | square).stream(ctx) as squared:
            async for n in squared:
                print(n)
                got.append(n)
        assert got == [1, 4, 9, 16, 25]

    # 2. A deadline that passes first: the endless pipeline stops, cleanly.
    with with_timeout(background(), 0.05) as ctx:
        seen = []
        try:
            async with (pipeline(ticker(0.01)) | square).stream(ctx) as squared:
                async for n in squared:
                    seen.append(n)
        except DeadlineExceeded as err:
            print(f"stopped after {len(seen)} items: {err}")
        else:
            raise AssertionError("the deadline did not stop the pipeline")

    # 3. The consumer cancels: cancel() is Go's cancel(), ctx.err() is Canceled.
    ctx, cancel = with_cancel(background())
    try:
        async with (pipeline(ticker(0.001)) | square).stream(ctx) as squared:
            async for n in squared:
                if n >= 9:
                    cancel()
    except Canceled as err:
        print("stopped by cancel():", err)
        assert err is ctx.err()
    else:
        raise AssertionError("cancel() did not stop the pipeline")
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

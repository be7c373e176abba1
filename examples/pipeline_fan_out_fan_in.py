"""Seed 002 §3, Fan-out/Fan-in 完整示例: 3 workers share the input, results merged.

Go::

    ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
    defer cancel()
    in := make(chan int)                 // a goroutine sends 1..10, then close(in)
    workers := fanOut(ctx, in, 3)        // 3 goroutines: time.Sleep(time.Second); out <- n * n
    results := fanIn(ctx, workers...)    // merge the 3 outputs
    for result := range results {
        fmt.Println(result)
    }

asyncgo: ``stages.fan_out(3, worker)`` runs three copies of the ``worker`` stage in
their own tasks, each taking the next item from the shared input, and merges their
outputs; ``stream(ctx)`` gives all of it the 10 s timeout. ``stages.map(fn,
workers=3, ordered=False)`` is the same for a per-item function (and keeps the
input order with ``ordered=True``). The seed sleeps 1 s per item; here 0.1 s.

Run: ``python examples/pipeline_fan_out_fan_in.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator

import anyio

from asyncgo import background, pipeline, stages, with_timeout

WORK = 0.1  # seconds per item (the seed's time.Sleep(time.Second))


async def worker(numbers: AsyncIterator[int]) -> AsyncIterator[int]:
    async for n in numbers:
        await anyio.sleep(WORK)  # 模拟耗时处理
        yield n * n


async def square_slowly(n: int) -> int:
    await anyio.sleep(WORK)
    return n * n


async def main(quick: bool = False) -> None:
    global WORK
    if quick:
        WORK = 0.01
    with with_timeout(background(), 10.0) as ctx:
        t0 = time.perf_counter()
        results = []
        async with (pipeline(range(1, 11)) | stages.fan_out(3, worker)).stream(ctx) as out:
            async for r in out:
                print(r)
                results.append(r)
        took = time.perf_counter() - t0
        # 10 items over 3 workers: 4 rounds of WORK, not 10.
        print(f"fan-out/fan-in: {len(results)} results in {took:.2f} s")
        assert sorted(results) == [n * n for n in range(1, 11)]

        ordered = await (pipeline(range(1, 11)) | stages.map(square_slowly, workers=3)).collect(ctx)
        print("map(workers=3), input order kept:", ordered)
        assert ordered == [n * n for n in range(1, 11)]
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

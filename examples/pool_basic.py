"""Seed 002 "基本Worker Pool": 5 workers, 10 jobs, results collected.

Go::

    jobs := make(chan int, 100); results := make(chan int, 100)
    go workerPool(jobs, results, 5)  // 5 goroutines: for job := range jobs { results <- ... }
    for i := 1; i <= 10; i++ { jobs <- i }
    close(jobs)
    for result := range results { fmt.Println("Result:", result) }

asyncgo: the pool owns the workers and the WaitGroup; ``pool.map`` is the
jobs/results channel pair, and leaving ``async with`` is ``close(jobs); wg.Wait()``.

Run: ``python examples/pool_basic.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import WorkerPool


async def process(job: int) -> int:
    print(f"processing job {job}")
    await anyio.sleep(0.01)  # the seed sleeps 1 s
    return job * 2


async def main() -> None:
    results = []
    async with WorkerPool(workers=5, queue_size=100) as pool:
        async for result in pool.map(process, range(1, 11)):
            print("Result:", result)
            results.append(result)
    assert results == [2 * i for i in range(1, 11)], results
    print("ok:", pool.stats())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)

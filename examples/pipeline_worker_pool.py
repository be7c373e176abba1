"""Seed 002 性能对比: a worker pool over 1000 jobs that each wait 1 ms.

Go (the seed's benchmark)::

    func processJob(job int) int { time.Sleep(time.Millisecond); return job * 2 }
    // BenchmarkSerial:        for _, job := range jobs { processJob(job) }     ~1 s
    // BenchmarkWorkerPool10:  10 goroutines reading a jobs channel             10x faster
    // BenchmarkWorkerPool100: 100 goroutines                                   100x faster

asyncgo: ``stages.map(process_job, workers=n)`` is the pool: n worker tasks take
jobs from the pipeline and send results on, in input order. Waiting (I/O, sleep)
overlaps; the speed-up approaches n while the event loop keeps up with the
wake-ups (benchmarks/bench_pipeline.py measures how close, against aiometer and a
hand-written pool). The same program also shows the seed's fan-out figure
(100 jobs of 100 µs on 1, 4 and 8 copies of a stage, ``stages.fan_out``; Go reports 4x
and 8x). Sleeps that short measure the event loop's timers more than the fan-out:
asyncio's selector and trio wait in whole milliseconds (a 100 µs sleep takes about
1 ms, and sleeps that end close together share one wait), uvloop rounds them down to
almost nothing; so the figures differ by backend and stray from Go's either way
(docs/benchmarks.md, ``pool_fanout_100us``, also runs them in threads).

Run: ``python examples/pipeline_worker_pool.py --backend asyncio|uvloop|trio [--jobs N]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator

import anyio

from asyncgo import pipeline, stages


async def process_job(job: int) -> int:
    await anyio.sleep(0.001)  # time.Sleep(time.Millisecond)
    return job * 2


async def main(quick: bool = False, jobs: int = 1000) -> None:
    if quick:
        jobs = 100
    want = [j * 2 for j in range(jobs)]

    t0 = time.perf_counter()
    serial = [await process_job(j) for j in range(jobs)]
    serial_s = time.perf_counter() - t0
    assert serial == want
    print(f"serial:      {serial_s * 1000:8.1f} ms")

    for workers in (10, 100):
        t0 = time.perf_counter()
        out = await (pipeline(range(jobs)) | stages.map(process_job, workers=workers)).collect()
        took = time.perf_counter() - t0
        assert out == want
        speedup = serial_s / took
        print(
            f"{workers:3} workers: {took * 1000:8.1f} ms  {speedup:5.1f}x "
            f"({speedup / workers:.0%} of the ideal {workers}x)"
        )

    # The seed's fan-out: 100 jobs of 100 µs through n copies of one stage.
    async def work(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for j in items:
            await anyio.sleep(0.0001)
            yield j * 2

    fan_jobs = 100
    times: dict[int, float] = {}
    for copies in (1, 4, 8):
        t0 = time.perf_counter()
        out = await (pipeline(range(fan_jobs)) | stages.fan_out(copies, work)).collect()
        times[copies] = time.perf_counter() - t0
        assert sorted(out) == [j * 2 for j in range(fan_jobs)]  # fan-out: any order
        print(
            f"fan-out {copies} x 100 µs stage: {times[copies] * 1000:7.1f} ms  "
            f"{times[1] / times[copies]:5.1f}x"
        )
    print("ok")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    ap.add_argument("--jobs", type=int, default=1000)
    args = ap.parse_args()

    async def run() -> None:
        await main(jobs=args.jobs)

    if args.backend == "uvloop":
        anyio.run(run, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(run, backend=args.backend)


if __name__ == "__main__":
    cli()

"""Seed 002 "实际生产案例": an image batch service, a worker pool behind a rate limiter.

Go (the seed)::

    type ImageProcessor struct { workerPool *WorkerPool; limiter *rate.Limiter }
    for _, img := range images {
        p.limiter.Wait(ctx)                       // stay within the API quota
        p.workerPool.Submit(Job{Data: img, Process: resizeImage})
    }
    // single thread 100/s; pool(10) 800/s; pool(50) 2000/s; with limiter 1500/s

Here each resize is a 10 ms call to an image API (simulated with a sleep), so
one worker does ~100 images/s; the API's quota is 1500 calls/s. The feeder
waits on ``rate.Limiter(1500, burst=15)`` before handing each image to the
workers through a ``Chan``; the workers are tasks of a task group. Printed: the
throughput of 1, 10 and 50 workers without a limiter, and of 50 workers with
it -- which stays at the quota, and never passes ``burst + 1500 * W`` calls in
any window of W seconds (checked on the times the limiter let the calls go).

Run: ``python examples/image_batch_service.py --backend asyncio|uvloop|trio [--images N]``
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import anyio

from asyncgo import Chan, rate
from asyncgo.time import sleep

QUOTA = 1500.0  # API calls per second
BURST = 15
RESIZE_S = 0.010  # one API call


@dataclass(slots=True)
class Image:
    id: int
    size: tuple[int, int] = (4000, 3000)


async def resize(img: Image) -> tuple[int, int]:
    await sleep(RESIZE_S)  # the image API's round trip
    return img.size[0] // 10, img.size[1] // 10


async def process_batch(
    images: list[Image], workers: int, limiter: rate.Limiter | None
) -> tuple[float, list[float]]:
    """Resize every image with *workers* tasks; the seconds it took and the calls' go times."""
    jobs = Chan[Image](workers)
    calls: list[float] = []
    done = 0

    async def worker() -> None:
        nonlocal done
        async for img in jobs:
            await resize(img)
            done += 1

    async def feed() -> None:
        try:
            for img in images:
                if limiter is not None:
                    await limiter.wait()  # Go: p.limiter.Wait(ctx)
                # The call's slot: when the limiter let it go (a worker may start it a
                # moment later, bunched with others by the scheduler).
                calls.append(time.perf_counter())
                await jobs.send(img)
        finally:
            jobs.close()

    t0 = time.perf_counter()
    # An anyio task group of workers (asyncgo's Group and WorkerPool fit here too).
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
        tg.start_soon(feed)
    took = time.perf_counter() - t0
    assert done == len(images), (done, len(images))
    return took, calls


def max_in_window(times: list[float], w: float) -> int:
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - w:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def main(images: int = 3000) -> None:
    batch = [Image(i) for i in range(images)]
    for workers in (1, 10, 50):
        n = min(images, 200) if workers == 1 else images  # one worker: a short sample
        took, _ = await process_batch(batch[:n], workers, None)
        print(f"pool({workers:2}), no limiter:  {n / took:7.0f} images/s")
    lim = rate.Limiter(QUOTA, BURST)
    took, calls = await process_batch(batch, 50, lim)
    got = len(batch) / took
    w = 0.5
    peak = max_in_window(calls, w)
    bound = BURST + QUOTA * w
    print(
        f"pool(50) + Limiter({QUOTA:.0f}/s, burst={BURST}): {got:7.0f} images/s; "
        f"most API calls in any {w} s: {peak} (bound {bound:.0f})"
    )
    assert got <= QUOTA * 1.02 + BURST / took, f"over the quota: {got:.0f}/s"
    assert peak <= bound + 5, f"{peak} calls in {w} s"  # 5: late wake-ups bunching
    print("ok")


def cli() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    ap.add_argument("--images", type=int, default=3000)
    args = ap.parse_args()

    async def run() -> None:
        await main(args.images)

    if args.backend == "uvloop":
        anyio.run(run, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(run, backend=args.backend)


if __name__ == "__main__":
    cli()

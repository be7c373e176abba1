"""Seeds 000/001 "优雅终止": the three-step shutdown, with a timeout.

The seeds::

    // Go: close(jobs) stops intake; wg.Wait() waits for running jobs; close(results)
    executor.shutdown();                                       // Java: stop intake
    if (!executor.awaitTermination(60, SECONDS)) executor.shutdownNow();   // then force

asyncgo: ``await pool.shutdown(timeout=...)`` does the three steps; jobs still
running (or queued) when the timeout expires are cancelled and returned, so every
submitted job is accounted for: done, failed, or reported cancelled.

Run: ``python examples/graceful_shutdown.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import PoolClosed, WorkerPool


async def job(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


async def main() -> None:
    # Everything finishes within the timeout: nothing is cancelled.
    async with WorkerPool(workers=4) as pool:
        for _ in range(8):
            await pool.submit(job, 0.01)
        left = await pool.shutdown(timeout=5)
    print("graceful:", pool.stats(), "cancelled:", left)
    assert left == [] and pool.stats().done == 8

    # Some jobs would take an hour: after the timeout they are cancelled and reported.
    async with WorkerPool(workers=2, queue_size=10) as pool:
        quick = [await pool.submit(job, 0.01) for _ in range(3)]
        stuck = [await pool.submit(job, 3600) for _ in range(3)]
        left = await pool.shutdown(timeout=0.2)  # shutdownNow() after 0.2 s
        try:
            await pool.submit(job, 1)
        except PoolClosed:
            print("intake stopped: PoolClosed")
    s = pool.stats()
    print("forced:", s, "cancelled:", left)
    assert all(h.done() and not h.cancelled() for h in quick)
    assert set(left) == set(stuck)
    assert s.submitted == s.done + s.failed + s.cancelled  # nothing lost
    print("ok")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)

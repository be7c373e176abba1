"""Seed 002 "可控的Worker Pool": a pool with Submit, Stop and a cancel context.

Go::

    p := NewWorkerPool(3)   // jobs/results channels of workers*2, ctx + cancel
    p.Start()
    p.Submit(Job{ID: 1, Data: "a"})   // select { case p.jobs <- job: case <-p.ctx.Done(): }
    p.Stop()                // close(p.jobs); p.wg.Wait(); close(p.results)

asyncgo: ``WorkerPool(workers=3, queue_size=6, ctx=ctx)``; ``submit`` returns a
handle per job (the Result struct with its Err); cancelling ctx stops the pool
(jobs left are cancelled and their handles say so); ``shutdown()`` is Stop.

Run: ``python examples/pool_controllable.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import Canceled, PoolClosed, WorkerPool, background, with_cancel


async def process_job(job_id: int, data: str) -> str:
    await anyio.sleep(0.01)  # the seed sleeps 100 ms
    if data == "bad":
        raise ValueError(f"job {job_id}: bad data")
    return data.upper()


async def main() -> None:
    # 1. Normal run: submit, then Stop (graceful).
    async with WorkerPool(workers=3, queue_size=6) as pool:
        handles = [await pool.submit(process_job, i, d) for i, d in enumerate("abcde")]
        bad = await pool.submit(process_job, 99, "bad")
        await pool.shutdown()  # Stop(): close(jobs); wg.Wait()
        assert [await h for h in handles] == list("ABCDE")
        try:
            await bad
        except ValueError as e:  # Result.Err: the failure stays with its job
            print("job failed:", e)
        try:
            await pool.submit(process_job, 100, "late")
        except PoolClosed:
            print("submit after Stop: PoolClosed")
    print("stats:", pool.stats())
    assert pool.stats().failed == 1

    # 2. Cancel the context: workers stop, queued jobs are reported cancelled.
    ctx, cancel = with_cancel(background())
    async with WorkerPool(workers=3, queue_size=6, ctx=ctx) as pool:
        handles = [await pool.submit(process_job, i, "x") for i in range(9)]
        cancel()
        outcome = []
        for h in handles:
            try:
                outcome.append(await h)
            except Canceled:
                outcome.append("cancelled")
    print("after cancel:", outcome)
    assert "cancelled" in outcome
    s = pool.stats()
    assert s.submitted == s.done + s.failed + s.cancelled
    print("ok")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)

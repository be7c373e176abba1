"""Seed 000 "动态扩缩容": add workers when jobs pile up, retire them when idle.

Go (the seed's idea)::

    if len(taskCh) > cap(taskCh)/2 && workers < maxWorkers { go worker(); workers++ }
    // a worker: select { case t := <-taskCh: ...; case <-time.After(idle): return }

asyncgo: ``WorkerPool(min_workers=2, max_workers=16, idle_timeout=...)`` does both:
a submit that finds a backlog and no idle worker starts one; a worker idle for
``idle_timeout`` exits while more than ``min_workers`` run.

Seed 001 ch5 "动态配置与热更新" (raise the order pool from 20 to 100 workers for a
sale, without a restart): ``pool.resize(100)`` -- or new bounds,
``pool.resize(min_workers=..., max_workers=...)`` -- while the pool runs. Growing
starts the workers at once; shrinking lets busy workers finish their job first.

Run: ``python examples/pool_dynamic.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import WorkerPool


async def task(x: int) -> int:
    await anyio.sleep(0.02)
    return x


async def main() -> None:
    async with WorkerPool(min_workers=2, max_workers=16, queue_size=8, idle_timeout=0.1) as pool:
        print("start:", pool.stats().workers, "workers")
        handles = [await pool.submit(task, i) for i in range(100)]  # a burst
        peak = pool.stats().workers
        print("under the burst:", peak, "workers")
        assert [await h for h in handles] == list(range(100))
        with anyio.fail_after(5):
            while pool.stats().workers > 2:
                await anyio.sleep(0.05)
        print("after idling:", pool.stats().workers, "workers")
    assert peak == 16

    # Hot reconfiguration: the seed's order pool, 20 workers, raised to 100 for a sale.
    async with WorkerPool(workers=20, queue_size=200) as orders:
        first = [await orders.submit(task, i) for i in range(100)]
        print("normal:", orders.stats().workers, "workers")
        orders.resize(100)  # the config service says: sale starts
        print("sale:", orders.stats().workers, "workers")
        sale = [await orders.submit(task, i) for i in range(100, 300)]
        assert [await h for h in first + sale] == list(range(300))
        orders.resize(20)  # sale over: idle workers above 20 exit at once
        with anyio.fail_after(5):
            while orders.stats().workers > 20:
                await anyio.sleep(0.01)
        print("after the sale:", orders.stats().workers, "workers")
    print("ok")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)

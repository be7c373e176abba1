"""Seeds 002 §6, 000 §3/§5, 004 §5: semaphores -- a buffered channel, and semaphore.Weighted.

Go (seed 002, 信号量: a buffered channel of capacity max)::

    type Semaphore struct{ sem chan struct{} }
    func NewSemaphore(max int) *Semaphore { return &Semaphore{sem: make(chan struct{}, max)} }
    func (s *Semaphore) Acquire() { s.sem <- struct{}{} }
    func (s *Semaphore) Release() { <-s.sem }

    sem := NewSemaphore(3)  // 最多3个并发
    for i := 0; i < 10; i++ {
        wg.Add(1)
        go func(id int) {
            defer wg.Done()
            sem.Acquire()
            defer sem.Release()
            time.Sleep(time.Second)
        }(i)
    }
    wg.Wait()

Seed 000: ``semaphore.Weighted`` 管理加权资源限制「例如限制总内存占用」. Seed 004 §5::

    var sem = semaphore.NewWeighted(10) // 最多10个并发查询
    func queryDB(ctx context.Context, sql string) error {
        if err := sem.Acquire(ctx, 1); err != nil { return err }
        defer sem.Release(1)
        return db.QueryRowContext(ctx, sql).Scan(&result)
    }

asyncgo: the channel semaphore works as is with a ``Chan[None](3)``;
``asyncgo.sync.Semaphore(n)`` says what it means (``async with sem:``), and is
x/sync's weighted semaphore: ``await sem.acquire(k, ctx)`` /
``sem.release(k)``, strictly first come first served (a large request is not
starved by small ones), failing with ``ctx.err()`` when the ctx ends first.
``Group(limit=n)`` bounds a group of tasks without a semaphore at all.

Run: ``python examples/semaphore.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import Chan, DeadlineExceeded, Group, background, with_timeout
from asyncgo.sync import Semaphore


class Gauge:
    """Counts what runs at once, and the peak."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    def __enter__(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        self.now -= 1


async def task_with_chan_sem(sem: Chan[None], gauge: Gauge) -> None:
    await sem.send(None)  # sem.Acquire(): blocks while the buffer is full
    try:
        with gauge:
            await anyio.sleep(0.005)  # the seed's time.Sleep(time.Second)
    finally:
        await sem.recv()  # defer sem.Release()


async def task_with_semaphore(sem: Semaphore, gauge: Gauge) -> None:
    async with sem:  # acquire(1) ... release(1)
        with gauge:
            await anyio.sleep(0.005)


async def main() -> None:
    # 1. The seed: a buffered channel as a semaphore, 10 tasks, at most 3 at once.
    chan_sem = Chan[None](3)
    gauge = Gauge()
    async with anyio.create_task_group() as tg:  # the block's end is wg.Wait()
        for _ in range(10):
            tg.start_soon(task_with_chan_sem, chan_sem, gauge)
    print("chan semaphore: peak", gauge.peak)
    assert gauge.peak == 3

    # 2. Semaphore(3), and Group(limit=3) which needs none.
    gauge = Gauge()
    sem = Semaphore(3)
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(task_with_semaphore, sem, gauge)
    assert gauge.peak == 3

    gauge = Gauge()

    async def step() -> None:
        with gauge:
            await anyio.sleep(0.005)

    async with Group(limit=3) as g:
        for _ in range(10):
            await g.go(step)
    print("Semaphore(3), Group(limit=3): peak", gauge.peak)
    assert gauge.peak == 3

    # 3. Weighted: jobs hold as many MB as they use, never more than 100 MB in total.
    memory = Semaphore(100)
    held = peak = 0
    order: list[int] = []

    async def job(mb: int) -> None:
        nonlocal held
        try:
            await anyio.sleep(0.002 * mb / 10)
        finally:
            held -= mb
            memory.release(mb)  # defer sem.Release(mb)

    async with anyio.create_task_group() as tg:
        for mb in [60, 30, 80, 10, 100, 20, 5]:
            await memory.acquire(mb)  # sem.Acquire(ctx, mb): FIFO, so 100 is not starved
            held += mb
            peak = max(peak, held)
            order.append(mb)
            tg.start_soon(job, mb)
    print("weighted: started in order", order, "peak MB held", peak)
    assert peak <= 100

    # FIFO: while the 100 MB request waits, a 10 MB one does not slip past it.
    await memory.acquire(50)
    async with anyio.create_task_group() as tg:
        tg.start_soon(memory.acquire, 100)
        await anyio.wait_all_tasks_blocked()  # the big request is queued
        assert not memory.try_acquire(10), "50 MB are free, but the big request is first"
        memory.release(50)  # now the 100 MB request gets everything
    memory.release(100)
    print("weighted: a queued large request is not starved by small ones")

    # 4. queryDB: 10 connections; an acquire that cannot get one before the deadline fails.
    db = Semaphore(10)
    await db.acquire(10)  # every connection busy
    assert not db.try_acquire(1)  # sem.TryAcquire(1)
    with with_timeout(background(), 0.01) as ctx:
        try:
            await db.acquire(1, ctx)  # sem.Acquire(ctx, 1)
        except DeadlineExceeded as e:
            print("queryDB with every connection busy:", e)
        else:
            raise AssertionError("should have failed at the deadline")
    db.release(10)
    assert db.try_acquire(1)
    db.release(1)
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

"""Seeds 001 §2.1/§2.4, 003 §3.1, 004 §2.4/§5: sync.WaitGroup, misuse, close after many senders.

Go (seed 001 §2.1: a thousand goroutines, one WaitGroup)::

    var wg sync.WaitGroup
    for i := 0; i < 1000; i++ {
        wg.Add(1)
        go func(id int) {
            defer wg.Done()
            time.Sleep(10 * time.Millisecond) // 模拟短任务
        }(i)
    }
    wg.Wait() // 等待所有 goroutine 结束

Seed 004 §2.4 (WaitGroup误用): ``wg.Add`` must run *before* the ``go`` statement,
not inside the goroutine -- else ``Wait`` can see a zero counter and return
early::

    for i := 0; i < 3; i++ {
        go func(id int) {
            wg.Add(1)         // ❌ too late: Wait may already have seen zero
            defer wg.Done()
            work(id)
        }(i)
    }
    wg.Wait()                 // may return before any work ran

and ``Done`` more often than ``Add`` is a panic ("sync: negative WaitGroup counter").
Seed 004 §5 and seed 001 §2.2: with several senders on one channel, close it once,
after all of them -- ``wg.Wait()`` then ``close(ch)``.

asyncgo: ``WaitGroup()``: ``wg.add(1)``, ``wg.done()``, ``await wg.wait()``,
and a negative counter raises ``ValueError`` with Go's message. ``add`` inside
the task is the same bug, and here not a rare race: ``start_soon`` only schedules
the task, and a ``wait()`` that finds zero returns without yielding, so it returns
before any task has run its ``add`` (section 2, on every backend). ``Group`` has no
counter to misplace. The task
group's block end is the ``Wait`` of its own tasks, so a WaitGroup is for work
that is not one block's tasks -- like the closer below, which waits for the
senders while the consumer ranges in the same group.

Run: ``python examples/waitgroup.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
import time

import anyio

from asyncgo import Chan, Group, SendChan
from asyncgo.sync import WaitGroup


async def short_task(wid: int, wg: WaitGroup, done: list[int]) -> None:
    try:
        await anyio.sleep(0.01)  # 模拟短任务
        done.append(wid)
    finally:
        wg.done()  # defer wg.Done(): also when the task fails or is cancelled


async def add_inside(wid: int, wg: WaitGroup, done: list[int]) -> None:
    wg.add(1)  # BUG (seed 004 §2.4): too late, wait() has already seen zero
    try:
        await anyio.sleep(0.01)
        done.append(wid)
    finally:
        wg.done()


async def producer(pid: int, out: SendChan[str], wg: WaitGroup) -> None:
    try:
        for i in range(3):
            await out.send(f"p{pid}-{i}")
    finally:
        wg.done()


async def closer(out: SendChan[str], wg: WaitGroup) -> None:
    await wg.wait()  # every producer is done...
    out.close()  # ...so exactly one close, after the last send


async def main() -> None:
    # 1. A thousand tasks, one WaitGroup.
    wg = WaitGroup()
    done: list[int] = []
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(1000):
            wg.add(1)  # before starting the task, never inside it
            tg.start_soon(short_task, i, wg, done)
        await wg.wait()  # wg.Wait()
        assert len(done) == 1000, "wait() returned before every task was done"
    print(f"1000 tasks of 10 ms: all done in {time.perf_counter() - t0:.2f} s")

    # The same without a WaitGroup: the block's end waits for its tasks.
    done.clear()

    async def plain_task(wid: int) -> None:
        await anyio.sleep(0.01)
        done.append(wid)

    async with anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(plain_task, i)
    assert len(done) == 1000  # leaving the block means every task has ended

    # 2. Misuse: add() inside the task. start_soon() only schedules the tasks; wait()
    # runs first, sees a zero counter and returns before any task has even started.
    wg = WaitGroup()
    done.clear()
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(add_inside, i, wg, done)
        await wg.wait()
        print(f"add() inside the task: wait() returned with {len(done)} of 3 done")
        assert done == [], "expected the bug: wait() returning before the work"
    assert len(done) == 3  # only the end of the block waited for them
    # The fix: add(1) before start_soon, as in section 1. Or no counter at all:
    # Group (errgroup) counts each task as it starts it, and its block's end waits.
    done.clear()
    async with Group() as g:
        for i in range(3):
            await g.go(plain_task, i)
    assert sorted(done) == [0, 1, 2]

    # 3. Misuse: Done without Add.
    wg = WaitGroup()
    try:
        wg.done()
    except ValueError as e:
        print("done() without add():", e)
    else:
        raise AssertionError("a negative counter must raise")

    # 4. Three producers, one channel, closed once after all of them.
    out = Chan[str](2)
    wg = WaitGroup()
    async with anyio.create_task_group() as tg:
        for pid in range(3):
            wg.add(1)
            tg.start_soon(producer, pid, out.send_only(), wg)
        tg.start_soon(closer, out.send_only(), wg)
        received = [v async for v in out]  # ends when the closer closes
    print(f"3 producers -> {len(received)} values, channel closed once")
    assert sorted(received) == sorted(f"p{p}-{i}" for p in range(3) for i in range(3))
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

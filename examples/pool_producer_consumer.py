"""Seed 001 "生产者-消费者模型的健壮性设计": a bounded queue, failures isolated, retries.

Java/Go in the seed::

    BlockingQueue<Task> queue = new ArrayBlockingQueue<>(1024);  // put() blocks when full
    // consumer failure: catch, then retry or move to an error queue

asyncgo: ``queue_size`` bounds the queue and ``submit`` waits while it is full
(flow control: a fast producer is slowed to the consumers' pace); a failing job
fails its own handle, so the producer retries it or sends it to a dead-letter list.

Run: ``python examples/pool_producer_consumer.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import JobHandle, WorkerPool

attempts: dict[int, int] = {}


async def consume(task: int) -> int:
    attempts[task] = attempts.get(task, 0) + 1
    await anyio.sleep(0.001)
    if task % 7 == 0 and attempts[task] == 1:
        raise ConnectionError(f"task {task}: transient failure")
    if task == 13:
        raise ValueError("task 13: poison message")
    return task


async def main() -> None:
    done: list[int] = []
    dead_letter: list[int] = []
    max_queued = 0
    async with WorkerPool(workers=4, queue_size=8) as pool:
        pending: list[tuple[int, JobHandle[int]]] = []
        for task in range(50):  # the producer: waits whenever 8 tasks are queued
            pending.append((task, await pool.submit(consume, task)))
            max_queued = max(max_queued, pool.stats().queued)
        while pending:
            retry = []
            for task, h in pending:
                try:
                    done.append(await h)
                except ConnectionError:
                    retry.append((task, await pool.submit(consume, task)))  # retry once
                except ValueError:
                    dead_letter.append(task)  # give up: error queue
            pending = retry
    print(f"done {len(done)}, dead letters {dead_letter}, max queued {max_queued}")
    assert sorted(done + dead_letter) == list(range(50))
    assert dead_letter == [13]
    assert max_queued <= 8
    print("ok:", pool.stats())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)

"""Seed 000 §3, 惰性生成器模式 (lazy generator): values on demand, stopped by ctx.

Go (the seed: a closure that makes the next value when called)::

    func generator() func() (int, bool) {
        count := 0
        return func() (int, bool) {
            if count < 5 {
                count++
                return count, true
            }
            return 0, false // 结束标志
        }
    }

Go (the same as a goroutine: an unbuffered channel makes it lazy, ``done`` stops it)::

    func gen(ctx context.Context) <-chan int {
        out := make(chan int)
        go func() {
            defer close(out)
            for n := 1; ; n++ {
                select {
                case out <- n:     // blocks until the consumer asks
                case <-ctx.Done():
                    return         // no leaked goroutine
                }
            }
        }()
        return out
    }

asyncgo, three ways:

1. the closure as written (Python closures work the same; ``nonlocal count``);
2. the goroutine version: a task sending on an unbuffered ``Chan`` in a
   ``select`` with ``ctx.done()``; it is never more than one value ahead of the
   consumer, and cancelling the ctx ends it (the task group's block waits until
   it has -- no leak possible);
3. an async generator: lazy by construction and needs no task and no channel;
   ``aclose()`` (or leaving ``async with aclosing(...)``) stops it and runs its
   ``finally``. As a pipeline source it is ``examples/pipeline_generator.py``.

Run: ``python examples/lazy_generator.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

import anyio

from asyncgo import Chan, Context, SendChan, background, recv, select, send, with_cancel


def generator() -> Callable[[], tuple[int, bool]]:
    count = 0

    def next_value() -> tuple[int, bool]:
        nonlocal count
        if count < 5:
            count += 1
            return count, True
        return 0, False  # 结束标志

    return next_value


async def gen(ctx: Context, out: SendChan[int], made: list[int]) -> None:
    try:
        n = 1
        while True:
            made.append(n)  # the value exists only once the consumer can take it next
            r = await select(send(out, n), recv(ctx.done()))
            if r.index == 1:
                return  # ctx done: stop
            n += 1
    finally:
        out.close()  # defer close(out)


async def naturals(log: list[str]) -> AsyncGenerator[int, None]:
    n = 0
    try:
        while True:
            n += 1
            log.append(f"made {n}")
            yield n
    finally:
        log.append("closed")


async def main() -> None:
    # 1. The seed's closure.
    next_value = generator()
    values = []
    while True:
        v, ok = next_value()
        if not ok:
            break
        values.append(v)
    print("closure:", values)
    assert values == [1, 2, 3, 4, 5]

    # 2. A generator task on an unbuffered channel, stopped by its ctx.
    ctx, cancel = with_cancel(background())
    out = Chan[int]()  # unbuffered: each send waits for the consumer
    made: list[int] = []
    taken = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(gen, ctx, out.send_only(), made)
        for _ in range(5):
            taken.append(await out.recv())
            await anyio.sleep(0.001)  # a slow consumer: the generator waits for it
        cancel()  # 不再需要: stop the generator
    # the block has waited for the generator task to end
    print(f"goroutine generator: took {taken}, it made {len(made)} values")
    assert taken == [1, 2, 3, 4, 5]
    assert len(made) <= len(taken) + 1, "lazy: at most one value ahead"
    assert out.closed and [v async for v in out] == []

    # 3. An async generator: no task; stopped by aclose(), its finally runs.
    log: list[str] = []
    async with aclosing(naturals(log)) as numbers:
        async for n in numbers:
            if n == 3:
                break
    print("async generator:", log)
    assert log == ["made 1", "made 2", "made 3", "closed"]
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

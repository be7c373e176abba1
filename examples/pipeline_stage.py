"""Seed 000 §2.1, 管道模式 (pipeline): a stage that doubles every number.

Go::

    func stage(in <-chan int) <-chan int {
        out := make(chan int)
        go func() {
            for n := range in {
                out <- n * 2 // 处理逻辑：数据翻倍
            }
            close(out) // 安全关闭输出通道
        }()
        return out
    }

asyncgo: the stage is a plain async generator function. The pipeline runner starts
its goroutine (a task), makes its output channel and closes it when the stage ends,
so the stage is only the loop. Stages chain with ``|``, like ``stage(stage(in))``.

Run: ``python examples/pipeline_stage.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import anyio

from asyncgo import Chan, pipeline


async def stage(numbers: AsyncIterator[int]) -> AsyncIterator[int]:
    async for n in numbers:  # for n := range in
        yield n * 2  # out <- n * 2


async def main(quick: bool = False) -> None:
    # Chained stages, like stage(stage(gen(1, 2, 3, 4, 5))).
    out = await (pipeline(range(1, 6)) | stage | stage).collect()
    print("stage(stage(1..5)) =", out)
    assert out == [4, 8, 12, 16, 20]

    # A channel as the input, exactly like `in <-chan int`: whoever sends on it
    # closes it (the pipeline never closes a channel it only reads).
    ch = Chan[int](4)

    async def produce() -> None:
        for n in range(1, 6):
            await ch.send(n)
        ch.close()

    got = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        async with (pipeline(ch) | stage).stream() as doubled:
            async for n in doubled:  # for n := range stage(in)
                print("doubled", n)
                got.append(n)
    assert got == [2, 4, 6, 8, 10]
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

"""Seed 003 §4.2, 定时循环启动协程: a ticker starts a job per tick; panics are recovered.

Go::

    ticker := time.NewTicker(5 * time.Second)
    defer ticker.Stop()
    for {
        select {
        case <-ticker.C:
            go func() {
                defer func() {
                    if r := recover(); r != nil {
                        log.Println("panic recovered:", r)
                    }
                }()
                // 执行业务逻辑
            }()
        }
    }

The seed's advice: ``defer ticker.Stop()`` so the ticker is released, ``recover``
so one job's panic does not take the service down, and a context to end the loop
(its loop has no way out).

asyncgo: ``with Ticker(seconds) as ticker:`` is ``NewTicker`` + ``defer
ticker.Stop()``; the loop selects on ``ticker.c`` and ``ctx.done()``, so it
ends; each job is started in a task group (``go func()``) and wrapped in
``try``/``except`` (``recover``). Leaving the task group waits for the jobs
still running: none is cut off or left behind when the loop stops. A slow
reader gets at most one pending tick, as in Go. The seed's 5 s are 5 ms here,
and the demo cancels its ctx after 8 ticks.

Run: ``python examples/periodic_tasks.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import anyio

from asyncgo import Context, background, recv, select, with_timeout
from asyncgo.time import Ticker

CancelFunc = Callable[[], None]


async def job(n: int, done: list[int], recovered: list[str]) -> None:
    try:
        await anyio.sleep(0.002)  # 执行业务逻辑
        if n == 3:
            raise RuntimeError(f"job {n}: nil map write")  # Go: a panic
        done.append(n)
    except Exception as r:  # defer func() { if r := recover(); r != nil { ... } }()
        recovered.append(f"panic recovered: {r}")


async def every(
    ctx: Context, period: float, done: list[int], recovered: list[str], cancel: CancelFunc
) -> int:
    ticks = 0
    async with anyio.create_task_group() as jobs:
        with Ticker(period) as ticker:  # defer ticker.Stop()
            while True:
                r = await select(recv(ticker.c), recv(ctx.done()))
                if r.index == 1:
                    break  # ctx done: stop starting jobs
                ticks += 1
                jobs.start_soon(job, ticks, done, recovered)  # go func() {...}()
                if ticks == 8:
                    cancel()  # enough for the demo: the next select sees ctx.done()
    return ticks  # the task group has waited for the jobs still running


async def main() -> None:
    done: list[int] = []
    recovered: list[str] = []
    ctx, cancel = with_timeout(background(), 5.0)  # at most 5 s, and cancelled at tick 8
    ticks = await every(ctx, 0.005, done, recovered, cancel)
    print(f"{ticks} ticks, {len(done)} jobs done, recovered: {recovered}")
    assert ticks == 8 and ctx.err() is not None
    assert sorted(done) == [1, 2, 4, 5, 6, 7, 8]
    assert recovered == ["panic recovered: job 3: nil map write"]
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

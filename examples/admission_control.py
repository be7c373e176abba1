"""Seed 001 §3.2, 限流器与信号量模式: a window limiter, then a semaphore -- 429 or busy.

The seed (its limiter is Python already)::

    class RateLimiter:
        def __init__(self, max_requests: int, window_size: int):
            self.max_requests = max_requests  # 窗口内最大请求数
            self.window_size = window_size    # 时间窗口大小(秒)
            self.requests = []                # 记录请求时间戳
        def allow(self) -> bool:
            now = time()
            self.requests = [t for t in self.requests if now - t < self.window_size]
            if len(self.requests) < self.max_requests:
                self.requests.append(now)
                return True
            return False

    # 流控协同机制:
    # 客户端请求 -> 限流器检查 -(拒绝)-> 返回429状态码
    #                  |(通过)-> 获取信号量 -(失败)-> 返回资源繁忙
    #                                 |(成功)-> 执行业务逻辑

and it warns that a fixed window "在窗口切换时可能出现瞬时双倍流量冲击".

asyncgo: ``rate.SlidingWindow(limit, window)`` is that limiter (it keeps the
times of the last *limit* requests, the seed's list without the rebuild on every
call) on the event loop's clock; ``allow()`` never waits, ``await wait(ctx=...)``
would. The semaphore is ``asyncgo.sync.Semaphore`` and
``try_acquire`` is "获取信号量, 失败则返回资源繁忙". The double burst at a
window switch is shown with the pure ``allow_at(t)`` arithmetic: a fixed-window
counter lets 2x the quota through in an instant, the sliding window does not.

Run: ``python examples/admission_control.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from collections import Counter

import anyio

from asyncgo import rate
from asyncgo.sync import Semaphore

QUOTA = 20  # requests per window
WINDOW = 0.05  # seconds (the seed's window_size)
CONCURRENCY = 5  # requests served at once (the semaphore)


class FixedWindow:
    """The counter reset at each window start, to show its edge burst."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.start, self.count = 0.0, 0

    def allow_at(self, t: float) -> bool:
        start = t - t % self.window
        if start != self.start:
            self.start, self.count = start, 0
        if self.count < self.limit:
            self.count += 1
            return True
        return False


async def handle(limiter: rate.SlidingWindow, sem: Semaphore, statuses: Counter[int]) -> None:
    if not limiter.allow():  # 限流器检查
        statuses[429] += 1  # Too Many Requests
        return
    if not sem.try_acquire():  # 获取信号量
        statuses[503] += 1  # 资源繁忙
        return
    try:
        await anyio.sleep(0.01)  # 执行业务逻辑
        statuses[200] += 1
    finally:
        sem.release()


async def main() -> None:
    limiter = rate.SlidingWindow(QUOTA, WINDOW)
    sem = Semaphore(CONCURRENCY)

    # A burst of 30 at once: 20 pass the limiter, 5 of those get a slot.
    statuses: Counter[int] = Counter()
    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(handle, limiter, sem, statuses)
    print("burst of 30:", dict(sorted(statuses.items())))
    assert statuses == Counter({429: 10, 503: 15, 200: 5})

    # Spread out (one every 4 ms, 25 per 100 ms): within quota and concurrency.
    await anyio.sleep(WINDOW)  # let the burst leave the window
    statuses = Counter()
    async with anyio.create_task_group() as tg:
        for _ in range(25):
            tg.start_soon(handle, limiter, sem, statuses)
            await anyio.sleep(0.004)
    print("25 spread over 100 ms:", dict(sorted(statuses.items())))
    assert statuses[200] >= 20 and statuses[429] <= 5

    # The edge burst: 20 requests just before a window switch, 20 just after.
    times = [0.049] * QUOTA + [0.050] * QUOTA
    fixed = FixedWindow(QUOTA, WINDOW)
    sliding = rate.SlidingWindow(QUOTA, WINDOW)
    through_fixed = sum(fixed.allow_at(t) for t in times)
    through_sliding = sum(sliding.allow_at(t) for t in times)
    print(
        f"40 requests within 1 ms of a window switch: fixed window lets {through_fixed} "
        f"through, sliding window {through_sliding} (quota {QUOTA} per {WINDOW * 1000:.0f} ms)"
    )
    assert through_fixed == 2 * QUOTA and through_sliding == QUOTA
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

"""Seed 002 §6, 令牌桶 (token bucket): the seed's Ticker-fed channel, and rate.Limiter.

Go (the seed: a buffered channel as the bucket, refilled by a Ticker goroutine)::

    func NewRateLimiter(rate int) *RateLimiter {
        ctx, cancel := context.WithCancel(context.Background())
        rl := &RateLimiter{rate: rate, bucket: make(chan struct{}, rate), ctx: ctx, cancel: cancel}
        go rl.refill()
        return rl
    }

    func (rl *RateLimiter) refill() {
        ticker := time.NewTicker(time.Second / time.Duration(rl.rate))
        defer ticker.Stop()
        for {
            select {
            case <-rl.ctx.Done():
                return
            case <-ticker.C:
                select {
                case rl.bucket <- struct{}{}:
                default:
                }
            }
        }
    }

    func (rl *RateLimiter) Allow() bool {
        select { case <-rl.bucket: return true; default: return false }
    }
    func (rl *RateLimiter) Wait(ctx context.Context) error {
        select {
        case <-ctx.Done():
            return ctx.Err()
        case <-rl.bucket:
            return nil
        }
    }

    limiter := NewRateLimiter(5)  // 每秒5个请求
    defer limiter.Stop()
    for i := 0; i < 20; i++ {
        limiter.Wait(context.Background())
        fmt.Printf("Request %d sent\\n", i)
    }

asyncgo, first the seed as written (``TickerBucket``): the bucket is a
``Chan[None](rate)``, the refill goroutine a task that owns a ``Ticker``; the
limiter is entered with ``async with`` (the task cannot outlive it, and leaving is
``Stop()``). Then ``asyncgo.rate.Limiter`` (Go's ``x/time/rate``), which needs no
task at all: tokens are computed from the clock when asked, an idle limiter costs
nothing, and ``wait`` takes a ctx and fails at once if the deadline comes first.
Two differences to know: the seed's bucket starts *empty* (the first request
waits a tick) and x/time/rate's starts *full* (``burst`` requests pass at once);
a ticker goroutine per limiter is a task per client, a ``Limiter`` is a small
object. The seed's 5/s is 200/s here.

Run: ``python examples/token_bucket.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from asyncgo import (
    Chan,
    Context,
    DeadlineExceeded,
    WouldBlock,
    background,
    rate,
    recv,
    select,
    with_timeout,
)
from asyncgo.time import Ticker

RATE = 200  # tokens per second (the seed's 5)
REQUESTS = 20


class TickerBucket:
    """The seed's RateLimiter: a channel bucket refilled by a ticker task."""

    def __init__(self, rate_per_s: int) -> None:
        self.rate = rate_per_s
        self.bucket = Chan[None](rate_per_s)
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> Self:  # NewRateLimiter: start the refill goroutine
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._refill)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:  # Stop(): cancel the refill goroutine and wait for it
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(et, e, tb)

    async def _refill(self) -> None:
        with Ticker(1 / self.rate) as ticker:  # defer ticker.Stop()
            async for _ in ticker.c:  # case <-ticker.C: (cancelled by Stop)
                try:
                    self.bucket.send_nowait(None)  # select { case bucket <- struct{}{}: default: }
                except WouldBlock:
                    pass  # the bucket is full: this token is dropped

    def allow(self) -> bool:
        try:
            self.bucket.recv_nowait()
            return True
        except WouldBlock:
            return False

    async def wait(self, ctx: Context) -> None:
        r = await select(recv(ctx.done()), recv(self.bucket))
        if r.index == 0:
            err = ctx.err()
            assert err is not None
            raise err


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any interval of *window* seconds."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def main() -> None:
    # 1. The seed, as written: 20 requests at RATE/s, the bucket starting empty.
    async with TickerBucket(RATE) as limiter:
        assert not limiter.allow()  # empty at first: no token yet
        t0 = anyio.current_time()
        sent = []
        for _ in range(REQUESTS):
            await limiter.wait(background())
            sent.append(anyio.current_time() - t0)
    took = sent[-1]
    ideal = REQUESTS / RATE * 1000
    print(f"ticker bucket: {REQUESTS} requests in {took * 1000:.0f} ms (ideal {ideal:.0f})")
    # one token per tick: the 20th cannot come before 20 ticks (5% slack for timer rounding)
    assert took >= (REQUESTS - 1) / RATE * 0.95, took

    # 2. rate.Limiter: no task; starts full, so `burst` requests pass at once.
    lim = rate.Limiter(RATE, burst=5)
    t0 = anyio.current_time()
    times = []
    for _ in range(REQUESTS):
        await lim.wait()  # Go: lim.Wait(ctx)
        times.append(anyio.current_time() - t0)
    took = times[-1]
    print(
        f"rate.Limiter({RATE}, burst=5): {REQUESTS} requests in {took * 1000:.0f} ms "
        f"(ideal {(REQUESTS - 5) / RATE * 1000:.0f}); first five at "
        f"{[round(t * 1000, 1) for t in times[:5]]} ms"
    )
    # the token bucket's guarantee: at most burst + rate * W grants in any window of W
    # seconds (+1 here: we record when each wait returned, a little after its grant)
    for window in (0.01, 0.05):
        assert max_in_window(times, window) <= 5 + RATE * window + 1, window
    assert took >= (REQUESTS - 5) / RATE * 0.95

    # Allow: shed load instead of waiting (a slow bucket, so no token can refill
    # between the two calls however loaded the machine is).
    shed = rate.Limiter(1, burst=1)
    assert shed.allow()  # the one token
    assert not shed.allow()  # empty: reject instead of queueing
    # Wait with a deadline it cannot meet: fails at once, taking nothing.
    with with_timeout(background(), 0.001) as ctx:
        try:
            await lim.wait(5, ctx)
        except DeadlineExceeded as e:
            print("wait(5) under a 1 ms deadline:", e)
        else:
            raise AssertionError("should have failed at once")
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

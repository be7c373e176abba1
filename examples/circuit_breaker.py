"""Seed 001 ch.5, 故障隔离与熔断机制: a circuit breaker with a fallback, plus retries.

The seed (Java, Resilience4j/Hystrix)::

    // circuitBreaker.requestVolumeThreshold   10   滑动窗口内最小请求数
    // circuitBreaker.failureRateThreshold     50   失败率阈值(%)
    // circuitBreaker.waitDurationInOpenState  5s   熔断后等待恢复时间
    // 当下游依赖响应超时超过阈值，自动切换至降级逻辑，返回缓存数据或默认值，避免雪崩效应。

asyncgo: ``asyncgo.resilience.CircuitBreaker`` (top level too) in rate mode,
the seed's model: ``failure_rate=0.5`` (failureRateThreshold 50) and
``min_calls=10`` (requestVolumeThreshold 10) over the calls completed within
``window`` seconds -- 10 s, Hystrix's rolling window. (Without ``failure_rate``
it counts failures instead, gobreaker's model: ``failure_threshold`` of them
within ``window`` open it.) While open, calls fail at once with
``CircuitOpen`` (no call reaches the dependency): catch it and return the
fallback -- the cached value. After ``recovery_time`` one probe goes through;
its success closes the breaker. ``retry`` (exponential backoff with full
jitter, never sleeping past the ctx deadline) goes outside the breaker, so an
open breaker ends the retries at once. The seed's 5 s are 100 ms here.

Run: ``python examples/circuit_breaker.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse

import anyio

from asyncgo import CircuitBreaker, CircuitOpen, background, retry, with_timeout
from asyncgo.resilience import Backoff, State


class Inventory:
    """A downstream service that can be down."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def stock(self, sku: str) -> int:
        self.calls += 1
        await anyio.sleep(0.001)
        if self.down:
            raise ConnectionError("inventory: timeout")
        return 42


class Shop:
    def __init__(self, inventory: Inventory, breaker: CircuitBreaker) -> None:
        self.inventory, self.breaker = inventory, breaker
        self.cache: dict[str, int] = {}

    async def stock(self, sku: str) -> tuple[int, str]:
        """The stock level and where it came from: the service, or the fallback."""
        try:
            n = await self.breaker.call(self.inventory.stock, sku)
        except (ConnectionError, CircuitOpen) as e:
            source = "fallback (breaker open)" if isinstance(e, CircuitOpen) else "fallback"
            return self.cache.get(sku, 0), source  # 降级: the cached value, or a default
        self.cache[sku] = n
        return n, "service"


async def main() -> None:
    transitions: list[str] = []
    breaker = CircuitBreaker(
        failure_rate=0.5,  # the seed's failureRateThreshold = 50 (%)
        min_calls=10,  # the seed's requestVolumeThreshold = 10
        window=10.0,
        recovery_time=0.1,  # the seed's waitDurationInOpenState = 5s
        failure_on=ConnectionError,
        name="inventory",
        on_state_change=lambda old, new: transitions.append(f"{old.value}->{new.value}"),
    )
    inventory = Inventory()
    shop = Shop(inventory, breaker)

    assert await shop.stock("A-1") == (42, "service")  # warms the cache

    inventory.down = True
    sources = [(await shop.stock("A-1"))[1] for _ in range(20)]
    print(
        "while the service is down:",
        sources.count("fallback"),
        "failed calls,",
        sources.count("fallback (breaker open)"),
        "short-circuited",
    )
    # With the warm-up success, nine failures make the 10 calls the rate needs (90 % >= 50 %)...
    assert sources[:9] == ["fallback"] * 9
    assert sources[9:] == ["fallback (breaker open)"] * 11  # ...then no call goes through
    assert inventory.calls == 1 + 9 and breaker.state is State.OPEN

    inventory.down = False
    assert (await shop.stock("A-1"))[1].startswith("fallback")  # still open
    await anyio.sleep(0.12)  # recovery time: half-open, one probe
    assert await shop.stock("A-1") == (42, "service")
    print("transitions:", transitions, "| stats:", breaker.stats())
    assert transitions == ["closed->open", "open->half_open", "half_open->closed"]

    # retry outside the breaker: a flaky call succeeds on the 3rd attempt...
    attempts = 0

    async def flaky(sku: str) -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("inventory: connection reset")
        return 7

    with with_timeout(background(), 1.0) as ctx:
        n = await retry(
            breaker.call,
            flaky,
            "B-2",
            attempts=5,
            backoff=Backoff(initial=0.001),
            retry_on=ConnectionError,
            ctx=ctx,
        )
    print(f"retry: {n} after {attempts} attempts")
    assert n == 7 and attempts == 3

    # ...and an open breaker stops the retries at once (CircuitOpen is not retried).
    breaker.reset()
    inventory.down = True
    for _ in range(10):  # 10 failures in 10 calls
        await shop.stock("A-1")
    before = inventory.calls
    try:
        await retry(breaker.call, inventory.stock, "A-1", attempts=5, retry_on=ConnectionError)
    except CircuitOpen as e:
        print("retry against an open breaker:", e)
    else:
        raise AssertionError("an open breaker should fail fast")
    assert inventory.calls == before
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

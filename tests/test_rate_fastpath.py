"""`Limiter.allow()` / `wait()` take their tokens on a fast path when they are in the
bucket (asyncio and uvloop: the loop of the last clock reading, a finite limit): it
must decide, and leave the bucket, exactly as Go's ``AllowN(now, n)`` -- which
`allow_at` computes -- on every backend.

Each loop here reads a clock the test moves by hand (a subclass of asyncio's and of
uvloop's loop whose ``time()`` is the test's; trio's `MockClock`), so a limiter driven
through ``allow()`` / ``wait()`` and a twin driven through ``allow_at(t)`` at the same
instants can be compared exactly, over seeded random sequences.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import anyio
import pytest

from asyncgo import rate

pytestmark = pytest.mark.anyio


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0


def _manual_loop(base: type) -> tuple[type, _Clock]:
    clock = _Clock()

    class Loop(base):  # type: ignore[misc]
        def time(self) -> float:
            return clock.now

    return Loop, clock


@pytest.fixture(params=["asyncio", "uvloop", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    if request.param == "trio":
        import trio.testing

        return "trio", {"clock": trio.testing.MockClock()}
    if request.param == "uvloop":
        import uvloop

        loop_cls, clock = _manual_loop(uvloop.Loop)
    else:
        loop_cls, clock = _manual_loop(asyncio.SelectorEventLoop)
    request.node.manual_clock = clock
    return "asyncio", {"loop_factory": loop_cls}


@pytest.fixture
def advance(anyio_backend: object, request: pytest.FixtureRequest) -> Callable[[float], None]:
    clock = getattr(request.node, "manual_clock", None)
    if clock is None:  # trio's MockClock
        mock = anyio_backend[1]["clock"]  # type: ignore[index]
        return mock.jump  # type: ignore[no-any-return]

    def move(dt: float) -> None:
        clock.now += dt

    return move


@pytest.mark.parametrize("seed", range(12))
async def test_allow_and_wait_decide_as_allow_at(
    seed: int, advance: Callable[[float], None]
) -> None:
    rnd = random.Random(seed)
    limit = rnd.choice([1.0, 10.0, 333.3, 1e6])
    burst = rnd.choice([1, 3, 10])
    lim = rate.Limiter(limit, burst)
    twin = rate.Limiter(limit, burst)
    granted = 0
    for step in range(400):
        r = rnd.random()
        advance(rnd.choice([0.0, 1e-9, 0.3 / limit, 1.0 / limit, rnd.random() * 2 / limit]))
        t = anyio.current_time()
        n = rnd.choice([0, 1, 1, 1, 2, burst])
        if r < 0.6:
            got = lim.allow(n)
            assert got == twin.allow_at(t, n), (seed, step)
            granted += got
        elif r < 0.9:
            if twin.tokens_at(t) >= n:  # at once: the clock stands still meanwhile
                await lim.wait(n)
                assert twin.allow_at(t, n)
                granted += 1
        elif r < 0.95:
            new = rnd.choice([limit, limit / 2, 0.0, rate.INF])
            lim.set_limit(new)
            twin.set_limit_at(t, new)
        else:
            lim.set_burst(burst)
            twin.set_burst_at(t, burst)
        assert lim.tokens() == twin.tokens_at(t), (seed, step)
    assert granted > 0


async def test_a_grant_at_once_stays_a_cancel_point() -> None:
    """The fast path still raises a pending cancellation and keeps no token."""
    lim = rate.Limiter(1.0, 1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await lim.wait()
    assert scope.cancelled_caught
    assert lim.allow()  # the token went back

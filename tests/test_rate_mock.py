"""asyncgo.rate on trio's virtual clock: exact times, no real waiting."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from asyncgo import background, rate, with_cancel, with_timeout
from asyncgo._exceptions import Canceled, DeadlineExceeded

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-6)


async def test_burst_then_steady_rate() -> None:
    lim = rate.Limiter(10, 3)
    t0 = trio.current_time()
    times = []
    for _ in range(8):
        await lim.wait()
        times.append(trio.current_time() - t0)
    assert times == [approx(x) for x in (0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5)]


async def test_ten_waiters_share_the_rate() -> None:
    lim = rate.Limiter(100, 1)
    t0 = trio.current_time()
    times: list[float] = []

    async def w() -> None:
        await lim.wait()
        times.append(trio.current_time() - t0)

    async with trio.open_nursery() as n:
        for _ in range(10):
            n.start_soon(w)
    assert sorted(times) == [approx(i * 0.01) for i in range(10)]


async def test_wait_fails_at_once_before_deadline() -> None:
    lim = rate.Limiter(1, 1)
    assert lim.allow()
    ctx, cancel = with_timeout(background(), 0.999)
    t0 = trio.current_time()
    with pytest.raises(DeadlineExceeded, match="would exceed context deadline"):
        await lim.wait(1, ctx)
    assert trio.current_time() == t0  # no time passed
    ctx2, cancel2 = with_timeout(background(), 1.5)
    await lim.wait(1, ctx2)
    assert trio.current_time() - t0 == approx(1.0)
    cancel()
    cancel2()


async def test_cancel_while_waiting_gives_tokens_back() -> None:
    lim = rate.Limiter(1, 1)
    assert lim.allow()
    ctx, cancel = with_cancel(background())
    async with trio.open_nursery() as n:

        async def waiter() -> None:
            with pytest.raises(Canceled):
                await lim.wait(1, ctx)

        n.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(0.25)
        assert lim.tokens() == approx(-0.75)
        cancel()
    assert lim.tokens() == approx(0.25)  # the booked token is back
    t0 = trio.current_time()
    await lim.wait()
    assert trio.current_time() - t0 == approx(0.75)


async def test_set_limit_mid_stream() -> None:
    lim = rate.Limiter(10, 1)
    t0 = trio.current_time()
    await lim.wait()
    await lim.wait()
    assert trio.current_time() - t0 == approx(0.1)
    lim.set_limit(2)
    await lim.wait()
    assert trio.current_time() - t0 == approx(0.6)
    lim.set_limit(rate.INF)
    for _ in range(100):
        await lim.wait()
    assert trio.current_time() - t0 == approx(0.6)


async def test_reservation_delay_on_the_clock() -> None:
    lim = rate.Limiter(4, 2)
    assert lim.reserve(2).delay() == 0
    r = lim.reserve(1)
    assert r.delay() == approx(0.25)
    await trio.sleep(0.1)
    assert r.delay() == approx(0.15)
    r.cancel()
    assert lim.tokens() == approx(0.4)


async def test_idle_limiter_refills_without_a_task() -> None:
    lim = rate.Limiter(1, 5)
    assert lim.allow(5)
    await trio.sleep(3600)  # an hour, instantly
    assert lim.tokens() == 5


async def test_sliding_window_wait_exact() -> None:
    w = rate.SlidingWindow(2, 1.0)
    t0 = trio.current_time()
    times = []
    for _ in range(5):
        await w.wait()
        times.append(trio.current_time() - t0)
    assert times == [approx(x) for x in (0, 0, 1, 1, 2)]


async def test_sliding_window_cancel_withdraws_booking() -> None:
    w = rate.SlidingWindow(1, 1.0)
    assert w.allow()
    with trio.move_on_after(0.5):
        await w.wait()
    await trio.sleep(0.5)
    assert w.allow()  # the withdrawn booking at t=1 does not count


@pytest.mark.parametrize("limit", [1, 3])
@pytest.mark.parametrize("how", ["cancelled", "ctx"])
async def test_sliding_window_withdrawn_booking_keeps_the_real_events(limit: int, how: str) -> None:
    # The booking used to push the oldest real event out of a log capped at `limit`;
    # withdrawing it could not bring it back, and the window let limit+1 events in.
    w = rate.SlidingWindow(limit, 1.0)
    t0 = trio.current_time()
    for _ in range(limit):
        assert w.allow()
    if how == "cancelled":
        with trio.move_on_after(0.2):
            await w.wait()  # booked for t0 + 1, withdrawn at t0 + 0.2
    else:
        ctx, cancel = with_timeout(background(), 1.5)
        async with trio.open_nursery() as nursery:

            async def waiter() -> None:
                with pytest.raises(Canceled):
                    await w.wait(1, ctx)

            nursery.start_soon(waiter)
            await trio.sleep(0.2)
            cancel()
    assert w.count_at(trio.current_time()) == limit
    allowed = []
    while trio.current_time() - t0 < 0.99:
        if w.allow():
            allowed.append(trio.current_time() - t0)
        await trio.sleep(0.1)
    assert allowed == []  # every slot of the first second was taken at t0
    await trio.sleep(0.02)
    assert w.allow()  # and the window slides on


async def test_wait_after_set_nonzero_after_zero() -> None:
    """Go: TestSetAfterZeroLimit, exact on the virtual clock."""
    lim = rate.Limiter(0, 1)
    assert lim.allow()
    assert not lim.allow()
    lim.set_limit(10)
    t0 = trio.current_time()
    await lim.wait()
    assert trio.current_time() - t0 == approx(0.1)


async def test_zero_limit_wait_blocks_until_cancelled() -> None:
    """As Go's WaitN: past the bucket, a zero limit books a token at INF_DURATION."""
    lim = rate.Limiter(0, 1)
    await lim.wait()
    ctx, cancel = with_cancel(background())
    failed: list[BaseException] = []

    async def waiter() -> None:
        try:
            await lim.wait(1, ctx)
        except Canceled as e:
            failed.append(e)

    async with trio.open_nursery() as n:
        n.start_soon(waiter)
        await trio.sleep(3600)
        assert lim.tokens() == -1  # booked
        cancel()
    assert len(failed) == 1
    assert lim.tokens() == 0  # given back
    lim.set_limit(10)
    t0 = trio.current_time()
    await lim.wait()
    assert trio.current_time() - t0 == approx(0.1)


# -- found by a black-box audit (2026-12-05) ----------------------------------------


async def test_sliding_window_wait_cancelled_as_its_slot_comes_withdraws_it() -> None:
    w = rate.SlidingWindow(1, 1.0)
    assert w.allow()
    with trio.move_on_after(1.0) as scope:  # cancelled at the very time the slot comes
        await w.wait()
    assert scope.cancelled_caught
    assert w.count_at(trio.current_time()) == 0  # the caller did not act: not counted
    assert w.allow()


@pytest.mark.parametrize("n", [1, 2, 3])
async def test_tokens_due_exactly_at_the_deadline_on_a_clock_far_from_zero(n: int) -> None:
    # (t + 0.3) - t is 0.29999999998 at t = 12345.678: the wait must not be refused.
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    clock.jump(12345.678)
    lim = rate.Limiter(10, 3)
    assert lim.allow(3)
    ctx, cancel = with_timeout(background(), n / 10)
    t0 = trio.current_time()
    try:
        await lim.wait(n, ctx)
    finally:
        cancel()
    assert trio.current_time() - t0 == approx(n / 10)


async def test_a_very_high_rate_still_waits_for_its_tokens() -> None:
    # A shortfall under a nanosecond is no wait (Go), but the tokens stay owed: written
    # off, 1000 waits of one token at 2e9/s finished with the clock standing still.
    lim = rate.Limiter(2e9, 1)
    t0 = trio.current_time()
    for _ in range(1000):
        await lim.wait()
    assert trio.current_time() - t0 >= 998 / 2e9


async def test_tokens_due_at_the_deadline_despite_the_rounding_of_the_refill() -> None:
    # Drained at 1.901 s, one token back at 2.001 s counts 0.9999999999999987 (the
    # float t - last): the 3 missing were 1e-16 s past the 0.3 s deadline, refused.
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    clock.jump(1.901)
    lim = rate.Limiter(10, 4)
    await lim.wait(4)
    await trio.sleep(0.1)
    ctx, cancel = with_timeout(background(), 0.3)
    t0 = trio.current_time()
    try:
        await lim.wait(4, ctx)  # Go: waitDuration (300 ms) <= deadline - now (300 ms)
    finally:
        cancel()
    assert trio.current_time() - t0 == approx(0.3)


async def test_tokens_due_past_the_deadline_at_a_high_rate_are_refused() -> None:
    # The deadline's slack for the float clock's rounding was Go's whole nanosecond:
    # at 1e10/s that granted 100 tokens due 0.9 ns past it, 9 over burst + limit*T.
    await trio.sleep(1000)
    lim = rate.Limiter(1e10, 100)
    assert lim.allow(100)
    t0 = trio.current_time()
    ctx, cancel = with_timeout(background(), 9.1e-9)
    try:
        with pytest.raises(DeadlineExceeded, match="would exceed context deadline"):
            await lim.wait(100, ctx)
    finally:
        cancel()
    assert trio.current_time() == t0  # refused at once

"""asyncgo.rate: the token bucket's arithmetic (no event loop) and real-time behaviour.

The pure cases follow Go's golang.org/x/time/rate tests (rate_test.go): times
are offsets in seconds, as Go's t0..t9 are multiples of 100 ms.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import anyio
import pytest
from _guards import turns_of_another_task

from asyncgo import background, rate, with_cancel, with_timeout
from asyncgo._exceptions import Canceled, DeadlineExceeded
from asyncgo.rate import INF, INF_DURATION, Limiter, SlidingWindow, every

D = 0.1  # Go's d = 100 ms
T = [i * D for i in range(10)]


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-9)


# -- pure arithmetic (Go's AllowN(t, n), ReserveN(t, n), TokensAt(t)) ---------------


def test_every() -> None:
    assert every(0.1) == pytest.approx(10)
    assert every(0) == INF
    assert every(-1) == INF


def test_burst1() -> None:
    """Go: TestLimiterBurst1."""
    lim = Limiter(10, 1)
    assert lim.allow_at(T[0]) is True
    assert lim.allow_at(T[0]) is False
    assert lim.allow_at(T[0] + D / 2) is False
    assert lim.allow_at(T[1]) is True
    assert lim.allow_at(T[1]) is False
    assert lim.allow_at(T[2]) is True
    assert lim.allow_at(T[5]) is True  # idle time does not grow the bucket past 1
    assert lim.allow_at(T[5]) is False


def test_burst3_then_steady() -> None:
    """Go: TestLimiterBurst3: a full bucket of 3, then one token per 100 ms."""
    lim = Limiter(10, 3)
    assert [lim.allow_at(T[0], 2), lim.allow_at(T[0], 1), lim.allow_at(T[0], 1)] == [
        True,
        True,
        False,
    ]
    assert lim.allow_at(T[1], 2) is False
    assert lim.allow_at(T[1], 1) is True
    assert lim.allow_at(T[3], 2) is True
    assert lim.allow_at(T[9], 4) is False  # more than the burst: never
    assert lim.allow_at(T[9], 3) is True


def test_jump_backwards() -> None:
    """Go: TestLimiterJumpBackwards: a clock going back counts as no time elapsed."""
    lim = Limiter(10, 3)
    steps = [(1, True), (0, True), (0, True), (0, False), (0, False)]
    steps += [(1, True), (1, False), (1, False), (2, True), (2, False), (2, False)]
    assert [lim.allow_at(T[i]) for i, _ in steps] == [ok for _, ok in steps]


def test_tokens_at() -> None:
    lim = Limiter(10, 5)
    assert lim.tokens_at(T[0]) == 5
    assert lim.allow_at(T[0], 5)
    assert lim.tokens_at(T[0]) == approx(0)
    assert lim.tokens_at(T[3]) == approx(3)
    assert lim.tokens_at(100.0) == 5  # capped at the burst
    r = lim.reserve_at(T[0], 2)
    assert r.ok and r.delay_from(T[0]) == approx(0.2)
    assert lim.tokens_at(T[0]) == approx(-2)  # booked tokens show as a debt


def test_cancel_gives_back_once() -> None:
    # Go's CancelAt does not mark the reservation, so a second call restores the
    # tokens again (-1 -> 0 -> 2 here): asyncgo gives them back once.
    lim = Limiter(1, 2)
    assert lim.allow_at(T[0], 1)
    r = lim.reserve_at(T[0], 2)
    assert r.ok and lim.tokens_at(T[0]) == approx(-1)
    r.cancel_at(T[0])
    assert lim.tokens_at(T[0]) == approx(1)
    r.cancel_at(T[0])
    assert lim.tokens_at(T[0]) == approx(1)


def test_reservation_arithmetic() -> None:
    """Go: TestSimpleReserve / TestMix."""
    lim = Limiter(10, 2)
    rs = [lim.reserve_at(T[0], 2), lim.reserve_at(T[0], 2), lim.reserve_at(T[3], 2)]
    assert [r.ok for r in rs] == [True, True, True]
    assert rs[0].time_to_act == approx(T[0])
    assert rs[1].time_to_act == approx(T[2])
    assert rs[2].time_to_act == approx(T[4])
    assert rs[1].delay_from(T[1]) == approx(D)
    assert rs[1].delay_from(T[5]) == 0
    big = lim.reserve_at(T[3], 3)  # more than the burst
    assert not big.ok
    assert big.delay_from(T[3]) == INF_DURATION
    big.cancel_at(T[3])  # a no-op
    assert lim.reserve_at(T[3], 1).time_to_act == approx(T[4] + D)


def test_cancel_last_restores_all() -> None:
    """Go: TestCancelLast."""
    lim = Limiter(10, 2)
    assert lim.reserve_at(T[0], 2).time_to_act == approx(T[0])
    r = lim.reserve_at(T[0], 2)
    assert r.time_to_act == approx(T[2])
    r.cancel_at(T[1])  # restores 2 tokens
    assert lim.reserve_at(T[1], 2).time_to_act == approx(T[2])


def test_cancel_too_late() -> None:
    """Go: TestCancelTooLate: a reservation whose time has passed gives nothing back."""
    lim = Limiter(10, 2)
    lim.reserve_at(T[0], 2)
    r = lim.reserve_at(T[0], 2)
    r.cancel_at(T[3])
    assert lim.reserve_at(T[3], 2).time_to_act == approx(T[4])


def test_cancel_middle_keeps_later_bookings() -> None:
    """Go: TestCancel0Tokens / TestCancelMulti: tokens booked after r are not restored."""
    lim = Limiter(10, 4)
    lim.reserve_at(T[0], 4)
    r1 = lim.reserve_at(T[0], 3)
    assert r1.time_to_act == approx(T[3])
    r2 = lim.reserve_at(T[0], 2)
    assert r2.time_to_act == approx(T[5])
    r1.cancel_at(T[1])  # restores 3 - (t5 - t3) * 10 = 1 token
    # at t1: tokens were -5 + 1 (refill) + 1 (restored) = -3; 2 more -> -5 -> t1 + 0.5
    assert lim.reserve_at(T[1], 2).time_to_act == approx(T[6])


def test_cancel_middle_nothing_back() -> None:
    """Go: TestCancelMiddle."""
    lim = Limiter(10, 5)
    lim.reserve_at(T[0], 5)
    r1 = lim.reserve_at(T[0], 1)
    lim.reserve_at(T[0], 1)
    r1.cancel_at(T[0])  # 1 - (t2 - t1) * 10 = 0: nothing to restore
    assert lim.reserve_at(T[0], 1).time_to_act == approx(T[3])


def test_cancel_first() -> None:
    """Go: TestCancelFirst."""
    lim = Limiter(10, 2)
    lim.reserve_at(T[0], 2)
    r = lim.reserve_at(T[0], 2)
    r.cancel_at(T[1])
    assert lim.reserve_at(T[1], 2).time_to_act == approx(T[2])


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
@pytest.mark.parametrize("paused", [False, True])
def test_cancel_at_zero_limit_restores_all(order: tuple[int, int], paused: bool) -> None:
    """With a zero limit nothing refills, so no later reservation counted on a
    reservation's tokens: cancelling gives them all back, in either order (Go's
    CancelAt: tokensFromDuration is 0). Also for a limiter paused by set_limit(0),
    and for a reservation whose delay is infinite."""
    if paused:
        lim = Limiter(10, 4)
        lim.set_limit_at(T[0], 0)
    else:
        lim = Limiter(0, 4)
    rs = [lim.reserve_at(T[0], 2), lim.reserve_at(T[0], 2)]
    for i in order:
        rs[i].cancel_at(T[0])
    assert lim.tokens_at(T[0]) == approx(4)
    rs = [lim.reserve_at(T[0], 4), lim.reserve_at(T[0], 3)]
    assert rs[0].ok and rs[1].ok and rs[1].delay_from(T[0]) == INF_DURATION
    for i in order:
        rs[i].cancel_at(T[0])
    assert lim.tokens_at(T[0]) == approx(4)


def test_inf_allows_everything() -> None:
    lim = Limiter(INF, 0)
    assert lim.allow_at(T[0], 1000)
    r = lim.reserve_at(T[0], 10**6)
    assert r.ok and r.delay_from(T[0]) == 0
    assert lim.tokens_at(T[0]) == 0  # the burst


def test_inf_and_back_at_one_instant_adds_no_tokens() -> None:
    """Go's Inf is MaxFloat64 tokens a second: no time elapsed, no tokens added. Setting
    INF and back at the same instant used to refill the bucket (visible on a clock that
    does not move, such as trio's MockClock)."""
    lim = Limiter(10, 5)
    assert lim.allow_at(T[0], 5)
    lim.set_limit_at(T[0], INF)
    assert lim.tokens_at(T[0]) == 0
    lim.set_limit_at(T[0], 10)
    assert lim.tokens_at(T[0]) == 0
    assert not lim.allow_at(T[0], 5)
    lim.set_limit_at(T[0], INF)
    assert lim.tokens_at(T[1]) == 5  # any time at all under INF fills the bucket
    assert lim.allow_at(T[0], 1000)  # and INF allows everything, whatever the tokens


def test_zero_limit_allows_only_the_burst() -> None:
    """A zero limit grants the tokens in the bucket and never refills it."""
    lim = Limiter(0, 3)
    assert lim.allow_at(T[0], 2)
    assert lim.allow_at(T[5], 1)
    assert not lim.allow_at(T[9], 1)
    assert not lim.allow_at(1e9, 1)
    assert lim.tokens_at(1e9) == 0
    assert not Limiter(10, 0).allow_at(T[0])  # zero burst: nothing, ever
    assert not Limiter(10, 0).reserve_at(T[0]).ok


def test_zero_limit() -> None:
    """Go: TestZeroLimit."""
    lim = Limiter(0, 1)
    assert lim.allow_at(T[0]) is True  # the bucket starts full
    assert lim.allow_at(T[0]) is False
    assert lim.allow_at(1e9) is False


def test_set_after_zero_limit() -> None:
    """Go: TestSetAfterZeroLimit: a zero limit spends tokens, not the burst."""
    lim = Limiter(0, 1)
    assert lim.allow_at(T[0]) is True
    assert lim.allow_at(T[0]) is False
    lim.set_limit_at(T[0], 10)
    r = lim.reserve_at(T[0])
    assert r.ok and r.time_to_act == approx(T[1])  # another token in 100 ms


def test_zero_limit_burst_and_tokens() -> None:
    """Go's Burst() and Tokens() for a zero limit: the burst stays, the tokens go."""
    lim = Limiter(0, 3)
    assert lim.allow_at(T[0], 2)
    assert lim.burst == 3
    assert lim.tokens_at(T[9]) == 1
    assert not lim.allow_at(T[9], 2)  # refused: nothing taken
    assert lim.burst == 3 and lim.tokens_at(T[9]) == 1
    assert lim.allow_at(T[9], 3) is False
    lim.set_burst_at(T[9], 5)  # a larger bucket is not filled by a zero limit
    assert lim.tokens_at(1e9) == 1
    lim.set_limit_at(1.0, 10)
    assert lim.tokens_at(1.4) == approx(5)  # refilled at the new limit, up to the new burst


def test_zero_limit_set_before_first_use() -> None:
    """A zero limit raised before any grant starts from the full bucket."""
    lim = Limiter(0, 2)
    lim.set_limit_at(T[5], 10)
    assert lim.tokens_at(T[5]) == 2
    assert lim.allow_at(T[5], 2) and not lim.allow_at(T[5])
    assert lim.allow_at(T[6])


def test_zero_limit_reserve_past_the_bucket() -> None:
    """As Go's ReserveN: ok, with INF_DURATION to wait; cancelling gives the token back."""
    lim = Limiter(0, 1)
    assert lim.reserve_at(T[0]).delay_from(T[0]) == 0
    r = lim.reserve_at(T[0])
    assert r.ok
    assert r.delay_from(T[0]) == INF_DURATION
    assert lim.tokens_at(T[1]) == -1
    assert not lim.reserve_at(T[0], 2).ok  # more than the burst: never
    r.cancel_at(T[1])
    assert lim.tokens_at(T[1]) == 0
    lim.set_limit_at(T[1], 10)
    assert lim.reserve_at(T[1]).time_to_act == approx(T[2])


def test_tiny_limit() -> None:
    """Go: TestTinyLimit: a tiny rate grants the burst and nothing more (no overflow)."""
    lim = Limiter(1e-10, 1)
    assert lim.allow_at(T[0]) is True
    assert lim.allow_at(T[1]) is False
    r = lim.reserve_at(T[1])
    assert r.ok and r.delay_from(T[1]) == pytest.approx(1e10)


def test_set_limit_mid_stream() -> None:
    lim = Limiter(10, 1)
    assert lim.allow_at(T[0])
    lim.set_limit_at(T[0] + 0.05, 1)  # half a token accrued at the old limit is kept
    assert lim.tokens_at(T[0] + 0.05) == approx(0.5)
    assert not lim.allow_at(T[1])
    assert lim.allow_at(T[0] + 0.55)  # 0.5 + 0.5 s at 1/s
    lim.set_limit_at(T[9], INF)
    assert lim.allow_at(T[9], 50)
    lim.set_limit_at(T[9], 10)  # back from INF at the same instant: nothing added (Go)
    assert lim.tokens_at(T[9]) == approx(0.35)
    lim.set_limit_at(T[9], INF)
    lim.set_limit_at(T[9] + 0.01, 10)  # back from INF a moment later: a full bucket
    assert lim.tokens_at(T[9] + 0.01) == 1


@pytest.mark.parametrize("base", [0.0, 1.0, 86488.972, 3.7e6, 1.6e9])
def test_set_limit_keeps_a_due_token_despite_clock_rounding(base: float) -> None:
    # 10 ms at 100/s is one whole token (Go's nanoseconds: exactly 1.0), but
    # (base + 0.01) - base rounds below 0.01 s on a large clock: the shortfall, tiny at
    # 100/s, must not become a wait at the new, lower limit.
    lim = Limiter(100, 1)
    assert lim.allow_at(base)
    lim.set_limit_at(base + 0.01, 0.5)
    assert lim.tokens_at(base + 0.01) == 1.0
    assert lim.allow_at(base + 0.01)
    # A real shortfall (half a token) is kept as it is.
    lim = Limiter(100, 1)
    assert lim.allow_at(base)
    lim.set_limit_at(base + 0.005, 0.5)
    assert lim.tokens_at(base + 0.005) == pytest.approx(0.5, abs=1e-3)
    assert not lim.allow_at(base + 0.005)


def test_set_burst() -> None:
    lim = Limiter(10, 1)
    lim.set_burst_at(T[0], 5)
    assert lim.tokens_at(T[0]) == 1
    assert lim.tokens_at(T[4]) == approx(5)
    assert lim.allow_at(T[4], 5)
    assert lim.burst == 5 and lim.limit == 10


def test_long_running_rate() -> None:
    """Go: TestLongRunningQPS: at most burst + limit * elapsed in any run."""
    lim = Limiter(100, 10)
    ok = sum(lim.allow_at(i * 0.0005) for i in range(10000))  # 5 s of calls
    assert ok == pytest.approx(10 + 100 * 4.9995, abs=1)


def test_misuse_messages() -> None:
    with pytest.raises(ValueError, match=r"^rate: Limiter\(limit\)=-1: "):
        Limiter(-1, 1)
    with pytest.raises(ValueError, match=r"^rate: Limiter\(burst\)=-1 must not be negative$"):
        Limiter(1, -1)
    with pytest.raises(TypeError, match=r"^rate: Limiter\(burst\) takes an int, not float$"):
        Limiter(1, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^rate: reserve\(n\)=-2 must not be negative$"):
        Limiter(1, 1).reserve_at(0.0, -2)
    with pytest.raises(ValueError, match=r"exceeds the sliding window's limit 2$"):
        SlidingWindow(2, 1.0).allow_at(0.0, 3)
    with pytest.raises(ValueError, match=r"must be positive"):
        SlidingWindow(2, 0)


@pytest.mark.anyio
async def test_wait_given_the_context_first_says_where_it_goes() -> None:
    """Go's ``lim.Wait(ctx)`` habit: the TypeError says the count comes first."""
    from asyncgo import background

    hint = r"takes an int, not Context: the context comes after the count, wait\(1, ctx\)"
    for lim in (Limiter(10, 1), SlidingWindow(2, 1.0)):
        with pytest.raises(TypeError, match=rf"^rate: wait\(n\) {hint}"):
            await lim.wait(background())  # type: ignore[arg-type]
        await lim.wait(1, background())  # the right order works
    with pytest.raises(TypeError, match=r"^rate: allow\(n\) takes an int, not Context$"):
        Limiter(10, 1).allow(background())  # type: ignore[arg-type]


# -- sliding window, pure --------------------------------------------------------


def test_sliding_window_edges() -> None:
    w = SlidingWindow(3, 1.0)
    assert [w.allow_at(0.0), w.allow_at(0.2), w.allow_at(0.9)] == [True, True, True]
    assert not w.allow_at(0.95)
    assert not w.allow_at(0.999999)
    assert w.delay_at(0.5) == approx(0.5)
    assert w.allow_at(1.0)  # the event at 0.0 has left (window is (t-1, t])
    assert not w.allow_at(1.1)
    assert w.allow_at(1.2)
    assert w.count_at(1.2) == 3
    assert w.delay_at(1.2, 3) == approx(1.0)  # all of 0.9, 1.0, 1.2 must leave: at 2.2
    # no interval of one second ever saw more than 3
    times = [0.0, 0.2, 0.9, 1.0, 1.2]
    assert max(sum(1 for x in times if s <= x < s + 1.0) for s in times) == 3


def test_fixed_window_edge_burst_does_not_happen() -> None:
    """The seed article's problem: 3 at 0.9 s and 3 at 1.0 s pass a fixed 1 s counter."""
    w = SlidingWindow(3, 1.0)
    assert all(w.allow_at(0.9) for _ in range(3))
    assert not w.allow_at(1.0)
    assert not w.allow_at(1.89)
    assert w.allow_at(1.9, 3)


# -- real time, on every backend -------------------------------------------------


@pytest.mark.anyio
async def test_wait_burst_then_steady() -> None:
    lim = rate.Limiter(100, 5)
    t0 = _time.perf_counter()
    for _ in range(5):
        assert lim.tokens() >= 1  # the burst is free: each call's token is there
        await lim.wait()
    # (exact times on the virtual clock: test_rate_mock.test_burst_then_steady_rate;
    # a 0.05 s wall-clock bound here failed under CPU load)
    for _ in range(10):
        await lim.wait()
    elapsed = _time.perf_counter() - t0
    assert 0.08 < elapsed < 3.0  # 10 tokens at 100/s: ~0.1 s (generous: a loaded machine)


@pytest.mark.anyio
async def test_wait_fails_fast_over_burst() -> None:
    lim = rate.Limiter(1, 3)
    with pytest.raises(ValueError, match=r"^rate: wait\(n=5\) exceeds limiter's burst 3$"):
        await lim.wait(5)
    assert lim.tokens() == 3
    await rate.Limiter(INF, 0).wait(5)  # INF ignores the burst


@pytest.mark.anyio
async def test_wait_fails_fast_before_deadline() -> None:
    lim = rate.Limiter(every(100), 1)  # the next token in 100 s
    assert lim.allow()
    # (a 0.2 s deadline could pass before the call on a loaded machine: then the ctx's
    # own "context deadline exceeded", not the limiter's refusal)
    ctx, cancel = with_timeout(background(), 30)
    t0 = _time.perf_counter()
    with pytest.raises(
        DeadlineExceeded, match=r"^rate: wait\(n=1\) would exceed context deadline$"
    ):
        await lim.wait(1, ctx)
    assert _time.perf_counter() - t0 < 20  # at once: it waited for no deadline
    assert lim.tokens() < 0.5  # nothing booked
    cancel()


@pytest.mark.anyio
async def test_wait_ctx_cancelled_returns_tokens() -> None:
    # One token per 100 s: the booking stays visible (at 10/s, the 50 ms trio's
    # wait_all_tasks_blocked() can take under CPU load refilled it past -0.5)
    lim = rate.Limiter(every(100), 1)
    assert lim.allow()
    ctx, cancel = with_cancel(background())
    failed: list[BaseException] = []

    async def waiter() -> None:
        try:
            await lim.wait(1, ctx)
        except Canceled as e:
            failed.append(e)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert lim.tokens() < -0.5  # booked
        cancel()
    assert len(failed) == 1
    assert lim.tokens() > -0.5  # given back


@pytest.mark.anyio
async def test_wait_already_done_ctx() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    with pytest.raises(Canceled):
        await rate.Limiter(10, 1).wait(1, ctx)


@pytest.mark.anyio
async def test_wait_scope_cancelled_returns_tokens() -> None:
    lim = rate.Limiter(10, 1)
    assert lim.allow()
    with anyio.move_on_after(0.02):
        await lim.wait()
    assert lim.tokens() > -0.5


@pytest.mark.anyio
async def test_wait_is_cancel_point() -> None:
    lim = rate.Limiter(INF, 1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await lim.wait()
        pytest.fail("not cancelled")  # pragma: no cover


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["limiter", "limiter-ctx", "window", "window-ctx"])
async def test_wait_cancelled_at_its_first_await_takes_nothing(kind: str) -> None:
    """Principle 2: a wait cancelled at its checkpoint, which could have gone through
    at once, leaves no trace: the token (the window slot) is still there. Booked
    before the checkpoint, it would be due by the time the cancellation gave it back,
    and Reservation.cancel restores nothing that is due."""
    lim: Limiter | SlidingWindow = (
        Limiter(every(10), 1) if kind.startswith("limiter") else SlidingWindow(1, 10.0)
    )
    ctx = background() if kind.endswith("ctx") else None
    for _ in range(3):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await lim.wait(1, ctx)
            pytest.fail("not cancelled")  # pragma: no cover
        assert scope.cancelled_caught
    assert lim.allow()  # the one token (slot) is still there
    assert not lim.allow()


@pytest.mark.anyio
async def test_wait_cancelled_from_another_task_at_its_first_await_takes_nothing() -> None:
    lim = Limiter(every(10), 1)
    got: list[str] = []

    async def waiter(scope: anyio.CancelScope) -> None:
        with scope:
            await lim.wait()
            got.append("granted")  # pragma: no cover - cancelled first

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, scope)
        scope.cancel()  # before the waiter's first step: it is cancelled at its checkpoint
    assert got == []
    assert lim.allow()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["limiter", "window"])
async def test_a_wait_served_at_once_keeps_its_place_in_call_order(kind: str) -> None:
    """A call whose token is there when it calls books it then, before its
    checkpoint: a later call that must wait cannot get ahead of it.

    B is started by A once A has called, so A calls first on every backend: trio
    runs the tasks of one tick in a random order, and with B first both calls
    sleep, 10 ms apart -- a loaded machine woke them at one tick, in a random
    order (seen once in a run under CPU load: served A, B; called B, A)."""
    for _ in range(10):
        called: list[str] = []
        served: list[str] = []
        lim: Limiter | SlidingWindow
        if kind == "limiter":
            lim = Limiter(100, 2)
            assert lim.allow(1)  # one token left
        else:
            lim = SlidingWindow(2, 0.02)
            await lim.wait(1)  # one slot left

        async def w(name: str, n: int, then: Callable[[], object] | None = None) -> None:
            called.append(name)
            if then is not None:
                then()  # the later call starts now, and runs at A's first checkpoint
            await lim.wait(n)
            served.append(name)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                # A: its token is there; B, called after it: must wait
                tg.start_soon(w, "A", 1, lambda: tg.start_soon(w, "B", 2))
        assert called == ["A", "B"]
        assert served == called


@pytest.mark.anyio
async def test_waiters_share_the_rate() -> None:
    lim = rate.Limiter(200, 1)
    order: list[int] = []

    async def w(i: int) -> None:
        await lim.wait()
        order.append(i)

    t0 = _time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(w, i)
    assert sorted(order) == list(range(10))
    assert 0.03 < _time.perf_counter() - t0 < 3.0


@pytest.mark.anyio
async def test_sliding_window_wait() -> None:
    w = SlidingWindow(3, 0.1)
    t0 = _time.perf_counter()
    for _ in range(7):
        await w.wait()
    assert 0.18 < _time.perf_counter() - t0 < 3.0  # 3, 3 after 0.1 s, 1 after 0.2 s
    # A full window refuses at once when its slots come after the deadline. (On `w`
    # with a 0.01 s deadline this raced the clock: a last wake-up 90 ms late, under
    # CPU load, found the slots nearly free and the wait was granted in time.)
    full = SlidingWindow(3, 60)
    assert all(full.allow() for _ in range(3))
    ctx, cancel = with_timeout(background(), 30)
    with pytest.raises(DeadlineExceeded, match="would exceed context deadline"):
        await full.wait(3, ctx)
    cancel()


def test_pure_needs_no_loop() -> None:
    lim = Limiter(1, 1)
    assert lim.allow_at(0.0) and not lim.allow_at(0.5)
    assert math.isinf(lim.reserve_at(0.5, 2).delay_from(0.5))


def test_reservation_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="use Limiter.reserve"):
        rate.Reservation()


@pytest.mark.anyio
async def test_wait_after_set_nonzero_after_zero() -> None:
    """Go: TestSetAfterZeroLimit, on the event loop's clock."""
    lim = rate.Limiter(0, 1)
    assert lim.allow()
    assert not lim.allow()
    lim.set_limit(10)
    t0 = _time.perf_counter()
    await lim.wait(1)  # was: ValueError "exceeds limiter's burst 0"
    assert 0.08 < _time.perf_counter() - t0 < 3.0  # a token in ~100 ms
    assert lim.burst == 1


@pytest.mark.anyio
async def test_wait_zero_limit_fails_fast_before_deadline() -> None:
    lim = rate.Limiter(0, 1)
    await lim.wait()
    ctx, cancel = with_timeout(background(), 60)
    with pytest.raises(DeadlineExceeded, match=r"would exceed context deadline$"):
        await lim.wait(1, ctx)  # no token will ever come
    cancel()
    with pytest.raises(ValueError, match=r"^rate: wait\(n=2\) exceeds limiter's burst 1$"):
        await lim.wait(2)
    assert lim.tokens() == 0 and lim.burst == 1


@pytest.mark.anyio
async def test_set_limit_mid_stream_real_time() -> None:
    lim = rate.Limiter(5, 1)  # one per 200 ms
    await lim.wait()
    lim.set_limit(1000)
    t0 = _time.perf_counter()
    for _ in range(20):
        await lim.wait()
    # the new, faster rate applies at once: ~0.02 s, where the old one takes 4 s (20
    # sleeps of ~1 ms each run late under CPU load: a 0.15 s bound is thin)
    assert _time.perf_counter() - t0 < 2.0
    lim.set_limit(INF)
    t0 = _time.perf_counter()
    for _ in range(1000):
        await lim.wait()
    assert _time.perf_counter() - t0 < 2.0


def test_sliding_window_delay_at_a_later_time_takes_nothing() -> None:
    # "pure": asking about t=100 must not forget the events still in the window now
    sw = SlidingWindow(1, 10.0)
    assert sw.allow_at(0.0)
    assert sw.delay_at(100.0) == 0.0
    assert sw.count_at(1.0) == 1
    assert not sw.allow_at(1.0)
    assert sw.allow_at(50.0, 0)  # n=0 records nothing, forgets nothing
    assert sw.count_at(5.0) == 1


# -- found by a black-box audit (2026-12-05) ----------------------------------------


def test_a_shortfall_under_a_nanosecond_is_no_wait_but_stays_owed() -> None:
    # Go: durationFromTokens truncates the wait to zero, the tokens stay negative. At
    # 1e10/s a nanosecond is 10 tokens: written off, 1000 grants of 8 at one instant.
    lim = Limiter(1e10, 100)
    granted = sum(8 for _ in range(1000) if lim.allow_at(5.0, 8))
    assert granted == 104  # Go's figure: 12 grants from the burst, 1 under a nanosecond
    lim = Limiter(2e6, 1)  # an epoch-sized clock: its rounding (4 ulps) is ~1 us
    assert sum(1 for _ in range(1000) if lim.allow_at(1.7e9)) <= 2


def test_misuse_of_every_and_of_nan_clock_times() -> None:
    with pytest.raises(ValueError, match=r"^rate: every\(seconds=nan\)"):
        every(math.nan)
    for bad in ("0.1", None, True):
        with pytest.raises(TypeError, match=r"^rate: every\(seconds\) takes a number"):
            every(bad)  # type: ignore[arg-type]
    lim = Limiter(1, 1)
    for call, what in (
        (lambda: lim.allow_at(math.nan), "allow_at"),
        (lambda: lim.reserve_at(math.nan), "reserve_at"),
        (lambda: lim.tokens_at(math.nan), "tokens_at"),
        (lambda: lim.set_limit_at(math.nan, 2), "set_limit_at"),
        (lambda: lim.set_burst_at(math.nan, 2), "set_burst_at"),
        (lambda: lim.reserve_at(0.0).cancel_at(math.nan), "cancel_at"),
        (lambda: SlidingWindow(1, 1).allow_at(math.nan), "allow_at"),
        (lambda: lim.reserve_at(0.0).delay_from(math.nan), "delay_from"),
        (lambda: SlidingWindow(1, 1).delay_at(math.nan), "delay_at"),
        (lambda: SlidingWindow(1, 1).count_at(math.nan), "count_at"),
    ):
        with pytest.raises(ValueError, match=rf"^rate: {what}\(t=nan\)"):
            call()
    # A clock time that is not a number is named (it failed deep in the arithmetic).
    window = SlidingWindow(1, 1)
    for bad in ("1.5", None, True):
        for call, what in (
            (lambda: lim.allow_at(bad), "allow_at"),  # type: ignore[arg-type]  # noqa: B023
            (lambda: lim.tokens_at(bad), "tokens_at"),  # type: ignore[arg-type]  # noqa: B023
            (lambda: lim.reserve_at(0.0).delay_from(bad), "delay_from"),  # type: ignore[arg-type]  # noqa: B023
            (lambda: window.delay_at(bad), "delay_at"),  # type: ignore[arg-type]  # noqa: B023
            (lambda: window.count_at(bad), "count_at"),  # type: ignore[arg-type]  # noqa: B023
        ):
            with pytest.raises(TypeError, match=rf"^rate: {what}\(t\) takes a clock time"):
                call()
    assert lim.tokens_at(10) == 1.0  # an int is a clock time
    # Numbers past float's range: no limit, an event once in forever, counts refused.
    assert Limiter(10**400, 1).limit == INF
    assert every(10**400) == 0.0
    for call, what in (
        (lambda: Limiter(1, 10**400), r"Limiter\(burst\)"),
        (lambda: Limiter(1, 1).allow_at(0.0, 10**400), r"allow\(n\)"),
        (lambda: Limiter(1, 1).reserve_at(0.0, 2**63), r"reserve\(n\)"),
        (lambda: SlidingWindow(2**64, 1), r"SlidingWindow\(limit\)"),
    ):
        with pytest.raises(ValueError, match=rf"^rate: {what}=\d+ is too large"):
            call()
    # Nothing was poisoned: still one token per second.
    lim = Limiter(1, 1)
    with pytest.raises(ValueError):
        lim.allow_at(math.nan)
    assert [lim.allow_at(10.0) for _ in range(3)] == [True, False, False]


async def test_sliding_window_slot_due_exactly_at_the_deadline_is_granted() -> None:
    # Allowed at once because the slot comes back at the deadline: granted and
    # counted, whichever of the two fired first -- not DeadlineExceeded with the
    # booking left counting an event that never happened.
    w = SlidingWindow(1, 0.2)
    assert w.allow()
    ctx, cancel = with_timeout(background(), 0.2)
    try:
        await w.wait(1, ctx)
    finally:
        cancel()
    assert w.count_at(anyio.current_time()) == 1


@pytest.mark.parametrize(
    ("first", "next_clock"), [("trio", "ahead"), ("trio", "behind"), ("asyncio", "ahead")]
)
def test_kept_across_runs_as_if_no_time_had_passed(first: str, next_clock: str) -> None:
    """Each trio run has a clock of its own, its offset random: a limiter and a window
    drained in one run are still drained in the next, whether its clock reads ahead or
    behind (ahead, they refilled at once; behind, a window stayed full until the new
    clock caught up). Within a run, time still passes."""
    import trio
    import trio.testing

    lim = Limiter(1, 1)  # a token a second
    window = SlidingWindow(1, 10.0)  # one event per 10 s

    async def drain() -> None:
        assert lim.allow() and window.allow()
        assert not lim.allow() and not window.allow()

    async def look_then_wait() -> None:
        assert not lim.allow() and not window.allow()  # as at the end of the last run
        assert lim.tokens() < 0.01
        await trio.sleep(1)
        assert lim.allow() and not window.allow()
        await trio.sleep(9)
        assert window.allow()

    last = trio.testing.MockClock()
    following = trio.testing.MockClock(autojump_threshold=0)
    if first == "trio":
        (following if next_clock == "ahead" else last).jump(100_000)
        trio.run(drain, clock=last)
    else:
        anyio.run(drain, backend="asyncio")  # time.monotonic()
        following.jump(1e9)
    trio.run(look_then_wait, clock=following)


def test_used_from_a_loop_in_another_thread_raises() -> None:
    """A limiter (or window) in use by a loop that still runs in another thread is
    refused by name: their clocks differ (a trio run's by hours), and tokens were
    handed out by the mix."""
    import threading

    lim = Limiter(every(3600), 1)
    window = SlidingWindow(1, 3600)
    started, release = threading.Event(), threading.Event()

    async def home() -> None:
        assert lim.allow() and window.allow()
        started.set()
        await anyio.to_thread.run_sync(release.wait, 30)

    t = threading.Thread(target=anyio.run, args=(home,), kwargs={"backend": "trio"})
    t.start()
    try:
        assert started.wait(30)

        async def other() -> None:
            for call in (lim.allow, lim.tokens, window.allow):
                with pytest.raises(RuntimeError, match=r"in use by an event loop running in"):
                    call()

        anyio.run(other, backend="asyncio")
    finally:
        release.set()
        t.join()

    # Once that loop is over, the next one takes the limiter over.
    async def after() -> bool:
        return lim.allow()

    assert anyio.run(after, backend="asyncio") is False  # still drained


# -- the fast path: wait served at once, allow without a Reservation (#5) -----------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["inf", "ample", "window"])
async def test_a_tight_loop_of_waits_served_at_once_lets_others_run(kind: str) -> None:
    """wait() served at once yields only every few hundred calls (the fast budget),
    but it does yield: a loop that never sleeps cannot starve another task."""
    lim: Limiter | SlidingWindow
    if kind == "inf":
        lim = Limiter(INF, 1)
    elif kind == "ample":
        lim = Limiter(1e12, 10**9)
    else:
        lim = SlidingWindow(10**9, 1000.0)
    async with turns_of_another_task() as turns:
        for _ in range(5000):
            await lim.wait()
            if turns.count:
                break
    assert turns.count, "5000 waits served at once never let another task run"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["limiter", "window"])
async def test_waits_served_at_once_skip_most_schedule_points(kind: str) -> None:
    """Between two yields of the budget, waits served at once do not yield: the
    other task runs far fewer times than there are waits."""
    lim: Limiter | SlidingWindow = (
        Limiter(INF, 1) if kind == "limiter" else SlidingWindow(10**9, 1000.0)
    )
    async with turns_of_another_task() as turns:
        for _ in range(3000):
            await lim.wait()
    assert 1 <= turns.count < 300


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["limiter", "limiter-inf", "window"])
async def test_a_pending_cancellation_makes_wait_raise_and_take_nothing(kind: str) -> None:
    """Even on the fast path (tokens there), wait() is a cancel point: with a
    cancellation pending (an anyio scope, or asyncio's Task.cancel) it raises, and
    takes nothing."""
    import asyncio

    lim: Limiter | SlidingWindow
    if kind == "limiter":
        lim = Limiter(every(3600), 1000)
    elif kind == "limiter-inf":
        lim = Limiter(INF, 3)
    else:
        lim = SlidingWindow(1000, 3600.0)

    def left() -> float:
        if isinstance(lim, Limiter):
            return lim.tokens()
        return -len(lim._log)  # (a window of an hour: nothing leaves it)

    for _ in range(3):
        await lim.wait()  # warm the fast path (the runtime hint, the task's state)
    before = left()
    for _ in range(300):  # across a refill of the fast budget too
        with anyio.CancelScope() as scope:
            scope.cancel()
            await lim.wait()
            pytest.fail("not cancelled")  # pragma: no cover
        assert scope.cancelled_caught
    assert left() == pytest.approx(before, abs=1e-3)
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return  # trio: a cancel scope is its only kind of cancellation
    assert task is not None
    task.cancel()  # asyncio's own cancel, pending when wait() is called
    with pytest.raises(asyncio.CancelledError):
        await lim.wait()
    task.uncancel()
    assert left() == pytest.approx(before, abs=1e-3)


def _reference_allow(lim: Limiter, t: float, n: int) -> bool:
    """Go's ``AllowN(t, n)``: ``reserveN(t, n, 0).ok``, as asyncgo computed it with a
    Reservation before allow() got its own path (the arithmetic of ``_reserve``)."""
    if lim._limit == INF:
        return True
    t, tokens = lim._advance(t)
    tokens -= n
    wait = 0.0
    if tokens < 0:
        wait = -tokens / lim._limit if lim._limit > 0 else INF_DURATION
        if wait < 1e-9 or (wait < 1e-6 and wait <= 4.0 * math.ulp(t)):
            wait = 0.0
            if tokens > -1e-3:
                tokens = 0.0
    if not (n <= lim._burst and (wait <= 0.0 or t + wait <= t + 0.0)):
        return False
    lim._last, lim._tokens, lim._last_event = t, tokens, t + wait
    return True


def _twin_check(seed: int) -> None:
    """allow_at on one limiter, the reserve arithmetic on a twin (and reserve_at /
    cancel_at on both): the same answers and the same state after every call."""
    import random

    rnd = random.Random(seed)
    limit = rnd.choice([0.0, 0.5, 10.0, 1e3, 1e10, INF])
    burst = rnd.choice([0, 1, 3, 10, 1000])
    a, b = Limiter(limit, burst), Limiter(limit, burst)
    t = rnd.choice([0.0, 1000.0, 1.7e9])
    for step in range(300):
        op = rnd.random()
        if op < 0.05:
            new = rnd.choice([0.0, 1.0, 10.0, INF])
            a.set_limit_at(t, new)
            b.set_limit_at(t, new)
        elif op < 0.08:
            newb = rnd.choice([0, 1, 5, 100])
            a.set_burst_at(t, newb)
            b.set_burst_at(t, newb)
        elif op < 0.15:  # a reservation held on both, cancelled later or not
            n = rnd.choice([1, 2])
            ra, rb = a.reserve_at(t, n), b.reserve_at(t, n)
            assert (ra.ok, ra.time_to_act) == (rb.ok, rb.time_to_act)
            if rnd.random() < 0.5:
                ra.cancel_at(t)
                rb.cancel_at(t)
        else:
            n = rnd.choice([0, 1, 1, 1, 2, 5, burst, burst + 1])
            assert a.allow_at(t, n) == _reference_allow(b, t, n), (seed, step, t, n)
        state_a = (a._tokens, a._last, a._last_event, a._limit, a._burst)
        state_b = (b._tokens, b._last, b._last_event, b._limit, b._burst)
        assert state_a == state_b, (seed, step)
        t += rnd.choice([0.0, 0.0, 1e-10, 1e-9, 1e-4, 0.01, 0.1, 0.7, -0.05])


@pytest.mark.parametrize("seed", range(200))
def test_allow_state_equals_reserve_arithmetic(seed: int) -> None:
    _twin_check(seed)


def test_allow_on_the_clock_equals_reserve_on_a_twin() -> None:
    """allow() on the loop's clock (the fast clock read) against reserve_at on a twin
    at the same instants."""

    async def main() -> None:
        import random

        rnd = random.Random(5)
        a, b = Limiter(1e4, 5), Limiter(1e4, 5)
        for _ in range(2000):
            n = rnd.choice([0, 1, 1, 2, 6])
            got = a.allow(n)
            assert got == _reference_allow(b, a._clock._last, n)
            assert (a._tokens, a._last, a._last_event) == (b._tokens, b._last, b._last_event)
            if rnd.random() < 0.1:
                await anyio.sleep(0)

    for backend in ("asyncio", "trio"):
        anyio.run(main, backend=backend)


# -- found by a timers-and-rate review (2026-12-07) ---------------------------------


def test_infinite_and_oversized_clock_times_are_refused() -> None:
    # -inf - -inf is NaN: a limiter fed -inf counted NaN tokens and admitted everything.
    lim = Limiter(1, 1)
    assert lim.allow_at(0.0)
    for t, shown in ((math.inf, "t=inf"), (-math.inf, "t=-inf"), (10**400, "t: int past")):
        for call, what in (
            (lambda: lim.allow_at(t), "allow_at"),  # noqa: B023
            (lambda: lim.reserve_at(t), "reserve_at"),  # noqa: B023
            (lambda: lim.tokens_at(t), "tokens_at"),  # noqa: B023
            (lambda: lim.set_limit_at(t, 2), "set_limit_at"),  # noqa: B023
            (lambda: lim.set_burst_at(t, 2), "set_burst_at"),  # noqa: B023
            (lambda: lim.reserve_at(0.0).cancel_at(t), "cancel_at"),  # noqa: B023
            (lambda: lim.reserve_at(0.0).delay_from(t), "delay_from"),  # noqa: B023
            (lambda: SlidingWindow(2, 1).allow_at(t), "allow_at"),  # noqa: B023
            (lambda: SlidingWindow(2, 1).count_at(t), "count_at"),  # noqa: B023
            (lambda: SlidingWindow(2, 1).delay_at(t), "delay_at"),  # noqa: B023
        ):
            pattern = rf"^rate: {what}\({shown}.*must be a finite number"
            with pytest.raises(ValueError, match=pattern):
                call()
    lim = Limiter(1, 1)
    assert lim.allow_at(0.0)
    with pytest.raises(ValueError):
        lim.allow_at(-math.inf)
    assert lim.tokens_at(0.0) == 0.0  # nothing was poisoned
    assert [lim.allow_at(0.0) for _ in range(100)] == [False] * 100
    window = SlidingWindow(2, 1)
    with pytest.raises(ValueError):
        window.allow_at(math.inf)
    assert window.count_at(0.0) == 0


def test_limits_and_intervals_take_any_real_number() -> None:
    # (time.sleep, with_timeout and the *_at clock times already took them)
    assert every(Fraction(1, 10)) == 10.0
    assert every(Fraction(10**400)) == 0.0
    assert every(Fraction(-(10**400))) == INF
    lim = Limiter(Fraction(1, 2), 1)
    assert lim.limit == 0.5 and type(lim.limit) is float
    assert Limiter(Fraction(10**400), 1).limit == INF
    lim.set_limit_at(0.0, Fraction(3, 2))
    assert lim.limit == 1.5
    with pytest.raises(TypeError, match=r"^rate: every\(seconds\) takes a number, not Decimal"):
        every(Decimal("0.1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"must be >= 0"):
        Limiter(Fraction(-1, 2), 1)


def test_a_reservation_given_back_after_set_limit_zero_restores_whole_tokens() -> None:
    # The time between the limiter's last event and the reservation counted at
    # 1000/s on a clock 123456 s in: 0.99999998 of a token came back, which the
    # zero limit set since never refills -- every allow() was refused. (Go: 1.)
    t0 = 123456.789
    lim = Limiter(0.5, 2)
    assert lim.allow_at(t0 + 0.5)
    lim.set_burst_at(t0 + 0.6, 2)
    assert lim.reserve_at(t0 + 0.61).ok
    assert not lim.allow_at(t0 + 0.61)
    lim.set_burst_at(t0 + 0.86, 3)
    lim.set_limit_at(t0 + 0.865, 1000)
    assert lim.reserve_at(t0 + 0.915, 2).ok
    r = lim.reserve_at(t0 + 1.165, 3)
    lim.set_limit_at(t0 + 1.166, 0)
    assert lim.reserve_at(t0 + 1.166, 0).ok
    assert lim.reserve_at(t0 + 1.167, 1).ok
    r.cancel_at(t0 + 1.067)  # gives back the 2 tokens the later one did not count on
    assert not lim.allow_at(t0 + 1.567, 3)
    assert lim.allow_at(t0 + 1.667, 1)


async def test_a_wait_cancelled_in_the_tick_its_tokens_came_gives_them_back() -> None:
    # The loop was busy past the tokens' time; the cancellation came before the wait
    # could return. Reservation.cancel counts due tokens as used, so they were lost.
    lim = Limiter(10, 3)
    await lim.wait(3)  # drained: 3 more are due in 0.3 s
    done = anyio.Event()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                try:
                    await lim.wait(3)
                finally:
                    done.set()

            tg.start_soon(waiter)
            await anyio.sleep(0)  # the waiter books its tokens and sleeps
            _time.sleep(0.31)  # the loop is busy past their time
            scope.cancel()
    assert scope.cancelled_caught
    assert done.is_set()
    assert lim.tokens() > 2.5  # (about 0.1 if the 3 were lost: they were due at 0.3 s)

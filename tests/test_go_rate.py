"""golang.org/x/time/rate's own tests (rate/rate_test.go), ported to asyncgo.rate.

Go's times ``t0 .. t9`` are multiples of ``d = 100 ms`` from ``t0``; here they are
``T0 + k * D`` seconds, and Go's ``dSince`` (a time in multiples of ``d``, rounded
to the nearest) is `d_since`. The pure cases use the ``*_at`` twins (Go's
``AllowN(t, n)``, ``ReserveN(t, n)``, ``TokensAt(t)``, ``CancelAt(t)``,
``SetLimitAt``, ``SetBurstAt``); Go's unexported ``reserveN(t, n, maxFutureReserve)``
is `Limiter._reserve`. Go's fake ``testTime`` for ``WaitN`` is trio's
``MockClock(autojump_threshold=0)`` (`TestWaitOnMockClock`), where every delay is
exact. Cases ported before into tests/test_rate.py and tests/test_rate_mock.py are
ported again here, table for table, with Go's token counts.

Not ported: the benchmarks (BenchmarkAllowN, BenchmarkWaitNNoDelay; see
benchmarks/bench_rate.py).
"""

from __future__ import annotations

import math

import anyio
import pytest
import trio
from trio.testing import MockClock

from asyncgo import Canceled, DeadlineExceeded, background, rate, with_cancel, with_timeout
from asyncgo._context import Context
from asyncgo.rate import INF, INF_DURATION, Limiter, Reservation, every

D = 0.1  # Go's d = 100 * time.Millisecond
T0 = 1000.0  # Go's t0 = time.Now(): any time will do


def t(k: int) -> float:
    """Go's t0 .. t9: ``t0.Add(k * d)``."""
    return T0 + k * D


def d_since(x: float) -> int:
    """Go's dSince: *x* in multiples of d since t0, rounded to the nearest."""
    return math.floor((x - T0 + D / 2) / D)


# -- TestLimit, TestEvery ---------------------------------------------------------------


def test_limit() -> None:
    """Go: TestLimit."""
    assert Limiter(10, 1).limit != INF
    assert rate.INF == math.inf


@pytest.mark.parametrize(
    ("interval", "lim"),
    [
        (0, INF),
        (-1e-9, INF),
        (1e-9, 1e9),
        (1e-6, 1e6),
        (1e-3, 1e3),
        (10e-3, 100),
        (100e-3, 10),
        (1, 1),
        (2, 0.5),
        (2.5, 0.4),
        (4, 0.25),
        (10, 0.1),
        ((2**63 - 1) / 1e9, 1e9 / (2**63 - 1)),
    ],
)
def test_every(interval: float, lim: float) -> None:
    """Go: TestEvery (closeEnough: a relative error below 1e-9)."""
    got = every(interval)
    if lim == INF:
        assert got == INF
    else:
        assert abs(got / lim - 1.0) < 1e-9


# -- run(): AllowN with TokensAt before each step ----------------------------------------

Allow = tuple[int, float, int, bool]  # (t_k, tokens before, n, ok)


def run(lim: Limiter, allows: list[Allow]) -> None:
    """Go's run(): TokensAt(t) must match before AllowN(t, n)."""
    for i, (k, toks, n, ok) in enumerate(allows):
        got = lim.tokens_at(t(k))
        assert got == pytest.approx(toks, abs=1e-9), f"step {i}: tokens_at(t{k}) = {got}"
        assert lim.allow_at(t(k), n) is ok, f"step {i}: allow_at(t{k}, {n}) != {ok}"


def test_limiter_burst1() -> None:
    """Go: TestLimiterBurst1."""
    run(
        Limiter(10, 1),
        [
            (0, 1, 1, True),
            (0, 0, 1, False),
            (0, 0, 1, False),
            (1, 1, 1, True),
            (1, 0, 1, False),
            (1, 0, 1, False),
            (2, 1, 2, False),  # burst size is 1, so n=2 always fails
            (2, 1, 1, True),
            (2, 0, 1, False),
        ],
    )


def test_limiter_burst3() -> None:
    """Go: TestLimiterBurst3."""
    run(
        Limiter(10, 3),
        [
            (0, 3, 2, True),
            (0, 1, 2, False),
            (0, 1, 1, True),
            (0, 0, 1, False),
            (1, 1, 4, False),
            (2, 2, 1, True),
            (3, 2, 1, True),
            (4, 2, 1, True),
            (4, 1, 1, True),
            (4, 0, 1, False),
            (4, 0, 1, False),
            (9, 3, 3, True),
            (9, 0, 0, True),
        ],
    )


def test_limiter_jump_backwards() -> None:
    """Go: TestLimiterJumpBackwards: a clock going back counts as no time elapsed."""
    run(
        Limiter(10, 3),
        [
            (1, 3, 1, True),  # start at t1
            (0, 2, 1, True),  # jump back to t0, two tokens remain
            (0, 1, 1, True),
            (0, 0, 1, False),
            (0, 0, 1, False),
            (1, 1, 1, True),  # got a token
            (1, 0, 1, False),
            (1, 0, 1, False),
            (2, 1, 1, True),  # got another token
            (2, 0, 1, False),
            (2, 0, 1, False),
        ],
    )


@pytest.mark.parametrize("base", [0.0, T0, 1e5, 1e7])
def test_float_clock_rounding_does_not_refuse(base: float) -> None:
    """Go's times are whole nanoseconds, so a 10/s limiter allows one event every
    100 ms, always. On a float clock ``0.8 - 0.7`` is ``0.0999...9``: a shortfall under
    a nanosecond (or the clock's rounding at that time) is no wait, as Go's
    durationFromTokens truncates it to zero."""
    lim = Limiter(10, 1)
    now = base
    for k in range(200):
        assert lim.allow_at(now), f"step {k} at {now!r}"
        assert not lim.allow_at(now)
        now += D  # accumulated, as a virtual clock's sleeps are
    lim = Limiter(10, 1)
    assert all(lim.allow_at(base + k * D) for k in range(200))
    lim = Limiter(1000, 1)
    assert all(lim.allow_at(base + k * 0.001) for k in range(2000))
    assert not Limiter(10, 1).reserve_at(base, 2).ok  # a real shortfall still counts
    lim = Limiter(10, 1)
    lim.allow_at(base)
    assert lim.reserve_at(base + 0.05).delay_from(base + 0.05) == pytest.approx(0.05)


@pytest.mark.parametrize("base", [0.2, T0, 170.659, 469.298, 1e5 + 0.123, 1e7 + 0.7])
def test_cancelling_the_latest_reservations_one_by_one_gives_every_token_back(
    base: float,
) -> None:
    """Go's CancelAt (TestCancelMulti): cancelling the latest reservation moves
    lastEvent back to the one before it, exactly in Go's nanoseconds, so cancelling
    last-first restores the bucket. On a float clock ``(T + 0.2) - 0.1`` is not always
    ``T + 0.1``: at about half of all T the earlier cancels missed it and kept tokens
    (found by an audit against a line-by-line model of rate.go)."""
    for n in (2, 3, 5):
        lim = Limiter(10, 1)
        rs = [lim.reserve_at(base) for _ in range(n)]  # act at T, T + 0.1, T + 0.2...
        assert rs[-1].delay_from(base) == pytest.approx((n - 1) * D)
        for r in reversed(rs):
            r.cancel_at(base)
        assert lim.tokens_at(base) == pytest.approx(1.0), (n, base)
        assert lim.allow_at(base)  # as if none was ever made
        assert lim.reserve_at(base).delay_from(base) == pytest.approx(D)


@pytest.mark.parametrize("limit", [3.0, 7.0, 8.0, 10.0])
def test_a_cancel_that_gives_nothing_back_leaves_the_reservation_cancellable(
    limit: float,
) -> None:
    """Go's CancelAt: r2 cancelled while r3 (booked after it) holds all its time gives
    back nothing; once r3 is cancelled, r2 is the latest and cancelling it gives its
    token back. On a float clock ``1 - limit * (t3 - t2)`` could come out +1e-13: that
    crumb was "given back" and marked r2 spent, losing a token (soak against a port of
    rate.go on whole nanoseconds)."""
    for k in range(200):
        base = 1000.0 + k * 0.013
        lim = Limiter(limit, 1)
        assert lim.allow_at(base)  # the bucket is empty
        r2 = lim.reserve_at(base)
        r3 = lim.reserve_at(base)
        r2.cancel_at(base)  # r3 booked after it: nothing back
        assert lim.tokens_at(base) == pytest.approx(-2.0), (limit, base)
        r3.cancel_at(base)
        r2.cancel_at(base)  # now the latest: its token comes back
        assert lim.tokens_at(base) == pytest.approx(0.0), (limit, base)


def test_cancel_at_the_due_instant_gives_the_tokens_back() -> None:
    """Go's CancelAt returns early only if ``timeToAct.Before(t)``: at the due instant
    itself the tokens go back. A booked time a few ulps below the clock reading of
    that instant (``100.03399999999999`` for ``100.034``) gave nothing back."""
    for k in range(2000):
        t1 = round(100 + k * 0.007, 3)
        t2 = round(t1 + 0.010, 3)
        due = round(t2 + 0.010, 3)  # the clock reading of the instant the tokens are due
        lim = Limiter(100.0, 2)
        assert lim.allow_at(t1, 2)
        r = lim.reserve_at(t2, 2)  # one token by t2, the other 10 ms later
        before = lim.tokens_at(due)
        r.cancel_at(due)
        assert lim.tokens_at(due) - before == pytest.approx(2.0), (t1, r.time_to_act, due)
    for k in range(2000):  # the latest cancelled, then the one before it, at its due instant
        base = round(61000 + k * 0.0137, 3)
        lim = Limiter(10, 1)
        assert lim.allow_at(base)
        t1 = round(base + 0.1, 3)  # the clock reading when r1 is due
        r1 = lim.reserve_at(base)
        r2 = lim.reserve_at(base)
        r2.cancel_at(t1)  # the latest: its token back, and r1 is the latest now
        r1.cancel_at(t1)
        assert lim.tokens_at(t1) == pytest.approx(1.0), (base, t1)
    lim = Limiter(10, 1)
    lim.allow_at(0.0)
    r = lim.reserve_at(0.0)  # due at 0.1
    r.cancel_at(0.1 + 1e-6)  # a microsecond late: too late, nothing back
    assert lim.tokens_at(0.1 + 1e-6) == pytest.approx(1e-5)


@pytest.mark.parametrize("base", [0.0, 0.2, T0, 1e5 + 0.2])
def test_tokens_earned_before_a_zero_limit_are_granted(base: float) -> None:
    """Go: SetLimitAt keeps the tokens earned (TestSetAfterZeroLimit the other way
    round): 100 ms at 10/s is one token, which a zero limit then grants. On a float
    clock 0.3 - 0.2 is 0.0999...8 s: the bucket held 0.999...8 tokens, and at limit 0
    that crumb was an infinite wait, so the token was refused for good."""
    lim = Limiter(10, 1)
    assert lim.allow_at(base + 0.2)
    lim.set_limit_at(base + 0.3, 0)
    assert lim.allow_at(base + 0.3)
    assert not lim.allow_at(base + 0.3)  # none is added at limit 0
    assert lim.reserve_at(base + 5).delay_from(base + 5) == INF_DURATION
    lim = Limiter(3, 1)
    assert lim.allow_at(base)
    lim.set_limit_at(base + 0.2, 0)  # 0.6 of a token: a real shortfall still counts
    assert not lim.allow_at(base + 0.2)


@pytest.mark.anyio
async def test_limiter_no_truncation_errors() -> None:
    """Go: TestLimiter_noTruncationErrors (issue 34861)."""
    assert Limiter(0.7692307692307693, 1).allow()


@pytest.mark.anyio
async def test_simultaneous_requests() -> None:
    """Go: TestSimultaneousRequests: 15 tasks race for a slow bucket of 5."""
    lim = Limiter(1, 5)
    num_ok = 0

    async def f() -> None:
        nonlocal num_ok
        await anyio.sleep(0)
        if lim.allow():
            num_ok += 1

    async with anyio.create_task_group() as tg:
        for _ in range(15):
            tg.start_soon(f)
    assert num_ok == 5


def test_long_running_qps() -> None:
    """Go: TestLongRunningQPS on Go's fake clock: about 500 requests a second for 5 s."""
    limit, burst = 100, 100
    lim = Limiter(limit, burst)
    start = now = T0
    end = start + 5
    num_ok = 0
    step = 0
    while now < end:
        if lim.allow_at(now):
            num_ok += 1
        step += 1
        now = start + step * 0.002  # Go's tt.advance(2 * time.Millisecond), without drift
    elapsed = now - start
    ideal = burst + limit * elapsed
    assert num_ok <= int(ideal + 1)  # never more than allowed
    assert num_ok >= int(0.999 * ideal)  # very close to it


# -- reserveN tables ------------------------------------------------------------------

NO_TIME = None  # Go's time.Time{} in a request that fails


def run_reserve(
    lim: Limiter, k: int, n: int, act: int | None, ok: bool, max_reserve: float = INF_DURATION
) -> Reservation:
    """Go's runReserve / runReserveMax: reserveN(t_k, n, max) must act at t_act, or fail."""
    r = lim._reserve(t(k), n, max_reserve)
    assert r.ok is ok, f"reserve(t{k}, {n}, {max_reserve}).ok = {r.ok}, want {ok}"
    if ok:
        assert act is not None
        assert d_since(r.time_to_act) == act, (
            f"reserve(t{k}, {n}) acts at t{d_since(r.time_to_act)}, want t{act}"
        )
    return r


def test_simple_reserve() -> None:
    """Go: TestSimpleReserve."""
    lim = Limiter(10, 2)
    run_reserve(lim, 0, 2, 0, True)
    run_reserve(lim, 0, 2, 2, True)
    run_reserve(lim, 3, 2, 4, True)


def test_mix() -> None:
    """Go: TestMix."""
    lim = Limiter(10, 2)
    run_reserve(lim, 0, 3, 1, False)  # n > burst
    run_reserve(lim, 0, 2, 0, True)
    run(lim, [(1, 1, 2, False)])  # not enough tokens: don't allow
    run_reserve(lim, 1, 2, 2, True)
    run(lim, [(1, -1, 1, False)])  # negative tokens: don't allow
    run(lim, [(3, 1, 1, True)])


def test_cancel_invalid() -> None:
    """Go: TestCancelInvalid: cancelling a reservation that is not ok does nothing."""
    lim = Limiter(10, 2)
    run_reserve(lim, 0, 2, 0, True)
    r = run_reserve(lim, 0, 3, 3, False)
    r.cancel_at(t(0))  # no effect
    run_reserve(lim, 0, 2, 2, True)  # did not get extra tokens


def test_cancel_last() -> None:
    """Go: TestCancelLast."""
    lim = Limiter(10, 2)
    run_reserve(lim, 0, 2, 0, True)
    r = run_reserve(lim, 0, 2, 2, True)
    r.cancel_at(t(1))  # got 2 tokens back
    run_reserve(lim, 1, 2, 2, True)


def test_cancel_too_late() -> None:
    """Go: TestCancelTooLate."""
    lim = Limiter(10, 2)
    run_reserve(lim, 0, 2, 0, True)
    r = run_reserve(lim, 0, 2, 2, True)
    r.cancel_at(t(3))  # too late to cancel: no effect
    run_reserve(lim, 3, 2, 4, True)


def test_cancel_0_tokens() -> None:
    """Go: TestCancel0Tokens."""
    lim = Limiter(10, 2)
    run_reserve(lim, 0, 2, 0, True)
    r = run_reserve(lim, 0, 1, 1, True)
    run_reserve(lim, 0, 1, 2, True)
    r.cancel_at(t(0))  # got 0 tokens back
    run_reserve(lim, 0, 1, 3, True)


def test_cancel_1_token() -> None:
    """Go: TestCancel1Token."""
    lim = Limiter(10, 2)
    run_reserve(lim, 0, 2, 0, True)
    r = run_reserve(lim, 0, 2, 2, True)
    run_reserve(lim, 0, 1, 3, True)
    r.cancel_at(t(2))  # got 1 token back
    run_reserve(lim, 2, 2, 4, True)


def test_cancel_multi() -> None:
    """Go: TestCancelMulti."""
    lim = Limiter(10, 4)
    run_reserve(lim, 0, 4, 0, True)
    ra = run_reserve(lim, 0, 3, 3, True)
    run_reserve(lim, 0, 1, 4, True)
    rc = run_reserve(lim, 0, 1, 5, True)
    rc.cancel_at(t(1))  # 1 token back
    ra.cancel_at(t(1))  # 2 tokens back, as if C was never reserved
    run_reserve(lim, 1, 3, 5, True)


def test_reserve_jump_back() -> None:
    """Go: TestReserveJumpBack, with the newer lines: a refused reservation changes nothing."""
    lim = Limiter(10, 2)
    run_reserve(lim, 1, 2, 1, True)  # start at t1
    run_reserve(lim, 0, 1, 1, True)  # should violate Limit, Burst
    run_reserve(lim, 2, 2, 3, True)
    # burst size is 2, so n=3 always fails, and the state of lim should not be changed
    run_reserve(lim, 0, 3, NO_TIME, False)
    run_reserve(lim, 2, 1, 4, True)
    # the maxReserve is not enough so it fails, and the state of lim should not be changed
    run_reserve(lim, 0, 2, NO_TIME, False, D)
    run_reserve(lim, 2, 1, 5, True)


def test_reserve_jump_back_cancel() -> None:
    """Go: TestReserveJumpBackCancel."""
    lim = Limiter(10, 2)
    run_reserve(lim, 1, 2, 1, True)  # start at t1
    r = run_reserve(lim, 1, 2, 3, True)
    run_reserve(lim, 1, 1, 4, True)
    r.cancel_at(t(0))  # cancel at t0, get 1 token back
    run_reserve(lim, 1, 2, 4, True)  # should violate Limit, Burst


def test_reserve_set_limit() -> None:
    """Go: TestReserveSetLimit."""
    lim = Limiter(5, 2)
    run_reserve(lim, 0, 2, 0, True)
    run_reserve(lim, 0, 2, 4, True)
    lim.set_limit_at(t(2), 10)
    run_reserve(lim, 2, 1, 4, True)  # violates Limit and Burst


def test_reserve_set_burst() -> None:
    """Go: TestReserveSetBurst."""
    lim = Limiter(5, 2)
    run_reserve(lim, 0, 2, 0, True)
    run_reserve(lim, 0, 2, 4, True)
    lim.set_burst_at(t(3), 4)
    run_reserve(lim, 0, 4, 9, True)  # violates Limit and Burst


def test_reserve_set_limit_cancel() -> None:
    """Go: TestReserveSetLimitCancel: a reservation is cancelled at its own limit."""
    lim = Limiter(5, 2)
    run_reserve(lim, 0, 2, 0, True)
    r = run_reserve(lim, 0, 2, 4, True)
    lim.set_limit_at(t(2), 10)
    r.cancel_at(t(2))  # 2 tokens back
    run_reserve(lim, 2, 2, 3, True)


def test_reserve_max() -> None:
    """Go: TestReserveMax."""
    lim = Limiter(10, 2)
    run_reserve(lim, 0, 2, 0, True, D)
    run_reserve(lim, 0, 1, 1, True, D)  # reserve for the close future
    run_reserve(lim, 0, 1, 2, False, D)  # time to act too far in the future


def test_inf_reservation_cancel_gives_back_its_own_tokens() -> None:
    """As Go: a reservation made under rate.Inf carries a zero limit, so cancelling it
    after the limit became finite gives back its n tokens, not a full bucket."""
    lim = Limiter(INF, 10)
    r = lim.reserve_at(t(0), 3)
    assert r.ok and r.delay_from(t(0)) == 0
    lim.set_limit_at(t(0), 10)  # from Inf: a full bucket
    assert lim.allow_at(t(0), 10)
    r.cancel_at(t(0))
    assert lim.tokens_at(t(0)) == 3


# -- TestZeroLimit, TestSetAfterZeroLimit, TestTinyLimit, TestWaitInf -------------------


@pytest.mark.anyio
async def test_zero_limit() -> None:
    """Go: TestZeroLimit."""
    r = Limiter(0, 1)
    assert r.allow(), "Limit(0, 1) want true when first used"
    assert not r.allow(), "Limit(0, 1) want false when already used"


@pytest.mark.anyio
async def test_tiny_limit() -> None:
    """Go: TestTinyLimit (issue 71154): a tiny rate allows the burst and nothing more."""
    lim = Limiter(1e-10, 1)
    assert lim.allow(), "Limit(1e-10, 1) want true when first used"
    assert not lim.allow(), "Limit(1e-10, 1) want false when already used"


# -- WaitN on Go's fake clock: trio's MockClock ------------------------------------------


class TestWaitOnMockClock:
    """Go's runWait cases: the error (or none) and the delay in multiples of d, exactly."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    async def run_wait(
        self, lim: Limiter, ctx: Context, n: int, delay: int, error: type[Exception] | None
    ) -> None:
        start = trio.current_time()
        if error is None:
            await lim.wait(n, ctx)
        else:
            with pytest.raises(error):
                await lim.wait(n, ctx)
        assert trio.current_time() - start == pytest.approx(delay * D, abs=1e-9)

    async def test_wait_simple(self) -> None:
        """Go: TestWaitSimple."""
        lim = Limiter(10, 3)
        ctx, cancel = with_cancel(background())
        cancel()
        await self.run_wait(lim, ctx, 1, 0, Canceled)  # already cancelled
        await self.run_wait(lim, background(), 4, 0, ValueError)  # exceeds the burst
        await self.run_wait(lim, background(), 2, 0, None)  # act now
        await self.run_wait(lim, background(), 3, 2, None)  # act later

    async def test_wait_cancel(self) -> None:
        """Go: TestWaitCancel: cancelled after d, the 3 tokens come back."""
        lim = Limiter(10, 3)
        ctx, cancel = with_cancel(background())
        await self.run_wait(lim, ctx, 2, 0, None)  # after this, 1 token
        async with anyio.create_task_group() as tg:

            async def cancel_after_d() -> None:
                await trio.sleep(D)
                cancel()

            tg.start_soon(cancel_after_d)
            await self.run_wait(lim, ctx, 3, 1, Canceled)
        assert lim.tokens() == pytest.approx(2)  # 1 + 1 refilled - 3 booked + 3 back
        await self.run_wait(lim, background(), 2, 0, None)  # act now after the cancel

    async def test_wait_timeout(self) -> None:
        """Go: TestWaitTimeout: a wait the deadline cannot cover fails at once."""
        lim = Limiter(10, 3)
        ctx, cancel = with_timeout(background(), D)
        await self.run_wait(lim, ctx, 2, 0, None)
        await self.run_wait(lim, ctx, 3, 0, DeadlineExceeded)
        assert lim.tokens() == pytest.approx(1)  # the refused wait took nothing
        cancel()

    async def test_wait_inf(self) -> None:
        """Go: TestWaitInf: an infinite limit ignores the burst."""
        await self.run_wait(Limiter(INF, 0), background(), 3, 0, None)

    async def test_set_after_zero_limit(self) -> None:
        """Go: TestSetAfterZeroLimit: 10/s after a zero limit: the next token in d."""
        lim = Limiter(0, 1)
        assert lim.allow(), "Limit(0, 1) want true when first used"
        assert not lim.allow(), "Limit(0, 1) want false when already used"
        lim.set_limit(10)
        await self.run_wait(lim, background(), 1, 1, None)

    async def test_long_running_qps_with_tasks(self) -> None:
        """Go: TestLongRunningQPS, the pre-fake-clock version: a task offered every 2 ms
        for 5 s, each calling allow() once."""
        limit, burst = 100, 100
        lim = Limiter(limit, burst)
        num_ok = 0

        async def f() -> None:
            nonlocal num_ok
            if lim.allow():
                num_ok += 1

        start = trio.current_time()
        async with anyio.create_task_group() as tg:
            while trio.current_time() < start + 5:
                tg.start_soon(f)
                await trio.sleep(0.002)
        ideal = burst + limit * (trio.current_time() - start)
        assert int(0.999 * ideal) <= num_ok <= int(ideal + 1)

    async def test_allow_every_period_on_the_virtual_clock(self) -> None:
        """allow() every 100 ms on a 10/s limiter: always granted (Go's integer
        nanoseconds), though the virtual clock's sums are rounded (0.7999...9)."""
        lim = Limiter(10, 1)
        got = []
        for _ in range(30):
            got.append(lim.allow())
            await trio.sleep(D)
        assert got == [True] * 30

    async def test_reserve_max_is_the_ctx_deadline(self) -> None:
        """Go: TestReserveMax through WaitN: the deadline is the most it may wait."""
        lim = Limiter(10, 2)
        ctx, cancel = with_timeout(background(), D)
        await self.run_wait(lim, ctx, 2, 0, None)
        await self.run_wait(lim, ctx, 1, 1, None)  # exactly at the deadline: allowed
        ctx2, cancel2 = with_timeout(background(), D)
        lim2 = Limiter(10, 2)
        lim2.allow(2)
        lim2.reserve(1)
        await self.run_wait(lim2, ctx2, 1, 0, DeadlineExceeded)  # 2 d away: refused
        cancel()
        cancel2()

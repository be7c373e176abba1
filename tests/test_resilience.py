"""asyncgo.resilience: CircuitBreaker and retry, on every backend and on trio's MockClock."""

from __future__ import annotations

import math
import random
import time as _time

import anyio
import pytest
import trio
import trio.testing

from asyncgo import background, with_cancel, with_timeout
from asyncgo._exceptions import Canceled, DeadlineExceeded
from asyncgo.resilience import Backoff, CircuitBreaker, CircuitOpen, State, retry

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


async def boom() -> None:
    raise Boom("boom")


async def ok() -> str:
    return "ok"


def st(b: CircuitBreaker) -> State:
    return b.state  # a call, so mypy does not narrow the property across awaits


# -- circuit breaker, real time on every backend ---------------------------------


async def test_breaker_state_machine() -> None:
    changes: list[tuple[State, State]] = []
    b = CircuitBreaker(
        failure_threshold=2,
        window=10,
        recovery_time=0.1,
        success_threshold=2,
        half_open_max_calls=2,
        on_state_change=lambda old, new: changes.append((old, new)),
        name="db",
    )
    assert await b.call(ok) == "ok"
    with pytest.raises(Boom):
        await b.call(boom)
    assert st(b) is State.CLOSED
    with pytest.raises(Boom):
        await b.call(boom)
    assert st(b) is State.OPEN
    with pytest.raises(CircuitOpen, match=r"^circuit breaker 'db' is open; a probe is allowed in"):
        await b.call(ok)
    await anyio.sleep(0.11)
    assert st(b) is State.HALF_OPEN
    assert await b.call(ok) == "ok"
    assert st(b) is State.HALF_OPEN  # one success of two
    assert await b.call(ok) == "ok"
    assert st(b) is State.CLOSED
    assert changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    s = b.stats()
    assert (s.state, s.calls, s.successes, s.failures, s.rejected, s.opened) == (
        State.CLOSED,
        5,
        3,
        2,
        1,
        1,
    )


async def test_failed_probe_reopens() -> None:
    b = CircuitBreaker(failure_threshold=1, recovery_time=0.1)
    with pytest.raises(Boom):
        await b.call(boom)
    await anyio.sleep(0.11)
    with pytest.raises(Boom):
        await b.call(boom)  # the probe fails
    assert st(b) is State.OPEN
    assert b.stats().opened == 2


async def test_failures_outside_window_do_not_count() -> None:
    b = CircuitBreaker(failure_threshold=2, window=0.02)
    with pytest.raises(Boom):
        await b.call(boom)
    await anyio.sleep(0.04)
    with pytest.raises(Boom):
        await b.call(boom)
    assert st(b) is State.CLOSED
    assert b.stats().recent_failures == 1


async def test_which_exceptions_count() -> None:
    b = CircuitBreaker(failure_threshold=1, failure_on=(Boom, OSError), ignore=FileNotFoundError)
    with pytest.raises(ValueError, match="x"):
        async with b:
            raise ValueError("x")
    with pytest.raises(FileNotFoundError):
        async with b:
            raise FileNotFoundError
    assert st(b) is State.CLOSED
    with pytest.raises(ConnectionError):
        async with b:
            raise ConnectionError
    assert st(b) is State.OPEN


async def test_half_open_lets_only_n_probes_through() -> None:
    b = CircuitBreaker(failure_threshold=1, recovery_time=0.01, half_open_max_calls=2)
    with pytest.raises(Boom):
        await b.call(boom)
    await anyio.sleep(0.02)
    release = anyio.Event()
    entered: list[int] = []
    refused: list[int] = []

    async def probe(i: int) -> None:
        try:
            async with b:
                entered.append(i)
                await release.wait()
        except CircuitOpen as e:
            assert e.retry_after == 0
            refused.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(probe, i)
        await anyio.wait_all_tasks_blocked()
        assert len(entered) == 2
        assert len(refused) == 4
        release.set()
    assert st(b) is State.CLOSED


async def test_decorator_and_stale_generation() -> None:
    b = CircuitBreaker(failure_threshold=1, recovery_time=60)
    gate = anyio.Event()

    @b
    async def slow() -> str:
        await gate.wait()
        return "late"

    results: list[str] = []

    async def run_slow() -> None:
        results.append(await slow())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_slow)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(Boom):
            await b.call(boom)  # opens
        gate.set()
    assert results == ["late"]
    assert st(b) is State.OPEN  # the slow success from the closed state changes nothing
    b.reset()
    assert st(b) is State.CLOSED


async def test_cancellation_counts_as_nothing() -> None:
    b = CircuitBreaker(failure_threshold=1, recovery_time=0.01)
    with pytest.raises(Boom):
        await b.call(boom)
    await anyio.sleep(0.02)
    with anyio.move_on_after(0.01):
        await b.call(anyio.sleep, 1)  # a probe, cancelled: frees its slot
    assert st(b) is State.HALF_OPEN
    assert await b.call(ok) == "ok"
    assert st(b) is State.CLOSED


async def test_breaker_misuse() -> None:
    with pytest.raises(ValueError, match=r"^CircuitBreaker\(failure_threshold=0\): must be at"):
        CircuitBreaker(failure_threshold=0)
    for window in (0, 0.0, -1, -0.5, math.nan):
        with pytest.raises(ValueError, match=r"^CircuitBreaker\(window=.*\): must be positive"):
            CircuitBreaker(window=window)
    with pytest.raises(TypeError, match=r"^CircuitBreaker\(window='10'\): takes a number"):
        CircuitBreaker(window="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^CircuitBreaker\(window=True\): takes a number"):
        CircuitBreaker(window=True)
    for recovery_time in (-1, math.nan):
        with pytest.raises(
            ValueError, match=r"^CircuitBreaker\(recovery_time=.*\): must be >= 0 seconds$"
        ):
            CircuitBreaker(recovery_time=recovery_time)
    with pytest.raises(TypeError, match=r"^CircuitBreaker\(recovery_time=None\): takes a"):
        CircuitBreaker(recovery_time=None)  # type: ignore[arg-type]
    CircuitBreaker(recovery_time=0)  # half-open at once: allowed
    with pytest.raises(RuntimeError, match="__aexit__ without __aenter__"):
        await CircuitBreaker().__aexit__(None, None, None)


def test_backoff_validation() -> None:
    """Bad Backoff options fail when it is made, naming the option and the rule."""
    bad: list[tuple[dict[str, object], str]] = [
        ({"initial": -5}, r"^Backoff\(initial=-5\): must be >= 0 seconds and finite$"),
        ({"initial": math.inf}, r"^Backoff\(initial=inf\): must be >= 0 seconds and finite$"),
        ({"initial": math.nan}, r"^Backoff\(initial=nan\): must be >= 0"),
        ({"multiplier": 0.5}, r"^Backoff\(multiplier=0.5\): must be >= 1 and finite"),
        ({"multiplier": 0}, r"^Backoff\(multiplier=0\): must be >= 1"),
        ({"multiplier": -2}, r"^Backoff\(multiplier=-2\): must be >= 1"),
        ({"multiplier": math.inf}, r"^Backoff\(multiplier=inf\): must be >= 1 and finite"),
        (
            {"initial": 2.0, "maximum": 1.0},
            r"^Backoff\(maximum=1.0\): must be >= initial \(2.0\) and finite$",
        ),
        ({"maximum": -1}, r"^Backoff\(maximum=-1\): must be >= initial"),
        ({"maximum": math.inf}, r"^Backoff\(maximum=inf\): must be >= initial \(0.1\) and"),
        ({"maximum": math.nan}, r"^Backoff\(maximum=nan\): must be >= initial"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            Backoff(**kwargs)  # type: ignore[arg-type]
    wrong_type: list[tuple[dict[str, object], str]] = [
        ({"initial": "1"}, r"^Backoff\(initial='1'\): takes a number of seconds, not str$"),
        ({"maximum": None}, r"^Backoff\(maximum=None\): takes a number of seconds"),
        ({"initial": True}, r"^Backoff\(initial=True\): takes a number of seconds, not bool"),
        ({"multiplier": "2"}, r"^Backoff\(multiplier='2'\): takes a number, not str$"),
        ({"jitter": 1}, r"^Backoff\(jitter=1\): takes a bool, not int$"),
    ]
    for kwargs, message in wrong_type:
        with pytest.raises(TypeError, match=message):
            Backoff(**kwargs)  # type: ignore[arg-type]


def test_backoff_edges_allowed() -> None:
    assert [Backoff(initial=0, jitter=False).delay(i) for i in (1, 5)] == [0, 0]
    constant = Backoff(initial=0.5, maximum=0.5, multiplier=1, jitter=False)
    assert [constant.delay(i) for i in (1, 2, 10)] == [0.5, 0.5, 0.5]
    assert Backoff(initial=1, maximum=3, multiplier=3, jitter=False).delay(2) == 3
    assert Backoff(initial=0.1, maximum=1.0, jitter=False).delay(1) == 0.1


def test_backoff_many_retries_stay_at_the_maximum() -> None:
    """multiplier ** (retry - 1) overflows a float past retry 1024: the cap is the maximum."""
    steady = Backoff(initial=0.1, maximum=10.0, jitter=False)
    assert [steady.delay(i) for i in (1024, 1025, 1100, 10**6)] == [10.0] * 4
    assert 0 <= Backoff(maximum=2.0).delay(10**9) <= 2.0
    assert Backoff(initial=0, jitter=False).delay(10**6) == 0


# -- retry, real time on every backend -------------------------------------------


async def test_retry_past_a_thousand_attempts() -> None:
    """The backoff of retry 1025+ used to raise OverflowError instead of retrying."""
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise Boom("down")

    tiny = Backoff(initial=1e-7, maximum=1e-7, jitter=False)
    with pytest.raises(Boom) as info:
        await retry(fail, attempts=1100, backoff=tiny, retry_on=Boom)
    assert calls == 1100
    assert info.value.__notes__ == ["retry: gave up after 1100 attempts"]


async def test_retry_until_success() -> None:
    calls = 0

    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Boom
        return x * 2

    t0 = _time.perf_counter()
    assert await retry(flaky, 21, attempts=5, backoff=Backoff(initial=0.005)) == 42
    assert calls == 3
    assert _time.perf_counter() - t0 < 1.0


async def test_retry_gives_up_with_note() -> None:
    calls = 0

    @retry(attempts=3, backoff=lambda i: 0.001)
    async def always() -> None:
        nonlocal calls
        calls += 1
        raise Boom(f"try {calls}")

    with pytest.raises(Boom, match="^try 3") as info:
        await always()
    assert info.value.__notes__ == ["retry: gave up after 3 attempts"]


async def test_retry_only_retry_on() -> None:
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("k")

    with pytest.raises(KeyError):
        await retry(bad, attempts=5, retry_on=Boom, backoff=lambda i: 0)
    assert calls == 1
    with pytest.raises(ValueError, match=r"^retry\(attempts=0\): must be at least 1$"):
        retry(attempts=0)


async def test_retry_stops_before_deadline_real_time() -> None:
    ctx, cancel = with_timeout(background(), 0.05)
    t0 = _time.perf_counter()
    with pytest.raises(Boom) as info:
        await retry(boom, attempts=100, backoff=Backoff(initial=0.02, jitter=False), ctx=ctx)
    assert _time.perf_counter() - t0 < 0.5
    assert "would pass the context deadline" in info.value.__notes__[0]
    cancel()


# -- on trio's virtual clock: exact times ----------------------------------------


class TestMockClock:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}

    async def test_retry_backoff_timing(self) -> None:
        times: list[float] = []
        t0 = trio.current_time()

        async def fail() -> None:
            times.append(trio.current_time() - t0)
            raise Boom

        with pytest.raises(Boom):
            await retry(fail, attempts=6, backoff=Backoff(1.0, maximum=5.0, jitter=False))
        assert times == pytest.approx([0, 1, 3, 7, 12, 17])

    async def test_retry_full_jitter_bounds(self) -> None:
        times: list[float] = []
        t0 = trio.current_time()

        async def fail() -> None:
            times.append(trio.current_time() - t0)
            raise Boom

        rng = random.Random(7)
        with pytest.raises(Boom):
            await retry(fail, attempts=8, backoff=Backoff(1.0, maximum=8.0, rng=rng))
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        caps = [1, 2, 4, 8, 8, 8, 8]
        assert all(0 <= g <= c for g, c in zip(gaps, caps, strict=True))
        assert len(set(gaps)) == len(gaps)  # jittered, not fixed

    async def test_retry_never_sleeps_past_deadline(self) -> None:
        ctx, cancel = with_timeout(background(), 10.0)
        t0 = trio.current_time()
        times: list[float] = []

        async def fail() -> None:
            times.append(trio.current_time() - t0)
            raise Boom

        with pytest.raises(Boom) as info:
            await retry(fail, attempts=10, backoff=Backoff(1.0, jitter=False), ctx=ctx)
        # sleeps 1, 2, 4 (t=7); the next 8 would end at 15 > 10: give up at once at t=7
        assert times == pytest.approx([0, 1, 3, 7])
        assert trio.current_time() - t0 == pytest.approx(7)
        assert info.value.__notes__ == [
            "retry: gave up after 4 of 10 attempts: the next backoff (8 s) would pass "
            "the context deadline"
        ]
        cancel()

    async def test_retry_ctx_cancelled_during_backoff(self) -> None:
        ctx, cancel = with_cancel(background())

        async def cancel_later() -> None:
            await trio.sleep(0.5)
            cancel()

        async with trio.open_nursery() as n:
            n.start_soon(cancel_later)
            with pytest.raises(Canceled):
                await retry(boom, attempts=3, backoff=Backoff(1.0, jitter=False), ctx=ctx)
        with pytest.raises(Canceled):
            await retry(ok, ctx=ctx)  # already done: no attempt

    async def test_retry_deadline_during_attempt(self) -> None:
        ctx, cancel = with_timeout(background(), 1.0)

        async def slow() -> None:
            await trio.sleep(2)

        with pytest.raises(DeadlineExceeded):
            with ctx.scope():
                await retry(slow, ctx=ctx)
        cancel()

    async def test_breaker_tiny_window_still_opens(self) -> None:
        """Failures at the same instant all count, however small the window."""
        b = CircuitBreaker(failure_threshold=3, window=1e-9)
        for _ in range(3):
            with pytest.raises(Boom):
                await b.call(boom)
        assert st(b) is State.OPEN

    async def test_breaker_infinite_window_never_forgets(self) -> None:
        b = CircuitBreaker(failure_threshold=3, window=math.inf, recovery_time=1.0)
        for _ in range(2):
            with pytest.raises(Boom):
                await b.call(boom)
            await trio.sleep(10**6)  # far apart: still counted
        assert st(b) is State.CLOSED and b.stats().recent_failures == 2
        with pytest.raises(Boom):
            await b.call(boom)
        assert st(b) is State.OPEN
        await trio.sleep(1.0)
        assert await b.call(ok) == "ok"  # the probe closes it: the count starts over
        assert b.stats().recent_failures == 0

    async def test_breaker_recovery_time_exact(self) -> None:
        b = CircuitBreaker(failure_threshold=3, window=1.0, recovery_time=30.0)
        for _ in range(2):
            with pytest.raises(Boom):
                await b.call(boom)
        await trio.sleep(1.0)  # the two failures leave the window
        with pytest.raises(Boom):
            await b.call(boom)
        assert st(b) is State.CLOSED
        for _ in range(2):
            with pytest.raises(Boom):
                await b.call(boom)
        assert st(b) is State.OPEN
        await trio.sleep(29.999)
        with pytest.raises(CircuitOpen) as info:
            await b.call(ok)
        assert info.value.retry_after == pytest.approx(0.001)
        await trio.sleep(0.001)
        assert st(b) is State.HALF_OPEN

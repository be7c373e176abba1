"""asyncgo.resilience: CircuitBreaker and retry, on every backend and on trio's MockClock."""

from __future__ import annotations

import contextlib
import math
import random
import re
import time as _time
import traceback
from fractions import Fraction

import anyio
import pytest
import trio
import trio.testing

from asyncgo import background, resilience, with_cancel, with_cancel_cause, with_timeout
from asyncgo._exceptions import Canceled, DeadlineExceeded
from asyncgo.resilience import Backoff, BreakerStats, CircuitBreaker, CircuitOpen, State, retry
from asyncgo.time import sleep as asyncgo_sleep

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
        recovery_time=0.5,  # (0.1 s: a stall of a loaded machine could half-open it early)
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
    await anyio.sleep(0.51)
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
    changes: list[tuple[State, State]] = []
    b = CircuitBreaker(
        failure_threshold=1,
        recovery_time=0.1,
        on_state_change=lambda old, new: changes.append((old, new)),
    )
    with pytest.raises(Boom):
        await b.call(boom)
    await anyio.sleep(0.11)
    with pytest.raises(Boom):
        await b.call(boom)  # the probe fails
    # (The transitions as they happened, not st(b): a stall of a loaded machine of
    # recovery_time before that read would show the next HALF_OPEN already.)
    assert changes[:3] == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.OPEN),
    ]
    assert b.stats().opened == 2


async def test_state_change_callback_reading_the_breaker_is_not_reentered() -> None:
    """A callback that reads the breaker (metrics) past the recovery time makes the
    next transition: it is told after the first call returns, not nested inside it
    (soak 3: with recovery_time=0 the OPEN -> HALF_OPEN call ran inside, and finished
    before, the CLOSED -> OPEN one)."""
    log: list[str] = []
    depth = 0

    def on_change(old: State, new: State) -> None:
        nonlocal depth
        depth += 1
        log.append(f"{old.name}->{new.name} in {watched.stats().state.name} depth {depth}")
        depth -= 1

    b = watched = CircuitBreaker(failure_threshold=1, recovery_time=0, on_state_change=on_change)
    with pytest.raises(Boom):
        await b.call(boom)
    assert log == ["CLOSED->OPEN in HALF_OPEN depth 1", "OPEN->HALF_OPEN in HALF_OPEN depth 1"]
    assert await b.call(ok) == "ok"  # the probe closes it; the callback still works
    assert log[2:] == ["HALF_OPEN->CLOSED in CLOSED depth 1"]

    def fails(old: State, new: State) -> None:
        log.append(f"{old.name}->{new.name}")
        if new is State.OPEN:
            watched.state  # noqa: B018  (recovery_time=0: makes OPEN -> HALF_OPEN, told next)
            raise RuntimeError("metrics down")

    b2 = watched = CircuitBreaker(failure_threshold=1, recovery_time=0, on_state_change=fails)
    log.clear()
    with pytest.raises(RuntimeError, match="metrics down"):
        await b2.call(boom)  # the callback's error reaches the call, as before...
    assert log == ["CLOSED->OPEN", "OPEN->HALF_OPEN"]  # ...once every transition was told
    assert b2.state is State.HALF_OPEN
    assert await b2.call(ok) == "ok"
    assert log[2:] == ["HALF_OPEN->CLOSED"]


async def test_failures_outside_window_do_not_count() -> None:
    b = CircuitBreaker(failure_threshold=2, window=0.02)
    with pytest.raises(Boom):
        await b.call(boom)
    await anyio.sleep(0.04)
    with pytest.raises(Boom):
        await b.call(boom)
    assert st(b) is State.CLOSED
    # (Not `== 1`: the second failure leaves the 20 ms window too if the process is
    # descheduled for 20 ms before stats() reads the clock -- a loaded CI machine.
    # A stall only makes more failures leave it, never fewer. The exact count is
    # asserted on the virtual clock: TestMockClock.test_failures_outside_window_do_not_count.)
    assert b.stats().recent_failures <= 1


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


async def test_probes_of_an_earlier_half_open_state_keep_their_slots() -> None:
    """``half_open_max_calls`` bounds the probes in flight whatever half-open state let
    them in: a probe still running when another probe's failure reopened the breaker
    keeps its slot in the next half-open state. (gobreaker counts per generation; the
    docs promise at most that many probes at once, which protects a recovering
    dependency.) Three ran at once here before (found by a fuzzer)."""
    b = CircuitBreaker(
        failure_threshold=1, recovery_time=0, half_open_max_calls=2, failure_on=ConnectionError
    )
    running = peak = 0
    release = anyio.Event()

    async def probe(fail: bool) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            if fail:
                raise ConnectionError("down")
            await release.wait()
        finally:
            running -= 1

    async def call(fail: bool) -> None:
        with contextlib.suppress(ConnectionError, CircuitOpen):
            await b.call(probe, fail)

    await call(True)  # open, and half-open at once (recovery 0)
    assert st(b) is State.HALF_OPEN
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, False)  # probe 1: stays in flight
        await anyio.wait_all_tasks_blocked()
        await call(True)  # probe 2 fails: open, then half-open again
        assert st(b) is State.HALF_OPEN
        for _ in range(3):
            tg.start_soon(call, False)  # one more slot only: probe 1 holds the other
        await anyio.wait_all_tasks_blocked()
        assert (running, peak) == (2, 2)
        assert b.stats().rejected == 2
        release.set()
    assert st(b) is State.CLOSED
    # every slot came back: two probes at once again after the next failure
    await call(True)
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(call, False)
        await anyio.wait_all_tasks_blocked()
        assert running == 2
        release.set()


async def test_decorators_pass_keyword_arguments_on() -> None:
    # @breaker and @retry(...) keep the signature: defaults, names and keyword-only
    # parameters work through the wrapper, as inspect.signature() says they do.
    import inspect

    b = CircuitBreaker(failure_threshold=2, recovery_time=60)
    calls: list[tuple[str, int, str]] = []

    @b
    async def order(sku: str, qty: int = 1, *, tag: str = "") -> int:
        calls.append((sku, qty, tag))
        return qty

    tries: list[float] = []

    @retry(attempts=3, backoff=lambda i: 0.0, retry_on=ConnectionError)
    async def put(url: str, *, timeout: float = 1.0) -> str:
        tries.append(timeout)
        if len(tries) < 2:
            raise ConnectionError("again")
        return f"{url} {timeout}"

    assert await order("a") == 1
    assert await order(sku="b", qty=2, tag="x") == 2
    assert await b.call(order, "c", tag="y") == 1
    assert await b.call(order, "d", qty=3) == 3
    assert calls == [("a", 1, ""), ("b", 2, "x"), ("c", 1, "y"), ("d", 3, "")]
    assert b.stats().successes == 6  # (b.call(order, ...) goes through b twice)
    assert await put("u", timeout=2.5) == "u 2.5"
    assert tries == [2.5, 2.5]  # the keyword reached every attempt
    with pytest.raises(TypeError, match="unexpected keyword argument 'qty2'"):
        await order("e", qty2=1)  # type: ignore[call-arg]
    assert st(b) is State.CLOSED  # (one failure: the threshold is 2)
    sig = "(sku: 'str', qty: 'int' = 1, *, tag: 'str' = '') -> 'int'"
    assert str(inspect.signature(order)) == sig
    assert str(inspect.signature(put)) == "(url: 'str', *, timeout: 'float' = 1.0) -> 'str'"


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


# -- circuit breaker, rate mode (failure_rate=): every backend, on a fake clock -----


class FakeClock:
    """Replaces the event loop's clock in asyncgo.resilience, so that window and
    recovery times are exact on asyncio, uvloop and trio alike (trio's MockClock
    runs on trio only). A test that takes it and never advances it runs with the
    breaker's time standing still: every call lands in the window."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(resilience, "current_time", fake)
    monkeypatch.setattr(resilience, "asyncio_loop", lambda: None)  # no loop-clock fast path
    return fake


async def outcomes(b: CircuitBreaker, pattern: str) -> None:
    """One call through *b* per letter: "s" succeeds, "f" fails (a counted Boom)."""
    for letter in pattern:
        if letter == "s":
            assert await b.call(ok) == "ok"
        else:
            with pytest.raises(Boom):
                await b.call(boom)


def window_of(b: CircuitBreaker) -> tuple[State, int | None, int]:
    s = b.stats()
    return s.state, s.recent_calls, s.recent_failures


async def test_rate_opens_at_exactly_the_rate(clock: FakeClock) -> None:
    """Hystrix's 50 % over at least 10 calls: 5 failures in 10 calls is enough."""
    b = CircuitBreaker(failure_rate=0.5, min_calls=10, recovery_time=5)
    await outcomes(b, "sssss" + "ffff")
    assert window_of(b) == (State.CLOSED, 9, 4)
    with pytest.raises(Boom):
        await b.call(boom)  # 5 of 10: exactly the rate
    assert window_of(b) == (State.OPEN, 10, 5)
    with pytest.raises(CircuitOpen):
        await b.call(ok)
    assert b.stats().opened == 1


async def test_rate_success_reaching_min_calls_opens(clock: FakeClock) -> None:
    """The rate is checked as each call completes: a success can bring the calls to
    min_calls with the rate still reached (resilience4j does the same)."""
    b = CircuitBreaker(failure_rate=0.5, min_calls=10)
    await outcomes(b, "fffff" + "ssss")
    assert window_of(b) == (State.CLOSED, 9, 5)
    assert await b.call(ok) == "ok"  # 5 of 10 calls failed
    assert st(b) is State.OPEN


async def test_rate_stays_closed_below_min_calls(clock: FakeClock) -> None:
    """Every call failed, but fewer than min_calls completed: 1 failure in 1 call is no rate."""
    b = CircuitBreaker(failure_rate=0.5, min_calls=10)
    await outcomes(b, "f" * 9)
    assert window_of(b) == (State.CLOSED, 9, 9)
    with pytest.raises(Boom):
        await b.call(boom)  # the 10th call
    assert st(b) is State.OPEN

    single = CircuitBreaker(failure_rate=1.0, min_calls=1)  # the smallest volume
    await outcomes(single, "s")
    assert st(single) is State.CLOSED
    with pytest.raises(Boom):
        await single.call(boom)  # 1 of 2 failed: below 100 %
    assert st(single) is State.CLOSED


async def test_rate_stays_closed_below_the_rate(clock: FakeClock) -> None:
    b = CircuitBreaker(failure_rate=0.5, min_calls=10)
    await outcomes(b, "ssf" * 30)  # a third of 90 calls
    assert window_of(b) == (State.CLOSED, 90, 30)

    close = CircuitBreaker(failure_rate=0.5, min_calls=10)
    await outcomes(close, "sfsfsfsfss")
    assert window_of(close) == (State.CLOSED, 10, 4)
    await outcomes(close, "f")
    assert window_of(close) == (State.CLOSED, 11, 5)  # 45 %
    await outcomes(close, "f")
    assert st(close) is State.OPEN  # 6 of 12


@pytest.mark.parametrize(
    ("rate", "failures", "calls"),
    [(0.28, 7, 25), (0.1, 3, 30), (1 / 3, 1, 3), (0.7, 7, 10), (1, 4, 4)],
)
async def test_rate_is_compared_exactly(
    clock: FakeClock, rate: float, failures: int, calls: int
) -> None:
    """failures / calls == rate opens it, whatever the float rounding of rate * calls
    (0.28 * 25 == 7.000000000000001 > 7)."""
    b = CircuitBreaker(failure_rate=rate, min_calls=calls)
    await outcomes(b, "s" * (calls - failures) + "f" * (failures - 1))
    assert st(b) is State.CLOSED
    await outcomes(b, "f")
    assert st(b) is State.OPEN


async def test_rate_window_forgets_old_outcomes(clock: FakeClock) -> None:
    b = CircuitBreaker(failure_rate=0.5, min_calls=4, window=10)
    await outcomes(b, "fff")
    clock.advance(9.75)
    assert window_of(b) == (State.CLOSED, 3, 3)  # still within the window
    clock.advance(0.25)
    assert window_of(b) == (State.CLOSED, 0, 0)  # 10 s old: gone
    await outcomes(b, "f")
    assert window_of(b) == (State.CLOSED, 1, 1)  # would be 4 of 4 with the old ones

    # Successes leave the window too, raising the rate of what is left.
    b = CircuitBreaker(failure_rate=0.5, min_calls=4, window=10)
    await outcomes(b, "ssssss")
    clock.advance(5)
    await outcomes(b, "fff")
    assert window_of(b) == (State.CLOSED, 9, 3)
    clock.advance(5)  # the successes leave
    assert window_of(b) == (State.CLOSED, 3, 3)
    await outcomes(b, "f")  # 4 of 4 (4 of 10 if the successes had stayed)
    assert st(b) is State.OPEN


async def test_rate_memory_stays_bounded_by_the_window(clock: FakeClock) -> None:
    b = CircuitBreaker(failure_rate=0.5, window=10)
    for _ in range(1000):
        await outcomes(b, "s")
        clock.advance(1)
    # Look at the store itself: stats() prunes it before counting.
    kept = b._recent_ok._times
    assert kept is not None and len(kept) == 10  # the last call pruned all but 10
    assert window_of(b) == (State.CLOSED, 9, 0)

    # math.inf: nothing ever leaves the window, so only counts are kept.
    forever = CircuitBreaker(failure_rate=0.5, min_calls=10, window=math.inf)
    for _ in range(1000):
        await outcomes(forever, "s")
        clock.advance(10**6)
    await outcomes(forever, "f" * 999)
    assert forever._recent_ok._times is None and forever._recent._times is None
    assert window_of(forever) == (State.CLOSED, 1999, 999)
    await outcomes(forever, "f")  # 1000 of 2000
    assert st(forever) is State.OPEN


async def test_rate_neutral_exceptions_count_as_neither(clock: FakeClock) -> None:
    """Exceptions outside failure_on, or in ignore, are neither successes nor failures."""
    b = CircuitBreaker(
        failure_rate=0.75, min_calls=4, failure_on=(Boom, OSError), ignore=FileNotFoundError
    )

    async def missing() -> None:
        raise FileNotFoundError("gone")  # an OSError, but ignored

    await outcomes(b, "ff")
    for _ in range(5):
        with pytest.raises(ValueError, match="x"):
            async with b:
                raise ValueError("x")
        with pytest.raises(FileNotFoundError):
            await b.call(missing)
    assert window_of(b) == (State.CLOSED, 2, 2)  # as failures: 4 of 4 opened it
    await outcomes(b, "s")
    assert window_of(b) == (State.CLOSED, 3, 2)
    await outcomes(b, "f")  # 3 of 4 (3 of 14 if they counted as successes)
    assert st(b) is State.OPEN


async def test_rate_cancellation_counts_as_neither(clock: FakeClock) -> None:
    b = CircuitBreaker(failure_rate=0.75, min_calls=4)
    await outcomes(b, "ff")
    for _ in range(5):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await b.call(anyio.sleep, 1)  # cancelled at once
        assert scope.cancelled_caught
        with anyio.CancelScope() as scope:
            scope.cancel()
            async with b:
                await anyio.sleep(1)
        assert scope.cancelled_caught
    assert window_of(b) == (State.CLOSED, 2, 2)
    await outcomes(b, "s")
    assert window_of(b) == (State.CLOSED, 3, 2)
    await outcomes(b, "f")  # 3 of 4 (3 of 14 if they counted as successes)
    assert st(b) is State.OPEN


async def test_rate_stale_generation_does_not_count(clock: FakeClock) -> None:
    """Calls that started before the breaker opened and closed again do not count in
    the new window: counted, their failure and success (1 of 2) would reopen it."""
    b = CircuitBreaker(failure_rate=0.5, min_calls=2, recovery_time=30)
    gate = anyio.Event()
    finished: list[str] = []

    async def slow(fail: bool) -> None:
        try:
            async with b:
                await gate.wait()
                if fail:
                    raise Boom
        except Boom:
            finished.append("failed")
        else:
            finished.append("returned")

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow, True)
        tg.start_soon(slow, False)
        await anyio.wait_all_tasks_blocked()
        await outcomes(b, "ff")
        assert st(b) is State.OPEN
        clock.advance(30)
        await outcomes(b, "s")  # the probe closes it: a new generation
        assert window_of(b) == (State.CLOSED, 0, 0)
        gate.set()
    assert sorted(finished) == ["failed", "returned"]
    assert window_of(b) == (State.CLOSED, 0, 0)


async def test_rate_half_open_after_recovery(clock: FakeClock) -> None:
    changes: list[tuple[State, State]] = []
    b = CircuitBreaker(
        failure_rate=0.5,
        min_calls=4,
        recovery_time=30,
        success_threshold=2,
        on_state_change=lambda old, new: changes.append((old, new)),
    )
    await outcomes(b, "sff")
    assert st(b) is State.CLOSED
    await outcomes(b, "f")  # 3 of 4
    assert st(b) is State.OPEN
    clock.advance(29.5)
    with pytest.raises(CircuitOpen) as info:
        await b.call(ok)
    assert info.value.retry_after == 0.5
    clock.advance(0.5)
    assert st(b) is State.HALF_OPEN
    await outcomes(b, "s")
    assert st(b) is State.HALF_OPEN  # 1 of 2 probes
    await outcomes(b, "s")
    assert window_of(b) == (State.CLOSED, 0, 0)  # closing starts a new window
    await outcomes(b, "fff")  # the old 3 of 4 are forgotten: 3 calls are too few
    assert st(b) is State.CLOSED
    await outcomes(b, "f")
    assert st(b) is State.OPEN
    clock.advance(30)
    await outcomes(b, "f")  # a failed probe reopens it
    assert st(b) is State.OPEN
    assert b.stats().opened == 3
    closed, open_, half_open = State.CLOSED, State.OPEN, State.HALF_OPEN
    assert changes == [
        (closed, open_),
        (open_, half_open),
        (half_open, closed),
        (closed, open_),
        (open_, half_open),
        (half_open, open_),
    ]


async def test_count_mode_is_unchanged() -> None:
    """failure_threshold=None (the default) is 5; count mode keeps no successes."""
    for b in (CircuitBreaker(), CircuitBreaker(failure_threshold=None)):
        await outcomes(b, "s" * 20 + "ffff")
        assert window_of(b) == (State.CLOSED, None, 4)
        await outcomes(b, "f")
        assert st(b) is State.OPEN
    old_style = BreakerStats(State.CLOSED, 1, 1, 0, 0, 0, 0)  # built before recent_calls
    assert old_style.recent_calls is None


def test_rate_misuse() -> None:
    """Bad rate-mode options fail when the breaker is made, naming the option and the rule."""
    with pytest.raises(
        ValueError,
        match=r"^CircuitBreaker\(failure_threshold=5, failure_rate=0\.5\): pass one or the "
        r"other \(failure_threshold: a count of failures; failure_rate: a fraction of the "
        r"calls\)$",
    ):
        CircuitBreaker(failure_threshold=5, failure_rate=0.5)
    for rate in (0, 0.0, -0.5, 1.5, 50, math.nan, math.inf):
        with pytest.raises(
            ValueError,
            match=rf"^CircuitBreaker\(failure_rate={rate}\): must be in \(0, 1\], "
            r"a fraction of the calls \(0\.5 for 50%\)$",
        ):
            CircuitBreaker(failure_rate=rate)
    wrong_type: list[tuple[object, str]] = [
        (True, "bool"),
        ("0.5", "str"),
        ([0.5], "list"),
    ]
    for bad, name in wrong_type:
        with pytest.raises(
            TypeError,
            match=rf"^CircuitBreaker\(failure_rate={re.escape(repr(bad))}\): takes a number "
            rf"\(a fraction of the calls, e\.g\. 0\.5\), not {name}$",
        ):
            CircuitBreaker(failure_rate=bad)  # type: ignore[arg-type]
    for calls in (0, -1):
        with pytest.raises(ValueError, match=rf"^CircuitBreaker\(min_calls={calls}\): must be at"):
            CircuitBreaker(failure_rate=0.5, min_calls=calls)
    for bad, name in [(2.5, "float"), (True, "bool"), ("10", "str")]:
        with pytest.raises(
            TypeError,
            match=rf"^CircuitBreaker\(min_calls={re.escape(repr(bad))}\): takes an int, "
            rf"not {name}$",
        ):
            CircuitBreaker(failure_rate=0.5, min_calls=bad)  # type: ignore[arg-type]
    # the edges that are allowed
    for fine in (1, 1.0, 1e-9):
        CircuitBreaker(failure_rate=fine, min_calls=1)
    CircuitBreaker(failure_rate=Fraction(1, 2))  # type: ignore[arg-type]  # a real number
    CircuitBreaker(failure_threshold=None, failure_rate=None)


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
        (
            {"rng": 42},  # meant as a seed: failed mid-retry, with an AttributeError
            r"^Backoff\(rng=42\): takes a random.Random \(or an object with a "
            r"uniform\(a, b\) method\), not int$",
        ),
        ({"rng": None}, r"^Backoff\(rng=None\): takes a random.Random"),
        (
            {"rng": random.Random},
            r"^Backoff\(rng=<class 'random.Random'>\): takes a random.* not the class Random$",
        ),
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


def test_backoff_rng_may_be_any_object_with_uniform() -> None:
    class Fixed:
        def uniform(self, a: float, b: float) -> float:
            return b / 2

    assert Backoff(initial=1, rng=Fixed()).delay(2) == 1  # type: ignore[arg-type]
    assert 0 <= Backoff(rng=random.SystemRandom()).delay(1) <= 0.1
    assert 0 <= Backoff(rng=random).delay(1) <= 0.1  # type: ignore[arg-type]  # the module


def test_backoff_delay_checks_the_retry_number() -> None:
    """delay(retry) numbers retries from 1: 0, -3, 2.5 or "2" used to return a value
    (or raise a bare TypeError) instead of naming the misuse."""
    for b in (Backoff(jitter=False), Backoff(initial=0)):
        for bad in (0, -3):
            with pytest.raises(
                ValueError, match=rf"^Backoff.delay\(retry={bad}\): must be at least 1 "
            ):
                b.delay(bad)
        for bad2, name in ((2.5, "float"), ("2", "str"), (True, "bool"), (None, "NoneType")):
            with pytest.raises(
                TypeError, match=rf"^Backoff.delay\(retry={bad2!r}\): takes an int, not {name}$"
            ):
                b.delay(bad2)  # type: ignore[arg-type]
    assert Backoff(jitter=False).delay(1) == 0.1


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
    """One real 20 ms backoff, then a 20 s one that would pass the 5 s deadline: retry
    gives up at once with the attempt's error. (A 0.05 s deadline could pass before
    the first attempt or during the 20 ms sleep on a loaded machine: DeadlineExceeded
    instead of Boom. The exact times are asserted on the virtual clock below.)"""
    ctx, cancel = with_timeout(background(), 5)
    t0 = _time.perf_counter()
    with pytest.raises(Boom) as info:
        await retry(
            boom,
            attempts=100,
            backoff=Backoff(initial=0.02, multiplier=1000, maximum=60, jitter=False),
            ctx=ctx,
        )
    assert _time.perf_counter() - t0 < 4  # gave up: waited neither 20 s nor the deadline
    assert info.value.__notes__ == [
        "retry: gave up after 2 of 100 attempts: the next backoff (20 s) would pass "
        "the context deadline"
    ]
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

    async def test_failures_outside_window_do_not_count(self) -> None:
        b = CircuitBreaker(failure_threshold=2, window=0.02)
        with pytest.raises(Boom):
            await b.call(boom)
        await trio.sleep(0.03)  # the first failure has left the window
        with pytest.raises(Boom):
            await b.call(boom)
        assert st(b) is State.CLOSED
        assert b.stats().recent_failures == 1
        await trio.sleep(0.0199)  # still inside the window
        assert b.stats().recent_failures == 1
        await trio.sleep(0.0011)  # now the second one has too
        assert b.stats().recent_failures == 0

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

    async def test_breaker_rate_rolling_window(self) -> None:
        """Hystrix's configuration on trio's clock: 50 % of at least 10 calls in 10 s."""
        b = CircuitBreaker(failure_rate=0.5, min_calls=10, window=10.0, recovery_time=5.0)
        for letter in "fsfsfsfsf":  # one call a second, t = 0 .. 8: 5 of 9 failed
            await outcomes(b, letter)
            await trio.sleep(1)
        await trio.sleep(1)  # t = 10: the failure at t = 0 leaves the window
        await outcomes(b, "f")  # 5 of 9 again (6 of 10 had it stayed)
        assert st(b) is State.CLOSED and b.stats().recent_calls == 9
        await trio.sleep(0.5)
        await outcomes(b, "f")  # 6 of 10
        assert st(b) is State.OPEN
        await trio.sleep(4.75)
        with pytest.raises(CircuitOpen) as info:
            await b.call(ok)
        assert info.value.retry_after == 0.25
        await trio.sleep(0.25)
        assert await b.call(ok) == "ok"  # the probe closes it
        assert st(b) is State.CLOSED and b.stats().recent_calls == 0


# -- found by a black-box audit (2026-12-05) ----------------------------------------


async def test_ctx_cancellation_inside_the_call_counts_as_nothing() -> None:
    """A `Canceled` from a ctx given to the call is the caller going away: not a failure."""
    from asyncgo.time import sleep

    b = CircuitBreaker(failure_threshold=1)
    ctx, cancel = with_cancel(background())

    async def handler() -> None:
        with pytest.raises(Canceled):
            await b.call(sleep, 5, ctx)  # a healthy, slow dependency

    async with anyio.create_task_group() as tg:
        tg.start_soon(handler)
        await anyio.wait_all_tasks_blocked()
        cancel()
    s = b.stats()
    assert (s.state, s.failures, s.successes) == (State.CLOSED, 0, 0)
    # A probe that ends that way frees its slot, and leaves the breaker half-open.
    probed = CircuitBreaker(failure_threshold=1, recovery_time=0)
    with pytest.raises(Boom):
        await probed.call(boom)
    gone, cancel_probe = with_cancel(background())
    cancel_probe()
    with pytest.raises(Canceled):
        await probed.call(sleep, 5, gone)
    assert st(probed) is State.HALF_OPEN
    assert await probed.call(ok) == "ok"
    assert st(probed) is State.CLOSED
    # A deadline is a timeout: it counts (DeadlineExceeded is a TimeoutError).
    tctx, _ = with_timeout(background(), 0.001)
    with pytest.raises(DeadlineExceeded):
        await b.call(sleep, 5, tctx)
    assert st(b) is State.OPEN


async def test_breaker_counts_no_base_exception_whatever_failure_on_says() -> None:
    b = CircuitBreaker(failure_threshold=1, failure_on=BaseException)
    with anyio.move_on_after(0.01):
        await b.call(anyio.sleep, 5)

    async def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await b.call(interrupted)
    s = b.stats()
    assert (s.state, s.failures, s.successes) == (State.CLOSED, 0, 0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
async def test_breaker_refuses_what_is_not_an_async_function() -> None:
    b = CircuitBreaker(failure_threshold=1, recovery_time=0)
    coro = ok()
    with pytest.raises(TypeError, match=r"CircuitBreaker.call\(\) takes an async function, not"):
        await b.call(coro)  # type: ignore[arg-type]
    assert coro.cr_frame is None  # closed: no "never awaited" warning

    def sync() -> str:
        return "x"

    with pytest.raises(TypeError, match="returned str, not an awaitable"):
        await b.call(sync)  # type: ignore[arg-type]
    s = b.stats()
    assert (s.state, s.failures) == (State.CLOSED, 0)
    with pytest.raises(TypeError, match="decorate the function itself"):
        b(ok())  # type: ignore[arg-type]
    # A half-open probe slot taken by a misuse is given back.
    with pytest.raises(Boom):
        await b.call(boom)
    with pytest.raises(TypeError):
        await b.call(sync)  # type: ignore[arg-type]
    assert await b.call(ok) == "ok"
    assert st(b) is State.CLOSED


def test_breaker_option_types() -> None:
    for what, bad in (
        ("failure_threshold", 2.5),
        ("failure_threshold", "5"),
        ("half_open_max_calls", 1.5),
        ("half_open_max_calls", None),
        ("success_threshold", math.inf),
        ("success_threshold", True),
        ("min_calls", 3.0),
    ):
        with pytest.raises(TypeError, match=rf"^CircuitBreaker\({what}=.*\): takes an int"):
            CircuitBreaker(**{what: bad})  # type: ignore[arg-type]
    for what in ("failure_on", "ignore"):
        for bad2 in ("ConnectionError", (ValueError, "x"), 3):
            with pytest.raises(TypeError, match=rf"^CircuitBreaker\({what}=.*exception class"):
                CircuitBreaker(**{what: bad2})  # type: ignore[arg-type]
    CircuitBreaker(failure_on=(ValueError, (KeyError, OSError)), ignore=ConnectionResetError)


async def test_breaker_kept_across_runs_whose_clock_went_back(clock: FakeClock) -> None:
    """Each trio run has its own clock offset: a breaker kept from one run to the
    next sees the clock jump back, and carries on as if no time had passed."""
    b = CircuitBreaker(failure_threshold=2, window=10, recovery_time=30)
    with pytest.raises(Boom):
        await b.call(boom)
    clock.now = 5.0  # the next run: its clock reads far less
    with pytest.raises(Boom):
        await b.call(boom)  # the first failure is still in the window
    assert st(b) is State.OPEN
    clock.now = -50_000.0
    with pytest.raises(CircuitOpen) as info:
        await b.call(ok)
    assert info.value.retry_after == 30  # not 50,030 s
    clock.advance(30)
    assert await b.call(ok) == "ok"
    assert st(b) is State.CLOSED


@pytest.mark.parametrize(
    ("first", "next_clock"), [("trio", "ahead"), ("trio", "behind"), ("asyncio", "ahead")]
)
def test_breaker_kept_across_runs_as_if_no_time_had_passed(first: str, next_clock: str) -> None:
    """Each trio run has a clock of its own, its offset random: a breaker opened in
    one run is still open, its whole recovery time to go, in the next run, whether
    that run's clock reads ahead of the last one's or behind it. (It used to shift
    only for a clock gone back: a run whose clock read ahead found it half-open.)
    Within a run, time still passes."""
    b = CircuitBreaker(failure_threshold=1, recovery_time=30)

    async def open_it() -> None:
        with pytest.raises(Boom):
            await b.call(boom)

    async def look_then_wait() -> None:
        with pytest.raises(CircuitOpen) as info:
            await b.call(ok)
        if first == "trio":  # (asyncio's clock ran on between its two readings)
            assert info.value.retry_after == 30
        assert st(b) is State.OPEN
        await trio.sleep(29)
        assert st(b) is State.OPEN
        await trio.sleep(1)
        assert st(b) is State.HALF_OPEN
        assert await b.call(ok) == "ok"
        assert st(b) is State.CLOSED

    last = trio.testing.MockClock()
    following = trio.testing.MockClock(autojump_threshold=0)
    if first == "trio":
        (following if next_clock == "ahead" else last).jump(1000)
        trio.run(open_it, clock=last)
    else:
        anyio.run(open_it, backend="asyncio")  # time.monotonic()
        following.jump(1e9)
    trio.run(look_then_wait, clock=following)


async def test_retry_never_retries_a_cancellation_or_a_base_exception() -> None:
    from asyncgo.time import sleep

    calls = 0

    async def attempt(ctx: object) -> None:
        nonlocal calls
        calls += 1
        if isinstance(ctx, BaseException):
            raise ctx
        await sleep(5, ctx)  # type: ignore[arg-type]

    ctx, cancel = with_cancel(background())
    cancel()
    fast = Backoff(initial=0)
    with pytest.raises(Canceled):
        await retry(attempt, ctx, attempts=3, backoff=fast)  # ctx goes to fn, not to retry
    assert calls == 1
    calls = 0
    with pytest.raises(KeyboardInterrupt):
        await retry(attempt, KeyboardInterrupt(), attempts=3, backoff=fast, retry_on=BaseException)
    assert calls == 1
    # A timeout is retried: a deadline of the attempt's own.
    calls = 0

    async def timed_out() -> None:
        nonlocal calls
        calls += 1
        raise DeadlineExceeded()

    with pytest.raises(DeadlineExceeded):
        await retry(timed_out, attempts=3, backoff=fast)
    assert calls == 3


async def test_retry_with_retry_on_base_exception_is_cancellable(anyio_backend_name: str) -> None:
    attempts = 0

    async def slow() -> None:
        nonlocal attempts
        attempts += 1
        await anyio.sleep(5)

    with anyio.move_on_after(0.01) as scope:
        await retry(slow, attempts=3, backoff=Backoff(initial=0), retry_on=BaseException)
    assert scope.cancelled_caught and attempts == 1
    if anyio_backend_name != "asyncio":
        return
    # asyncio's own one-shot Task.cancel() (asyncio.timeout, TaskGroup...): caught and
    # retried, it was gone -- the task ended with fn's next error instead.
    import asyncio

    attempts = 0
    task = asyncio.ensure_future(
        retry(slow, attempts=3, backoff=Backoff(initial=0), retry_on=BaseException)
    )
    await anyio.wait_all_tasks_blocked()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
async def test_retry_misuse() -> None:
    for bad in (math.nan, 2.5, True, "3", None):
        with pytest.raises(TypeError, match=r"^retry\(attempts=.*\): takes an int"):
            await retry(ok, attempts=bad)  # type: ignore[arg-type]
    for bad2 in ("Boom", (Boom, "x")):
        with pytest.raises(TypeError, match=r"^retry\(retry_on=.*\): takes an exception class"):
            await retry(boom, retry_on=bad2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"retry\(\) takes an async function, not coroutine"):
        await retry(ok())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorate the function itself"):
        retry(attempts=2)(ok())  # type: ignore[arg-type]
    calls = 0

    def sync() -> int:
        nonlocal calls
        calls += 1
        return 1

    with pytest.raises(TypeError, match="returned int, not an awaitable"):
        await retry(sync, backoff=Backoff(initial=0))  # type: ignore[arg-type]
    assert calls == 1  # not retried


async def test_retry_raises_the_ctx_error_without_piling_up_tracebacks() -> None:
    ctx, cancel = with_cancel_cause(background())
    cause = ConnectionError("client went away")
    cancel(cause)
    lengths = set()
    for _ in range(5):
        with pytest.raises(Canceled) as info:
            await retry(ok, ctx=ctx)
        assert info.value is ctx.err() and info.value.__cause__ is cause
        lengths.add(len(list(traceback.walk_tb(info.value.__traceback__))))
    assert len(lengths) == 1


# -- found by a review of the time-driven behaviour (2026-12-07) ---------------------


async def test_retry_never_notes_a_contexts_shared_error() -> None:
    # Every ctx.err() is one object: three retries that met it left three notes on it,
    # which every later raise or log of that context's error then showed.
    ctx, cancel = with_timeout(background(), 0.05)

    async def fetch() -> None:
        await asyncgo_sleep(60, ctx)  # honours ctx: raises ctx.err()

    async def request() -> None:
        with pytest.raises(DeadlineExceeded) as info:
            await retry(fetch, attempts=3, backoff=Backoff(initial=0.01, jitter=False), ctx=ctx)
        assert info.value is ctx.err()

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(request)
    assert not getattr(ctx.err(), "__notes__", None)

    async def last_attempt() -> None:  # no ctx= given to retry: given up, not noted
        raise ended_err

    ended_err = ctx.err()
    assert ended_err is not None
    with pytest.raises(DeadlineExceeded):
        await retry(last_attempt, attempts=1)
    assert not getattr(ctx.err(), "__notes__", None)
    cancel()


async def test_retry_raises_ctx_err_when_the_deadline_passed_during_an_attempt() -> None:
    # It gave up with the attempt's error, noted "the next backoff would pass the
    # context deadline" -- which had passed already; a cancel gave Canceled.
    for how in ("deadline", "cancel"):
        if how == "deadline":
            ctx, cancel = with_timeout(background(), 0.01)
        else:
            ctx, cancel = with_cancel(background())

        async def fetch() -> None:
            if how == "cancel":
                cancel()  # noqa: B023
            else:
                await anyio.sleep(0.2)  # past the deadline, not watching ctx
            raise ConnectionError("late")

        with pytest.raises(DeadlineExceeded if how == "deadline" else Canceled) as info:
            await retry(fetch, attempts=5, backoff=Backoff(initial=0.001, jitter=False), ctx=ctx)
        assert info.value is ctx.err()
        assert info.value.__context__ is None  # (not this task's error on a shared object)
        assert not getattr(info.value, "__notes__", None)
        cancel()


async def test_retry_leaves_the_shared_ctx_err_without_another_tasks_error() -> None:
    # Two tasks retrying under one ctx: the Canceled one caught held the other's
    # ConnectionError (and its frames) as __context__.
    ctx, cancel = with_cancel(background())
    seen: list[BaseException | None] = []

    async def attempt(name: str) -> None:
        cancel()
        raise ConnectionError(name)

    async def task(name: str) -> None:
        with pytest.raises(Canceled) as info:
            await retry(attempt, name, attempts=3, ctx=ctx)
        seen.append(info.value.__context__)

    async with anyio.create_task_group() as tg:
        tg.start_soon(task, "A")
        tg.start_soon(task, "B")
    assert seen == [None, None]


async def test_retry_note_after_one_attempt_is_singular() -> None:
    with pytest.raises(Boom) as info:
        await retry(boom, attempts=1)
    assert info.value.__notes__ == ["retry: gave up after 1 attempt"]

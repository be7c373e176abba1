"""Resilience: a circuit breaker and retries with exponential backoff and full jitter.

`CircuitBreaker` stops calling a dependency that keeps failing: after
*failure_threshold* counted failures within *window* seconds (or, in rate
mode, when at least *failure_rate* of at least *min_calls* calls completed
within *window* failed: Hystrix's and resilience4j's model) it *opens* and
every call fails fast with `CircuitOpen`; after *recovery_time* it is
*half-open* and lets at most *half_open_max_calls* probe calls through at a
time; *success_threshold* successful probes close it again, one failed probe
opens it again.

`retry` calls an async function until it succeeds, sleeping an exponentially
growing, fully jittered backoff between attempts, and never sleeps past the
ctx deadline: when the next backoff would pass it, it gives up at once and
re-raises the last error, with a note saying how many attempts were made.

Both read the event loop's clock only when called: no background task.
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
import numbers
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from inspect import isawaitable
from types import TracebackType
from typing import (
    Any,
    Final,
    ParamSpec,
    Protocol,
    TypeVar,
    TypeVarTuple,
    cast,
    final,
    overload,
)

from ._backend import current_time
from ._backend._timers import RunClock, asyncio_loop
from ._context import Context, check_ctx, ended
from ._exceptions import (
    Canceled,
    DeadlineExceeded,
    check_sync_callable,
    not_a_function,
    not_awaitable,
    to_seconds,
)
from .time import _seconds, sleep

__all__ = [
    "Backoff",
    "BreakerStats",
    "CircuitBreaker",
    "CircuitOpen",
    "State",
    "retry",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
P = ParamSpec("P")


def _number(where: str, v: object) -> float:
    """*v* as a float; TypeError naming *where* (``"Backoff(initial=...)"``) if not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{where}: takes a number of seconds, not {type(v).__name__}")
    return to_seconds(v)


def _fraction(v: object) -> float:
    """*v*, a `CircuitBreaker` failure_rate, as a float in (0, 1]; else TypeError or ValueError."""
    # bool is an int: failure_rate=True would read as 100 %.
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(
            f"CircuitBreaker(failure_rate={v!r}): takes a number "
            f"(a fraction of the calls, e.g. 0.5), not {type(v).__name__}"
        )
    rate = float(v)
    if not 0 < rate <= 1:  # NaN fails it too
        raise ValueError(
            f"CircuitBreaker(failure_rate={v}): must be in (0, 1], "
            "a fraction of the calls (0.5 for 50%)"
        )
    return rate


def _check_int(where: str, v: object) -> None:
    """TypeError naming *where* (``"CircuitBreaker(min_calls=...)"``) if *v* is not an int.

    A bool is not taken for one.
    """
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{where}: takes an int, not {type(v).__name__}")


def _check_exc_types(where: str, v: object) -> None:
    """TypeError naming *where* unless *v* is what ``except`` takes.

    That is an exception class or a tuple of them (tuples may nest). Checked when
    the option is given: a string there would make every later ``except`` raise a
    TypeError of its own, hiding the error being handled.
    """
    if isinstance(v, type) and issubclass(v, BaseException):
        return
    if isinstance(v, tuple):
        for t in v:
            _check_exc_types(where, t)
        return
    raise TypeError(
        f"{where}: takes an exception class or a tuple of them, not {type(v).__name__} {v!r}"
    )


def _may_count(exc: BaseException) -> bool:
    """Whether *exc* may count as a failure or be retried: an ordinary error.

    Not cancellation (the backend's, or `Canceled`: the ctx given to the call was
    cancelled, i.e. the caller went away), not KeyboardInterrupt or SystemExit,
    whatever *failure_on* or *retry_on* say. `DeadlineExceeded` is a timeout: it
    may count.
    """
    return isinstance(exc, Exception) and not isinstance(exc, Canceled)


class CircuitOpen(Exception):
    """A call was refused because the circuit breaker is open (or its probes are busy).

    Attributes:
        name: The breaker's name.
        retry_after: Seconds until the breaker lets a probe through (0 when it
            is half-open and every probe slot is taken).

    Example:
        ```python
        breaker = CircuitBreaker(failure_threshold=1, recovery_time=60, name="payments")
        try:
            async with breaker:
                raise TimeoutError("the payments API timed out")  # one failure opens it
        except TimeoutError:
            pass
        try:
            async with breaker:              # refused at once: the body does not run
                outcome = "called"
        except CircuitOpen as e:
            outcome = f"open for {e.name}"
            assert 0 < e.retry_after <= 60   # when a probe will be let through
        assert outcome == "open for payments"
        ```
    """

    def __init__(self, name: str, retry_after: float) -> None:
        """Build the error for breaker *name*, which lets a probe through in *retry_after* s."""
        if retry_after > 0:
            msg = f"circuit breaker {name!r} is open; a probe is allowed in {retry_after:.3g} s"
        else:
            msg = f"circuit breaker {name!r} is half-open and all its probe calls are in flight"
        super().__init__(msg)
        self.name = name
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # (pickle, copy: a job in a process pool raises it in the parent)
        return (type(self), (self.name, self.retry_after), self.__dict__)


class State(enum.Enum):
    """The state of a `CircuitBreaker`.

    Example:
        ```python
        State = resilience.State
        changes: list[str] = []
        breaker = CircuitBreaker(
            failure_threshold=1,
            recovery_time=0,                 # let a probe through at once (for the example)
            on_state_change=lambda old, new: changes.append(new.value),
        )
        assert breaker.state is State.CLOSED
        try:
            async with breaker:
                raise ConnectionError("down")  # a counted failure opens it
        except ConnectionError:
            pass
        assert breaker.state is State.HALF_OPEN  # open, and its recovery time is over
        async with breaker:                  # a successful probe closes it
            pass
        assert changes == ["open", "half_open", "closed"]
        ```
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """Counters of a `CircuitBreaker`, from `CircuitBreaker.stats`.

    Example:
        ```python
        breaker = CircuitBreaker(failure_threshold=3)

        async def flaky(ok: bool) -> None:
            if not ok:
                raise ConnectionError("reset by peer")

        await breaker.call(flaky, True)
        try:
            await breaker.call(flaky, False)
        except ConnectionError:
            pass
        s = breaker.stats()
        assert s.state is resilience.State.CLOSED  # 1 failure of the 3 that open it
        assert (s.calls, s.successes, s.failures, s.recent_failures) == (2, 1, 1, 1)
        assert s.recent_calls is None        # kept in rate mode only (failure_rate=...)
        ```
    """

    state: State
    calls: int  #: calls let through (including probes)
    successes: int  #: calls that returned (or raised an exception that does not count)
    failures: int  #: calls that raised a counted exception
    rejected: int  #: calls refused with `CircuitOpen`
    opened: int  #: times the breaker opened
    recent_failures: int  #: counted failures within the window (closed state)
    #: rate mode: successes + counted failures within the window (closed state);
    #: None in count mode, which keeps no record of successes
    recent_calls: int | None = None


_Ticket = tuple[int, bool]  # (generation, is a probe)

_CALL_ADVICE = "pass the async function and its arguments, call(f, *args), not call(f())"


@final
class _Times:
    """The times of one kind of outcome within a sliding window, oldest first.

    With an infinite window nothing ever leaves it, so only the count is kept:
    a rate-mode breaker with ``window=math.inf`` that never opens must not keep
    a float per call forever.
    """

    __slots__ = ("_count", "_times")

    def __init__(self, *, keep_times: bool) -> None:
        self._times: deque[float] | None = deque() if keep_times else None
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, now: float) -> None:
        self._count += 1
        if self._times is not None:
            self._times.append(now)

    def forget_until(self, lo: float) -> None:
        """Forget the times ``<= lo`` (those that left the window)."""
        times = self._times
        while times and times[0] <= lo:
            times.popleft()
            self._count -= 1

    def shift(self, by: float) -> None:
        """Move every time by *by* seconds (the clock jumped)."""
        if self._times:
            self._times = deque(t + by for t in self._times)

    def clear(self) -> None:
        self._count = 0
        if self._times is not None:
            self._times.clear()


@final
class CircuitBreaker:
    """Fail fast while a dependency keeps failing; probe it after a pause.

    Use it as a decorator, as ``async with breaker:``, or with
    ``await breaker.call(fn, *args)``. Exceptions that are instances of
    *failure_on* and not of *ignore* count as failures; any other exception
    (and cancellation) passes through and counts as neither.

    A call's outcome counts only in the state it started in: a slow call
    that started before the breaker opened does not touch the new state
    (gobreaker's generations).

    While closed, it opens in one of two modes, chosen when it is made:

    * count mode (the default): *failure_threshold* counted failures within
      the last *window* seconds (gobreaker's model);
    * rate mode (``failure_rate=``): as a call completes, the calls that
      completed within the last *window* seconds number at least *min_calls*
      (successes and counted failures) and at least *failure_rate* of them
      failed (Hystrix's ErrorPercentThreshold and RequestVolumeThreshold,
      resilience4j's time-based sliding window).

    Cost: count mode keeps at most *failure_threshold* timestamps; rate mode
    keeps one (about 32 bytes) per success or counted failure completed within
    *window*, and only two counters with ``window=math.inf``.

    Example:
        ```python
        breaker = CircuitBreaker(failure_threshold=2, window=10, recovery_time=30)

        @breaker
        async def fetch(url: str) -> bytes:
            raise ConnectionError(url)       # the dependency is down

        for _ in range(2):                   # two failures within 10 s open it...
            try:
                await fetch("https://example.com")
            except ConnectionError:
                pass
        try:
            body = await fetch("https://example.com")
        except CircuitOpen:                  # ...then calls fail fast for 30 s
            body = b"<cached page>"
        assert body == b"<cached page>"
        ```

    Example:
        Rate mode, configured as Hystrix's ErrorPercentThreshold 50 and
        RequestVolumeThreshold 10 over its 10 s rolling window:

        ```python
        breaker = CircuitBreaker(failure_rate=0.5, min_calls=10, window=10, recovery_time=5)

        async def lookup(ok: bool) -> str:
            if not ok:
                raise ConnectionError("timeout")
            return "found"

        for i in range(9):                   # 4 failures in 9 calls: fewer than min_calls
            try:
                await breaker.call(lookup, i % 2 == 0)
            except ConnectionError:
                pass
        s = breaker.stats()
        assert (s.state, s.recent_calls, s.recent_failures) == (resilience.State.CLOSED, 9, 4)
        try:
            await breaker.call(lookup, False)  # 5 failures in 10 calls: 50% opens it
        except ConnectionError:
            pass
        assert breaker.state is resilience.State.OPEN
        ```
    """

    __slots__ = (
        "_calls",
        "_clock",
        "_entered",
        "_failure_on",
        "_failures",
        "_gen",
        "_half_open_max",
        "_ignore",
        "_min_calls",
        "_name",
        "_on_state_change",
        "_opened",
        "_opened_at",
        "_pending",
        "_probe_successes",
        "_probes",
        "_rate",
        "_recent",
        "_recent_ok",
        "_recovery_time",
        "_rejected",
        "_state",
        "_success_threshold",
        "_successes",
        "_threshold",
        "_window",
    )

    def __init__(
        self,
        *,
        failure_threshold: int | None = None,
        failure_rate: float | None = None,
        min_calls: int = 10,
        window: float = 60.0,
        recovery_time: float = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        failure_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
        on_state_change: Callable[[State, State], object] | None = None,
        name: str = "breaker",
    ) -> None:
        """Make a closed breaker.

        Args:
            failure_threshold: Counted failures within *window* that open it
                (count mode; None: 5). Not with *failure_rate*.
            failure_rate: Rate mode: the fraction of the calls completed
                within *window* that must have failed to open it, in (0, 1]
                (0.5: half of them). Checked as each call completes, over its
                successes and counted failures; a success can open it too,
                when it brings the calls to *min_calls* with the rate still
                reached. None: count mode.
            min_calls: Rate mode: the fewest calls (successes and counted
                failures) completed within *window* that may open it, so
                that 1 failure in 1 call does not (Hystrix's
                RequestVolumeThreshold, resilience4j's minimumNumberOfCalls).
                Unused in count mode.
            window: Seconds over which failures (rate mode: calls) are
                counted while closed (positive; ``math.inf``: until the
                breaker closes or resets).
            recovery_time: Seconds it stays open before letting probes through.
            half_open_max_calls: Probe calls let through at once while half-open.
            success_threshold: Successful probes that close it again.
            failure_on: Exception types that count as failures.
            ignore: Exception types that never count (checked first).
            on_state_change: Called as ``fn(old, new)`` on every transition.
            name: Shown in `CircuitOpen` messages and ``repr``.

        Raises:
            ValueError: A threshold or count is below 1, both
                *failure_threshold* and *failure_rate* are given,
                *failure_rate* is not in (0, 1] (or is NaN), *window* is not
                positive (``math.inf``: failures never leave it), or
                *recovery_time* is negative or NaN.
            TypeError: *window*, *recovery_time* or *failure_rate* is not a
                number, a threshold or count is not an int, or *failure_on* or
                *ignore* is not an exception class or a tuple of them.
        """
        if failure_threshold is not None and failure_rate is not None:
            raise ValueError(
                f"CircuitBreaker(failure_threshold={failure_threshold}, "
                f"failure_rate={failure_rate}): pass one or the other "
                "(failure_threshold: a count of failures; failure_rate: a fraction of the calls)"
            )
        rate = None if failure_rate is None else _fraction(failure_rate)
        if failure_threshold is None:
            failure_threshold = 5
        for what, v in (
            ("failure_threshold", failure_threshold),
            ("min_calls", min_calls),
            ("half_open_max_calls", half_open_max_calls),
            ("success_threshold", success_threshold),
        ):
            _check_int(f"CircuitBreaker({what}={v!r})", v)
            if v < 1:
                raise ValueError(f"CircuitBreaker({what}={v}): must be at least 1")
        if on_state_change is not None:
            check_sync_callable(
                on_state_change,
                "CircuitBreaker(on_state_change=...)",
                "a plain function fn(old, new)",
            )
        _check_exc_types(f"CircuitBreaker(failure_on={failure_on!r})", failure_on)
        _check_exc_types(f"CircuitBreaker(ignore={ignore!r})", ignore)
        # A window of 0 would forget each failure as it is counted: a breaker
        # that never opens (unless failure_threshold=1) is a misconfiguration.
        win = _number(f"CircuitBreaker(window={window!r})", window)
        if not win > 0:
            raise ValueError(
                f"CircuitBreaker(window={window}): must be positive "
                "(the seconds over which failures are counted; math.inf for no limit)"
            )
        rec = _number(f"CircuitBreaker(recovery_time={recovery_time!r})", recovery_time)
        if not rec >= 0:
            raise ValueError(f"CircuitBreaker(recovery_time={recovery_time}): must be >= 0 seconds")
        self._threshold = failure_threshold
        self._rate = rate
        self._min_calls = min_calls
        self._window = win
        self._recovery_time = rec
        self._half_open_max = half_open_max_calls
        self._success_threshold = success_threshold
        self._failure_on = failure_on
        self._ignore = ignore
        self._on_state_change = on_state_change
        self._pending: list[tuple[State, State]] | None = None  # transitions to tell
        self._name = name
        self._state = State.CLOSED
        self._gen = 0
        # While closed: the times of counted failures, and in rate mode of successes
        # (_Times keeps only counts for window=math.inf, where nothing leaves the window).
        keep_times = win != math.inf
        self._recent = _Times(keep_times=keep_times)
        self._recent_ok = _Times(keep_times=keep_times)
        self._opened_at = 0.0
        self._clock = RunClock()  # the clock readings of `_now`
        self._probes = 0  # probe calls in flight (half-open)
        self._probe_successes = 0
        self._calls = self._successes = self._failures = self._rejected = self._opened = 0
        self._entered: ContextVar[tuple[_Ticket, ...]] = ContextVar(f"breaker-{id(self)}")

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self._state.value} at {id(self):#x}>"

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    @property
    def state(self) -> State:
        """The state now (an open breaker whose recovery time passed reads half-open).

        Needs a running event loop (for the clock).
        """
        return self._state_at(self._now())

    def stats(self) -> BreakerStats:
        """A snapshot of the counters. Needs a running event loop."""
        now = self._now()
        state = self._state_at(now)
        self._prune(now)
        return BreakerStats(
            state=state,
            calls=self._calls,
            successes=self._successes,
            failures=self._failures,
            rejected=self._rejected,
            opened=self._opened,
            recent_failures=len(self._recent),
            recent_calls=None if self._rate is None else len(self._recent) + len(self._recent_ok),
        )

    def reset(self) -> None:
        """Close the breaker and forget recent outcomes (counters are kept)."""
        self._set(State.CLOSED, self._now())

    def _now(self) -> float:
        """The clock, read for the state machine.

        A breaker kept from one run to the next (a module-level one, across
        tests) shifts the times it holds as if no time had passed in between
        when either run is a trio run (each has a clock of its own, with a
        random offset); asyncio loops all read ``time.monotonic()``, so from one
        to the next time really passed. See `RunClock`.
        """
        loop = asyncio_loop()
        if loop is not None:  # the common case: the loop of the last reading, no jump
            now_: float | None = self._clock.read_again(loop)
            if now_ is not None:
                return now_
        now = current_time()
        jump = self._clock.jump(self, now)
        if jump:
            self._opened_at += jump
            self._recent.shift(jump)
            self._recent_ok.shift(jump)
        return now

    # -- state machine (pure: takes the time) ------------------------------------

    def _set(self, new: State, now: float) -> None:
        old = self._state
        self._gen += 1
        self._state = new
        # (probes still in flight from an earlier half-open state keep their slots:
        # at most half_open_max_calls probe calls run at once, whatever their generation)
        self._probe_successes = 0
        if new is State.OPEN:
            self._opened_at = now
            self._opened += 1
        elif new is State.CLOSED:
            self._recent.clear()
            self._recent_ok.clear()
        if old is not new and self._on_state_change is not None:
            pending = self._pending
            if pending is not None:
                # A transition made while `on_state_change` runs (it read the state,
                # past the recovery time): told once that call returns, in order.
                pending.append((old, new))
                return
            self._pending = pending = [(old, new)]
            error: BaseException | None = None
            try:
                while pending:
                    try:
                        self._on_state_change(*pending.pop(0))
                    except BaseException as exc:  # told anyway: every transition is told
                        if error is None:
                            error = exc
                if error is not None:
                    raise error  # the first, once every transition was told
            finally:
                self._pending = None
                error = None

    def _state_at(self, now: float) -> State:
        if self._state is State.OPEN and now >= self._opened_at + self._recovery_time:
            self._set(State.HALF_OPEN, now)
        return self._state

    def _prune(self, now: float) -> None:
        lo = now - self._window
        self._recent.forget_until(lo)
        self._recent_ok.forget_until(lo)

    def _enter(self, now: float) -> _Ticket:
        state = self._state_at(now)
        if state is State.OPEN:
            self._rejected += 1
            raise CircuitOpen(self._name, self._opened_at + self._recovery_time - now)
        if state is State.HALF_OPEN:
            if self._probes >= self._half_open_max:
                self._rejected += 1
                raise CircuitOpen(self._name, 0.0)
            self._probes += 1
            self._calls += 1
            return (self._gen, True)
        self._calls += 1
        return (self._gen, False)

    def _release(self, ticket: _Ticket) -> None:
        """End the call of *ticket* uncounted: it never ran (*fn* was not async)."""
        if ticket[1]:  # a probe: its slot is free again, whatever the state now
            self._probes -= 1

    def _exit(self, ticket: _Ticket, exc: BaseException | None, now: float) -> None:
        """End the call of *ticket*: it returned (*exc* None) or raised *exc*."""
        gen, probe = ticket
        if exc is None:
            failed = neutral = False
            self._successes += 1
        elif not _may_count(exc):  # cancellation, KeyboardInterrupt...: not even a success
            failed, neutral = False, True
        else:
            failed = isinstance(exc, self._failure_on) and not isinstance(exc, self._ignore)
            neutral = not failed
            if failed:
                self._failures += 1
            else:
                self._successes += 1
        if probe:
            self._probes -= 1
        if gen != self._gen:
            return  # started in an earlier state: its outcome does not count now
        if probe:
            if failed:
                self._set(State.OPEN, now)
            elif not neutral:
                self._probe_successes += 1
                if self._probe_successes >= self._success_threshold:
                    self._set(State.CLOSED, now)
            return
        rate = self._rate
        if rate is None:
            if failed:
                self._prune(now)
                self._recent.add(now)
                if len(self._recent) >= self._threshold:
                    self._set(State.OPEN, now)
            return
        if neutral:
            return
        self._prune(now)
        (self._recent if failed else self._recent_ok).add(now)
        bad = len(self._recent)
        n = bad + len(self._recent_ok)
        # bad / n, not bad >= rate * n: 0.28 * 25 is 7.000000000000001, so 7 failures
        # in 25 calls would miss failure_rate=0.28 (test_rate_is_compared_exactly).
        if n >= self._min_calls and bad / n >= rate:
            self._set(State.OPEN, now)

    # -- the three ways to use it -----------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``await fn(*args, **kwargs)`` through the breaker.

        Raises:
            CircuitOpen: The breaker is open, or half-open with every probe slot taken.
            TypeError: *fn* is not an async function (``call(f())`` for
                ``call(f)``, or a sync function); counts as nothing.
            BaseException: Whatever *fn* raises, unchanged.
        """
        if not callable(fn):
            raise not_a_function(fn, "resilience: CircuitBreaker.call", _CALL_ADVICE)
        ticket = self._enter(self._now())
        try:
            aw = fn(*args, **kwargs)
            if isawaitable(cast("object", aw)):  # (typed awaitable; a sync fn is a misuse)
                result = await aw
        except BaseException as exc:
            self._exit(ticket, exc, self._now())
            raise
        if not isawaitable(cast("object", aw)):
            self._release(ticket)
            raise not_awaitable(fn, aw, "resilience: CircuitBreaker.call")
        self._exit(ticket, None, self._now())
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function so that every call goes through the breaker.

        The wrapper keeps *fn*'s signature: keyword arguments are passed on.

        Raises:
            TypeError: *fn* is not callable (``@breaker`` on a coroutine object).
        """
        if not callable(fn):
            raise not_a_function(fn, "resilience: CircuitBreaker", "decorate the function itself")

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(fn, *args, **kwargs)

        return guarded

    async def __aenter__(self) -> None:
        """Enter a guarded block.

        Raises:
            CircuitOpen: The breaker refuses the call.
        """
        ticket = self._enter(self._now())
        self._entered.set((*self._entered.get(()), ticket))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered = self._entered.get(())
        if not entered:
            raise RuntimeError(
                f"circuit breaker {self._name!r}: __aexit__ without __aenter__ in this task"
            )
        self._entered.set(entered[:-1])
        self._exit(entered[-1], exc, self._now())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter").

    Before retry *i* (1 for the first retry) the cap is
    ``min(maximum, initial * multiplier ** (i - 1))``; with *jitter* the sleep
    is uniform in ``[0, cap]``, otherwise exactly *cap*.

    Rules, checked when it is made: ``0 <= initial <= maximum``, *maximum*
    finite, ``multiplier >= 1`` (1: a constant backoff) and finite, *jitter* a
    bool, *rng* a ``random.Random`` (or any object with a ``uniform(a, b)``
    method: the jitter is ``rng.uniform(0, cap)``; pass ``random.Random(seed)``
    for a repeatable one). ``initial=0`` never sleeps.

    Raises:
        ValueError: A rule above is broken, e.g. ``Backoff(initial=-5):
            must be >= 0 seconds``.
        TypeError: *initial*, *maximum* or *multiplier* is not a number,
            *jitter* not a bool, or *rng* has no ``uniform`` method (a seed,
            ``rng=42``, for ``rng=random.Random(42)``).

    Example:
        ```python
        steady = resilience.Backoff(initial=0.1, maximum=1.0, jitter=False)
        assert [steady.delay(i) for i in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]

        jittered = resilience.Backoff(initial=0.1, maximum=1.0)  # full jitter
        assert all(0 <= jittered.delay(3) <= 0.4 for _ in range(100))

        async def ping() -> str:
            return "pong"

        assert await retry(ping, backoff=resilience.Backoff(initial=0.001)) == "pong"
        ```
    """

    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        initial = _number(f"Backoff(initial={self.initial!r})", self.initial)
        maximum = _number(f"Backoff(maximum={self.maximum!r})", self.maximum)
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, (int, float)):
            raise TypeError(
                f"Backoff(multiplier={self.multiplier!r}): takes a number, "
                f"not {type(self.multiplier).__name__}"
            )
        if not isinstance(self.jitter, bool):
            raise TypeError(
                f"Backoff(jitter={self.jitter!r}): takes a bool, not {type(self.jitter).__name__}"
            )
        if not 0 <= initial < math.inf:
            raise ValueError(f"Backoff(initial={self.initial}): must be >= 0 seconds and finite")
        if not initial <= maximum < math.inf:
            raise ValueError(
                f"Backoff(maximum={self.maximum}): must be >= initial ({self.initial}) and finite"
            )
        if not 1 <= self.multiplier < math.inf:
            raise ValueError(
                f"Backoff(multiplier={self.multiplier}): must be >= 1 and finite "
                "(1: the same backoff every time)"
            )
        rng: object = self.rng
        if inspect.isclass(rng) or not callable(getattr(rng, "uniform", None)):
            # (a class: its uniform is unbound, e.g. rng=random.Random for random.Random())
            what = f"the class {rng.__name__}" if inspect.isclass(rng) else type(rng).__name__
            raise TypeError(
                f"Backoff(rng={rng!r}): takes a random.Random (or an object with a "
                f"uniform(a, b) method), not {what}"
            )

    def delay(self, retry: int) -> float:
        """Seconds to sleep before retry number *retry* (1-based).

        Raises:
            ValueError: *retry* is below 1 (retries are numbered from 1).
            TypeError: *retry* is not an int.
        """
        _check_int(f"Backoff.delay(retry={retry!r})", retry)
        if retry < 1:
            raise ValueError(
                f"Backoff.delay(retry={retry}): must be at least 1 "
                "(retries are numbered from 1: the sleep before the second attempt)"
            )
        if not self.initial:
            return 0.0
        try:
            grown = self.initial * float(self.multiplier) ** (retry - 1)
        except OverflowError:  # 2.0 ** 1024: far past any maximum
            grown = math.inf
        cap = min(self.maximum, grown)
        return self.rng.uniform(0.0, cap) if self.jitter else cap


_DEFAULT_BACKOFF: Final = Backoff()

_RetryOn = type[BaseException] | tuple[type[BaseException], ...]

_RETRY_ADVICE = "pass the async function and its arguments, retry(f, *args), not retry(f())"


_NO_KWARGS: Final[dict[str, Any]] = {}


def _backoff_seconds(backoff: object, pause: object) -> float:
    """A backoff function's pause as seconds (the error, raised while handling the
    call's exception, keeps it as ``__context__``)."""
    if inspect.iscoroutine(pause):
        pause.close()
    return _seconds(pause, f"retry(backoff={backoff!r}) returned a pause that")


def _give_up(exc: Exception, note: str) -> None:
    """Note on *exc*, the last attempt's error, why `retry` gave up -- unless it is a
    `DeadlineExceeded`: often a context's ``err()``, one object that every task of
    that context raises. Other errors may be shared too (a singleflight call's, a
    `once_value`'s): a note already there is not added again."""
    if not isinstance(exc, DeadlineExceeded) and note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


async def _retry(
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attempts: int,
    backoff: Backoff | Callable[[int], float],
    retry_on: _RetryOn,
    ctx: Context | None,
) -> T:
    delay = backoff.delay if isinstance(backoff, Backoff) else backoff
    i = 0
    while True:
        i += 1
        if ctx is not None:
            err = ended(ctx)
            if err is not None:
                raise err
        try:
            aw = fn(*args, **kwargs)
            if isawaitable(cast("object", aw)):  # (typed awaitable; a sync fn is a misuse)
                return await aw
        except Exception as exc:
            if not isinstance(exc, retry_on) or not _may_count(exc):
                raise
            if ctx is not None and ctx.err() is not None:
                # Ended during the attempt: ctx.err(), raised at the top of the loop --
                # out of this handler, so this task's error is not hung on the one
                # object every task of the context raises (as its __context__).
                continue
            if i >= attempts:
                _give_up(exc, f"retry: gave up after {i} attempt{'' if i == 1 else 's'}")
                raise
            pause = delay(i)
            if type(pause) is not float or pause != pause:  # (not a float, or NaN)
                pause = _backoff_seconds(backoff, pause)
            pause = max(pause, 0.0)
            if ctx is not None:
                deadline = ctx.deadline()
                if deadline is not None and current_time() + pause >= deadline:
                    _give_up(
                        exc,
                        f"retry: gave up after {i} of {attempts} attempts: the next "
                        f"backoff ({pause:.3g} s) would pass the context deadline",
                    )
                    raise
        else:
            raise not_awaitable(fn, aw, "resilience: retry")
        await sleep(pause, ctx)  # (out of the handler too: a ctx.err() it raises is shared)


class RetryDecorator(Protocol):
    """What ``retry(attempts=...)`` returns: wraps an async function in `retry`."""

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Wrap *fn* (its signature kept: keyword arguments are passed on)."""
        ...


@overload
def retry(
    fn: Callable[[*Ts], Awaitable[T]],
    /,
    *args: *Ts,
    attempts: int = ...,
    backoff: Backoff | Callable[[int], float] = ...,
    retry_on: _RetryOn = ...,
    ctx: Context | None = ...,
) -> Coroutine[Any, Any, T]: ...


@overload
def retry(
    *,
    attempts: int = ...,
    backoff: Backoff | Callable[[int], float] = ...,
    retry_on: _RetryOn = ...,
    ctx: Context | None = ...,
) -> RetryDecorator: ...


def retry(  # type: ignore[misc]  # mypy: TypeVarTuple *args vs the keyword-only overload
    fn: Callable[[*Ts], Awaitable[T]] | None = None,
    /,
    *args: *Ts,
    attempts: int = 3,
    backoff: Backoff | Callable[[int], float] = _DEFAULT_BACKOFF,
    retry_on: _RetryOn = Exception,
    ctx: Context | None = None,
) -> Coroutine[Any, Any, T] | RetryDecorator:
    """Call ``await fn(*args)`` up to *attempts* times, backing off between failures.

    Only exceptions matching *retry_on* are retried; any other propagates at
    once. *backoff* is a `Backoff` (default: 0.1 s doubling up to 10 s, full
    jitter) or a function from the retry number (1-based) to seconds. With
    *ctx*, a ctx already done raises ``ctx.err()`` before an attempt, a
    backoff sleep ends early with ``ctx.err()`` when the ctx ends, and a
    backoff that would reach the deadline is not slept: the last error is
    re-raised at once. When it gives up, the last error is re-raised as
    itself, with a note (``add_note``) giving the number of attempts.

    Without *fn*, returns a decorator: ``@retry(attempts=5)``; the decorated
    function keeps its signature (keyword arguments are passed on). The direct
    form passes *args* only: bind keywords with ``functools.partial``.

    Never retried, whatever *retry_on* says: cancellation (the backend's, and
    `Canceled` -- a ctx given to *fn* was cancelled: its caller went away),
    KeyboardInterrupt, SystemExit; they propagate at once. A `DeadlineExceeded`
    from *fn* is a timeout, retried when *retry_on* matches it.

    Raises:
        ValueError: *attempts* is below 1.
        TypeError: *attempts* is not an int, *retry_on* is not an exception
            class or a tuple of them, or *fn* is not an async function (at
            once for ``retry(f())``; a sync function, on the first attempt,
            not retried).
        BaseException: The last error from *fn* when it gives up, or one not
            matching *retry_on*, unchanged apart from the note.
        Canceled: *ctx* was cancelled (``DeadlineExceeded`` for its deadline).

    Example:
        ```python
        calls: list[str] = []

        async def flaky(name: str) -> str:
            calls.append(name)
            if len(calls) < 3:
                raise ConnectionError("try again")
            return f"hello {name}"

        fast = resilience.Backoff(initial=0.001)  # (default: 0.1 s doubling, jittered)
        assert await retry(flaky, "ann", attempts=5, backoff=fast) == "hello ann"
        assert len(calls) == 3               # two failures, then a success

        @retry(attempts=2, backoff=fast, retry_on=ConnectionError)
        async def down() -> None:
            raise ConnectionError("still down")

        try:
            await down()
        except ConnectionError as e:         # the last error, with a note
            assert e.__notes__ == ["retry: gave up after 2 attempts"]
        ```
    """
    _check_int(f"retry(attempts={attempts!r})", attempts)
    if attempts < 1:
        raise ValueError(f"retry(attempts={attempts}): must be at least 1")
    _check_exc_types(f"retry(retry_on={retry_on!r})", retry_on)
    if not isinstance(backoff, Backoff):
        check_sync_callable(
            backoff,
            "retry(backoff=...)",
            "a Backoff, or a plain function of the attempt number (1, 2, ...) returning seconds",
        )
    check_ctx(ctx, "retry(ctx=...)")
    if fn is not None and not callable(fn):
        raise not_a_function(fn, "resilience: retry", _RETRY_ADVICE)
    if fn is None:

        def decorate(f: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
            if not callable(f):
                raise not_a_function(f, "resilience: retry", "decorate the function itself")

            @functools.wraps(f)
            async def retried(*a: P.args, **kw: P.kwargs) -> T:
                return await _retry(f, a, kw, attempts, backoff, retry_on, ctx)

            return retried

        return decorate  # type: ignore[return-value]
    return _retry(fn, args, _NO_KWARGS, attempts, backoff, retry_on, ctx)

"""Rate limiting: Go's golang.org/x/time/rate token bucket, and a sliding-window limiter.

`Limiter` is a token bucket of size *burst* refilled at *limit* tokens per
second. There is no refill task: the number of tokens is computed from the
clock when asked (`Limiter.tokens_at`), so an idle limiter costs nothing and
a virtual clock (trio's ``MockClock``) drives it exactly. Every method that
reads the clock has an ``*_at(t, ...)`` twin taking the time explicitly, as
Go's ``AllowN(t, n)`` and ``TokensAt(t)``: the arithmetic is pure and runs
without an event loop.

`SlidingWindow` admits at most *limit* events in any window of *window*
seconds, for APIs whose quota is stated that way ("100 requests per minute").
"""

from __future__ import annotations

import math
import numbers
import sys
from collections import deque
from threading import get_ident as _get_ident
from typing import TYPE_CHECKING, Any, Final, final

from ._backend import (
    _RUNNING_IN,
    _THREAD_ID_LOOPS,
    TRIO,
    checkpoint,
    current_tasks_get,
    current_time,
    must_checkpoint,
    park_runtime,
    runtime,
)
from ._backend._timers import RunClock, TrioRuntime
from ._context import Context, check_ctx, ended
from ._exceptions import DeadlineExceeded
from .time import sleep

__all__ = ["INF", "INF_DURATION", "Limiter", "Reservation", "SlidingWindow", "every"]

#: The infinite rate limit: every request is allowed, whatever the burst. Go: ``rate.Inf``
INF: Final[float] = math.inf

#: The delay of a reservation that is not ok. Go: ``rate.InfDuration``
INF_DURATION: Final[float] = math.inf

_NS: Final[float] = 1e-9  # Go's time.Nanosecond: the resolution of its durations
#: A shortfall of tokens this small, with a wait under a nanosecond (or under the
#: clock's rounding), is written off: the float clock's rounding, not a real one.
_CRUMB: Final[float] = 1e-3


def _real_to_float(x: Any) -> float:
    """*x* (a float, `Fraction`, numpy number...) as a float; one past float's range
    as an infinity of its sign."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def every(seconds: float) -> float:
    """Convert the minimum time between events into a limit (events per second).

    ``every(0)`` (or less) is `INF`. Go: ``rate.Every(interval)``

    Raises:
        TypeError: *seconds* is not a number.
        ValueError: *seconds* is NaN.

    Example:
        ```python
        assert rate.every(0.1) == 10.0       # an event every 100 ms is 10 per second
        assert rate.every(0) == rate.INF

        lim = rate.Limiter(rate.every(0.001), burst=1)  # one event per millisecond
        for _ in range(3):
            await lim.wait()
        ```
    """
    x: Any = seconds
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"rate: every(seconds) takes a number, not {type(x).__name__}")
    if not isinstance(seconds, int):
        seconds = _real_to_float(seconds)
    if seconds != seconds:
        raise ValueError("rate: every(seconds=nan): the interval must be a number of seconds")
    if seconds <= 0:
        return INF
    try:
        return 1.0 / seconds
    except OverflowError:  # an int past float's range: an event once in forever
        return 0.0


def _check_limit(limit: float, what: str) -> float:
    x: Any = limit
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"rate: {what} takes a number, not {type(x).__name__}")
    if not isinstance(limit, int):
        limit = _real_to_float(limit)
    if limit != limit or limit < 0:
        raise ValueError(f"rate: {what}={limit}: the limit must be >= 0 (or rate.INF)")
    try:
        return float(limit)
    except OverflowError:  # an int past float's range: no limit at all
        return INF


#: The largest count (burst, n, window limit): Go's int. Larger ones would not
#: survive the float arithmetic of tokens.
_MAX_COUNT: Final[int] = 2**63 - 1


def _check_int(n: int, what: str) -> int:
    if type(n) is not int and (not isinstance(n, int) or isinstance(n, bool)):
        hint = ""
        if what.startswith("wait") and type(n).__name__ == "Context":  # Go's lim.Wait(ctx)
            hint = ": the context comes after the count, wait(1, ctx) or wait(ctx=ctx)"
        raise TypeError(f"rate: {what} takes an int, not {type(n).__name__}{hint}")
    if n < 0:
        raise ValueError(f"rate: {what}={n} must not be negative")
    if n > _MAX_COUNT:
        raise ValueError(f"rate: {what}={n} is too large (at most 2**63 - 1, Go's int)")
    return n


#: The largest clock time a pure (``*_at``) call takes: finite, with room for a wait.
_MAX_T: Final[float] = sys.float_info.max / 4


def _check_t(t: object, what: str) -> None:
    """Refuse a clock time *t* that is not a finite number, naming *what*.

    NaN or an infinity would poison the state (``-inf - -inf`` is NaN, and a NaN
    count of tokens admits everything); a string or None would fail deep in the
    arithmetic with an unrelated message.
    """
    if type(t) is float:
        if -_MAX_T <= t <= _MAX_T:
            return
    elif isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise TypeError(f"rate: {what}(t) takes a clock time in seconds, not {type(t).__name__}")
    else:
        try:
            if -_MAX_T <= float(t) <= _MAX_T:
                return
        except OverflowError:  # an int past float's range
            pass
    shown = f"t={t!r}" if isinstance(t, float) else f"t: {type(t).__name__} past float's range"
    raise ValueError(
        f"rate: {what}({shown}): the clock time must be a finite number of seconds "
        f"(at most {_MAX_T:.3g} either side of zero)"
    )


def _loop_time(holder: Limiter | SlidingWindow) -> float | None:
    """`RunClock.read` for *holder* on its fast path, or None to take the full one.

    When the running loop is the asyncio (uvloop) loop *holder*'s ``_rt`` hint
    names (checked as `park_runtime` does, without the system call of
    ``asyncio._get_running_loop()`` on Python 3.11), `RunClock.read_again` reads
    it if it is also the loop of the last reading. Anything else (trio, another
    loop, no loop, a clock gone back) returns None: the caller reads the clock in
    full, then calls `_hint`.
    """
    rt: Any = holder._rt
    clock = holder._clock
    last_rt: Any = clock._rt
    if rt is last_rt and (
        (type(rt) in _THREAD_ID_LOOPS and rt._thread_id == _get_ident())
        or _RUNNING_IN.get(current_tasks_get(rt)) == _get_ident()
    ):
        # park_runtime's and read_again's common case, inlined (the hot path of
        # allow and wait): the loop of the last reading, running in this thread.
        now: float = rt.time()
        if now >= clock._last:
            clock._last = now
            return now
        return None
    try:
        rt = park_runtime(holder)
    except RuntimeError:  # no loop: the full read raises its own error
        return None
    return clock.read_again(rt)


def _hint(holder: Limiter | SlidingWindow) -> None:
    """After a full clock read: *holder*'s ``_rt`` hint (for `must_checkpoint` and
    `_loop_time`) is the loop just read; under trio, `TRIO` (as `must_checkpoint`
    sets it)."""
    rt = holder._clock.runtime
    if type(rt) is TrioRuntime:
        holder._rt = TRIO
    elif rt is not holder._rt:
        holder._rt = runtime()


def _same_time(a: float, b: float) -> bool:
    """Whether clock times *a* and *b* are one instant: within Go's nanosecond, or a
    few units of the float clock's rounding (``(t + 0.2) - 0.1 != t + 0.1``)."""
    if a == b:
        return True
    m = max(abs(a), abs(b))
    return m < INF and abs(a - b) <= max(_NS, 4.0 * math.ulp(m))


def _rounding(t: float, limit: float) -> float:
    """How far past clock time *t* a wait's end may be and still count as *t*: the
    float clock's rounding there (a few ulps), at most a crumb of tokens' worth."""
    return min(4.0 * math.ulp(t), _CRUMB / limit) if limit > 0 else 4.0 * math.ulp(t)


def _whole_within_rounding(tokens: float, t: float, limit: float) -> float:
    """*tokens* counted at *limit* from times near clock time *t*, as the whole number
    they are within the float clock's rounding there (a few ulps of *t*, times the
    rate, at most a crumb); else as they are."""
    whole = round(tokens)
    if tokens != whole and abs(tokens - whole) <= min(4.0 * math.ulp(t) * limit, _CRUMB):
        return float(whole)
    return tokens


def _duration_from_tokens(limit: float, tokens: float) -> float:
    if limit <= 0:
        return INF_DURATION
    return tokens / limit


def _tokens_from_duration(limit: float, seconds: float) -> float:
    if limit <= 0:
        return 0.0
    return seconds * limit


@final
class Reservation:
    """Tokens held for an event that may happen now or later: made by `Limiter.reserve`.

    Go: ``rate.Reservation``

    Example:
        ```python
        lim = rate.Limiter(10, burst=1)      # a token every 0.1 s, one at a time
        now = 0.0                            # the *_at twins take the clock time
        first = lim.reserve_at(now)
        assert first.ok and first.delay_from(now) == 0  # the bucket starts full
        second = lim.reserve_at(now)
        assert second.delay_from(now) == 0.1  # booked: act in 0.1 s (Go: r.Delay())
        second.cancel_at(now)                # changed our mind: the token goes back
        assert lim.tokens_at(now) == 0
        assert not lim.reserve_at(now, 2).ok  # more than the burst: never granted

        r = rate.Limiter(1000, burst=1).reserve()  # on the event loop's clock
        await gotime.sleep(r.delay())        # 0: act now
        ```
    """

    __slots__ = ("_lim", "_limit", "_ok", "_time_to_act", "_tokens")

    if TYPE_CHECKING:
        _lim: Limiter
        _limit: float
        _ok: bool
        _time_to_act: float
        _tokens: int

    def __init__(self) -> None:
        raise TypeError("Reservation cannot be built directly: use Limiter.reserve()")

    @classmethod
    def _create(
        cls, lim: Limiter, ok: bool, tokens: int, time_to_act: float, limit: float
    ) -> Reservation:
        self = object.__new__(cls)
        self._lim = lim
        self._ok = ok
        self._tokens = tokens
        self._time_to_act = time_to_act
        self._limit = limit
        return self

    def __repr__(self) -> str:
        return (
            f"<Reservation ok={self._ok} tokens={self._tokens} time_to_act={self._time_to_act:.6f}>"
        )

    @property
    def ok(self) -> bool:
        """Whether the limiter can grant the tokens within the maximum wait. Go: ``r.OK()``"""
        return self._ok

    @property
    def time_to_act(self) -> float:
        """The clock time (`current_time` scale) at which the event may happen."""
        return self._time_to_act

    def delay(self) -> float:
        """Seconds to wait before acting on the reservation; 0 means act now.

        `INF_DURATION` if the reservation is not ok: the limiter cannot grant
        the tokens. Needs a running event loop (for the clock). Go: ``r.Delay()``
        """
        return self.delay_from(self._lim._now())

    def delay_from(self, t: float) -> float:
        """`delay` as seen at clock time *t* (pure). Go: ``r.DelayFrom(t)``

        Raises:
            ValueError: *t* is NaN or infinite.
            TypeError: *t* is not a number.
        """
        _check_t(t, "delay_from")
        if not self._ok:
            return INF_DURATION
        return max(self._time_to_act - t, 0.0)

    def cancel(self) -> None:
        """Give back the tokens, as far as possible, as if the reservation was never made.

        Tokens reserved by later reservations, which counted on this one's, are
        not given back; a reservation whose time has come, or one that is not
        ok, gives back nothing, and so does a second cancel. Go: ``r.Cancel()``
        """
        self.cancel_at(self._lim._now())

    def cancel_at(self, t: float) -> None:
        """`cancel` as if at clock time *t* (pure). Go: ``r.CancelAt(t)``

        Raises:
            ValueError: *t* is NaN or infinite.
            TypeError: *t* is not a number.
        """
        _check_t(t, "cancel_at")
        if self._time_to_act < t and not _same_time(self._time_to_act, t):
            return  # its time has come: the tokens count as used (at that instant, not yet)
        self._give_back(t)

    def _give_back(self, t: float) -> None:
        """Restore the tokens at clock time *t*, whether or not their time has come
        (`Limiter.wait` cancelled before acting on tokens it got at once)."""
        if not self._ok:
            return
        lim = self._lim
        if lim._limit == INF or self._tokens == 0:
            return
        # The time between the limiter's last event and this reservation's says
        # how many tokens were reserved after this one: those are not restored.
        # (Compared as instants: Go's times are whole nanoseconds, where cancelling
        # the latest reservations one after the other steps back exactly; float
        # times step back to within a rounding of the one before.)
        latest = _same_time(self._time_to_act, lim._last_event)
        restore = float(self._tokens)
        if not latest and self._limit > 0:
            # (With a zero limit nothing refills, so no later reservation counted on
            # these tokens' time: all of them go back, in any order, as in Go.)
            # Later reservations booked all of it when the last event is (within a
            # rounding) this one's time plus the time its tokens take: nothing to give
            # back, and nothing given, so a later cancel -- once those reservations are
            # cancelled -- still can (a crumb of 1e-13 given here would spend it).
            booked_until = self._time_to_act + _duration_from_tokens(self._limit, restore)
            if lim._last_event >= booked_until or _same_time(lim._last_event, booked_until):
                return
            restore -= _tokens_from_duration(self._limit, lim._last_event - self._time_to_act)
            # Go counts that time in whole nanoseconds; here it carries the float clock's
            # rounding, which a zero limit set since would never refill: 0.99999998 of
            # a token is then refused forever.
            t_far = max(abs(lim._last_event), abs(self._time_to_act))
            restore = _whole_within_rounding(restore, t_far, self._limit)
        if restore <= 0:
            return
        t, tokens = lim._advance(t)
        tokens = min(tokens + restore, float(lim._burst))
        lim._last = t
        lim._tokens = tokens
        if latest:
            prev = self._time_to_act + _duration_from_tokens(self._limit, -self._tokens)
            if prev >= t or _same_time(prev, t):
                lim._last_event = prev
        # Given back once: a second cancel gives nothing (Go's CancelAt would
        # restore the tokens again, minting some; cancel is idempotent here).
        self._tokens = 0


@final
class Limiter:
    """A token bucket: *burst* tokens at most, refilled at *limit* tokens per second.

    It starts full. `allow` takes tokens if they are there, `reserve` books
    them for the future and says how long to wait, `wait` books and waits.
    With ``limit=INF`` everything is allowed (the burst is ignored); with
    ``limit=0`` the bucket is not refilled: the tokens in it are granted, then
    none until `set_limit` raises the limit (`burst` keeps its value). In any
    interval of *T* seconds it grants at most ``burst + limit * T`` tokens (up to
    the float clock's rounding: see docs/rate.md).

    Refill is computed from the clock, no task runs; the limiter is shared
    between tasks of one event loop. ``wait`` waiters are served in the order
    they called it (each books its tokens at once).
    Go: ``rate.NewLimiter(limit, burst)``

    Example:
        ```python
        lim = rate.Limiter(10, burst=5)     # 10 requests/s, bursts of 5
        await lim.wait(ctx=ctx)             # or: if lim.allow(): ...
        ```
    """

    __slots__ = ("_burst", "_clock", "_last", "_last_event", "_limit", "_rt", "_tokens")

    def __init__(self, limit: float, burst: int) -> None:
        """Make a full limiter.

        Raises:
            ValueError: *limit* is negative or NaN, or *burst* negative.
            TypeError: *limit* is not a number or *burst* not an int.
        """
        self._limit = _check_limit(limit, "Limiter(limit)")
        self._burst = _check_int(burst, "Limiter(burst)")
        self._tokens = float(burst)
        self._last = -math.inf  # the time tokens was last updated; -inf: full at any t
        self._last_event = -math.inf  # the latest time of a rate-limited event (past or future)
        self._clock = RunClock()
        self._rt: object = None  # hint: the runtime last used on (see must_checkpoint)

    def __repr__(self) -> str:
        return f"<Limiter limit={self._limit} burst={self._burst} at {id(self):#x}>"

    @property
    def limit(self) -> float:
        """The maximum overall event rate, per second. Go: ``lim.Limit()``"""
        return self._limit

    @property
    def burst(self) -> int:
        """The maximum number of tokens granted at once. Go: ``lim.Burst()``"""
        return self._burst

    # -- pure arithmetic -----------------------------------------------------------

    def _advance(self, t: float) -> tuple[float, float]:
        """The state at clock time *t*: ``(t, tokens)``, without changing the limiter.

        A *t* before the last update counts as no time elapsed (Go: clocks
        may jump backwards).
        """
        last = self._last
        if t < last:
            last = t
        if self._limit == INF:
            # Go's Inf is MaxFloat64 tokens a second: any time at all fills the
            # bucket, none (the same instant) adds nothing.
            if t > last:
                return t, float(self._burst)
            return t, min(self._tokens, float(self._burst))
        # Never updated (last = -inf): a finite limit has had all the time in the
        # world to fill the bucket; a zero limit adds nothing to the initial burst.
        tokens = self._tokens + _tokens_from_duration(self._limit, t - last)
        burst = float(self._burst)
        if tokens > burst:
            tokens = burst
        return t, tokens

    def _take_at_once(self, n: int) -> float | None:
        """The common case of `allow` and `wait`, in one call: *n* (a checked count)
        tokens in the bucket now, on the loop of the last clock reading (the fast path
        of `_loop_time`), at a finite, positive limit. Takes them and returns the time
        now; None, having changed nothing, for anything else -- the caller then takes
        the general path (`_now` and `_take`), which decides the same way."""
        rt: Any = self._rt
        clock = self._clock
        last_rt: Any = clock._rt
        if rt is not last_rt or not (
            (type(rt) in _THREAD_ID_LOOPS and rt._thread_id == _get_ident())
            or _RUNNING_IN.get(current_tasks_get(rt)) == _get_ident()
        ):
            return None
        limit = self._limit
        now: float = rt.time()
        last = self._last
        if now < clock._last or now < last or not 0 < limit < INF:
            return None
        # _take(now, n, max_future >= 0) when the tokens are there: no wait.
        tokens = self._tokens + (now - last) * limit
        burst = float(self._burst)
        if tokens > burst:
            tokens = burst
        tokens -= n
        if tokens < 0:
            return None
        clock._last = now
        self._last = now
        self._tokens = tokens
        self._last_event = now
        return now

    def _take(self, t: float, n: int, max_future: float) -> float | None:
        """Go's ``reserveN(t, n, maxFutureReserve)`` without the `Reservation`.

        Takes *n* tokens at clock time *t* if they come within *max_future*
        seconds, and returns the time to act on them; None (nothing taken) if
        not. `allow` and `wait` call it directly, `_reserve` wraps its result.
        """
        limit = self._limit
        if limit == INF:
            return t  # (no state change: see _reserve)
        # A zero limit takes the same path, as in current Go: the tokens in the
        # bucket are granted, none are added, and what is missing would take
        # INF_DURATION. The burst is never spent (older Go took zero-limit grants
        # out of it), so a later set_limit refills the bucket as usual.
        # _advance(t), inlined (the hot path of allow and wait):
        last = self._last
        if t < last:
            last = t
        # Never updated (last = -inf): a finite limit has had all the time in the
        # world to fill the bucket; a zero limit adds nothing to the initial burst.
        tokens = self._tokens + ((t - last) * limit if limit > 0 else 0.0)
        burst = float(self._burst)
        if tokens > burst:
            tokens = burst
        tokens -= n
        wait = 0.0
        if tokens < 0:
            wait = _duration_from_tokens(limit, -tokens)
            # Go's durations are whole nanoseconds (durationFromTokens truncates), so a
            # wait under one is none. On a float clock that also absorbs the rounding of
            # t - last: 0.8 - 0.7 is 0.0999...9 s, which must not refuse a 10/s allow().
            # The tokens stay short, as in Go, unless by a crumb (that rounding, which
            # would pile up): at high rates a nanosecond is many tokens (1e10/s: 10),
            # and writing those off granted 1000 x 8 tokens at one instant, burst 100.
            if wait < _NS or (wait < 1e-6 and wait <= 4.0 * math.ulp(t)):
                wait = 0.0
                if tokens > -_CRUMB:
                    tokens = 0.0
            elif limit == 0 and tokens > -1e-9:
                # No refill, so no wait says it is rounding: a shortfall of a
                # billionth of a token is (0.3 - 0.2 s at 10/s is 0.999...8 tokens,
                # kept by set_limit(0): Go's exact nanoseconds make it 1).
                wait = 0.0
                tokens = 0.0
        # (Tokens due at a deadline d are granted: the float subtraction max_future =
        # d - t, and the tokens counted from t - last, may each have been rounded.
        # allow()'s max_future of 0 is exact.)
        if n > self._burst or not (
            wait <= max_future
            or (max_future > 0 and wait - max_future <= _rounding(t + max_future, limit))
        ):
            return None
        when = t + wait
        self._last = t
        self._tokens = tokens
        self._last_event = when
        return when

    def _reserve(self, t: float, n: int, max_future: float) -> Reservation:
        limit = self._limit
        when = self._take(t, n, max_future)
        if when is None:
            return Reservation._create(self, False, 0, 0.0, limit)
        # Under INF it carries a zero limit, as Go's does: cancelled after the limit
        # became finite, it gives back its own n tokens, not a full bucket.
        return Reservation._create(self, True, n, when, 0.0 if limit == INF else limit)

    def tokens_at(self, t: float) -> float:
        """The number of tokens available at clock time *t* (pure). Go: ``lim.TokensAt(t)``

        Raises:
            ValueError: *t* is NaN or infinite.
            TypeError: *t* is not a number.
        """
        _check_t(t, "tokens_at")
        return self._advance(t)[1]

    def allow_at(self, t: float, n: int = 1) -> bool:
        """`allow` at clock time *t* (pure). Go: ``lim.AllowN(t, n)``

        Raises:
            ValueError: *n* is negative, or *t* NaN or infinite.
            TypeError: *t* is not a number.
        """
        if type(n) is not int or not 0 <= n <= _MAX_COUNT:
            _check_int(n, "allow(n)")
        _check_t(t, "allow_at")
        return self._take(t, n, 0.0) is not None

    def reserve_at(self, t: float, n: int = 1) -> Reservation:
        """`reserve` at clock time *t* (pure). Go: ``lim.ReserveN(t, n)``

        Raises:
            ValueError: *n* is negative, or *t* NaN or infinite.
            TypeError: *t* is not a number.
        """
        _check_int(n, "reserve(n)")
        _check_t(t, "reserve_at")
        return self._reserve(t, n, INF_DURATION)

    def set_limit_at(self, t: float, limit: float) -> None:
        """`set_limit` at clock time *t* (pure). Go: ``lim.SetLimitAt(t, newLimit)``

        Raises:
            ValueError: *limit* is negative or NaN, or *t* NaN or infinite.
            TypeError: *t* is not a number.
        """
        limit = _check_limit(limit, "set_limit(limit)")
        _check_t(t, "set_limit_at")
        t, tokens = self._advance(t)
        old = self._limit
        if 0 < old < INF and limit != old:
            # The tokens counted at the old rate carry the float clock's rounding of
            # t - last (a few ulps of t, times that rate), which Go's whole
            # nanoseconds do not: at the new rate it would become a wait (10 ms at
            # 100/s, a day into the clock, is 0.9999999995 tokens: then 1 ns at 0.5/s).
            tokens = _whole_within_rounding(tokens, t, old)
        self._last = t
        self._tokens = tokens
        self._limit = limit

    def set_burst_at(self, t: float, burst: int) -> None:
        """`set_burst` at clock time *t* (pure). Go: ``lim.SetBurstAt(t, newBurst)``

        Raises:
            ValueError: *burst* is negative, or *t* NaN or infinite.
            TypeError: *t* is not a number.
        """
        burst = _check_int(burst, "set_burst(burst)")
        _check_t(t, "set_burst_at")
        self._last, self._tokens = self._advance(t)
        self._burst = burst

    # -- on the event loop's clock -------------------------------------------------

    def _now(self) -> float:
        """The event loop's clock; a limiter kept across trio runs shifts its times.

        (As if no time had passed between the runs: see `RunClock`.)

        Raises:
            RuntimeError: No event loop runs in this thread, or the limiter is in
                use by a loop running in another thread.
        """
        rt = self._rt
        if rt is not TRIO and rt is not None:
            now = _loop_time(self)
            if now is not None:
                return now
        now, jump = self._clock.read(self)
        if jump:
            self._last += jump
            self._last_event += jump
        if rt is not TRIO or type(self._clock.runtime) is not TrioRuntime:
            _hint(self)
        return now

    def tokens(self) -> float:
        """The number of tokens available now (negative while reservations wait).

        Go: ``lim.Tokens()``
        """
        return self._advance(self._now())[1]

    def allow(self, n: int = 1) -> bool:
        """Take *n* tokens if they are available now; never waits. Go: ``lim.AllowN(time.Now(), n)``

        Raises:
            ValueError: *n* is negative.
        """
        if type(n) is not int or not 0 <= n <= _MAX_COUNT:
            _check_int(n, "allow(n)")
        if self._take_at_once(n) is not None:
            return True
        return self._take(self._now(), n, 0.0) is not None

    def reserve(self, n: int = 1) -> Reservation:
        """Book *n* tokens now or in the future; the reservation says how long to wait.

        The tokens are taken at once; act after ``r.delay()`` seconds, or call
        ``r.cancel()`` to give them back. ``r.ok`` is False (and nothing is
        taken) when *n* exceeds the burst, unless the limit is `INF`.
        Go: ``lim.ReserveN(time.Now(), n)``

        Raises:
            ValueError: *n* is negative.
        """
        _check_int(n, "reserve(n)")
        return self._reserve(self._now(), n, INF_DURATION)

    def set_limit(self, limit: float) -> None:
        """Change the limit; tokens accrued so far at the old limit are kept.

        Reservations already made keep their time. Go: ``lim.SetLimit(newLimit)``

        Raises:
            ValueError: *limit* is negative or NaN.
        """
        self.set_limit_at(self._now(), limit)

    def set_burst(self, burst: int) -> None:
        """Change the burst. Go: ``lim.SetBurst(newBurst)``

        Raises:
            ValueError: *burst* is negative.
        """
        self.set_burst_at(self._now(), burst)

    async def wait(self, n: int = 1, ctx: Context | None = None) -> None:
        """Wait until *n* tokens are granted.

        Books the tokens at once (so waiters are served in call order), then
        sleeps until their time; a call cancelled at its checkpoint after
        getting the tokens at once gives them back, but for those that later
        callers have booked since (as `Reservation.cancel` would, had their
        time not come). Fails at once, taking
        nothing, when *n* exceeds the burst (unless the limit is `INF`), when
        *ctx* is already done, or when *ctx*'s deadline would pass before the
        tokens are granted. If *ctx* ends (or the call is cancelled) while
        waiting, the tokens are given back as far as `Reservation.cancel` can.
        Go: ``lim.WaitN(ctx, n)``

        Checkpoint: always a cancel point (a pending cancellation raises, and
        takes nothing); a schedule point when it sleeps, and otherwise once
        every few hundred calls served at once back to back (as the channels'
        fast path), so a tight loop of waits that never sleep still lets other
        tasks run.

        Raises:
            ValueError: *n* exceeds the burst ("rate: wait(n=5) exceeds
                limiter's burst 3"), or is negative.
            DeadlineExceeded: *ctx*'s deadline would pass before the tokens
                are granted ("rate: wait(n=1) would exceed context deadline"),
                or passed while waiting.
            Canceled: *ctx* was cancelled.
        """
        if type(n) is not int or not 0 <= n <= _MAX_COUNT:
            _check_int(n, "wait(n)")
        if ctx is None:
            now = self._take_at_once(n)  # (n <= tokens <= burst: no ValueError due)
            if now is not None:
                if must_checkpoint(self):
                    await self._checkpoint_granted(n, now)
                return
        if n > self._burst and self._limit != INF:
            raise ValueError(f"rate: wait(n={n}) exceeds limiter's burst {self._burst}")
        max_future = INF_DURATION
        now = self._now()  # (before ctx.err(): past the deadline, ctx's own error)
        if ctx is not None:
            check_ctx(ctx, "rate: Limiter.wait(n, ctx)")
            err = ended(ctx)
            if err is not None:
                raise err
            deadline = ctx.deadline()
            if deadline is not None:
                max_future = deadline - now
        limit = self._limit
        when = self._take(now, n, max_future)
        if when is None:
            raise DeadlineExceeded(f"rate: wait(n={n}) would exceed context deadline")
        delay = when - now
        if delay <= 0:
            # Granted at once, booked before the checkpoint (call order); still a
            # cancel point, and a schedule point once the fast budget is spent.
            if must_checkpoint(self):
                await self._checkpoint_granted(n, when)
            return
        r = Reservation._create(self, True, n, when, 0.0 if limit == INF else limit)
        try:
            await sleep(delay, ctx)
        except BaseException as exc:
            now = current_time()
            if isinstance(exc, DeadlineExceeded) and (
                r._time_to_act - now <= _rounding(now, r._limit)
            ):
                # Tokens due exactly at the deadline were booked (Go's waitDuration <=
                # deadline - now): the wait is over, whichever of the two fired first.
                return
            # The caller never acts on the tokens: all of them go back, also when the
            # cancellation lands in the tick their time came (Reservation.cancel would
            # count those as used), as far as later reservations did not count on them.
            r._give_back(now)
            raise

    async def _checkpoint_granted(self, n: int, when: float) -> None:
        """`wait`'s checkpoint after *n* tokens were granted at once (due *when*)."""
        limit = self._limit
        r = Reservation._create(self, True, n, when, 0.0 if limit == INF else limit)
        try:
            await checkpoint()
        except BaseException:
            # Cancelled before acting on tokens it got at once: every one goes
            # back (Reservation.cancel gives back none whose time has come).
            r._give_back(current_time())
            raise


@final
class SlidingWindow:
    """At most *limit* events in any *window* seconds: a sliding log of event times.

    Unlike a fixed-window counter (reset at each window's start, so up to
    ``2 * limit`` events can pass around a boundary), no interval of *window*
    seconds ever holds more than *limit* events, and the first *limit*
    events may come at once. Keeps the timestamps of the last *window* seconds
    (at most *limit*), and those booked by waiting calls.
    ``wait`` waiters are served in call order.

    Example:
        ```python
        quota = rate.SlidingWindow(100, 60.0)   # the API allows 100 calls a minute
        await quota.wait(ctx=ctx)
        ```
    """

    __slots__ = ("_clock", "_limit", "_log", "_rt", "_window")

    def __init__(self, limit: int, window: float) -> None:
        """Make an empty window.

        Raises:
            ValueError: *limit* is negative or *window* not positive.
            TypeError: *limit* is not an int.
        """
        self._limit = _check_int(limit, "SlidingWindow(limit)")
        if isinstance(window, bool) or not isinstance(window, (int, float)):
            raise TypeError(f"rate: SlidingWindow(window) takes seconds, not {window!r}")
        if not window > 0 or math.isinf(window):
            raise ValueError(f"rate: SlidingWindow(window={window}) must be positive and finite")
        self._window = float(window)
        # Event times, non-decreasing, possibly in the future (booked by wait). Only
        # the last `limit` matter to the next event, but no cap: a withdrawn booking
        # must not have pushed a real event out. Times that left the window go in
        # `_when`.
        self._log: deque[float] = deque()
        self._clock = RunClock()
        self._rt: object = None  # hint: the runtime last used on (see must_checkpoint)

    def __repr__(self) -> str:
        return f"<SlidingWindow limit={self._limit} window={self._window} at {id(self):#x}>"

    @property
    def limit(self) -> int:
        """Events allowed per window."""
        return self._limit

    @property
    def window(self) -> float:
        """The window, in seconds."""
        return self._window

    def _when(self, t: float, n: int) -> float:
        """The earliest time >= *t* (and >= every booked event) at which *n* events fit."""
        log = self._log
        when = t
        if log and log[-1] > when:
            when = log[-1]
        # The events at or after log[k - m] must be the only ones in the window
        # ending at `when`: log[k - m - 1] must have left it.
        k = len(log)
        i = k - (self._limit - n) - 1
        if i >= 0:
            when = max(when, log[i] + self._window)
        return when

    def _now(self) -> float:
        """The event loop's clock; a window kept across trio runs shifts its times.

        (As if no time had passed between the runs: see `RunClock`.)
        """
        rt = self._rt
        if rt is not TRIO and rt is not None:
            now = _loop_time(self)
            if now is not None:
                return now
        now, jump = self._clock.read(self)
        if jump:
            self._log = deque([x + jump for x in self._log])
        if rt is not TRIO or type(self._clock.runtime) is not TrioRuntime:
            _hint(self)
        return now

    def _forget(self, t: float) -> None:
        """Drop the times out of every window from *t* on (*t*: the time now)."""
        log = self._log
        window = self._window
        while log and log[0] + window <= t:
            log.popleft()

    def _check(self, n: int, what: str) -> None:
        _check_int(n, f"{what}(n)")
        if n > self._limit:
            raise ValueError(
                f"rate: {what}(n={n}) exceeds the sliding window's limit {self._limit}"
            )

    def count_at(self, t: float) -> int:
        """Events counted in the window ending at clock time *t* (pure).

        Raises:
            ValueError: *t* is NaN or infinite.
            TypeError: *t* is not a number.
        """
        _check_t(t, "count_at")
        window = self._window  # x + window > t, not x > t - window: as _when rounds
        return sum(1 for x in self._log if x <= t < x + window)

    def allow_at(self, t: float, n: int = 1) -> bool:
        """`allow` at clock time *t* (pure).

        Raises:
            ValueError: *n* is negative or exceeds the limit, or *t* is NaN or infinite.
            TypeError: *t* is not a number.
        """
        self._check(n, "allow")
        if n == 0:
            return True
        _check_t(t, "allow_at")
        return self._admit(t, n)

    def _admit(self, t: float, n: int) -> bool:
        """`allow_at` once *t* and *n* (> 0) are checked."""
        self._forget(t)
        if self._when(t, n) > t:
            return False
        if n == 1:
            self._log.append(t)
        else:
            self._log.extend([t] * n)
        return True

    def allow(self, n: int = 1) -> bool:
        """Record *n* events now if they fit in the window; never waits.

        Raises:
            ValueError: *n* is negative or exceeds the limit.
        """
        t = self._now()
        if type(n) is not int or not 0 <= n <= self._limit:
            self._check(n, "allow")
        if n == 0:
            return True
        return self._admit(t, n)

    def delay_at(self, t: float, n: int = 1) -> float:
        """Seconds from clock time *t* until *n* events would fit (pure; takes nothing).

        Raises:
            ValueError: *n* is negative or exceeds the limit, or *t* is NaN or infinite.
            TypeError: *t* is not a number.
        """
        self._check(n, "delay")
        _check_t(t, "delay_at")
        return self._when(t, n) - t if n else 0.0

    async def wait(self, n: int = 1, ctx: Context | None = None) -> None:
        """Wait until *n* events fit in the window, and record them.

        Books the events at once (FIFO), then sleeps until their time; a call
        cancelled at its checkpoint after fitting at once withdraws its
        booking. Fails at once, booking nothing, when *ctx* is done or its
        deadline would pass first. If *ctx* ends or the call is cancelled
        while waiting, the booking is withdrawn (later bookings keep their
        times); events due exactly at *ctx*'s deadline are granted.

        Checkpoint: always a cancel point (a pending cancellation raises, and
        books nothing); a schedule point when it sleeps, and otherwise once
        every few hundred calls served at once back to back (as `Limiter.wait`).

        Raises:
            ValueError: *n* exceeds the limit or is negative.
            DeadlineExceeded: *ctx*'s deadline would pass first, or passed.
            Canceled: *ctx* was cancelled.
        """
        if type(n) is not int or not 0 <= n <= self._limit:
            self._check(n, "wait")
        now = self._now()  # (before ctx.err(): see Limiter.wait)
        if ctx is not None:
            check_ctx(ctx, "rate: SlidingWindow.wait(n, ctx)")
            err = ended(ctx)
            if err is not None:
                raise err
        self._forget(now)
        when = self._when(now, n) if n else now
        if ctx is not None:
            deadline = ctx.deadline()
            if deadline is not None and when > deadline:
                raise DeadlineExceeded(f"rate: wait(n={n}) would exceed context deadline")
        if n == 1:
            self._log.append(when)
        else:
            self._log.extend([when] * n)
        try:
            if when <= now:
                # Fits at once, booked before the checkpoint (call order); still a
                # cancel point, and a schedule point once the fast budget is spent.
                if not must_checkpoint(self):
                    return
                await checkpoint()
            else:
                await sleep(when - now, ctx)
        except BaseException as exc:
            if isinstance(exc, DeadlineExceeded) and when > now and current_time() >= when:
                # Due exactly at the deadline (allowed above: when <= deadline): the
                # wait is over, whichever of the two fired first -- as Limiter.wait.
                return
            # The caller will not act: withdraw the booking, even if its time came
            # as the cancellation did (it would count an event that never happened).
            for _ in range(n):
                try:
                    self._log.remove(when)
                except ValueError:  # pragma: no cover - it left the window meanwhile
                    break
            raise

"""Go's ``time`` timers: `after`, `Timer`, `Ticker`, `after_func` and `sleep`.

Times are floats on ``anyio.current_time()``'s clock (the event loop's), and
durations float seconds, so trio's ``MockClock`` drives all of them in tests.
Every timer is one ``call_at`` on the running loop (on trio, an entry in one heap
served by one system task per run, started by its first timer and parked while no
timer is pending):
no task per timer, and nothing stays scheduled once a timer has fired, been
stopped, or its channel is garbage.

The channels deliver the time a timer was *due* (Go sends that too). Like Go
1.23, `Timer.stop` and `Timer.reset` (and `Ticker.stop` / `Ticker.reset`) discard
a value that was delivered but not yet received, so no stale time is ever
received after they return; and a receive (or `select`, or ``len()``) from a
timer's channel once its due time has come finds the value, even if the loop
has not run the timer yet (a task busy past it, or uvloop's millisecond timers).
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Callable
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, cast, final
from weakref import ref

from ._backend import sleep as _sleep
from ._backend._timers import (
    Runtime,
    TimerHandle,
    TrioRuntime,
    call_at,
    cancel_timer,
    current_runtime,
    loop_key,
    on_loop_thread,
    run_is_over,
    running_elsewhere,
    runtime_or_none,
)
from ._chan import Chan, RecvChan
from ._context import Context, check_callback, check_ctx, run_callback, sleep_or_done
from ._exceptions import WouldBlock, to_seconds

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Ticker", "Timer", "after", "after_func", "sleep"]


def _seconds(x: object, what: str) -> float:
    """*x* as float seconds: any real number but a bool (int, float, Fraction, ...)."""
    if type(x) is not float:
        if type(x) is not int and (type(x) is bool or not isinstance(x, numbers.Real)):
            raise TypeError(f"{what}: duration must be a number of seconds, not {type(x).__name__}")
        x = to_seconds(cast("float", x))  # (an int beyond float's range: infinite)
    if math.isnan(x):
        raise ValueError(f"{what}: duration must not be NaN")
    return x


def _loop_name(rt: Runtime) -> str:
    if type(rt) is TrioRuntime:
        return f"the trio run of thread {rt.thread}"
    return f"the event loop {rt!r}"


def _misuse(rt: Runtime, what: str, arming: bool) -> None:
    """Raise if the caller may not touch a timer of *rt*'s loop now (stop, reset).

    A timer belongs to the loop that made it: its methods run on that loop's thread
    (the loop's timers and a trio run's heap are not thread-safe). Checked before
    any state changes; the cheap test comes first.
    """
    if on_loop_thread(rt):
        if arming and type(rt) is TrioRuntime and run_is_over(rt):
            raise RuntimeError(
                f"{what}: {_loop_name(rt)} this timer belongs to is over, so it can never "
                "fire again: make a new timer in the running loop"
            )
        return
    if running_elsewhere(rt):
        raise RuntimeError(
            f"{what}: called from another thread than the timer's event loop: this timer "
            f"belongs to {_loop_name(rt)}, and its methods must be called on that loop's "
            "thread (hand the call over with the loop's call_soon_threadsafe, or "
            "trio's TrioToken.run_sync_soon)"
        )
    if arming and run_is_over(rt):
        raise RuntimeError(
            f"{what}: {_loop_name(rt)} this timer belongs to is closed, so it can never "
            "fire again: make a new timer in the running loop"
        )


@final
class _DueBuffer(deque[float]):
    """A timer channel's buffer: found empty once the timer is due, it runs the timer.

    Go 1.23 runs a due timer on any receive from its channel (before it looks at
    the buffer), so a task that finds the clock past a timer's due time also finds
    its value -- even when the loop has not run the timer yet: the task kept it
    busy past that time, or woke in the same loop step (uvloop's timers count whole
    milliseconds, so a sleep until the due time may end in the step before the
    timer's). Every receive path (and `select`, ``len()``) tests the buffer's
    length, so they all go through here.
    """

    __slots__ = ("alarm",)

    def __init__(self, alarm: _Alarm) -> None:
        super().__init__()
        self.alarm = alarm

    def __len__(self) -> int:
        a = self.alarm
        h = a.handle
        # A due tick of a Ticker whose last tick waits is dropped (Go's rule), and
        # it re-arms on its grid. Only in the timer's own loop, running now: the
        # loop's timers are not thread-safe, and a loop closed (a trio run over)
        # never fires its timers again. (The clock first: asking for the running loop
        # costs a system call on Python 3.11, and a timer is mostly looked at before
        # it is due. Either runtime's clock may be read from any thread.)
        if (
            h is not None
            and a.tid == get_ident()
            and a.rt.time() >= a.when
            and runtime_or_none() is a.rt
        ):
            h.cancel()
            a._fire()  # (which clears the handle first: no recursion)
        return deque.__len__(self)


@final
class _Alarm:
    """One scheduled timer: sends its due time on a channel, or calls a function.

    The loop holds the alarm (through the ``call_at`` handle); the alarm holds
    its channel weakly, and a channel that becomes garbage cancels the alarm, so
    an ``after()`` nobody waits for any more leaves nothing scheduled.
    """

    __slots__ = ("__weakref__", "ch", "fn", "handle", "period", "rt", "tid", "when")

    def __init__(
        self, rt: Runtime, ch: Chan[float] | None, fn: Callable[[], object] | None, period: float
    ) -> None:
        self.rt = rt
        self.tid = get_ident()  # the loop's thread (made there: current_runtime())
        if ch is not None:  # only this loop fills it: no waiting from another one
            ch._bind_loop(loop_key(rt))
            ch._buf = _DueBuffer(self)  # (a new channel: its buffer is empty)
        self.ch = None if ch is None else ref(ch, self._chan_gone)
        self.fn = fn
        self.period = period
        self.handle: TimerHandle | None = None
        self.when = 0.0

    def start(self, when: float) -> None:
        self.when = when
        self.handle = call_at(self.rt, when, self._fire)

    def start_in(self, seconds: float) -> None:
        """Start a one-shot channel timer *seconds* from now; its channel is empty.

        Due at once (``seconds <= 0``), it delivers now: Go 1.23 runs a due timer on
        any receive from its channel, so ``select { case <-t.C: default: }`` right
        after ``NewTimer(0)`` or ``Reset(0)`` receives. A ``call_at`` would leave that
        to the order of the loop's ready queue (on asyncio the task ran first).
        """
        now = self.rt.time()
        if seconds > 0:
            self.start(now + seconds)
            return
        self.when = now
        ch = self.ch() if self.ch is not None else None
        if ch is not None:
            ch.send_nowait(now)  # never blocks: the buffer is empty, or a receiver waits

    def _fire(self) -> None:
        if self.rt.time() < self.when:
            # Early (asyncio runs a timer up to its clock's resolution early):
            # never before the clock reaches the due time, as in Go.
            self.start(self.when)
            return
        self.handle = None
        fn = self.fn
        if fn is not None:
            run_callback(fn, "time.after_func")
            return
        ch = self.ch() if self.ch is not None else None
        if ch is None:
            return
        try:
            ch.send_nowait(self.when)
        except WouldBlock:  # a Ticker's reader is behind: keep the pending tick, drop this one
            pass
        period = self.period
        if period:
            # The next tick after now, skipping the ones a late wake-up missed (Go).
            nxt = self.when + period
            now = self.rt.time()
            if nxt <= now:
                nxt += period * ((now - nxt) // period + 1.0)
                if not now < nxt < math.inf:  # the quotient overflowed (a subnormal period)
                    nxt = math.nextafter(now, math.inf)
            elif nxt <= self.when:  # a period below the clock's float step at this time
                nxt = math.nextafter(self.when, math.inf)
            self.start(nxt)

    def stop(self) -> bool:
        """Unschedule, and discard a delivered but unreceived value; True if either was there."""
        active = False
        h = self.handle
        if h is not None:
            self.handle = None
            h.cancel()
            active = True
        ch = self.ch() if self.ch is not None else None
        if ch is not None:
            try:
                ch.recv_nowait()
                active = True
            except WouldBlock:
                pass
        return active

    def _chan_gone(self, _: object) -> None:
        h = self.handle
        if h is not None:
            self.handle = None
            cancel_timer(self.rt, h)


def after(seconds: float) -> RecvChan[float]:
    """A channel that receives the (due) time once, *seconds* from now.

    Use it in `select` for a timeout; a channel nobody holds any more cancels
    its timer. Non-positive *seconds* fire at once. Go: ``time.After(d)``

    Raises:
        TypeError: *seconds* is not a number (or is a bool).
        ValueError: *seconds* is NaN.
        RuntimeError: No event loop is running.

    Example:
        ```python
        results = Chan[str]()                # nobody sends: the timeout wins
        s = await select(recv(results), recv(gotime.after(0.001)))
        assert s.index == 1                  # Go: case <-time.After(d): timed out
        assert isinstance(s.value, float)    # the time it was due
        ```
    """
    seconds = _seconds(seconds, "after")
    rt = current_runtime()
    ch: Chan[float] = Chan(1)
    _Alarm(rt, ch, None, 0.0).start_in(seconds)
    return ch.recv_only()


@final
class Timer:
    """A single event: its channel `c` receives the due time once, *seconds* from now.

    `stop` and `reset` follow Go 1.23: after they return, no stale value is
    received. Usable as a context manager that stops it on exit. Go:
    ``time.NewTimer(d)``

    Raises:
        TypeError: *seconds* is not a number (or is a bool).
        ValueError: *seconds* is NaN.
        RuntimeError: No event loop is running.

    Example:
        ```python
        with gotime.Timer(0.001) as t:       # Go: t := time.NewTimer(d); defer t.Stop()
            due = await t.c.recv()           # fires once, with the time it was due
            assert not t.stop()              # it fired already: nothing to stop
            assert not t.reset(60)           # rearm it (Go: t.Reset(d))...
            assert t.stop()                  # ...and stop it before it fires
        assert isinstance(due, float)        # on the loop's clock: anyio.current_time()
        ```
    """

    __slots__ = ("_alarm", "_c", "_ch")

    def __init__(self, seconds: float) -> None:
        seconds = _seconds(seconds, "Timer")
        rt = current_runtime()
        self._ch: Chan[float] | None = Chan(1)
        self._c: RecvChan[float] | None = self._ch.recv_only()
        self._alarm = _Alarm(rt, self._ch, None, 0.0)
        self._alarm.start_in(seconds)

    @classmethod
    def _func(cls, seconds: float, fn: Callable[[], object]) -> Timer:
        t: Timer = object.__new__(cls)
        rt = current_runtime()
        t._ch = t._c = None
        t._alarm = _Alarm(rt, None, fn, 0.0)
        t._alarm.start(rt.time() + max(seconds, 0.0))
        return t

    @property
    def c(self) -> RecvChan[float]:
        """The channel the time is delivered on (buffer of one). Go: ``t.C``

        For a timer made by `after_func` it is a channel that never receives
        anything (Go's ``C`` is nil there, and a nil channel blocks forever).
        """
        c = self._c
        if c is None:
            c = self._c = Chan[float]().recv_only()
        return c

    def stop(self) -> bool:
        """Stop the timer. True if that stopped it from firing, False if it had already
        fired (and its value was received) or been stopped. Go: ``t.Stop()``

        Raises:
            RuntimeError: Called from another thread than the timer's event loop's.
        """
        a = self._alarm
        if not on_loop_thread(a.rt):
            _misuse(a.rt, "Timer.stop", False)
        return a.stop()

    def reset(self, seconds: float) -> bool:
        """Restart the timer to fire *seconds* from now; True if it was still pending.

        Go: ``t.Reset(d)``

        Raises:
            TypeError: *seconds* is not a number (or is a bool).
            ValueError: *seconds* is NaN.
            RuntimeError: Called from another thread than the timer's event loop's, or
                that loop is closed (its trio run over): nothing changed then.
        """
        seconds = _seconds(seconds, "Timer.reset")
        a = self._alarm
        _misuse(a.rt, "Timer.reset", True)
        active = a.stop()
        if a.fn is None:
            a.start_in(seconds)
        else:
            a.start(a.rt.time() + max(seconds, 0.0))
        return active

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "pending" if self._alarm.handle is not None else "idle"
        return f"<Timer {state} due={self._alarm.when:.6f}>"


@final
class Ticker:
    """A channel `c` that receives the (due) time every *seconds*.

    Like Go, it keeps at most one pending tick: a tick that finds the previous
    one still unreceived is dropped, and a late wake-up skips the ticks it
    missed. Usable as a context manager that stops it on exit. Go:
    ``time.NewTicker(d)``

    Raises:
        TypeError: *seconds* is not a number (or is a bool).
        ValueError: *seconds* is not positive, or is NaN.
        RuntimeError: No event loop is running.

    Example:
        ```python
        with gotime.Ticker(0.001) as ticker:  # Go: t := time.NewTicker(d); defer t.Stop()
            ticks = [await ticker.c.recv() for _ in range(3)]  # for t := range t.C
        assert ticks[0] < ticks[1] < ticks[2]  # the due times, a period or more apart
        ```
    """

    __slots__ = ("_alarm", "_c", "_ch")

    def __init__(self, seconds: float) -> None:
        seconds = self._period(seconds, "Ticker")
        rt = current_runtime()
        self._ch: Chan[float] = Chan(1)
        self._c = self._ch.recv_only()
        self._alarm = _Alarm(rt, self._ch, None, seconds)
        self._alarm.start(rt.time() + seconds)

    @staticmethod
    def _period(seconds: object, what: str) -> float:
        s = _seconds(seconds, what)
        if s <= 0:
            raise ValueError(f"non-positive interval for {what} ({s!r} s)")
        return s

    @property
    def c(self) -> RecvChan[float]:
        """The channel the ticks are delivered on (buffer of one). Go: ``t.C``"""
        return self._c

    def stop(self) -> None:
        """Stop the ticks; a pending unreceived tick is discarded. Go: ``t.Stop()``

        Raises:
            RuntimeError: Called from another thread than the ticker's event loop's.
        """
        a = self._alarm
        if not on_loop_thread(a.rt):
            _misuse(a.rt, "Ticker.stop", False)
        a.stop()

    def reset(self, seconds: float) -> None:
        """Tick every *seconds* from now on. Go: ``t.Reset(d)``

        Raises:
            TypeError: *seconds* is not a number (or is a bool).
            ValueError: *seconds* is not positive, or is NaN.
            RuntimeError: Called from another thread than the ticker's event loop's, or
                that loop is closed (its trio run over): nothing changed then.
        """
        seconds = self._period(seconds, "Ticker.reset")
        a = self._alarm
        _misuse(a.rt, "Ticker.reset", True)
        a.stop()
        a.period = seconds
        a.start(a.rt.time() + seconds)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._alarm.handle is not None else "stopped"
        return f"<Ticker every {self._alarm.period:g} s {state}>"


def after_func(seconds: float, fn: Callable[[], object]) -> Timer:
    """Call ``fn()`` on the event loop's thread *seconds* from now; returns its `Timer`.

    ``stop()`` on the timer cancels the call (True if it had not run yet). *fn*
    is a plain function and should be quick; an exception it raises is reported
    through ``sys.unraisablehook``. The timer's `Timer.c` never receives.
    Go: ``time.AfterFunc(d, f)`` (which runs ``f`` in a goroutine of its own).

    Raises:
        TypeError: *fn* is not callable, or is an async function; or *seconds* is not a number.
        ValueError: *seconds* is NaN.
        RuntimeError: No event loop is running.

    Example:
        ```python
        fired = Chan[str](1)
        t = gotime.after_func(0.001, lambda: fired.send_nowait("ding"))
        assert await fired.recv() == "ding"  # called on the loop, in 1 ms
        assert not t.stop()                  # it ran already

        later = gotime.after_func(60, lambda: fired.send_nowait("never"))
        assert later.stop()                  # stopped in time: it will not run
        ```
    """
    seconds = _seconds(seconds, "after_func")
    check_callback(fn, "time.after_func")
    return Timer._func(seconds, fn)


async def sleep(seconds: float, ctx: Context | None = None) -> None:
    """Wait *seconds*; with *ctx*, raise ``ctx.err()`` as soon as *ctx* is done instead.

    Non-positive *seconds* only checkpoint. A cancel point.
    Go: ``time.Sleep(d)``, and ``select { case <-time.After(d): case <-ctx.Done(): }``

    Raises:
        Canceled: *ctx* was cancelled first (or already was).
        DeadlineExceeded: *ctx*'s deadline came first.
        TypeError: *seconds* is not a number (or is a bool).
        ValueError: *seconds* is NaN.

    Example:
        ```python
        await gotime.sleep(0.001)            # Go: time.Sleep(time.Millisecond)

        short, cancel = with_timeout(ctx, 0.001)
        try:
            await gotime.sleep(60, short)    # ends as soon as short is done
            outcome = "slept"
        except DeadlineExceeded:
            outcome = "deadline"
        finally:
            cancel()
        assert outcome == "deadline"
        ```
    """
    if ctx is None and type(seconds) is float and seconds > 0.0:  # (NaN is not > 0)
        await _sleep(seconds)
        return
    seconds = max(_seconds(seconds, "sleep"), 0.0)
    if ctx is None:
        await _sleep(seconds)
        return
    check_ctx(ctx, "time.sleep(seconds, ctx)")
    # A wait on ctx.done(), not a cancel scope bound to ctx: inside ctx.scope(), the
    # ctx's end reaches it as a wake-up before the scope's cancellation.
    await sleep_or_done(seconds, ctx)

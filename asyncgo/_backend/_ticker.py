"""Wake-ups that keep timers on time while a pool's short jobs run (Linux).

A job that sleeps 1 ms should be done 1 ms later. Event loops do not quite do
that: asyncio's epoll selector and trio round the wait for the next timer *up*
to a whole millisecond, counted from after the loop has run whatever was ready,
and uvloop counts it from the time cached when its iteration began. With 100
workers each sleeping 1 ms, the sleeps fall into lock-step waves, and every
wave costs 1 ms plus the time to run the whole wave: a pool of bare tasks gets
about 60 % of the ideal speed-up on asyncio and trio, 80 % on uvloop (Go, whose
timers are exact, 95 %).

A `Ticker` fixes that for the loop it belongs to, with a Linux ``timerfd`` that
the loop waits on like any other file descriptor -- no thread, no busy wait:

* asyncio (its selector loops): the loop's selector is wrapped, so each wait the
  loop is about to make for a timer due within 0.1 s sets the timer to fire at
  that timer's exact time, once: the loop wakes on time instead of up to 1 ms
  late, and a busy loop, which does not wait, pays nothing. It stops at the
  first wait after no job has started for `LINGER_NS` (5 ms): long jobs do not
  keep it.
* uvloop (no selector to wrap): while jobs start, the timer fires every
  `TICK_NS` (100 µs; the first time 1 ms after a job starts), so the loop wakes
  and runs the timers due by then. It stops when no job has started for
  `LINGER_NS`.
* trio: an instrument sees each wait the loop is about to make (its exact
  timeout) and sets the timer the same way as on asyncio. A system task,
  ``asyncgo ticker``, waits on the descriptor. Not under a virtual clock
  (trio's ``MockClock``).

`WorkerPool` and ``stages.map(workers=n)`` hold the loop's ticker while they run
and count each job they start. ``ASYNCGO_TICK_US`` sets uvloop's period in
microseconds (``0`` turns the ticker off on every loop). Elsewhere than Linux it
is off: kqueue (macOS, BSD) waits to the nanosecond already.

The deadlock detector ignores the ticker (`QUIET_FDS`, the task's name): it wakes
the loop, never a task. With no descriptor left the jobs run on the loop's own
timers, and the ticker tries again `_RETRY_JOBS` job starts later.
"""

from __future__ import annotations

import errno
import math
import os
import selectors
import sys
import threading
import time
import warnings
import weakref
from asyncio import AbstractEventLoop, _get_running_loop
from contextvars import Context
from typing import Any, cast

from . import _tasks

__all__ = ["LINGER_NS", "TICK_NS", "TICKER_TASK", "Ticker", "hold"]

#: The name of the trio system task that waits on the timer.
TICKER_TASK = "asyncgo ticker"


def _tick_ns() -> int:
    raw = os.environ.get("ASYNCGO_TICK_US", "").strip()
    if not raw:
        return 100_000
    try:
        us = float(raw)
    except ValueError:
        us = math.nan
    if not (0 <= us <= 1_000_000):
        warnings.warn(
            f"ASYNCGO_TICK_US={raw!r} ignored: a period in microseconds, 0 to 1000000"
            " (0 turns the ticker off); using 100",
            RuntimeWarning,
            stacklevel=2,
        )
        return 100_000
    return int(us * 1000)


#: The period of the uvloop ticker, in nanoseconds (0: no ticker on any loop).
TICK_NS = _tick_ns()
#: With no job started for this long (ns), the ticker stops until the next one.
LINGER_NS = 5_000_000
#: uvloop: the first tick, 1 ms after the first job starts. Earlier ticks could not
#: help a wait of 1 ms or more, and a pool that is done sooner pays for none.
_FIRST_TICK_NS = 1_000_000
#: asyncio, trio: waits longer than this (seconds) are left to the loop (1 ms late is < 1 %).
_PRECISE_UP_TO = 0.1


class _TimerFd:
    """A non-blocking ``timerfd`` on ``CLOCK_MONOTONIC`` (``os`` on 3.13+, else ctypes)."""

    __slots__ = ("_settime", "_spec", "fd")

    def __init__(self) -> None:
        create = getattr(os, "timerfd_create", None)  # Python 3.13+
        if create is not None:
            self.fd: int = create(time.CLOCK_MONOTONIC, flags=_TFD_NONBLOCK | _TFD_CLOEXEC)
            self._spec: Any = None
            self._settime: Any = getattr(os, "timerfd_settime_ns")  # noqa: B009
            return
        lib, itimerspec = _libc()
        fd = lib.timerfd_create(time.CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise _ctypes_error()
        self.fd = fd
        self._spec = itimerspec()
        self._settime = lib.timerfd_settime

    def set(self, first_ns: int, every_ns: int) -> None:
        """Fire in *first_ns*, then every *every_ns* (0: once); ``first_ns=0`` disarms."""
        spec = self._spec
        if spec is None:
            self._settime(self.fd, initial=first_ns, interval=every_ns)
            return
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(first_ns, 1_000_000_000)
        spec.it_interval.tv_sec, spec.it_interval.tv_nsec = divmod(every_ns, 1_000_000_000)
        if self._settime(self.fd, 0, spec, None) < 0:  # pragma: no cover - bad fd
            raise _ctypes_error()

    def read(self) -> int:
        """The number of expirations since the last read (0 if none)."""
        try:
            return int.from_bytes(os.read(self.fd, 8), sys.byteorder)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        os.close(self.fd)


_TFD_NONBLOCK = getattr(os, "O_NONBLOCK", 0o4000)  # (timerfd.h: TFD_NONBLOCK = O_NONBLOCK)
_TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
_api_lock = threading.Lock()
_api: tuple[Any, Any] | None = None  # (libc, its itimerspec type): one value, set once


def _libc() -> tuple[Any, Any]:
    """libc with ``timerfd_settime``'s argument types, and the ``itimerspec`` type
    they name (made once, under a lock: two threads' first pools would otherwise
    mix one's type with the other's function, whose every call then fails)."""
    global _api
    api = _api
    if api is not None:
        return api
    with _api_lock:
        if _api is not None:
            return _api
        import ctypes

        class timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        class itimerspec(ctypes.Structure):
            _fields_ = [("it_interval", timespec), ("it_value", timespec)]

        lib = ctypes.CDLL(None, use_errno=True)
        lib.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.timerfd_create.restype = ctypes.c_int
        lib.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(itimerspec),
            ctypes.c_void_p,
        ]
        lib.timerfd_settime.restype = ctypes.c_int
        api = _api = (lib, itimerspec)
    return api


def _ctypes_error() -> OSError:
    """The error of the libc call just made through ctypes."""
    import ctypes

    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


_supported: bool | None = None


def _timerfd_works() -> bool:
    """Whether this platform has ``timerfd`` (probed until it answers for sure)."""
    global _supported
    if _supported is None:
        if not sys.platform.startswith("linux"):
            _supported = False
            return False
        try:
            _TimerFd().close()
        except AttributeError:  # pragma: no cover - a libc without timerfd_create
            _supported = False
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EINVAL, errno.EPERM):  # pragma: no cover
                _supported = False
            return False  # (else: out of descriptors or memory now; ask again later)
        else:
            _supported = True
    return _supported


#: After the timerfd could not be made (no descriptor left), this many job starts go
#: by before the next try.
_RETRY_JOBS = 1000


class Ticker:
    """One loop's wake-ups; `hold` gives the running loop's (None where there are none)."""

    __slots__ = (
        "_fd",
        "_holders",
        "_hook",
        "_loop",
        "_retry_at",
        "_seen",
        "_selector",
        "_since",
        "active",
        "jobs",
    )

    def __init__(self, loop: AbstractEventLoop | None) -> None:
        # None: trio. Weak: the ticker is the loop's value in _asyncio_tickers, which
        # must not keep its key alive.
        self._loop = None if loop is None else weakref.ref(loop)
        self._fd: _TimerFd | None = None
        self._holders = 0
        self._hook: _TrioHook | None = None  # trio: the system task's, while it runs
        self.active = False
        self.jobs = 0  # jobs started (by every holder)
        self._seen = 0  # ... as of the last tick (uvloop) or wait (asyncio)
        self._since = 0  # uvloop: expirations since a job last started; asyncio: its time
        # asyncio: the selector whose select() this ticker wrapped, and the wrapper
        # (weak: the selector leads to its loop, the key of this ticker's entry)
        self._selector: tuple[weakref.ref[selectors.BaseSelector], weakref.ref[Any]] | None = None
        self._retry_at = 0  # the job count from which a failed start is tried again

    def __repr__(self) -> str:
        return f"<Ticker holders={self._holders} active={self.active}>"

    def job(self) -> None:
        """A holder starts a job: tick (again) if the ticker sleeps."""
        self.jobs += 1
        if not self.active:
            self._start()

    async def release(self) -> None:
        """A holder is done: the ticker stops with the last one (trio: its task has
        exited on return, so a leak check right after the holder's block sees none)."""
        self._holders -= 1
        if self._holders == 0:
            self._retry_at = 0  # (the next holder tries at once)
        if self._holders == 0 and self.active:
            hook = self._hook
            self._stop()
            if hook is not None:
                import trio

                with trio.CancelScope(shield=True):
                    await hook.exited.wait()

    # -- asyncio: the timer set to each wait; uvloop: a periodic timer ------------------

    def _start(self) -> None:
        if self._holders <= 0 or self.jobs < self._retry_at:
            return
        if self._loop is None:
            try:
                self._start_trio()
            except RuntimeError:  # pragma: no cover - the run is ending
                self._hook = None
                self._retry_at = self.jobs + _RETRY_JOBS
            else:
                self.active = True
            return
        loop = self._loop()
        if loop is None:  # pragma: no cover - held, so its loop is alive
            return
        try:
            fd = _TimerFd()
        except OSError:  # no descriptor left: the loop's own timers for a while
            self._retry_at = self.jobs + _RETRY_JOBS
            return
        try:
            # In an empty context: the reader's handle keeps the context it is made
            # in alive, and this one is a job's.
            Context().run(loop.add_reader, fd.fd, self._tick)
        except Exception:  # (e.g. RuntimeError: the loop is closed)
            fd.close()
            self._retry_at = self.jobs + _RETRY_JOBS
            return
        self.active = True
        self._fd = fd
        _tasks.QUIET_FDS.add(fd.fd)
        self._seen = self.jobs
        selector = getattr(loop, "_selector", None)
        if isinstance(selector, selectors.BaseSelector):
            self._since = time.monotonic_ns()
            self._wrap(selector, fd)
        else:  # uvloop: periodic
            self._since = 0
            try:
                fd.set(_FIRST_TICK_NS, TICK_NS)
            except Exception:
                self._give_up()

    def _give_up(self) -> None:
        """Setting the timer failed: the loop's own timers until `_RETRY_JOBS` later.

        The ticker only makes timers more exact; it must never fail a job or the
        loop it wakes.
        """
        self._retry_at = self.jobs + _RETRY_JOBS
        try:
            self._stop()
        except Exception:  # pragma: no cover - nothing left to undo
            pass

    def _wrap(self, selector: selectors.BaseSelector, fd: _TimerFd) -> None:
        """asyncio: set the timer to each short wait of the loop's selector."""
        select = selector.select
        arm = fd.set
        now_ns = time.monotonic_ns

        def precise_select(timeout: float | None = None) -> Any:
            if timeout != 0 and self._fd is fd:  # (not a stale wrapper: see _stop)
                try:
                    jobs = self.jobs
                    if jobs != self._seen:
                        self._seen = jobs
                        self._since = now_ns()
                    elif now_ns() - self._since > LINGER_NS:
                        self._stop()  # no job started lately: the loop's own wait will do
                        return select(timeout)
                    if timeout is not None and timeout <= _PRECISE_UP_TO:
                        arm(math.ceil(timeout * 1e9), 0)
                except Exception:  # (never out of the loop's select)
                    self._give_up()
            return select(timeout)

        # (the selector's own select() may be wrapped already: restored by _stop)
        precise_select.wrapped = vars(selector).get("select", _NONE)  # type: ignore[attr-defined]
        selector.select = precise_select  # type: ignore[method-assign]
        self._selector = (weakref.ref(selector), weakref.ref(precise_select))

    def __del__(self) -> None:
        # Only a loop closed while a pool still held its ticker (a block never
        # left) gets here with the descriptor open.
        fd = self._fd
        if fd is not None:
            self._fd = None
            try:
                _tasks.QUIET_FDS.discard(fd.fd)
                fd.close()
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def _tick(self) -> None:
        fd = self._fd
        if fd is None:  # pragma: no cover - stopped in this very iteration
            return
        n = fd.read()
        if self._selector is not None:
            return  # asyncio: the wrapped selector tracks the jobs
        if self.jobs != self._seen:
            self._seen = self.jobs
            self._since = 0
        else:
            self._since += n
            if self._since * TICK_NS >= LINGER_NS:
                self._stop()

    def _stop(self) -> None:
        self.active = False
        if self._loop is None:
            hook, self._hook = self._hook, None
            if hook is not None:
                hook.scope.cancel()
            return
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        _tasks.QUIET_FDS.discard(fd.fd)
        wrapped, self._selector = self._selector, None
        if wrapped is not None:
            selector: Any = wrapped[0]()
            wrapper: Any = wrapped[1]()
            # Unwrapped unless something wrapped it again since (then the wrapper
            # stays, passing every call through: it no longer has the fd).
            if wrapper is not None and vars(selector).get("select") is wrapper:
                if wrapper.wrapped is _NONE:
                    del selector.select
                else:
                    selector.select = wrapper.wrapped
        loop = self._loop()
        try:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(fd.fd)
        finally:
            fd.close()

    # -- trio: one shot at each wait's end -------------------------------------------------

    def _start_trio(self) -> None:
        import trio

        hook = self._hook = _TrioHook(self)
        trio.lowlevel.spawn_system_task(hook.serve, name=TICKER_TASK)


class _TrioHook:
    """One trio ticker task's instrument (a stopped task may still unwind as the next
    one starts: each adds and removes its own)."""

    __slots__ = ("_fd", "_seen", "_since", "exited", "scope", "ticker")

    def __init__(self, ticker: Ticker) -> None:
        import trio

        self.ticker = ticker
        self.scope = trio.CancelScope()
        self.exited = trio.Event()
        self._fd: _TimerFd | None = None
        self._seen = ticker.jobs
        self._since = time.monotonic_ns()

    async def serve(self) -> None:
        import trio

        lowlevel = trio.lowlevel
        try:
            fd = _TimerFd()
        except OSError:  # no descriptor left: the loop's own timers for a while
            ticker = self.ticker
            if ticker._hook is self:
                ticker._hook = None
                ticker.active = False
                ticker._retry_at = ticker.jobs + _RETRY_JOBS
            self.exited.set()
            return
        self._fd = fd
        added = False
        try:
            with self.scope:
                lowlevel.add_instrument(cast("Any", self))
                added = True
                while True:
                    await lowlevel.wait_readable(fd.fd)
                    fd.read()
        finally:
            self._fd = None
            if self.ticker._hook is self:  # (not if a newer task took over)
                self.ticker._hook = None
                self.ticker.active = False
            if added:
                try:
                    lowlevel.remove_instrument(cast("Any", self))
                except (KeyError, RuntimeError):  # trio disabled it (a hook raised)
                    pass
            fd.close()
            self.exited.set()

    def before_io_wait(self, timeout: float) -> None:
        """trio instrument hook: wake the loop when *timeout* ends, not up to 1 ms later."""
        if not (0 < timeout <= _PRECISE_UP_TO):
            return
        fd = self._fd
        if fd is None:  # pragma: no cover - the task is on its way out
            return
        jobs = self.ticker.jobs
        if jobs != self._seen:
            self._seen = jobs
            self._since = time.monotonic_ns()
        elif time.monotonic_ns() - self._since > LINGER_NS:
            return  # no job started lately: the loop's own wait will do
        try:
            fd.set(max(int(timeout * 1e9), 1), 0)
        except Exception:  # (trio would log it and disable the instrument)
            self._fd = None  # no more shots
            self.ticker._retry_at = self.ticker.jobs + _RETRY_JOBS
            self.scope.cancel()  # the task ends; a job after the retry count restarts it


_NONE = object()
_asyncio_tickers: weakref.WeakKeyDictionary[AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()
_trio_runvar: Any = None


def hold() -> Ticker | None:
    """The running loop's ticker, held until `Ticker.release` (None: no ticker here).

    The holder calls ``job()`` on it for each job it starts.
    """
    if TICK_NS == 0 or not _timerfd_works():
        return None
    loop = _get_running_loop()
    if loop is not None:
        t = _asyncio_tickers.get(loop)
        if t is None:
            t = _asyncio_tickers[loop] = Ticker(loop)
    else:
        global _trio_runvar
        import trio

        # Under a virtual clock (MockClock) every wait is exact already. (Not
        # _tasks.virtual_clock(): its trio.testing import takes ~0.1 s.)
        if type(trio.lowlevel.current_clock()).__name__ != "SystemClock":
            return None
        if _trio_runvar is None:
            _trio_runvar = trio.lowlevel.RunVar("asyncgo_ticker")
        try:
            t = _trio_runvar.get()
        except LookupError:
            t = Ticker(None)
            _trio_runvar.set(t)
    t._holders += 1
    return t

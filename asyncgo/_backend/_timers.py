"""The event loop's clock and timers, for contexts and ``asyncgo.time``.

A *runtime* is what a context or a timer is bound to: the running asyncio (or
uvloop) event loop itself, or one `TrioRuntime` per trio run. Both offer the
same three methods, with asyncio's names and meaning:

* ``time()``: the loop's clock, the one ``anyio.current_time()`` reads (so trio's
  ``MockClock`` drives every deadline and timer);
* ``call_at(when, fn, *args)``: call ``fn(*args)`` on the loop once its clock
  reaches *when*; returns a handle whose ``cancel()`` (loop thread only) drops it;
* ``call_soon_threadsafe(fn, *args)``: call ``fn(*args)`` on the loop, from any
  thread; raises `RuntimeError` once the loop is closed or the run is over.

asyncio has all three. trio has no call-at API, so `TrioRuntime` keeps a heap of
deadlines and *one* system task per run, started by the first timer and ended
with the run. The runtime is also a trio instrument whose ``after_io_wait`` hook
fires the due timers at every tick, before trio runs the tasks woken at that tick
(so a task that wakes at a timer's due time finds the timer fired, as on
asyncio), and then moves the task's wait on to the next timer's deadline. The
task's wait is only there for trio's I/O wait to end at that deadline: it is
woken only when that deadline passes before the hook could move it (a timer that
a callback set for now, or one that came due in the microseconds between the hook
and trio's own reading of the clock), or to raise what a callback raised that must
end the run. With no timer pending it waits with no deadline, so ``trio``'s
``MockClock(autojump_threshold=0)`` jumps straight to the next deadline of the run.
"""

from __future__ import annotations

import math
import sys
import threading
import traceback
from asyncio import _get_running_loop
from collections.abc import Callable
from heapq import heapify, heappop, heappush
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from anyio import CancelScope

__all__ = [
    "Runtime",
    "TimerHandle",
    "TrioRuntime",
    "call_at",
    "cancel_timer",
    "current_runtime",
    "new_cancel_scope",
    "on_loop_thread",
    "report_exception",
    "run_on_loop",
    "runtime_or_none",
]


class TimerHandle(Protocol):
    """What ``call_at`` returns: asyncio's ``TimerHandle`` or a `TrioTimer`."""

    def cancel(self) -> None: ...


class Runtime(Protocol):
    """An event loop, as far as clocks and timers go (asyncio's method names)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle: ...

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> object: ...


_NO_LOOP = (
    "asyncgo: no running event loop (call this from asyncio, uvloop or trio code: "
    "deadlines and timers run on the event loop's clock)"
)

_trio_runvar: Any = None  # trio.lowlevel.RunVar holding each run's TrioRuntime


def asyncio_loop() -> Runtime | None:
    """The running asyncio (or uvloop) loop, or None (also inside trio): a bare
    ``asyncio._get_running_loop()``, for fast paths that then check a runtime."""
    return cast("Runtime | None", _get_running_loop())


def runtime_or_none() -> Runtime | None:
    """The running loop's runtime, or None outside any event loop."""
    loop = _get_running_loop()
    if loop is not None:
        return cast("Runtime", loop)
    if "trio" not in sys.modules:  # never imported: certainly not inside trio.run()
        return None
    global _trio_runvar
    if _trio_runvar is None:
        import trio

        _trio_runvar = trio.lowlevel.RunVar("asyncgo_timers")
    try:
        return cast("Runtime", _trio_runvar.get())
    except LookupError:
        rt = TrioRuntime()
        _trio_runvar.set(rt)
        return rt
    except RuntimeError:  # not inside trio.run()
        return None


def current_runtime() -> Runtime:
    """The running loop's runtime.

    Raises:
        RuntimeError: No event loop is running in this thread.
    """
    rt = runtime_or_none()
    if rt is None:
        raise RuntimeError(_NO_LOOP)
    return rt


def elsewhere(home: Runtime | None) -> bool:
    """Whether the caller runs on another loop than *home* (or on none); False for None.

    For objects bound to the loop they were entered on (a `singleflight.Group`, a
    `WorkerPool`): the cheap test first, the exact one (trio's run) only if needed.
    """
    return home is not None and asyncio_loop() is not home and runtime_or_none() is not home


def on_loop_thread(rt: Runtime) -> bool:
    """Whether the caller runs on *rt*'s loop, so it may touch what belongs to it."""
    if type(rt) is TrioRuntime:
        return threading.get_ident() == rt.thread
    return _get_running_loop() is rt


def loop_key(rt: Runtime) -> object:
    """What a channel waited on in *rt*'s loop is bound to (its waiters' ``get_loop()``)."""
    return rt._token if type(rt) is TrioRuntime else rt


def running_elsewhere(rt: Runtime) -> bool:
    """Whether *rt*'s loop is still running, in another thread than the caller's.

    One thread runs one loop at a time, so a live *rt* that is not the caller's
    loop runs in another thread; a loop that is over is not "elsewhere" (its
    objects may be picked up by the next loop of the thread, as they always could).
    """
    if type(rt) is TrioRuntime:
        return threading.get_ident() != rt.thread and not rt.run_is_over()
    is_running = getattr(rt, "is_running", None)
    return bool(is_running is not None and is_running() and _get_running_loop() is not rt)


def run_is_over(rt: Runtime) -> bool:
    """Whether *rt*'s loop can never run a timer again (closed, or its trio run over)."""
    if type(rt) is TrioRuntime:
        return not rt.serving and rt.run_is_over()  # (a live timer task: a live run)
    is_closed = getattr(rt, "is_closed", None)
    return bool(is_closed is not None and is_closed())


class RunClock:
    """The clock of the running loop, for an object that keeps times across loops.

    A rate limiter or a circuit breaker holds clock times (its last update, when
    it opened) and may outlive its event loop: a module-level one used by several
    ``anyio.run`` calls or tests. asyncio's and uvloop's loops all read
    ``time.monotonic()``, so from one to the next the time that passed counts;
    each trio run has a clock of its own, with a random offset, so the times held
    would be read hours off. `jump` gives, for a time just read, what to add to the
    times held: from a run to another where either is a trio run, the gap between
    the last reading and this one, so it is as if no time had passed in between;
    within a run, a clock gone back (it never should) the same way; else 0.
    Used from a loop running in another thread while the previous one still runs,
    it raises `RuntimeError` (the times would be mixed; like every asyncgo
    primitive, the holder belongs to one loop at a time).
    """

    __slots__ = ("_last", "_rt")

    def __init__(self) -> None:
        self._rt: Runtime | None = None  # the loop (trio: the run) of the last reading
        self._last = float("-inf")

    def read(self, holder: object) -> tuple[float, float]:
        """``(now, jump)``: the running loop's time, and `jump` for it.

        Raises:
            RuntimeError: No event loop runs in this thread, or *holder* is in use
                by a loop still running in another thread.
        """
        rt: Runtime | None = asyncio_loop()
        if rt is None:
            rt = current_runtime()  # trio (or none: raises)
        now = rt.time()
        return now, self._jump(holder, now, rt)

    def read_again(self, rt: object) -> float | None:
        """`read`'s common case without finding the running loop: *rt*, the running
        asyncio loop (the caller has checked), is the loop of the last reading and
        its clock has not gone back -- then its time (the jump is 0), recorded as
        `read` would; else None (call `read`)."""
        if rt is not self._rt or rt is None:
            return None
        now: float = rt.time()
        if now < self._last:
            return None
        self._last = now
        return now

    @property
    def runtime(self) -> Runtime | None:
        """The loop (trio: the run) of the last reading, if any."""
        return self._rt

    def jump(self, holder: object, now: float) -> float:
        """What to add to the times *holder* holds, *now* read from the running loop.

        Raises:
            RuntimeError: No event loop runs in this thread, or *holder* is in use
                by a loop still running in another thread.
        """
        rt: Runtime | None = asyncio_loop()
        return self._jump(holder, now, current_runtime() if rt is None else rt)

    def _jump(self, holder: object, now: float, rt: Runtime) -> float:
        last, self._last = self._last, now
        old = self._rt
        if rt is not old:
            if old is not None and running_elsewhere(old):
                self._last = last
                raise RuntimeError(
                    f"{holder!r} is in use by an event loop running in another thread "
                    f"({old!r}) and cannot be used from this one ({rt!r}): it keeps "
                    "times on one loop's clock, and belongs to one event loop at a time"
                )
            self._rt = rt
            if old is not None and (type(old) is TrioRuntime or type(rt) is TrioRuntime):
                return now - last
        return now - last if now < last else 0.0


#: ``{loop class: whether its timers count whole milliseconds}`` (uvloop's do):
#: `call_at` learns each class once.
_MS_LOOPS: dict[type, bool] = {}


def ms_loop(rt: object) -> bool:
    """Whether *rt*'s timers (and clock) count whole milliseconds: uvloop's do."""
    cls = type(rt)
    ms = _MS_LOOPS.get(cls)
    if ms is None:
        ms = _MS_LOOPS[cls] = any(c.__module__.startswith("uvloop") for c in cls.__mro__)
    return ms


def call_at(rt: Runtime, when: float, fn: Callable[..., object], *args: Any) -> TimerHandle:
    """``rt.call_at(when, fn, *args)``, due at the first tick of the loop's clock that
    reaches *when*, on every loop.

    asyncio's and trio's timers are exact. uvloop counts a timer in whole
    milliseconds: its ``call_at`` turns *when* into a delay from one reading of its
    clock, rounds it to a millisecond (half a millisecond early or late), and adds
    it to the next reading, so a millisecond that ticks over in between makes the
    timer a millisecond late. A task that sleeps until *when* would then wake (at
    the right millisecond) before the timer has run, and find no value in a
    `Timer`'s channel. So on uvloop the delay is counted in whole milliseconds to
    the tick that reaches *when*, and the timer is started again (a few tries) if
    the clock ticked over before it started.
    """
    if not ms_loop(rt) or not abs(when) < 1e12:  # (inf, nan or absurd: nothing to align)
        return rt.call_at(when, fn, *args)
    # The millisecond at which the loop's clock first reads *when* or later.
    due_ms = math.ceil(when * 1000.0)
    while (due_ms - 1) / 1000.0 >= when:
        due_ms -= 1
    while due_ms / 1000.0 < when:
        due_ms += 1
    loop = cast("Any", rt)
    tries = 3
    while True:
        now_ms = round(loop.time() * 1000.0)  # (uvloop reads its clock anew)
        h = loop.call_later(max(due_ms - now_ms, 0) / 1000.0, fn, *args)
        started = getattr(h, "when", None)  # (none: due already, a call_soon)
        tries -= 1
        if started is None or round(started() * 1000.0) <= due_ms or tries == 0:
            return cast("TimerHandle", h)  # (the last try's, late or not)
        h.cancel()


def run_on_loop(rt: Runtime, fn: Callable[..., object], *args: Any) -> None:
    """Call ``fn(*args)`` now if on *rt*'s loop thread, else hand it to that loop.

    When the loop is not running (stopped, closed, or its trio run over) nothing
    else can be touching its objects, so ``fn`` runs here and now.
    """
    if not on_loop_thread(rt):
        is_running = getattr(rt, "is_running", None)  # asyncio; a trio run raises when over
        if is_running is None or is_running():
            try:
                rt.call_soon_threadsafe(fn, *args)
                return
            except RuntimeError:
                pass
    fn(*args)


def cancel_timer(rt: Runtime, handle: TimerHandle) -> None:
    """Cancel *handle* from any thread (finalizers and weakref callbacks run anywhere)."""
    try:
        run_on_loop(rt, handle.cancel)
    except Exception:  # pragma: no cover - interpreter shutdown
        pass


_scope_classes: list[Any] = [None, None]  # anyio's CancelScope class: [asyncio, trio]


def new_cancel_scope(rt: Runtime | None, deadline: float) -> CancelScope:
    """``anyio.CancelScope(deadline=deadline)``, minus a lookup of the running backend.

    ``anyio.CancelScope(...)`` asks sniffio which library runs and then builds the
    backend's scope -- whose ``__init__`` Python runs a second time, as the object
    is an instance of the class called. The caller already knows its loop.
    """
    i = type(rt) is TrioRuntime
    cls = _scope_classes[i]
    if cls is None:
        if rt is None:
            import anyio

            return anyio.CancelScope(deadline=deadline)
        cls = _scope_classes[i] = _load_scope_class(i)
    return cls(deadline=deadline)  # type: ignore[no-any-return]


def _load_scope_class(trio: bool) -> Any:
    try:
        if trio:
            from anyio._backends import _trio as mod
        else:
            from anyio._backends import _asyncio as mod  # type: ignore[no-redef]
        return mod.CancelScope
    except (ImportError, AttributeError):  # pragma: no cover - anyio moved its internals
        import anyio

        return anyio.CancelScope


def report_exception(exc: BaseException, obj: object, err_msg: str) -> None:
    """Report an exception that has no caller to go to (a callback run by a timer or a cancel).

    Like an exception in ``__del__``: through ``sys.unraisablehook`` when one is
    installed (pytest's turns it into a warning), else printed to stderr.
    """
    hook = sys.unraisablehook
    if hook is not sys.__unraisablehook__:
        try:
            hook(
                SimpleNamespace(
                    exc_type=type(exc),
                    exc_value=exc,
                    exc_traceback=exc.__traceback__,
                    err_msg=err_msg,
                    object=obj,
                )
            )
            return
        except Exception:  # pragma: no cover - a hook that wants the real type
            pass
    print(f"{err_msg}: {obj!r}", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


# -- trio ----------------------------------------------------------------------------


#: Called (no arguments, on the run's thread) after trio's timer service fired timers:
#: the deadlock detector's watcher, which under a virtual clock has no back-off timer
#: of its own to notice that a timer fired without moving any task. See `on_fire`.
FIRE_HOOKS: list[Callable[[], object]] = []


def on_fire(fn: Callable[[], object]) -> Callable[[], None]:
    """Call ``fn()`` after asyncgo timers of this thread's trio run fire, until the
    returned function is called. *fn* must not raise."""
    me = threading.get_ident()

    def hook() -> None:
        if threading.get_ident() == me:
            fn()

    FIRE_HOOKS.append(hook)

    def remove() -> None:
        try:
            FIRE_HOOKS.remove(hook)
        except ValueError:
            pass

    return remove


class TrioTimer:
    """A pending ``TrioRuntime.call_at`` call; ``cancel()`` drops it."""

    __slots__ = ("args", "fn", "rt")

    def __init__(self, rt: TrioRuntime, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.rt = rt
        self.fn: Callable[..., object] | None = fn
        self.args = args

    def cancel(self) -> None:
        if self.fn is not None:
            self.fn = None
            self.args = ()
            self.rt._cancelled()

    def cancelled(self) -> bool:
        """True once cancelled or run (asyncio's handles say so only when cancelled)."""
        return self.fn is None


def _noop() -> None:
    pass


def _deliver_ki() -> bool:
    """Have trio raise ``KeyboardInterrupt`` in the current run, as for Ctrl+C.

    trio's own path for a Ctrl+C that lands where it cannot be raised (KI-protected
    code, such as an instrument hook): the run's main task gets it at its next
    checkpoint, or ``trio.run()`` raises it on the way out. False if trio's
    internals moved.
    """
    try:
        from trio._core._run_context import GLOBAL_RUN_CONTEXT

        GLOBAL_RUN_CONTEXT.runner.deliver_ki()
    except (ImportError, AttributeError):  # pragma: no cover - trio changed its internals
        return False
    return True


# Rebuild the heap once this many of its entries are cancelled and they are at
# least half of it: amortised O(log n) per cancel, and the heap does not grow.
_COMPACT_MIN = 64


#: The name of the trio system task that serves a run's timers.
TIMERS_TASK = "asyncgo timers"

_SUCCEEDED: Any = None  # trio.lowlevel.Abort.SUCCEEDED, set by the first TrioRuntime


class TrioRuntime:
    """Timers for one trio run: a heap of deadlines and the system task serving it."""

    __slots__ = (
        "_clock",
        "_crash",
        "_dead",
        "_heap",
        "_idle",
        "_live",
        "_seq",
        "_sleeper",
        "_token",
        "_trio",
        "serving",
        "thread",
    )

    def __init__(self) -> None:
        import trio

        global _SUCCEEDED
        _SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED
        self._trio = trio
        self._token = trio.lowlevel.current_trio_token()
        self._clock = trio.lowlevel.current_clock()
        self.thread = threading.get_ident()
        self._heap: list[tuple[float, int, TrioTimer]] = []
        self._live = 0  # entries not cancelled yet
        self._dead = 0  # cancelled entries still in the heap
        self._seq = 0  # tie-breaker: equal deadlines fire in call order
        self._sleeper: Any = None  # the server's CancelScope while it waits
        self._idle: Any = None  # the server task while it waits with no timer pending
        self.serving = False  # whether the system task exists
        self._crash: BaseException | None = None  # what a callback raised, for the task

    def __repr__(self) -> str:
        return f"<TrioRuntime timers={self._live} serving={self.serving}>"

    def time(self) -> float:
        # The run's clock object, not trio.current_time(): usable from any thread.
        return self._clock.current_time()

    def run_is_over(self) -> bool:
        """Whether this trio run has ended (from any thread; on a live run it queues a
        no-op callback: for misuse checks, not hot paths)."""
        try:
            self._token.run_sync_soon(_noop)
        except self._trio.RunFinishedError:
            return True
        return False

    def call_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            self._token.run_sync_soon(fn, *args)
        except self._trio.RunFinishedError:
            raise RuntimeError("the trio run this object belongs to is over") from None

    def call_at(self, when: float, fn: Callable[..., object], *args: Any) -> TrioTimer:
        t = TrioTimer(self, fn, args)
        self._seq += 1
        heappush(self._heap, (when, self._seq, t))
        self._live += 1
        if not self.serving:
            self.serving = True
            lowlevel = self._trio.lowlevel
            lowlevel.add_instrument(self)  # from the next tick on, see after_io_wait
            lowlevel.spawn_system_task(self._serve, name=TIMERS_TASK)
        elif self._sleeper is not None and when < self._sleeper.deadline:
            self._sleeper.deadline = when
        elif self._idle is not None:
            self._wake_idle()
        return t

    async def sleep(self, seconds: float) -> None:
        """``trio.sleep(seconds)`` (*seconds* > 0) on this run's timer heap.

        trio's own sleep is a cancel scope whose deadline raises and catches a
        ``Cancelled`` in the sleeping task: 15-25 us of CPU time per sleep, the
        limit of 100 tasks sleeping 1 ms each in turn. Here the task parks and a
        timer reschedules it; the timer task wakes once for all the timers due by
        then. The same checkpoint: a pending cancellation is delivered at once,
        and one that comes while the task sleeps drops its timer.
        """
        lowlevel = self._trio.lowlevel
        if seconds == math.inf:
            await self._trio.sleep_forever()
        task = lowlevel.current_task()
        timer = self.call_at(self._clock.current_time() + seconds, lowlevel.reschedule, task)

        def abort(_: object) -> Any:
            timer.cancel()
            return _SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)
        # A cancellation that came after the timer woke the task, before it ran (a
        # deadline due at the same tick: timers fire first, in after_io_wait) still
        # wins, as it does over trio.sleep, whose own scope has expired by then too.
        # (trio's checkpoint_if_cancelled() reads the same flag, one coroutine deeper.)
        status = getattr(task, "_cancel_status", None)
        if status is None or status.effectively_cancelled:
            await lowlevel.checkpoint_if_cancelled()

    def pending(self) -> int:
        """How many timers are scheduled and not cancelled."""
        return self._live

    def _cancelled(self) -> None:
        self._live -= 1
        self._dead += 1
        if self._live == 0:
            # Nothing left to wait for: no stale deadline for the server's wait (which
            # the next call_at moves up); a shielded one (_serve_sleeps) wakes to end.
            self._heap.clear()
            self._dead = 0
            s = self._sleeper
            if s is not None:
                if s.shield:
                    s.cancel()
                else:
                    s.deadline = math.inf
        elif self._dead >= _COMPACT_MIN and 2 * self._dead >= len(self._heap):
            self._heap = [e for e in self._heap if e[2].fn is not None]
            heapify(self._heap)
            self._dead = 0

    def _fire_due(self) -> None:
        """Run every timer due by now, in deadline order.

        Timers the callbacks set for now wait for the next pass, as asyncio runs
        them on its next iteration: one that re-arms itself at zero delay cannot
        keep this loop (and, on a MockClock, the run) busy.
        """
        clock = self._clock
        now = clock.current_time()
        heap = self._heap
        seq = self._seq
        fired = 0
        while True:
            while heap and (heap[0][2].fn is None or (heap[0][0] <= now and heap[0][1] <= seq)):
                t = heappop(heap)[2]
                fn = t.fn
                if fn is None:
                    self._dead -= 1
                    continue
                args = t.args
                t.fn = None
                t.args = ()
                self._live -= 1
                fired += 1
                try:
                    fn(*args)
                except BaseException as exc:  # nothing may escape: see _callback_raised
                    self._callback_raised(exc, fn)
                # Drop the references before sleeping: a fired timer keeps nothing alive.
                t = fn = args = None  # type: ignore[assignment]
                heap = self._heap  # a callback may have cancelled enough to compact it
            if not heap or heap[0][0] <= now:
                break  # (none left, or the next was set during this pass: next pass)
            # Also those that came due while these callbacks ran (a real clock): or
            # trio's deadline for the next one would expire at once, for a wake-up.
            later = clock.current_time()
            if heap[0][0] > later:
                break
            now = later
        if fired and FIRE_HOOKS:
            for hook in tuple(FIRE_HOOKS):
                hook()

    def _callback_raised(self, exc: BaseException, fn: object) -> None:
        """Deal with what a timer callback raised, without raising it here.

        Raised from the ``after_io_wait`` hook, trio would disable the instrument
        (and print that) and carry on: the exception lost, and every later timer of
        the run fired late. An `Exception` is reported (our callbacks report their
        own; belt and braces). Anything else (``KeyboardInterrupt``, ``SystemExit``)
        must end the run, as it ends ``loop.run_forever()`` on asyncio, but trio has
        no API to raise into a run: a ``KeyboardInterrupt`` goes where trio sends
        Ctrl+C (the main task, at its next checkpoint); any other is re-raised by
        the timer task, which ends the run with a ``TrioInternalError`` caused by it.
        """
        if isinstance(exc, Exception):
            try:
                report_exception(exc, fn, "Exception in asyncgo timer callback")
            except Exception:  # pragma: no cover - stderr gone
                pass
            return
        if type(exc) is KeyboardInterrupt and _deliver_ki():
            return
        if self._crash is None:
            self._crash = exc
        if self._sleeper is not None:
            self._sleeper.cancel()  # wake the timer task: it raises it
        elif self._idle is not None:
            self._wake_idle()

    def after_io_wait(self, timeout: float) -> None:
        """trio instrument hook: fire due timers before trio runs the tasks of this tick.

        trio wakes the tasks whose deadlines passed and runs them in a random
        order; the server task is one of them. Firing here, first, means a task
        that wakes at or after a timer's due time always finds its value in the
        channel (as on asyncio, where due ``call_at`` callbacks run before the
        tasks they wake; Go 1.23 runs a due timer on any receive from its channel).

        The server task's wait is then moved on to the next timer's deadline (none
        if no timer is left), before trio expires the deadlines of this tick: the
        task is not woken -- a ``Cancelled`` raised and caught in it, and a task
        step -- at every tick that fires timers (see the module's docstring). (Not
        the shielded wait of `_serve_sleeps`: it must wake to see whether a sleep
        is left.)
        """
        self._fire_due()
        s = self._sleeper
        if s is not None and not s.shield:
            heap = self._heap
            d = heap[0][0] if heap else math.inf
            if s.deadline < d:
                s.deadline = d

    async def _serve_sleeps(self) -> None:
        reschedule = self._trio.lowlevel.reschedule
        while True:
            self._fire_due()
            heap = self._heap
            if not any(e[2].fn is reschedule for e in heap):
                return
            with self._trio.CancelScope(deadline=heap[0][0], shield=True) as self._sleeper:
                await self._trio.sleep_forever()
            self._sleeper = None

    def idle(self) -> bool:
        """Whether the timer task waits with no timer pending (for the deadlock
        detector: then it can wake nothing)."""
        s = self._sleeper
        return self._idle is not None or (
            s is not None and s.deadline == math.inf and not s.shield and not s.cancel_called
        )

    def _wake_idle(self) -> None:
        task, self._idle = self._idle, None
        self._trio.lowlevel.reschedule(task)

    def _unidle(self, _: object) -> Any:
        self._idle = None  # (the run is ending: its system tasks are cancelled)
        return _SUCCEEDED

    async def _serve(self) -> None:
        # With no timer pending, the task waits (parked: no deadline, nothing for a
        # MockClock to jump to) until the next call_at, rather than ending: a task
        # that sleeps or times out again and again would otherwise start a system
        # task and add an instrument for each timer. It ends with the run.
        trio = self._trio
        lowlevel = trio.lowlevel
        try:
            try:
                while True:
                    self._fire_due()
                    exc = self._crash
                    if exc is not None:
                        self._crash = None
                        try:
                            raise exc
                        finally:
                            exc = None
                    heap = self._heap
                    if not heap:
                        self._idle = lowlevel.current_task()
                        await lowlevel.wait_task_rescheduled(self._unidle)
                        continue
                    with trio.CancelScope(deadline=heap[0][0]) as self._sleeper:
                        await trio.sleep_forever()
                    self._sleeper = None
            except trio.Cancelled:
                # The run is ending (trio cancels its system tasks): a task still in
                # a `sleep` here -- shielded, in cleanup code -- would sleep to its
                # end with trio.sleep, so its timer is served to the end (shielded);
                # the other timers are dropped, as before.
                self._sleeper = self._idle = None
                await self._serve_sleeps()
                raise
        finally:
            self._sleeper = None
            self._idle = None
            self.serving = False
            try:
                trio.lowlevel.remove_instrument(self)
            except (KeyError, RuntimeError):  # trio disabled it (a hook raised), or the run is over
                pass

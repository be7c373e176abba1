"""Go channels: `Chan`, its directional views `SendChan` / `RecvChan`.

A channel is a FIFO buffer (absent when unbuffered) plus two FIFO queues of
parked operations, ``_recvq`` and ``_sendq``. A queue entry is a tuple
``(waiter, case_index, value)`` -- a parked `select` is one waiter with an
entry on every channel it waits on (Go's ``sudog``) -- except that a plain
``recv`` parks its bare waiter, claimed with the item itself (or `CLOSED`),
and the first of them waits in ``_rw`` rather than in a queue (so a receiver
parked alone costs no queue). Whoever completes a parked operation claims its
waiter, which succeeds once; entries of a waiter that was claimed elsewhere or
cancelled are dead and skipped (and compacted away, so queues do not grow).

The fast paths of send, recv, recv_ok, ``__anext__`` (and select) inline the
cancellation check of `asyncgo._backend.must_checkpoint` (its first branch,
reading `asyncgo._backend.FAST` and `TASK_STATES`), falling back to `check_slow`
when the current task's anyio state is not cached: that check is most of the
cost of an operation that completes at once.

Invariants (single-threaded, so they hold between awaits):

* a live receiver is parked only while the buffer is empty;
* a live sender is parked only while the buffer is full;
* ``_rw``, when set, is older than every entry of ``_recvq``;
* an operation that returns has committed; one that raises has not.
"""

from __future__ import annotations

import sys
from collections import deque
from threading import get_ident as _get_ident
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, final

from ._backend import (
    BUDGET,
    FAST,
    NOT_CLAIMED,
    TASK_STATES,
    TRIO,
    _diag,
    asyncio_yield,
    cancel_pending,
    check_slow,
    checkpoint,
    current_tasks_get,
    fail_parker,
    must_checkpoint,
    parker_for,
    rescue,
    running_loop,
    task_cancelled,
    thread_id,
)
from ._exceptions import ChanClosed, WouldBlock

if TYPE_CHECKING:
    from typing import Self

    from ._backend._timers import TrioRuntime

__all__ = ["Chan", "RecvChan", "SendChan"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

#: A parked operation: (parker, case index, value to send). The parker is
#: future-like (`asyncio.Future` or `TrioWaiter`): ``done()`` once claimed or
#: cancelled; the claimer calls ``set_result((index, value, ok))``. (A plain
#: receive parks the bare parker instead, claimed with ``set_result(item)`` or
#: ``set_result(CLOSED)``.)
Entry = tuple[Any, int, object]

_FAST = FAST
_ctg = current_tasks_get
_task_state = TASK_STATES.get
_task_cancelled = task_cancelled


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: _poll_recv() result: nothing to receive without waiting.
EMPTY: object = _Sentinel("EMPTY")
#: _poll_recv() result (and a receive's outcome): the channel is closed and drained.
CLOSED: object = _Sentinel("CLOSED")

# Compact a waiter queue once this many of its entries are dead and they are
# at least half of it: amortised O(1) per cancelled or lost-the-race waiter.
_COMPACT_MIN = 32

#: The largest capacity a channel accepts: ``len()`` cannot report more (Go panics
#: "makechan: size out of range" past its own limit).
MAX_CAP = sys.maxsize


class _TimeUp(Exception):
    """What `Chan._recv_until`'s timer wakes its receive with."""


def _time_up(w: Any) -> None:
    fail_parker(w, _TimeUp())  # (nothing if the receive was claimed or cancelled)


def _noop() -> None:
    pass


def _loop_is_over(loop: Any) -> bool:
    """Whether a channel's bound loop (asyncio loop or trio token) is over.

    asyncio: closed, or not running (one running in another thread is running).
    trio: its run has finished (``run_sync_soon`` raises `trio.RunFinishedError`,
    a `RuntimeError`; while it runs, the call queues a no-op, once).
    """
    is_running = getattr(loop, "is_running", None)
    if is_running is not None:
        return bool(loop.is_closed() or not is_running())
    try:
        loop.run_sync_soon(_noop, idempotent=True)
    except RuntimeError:
        return True
    return False


def _no_truth(self: object) -> bool:
    raise TypeError(
        f"a {type(self).__name__} has no truth value; use `ch.closed` or `len(ch)` "
        "(an empty channel is not a closed one)"
    )


class SendChan(Generic[T_contra]):
    """The sending side of a channel. Go: ``chan<- T``.

    `Chan` is a `SendChan`; ``ch.send_only()`` returns a view that can only
    send and close, so a function given it cannot receive (a type error, and
    an `AttributeError` at run time).

    Example:
        ```python
        async def produce(out: SendChan[int]) -> None:
            for i in range(3):
                await out.send(i)
            out.close()                      # Go: func produce(out chan<- int)

        ch = Chan[int](3)
        await produce(ch.send_only())
        assert [v async for v in ch] == [0, 1, 2]
        ```
    """

    __slots__ = ()

    async def send(self, value: T_contra) -> None:
        """Send *value*, waiting while the channel is full (or, unbuffered, for a receiver)."""
        raise NotImplementedError  # pragma: no cover

    def send_nowait(self, value: T_contra) -> None:
        """Send *value* if that needs no waiting, else raise `WouldBlock`."""
        raise NotImplementedError  # pragma: no cover

    def close(self) -> None:
        """Close the channel. Go: ``close(ch)``."""
        raise NotImplementedError  # pragma: no cover

    @property
    def cap(self) -> int:
        """The buffer capacity (0 when unbuffered). Go: ``cap(ch)``."""
        raise NotImplementedError  # pragma: no cover

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        raise NotImplementedError  # pragma: no cover

    def __len__(self) -> int:
        raise NotImplementedError  # pragma: no cover

    __bool__ = _no_truth


class RecvChan(Generic[T_co]):
    """The receiving side of a channel. Go: ``<-chan T``.

    `Chan` is a `RecvChan`; ``ch.recv_only()`` returns a view that can only
    receive: it cannot send or close.

    Example:
        ```python
        async def total(inp: RecvChan[int]) -> int:
            return sum([v async for v in inp])  # Go: func total(in <-chan int)

        ch = Chan[int](3)
        for i in (1, 2, 3):
            await ch.send(i)
        ch.close()
        view = ch.recv_only()
        assert not hasattr(view, "send")
        assert await total(view) == 6
        ```
    """

    __slots__ = ()

    async def recv(self) -> T_co:
        """Receive the next item, waiting until one is available."""
        raise NotImplementedError  # pragma: no cover

    async def recv_ok(self) -> tuple[T_co, Literal[True]] | tuple[None, Literal[False]]:
        """Receive ``(item, True)``, or ``(None, False)`` once closed and drained."""
        raise NotImplementedError  # pragma: no cover

    def recv_nowait(self) -> T_co:
        """Receive an item if one is ready, else raise `WouldBlock`."""
        raise NotImplementedError  # pragma: no cover

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T_co:
        raise NotImplementedError  # pragma: no cover

    @property
    def cap(self) -> int:
        """The buffer capacity (0 when unbuffered). Go: ``cap(ch)``."""
        raise NotImplementedError  # pragma: no cover

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        raise NotImplementedError  # pragma: no cover

    def __len__(self) -> int:
        raise NotImplementedError  # pragma: no cover

    __bool__ = _no_truth


@final
class Chan(SendChan[T], RecvChan[T]):
    """A Go channel: ``Chan[int]()`` is unbuffered, ``Chan[int](100)`` buffered.

    Go semantics: an unbuffered send completes only when a receiver has taken
    the value (rendezvous); a buffered send waits only while the buffer is
    full. After ``close()``, buffered items stay receivable, blocked senders get
    `ChanClosed`, and blocked receivers wake (``recv()`` raises `ChanClosed`,
    ``recv_ok()`` returns ``(None, False)``, ``async for`` ends). Waiting senders
    and receivers are served first come, first served.

    Every blocking method is a cancel point: if it is cancelled, it has not
    delivered or taken anything. It yields to the scheduler only when it has to
    wait (or, every few hundred back-to-back operations, so a tight loop cannot
    starve other tasks).

    A channel is bound to the event loop on which it first waits; waiting on it
    from another loop raises `RuntimeError`, even once the first loop is over
    (a context's ``done()`` channel too). Go: ``make(chan T, n)``.

    Example:
        ```python
        ch = Chan[int](10)
        await ch.send(1)
        ch.close()
        assert [v async for v in ch] == [1]
        ```
    """

    __slots__ = (
        "__weakref__",
        "_buf",
        "_cap",
        "_closed",
        "_loop",
        "_rcase",
        "_rdead",
        "_recvq",
        "_rpend",
        "_rt",
        "_rw",
        "_sdead",
        "_sendq",
        "_tid",
    )

    def __init__(self, cap: int = 0) -> None:
        """Make a channel with a buffer of *cap* items (0: unbuffered).

        Raises:
            TypeError: *cap* is not an int.
            ValueError: *cap* is negative or larger than ``sys.maxsize`` (`MAX_CAP`).
        """
        if type(cap) is not int:
            if not isinstance(cap, int) or isinstance(cap, bool):
                raise TypeError(f"makechan: capacity must be an int, not {type(cap).__name__}")
            cap = int(cap)
        if not 0 <= cap <= MAX_CAP:
            raise ValueError(
                f"makechan: size out of range (capacity {cap} is negative)"
                if cap < 0
                else f"makechan: size out of range (capacity {cap} is larger than "
                f"sys.maxsize, {MAX_CAP}, the most len() can report)"
            )
        self._cap = cap
        self._buf: deque[T] | None = deque() if cap else None
        self._closed = False
        self._rw: Any = None  # the first parked plain receiver (see the module doc)
        self._recvq: deque[Any] | None = None
        self._sendq: deque[Entry] | None = None
        self._rdead = 0
        self._sdead = 0
        # Receivers claimed but not yet resumed. While there are any, a receive
        # that could take from the buffer at once yields first, so that one
        # consumer cannot drain every item while the consumers it was racing
        # are still on their way (MPMC fairness: tests/test_chan.py, bench_chan).
        # asyncio only: its FIFO run queue turns that race into a fixed order in
        # which one consumer always wins; trio shuffles each batch of runnable
        # tasks, which is fair already and only made worse by the extra yield.
        # Also asyncio only, for the same reason: a receive that finds a buffered
        # channel empty yields once before it parks. With producers running, the
        # buffer is usually refilled meanwhile: no park, no wake-up, no claimed
        # receiver for the others to yield to (4x4 MPMC: a fifth of the
        # instructions and most loop iterations; under trio it starves consumers).
        self._rpend = 0
        self._loop: object = None  # the event loop this channel is bound to
        self._tid: int | None = None  # the thread that loop runs in (see _foreign)
        self._rt: object = None  # hint: the runtime it was last used on (see must_checkpoint)
        # asyncgo.recv(self), made on first use and reused (select loops build
        # their cases every time round): a reference cycle, which the garbage
        # collector breaks; views cache their own, with no cycle.
        self._rcase: object = None
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    # -- introspection ---------------------------------------------------------

    @property
    def cap(self) -> int:
        """The buffer capacity (0 when unbuffered). Go: ``cap(ch)``."""
        return self._cap

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called (items may still be buffered)."""
        return self._closed

    def __len__(self) -> int:
        """The number of buffered items. Go: ``len(ch)``."""
        buf = self._buf
        return len(buf) if buf is not None else 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        buf = self._buf
        # (deque's own count: a timer channel's len() may run its due timer, and a
        # repr -- debug.dump()'s, say -- must change nothing)
        n = deque.__len__(buf) if buf is not None else 0
        return f"<Chan cap={self._cap} len={n} {state} at {id(self):#x}>"

    def send_only(self) -> SendChan[T]:
        """A view of this channel that can only send and close. Go: ``chan<- T``."""
        return _SendView(self)

    def recv_only(self) -> RecvChan[T]:
        """A view of this channel that can only receive. Go: ``<-chan T``."""
        return _RecvView(self)

    # -- the waiter queues -----------------------------------------------------

    def _bind(self, w: Any) -> None:
        loop = w.get_loop()
        if self._loop is None:
            self._bind_loop(loop)
        else:
            self._refuse_other(loop)

    def _refuse_other(self, loop: object) -> None:
        """Raise `RuntimeError` if this channel is bound to another loop than *loop*."""
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError(self._bound_elsewhere(loop))

    def _bound_elsewhere(self, loop: object) -> str:
        """The message of the `RuntimeError` for a wait from another *loop*."""
        old = self._loop
        bound = (
            f"{self!r} is bound to the event loop it first waited on, or whose timer "
            f"fills it ({old!r}),"
        )
        if not _loop_is_over(old):
            return (
                f"{bound} and cannot be waited on from another one ({loop!r}); a channel "
                "belongs to one event loop"
            )
        return (
            f"{bound} which is over, and cannot be waited on from another one "
            f"({loop!r}), not even a later one: a channel belongs to one event loop. "
            "Make it in the loop that uses it (with pytest, in the test or in a fixture "
            "run on the test's loop)"
        )

    def _bind_loop(self, loop: object) -> None:
        """Bind this channel to *loop* (running in this thread) before anyone waits.

        For a timer's channel, which only that loop's timer fills, and a context's
        done channel, which that loop closes: waiting on it from another loop
        raises instead of waiting forever (even once that loop is over).
        """
        self._loop = loop
        self._tid = thread_id()

    def _foreign(self) -> None:
        """Refuse to wake a parked waiter from a thread other than its event loop's.

        Called before a hand-off claims a live waiter (nothing changed yet): a
        wake-up from another loop's thread would reach a loop that is not
        watching (asyncio: the waiter wakes late) or fail half-way (trio).
        """
        raise RuntimeError(
            f"{self!r} is bound to the event loop it first waited on ({self._loop!r}), "
            "which runs in another thread, and cannot hand over to its waiters from this "
            "one; a channel belongs to one event loop (from another thread, use "
            "anyio.from_thread.run or loop.call_soon_threadsafe)"
        )

    def _waiting(self) -> bool:
        """Whether a live waiter is parked on this channel."""
        rw = self._rw
        if rw is not None and not rw.done():
            return True
        return any(not _parker(e).done() for e in self._recvq or ()) or any(
            not e[0].done() for e in self._sendq or ()
        )

    def _forget(self, entry: Any, recv: bool) -> None:
        """Note that *entry* (in the recv or send queue) is dead: cancelled or claimed elsewhere."""
        if recv and self._rw is entry:
            self._rw = None
            return
        q = self._recvq if recv else self._sendq
        if not q:
            return
        if q[-1] is entry:
            q.pop()
            return
        if q[0] is entry:
            q.popleft()
            return
        if recv:
            self._rdead += 1
            dead = self._rdead
        else:
            self._sdead += 1
            dead = self._sdead
        if dead >= _COMPACT_MIN and 2 * dead >= len(q):
            if recv:
                self._recvq = deque(e for e in q if not _parker(e).done())
                self._rdead = 0
            else:
                self._sendq = deque(e for e in q if not e[0].done())
                self._sdead = 0

    def _give(self, value: object) -> bool:
        """Hand *value* to the first live parked receiver, if there is one.

        Raises `RuntimeError` (see `_foreign`) rather than hand over from another
        loop's thread: checked exactly (the thread id) on every hand-off, only
        when a parked waiter is about to be woken. (The runtime hint ``_rt`` is
        not enough: it passes for a caller in another thread while the owning
        loop is running a task that asyncgo checked lately.)
        """
        w = self._rw
        if w is not None:
            if not w.done():
                if self._tid != _get_ident():
                    self._foreign()
                self._rw = None
                w.set_result(value)
                self._rpend += 1
                return True
            self._rw = None
        q = self._recvq
        while q:
            e = q.popleft()
            w = e[0] if type(e) is tuple else e
            if not w.done():
                if self._tid != _get_ident():
                    q.appendleft(e)  # (put back: nothing happened)
                    self._foreign()
                if w is e:
                    e.set_result(value)
                else:
                    w.set_result((e[1], value, True))
                self._rpend += 1
                return True
        return False

    def _park_recv(self) -> Any:
        """Queue a new parker for a plain receive and return it (the caller awaits it)."""
        w = parker_for(self)
        if self._rt is not self._loop:
            self._bind(w)
        if self._rw is None and not self._recvq:
            self._rw = w
        else:
            q = self._recvq
            if q is None:
                q = self._recvq = deque()
            q.append(w)
        return w

    def _unpark(self, w: Any) -> object:
        """After an exception interrupted ``await w`` in a plain receive (see `_park_recv`).

        Returns what the receive got if *w* had been claimed first, else
        `NOT_CLAIMED`: the receive did not happen and *w* has left the queue.
        """
        r = rescue(w, sys.exception())  # type: ignore[arg-type]
        if r is NOT_CLAIMED:
            self._forget(w, True)
        else:
            self._rpend -= 1
        return r

    def _park_sender(self, value: object) -> Entry:
        """Queue a new parker for a plain send of *value*; return its entry (await ``[0]``)."""
        w = parker_for(self)
        if self._rt is not self._loop:
            self._bind(w)
        e: Entry = (w, 0, value)
        q = self._sendq
        if q is None:
            q = self._sendq = deque()
        q.append(e)
        return e

    def _unpark_sender(self, e: Entry) -> Any:
        """After an exception interrupted a parked plain send: as `_unpark`, for entry *e*."""
        r = rescue(e[0], sys.exception())  # type: ignore[arg-type]
        if r is NOT_CLAIMED:
            self._forget(e, False)
        return r

    # -- polling: commit at once or report why not (no awaits) -------------------

    def _recv_ready(self) -> bool:
        if self._buf or self._closed:
            return True
        q = self._sendq
        while q:
            if not q[0][0].done():
                return True
            q.popleft()
        return False

    def _send_ready(self) -> bool:
        """True if a send would complete at once, or raise because the channel is closed."""
        if self._closed:
            return True
        w = self._rw
        if w is not None:
            if not w.done():
                return True
            self._rw = None
        q = self._recvq
        while q:
            if not _parker(q[0]).done():
                return True
            q.popleft()
        buf = self._buf
        return buf is not None and len(buf) < self._cap

    def _poll_recv(self) -> object:
        """Receive without waiting: the item, `EMPTY`, or `CLOSED` (closed and drained).

        Checks the thread before it wakes a parked sender, as `_give` does.
        """
        buf = self._buf
        if buf:
            q = self._sendq
            if q and self._tid != _get_ident():
                while q and q[0][0].done():
                    q.popleft()
                if q:
                    self._foreign()  # before taking the item: it stays in the buffer
            value = buf.popleft()
            # A sender parks only on a full buffer: refill the slot just freed.
            while q:
                w, i, v = q.popleft()
                if not w.done():
                    w.set_result((i, None, True))
                    buf.append(v)  # type: ignore[arg-type]
                    break
            return value
        q = self._sendq
        while q:
            e = q.popleft()
            w, i, v = e
            if not w.done():
                if self._tid != _get_ident():
                    q.appendleft(e)  # (put back: nothing happened)
                    self._foreign()
                w.set_result((i, None, True))
                return v
        return CLOSED if self._closed else EMPTY

    def _poll_send(self, value: object) -> bool:
        """Send without waiting: True if done, False if it would block."""
        if self._closed:
            raise ChanClosed("send on closed channel")
        # A receiver parks only on an empty buffer: hand the value over.
        if (self._rw is not None or self._recvq) and self._give(value):
            return True
        buf = self._buf
        if buf is not None and len(buf) < self._cap:
            buf.append(value)  # type: ignore[arg-type]
            return True
        return False

    async def _recv_until(self, rt: TrioRuntime, seconds: float) -> Any:
        """trio: a receive that gives up after *seconds* (> 0); for a caller that found
        nothing to receive and no cancellation pending.

        Returns the item, `CLOSED`, or `EMPTY` if the time was up first (nothing
        taken). `_park_recv`'s park, ended by a timer of the run's heap that wakes
        it with `_TimeUp` (taken like a cancellation: the receive does not happen,
        and the parker leaves the queue) instead of by a cancel scope's deadline,
        which raises and catches a ``Cancelled``: a third of the CPU time. A
        cancellation due at the same tick as the timer still wins.
        """
        w = self._park_recv()
        timer = rt.call_at(rt.time() + seconds, _time_up, w)
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, self, "chan recv")
        try:
            r = await w
        except BaseException as exc:
            r = self._unpark(w)
            if r is NOT_CLAIMED:
                if type(exc) is not _TimeUp:
                    raise
                await rt._trio.lowlevel.checkpoint_if_cancelled()
                return EMPTY
        else:
            self._rpend -= 1
        finally:
            timer.cancel()
            if tracer is not None:
                tracer.unparked(w)
        return r

    async def _park(self, recv: bool, value: object) -> Any:
        """Park the current task until claimed: the general (and traced) park.

        Returns, for a receive, the item or `CLOSED`; for a send, whether the
        value was delivered (False: the channel was closed). Raises (having
        taken or sent nothing) if cancelled first.
        """
        w = parker_for(self)
        if self._rt is not self._loop:
            self._bind(w)
        entry: Any
        if recv:
            entry = w
            if self._rw is None and not self._recvq:
                self._rw = w
            else:
                q = self._recvq
                if q is None:
                    q = self._recvq = deque()
                q.append(w)
        else:
            entry = (w, 0, value)
            q = self._sendq
            if q is None:
                q = self._sendq = deque()
            q.append(entry)
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, self, "chan recv" if recv else "chan send")
        try:
            r = await w
        except BaseException as exc:
            r = rescue(w, exc)
            if r is NOT_CLAIMED:
                self._forget(entry, recv)
                raise
        finally:
            if tracer is not None:
                tracer.unparked(w)
        if recv:
            self._rpend -= 1
            return r
        return r[2]

    async def _send_slow(self, value: object) -> None:
        """`send` when its inlined fast path does not apply."""
        if self._send_ready():
            # It can complete at once (or must raise): still a cancel point.
            if must_checkpoint(self):
                await checkpoint()
            if self._poll_send(value):
                return
        if cancel_pending(self):
            await checkpoint()  # (as in recv: a pending cancellation, before queueing)
            return await self._send_slow(value)
        if not await self._park(False, value):
            raise ChanClosed("send on closed channel")

    # -- public operations -----------------------------------------------------
    #
    # The fast paths below inline `must_checkpoint`'s first branch (see the
    # module doc): *w* is the current asyncio task, then its cached `TaskCheck`
    # (anyio state + clean-scope memo); it ends None when no cancellation is
    # pending -- the innermost scope is the one remembered clean, or the walk
    # (`task_cancelled`) finds nothing. Any
    # other case (trio aside: FAST.trio() is False when its task has nothing
    # pending) goes to `check_slow`, which also caches a task's state on a miss
    # (then *w* is None: check_slow finds the task again). The park of a plain receive is
    # inlined too, with as few locals as possible: a parked receiver's memory
    # is this coroutine's frame plus its parker.

    async def send(self, value: T) -> None:
        """Send *value*, waiting while the channel is full (unbuffered: until received).

        Cancellation: if cancelled, nothing was delivered. Checkpoint: always a
        cancel point; yields to the scheduler only when it must wait.
        Go: ``ch <- v``

        Raises:
            ChanClosed: The channel is closed, or is closed while waiting.
        """
        buf = self._buf
        if self._closed:
            pass
        elif (
            len(buf) < self._cap
            if buf
            else (self._rw is not None or self._recvq or buf is not None)
        ):
            # It can complete at once: still a cancel point (and the budget).
            w = _ctg(self._rt)
            if (
                w is not None
                and _FAST.budget > 0
                and not w._must_cancel
                and (w := _task_state(w)) is not None
            ):
                _FAST.budget -= 1
                if w.st.cancel_scope is w.clean or not _task_cancelled(w):
                    w = None
            elif w is None and self._rt is TRIO and _FAST.budget > 0 and _FAST.trio() is False:
                _FAST.budget -= 1  # trio, nothing pending
            elif check_slow(self, w):
                await checkpoint()
                w = self
            else:
                w = None
            if w is None:
                if buf:
                    buf.append(value)
                    return
                w = self._rw
                if w is not None and not w.done():  # hand it to the parked receiver
                    # From another loop's thread? (Exactly: see _give.)
                    if self._tid != _get_ident():
                        self._foreign()
                    self._rw = None
                    w.set_result(value)
                    self._rpend += 1
                    return
                if self._give(value):
                    return
                if buf is not None:  # an empty buffer
                    buf.append(value)
                    return
        elif _diag.tracer is None:
            # It must wait (unbuffered with no receiver, or a full buffer): park,
            # the cancel point. Inlined: no coroutine between the task and its parker.
            w = _ctg(self._rt)  # (as in recv: a pending cancellation, before queueing)
            if (
                (w := _task_state(w)) is None
                or (w.st.cancel_scope is not w.clean and _task_cancelled(w))
                if w is not None
                else self._rt is not TRIO or _FAST.trio() is None  # (None: a stale hint)
            ) and cancel_pending(self):
                await checkpoint()
                return await self.send(value)
            w = self._park_sender(value)
            try:
                w = await w[0]
            except BaseException:
                w = self._unpark_sender(w)
                if w is NOT_CLAIMED:
                    raise
            if not w[2]:
                raise ChanClosed("send on closed channel")
            return
        await self._send_slow(value)

    def send_nowait(self, value: T) -> None:
        """Send *value* if it can be done without waiting.

        An unbuffered channel accepts it only if a receiver is waiting.
        Go: ``select { case ch <- v: default: }``

        Raises:
            WouldBlock: The buffer is full (unbuffered: no receiver is waiting).
            ChanClosed: The channel is closed.
        """
        # `_poll_send`, inlined: one call less for every send_nowait().
        if self._closed:
            raise ChanClosed("send on closed channel")
        if (self._rw is not None or self._recvq) and self._give(value):
            return
        buf = self._buf
        if buf is not None and len(buf) < self._cap:
            buf.append(value)
        else:
            raise WouldBlock(
                "send would block: the channel is full"
                if self._cap
                else "send would block: no receiver is waiting on the unbuffered channel"
            )

    async def recv(self) -> T:
        """Receive the next item, waiting until one is available.

        Items sent before `close()` are still delivered; once the channel is
        closed and drained, raises `ChanClosed`. Receivers are served in FIFO
        order. Cancellation: if cancelled, no item was taken. Checkpoint: always
        a cancel point; yields to the scheduler only when it must wait.
        Go: ``v := <-ch``

        Raises:
            ChanClosed: The channel is closed and its buffer is empty.
        """
        w: Any = EMPTY
        if self._buf or self._sendq or self._closed:
            # It can complete at once: still a cancel point (and the budget).
            w = _ctg(self._rt)
            if (
                w is not None
                and _FAST.budget > 0
                and not w._must_cancel
                and (w := _task_state(w)) is not None
            ):
                _FAST.budget -= 1
                if w.st.cancel_scope is w.clean or not _task_cancelled(w):
                    w = None
            elif w is None and self._rt is TRIO and _FAST.budget > 0 and _FAST.trio() is False:
                _FAST.budget -= 1  # trio, nothing pending
            else:
                w = self if check_slow(self, w) else None
            if w is not None:
                await checkpoint()  # a cancellation pending, or the budget spent
            elif self._rpend and self._rt is not TRIO:
                # The asyncio fairness rule (see __init__): a bare yield.
                _FAST.budget = BUDGET
                await asyncio_yield()
            elif self._buf and not self._sendq:
                return self._buf.popleft()
            w = self._poll_recv()  # the item, EMPTY (taken meanwhile), or CLOSED
        if (
            w is EMPTY
            and self._buf is not None
            and self._rw is None
            and not self._recvq
            and running_loop() is not None
        ):
            # asyncio, a buffered channel found empty: yield once before parking
            # (see __init__). The senders that run meanwhile usually refill it, and
            # a receive that does not park spares a wake-up and a fairness yield.
            _FAST.budget = BUDGET
            await asyncio_yield()
            if self._buf or self._sendq or self._closed:
                w = self._poll_recv()
        if w is EMPTY:
            # Nothing to receive: park (the cancel point).
            # anyio's cancellation may be on its way (asyncio: it lands a loop step
            # late): take it before queueing, or a sender could hand us an item in
            # between. cancel_pending(self), its common case inlined.
            w = _ctg(self._rt)
            if (
                (w := _task_state(w)) is None
                or (w.st.cancel_scope is not w.clean and _task_cancelled(w))
                if w is not None
                else self._rt is not TRIO or _FAST.trio() is None  # (None: a stale hint)
            ) and cancel_pending(self):
                await checkpoint()
                return await self.recv()
            if _diag.tracer is None:
                # self._park_recv(), inlined (the ping-pong path: one call less)
                w = parker_for(self)
                if self._rt is not self._loop:
                    self._bind(w)
                if self._rw is None and not self._recvq:
                    self._rw = w
                else:
                    q = self._recvq
                    if q is None:
                        q = self._recvq = deque()
                    q.append(w)
                try:
                    w = await w  # still the parker if this raises
                except BaseException:
                    w = self._unpark(w)
                    if w is NOT_CLAIMED:
                        raise
                else:
                    self._rpend -= 1
            else:
                w = await self._park(True, None)
        if w is CLOSED:
            raise ChanClosed("recv on closed channel")
        return w  # type: ignore[no-any-return]

    async def recv_ok(self) -> tuple[T, Literal[True]] | tuple[None, Literal[False]]:
        """Receive ``(item, True)``; ``(None, False)`` once closed and drained.

        Same waiting and cancellation rules as `recv`. Go: ``v, ok := <-ch``
        """
        w: Any = EMPTY
        if self._buf or self._sendq or self._closed:
            # It can complete at once: still a cancel point (and the budget).
            w = _ctg(self._rt)
            if (
                w is not None
                and _FAST.budget > 0
                and not w._must_cancel
                and (w := _task_state(w)) is not None
            ):
                _FAST.budget -= 1
                if w.st.cancel_scope is w.clean or not _task_cancelled(w):
                    w = None
            elif w is None and self._rt is TRIO and _FAST.budget > 0 and _FAST.trio() is False:
                _FAST.budget -= 1  # trio, nothing pending
            else:
                w = self if check_slow(self, w) else None
            if w is not None:
                await checkpoint()  # a cancellation pending, or the budget spent
            elif self._rpend and self._rt is not TRIO:
                # The asyncio fairness rule (see __init__): a bare yield.
                _FAST.budget = BUDGET
                await asyncio_yield()
            elif self._buf and not self._sendq:
                return self._buf.popleft(), True
            w = self._poll_recv()  # the item, EMPTY (taken meanwhile), or CLOSED
        if (
            w is EMPTY
            and self._buf is not None
            and self._rw is None
            and not self._recvq
            and running_loop() is not None
        ):
            # asyncio, a buffered channel found empty: yield once before parking
            # (see __init__). The senders that run meanwhile usually refill it, and
            # a receive that does not park spares a wake-up and a fairness yield.
            _FAST.budget = BUDGET
            await asyncio_yield()
            if self._buf or self._sendq or self._closed:
                w = self._poll_recv()
        if w is EMPTY:
            # Nothing to receive: park (the cancel point).
            # anyio's cancellation may be on its way (asyncio: it lands a loop step
            # late): take it before queueing, or a sender could hand us an item in
            # between. cancel_pending(self), its common case inlined.
            w = _ctg(self._rt)
            if (
                (w := _task_state(w)) is None
                or (w.st.cancel_scope is not w.clean and _task_cancelled(w))
                if w is not None
                else self._rt is not TRIO or _FAST.trio() is None  # (None: a stale hint)
            ) and cancel_pending(self):
                await checkpoint()
                return await self.recv_ok()
            if _diag.tracer is None:
                w = self._park_recv()
                try:
                    w = await w  # still the parker if this raises
                except BaseException:
                    w = self._unpark(w)
                    if w is NOT_CLAIMED:
                        raise
                else:
                    self._rpend -= 1
            else:
                w = await self._park(True, None)
        if w is CLOSED:
            return None, False
        return w, True

    def recv_nowait(self) -> T:
        """Receive an item if one is ready without waiting.

        Go: ``select { case v := <-ch: default: }``

        Raises:
            WouldBlock: Nothing to receive (unbuffered: no sender is waiting).
            ChanClosed: The channel is closed and drained.
        """
        if self._sendq:
            v = self._poll_recv()
            if v is not EMPTY and v is not CLOSED:
                return v  # type: ignore[return-value]
        else:  # no parked sender to wake: `_poll_recv`'s work, inlined
            buf = self._buf
            if buf:
                return buf.popleft()
        if self._closed:
            raise ChanClosed("recv on closed channel")
        raise WouldBlock(
            "recv would block: the channel is empty"
            if self._cap
            else "recv would block: no sender is waiting on the unbuffered channel"
        )

    async def __anext__(self) -> T:
        """``async for v in ch`` receives until the channel is closed and drained."""
        w: Any = EMPTY
        if self._buf or self._sendq or self._closed:
            # It can complete at once: still a cancel point (and the budget).
            w = _ctg(self._rt)
            if (
                w is not None
                and _FAST.budget > 0
                and not w._must_cancel
                and (w := _task_state(w)) is not None
            ):
                _FAST.budget -= 1
                if w.st.cancel_scope is w.clean or not _task_cancelled(w):
                    w = None
            elif w is None and self._rt is TRIO and _FAST.budget > 0 and _FAST.trio() is False:
                _FAST.budget -= 1  # trio, nothing pending
            else:
                w = self if check_slow(self, w) else None
            if w is not None:
                await checkpoint()  # a cancellation pending, or the budget spent
            elif self._rpend and self._rt is not TRIO:
                # The asyncio fairness rule (see __init__): a bare yield.
                _FAST.budget = BUDGET
                await asyncio_yield()
            elif self._buf and not self._sendq:
                return self._buf.popleft()
            w = self._poll_recv()  # the item, EMPTY (taken meanwhile), or CLOSED
        if (
            w is EMPTY
            and self._buf is not None
            and self._rw is None
            and not self._recvq
            and running_loop() is not None
        ):
            # asyncio, a buffered channel found empty: yield once before parking
            # (see __init__). The senders that run meanwhile usually refill it, and
            # a receive that does not park spares a wake-up and a fairness yield.
            _FAST.budget = BUDGET
            await asyncio_yield()
            if self._buf or self._sendq or self._closed:
                w = self._poll_recv()
        if w is EMPTY:
            # Nothing to receive: park (the cancel point).
            # anyio's cancellation may be on its way (asyncio: it lands a loop step
            # late): take it before queueing, or a sender could hand us an item in
            # between. cancel_pending(self), its common case inlined.
            w = _ctg(self._rt)
            if (
                (w := _task_state(w)) is None
                or (w.st.cancel_scope is not w.clean and _task_cancelled(w))
                if w is not None
                else self._rt is not TRIO or _FAST.trio() is None  # (None: a stale hint)
            ) and cancel_pending(self):
                await checkpoint()
                return await self.__anext__()
            if _diag.tracer is None:
                w = self._park_recv()
                try:
                    w = await w  # still the parker if this raises
                except BaseException:
                    w = self._unpark(w)
                    if w is NOT_CLAIMED:
                        raise
                else:
                    self._rpend -= 1
            else:
                w = await self._park(True, None)
        if w is CLOSED:
            raise StopAsyncIteration
        return w  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the channel: no more sends; buffered items stay receivable.

        Parked receivers wake seeing the channel closed (once the buffer is
        empty, which it is when they are parked); parked senders raise
        `ChanClosed`. Go: ``close(ch)``

        Raises:
            ChanClosed: The channel was already closed.
        """
        if self._closed:
            raise ChanClosed("close of closed channel")
        if self._tid is not None and self._tid != _get_ident() and self._waiting():
            self._foreign()
        self._closed = True
        rw, rq, sq = self._rw, self._recvq, self._sendq
        self._rw = self._recvq = self._sendq = None
        self._rdead = self._sdead = 0
        if rw is not None and not rw.done():
            rw.set_result(CLOSED)
            self._rpend += 1
        if rq:
            for e in rq:
                if type(e) is tuple:
                    w = e[0]
                    if not w.done():
                        w.set_result((e[1], None, False))
                        self._rpend += 1
                elif not e.done():
                    e.set_result(CLOSED)
                    self._rpend += 1
        if sq:
            for w, i, _ in sq:
                if not w.done():
                    w.set_result((i, None, False))


def _parker(e: Any) -> Any:
    """The parker of a receive-queue element: an `Entry` or a plain receive's bare parker."""
    return e[0] if type(e) is tuple else e


_RECV_ONLY = frozenset({"recv", "recv_ok", "recv_nowait", "__anext__", "__aiter__"})
_SEND_ONLY = frozenset({"send", "send_nowait", "close"})


@final
class _SendView(SendChan[T]):
    """A send-only view of a `Chan`."""

    __slots__ = ("_ch", "close", "send", "send_nowait")

    def __init__(self, ch: Chan[T]) -> None:
        self._ch = ch
        # Bound methods stored on the view: no extra call layer on the hot path.
        self.send = ch.send  # type: ignore[method-assign]
        self.send_nowait = ch.send_nowait  # type: ignore[method-assign]
        self.close = ch.close  # type: ignore[method-assign]

    @property
    def cap(self) -> int:
        return self._ch._cap

    @property
    def closed(self) -> bool:
        return self._ch._closed

    def __len__(self) -> int:
        return len(self._ch)

    def __repr__(self) -> str:
        return f"<SendChan view of {self._ch!r}>"

    def __getattr__(self, name: str) -> object:
        if name in _RECV_ONLY:
            raise WrongDirection(
                f"cannot {name.strip('_')} on a send-only channel (SendChan): "
                "receive from the Chan itself or its recv_only() view"
            )
        raise AttributeError(f"'SendChan' object has no attribute {name!r}")


@final
class _RecvView(RecvChan[T]):
    """A receive-only view of a `Chan`."""

    __slots__ = ("_ch", "_rcase", "recv", "recv_nowait", "recv_ok")

    def __init__(self, ch: Chan[T]) -> None:
        self._ch = ch
        self._rcase: object = None  # asyncgo.recv(self), see Chan
        self.recv = ch.recv  # type: ignore[method-assign]
        self.recv_ok = ch.recv_ok  # type: ignore[method-assign]
        self.recv_nowait = ch.recv_nowait  # type: ignore[method-assign]

    def __anext__(self) -> object:  # type: ignore[override]
        return self._ch.__anext__()

    @property
    def cap(self) -> int:
        return self._ch._cap

    @property
    def closed(self) -> bool:
        return self._ch._closed

    def __len__(self) -> int:
        return len(self._ch)

    def __repr__(self) -> str:
        return f"<RecvChan view of {self._ch!r}>"

    def __getattr__(self, name: str) -> object:
        if name in _SEND_ONLY:
            raise WrongDirection(
                f"cannot {name} on a receive-only channel (RecvChan): "
                "only the sending side may send or close"
            )
        raise AttributeError(f"'RecvChan' object has no attribute {name!r}")


class WrongDirection(AttributeError, TypeError):
    """A send on a receive-only view, or a receive on a send-only one.

    Both an `AttributeError` (the view has no such method: ``hasattr(rx, "send")``
    is False) and a `TypeError` (Go rejects it at compile time, a type error).

    Example:
        ```python
        ch = Chan[int](1)
        rx = ch.recv_only()
        try:
            rx.send_nowait(1)  # type: ignore[attr-defined]  # (the type checker says so too)
        except WrongDirection as e:
            assert isinstance(e, TypeError) and isinstance(e, AttributeError)
            assert "receive-only" in str(e)
        assert not hasattr(rx, "send")
        ```
    """


# Python reports some misuse by the class name (``async for`` over a send-only view:
# "'async for' requires an object with __aiter__ method, got SendChan"): name the
# views after the public types they are.
_SendView.__name__ = _SendView.__qualname__ = "SendChan"
_RecvView.__name__ = _RecvView.__qualname__ = "RecvChan"


def chan_of(c: object, op: str = "") -> Chan[object]:
    """The `Chan` behind a channel or a view of one, checked for direction *op*."""
    if type(c) is Chan:
        return c
    if type(c) is _SendView:
        if op == "recv":
            raise WrongDirection(
                "recv case on a send-only channel (SendChan): cannot receive from it"
            )
        return c._ch
    if type(c) is _RecvView:
        if op == "send":
            raise WrongDirection(
                "send case on a receive-only channel (RecvChan): cannot send on it"
            )
        return c._ch
    hint = ""
    if op != "send" and type(c).__module__.startswith("asyncgo") and hasattr(type(c), "c"):
        hint = " (select on its channel: recv(x.c))"  # a Ticker, Timer, Subscription
    raise TypeError(
        f"{op}() expects a Chan, SendChan or RecvChan (or None), not {type(c).__name__}{hint}"
    )

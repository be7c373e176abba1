"""`Mutex`, the `Locker` protocol, and the FIFO wait queue every sync primitive parks on.

The wait queue is the channels' scheme (see ``asyncgo/_chan.py``): a parked
task is a *parker* (``asyncgo._backend.new_parker``: an asyncio future, or
trio's future-like waiter) in a FIFO deque; whoever grants it the resource
claims it with ``set_result`` -- only while it is not ``done()``, so at most
once, and never after it was cancelled. A grant therefore never goes to a
task that will not see it, and a cancelled waiter holds nothing. Dead entries
(cancelled waiters) are skipped by the wakers and compacted away, so a queue
does not grow.
"""

from __future__ import annotations

from collections import deque
from threading import get_ident as _get_ident
from types import TracebackType
from typing import Any, Protocol, final

from asyncgo._backend import (
    FAST,
    NOT_CLAIMED,
    TASK_STATES,
    TRIO,
    _diag,
    abandon,
    cancel_pending,
    checkpoint,
    current_tasks_get,
    must_checkpoint,
    new_parker,
    park_runtime,
    rescue,
    task_cancelled,
    thread_id,
)

__all__ = ["Locker", "Mutex", "WaitQueue", "park", "parking_runtime"]

_FAST = FAST
_ctg = current_tasks_get
_task_state = TASK_STATES.get
_task_cancelled = task_cancelled

#: A queue entry: the parked task's parker and what it asked for (a semaphore
#: weight; else 0). Claimers call ``parker.set_result(None)`` when not ``done()``.
Entry = tuple[Any, int]

# Compact a queue once this many of its entries are dead and they are at least
# half of it: amortised O(1) per cancelled waiter (the channels' threshold).
_COMPACT_MIN = 32


class Locker(Protocol):
    """Anything that can be locked and unlocked: `Mutex`, `RWMutex`, ``rw.read()``.

    Go: ``sync.Locker``

    Example:
        ```python
        async def append_locked(lk: sync.Locker, log: list[str], line: str) -> None:
            await lk.lock()                  # Go: l.Lock(); defer l.Unlock()
            try:
                log.append(line)
            finally:
                lk.unlock()

        log: list[str] = []
        rw = RWMutex()
        for lk in (Mutex(), rw, rw.read(), rw.write()):
            await append_locked(lk, log, "x")
        assert log == ["x"] * 4
        ```
    """

    async def lock(self) -> None:
        """Acquire the lock, waiting while it is held."""

    def unlock(self) -> None:
        """Release the lock."""


@final
class WaitQueue:
    """A FIFO of parked tasks with lazy removal of dead (cancelled) entries.

    Private to asyncgo.sync. A queue is bound to the event loop of the first
    task that parks on it: parking from another loop raises `RuntimeError`, and
    so does waking its waiters from another thread (`check_thread`), instead of
    waking a task across loops and threads.
    """

    __slots__ = ("_dead", "_loop", "_tid", "q")

    def __init__(self) -> None:
        self.q: deque[Entry] = deque()
        self._dead = 0
        self._loop: object = None
        self._tid: int | None = None  # the thread running that loop

    def __len__(self) -> int:
        """Entries, live or not yet compacted away."""
        return len(self.q)

    def bind(self, w: Any, rt: object, owner: object) -> None:
        """Check that parker *w* (made for runtime *rt*) belongs to this queue's loop."""
        if rt is self._loop:  # asyncio: the runtime hint is the loop itself
            return
        loop = w.get_loop()
        if self._loop is None:
            self._loop = loop
            self._tid = thread_id()
        elif self._loop is not loop:
            raise RuntimeError(
                f"{owner!r} is bound to the event loop it first waited on ({self._loop!r}) "
                f"and cannot be waited on from another one ({loop!r}); a "
                f"{type(owner).__name__} belongs to one event loop"
            )

    def check_thread(self, owner: object) -> None:
        """Raise `RuntimeError` if a live waiter is parked here by another thread's loop.

        The primitives call it before they change any state on the way to waking
        a waiter: a wake-up from another loop's thread would reach a loop that is
        not watching (asyncio: the waiter wakes late) or fail half-way (trio).
        """
        if self._tid == _get_ident() or not any(not e[0].done() for e in self.q):
            return
        raise RuntimeError(
            f"{owner!r} is bound to the event loop it first waited on ({self._loop!r}), "
            "which runs in another thread, and cannot wake its waiters from this one; a "
            f"{type(owner).__name__} belongs to one event loop (from another thread, use "
            "anyio.from_thread.run or loop.call_soon_threadsafe)"
        )

    def push(self, w: Any, n: int) -> Entry:
        """Queue parker *w* (asking for *n*) at the tail."""
        entry = (w, n)
        self.q.append(entry)
        return entry

    def forget(self, entry: Entry) -> None:
        """Note that *entry* is dead: its task was cancelled (and not claimed)."""
        q = self.q
        if not q:
            return
        if q[-1] is entry:
            q.pop()
            return
        if q[0] is entry:
            q.popleft()
            return
        self._dead += 1
        if self._dead >= _COMPACT_MIN and 2 * self._dead >= len(q):
            self.q = deque(e for e in q if not e[0].done())
            self._dead = 0

    def head(self) -> Entry | None:
        """The first live entry (left queued), dropping dead ones before it."""
        q = self.q
        while q:
            e = q[0]
            if not e[0].done():
                return e
            q.popleft()
        return None

    def wake_first(self, owner: object) -> bool:
        """Claim and wake the first live waiter; False if there is none.

        Raises `RuntimeError` (see `check_thread`), having changed nothing, when
        called from a thread other than the waiters' loop's.
        """
        q = self.q
        while q:
            w = q[0][0]
            if not w.done():
                if self._tid != _get_ident():
                    self.check_thread(owner)
                q.popleft()
                w.set_result(None)
                return True
            q.popleft()
        return False

    def wake_all(self, owner: object) -> int:
        """Claim and wake every live waiter; return how many were woken.

        Raises `RuntimeError` as `wake_first` does.
        """
        q = self.q
        if self._tid != _get_ident():
            self.check_thread(owner)
        self.q = deque()
        self._dead = 0
        n = 0
        for w, _ in q:
            if not w.done():
                w.set_result(None)
                n += 1
        return n


def parking_runtime(owner: Any) -> object:
    """The runtime to park on: `park_runtime`, after making sure the hint is a real one.

    The primitives call `must_checkpoint` only when they complete without
    waiting (a park is itself a cancel point, and `must_checkpoint` is the
    costly part of a contended operation). So the ``_rt`` hint may never have
    been set (None), or may be left by an earlier ``trio.run``; `park_runtime`
    trusts TRIO, and under trio it takes None for the running asyncio loop.
    `must_checkpoint` sets or refreshes the hint in both cases.
    """
    rt = owner._rt
    if rt is TRIO or rt is None:
        must_checkpoint(owner)
    return park_runtime(owner)


async def park(q: WaitQueue, n: int, owner: Any, op: str) -> None:
    """Park the current task on *q* until a waker claims it; if cancelled first, leave no trace.

    *owner* is the primitive (its ``_rt`` holds the runtime hint). The
    backends' protocol (``asyncgo._backend.rescue``): a parker claimed just
    before its task was cancelled is *rescued* -- the grant stands, `park`
    returns, and the cancellation fires at the task's next checkpoint.
    """
    rt = parking_runtime(owner)
    w = new_parker(rt)
    q.bind(w, rt, owner)
    entry = q.push(w, n)
    tracer = _diag.tracer
    if tracer is not None:
        tracer.parked(w, owner, op)
    try:
        await w
    except BaseException as exc:
        if rescue(w, exc) is NOT_CLAIMED:
            abandon(w)  # (not needed for a cancellation, which already made it done)
            q.forget(entry)
            raise
    finally:
        if tracer is not None:
            tracer.unparked(w)


@final
class Mutex:
    """A mutual exclusion lock. Go: ``sync.Mutex``.

    ``async with mu:`` locks and unlocks. Waiters are served first come, first
    served: `unlock` hands the lock straight to the longest-waiting task (so a
    task that unlocks and locks again in a loop cannot starve the others).
    As in Go, a locked Mutex is not tied to a task: any task may unlock it.

    Cancellation: a `lock` cancelled while waiting holds nothing and does not
    delay the tasks queued behind it. If the lock was handed over to a task
    whose cancellation arrived at the same moment, `lock` returns holding it
    and the cancellation fires at the task's next checkpoint, so the
    ``async with`` block still unlocks. Checkpoint: `lock` is always a cancel
    point; it yields to the scheduler only when it has to wait (or, every few
    hundred back-to-back operations, so a tight loop cannot starve other tasks).

    A Mutex is bound to the event loop on which a task first waits for it.

    Example:
        ```python
        mu = Mutex()
        account = {"balance": 0}

        async def deposit(amount: int) -> None:
            async with mu:                   # Go: mu.Lock(); defer mu.Unlock()
                balance = account["balance"]
                await anyio.sleep(0)         # without the lock, updates would be lost here
                account["balance"] = balance + amount

        async with Group() as g:
            for _ in range(100):
                g.go_nowait(deposit, 1)
        assert account["balance"] == 100
        assert mu.try_lock() and not mu.try_lock()  # Go: mu.TryLock()
        mu.unlock()
        ```
    """

    __slots__ = ("__weakref__", "_locked", "_q", "_rt")

    def __init__(self) -> None:
        """Make an unlocked mutex."""
        self._locked = False
        self._q = WaitQueue()
        self._rt: object = None  # runtime hint (see must_checkpoint)
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    def __repr__(self) -> str:
        state = "locked" if self._locked else "unlocked"
        return f"<Mutex {state} waiters={len(self._q)} at {id(self):#x}>"

    def locked(self) -> bool:
        """Whether the mutex is locked (by any task)."""
        return self._locked

    async def lock(self) -> None:
        """Lock the mutex, waiting while another task holds it.

        Cancellation: if cancelled, the mutex was not acquired. Checkpoint:
        always a cancel point; yields only when it must wait.
        Go: ``mu.Lock()``
        """
        if not self._locked:
            # Unlocked implies no live waiter: unlock() hands the lock to one if
            # any. Taking it at once is still a cancel point: must_checkpoint(),
            # its asyncio branch inlined (as the channels' fast paths).
            t = _ctg(self._rt)
            if (
                t is not None
                and _FAST.budget > 0
                and not t._must_cancel
                and (st := _task_state(t)) is not None
            ):
                _FAST.budget -= 1
                if st.st.cancel_scope is st.clean or not _task_cancelled(st):
                    self._locked = True
                    return
            elif not must_checkpoint(self):
                self._locked = True
                return
            await checkpoint()
            if not self._locked:
                self._locked = True
                return
        # Parking is the cancel point, but on asyncio anyio delivers a scope's cancel one
        # loop step late: a release in between would grant it to a cancelled task. So a
        # pending cancellation is raised here, before queueing (as trio does).
        if cancel_pending(self):
            await checkpoint()
            return await self.lock()  # (not cancelled after all: the state may have moved)
        # Wait; park(), inlined. Granted by unlock(), which leaves _locked set: the
        # lock changes hands without ever being free, so no one can barge in.
        rt = parking_runtime(self)
        w = new_parker(rt)
        q = self._q
        if rt is not q._loop:
            q.bind(w, rt, self)
        entry = (w, 0)
        q.q.append(entry)
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, self, "mutex lock")
        try:
            await w
        except BaseException as exc:
            if rescue(w, exc) is NOT_CLAIMED:
                abandon(w)
                q.forget(entry)
                raise
        finally:
            if tracer is not None:
                tracer.unparked(w)

    __aenter__ = lock  # ``async with mu:`` -- one coroutine, not two

    def try_lock(self) -> bool:
        """Lock the mutex if it is unlocked, without waiting. Go: ``mu.TryLock()``."""
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self) -> None:
        """Unlock the mutex, handing it to the longest-waiting task if any.

        Go: ``mu.Unlock()``

        Raises:
            RuntimeError: The mutex is not locked ("sync: unlock of unlocked mutex").
        """
        if not self._locked:
            raise RuntimeError("sync: unlock of unlocked mutex")
        if not self._q.q or not self._q.wake_first(self):
            self._locked = False

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # unlock(), inlined
        if not self._locked:
            raise RuntimeError("sync: unlock of unlocked mutex")
        q = self._q
        if not q.q or not q.wake_first(self):
            self._locked = False

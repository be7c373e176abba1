"""`Cond`: a condition variable, Go's ``sync.Cond``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar, final

from asyncgo._backend import (
    NOT_CLAIMED,
    CancelScope,
    _diag,
    abandon,
    cancel_due,
    checkpoint,
    get_cancelled_exc_class,
    must_checkpoint,
    new_parker,
    park_runtime,
    rescue,
)
from asyncgo._exceptions import is_async

from ._mutex import Locker, Mutex, WaitQueue

__all__ = ["Cond"]

T = TypeVar("T")

#: The `Cond` whose ``L`` this task's `Cond.wait` could not lock again (set when the
#: re-lock ended with an error, e.g. the deadlock detector's `Deadlock`): the
#: enclosing ``async with cond:`` must not unlock what another task holds.
_unheld: ContextVar[Cond | None] = ContextVar("asyncgo_cond_unheld", default=None)


@final
class Cond:
    """A condition variable: tasks wait for a state change announced by others.

    ``cond.L`` is the lock guarding the state (a new `Mutex` unless one is
    given; any `Locker` works, e.g. ``rw.read()``). `wait` must be called with
    ``cond.L`` held: it unlocks it, waits for `signal` or `broadcast`, and locks
    it again before returning. As in Go, wake-ups carry no guarantee that the
    condition holds, so wait in a loop (or use `wait_for`). `signal` and
    `broadcast` may be called with or without the lock held.

    Cancellation: a `wait` cancelled while waiting consumes no signal (a
    `signal` wakes another waiter instead) and re-locks ``cond.L`` before the
    cancellation propagates, so ``async with cond:`` still unlocks correctly.
    A signal delivered at the moment of cancellation is kept: `wait` returns
    and the cancellation fires at the next checkpoint -- except for asyncio's
    own one-shot ``Task.cancel()`` arriving as `wait` re-locks ``cond.L``,
    which `wait` raises (once ``cond.L`` is held again), passing the wake-up on
    to another waiter (``signal``), as ``asyncio.Condition`` does.

    If re-locking ``cond.L`` fails with an error rather than a cancellation (the
    deadlock detector's `Deadlock`, raised when the lock's holder can never let
    go), `wait` raises it without ``cond.L``, and the enclosing ``async with
    cond:`` leaves ``cond.L`` alone (it may be another task's).

    Go: ``sync.NewCond(l)``

    Example:
        ```python
        cond = Cond()
        queue: list[str] = []

        async def consume() -> str:
            async with cond:                 # Go: cond.L.Lock(); defer cond.L.Unlock()
                while not queue:             # a wake-up promises nothing: check again
                    await cond.wait()
                return queue.pop(0)

        async with Group() as g:
            consumers = [await g.go(consume) for _ in range(2)]
            for item in ("a", "b"):
                async with cond:
                    queue.append(item)
                    cond.signal()            # wake one waiting consumer
        assert sorted(c.result() for c in consumers) == ["a", "b"]
        ```
    """

    __slots__ = ("L", "__weakref__", "_q", "_rt")

    def __init__(self, L: Locker | None = None) -> None:
        """Make a condition variable guarded by *L* (default: a new `Mutex`)."""
        if L is not None and not (
            callable(getattr(L, "lock", None)) and callable(getattr(L, "unlock", None))
        ):
            raise TypeError(
                f"Cond(L): L must be an asyncgo Locker -- an object with async lock() "
                f"and unlock(), such as Mutex(), rw.write() or rw.read() -- not "
                f"{type(L).__name__}"
                + (" (a threading lock blocks the event loop)" if hasattr(L, "acquire") else "")
            )
        self.L: Locker = L if L is not None else Mutex()
        self._q = WaitQueue()
        self._rt: object = None
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    def __repr__(self) -> str:
        return f"<Cond L={self.L!r} waiters={len(self._q)} at {id(self):#x}>"

    async def wait(self) -> None:
        """Unlock ``cond.L``, wait for `signal`/`broadcast`, lock ``cond.L`` again.

        Cancellation: if cancelled, no signal was consumed and ``cond.L`` is
        held again when the cancellation propagates. Checkpoint: always waits.
        Go: ``cond.Wait()``

        Raises:
            RuntimeError: ``cond.L`` is not locked (the error of its ``unlock()``,
                e.g. "sync: unlock of unlocked mutex").
        """
        # A pending cancellation fires here, with L still held. (Not must_checkpoint:
        # a spent budget would yield with L held, and the waiters woken meanwhile
        # would queue for L behind this task, one loop step each, a lock convoy.
        # The park below yields anyway.)
        if cancel_due(self):
            await checkpoint()
        rt = park_runtime(self)
        w = new_parker(rt)
        q = self._q
        if rt is not q._loop:
            q.bind(w, rt, self)
        entry = (w, 0)  # q.push(w, 0), inlined
        q.q.append(entry)
        try:
            self.L.unlock()
        except BaseException:
            abandon(w)
            q.forget(entry)
            raise
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, self, "cond wait")
        try:
            await w
        except BaseException as exc:
            if rescue(w, exc) is NOT_CLAIMED:  # not signalled: consume nothing
                abandon(w)
                q.forget(entry)
                await self._relock()  # whatever cancellation it met, we raise ours
                raise
        finally:
            if tracer is not None:
                tracer.unparked(w)
        L = self.L
        if type(L) is Mutex and not L._locked:  # _relock's fast path, inlined
            L._locked = True
            return
        cancelled = await self._relock()
        if cancelled is not None:
            # A native Task.cancel() met while re-locking (asyncio): raised, so the
            # wake-up this wait consumed goes to another waiter, or it would be
            # lost (asyncio.Condition does the same).
            self.signal()
            raise cancelled

    async def wait_for(self, predicate: Callable[[], T]) -> T:
        """Wait until ``predicate()`` is true; return its value. ``cond.L`` must be held.

        ``predicate`` is evaluated with ``cond.L`` held, first before waiting.
        Checkpoint: always a cancel point.

        Raises:
            RuntimeError: ``cond.L`` is not locked.
        """
        if not callable(predicate) or is_async(predicate):
            raise TypeError(
                "Cond.wait_for(predicate): predicate must be a plain function returning "
                f"the condition, not {type(predicate).__name__} (it is evaluated with "
                "cond.L held, between waits; an async function's coroutine is always true)"
            )
        L = self.L
        if type(L) is Mutex and not L.locked():
            raise RuntimeError("sync: Cond.wait_for() with cond.L not locked")
        if must_checkpoint(self):
            await checkpoint()
        result = predicate()
        while not result:
            await self.wait()
            result = predicate()
        return result

    def signal(self) -> None:
        """Wake the longest-waiting task, if any. Go: ``cond.Signal()``."""
        if self._q.q:
            self._q.wake_first(self)

    def broadcast(self) -> None:
        """Wake every waiting task. Go: ``cond.Broadcast()``."""
        if self._q.q:
            self._q.wake_all(self)

    async def _relock(self) -> BaseException | None:
        """Lock ``L`` again, whatever cancellation arrives; return a cancellation it met.

        `wait` must return holding ``L`` even when cancelled, or the caller's
        ``async with`` would unlock a lock it does not hold. Under a shield
        anyio and trio cancellations wait; a native ``Task.cancel()`` still
        interrupts, so it is caught, the lock retried, and the cancellation
        re-raised afterwards.
        """
        try_lock = getattr(self.L, "try_lock", None)
        if try_lock is not None and try_lock():
            return None
        cancelled: BaseException | None = None
        cancel_exc = get_cancelled_exc_class()
        with CancelScope(shield=True):
            while True:
                try:
                    await self.L.lock()
                    break
                except cancel_exc as exc:
                    cancelled = exc
                except BaseException:
                    # Not locked (the deadlock detector fails a shielded park with
                    # `Deadlock`): L may be another task's now, so the caller's
                    # ``async with cond:`` must leave it alone.
                    _unheld.set(self)
                    raise
        return cancelled

    def __aenter__(self) -> Coroutine[Any, Any, None]:
        if _unheld.get() is self:
            return self._enter_unheld()
        return self.L.lock()  # the common case: no coroutine of our own

    async def _enter_unheld(self) -> None:
        await self.L.lock()
        # Locked: the flag, left by a wait() outside any block (Go style), is stale.
        # (Cleared only now: if this lock fails, the block around it -- whose wait()
        # could not lock L again -- must still leave L alone.)
        _unheld.set(None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if _unheld.get() is self:  # wait() failed to lock L again: not ours to unlock
            _unheld.set(None)
            return
        self.L.unlock()

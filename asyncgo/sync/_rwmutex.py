"""`RWMutex`: a writer-preferring reader/writer lock, Go's ``sync.RWMutex``."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from asyncgo._backend import _diag, cancel_pending, checkpoint, must_checkpoint

from ._mutex import WaitQueue, park

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from types import TracebackType
    from typing import Any

__all__ = ["RWMutex"]


@final
class RWMutex:
    """A reader/writer lock: many readers or one writer. Go: ``sync.RWMutex``.

    ``async with rw.read():`` holds a read lock, ``async with rw.write():`` the
    write lock. The rules are Go's, which starve neither side:

    * **writer-preferring**: once a writer waits, new readers wait too (even
      while other readers hold the lock), so a stream of readers cannot starve
      a writer; the writer gets the lock when the current readers leave;
    * when a writer unlocks, every reader that queued during its turn gets the
      lock before the next writer, so a stream of writers cannot starve readers;
    * writers are served first come, first served.

    As in Go, the locks are not tied to a task, and a reader must not take the
    read lock again while holding it (a writer queued in between makes that
    deadlock).

    Cancellation: a cancelled `lock`/`rlock` holds nothing; a cancelled
    waiting writer lets the readers queued behind it in. A lock granted at the
    moment the waiter was cancelled is kept (`lock`/`rlock` return) and the
    cancellation fires at the next checkpoint, so ``async with`` still releases
    it. Checkpoint: `lock`/`rlock` are always cancel points and yield only when
    they have to wait.

    Example:
        ```python
        rw = RWMutex()
        table = {"hits": 0}

        async def hit() -> None:
            async with rw.write():           # Go: rw.Lock(); defer rw.Unlock()
                table["hits"] += 1

        async with Group() as g:
            for _ in range(3):
                g.go_nowait(hit)
        async with rw.read():                # Go: rw.RLock(); defer rw.RUnlock()
            assert table["hits"] == 3
            assert rw.try_rlock()            # readers share the lock...
            assert not rw.try_lock()         # ...a writer waits for them all
            rw.runlock()
        ```
    """

    __slots__ = ("__weakref__", "_read", "_readers", "_rq", "_rt", "_wq", "_write", "_writer")

    def __init__(self) -> None:
        """Make an unlocked RWMutex."""
        self._readers = 0  # read locks held
        self._writer = False  # write lock held
        self._rq = WaitQueue()  # readers waiting (only while a writer holds or waits)
        self._wq = WaitQueue()  # writers waiting
        self._rt: object = None
        self._read = _ReadLocker(self)
        self._write = _WriteLocker(self)
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    def __repr__(self) -> str:
        return (
            f"<RWMutex readers={self._readers} writer={self._writer} "
            f"waiting_readers={len(self._rq)} waiting_writers={len(self._wq)} at {id(self):#x}>"
        )

    # -- read side -------------------------------------------------------------

    async def rlock(self) -> None:
        """Take a read lock, waiting while a writer holds the lock or waits for it.

        Cancellation: if cancelled, no read lock was taken. Checkpoint: always
        a cancel point; yields only when it must wait. Go: ``rw.RLock()``
        """
        if not self._writer and (not self._wq.q or self._wq.head() is None):
            if self._rq.q:
                self._admit_readers()  # they queued first
            # Still a cancel point: must_checkpoint(), its asyncio branch inlined (as
            # Mutex.lock and the channels' fast paths).
            if not must_checkpoint(self):
                self._readers += 1
                return
            await checkpoint()
            if not self._writer and self._wq.head() is None:
                if self._rq.q:
                    self._admit_readers()
                self._readers += 1
                return
        # Parking is the cancel point, but on asyncio anyio delivers a scope's cancel one
        # loop step late: a release in between would grant it to a cancelled task. So a
        # pending cancellation is raised here, before queueing (as trio does).
        if cancel_pending(self):
            await checkpoint()
            return await self.rlock()  # (not cancelled after all: the state may have moved)
        # Granted by unlock() (or by a waiting writer's cancellation), which counts us in.
        self._bind_both()
        await park(self._rq, 0, self, "rwmutex rlock")

    def _bind_both(self) -> None:
        """Bind both wait queues to the loop the first of them was bound to.

        They queue for one lock: a reader of one loop and a writer of another would
        wait on each other across loops (and hang) if each queue took its own loop.
        """
        rq, wq = self._rq, self._wq
        if rq._loop is not wq._loop:
            if rq._loop is None:
                rq._loop, rq._tid = wq._loop, wq._tid
            elif wq._loop is None:
                wq._loop, wq._tid = rq._loop, rq._tid

    def try_rlock(self) -> bool:
        """Take a read lock if no writer holds or waits for the lock. Go: ``rw.TryRLock()``."""
        if self._writer or self._wq.head() is not None:
            return False
        if self._rq.q:
            self._admit_readers()
        self._readers += 1
        return True

    def runlock(self) -> None:
        """Release a read lock; the last reader out lets a waiting writer in.

        Go: ``rw.RUnlock()``

        Raises:
            RuntimeError: No read lock is held ("sync: RUnlock of unlocked RWMutex").
        """
        if self._readers <= 0:
            raise RuntimeError("sync: RUnlock of unlocked RWMutex")
        if self._readers == 1 and self._wq.q:
            self._wq.check_thread(self)  # before changing anything
            self._readers = 0
            self._grant_writer()
        else:
            self._readers -= 1

    # -- write side ------------------------------------------------------------

    async def lock(self) -> None:
        """Take the write lock, waiting for the current readers and writer to leave.

        While this waits, new readers wait too. Cancellation: if cancelled, the
        lock was not taken, and readers that queued only because of this writer
        are let in. Checkpoint: always a cancel point; yields only when it must
        wait. Go: ``rw.Lock()``
        """
        if self._free_for_writer():
            if not must_checkpoint(self):
                self._writer = True
                return
            await checkpoint()
            if self._free_for_writer():
                self._writer = True
                return
        # Parking is the cancel point, but on asyncio anyio delivers a scope's cancel one
        # loop step late: a release in between would grant it to a cancelled task. So a
        # pending cancellation is raised here, before queueing (as trio does).
        if cancel_pending(self):
            await checkpoint()
            return await self.lock()  # (not cancelled after all: the state may have moved)
        if self._rq.q and not self._writer and self._wq.head() is None:
            # The readers queued behind a writer that was cancelled (its task not
            # resumed yet) go first, as they would have had it resumed.
            self._admit_readers()
        self._bind_both()
        try:
            # Granted by the last runlock() or by unlock(), which set _writer for us.
            await park(self._wq, 0, self, "rwmutex lock")
        except BaseException:
            self._writer_gone()
            raise

    def try_lock(self) -> bool:
        """Take the write lock if nobody holds it or waits for it. Go: ``rw.TryLock()``."""
        if not self._free_for_writer():
            return False
        self._writer = True
        return True

    def unlock(self) -> None:
        """Release the write lock: readers queued meanwhile go first, then the next writer.

        Go: ``rw.Unlock()``

        Raises:
            RuntimeError: The write lock is not held ("sync: Unlock of unlocked RWMutex").
        """
        if not self._writer:
            raise RuntimeError("sync: Unlock of unlocked RWMutex")
        if self._rq.q or self._wq.q:  # before changing anything
            self._rq.check_thread(self)
            self._wq.check_thread(self)
        self._writer = False
        if self._rq.q and self._admit_readers():
            return
        if self._wq.q:
            self._grant_writer()

    # -- context managers --------------------------------------------------------

    def read(self) -> _ReadLocker:
        """``async with rw.read():`` holds a read lock. Also a `Locker` (Go: ``rw.RLocker()``)."""
        return self._read

    def write(self) -> _WriteLocker:
        """``async with rw.write():`` holds the write lock. Also a `Locker`."""
        return self._write

    # -- hand-over -----------------------------------------------------------------

    def _free_for_writer(self) -> bool:
        """Nobody holds the lock or waits for it (readers queued behind a writer
        that was cancelled, its task not resumed yet, are let in first)."""
        if self._writer or self._readers or (self._wq.q and self._wq.head() is not None):
            return False
        return not (self._rq.q and self._admit_readers())

    def _grant_writer(self) -> None:
        """Give the lock to the first waiting writer if nobody holds it (or, if every
        waiting writer was cancelled, to the readers they held back)."""
        if self._writer or self._readers:
            return
        if self._wq.wake_first(self):
            self._writer = True
        elif self._rq.q:
            self._admit_readers()

    def _admit_readers(self) -> int:
        """Let in every queued reader (no live writer holds them back); how many."""
        n = self._rq.wake_all(self)
        self._readers += n
        return n

    def _writer_gone(self) -> None:
        """A waiting writer was cancelled: admit what it was holding back."""
        if self._writer:
            return
        if self._wq.head() is not None:  # the next writer holds the readers back
            if self._readers == 0:
                self._grant_writer()  # (defensive: unlock/runlock already did)
            return
        if self._rq.q:
            self._admit_readers()


@final
class _ReadLocker:
    """The read side of an `RWMutex` as a `Locker` and an async context manager."""

    __slots__ = ("_rw",)

    def __init__(self, rw: RWMutex) -> None:
        self._rw = rw

    def __repr__(self) -> str:
        return f"<read side of {self._rw!r}>"

    async def lock(self) -> None:
        """Take a read lock: ``rw.rlock()``."""
        await self._rw.rlock()

    def try_lock(self) -> bool:
        """Take a read lock without waiting: ``rw.try_rlock()``."""
        return self._rw.try_rlock()

    def unlock(self) -> None:
        """Release a read lock: ``rw.runlock()``."""
        self._rw.runlock()

    def __aenter__(self) -> Coroutine[Any, Any, None]:
        return self._rw.rlock()  # ``async with rw.read():`` -- one coroutine, not two

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        rw = self._rw  # runlock(), its common case inlined
        if rw._readers > 1 or (rw._readers == 1 and not rw._wq.q):
            rw._readers -= 1
        else:
            rw.runlock()


@final
class _WriteLocker:
    """The write side of an `RWMutex` as a `Locker` and an async context manager."""

    __slots__ = ("_rw",)

    def __init__(self, rw: RWMutex) -> None:
        self._rw = rw

    def __repr__(self) -> str:
        return f"<write side of {self._rw!r}>"

    async def lock(self) -> None:
        """Take the write lock: ``rw.lock()``."""
        await self._rw.lock()

    def try_lock(self) -> bool:
        """Take the write lock without waiting: ``rw.try_lock()``."""
        return self._rw.try_lock()

    def unlock(self) -> None:
        """Release the write lock: ``rw.unlock()``."""
        self._rw.unlock()

    def __aenter__(self) -> Coroutine[Any, Any, None]:
        return self._rw.lock()  # one coroutine, not two

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        rw = self._rw  # unlock(), its common case inlined: nobody waits
        if rw._writer and not rw._rq.q and not rw._wq.q:
            rw._writer = False
        else:
            rw.unlock()

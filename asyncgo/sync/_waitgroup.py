"""`WaitGroup`: wait for a collection of tasks to finish, Go's ``sync.WaitGroup``."""

from __future__ import annotations

from typing import final

from asyncgo._backend import _diag, cancel_pending, checkpoint, must_checkpoint

from ._mutex import WaitQueue, park

__all__ = ["WaitGroup"]


@final
class WaitGroup:
    """A counter of outstanding work; `wait` returns when it reaches zero.

    ``wg.add(1)`` before starting each piece of work, ``wg.done()`` when it
    finishes, ``await wg.wait()`` to wait for all of them. Every task waiting
    when the counter reaches zero wakes; the WaitGroup may then be reused.

    With structured concurrency a task group already waits for its tasks; a
    WaitGroup is for waiting on work that is not a task of yours (callbacks,
    jobs handed to a pool) or on a subset of a group's tasks.

    Go: ``sync.WaitGroup``

    Example:
        ```python
        wg = WaitGroup()
        fetched: list[int] = []

        async def fetch(i: int) -> None:
            await anyio.sleep(0.001)         # stands for an HTTP request
            fetched.append(i)
            wg.done()                        # Go: defer wg.Done()

        async with Group() as g:
            for i in range(3):
                wg.add(1)                    # before starting the work, as in Go
                g.go_nowait(fetch, i)
            await wg.wait()                  # all three called done(); the group is still open
            assert sorted(fetched) == [0, 1, 2]
        ```
    """

    __slots__ = ("__weakref__", "_count", "_q", "_rt")

    def __init__(self) -> None:
        """Make a WaitGroup with a zero counter."""
        self._count = 0
        self._q = WaitQueue()
        self._rt: object = None
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    def __repr__(self) -> str:
        return f"<WaitGroup count={self._count} waiters={len(self._q)} at {id(self):#x}>"

    def add(self, delta: int = 1) -> None:
        """Add *delta* (which may be negative; 1 if omitted) to the counter.

        When the counter reaches zero, every task blocked in `wait` wakes.
        Go: ``wg.Add(delta)``

        Raises:
            ValueError: The counter would become negative ("sync: negative
                WaitGroup counter"); the counter is left unchanged.
            TypeError: *delta* is not an int.
        """
        if type(delta) is not int and (not isinstance(delta, int) or isinstance(delta, bool)):
            raise TypeError(f"sync: WaitGroup.add() takes an int, not {type(delta).__name__}")
        count = self._count + delta
        if count < 0:
            what = (
                "done() was called more times than add() counted"
                if delta == -1
                else f"add({delta}) takes away more than the counter holds"
            )
            raise ValueError(
                f"sync: negative WaitGroup counter ({self._count} {delta:+d} = {count}): {what}"
            )
        if count == 0 and self._q.q:
            self._q.check_thread(self)  # before changing anything
            self._count = count
            self._q.wake_all(self)
        else:
            self._count = count

    def done(self) -> None:
        """Decrement the counter by one. Go: ``wg.Done()``.

        Raises:
            ValueError: The counter would become negative ("sync: negative
                WaitGroup counter").
        """
        self.add(-1)

    async def wait(self) -> None:
        """Wait until the counter is zero.

        Cancellation: a cancelled wait leaves no trace. Checkpoint: always a
        cancel point; yields only when it must wait. Go: ``wg.Wait()``
        """
        if self._count == 0:
            if not must_checkpoint(self):
                return
            await checkpoint()
            if self._count == 0:
                return
        # Parking is the cancel point, but on asyncio anyio delivers a scope's cancel one
        # loop step late: a release in between would grant it to a cancelled task. So a
        # pending cancellation is raised here, before queueing (as trio does).
        if cancel_pending(self):
            await checkpoint()
            return await self.wait()  # (not cancelled after all: the state may have moved)
        await park(self._q, 0, self, "waitgroup wait")

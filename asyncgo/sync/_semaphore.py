"""`Semaphore`: a weighted semaphore with the semantics of Go's golang.org/x/sync/semaphore."""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import Protocol, final

from asyncgo._backend import (
    NOT_CLAIMED,
    _diag,
    abandon,
    cancel_pending,
    checkpoint,
    must_checkpoint,
    new_parker,
    rescue,
)
from asyncgo._chan import Chan, Entry, RecvChan, chan_of
from asyncgo._exceptions import Canceled

from ._mutex import WaitQueue, parking_runtime

__all__ = ["Semaphore"]


class _Context(Protocol):
    """What `Semaphore.acquire` needs of a context: asyncgo's `Context` fits."""

    def done(self) -> RecvChan[object]: ...

    def err(self) -> BaseException | None: ...


def _check_n(n: int, what: str) -> None:
    if type(n) is not int and (not isinstance(n, int) or isinstance(n, bool)):
        raise TypeError(f"semaphore: {what}(n) takes an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"semaphore: {what}(n={n}): n must not be negative")


def _ctx_error(ctx: _Context) -> BaseException:
    err = ctx.err()
    if err is None:
        return Canceled()
    # One shared object, raised again and again: clear its traceback (or it grows) and
    # what an earlier raise chained to it (another task's error), and chain the cause,
    # as the context's own waits do.
    err.__traceback__ = None
    cause = getattr(ctx, "cause", None)
    c = cause() if callable(cause) else None
    err.__cause__ = None if c is err else c
    err.__context__ = None
    err.__suppress_context__ = True
    return err


@final
class Semaphore:
    """A weighted semaphore: *size* tokens, taken and given back *n* at a time.

    Go: ``semaphore.NewWeighted(size)`` (golang.org/x/sync/semaphore), with its
    semantics exactly:

    * waiters are served strictly first come, first served: a request at the
      head of the queue that does not fit yet blocks every later request, even
      smaller ones that would fit, so a large request is never starved;
    * a waiter that gives up (cancelled, or its ctx done) leaves the queue, and
      the requests behind it proceed if they now fit;
    * with a *ctx*, a ctx already done fails the call even if tokens are free,
      and a grant that races the ctx ending is given back.

    ``async with sem:`` takes and returns one token.

    Cancellation: a cancelled `acquire` holds nothing and does not hold up the
    queue. Tokens granted at the moment the waiter was cancelled are kept
    (`acquire` returns) and the cancellation fires at the next checkpoint, so
    ``async with`` still releases them. Checkpoint: `acquire` is always a cancel
    point; it yields only when it has to wait.

    Example:
        ```python
        sem = Semaphore(10)                  # 10 MB of buffer; Go: semaphore.NewWeighted(10)
        in_use: list[int] = []

        async def process(size_mb: int) -> None:
            await sem.acquire(size_mb)       # waits until size_mb tokens are free
            try:
                in_use.append(size_mb)
                assert sum(in_use) <= 10     # never more than 10 MB at once
                await anyio.sleep(0.001)     # stands for the work
                in_use.remove(size_mb)
            finally:
                sem.release(size_mb)

        async with Group() as g:
            for size in (6, 3, 5, 2):
                g.go_nowait(process, size)
        assert sem.try_acquire(10)           # every token was given back
        ```
    """

    __slots__ = ("__weakref__", "_cur", "_q", "_rt", "_size")

    def __init__(self, size: int) -> None:
        """Make a semaphore with *size* tokens, all free.

        Raises:
            TypeError: *size* is not an int.
            ValueError: *size* is negative.
        """
        if type(size) is not int and (not isinstance(size, int) or isinstance(size, bool)):
            raise TypeError(f"semaphore: size must be an int, not {type(size).__name__}")
        if size < 0:
            raise ValueError(f"semaphore: size must not be negative, got {size}")
        self._size = size
        self._cur = 0  # tokens held
        self._q = WaitQueue()  # entries (waiter, n)
        self._rt: object = None
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    def __repr__(self) -> str:
        return f"<Semaphore held={self._cur}/{self._size} waiters={len(self._q)} at {id(self):#x}>"

    @property
    def size(self) -> int:
        """The number of tokens."""
        return self._size

    async def acquire(self, n: int = 1, ctx: _Context | None = None) -> None:
        """Take *n* tokens, waiting until they are free and every earlier waiter is served.

        With *ctx*, gives up when ``ctx.done()`` is closed and raises
        ``ctx.err()``; a ctx already done fails at once, even if tokens are
        free. Go: ``sem.Acquire(ctx, n)``

        Cancellation: if cancelled, no tokens were taken, and the waiters
        behind this one proceed if they now fit. Checkpoint: always a cancel
        point; yields only when it must wait.

        *n* larger than the size can never be granted. With a *ctx* that can end,
        it waits for the ctx, as Go's does, without queueing (the waiters behind
        it are not held back), and raises ``ctx.err()``; without one (or with one
        that can never end, `background()`), it raises `ValueError` at once
        instead of waiting forever.

        Raises:
            ValueError: *n* is negative, or larger than the semaphore's size
                with no ctx that can end.
            TypeError: *n* is not an int.
            Exception: ``ctx.err()`` (e.g. `Canceled`, `DeadlineExceeded`) when
                the ctx ends first.
        """
        if type(n) is not int or n < 0:
            _check_n(n, "acquire")
        done: Chan[object] | None = None
        if ctx is not None:
            if not (callable(getattr(ctx, "done", None)) and callable(getattr(ctx, "err", None))):
                raise TypeError(
                    "sync: Semaphore.acquire(n, ctx): ctx must be an asyncgo Context, an "
                    "object with done() (a channel closed when done) and err(), or None; "
                    f"not {type(ctx).__name__}"
                )
            done = chan_of(ctx.done())
            # ctx becoming done "happened before" acquiring: prefer to fail even
            # if the tokens are free (Go's semaphore does the same).
            if done._closed:
                raise _ctx_error(ctx)
        if n > self._size:
            if done is None or getattr(ctx, "_cn", False) is None:  # (a ctx that never ends)
                raise ValueError(
                    f"semaphore: acquire(n={n}) exceeds the semaphore size {self._size}: "
                    "it could never be granted"
                )
            # Go: it waits for the ctx, queued nowhere (it holds nobody back).
            await done.recv_ok()
            raise _ctx_error(ctx)  # type: ignore[arg-type]
        if self._size - self._cur >= n and self._q.head() is None:
            # Granting at once is still a cancel point (parking is one anyway).
            if not must_checkpoint(self):
                self._cur += n
                return
            await checkpoint()
            if done is not None and done._closed:
                raise _ctx_error(ctx)  # type: ignore[arg-type]
            if self._size - self._cur >= n and self._q.head() is None:
                self._cur += n
                return
        # Parking is the cancel point, but on asyncio anyio delivers a scope's cancel one
        # loop step late: a release in between would grant it to a cancelled task. So a
        # pending cancellation is raised here, before queueing (as trio does).
        if cancel_pending(self):
            await checkpoint()
            return await self.acquire(n, ctx)  # (not cancelled after all: the state may have moved)
        await self._park(n, ctx, done)

    async def _park(self, n: int, ctx: _Context | None, done: Chan[object] | None) -> None:
        """Wait in the queue for *n* tokens (and, with *ctx*, on its done channel too)."""
        rt = parking_runtime(self)
        w = new_parker(rt)
        q = self._q
        q.bind(w, rt, self)
        centry: Entry | None = None
        if done is not None:
            # One parker on two queues, as select does: whichever of the
            # semaphore (result None) and the ctx's done channel (a result
            # tuple) claims it first wins, exactly once.
            if rt is not done._loop:
                done._bind(w)
            centry = (w, 1, None)
        entry = q.push(w, n)
        if centry is not None:
            assert done is not None
            rq = done._recvq
            if rq is None:
                rq = done._recvq = deque()
            rq.append(centry)
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, self if done is None else (self, done), "semaphore acquire")
        try:
            r = await w
        except BaseException as exc:
            r = rescue(w, exc)
            if r is NOT_CLAIMED:  # not granted: we hold nothing
                abandon(w)
                q.forget(entry)
                if centry is not None:
                    assert done is not None
                    done._forget(centry, True)
                self._notify()  # we may have been the head holding the others back
                raise
        finally:
            if tracer is not None:
                tracer.unparked(w)
        if done is None:
            return  # granted: _notify() counted our tokens as held
        assert ctx is not None
        assert centry is not None
        if r is not None:  # claimed by the done channel: the ctx ended first, we hold nothing
            q.forget(entry)
            self._notify()
            raise _ctx_error(ctx)
        done._forget(centry, True)
        if done._closed:
            # Granted, but the ctx is done too: give the tokens back and fail,
            # as Go's semaphore does (it checks ctx.Done() after the grant).
            self.release(n)
            raise _ctx_error(ctx)

    def try_acquire(self, n: int = 1) -> bool:
        """Take *n* tokens if they are free and nobody is waiting; never waits.

        Returns False when it would have to wait (including, as in Go, when
        *n* exceeds the size). Go: ``sem.TryAcquire(n)``

        Raises:
            ValueError: *n* is negative.
            TypeError: *n* is not an int.
        """
        if type(n) is not int or n < 0:
            _check_n(n, "try_acquire")
        if self._size - self._cur >= n and self._q.head() is None:
            self._cur += n
            return True
        return False

    def release(self, n: int = 1) -> None:
        """Give back *n* tokens, waking the waiters at the head of the queue that now fit.

        Go: ``sem.Release(n)``

        Raises:
            ValueError: More tokens would be released than are held
                ("semaphore: released more than held"), or *n* is negative;
                nothing is released.
            TypeError: *n* is not an int.
        """
        if type(n) is not int or n < 0:
            _check_n(n, "release")
        if n > self._cur:
            raise ValueError(
                f"semaphore: released more than held (release(n={n}) with {self._cur} held)"
            )
        if self._q.q:
            self._q.check_thread(self)  # before changing anything
            self._cur -= n
            self._notify()
        else:
            self._cur -= n

    def _notify(self) -> None:
        """Grant tokens to waiters in queue order, stopping at the first that does not fit.

        Go: "We could keep going (to try to find a waiter with a smaller
        request), but under load that could cause starvation for large
        requests; instead, we leave all remaining waiters blocked."
        """
        q = self._q.q
        while q:
            w, n = q[0]
            if w.done():  # cancelled, or claimed by its ctx
                q.popleft()
                continue
            if self._size - self._cur < n:
                break
            q.popleft()
            w.set_result(None)
            self._cur += n

    async def __aenter__(self) -> None:
        # acquire(1), inlined
        q = self._q
        if self._cur < self._size and (not q.q or q.head() is None):
            if not must_checkpoint(self):
                self._cur += 1
                return
            await checkpoint()
            if self._cur < self._size and (not q.q or q.head() is None):
                self._cur += 1
                return
        if not self._size:
            raise ValueError(
                "semaphore: async with (acquire(n=1)) exceeds the semaphore size 0: "
                "it could never be granted"
            )
        # Parking is the cancel point, but on asyncio anyio delivers a scope's cancel one
        # loop step late: a release in between would grant it to a cancelled task. So a
        # pending cancellation is raised here, before queueing (as trio does).
        if cancel_pending(self):
            await checkpoint()
            return await self.__aenter__()  # (not cancelled after all: the state may have moved)
        # _park(1, None, None), inlined: the contended path of ``async with sem``
        rt = parking_runtime(self)
        w = new_parker(rt)
        if rt is not q._loop:
            q.bind(w, rt, self)
        entry = (w, 1)
        q.q.append(entry)
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, self, "semaphore acquire")
        try:
            await w  # granted: _notify() counted our token as held
        except BaseException as exc:
            if rescue(w, exc) is NOT_CLAIMED:
                abandon(w)
                q.forget(entry)
                self._notify()
                raise
        finally:
            if tracer is not None:
                tracer.unparked(w)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # release(1), inlined
        if self._cur < 1:
            raise ValueError("semaphore: released more than held (release(n=1) with 0 held)")
        if self._q.q:
            self._q.check_thread(self)  # before changing anything
            self._cur -= 1
            self._notify()
        else:
            self._cur -= 1

"""`Group`: Go's errgroup (golang.org/x/sync/errgroup) as a structured task group.

The first error cancels ``g.ctx`` and every task of the group, and leaving the
``async with`` block re-raises it *as itself* -- never inside an
ExceptionGroup. Tasks are spawned with the event loop's own primitives
(``_backend/_taskgroup.py``), not through anyio's task group.

Exit precedence, when several things went wrong at once (``Group.__aexit__``):

1. a BaseException that is not cancellation (KeyboardInterrupt, SystemExit)
   raised by a task or the body -- the first one;
2. the first error (an `Exception`) of a task or of the body;
3. the owner's cancellation from outside the group (an enclosing cancel scope,
   ``Task.cancel()``), re-raised unwrapped so its scope can catch it;
4. ``g.ctx.err()`` when the parent context ended and cut the group short.

Errors win over cancellation as in asyncio.TaskGroup, trio and anyio: an
error that happened is never dropped silently.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Generator
from threading import get_ident as _get_ident
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple, final

from ._backend import (
    NOT_CLAIMED,
    TRIO,
    _diag,
    abandon,
    cancel_pending,
    checkpoint,
    get_cancelled_exc_class,
    must_checkpoint,
    new_parker,
    park_runtime,
    rescue,
    runtime,
)
from ._backend._taskgroup import (
    CANCELLED,
    FAILED,
    OK,
    PENDING,
    Core,
    checkpoint_if_cancelled,
    make_core,
)
from ._context import Context, _current, _node, check_ctx, current
from ._exceptions import Canceled, WouldBlock, raise_shared

if TYPE_CHECKING:
    from contextvars import Token

__all__ = ["Group", "TaskHandle"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Ts = TypeVarTuple("Ts")

_new = object.__new__


def _refuse(h: object, fn: object, args: object) -> bool:
    """The spawn function of an exited group (its core is gone)."""
    return False


# Group states
_NEW, _OPEN, _CLOSED = 0, 1, 2


@final
class TaskHandle(Generic[T_co]):
    """The handle of a task started by `Group.go`: its outcome, once it has ended.

    ``await h`` waits for the task and returns its result, or raises what it
    raised (the same exception object). A task the group cancelled before it
    finished -- because of another task's error, the owner's cancellation or
    the parent context -- has no result: ``await h`` and `result` raise
    `Canceled`. After the ``async with`` block every handle is done, so
    `result` can be called directly.

    Awaiting a handle does not *handle* its error: the group still fails with
    its first error on exit (Go: every error goes to ``Wait``). Waiting on a
    handle is a cancel point; cancelling the waiter does not affect the task.
    Go: errgroup has no handles; this is the ``result`` channel a Go program
    would pass to the goroutine.

    Example:
        ```python
        async def square(x: int) -> int:
            return x * x

        async with Group() as g:
            h = await g.go(square, 7)
            assert await h == 49             # wait for this one task
        assert h.done() and h.result() == 49 and h.exception() is None
        ```
    """

    __slots__ = ("_fn", "_group", "_state", "_task", "_tb", "_value", "_waiters")

    _fn: object
    _group: Group
    _state: int
    _value: object
    _tb: TracebackType | None
    _waiters: list[Any] | None
    _task: Any

    def __init__(self) -> None:
        raise TypeError("TaskHandle cannot be built directly: it is returned by Group.go()")

    def done(self) -> bool:
        """Whether the task has ended (returned, raised, or was cancelled)."""
        return self._state != PENDING

    def cancelled(self) -> bool:
        """Whether the task ended by being cancelled before it finished."""
        return self._state == CANCELLED

    def result(self) -> T_co:
        """The task's return value; raises what the task raised.

        Raises:
            Canceled: The task was cancelled before it finished.
            RuntimeError: The task has not ended yet (await the handle instead,
                or read the result after the group's ``async with`` block).
            BaseException: Whatever the task raised, as itself.
        """
        st = self._state
        if st == OK:
            return self._value  # type: ignore[return-value]
        if st == PENDING:
            raise RuntimeError(
                "TaskHandle.result(): the task has not finished yet; await the handle, "
                "or read the result after the Group's async with block"
            )
        if st == FAILED:
            # The same exception each time, with the task's own traceback (raised as
            # it is, it would grow by every caller's frames) and its own __context__.
            raise_shared(self._value, self._tb)  # type: ignore[arg-type]
        raise self._error()

    def exception(self) -> BaseException | None:
        """What the task raised (`Canceled` if it was cancelled), or None if it returned.

        Raises:
            RuntimeError: The task has not ended yet.
        """
        st = self._state
        if st == PENDING:
            raise RuntimeError(
                "TaskHandle.exception(): the task has not finished yet; await the handle, "
                "or read it after the Group's async with block"
            )
        return None if st == OK else self._error()

    def _error(self) -> BaseException:
        if self._state == FAILED:
            return self._value  # type: ignore[return-value]
        c = self._value  # CANCELLED: the Canceled made on first use, or unset / None
        if not isinstance(c, Canceled):
            c = self._value = Canceled(f"task {self._name()} was cancelled before it finished")
        return c

    async def wait(self) -> T_co:
        """Wait until the task has ended; return its result or raise its error.

        Same as ``await h``. A cancel point even when the task has already
        ended; if the waiter is cancelled, the task is not affected.

        Raises:
            Canceled: The task was cancelled before it finished.
            BaseException: Whatever the task raised, as itself.
        """
        g = self._group
        if self._state == PENDING and cancel_pending(g):
            # A cancellation on its way (asyncio delivers it a step late): take it
            # before waiting, or a task finishing meanwhile would be our result.
            await checkpoint()
        if self._state == PENDING:
            rt = park_runtime(g)
            p = new_parker(rt)
            ws = self._waiters
            if ws is None:
                ws = self._waiters = []
            ws.append(p)
            tracer = _diag.tracer
            if tracer is not None:
                tracer.parked(p, self, "task handle wait")
            try:
                await p
            except BaseException as exc:
                if rescue(p, exc) is NOT_CLAIMED:
                    abandon(p)
                    if p in ws:
                        ws.remove(p)
                    raise
            finally:
                if tracer is not None:
                    tracer.unparked(p)
        elif must_checkpoint(g):
            await checkpoint()
        if self._state == CANCELLED:
            # The waiter's own cancellation, if it has one, wins over the task's: the
            # scope that cancelled the task may enclose the waiter too, and its
            # cancellation may reach the task first (trio raises it at the wait).
            await checkpoint_if_cancelled()
        return self.result()

    def __await__(self) -> Generator[Any, None, T_co]:
        return self.wait().__await__()

    def _wake(self) -> None:
        ws = self._waiters
        self._waiters = None
        for p in ws or ():
            if not p.done():
                p.set_result(None)

    def _name(self) -> str:
        fn = self._fn
        return getattr(fn, "__qualname__", None) or repr(fn)

    def __repr__(self) -> str:
        st = {PENDING: "pending", OK: "done", FAILED: "failed", CANCELLED: "cancelled"}
        return f"<TaskHandle {self._name()} {st[self._state]}>"


@final
class Group:
    """Go's errgroup: run tasks, cancel them all on the first error, re-raise it.

    ``async with Group(ctx, limit=10) as g:`` opens the group; ``await
    g.go(fn, *args)`` starts ``fn(*args)`` in a task of the group and returns
    its `TaskHandle`; leaving the block waits for every task. The first error
    -- of a task or of the block's body -- cancels ``g.ctx``, every other task
    and the body itself, and is re-raised on exit as itself (same object, its
    traceback kept), not wrapped in an ExceptionGroup; every error, in the
    order they happened, is in `errors`. KeyboardInterrupt, SystemExit and
    the backends' cancellation pass through unwrapped. When the task owning
    the block is cancelled, every task of the group is cancelled and waited
    for, then the cancellation propagates; when the parent context ends, the
    group is cancelled the same way and exit raises ``g.ctx.err()``.

    ``g.ctx`` is a child of *ctx* (default: `current()`), cancelled on the
    first error (with the error as its cause) or on exit; it is also
    `current()` inside the block and inside the group's tasks. With *limit*,
    at most that many tasks run at once: `go` waits for a free slot and
    `try_go` returns False. Tasks may start further tasks; after the block
    has exited, the group accepts none.

    Cost: a task spawn is the event loop's own ``create_task`` (trio:
    ``start_soon``) plus a handle and one wrapper frame. Spawning and joining
    100k tasks: ``try_go`` 0.8-1.1x asyncio.TaskGroup / trio nurseries, ``await
    go`` 1.3-2.8x (it lets tasks run every 256 spawns), 5-14x anyio's task group
    (``benchmarks/bench_group.py``).

    Example:
        ```python
        async def fetch(url: str) -> str:
            await anyio.sleep(0.001)         # stands for an HTTP request
            return f"<html of {url}>"

        urls = [f"https://example.com/{i}" for i in range(20)]
        async with Group(limit=8) as g:      # at most 8 fetches at once
            pages = [await g.go(fetch, url) for url in urls]
        assert [p.result() for p in pages] == [f"<html of {u}>" for u in urls]

        async def fails() -> None:
            raise ValueError("boom")

        try:
            async with Group() as g:
                g.go_nowait(anyio.sleep, 10)  # cancelled by the other task's error
                g.go_nowait(fails)
        except ValueError as e:               # re-raised as itself, not in a group
            assert str(e) == "boom"
        ```

    Go: ``g, ctx := errgroup.WithContext(ctx); g.SetLimit(n); g.Go(f); err := g.Wait()``

    Raises:
        ValueError: *limit* is less than 1.
        TypeError: *limit* is not an int, or *ctx* is not a `Context`.
        RuntimeError: (on ``async with``) *ctx* belongs to an event loop running in
            another thread.
    """

    __slots__ = (
        "__weakref__",
        "_aborted",
        "_cancel",
        "_core",
        "_ctx",
        "_ctx_aborted",
        "_cut",
        "_errors",
        "_fatal",
        "_limit",
        "_parent",
        "_rt",
        "_running",
        "_slotq",
        "_spawn",
        "_state",
        "_tid",
        "_token",
    )

    def __init__(self, ctx: Context | None = None, *, limit: int | None = None) -> None:
        check_ctx(ctx, "Group(ctx)")
        if limit is not None:
            if type(limit) is not int and (not isinstance(limit, int) or isinstance(limit, bool)):
                raise TypeError(f"Group: limit must be an int or None, not {type(limit).__name__}")
            if limit < 1:
                raise ValueError(
                    f"Group: limit must be at least 1 (got {limit}); use limit=None for no limit"
                )
        self._parent = ctx
        self._limit = limit
        self._state = _NEW
        self._core: Core | None = None
        self._errors: list[Exception] = []
        self._fatal: BaseException | None = None
        self._aborted = False
        self._ctx_aborted = False
        self._cut = False
        self._running = 0
        self._slotq: deque[Any] | None = None
        self._ctx: Context | None = None
        self._rt: object = None
        self._tid = 0  # while open: the thread running the group's loop
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    # -- public API -------------------------------------------------------------------

    @property
    def ctx(self) -> Context:
        """The group's context: cancelled on the first error (cause: that error) or on exit.

        Raises:
            RuntimeError: The group has not been entered yet.
        """
        c = self._ctx
        if c is None:
            raise RuntimeError(
                "Group.ctx exists once the group is entered: async with Group() as g: g.ctx"
            )
        return c

    @property
    def errors(self) -> list[Exception]:
        """Every error raised by the group's tasks and body, in the order they happened.

        ``errors[0]`` is the error the group re-raises on exit; the others
        came after it (often consequences of the cancellation it caused).
        KeyboardInterrupt, SystemExit and cancellations are not errors and are
        not listed. A copy: changing it does not affect the group.
        """
        return list(self._errors)

    @property
    def limit(self) -> int | None:
        """How many tasks may run at once (None: no limit). Go: ``g.SetLimit(n)``"""
        return self._limit

    async def go(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> TaskHandle[T]:
        """Start ``fn(*args)`` in a new task of the group; return its handle.

        With a limit, waits (FIFO) until fewer than *limit* tasks run. A task
        started after the group was cancelled (from a task outside the group)
        runs until its first checkpoint and is cancelled there, as in a trio
        nursery. Cancellation: if cancelled while waiting for a slot, no task
        was started. Checkpoint: always a cancel point; yields to the
        scheduler only when it must wait.
        Go: ``g.Go(f)``

        Raises:
            RuntimeError: The group is not open: not entered yet, or its
                ``async with`` block has exited; or the caller runs in another
                thread than the group's event loop.
        """
        if _get_ident() != self._tid:  # (0 unless open: one test for both)
            self._misuse("go")
        if must_checkpoint(self):
            await checkpoint()
            if self._state != _OPEN:
                self._misuse("go")
        if self._limit is not None:
            if self._running < self._limit:
                self._running += 1
            else:
                await self._wait_slot()
                if self._state != _OPEN:
                    self._release()
                    self._misuse("go")
        return self._start(fn, args)

    def try_go(self, fn: Callable[[*Ts], Awaitable[object]], *args: *Ts) -> bool:
        """Start ``fn(*args)`` in a new task if a slot is free; return whether it was started.

        Never waits. Without a limit it always starts the task. Go: ``g.TryGo(f)``

        Raises:
            RuntimeError: The group is not open: not entered yet, or its
                ``async with`` block has exited; or the caller runs in another
                thread than the group's event loop.
        """
        if _get_ident() != self._tid:  # (0 unless open: one test for both)
            self._misuse("try_go")
        if self._limit is not None:
            if self._running >= self._limit:
                return False
            self._running += 1
        self._start(fn, args, "try_go")
        return True

    def go_nowait(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> TaskHandle[T]:
        """Like `try_go`, but return the new task's handle, or raise `WouldBlock`.

        Raises:
            WouldBlock: No slot is free (the group has a limit and it is reached).
            RuntimeError: The group is not open: not entered yet, or its
                ``async with`` block has exited; or the caller runs in another
                thread than the group's event loop.
        """
        if _get_ident() != self._tid:  # (0 unless open: one test for both)
            self._misuse("go_nowait")
        if self._limit is not None:
            if self._running >= self._limit:
                raise WouldBlock(f"Group.go_nowait(): all {self._limit} slots are taken")
            self._running += 1
        return self._start(fn, args, "go_nowait")

    # -- async with -----------------------------------------------------------------------

    async def __aenter__(self) -> Group:
        if self._state != _NEW:
            raise RuntimeError(
                "a Group can be entered only once; make a new Group for each async with block"
            )
        rt = self._rt = runtime()
        parent = self._parent if self._parent is not None else current()
        n = parent._cn
        if n is not None and n._rt is not None:
            # A ctx of a loop running in another thread would end the group there.
            n._home("Group(ctx)")
        # with_cancel_cause(parent), without the pair (parent is a checked Context) and,
        # on asyncio, without looking the loop up again (it is the node's runtime).
        c = self._ctx = _node(parent, "with_cancel_cause", None if rt is TRIO else rt)  # type: ignore[arg-type]
        self._cancel = c._cancel
        core = self._core = make_core(self, rt)
        self._spawn = core.spawn
        if rt is TRIO:
            await core.enter()
        else:
            core.enter_now()  # type: ignore[attr-defined]  # (AsyncioCore: nothing to await)
        self._state = _OPEN
        self._tid = _get_ident()  # the thread that may start tasks (see go)
        self._token: Token[Context | None] = _current.set(self._ctx)
        # After the core exists: the group hears of its parent's end (cancel, deadline)
        # as a callback of its fresh context node -- as `register_after` would, without
        # its handle (the node belongs to this loop, and only the group removes it).
        if c._err is None:
            # (No parent node: the parent can never end -- background(), without_cancel()
            # -- and only the group itself cancels g.ctx, after setting _aborted.)
            if c._up is not None:
                c._cbs = {self: self._on_ctx_done}
                if c._owner is not None:  # a deadline above: its timer must run to tell us
                    c.err()  # (one that passed unnoticed ends it now, calling back)
                    c._arm()
        else:
            self._on_ctx_done()  # the parent was done already
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        core = self._core
        if core is None:
            raise RuntimeError(
                "Group: __aexit__ without __aenter__ (use `async with Group() as g:`)"
            )
        try:
            if exc is None and self._rt is not TRIO and core.exit_now():  # type: ignore[attr-defined]
                cancel_exc = None  # (no child left to wait for: nothing to await)
            else:
                cancel_exc = await core.exit(exc)
        finally:
            self._state = _CLOSED
            self._tid = 0
            self._core = None  # no cycle group <-> core; nothing may start any more
            self._spawn = _refuse
            cbs = self._ctx._cbs  # type: ignore[union-attr]
            if cbs is not None:
                cbs.pop(self, None)
            try:
                _current.reset(self._token)
            except ValueError:  # exited in another context than entered (a misused fixture)
                pass
        first: BaseException | None = self._fatal
        if first is None and self._errors:
            first = self._errors[0]
        # Go: Wait cancels the context, with the first error as cause. (A node of the
        # running asyncio loop: on its thread, so `Context._cancel` would end it here.)
        c = self._ctx
        if c._rt is self._rt:  # type: ignore[union-attr]
            c._cancel_here(first)  # type: ignore[union-attr]
        else:
            self._cancel(first)
        if first is None:
            first = cancel_exc
            if first is None:
                if not self._ctx_aborted:
                    return True  # whatever the body raised was our own cancellation
                if not self._cut and not isinstance(exc, get_cancelled_exc_class()):
                    # The parent ended, but nothing was cut short: every task had
                    # finished and the body was not interrupted. Go's Wait returns nil.
                    return True
                # Cut short by the parent context -- unless the owner is being cancelled
                # from outside too, which must win (older anyio scopes swallow it here).
                await checkpoint_if_cancelled()
                err = self.ctx.err()
                assert err is not None
                cause = self.ctx.cause()
                raise err.with_traceback(None) from (None if cause is err else cause)
        if first is exc:
            return False  # the body's own exception: let it propagate untouched
        context = first.__context__
        try:
            raise first
        finally:
            first.__context__ = context  # raising here must not chain it to the body's exc
            del first, context, cancel_exc, exc

    # -- internals ------------------------------------------------------------------------

    def _start(self, fn: Any, args: tuple[object, ...], what: str = "go") -> TaskHandle[Any]:
        if not callable(fn):
            self._not_callable(fn, what)
        h: TaskHandle[Any] = _new(TaskHandle)  # TaskHandle._create, inlined: the hot path
        h._group = self
        h._fn = fn
        h._state = PENDING
        h._waiters = None
        h._task = None
        h._value = None
        ctx = self._ctx
        try:
            if _current.get() is ctx:
                started = self._spawn(h, fn, args)
            else:  # spawned from outside the block: the task must still see current() == g.ctx
                token = _current.set(ctx)
                try:
                    started = self._spawn(h, fn, args)
                finally:
                    _current.reset(token)
        except BaseException:  # the event loop refused the task (a task factory raised)
            if self._limit is not None and h._state is PENDING:  # (else the task released it)
                self._release()
            raise
        if not started:  # from outside the group, while its owner is leaving the block
            if self._limit is not None:
                self._release()
            self._state = _CLOSED
            self._tid = 0
            self._misuse(what)
        return h

    def _not_callable(self, fn: object, what: str) -> None:
        hint = ""
        if hasattr(fn, "__await__"):
            hint = (
                f": pass the async function and its arguments, g.{what}(fetch, url), "
                f"not g.{what}(fetch(url))"
            )
            close = getattr(fn, "close", None)
            if close is not None:
                close()  # no "never awaited" warning on top of this error
        if self._limit is not None:
            self._release()
        raise TypeError(f"Group.{what}() takes an async function, not {type(fn).__name__}{hint}")

    def _misuse(self, what: str) -> None:
        if self._state == _OPEN:  # open, so the caller runs in another thread
            raise RuntimeError(
                f"Group.{what}() from another thread than the one running the group's "
                "event loop: a Group belongs to the loop it was entered on, and only "
                "that loop may start its tasks (from a worker thread, hand the call "
                "over: anyio.from_thread.run(g.go, fn))"
            )
        if self._state == _NEW:
            raise RuntimeError(
                f"Group.{what}() before the group was entered: use it inside "
                "`async with Group() as g:`"
            )
        raise RuntimeError(
            f"Group.{what}() after the group's async with block has exited: every task "
            "of a group must start before the block ends (start it from inside the "
            "block, or from one of the group's tasks)"
        )

    async def _wait_slot(self) -> None:
        """Park until a finishing task hands us its slot (FIFO)."""
        q = self._slotq
        if q is None:
            q = self._slotq = deque()
        p = new_parker(park_runtime(self))
        q.append(p)
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(p, self, "group slot")
        try:
            await p
        except BaseException as exc:
            if rescue(p, exc) is NOT_CLAIMED:
                abandon(p)
                try:
                    q.remove(p)
                except ValueError:
                    pass
                raise
            # Handed a slot just before the cancellation: the go() completes (starts
            # its task) and the cancellation comes at the next checkpoint, as channels do.
        finally:
            if tracer is not None:
                tracer.unparked(p)

    def _release(self) -> None:
        """A task's slot is free: hand it to the first live waiter, else count it free."""
        q = self._slotq
        while q:
            p = q.popleft()
            if not p.done():
                p.set_result(None)
                return
        self._running -= 1

    def _fail(self, exc: BaseException) -> None:
        """A task or the body raised *exc* (not a cancellation)."""
        if isinstance(exc, Exception):
            if any(e is exc for e in self._errors):
                return  # a task's error re-raised by the body (or a task) from `await h`
            self._errors.append(exc)
        elif self._fatal is None:
            self._fatal = exc
        else:
            return
        if not self._aborted:
            self._aborted = True
            self._cancel(exc)  # first: the tasks see ctx.err() when the cancellation lands
            self._core.abort()  # type: ignore[union-attr]

    def _on_ctx_done(self) -> None:
        """g.ctx ended (parent cancelled or past its deadline, or our own cancel)."""
        if self._aborted or self._state == _CLOSED:
            return
        self._aborted = True
        self._ctx_aborted = True
        self._core.abort()  # type: ignore[union-attr]

    def __repr__(self) -> str:
        state = {_NEW: "new", _OPEN: "open", _CLOSED: "exited"}[self._state]
        lim = "" if self._limit is None else f" limit={self._limit}"
        return f"<Group {state}{lim} errors={len(self._errors)}>"

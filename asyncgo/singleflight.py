"""Duplicate call suppression: Go's golang.org/x/sync/singleflight.

Design (docs/singleflight.md): the shared call cannot run in the first
caller's task, because that caller may be cancelled while others still wait for
the result, and a cancelled task must stop promptly. So each shared call runs
in a task of its own, in a task group owned by the `Group`, which is therefore
entered with ``async with`` (Principle 1: leaving the block waits for, or
cancels, every call still running; no task of ours outlives it). Callers park
on the call; a cancelled caller just leaves. When the last caller of a call
leaves, the call is cancelled and forgotten, so the next ``do`` for that key
starts afresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, final

from ._backend import (
    NOT_CLAIMED,
    CancelScope,
    TaskGroup,
    _diag,
    abandon,
    checkpoint,
    create_task_group,
    get_cancelled_exc_class,
    must_checkpoint,
    new_parker,
    park_runtime,
    rescue,
)
from ._backend._taskgroup import checkpoint_if_cancelled
from ._backend._timers import Runtime, elsewhere, runtime_or_none
from ._exceptions import not_a_function, not_awaitable, stray_cancellation

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = ["Group"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def _leaves(excs: Sequence[BaseException]) -> list[BaseException]:
    """The exceptions in *excs*, with every exception group flattened to its leaves."""
    out: list[BaseException] = []
    for e in excs:
        if isinstance(e, BaseExceptionGroup):
            out.extend(_leaves(e.exceptions))
        else:
            out.append(e)
    return out


def _among(e: BaseException, excs: list[BaseException]) -> bool:
    """Whether *e* itself (not an equal exception) is in *excs*."""
    return any(x is e for x in excs)


class _Call:
    """One in-flight call of ``fn(*args)`` and the callers waiting for it."""

    __slots__ = ("aborted", "done", "dups", "exc", "scope", "tb", "value", "waiters", "waiting")

    def __init__(self) -> None:
        self.waiters: list[Any] = []  # parkers; cancelled ones stay until the call ends
        self.waiting = 0  # callers still waiting (live waiters)
        self.dups = 0  # callers that joined after the first (Go's c.dups)
        self.done = False
        self.value: object = None
        self.exc: BaseException | None = None
        self.tb: TracebackType | None = None
        self.aborted = False  # ended by the Group's own cancellation, not by fn
        self.scope: CancelScope | None = None


_DO_ADVICE = "pass the async function and its arguments, g.do(key, f, *args), not g.do(key, f())"


@final
class Group:
    """Suppress duplicate calls: concurrent ``do`` calls with one key share one call.

    Go: ``singleflight.Group`` (golang.org/x/sync/singleflight). Unlike Go's,
    it owns the tasks that run the calls, so it is used as ``async with``.

    Rules:

    * concurrent callers with the same key share one call of ``fn(*args)``
      (the ``fn`` and ``args`` of the first caller); each gets its result, or
      its exception -- the same exception object in every caller;
    * a cancelled caller leaves alone: the call goes on for the others. When
      every caller of a call has left, the call is cancelled and the key
      forgotten, so the next ``do`` for it starts a new call;
    * the call runs in a task of the Group's own task group, not in any
      caller's task; leaving the ``async with`` block waits for calls still
      running (and cancels them if the block is left by an exception);
      meanwhile a call in flight may still be joined, but none is started.
      Nothing is cached: a call that has returned is forgotten at once.

    Keys may be any hashable value.

    Example:
        ```python
        queries: list[int] = []

        async def fetch_user(user_id: int) -> str:
            queries.append(user_id)
            await anyio.sleep(0.01)          # stands for a slow database query
            return f"user {user_id}"

        async with singleflight.Group() as sf, Group() as g:
            callers = [await g.go(sf.do, 42, fetch_user, 42) for _ in range(5)]
        assert queries == [42]               # one query for five concurrent callers
        assert {c.result() for c in callers} == {("user 42", True)}  # (value, shared)
        ```
    """

    __slots__ = ("__weakref__", "_calls", "_closed", "_home", "_rt", "_tg")

    def __init__(self) -> None:
        """Make a Group; enter it with ``async with`` before calling `do`."""
        self._calls: dict[Hashable, _Call] = {}
        self._tg: TaskGroup | None = None
        self._closed = False
        self._home: Runtime | None = None  # the event loop it was entered on
        self._rt: object = None
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    def __repr__(self) -> str:
        if self._tg is None:
            state = "closed" if self._closed else "not entered"
        else:
            state = "closing" if self._closed else "open"
        return f"<singleflight.Group {state} in_flight={len(self._calls)} at {id(self):#x}>"

    async def __aenter__(self) -> Self:
        if self._tg is not None or self._closed:
            raise RuntimeError("singleflight: a Group can be entered only once")
        tg = create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._home = runtime_or_none()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._closed = True
        tg = self._tg
        if tg is None:
            raise RuntimeError(
                "singleflight.Group: __aexit__ without __aenter__ (use `async with Group() as g:`)"
            )
        try:
            return await tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as eg:
            # The task group's group holds the body's own exception: as is
            # (asyncio), or, if that is a group, maybe a copy of it with the same
            # leaves (trio's nursery splits its Cancelled out). The body's leaves
            # are not searched: a group the body raised is left whole.
            leaves = _leaves(eg.exceptions)
            body = [] if exc is None else _leaves([exc])
            cancelled = get_cancelled_exc_class()
            for leaf in leaves:
                # A call's KeyboardInterrupt, SystemExit... (the only thing a call
                # raises into the task group: its errors go to the callers) comes
                # out as itself, and first, as out of an errgroup Group.
                if not isinstance(leaf, (Exception, cancelled)) and not _among(leaf, body):
                    context = leaf.__context__
                    try:
                        raise leaf
                    finally:
                        leaf.__context__ = context  # not chained to the group
                        del leaf, context
            # A group holding just the body's own exception is the task group's
            # wrapping of it: let it propagate as itself, so that ``async with
            # singleflight.Group()`` is transparent to errors -- an exception
            # group the body raised included (whose leaves are compared, one by
            # one, since trio may hand back a copy of it).
            if exc is None or len(leaves) != len(body):
                raise
            if not all(a is b for a, b in zip(leaves, body, strict=True)):
                raise
            return False
        finally:
            self._tg = None

    async def do(
        self, key: Hashable, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts
    ) -> tuple[T, bool]:
        """Call ``fn(*args)``, or wait for the call already in flight for *key*.

        Returns ``(value, shared)``: *shared* is True when more than one caller
        waited for this call. Go: ``v, err, shared := g.Do(key, fn)``

        Cancellation: a cancelled caller leaves without disturbing the others;
        if it was the last one waiting, the call is cancelled. Checkpoint:
        always waits for the call (in a task of the Group). While the Group's
        block is exiting, a ``do`` may still join the call in flight for *key*,
        but not start one.

        Raises:
            Exception: Whatever ``fn`` raised, in every caller of that call.
            RuntimeError: The Group is not entered (``async with``) or has
                ended, or it is closing and no call for *key* is in flight to
                join; the call was cancelled by the Group's shutdown; or ``fn``
                raised a cancellation that no cancel scope of the call caused
                (e.g. it awaited a future cancelled elsewhere): chained from
                it, in every caller of that call.
            TypeError: ``fn`` is not an async function (e.g. ``g.do(key, f())``
                for ``g.do(key, f)``, at once; a sync function, in every caller).
        """
        if not callable(fn):
            raise not_a_function(fn, "singleflight: Group.do", _DO_ADVICE)
        if elsewhere(self._home):
            raise RuntimeError(
                f"singleflight: Group.do() from another event loop: {self!r} was entered "
                f"on {self._home!r}, whose task group runs the calls; use it from that loop, "
                "or give each loop a Group of its own"
            )
        if must_checkpoint(self):
            await checkpoint()
        tg = self._tg
        call = self._calls.get(key)
        if tg is None or (self._closed and call is None):
            raise self._refused()
        if call is None:
            call = self._calls[key] = _Call()
            tg.start_soon(self._run, key, call, fn, args, name=f"singleflight.Group.do({key!r})")
        else:
            call.dups += 1
        w = new_parker(park_runtime(self))
        call.waiters.append(w)
        call.waiting += 1
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, self, "singleflight do")
        try:
            await w
        except BaseException as exc:
            if rescue(w, exc) is NOT_CLAIMED:  # left before the call ended
                abandon(w)
                call.waiting -= 1
                if call.waiting == 0 and not call.done:
                    # Every caller has gone: stop the call and forget it, so
                    # the next do() for the key starts a fresh one.
                    if self._calls.get(key) is call:
                        del self._calls[key]
                    if call.scope is not None:
                        call.scope.cancel()
                raise
        finally:
            if tracer is not None:
                tracer.unparked(w)
        # Woken by _run: the call has ended.
        if call.aborted:
            await checkpoint()  # our own cancellation, if that is what ended it, goes first
            if call.exc is not None:  # fn raised a BaseException that is not an Exception
                raise RuntimeError(
                    f"singleflight: the call for key {key!r} ended by "
                    f"{type(call.exc).__name__} (a BaseException, not an Exception), "
                    "which shuts its Group down"
                ) from call.exc
            raise RuntimeError(
                f"singleflight: the call for key {key!r} was cancelled because its Group "
                "was shut down"
            )
        err = call.exc
        if err is not None:
            # The same exception in every caller, each time with the call's own
            # traceback (re-raising it as is would pile up every caller's frames),
            # and its own __context__: raised here, inside a caller's ``except``,
            # Python would chain it to what that caller was handling.
            context, suppress = err.__context__, err.__suppress_context__
            try:
                raise err.with_traceback(call.tb)
            finally:
                err.__context__, err.__suppress_context__ = context, suppress
                del err, context
        return call.value, call.dups > 0  # type: ignore[return-value]

    def _refused(self) -> RuntimeError:
        """The error of a `do` that can neither join a call in flight nor start one."""
        if self._tg is None:
            if self._closed:
                state = "is closed: its `async with` block has ended; call do() inside it"
            else:
                state = "was not entered: call do() inside `async with singleflight.Group() as g:`"
        else:
            # Its block waits for the calls in flight: one may still be joined (it
            # runs anyway), but a new one would keep the block waiting for work
            # begun after it started to exit (or start in a task group shutting down).
            state = (
                "is closing: its `async with` block is exiting, so no new call can "
                "start (a call already in flight for the key can still be joined)"
            )
        return RuntimeError(f"singleflight: Group.do() on a Group that {state}")

    def forget(self, key: Hashable) -> None:
        """Forget *key*: the next ``do`` for it calls ``fn`` rather than join the call in flight.

        Callers already waiting still get that call's result. Go: ``g.Forget(key)``
        """
        self._calls.pop(key, None)

    async def _run(
        self,
        key: Hashable,
        call: _Call,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
    ) -> None:
        if call.waiting == 0:  # every caller left before the call could start
            call.done = True
            return
        try:
            with CancelScope() as scope:
                call.scope = scope
                try:
                    r = fn(*args)
                    if not isawaitable(r):
                        raise not_awaitable(fn, r, "singleflight: Group.do")
                    call.value = await r
                except Exception as exc:  # goes to the callers, never to the task group
                    call.exc = exc
                    call.tb = exc.__traceback__
                except BaseException as exc:
                    if not isinstance(exc, get_cancelled_exc_class()):
                        raise  # KeyboardInterrupt, SystemExit...: below
                    if scope.cancel_called:
                        raise  # every caller left: the call's scope takes it back
                    # The Group's scope or an enclosing one: raised here, for the
                    # task group to take back.
                    await checkpoint_if_cancelled()
                    # No scope of the call caused it: fn awaited something cancelled
                    # elsewhere (a future, another task). Raised into the task group,
                    # anyio would take it for a failed task and cancel the Group's
                    # block; it is an error of this call, for its callers only.
                    call.exc = stray_cancellation(
                        f"singleflight: the call for key {key!r}",
                        exc,
                        "its callers get this error instead of being cancelled",
                    )
        except BaseException as exc:
            # The Group's scope was cancelled, or fn raised KeyboardInterrupt,
            # SystemExit... (which then shuts the Group down).
            call.aborted = True
            if not isinstance(exc, get_cancelled_exc_class()):
                call.exc = exc  # for the callers' RuntimeError to name it, not to raise
            raise
        finally:
            call.done = True
            call.scope = None
            if self._calls.get(key) is call:
                del self._calls[key]
            for w in call.waiters:
                if not w.done():
                    w.set_result(None)
            call.waiters.clear()

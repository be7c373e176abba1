"""Duplicate call suppression: Go's golang.org/x/sync/singleflight.

Design (docs/singleflight.md): the shared call cannot run in the first
caller's task, because that caller may be cancelled while others still wait for
the result, and a cancelled task must stop promptly. So each shared call runs
in a task of its own: in a task group owned by the `Group` when it is entered
with ``async with`` (Principle 1: leaving the block waits for, or cancels, every
call still running; no task of ours outlives it), else -- Go's zero value --
in a task of no task group that its callers own (`spawn_detached`), the last
to leave waiting for the cancelled call to end. Callers park on the call; a
cancelled caller just leaves. When the last caller of a call leaves, the call
is cancelled and forgotten, so the next ``do`` for that key starts afresh.

The task group is the native core `asyncgo.Group` spawns with
(``_backend/_taskgroup.py``: ``loop.create_task`` on asyncio, a nursery on
trio), not anyio's, whose spawn costs two cancel scopes and a task name per
call (issue #4): the Group is the core's group (``_fail``, ``_cut``,
``_limit``, ``_release``) and each `_Call` the handle of its task. A call's
task is named lazily, when a dump asks (``TASK_NAMERS``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from inspect import isawaitable
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NamedTuple,
    Self,
    TypeVar,
    TypeVarTuple,
    final,
)

from ._backend import (
    NOT_CLAIMED,
    TRIO,
    CancelScope,
    _diag,
    abandon,
    checkpoint,
    get_cancelled_exc_class,
    must_checkpoint,
    new_parker,
    park_runtime,
    rescue,
    runtime,
)
from ._backend._taskgroup import (
    PENDING,
    AsyncioCore,
    Core,
    checkpoint_if_cancelled,
    make_core,
    spawn_detached,
)
from ._backend._tasks import TASK_NAMERS, _trio_mod, all_tasks, current_task, task_parent
from ._backend._timers import Runtime, elsewhere, runtime_or_none
from ._chan import Chan, RecvChan
from ._exceptions import not_a_function, not_awaitable, raise_shared, stray_cancellation

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["Group", "Result"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _Call:
    """One in-flight call of ``fn(*args)`` and the callers waiting for it.

    Also the handle of the call's task for the task-group core, which writes the
    task's end on ``_state`` / ``_value`` and keeps it in ``_task`` while it runs
    (asyncio; on trio, and for a detached call, the Group sets ``_task`` itself).
    Callers park on ``waiters``, never on the handle (``_waiters`` stays None).
    """

    __slots__ = (
        "_state",
        "_task",
        "_tb",
        "_value",
        "_waiters",
        "aborted",
        "detached",
        "done",
        "dups",
        "exc",
        "running",
        "scope",
        "stopped",
        "tb",
        "value",
        "waiters",
        "waiting",
    )

    def __init__(self) -> None:
        self._state = PENDING
        self._value: object = None
        self._tb: TracebackType | None = None  # (the core's; the callers use tb)
        self._waiters: list[Any] | None = None
        self._task: Any = None
        self.waiters: list[Any] = []  # parkers; cancelled ones stay until the call ends
        self.waiting = 0  # callers still waiting (live waiters)
        self.dups = 0  # callers that joined after the first (Go's c.dups)
        self.done = False
        self.value: object = None
        self.exc: BaseException | None = None
        self.tb: TracebackType | None = None
        self.aborted = False  # ended by the Group's own cancellation, not by fn
        self.running = False  # its task has started (and fn is called)
        self.stopped = False  # cancelled because every caller has left
        self.scope: Any = None  # its cancel scope while it runs (trio, detached; else none)
        self.detached = False  # runs in a task of no task group (a Group never entered)

    def _wake(self) -> None:
        """(The core's call for handles with waiters: a call has none of its own.)"""


_DO_ADVICE = "pass the async function and its arguments, g.do(key, f, *args), not g.do(key, f())"


class Result(NamedTuple, Generic[T]):
    """What `Group.do_chan`'s channel delivers: the call's outcome. Go: ``singleflight.Result``

    *value* is the call's result (None if it raised), *err* what it raised (None if
    it returned), *shared* whether more than one caller waited for the call.

    Example:
        ```python
        async def add(a: int, b: int) -> int:
            return a + b

        async with singleflight.Group() as sf:
            r = await sf.do_chan("sum", add, 1, 2).recv()
        assert r == singleflight.Result(3, None, False)
        value, err, shared = r  # a NamedTuple
        ```
    """

    value: T | None
    err: BaseException | None
    shared: bool


@final
class _ChanWaiter:
    """A `Group.do_chan` caller: woken like a parked caller, it sends the call's
    `Result` on its channel (a buffer of one, so the send never waits)."""

    __slots__ = ("_call", "_ch", "_done", "_key")

    def __init__(self, call: _Call, key: Hashable, ch: Chan[Result[Any]]) -> None:
        self._call = call
        self._key = key
        self._ch = ch
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, _: object) -> None:
        self._done = True
        call = self._call
        r: Result[Any]
        if call.aborted:
            r = Result(None, _aborted_error(call, self._key), call.dups > 0)
        elif call.exc is not None:
            r = Result(None, call.exc, call.dups > 0)
        else:
            r = Result(call.value, None, call.dups > 0)
        self._ch.send_nowait(r)
        self._ch.close()  # (Go's channel stays open; nothing else is ever sent on it)


def _unhashable(what: str, key: object) -> TypeError:
    return TypeError(f"{what}: a key must be hashable, like a dict key; not {type(key).__name__}")


@final
class Group:
    """Suppress duplicate calls: concurrent ``do`` calls with one key share one call.

    Go: ``singleflight.Group`` (golang.org/x/sync/singleflight). Use it as
    ``async with`` (its block owns the tasks that run the calls), or, like Go's
    zero value, without: each call's task is then owned by its callers, and the
    last to leave a cancelled call waits for it to end.

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
      Never entered, the call's task belongs to its callers instead: the
      last one to leave cancels it and waits until it has ended; a
      KeyboardInterrupt or SystemExit of ``fn`` is raised in every caller.
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

    __slots__ = (
        "__weakref__",
        "_body_exc",
        "_calls",
        "_closed",
        "_core",
        "_cut",
        "_fatal",
        "_home",
        "_rt",
        "_trio",
    )

    #: No limit on the calls running at once (read by the task-group core).
    _limit: int | None = None

    def __init__(self) -> None:
        """Make a Group: enter it with ``async with``, or call `do` without (Go's zero value)."""
        self._calls: dict[Hashable, _Call] = {}
        self._core: Core | None = None  # the task group running the calls, while entered
        self._closed = False
        self._home: Runtime | None = None  # the event loop it was entered on
        self._rt: object = None
        self._trio = False
        self._cut = False  # (written by the core: a call's task was cancelled)
        self._fatal: BaseException | None = None  # a call's BaseException (KeyboardInterrupt)
        self._body_exc: BaseException | None = None  # what the block raised, while exiting
        if _diag.tracer is not None:
            _diag.tracer.created(self)

    def __repr__(self) -> str:
        if self._core is None:
            state = "closed" if self._closed else "not entered"
        else:
            state = "closing" if self._closed else "open"
        return f"<singleflight.Group {state} in_flight={len(self._calls)} at {id(self):#x}>"

    async def __aenter__(self) -> Self:
        if self._core is not None or self._closed:
            raise RuntimeError("singleflight: a Group can be entered only once")
        rt = runtime()
        core = make_core(self, rt)
        await core.enter()
        self._core = core
        self._rt = rt
        if rt is TRIO:
            global _trio_cancel_scope
            if _trio_cancel_scope is None:
                _trio_cancel_scope = _trio_mod().CancelScope
            self._trio = True
        self._home = runtime_or_none()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._closed = True
        core = self._core
        if core is None:
            raise RuntimeError(
                "singleflight.Group: __aexit__ without __aenter__ (use `async with Group() as g:`)"
            )
        self._body_exc = exc  # (for _fail: the block's own exception is not a call's)
        try:
            # Cancels the calls if the block is left by an exception, then waits for
            # them; returns the owner's cancellation if it is not the core's own.
            cancel_exc = await core.exit(exc)
        finally:
            self._core = None  # no cycle Group <-> core; nothing may start any more
            self._body_exc = None
        fatal = self._fatal
        if fatal is not None:
            # A call's KeyboardInterrupt, SystemExit... (the only thing a call raises
            # into the task group: its errors go to the callers) comes out as
            # itself, and first, as out of an errgroup Group.
            self._fatal = None
            raise_shared(fatal, fatal.__traceback__)
        if exc is not None and not isinstance(exc, get_cancelled_exc_class()):
            # The block's own exception propagates as itself, an exception group
            # included: ``async with singleflight.Group()`` is transparent to errors.
            return False
        if cancel_exc is not None:
            if cancel_exc is exc:
                return False
            raise_shared(cancel_exc, cancel_exc.__traceback__)
        # A cancellation of the block that was the core's own (it aborted): taken back.
        return exc is not None

    def _fail(self, exc: BaseException) -> None:
        """The core's report of what is not a cancellation: the block's exception, or a call's.

        A call raises nothing but a BaseException that is not an Exception (its
        errors go to its callers): it shuts the Group down, as the block's
        exception does (every call is cancelled). Called by the core.
        """
        body = exc is self._body_exc
        if not body and self._fatal is None:
            self._fatal = exc
        core = self._core
        if core is not None:
            core.abort()
        if not body and not self._trio and isinstance(exc, (KeyboardInterrupt, SystemExit)):
            # asyncio re-raises these out of the event loop when a task raises them
            # (docs/singleflight.md): the call's task still does. (Its exception is
            # retrieved, as anyio's task group did: no "never retrieved" at exit.)
            current_task().add_done_callback(_retrieve)
            raise exc

    def _release(self) -> None:
        """(The core's call when a task ends in a group with a limit: never here.)"""

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
            RuntimeError: ``fn`` calls ``do`` for its own key (it would wait
                for itself; in every caller of that call); the Group's ``async
                with`` block has ended, or it is closing and no call for *key*
                is in flight to join; the call
                was cancelled by the Group's shutdown (never entered: by its
                event loop's); *key*'s calls run on another event loop; or ``fn``
                raised a cancellation that no cancel scope of the call caused
                (e.g. it awaited a future cancelled elsewhere): chained from
                it, in every caller of that call.
            TypeError: ``fn`` is not an async function (e.g. ``g.do(key, f())``
                for ``g.do(key, f)``, at once; a sync function, in every caller).
        """
        if not callable(fn):
            raise not_a_function(fn, "singleflight: Group.do", _DO_ADVICE)
        if elsewhere(self._home):
            if self._core is None and not self._closed and not self._calls:
                self._home = None  # never entered and idle: it follows its caller's loop
            else:
                raise self._other_loop("do")
        if must_checkpoint(self):
            await checkpoint()
        core = self._core
        try:
            call = self._calls.get(key)
        except TypeError as exc:
            raise _unhashable("singleflight: Group.do(key)", key) from exc
        if core is None:
            if self._closed:
                raise self._refused()
            if self._home is None:  # never entered (Go's zero value): bind to this loop
                self._rt = runtime()
                self._home = runtime_or_none()
        elif self._closed and call is None:
            raise self._refused()
        rt = park_runtime(self)
        w = new_parker(rt)
        if call is None:
            call = _Call()
            call.waiters.append(w)  # before the task exists: an eager task may end at once
            call.waiting = 1
            try:
                self._start(call, key, fn, args, rt)
            except BaseException:
                abandon(w)
                raise
        else:
            task = call._task
            if task is not None and task is current_task():
                abandon(w)
                raise RuntimeError(
                    f"singleflight: fn calls do() for its own key {key!r}: the call would "
                    "wait for itself forever (Go: a deadlock)"
                )
            call.dups += 1
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
                    self._stop(call)
                    if call.detached:
                        # No task group waits for the call's task: its last caller
                        # does, as a task group's exit would (no task of ours is left).
                        await self._wait_end(call)
                raise
        finally:
            if tracer is not None:
                tracer.unparked(w)
        # Woken by _run: the call has ended.
        if call.aborted:
            await checkpoint()  # our own cancellation, if that is what ended it, goes first
            if call.detached:
                if call.exc is not None:  # KeyboardInterrupt, SystemExit...: in every caller
                    raise_shared(call.exc, call.tb)
                raise RuntimeError(
                    f"singleflight: the call for key {key!r} was cancelled from outside "
                    "(its event loop is shutting down)"
                )
            raise _aborted_error(call, key)
        if call.exc is not None:
            raise_shared(call.exc, call.tb)
        return call.value, call.dups > 0  # type: ignore[return-value]

    def do_chan(
        self, key: Hashable, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts
    ) -> RecvChan[Result[T]]:
        """`do` without waiting: a channel that delivers the call's `Result` once it ends.

        Joins the call in flight for *key*, or starts one, as `do` does, and returns
        at once (it never waits, and is not a cancel point). The channel has a buffer
        of one: it receives ``Result(value, err, shared)`` when the call ends, and is
        then closed. Select on it with a context or a timer, Go's reason for
        ``DoChan``: ``select(recv(ch), recv(ctx.done()))``. A ``do_chan`` caller never
        leaves: the call runs until it ends (or the Group's block cancels it), even
        if every `do` caller has gone. The Group must be entered (``async with``):
        nobody would own the call's task otherwise.
        Go: ``ch := g.DoChan(key, fn)``

        Raises:
            RuntimeError: The Group is not entered, or is closing and no call for
                *key* is in flight to join; or this is another event loop.
            TypeError: ``fn`` is not callable.

        Example:
            ```python
            async def load(key: str) -> str:
                await anyio.sleep(0.01)
                return key.upper()

            async with singleflight.Group() as sf:
                ch = sf.do_chan("a", load, "a")
                ch2 = sf.do_chan("a", load, "a")       # joins the same call
                ctx, cancel = with_timeout(background(), 5)
                r = await select(recv(ch), recv(ctx.done()))
                assert r.index == 0 and r.value == ("A", None, True)
                assert (await ch2.recv()).value == "A"
                cancel()
            ```
        """
        if not callable(fn):
            raise not_a_function(fn, "singleflight: Group.do_chan", _DO_ADVICE)
        core = self._core
        if core is None:
            if self._closed:
                raise self._refused()
            raise RuntimeError(
                "singleflight: Group.do_chan() on a Group that was not entered: its call "
                "runs on while nobody waits, so the Group's `async with` block must own "
                "it (`async with singleflight.Group() as g:`); or use do()"
            )
        if elsewhere(self._home):
            raise self._other_loop("do_chan")
        try:
            call = self._calls.get(key)
        except TypeError as exc:
            raise _unhashable("singleflight: Group.do_chan(key)", key) from exc
        if self._closed and call is None:
            raise self._refused()
        ch: Chan[Result[T]] = Chan(1)
        if call is None:
            call = _Call()
            call.waiters.append(_ChanWaiter(call, key, ch))  # (before an eager task ends)
            call.waiting = 1
            self._start(call, key, fn, args, self._rt)
        else:
            call.dups += 1
            call.waiters.append(_ChanWaiter(call, key, ch))
            call.waiting += 1
        return ch.recv_only()

    def _start(
        self,
        call: _Call,
        key: Hashable,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        rt: object,
    ) -> None:
        """Register *call* (its first caller in) for *key* and start its task.

        If the task cannot start, the key is forgotten again and this raises.
        """
        self._calls[key] = call
        core = self._core
        try:
            if core is not None:
                started = core.spawn(
                    call, _RUN_TRIO if self._trio else _RUN, (self, key, call, fn, args)
                )
            else:
                # Never entered: the call's task belongs to no task group; its
                # callers own it (the last to leave cancels it and waits for it).
                call.detached = True
                call._task = spawn_detached(
                    rt, _RUN_DETACHED, (self, key, call, fn, args), _DETACHED_NAME
                )
                started = True
        except BaseException:  # the event loop refused the task (a task factory raised)
            if self._calls.get(key) is call:
                del self._calls[key]
            raise
        if not started:  # (the core takes no more tasks: its block has ended)
            if self._calls.get(key) is call:
                del self._calls[key]
            raise self._refused()

    def _other_loop(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"singleflight: Group.{what}() from another event loop: {self!r} runs its "
            f"calls on {self._home!r}; use it from that loop, or give each loop a "
            "Group of its own"
        )

    def _refused(self) -> RuntimeError:
        """The error of a `do` that can neither join a call in flight nor start one."""
        if self._core is None:
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
        try:
            hash(key)  # (dict.pop on an empty dict would not)
        except TypeError as exc:
            raise _unhashable("singleflight: Group.forget(key)", key) from exc
        self._calls.pop(key, None)

    async def _run(
        self,
        key: Hashable,
        call: _Call,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
    ) -> None:
        """The call's task: ``fn(*args)``, its outcome kept for the callers, who are woken.

        Raises nothing but cancellation and a BaseException that is not an
        Exception (``fn``'s errors go to its callers). On asyncio the call has no
        cancel scope of its own (`_stop` cancels it otherwise); on trio it runs in
        one (`_run_trio`).
        """
        if call.waiting == 0:  # every caller left before the call could start
            call.done = True
            _wake(call)  # (a detached call's last caller waits for this)
            return
        call.running = True
        _inside.set(id(call))  # (this task's context, inherited by the tasks fn starts)
        try:
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
                if call.stopped:
                    raise  # every caller left: the call ends (trio: its scope takes it back)
                # The Group's scope or an enclosing one: raised here, for the
                # task group to take back.
                await checkpoint_if_cancelled()
                # No scope of the call caused it: fn awaited something cancelled
                # elsewhere (a future, another task). Raised into the task group,
                # it would be taken for the Group's own cancellation and end the
                # call's task silently; it is an error of this call, for its callers.
                call.exc = stray_cancellation(
                    f"singleflight: the call for key {key!r}",
                    exc,
                    "its callers get this error instead of being cancelled",
                )
        except BaseException as exc:
            # The Group's scope was cancelled, or fn raised KeyboardInterrupt,
            # SystemExit... (which then shuts the Group down); or every caller left
            # (no caller is left to tell).
            if not call.stopped:
                call.aborted = True
                if not isinstance(exc, get_cancelled_exc_class()):
                    # For the callers' RuntimeError to name it (detached: to raise it).
                    call.exc = exc
                    call.tb = exc.__traceback__
            raise
        finally:
            call.done = True
            call.scope = None
            if self._calls.get(key) is call:
                del self._calls[key]
            _wake(call)

    async def _run_trio(
        self,
        key: Hashable,
        call: _Call,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
    ) -> None:
        """`_run` in a cancel scope of the call's own (trio cancels a task only so)."""
        with _trio_cancel_scope() as scope:
            call.scope = scope
            call._task = current_task()  # (the core keeps no handle on trio: for `do`)
            try:
                await self._run(key, call, fn, args)
            finally:
                call._task = None

    async def _run_detached(
        self,
        key: Hashable,
        call: _Call,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
    ) -> None:
        """`_run` in a task of no task group (the Group was never entered), in a cancel
        scope of its own that `_stop` cancels.

        Ends by returning, or by a cancellation from outside (its event loop shutting
        down). A KeyboardInterrupt, SystemExit... of ``fn`` has no task group to shut
        down: every caller raises it (`do`), and the task ends quietly.
        """
        with CancelScope() as scope:
            call.scope = scope
            if call._task is None:  # (trio: spawn_detached returns no handle)
                call._task = current_task()
            try:
                await self._run(key, call, fn, args)
            except BaseException as exc:
                if isinstance(exc, get_cancelled_exc_class()):
                    raise
                del exc  # (its callers have it: call.exc)

    async def _wait_end(self, call: _Call) -> None:
        """Wait, shielded, until the detached *call* (cancelled: no caller is left) has ended.

        Not from the call's own task: a call that waited for itself (``fn`` calling
        ``do`` for its own key, a deadlock) was its own last caller. Nor from a task
        that ``fn`` started in a task group of its own, which the call waits for (the
        same deadlock through another task): waiting here, it would keep the call,
        and so the event loop's shutdown, from ever ending.
        """
        if call.done or call._task is current_task() or _started_inside(call):
            return
        w = new_parker(park_runtime(self))
        call.waiters.append(w)
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, self, "singleflight do (its cancelled call ending)")
        try:
            with CancelScope(shield=True):
                await w
        except BaseException:
            abandon(w)
            raise
        finally:
            if tracer is not None:
                tracer.unparked(w)

    def _stop(self, call: _Call) -> None:
        """Cancel *call*: every caller has left. A call not yet started never runs ``fn``."""
        call.stopped = True
        if not call.running:
            return  # (its task, once it starts, finds no caller waiting)
        scope = call.scope
        if scope is not None:  # trio
            scope.cancel()
            return
        task = call._task
        core = self._core
        if task is None or not isinstance(core, AsyncioCore):
            return  # (ended inside spawn, by an eager task factory; or the Group has ended)
        # asyncio: the core moves the task under a cancelled anyio scope of its own,
        # which delivers the cancellation (never into a shielded scope of fn's). So
        # the calls that are not cancelled -- nearly all -- need no cancel scope at all.
        core.cancel_task(task)


_RUN = Group._run  # one function object each: trio's task name is worked out once
_RUN_TRIO = Group._run_trio
_RUN_DETACHED = Group._run_detached
_DETACHED_NAME = "singleflight.Group.do"


# id() of the call whose task the current task runs in or was started from (a hint
# for `_started_inside`: an id, so that no task keeps a finished call alive).
_inside: ContextVar[int] = ContextVar("asyncgo.singleflight.inside", default=0)


def _started_inside(call: _Call) -> bool:
    """Whether the current task descends, through task groups, from *call*'s task.

    Such a task is one the call waits for. A task that ``fn`` started in a task
    group from outside is not: its parent is that group's task. (asyncio: known for
    tasks of anyio task groups; for others, no parent is known and this says no.)
    """
    target = call._task
    if target is None or _inside.get() != id(call):
        return False  # (not even started from inside it: the common case, at once)
    tasks = all_tasks()
    t = current_task()
    for _ in range(len(tasks)):
        t = task_parent(t, tasks)
        if t is None:
            return False
        if t is target:
            return True
    return False


def _aborted_error(call: _Call, key: Hashable) -> RuntimeError:
    """What the callers of *call*, ended by its entered Group's shutdown, get."""
    if call.exc is not None:  # fn raised a BaseException that is not an Exception
        err = RuntimeError(
            f"singleflight: the call for key {key!r} ended by "
            f"{type(call.exc).__name__} (a BaseException, not an Exception), "
            "which shuts its Group down"
        )
        err.__cause__ = call.exc
        return err
    return RuntimeError(
        f"singleflight: the call for key {key!r} was cancelled because its Group "
        "was shut down (or a cancel scope around the Group's block was cancelled)"
    )


def _wake(call: _Call) -> None:
    """Wake every caller parked on *call* (it has ended)."""
    for w in call.waiters:
        if not w.done():
            w.set_result(None)
    call.waiters.clear()


_trio_cancel_scope: Any = None  # trio.CancelScope, once a Group is entered under trio


def _retrieve(task: Any) -> None:
    """Mark the exception of an ended asyncio task as retrieved."""
    if not task.cancelled():
        task.exception()


def _call_name(f: FrameType) -> str:
    """A call's task name in a task dump (`_backend._tasks.TASK_NAMERS`), as trio shows it."""
    try:
        key = repr(f.f_locals.get("key"))
    except Exception:  # a key whose repr fails still names its task
        key = "..."
    return f"singleflight.Group.do({key})"


TASK_NAMERS[Group._run.__code__] = _call_name
TASK_NAMERS[Group._run_trio.__code__] = _call_name
TASK_NAMERS[Group._run_detached.__code__] = _call_name

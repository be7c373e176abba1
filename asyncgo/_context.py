"""Go's ``context``: cancellation, deadlines and values, mapped onto cancel scopes.

The tree. Every `Context` but `background()` has a parent (``_parent``, used to
look values up). The contexts that can be cancelled -- made by `with_cancel`,
`with_cancel_cause`, `with_timeout` and `with_deadline` -- are *nodes* and hold
the cancellation state; a `with_value` context shares its parent's node
(``_cn``), and `background()` / `without_cancel()` have none: they are never done.
A node holds its cancellable parent node strongly (``_up``) and its children
weakly (``_kids``, a set of weak references), so a context whose cancel function
was dropped uncalled is garbage as soon as nobody references it, instead of
living in its parent until the parent is cancelled (Go's leak).

Cancelling marks the whole subtree done in one iterative walk (no recursion, so
1000-deep chains are fine), then notifies each node's observers: its done
channel is closed, its `scope()` blocks are cancelled, its `after_func`
callbacks run. Everything that touches a node happens on the thread of the
event loop it belongs to; `cancel()` from another thread hands the work to that
loop (``run_on_loop``).

Deadlines are lazy: no timer and no task exists for a context until something
waits for it to end. `err()` compares the deadline with the loop's clock; a
timer (``loop.call_at``, or trio's shared heap in ``_backend/_timers.py``) is
armed only when a done channel is handed out or an `after_func` registered. It
holds the context weakly and is cancelled when the context ends or is
collected. A `scope()` gives the backend the deadline: with no timer armed the
backend alone ends the scope; with one, the backend's deadline moves
`SCOPE_MARGIN` later and the timer ends the scope, after closing the done
channels, so a task in the scope waiting on the ctx (a select on ``done()``,
``sleep(s, ctx)``) is woken with the ctx's end before the scope's cancellation
can reach it (`_push_back_scopes`).

A context collected before it was done may still owe something: a done channel
someone else still waits on, or an `after_func` whose stop function was dropped
too. Its finalizer hands these to its parent (an `_Orphan`), and to a timer at its
own deadline, so they fire when Go would have fired them.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, cast, final
from weakref import WeakKeyDictionary, ref

from ._backend import sleep as _sleep
from ._backend._timers import (
    Runtime,
    TimerHandle,
    TrioRuntime,
    asyncio_loop,
    call_at,
    cancel_timer,
    current_runtime,
    loop_key,
    new_cancel_scope,
    on_loop_thread,
    report_exception,
    run_is_over,
    run_on_loop,
    running_elsewhere,
    runtime_or_none,
)
from ._chan import Chan, RecvChan, chan_of
from ._exceptions import Canceled, DeadlineExceeded, is_async, to_seconds

if TYPE_CHECKING:
    from typing import TypeAlias

    from ._backend import CancelScope

__all__ = [
    "CancelCauseFunc",
    "CancelFunc",
    "Context",
    "after_func",
    "background",
    "current",
    "with_cancel",
    "with_cancel_cause",
    "with_deadline",
    "with_deadline_cause",
    "with_timeout",
    "with_timeout_cause",
    "with_value",
    "without_cancel",
]

#: Go's ``context.CancelFunc``: ``cancel()``.
CancelFunc: TypeAlias = Callable[[], None]


class CancelCauseFunc(Protocol):
    """Go's ``context.CancelCauseFunc``: ``cancel(cause)``, the cause optional."""

    def __call__(self, cause: BaseException | None = None, /) -> None: ...


class CancelScopeLike(Protocol):
    """What ``with ctx.scope() as scope`` binds: the face of the anyio cancel scope
    underneath (not an ``anyio.CancelScope`` itself): ``deadline`` reads the ctx's
    (or an earlier one set on the scope)."""

    deadline: float
    shield: bool

    def cancel(self) -> None: ...

    @property
    def cancel_called(self) -> bool: ...

    @property
    def cancelled_caught(self) -> bool: ...


class _NoKey:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no key>"


_NO_KEY = _NoKey()


def _past(rt: Runtime | None, when: float) -> bool:
    """Whether *rt*'s clock has reached *when* (False if it cannot be read)."""
    try:
        return rt is not None and rt.time() >= when
    except Exception:  # its loop is closed, its trio run over
        return False


_new = object.__new__

# after_func registration states
_PENDING, _RAN, _STOPPED = 0, 1, 2


@final
class Context:
    """A Go context: a cancellation signal, an optional deadline, and values.

    Contexts form a tree: derive one from a parent with `with_cancel`,
    `with_timeout`, `with_deadline`, `with_cancel_cause`, `with_value` or
    `without_cancel`, starting from `background()`. A context is *done* once it
    was cancelled, its deadline passed, or its parent became done; then `err()`
    says why, `done()` is closed, and every ``with ctx.scope():`` block is
    cancelled and raises `err()`.

    Contexts are immutable except for becoming done, which happens once. A
    context belongs to the event loop it was created on (its deadline is on that
    loop's clock); its cancel function may be called from any thread.
    Go: ``context.Context``.

    Example:
        ```python
        async def worker(ctx: Context, out: list[str]) -> None:
            while True:
                s = await select(recv(ctx.done()), default=True)
                if s.index == 0:             # Go: case <-ctx.Done(): return ctx.Err()
                    out.append(type(ctx.err()).__name__)
                    return
                await anyio.sleep(0.001)     # ... one unit of work

        out: list[str] = []
        c, cancel = with_timeout(background(), 0.01)
        async with Group() as g:
            g.go_nowait(worker, c, out)
        cancel()
        assert out == ["DeadlineExceeded"]
        ```
    """

    __slots__ = (
        "__weakref__",
        "_cause",  # node: the cause once done; before, the cause of its own deadline | None
        "_cbs",  # node: {key: callback} run when done (scope cancels, after_funcs) | None
        "_cn",  # the node holding this context's cancellation state (self for nodes) | None
        "_deadline",  # node: the effective deadline (never later than the parent's) | None
        "_done",  # node: the done channel's receive-only view, once asked for | None
        "_err",  # node: Canceled or DeadlineExceeded once done, else None
        "_key",  # with_value: the key (_NO_KEY on every other context)
        "_kids",  # node: weak references to the child nodes registered with it | None
        "_kind",  # the constructor's name, for repr()
        "_orphans",  # node: what collected descendants still owe (see _Orphan) | None
        "_owner",  # node: the node whose own deadline `_deadline` is | None
        "_parent",  # the context this one derives from | None (background)
        "_rt",  # node: the runtime (event loop) it belongs to | None
        "_timer",  # node: the armed deadline timer | None
        "_up",  # node: the parent node it is registered with, until done | None
        "_val",  # with_value: the value
        "_wr",  # node: a weak reference to itself (kids entry, timer target) | None
    )

    if TYPE_CHECKING:
        _cbs: dict[object, Callable[[], object]] | None
        _cause: BaseException | None
        _cn: Context | None
        _deadline: float | None
        _done: RecvChan[None] | None
        _err: Canceled | DeadlineExceeded | None
        _key: object
        _kids: set[ref[Context]] | None
        _kind: str
        _orphans: list[_Orphan] | None
        _owner: Context | None
        _parent: Context | None
        _rt: Runtime | None
        _timer: TimerHandle | None
        _up: Context | None
        _val: object
        _wr: ref[Context] | None

    def __new__(cls, *args: object, **kwargs: object) -> Context:
        raise TypeError(
            "Context cannot be built directly: start from background() and derive "
            "contexts with with_cancel(), with_timeout(), with_value(), ..."
        )

    # -- the Go API ------------------------------------------------------------------

    def done(self) -> RecvChan[None]:
        """A channel that is closed when this context is done: usable in `select`.

        The same channel is returned every time. A context that can never be
        done (`background()`, `without_cancel()`) returns a channel that is never
        closed, the same one for all of them on one event loop (Go returns a nil
        channel). Asking for it arms the deadline timer,
        if the context has a deadline. Go: ``ctx.Done()``
        """
        n = self._cn
        if n is None:
            return _never_done()
        view = n._done
        if view is None:
            n._bind()
            here = n._home("ctx.done()")
            ch: Chan[None] = Chan()  # (not Chan[None](): typing's alias call costs)
            if here is not None:
                # Only this loop closes it (cancel() from elsewhere hands over to it):
                # a wait from another loop raises instead of waiting forever.
                ch._bind_loop(loop_key(here))
            view = n._done = ch.recv_only()
            if n.err() is not None:
                if not ch.closed:
                    ch.close()
            else:
                n._arm()
        return view

    async def wait(self) -> None:
        """Wait until this context is done (forever for one that cannot be).

        A cancel point. Go: ``<-ctx.Done()``
        """
        await self.done().recv_ok()

    def err(self) -> Canceled | DeadlineExceeded | None:
        """None until done; then `Canceled` or `DeadlineExceeded` (a `TimeoutError`).

        The same exception object every time, shared with the descendants the
        cancellation reached. A passed deadline is noticed here even when no
        timer was armed. Go: ``ctx.Err()``
        """
        n = self._cn
        if n is None:
            return None
        e = n._err
        if e is None and n._deadline is not None:
            e = n._check_deadline()
        return e

    def cause(self) -> BaseException | None:
        """Why this context is done: the cause given to its cancel, else `err()`.

        None until done. A context cancelled through its parent has the parent's
        cause. Go: ``context.Cause(ctx)``
        """
        e = self.err()
        if e is None:
            return None
        n = self._cn
        if n._err is None:  # type: ignore[union-attr]
            # Its (owner's) deadline passed, read off the loop's thread before the
            # loop ended it (err() is lazy there): that deadline's cause, if any.
            n = n._owner  # type: ignore[union-attr]
        c = n._cause  # type: ignore[union-attr]
        return e if c is None else c

    def deadline(self) -> float | None:
        """When this context will be done by itself, on ``anyio.current_time()``'s clock.

        None if it has no deadline. Never later than its parent's.
        Go: ``ctx.Deadline()``
        """
        n = self._cn
        return None if n is None else n._deadline

    def value(self, key: object, default: object = None) -> object:
        """The value bound to *key* by the nearest `with_value` up the chain, else *default*.

        Keys match when they have the same type and compare equal (Go compares
        interface values: type and value). Go: ``ctx.Value(key)``
        """
        c: Context | None = self
        kt = type(key)
        while c is not None:
            k = c._key
            if k is key or (type(k) is kt and k == key):
                return c._val
            c = c._parent
        return default

    def scope(self) -> ContextScope:
        """A cancel scope bound to this context, for a ``with`` block.

        The body is cancelled when the context is done (at once, if it already
        is), and its deadline is the context's. Inside, waits that are given
        the context -- ``select`` on ``ctx.done()``, ``asyncgo.time.sleep(s,
        ctx)``, ``Semaphore.acquire(n, ctx)``, ``Limiter.wait(n, ctx)`` -- see its
        end first, as a result or as ``ctx.err()``, so the body can catch it and
        go on (its next await is cancelled); everything else is cancelled. When
        the body was cancelled because of the context, the block raises `err()`
        -- chained to `cause()` when that differs -- rather than ending
        silently. Cancellation from an enclosing scope passes through untouched.
        Inside the block, `current()` returns this context.

        Example:
            ```python
            with ctx.scope():
                await fetch(url)      # raises DeadlineExceeded if ctx times out
            ```
        """
        return ContextScope(self, True)

    def __repr__(self) -> str:
        parts = [self._kind]
        if self._key is not _NO_KEY:
            parts.append(f"key={self._key!r}")
        n = self._cn
        if n is not None:
            d = n._deadline
            if d is not None:
                parts.append(f"deadline={d:.6f}" if abs(d) < 1e15 else f"deadline={d:g}")
            e = n._err
            if e is not None:
                parts.append(f"done: {type(e).__name__}")
            elif d is not None and _past(n._rt, d):
                parts.append("deadline passed")  # (err() would end it now: repr does not)
            else:
                parts.append("active")
        return f"<Context {' '.join(parts)} at {id(self):#x}>"

    # -- node internals ------------------------------------------------------------

    def _cancel(self, cause: BaseException | None = None) -> None:
        """The cancel function handed out by the ``with_*`` constructors."""
        if cause is not None and not isinstance(cause, BaseException):
            raise TypeError(
                f"cancel(cause): the cause must be an exception instance or None, "
                f"not {type(cause).__name__}"
            )
        if self._err is not None:
            return
        rt = self._rt
        if rt is not None and not on_loop_thread(rt):
            # The loop ends it on its next turn; the first cancel() called wins (its
            # cause), even over a later one made on the loop's thread meanwhile.
            pending = (cause,)
            if _cancelling.setdefault(self, pending) is pending:
                run_on_loop(rt, self._cancel_here, cause)
        else:
            self._cancel_here(cause)

    def _cancel_here(self, cause: BaseException | None) -> None:
        if _cancelling_refs:  # (a WeakKeyDictionary's own len() is Python code)
            pending = _cancelling.pop(self, None)
            if pending is not None:  # a cancel() from another thread came first
                cause = pending[0]
        if self._err is not None:
            return
        d = self._deadline
        if d is not None and self._rt is not None and self._rt.time() >= d:
            # The deadline passed before anyone looked: Go's timer would have fired first.
            self._owner._expire()  # type: ignore[union-attr]
            return
        err = Canceled()
        self._finish(err, err if cause is None else cause)

    def _expire(self) -> None:
        if self._err is None:
            err = _expiring.pop(self, None) if _expiring else None
            if err is None:
                err = DeadlineExceeded()
            cause = self._cause  # (not done: its deadline's cause, if it was given one)
            self._finish(err, err if cause is None else cause)

    def _check_deadline(self) -> Canceled | DeadlineExceeded | None:
        """err() of a node with a deadline that is not done yet (lazy expiry)."""
        rt = self._rt
        if rt is None or rt.time() < self._deadline:  # type: ignore[operator]
            return None
        owner = self._owner
        assert owner is not None
        if on_loop_thread(rt):
            owner._expire()
            return self._err
        # Another thread: the loop ends the context (its walk and notifications are
        # the loop's), with the instance returned here, so err() stays one object.
        err = _expiring.setdefault(owner, DeadlineExceeded())
        run_on_loop(rt, owner._expire)
        e = self._err
        return err if e is None else e

    def _finish(self, err: Canceled | DeadlineExceeded, cause: BaseException) -> None:
        """Mark this node and every descendant done in one walk, then notify them."""
        up = self._up
        if up is not None and up._kids is not None:
            up._kids.discard(self._wr)
        if self._kids is None:  # a leaf: no walk (callers checked its own deadline)
            self._err = err
            self._cause = cause
            self._up = None
            self._close_done()
            exc = self._call_back()
            if exc is not None:
                raise exc
            return
        # A node bound to no loop (made before any ran) is cancelled on the caller's
        # thread: its descendants bound to a loop running elsewhere are handed to it.
        mixed = self._rt is None
        from_threads = bool(_cancelling_refs)  # cancel()s from other threads on their way
        now: float | None = None
        finished: list[Context] = []
        stack: list[tuple[Context, Canceled | DeadlineExceeded, BaseException]] = [
            (self, err, cause)
        ]
        while stack:
            n, e, c = stack.pop()
            if n._err is not None:
                continue
            if (
                n._owner is n
                and n is not self
                and (type(e) is Canceled or n._cause is not None)  # (an ancestor's deadline)
            ):
                # Its own deadline may have passed unnoticed (no timer armed): then
                # Go's timer would have made it DeadlineExceeded already -- with that
                # deadline's cause, when it was given one (not an ancestor's).
                if now is None:
                    now = n._rt.time() if n._rt is not None else -math.inf
                if now >= n._deadline:  # type: ignore[operator]
                    x = _expiring.pop(n, None) if _expiring else None
                    e = DeadlineExceeded() if x is None else x
                    c = e if n._cause is None else n._cause
            if from_threads and n is not self and type(e) is Canceled:
                # Its own cancel() from another thread came first (still on its way to
                # the loop): Go's would have ended it, and its subtree, then.
                e, c = _taken_cancel(n) or (e, c)
            n._err = e
            n._cause = c
            n._up = None
            kids = n._kids
            if kids is not None:
                n._kids = None
                for wr in kids:
                    k = wr()
                    if k is not None:
                        if mixed and k._rt is not None and not on_loop_thread(k._rt):
                            run_on_loop(k._rt, k._parent_done, e, c)
                        else:
                            stack.append((k, e, c))
            finished.append(n)
        # Every done channel first, then the callbacks (scope cancels, after_funcs): a
        # task waiting on a done channel anywhere in the subtree -- a select on
        # ctx.done(), a ctx-aware sleep or acquire -- is woken before any enclosing
        # ctx.scope() is cancelled, so it sees the ctx's end as a result rather than
        # as a cancellation (a woken task is not cancelled until it runs on).
        for n in finished:
            if n._done is not None or n._timer is not None or n._orphans is not None:
                n._close_done()
        first: BaseException | None = None
        for n in finished:
            if n._cbs is not None or n._orphans is not None:
                exc = n._call_back()
                if exc is not None and first is None:
                    first = exc
        if first is not None:
            raise first

    def _parent_done(self, err: Canceled | DeadlineExceeded, cause: BaseException) -> None:
        """The walk of an unbound ancestor, on another thread, reached this node: end it
        here, on its loop (`_finish`, ``mixed``)."""
        if self._err is not None:
            return
        if (
            self._owner is self
            and (type(err) is Canceled or self._cause is not None)
            and self._rt.time() >= self._deadline  # type: ignore[union-attr, operator]
        ):
            self._expire()  # (as the walk does: Go's timer would have fired first)
            return
        if _cancelling_refs and type(err) is Canceled:
            err, cause = _taken_cancel(self) or (err, cause)  # (as the walk does)
        self._finish(err, cause)

    def _close_done(self) -> None:
        t = self._timer
        if t is not None:
            self._timer = None
            t.cancel()
        view = self._done
        if view is not None:
            ch = chan_of(view)
            if not ch.closed:
                ch.close()
        for o in self._orphans or ():
            o.close_chans()  # (those of collected descendants, still waited on)

    def _call_back(self) -> BaseException | None:
        """Run the callbacks (scope cancels, after_funcs), every one of them: returns the
        first BaseException one raised (KeyboardInterrupt, ...) for the caller to raise
        once the walk is over."""
        first: BaseException | None = None
        cbs = self._cbs
        if cbs is not None:
            self._cbs = None
            for fn in cbs.values():
                try:
                    fn()
                except BaseException as exc:
                    if first is None:
                        first = exc
        orphans = self._orphans
        if orphans is not None:
            self._orphans = None
            for o in orphans:
                raised = o.run_funcs()
                if raised is not None and first is None:
                    first = raised
        return first

    def _home(self, what: str) -> Runtime | None:
        """This node's event loop, if the caller runs on it; None outside any loop.

        A node of a loop that is over (closed, or its trio run finished) is taken
        over by the caller's loop (`_rebind`), which is returned; one of a loop that
        is only paused is left to it (None).

        Raises:
            RuntimeError: The caller runs on another event loop while this node's
                loop still runs (in another thread).
        """
        rt = self._rt
        here: Runtime | None = asyncio_loop()  # (cheaply first: the common case)
        if here is not None and here is rt:
            return here
        here = runtime_or_none()
        if here is None or here is rt:
            return here
        if rt is not None and running_elsewhere(rt):
            raise RuntimeError(
                f"{what}: {self!r} belongs to the event loop it was made on "
                f"({rt!r}), which runs in another thread; it cannot be waited on or "
                f"observed from this one ({here!r}). Only cancel() may be called from any "
                "thread: make a context on this loop (with_cancel(...)) and cancel it "
                "from there"
            )
        if rt is None or not run_is_over(rt):
            # A loop that is only paused (an asyncio loop between run_until_complete
            # calls, a pytest-asyncio module loop between tests) keeps its contexts:
            # its timers fire when it runs again.
            return None
        self._rebind(rt, here)
        return here

    def _rebind(self, old: Runtime, here: Runtime) -> None:
        """Hand the live tree of *old*'s nodes around this one over to *here*'s loop.

        *old*'s loop is not running (a finished run) and *here*'s now observes the node,
        so it must be the one that cancels it, fires its deadline, wakes its waiters.
        The deadlines move onto the new clock: trio gives each run a clock of its own,
        with a random offset, so the same remaining time is kept (asyncio's and
        uvloop's loops share the monotonic clock: nothing moves). A timer armed in the
        old run never fires: dropped, to be armed again on the new loop when needed.
        """
        delta = 0.0
        if type(old) is TrioRuntime or type(here) is TrioRuntime:
            delta = here.time() - old.time()
        top = self
        up = top._up
        while up is not None and up._rt is old:
            top = up
            up = top._up
        stack = [top]
        while stack:
            n = stack.pop()
            n._rt = here
            t = n._timer
            if t is not None:
                n._timer = None
                try:
                    t.cancel()
                except Exception:  # pragma: no cover - a closed loop's handle
                    pass
            if delta and n._deadline is not None:
                n._deadline += delta
            for wr in n._kids or ():
                k = wr()
                if k is not None and k._rt is old:
                    stack.append(k)

    def _bind(self) -> None:
        """Bind a node made outside any event loop to the running one, when it gets observers."""
        if self._rt is None:
            self._rt = runtime_or_none()

    def _arm(self) -> None:
        """Make sure the deadline timer of the node that owns our deadline is armed."""
        o = self._owner
        if o is None or o._timer is not None or o._err is not None:
            return
        o._bind()
        rt = o._rt
        if rt is None:  # no event loop anywhere near: nothing can wait for it either
            return
        if run_is_over(rt):
            # The loop the context was made in is over and no loop took it over (a
            # done() asked outside any loop): its timer could never fire. A later loop
            # that observes the context takes it over (_home, _rebind) and arms it.
            return
        if on_loop_thread(rt):
            o._arm_here()
        else:
            run_on_loop(rt, o._arm_here)

    def _arm_here(self) -> None:
        if self._timer is None and self._err is None:
            wr = self._wr
            if wr is None:
                wr = self._wr = ref(self)
            self._timer = call_at(self._rt, self._deadline, _deadline_fired, wr)  # type: ignore[arg-type]
            if self._cbs or self._kids:
                self._push_back_scopes()

    def _push_back_scopes(self) -> None:
        """Our timer is armed now: move the backend's deadline of our scopes behind it.

        A `scope()` gives the backend our deadline, so that the scope ends there with
        no timer of ours. Once our timer is armed (something waits on a done
        channel), it must run first at the deadline -- it wakes the waits on the
        done channels, then cancels the scopes -- or the backend's cancellation
        could reach a waiting task before its wake-up. Equal times do not order
        them (asyncio's heap; uvloop's millisecond timers; trio reads its clock
        again between our timers and its deadlines), so the scopes' deadline goes
        `SCOPE_MARGIN` later: a safety net only. For every scope of our subtree
        with our deadline (not one of its own); scopes entered later get it so.
        """
        d = self._deadline
        late = d + SCOPE_MARGIN  # type: ignore[operator]
        stack: list[Context] = [self]
        while stack:
            n = stack.pop()
            cbs = n._cbs
            if cbs:
                for key in cbs:
                    if type(key) is ContextScope:
                        cs = key._cs
                        if cs is not None and cs.deadline == d:
                            cs.deadline = late
            kids = n._kids
            if kids:
                for wr in kids:
                    k = wr()
                    if k is not None and k._owner is self:
                        stack.append(k)

    def _adopt(self, orphan: _Orphan) -> None:
        lst = self._orphans
        if lst is None:
            self._orphans = [orphan]
            return
        lst.append(orphan)
        size = len(lst)
        if size >= 32 and size & (size - 1) == 0:  # at powers of two: amortised O(1)
            lst[:] = [o for o in lst if o.alive()]

    def __del__(self) -> None:
        # Garbage before it was done: its cancel function was dropped uncalled. Leave
        # nothing behind -- unregister from the parent, cancel the timer -- but hand on
        # what it still owes to observers that outlive it (see _Orphan).
        try:
            if self._cn is not self or self._err is not None:
                return
            # Collected: _bury passes on past this node what its children still owe
            # (the collector may finalize a parent before its child, or with it).
            self._cn = None
            up = self._up
            timer = self._timer
            orphan = None
            if up is not None or self._owner is not None:  # it could still become done
                orphan = _Orphan.of(self)
            if up is None and timer is None and orphan is None:
                return
            own = self._deadline if self._owner is self else None
            rt = self._rt
            if rt is None:
                _bury(None, up, self._wr, timer, orphan, own, self._deadline)
            else:
                run_on_loop(rt, _bury, rt, up, self._wr, timer, orphan, own, self._deadline)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# done() of every context that can never be done: one never-closed channel per event
# loop (a channel belongs to the loop it first waits on), like Go's nil channel, which
# is the same value every time. The loop is held weakly where it can be (asyncio's).
_never: tuple[object, RecvChan[None]] | None = None

# The DeadlineExceeded that err(), read off the loop's thread, returned for a context
# whose deadline passed unnoticed: the loop, which ends the context, uses it (_expire).
_expiring: WeakKeyDictionary[Context, DeadlineExceeded] = WeakKeyDictionary()

# The cause of a cancel() made off the loop's thread, until the loop ends the context
# (_cancel_here): the first cancel() called wins, whichever reaches the loop first.
_cancelling: WeakKeyDictionary[Context, tuple[BaseException | None]] = WeakKeyDictionary()
_cancelling_refs: dict[Any, Any] = _cancelling.data  # type: ignore[attr-defined]  # (its dict)


def _taken_cancel(n: Context) -> tuple[Canceled, BaseException] | None:
    """The err and cause of *n*'s own cancel() from another thread, still on its way to
    the loop (taken: its hand-over then changes nothing); None if there is none."""
    pending = _cancelling.pop(n, None)
    if pending is None:
        return None
    err = Canceled()
    return err, (err if pending[0] is None else pending[0])


def _never_done() -> RecvChan[None]:
    global _never
    rt = runtime_or_none()
    cached = _never
    if cached is not None and rt is not None:
        key, view = cached
        if key is rt or (type(key) is ref and key() is rt):
            return view
    view = Chan[None]().recv_only()
    if rt is not None:
        try:
            key = ref(rt)
        except TypeError:  # trio's runtime: one per trio.run(), small
            key = rt
        _never = (key, view)
    return view


def _deadline_fired(wr: ref[Context]) -> None:
    o = wr()
    if o is not None:
        o._timer = None
        if o._rt.time() < o._deadline:  # type: ignore[union-attr, operator]
            # Early: uvloop rounds timers to whole milliseconds. Never done before
            # the clock reaches the deadline (err() and the scopes agree).
            o._arm_here()
            return
        o._expire()


def _bury(
    rt: Runtime | None,
    up: Context | None,
    wr: ref[Context] | None,
    timer: TimerHandle | None,
    orphan: _Orphan | None,
    own_deadline: float | None,
    deadline: float | None = None,
) -> None:
    """The loop-thread half of ``Context.__del__``.

    *deadline* is the collected node's effective deadline, *own_deadline* the same
    when the node itself set it (else an ancestor's timer fires it).
    """
    if up is not None and up._kids is not None:
        up._kids.discard(wr)
    if timer is not None:
        timer.cancel()
    if orphan is None:
        return
    while up is not None and up._cn is None:
        # The parent was collected too, and finalized first: it will fire nothing.
        # Hand on to the nearest live ancestor, and keep the deadline the collected
        # one would have enforced.
        if rt is None:
            rt = up._rt
        own_deadline = deadline
        up = up._up
    if up is not None:
        if up._err is None:
            up._adopt(orphan)
        else:  # the parent finished while this one was being collected
            orphan.fire()
            return
    if own_deadline is not None and rt is not None and not run_is_over(rt):
        orphan.rt = rt
        orphan.timer = call_at(rt, own_deadline, orphan.fire)


@final
class _Orphan:
    """What a context collected before it was done still owes its observers.

    A done channel that someone else still holds (a task waiting on it) must be
    closed when the context would have been done; ``after_func`` callbacks whose
    stop function is gone too must run then. The dying context's finalizer gives
    these to its parent node (which fires them when it is done, or passes them on
    when it is collected in turn) and, if the context had its own deadline, to a
    timer at that deadline. Firing is idempotent. Channels are held weakly: once
    none is left and no callback is pending, the orphan is dead and its timer
    cancelled, so it keeps nothing scheduled.
    """

    __slots__ = ("__weakref__", "chans", "funcs", "rt", "timer")

    def __init__(self, chans: list[Chan[object]], funcs: list[_AfterFunc]) -> None:
        self.chans = [ref(ch, self._chan_gone) for ch in chans]
        self.funcs = funcs
        self.rt: Runtime | None = None
        self.timer: TimerHandle | None = None

    @classmethod
    def of(cls, n: Context) -> _Orphan | None:
        chans: list[Chan[object]] = []
        funcs: list[_AfterFunc] = []
        if n._done is not None:
            ch = chan_of(n._done)
            if not ch.closed:
                chans.append(ch)
        if n._cbs:
            funcs.extend(f for f in n._cbs.values() if type(f) is _AfterFunc and f.pending())
        for o in n._orphans or ():
            for r in o.chans:
                och = r()
                if och is not None and not och.closed:
                    chans.append(och)
            funcs.extend(f for f in o.funcs if f.pending())
        if not chans and not funcs:
            return None
        return cls(chans, funcs)

    def alive(self) -> bool:
        if any(f.pending() for f in self.funcs):
            return True
        for r in self.chans:
            ch = r()
            if ch is not None and not ch.closed:
                return True
        return False

    def fire(self) -> None:
        self.close_chans()
        exc = self.run_funcs()
        if exc is not None:
            raise exc

    def close_chans(self) -> None:
        """The first half of `fire`: the done channels (see `Context._finish`)."""
        t = self.timer
        if t is not None:
            self.timer = None
            t.cancel()
        chans, self.chans = self.chans, []
        for r in chans:
            ch = r()
            if ch is not None and not ch.closed:
                ch.close()

    def run_funcs(self) -> BaseException | None:
        """Run the pending after_funcs; the first BaseException one raised is returned."""
        funcs, self.funcs = self.funcs, []
        first: BaseException | None = None
        for f in funcs:
            try:
                f()
            except BaseException as exc:
                if first is None:
                    first = exc
        return first

    def _chan_gone(self, _: object) -> None:
        t = self.timer
        if t is not None and not self.alive():
            self.timer = None
            cancel_timer(self.rt, t)  # type: ignore[arg-type]


@final
class _AfterFunc:
    """One `after_func` registration; ``stop`` is what the caller gets back."""

    __slots__ = ("fn", "node", "rt", "state")

    def __init__(self, fn: Callable[[], object], node: Context | None) -> None:
        self.fn: Callable[[], object] | None = fn
        self.node = node
        self.state = _PENDING
        # The loop it was registered on, when its node is bound to none: fn runs there.
        self.rt: Runtime | None = None

    def pending(self) -> bool:
        return self.state == _PENDING

    def __call__(self) -> None:
        if self.state != _PENDING:
            return
        rt = self.rt
        if rt is not None:
            self.rt = None
            if not on_loop_thread(rt):
                run_on_loop(rt, self)  # (here, when that loop is over)
                return
        self.state = _RAN
        fn = self.fn
        self.fn = self.node = None
        assert fn is not None
        run_callback(fn, "after_func")

    def stop(self) -> bool:
        """Stop *fn* from being run; False if it ran, was stopped, or the context is done.

        Once the context is done *fn* counts as started, as in Go, even if its turn
        among the callbacks has not come yet.

        Go: the ``stop`` function returned by ``context.AfterFunc``.
        """
        if self.state != _PENDING:
            return False
        n = self.node
        if n is not None and n._err is not None:
            # Done, and fn's turn has not come yet (another callback of this
            # cancellation is calling stop()): Go has started every fn by then.
            return False
        self.state = _STOPPED
        self.fn = self.node = None
        if n is not None and n._cbs is not None:
            n._cbs.pop(self, None)
        return True


def check_callback(fn: object, what: str) -> None:
    """Reject what cannot be an `after_func` callback: a non-callable, an async function."""
    if not callable(fn):
        raise TypeError(f"{what}: fn must be callable, not {type(fn).__name__}")
    if is_async(fn):
        raise TypeError(
            f"{what}: fn must be a plain (sync) function, not an async one: nothing "
            "would await it. To run async code when a context ends, start a task in a "
            "task group that waits on ctx.done()"
        )


def run_callback(fn: Callable[[], object], what: str) -> None:
    """Run a user callback that has no caller to raise to: report its exception instead."""
    try:
        r = fn()
    except Exception as exc:
        report_exception(exc, fn, f"Exception in asyncgo {what} callback")
        return
    if inspect.iscoroutine(r):
        # ``lambda: fetch()``: a coroutine that nothing will ever run. Any other
        # awaitable -- a task, a future, anyio's TaskHandle from ``tg.start_soon`` --
        # is work already scheduled, the documented way to do async work here.
        r.close()
        report_exception(
            TypeError(f"{what}: fn returned a coroutine, which nothing will await"),
            fn,
            f"Exception in asyncgo {what} callback",
        )


def ended(ctx: Context) -> Exception | None:
    """``ctx.err()`` ready to be raised (again), or None while *ctx* is live.

    Every ``ctx.err()`` is one shared object: raised as it is, it would pile up
    the traceback of every raise; this clears it and chains the cause given to
    ``cancel`` (``raise err from cause``), as the context's own waits do.
    """
    err = ctx.err()
    if err is not None:
        cause = ctx.cause()
        err.__traceback__ = None
        err.__cause__ = None if cause is err else cause
        err.__context__ = None  # (one raise's, in another task: its frames kept alive)
        err.__suppress_context__ = True
    return err


async def sleep_or_done(seconds: float, ctx: Context) -> None:
    """``asyncgo.time.sleep(seconds, ctx)``: *seconds* >= 0, or until *ctx* is done.

    A wait on the ctx's done channel, not a cancel scope bound to the ctx: inside a
    ``ctx.scope()`` of the same (or a parent) context, the ctx's end wakes this wait
    before the scope is cancelled (`Context._finish`), so it raises ``ctx.err()``
    for the caller to catch, instead of the backend's cancellation (anyio lets an
    inner scope catch a cancellation only while no enclosing scope is cancelled).
    """
    err = ctx.err()
    if err is None:
        n = ctx._cn
        if n is None:  # background(), without_cancel(): never done
            await _sleep(seconds)
            return
        if seconds <= 0:
            await _sleep(0)
        else:
            done = chan_of(ctx.done())
            # (the caller's loop, not n._rt: a ctx kept from an earlier trio run is on
            # that run's clock until a loop takes it over)
            rt = asyncio_loop() or current_runtime()
            if type(rt) is TrioRuntime and not done.closed:
                await done._recv_until(rt, seconds)
            else:
                with new_cancel_scope(rt, rt.time() + seconds):
                    await done.recv_ok()
        err = ctx.err()
        if err is None:
            return
    cause = ctx.cause()
    raise err.with_traceback(None) from (None if cause is err else cause)


# -- scope() and current() ---------------------------------------------------------------

#: How much later than its context's deadline a `scope()`'s backend deadline is, once
#: the context's own timer is armed (`Context._push_back_scopes`): the timer, not the
#: backend, ends the scope then; the backend's deadline is a safety net, far enough
#: behind that a loop stalled at the deadline still runs the timer first (uvloop's
#: millisecond timers were seen 5 ms late under load). Seconds.
SCOPE_MARGIN = 0.05


_current: ContextVar[Context | None] = ContextVar("asyncgo_current_context", default=None)


@final
class ContextScope:
    """The context manager returned by `Context.scope`."""

    __slots__ = ("_bind", "_cs", "_ctx", "_token")

    def __init__(self, ctx: Context, bind: bool) -> None:
        self._ctx = ctx
        self._bind = bind
        self._cs: CancelScope | None = None

    # What ``with ctx.scope() as scope`` binds: the cancel scope's face, with the
    # ctx's deadline (the backend's may be SCOPE_MARGIN later: _push_back_scopes).

    @property
    def deadline(self) -> float:
        """The earlier of the ctx's deadline and one set on this scope (`math.inf`: none)."""
        d = self._ctx.deadline()
        own = math.inf if self._cs is None else self._cs.deadline
        return own if d is None else min(d, own)

    @deadline.setter
    def deadline(self, value: float) -> None:
        cs = self._entered()
        n = self._ctx._cn
        d = None if n is None else n._deadline
        if d is not None and value >= d:
            # Not later than the ctx's: as on entering (with its margin, if armed).
            value = d + SCOPE_MARGIN if n._owner._timer is not None else d  # type: ignore[union-attr]
        cs.deadline = value

    @property
    def shield(self) -> bool:
        return self._entered().shield

    @shield.setter
    def shield(self, value: bool) -> None:
        self._entered().shield = value

    def cancel(self, reason: str | None = None) -> None:
        cs = self._entered()
        if reason is None:
            cs.cancel()
        else:
            cs.cancel(reason)  # (an anyio that takes a reason)

    @property
    def cancel_called(self) -> bool:
        return self._entered().cancel_called

    @property
    def cancelled_caught(self) -> bool:
        return self._entered().cancelled_caught

    def _entered(self) -> CancelScope:
        cs = self._cs
        if cs is None:
            raise RuntimeError("a ctx.scope() is used as a cancel scope once entered (with ...)")
        return cs

    def __enter__(self) -> CancelScopeLike:
        if self._cs is not None:
            raise RuntimeError("a ctx.scope() is entered once: call ctx.scope() for each block")
        n = self._ctx._cn
        if n is None:
            cs = self._cs = new_cancel_scope(runtime_or_none(), math.inf)
            cs.__enter__()
            self._token = _current.set(self._ctx) if self._bind else None
            return self
        if n._rt is None:
            n._rt = runtime_or_none()
        n._home("ctx.scope()")
        # The backend enforces the deadline (no timer of ours needed; one already
        # passed cancels the scope at once, and __exit__ notices it). When the ctx's
        # own timer is armed too (something waits on done()), that one fires first,
        # wakes those waits, then cancels the scope, so that waits given the ctx see
        # its end as a result, not as a cancellation (`Context._arm_here`,
        # `Context._push_back_scopes`).
        d = n._deadline
        if d is None:
            d = math.inf
        elif n._err is None and n._rt.time() >= d:  # type: ignore[union-attr]
            self._ctx.err()  # passed unnoticed: the ctx ends now, the scope at once
        elif n._owner._timer is not None:  # type: ignore[union-attr]
            d += SCOPE_MARGIN  # (see _push_back_scopes)
        cs = self._cs = new_cancel_scope(n._rt, d)
        cs.__enter__()
        if n._err is None:
            cbs = n._cbs
            if cbs is None:
                cbs = n._cbs = {}
            cbs[self] = cs.cancel
        else:
            cs.cancel()
        self._token = _current.set(self._ctx) if self._bind else None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        n = self._ctx._cn
        cs = self._cs
        assert cs is not None, "ctx.scope() exited without being entered"
        if n is not None and n._cbs is not None:
            n._cbs.pop(self, None)
        try:
            swallowed = cs.__exit__(exc_type, exc, tb)
        finally:
            if self._token is not None:
                _current.reset(self._token)
        if not (swallowed and cs.cancelled_caught) or n is None:
            return swallowed
        err = n._err
        if err is None:
            # Cancelled by its deadline, which the backend enforced before any timer
            # of ours looked -- or by a user who called cancel() on the scope itself.
            err = None if n._deadline is None else n._check_deadline()
            if err is None:
                return True
        cause = n._cause
        raise err.with_traceback(None) from (None if cause is err else cause)


def current() -> Context:
    """The context bound by the innermost enclosing ``with ctx.scope():``, else `background()`.

    Tasks started inside such a block inherit it (it is a context variable).

    Example:
        ```python
        assert current() is background()
        c, cancel = with_cancel(background())
        with c.scope():                      # binds c for this block and its tasks
            assert current() is c
        cancel()
        ```
    """
    c = _current.get()
    return _BACKGROUND if c is None else c


# -- constructors --------------------------------------------------------------------------


def _leaf(parent: Context, kind: str, cn: Context | None, key: object, val: object) -> Context:
    c: Context = _new(Context)
    c._cn = cn
    c._parent = parent
    c._kind = kind
    c._key = key
    c._val = val
    return c


_BACKGROUND = _leaf(None, "background", None, _NO_KEY, None)  # type: ignore[arg-type]


def check_ctx(ctx: object, what: str) -> None:
    """Raise `TypeError` unless *ctx* is a `Context` or None (an optional ``ctx`` argument)."""
    if ctx is not None and type(ctx) is not Context:
        raise TypeError(
            f"{what}: ctx must be an asyncgo Context or None (asyncgo.background(), "
            f"with_timeout(...), ...), not {type(ctx).__name__}"
        )


def _check_parent(parent: object, what: str) -> Context:
    if type(parent) is not Context:
        raise TypeError(
            f"{what}: parent must be a Context (start from asyncgo.background()), "
            f"not {type(parent).__name__}"
        )
    return parent


def _node(parent: Context, kind: str, rt: Runtime | None) -> Context:
    c: Context = _new(Context)
    c._cn = c
    c._parent = parent
    c._kind = kind
    c._key = _NO_KEY
    c._val = None
    c._kids = None
    c._done = None
    c._cbs = None
    c._orphans = None
    c._timer = None
    p = parent._cn
    if p is None:
        c._up = None
        c._wr = None
        c._err = None
        c._cause = None
        c._deadline = None
        c._owner = None
        c._rt = rt if rt is not None else runtime_or_none()
        return c
    c._deadline = p._deadline
    c._owner = p._owner
    c._rt = p._rt or rt or runtime_or_none()
    if p._err is None:
        c._up = p
        c._err = None
        c._cause = None
        wr = c._wr = ref(c)
        kids = p._kids
        if kids is None:
            p._kids = {wr}
        else:
            kids.add(wr)
    else:  # Go: a child of a done parent is done at once, with the parent's err and cause
        c._up = None
        c._wr = None
        c._err = p._err
        c._cause = p._cause
    return c


class _CancelPair(tuple[Context, CancelFunc]):
    """``(ctx, cancel)``, which is also a context manager: ``with with_cancel(p) as ctx:``.

    Leaving the block calls ``cancel()``. It does not cancel the block's body:
    for that, enter ``ctx.scope()``.
    """

    __slots__ = ()

    def __enter__(self) -> Context:
        return self[0]

    def __exit__(self, *exc_info: object) -> None:
        self[1]()


class _CauseCancelPair(tuple[Context, CancelCauseFunc]):
    """``(ctx, cancel)`` of `with_cancel_cause`; a context manager like `_CancelPair`."""

    __slots__ = ()

    def __enter__(self) -> Context:
        return self[0]

    def __exit__(self, *exc_info: object) -> None:
        self[1]()


_tuple_new = tuple.__new__


def background() -> Context:
    """The root context: never cancelled, no deadline, no values. Go: ``context.Background()``

    Example:
        ```python
        root = background()
        assert root.err() is None and root.deadline() is None
        c, cancel = with_cancel(root)        # every context tree starts here
        cancel()
        ```
    """
    return _BACKGROUND


def with_cancel(parent: Context) -> _CancelPair:
    """A child of *parent* with a cancel function: ``ctx, cancel = with_cancel(parent)``.

    The child is done when ``cancel()`` is called or *parent* is done, whichever
    comes first; ``cancel()`` is idempotent and safe from any thread. The pair is
    also a context manager that cancels on exit. Go: ``context.WithCancel``

    Example:
        ```python
        parent, cancel_parent = with_cancel(background())
        child, cancel_child = with_cancel(parent)
        cancel_parent()                      # cancelling a parent cancels its subtree
        assert isinstance(child.err(), Canceled)
        cancel_child()                       # idempotent; Go: defer cancel()

        with with_cancel(background()) as c: # or: cancel on leaving the block
            assert c.err() is None
        assert c.err() is not None
        ```
    """
    c = _node(_check_parent(parent, "with_cancel"), "with_cancel", None)
    return _tuple_new(_CancelPair, (c, c._cancel))


def with_cancel_cause(parent: Context) -> _CauseCancelPair:
    """Like `with_cancel`, but ``cancel(cause)`` records why: see `Context.cause`.

    ``err()`` is still `Canceled`; ``cancel()`` or ``cancel(None)`` makes the
    cause `Canceled` too. Go: ``context.WithCancelCause``

    Raises:
        TypeError: (from ``cancel``) the cause is not an exception instance.

    Example:
        ```python
        c, cancel = with_cancel_cause(background())
        cancel(ConnectionResetError("upstream hung up"))
        assert isinstance(c.err(), Canceled)               # err() stays Canceled
        assert isinstance(c.cause(), ConnectionResetError) # cause() says why
        ```
    """
    c = _node(_check_parent(parent, "with_cancel_cause"), "with_cancel_cause", None)
    return _tuple_new(_CauseCancelPair, (c, c._cancel))


def _check_number(x: object, what: str) -> float:
    if type(x) is not float:
        if type(x) is not int and (type(x) is bool or not isinstance(x, numbers.Real)):
            raise TypeError(f"{what} must be a number of seconds, not {type(x).__name__}")
        x = to_seconds(cast("float", x))  # (a Fraction too, as in asyncgo.time)
    if math.isnan(x):
        raise ValueError(f"{what} must not be NaN")
    return x


def _with_deadline(
    parent: Context,
    when: float,
    kind: str,
    rt: Runtime | None,
    cause: BaseException | None = None,
) -> _CancelPair:
    c = _node(parent, kind, rt)
    if when != math.inf and (c._deadline is None or when < c._deadline):
        c._deadline = when
        c._owner = c
        if cause is not None and c._err is None:
            c._cause = cause  # (until it is done: then the cause of whatever ended it)
    return _tuple_new(_CancelPair, (c, c._cancel))


def _check_cause(cause: object, where: str) -> BaseException | None:
    if cause is None or isinstance(cause, BaseException):
        return cause
    raise TypeError(
        f"{where}: the cause must be an exception instance or None, not {type(cause).__name__}"
    )


def with_deadline(parent: Context, when: float) -> _CancelPair:
    """A child of *parent* that is done at *when* (``anyio.current_time()``'s clock).

    Its deadline is the earlier of *when* and the parent's. A deadline already
    passed makes a context that is done (`DeadlineExceeded`) at once.
    ``math.inf`` means no deadline. Go: ``context.WithDeadline``

    Raises:
        TypeError: *when* is not a number.
        ValueError: *when* is NaN.

    Example:
        ```python
        when = anyio.current_time() + 5.0
        c, cancel = with_deadline(background(), when)
        assert c.deadline() == when
        late, cancel_late = with_deadline(c, when + 60)  # never later than the parent's
        assert late.deadline() == when
        cancel_late()
        cancel()
        ```
    """
    parent = _check_parent(parent, "with_deadline")
    return _with_deadline(parent, _check_number(when, "with_deadline: when"), "with_deadline", None)


def with_timeout(parent: Context, seconds: float) -> _CancelPair:
    """A child of *parent* that is done *seconds* from now (or with its parent, if earlier).

    ``with_deadline(parent, anyio.current_time() + seconds)``: zero or a
    negative timeout (a remaining time computed as already spent, say) makes a
    context that is done (`DeadlineExceeded`) at once, as in Go and
    ``asyncio.timeout``; ``math.inf`` means no deadline. Go: ``context.WithTimeout``

    Raises:
        TypeError: *seconds* is not a number.
        ValueError: *seconds* is NaN.
        RuntimeError: No event loop is running (the deadline is on its clock).

    Example:
        ```python
        c, cancel = with_timeout(background(), 0.01)
        try:
            await gotime.sleep(10, ctx=c)    # gives up when the context is done
        except DeadlineExceeded:
            pass
        finally:
            cancel()                         # Go: defer cancel()
        assert isinstance(c.err(), DeadlineExceeded)
        ```
    """
    parent = _check_parent(parent, "with_timeout")
    seconds = _check_number(seconds, "with_timeout: seconds")
    p = parent._cn
    rt = p._rt if p is not None and p._rt is not None else current_runtime()
    return _with_deadline(parent, rt.time() + seconds, "with_timeout", rt)


def with_deadline_cause(parent: Context, when: float, cause: BaseException | None) -> _CancelPair:
    """`with_deadline`, and *cause* is ``cause()`` when the deadline passes.

    ``err()`` is still `DeadlineExceeded` then. A ``cancel()`` first gives
    `Canceled` as its cause, and an end through the parent the parent's cause.
    If the parent's deadline comes first, *cause* is never used (Go drops it
    too); an equal deadline counts as the parent's (in Go, which of the two
    timers fires first is a race). None: the same as `with_deadline`.
    Go: ``context.WithDeadlineCause``

    Raises:
        TypeError: *when* is not a number, or *cause* not an exception or None.
        ValueError: *when* is NaN.

    Example:
        ```python
        class TooSlow(Exception):
            pass

        c, cancel = with_deadline_cause(background(), anyio.current_time(), TooSlow())
        assert isinstance(c.err(), DeadlineExceeded)  # already passed
        assert isinstance(c.cause(), TooSlow)
        cancel()
        ```
    """
    parent = _check_parent(parent, "with_deadline_cause")
    when = _check_number(when, "with_deadline_cause: when")
    cause = _check_cause(cause, "with_deadline_cause")
    return _with_deadline(parent, when, "with_deadline_cause", None, cause)


def with_timeout_cause(parent: Context, seconds: float, cause: BaseException | None) -> _CancelPair:
    """`with_timeout`, and *cause* is ``cause()`` when the timeout passes.

    ``err()`` is still `DeadlineExceeded` then; see `with_deadline_cause`.
    Go: ``context.WithTimeoutCause``

    Raises:
        TypeError: *seconds* is not a number, or *cause* not an exception or None.
        ValueError: *seconds* is NaN.
        RuntimeError: No event loop is running (the deadline is on its clock).

    Example:
        ```python
        class TooSlow(Exception):
            pass

        with with_timeout_cause(background(), 0.01, TooSlow("backend too slow")) as c:
            try:
                await gotime.sleep(10, ctx=c)
            except DeadlineExceeded:
                pass
            assert str(c.cause()) == "backend too slow"
        ```
    """
    parent = _check_parent(parent, "with_timeout_cause")
    seconds = _check_number(seconds, "with_timeout_cause: seconds")
    cause = _check_cause(cause, "with_timeout_cause")
    p = parent._cn
    rt = p._rt if p is not None and p._rt is not None else current_runtime()
    return _with_deadline(parent, rt.time() + seconds, "with_timeout_cause", rt, cause)


def with_value(parent: Context, key: Hashable, value: object) -> Context:
    """A child of *parent* that carries *value* under *key*; everything else is the parent's.

    Use a key of your own type (a module-level ``object()`` or a small class) so
    packages cannot collide. Go: ``context.WithValue``

    Raises:
        TypeError: *key* is None or not hashable (Go: "nil key", "key is not comparable").

    Example:
        ```python
        REQUEST_ID = object()                # a key nobody else can collide with
        c = with_value(background(), REQUEST_ID, "req-42")
        child, cancel = with_cancel(c)
        assert child.value(REQUEST_ID) == "req-42"     # values are inherited
        assert child.value("missing", "n/a") == "n/a"
        cancel()
        ```
    """
    parent = _check_parent(parent, "with_value")
    if key is None:
        raise TypeError("with_value: nil key (the key must not be None)")
    try:
        hash(key)
    except TypeError:
        raise TypeError(
            f"with_value: key is not comparable: {type(key).__name__} is not hashable"
        ) from None
    return _leaf(parent, "with_value", parent._cn, key, value)


def without_cancel(parent: Context) -> Context:
    """A child of *parent* that keeps its values but is never cancelled and has no deadline.

    Go: ``context.WithoutCancel``

    Example:
        ```python
        KEY = object()
        req, cancel = with_cancel(with_value(background(), KEY, "trace-7"))
        audit = without_cancel(req)          # e.g. for work that must outlive the request
        cancel()
        assert req.err() is not None and audit.err() is None
        assert audit.value(KEY) == "trace-7"
        ```
    """
    parent = _check_parent(parent, "without_cancel")
    return _leaf(parent, "without_cancel", None, _NO_KEY, None)


def after_func(ctx: Context, fn: Callable[[], object]) -> Callable[[], bool]:
    """Call ``fn()`` once *ctx* is done; returns ``stop``.

    *fn* is a plain function run on the event loop's thread right after the
    context (and its whole subtree) is marked done -- at once if it already
    is. It should be quick; an exception it raises is reported through
    ``sys.unraisablehook`` (it has no caller to go to) and does not stop the
    cancellation. ``stop()`` unregisters *fn* and returns True if that stopped it
    from running, False if it already ran, was stopped before, or the context is
    done (then *fn* counts as started, as in Go).
    Go: ``context.AfterFunc`` (which runs ``f`` in a goroutine of its own).

    Raises:
        TypeError: *fn* is not callable, or is an async function.
        RuntimeError: *ctx* belongs to an event loop running in another thread
            (fn would run there, and the registration would race with it).

    Example:
        ```python
        calls: list[str] = []
        c, cancel = with_cancel(background())
        stop = after_func(c, lambda: calls.append("cleanup"))
        cancel()
        assert calls == ["cleanup"]
        assert stop() is False               # it already ran
        ```
    """
    ctx = _check_parent(ctx, "after_func")
    check_callback(fn, "after_func")
    return register_after(ctx, fn)


def register_after(ctx: Context, fn: Callable[[], object]) -> Callable[[], bool]:
    """`after_func` without checking its arguments (asyncgo's own callbacks)."""
    n = ctx._cn
    reg = _AfterFunc(fn, n)
    if n is None:  # never done: fn never runs
        return reg.stop
    if n._rt is None:
        # Made before any loop ran; cancel() may come from any thread: fn must still
        # run on this loop's thread (the node stays unbound: its children made on
        # later loops belong to those).
        reg.rt = runtime_or_none()
    else:
        n._home("after_func()")
    if n.err() is not None:
        reg()
        return reg.stop
    cbs = n._cbs
    if cbs is None:
        cbs = n._cbs = {}
    cbs[reg] = reg
    n._arm()
    return reg.stop

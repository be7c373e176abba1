"""`select` over channel operations, exactly once and cancellation-safe.

A select first polls every case; if some are ready it commits one of them,
chosen uniformly at random (Go's fairness), without waiting. Otherwise it
parks *one* waiter with an entry on every channel's queue. The first party to
complete one of those entries claims the waiter -- which can happen once -- and
the other entries become dead. A select cancelled while parked was claimed by
no one, so no case committed.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Sequence
from itertools import permutations
from random import random
from typing import Any, Generic, NamedTuple, Never, TypeVar, overload

from ._backend import (
    FAST,
    NOT_CLAIMED,
    TASK_STATES,
    TRIO,
    _diag,
    abandon,
    cancel_pending,
    check_slow,
    checkpoint,
    current_tasks_get,
    must_checkpoint,
    new_parker,
    park_runtime,
    rescue,
    task_cancelled,
)
from ._chan import CLOSED, Chan, Entry, RecvChan, SendChan, chan_of
from ._exceptions import ChanClosed

__all__ = ["Case", "Selected", "recv", "select", "send"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")


class Case(NamedTuple, Generic[T_co]):
    """One operation of a `select`: made by `recv` or `send`, never directly.

    A tuple, so that building one costs one allocation (selects in loops build
    their cases every time round).

    Example:
        ```python
        ch = Chan[int](1)
        case = recv(ch)                      # a Case; select() commits one of them
        assert isinstance(case, Case) and case.chan is ch and not case.is_send
        assert send(ch, 5).value == 5
        ```
    """

    chan: Chan[Any] | None
    is_send: bool
    value: object

    def __repr__(self) -> str:
        if self.is_send:
            return f"send({self.chan!r}, {self.value!r})"
        return f"recv({self.chan!r})"


_new_case = tuple.__new__
_NIL_RECV: Case[Any] = _new_case(Case, (None, False, None))


@overload
def recv(ch: None) -> Case[Never]: ...
@overload
def recv(ch: RecvChan[T] | None) -> Case[T]: ...
def recv(ch: RecvChan[T] | None) -> Case[T]:
    """A receive case for `select`. ``None`` is Go's nil channel: never ready.

    Go: ``case v, ok := <-ch:``

    Example:
        ```python
        a, b = Chan[str](1), Chan[str](1)
        await b.send("from b")
        s = await select(recv(a), recv(b), recv(None))  # None: never ready
        assert (s.index, s.value, s.ok) == (1, "from b", True)
        b.close()
        assert await select(recv(a), recv(b)) == Selected(1, None, False)  # closed, drained
        ```
    """
    if ch is None:
        return _NIL_RECV
    try:  # a Chan or a receive view: made once per channel or view, then reused
        c = ch._rcase  # type: ignore[attr-defined]
    except AttributeError:  # anything else: a clear TypeError (a send-only view...)
        return _new_case(Case, (chan_of(ch, "recv"), False, None))
    if c is None:
        c = ch._rcase = _new_case(Case, (ch if type(ch) is Chan else ch._ch, False, None))  # type: ignore[attr-defined]
    return c  # type: ignore[no-any-return]


def send(ch: SendChan[T] | None, value: T) -> Case[None]:
    """A send case for `select`. ``None`` is Go's nil channel: never ready.

    Go: ``case ch <- v:``

    Example:
        ```python
        out = Chan[int](1)
        s = await select(send(out, 1), default=True)
        assert s.index == 0 and out.recv_nowait() == 1
        await out.send(2)                    # now full: the send case is not ready
        assert (await select(send(out, 3), default=True)).index == -1
        ```
    """
    c = ch if type(ch) is Chan or ch is None else chan_of(ch, "send")
    return _new_case(Case, (c, True, value))


class Selected(NamedTuple, Generic[T_co]):
    """The case a `select` committed.

    Attributes:
        index: The position of the case among the arguments; -1 when
            ``default=True`` and no case was ready.
        value: The value received (None for a send case, a closed channel, or
            the default).
        ok: True when a value was received or sent; False when a recv case fired
            because its channel is closed and drained, or for the default.

    Example:
        ```python
        ch = Chan[int](1)
        await ch.send(7)
        match await select(recv(ch), default=True):
            case Selected(0, v, True):       # a NamedTuple: match it, or use .index/.value/.ok
                assert v == 7
            case _:
                raise AssertionError("ch had a value")
        ```
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index, as the contract names it
    value: T_co | None
    ok: bool


_new_selected = tuple.__new__
# Every permutation of 3 to 6 cases (6, 24, 120, 720 tuples): a select over a few
# cases picks its poll order with one random() instead of random.sample's ~1.5 µs.
_PERM_MAX = 6
_PERMS: dict[int, tuple[tuple[int, ...], ...]] = {
    k: tuple(permutations(range(k))) for k in range(3, _PERM_MAX + 1)
}


def _shuffled(n: int) -> list[int]:
    """A uniformly random order of ``range(n)`` (Fisher-Yates)."""
    order = list(range(n))
    for j in range(n - 1, 0, -1):
        k = int(random() * (j + 1))
        order[j], order[k] = order[k], order[j]
    return order


_ABSENT: Any = object()  # select(): a case not given
_TWO = ((0, 1), (1, 0))
# select(..., default=True) that found no case ready (immutable: one for all).
_DEFAULT: Selected[Any] = _new_selected(Selected, (-1, None, False))
_FAST = FAST
_ctg = current_tasks_get
_task_state = TASK_STATES.get
_task_cancelled = task_cancelled


@overload
async def select(*, default: bool = ...) -> Selected[Never]: ...
@overload
async def select(c1: Case[T1], /, *, default: bool = ...) -> Selected[T1]: ...
@overload
async def select(c1: Case[T1], c2: Case[T2], /, *, default: bool = ...) -> Selected[T1 | T2]: ...
@overload
async def select(
    c1: Case[T1], c2: Case[T2], c3: Case[T3], /, *, default: bool = ...
) -> Selected[T1 | T2 | T3]: ...
@overload
async def select(
    c1: Case[T1], c2: Case[T2], c3: Case[T3], c4: Case[T4], /, *, default: bool = ...
) -> Selected[T1 | T2 | T3 | T4]: ...
@overload
async def select(
    c1: Case[T],
    c2: Case[T],
    c3: Case[T],
    c4: Case[T],
    c5: Case[T],
    /,
    *more: Case[T],
    default: bool = ...,
) -> Selected[T]: ...


async def select(
    c1: Any = _ABSENT, c2: Any = _ABSENT, /, *more: Case[Any], default: bool = False
) -> Selected[Any]:
    """Wait until one of *cases* can proceed, and commit exactly that one.

    When several cases are ready, one is chosen uniformly at random. With
    ``default=True`` a select that would wait returns ``Selected(-1, None,
    False)`` at once. A recv case on a closed, drained channel fires with
    ``ok=False``. With no cases and no default, waits forever (until cancelled).

    Typing: with up to four cases, the result's ``value`` is typed as the union
    of their item types (None for a send case); with five or more, as their
    common type.

    Cancellation: if cancelled, no case committed -- nothing was sent and
    nothing received. Checkpoint: always a cancel point; yields to the
    scheduler only when it must wait.
    Go: ``select { case ...: }``

    Raises:
        ChanClosed: The chosen case is a send on a closed channel (including a
            channel closed while the select waited on it).
        TypeError: An argument is not a case made by `recv` or `send`.

    Example:
        ```python
        jobs = Chan[int](10)
        c, cancel = with_cancel(background())
        done: list[int] = []

        async def worker() -> None:
            while True:
                match await select(recv(jobs), recv(c.done())):
                    case Selected(0, job, True):   # Go: case job, ok := <-jobs
                        done.append(job)
                    case _:                        # jobs closed, or ctx cancelled
                        return

        async with Group() as g:
            g.go_nowait(worker)
            for i in range(5):
                await jobs.send(i)
            jobs.close()
        cancel()
        assert done == [0, 1, 2, 3, 4]
        ```
    """
    # (Two positional parameters before *more: the common select -- two cases --
    # then needs no tuple of its cases on its fast path.)
    if c2 is _ABSENT and default and type(c1) is Case and c1[0] is not None and not more:
        # Go's non-blocking send or receive, `select { case v := <-ch: ... default: }`,
        # when the case is not ready: no tuple of cases, no loop.
        one: Chan[Any] = c1[0]
        if not (
            one._send_ready()
            if c1[1]
            else (one._buf or one._closed or (one._sendq and one._recv_ready()))
        ):
            if must_checkpoint(one):  # a polling loop is a cancel point too
                await checkpoint()
            return _DEFAULT
    if more or c2 is _ABSENT:
        cases: tuple[Any, ...] = (
            (c1, c2, *more) if c2 is not _ABSENT else (() if c1 is _ABSENT else (c1,))
        )
        n = len(cases)
    else:
        n = 2
        # Pass 1 below, unrolled for the common select -- two cases -- and its
        # common outcome: a receive from a buffer. Poll in a random order (one
        # coin); if the first case polled is ready in any other way, or neither
        # is ready, or a cancellation is pending, the general code takes over
        # with the same order, so the choice stays uniform.
        if random() < 0.5:
            i = 1
            d = c1
            c = c2
        else:
            i = 0
            c = c1
            d = c2
        order: Sequence[int] = _TWO[i]
        if type(c) is Case and type(d) is Case:
            ch = c[0]  # polled first
            if ch is None or c[1] or not ch._buf or ch._sendq:
                if ch is not None and (
                    ch._send_ready()
                    if c[1]
                    else (ch._buf or ch._closed or (ch._sendq and ch._recv_ready()))
                ):
                    ch = None  # ready in another way: the general code commits it
                else:  # not ready: d is the choice, if it is ready
                    i = 1 - i
                    ch = d[0]
                    if ch is None or d[1] or not ch._buf or ch._sendq:
                        ch = None
            if ch is not None:
                w = _ctg(ch._rt)  # must_checkpoint's first branch, as in Chan.recv
                if (
                    w is not None
                    and _FAST.budget > 0
                    and not w._must_cancel
                    and (w := _task_state(w)) is not None
                ):
                    _FAST.budget -= 1
                    if w.st.cancel_scope is w.clean or not _task_cancelled(w):
                        w = None
                    if w is None:
                        return _new_selected(Selected, (i, ch._buf.popleft(), True))  # type: ignore[union-attr]
                elif w is None and ch._rt is TRIO and _FAST.budget > 0 and _FAST.trio() is False:
                    _FAST.budget -= 1  # trio, nothing pending
                    return _new_selected(Selected, (i, ch._buf.popleft(), True))  # type: ignore[union-attr]
                elif not check_slow(ch, w):  # trio, or a task not cached yet
                    return _new_selected(Selected, (i, ch._buf.popleft(), True))  # type: ignore[union-attr]
                else:
                    await checkpoint()  # then poll again, below
        cases = (c1, c2)
    for c in cases:
        if type(c) is not Case:
            raise TypeError(
                f"select() case {cases.index(c)} is {c!r}: "
                "build cases with asyncgo.recv(ch) or asyncgo.send(ch, v)"
            )
    # Pass 1: commit a ready case, chosen uniformly at random. Like Go, poll the
    # cases in a random order and take the first ready one: the first ready
    # element of a uniformly random permutation is uniform among the ready ones.
    # Two cases (the common select) need one coin; more get a shuffle. Nothing
    # is allocated on this path but the result.
    if n == 2:
        pass  # the order drawn above
    elif n < 2:
        order = range(n)
    elif n <= _PERM_MAX:
        perms = _PERMS[n]  # every order of n cases: one draw picks one uniformly
        order = perms[int(random() * len(perms))]
    else:
        order = _shuffled(n)
    checked = False
    while True:
        for i in order:
            ch, is_send, value = cases[i]
            if ch is None:
                continue
            if is_send:
                if ch._send_ready():
                    break
            elif ch._buf or ch._closed or (ch._sendq and ch._recv_ready()):
                break
        else:
            break  # nothing ready
        if not checked:
            # A case can commit at once: still a cancel point (and the budget).
            # must_checkpoint's first branch inlined, as in Chan.recv.
            w = _ctg(ch._rt)
            if (
                w is not None
                and _FAST.budget > 0
                and not w._must_cancel
                and (w := _task_state(w)) is not None
            ):
                _FAST.budget -= 1
                if w.st.cancel_scope is w.clean or not _task_cancelled(w):
                    w = None
            elif w is None and ch._rt is TRIO and _FAST.budget > 0 and _FAST.trio() is False:
                _FAST.budget -= 1  # trio, nothing pending
            elif check_slow(ch, w):
                w = ch
            else:
                w = None
            if w is not None:
                await checkpoint()  # if that yielded, poll again
                checked = True
                continue
        if is_send:
            ch._poll_send(value)  # ready: commits, or raises ChanClosed
            return _new_selected(Selected, (i, None, True))
        buf = ch._buf
        if buf and not ch._sendq:
            return _new_selected(Selected, (i, buf.popleft(), True))
        v = ch._poll_recv()
        if v is CLOSED:
            return _new_selected(Selected, (i, None, False))
        return _new_selected(Selected, (i, v, True))
    holder: Any = None
    for c in cases:
        if c[0] is not None:
            holder = c[0]
            break
    else:
        holder = _NoChan()
    if default:
        if must_checkpoint(holder):  # a polling loop is a cancel point too
            await checkpoint()
        return _DEFAULT
    if not any(c.chan is not None for c in cases):
        await _park_forever(holder)  # Go: a select on nil channels only blocks forever
    if cancel_pending(holder):
        # anyio's cancellation is on its way (asyncio): take it before queueing on
        # any channel, or a partner could commit a case in between (see Chan.recv).
        await checkpoint()
        return await select(*cases, default=default)

    # Pass 2: park one waiter on every channel, queueing the entries in the
    # random poll order: a partner takes the first live entry of a queue, so
    # cases on one channel must be queued in random order for it to pick among
    # them at random (Go: selectgo's lock order starts from the poll order).
    rt = park_runtime(holder)
    w = new_parker(rt)
    entries: list[Entry | None] = [None] * n
    try:
        # Every channel bound to another loop fails the select before any is bound
        # to this one: a failed select changes nothing.
        loop: object = None
        for c in cases:
            ch = c.chan
            if ch is not None and ch._loop is not rt and ch._loop is not None:
                if loop is None:
                    loop = w.get_loop()
                ch._refuse_other(loop)
        for i in order:
            c = cases[i]
            ch = c.chan
            if ch is None:
                continue
            if ch._loop is not rt:
                ch._bind(w)
            entry: Entry = (w, i, c.value)
            if c.is_send:
                q = ch._sendq
                if q is None:
                    q = ch._sendq = deque()
            else:
                q = ch._recvq
                if q is None:
                    q = ch._recvq = deque()
            q.append(entry)
            entries[i] = entry
        tracer = _diag.tracer
        if tracer is not None:
            tracer.parked(w, tuple(c.chan for c in cases), "select")
        try:
            index, value, ok = await w
        finally:
            if tracer is not None:
                tracer.unparked(w)
    except BaseException as exc:
        r = rescue(w, exc)
        if r is NOT_CLAIMED:
            abandon(w)  # e.g. _bind raised before parking: no one may claim it now
            _forget_all(cases, entries, -1)
            raise
        index, value, ok = r
    # Pass 3: the other entries lost; the claimed one was already dequeued.
    _forget_all(cases, entries, index)
    won = cases[index]
    if not won.is_send:
        won.chan._rpend -= 1  # claimed receivers, see Chan
    if won.is_send:
        if not ok:
            raise ChanClosed("send on closed channel")
        return _new_selected(Selected, (index, None, True))
    return _new_selected(Selected, (index, value, ok))


# What introspection shows (help(), inspect.signature): the call as users write it,
# not the two positional parameters that spare the common select a tuple.
select.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("cases", inspect.Parameter.VAR_POSITIONAL, annotation="Case[Any]"),
        inspect.Parameter(
            "default", inspect.Parameter.KEYWORD_ONLY, default=False, annotation="bool"
        ),
    ],
    return_annotation="Selected[Any]",
)


async def _park_forever(holder: Any) -> None:
    """Wait until cancelled, parked on a waiter no one can claim (not a sleep), so
    that diagnostics see a select on nothing: the dump shows it, and deadlock
    detection counts it as blocked for good -- Go's "all goroutines are asleep"."""
    w = new_parker(park_runtime(holder))
    tracer = _diag.tracer
    if tracer is not None:
        tracer.parked(w, (), "select")
    try:
        await w
    except BaseException as exc:
        rescue(w, exc)  # never claimed: it only makes the waiter dead
        raise
    finally:
        if tracer is not None:
            tracer.unparked(w)
    raise AssertionError("a select on no channel was woken")  # pragma: no cover


class _NoChan:
    __slots__ = ("_rt",)

    def __init__(self) -> None:
        self._rt: object = None


def _forget_all(cases: tuple[Case[object], ...], entries: list[Entry | None], won: int) -> None:
    for i, entry in enumerate(entries):
        if entry is not None and i != won:
            ch = cases[i].chan
            assert ch is not None
            ch._forget(entry, not cases[i].is_send)

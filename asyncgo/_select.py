"""`select` over channel operations, exactly once and cancellation-safe.

A select first polls every case; if some are ready it commits one of them,
chosen uniformly at random (Go's fairness), without waiting. Otherwise it
parks *one* waiter with an entry on every channel's queue. The first party to
complete one of those entries claims the waiter -- which can happen once -- and
the other entries become dead. A select cancelled while parked was claimed by
no one, so no case committed.
"""

from __future__ import annotations

from collections import deque
from random import random
from typing import Any, Generic, NamedTuple, TypeVar, final, overload

from ._backend import (
    NOT_CLAIMED,
    _diag,
    abandon,
    checkpoint,
    must_checkpoint,
    new_parker,
    park_runtime,
    rescue,
    sleep_forever,
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


@final
class Case(Generic[T_co]):
    """One operation of a `select`: made by `recv` or `send`, never directly."""

    __slots__ = ("chan", "is_send", "value")

    def __init__(self, chan: Chan[object] | None, is_send: bool, value: object) -> None:
        self.chan = chan
        self.is_send = is_send
        self.value = value

    def __repr__(self) -> str:
        if self.is_send:
            return f"send({self.chan!r}, {self.value!r})"
        return f"recv({self.chan!r})"


def recv(ch: RecvChan[T] | None) -> Case[T]:
    """A receive case for `select`. ``None`` is Go's nil channel: never ready.

    Go: ``case v, ok := <-ch:``
    """
    return Case(None if ch is None else chan_of(ch, "recv"), False, None)


def send(ch: SendChan[T] | None, value: T) -> Case[None]:
    """A send case for `select`. ``None`` is Go's nil channel: never ready.

    Go: ``case ch <- v:``
    """
    return Case(None if ch is None else chan_of(ch, "send"), True, value)


class Selected(NamedTuple, Generic[T]):
    """The case a `select` committed.

    Attributes:
        index: The position of the case among the arguments; -1 when
            ``default=True`` and no case was ready.
        value: The value received (None for a send case, a closed channel, or
            the default).
        ok: True when a value was received or sent; False when a recv case fired
            because its channel is closed and drained, or for the default.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index, as the contract names it
    value: T | None
    ok: bool


_new_selected = tuple.__new__


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
async def select(*cases: Case[T], default: bool = ...) -> Selected[T]: ...


async def select(*cases: Case[Any], default: bool = False) -> Selected[Any]:
    """Wait until one of *cases* can proceed, and commit exactly that one.

    When several cases are ready, one is chosen uniformly at random. With
    ``default=True`` a select that would wait returns ``Selected(-1, None,
    False)`` at once. A recv case on a closed, drained channel fires with
    ``ok=False``. With no cases and no default, waits forever (until cancelled).

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
        match await select(recv(jobs), recv(ctx.done())):
            case Selected(0, job, True): await handle(job)
            case _: return
        ```
    """
    holder = _holder_for(cases)
    if must_checkpoint(holder):
        await checkpoint()
    # Pass 1: which cases are ready? Commit one of them at random.
    first = -1
    ready: list[int] | None = None
    for i, c in enumerate(cases):
        if type(c) is not Case:
            raise TypeError(
                f"select() case {i} is {c!r}: "
                "build cases with asyncgo.recv(ch) or asyncgo.send(ch, v)"
            )
        ch = c.chan
        if ch is None:
            continue
        if ch._send_ready() if c.is_send else ch._recv_ready():
            if first < 0:
                first = i
            elif ready is None:
                ready = [first, i]
            else:
                ready.append(i)
    if first >= 0:
        if ready is not None:
            first = ready[int(random() * len(ready))]
        c = cases[first]
        ch = c.chan
        assert ch is not None
        if c.is_send:
            ch._poll_send(c.value)  # ready: commits, or raises ChanClosed
            return _new_selected(Selected, (first, None, True))
        v = ch._poll_recv()
        if v is CLOSED:
            return _new_selected(Selected, (first, None, False))
        return _new_selected(Selected, (first, v, True))
    if default:
        return _new_selected(Selected, (-1, None, False))
    if not any(c.chan is not None for c in cases):
        await sleep_forever()  # Go: a select on nil channels only blocks forever

    # Pass 2: park one waiter on every channel.
    rt = park_runtime(holder)
    w = new_parker(rt)
    entries: list[Entry | None] = []
    try:
        for i, c in enumerate(cases):
            ch = c.chan
            if ch is None:
                entries.append(None)
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
            entries.append(entry)
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


class _NoChan:
    __slots__ = ("_rt",)

    def __init__(self) -> None:
        self._rt: object = None


def _holder_for(cases: tuple[Case[object], ...]) -> Any:
    """The object whose runtime hint a select uses: its first channel's."""
    for c in cases:
        if type(c) is Case and c.chan is not None:
            return c.chan
    return _NoChan()


def _forget_all(cases: tuple[Case[object], ...], entries: list[Entry | None], won: int) -> None:
    for i, entry in enumerate(entries):
        if entry is not None and i != won:
            ch = cases[i].chan
            assert ch is not None
            ch._forget(entry, not cases[i].is_send)

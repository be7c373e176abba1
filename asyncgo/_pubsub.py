"""Broadcast and topic-keyed PubSub (issue #7): one channel per subscriber.

Every subscriber owns a bounded `Chan`; `Broadcast.publish` puts the value in each
one, and the subscriber's *policy* says what happens when its buffer is full:

* ``"block"``: publish waits for room (the slowest subscriber sets the pace);
* ``"drop_oldest"``: the oldest buffered value is dropped to make room;
* ``"drop_newest"``: the new value is dropped for that subscriber;
* ``"disconnect"``: the subscriber is closed; once it has read what it had, its
  iteration raises `Disconnected` with the reason.

Drops are counted per subscriber (`Subscription.dropped`): nothing is dropped
silently. Leaving ``async with bus.subscribe() as sub`` unsubscribes.

A bus belongs to the event loop of its subscribers, from the first `subscribe`
(or the first publish, for subscribers made outside any loop) until the last
subscriber leaves: publishing, subscribing, unsubscribing or closing from another
loop (another thread) raises `RuntimeError` before anything is delivered or
changed. An idle bus may be used by a later loop (a module-level bus used by
several ``anyio.run`` calls).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
from threading import get_ident as _get_ident
from types import TracebackType
from typing import Generic, Literal, TypeVar, final

from ._backend import checkpoint, must_checkpoint, thread_id
from ._backend._timers import runtime_or_none
from ._chan import Chan, RecvChan
from ._exceptions import ChanClosed, WouldBlock
from .sync._mutex import Mutex

__all__ = ["Broadcast", "Disconnected", "Policy", "PubSub", "Subscription"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
K = TypeVar("K", bound=Hashable)

Policy = Literal["block", "drop_oldest", "drop_newest", "disconnect"]
_POLICIES = ("block", "drop_oldest", "drop_newest", "disconnect")


class Disconnected(ChanClosed):
    """Raised by a subscription's iteration when a ``"disconnect"`` policy closed it.

    Raised after every value received before the disconnection has been read.
    The message says why (``subscriber fell behind: buffer of N full``). A
    `ChanClosed`: the subscriber's channel is closed, with a reason (``except
    ChanClosed`` around ``sub.recv()`` catches both ends of a subscription).

    Example:
        ```python
        bus = Broadcast[int]()
        async with bus.subscribe(buffer=2, policy="disconnect") as sub:
            for i in range(3):
                bus.publish_nowait(i)        # the third value finds the buffer full
            got = []
            try:
                async for v in sub:
                    got.append(v)
            except Disconnected as e:
                assert "fell behind" in str(e)
            assert got == [0, 1]             # what arrived before is still delivered
        ```
    """


@final
class Subscription(Generic[T_co]):
    """One subscriber's view of a `Broadcast`: an async iterator of published values.

    Use as ``async with bus.subscribe(buffer=16) as sub: async for v in sub``. The
    subscription is registered when `Broadcast.subscribe` returns, so nothing
    published after that call is missed. Iteration ends when the bus is closed
    (after the buffered values) or the subscription is unsubscribed; it raises
    `Disconnected` if the ``"disconnect"`` policy closed it.
    Go: ``for v := range sub`` over a channel the broker sends to.

    Example:
        ```python
        bus = Broadcast[str]()
        async with bus.subscribe(buffer=4, policy="drop_oldest") as sub:
            for ev in ["a", "b", "c", "d", "e", "f"]:
                bus.publish_nowait(ev)
            bus.close()
            assert [ev async for ev in sub] == ["c", "d", "e", "f"]
            assert sub.dropped == 2          # per-subscriber drop count
        ```
    """

    __slots__ = ("_bus", "_ch", "_dropped", "_left", "_policy", "_reason")

    def __init__(self, bus: Broadcast[T_co], buffer: int, policy: Policy) -> None:
        self._bus: Broadcast[T_co] | None = bus
        self._ch: Chan[T_co] = Chan(buffer)
        self._policy = policy
        self._dropped = 0
        self._reason: str | None = None
        self._left = False  # unsubscribe() was called (a block around it exited)

    def __repr__(self) -> str:
        state = "closed" if self._ch.closed else "open"
        return (
            f"<Subscription {state} policy={self._policy!r} buffered={len(self._ch)}/"
            f"{self._ch.cap} dropped={self._dropped}>"
        )

    @property
    def policy(self) -> Policy:
        """What happens to a publish when this subscriber's buffer is full."""
        return self._policy

    @property
    def dropped(self) -> int:
        """How many published values this subscriber lost to its policy."""
        return self._dropped

    @property
    def reason(self) -> str | None:
        """Why the subscription was closed by its policy, or None."""
        return self._reason

    @property
    def closed(self) -> bool:
        """True once unsubscribed, disconnected, or the bus closed (values may remain)."""
        return self._ch.closed

    def __len__(self) -> int:
        return len(self._ch)

    @property
    def c(self) -> RecvChan[T_co]:
        """The subscriber's channel, receive-only: what to `select` on. Go: ``sub``

        ``select(recv(sub.c), recv(ctx.done()), recv(after(1)))`` waits for the
        next value, the end of ``ctx`` or a timeout, whichever comes first (a Go
        subscriber *is* a channel: ``case ev := <-sub:``). When the case fires
        with ``ok`` False, the subscription has ended: ``sub.reason`` is not
        None if the ``"disconnect"`` policy closed it (the ``Disconnected`` that
        ``recv()`` and ``async for`` raise), else the bus closed or the
        subscriber unsubscribed. Receiving from it is receiving from the
        subscription (each call gives a view of the same channel).
        """
        return self._ch.recv_only()

    async def recv(self) -> T_co:
        """Receive the next published value, waiting for one.

        Cancellation: a cancelled recv took nothing.
        Go: ``v := <-sub``

        Raises:
            Disconnected: The ``"disconnect"`` policy closed this subscriber and
                every value it had has been read.
            ChanClosed: The bus closed (or the subscriber unsubscribed) and every
                value has been read.
        """
        try:
            return await self._ch.recv()
        except ChanClosed:
            if self._reason is not None:
                raise Disconnected(self._reason) from None
            raise

    def __aiter__(self) -> Subscription[T_co]:
        return self

    async def __anext__(self) -> T_co:
        try:
            return await self._ch.recv()
        except ChanClosed:
            if self._reason is not None:
                raise Disconnected(self._reason) from None
            raise StopAsyncIteration from None

    def unsubscribe(self) -> None:
        """Stop receiving: values not yet read are discarded; idempotent.

        A publish waiting for room in this subscriber's buffer moves on.
        Go: the broker's ``unsubscribe`` case, then ``close(sub)``.

        Raises:
            RuntimeError: Called from another event loop (thread) than the
                subscribers' (nothing changed).
        """
        bus = self._bus
        if bus is not None:
            if bus._tid is not None and bus._tid != _get_ident():
                bus._check_loop("unsubscribe", bind=False)
            self._check_close_here()
            self._bus = None
            bus._remove(self)
        self._left = True
        ch = self._ch
        if not ch.closed:
            ch.close()
        while len(ch):  # discard: the queue is freed now, not when the object dies
            ch.recv_nowait()

    def _check_close_here(self) -> None:
        """Raise `RuntimeError` if closing the channel would fail in this thread.

        (A reader parked on it in another thread's loop.) Nothing changed yet.
        """
        ch = self._ch
        if not ch.closed and ch._tid is not None and ch._tid != _get_ident() and ch._waiting():
            ch._foreign()

    async def __aenter__(self) -> Subscription[T_co]:
        if self._left:
            raise RuntimeError(
                f"{self!r} was unsubscribed (its async with block exited, or unsubscribe() "
                "was called) and receives nothing more: subscribe again with "
                "bus.subscribe() for a new subscription"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    def _deliver_nowait(self, value: T_co) -> bool:  # type: ignore[misc]  # the bus passes its T
        """Apply the policy to *value*; False if a ``"block"`` subscriber is full."""
        ch = self._ch
        try:
            ch.send_nowait(value)
            return True
        except ChanClosed:
            return True
        except WouldBlock:
            pass
        policy = self._policy
        if policy == "block":
            return False
        self._dropped += 1
        if policy == "drop_oldest":  # full, and buffer >= 1 (subscribe checks)
            ch.recv_nowait()
            ch.send_nowait(value)
        elif policy == "disconnect":
            self._reason = f"subscriber fell behind: buffer of {ch.cap} full"
            bus = self._bus
            if bus is not None:
                self._bus = None
                bus._remove(self)
            ch.close()
        return True


def _check_subscribe(buffer: object, policy: object, who: str) -> None:
    """Check `subscribe`'s arguments (before anything is bound or made)."""
    if policy not in _POLICIES:
        raise ValueError(f"{who}.subscribe(policy={policy!r}): expected one of {_POLICIES}")
    if not isinstance(buffer, int) or isinstance(buffer, bool):
        raise TypeError(f"{who}.subscribe: buffer must be an int, not {type(buffer).__name__}")
    if buffer < 0:
        raise ValueError(f"{who}.subscribe: negative buffer ({buffer})")
    if buffer == 0 and policy == "drop_oldest":
        raise ValueError(
            f"{who}.subscribe(buffer=0, policy='drop_oldest'): with no buffer there is no "
            "oldest value to drop for the new one; use buffer >= 1 (buffer=1 keeps the "
            "latest value), or policy='drop_newest' to drop values nobody waits for"
        )


@final
class Broadcast(Generic[T]):
    """Deliver every published value to every subscriber (Go's fan-out broker).

    ``async with bus.subscribe(buffer=16, policy="drop_oldest") as sub: async for
    v in sub``. `publish` puts the value in every subscriber's buffer; a full buffer
    is handled by that subscriber's policy (see the module docstring). `close`
    ends every subscription once it has read what was published before.

    Cost: one channel send per subscriber per publish (no task per subscriber).
    Go: a broker goroutine ranging over subscriber channels; here the publisher
    does the sends itself.

    Example:
        ```python
        bus = Broadcast[int]()
        totals: list[int] = []

        async def consumer(sub: Subscription[int]) -> None:
            async with sub:                  # leaving the block unsubscribes
                totals.append(sum([v async for v in sub]))

        async with Group() as g:
            for _ in range(3):
                g.go_nowait(consumer, bus.subscribe(buffer=8))  # subscribed at once
            for i in range(1, 11):
                await bus.publish(i)         # "block": waits for the slowest subscriber
            bus.close()                      # subscribers drain, then their loops end
        assert totals == [55, 55, 55]
        ```
    """

    __slots__ = ("_closed", "_home", "_on_empty", "_order", "_queued", "_rt", "_subs", "_tid")

    def __init__(self) -> None:
        self._subs: tuple[Subscription[T], ...] = ()
        self._closed = False
        self._on_empty: Callable[[], None] | None = None  # PubSub forgets the topic
        # A publish that waits for a full "block" subscriber holds _order (made anew
        # each time one starts to wait while none did); _queued counts it and those
        # queued behind it, in call order.
        self._order: Mutex | None = None
        self._queued = 0
        # The event loop (runtime) of the subscribers and the thread it runs in: set
        # by the first subscribe (or publish) in a loop, unset once there is no
        # subscriber and no publish waits, so an idle bus may move on to a later
        # loop. The hot paths compare thread ids (a running loop check costs more).
        self._home: object = None
        self._tid: int | None = None
        self._rt: object = None  # runtime hint for must_checkpoint

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Broadcast {state} subscribers={len(self._subs)}>"

    def __len__(self) -> int:
        """The number of current subscribers."""
        return len(self._subs)

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def subscribe(self, buffer: int = 16, policy: Policy = "block") -> Subscription[T]:
        """Register a subscriber with a *buffer* of values and a full-buffer *policy*.

        Use the result as an async context manager: leaving the block unsubscribes.
        Go: ``ch := make(chan T, buffer); broker.subscribe <- ch``

        Raises:
            ChanClosed: The broadcast is closed.
            ValueError: A negative *buffer*, an unknown *policy*, or
                ``"drop_oldest"`` with ``buffer=0`` (no buffered value to drop).
            TypeError: A *buffer* that is not an int.
            RuntimeError: Called from another event loop than the subscribers'.
        """
        if self._closed:
            raise ChanClosed("subscribe to closed Broadcast")
        _check_subscribe(buffer, policy, "Broadcast")
        if self._tid != _get_ident():
            self._check_loop("subscribe", bind=True)
        sub = Subscription(self, buffer, policy)
        self._subs = (*self._subs, sub)
        return sub

    def _check_loop(self, what: str, bind: bool) -> None:
        """The caller runs in another thread than the home loop's, or there is none.

        A bus without a home takes the caller's loop if it is subscribed to (*bind*)
        or has subscribers. Raises `RuntimeError`, having changed nothing, in another
        thread (its own loop, or none) than the home loop's.
        """
        here = runtime_or_none()
        if self._tid is None:
            if here is not None and (bind or self._subs):
                self._home = here
                self._tid = thread_id()
            return
        raise RuntimeError(
            f"Broadcast.{what}: {self!r} belongs to the event loop of its subscribers "
            f"({self._home!r}), which runs in another thread, and cannot be used from "
            f"this one ({here!r}); a Broadcast belongs to one event loop (from another "
            "thread, use anyio.from_thread.run or loop.call_soon_threadsafe)"
        )

    def _check_close_here(self) -> None:
        """Raise `RuntimeError`, having changed nothing, if `close` must not run here."""
        if self._tid is not None and self._tid != _get_ident():
            self._check_loop("close", bind=False)
        for sub in self._subs:
            sub._check_close_here()

    def _leave_home(self) -> None:
        """No subscriber, no waiting publish: a later event loop may use the bus."""
        self._home = self._tid = None

    def _remove(self, sub: Subscription[T]) -> None:
        self._subs = tuple(s for s in self._subs if s is not sub)
        # No subscriber left: the bus leaves its loop, and PubSub forgets the topic --
        # once no publish waits (one that waits delivers to whoever subscribes meanwhile,
        # on this same bus: see _settle).
        self._settle()

    async def publish(self, value: T) -> None:
        """Deliver *value* to every subscriber, waiting for ``"block"`` subscribers.

        Subscribers with room get it at once; then publish waits, one after the
        other, for each full ``"block"`` subscriber (one that unsubscribes
        meanwhile is skipped). Order: every subscriber gets the values in the
        order of the publish calls, also when several tasks publish at once -- a
        publish that comes while another waits for a full subscriber queues
        behind it (first come, first served) and delivers nothing before it, as
        sends to the same channels from a Go broker would. Cancellation:
        subscribers served before the cancellation keep the value, the others
        never get it (a publish cancelled while queued delivered nothing).
        Close: `close` while publish waits (or is queued) makes it raise
        `ChanClosed`, as Go's senders blocked on a channel that is closed panic;
        the subscribers served before keep the value, the others never get it.
        Checkpoint: a cancel point (a publish cancelled on entry delivered
        nothing); yields only when it must wait, or every few hundred publishes
        that did not, so a tight publish loop cannot starve the subscribers.
        Go: ``for _, s := range subs { s <- v }``

        Raises:
            ChanClosed: The broadcast is closed (also while waiting or queued).
            RuntimeError: Called from another event loop than the subscribers'
                (nothing was delivered).
        """
        if self._closed:
            raise ChanClosed("publish on closed Broadcast")
        if self._tid != _get_ident():
            self._check_loop("publish", bind=False)
        if self._queued:
            await self._publish_in_turn(value)  # (it parks: a cancel point)
            return
        if must_checkpoint(self):
            # A cancel point (cancelled here, it delivered nothing), and now and then
            # a yield: taken in turn, so that no publish called after this one
            # delivers first (they queue behind it meanwhile).
            await self._publish_first(value, None)
            return
        waiting: list[Subscription[T]] | None = None
        for sub in self._subs:
            if not sub._deliver_nowait(value):
                if waiting is None:
                    waiting = [sub]
                else:
                    waiting.append(sub)
        if waiting is not None:
            await self._publish_first(value, waiting)

    async def _publish_first(self, value: T, waiting: list[Subscription[T]] | None) -> None:
        """`publish` with nobody queued, that must wait: take the turn, then wait.

        For the full ``"block"`` subscribers in *waiting* (the others have *value*),
        or, with None, for a checkpoint, then deliver to every subscriber.
        """
        # A new lock for each episode of waiting publishes: a lock binds to the loop
        # it first waits on, and a bus may outlive its event loop (a module-level
        # bus used by several anyio.run calls, or test loops).
        order = self._order = Mutex()
        taken = order.try_lock()  # free: nobody waits (_queued was 0)
        assert taken
        self._queued += 1
        try:
            if waiting is None:
                await checkpoint()
                if self._closed:
                    raise ChanClosed("publish on closed Broadcast")
                waiting = [sub for sub in self._subs if not sub._deliver_nowait(value)]
            await self._send_each(waiting, value)
        finally:
            self._queued -= 1
            order.unlock()
            self._settle()

    def _settle(self) -> None:
        """After a publish that waited: an idle bus leaves its loop (and its topic)."""
        if not self._queued and not self._subs:
            self._leave_home()
            if self._on_empty is not None:
                self._on_empty()

    async def _publish_in_turn(self, value: T) -> None:
        """`publish` behind the publishes that wait: deliver only once they are done."""
        order = self._order
        assert order is not None
        self._queued += 1
        try:
            await order.lock()
            try:
                if self._closed:
                    raise ChanClosed("publish on closed Broadcast")
                waiting = [sub for sub in self._subs if not sub._deliver_nowait(value)]
                await self._send_each(waiting, value)
            finally:
                order.unlock()
        finally:
            self._queued -= 1
            self._settle()

    async def _send_each(self, waiting: list[Subscription[T]], value: T) -> None:
        """Wait for room in each full ``"block"`` subscriber in turn.

        One that unsubscribes meanwhile is skipped; if the bus closes, `ChanClosed`.
        """
        for sub in waiting:
            try:
                await sub._ch.send(value)
            except ChanClosed:
                if self._closed:  # Go: a send blocked when the channel closes panics
                    raise ChanClosed("publish on closed Broadcast") from None
                # unsubscribed while we waited: skip it

    def publish_nowait(self, value: T) -> None:
        """Deliver *value* to every subscriber now, or to none.

        Drop and disconnect policies apply as in `publish`. If a ``"block"``
        subscriber's buffer is full, or a `publish` still waits for one (the
        value would overtake its), nobody gets the value and `WouldBlock` is raised.
        Go: ``select { case s <- v: default: }`` per subscriber, checked first.

        Raises:
            WouldBlock: A ``"block"`` subscriber has no room, or a publish waits.
            ChanClosed: The broadcast is closed.
            RuntimeError: Called from another event loop than the subscribers'
                (nothing was delivered).
        """
        if self._closed:
            raise ChanClosed("publish on closed Broadcast")
        if self._tid != _get_ident():
            self._check_loop("publish_nowait", bind=False)
        if self._queued:
            raise WouldBlock("a publish is still waiting for a 'block' subscriber")
        subs = self._subs
        for sub in subs:
            if sub._policy == "block" and not sub._ch._send_ready() and not sub._ch.closed:
                raise WouldBlock("a 'block' subscriber's buffer is full")
        for sub in subs:
            sub._deliver_nowait(value)

    def close(self) -> None:
        """End every subscription after it has read what was already published.

        Later `publish` and `subscribe` calls raise `ChanClosed`, and so do the
        publishes waiting for a full ``"block"`` subscriber or queued behind one
        (Go: a send blocked on a channel that is closed panics). Idempotent.
        Go: ``close(ch)`` on every subscriber channel.

        Raises:
            RuntimeError: Called from another event loop (thread) than the
                subscribers' (nothing changed).
        """
        if self._closed:
            return
        self._check_close_here()
        self._closed = True
        subs, self._subs = self._subs, ()
        for sub in subs:
            sub._bus = None
            if not sub._ch.closed:
                sub._ch.close()


@final
class PubSub(Generic[K, T]):
    """Topic-keyed publish/subscribe: one `Broadcast` per topic, made on demand.

    ``async with ps.subscribe("orders", buffer=8) as sub: async for v in sub``;
    ``await ps.publish("orders", v)`` reaches the subscribers of that topic only
    (none: the value is dropped, as a Go broker with no subscribers would). A topic
    without subscribers is forgotten (once no publish to it waits), so topics leave
    no queue behind.
    Go: a broker with ``map[string][]chan T``.

    Example:
        ```python
        ps = PubSub[str, str]()
        async with ps.subscribe("orders") as orders, ps.subscribe("refunds") as refunds:
            await ps.publish("orders", "order #1")
            await ps.publish("refunds", "refund #7")
            await ps.publish("audit", "nobody listens")  # no subscriber: dropped
            assert await orders.recv() == "order #1"
            assert await refunds.recv() == "refund #7"
        assert ps.topics() == []             # topics without subscribers are forgotten
        ```
    """

    __slots__ = ("_closed", "_rt", "_topics")

    def __init__(self) -> None:
        self._topics: dict[K, Broadcast[T]] = {}
        self._closed = False
        self._rt: object = None  # runtime hint for must_checkpoint

    def __repr__(self) -> str:
        return f"<PubSub topics={len(self._topics)}>"

    def topics(self) -> list[K]:
        """The topics that have subscribers now."""
        return [k for k, b in self._topics.items() if len(b)]

    def subscribers(self, topic: K) -> int:
        """How many subscribers *topic* has."""
        b = self._topic(topic, "subscribers")
        return 0 if b is None else len(b)

    def subscribe(self, topic: K, buffer: int = 16, policy: Policy = "block") -> Subscription[T]:
        """Subscribe to *topic*; see `Broadcast.subscribe`.

        Raises:
            ChanClosed: The PubSub is closed.
            ValueError: A negative *buffer*, an unknown *policy*, or
                ``"drop_oldest"`` with ``buffer=0``.
            TypeError: A *buffer* that is not an int.
            RuntimeError: Called from another event loop than *topic*'s subscribers'.
        """
        if self._closed:
            raise ChanClosed("subscribe to closed PubSub")
        _check_subscribe(buffer, policy, "PubSub")  # before a topic is made for it
        b = self._topic(topic, "subscribe")
        if b is None:
            b = self._topics[topic] = Broadcast()
            b._on_empty = partial(self._forget, topic, b)
        return b.subscribe(buffer, policy)

    def _topic(self, topic: K, what: str) -> Broadcast[T] | None:
        try:
            return self._topics.get(topic)
        except TypeError as exc:
            raise TypeError(
                f"PubSub.{what}(topic): a topic must be hashable, like a dict key; "
                f"not {type(topic).__name__}"
            ) from exc

    def _forget(self, topic: K, b: Broadcast[T]) -> None:
        if self._topics.get(topic) is b:
            del self._topics[topic]

    async def publish(self, topic: K, value: T) -> None:
        """Deliver *value* to *topic*'s subscribers; see `Broadcast.publish`.

        Raises:
            ChanClosed: The PubSub is closed (also while waiting or queued).
            RuntimeError: Called from another event loop than *topic*'s subscribers'.
        """
        if self._closed:
            raise ChanClosed("publish on closed PubSub")
        b = self._topic(topic, "publish")
        if b is not None:
            await b.publish(value)
        elif must_checkpoint(self):  # no subscriber: still a cancel point
            await checkpoint()

    def publish_nowait(self, topic: K, value: T) -> None:
        """Deliver *value* to *topic*'s subscribers now or to none; see `Broadcast.publish_nowait`.

        Raises:
            WouldBlock: A ``"block"`` subscriber of *topic* has no room, or a
                publish to *topic* still waits.
            ChanClosed: The PubSub is closed.
            RuntimeError: Called from another event loop than *topic*'s subscribers'.
        """
        if self._closed:
            raise ChanClosed("publish on closed PubSub")
        b = self._topic(topic, "publish_nowait")
        if b is not None:
            b.publish_nowait(value)

    def close(self) -> None:
        """Close every topic: subscriptions end after reading what they have. Idempotent.

        Raises:
            RuntimeError: Called from another event loop (thread) than a topic's
                subscribers' (nothing changed).
        """
        for b in self._topics.values():
            b._check_close_here()
        self._closed = True
        topics, self._topics = self._topics, {}
        for b in topics.values():
            b.close()

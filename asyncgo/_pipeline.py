"""Pipelines: ``pipeline(source) | stage | ...`` and the runner behind them.

A pipeline is a description: a source and a list of stages. Running it (``stream()``,
``collect()``, ``run()``) starts one task per node -- the source, then each stage --
linked by bounded channels, so stages overlap and a slow stage pushes back on its
producers (Go's pipeline pattern, with structured concurrency: every task lives in a
task group that the ``stream()`` context manager owns).

How items travel (the hot path). A link between two nodes is a `Chan` of *lists* of
items plus the producer's ``pending`` list:

* the producer appends each item to ``pending`` and hands the list over (one channel
  send) once it holds ``batch`` items, or at once when the consumer is parked waiting
  (``hungry``), so an idle consumer never waits for a batch to fill up;
* a consumer that finds the channel empty takes the producer's ``pending`` items
  directly ("steals" them; single-threaded, so no lock), so items never sit in a
  half-full batch while their consumer is idle;
* each stage still sees single items: its input is an async generator that unpacks
  the lists.

One channel operation per batch instead of per item is what makes a pipeline of
cheap stages several times faster than stages wired with a queue per item
(benchmarks/bench_pipeline.py). A link of ``size`` items never holds more than
``size`` items: its channel holds ``size // batch - 2`` lists, plus the producer's
pending (or in-flight) list and the rest of the list the consumer is working through.
Several producers of one link (``_Link.share``) take turns to send: while one waits
with its list, each of the others waits with what it put last in pending, so the
link holds at most that much more, however many producers there are.

Errors and cancellation: every task we start catches its own `Exception`, records
the first one in the `_Run`, and cancels every node's cancel scope; the consumer's
iterator then raises that exception as itself. Nodes never raise into the task
group, so nothing is wrapped in an `ExceptionGroup`. With a ctx, each node runs
inside ``ctx.scope()`` (so ``current()`` is the ctx in every stage and its tasks); a
node ended by the ctx marks the run as stopped by it, and the consumer's iterator
raises ``ctx.err()``. No async generator here ever
yields inside a task group or cancel scope (STYLE.md §8): the task group is owned by
the ``stream()`` context manager, entered and exited in the consumer's task.
"""

from __future__ import annotations

import inspect
import math
import reprlib
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from contextlib import AbstractAsyncContextManager, aclosing
from itertools import islice
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final, overload

from ._backend import (
    AsyncioCancelled,
    CancelScope,
    TaskGroup,
    anyio,
    checkpoint,
    create_task_group,
    current_effective_deadline,
    get_cancelled_exc_class,
)
from ._backend._tasks import TASK_NAMERS
from ._chan import MAX_CAP, Chan, RecvChan, SendChan
from ._context import Context, _current, background, check_ctx, ended
from ._exceptions import Canceled, DeadlineExceeded, WouldBlock
from ._group import Group

if TYPE_CHECKING:
    from .stages import Merge

__all__ = ["DEFAULT_BUFFER", "Pipeline", "Stage", "TaskStage", "pipeline"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")
S = TypeVar("S")
T_contra = TypeVar("T_contra", contravariant=True)
U_co = TypeVar("U_co", covariant=True)

#: Items a link between two stages holds by default (``pipeline(src, buffer=...)``).
DEFAULT_BUFFER = 256
#: The largest list of items handed from one stage task to the next in one send.
MAX_BATCH = 64


class Stage(Protocol[T_contra, U_co]):
    """A pipeline stage: a callable from an async iterator of ``T`` to one of ``U``.

    A plain async generator function is a stage::

        async def square(items: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in items:
                yield x * x

    Go: ``func stage(in <-chan T) <-chan U``

    Example:
        ```python
        async def square(items):
            async for x in items:
                yield x * x

        assert await (pipeline([1, 2, 3]) | square).collect() == [1, 4, 9]
        ```
    """

    def __call__(self, items: AsyncIterator[T_contra], /) -> AsyncIterator[U_co]:
        """Transform *items* into the stage's output."""
        ...


def _shape(size: int) -> tuple[int, int]:
    """``(batch, capacity in batches)`` of a link holding at most *size* items."""
    batch = min(MAX_BATCH, size // 4)
    if batch <= 1:
        return 1, size
    return batch, size // batch - 2


class _Lot:
    """Tasks waiting for a condition another task makes true: park, then re-check.

    A parked task is a receiver on an unbuffered channel (queued at once, without
    a checkpoint before, so an `unpark` right after `park` began is not lost); `unpark`
    hands a wake-up to up to *n* of them. A wake-up is never lost to cancellation: a
    woken task returns from `park` (`Chan`: an operation that returns has committed),
    and is cancelled at its next await. `parked` counts the tasks between the start
    and the end of `park` (woken ones included until they resume), so the common
    case -- nobody parked -- costs one attribute read.
    """

    __slots__ = ("_ch", "parked")

    def __init__(self) -> None:
        self._ch: Chan[None] = Chan()
        self.parked = 0

    async def park(self) -> None:
        self.parked += 1
        try:
            await self._ch.recv()
        finally:
            self.parked -= 1

    def unpark(self, n: int) -> None:
        """Wake up to *n* parked tasks (fewer if fewer are parked)."""
        send = self._ch.send_nowait
        for _ in range(min(n, self.parked)):
            try:
                send(None)
            except WouldBlock:  # the rest were woken already, not yet resumed
                return


class _Link:
    """The bounded connection from one node's output to the next node's input.

    Producer side: `put` / `put_many` / `flush` / `close`. Several producers may share
    a link (a map's workers, the copies of `fan_out`, the branches of `merge`) if
    they use only these methods and the stage calls `share` first: they then take
    turns to send (`_send_shared`). Consumer side: `next_batch` / `items`, and
    `unread` for items taken but not used; `fan_out`'s input (`stages._SharedInput`)
    is a subclass that hands out one item at a time to several consumers.
    """

    __slots__ = (
        "batch",
        "chan",
        "hungry",
        "limit",
        "pending",
        "sending",
        "shared",
        "size",
        "waiting",
    )

    def __init__(self, size: int) -> None:
        self.size = size
        self.batch, cap = _shape(size)
        self.chan: Chan[list[Any]] = Chan(cap)
        # Items produced but not yet sent. Consumers take them (copy + clear, so a
        # producer holding a reference keeps a valid list) when the channel is empty.
        self.pending: list[Any] = []
        # A consumer is parked waiting: the next item is sent at once.
        self.hungry = False
        # put() sends once pending holds `limit` items: `batch`, or 0 while a shared
        # link's send waits, so that every producer's next put waits its turn
        # (_send_shared) -- the same one comparison on the hot path either way.
        self.limit = self.batch
        self.shared = False  # several producers: sends take turns (share())
        self.sending = False  # a shared link's producer is in chan.send
        self.waiting: _Lot | None = None  # producers waiting for that send to end

    def __repr__(self) -> str:
        return f"<link size={self.size} batch={self.batch} {self.chan!r}>"

    def share(self) -> None:
        """Several producers will write to this link: from now on they take turns.

        Without turns, each producer that found ``pending`` full would take it and
        wait in ``chan.send`` with it, and the next one would fill a new list: n
        producers blocked on a full link would hold n lists on top of its size.
        """
        if not self.shared:
            self.shared = True
            self.waiting = _Lot()

    # -- producer side -----------------------------------------------------------

    async def put(self, item: object) -> None:
        pending = self.pending
        pending.append(item)
        if self.hungry or len(pending) >= self.limit:
            if self.shared:
                await self._send_shared(False)
                return
            self.hungry = False
            self.pending = []
            await self.chan.send(pending)

    async def put_many(self, items: list[Any]) -> None:
        pending = self.pending
        pending.extend(items)
        size = self.batch
        if not self.hungry and len(pending) < self.limit:
            return
        if self.shared:
            await self._send_shared(False)
            return
        self.hungry = False
        self.pending = []
        if len(pending) <= size:
            await self.chan.send(pending)
            return
        send = self.chan.send
        for i in range(0, len(pending), size):
            await send(pending[i : i + size])

    async def flush(self) -> None:
        pending = self.pending
        if pending:
            if self.shared:
                await self._send_shared(True)
                return
            self.pending = []
            await self.chan.send(pending)

    async def _send_shared(self, flush: bool) -> None:
        """`put` / `put_many` / `flush` on a shared link: one producer sends at a time.

        While one producer waits in ``chan.send``, `limit` is 0, so each other
        producer's next put comes here after adding its item (or list) to pending
        and parks until that send ends: the link holds at most its own size plus
        what each of the other producers put last, however many they are. The
        producer whose send ends wakes one waiter, which sends pending if it is due
        or passes the wake-up on. A cancelled send delivered nothing: its list goes
        back to the front of pending, for the next sender (no item is lost, none
        reordered); a producer cancelled while parked leaves its item in pending.
        """
        waiting = self.waiting
        assert waiting is not None
        while self.sending:
            await waiting.park()
        size = self.batch
        pending = self.pending
        if not (pending and (flush or self.hungry or len(pending) >= size)):
            # Sent by someone else meanwhile (or taken by the consumer).
            if waiting.parked:
                waiting.unpark(1)
            return
        self.sending = True
        self.limit = 0
        send = self.chan.send
        try:
            while pending and (flush or self.hungry or len(pending) >= size):
                self.hungry = False
                if len(pending) > size:
                    batch = pending[:size]
                    del pending[:size]
                else:
                    batch = pending
                    self.pending = []
                try:
                    await send(batch)
                except BaseException:
                    batch.extend(self.pending)  # not delivered: back to the front
                    self.pending = batch
                    raise
                pending = self.pending  # others added to it meanwhile
        finally:
            self.sending = False
            self.limit = size
            if waiting.parked:
                waiting.unpark(1)

    def close(self) -> None:
        if not self.chan.closed:
            self.chan.close()

    # -- consumer side -----------------------------------------------------------

    async def next_batch(self) -> list[Any] | None:
        """The next list of items, or None once the link is closed and drained.

        Cancellation-safe: a cancelled call has taken nothing.
        """
        batch: list[Any] | None
        chan = self.chan
        if not len(chan):
            pending = self.pending
            if pending and not self.sending:
                batch = pending.copy()
                pending.clear()
                return batch
            self.hungry = True
        batch, ok = await chan.recv_ok()
        return batch if ok else None

    async def items(self) -> AsyncGenerator[Any, None]:
        """The link's items one by one (a stage's input)."""
        batch: list[Any] | None
        chan = self.chan
        recv_ok = chan.recv_ok
        while True:
            if not len(chan):
                pending = self.pending
                if pending and not self.sending:
                    batch = pending.copy()
                    pending.clear()
                    for item in batch:
                        yield item
                    continue
                self.hungry = True
            batch, ok = await recv_ok()
            if not ok:
                return
            for item in batch:  # type: ignore[union-attr]  # ok: a list
                yield item

    def unread(self, items: list[Any]) -> None:
        """Give back *items*, taken from the link but not used (the consumer ended).

        A plain link drops them: once its only consumer ends, its producers are
        stopped. `fan_out`'s shared input hands them to the other copies.
        """


@final
class _NullLink:
    """A sink that discards everything (the output of a `tee` branch)."""

    __slots__ = ()
    batch = MAX_BATCH

    async def put(self, item: object) -> None:
        pass

    async def put_many(self, items: list[Any]) -> None:
        pass

    async def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


#: What a node writes to: a `_Link`, or `_NullLink` to discard.
_Sink = _Link | _NullLink


def _closed_link() -> _Link:
    link = _Link(0)
    link.close()
    return link


def _raised_by_cancellation(exc: BaseException) -> bool:
    """Whether *exc* was raised while a cancellation (or a generator's close) unwound."""
    cancelled = get_cancelled_exc_class()
    seen = 0
    e = exc.__context__
    while e is not None and seen < 32:
        if isinstance(e, cancelled | GeneratorExit):
            return True
        e = e.__context__
        seen += 1
    return False


class _Run:
    """The state shared by the tasks of one pipeline run: first error, stop flags, scopes."""

    __slots__ = (
        "ctx",
        "ctx_stopped",
        "cut",
        "delivered",
        "error",
        "group_stops",
        "killed",
        "node_scopes",
        "nodes_done",
        "scopes",
        "stopping",
    )

    def __init__(self, ctx: Context | None) -> None:
        self.ctx = ctx
        self.error: BaseException | None = None
        self.delivered = False  # the error was raised to the consumer already
        self.stopping = False
        # (asyncio) Set when the last stage task has ended, once _Stream.__aexit__
        # waits for that itself (see there).
        self.nodes_done: Any = None
        # (asyncio) The task group's own scope stops every stage (see _Stream.__aexit__):
        # the stages' scopes stay as they are.
        self.group_stops = False
        self.ctx_stopped = False
        self.killed = False  # a node was cancelled from outside the pipeline
        self.cut = False  # cancel_upstream() cut stages off (their errors are dropped)
        # The linear chain, source first (None once a node's block is over), and every
        # scope still open, to cancel on stop(). (anyio's cancel() formats the task's
        # repr, ~9 us on asyncio: a scope whose block is over is not cancelled.)
        self.node_scopes: list[CancelScope | None] = []
        self.scopes: list[CancelScope] = []

    def new_scope(self, node: bool) -> CancelScope:
        scope = CancelScope()
        self.scopes.append(scope)
        if node:
            self.node_scopes.append(scope)
        return scope

    def retire(self, scope: CancelScope) -> None:
        """*scope*'s block is over: nothing left there to cancel."""
        self.scopes.remove(scope)
        ns = self.node_scopes
        for i, s in enumerate(ns):
            if s is scope:
                ns[i] = None
                done = self.nodes_done
                if done is not None and not any(ns):
                    done.set()
                break

    def fail(self, exc: BaseException) -> None:
        """Record *exc* as the pipeline's error if it is the first, and stop everything.

        Not from a part of the pipeline that `cancel_upstream` cut off (the stages
        before a ``take(n)`` that is done, their workers and helper tasks): what
        they raise while they are being cancelled (a ``finally`` that fails) is
        dropped, as it is once the whole run stops; the stages after go on.
        """
        cancelled = current_effective_deadline() == -math.inf
        if self.cut and cancelled:
            return
        ctx = self.ctx
        if ctx is not None and exc is ctx.err():
            # The run's ctx ended (a stage, a map worker or a fan_out copy waited on
            # it): a clean stop, not the pipeline's failure.
            self.ctx_done()
            return
        if not self.stopping and _raised_by_cancellation(exc):
            # Raised *because* a stop cancelled the task (a `finally` that fails once
            # interrupted): dropped, as once the run stops. Its cancellation came from
            # the ctx's end, or from a scope enclosing the whole stream -- then the
            # output must not look complete (_end_of_output).
            if ctx is not None and ctx.err() is not None:
                self.ctx_done()
                return
            if cancelled:
                self.killed = True
                return
        if self.error is None and not self.stopping:
            self.error = exc
        self.stop()

    def fail_hard(self, exc: BaseException) -> None:
        """A task raised a `BaseException` that is not cancellation (KeyboardInterrupt,
        SystemExit): it takes the place of any ordinary error, even one raised to the
        consumer already, and stops everything. Recorded rather than raised into the
        task group, which would wrap it in a `BaseExceptionGroup`: the consumer (or
        the block's exit) raises it as itself, like `Group`."""
        if self.error is None or isinstance(self.error, Exception):
            self.error = exc
            self.delivered = False
        self.stop()

    def fatal(self) -> BaseException | None:
        """The `fail_hard` exception the consumer has not raised yet, if any."""
        e = self.error
        if e is None or isinstance(e, Exception) or self.delivered:
            return None
        self.delivered = True
        return e

    def ctx_done(self) -> None:
        """The run's ctx is done: stop everything; the consumer sees ``ctx.err()``."""
        if not self.stopping:
            self.ctx_stopped = True
        self.stop()

    def stop(self) -> None:
        self.stopping = True
        if self.group_stops:
            return
        for scope in tuple(self.scopes):
            scope.cancel()

    def cancel_upstream(self, index: int) -> None:
        """Node *index* is done: nodes before it have no reader any more."""
        if index:
            self.cut = True
        for scope in self.node_scopes[:index]:
            if scope is not None:
                scope.cancel()

    def outcome(self) -> BaseException | None:
        """The exception the consumer must see once the output ends, if any."""
        if self.error is not None:
            self.delivered = True
            return self.error
        ctx = self.ctx
        if ctx is not None and (self.ctx_stopped or not self.stopping):
            return ended(ctx)  # (ctx.err(), its traceback cleared: raised again and again)
        return None

    async def guard(self, body: Callable[[], Any], sink: _Sink | None = None) -> None:
        """Run a helper task's *body*: its errors stop the run; *sink* is closed after."""
        try:
            await body()
        except Exception as exc:
            self.fail(exc)
        except BaseException as exc:
            if isinstance(exc, get_cancelled_exc_class()):
                raise
            self.fail_hard(exc)
        finally:
            if sink is not None:
                sink.close()


class TaskStage(Generic[T_contra, U_co]):
    """A stage that starts tasks of its own: subclass it and implement `run`.

    A stage written as an async generator cannot start tasks: it would have to yield
    from inside a task group. A `TaskStage` is not a generator. Inside a pipeline the
    runner calls ``await stage.run(inp, out)`` in the stage's own task, with a
    `RecvChan` of its input items and a `SendChan` for its output -- Go's
    ``func stage(in <-chan T, out chan<- U)`` -- so ``run`` may open a `Group` or
    a task group, `select` on *inp* and a timer, and send from several tasks.

    The rules: read *inp* until it is closed (the input has ended) or stop early by
    returning (the stages before this one are then stopped, as after `take`);
    send results on *out*; the runner closes *out* when ``run`` returns (closing it
    yourself is allowed). An exception from ``run`` fails the pipeline and is
    raised from the consumer as itself; when the pipeline stops, ``run`` is
    cancelled. ``asyncgo.current()`` is the pipeline's ctx inside ``run``. The two
    channels each hold up to a batch of items (a quarter of the link's buffer, at
    most 64; unbuffered on a ``buffer(0)`` link), on top of the links' buffers. As
    the first element of a pipeline, ``pipeline(stage)``, *inp* is closed at once
    (a source that starts tasks).

    Called directly on an async iterator, outside a pipeline, a `TaskStage` raises
    `TypeError`: it needs the runner's tasks. The built-in stages that start tasks
    (``map`` with workers, ``merge``, ``fan_out``, ``tee``, ``batch`` with a
    timeout) subclass `TaskStage` too, with a private faster path instead of ``run``.

    Example:
        ```python
        class Debounce(stages.TaskStage[str, str]):
            # Pass on an item only when no newer one follows within `quiet` seconds.
            def __init__(self, quiet: float) -> None:
                self.quiet = quiet

            async def run(self, inp: RecvChan[str], out: SendChan[str]) -> None:
                last = ""
                timer: RecvChan[float] | None = None  # a None case never fires (Go's nil channel)
                while True:
                    match await select(recv(inp), recv(timer)):
                        case Selected(0, str() as item, True):  # a newer item: restart the clock
                            last, timer = item, gotime.after(self.quiet)
                        case Selected(0, _, False):  # the input ended: flush, done
                            if timer is not None:
                                await out.send(last)
                            return
                        case _:  # quiet for long enough
                            await out.send(last)
                            timer = None

        typed = ["h", "he", "hel", "hello"]
        assert await (pipeline(typed) | Debounce(5.0)).collect() == ["hello"]
        ```

    Go: ``func stage(ctx context.Context, in <-chan T, out chan<- U)``
    """

    __slots__ = ()

    def __call__(self, items: AsyncIterator[T_contra], /) -> AsyncIterator[U_co]:
        raise TypeError(f"{self!r} starts tasks, so it runs only inside a pipeline(...)")

    async def run(self, inp: RecvChan[T_contra], out: SendChan[U_co]) -> None:
        """Read items from *inp*, send results on *out*; start any tasks you need.

        Called by the runner in the stage's own task (see the class docstring).
        """
        raise NotImplementedError(
            f"{type(self).__name__} is a TaskStage: implement `async def run(self, inp, out)`"
        )

    async def _run(self, rx: _Link, tx: _Sink, run: _Run) -> None:
        """The runner's hook; the built-in stages override it with list-level loops."""
        await _run_channels(self, rx, tx)

    def _never_ran(self) -> None:
        """The runner's hook for a run stopped before any stage started (its ctx was
        done): what ``_run`` would have done on its way out (tee: close its channels)."""


class _Keeps(TaskStage[T_contra, Any]):
    """A built-in stage whose items go on as they came (`filter`, `tap`, `tee`).

    Its output type is its input's, however wide the function it was given:
    ``pipeline(ints) | stages.tap(print)`` stays a ``Pipeline[int]``, although
    `print` takes any object. *T_contra* is what the function accepts, so
    ``stages.tap(takes_str)`` on a ``Pipeline[int]`` is still a type error.
    """

    __slots__ = ()

    def __call__(self: _Keeps[S], items: AsyncIterator[S], /) -> AsyncIterator[S]:
        return self._direct(items)

    def _direct(self, items: AsyncIterator[Any], /) -> AsyncIterator[Any]:
        """The stage run on an async iterator, outside a pipeline."""
        return TaskStage.__call__(self, items)


async def _wait_for(run: _Run) -> None:
    """(asyncio) Wait until every stage task of *run* has ended, through cancellations."""
    if not any(run.node_scopes):
        return
    done = run.nodes_done = anyio.Event()
    # Shielded: an anyio scope cancelled meanwhile would deliver its cancellation at
    # every turn of the loop; a native one still comes through, once each.
    with CancelScope(shield=True):
        while not done.is_set():
            try:
                await done.wait()
            except AsyncioCancelled:
                pass  # (counted: the consumer's own cancellation propagates after)


def _never_ran(obj: object) -> None:
    """Call `TaskStage._never_ran` on every stage of *obj* (a pipeline, a stage or a
    source), nested ones included."""
    if isinstance(obj, Pipeline):
        _never_ran(obj._source)
        for stage, _ in obj._nodes:
            _never_ran(stage)
    elif isinstance(obj, TaskStage):
        obj._never_ran()


#: The `stages` factory functions (``stages.filter``...), by id, with the message for
#: one used uncalled (``| stages.filter``): filled in by `asyncgo.stages`.
_FACTORIES: dict[int, str] = {}


def _refuse_factory(obj: object) -> None:
    """Reject a `stages` factory function given where a stage (or source) goes."""
    msg = _FACTORIES.get(id(obj))
    if msg is not None:
        raise TypeError(msg)


def _check_stage(stage: object) -> None:
    """Reject a `TaskStage` subclass that implements neither `run` nor the private hook."""
    if isinstance(stage, TaskStage):
        cls = type(stage)
        if cls.run is TaskStage.run and cls._run is TaskStage._run:
            raise TypeError(
                f"{cls.__name__} subclasses stages.TaskStage but does not implement "
                "`async def run(self, inp, out)`"
            )


async def _run_channels(stage: TaskStage[Any, Any], rx: _Link, tx: _Sink) -> None:
    """Run ``stage.run(inp, out)`` with channels of items, pumped from *rx* and into *tx*."""
    inp: Chan[Any] = Chan(rx.batch if rx.size else 0)
    out: Chan[Any] = Chan(tx.batch if not isinstance(tx, _Link) or tx.size else 0)
    feeding = CancelScope()
    fed = False  # pump_in is over: no scope to cancel (see _Run.retire)

    async def pump_in() -> None:
        nonlocal fed
        try:
            with feeding:
                send = inp.send
                while (batch := await rx.next_batch()) is not None:
                    for i, item in enumerate(batch):
                        try:
                            await send(item)
                        except BaseException:
                            # The stage ended (or the run stops) before taking them:
                            # fan_out's shared input hands them to another copy.
                            rx.unread(batch[i:])
                            raise
        finally:
            fed = True
            inp.close()

    async def pump_out() -> None:
        recv_ok = out.recv_ok
        while True:
            item, ok = await recv_ok()
            if not ok:
                return
            items = [item]
            while len(out):  # what else is buffered goes on in the same list
                items.append(out.recv_nowait())
            await tx.put_many(items)

    # The pumps stop with this node (its cancel scope), like tasks of an inner task
    # group; a `Group` re-raises the first error as itself, never in a group.
    cur = _current.get()
    async with Group(background()) as g:
        g.go_nowait(pump_in)
        g.go_nowait(pump_out)
        token = _current.set(cur)  # current() in run() is the pipeline's ctx, not g.ctx
        try:
            await stage.run(inp.recv_only(), out.send_only())
        finally:
            _current.reset(token)
            if not fed:
                feeding.cancel()  # the stage reads no more
            if not out.closed:
                out.close()


def _is_buffer(stage: object) -> int | None:
    size = getattr(stage, "_asyncgo_buffer", None)
    return size if isinstance(size, int) else None


def _check_size(size: int, what: str, most: float = MAX_CAP) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{what} must be an int, not {type(size).__name__}")
    if not 0 <= size <= most:
        raise ValueError(
            f"{what} must be >= 0, not {size}"
            if size < 0
            else f"{what} must be at most sys.maxsize ({MAX_CAP}), not {size}"
        )
    return size


def _source_kind(source: object) -> str:
    if isinstance(source, Pipeline):
        return "pipeline"
    if isinstance(source, TaskStage):
        _check_stage(source)
        return "task"
    if isinstance(source, RecvChan | AsyncIterable):
        return "aiter"
    if isinstance(source, Iterable):
        return "iter"
    if callable(source):
        _refuse_factory(source)
        return "call"
    raise TypeError(
        "pipeline() source must be an iterable, an async iterable, a channel, an async "
        f"generator function or a Pipeline, not {type(source).__name__}"
    )


async def _aclose(it: object) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


def _aiter_of(obj: object, what: object) -> AsyncIterator[Any]:
    if isinstance(obj, AsyncIterator):
        return obj
    if isinstance(obj, AsyncIterable):
        return obj.__aiter__()
    if inspect.iscoroutine(obj):  # an async per-item function: not awaited, say why
        obj.close()
    raise TypeError(
        f"{what!r} returned {type(obj).__name__}, not an async iterator: a stage takes an "
        "AsyncIterator and returns one (an async generator function is a stage); wrap a "
        "per-item function in stages.map(fn)"
    )


async def _drive(it: AsyncIterator[Any], tx: _Sink) -> None:
    """Move everything *it* yields into *tx*, batching (*tx* has no other producer)."""
    if isinstance(tx, _NullLink):
        async for _ in it:
            pass
        return
    pending = tx.pending
    size = tx.batch
    send = tx.chan.send
    async for item in it:
        pending.append(item)
        if tx.hungry or len(pending) >= size:
            tx.hungry = False
            batch = pending
            pending = tx.pending = []
            await send(batch)
            del batch  # (not kept while the next items are awaited: they may be long)
    await tx.flush()


async def feed(source: object, tx: _Sink, run: _Run, *, shared: bool = False) -> None:
    """Send every item of a pipeline *source* into *tx*; close what we iterated.

    *shared*: other producers write to *tx* too (use its safe methods only).
    """
    kind = _source_kind(source)
    if kind == "pipeline":
        assert isinstance(source, Pipeline)
        sub = _Stream(source, run.ctx)
        # The output generator is closed here if put_many() is interrupted (downstream
        # done, cancelled) while it waits at its yield: not left to the garbage
        # collector (trio warns about it).
        async with sub, aclosing(sub._batches()) as batches:
            async for batch in batches:
                await tx.put_many(batch)
        await tx.flush()
        return
    if kind == "task":
        assert isinstance(source, TaskStage)
        await source._run(_closed_link(), tx, run)
        return
    if kind == "iter":
        it = iter(source)  # type: ignore[call-overload]
        size = tx.batch
        try:
            if shared or isinstance(tx, _NullLink):
                while batch := list(islice(it, size)):
                    await tx.put_many(batch)
                await tx.flush()
            else:
                send = tx.chan.send
                while batch := list(islice(it, size)):
                    await send(batch)
        finally:
            if inspect.isgenerator(it):
                it.close()  # its finally blocks run now, as an async generator's do
        return
    if kind == "call":
        assert callable(source)
        ait = _aiter_of(source(), source)
    else:
        ait = _aiter_of(source, source)
    try:
        if shared:
            async for item in ait:
                await tx.put(item)
            await tx.flush()
        else:
            await _drive(ait, tx)
    finally:
        if kind == "call" or inspect.isasyncgen(ait):
            await _aclose(ait)


async def run_stage(stage: Any, rx: _Link, tx: _Sink, run: _Run, *, shared: bool = False) -> None:
    """Run one stage from *rx* to *tx* in the current task (a node, or a `fan_out` copy)."""
    if isinstance(stage, TaskStage):
        await stage._run(rx, tx, run)
        await tx.flush()
        return
    src = rx.items()
    try:
        it = _aiter_of(stage(src), stage)
        try:
            if shared:
                async for item in it:
                    await tx.put(item)
                await tx.flush()
            else:
                await _drive(it, tx)
        finally:
            # The user's generator is closed here, in the task that iterated it.
            await _aclose(it)
    finally:
        await src.aclose()


@final
class Pipeline(Generic[T_co]):
    """A source followed by stages; ``|`` appends a stage. Build it with `pipeline`.

    A pipeline is a description: nothing runs until ``stream()``, ``collect()`` or
    ``run()``; each run iterates the source afresh (a one-shot source such as a
    generator object can be run once).

    Example:
        ```python
        p = pipeline(range(5)) | stages.map(lambda x: x + 1)
        async with p.stream() as items:
            assert [x async for x in items] == [1, 2, 3, 4, 5]
        assert await p.collect() == [1, 2, 3, 4, 5]  # a description: each run starts afresh
        ```
    """

    __slots__ = ("_buffer", "_nodes", "_source")

    def __init__(
        self, source: object, buffer: int, nodes: tuple[tuple[object, int], ...] = ()
    ) -> None:
        """Internal: build pipelines with `pipeline` and ``|``."""
        self._source = source
        self._buffer = buffer
        # (stage, size of the link *into* it)
        self._nodes = nodes

    @overload
    def __or__(self, stage: _Keeps[T_co]) -> Pipeline[T_co]: ...
    @overload
    def __or__(self, stage: Stage[T_co, U]) -> Pipeline[U]: ...
    def __or__(self, stage: Stage[T_co, Any]) -> Pipeline[Any]:
        """A new pipeline with *stage* appended: ``pipeline(src) | stage``.

        The pipeline itself is unchanged (pipelines are immutable descriptions).
        Go: ``stage(in)``, returning the stage's output channel

        Raises:
            TypeError: *stage* is not callable, or is a `stages` factory not called
                (``| stages.filter`` instead of ``| stages.filter(pred)``).
        """
        if not callable(stage):
            raise TypeError(
                f"a pipeline stage must be callable (items -> items), not {type(stage).__name__}"
            )
        _refuse_factory(stage)
        _check_stage(stage)
        return Pipeline(self._source, self._buffer, (*self._nodes, (stage, self._buffer)))

    def __repr__(self) -> str:
        names = [describe(self._source)] + [describe(s) for s, _ in self._nodes]
        return f"<Pipeline {' | '.join(names)}>"

    def stream(
        self, ctx: Context | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[T_co]]:
        """Run the pipeline; ``async with p.stream(ctx) as items: async for x in items``.

        Each stage runs in its own task, linked to the next by a bounded buffer, so
        stages overlap and a slow consumer pushes back on the stages before it.
        The first exception in any stage stops every stage and is raised from the
        ``async for`` (or, if the consumer stopped iterating first, on leaving the
        block) as itself. When *ctx* is done first, the stages stop and ``async
        for`` raises ``ctx.err()``. Leaving the block early (``break``, an
        exception, cancellation) stops every stage; in every case no task is left
        running when the block exits, and every async generator the pipeline
        iterated has been closed in the task that iterated it. Waiting for the
        next item is cancellation-safe, like a channel receive: a cancelled
        ``await anext(items)`` (say, under ``anyio.move_on_after``) took no item,
        and the next one returns the item that would have come next.
        Go: ``for x := range stage3(stage2(stage1(gen(ctx))))``

        Raises:
            Exception: The first exception raised by the source or a stage.
            Canceled: *ctx* was cancelled before the output ended.
            DeadlineExceeded: *ctx*'s deadline passed before the output ended.
        """
        return _Stream(self, ctx)

    async def collect(self, ctx: Context | None = None) -> list[T_co]:
        """Run the pipeline and return every item of its output, in order.

        Raises:
            Exception: The first exception raised by the source or a stage.
            Canceled: *ctx* was cancelled first.
            DeadlineExceeded: *ctx*'s deadline passed first.
        """
        out: list[T_co] = []
        stream = _Stream(self, ctx)
        async with stream:
            async for batch in stream._batches():
                out.extend(batch)
        return out

    async def run(self, ctx: Context | None = None) -> None:
        """Run the pipeline for its effects, discarding its output.

        Raises:
            Exception: The first exception raised by the source or a stage.
            Canceled: *ctx* was cancelled first.
            DeadlineExceeded: *ctx*'s deadline passed first.
        """
        stream = _Stream(self, ctx)
        async with stream:
            async for _ in stream._batches():
                pass


#: The longest description of a stage or source: a pipeline's source can be a list of
#: a million items, and descriptions are built on every run (task names, spans).
_MAX_DESC = 100
_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = _MAX_DESC
# Containers shown by their first items (reprlib never builds their whole repr).
_DATA_TYPES = (list, tuple, set, frozenset, dict, deque, str, range)


def describe(obj: object) -> str:
    """A short name for a stage or source, at most ``_MAX_DESC`` characters.

    A function, generator or class: its qualified name; a built-in container: its
    first items (``[0, 1, 2, 3, 4, 5, ...]``); a pipeline or ``stages.merge``: its
    parts, described the same way; another asyncgo object: its repr (a stage's
    repr names its function); anything else: its type -- its repr is not called.
    """
    from .stages import Merge  # (stages imports this module)

    name = getattr(obj, "__qualname__", None)
    if isinstance(name, str):
        d = name
    elif type(obj) in _DATA_TYPES:
        d = _short_repr.repr(obj)
    elif isinstance(obj, Pipeline):
        parts = [describe(obj._source)] + [describe(s) for s, _ in obj._nodes]
        d = f"<Pipeline {' | '.join(parts)}>"
    elif isinstance(obj, Merge):
        d = f"stages.merge({', '.join(describe(s) for s in obj._sources)})"
    elif type(obj).__module__.split(".", 1)[0] == "asyncgo":
        d = repr(obj)
    else:
        d = f"<{type(obj).__qualname__}>"
    return d if len(d) <= _MAX_DESC else d[: _MAX_DESC - 3] + "..."


@overload
def pipeline(source: Pipeline[T], *, buffer: int = ...) -> Pipeline[T]: ...
@overload
def pipeline(source: Merge[T], *, buffer: int = ...) -> Pipeline[T]: ...
@overload
def pipeline(source: TaskStage[Any, T], *, buffer: int = ...) -> Pipeline[T]: ...
@overload
def pipeline(source: RecvChan[T], *, buffer: int = ...) -> Pipeline[T]: ...
@overload
def pipeline(source: AsyncIterable[T], *, buffer: int = ...) -> Pipeline[T]: ...
@overload
def pipeline(source: Iterable[T], *, buffer: int = ...) -> Pipeline[T]: ...
@overload
def pipeline(source: Callable[[], AsyncIterator[T]], *, buffer: int = ...) -> Pipeline[T]: ...
def pipeline(source: object, *, buffer: int = DEFAULT_BUFFER) -> Pipeline[Any]:
    """Start a pipeline at *source*; append stages with ``|``.

    *source* is a sync or async iterable, a channel (`RecvChan`: read until closed,
    never closed by the pipeline), an async generator function (called with no
    arguments in the source's own task), another `Pipeline`, or
    ``stages.merge(a, b, ...)``. Each link between two stages holds up to *buffer*
    items (``stages.buffer(n)`` changes one link). Sync iterables are read in slices
    on the event loop, so they must not block.
    Go: ``func gen(nums ...int) <-chan int`` feeding ``stage(in <-chan int) <-chan int``

    Example:
        ```python
        def square(x: int) -> int:
            return x * x

        p = pipeline(range(10)) | stages.map(square) | stages.filter(lambda x: x % 2 == 0)
        assert await p.collect() == [0, 4, 16, 36, 64]
        ```

    Raises:
        TypeError: *source* is none of the above (or is a `stages` factory not
            called), or *buffer* is not an int.
        ValueError: *buffer* is negative, or larger than ``sys.maxsize``.
    """
    _check_size(buffer, "pipeline buffer")
    _source_kind(source)
    return Pipeline(source, buffer)


@final
class _Stream(Generic[T]):
    """The ``stream()`` context manager: owns the run's task group."""

    __slots__ = ("_it", "_last", "_pipeline", "_run", "_tg")

    def __init__(self, p: Pipeline[T], ctx: Context | None) -> None:
        check_ctx(ctx, "Pipeline.stream(ctx) / collect(ctx) / run(ctx)")
        self._pipeline = p
        self._run = _Run(ctx)
        self._tg: TaskGroup | None = None
        self._it: _Output[T] | None = None
        self._last: _Link | None = None

    async def __aenter__(self) -> AsyncIterator[T]:
        if self._tg is not None:
            raise RuntimeError("a pipeline stream() can be entered only once")
        run = self._run
        ctx = run.ctx
        if ctx is not None:
            err = ended(ctx)
            if err is not None:
                _never_ran(self._pipeline)  # (a tee's channels are closed as it stops)
                raise err
        tg = self._tg = create_task_group()
        await tg.__aenter__()
        try:
            self._last = self._start(tg)
        except BaseException as exc:
            run.stop()
            await tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._it = _Output(self)
        return self._it

    def _start(self, tg: TaskGroup) -> _Link:
        p = self._pipeline
        run = self._run
        # Lay out the nodes: a buffer() stage only resizes the link it sits on.
        nodes: list[object] = []
        sizes: list[int] = []  # sizes[i]: the link out of node i
        size = p._buffer
        for stage, link_size in p._nodes:
            n = _is_buffer(stage)
            if n is not None:
                size = n
                continue
            sizes.append(size)
            nodes.append(stage)
            size = link_size
        sizes.append(size)
        links = [_Link(n) for n in sizes]
        # (Named after their stage when a dump asks: _node_name.)
        tg.start_soon(self._node, 0, None, p._source, links[0], run.new_scope(True))
        for i, stage in enumerate(nodes, 1):
            tg.start_soon(self._node, i, links[i - 1], stage, links[i], run.new_scope(True))
        return links[-1]

    async def _node(
        self, index: int, rx: _Link | None, what: object, tx: _Link, scope: CancelScope
    ) -> None:
        run = self._run
        ctx = run.ctx
        try:
            with scope:
                try:
                    if ctx is None:
                        await self._body(rx, what, tx)
                    else:
                        # The stage runs bound to ctx: current() is ctx inside it (and
                        # in tasks it starts), and ctx's end cancels it right away.
                        with ctx.scope():
                            await self._body(rx, what, tx)
                except Exception as exc:
                    run.fail(exc)  # (ctx.err() itself: a clean stop)
                else:
                    # e.g. take(n): the nodes before this one have no reader any more.
                    run.cancel_upstream(index)
        except BaseException as exc:
            if not isinstance(exc, get_cancelled_exc_class()):
                run.fail_hard(exc)  # KeyboardInterrupt, SystemExit: raised as itself
                return
            # Cancelled from outside the pipeline (an enclosing scope, which holds the
            # consumer too): the output must not look complete (_end_of_output).
            run.killed = True
            raise
        finally:
            if scope.cancel_called:
                tx.pending.clear()
            tx.close()
            run.retire(scope)

    async def _body(self, rx: _Link | None, what: object, tx: _Link) -> None:
        if rx is None:
            await feed(what, tx, self._run)
        else:
            await run_stage(what, rx, tx, self._run)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        run = self._run
        tg = self._tg
        if tg is None:
            raise RuntimeError(
                "pipeline stream(): __aexit__ without __aenter__ "
                "(use `async with p.stream() as items:`)"
            )
        # (asyncio) The consumer is being cancelled. anyio moves the uncancel count of
        # a cancel scope in a stage task to the task group's scope, and on to the
        # consumer's scopes, when a scope above it is cancelled too; the count of the
        # consumer task then drops, and an asyncio.timeout() or a scope around the
        # stream takes an outside Task.cancel() for its own (a TimeoutError, or a
        # block that ends normally). So: under a cancelled anyio scope, only the task
        # group's scope is cancelled (it reaches every stage, and the stages' scopes,
        # not cancelled, have no count to move); for a native cancellation, the
        # stages' scopes are, and the block waits for the stages itself and leaves the
        # task group with nothing in it, never cancelling its scope.
        native = False
        if isinstance(exc, AsyncioCancelled):
            if current_effective_deadline() == -math.inf:
                tg.cancel_scope.cancel()
                run.stopping = run.group_stops = True
            else:
                native = True
                run.stop()
        else:
            run.stop()
        it = self._it
        if it is not None:
            ended = it.__anext__ is _finished  # run out, or closed by the consumer
            await it.aclose()
            if not ended:  # what it still had is gone: iterating it later must say so
                it.__anext__ = _after_exit
        cancelled: BaseException | None = None  # the consumer's cancellation, re-raised
        if exc is not None and not isinstance(exc, get_cancelled_exc_class()):
            # Wait for the tasks without handing the consumer's exception to the task
            # group, which would wrap it in an ExceptionGroup: it propagates as itself.
            try:
                await tg.__aexit__(None, None, None)
            except get_cancelled_exc_class():
                # The consumer is being cancelled too (trio's task group exit is a
                # checkpoint): its exception wins, as errors win over cancellation in
                # `Group` -- e.g. a stage's KeyboardInterrupt it was handed. The tasks
                # have ended; a cancel scope's cancellation comes again at the next
                # checkpoint (a native Task.cancel() is dropped, as asyncio.TaskGroup
                # drops it when its body raised an error).
                pass
        elif native:
            # (asyncio, see above) Another cancellation meanwhile is counted and comes
            # out with this one.
            await _wait_for(run)
            cancelled = exc
            try:
                await tg.__aexit__(None, None, None)
            except AsyncioCancelled:
                pass  # (one more: it comes out as the consumer's, below)
        elif exc is not None:
            # A cancellation: the task group must see it (its cancel-scope accounting),
            # but it is not ours to swallow -- our tasks never cancel the group's own
            # scope -- so it goes on to the scope that cancelled the consumer, unless
            # a stage failed first (below).
            try:
                await tg.__aexit__(exc_type, exc, tb)
            except get_cancelled_exc_class() as e:
                cancelled = e
        else:
            await tg.__aexit__(None, None, None)
        # A stage's KeyboardInterrupt or SystemExit wins over the consumer's own
        # exception or cancellation, as it would in a task group.
        fatal = run.fatal()
        if fatal is not None:
            raise fatal  # (out of any except block: its own __context__ is kept)
        if exc is not None and cancelled is None:
            err = run.error
            if err is not None and not run.delivered:
                # The consumer's exception propagates, as itself; a stage's error it
                # never read is named on it rather than dropped without a trace.
                run.delivered = True
                # (Not when both raised one object: nothing to name. Nor on a context's
                # err(): one object every task of that context raises.)
                if err is not exc and not isinstance(exc, Canceled | DeadlineExceeded):
                    try:
                        text = str(err)
                    except Exception:
                        text = "<exception str() failed>"
                    note = (
                        f"(asyncgo: a stage of this pipeline also failed, with "
                        f"{type(err).__qualname__}: {text}; the consumer's error propagates)"
                    )
                    # (Once: the consumer's error may be shared, a once_value's say.)
                    if note not in getattr(exc, "__notes__", ()):
                        exc.add_note(note)
            return False
        # A stage's error not yet seen, also over the consumer's cancellation (errors
        # win over cancellation, as in `Group`: one that happened is never dropped).
        if run.error is not None and not run.delivered:
            run.delivered = True
            raise run.error
        if cancelled is not None:
            try:
                raise cancelled
            finally:
                del cancelled, exc  # this frame is in its traceback
        return False

    # -- the consumer's side: async generators, no task group or scope inside -------

    async def _batches(self) -> AsyncGenerator[list[T], None]:
        """The output, a list at a time (for `collect`, `run` and nested pipelines)."""
        link = self._last
        assert link is not None
        run = self._run
        ctx = run.ctx
        while True:
            if run.stopping or (ctx is not None and ctx.err() is not None):
                await self._end_of_output()
                return
            batch = await link.next_batch()
            if batch is None:
                await self._end_of_output()
                return
            yield batch

    async def _end_of_output(self) -> None:
        """The output ends here: raise why, if it did not simply run out."""
        run = self._run
        exc = run.outcome()
        if exc is not None:
            raise exc
        if run.killed:
            # A scope enclosing the whole stream was cancelled: the stages were cut
            # short, and the consumer is cancelled too. Take that cancellation now
            # rather than end as if the output were complete.
            await checkpoint()


@final
class _Output(Generic[T]):
    """What ``async with p.stream() as items`` gives: the output, item by item.

    Cancellation-safe like a channel receive (DESIGN.md, Principle 2): a cancelled
    ``await items.__anext__()`` has taken no item, and the next call returns the item
    that would have come next. An async generator cannot offer that -- an exception
    thrown in at its ``await`` finishes it -- so this is a class; but ``async for``
    over a class's ``async def __anext__`` costs a coroutine per item, so the hot
    path is still a generator:

    ``__anext__`` is an instance slot, normally the ``__anext__`` of an inner async
    generator (`_items`) that yields the items of a batch (no await: nothing can be
    thrown in there) and whose only await is the receive of the next batch, at
    which point no item is in hand. If that receive is interrupted, nothing was
    taken (`Chan.recv_ok` is cancellation-safe); the generator is finished by the
    exception, and the slot now points at `_restart`, which resumes with a fresh
    generator. Once the output has ended (or raised), ``__anext__`` raises
    `StopAsyncIteration`, like a finished generator; once the ``stream()`` block
    has exited before it ended, `RuntimeError` (what it had not delivered is gone).
    """

    __slots__ = ("__anext__", "_gen", "_stream")

    __anext__: Callable[[], Awaitable[T]]

    def __init__(self, stream: _Stream[T]) -> None:
        self._stream = stream
        self._gen = gen = self._items()
        self.__anext__ = gen.__anext__

    def __aiter__(self) -> _Output[T]:
        return self

    def __repr__(self) -> str:
        return f"<pipeline output of {self._stream._pipeline!r}>"

    async def aclose(self) -> None:
        """Stop iterating: further ``__anext__`` calls raise `StopAsyncIteration`."""
        self.__anext__ = _finished
        await self._gen.aclose()

    async def _restart(self) -> T:
        self._gen = gen = self._items()
        self.__anext__ = nxt = gen.__anext__
        return await nxt()

    async def _items(self) -> AsyncGenerator[T, None]:
        stream = self._stream
        link = stream._last
        assert link is not None
        run = stream._run
        ctx = run.ctx
        chan = link.chan
        batch: list[T] | None
        pending: list[T] | None
        while True:
            if run.stopping or (ctx is not None and ctx.err() is not None):
                break
            if not len(chan):
                pending = link.pending
                if pending and not link.sending:
                    batch = pending.copy()
                    pending.clear()
                    for item in batch:
                        yield item
                    continue
                link.hungry = True
            batch = pending = None  # (no old items kept while the next are awaited)
            try:
                batch, ok = await chan.recv_ok()
            except BaseException:
                # Cancelled (or interrupted) with nothing taken: the next call
                # resumes here, in a new generator (this one is finished).
                self.__anext__ = self._restart
                raise
            if not ok:
                break
            for item in batch:  # type: ignore[union-attr]  # ok: a list
                yield item
        # Cut short by a cancellation from outside: the output did not end (the block's
        # exit then makes a later __anext__ raise RuntimeError, not StopAsyncIteration).
        self.__anext__ = self._restart if run.killed else _finished
        await stream._end_of_output()


async def _finished() -> Any:
    raise StopAsyncIteration


async def _after_exit() -> Any:
    raise RuntimeError(
        "pipeline output iterated after its stream() block exited, before it ended: "
        "the pipeline stopped there and the items it had not delivered are gone; "
        "iterate inside `async with p.stream() as items:` (or use collect())"
    )


def _node_name(f: FrameType) -> str:
    """A stage task's name in a task dump: what it runs (`_backend._tasks.TASK_NAMERS`)."""
    index = f.f_locals.get("index")
    what = describe(f.f_locals.get("what"))
    return f"pipeline source: {what}" if index == 0 else f"pipeline stage {index}: {what}"


TASK_NAMERS[_Stream._node.__code__] = _node_name

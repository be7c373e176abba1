"""Go's own context tests (src/context/x_test.go, context_test.go) and examples
(example_test.go), ported to asyncgo.

Each test names the Go test it ports. The Go API maps as DESIGN.md "Context" and
docs/context.md say: ``WithCancel`` -> `with_cancel`, ``Cause(ctx)`` ->
``ctx.cause()``, ``<-ctx.Done()`` -> ``await ctx.wait()`` or ``select``, and so on.
Go's ``otherContext`` (a context type not defined by the package, to take the slow
paths) has no asyncgo analogue -- `Context` is final -- so those variants wrap the
context in `with_value` / `without_cancel` instead, the other kinds of context that
are not cancellation nodes.

Where Go sleeps a short duration and bounds a wait by a very long one, the real-clock
tests here use a 1 ms deadline and a generous `anyio.fail_after` bound (never an
upper bound on wall-clock time); the ``TestMockClock`` class runs the timing tests
on trio's ``MockClock``, where every time is exact.

Not ported (Go-runtime specific, or no asyncgo counterpart):

* TestAllocs: Go allocation counts (asyncgo's costs are in benchmarks/bench_context.py).
* TestCustomContextGoroutines: reads the runtime's goroutine counter.
* TestCustomContextPropagation, TestCustomContextCause, the TestCustomContextAfterFunc*
  tests (afterfunc_test.go): user-defined Context types; asyncgo's `Context` is final.
* The String() checks of TestBackground, TestTODO, TestWithCancel, TestDeadline,
  TestValues, testLayers: asyncgo's ``repr`` is its own format, not Go's.
* TestAfterFuncCalledAsynchronously: Go runs ``f`` in a goroutine of its own; asyncgo
  documents that ``fn`` runs synchronously inside the cancellation (structured
  concurrency has no fire-and-forget task). Ported as the documented analogue: the
  blocking work is handed to a task, and ``cancel()`` returns without waiting for it.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from asyncgo import (
    Canceled,
    Chan,
    ChanClosed,
    Cond,
    Context,
    DeadlineExceeded,
    WouldBlock,
    after_func,
    background,
    recv,
    select,
    send,
    with_cancel,
    with_cancel_cause,
    with_deadline,
    with_timeout,
    with_timeout_cause,
    with_value,
    without_cancel,
)
from asyncgo import time as gotime

pytestmark = pytest.mark.anyio

SHORT = 0.001  # Go: shortDuration
VERY_LONG = 1000 * 3600.0  # Go: veryLongDuration
# Seeded, not random per run: pytest-xdist workers must collect the same test ids, and a
# failure names its seed. Go picks fresh ones per run (rand.Int63()).
SEEDS = [2225718754, 1592830946, 2812508052]
QUIESCENT = 30.0  # Go: quiescent(t) -- a bound on waiting, never a timing assertion


def is_done(ctx: Context) -> bool:
    """Go: ``select { case <-ctx.Done(): true; default: false }``."""
    try:
        ctx.done().recv_nowait()
    except WouldBlock:
        return False
    except ChanClosed:
        return True
    raise AssertionError("a done channel never delivers a value")


async def blocks(ctx: Context) -> bool:
    """Go: ``select { case x := <-c.Done(): t.Errorf(...); default: }`` -- via select."""
    r = await select(recv(ctx.done()), default=True)
    return r.index == -1


async def wait_deadline(ctx: Context, bound: float = QUIESCENT) -> None:
    """Go: testDeadline -- ctx must end by itself, with DeadlineExceeded."""
    with anyio.fail_after(bound):
        await ctx.wait()
    assert type(ctx.err()) is DeadlineExceeded
    assert ctx.cause() is ctx.err()


# -- TestBackground, TestTODO ---------------------------------------------------------------


async def test_background() -> None:
    c = background()
    assert c is not None
    assert await blocks(c)
    assert c.err() is None and c.cause() is None and c.deadline() is None
    assert c.value("anything") is None
    assert c is background()  # Go: TODO() is the same kind of root


# -- TestWithCancel -------------------------------------------------------------------------


async def test_with_cancel() -> None:
    c1, cancel = with_cancel(background())
    o = with_value(c1, "other", True)  # Go: otherContext{c1}
    c2, _ = with_cancel(o)
    contexts = [c1, o, c2]
    for c in contexts:
        assert c.done() is not None
        assert c.err() is None
        assert await blocks(c)
    cancel()  # Go: should propagate synchronously
    for c in contexts:
        assert is_done(c)
        assert type(c.err()) is Canceled
    assert c2.err() is c1.err()  # one cancellation, one error value


# -- XTestParentFinishesChild ---------------------------------------------------------------


def kids(ctx: Context) -> set[Context]:
    """The live cancellable children registered with *ctx* (Go: ``cancelCtx.children``)."""
    return {k for k in (r() for r in (ctx._kids or ())) if k is not None}


async def test_parent_finishes_child() -> None:
    # parent -> cancel_child; parent -> value_child -> timer_child
    parent, cancel = with_cancel(background())
    cancel_child, stop1 = with_cancel(parent)
    value_child = with_value(parent, "key", "value")
    timer_child, stop2 = with_timeout(value_child, 10000 * 3600.0)
    for c in (parent, cancel_child, timer_child, value_child):
        assert await blocks(c)
    # The parent's children are the two cancellable ones (the value context is not a node).
    assert kids(parent) == {cancel_child, timer_child}
    assert cancel_child._up is parent and timer_child._up is parent

    cancel()
    assert not kids(parent)  # Go: pc.cancel didn't clear pc.children
    for c in (parent, cancel_child, value_child, timer_child):
        assert is_done(c)
        assert type(c.err()) is Canceled
    # A context derived from a cancelled parent is done at once.
    precanceled = with_value(parent, "key", "value")
    assert is_done(precanceled)
    assert type(precanceled.err()) is Canceled
    stop1()
    stop2()


# -- XTestChildFinishesFirst ----------------------------------------------------------------


async def test_child_finishes_first() -> None:
    cancelable, stop = with_cancel(background())
    for parent in (background(), cancelable):
        child, cancel = with_cancel(parent)
        assert await blocks(parent) and await blocks(child)
        if parent is cancelable:
            assert kids(parent) == {child}
            assert child._up is parent
        else:
            assert child._up is None  # Go: parentCancelCtx(Background) is not ok
        cancel()
        if parent is cancelable:
            assert not kids(parent)  # Go: child's cancel didn't remove self
        assert is_done(child)
        assert type(child.err()) is Canceled
        assert await blocks(parent)
        assert parent.err() is None
    stop()


# -- TestDeadline, TestTimeout, TestCanceledTimeout -----------------------------------------


async def test_deadline() -> None:
    c, _ = with_deadline(background(), anyio.current_time() + SHORT)
    await wait_deadline(c)

    c, _ = with_deadline(background(), anyio.current_time() + SHORT)
    await wait_deadline(with_value(c, "other", 1))  # WithDeadline+otherContext

    c, _ = with_deadline(background(), anyio.current_time() + SHORT)
    o = with_value(c, "other", 1)
    c, _ = with_deadline(o, anyio.current_time() + VERY_LONG)  # +WithDeadline
    await wait_deadline(c)

    c, _ = with_deadline(background(), anyio.current_time() - SHORT)  # in the past
    await wait_deadline(c)

    c, _ = with_deadline(background(), anyio.current_time())  # now
    await wait_deadline(c)


async def test_timeout() -> None:
    c, _ = with_timeout(background(), SHORT)
    await wait_deadline(c)

    c, _ = with_timeout(background(), SHORT)
    await wait_deadline(with_value(c, "other", 1))

    c, _ = with_timeout(background(), SHORT)
    c, _ = with_timeout(with_value(c, "other", 1), VERY_LONG)
    await wait_deadline(c)


async def test_canceled_timeout() -> None:
    c, _ = with_timeout(background(), 1.0)
    o = with_value(c, "other", 1)
    c, cancel = with_timeout(o, VERY_LONG)
    cancel()  # Go: should propagate synchronously
    assert is_done(c)
    assert type(c.err()) is Canceled


# -- TestValues -----------------------------------------------------------------------------


class Key1(int):
    """Go: ``type key1 int``."""


class Key2(int):
    """Go: ``type key2 int``."""


k1 = Key1(1)
k2 = Key2(1)  # same int as k1, different type
k3 = Key2(3)  # same type as k2, different int


async def test_values() -> None:
    def check(c: Context, v1: str, v2: str, v3: str) -> None:
        for key, want in ((k1, v1), (k2, v2), (k3, v3)):
            got = c.value(key)
            if want:
                assert got == want, (key, got, want)
            else:
                assert not isinstance(got, str), (key, got)

    c0 = background()
    check(c0, "", "", "")
    c1 = with_value(background(), k1, "c1k1")
    check(c1, "c1k1", "", "")
    c2 = with_value(c1, k2, "c2k2")
    check(c2, "c1k1", "c2k2", "")
    c3 = with_value(c2, k3, "c3k3")
    check(c3, "c1k1", "c2k2", "c3k3")
    c4 = with_value(c3, k1, None)
    check(c4, "", "c2k2", "c3k3")
    assert c4.value(k1, "default") is None  # bound to None: not missing

    # Go's otherContext wrappers: the other kinds of context pass values through.
    o0 = without_cancel(background())
    check(o0, "", "", "")
    o1 = without_cancel(with_value(background(), k1, "c1k1"))
    check(o1, "c1k1", "", "")
    o2 = with_value(o1, k2, "o2k2")
    check(o2, "c1k1", "o2k2", "")
    o3, cancel = with_cancel(c4)
    check(o3, "", "c2k2", "c3k3")
    o4 = with_value(o3, k3, None)
    check(o4, "", "c2k2", "")
    cancel()
    check(o3, "", "c2k2", "c3k3")  # values survive cancellation


# -- TestSimultaneousCancels ----------------------------------------------------------------


def context_tree(size: int) -> dict[Context, Any]:
    """Go: a tree of at least *size* contexts, four children each, breadth first."""
    root, cancel = with_cancel(background())
    m: dict[Context, Any] = {root: cancel}
    q = [root]
    while q and len(m) < size:
        parent = q.pop(0)
        for _ in range(4):
            ctx, cancel = with_cancel(parent)
            m[ctx] = cancel
            q.append(ctx)
    return m


async def test_simultaneous_cancels_from_threads() -> None:
    m = context_tree(100)
    cancels = list(m.values())
    random.shuffle(cancels)
    barrier = threading.Barrier(len(cancels))

    def run(cancel: Any) -> None:
        barrier.wait(QUIESCENT)  # every thread cancels at the same moment
        cancel()

    threads = [threading.Thread(target=run, args=(c,)) for c in cancels]
    for t in threads:
        t.start()
    contexts = list(m)
    random.shuffle(contexts)
    with anyio.fail_after(QUIESCENT):
        for ctx in contexts:  # wait on all the contexts in a random order
            await ctx.wait()
        for t in threads:  # wait for all the cancel functions to return
            await anyio.to_thread.run_sync(t.join)
    for ctx in contexts:
        assert type(ctx.err()) is Canceled


async def test_simultaneous_cancels_from_tasks() -> None:
    m = context_tree(100)
    start = anyio.Event()

    async def run(cancel: Any) -> None:
        await start.wait()
        cancel()

    with anyio.fail_after(QUIESCENT):
        async with anyio.create_task_group() as tg:
            cancels = list(m.values())
            random.shuffle(cancels)
            for cancel in cancels:
                tg.start_soon(run, cancel)
            await anyio.wait_all_tasks_blocked()
            start.set()
            contexts = list(m)
            random.shuffle(contexts)
            for ctx in contexts:
                await ctx.wait()
    assert all(type(ctx.err()) is Canceled for ctx in m)


# -- TestInterlockedCancels -----------------------------------------------------------------


async def test_interlocked_cancels() -> None:
    parent, cancel_parent = with_cancel(background())
    child, cancel_child = with_cancel(parent)

    async def follow() -> None:
        await parent.wait()
        cancel_child()

    with anyio.fail_after(QUIESCENT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.wait_all_tasks_blocked()
            cancel_parent()
            await child.wait()
    assert child.err() is parent.err()


async def test_interlocked_cancels_in_after_func() -> None:
    # The same interlock with no task in between: the child is cancelled from inside
    # the parent's cancellation (an after_func runs while it is being delivered).
    parent, cancel_parent = with_cancel(background())
    child, cancel_child = with_cancel(parent)
    after_func(parent, cancel_child)
    cancel_parent()
    assert is_done(child)
    assert child.err() is parent.err()


# -- TestLayersCancel, TestLayersTimeout ----------------------------------------------------


class Value:
    """Go: ``type value int`` used through a pointer: a key equal only to itself."""


def build_layers(
    seed: int, timeout: float
) -> tuple[Context, list[Value], list[Any], random.Random]:
    r = random.Random(seed)
    vals: list[Value] = []
    cancels: list[Any] = []
    timers = 0
    ctx = background()
    i = 0
    while i < 30 or timers == 0 or not cancels or not vals:
        k = r.randrange(3)
        if k == 0:
            v = Value()
            ctx = with_value(ctx, v, v)
            vals.append(v)
        elif k == 1:
            ctx, cancel = with_cancel(ctx)
            cancels.append(cancel)
        else:
            ctx, cancel = with_timeout(ctx, timeout)
            cancels.append(cancel)
            timers += 1
        i += 1
    return ctx, vals, cancels, r


def check_values(ctx: Context, vals: list[Value], seed: int) -> None:
    for key in vals:
        assert ctx.value(key) is key, f"seed={seed}"


@pytest.mark.parametrize("seed", SEEDS)
async def test_layers_cancel(seed: int) -> None:
    ctx, vals, cancels, r = build_layers(seed, VERY_LONG)
    assert await blocks(ctx), f"seed={seed}: ctx should not be canceled yet"
    check_values(ctx, vals, seed)
    cancels[r.randrange(len(cancels))]()
    assert is_done(ctx), f"seed={seed}: ctx should be canceled"
    assert type(ctx.err()) is Canceled
    check_values(ctx, vals, seed)
    for cancel in cancels:
        cancel()


@pytest.mark.parametrize("seed", SEEDS)
async def test_layers_timeout(seed: int) -> None:
    ctx, vals, cancels, _ = build_layers(seed, SHORT)
    check_values(ctx, vals, seed)
    await wait_deadline(ctx)
    check_values(ctx, vals, seed)
    for cancel in cancels:
        cancel()


# -- XTestCancelRemoves ---------------------------------------------------------------------


async def test_cancel_removes() -> None:
    ctx, stop = with_cancel(background())
    assert len(kids(ctx)) == 0
    _, cancel = with_cancel(ctx)
    assert len(kids(ctx)) == 1
    cancel()
    assert len(kids(ctx)) == 0

    ctx2, stop2 = with_cancel(background())
    _, cancel = with_timeout(ctx2, 60 * 60.0)
    assert len(kids(ctx2)) == 1
    cancel()
    assert len(kids(ctx2)) == 0

    ctx3, stop3 = with_cancel(background())
    _, cancel = with_cancel_cause(ctx3)
    assert len(kids(ctx3)) == 1
    cancel(OSError("done"))
    assert len(kids(ctx3)) == 0
    stop()
    stop2()
    stop3()


# -- TestWithCancelCanceledParent, TestWithCancelSimultaneouslyCanceledParent ---------------


async def test_with_cancel_canceled_parent() -> None:
    parent, pcancel = with_cancel_cause(background())
    cause = RuntimeError("Because!")
    pcancel(cause)
    for c, _ in (
        with_cancel(parent),
        with_cancel_cause(parent),
        with_timeout(parent, VERY_LONG),
        with_deadline(parent, anyio.current_time() + VERY_LONG),
    ):
        assert is_done(c), "child not done immediately upon construction"
        assert type(c.err()) is Canceled
        assert c.cause() is cause


async def test_with_cancel_simultaneously_canceled_parent() -> None:
    # Cancel the parent from another thread while a child is being created.
    for _ in range(100):
        parent, pcancel = with_cancel_cause(background())
        cause = RuntimeError("Because!")
        t = threading.Thread(target=pcancel, args=(cause,))
        t.start()
        c, _ = with_cancel(parent)
        with anyio.fail_after(QUIESCENT):
            await c.wait()
        assert type(c.err()) is Canceled
        assert c.cause() is cause
        t.join()


# -- TestWithValueChecksKey, TestInvalidDerivedFail -----------------------------------------


async def test_with_value_checks_key() -> None:
    with pytest.raises(TypeError):
        with_value(background(), bytearray(b"foo"), "bar")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nil key"):
        with_value(background(), None, "bar")  # type: ignore[arg-type]


async def test_invalid_derived_fail() -> None:
    bad: Any = None
    with pytest.raises(TypeError):
        with_cancel(bad)
    with pytest.raises(TypeError):
        with_deadline(bad, anyio.current_time() + SHORT)
    with pytest.raises(TypeError):
        with_value(bad, "foo", "bar")
    with pytest.raises(TypeError):
        with_timeout(bad, SHORT)
    with pytest.raises(TypeError):
        with_cancel_cause(bad)
    with pytest.raises(TypeError):
        without_cancel(bad)
    with pytest.raises(TypeError):
        after_func(bad, lambda: None)


# -- TestDeadlineExceededSupportsTimeout ----------------------------------------------------


async def test_deadline_exceeded_supports_timeout() -> None:
    assert issubclass(DeadlineExceeded, TimeoutError)  # Go: Timeout() == true
    assert not issubclass(Canceled, TimeoutError)
    c, _ = with_timeout(background(), 0)
    assert isinstance(c.err(), TimeoutError)
    assert str(c.err()) == "context deadline exceeded"
    c2, cancel = with_cancel(background())
    cancel()
    assert not isinstance(c2.err(), TimeoutError)
    assert str(c2.err()) == "context canceled"


# -- TestCause ------------------------------------------------------------------------------

parent_cause = RuntimeError("parentCause")
child_cause = RuntimeError("childCause")
finished_early = RuntimeError("finishedEarly")
too_slow = RuntimeError("tooSlow")
FOREVER = 1e6


def _cancelled(make: Any, *args: Any) -> Context:
    ctx, cancel = make(*args)
    cancel()
    return ctx


def _cause_parent_before_child() -> Context:
    ctx, cancel_parent = with_cancel_cause(background())
    ctx, cancel_child = with_cancel_cause(ctx)
    cancel_parent(parent_cause)
    cancel_child(child_cause)
    return ctx


def _cause_parent_after_child() -> Context:
    ctx, cancel_parent = with_cancel_cause(background())
    ctx, cancel_child = with_cancel_cause(ctx)
    cancel_child(child_cause)
    cancel_parent(parent_cause)
    return ctx


def _cause_parent_before_nil() -> Context:
    ctx, cancel_parent = with_cancel_cause(background())
    ctx, cancel_child = with_cancel(ctx)
    cancel_parent(parent_cause)
    cancel_child()
    return ctx


def _cause_parent_after_nil() -> Context:
    ctx, cancel_parent = with_cancel_cause(background())
    ctx, cancel_child = with_cancel(ctx)
    cancel_child()
    cancel_parent(parent_cause)
    return ctx


def _cause_child_after_nil() -> Context:
    ctx, cancel_parent = with_cancel(background())
    ctx, cancel_child = with_cancel_cause(ctx)
    cancel_parent()
    cancel_child(child_cause)
    return ctx


def _cause_child_before_nil() -> Context:
    ctx, cancel_parent = with_cancel(background())
    ctx, cancel_child = with_cancel_cause(ctx)
    cancel_child(child_cause)
    cancel_parent()
    return ctx


def _cause_with_cancel_cause(cause: BaseException | None) -> Context:
    ctx, cancel = with_cancel_cause(background())
    cancel(cause)
    return ctx


def _timeout_stacked(seconds: float) -> Context:
    ctx, cancel = with_cancel_cause(background())
    ctx, _ = with_timeout(ctx, seconds)
    cancel(finished_early)
    return ctx


def _timeout_cause_stacked(seconds: float) -> Context:
    ctx, cancel = with_cancel_cause(background())
    ctx, _ = with_timeout_cause(ctx, seconds, too_slow)
    cancel(finished_early)
    return ctx


def _without_cancel_canceled() -> Context:
    ctx, cancel = with_cancel_cause(background())
    ctx = without_cancel(ctx)
    cancel(finished_early)
    return ctx


def _without_cancel_timeout() -> Context:
    ctx, cancel = with_timeout(background(), 0)
    ctx = without_cancel(ctx)
    cancel()
    return ctx


# (name, make ctx, err type or None, cause: "err" = the err itself, an exception, or None)
CAUSE_CASES: list[tuple[str, Any, Any, Any]] = [
    ("Background", background, None, None),
    ("WithCancel", lambda: _cancelled(with_cancel, background()), Canceled, "err"),
    ("WithCancelCause", lambda: _cause_with_cancel_cause(parent_cause), Canceled, parent_cause),
    ("WithCancelCause nil", lambda: _cause_with_cancel_cause(None), Canceled, "err"),
    ("parent cause before child", _cause_parent_before_child, Canceled, parent_cause),
    ("parent cause after child", _cause_parent_after_child, Canceled, child_cause),
    ("parent cause before nil", _cause_parent_before_nil, Canceled, parent_cause),
    ("parent cause after nil", _cause_parent_after_nil, Canceled, "err"),
    ("child cause after nil", _cause_child_after_nil, Canceled, "err"),
    ("child cause before nil", _cause_child_before_nil, Canceled, child_cause),
    ("WithTimeout", lambda: _cancelled(with_timeout, background(), 0), DeadlineExceeded, "err"),
    (
        "WithTimeout canceled",
        lambda: _cancelled(with_timeout, background(), FOREVER),
        Canceled,
        "err",
    ),
    ("WithTimeout stacked", lambda: _timeout_stacked(0), DeadlineExceeded, "err"),
    ("WithTimeout stacked canceled", lambda: _timeout_stacked(FOREVER), Canceled, finished_early),
    (
        "WithTimeoutCause",
        lambda: _cancelled(with_timeout_cause, background(), 0, too_slow),
        DeadlineExceeded,
        too_slow,
    ),
    (
        "WithTimeoutCause canceled",
        lambda: _cancelled(with_timeout_cause, background(), FOREVER, too_slow),
        Canceled,
        "err",
    ),
    ("WithTimeoutCause stacked", lambda: _timeout_cause_stacked(0), DeadlineExceeded, too_slow),
    (
        "WithTimeoutCause stacked canceled",
        lambda: _timeout_cause_stacked(FOREVER),
        Canceled,
        finished_early,
    ),
    ("WithoutCancel", lambda: without_cancel(background()), None, None),
    ("WithoutCancel canceled", _without_cancel_canceled, None, None),
    ("WithoutCancel timeout", _without_cancel_timeout, None, None),
]


@pytest.mark.parametrize(
    ("make", "err", "cause"), [c[1:] for c in CAUSE_CASES], ids=[c[0] for c in CAUSE_CASES]
)
async def test_cause(make: Any, err: Any, cause: Any) -> None:
    ctx = make()
    if err is None:
        assert ctx.err() is None
    else:
        assert type(ctx.err()) is err
    if cause == "err":
        assert ctx.cause() is ctx.err()
    else:
        assert ctx.cause() is cause


async def test_cause_race() -> None:
    cause = RuntimeError("TestCauseRace")
    ctx, cancel = with_cancel_cause(background())
    t = threading.Thread(target=cancel, args=(cause,))
    t.start()
    with anyio.fail_after(QUIESCENT):
        while True:
            # Poll cause() rather than waiting for done(): it must never be half-set.
            err = ctx.cause()
            if err is not None:
                assert err is cause
                assert type(ctx.err()) is Canceled
                break
            await anyio.sleep(0)
    t.join()


# -- TestWithoutCancel ----------------------------------------------------------------------


async def test_without_cancel() -> None:
    key, value = "key", "value"
    parent, cancel = with_timeout(with_value(background(), key, value), SHORT)
    ctx = without_cancel(parent)
    assert ctx.deadline() is None
    assert ctx.err() is None
    assert ctx.value(key) == value
    await wait_deadline(parent)
    cancel()
    assert ctx.err() is None and ctx.cause() is None
    assert await blocks(ctx)  # Go: a nil Done channel -- never ready
    assert ctx.value(key) == value


# -- TestAfterFunc* -------------------------------------------------------------------------


async def test_after_func_called_after_cancel() -> None:
    ctx, cancel = with_cancel(background())
    donec: Chan[None] = Chan(1)
    stop = after_func(ctx, donec.close)
    await anyio.sleep(SHORT)
    assert not donec.closed, "after_func called before context is done"
    cancel()
    with anyio.fail_after(QUIESCENT):
        await donec.recv_ok()
    assert stop() is False


async def test_after_func_called_after_timeout() -> None:
    ctx, cancel = with_timeout(background(), SHORT)
    donec: Chan[None] = Chan()
    after_func(ctx, donec.close)
    with anyio.fail_after(QUIESCENT):
        assert await donec.recv_ok() == (None, False)
    assert type(ctx.err()) is DeadlineExceeded
    cancel()


async def test_after_func_called_immediately() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    donec: Chan[None] = Chan()
    stop = after_func(ctx, donec.close)
    with anyio.fail_after(QUIESCENT):
        await donec.recv_ok()
    assert stop() is False


async def test_after_func_not_called_after_stop() -> None:
    ctx, cancel = with_cancel(background())
    donec: Chan[None] = Chan()
    stop = after_func(ctx, donec.close)
    assert stop() is True
    cancel()
    await anyio.sleep(SHORT)
    assert not donec.closed, "after_func called after stop"
    assert stop() is False


async def test_after_func_calls_are_independent() -> None:
    # Go: "Multiple calls to AfterFunc on a context operate independently; one does
    # not replace another."
    ctx, cancel = with_cancel(background())
    calls: list[int] = []
    stop1 = after_func(ctx, lambda: calls.append(1))
    after_func(ctx, lambda: calls.append(2))
    stop3 = after_func(ctx, lambda: calls.append(3))
    assert stop1() is True
    cancel()
    assert calls == [2, 3]
    assert stop3() is False


async def test_after_func_on_a_derived_context_at_the_parents_deadline() -> None:
    parent, cancel = with_timeout(background(), SHORT)
    child = with_value(parent, "k", 1)
    grandchild, stop_gc = with_cancel(child)
    calls: list[str] = []
    after_func(child, lambda: calls.append("value child"))
    after_func(grandchild, lambda: calls.append("grandchild"))
    with anyio.fail_after(QUIESCENT):
        await grandchild.wait()
    assert sorted(calls) == ["grandchild", "value child"]
    assert type(grandchild.err()) is DeadlineExceeded
    stop_gc()
    cancel()


async def test_after_func_cancel_does_not_wait_for_the_work() -> None:
    # Go: TestAfterFuncCalledAsynchronously. asyncgo runs fn synchronously inside
    # cancel(), so work that blocks is started as a task: cancel() returns without
    # waiting for it, and the work then blocks until donec is read.
    ctx, cancel = with_cancel(background())
    donec: Chan[int] = Chan()
    async with anyio.create_task_group() as tg:

        async def send() -> None:
            await donec.send(1)  # blocks until donec is read

        stop = after_func(ctx, lambda: tg.start_soon(send))
        cancel()  # returns at once
        assert stop() is False
        with anyio.fail_after(QUIESCENT):
            assert await donec.recv() == 1


async def test_after_func_returning_a_scheduled_task_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tg.start_soon() returns an awaitable handle (anyio >= 4.14), as asyncio's
    # create_task returns a Task: the work is scheduled, nothing is lost, so nothing
    # is reported. A coroutine nobody will run (lambda: fetch()) still is.
    reported: list[Any] = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)
    ran: list[str] = []

    async def work(name: str) -> None:
        ran.append(name)

    ctx, cancel = with_cancel(background())
    async with anyio.create_task_group() as tg:
        after_func(ctx, lambda: tg.start_soon(work, "started"))
        after_func(ctx, lambda: work("never run"))
        cancel()
    assert ran == ["started"]
    assert len(reported) == 1
    assert type(reported[0].exc_value) is TypeError
    assert "coroutine" in str(reported[0].exc_value)


async def test_after_func_rejects_async_functions() -> None:
    async def f() -> None:
        pass

    ctx, cancel = with_cancel(background())
    with pytest.raises(TypeError, match="async"):
        after_func(ctx, f)
    cancel()


async def test_after_func_on_background_never_runs() -> None:
    # Go: AfterFunc(Background(), f) never calls f; stop() reports that it stopped it.
    calls: list[int] = []
    stop = after_func(background(), lambda: calls.append(1))
    await anyio.sleep(SHORT)
    assert calls == []
    assert stop() is True
    assert stop() is False


# -- the timing tests again, on trio's MockClock (exact virtual time) -----------------------


class TestMockClock:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return "trio", {"clock": MockClock(autojump_threshold=0)}

    async def test_deadline(self) -> None:
        t0 = anyio.current_time()
        c, _ = with_deadline(background(), t0 + SHORT)
        assert c.deadline() == t0 + SHORT
        await wait_deadline(c)
        assert anyio.current_time() == t0 + SHORT

        t0 = anyio.current_time()
        c, _ = with_deadline(background(), t0 + SHORT)
        c, _ = with_deadline(with_value(c, "other", 1), t0 + VERY_LONG)
        assert c.deadline() == t0 + SHORT  # never later than the parent's
        await wait_deadline(c)
        assert anyio.current_time() == t0 + SHORT

        t0 = anyio.current_time()
        for when in (t0 - SHORT, t0):  # in the past, now: done at once
            c, _ = with_deadline(background(), when)
            assert is_done(c)
            await wait_deadline(c)
        assert anyio.current_time() == t0

    async def test_timeout(self) -> None:
        t0 = anyio.current_time()
        c, _ = with_timeout(background(), VERY_LONG)
        inner, _ = with_timeout(c, 2 * VERY_LONG)
        await wait_deadline(inner, bound=10 * VERY_LONG)  # virtual time
        assert anyio.current_time() == t0 + VERY_LONG
        assert type(c.err()) is DeadlineExceeded

    @pytest.mark.parametrize("seed", SEEDS)
    async def test_layers_timeout(self, seed: int) -> None:
        t0 = anyio.current_time()
        ctx, vals, cancels, _ = build_layers(seed, 7.0)
        assert await blocks(ctx)
        check_values(ctx, vals, seed)
        await wait_deadline(ctx)
        assert anyio.current_time() == t0 + 7.0
        check_values(ctx, vals, seed)
        for cancel in cancels:
            cancel()

    async def test_after_func_called_after_timeout(self) -> None:
        t0 = anyio.current_time()
        ctx, cancel = with_timeout(background(), 5.0)
        when: list[float] = []
        after_func(ctx, lambda: when.append(anyio.current_time()))
        await anyio.sleep(4.999)
        assert when == []
        await anyio.sleep(1.0)
        assert when == [t0 + 5.0]
        cancel()

    async def test_after_func_not_called_after_stop_at_the_deadline(self) -> None:
        ctx, cancel = with_timeout(background(), 5.0)
        calls: list[int] = []
        stop = after_func(ctx, lambda: calls.append(1))
        assert stop() is True
        await ctx.wait()
        assert calls == []
        assert stop() is False
        cancel()


# -- Go's Done() contract: "Successive calls to Done return the same value" -------------------


async def test_done_returns_the_same_value_every_time() -> None:
    c, cancel = with_cancel(background())
    assert c.done() is c.done()
    assert with_value(c, "k", 1).done() is c.done()
    cancel()
    assert c.done() is c.done()
    # Contexts that can never be done: Go returns nil every time (and nil == nil).
    bg = background()
    assert bg.done() is bg.done()
    never = without_cancel(c)
    assert never.done() is never.done()
    assert with_value(bg, "k", 1).done() is bg.done()
    assert await blocks(bg)
    with anyio.move_on_after(SHORT):  # a waiter parks on it and leaves no trace
        await bg.wait()
    assert await blocks(bg)


def test_never_done_channel_is_per_event_loop() -> None:
    # The shared never-closed channel must not bind background() to the first loop
    # that waited on it: each anyio.run() gets one that it can wait on.
    async def wait_briefly() -> int:
        with anyio.move_on_after(SHORT):
            await background().wait()
        return id(background().done())

    for backend in ("asyncio", "trio", "asyncio"):
        anyio.run(wait_briefly, backend=backend)


# -- example_test.go --------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")
async def test_example_with_cancel() -> None:
    # gen's task returns when ctx is cancelled: nothing is left running.
    out: list[int] = []
    async with anyio.create_task_group() as tg:

        def gen(ctx: Context) -> Chan[int]:
            dst: Chan[int] = Chan()

            async def run() -> None:
                n = 1
                while True:
                    r = await select(recv(ctx.done()), send(dst, n))
                    if r.index == 0:
                        return  # returning not to leak the task
                    n += 1

            tg.start_soon(run)
            return dst

        with with_cancel(background()) as ctx:  # Go: defer cancel()
            async for n in gen(ctx):
                out.append(n)
                if n == 5:
                    break
    assert out == [1, 2, 3, 4, 5]


async def test_example_with_deadline() -> None:
    ctx, cancel = with_deadline(background(), anyio.current_time() + 0.05)
    try:
        r = await select(recv(gotime.after(QUIESCENT)), recv(ctx.done()))
        assert r.index == 1, "overslept"
        assert str(ctx.err()) == "context deadline exceeded"
    finally:
        cancel()


async def test_example_with_timeout() -> None:
    ctx, cancel = with_timeout(background(), 0.05)
    try:
        r = await select(recv(gotime.after(QUIESCENT)), recv(ctx.done()))
        assert r.index == 1, "overslept"
        assert str(ctx.err()) == "context deadline exceeded"
    finally:
        cancel()


async def test_example_with_value() -> None:
    class FavContextKey(str):
        """Go: ``type favContextKey string``."""

    def f(ctx: Context, k: FavContextKey) -> str:
        v = ctx.value(k)
        if v is not None:
            return f"found value: {v}"
        return f"key not found: {k}"

    k = FavContextKey("language")
    ctx = with_value(background(), k, "Go")
    assert f(ctx, k) == "found value: Go"
    assert f(ctx, FavContextKey("color")) == "key not found: color"
    assert ctx.value("language") is None  # a plain str is another type of key


@pytest.mark.usefixtures("no_leaks")
async def test_example_after_func_cond() -> None:
    # Go locks cond.L in the AfterFunc so that the Broadcast cannot slip in before
    # Wait. asyncgo's fn runs on the event loop between two steps of the waiting task
    # -- never between "unlock" and "park" inside cond.wait() -- so no lock is needed
    # (and fn, being sync, could not take an async lock anyway).
    async def wait_on_cond(ctx: Context, cond: Cond, condition_met: Any) -> Exception | None:
        stop = after_func(ctx, cond.broadcast)
        try:
            while not condition_met():
                await cond.wait()
                if ctx.err() is not None:
                    return ctx.err()
            return None
        finally:
            stop()

    cond = Cond()
    results: list[Exception | None] = []

    async def waiter() -> None:
        with with_timeout(background(), SHORT) as ctx:
            async with cond:
                results.append(await wait_on_cond(ctx, cond, lambda: False))

    with anyio.fail_after(QUIESCENT):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(waiter)
    assert [str(e) for e in results] == ["context deadline exceeded"] * 4


async def test_example_after_func_connection() -> None:
    # Go stops a blocking conn.Read from an AfterFunc by setting a read deadline;
    # here the blocking read is in a cancel scope the after_func cancels.
    send_stream, receive_stream = anyio.create_memory_object_stream[bytes](1)

    async def read_from_conn(ctx: Context) -> bytes:
        with anyio.CancelScope() as scope:
            stop = after_func(ctx, scope.cancel)
            try:
                return await receive_stream.receive()
            finally:
                if not stop():  # the after_func ran: report ctx.err()
                    err = ctx.err()
                    assert err is not None
                    raise err
        raise AssertionError("unreachable: the read returned or the scope raised")

    with anyio.fail_after(QUIESCENT):
        with with_timeout(background(), SHORT) as ctx:
            with pytest.raises(DeadlineExceeded, match="context deadline exceeded"):
                await read_from_conn(ctx)
        with with_timeout(background(), VERY_LONG) as ctx:
            await send_stream.send(b"data")
            assert await read_from_conn(ctx) == b"data"
    send_stream.close()
    receive_stream.close()


async def test_example_after_func_merge() -> None:
    def merge_cancel(ctx: Context, cancel_ctx: Context) -> tuple[Context, Any]:
        """A context with ctx's values, cancelled when ctx or cancel_ctx is."""
        merged, cancel = with_cancel_cause(ctx)
        stop = after_func(cancel_ctx, lambda: cancel(cancel_ctx.cause()))

        def cancel_merged() -> None:
            stop()
            cancel(Canceled())

        return merged, cancel_merged

    ctx1, cancel1 = with_cancel_cause(with_value(background(), "k", "v"))
    ctx2, cancel2 = with_cancel_cause(background())
    merged, merged_cancel = merge_cancel(ctx1, ctx2)
    cause = RuntimeError("ctx2 canceled")
    cancel2(cause)
    with anyio.fail_after(QUIESCENT):
        await merged.wait()
    assert merged.cause() is cause
    assert str(merged.cause()) == "ctx2 canceled"
    assert merged.value("k") == "v"
    merged_cancel()
    cancel1(RuntimeError("ctx1 canceled"))
    assert merged.cause() is cause  # the first cancellation wins

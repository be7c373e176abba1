"""sync.Semaphore (issue #4): Go's x/sync/semaphore semantics, ctx, cancellation, misuse.

Racy states are reached with ``anyio.wait_all_tasks_blocked()``; nothing here
asserts wall-clock time. The ctx tests use a stand-in built from a `Chan` (any
object with ``done()`` -> a RecvChan closed when done, and ``err()``), and
asyncgo's own `Context` too once it exists.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncgo
from asyncgo import Canceled, Chan, DeadlineExceeded, RecvChan
from asyncgo.sync import Semaphore

pytestmark = pytest.mark.anyio


class FakeCtx:
    """The part of a Context that Semaphore.acquire uses."""

    def __init__(self) -> None:
        self._done: Chan[None] = Chan()
        self._err: BaseException | None = None

    def done(self) -> RecvChan[None]:
        return self._done.recv_only()

    def err(self) -> BaseException | None:
        return self._err

    def cancel(self, err: BaseException | None = None) -> None:
        if self._err is None:
            self._err = err if err is not None else Canceled()
            self._done.close()


def _real_ctx() -> tuple[Any, Callable[[], None]]:
    from asyncgo import background, with_cancel

    ctx, cancel = with_cancel(background())
    return ctx, cancel


def _fake_ctx() -> tuple[Any, Callable[[], None]]:
    ctx = FakeCtx()
    return ctx, ctx.cancel


HAVE_CONTEXT = hasattr(asyncgo, "with_cancel")
CTX_KINDS = [
    pytest.param(_fake_ctx, id="fake-ctx"),
    pytest.param(
        _real_ctx,
        id="context",
        marks=pytest.mark.skipif(not HAVE_CONTEXT, reason="no asyncgo.with_cancel yet"),
    ),
]


async def acquire_and_note(sem: Semaphore, n: int, name: str, order: list[str]) -> None:
    await sem.acquire(n)
    order.append(name)


async def acquire_in_scope(
    sem: Semaphore, n: int, out: list[str], *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        await sem.acquire(n)
        out.append("acquired")


# -- basics -------------------------------------------------------------------------------


async def test_acquire_release_and_try_acquire() -> None:
    sem = Semaphore(3)
    assert sem.size == 3
    await sem.acquire(2)
    assert sem.try_acquire(1)
    assert not sem.try_acquire(1)
    sem.release(3)
    assert sem.try_acquire(3)
    sem.release(3)


async def test_default_weight_and_async_with() -> None:
    sem = Semaphore(1)
    async with sem:
        assert not sem.try_acquire()
    assert sem.try_acquire()
    sem.release()


async def test_zero_weight_acquire_succeeds_when_nobody_waits() -> None:
    sem = Semaphore(1)
    await sem.acquire(1)
    await sem.acquire(0)
    assert sem.try_acquire(0)
    sem.release(1)


async def test_at_most_size_tokens_held() -> None:
    sem = Semaphore(3)
    held = peak = 0

    async def worker() -> None:
        nonlocal held, peak
        for _ in range(20):
            async with sem:
                held += 1
                peak = max(peak, held)
                await anyio.lowlevel.checkpoint()
                held -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(worker)
    assert peak == 3


def test_repr() -> None:
    sem = Semaphore(4)
    assert sem.try_acquire(3)
    assert "held=3/4" in repr(sem)


# -- misuse -----------------------------------------------------------------------------------


def test_release_more_than_held_raises() -> None:
    sem = Semaphore(3)
    assert sem.try_acquire(2)
    with pytest.raises(
        ValueError, match=r"^semaphore: released more than held \(release\(n=3\) with 2 held\)$"
    ):
        sem.release(3)
    sem.release(2)  # nothing was released by the failed call
    with pytest.raises(ValueError, match=r"^semaphore: released more than held"):
        sem.release()


async def test_acquire_more_than_size_raises_instead_of_blocking_forever() -> None:
    sem = Semaphore(3)
    with pytest.raises(
        ValueError,
        match=(
            r"^semaphore: acquire\(n=4\) exceeds the semaphore size 3: "
            r"it could never be granted$"
        ),
    ):
        await sem.acquire(4)
    assert sem.try_acquire(3)


async def test_acquire_more_than_size_with_a_ctx_waits_for_it_like_go() -> None:
    """Go's acquire of more than the size waits for its ctx and returns ctx.Err(); it is
    queued nowhere, so smaller acquires go on meanwhile. A ctx that can never end
    (background) cannot end the wait: ValueError at once, as without a ctx."""
    sem = Semaphore(2)
    with pytest.raises(ValueError, match=r"exceeds the semaphore size 2"):
        await sem.acquire(3, asyncgo.background())
    ctx, cancel = asyncgo.with_cancel(asyncgo.background())
    got: list[BaseException] = []

    async def doomed() -> None:
        try:
            await sem.acquire(3, ctx)
        except Canceled as e:
            got.append(e)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(doomed)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            await sem.acquire(2)  # not held back by the doomed request
            sem.release(2)
            cancel()
    assert len(got) == 1 and got[0] is ctx.err()
    assert sem.try_acquire(2)
    sem.release(2)
    # Cancelled while it waits for its ctx: nothing taken, nothing left behind.
    ctx2, cancel2 = asyncgo.with_cancel(asyncgo.background())
    with anyio.move_on_after(0.01) as scope:
        await sem.acquire(3, ctx2)
    assert scope.cancelled_caught
    cancel2()
    assert sem.try_acquire(2)


def test_try_acquire_more_than_size_is_false_like_go() -> None:
    assert not Semaphore(3).try_acquire(4)


@pytest.mark.parametrize("method", ["acquire", "try_acquire", "release"])
async def test_negative_n_raises(method: str) -> None:
    sem = Semaphore(3)
    with pytest.raises(ValueError, match=rf"^semaphore: {method}\(n=-1\): n must not be negative$"):
        r = getattr(sem, method)(-1)
        if method == "acquire":
            await r


async def test_non_int_n_raises_type_error() -> None:
    sem = Semaphore(3)
    with pytest.raises(TypeError, match="int"):
        await sem.acquire(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        sem.release(True)


def test_bad_size() -> None:
    with pytest.raises(ValueError, match="negative"):
        Semaphore(-1)
    with pytest.raises(TypeError, match="int"):
        Semaphore(2.0)  # type: ignore[arg-type]


# -- FIFO and starvation ---------------------------------------------------------------------


async def test_waiters_served_fifo() -> None:
    sem = Semaphore(1)
    order: list[str] = []
    await sem.acquire()
    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(acquire_and_note, sem, 1, name, order)
            await anyio.wait_all_tasks_blocked()
        for _ in "abcd":
            sem.release()
            await anyio.wait_all_tasks_blocked()
    assert order == list("abcd")
    sem.release()


async def test_head_waiter_blocks_smaller_later_requests() -> None:
    """Go: a waiter at the head that does not fit blocks every later request."""
    sem = Semaphore(10)
    order: list[str] = []
    await sem.acquire(8)  # 2 free
    async with anyio.create_task_group() as tg:
        tg.start_soon(acquire_and_note, sem, 5, "big", order)
        await anyio.wait_all_tasks_blocked()
        assert not sem.try_acquire(1), "try_acquire must not jump the queue"
        tg.start_soon(acquire_and_note, sem, 1, "small", order)
        await anyio.wait_all_tasks_blocked()
        assert order == [], "a small request overtook the head waiter"
        sem.release(3)  # 5 free: exactly the head's request
        await anyio.wait_all_tasks_blocked()
        assert order == ["big"]
        sem.release(1)
    assert order == ["big", "small"]
    sem.release(10)
    assert sem.try_acquire(10)


async def test_release_wakes_every_head_waiter_that_fits() -> None:
    sem = Semaphore(10)
    order: list[str] = []
    await sem.acquire(10)
    async with anyio.create_task_group() as tg:
        for name, n in [("a", 3), ("b", 3), ("c", 5), ("d", 1)]:
            tg.start_soon(acquire_and_note, sem, n, name, order)
            await anyio.wait_all_tasks_blocked()
        sem.release(7)  # a and b fit (6), c (5) does not with 1 left: d waits behind c
        await anyio.wait_all_tasks_blocked()
        assert sorted(order) == ["a", "b"]
        sem.release(6)  # a's and b's tokens (not owned, as in Go): 7 free, c then d fit
    assert sorted(order[2:]) == ["c", "d"]
    sem.release(9)  # c, d and our remaining 3
    assert sem.try_acquire(10)


async def test_cancelled_head_waiter_lets_the_ones_behind_proceed() -> None:
    sem = Semaphore(10)
    out: list[str] = []
    order: list[str] = []
    await sem.acquire(8)  # 2 free
    async with anyio.create_task_group() as tg:
        scope = await tg.start(acquire_in_scope, sem, 5, out)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(acquire_and_note, sem, 1, "small", order)
        tg.start_soon(acquire_and_note, sem, 1, "small2", order)
        await anyio.wait_all_tasks_blocked()
        assert order == []
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert sorted(order) == ["small", "small2"], (
            "waiters behind a cancelled head stayed blocked"
        )
    assert out == []
    sem.release(10)
    assert sem.try_acquire(10)


async def test_cancelled_waiter_in_the_middle_holds_nothing() -> None:
    sem = Semaphore(4)
    out: list[str] = []
    order: list[str] = []
    await sem.acquire(4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(acquire_and_note, sem, 2, "a", order)
        await anyio.wait_all_tasks_blocked()
        scopes = [await tg.start(acquire_in_scope, sem, 1, out) for _ in range(40)]
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(acquire_and_note, sem, 2, "b", order)
        await anyio.wait_all_tasks_blocked()
        for s in scopes:
            s.cancel()
        await anyio.wait_all_tasks_blocked()
        sem.release(4)  # a and b both fit (woken together: trio runs them in random order)
    assert sorted(order) == ["a", "b"]
    assert out == []
    sem.release(4)
    assert sem.try_acquire(4)
    assert len(sem._q) == 0


async def test_large_request_not_starved_by_a_stream_of_small_ones() -> None:
    sem = Semaphore(10)
    stop = False
    big_waiting = False
    grants_after_big_queued = 0

    async def small() -> None:
        nonlocal grants_after_big_queued
        while not stop:
            await sem.acquire(1)
            if big_waiting:
                grants_after_big_queued += 1
            await anyio.lowlevel.checkpoint()
            sem.release(1)

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(small)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        big_waiting = True
        await sem.acquire(10)  # would hang if small requests could overtake it
        big_waiting = False
        stop = True
        sem.release(10)
    # only requests already queued (or granted) before the big one may go first
    assert grants_after_big_queued <= 12, grants_after_big_queued


async def test_grant_then_cancel_keeps_the_tokens_and_async_with_returns_them() -> None:
    sem = Semaphore(2)
    steps: list[str] = []

    async def waiter(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            async with sem:
                steps.append("got it")
                await anyio.lowlevel.checkpoint()
        steps.append("cancelled" if scope.cancelled_caught else "?")

    await sem.acquire(2)
    async with anyio.create_task_group() as tg:
        scope = await tg.start(waiter)
        await anyio.wait_all_tasks_blocked()
        sem.release(1)  # grants the waiter...
        scope.cancel()  # ...then its cancellation arrives
    assert steps == ["got it", "cancelled"]
    sem.release(1)
    assert sem.try_acquire(2)


async def test_fast_path_acquire_is_a_cancel_point() -> None:
    sem = Semaphore(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await sem.acquire()
    assert scope.cancelled_caught
    assert sem.try_acquire()


async def test_tight_uncontended_loop_cannot_starve_other_tasks() -> None:
    sem = Semaphore(1)
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    n = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        while not ran:
            n += 1
            assert n < 10_000
            async with sem:
                pass


# -- ctx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make_ctx", CTX_KINDS)
async def test_ctx_already_done_fails_even_if_tokens_are_free(make_ctx: Any) -> None:
    sem = Semaphore(1)
    ctx, cancel = make_ctx()
    cancel()
    with pytest.raises(Canceled):
        await sem.acquire(1, ctx)
    assert sem.try_acquire(1), "the failed acquire took a token"


@pytest.mark.parametrize("make_ctx", CTX_KINDS)
async def test_ctx_free_acquire_succeeds(make_ctx: Any) -> None:
    sem = Semaphore(2)
    ctx, cancel = make_ctx()
    await sem.acquire(2, ctx)
    assert not sem.try_acquire(1)
    sem.release(2)
    cancel()


@pytest.mark.parametrize("make_ctx", CTX_KINDS)
async def test_ctx_done_while_waiting_raises_err_and_frees_the_queue(make_ctx: Any) -> None:
    sem = Semaphore(10)
    ctx, cancel = make_ctx()
    errors: list[BaseException] = []
    order: list[str] = []

    async def waiter() -> None:
        try:
            await sem.acquire(5, ctx)
        except Exception as exc:
            errors.append(exc)

    await sem.acquire(8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(acquire_and_note, sem, 2, "behind", order)
        await anyio.wait_all_tasks_blocked()
        assert order == []
        cancel()
        await anyio.wait_all_tasks_blocked()
        assert order == ["behind"], "the ctx-cancelled head still blocked the queue"
    assert len(errors) == 1 and isinstance(errors[0], Canceled)
    sem.release(10)
    assert sem.try_acquire(10)
    assert not ctx.done()._ch._recvq, "the waiter's entry stayed on the done channel"


async def test_ctx_err_is_raised_as_is() -> None:
    sem = Semaphore(1)
    ctx = FakeCtx()
    await sem.acquire()
    async with anyio.create_task_group() as tg:

        async def waiter() -> None:
            with pytest.raises(DeadlineExceeded):
                await sem.acquire(1, ctx)

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        ctx.cancel(DeadlineExceeded())
    sem.release()


async def test_grant_racing_ctx_done_gives_the_tokens_back() -> None:
    """Granted, and the ctx ends before the waiter runs: Go releases and returns ctx.Err()."""
    sem = Semaphore(1)
    ctx = FakeCtx()
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await sem.acquire(1, ctx)
        except Canceled as exc:
            errors.append(exc)

    await sem.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        sem.release()  # grants the waiter (claims it)...
        ctx.cancel()  # ...and the ctx ends before it runs: close() finds it claimed
    assert len(errors) == 1
    assert sem.try_acquire(1), "tokens granted to a ctx-failed acquire were lost"


async def test_anyio_cancel_while_waiting_with_ctx_leaves_nothing_behind() -> None:
    sem = Semaphore(1)
    ctx = FakeCtx()
    await sem.acquire()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sem.acquire, 1, ctx)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert not ctx._done._recvq
    assert sem._q.head() is None
    sem.release()
    assert sem.try_acquire()
    ctx.cancel()  # closing finds no live waiter


# -- stress ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_cancellation_stress_never_loses_or_double_grants(seed: int) -> None:
    """Weighted acquires, some with a ctx; a chaos task cancels scopes and ends ctxs at
    random points (waiting, just granted, holding). At most *size* tokens are ever
    held, and every token comes back."""
    rng = random.Random(seed)
    size = 10
    sem = Semaphore(size)
    held = 0
    granted = failed = 0
    scopes: list[anyio.CancelScope] = []
    ctxs: list[FakeCtx] = []
    stop = False

    async def worker() -> None:
        nonlocal held, granted, failed
        for _ in range(40):
            n = rng.randint(0, size)
            ctx = FakeCtx() if rng.random() < 0.4 else None
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                if ctx is not None:
                    ctxs.append(ctx)
                try:
                    await sem.acquire(n, ctx)
                except Canceled:
                    failed += 1
                else:
                    held += n
                    try:
                        assert held <= size, "more tokens granted than the size"
                        assert held <= sem._cur
                        granted += 1
                        for _ in range(rng.randrange(3)):
                            await anyio.lowlevel.checkpoint()
                    finally:
                        held -= n
                        sem.release(n)
            scopes.remove(scope)
            if ctx is not None:
                ctxs.remove(ctx)
            failed += scope.cancelled_caught

    async def chaos() -> None:
        while not stop:
            await anyio.lowlevel.checkpoint()
            r = rng.random()
            if r < 0.15 and scopes:
                rng.choice(scopes).cancel()
            elif r < 0.3 and ctxs:
                rng.choice(ctxs).cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(chaos)
        async with anyio.create_task_group() as workers:
            for _ in range(12):
                workers.start_soon(worker)
        stop = True
    assert granted and failed
    assert held == 0
    assert sem._cur == 0, "tokens were lost"
    assert sem._q.head() is None
    assert sem.try_acquire(size)


@pytest.mark.parametrize("with_ctx", [False, True])
async def test_native_cancel_after_grant_keeps_the_tokens_then_cancels(
    anyio_backend: tuple[str, dict[str, object]], with_ctx: bool
) -> None:
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio-specific")
    import asyncio

    sem = Semaphore(1)
    ctx = FakeCtx() if with_ctx else None
    steps: list[str] = []

    async def waiter() -> None:
        await sem.acquire(1, ctx)
        steps.append("acquired")
        try:
            await asyncio.sleep(0)
        finally:
            sem.release(1)

    await sem.acquire()
    task = asyncio.ensure_future(waiter())
    await anyio.wait_all_tasks_blocked()
    sem.release()  # grants the waiter: resolves its future
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["acquired"]
    assert sem.try_acquire(1), "the rescued grant's token was lost"
    if ctx is not None:
        assert not ctx._done._recvq


async def test_async_with_on_a_semaphore_of_size_zero_raises_like_acquire() -> None:
    # acquire(1) raised; `async with` (one token, an inlined path) parked forever.
    sem = Semaphore(0)
    with anyio.fail_after(10):
        with pytest.raises(ValueError, match=r"exceeds the semaphore size 0"):
            async with sem:
                pass
    assert not sem._q.q


async def test_a_done_ctx_error_does_not_pile_up_tracebacks() -> None:
    import traceback

    from asyncgo import background, with_cancel

    ctx, cancel = with_cancel(background())
    cancel()
    sem = Semaphore(1)
    lengths = set()
    for _ in range(5):
        with pytest.raises(Canceled) as info:
            await sem.acquire(1, ctx)
        assert info.value is ctx.err()
        lengths.add(len(list(traceback.walk_tb(info.value.__traceback__))))
    assert len(lengths) == 1

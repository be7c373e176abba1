"""Misuse raises at the call, naming it (DESIGN.md principle 4), across modules.

Each case here used to be accepted and to fail later -- with an AttributeError from
deep inside, with a TypeError that replaced the user's own exception, or not at all
(an async callback whose coroutine nothing awaited, an output that ended silently).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from fractions import Fraction
from typing import Any

import pytest

import asyncgo
from asyncgo import Cond, Semaphore, pipeline, rate, resilience, stages
from asyncgo import time as gotime

pytestmark = pytest.mark.anyio


async def _ok() -> int:
    return 1


# -- a ctx= that is not a Context ---------------------------------------------------------

NOT_A_CTX: Any = "ctx"
CTX_CALLS: dict[str, Callable[[], Awaitable[object]]] = {
    "Semaphore.acquire(n, ctx)": lambda: Semaphore(2).acquire(1, NOT_A_CTX),
    "Limiter.wait(n, ctx)": lambda: rate.Limiter(10, 2).wait(1, NOT_A_CTX),
    "SlidingWindow.wait(n, ctx)": lambda: rate.SlidingWindow(2, 1.0).wait(1, NOT_A_CTX),
    "time.sleep(seconds, ctx)": lambda: gotime.sleep(0.01, NOT_A_CTX),
    "retry(ctx=...)": lambda: asyncgo.retry(_ok, attempts=2, ctx=NOT_A_CTX),
    "Pipeline.stream(ctx)": lambda: pipeline([1]).collect(NOT_A_CTX),
}


@pytest.mark.parametrize("call", list(CTX_CALLS))
async def test_a_ctx_that_is_not_a_context_is_a_type_error(call: str) -> None:
    # (was: AttributeError: 'str' object has no attribute 'err' / 'done')
    with pytest.raises(TypeError, match=r"ctx must be an asyncgo Context.*or None.*not str"):
        await CTX_CALLS[call]()


async def test_a_context_like_object_still_works_with_semaphore() -> None:
    """Semaphore.acquire takes any object with done() and err(), as documented."""
    ctx, cancel = asyncgo.with_cancel(asyncgo.background())

    class Like:
        def done(self) -> asyncgo.RecvChan[None]:
            return ctx.done()

        def err(self) -> BaseException | None:
            return ctx.err()

    sem = Semaphore(1)
    await sem.acquire(1, Like())  # type: ignore[arg-type]
    sem.release(1)
    cancel()


# -- callbacks: async or not callable -------------------------------------------------------


async def _async_cb(*args: object) -> None:
    pass


@pytest.mark.parametrize("cb", [_async_cb, 1], ids=["async", "not-callable"])
async def test_breaker_on_state_change_must_be_a_plain_function(cb: Any) -> None:
    # (was: async -- accepted and never run; not callable -- the call's own error
    # replaced by "'int' object is not callable" at the first transition)
    with pytest.raises(TypeError, match=r"on_state_change"):
        asyncgo.CircuitBreaker(failure_threshold=1, on_state_change=cb)


@pytest.mark.parametrize("backoff", [None, 1, "0.1", _async_cb])
async def test_retry_rejects_a_bad_backoff_before_the_first_attempt(backoff: Any) -> None:
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        raise ValueError("boom")

    with pytest.raises(TypeError, match=r"retry\(backoff=\.\.\.\)"):
        await asyncgo.retry(flaky, attempts=3, backoff=backoff)
    assert calls == []


@pytest.mark.parametrize("returns", ["0.1", None], ids=["str", "None"])
async def test_retry_names_a_backoff_function_that_returns_no_number(returns: Any) -> None:
    async def flaky() -> None:
        raise ValueError("boom")

    with pytest.raises(TypeError, match=r"retry\(backoff=.*\) returned a pause") as info:
        await asyncgo.retry(flaky, attempts=3, backoff=lambda i: returns)
    assert isinstance(info.value.__context__, ValueError)  # the call's error, kept


class _AsyncCallable:
    async def __call__(self, *args: object) -> bool:
        return True


async def test_an_object_with_an_async_call_counts_as_async() -> None:
    # (was: accepted by on_state_change / on_progress, its coroutine never awaited;
    # wait_for returned the coroutine at once)
    with pytest.raises(TypeError, match=r"on_state_change"):
        asyncgo.CircuitBreaker(on_state_change=_AsyncCallable())
    with pytest.raises(TypeError, match=r"on_progress"):
        asyncgo.WorkerPool(on_progress=_AsyncCallable())
    cond = Cond()
    async with cond:
        with pytest.raises(TypeError, match=r"predicate must be a plain function"):
            await cond.wait_for(_AsyncCallable())


async def test_durations_take_any_real_number() -> None:
    """A Fraction is a number of seconds (a backoff, idle_timeout, shutdown's timeout)."""
    tries: list[int] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 2:
            raise ValueError("again")
        return "ok"

    assert await asyncgo.retry(flaky, attempts=2, backoff=lambda i: Fraction(1, 1000)) == "ok"
    async with asyncgo.WorkerPool(max_workers=2, idle_timeout=Fraction(1, 2)) as pool:
        assert await pool.shutdown(Fraction(1, 2)) == []
    await gotime.sleep(Fraction(1, 1000))

    async def failing() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match=r"returned a pause that: duration must not be NaN"):
        await asyncgo.retry(failing, attempts=3, backoff=lambda i: float("nan"))


async def test_retry_backoff_function_of_ints_still_works() -> None:
    tries: list[int] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ValueError("again")
        return "ok"

    assert await resilience.retry(flaky, attempts=3, backoff=lambda i: 0) == "ok"


# -- Cond ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", [1, "x", threading.Lock()], ids=["int", "str", "threading"])
async def test_cond_needs_an_asyncgo_locker(lock: Any) -> None:
    # (was: accepted; AttributeError: ... has no attribute 'lock' at the first use)
    with pytest.raises(TypeError, match=r"Cond\(L\): L must be an asyncgo Locker"):
        Cond(lock)


async def test_cond_wait_for_refuses_an_async_predicate() -> None:
    # (was: the coroutine object, always true, returned at once; never evaluated)
    cond = Cond()

    async def ready() -> bool:
        return False

    async with cond:
        with pytest.raises(TypeError, match=r"predicate must be a plain function"):
            await cond.wait_for(ready)  # type: ignore[arg-type]


async def test_cond_wait_for_without_the_lock_raises() -> None:
    # The docstring's "Raises: RuntimeError: cond.L is not locked", also when the
    # predicate holds at once (it used to return).
    with pytest.raises(RuntimeError, match=r"cond\.L not locked"):
        await Cond().wait_for(lambda: True)


# -- stages ----------------------------------------------------------------------------------


async def test_map_refuses_an_async_generator_function() -> None:
    async def gen(x: int) -> AsyncIterator[int]:
        yield x

    # (was: accepted; the output was async generator objects)
    with pytest.raises(TypeError, match=r"stages\.flat_map"):
        stages.map(gen)  # type: ignore[arg-type]


@pytest.mark.parametrize("per_item", ["sync", "async"])
async def test_fan_out_of_a_per_item_function_names_the_mistake(per_item: str) -> None:
    def sync_fn(x: int) -> str:
        return str(x)

    async def async_fn(x: int) -> str:
        return str(x)

    fn: Any = sync_fn if per_item == "sync" else async_fn
    # (was: "'async for' requires an object with __aiter__ method, got str")
    with pytest.raises(TypeError, match=r"not an async iterator.*stages\.map\(fn\)"):
        await (pipeline([1, 2]) | stages.fan_out(2, fn)).collect()


# -- WorkerPool -------------------------------------------------------------------------------


async def test_a_dynamic_pool_whose_queue_closes_as_its_idle_timer_fires_exits_cleanly() -> None:
    # (was: ChanClosed out of the async with block: the worker's second look at the
    # queue, after its idle timer fired, did not expect the queue closed)
    for _ in range(20):
        async with asyncgo.WorkerPool(min_workers=0, max_workers=1, idle_timeout=0) as pool:
            assert await (await pool.submit(_ok)) == 1


def _fetch_later() -> Awaitable[int]:
    return _ok()  # a sync function that returns a coroutine


async def test_a_thread_job_returning_a_coroutine_is_a_type_error() -> None:
    # (was: asyncio -- the coroutine, never awaited, as the job's result; trio --
    # trio's own "expected a sync function" about anyio's wrapper)
    async with asyncgo.WorkerPool(2, executor="thread") as pool:
        h = await pool.submit(_fetch_later)
        with pytest.raises(TypeError, match=r"WorkerPool\(executor='thread'\).*coroutine"):
            await h


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"on_progress": _async_cb}, TypeError, r"on_progress"),
        ({"on_progress": 1}, TypeError, r"on_progress"),
        ({"ctx": NOT_A_CTX}, TypeError, r"WorkerPool\(ctx=\.\.\.\)"),
        ({"max_workers": 2, "idle_timeout": float("nan")}, ValueError, r"idle_timeout"),
        ({"max_workers": 2, "idle_timeout": None}, TypeError, r"idle_timeout"),
        ({"max_workers": 2, "idle_timeout": "1"}, TypeError, r"idle_timeout"),
    ],
    ids=["async-on_progress", "int-on_progress", "ctx", "nan-idle", "None-idle", "str-idle"],
)
async def test_pool_options_are_checked_when_made(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    # (was: accepted; failed at exit, on entry, or -- async on_progress -- never ran)
    with pytest.raises(error, match=match):
        asyncgo.WorkerPool(**kwargs)


@pytest.mark.parametrize("timeout, error", [("1", TypeError), (float("nan"), ValueError)])
async def test_a_bad_shutdown_timeout_changes_nothing(timeout: Any, error: type[Exception]) -> None:
    # (was: the intake closed first, then "unsupported operand" / anyio's NaN message)
    async with asyncgo.WorkerPool(2) as pool:
        with pytest.raises(error, match=r"shutdown\(timeout=\.\.\.\)"):
            await pool.shutdown(timeout)
        assert await (await pool.submit(_ok)) == 1  # still taking jobs


@pytest.mark.parametrize("fn, window", [(None, None), (_ok, "2")], ids=["fn", "window"])
async def test_pool_map_arguments_are_checked_at_the_call(fn: Any, window: Any) -> None:
    # (was: fn -- an error only once iterated; window -- "'<' not supported ...")
    async with asyncgo.WorkerPool(2) as pool:
        with pytest.raises(TypeError, match=r"WorkerPool\.map"):
            pool.map(fn, [1, 2], window=window)


# -- async context managers left without being entered ------------------------------------


@pytest.mark.parametrize("what", ["Group", "singleflight.Group", "WorkerPool", "stream"])
async def test_exit_without_enter_names_the_misuse(what: str) -> None:
    # (was: a bare AssertionError -- an AttributeError under python -O)
    from asyncgo import singleflight

    cm: Any = {
        "Group": lambda: asyncgo.Group(),
        "singleflight.Group": lambda: singleflight.Group(),
        "WorkerPool": lambda: asyncgo.WorkerPool(),
        "stream": lambda: pipeline([1]).stream(),
    }[what]()
    with pytest.raises(RuntimeError, match=r"__aexit__ without __aenter__"):
        await cm.__aexit__(None, None, None)


def test_dump_of_something_that_is_not_a_snapshot_names_it() -> None:
    # (was: AttributeError: 'int' object has no attribute 'state')
    with pytest.raises(TypeError, match=r"debug\.dump\(snapshot\): takes TaskInfo"):
        asyncgo.debug.dump([1])  # type: ignore[list-item]


HUGE = 10**400  # an int beyond a float's range


@pytest.mark.parametrize(
    "make",
    [
        lambda: asyncgo.with_timeout(asyncgo.background(), HUGE),
        lambda: asyncgo.with_deadline(asyncgo.background(), HUGE),
        lambda: asyncgo.with_timeout_cause(asyncgo.background(), HUGE, None),
        lambda: asyncgo.with_deadline_cause(asyncgo.background(), HUGE, None),
    ],
    ids=["with_timeout", "with_deadline", "with_timeout_cause", "with_deadline_cause"],
)
async def test_a_duration_beyond_a_float_is_infinite_not_an_overflow(make: Any) -> None:
    # As asyncgo.time and rate take it; an OverflowError came out of float() before.
    ctx, cancel = make()
    assert ctx.err() is None and ctx.deadline() is None
    cancel()
    ctx, cancel = asyncgo.with_timeout(asyncgo.background(), -HUGE)
    assert isinstance(ctx.err(), asyncgo.DeadlineExceeded)  # Go: a past deadline, done at once
    cancel()


async def test_huge_int_durations_in_stages_and_resilience() -> None:
    assert await (pipeline([1, 2, 3]) | stages.batch(2, HUGE)).collect() == [[1, 2], [3]]
    resilience.CircuitBreaker(window=HUGE)
    resilience.CircuitBreaker(recovery_time=HUGE)
    with pytest.raises(ValueError, match="maximum"):  # (it must be finite: said so)
        resilience.Backoff(initial=0.1, maximum=HUGE)


async def test_a_link_too_large_for_a_channel_is_refused_when_built() -> None:
    # It passed the check, and the run then failed in an ExceptionGroup with a
    # "makechan" message that named neither the stage nor the number given.
    with pytest.raises(ValueError, match=r"stages.buffer\(\) n must be at most sys.maxsize"):
        stages.buffer(10**30)
    with pytest.raises(ValueError, match="pipeline buffer must be at most sys.maxsize"):
        pipeline([1, 2], buffer=10**30)
    assert await (pipeline([1, 2]) | stages.take(10**30)).collect() == [1, 2]  # no limit


def test_once_retry_on_error_takes_a_bool() -> None:
    # A string was taken as true: Once(retry_on_error="no") retried.
    with pytest.raises(TypeError, match=r"Once\(retry_on_error=...\) takes a bool, not str"):
        asyncgo.Once(retry_on_error="no")  # type: ignore[arg-type]
    asyncgo.Once(retry_on_error=True)

    async def f() -> int:
        return 1

    for api in (asyncgo.once_func, asyncgo.once_value):
        with pytest.raises(TypeError, match=rf"{api.__name__}\(retry_on_error=...\) takes a bool"):
            api(f, retry_on_error=1)  # type: ignore[arg-type, call-overload]


async def test_a_fraction_is_a_duration_for_contexts_as_for_timers() -> None:
    # asyncgo.time took it; the context functions said it was not a number.
    ctx, cancel = asyncgo.with_timeout(asyncgo.background(), Fraction(1, 2))
    assert ctx.deadline() is not None
    cancel()
    ctx, cancel = asyncgo.with_timeout_cause(asyncgo.background(), Fraction(1, 2), None)
    cancel()


async def test_unhashable_keys_and_topics_name_the_misuse() -> None:
    async with asyncgo.singleflight.Group() as g:

        async def one() -> int:
            return 1

        with pytest.raises(TypeError, match=r"Group.do\(key\): a key must be hashable.* list"):
            await g.do([1], one)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"Group.do_chan\(key\): a key must be hashable"):
            g.do_chan({}, one)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"Group.forget\(key\): a key must be hashable"):
            g.forget([])  # type: ignore[arg-type]
    bus: asyncgo.PubSub[list[int], int] = asyncgo.PubSub()
    with pytest.raises(TypeError, match=r"PubSub.subscribe\(topic\): a topic must be hashable"):
        bus.subscribe([1])
    with pytest.raises(TypeError, match=r"PubSub.publish\(topic\): a topic must be hashable"):
        await bus.publish([1], 1)
    with pytest.raises(TypeError, match=r"PubSub.publish_nowait\(topic\): a topic must be"):
        bus.publish_nowait([1], 1)
    with pytest.raises(TypeError, match=r"PubSub.subscribers\(topic\): a topic must be"):
        bus.subscribers([1])

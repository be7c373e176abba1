"""sync.Once, once_func, once_value (issue #4): Go's rules, the retry variant, cancellation."""

from __future__ import annotations

import traceback

import anyio
import anyio.lowlevel
import pytest

from asyncgo.sync import Once, once_func, once_value

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


# -- Once ---------------------------------------------------------------------------------


async def test_do_runs_fn_once() -> None:
    once = Once()
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1

    for _ in range(3):
        await once.do(fn)
    assert calls == 1
    assert "done=True" in repr(once)


async def test_concurrent_callers_wait_for_the_first_call() -> None:
    once = Once()
    calls = 0
    finished_before_return: list[bool] = []
    release = anyio.Event()
    fn_done = False

    async def fn() -> None:
        nonlocal calls, fn_done
        calls += 1
        await release.wait()
        fn_done = True

    async def caller() -> None:
        await once.do(fn)
        finished_before_return.append(fn_done)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        assert finished_before_return == []
        release.set()
    assert calls == 1
    assert finished_before_return == [True] * 5


async def test_error_counts_as_done_like_go() -> None:
    """Go: a panicking f counts as done. The error reaches the caller that ran fn only."""
    once = Once()
    calls = 0
    release = anyio.Event()
    results: list[str] = []

    async def fn() -> None:
        nonlocal calls
        calls += 1
        await release.wait()
        raise Boom

    async def caller() -> None:
        try:
            await once.do(fn)
        except Boom:
            results.append("raised")
        else:
            results.append("returned")

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert calls == 1
    assert sorted(results) == ["raised", "returned", "returned"]
    await once.do(fn)  # done: fn is not called again
    assert calls == 1


async def test_retry_on_error_lets_the_next_caller_run_fn() -> None:
    once = Once(retry_on_error=True)
    calls = 0
    release = anyio.Event()
    results: list[str] = []

    async def fn() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
            raise Boom

    async def caller() -> None:
        try:
            await once.do(fn)
        except Boom:
            results.append("raised")
        else:
            results.append("returned")

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        release.set()
    # the first call failed; the next waiting caller retried and succeeded
    assert calls == 2
    assert sorted(results) == ["raised", "returned", "returned"]
    await once.do(fn)
    assert calls == 2


async def test_cancelled_runner_does_not_count_and_the_next_caller_runs_fn() -> None:
    once = Once()
    calls = 0
    results: list[str] = []

    async def fn() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep_forever()

    async def first(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await once.do(fn)
        results.append("first cancelled" if scope.cancelled_caught else "?")

    async def second() -> None:
        await once.do(fn)
        results.append("second ran it")

    async with anyio.create_task_group() as tg:
        scope = await tg.start(first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
    assert calls == 2
    assert results == ["first cancelled", "second ran it"]


async def test_cancelled_waiter_leaves_no_trace() -> None:
    once = Once()
    release = anyio.Event()
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(once.do, fn)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as inner:
                inner.start_soon(once.do, fn)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
        release.set()
    assert calls == 1
    assert not once._mu.locked()


async def test_do_is_a_cancel_point_even_when_done() -> None:
    once = Once()

    async def fn() -> None:
        pass

    await once.do(fn)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await once.do(fn)
    assert scope.cancelled_caught


# -- once_value / once_func ------------------------------------------------------------------


async def test_once_value_returns_the_same_value_to_everyone() -> None:
    calls = 0

    async def load() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await anyio.lowlevel.checkpoint()
        return {"answer": 42}

    get = once_value(load)
    results: list[dict[str, int]] = []

    async def caller() -> None:
        results.append(await get())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(caller)
    assert calls == 1
    assert all(r is results[0] for r in results)
    assert await get() is results[0]
    assert get.__name__ == "load"


async def test_once_value_raises_the_same_exception_every_time() -> None:
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        raise Boom("no config")

    get = once_value(load)
    seen: list[BaseException] = []
    for _ in range(4):
        with pytest.raises(Boom, match="no config") as info:
            await get()
        seen.append(info.value)
    assert calls == 1
    assert all(e is seen[0] for e in seen)
    # the traceback does not pile up one more copy of our frame per call
    frames = traceback.extract_tb(seen[0].__traceback__)
    assert len(frames) < 10, len(frames)


async def test_once_value_retry_on_error() -> None:
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Boom(calls)
        return calls

    get = once_value(load, retry_on_error=True)
    for _ in range(2):
        with pytest.raises(Boom):
            await get()
    assert await get() == 3
    assert await get() == 3
    assert calls == 3


async def test_once_value_cancelled_first_call_is_retried() -> None:
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep_forever()
        return "ok"

    get = once_value(load)
    async with anyio.create_task_group() as tg:
        tg.start_soon(get)
        await anyio.wait_all_tasks_blocked()  # load() is running, parked
        tg.cancel_scope.cancel()
    assert calls == 1
    assert await get() == "ok"
    assert calls == 2


async def test_once_func_calls_once_and_replays_errors() -> None:
    calls = 0

    async def init() -> None:
        nonlocal calls
        calls += 1

    f = once_func(init)
    await f()
    await f()
    assert calls == 1

    async def broken() -> None:
        raise Boom

    g = once_func(broken)
    with pytest.raises(Boom):
        await g()
    with pytest.raises(Boom):
        await g()

    attempts = 0

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Boom

    h = once_func(flaky, retry_on_error=True)
    with pytest.raises(Boom):
        await h()
    await h()
    await h()
    assert attempts == 2


class _Stop(BaseException):
    """Like KeyboardInterrupt or SystemExit: not an Exception."""


async def test_a_base_exception_is_not_remembered_as_the_result() -> None:
    # docs/sync.md: a KeyboardInterrupt/SystemExit stops the program; it is not the
    # function's outcome, so the next caller runs the function (every variant).
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise _Stop
        return calls

    once = Once()
    with pytest.raises(_Stop):
        await once.do(flaky)
    await once.do(flaky)
    assert calls == 2
    calls = 0
    value = once_value(flaky)
    with pytest.raises(_Stop):
        await value()
    assert await value() == 2 and await value() == 2 and calls == 2
    calls = 0
    func = once_func(flaky)
    with pytest.raises(_Stop):
        await func()
    await func()
    await func()
    assert calls == 2


@pytest.mark.filterwarnings("error::RuntimeWarning")
async def test_do_with_what_is_not_a_function_raises_even_once_done() -> None:
    # Once done, do(f()) returned silently: the coroutine was never awaited.
    once = Once()

    async def f() -> None:
        pass

    await once.do(f)
    coro = f()
    with pytest.raises(TypeError, match=r"Once.do\(\) takes an async function, not coroutine"):
        await once.do(coro)  # type: ignore[arg-type]
    assert coro.cr_frame is None  # closed: no "never awaited" warning
    with pytest.raises(TypeError, match=r"Once.do\(\) takes an async function, not int"):
        await once.do(42)  # type: ignore[arg-type]

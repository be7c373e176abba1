"""Go's own singleflight test suite (golang/sync singleflight/singleflight_test.go), ported.

``var g Group`` becomes ``async with singleflight.Group() as g``, ``v, err,
shared := g.Do(key, fn)`` becomes ``v, shared = await g.do(key, fn)`` (the error
is raised), and ``g.DoChan(key, fn)`` is ``g.do_chan(key, fn)``, whose channel
delivers a ``Result(value, err, shared)``. A panic is an exception; Go's ``runtime.Goexit``
in ``fn`` (the call ends with neither a value nor an error) is a
``BaseException`` that is not an ``Exception``.

Not ported: TestPanicDoChan and TestPanicDoSharedByDoChan check that a panic in
a DoChan call crashes the process (it cannot be recovered in another
goroutine); in asyncgo the exception simply reaches every caller, which
test_panic_do covers.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asyncgo import Chan, singleflight
from asyncgo.sync import WaitGroup

pytestmark = pytest.mark.anyio

HANG = 30  # seconds before a hang fails the test (Go: "Do hangs" after 1 s)



@pytest.mark.usefixtures("no_leaks")
async def test_do() -> None:
    """TestDo."""

    async def fn() -> str:
        return "bar"

    async with singleflight.Group() as g:
        v, shared = await g.do("key", fn)
    assert (v, type(v)) == ("bar", str)
    assert shared is False


async def test_do_err() -> None:
    """TestDoErr: the error comes back as itself (err == someErr), with no value."""
    some_err = ValueError("Some error")

    async def fn() -> str:
        raise some_err

    async with singleflight.Group() as g:
        with pytest.raises(ValueError) as info:
            await g.do("key", fn)
    assert info.value is some_err


@pytest.mark.usefixtures("no_leaks")
async def test_do_dup_suppress() -> None:
    """TestDoDupSuppress: concurrent callers share one call of fn."""
    wg1, wg2 = WaitGroup(), WaitGroup()
    c: Chan[str] = Chan(1)
    calls = [0]
    results: list[tuple[Any, bool]] = []

    async def fn() -> str:
        calls[0] += 1
        if calls[0] == 1:
            wg1.done()  # first invocation
        v = await c.recv()
        await c.send(v)  # pump; make available for any future calls
        await anyio.wait_all_tasks_blocked()  # Go: sleep 10 ms, let more tasks enter Do
        return v

    n = 10

    async def caller() -> None:
        try:
            wg1.done()
            results.append(await g.do("key", fn))
        finally:
            wg2.done()

    with anyio.fail_after(HANG):
        async with singleflight.Group() as g, anyio.create_task_group() as tg:
            wg1.add(1)
            for _ in range(n):
                wg1.add(1)
                wg2.add(1)
                tg.start_soon(caller)
            await wg1.wait()
            # At least one task is in fn now and all of them have at least
            # reached the line before the do.
            await c.send("bar")
            await wg2.wait()
    assert 0 < calls[0] < n, f"number of calls = {calls[0]}; want over 0 and less than {n}"
    assert calls[0] == 1  # asyncgo: every caller was parked in do() before fn returned
    assert results == [("bar", True)] * n


@pytest.mark.parametrize("third_joins", ["before the first call is cleaned up", "after"])
@pytest.mark.usefixtures("no_leaks")
async def test_forget(third_joins: str) -> None:
    """TestForget (go.dev/issue/31420): a forgotten call's end does not forget its successor."""
    first_started, unblock_first, first_finished = anyio.Event(), anyio.Event(), anyio.Event()
    unblock_second = anyio.Event()
    first_result: list[Any] = []

    async def fn1() -> int:
        first_started.set()
        await unblock_first.wait()
        first_finished.set()
        return 1

    async def fn2() -> int:
        await unblock_second.wait()
        return 2

    async def fn3() -> int:
        return 3

    async def first() -> None:
        first_result.append(await g.do("key", fn1))

    with anyio.fail_after(HANG):
        async with singleflight.Group() as g, anyio.create_task_group() as tg:
            tg.start_soon(first)
            await first_started.wait()
            g.forget("key")
            second = g.do_chan("key", fn2)
            unblock_first.set()
            await first_finished.wait()
            if third_joins == "after":
                await anyio.wait_all_tasks_blocked()  # the first call has ended
                assert first_result == [(1, False)]
            third = g.do_chan("key", fn3)
            unblock_second.set()
            assert await second.recv() == (2, None, True)
            r = await third.recv()
    assert r == (2, None, True), "the third caller must get the second call's result"
    assert first_result == [(1, False)]


@pytest.mark.usefixtures("no_leaks")
async def test_do_chan() -> None:
    """TestDoChan."""

    async def fn() -> str:
        return "bar"

    async with singleflight.Group() as g:
        ch = g.do_chan("key", fn)
        res = await ch.recv()
    v, err = res.value, res.err
    assert (v, type(v)) == ("bar", str)
    assert err is None


@pytest.mark.usefixtures("no_leaks")
async def test_panic_do() -> None:
    """TestPanicDo (go.dev/issue/41133): a raising fn reaches all n callers; nothing hangs.

    And the key is usable afterwards: the next do calls fn again.
    """
    calls = [0]

    async def fn() -> Any:
        calls[0] += 1
        await anyio.sleep(0)
        raise RuntimeError("invalid memory address or nil pointer dereference")

    n = 5
    raised: list[BaseException] = []

    async def caller() -> None:
        try:
            await g.do("key", fn)
        except RuntimeError as exc:
            raised.append(exc)

    with anyio.fail_after(HANG):
        async with singleflight.Group() as g:
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(caller)
            assert len(raised) == n, f"expect {n} errors, but got {len(raised)}"
            assert all(e is raised[0] for e in raised)
            assert calls == [1]
            with pytest.raises(RuntimeError, match="nil pointer"):
                await g.do("key", fn)  # not cached, no hang
            assert calls == [2]


class Goexit(BaseException):
    """runtime.Goexit(): the call ends with neither a value nor an Exception."""


@pytest.mark.usefixtures("no_leaks")
async def test_goexit_do() -> None:
    """TestGoexitDo: fn ends abnormally; no caller hangs, none gets a value or fn's error.

    Go ends every caller with Goexit too. In asyncgo the BaseException is not
    raised again in each caller (one KeyboardInterrupt must not become five):
    it propagates out of the Group's block as itself, as it would out of an
    errgroup ``Group``, and the callers outside get a RuntimeError that names it.
    """

    gate = anyio.Event()

    async def fn() -> Any:
        await gate.wait()
        raise Goexit("fn called runtime.Goexit()")

    n = 5
    outcomes: list[BaseException | None] = []

    async def caller(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await g.do("key", fn)
        except RuntimeError as exc:
            outcomes.append(exc)
        else:  # pragma: no cover - the failure being tested for
            outcomes.append(None)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:  # the callers live outside the Group
            with pytest.raises(Goexit, match="Goexit"):
                async with singleflight.Group() as g:
                    for _ in range(n):
                        await tg.start(caller)
                    await anyio.wait_all_tasks_blocked()  # all n callers share the call
                    gate.set()
                    await anyio.sleep_forever()  # cancelled when the call's BaseException arrives
    assert len(outcomes) == n
    for exc in outcomes:
        assert isinstance(exc, RuntimeError)
        assert "Goexit" in str(exc) and "'key'" in str(exc)
        assert isinstance(exc.__cause__, Goexit)


async def test_goexit_do_caller_inside_the_block() -> None:
    """A caller in the Group's block is cancelled with it; the BaseException comes out as itself."""

    async def fn() -> Any:
        await anyio.sleep(0)
        raise Goexit

    with anyio.fail_after(HANG), pytest.raises(Goexit):
        async with singleflight.Group() as g:
            await g.do("key", fn)


async def test_goexit_do_with_an_error_in_the_block() -> None:
    """As in errgroup, a call's BaseException wins over an error of the block itself."""
    gate = anyio.Event()
    outcomes: list[BaseException] = []

    async def fn() -> Any:
        with anyio.CancelScope(shield=True):  # ends by Goexit even though the block failed
            await gate.wait()
        raise Goexit

    async def caller(g: singleflight.Group) -> None:
        try:
            await g.do("key", fn)
        except RuntimeError as exc:
            outcomes.append(exc)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            with pytest.raises(Goexit):
                async with singleflight.Group() as g:
                    tg.start_soon(caller, g)
                    await anyio.wait_all_tasks_blocked()
                    gate.set()
                    raise ValueError("the block fails too")
    assert len(outcomes) == 1 and isinstance(outcomes[0].__cause__, Goexit)


async def _fetch() -> int:
    return 1


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no "coroutine was never awaited"
async def test_do_with_a_coroutine_object_names_the_misuse() -> None:
    """``g.do(key, fetch())`` (Go: ``g.Do(key, fetch)``) raises a TypeError naming it, at once."""
    async with singleflight.Group() as g:
        with pytest.raises(TypeError, match=r"takes an async function.*not g.do\(key, f\(\)\)"):
            await g.do("key", _fetch())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"takes an async function, not int"):
            await g.do("key", 42)  # type: ignore[arg-type]
        assert await g.do("key", _fetch) == (1, False)  # nothing was left in flight


async def test_do_with_a_sync_function_names_the_misuse() -> None:
    """A sync fn: every caller gets a TypeError saying fn is not async; nothing is cached."""

    def fetch() -> int:
        return 1

    async with singleflight.Group() as g:
        for _ in range(2):
            with pytest.raises(TypeError, match=r"takes an async function.*fetch.*returned int"):
                await g.do("key", fetch)  # type: ignore[arg-type]

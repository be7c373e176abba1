"""singleflight.Group (issue #4) on asyncio, uvloop and trio.

Racy states are reached with ``anyio.wait_all_tasks_blocked()``; nothing here
asserts wall-clock time.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _guards import REGISTRATIONS, eager_tasks, registration_mode

from asyncgo import singleflight, testing

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, params=REGISTRATIONS)
def registration(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test in both registration modes of asyncio's task group (see _guards)."""
    return registration_mode(request, monkeypatch)


class Boom(Exception):
    pass


class Backend:
    """A fake slow backend: counts calls, each waits for `release` (or a few checkpoints)."""

    def __init__(self) -> None:
        self.calls = 0
        self.running = 0
        self.cancelled = 0
        self.release = anyio.Event()

    async def fetch(self, key: str, suffix: str = "") -> str:
        self.calls += 1
        self.running += 1
        try:
            await self.release.wait()
            return f"{key}{suffix}#{self.calls}"
        except BaseException:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def do_into(sf: singleflight.Group, key: str, fn: Any, out: list[Any], *args: Any) -> None:
    out.append(await sf.do(key, fn, *args))


async def do_in_scope(
    sf: singleflight.Group,
    key: str,
    fn: Any,
    out: list[Any],
    *,
    task_status: anyio.abc.TaskStatus[anyio.CancelScope],
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        out.append(await sf.do(key, fn, key))


def task_count() -> int:
    return len(anyio.get_running_tasks())


# -- sharing ------------------------------------------------------------------------------


async def test_concurrent_callers_share_one_call() -> None:
    be = Backend()
    out: list[Any] = []
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(do_into, sf, "k", be.fetch, out, "k")
        await anyio.wait_all_tasks_blocked()
        assert be.calls == 1
        be.release.set()
    assert be.calls == 1
    assert out == [("k#1", True)] * 100


async def test_a_lone_caller_is_not_shared_and_nothing_is_cached() -> None:
    be = Backend()
    be.release.set()
    async with singleflight.Group() as sf:
        assert await sf.do("k", be.fetch, "k") == ("k#1", False)
        assert await sf.do("k", be.fetch, "k") == ("k#2", False)
        assert not sf._calls


async def test_the_first_callers_fn_and_args_are_used() -> None:
    be = Backend()
    out: list[Any] = []
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(do_into, sf, "k", be.fetch, out, "k", "-first")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(do_into, sf, "k", be.fetch, out, "k", "-second")
        await anyio.wait_all_tasks_blocked()
        be.release.set()
    assert out == [("k-first#1", True)] * 2


async def test_different_keys_run_concurrently() -> None:
    be = Backend()
    out: list[Any] = []
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        for key in ("a", "b", "a", "c", "b"):
            tg.start_soon(do_into, sf, key, be.fetch, out, key)
        await anyio.wait_all_tasks_blocked()
        assert be.running == 3
        be.release.set()
    assert sorted(v[0][0] for v in out) == ["a", "a", "b", "b", "c"]
    assert {v[1] for v in out if v[0][0] == "c"} == {False}
    assert {v[1] for v in out if v[0][0] != "c"} == {True}


async def test_any_hashable_key() -> None:
    async def f(x: int) -> int:
        return x + 1

    async with singleflight.Group() as sf:
        assert await sf.do(("user", 7), f, 1) == (2, False)


# -- errors ---------------------------------------------------------------------------------


async def test_the_error_reaches_every_caller_as_the_same_exception() -> None:
    release = anyio.Event()
    calls = 0

    async def broken() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise Boom("backend down")

    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await sf.do("k", broken)
        except Boom as exc:
            errors.append(exc)

    async with singleflight.Group() as sf:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            release.set()
        assert calls == 1
        assert len(errors) == 5
        assert all(e is errors[0] for e in errors)
        frames = traceback.extract_tb(errors[0].__traceback__)
        assert len(frames) < 12, "every caller's frames piled up on the shared traceback"

        # the group is still usable; the failure was not cached
        async def ok() -> str:
            return "ok"

        assert await sf.do("k", ok) == ("ok", False)


async def test_an_error_does_not_disturb_other_calls() -> None:
    be = Backend()
    out: list[Any] = []

    async def broken() -> str:
        raise Boom

    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(do_into, sf, "good", be.fetch, out, "good")
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(Boom):
            await sf.do("bad", broken)
        be.release.set()
    assert out == [("good#1", False)]
    assert be.cancelled == 0


# -- cancellation ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["first", "later"])
async def test_a_cancelled_caller_does_not_fail_the_others(which: str) -> None:
    be = Backend()
    out: list[Any] = []
    cancelled_out: list[Any] = []
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        if which == "first":
            scope = await tg.start(do_in_scope, sf, "k", be.fetch, cancelled_out)
            await anyio.wait_all_tasks_blocked()
        tg.start_soon(do_into, sf, "k", be.fetch, out, "k")
        tg.start_soon(do_into, sf, "k", be.fetch, out, "k")
        await anyio.wait_all_tasks_blocked()
        if which == "later":
            scope = await tg.start(do_in_scope, sf, "k", be.fetch, cancelled_out)
            await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert be.running == 1, "the shared call was cancelled with one caller"
        be.release.set()
    assert cancelled_out == []
    assert out == [("k#1", True)] * 2
    assert be.calls == 1 and be.cancelled == 0


async def test_the_call_is_cancelled_when_every_caller_has_gone() -> None:
    be = Backend()
    out: list[Any] = []
    async with singleflight.Group() as sf:
        baseline = task_count()
        async with anyio.create_task_group() as tg:
            scopes = [await tg.start(do_in_scope, sf, "k", be.fetch, out) for _ in range(3)]
            await anyio.wait_all_tasks_blocked()
            for s in scopes[:-1]:
                s.cancel()
            await anyio.wait_all_tasks_blocked()
            assert be.running == 1
            scopes[-1].cancel()  # the last caller leaves
        await anyio.wait_all_tasks_blocked()
        assert be.cancelled == 1 and be.running == 0
        assert task_count() == baseline, "the cancelled call's task is still alive"
        assert not sf._calls
        # the key was forgotten: the next do() starts a fresh call
        be.release.set()
        assert await sf.do("k", be.fetch, "k") == ("k#2", False)
    assert out == []


async def test_every_caller_gone_before_the_call_started_never_calls_fn() -> None:
    be = Backend()
    async with singleflight.Group() as sf:
        with anyio.CancelScope() as scope:
            scope.cancel()
            # the do() is cancelled at its first checkpoint: no call is registered
            await sf.do("k", be.fetch, "k")
        assert be.calls == 0
        assert not sf._calls


async def test_new_caller_after_everyone_left_gets_a_new_call() -> None:
    be = Backend()
    out: list[Any] = []
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        scope = await tg.start(do_in_scope, sf, "k", be.fetch, out)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        while "k" in sf._calls:  # until the cancelled caller has left (and dropped the key)
            await anyio.lowlevel.checkpoint()
        # at once, whether or not the old call has finished unwinding
        tg.start_soon(do_into, sf, "k", be.fetch, out, "k")
        await anyio.wait_all_tasks_blocked()
        be.release.set()
    assert out == [("k#2", False)]
    assert be.calls == 2 and be.cancelled == 1


async def test_woken_then_natively_cancelled_caller_gets_the_result(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    if anyio_backend[0] != "asyncio":
        pytest.skip("asyncio.Task.cancel() is asyncio-specific")
    be = Backend()
    got: list[Any] = []
    async with singleflight.Group() as sf:

        async def caller() -> None:
            got.append(await sf.do("k", be.fetch, "k"))
            await asyncio.sleep(0)
            got.append("not reached")

        task = asyncio.ensure_future(caller())
        await anyio.wait_all_tasks_blocked()
        be.release.set()
        while not be.calls or be.running:
            await anyio.lowlevel.checkpoint()  # the call ends and wakes the caller...
        task.cancel()  # ...which is cancelled natively before it runs
        with pytest.raises(asyncio.CancelledError):
            await task
    assert got == [("k#1", False)]


# -- forget ---------------------------------------------------------------------------------


async def test_forget_starts_a_new_call_for_later_callers() -> None:
    first = Backend()
    second = Backend()
    out_old: list[Any] = []
    out_new: list[Any] = []
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(do_into, sf, "k", first.fetch, out_old, "k")
        await anyio.wait_all_tasks_blocked()
        sf.forget("k")
        sf.forget("never-seen")  # no-op
        tg.start_soon(do_into, sf, "k", second.fetch, out_new, "k")
        tg.start_soon(do_into, sf, "k", second.fetch, out_new, "k")
        await anyio.wait_all_tasks_blocked()
        first.release.set()  # the old call ends: it must not drop the new call's entry
        await anyio.wait_all_tasks_blocked()
        assert "k" in sf._calls
        tg.start_soon(do_into, sf, "k", second.fetch, out_new, "k")  # joins the new call
        await anyio.wait_all_tasks_blocked()
        second.release.set()
    assert out_old == [("k#1", False)]
    assert out_new == [("k#1", True)] * 3
    assert first.calls == 1 and second.calls == 1


# -- structure ---------------------------------------------------------------------------------


async def test_do_after_the_block_raises() -> None:
    sf = singleflight.Group()

    async def f() -> int:
        return 1

    assert await sf.do("k", f) == (1, False)  # never entered: Go's zero value works
    async with sf:
        pass
    with pytest.raises(
        RuntimeError, match=r"^singleflight: Group.do\(\) on a Group that is closed"
    ):
        await sf.do("k", f)
    with pytest.raises(RuntimeError, match="entered only once"):
        async with sf:
            pass
    assert "closed" in repr(sf)


async def test_leaving_the_block_waits_for_calls_still_in_flight() -> None:
    """A caller outside the block still gets its result: exit waits for the call."""
    steps = 0

    async def slow() -> str:
        nonlocal steps
        for _ in range(5):
            steps += 1
            await anyio.lowlevel.checkpoint()
        return "done"

    out: list[Any] = []
    async with anyio.create_task_group() as outer:
        async with singleflight.Group() as sf:
            outer.start_soon(do_into, sf, "k", slow, out)
            await anyio.wait_all_tasks_blocked()  # (slow() checkpoints: it runs on)
        assert steps == 5
    assert out == [("done", False)]


async def test_leaving_the_block_by_an_exception_cancels_calls_and_fails_outside_callers() -> None:
    be = Backend()
    errors: list[BaseException] = []

    async def outside_caller(sf: singleflight.Group) -> None:
        try:
            await sf.do("k", be.fetch, "k")
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as outer:
        with pytest.raises(Boom):
            async with singleflight.Group() as sf:
                outer.start_soon(outside_caller, sf)
                await anyio.wait_all_tasks_blocked()
                raise Boom
    assert be.cancelled == 1
    assert len(errors) == 1
    assert "was shut down" in str(errors[0])


async def test_no_task_left_after_exit() -> None:
    baseline = task_count()
    be = Backend()
    be.release.set()
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        for key in "abcabc":
            tg.start_soon(do_into, sf, key, be.fetch, [], key)
    assert task_count() == baseline


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_cancellation_stress(seed: int) -> None:
    """Many callers on a few keys, cancelled at random points. Every caller that
    returns got the value of a call for its key, shared by everyone on that call;
    a call runs only while some caller waits for it; nothing is left behind."""
    rng = random.Random(seed)
    calls = 0
    running: dict[int, int] = {}  # call id -> callers' view checked below
    results: dict[int, str] = {}
    scopes: list[anyio.CancelScope] = []
    got: list[tuple[str, str, bool]] = []
    stop = False

    async def fetch(key: str) -> str:
        nonlocal calls
        calls += 1
        me = calls
        running[me] = 1
        try:
            for _ in range(rng.randrange(1, 6)):
                await anyio.lowlevel.checkpoint()
            if rng.random() < 0.1:
                raise Boom(key)
            results[me] = f"{key}:{me}"
            return results[me]
        finally:
            del running[me]

    async def caller(sf: singleflight.Group) -> None:
        for _ in range(30):
            key = rng.choice("abc")
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                try:
                    value, shared = await sf.do(key, fetch, key)
                except Boom as exc:
                    assert exc.args == (key,)
                else:
                    got.append((key, value, shared))
            scopes.remove(scope)

    async def chaos() -> None:
        while not stop:
            await anyio.lowlevel.checkpoint()
            if scopes and rng.random() < 0.2:
                rng.choice(scopes).cancel()

    baseline = task_count()
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(chaos)
        async with anyio.create_task_group() as callers:
            for _ in range(10):
                callers.start_soon(caller, sf)
        stop = True
    assert task_count() == baseline
    assert not running
    assert got
    for key, value, _shared in got:
        k, me = value.split(":")
        assert k == key
        assert results[int(me)] == value
    assert calls < 10 * 30, "no call was ever shared"


# -- found by a black-box audit (2026-12-05) ----------------------------------------


async def test_the_calls_exception_keeps_its_own_context() -> None:
    """Raised in a caller that is handling an exception of its own, the call's error
    keeps the chain it had in fn (as a plain ``await fn()`` would) and does not pick
    up one caller's private exception for every other caller."""
    gate = anyio.Event()

    async def fn() -> None:
        await gate.wait()
        try:
            {}["missing"]
        except KeyError:
            raise Boom("lookup failed")

    got: list[BaseException] = []
    async with singleflight.Group() as sf:

        async def handling_its_own() -> None:
            try:
                raise ValueError("the caller's own, unrelated")
            except ValueError:
                with pytest.raises(Boom) as info:
                    await sf.do("k", fn)
                got.append(info.value)

        async def plain() -> None:
            with pytest.raises(Boom) as info:
                await sf.do("k", fn)
            got.append(info.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(handling_its_own)
            tg.start_soon(plain)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    assert len(got) == 2 and got[0] is got[1]
    assert isinstance(got[0].__context__, KeyError), repr(got[0].__context__)


@pytest.mark.parametrize("other", ["asyncio", "trio"])
async def test_do_from_another_event_loop_raises(other: str) -> None:
    import threading

    ran: list[str] = []

    async def fn() -> str:
        ran.append(threading.current_thread().name)
        return "v"

    async with singleflight.Group() as sf:

        def there() -> BaseException | None:
            async def body() -> None:
                with anyio.fail_after(5):
                    await sf.do("k", fn)

            try:
                anyio.run(body, backend=other)
            except BaseException as exc:  # noqa: BLE001 - checked below
                return exc
            return None

        err = await anyio.to_thread.run_sync(there)
        assert isinstance(err, RuntimeError), repr(err)
        assert "singleflight: Group.do() from another event loop" in str(err)
        assert ran == []
        assert await sf.do("k", fn) == ("v", False)  # from its own loop: fine


@pytest.mark.parametrize("entered", [True, False])
async def test_fn_calling_do_for_its_own_key_raises_at_once(entered: bool) -> None:
    """Go would deadlock; the call's own task joining its key raises RuntimeError instead,
    which fails the call in every caller; nothing is left behind, the key is free again."""
    sf = singleflight.Group()
    both_in = anyio.Event()

    async def inner() -> int:
        return 1

    async def fn() -> int:
        # (Once both callers wait for this call: a caller whose do() met a schedule
        # point could otherwise come after the call ended, and start one of its own.)
        await both_in.wait()
        return (await sf.do("k", inner))[0]  # would wait for itself

    async def run() -> None:
        errors: list[BaseException] = []

        async def caller() -> None:
            try:
                await sf.do("k", fn)
            except RuntimeError as e:
                errors.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            both_in.set()
        assert len(errors) == 2 and errors[0] is errors[1]
        assert "fn calls do() for its own key 'k'" in str(errors[0])
        assert await sf.do("k", inner) == (1, False)  # the key is free again

    async with testing.no_leaks():
        with anyio.fail_after(10):
            if entered:
                async with sf:
                    await run()
            else:
                await run()


# -- found by a second audit: the block's exception groups, stray cancellations, closing ----


class Fatal(BaseException):
    """A BaseException that is not an Exception (as KeyboardInterrupt), safe under pytest."""


@pytest.mark.parametrize("kind", ["ExceptionGroup", "BaseExceptionGroup", "nested"])
@pytest.mark.parametrize("in_flight", [False, True])
async def test_the_blocks_own_exception_group_propagates_as_itself(
    kind: str, in_flight: bool
) -> None:
    """The block's own exception group is not wrapped in the task group's, nor stripped
    to a leaf (a group holding a BaseException used to come out as that leaf)."""
    mine: BaseExceptionGroup[BaseException]
    if kind == "ExceptionGroup":
        mine = ExceptionGroup("mine", [Boom(1), KeyError(2)])
    elif kind == "BaseExceptionGroup":
        mine = BaseExceptionGroup("mine", [Fatal(), Boom(2)])
    else:
        mine = ExceptionGroup("mine", [ExceptionGroup("inner", [Boom(1)])])
    be = Backend()
    errors: list[BaseException] = []

    async def outside_caller(sf: singleflight.Group) -> None:
        try:
            await sf.do("k", be.fetch, "k")
        except RuntimeError as exc:
            errors.append(exc)

    got: BaseException | None = None
    async with anyio.create_task_group() as outer:
        try:
            async with singleflight.Group() as sf:
                if in_flight:
                    outer.start_soon(outside_caller, sf)
                    await anyio.wait_all_tasks_blocked()
                raise mine
        except BaseException as exc:  # noqa: BLE001 - checked below
            got = exc
    assert got is mine, repr(got)
    assert len(errors) == int(in_flight)
    assert be.cancelled == int(in_flight)


async def raise_a_stray_cancellation() -> None:
    """Raise the backend's cancellation exception, which no enclosing cancel scope caused.

    asyncio: an await of a future someone else cancelled (a connection's, a shared
    future). trio: a ``Cancelled`` caught from a scope that has ended, raised again.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio
        caught: BaseException | None = None
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await anyio.lowlevel.checkpoint()
            except anyio.get_cancelled_exc_class() as exc:
                caught = exc
        assert caught is not None
        raise caught
    fut = loop.create_future()
    fut.cancel()
    await fut


async def test_a_stray_cancellation_from_fn_reaches_its_callers_only() -> None:
    """fn raising a cancellation that no cancel scope of the call caused: its callers
    get a RuntimeError from it; nobody is cancelled -- not the caller in the block
    (whose body used to be skipped silently), not the callers of other keys."""
    gate = anyio.Event()
    be = Backend()
    out: list[Any] = []
    errors: list[BaseException] = []
    reached: list[str] = []

    async def stray() -> str:
        await gate.wait()
        await raise_a_stray_cancellation()
        return "not reached"

    async def other_caller(sf: singleflight.Group) -> None:
        try:
            await sf.do("stray", stray)
        except RuntimeError as exc:
            errors.append(exc)

    async with singleflight.Group() as sf:
        async with anyio.create_task_group() as tg:
            tg.start_soon(do_into, sf, "other", be.fetch, out, "other")
            tg.start_soon(other_caller, sf)
            await anyio.wait_all_tasks_blocked()
            gate.set()
            with pytest.raises(RuntimeError) as info:
                await sf.do("stray", stray)
            reached.append("after do")
            be.release.set()
        reached.append("end of body")
        # The Group is still usable.
        be2 = Backend()
        be2.release.set()
        assert await sf.do("k", be2.fetch, "k") == ("k#1", False)
    reached.append("after block")
    assert reached == ["after do", "end of body", "after block"]
    err = info.value
    assert errors == [err], "every caller gets the same exception"
    assert str(err).startswith("singleflight: the call for key 'stray' raised ")
    assert "no cancel scope" in str(err)
    assert isinstance(err.__cause__, anyio.get_cancelled_exc_class())
    assert out == [("other#1", False)]
    assert be.cancelled == 0


@pytest.mark.parametrize("body", ["waits", "shielded"])
async def test_the_group_still_cancels_its_calls_when_an_outer_scope_is_cancelled(
    body: str, registration: str
) -> None:
    """A genuine cancellation (an enclosing scope of the block) is still one: the call
    is cancelled and its callers outside are told the Group was shut down. The scope
    reaches the calls at once (trio's rule, on every backend), also while the body
    is shielded, not only once the block's owner has been cancelled."""
    if body == "shielded" and registration == "lazy":
        pytest.skip("forced lazy registration: no scope around the block in production")
    be = Backend()
    errors: list[BaseException] = []
    told = anyio.Event()

    async def outside_caller(sf: singleflight.Group) -> None:
        try:
            await sf.do("k", be.fetch, "k")
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            told.set()

    reached: list[str] = []
    async with anyio.create_task_group() as outer:
        with anyio.CancelScope() as scope:
            async with singleflight.Group() as sf:
                outer.start_soon(outside_caller, sf)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
                if body == "waits":
                    await anyio.sleep_forever()
                with anyio.CancelScope(shield=True), anyio.move_on_after(30) as guard:
                    await told.wait()  # before: the call ran on until the body ended
                assert not guard.cancelled_caught
            reached.append("not reached")
    assert scope.cancelled_caught
    assert reached == []
    assert be.cancelled == 1 and be.running == 0
    assert len(errors) == 1 and "was shut down" in str(errors[0])
    assert "a cancel scope around" in str(errors[0])


async def test_a_call_sees_the_deadline_around_the_block(registration: str) -> None:
    if registration == "lazy":
        pytest.skip("forced lazy registration: no scope around the block in production")
    seen: list[float] = []

    async def fn() -> int:
        seen.append(anyio.current_effective_deadline())
        return 1

    with anyio.fail_after(1000) as scope:
        async with singleflight.Group() as sf:
            assert await sf.do("k", fn) == (1, False)
    assert seen == [scope.deadline]


async def test_a_call_in_flight_can_be_joined_while_the_block_exits() -> None:
    """While the block waits at its exit for a call, another task may still join that
    call (it runs anyway); only a new call is refused."""
    release = anyio.Event()

    async def slow() -> str:
        await release.wait()
        return "v"

    out: dict[str, Any] = {}

    async def caller(name: str, sf: singleflight.Group, key: str) -> None:
        try:
            out[name] = await sf.do(key, slow)
        except RuntimeError as exc:
            out[name] = exc

    async def releaser() -> None:
        await anyio.wait_all_tasks_blocked()  # the late caller is parked on the call
        release.set()

    async def late(sf: singleflight.Group) -> None:
        await anyio.wait_all_tasks_blocked()  # the block is waiting at its exit now
        assert "closing" in repr(sf)
        await caller("new key", sf, "other")
        tg.start_soon(releaser)
        await caller("same key", sf, "k")

    async with anyio.create_task_group() as tg:
        async with singleflight.Group() as sf:
            tg.start_soon(caller, "first", sf, "k")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(late, sf)
    assert out["first"] == ("v", True)
    assert out["same key"] == ("v", True)
    err = out["new key"]
    assert isinstance(err, RuntimeError)
    assert str(err).startswith(
        "singleflight: Group.do() on a Group that is closing: its `async with` block "
        "is exiting, so no new call can start"
    ), str(err)
    assert "call do() inside" not in str(err)
    with pytest.raises(
        RuntimeError, match=r"^singleflight: Group.do\(\) on a Group that is closed"
    ):
        await sf.do("k", slow)


# -- the native task group (issue #4): a call's task is started like an errgroup task's ------


class Steps:
    """A call of *steps* checkpoints (None: until cancelled), counting how calls end."""

    def __init__(self, steps: int | None) -> None:
        self.steps = steps
        self.calls = self.finished = self.cancelled = 0

    async def fn(self) -> int:
        self.calls += 1
        try:
            if self.steps is None:
                await anyio.sleep_forever()
            for _ in range(self.steps or 0):
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        self.finished += 1
        return self.calls


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("steps", [0, 2, None])
@pytest.mark.parametrize("delay", range(7))
async def test_the_only_caller_cancelled_at_any_point(steps: int | None, delay: int) -> None:
    """The lone caller cancelled after *delay* checkpoints of another task: before do(),
    parked before the call's task has started, while fn runs, after fn has returned.
    It is cancelled or gets the value; a call still running is cancelled; nothing is
    left behind, and the next do() starts afresh."""
    s = Steps(steps)
    got: list[Any] = []
    async with singleflight.Group() as sf:
        baseline = task_count()
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def canceller() -> None:
                    for _ in range(delay):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                tg.start_soon(canceller)
                got.append(await sf.do("k", s.fn))
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        await anyio.wait_all_tasks_blocked()
        assert task_count() == baseline, "a call's task outlived its last caller"
        assert not sf._calls
        assert s.calls <= 1 and s.calls == s.finished + s.cancelled
        if got:
            assert got == [(1, False)] and s.finished == 1
        elif steps is None:
            assert s.finished == 0
        s.steps = 0
        assert await sf.do("k", s.fn) == (s.calls, False)


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("order", ["join first", "cancel first"])
async def test_the_only_caller_cancelled_as_another_joins(order: str) -> None:
    """The lone caller is cancelled in the same scheduling round as a second caller
    asks for the key. Either the second joined first -- the call goes on for it
    and it gets the shared value -- or it came after the first had left -- a new
    call for it. Never an error, never a value of a cancelled call."""
    for _ in range(10):
        be = Backend()
        first: list[Any] = []
        second: list[Any] = []
        async with singleflight.Group() as sf, anyio.create_task_group() as tg:
            scope = await tg.start(do_in_scope, sf, "k", be.fetch, first)
            await anyio.wait_all_tasks_blocked()
            assert be.running == 1
            if order == "join first":
                tg.start_soon(do_into, sf, "k", be.fetch, second, "k")
                scope.cancel()
            else:
                scope.cancel()
                tg.start_soon(do_into, sf, "k", be.fetch, second, "k")
            await anyio.wait_all_tasks_blocked()
            assert be.running == 1
            be.release.set()
        assert first == []
        if be.calls == 1:
            assert second == [("k#1", True)] and be.cancelled == 0
        else:
            assert second == [("k#2", False)] and be.calls == 2 and be.cancelled == 1
        assert not sf._calls


@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("how", ["normally", "by an exception", "by cancellation"])
async def test_the_block_exits_while_a_cancelled_call_is_still_unwinding(how: str) -> None:
    """Every caller left; the call is cancelled but finishes its shielded cleanup first
    (the cancellation never interrupts a shielded scope of fn's). The block's exit
    waits for it; no task is left."""
    shielded = anyio.Event()
    cleanup = anyio.Event()
    log: list[str] = []

    async def fn() -> str:
        try:
            with anyio.CancelScope(shield=True):
                shielded.set()
                await cleanup.wait()
                log.append("cleanup done")
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            log.append("cancelled")
            raise
        return "not reached"

    async def cancel_when_shielded(caller: anyio.CancelScope) -> None:
        await shielded.wait()
        caller.cancel()

    async def releaser() -> None:
        await anyio.wait_all_tasks_blocked()  # the block is waiting at its exit
        log.append("released")
        cleanup.set()

    async with anyio.create_task_group() as helpers:  # outside the scope cancelled below
        with anyio.CancelScope() as outer:
            try:
                async with singleflight.Group() as sf:
                    with anyio.CancelScope() as caller:
                        helpers.start_soon(cancel_when_shielded, caller)
                        await sf.do("k", fn)
                    assert caller.cancelled_caught
                    await anyio.wait_all_tasks_blocked()
                    assert log == [], "the cancellation broke into fn's shielded scope"
                    assert not sf._calls
                    helpers.start_soon(releaser)
                    if how == "by an exception":
                        raise Boom("left")
                    if how == "by cancellation":
                        outer.cancel()
                        await anyio.lowlevel.checkpoint()
            except Boom:
                assert how == "by an exception"
    assert log == ["released", "cleanup done", "cancelled"]
    assert outer.cancelled_caught == (how == "by cancellation")


@pytest.mark.usefixtures("no_leaks")
async def test_the_only_caller_cancelled_in_the_round_it_parks() -> None:
    """A sibling task cancels the lone caller right after it parked, so the caller may
    unwind before the call's task first runs (trio shuffles each scheduling round):
    then fn is never called; else the call is cancelled. Either way nothing is left."""
    s = Steps(None)
    for _ in range(30):
        async with singleflight.Group() as sf, anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            out: list[Any] = []

            async def caller(scope: anyio.CancelScope = scope, out: list[Any] = out) -> None:
                with scope:
                    out.append(await sf.do("k", s.fn))

            async def canceller(scope: anyio.CancelScope = scope) -> None:
                scope.cancel()  # runs right after the caller, in the same round

            tg.start_soon(caller)
            tg.start_soon(canceller)
        assert out == [] and not sf._calls
        assert s.calls == s.cancelled and s.finished == 0


async def test_the_calls_task_is_named_after_its_key_in_a_dump() -> None:
    """debug.tasks() and dump() show the call's task, named as before: lazily now."""
    from asyncgo import debug

    be = Backend()
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(sf.do, ("user", 1), be.fetch, "k")
        await anyio.wait_all_tasks_blocked()
        names = [t.name for t in debug.tasks()]
        assert "singleflight.Group.do(('user', 1))" in names, names
        assert "singleflight.Group.do(('user', 1))" in debug.dump()
        be.release.set()


async def test_the_call_runs_in_the_first_callers_context() -> None:
    """Context variables: the call's task starts with a copy of its first caller's
    context (as a task the caller started would); its changes stay in it."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []
    release = anyio.Event()

    async def fn() -> str:
        seen.append(var.get())
        var.set("changed by fn")
        await release.wait()
        return var.get()

    async def caller(value: str, out: list[Any]) -> None:
        var.set(value)
        out.append(await sf.do("k", fn))
        out.append(var.get())

    first: list[Any] = []
    second: list[Any] = []
    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        tg.start_soon(caller, "first", first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(caller, "second", second)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert seen == ["first"]
    assert first == [("changed by fn", True), "first"]
    assert second == [("changed by fn", True), "second"]
    assert var.get() == "unset"


@pytest.mark.usefixtures("no_leaks")
async def test_many_lone_calls_leave_nothing_behind() -> None:
    async def fn(i: int) -> int:
        return i

    async with singleflight.Group() as sf:
        baseline = task_count()
        for i in range(300):
            assert await sf.do(i % 3, fn, i) == (i, False)
        assert not sf._calls and task_count() == baseline


_FATAL_SCRIPT = """
import sys, anyio
from asyncgo import singleflight

async def fn():
    await anyio.sleep(0)
    raise {exc}("from fn")

async def main():
    async with singleflight.Group() as sf:
        await sf.do("k", fn)

try:
    anyio.run(main, backend="asyncio", backend_options={{"use_uvloop": {uvloop}}})
except {exc} as e:
    print("out of the run:", type(e).__name__, e)
"""


@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "SystemExit"])
async def test_a_calls_keyboardinterrupt_stops_the_asyncio_loop(
    exc: str, anyio_backend: tuple[str, dict[str, object]]
) -> None:
    """docs/singleflight.md: on asyncio and uvloop, a call raising KeyboardInterrupt or
    SystemExit stops the event loop itself (asyncio re-raises it out of the loop), as
    any task's does -- with no "exception was never retrieved" about the call's task."""
    import sys

    if anyio_backend[0] != "asyncio":
        pytest.skip("trio: the Group shuts down (test_go_singleflight.py::test_goexit_do)")
    uvloop = bool(anyio_backend[1].get("use_uvloop"))
    script = _FATAL_SCRIPT.format(exc=exc, uvloop=uvloop)
    proc = await anyio.run_process([sys.executable, "-c", script], check=False)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert out.strip() == f"out of the run: {exc} from fn", (out, err)
    # asyncio.run() complains about its main task, which raises it; never about the call's.
    futures = [line for line in err.splitlines() if line.startswith("future: <Task")]
    assert not [f for f in futures if "__main__.main" not in f], err


_CYCLE_SCRIPT = """
import faulthandler, anyio
from asyncgo import Deadlock, debug, singleflight
faulthandler.dump_traceback_later(40, exit=True)   # a hang fails with a traceback

sf = singleflight.Group()                      # never entered (Go's zero value)

async def fn():                                # waits for a task that joins its own call
    async with anyio.create_task_group() as tg:
        tg.start_soon(sf.do, "k", fn)
    return 1

async def main():
    if {detect}:
        try:
            async with debug.detect_deadlocks():
                await sf.do("k", fn)
        except Deadlock as e:
            print("deadlock:", "singleflight" in str(e))
    else:
        with anyio.move_on_after(0.05):
            await sf.do("k", fn)
        print("gave up")

anyio.run(main, backend={backend!r}, backend_options={options!r})
print("run ended")
"""


@pytest.mark.parametrize("detect", [True, False])
async def test_unentered_group_deadlock_cycle_lets_the_run_end(
    detect: bool, anyio_backend: tuple[str, dict[str, object]]
) -> None:
    """A cycle through another task (fn waits for a task that joins its own call) is
    a deadlock (docs/singleflight.md); after its callers gave up, the event loop's
    shutdown cancels the call and that task. The task, the call's last caller, must
    not wait (shielded) for the call, which waits for it: the run ended on no
    backend (black-box review)."""
    import sys

    script = _CYCLE_SCRIPT.format(
        detect=detect, backend=anyio_backend[0], options=anyio_backend[1]
    )
    with anyio.fail_after(120):
        proc = await anyio.run_process([sys.executable, "-c", script], check=False)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    first_line = "deadlock: True" if detect else "gave up"
    assert out.split() == [*first_line.split(), "run", "ended"], (out, err)


async def test_unentered_group_last_caller_fn_started_elsewhere_still_waits() -> None:
    """A task that fn started in a task group from outside is not one the call waits
    for: as the call's last caller, it still waits until the call has ended (so when
    every do has returned or raised, no task of the Group is left running)."""
    sf = singleflight.Group()
    log: list[str] = []

    async def helper(tg: Any) -> None:
        try:
            await sf.do("k", fn, tg)
        finally:
            log.append("helper left")

    async def fn(tg: Any) -> int:
        tg.start_soon(helper, tg)  # into the caller's task group
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # the cancelled call's clean-up takes a while
            log.append("call ended")
        return 1

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as first:

            async def cancel_later() -> None:
                await anyio.wait_all_tasks_blocked()
                first.cancel()  # the first caller leaves: helper is the only caller
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()  # helper leaves, the last caller

            tg.start_soon(cancel_later)
            await sf.do("k", fn, tg)
    assert log == ["call ended", "helper left"]


# -- never entered: Go's zero value (`var g singleflight.Group`) -------------------------


async def test_unentered_group_shares_one_call() -> None:
    sf = singleflight.Group()
    b = Backend()
    out: list[Any] = []
    async with testing.no_leaks():
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(do_into, sf, "k", b.fetch, out, "k")
            await anyio.wait_all_tasks_blocked()
            assert b.calls == 1 and b.running == 1
            b.release.set()
    assert out == [("k#1", True)] * 5
    assert b.calls == 1 and b.cancelled == 0
    assert "in_flight=0" in repr(sf)


async def test_unentered_group_errors_reach_every_caller() -> None:
    sf = singleflight.Group()
    started = anyio.Event()
    go = anyio.Event()

    async def fail() -> int:
        started.set()
        await go.wait()
        raise Boom("x")

    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await sf.do("k", fail)
        except Boom as e:
            errors.append(e)

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await started.wait()
        tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        go.set()
    assert len(errors) == 2 and errors[0] is errors[1]


async def test_unentered_group_first_caller_cancelled_call_goes_on() -> None:
    sf = singleflight.Group()
    b = Backend()
    out: list[Any] = []
    first = anyio.CancelScope()
    first_left = anyio.Event()

    async def first_caller() -> None:
        with first:
            await sf.do("k", b.fetch, "k")
        first_left.set()

    async with testing.no_leaks():
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_caller)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(do_into, sf, "k", b.fetch, out, "k")
            await anyio.wait_all_tasks_blocked()
            first.cancel()
            await first_left.wait()  # the first caller leaves at once...
            assert b.running == 1 and b.cancelled == 0  # ...and the call goes on
            b.release.set()
    assert out == [("k#1", True)]
    assert b.calls == 1 and b.cancelled == 0


async def test_unentered_group_last_caller_leaving_waits_for_the_cancelled_call() -> None:
    sf = singleflight.Group()
    log: list[str] = []

    async def slow() -> int:
        try:
            await anyio.sleep_forever()
        finally:
            log.append("fn unwound")
            await anyio.lowlevel.cancel_shielded_checkpoint()  # its unwinding takes a step
            log.append("fn ended")
        return 0  # pragma: no cover

    async with testing.no_leaks():
        with anyio.CancelScope() as scope:

            async def cancel_soon() -> None:
                await anyio.wait_all_tasks_blocked()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_soon)
                try:
                    await sf.do("k", slow)
                finally:
                    log.append("do left")
    assert log == ["fn unwound", "fn ended", "do left"]
    assert "in_flight=0" in repr(sf)

    # The key was forgotten: the next call is a fresh one.
    async def quick() -> int:
        return 7

    assert await sf.do("k", quick) == (7, False)


async def test_unentered_group_every_caller_gone_before_the_call_started() -> None:
    sf = singleflight.Group()
    ran: list[int] = []

    async def fn() -> int:
        ran.append(1)
        return 1

    async with testing.no_leaks():
        with anyio.CancelScope() as scope:
            scope.cancel()  # do() is cancelled at its first checkpoint, or while parked
            await sf.do("k", fn)
    assert ran == []
    assert "in_flight=0" in repr(sf)


async def test_unentered_group_base_exception_is_raised_in_every_caller() -> None:
    sf = singleflight.Group()
    go = anyio.Event()

    async def fatal() -> int:
        await go.wait()
        raise Fatal("stop")

    got: list[BaseException] = []

    async def caller() -> None:
        try:
            await sf.do("k", fatal)
        except Fatal as e:
            got.append(e)

    async with testing.no_leaks():
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            go.set()
    assert len(got) == 2 and isinstance(got[0], Fatal)


async def test_unentered_group_call_runs_in_the_first_callers_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    sf = singleflight.Group()

    async def read() -> str:
        await anyio.lowlevel.checkpoint()
        return var.get()

    var.set("first caller's")
    assert await sf.do("k", read) == ("first caller's", False)


def test_unentered_group_follows_its_callers_from_run_to_run() -> None:
    """A module-level Group (Go's package-level var) serves one event loop after another."""
    sf = singleflight.Group()

    async def f(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return x

    async def main(x: int) -> tuple[int, bool]:
        return await sf.do("k", f, x)

    assert anyio.run(main, 1, backend="asyncio") == (1, False)
    assert anyio.run(main, 2, backend="trio") == (2, False)
    assert anyio.run(main, 3, backend="asyncio") == (3, False)


# -- do_chan ------------------------------------------------------------------------------------


async def test_do_chan_shares_the_call_with_do_and_delivers_a_result() -> None:
    calls = 0

    async def load(k: str) -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.001)
        return k.upper()

    async with singleflight.Group() as sf, anyio.create_task_group() as tg:
        ch = sf.do_chan("a", load, "a")  # starts the call, returns at once
        got: list[Any] = []

        async def caller() -> None:
            got.append(await sf.do("a", load, "a"))

        tg.start_soon(caller)
        r = await ch.recv()
        assert r == singleflight.Result("A", None, True)
        assert (r.value, r.err, r.shared) == ("A", None, True)
        assert await ch.recv_ok() == (None, False)  # one Result, then closed
    assert got == [("A", True)]
    assert calls == 1


async def test_do_chan_delivers_the_error_as_the_same_object() -> None:
    boom = ValueError("boom")

    async def fail() -> str:
        await anyio.lowlevel.checkpoint()
        raise boom

    async with singleflight.Group() as sf:
        ch = sf.do_chan("k", fail)
        with pytest.raises(ValueError) as info:
            await sf.do("k", fail)
        r = await ch.recv()
    assert r.err is boom and info.value is boom
    assert r.value is None and r.shared is True


async def test_do_chan_caller_keeps_the_call_when_every_do_caller_leaves() -> None:
    """A do_chan caller never leaves: cancelling every do() caller does not cancel it."""
    gate = anyio.Event()

    async def slow() -> int:
        await gate.wait()
        return 7

    async with singleflight.Group() as sf:
        with anyio.CancelScope() as scope:
            ch = sf.do_chan("k", slow)

            async def cancel_soon() -> None:
                await anyio.wait_all_tasks_blocked()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_soon)
                await sf.do("k", slow)
        assert scope.cancelled_caught
        gate.set()
        assert await ch.recv() == (7, None, True)


async def test_do_chan_select_with_a_deadline_leaves_the_call_running() -> None:
    from asyncgo import background, recv, select, with_timeout

    gate = anyio.Event()
    finished: list[int] = []

    async def slow() -> int:
        await gate.wait()
        finished.append(1)
        return 1

    async with singleflight.Group() as sf:
        ch = sf.do_chan("k", slow)
        ctx, cancel = with_timeout(background(), 0)
        r = await select(recv(ch), recv(ctx.done()))
        assert r.index == 1  # the deadline first: Go's reason for DoChan
        cancel()
        gate.set()  # the call goes on; the Group's exit waits for it
    assert finished == [1]
    assert (await ch.recv()).value == 1


async def test_do_chan_call_cut_by_the_groups_shutdown_reports_it() -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    with pytest.raises(KeyError):
        async with singleflight.Group() as sf:
            ch = sf.do_chan("k", forever)
            await anyio.wait_all_tasks_blocked()
            raise KeyError("block fails")  # leaving by an exception cancels the calls
    r = await ch.recv()
    assert r.value is None and r.shared is False
    assert isinstance(r.err, RuntimeError)
    assert "cancelled because its Group was shut down" in str(r.err)


async def test_do_chan_misuse() -> None:
    async def f() -> int:
        return 1

    sf = singleflight.Group()
    with pytest.raises(RuntimeError, match=r"do_chan\(\) on a Group that was not entered"):
        sf.do_chan("k", f)
    with pytest.raises(TypeError, match=r"Group.do_chan"):
        async with singleflight.Group() as g:
            g.do_chan("k", f())  # type: ignore[arg-type]
    async with singleflight.Group() as g:
        pass
    with pytest.raises(RuntimeError, match=r"is closed"):
        g.do_chan("k", f)


async def test_do_chan_after_forget_starts_a_new_call() -> None:
    n = 0
    gate = anyio.Event()

    async def f() -> int:
        nonlocal n
        n += 1
        mine = n
        await gate.wait()
        return mine

    async with singleflight.Group() as sf:
        a = sf.do_chan("k", f)
        await anyio.wait_all_tasks_blocked()
        sf.forget("k")
        b = sf.do_chan("k", f)
        gate.set()
        assert sorted([(await a.recv()).value, (await b.recv()).value]) == [1, 2]


async def test_do_chan_call_failing_in_its_eager_first_step_leaves_no_stray_cancellation(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """Python 3.12, eager tasks: a call raising KeyboardInterrupt in its first step
    shuts the Group down from inside do_chan(); nothing cancels the owner afterwards."""

    async def kbd() -> None:
        raise KeyboardInterrupt

    with eager_tasks(anyio_backend):
        with pytest.raises(KeyboardInterrupt):
            async with singleflight.Group() as sf:
                with pytest.raises(KeyboardInterrupt):
                    sf.do_chan("k", kbd)
        await anyio.sleep(0)  # no stray cancellation lands here

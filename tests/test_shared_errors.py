"""Exceptions kept and raised again and again -- a task handle's, a job handle's, a
`once_value`'s, a context's `err()` -- stay as they are: the traceback does not grow
with every raise, no caller's exception is chained onto them, and notes do not pile
up (a review of shared objects, 2026-12-07)."""

from __future__ import annotations

import traceback

import pytest

from asyncgo import Group, Semaphore, WorkerPool, background, with_cancel
from asyncgo._exceptions import Canceled
from asyncgo.resilience import retry
from asyncgo.sync import once_value

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


async def boom() -> None:
    raise Boom("boom")


def tb_len(e: BaseException) -> int:
    return len(traceback.extract_tb(e.__traceback__))


async def test_a_task_handles_error_raised_many_times_keeps_its_traceback() -> None:
    with pytest.raises(Boom):
        async with Group() as g:
            h = await g.go(boom)
    lengths = []
    for _ in range(200):
        try:
            h.result()
        except Boom as e:
            lengths.append(tb_len(e))
        try:
            await h
        except Boom as e:
            lengths.append(tb_len(e))
    assert max(lengths) <= lengths[0] + 2  # (it grew by 3 frames a call)


async def test_a_job_handles_error_raised_many_times_keeps_its_traceback() -> None:
    async with WorkerPool(workers=1) as pool:
        h = await pool.submit(boom)
        with pytest.raises(Boom):
            await h
    lengths = []
    for _ in range(200):
        try:
            h.result()
        except Boom as e:
            lengths.append(tb_len(e))
    assert max(lengths) <= lengths[0] + 2


async def test_no_callers_exception_is_chained_onto_a_kept_error() -> None:
    # Raised inside caller A's except, the kept error took A's exception as its
    # __context__ (displayed, and A's frames kept alive); caller B then saw it.
    with pytest.raises(Boom):
        async with Group() as g:
            h = await g.go(boom)
    async with WorkerPool(workers=1) as pool:
        j = await pool.submit(boom)
        with pytest.raises(Boom):
            await j

    @once_value
    def conn() -> int:
        raise Boom("no connection")

    with pytest.raises(Boom):
        await conn()

    async def fails_in(which: str) -> BaseException:
        try:
            if which == "task":
                h.result()
            elif which == "job":
                j.result()
            else:
                await conn()
        except Boom as e:
            return e
        raise AssertionError("no error")

    for which in ("task", "job", "once"):
        try:
            raise KeyError("caller A's own error")
        except KeyError:
            err = await fails_in(which)
        assert not isinstance(err.__context__, KeyError), which
        err = await fails_in(which)  # caller B, outside any handler
        assert not isinstance(err.__context__, KeyError), which


async def test_semaphore_acquire_leaves_no_callers_exception_on_the_ctx_error() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    sem = Semaphore(1)
    try:
        raise KeyError("caller A's own error")
    except KeyError:
        with pytest.raises(Canceled):
            await sem.acquire(1, ctx)
    with pytest.raises(Canceled) as info:
        await sem.acquire(1, ctx)
    assert info.value is ctx.err()
    assert not isinstance(info.value.__context__, KeyError)
    assert info.value.__suppress_context__


async def test_notes_do_not_pile_up_on_a_shared_error() -> None:
    @once_value
    def conn() -> int:
        raise Boom("no connection")

    for _ in range(20):
        with pytest.raises(Boom):
            await retry(conn, attempts=1)
    with pytest.raises(Boom) as info:
        await conn()
    assert info.value.__notes__ == ["retry: gave up after 1 attempt"]

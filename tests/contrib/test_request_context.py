"""`asyncgo.contrib.new_request_context`: the one context per request the middlewares make."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from asyncgo import Canceled, DeadlineExceeded, background, with_cancel
from asyncgo.contrib import ClientDisconnected, new_request_context

pytestmark = pytest.mark.anyio


async def test_without_timeout_a_disconnect_is_the_cause() -> None:
    ctx, cancel = new_request_context(background(), None)
    assert ctx.err() is None and ctx.deadline() is None
    cancel(ClientDisconnected())
    assert isinstance(ctx.err(), Canceled)
    assert isinstance(ctx.cause(), ClientDisconnected)
    cancel()  # idempotent: the first cancellation wins
    assert isinstance(ctx.cause(), ClientDisconnected)


async def test_with_timeout_a_disconnect_before_the_deadline_is_the_cause() -> None:
    ctx, cancel = new_request_context(background(), 30.0)
    assert ctx.deadline() is not None and ctx.deadline() > anyio.current_time()
    cancel(ClientDisconnected())
    assert isinstance(ctx.err(), Canceled)
    assert isinstance(ctx.cause(), ClientDisconnected)


async def test_with_timeout_the_deadline_ends_it() -> None:
    ctx, cancel = new_request_context(background(), 0.01)
    with anyio.fail_after(10):
        await ctx.wait()
    assert isinstance(ctx.err(), DeadlineExceeded)
    assert ctx.cause() is ctx.err()
    cancel(ClientDisconnected())  # too late: changes nothing
    assert isinstance(ctx.cause(), DeadlineExceeded)


async def test_a_disconnect_after_an_unnoticed_deadline_leaves_deadline_exceeded() -> None:
    """Nobody looked at the context after its deadline passed: the deadline still wins
    (Go's timer would have fired first), not the later disconnect -- as with the two
    contexts the middlewares made before."""
    ctx, cancel = new_request_context(background(), 0.01)
    await anyio.sleep(0.05)  # past the deadline; nothing has read the context
    cancel(ClientDisconnected())
    assert isinstance(ctx.err(), DeadlineExceeded)


async def test_the_parent_ends_it_and_its_cause_is_the_parents() -> None:
    parent, cancel_parent = with_cancel(background())
    ctx, cancel = new_request_context(parent, 30.0)
    cancel_parent()
    assert isinstance(ctx.err(), Canceled)
    assert ctx.err() is parent.err()
    cancel(ClientDisconnected())
    assert ctx.cause() is parent.cause()


async def test_the_cancel_function_rejects_a_non_exception_cause() -> None:
    for timeout in (None, 30.0):
        ctx, cancel = new_request_context(background(), timeout)
        with pytest.raises(TypeError, match="cause must be an exception instance"):
            cancel("gone")  # type: ignore[arg-type]
        assert ctx.err() is None
        cancel()


async def test_the_pair_cancels_on_leaving_a_with_block() -> None:
    for timeout in (None, 30.0):
        with new_request_context(background(), timeout) as ctx:
            assert ctx.err() is None
        assert isinstance(ctx.err(), Canceled)


async def test_pump_of_a_source_that_never_awaits_lets_the_deadline_end_it() -> None:
    # aiohttp's write() waits only when its buffer is full: to a fast client, a source
    # that never awaits never yielded, and the stream ran past the request's deadline.
    from asyncgo.contrib import pump

    written = 0

    async def source() -> AsyncIterator[int]:
        for i in range(200_000):
            yield i

    async def write(item: object) -> None:
        nonlocal written
        written += 1

    ctx, cancel = new_request_context(background(), 0.01)
    with pytest.raises(DeadlineExceeded):
        with ctx.scope():
            await pump(ctx, source(), write)
    cancel()
    assert written < 200_000

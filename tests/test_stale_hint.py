"""Objects used under trio, then under asyncio in the same process (a module-level
primitive across two ``anyio.run`` calls): the runtime hint they keep says trio, and
the park paths' check for a cancellation on its way must not trust it.

Each case runs trio first, then asyncio or uvloop, so these are plain (sync) tests.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from _guards import LogLocker

from asyncgo import Chan, Cond

ASYNCIO = [
    pytest.param({}, id="asyncio"),
    pytest.param({"use_uvloop": True}, id="uvloop"),
]


@pytest.mark.parametrize("options", ASYNCIO)
def test_cond_wait_with_a_pending_cancellation_keeps_L_after_trio(options: Any) -> None:
    if options:
        pytest.importorskip("uvloop")
    lk = LogLocker()
    cond = Cond(lk)

    async def on_trio() -> None:
        async with cond:
            await cond.wait_for(lambda: True)  # never parks: the Cond stays unbound

    anyio.run(on_trio, backend="trio")
    lk.log.clear()
    caught: list[bool] = []

    async def on_asyncio() -> None:
        await lk.lock()
        with anyio.CancelScope() as scope:
            scope.cancel()  # pending before wait()
            await cond.wait()
        caught.append(scope.cancelled_caught)
        lk.unlock()

    anyio.run(on_asyncio, backend="asyncio", backend_options=options)
    assert caught == [True]
    assert lk.log == ["lock", "unlock"]  # L never let go inside wait()


@pytest.mark.parametrize("options", ASYNCIO)
def test_send_with_a_pending_cancellation_delivers_nothing_after_trio(options: Any) -> None:
    if options:
        pytest.importorskip("uvloop")
    ch = Chan[int](1)

    async def on_trio() -> None:
        await ch.send(0)  # fast paths only: the channel stays unbound
        assert await ch.recv() == 0

    anyio.run(on_trio, backend="trio")
    got: list[int] = []
    caught: list[bool] = []

    async def on_asyncio() -> None:
        ch.send_nowait(1)  # full

        async def receiver() -> None:
            got.append(ch.recv_nowait())  # would pull a parked sender's value in

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await ch.send(2)  # must wait, in a cancelled scope: raises, sends nothing
            caught.append(scope.cancelled_caught)

    anyio.run(on_asyncio, backend="asyncio", backend_options=options)
    assert caught == [True]
    assert got == [1]
    assert len(ch) == 0  # 2 was never sent

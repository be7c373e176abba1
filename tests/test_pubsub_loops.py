"""A Broadcast used from one event loop after another (sync tests: each runs its own loops)."""

from __future__ import annotations

import anyio
import pytest

from asyncgo._pubsub import Broadcast


@pytest.mark.parametrize(
    "runs",
    [("asyncio", "asyncio"), ("asyncio", "uvloop"), ("trio", "asyncio"), ("asyncio", "trio")],
)
def test_a_bus_outlives_its_event_loop(runs: tuple[str, str]) -> None:
    """Publishes that queue behind one another in one anyio.run, then again in a
    later one (a module-level bus, test loops): the ordering lock of the first run
    does not tie the bus to that loop."""
    bus = Broadcast[int]()

    async def main() -> list[int]:
        async with bus.subscribe(buffer=1) as sub:
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(bus.publish, i)  # the 2nd and 3rd queue
                return [await sub.recv() for _ in range(3)]

    for backend in runs:
        if backend == "uvloop":
            pytest.importorskip("uvloop")
            got = anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
        else:
            got = anyio.run(main, backend=backend)
        assert sorted(got) == [0, 1, 2]  # (trio starts tasks in its own order)

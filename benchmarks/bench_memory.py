"""Memory: bytes per idle channel and per task parked in a receive (tracemalloc).

Peers as in bench_chan.py: ``asyncio.Queue`` (asyncio, uvloop), ``anyio stream``
(a memory object stream *pair*, every backend), ``trio channel`` (a memory
channel *pair*, trio).

* ``idle_chan_unbuffered`` / ``idle_chan_buffered16``: 100,000 fresh, never-used
  channels -- ``Chan(0)`` / ``Chan(16)`` against ``Queue()`` / ``Queue(16)`` and
  the anyio / trio pairs of capacity 0 / 16 -- bytes per channel (the send and
  receive ends of a pair together; the list holding them is not counted).
* ``parked_recv_own_chan`` / ``parked_recv_shared_chan``: 10,000 tasks blocked
  in a receive, each on its own unbuffered channel or all on one. Bytes per
  parked task *minus the bare task*: the same tasks parked in
  ``anyio.sleep_forever()``, on one shared ``anyio.Event``, or with the
  backend's cheapest park (all awaiting one asyncio future; trio's
  ``wait_task_rescheduled``), whichever costs least, so the waiter is charged
  with everything beyond a task that merely sleeps. The channels themselves
  are made before the first reading.
  Readings are taken after ``anyio.wait_all_tasks_blocked()`` and
  ``gc.collect()``; every parked receiver is then woken with an item and the
  benchmark checks that each got exactly one.
  What a channel allocates lazily for its first waiter is charged to the
  waiter, what a peer allocated up front is not (``asyncio.Queue()`` makes its
  getter deque in its constructor): so the own-channel rows also report the
  metric ``with_channel``, the idle channel (``idle_chan_unbuffered``) plus its
  parked receiver -- what a task blocked on a channel of its own costs in all.
* ``idle_chan_after_park``: the own-channel case's channels once their one
  receiver has been served and has finished: the memory a channel keeps after
  it has had a waiter (lazily made waiter queues stay). Informational.

All values: bytes, lower is better.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from _harness import check, emit, parse_args, run

from asyncgo import Chan

# (send end, receive end); for single-object implementations both are the object.
Pair = tuple[Any, Any]


def asyncgo_pair(cap: int) -> Pair:
    ch = Chan[Any](cap)
    return ch, ch


def queue_pair(cap: int) -> Pair:
    q: asyncio.Queue[Any] = asyncio.Queue(cap)  # 0: unbounded, as Queue()
    return q, q


def anyio_pair(cap: int) -> Pair:
    tx, rx = anyio.create_memory_object_stream[Any](cap)
    return tx, rx


def trio_pair(cap: int) -> Pair:
    import trio

    tx, rx = trio.open_memory_channel[Any](cap)
    return tx, rx


# How to wake a parked receiver (no waiting) and how to receive, per implementation.
OPS: dict[str, tuple[str, str]] = {
    "asyncgo": ("send_nowait", "recv"),
    "asyncio.Queue": ("put_nowait", "get"),
    "anyio stream": ("send_nowait", "receive"),
    "trio channel": ("send_nowait", "receive"),
}


def impls(backend: str) -> list[tuple[str, Callable[[int], Pair]]]:
    out: list[tuple[str, Callable[[int], Pair]]] = [("asyncgo", asyncgo_pair)]
    if backend in ("asyncio", "uvloop"):
        out.append(("asyncio.Queue", queue_pair))
    out.append(("anyio stream", anyio_pair))
    if backend == "trio":
        out.append(("trio channel", trio_pair))
    return out


def targets(backend: str) -> list[dict[str, Any]]:
    """Issue #2: asyncgo's memory <= its asyncio.Queue and anyio counterparts."""
    t: list[dict[str, Any]] = []
    if backend in ("asyncio", "uvloop"):
        t.append({"peer": "asyncio.Queue", "max_ratio": 1.0})
    t.append({"peer": "anyio stream", "max_ratio": 1.0})
    return t


def native_park(backend: str) -> tuple[str, list[Callable[[], Awaitable[Any]]]]:
    """The cheapest park the backend offers: no allocation beyond the task itself."""
    if backend == "trio":
        from trio.lowlevel import Abort, wait_task_rescheduled

        def park() -> Awaitable[Any]:
            return wait_task_rescheduled(lambda _: Abort.SUCCEEDED)

        return "trio.lowlevel.wait_task_rescheduled()", [park]
    fut = asyncio.get_running_loop().create_future()  # one future all tasks await
    return "await one shared asyncio future", [lambda: fut]


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def idle_bytes(make: Callable[[int], Pair], cap: int, n: int) -> float:
    """Bytes per fresh channel (both ends), the holding lists excluded."""
    tx_list: list[Any] = [None] * n
    rx_list: list[Any] = [None] * n
    m0 = traced()
    for i in range(n):
        tx, rx = make(cap)
        tx_list[i] = tx
        rx_list[i] = rx
    m1 = traced()
    del tx_list, rx_list
    return (m1 - m0) / n


async def park_bytes(
    n: int, recv_fns: list[Callable[[], Awaitable[Any]]], wake: Callable[[int], None] | None
) -> tuple[float, int]:
    """Bytes per task while *n* tasks each await ``recv_fns[i % len]()``.

    Then wakes them all (``wake(i)`` delivers item i; None: cancel the tasks instead)
    and returns (bytes per parked task, how many items the tasks received).
    """
    got: list[Any] = []
    done = [0]
    k = len(recv_fns)

    async def task(fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            got.append(await fn())
        finally:
            done[0] += 1

    m0 = traced()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(task, recv_fns[i % k])
        await anyio.wait_all_tasks_blocked()
        m1 = traced()
        check(done[0] == 0, f"{done[0]} of {n} tasks were not parked when measured")
        if wake is None:
            tg.cancel_scope.cancel()
        else:
            for i in range(n):
                wake(i)
    return (m1 - m0) / n, len(got)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    backend, quick = args.backend, args.quick
    n_idle = 10_000 if quick else 100_000
    n_park = 1_000 if quick else 10_000
    tracemalloc.start()

    async def bench_main() -> None:
        # Idle channels.
        idle0: dict[str, float] = {}
        for cap, bench in ((0, "idle_chan_unbuffered"), (16, "idle_chan_buffered16")):
            for name, make in impls(backend):
                idle_bytes(make, cap, 1000)  # warm up (type caches, free lists)
                v = idle_bytes(make, cap, n_idle)
                if cap == 0:
                    idle0[name] = v
                extra: dict[str, Any] = {"lower_is_better": True, "n": n_idle, "cap": cap}
                if name == "asyncio.Queue" and cap == 0:
                    extra["note"] = "Queue() is unbounded (asyncio.Queue has no capacity 0)"
                if name == "asyncgo":
                    extra["targets"] = targets(backend)
                emit(bench, name, backend, v, "bytes", **extra)

        # The bare task: the cheapest way to park a task that is not a channel.
        bare: dict[str, float] = {}
        parks: list[Callable[[], tuple[str, list[Callable[[], Awaitable[Any]]]]]] = [
            lambda: ("anyio.sleep_forever()", [anyio.sleep_forever]),
            lambda: ("anyio.Event().wait(), one shared event", [anyio.Event().wait]),
            lambda: native_park(backend),
        ]
        for mk in parks:
            await park_bytes(100, mk()[1], None)  # warm up
            label, fns = mk()  # fresh: cancelling the warm-up may have cancelled a future
            bare[label] = (await park_bytes(n_park, fns, None))[0]
        base_label = min(bare, key=bare.__getitem__)
        base = bare[base_label]

        # Parked receivers, each on its own channel or all on one.
        for bench in ("parked_recv_own_chan", "parked_recv_shared_chan"):
            shared = bench == "parked_recv_shared_chan"
            for name, make in impls(backend):
                send_op, recv_op = OPS[name]
                for warm in (True, False):
                    count = 100 if warm else n_park
                    n_chan = 1 if shared else count
                    txs: list[Any] = [None] * n_chan
                    rxs: list[Any] = [None] * n_chan
                    m_before = traced()
                    for i in range(n_chan):
                        txs[i], rxs[i] = make(0)
                    recvs = [getattr(rx, recv_op) for rx in rxs]
                    sends = [getattr(tx, send_op) for tx in txs]

                    def wake(i: int, sends: list[Any] = sends, k: int = n_chan) -> None:
                        sends[i % k](i)

                    per_task, received = await park_bytes(count, recvs, wake)
                    check(
                        received == count,
                        f"{bench}/{name}: {received} of {count} parked receivers got an item",
                    )
                    del recvs, sends, wake
                    m_after = traced()  # the channels, once their receivers are gone
                    del txs, rxs
                if name == "asyncgo":
                    targets_ = targets(backend)
                else:
                    targets_ = []
                emit(
                    bench,
                    name,
                    backend,
                    per_task - base,
                    "bytes",
                    lower_is_better=True,
                    n=n_park,
                    bare_task_bytes=round(base, 1),
                    bare_task=base_label,
                    bare_tasks={k_: round(v_, 1) for k_, v_ in bare.items()},
                    parked_task_bytes=round(per_task, 1),
                    **({"targets": targets_} if targets_ else {}),
                    **(
                        {}
                        if shared
                        else {"metrics": {"with_channel": idle0[name] + per_task - base}}
                    ),
                )
                if not shared:
                    emit(
                        "idle_chan_after_park",
                        name,
                        backend,
                        (m_after - m_before) / n_park,
                        "bytes",
                        lower_is_better=True,
                        n=n_park,
                        cap=0,
                    )

    run(bench_main, backend)


if __name__ == "__main__":
    main()

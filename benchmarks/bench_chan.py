"""Channel and select throughput: asyncgo `Chan` against what a user would otherwise pick.

Peers, each on the backends where a user would pick it:

* ``asyncio.Queue`` (asyncio, uvloop),
* ``anyio stream``: anyio memory object streams (every backend),
* ``trio channel``: trio memory channels (trio).

Benchmarks (issue #2):

* ``pingpong_unbuffered``: two tasks, two unbuffered channels, round trips/s.
  ``asyncio.Queue`` has no capacity 0: it runs with ``Queue(1)``.
* ``buffered_1to1``: one producer, one consumer, capacity 1024, msg/s.
* ``mpmc_4x4``: four producers, four consumers, capacity 64, msg/s; the metric
  ``min_share`` is the smallest consumer's share of the messages divided by the
  fair share (1.0 = perfectly even).
* ``select2_buffered`` / ``select2_unbuffered``: one producer on each of two
  channels (capacity 1024 / 0), one consumer taking from both, msg/s. asyncgo
  uses ``select(recv(a), recv(b))``; the peers have no select, so the loss-free
  equivalent is a forwarder task per source moving items into one merged
  queue/stream of the same capacity, read by the consumer. ``asyncgo recv`` is
  the same two producers sending into *one* channel read with plain ``recv()``:
  the baseline of the "select >= 0.5x recv" target.

* ``select4_buffered`` (informational): the same with four producers on four
  channels (capacity 1024), ``select`` over four cases; the peers run four
  forwarders.

* ``poll_empty`` (informational): one task polling an empty channel, polls/s --
  Go's non-blocking receive, ``select { case v := <-ch: ... default: }``. asyncgo
  uses ``select(recv(ch), default=True)``; the peers their ``*_nowait`` receive
  and catch the exception. asyncgo's poll is a cancel point (and yields every few
  hundred polls); the peers' never are.

* ``recv_nowait_empty`` / ``nowait_pair``: the same poll with ``ch.recv_nowait()``
  and ``except WouldBlock``, like for like with the peers' ``*_nowait`` receive;
  and a ``send_nowait`` + ``recv_nowait`` pair on a buffered channel (capacity
  16), pairs/s. Neither is a cancel point, for asyncgo or the peers.

* ``*_plain_tasks`` (asyncio, uvloop; informational): ping-pong, buffered 1→1
  and 4→4 MPMC again, asyncgo against ``asyncio.Queue``, with the tasks started by
  ``asyncio.create_task`` and awaited with ``asyncio.gather`` -- what a plain
  asyncio program (or a web framework's request task) runs, where anyio has
  given the tasks no state.

Every implementation runs the same task structure (one anyio task group, the same
producer/consumer coroutines, only the bound send/receive methods differ), and
only the transfer is timed. Each consumer stops at end-of-stream sentinels
(``None``) and the benchmark checks that the received count and sum equal what
was sent and that every queue is empty afterwards: a lost or duplicated item is a
`BenchError`, never a number.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from time import perf_counter
from typing import Any

import anyio
from _harness import check, emit, parse_args, run
from _harness import timed_tasks as timed_anyio_tasks

from asyncgo import Chan, WouldBlock, recv, select

Send = Callable[[Any], Awaitable[None]]
Recv = Callable[[], Awaitable[Any]]
Endpoints = tuple[Send, Recv, Callable[[], int]]  # send, recv, items left in the buffer

QUEUE0_NOTE = "asyncio.Queue has no capacity 0: Queue(1) stands in for an unbuffered channel"
FORWARD_NOTE = (
    "peers have no select: one forwarder task per source moves items into one merged "
    "queue/stream of the same capacity, which the consumer reads (loss-free as long as "
    "the forwarders are not cancelled while holding an item); asyncio.Queue runs with "
    "Queue(1) where the channels are unbuffered"
)
RECV_NOTE = (
    "asyncgo recv: the same producers (two; four in select4) send into one Chan read "
    "with plain recv() "
    "(the baseline of the select >= 0.5x recv target)"
)


# -- implementations: the same interface, only the bound methods differ --------------


def make_asyncgo(cap: int) -> Endpoints:
    ch = Chan[Any](cap)
    return ch.send, ch.recv, ch.__len__


def make_queue(cap: int) -> Endpoints:
    q: asyncio.Queue[Any] = asyncio.Queue(max(cap, 1))
    return q.put, q.get, q.qsize


def make_anyio(cap: int) -> Endpoints:
    tx, rx = anyio.create_memory_object_stream[Any](cap)
    return tx.send, rx.receive, lambda: tx.statistics().current_buffer_used


def make_trio(cap: int) -> Endpoints:
    import trio

    tx, rx = trio.open_memory_channel[Any](cap)
    return tx.send, rx.receive, lambda: tx.statistics().current_buffer_used


PLAIN_NOTE = (
    "tasks made by asyncio.create_task and awaited with asyncio.gather (no anyio task group)"
)
PLAIN = [False]  # run the tasks as plain asyncio tasks (the *_plain_tasks rows)


async def timed_tasks(tasks: Sequence[Callable[[], Awaitable[object]]]) -> float:
    return await timed_anyio_tasks(tasks, plain=PLAIN[0])


def peers(backend: str) -> list[tuple[str, Callable[[int], Endpoints]]]:
    """(name, factory) of every implementation measured on *backend*, asyncgo first."""
    impls: list[tuple[str, Callable[[int], Endpoints]]] = [("asyncgo", make_asyncgo)]
    if backend in ("asyncio", "uvloop"):
        impls.append(("asyncio.Queue", make_queue))
    impls.append(("anyio stream", make_anyio))
    if backend == "trio":
        impls.append(("trio channel", make_trio))
    return impls


def throughput_targets(backend: str) -> list[dict[str, Any]]:
    """Issue #2: >= 1.0x asyncio.Queue (asyncio, uvloop), >= 5x anyio / trio channels."""
    t: list[dict[str, Any]] = []
    if backend in ("asyncio", "uvloop"):
        t.append({"peer": "asyncio.Queue", "min_ratio": 1.0})
    t.append({"peer": "anyio stream", "min_ratio": 5.0})
    if backend == "trio":
        t.append({"peer": "trio channel", "min_ratio": 5.0})
    return t


# -- the task bodies, shared by every implementation -------------------------------


async def produce(send: Send, lo: int, hi: int) -> None:
    for i in range(lo, hi):
        await send(i)


async def consume(recv_: Recv, stop_after: int, out: list[tuple[int, int]]) -> None:
    """Receive until *stop_after* sentinels arrived; record (count, sum) of the items."""
    count = total = seen = 0
    while True:
        v = await recv_()
        if v is None:
            seen += 1
            if seen == stop_after:
                break
            continue
        count += 1
        total += v
    out.append((count, total))


async def forward(recv_: Recv, send: Send) -> None:
    """Move items from one queue to another, sentinel included, then stop."""
    while True:
        v = await recv_()
        await send(v)
        if v is None:
            return


def expect(out: list[tuple[int, int]], n: int, bench: str, impl: str) -> None:
    count = sum(c for c, _ in out)
    total = sum(s for _, s in out)
    check(count == n, f"{bench}/{impl}: received {count} items, sent {n}: items lost or duplicated")
    check(total == n * (n - 1) // 2, f"{bench}/{impl}: the received values differ from those sent")


# -- the benchmarks ------------------------------------------------------------------


async def pingpong(make: Callable[[int], Endpoints], n: int, bench: str, impl: str) -> float:
    """Round trips/s between two tasks over two unbuffered channels."""
    ping_send, ping_recv, ping_len = make(0)
    pong_send, pong_recv, pong_len = make(0)
    replies = [0]

    async def pinger() -> None:
        for i in range(n):
            await ping_send(i)
            if await pong_recv() != i:
                check(False, f"{bench}/{impl}: reply {i} out of order")
            replies[0] += 1

    async def ponger() -> None:
        for _ in range(n):
            await pong_send(await ping_recv())

    elapsed = await timed_tasks([pinger, ponger])
    check(replies[0] == n, f"{bench}/{impl}: {replies[0]} replies for {n} pings")
    check(ping_len() == 0 and pong_len() == 0, f"{bench}/{impl}: items left behind")
    return n / elapsed


async def one_to_one(make: Callable[[int], Endpoints], n: int, bench: str, impl: str) -> float:
    """msg/s from one producer to one consumer through a channel of capacity 1024."""
    send, recv_, left = make(1024)
    out: list[tuple[int, int]] = []

    async def producer() -> None:
        await produce(send, 0, n)
        await send(None)

    elapsed = await timed_tasks([producer, lambda: consume(recv_, 1, out)])
    expect(out, n, bench, impl)
    check(left() == 0, f"{bench}/{impl}: items left behind")
    return n / elapsed


async def mpmc(
    make: Callable[[int], Endpoints], n: int, bench: str, impl: str, p: int = 4, c: int = 4
) -> tuple[float, float]:
    """msg/s with *p* producers and *c* consumers on one channel of capacity 64, and the
    smallest consumer's share of the messages as a fraction of the fair share."""
    send, recv_, left = make(64)
    out: list[tuple[int, int]] = []
    finished = [0]
    per = n // p

    async def producer(k: int) -> None:
        await produce(send, k * per, (k + 1) * per)
        finished[0] += 1
        if finished[0] == p:  # the last producer ends every consumer
            for _ in range(c):
                await send(None)

    tasks: list[Callable[[], Awaitable[None]]] = [(lambda k=k: producer(k)) for k in range(p)]
    tasks += [lambda: consume(recv_, 1, out)] * c
    elapsed = await timed_tasks(tasks)
    expect(out, per * p, bench, impl)
    check(left() == 0, f"{bench}/{impl}: items left behind")
    min_share = min(cnt for cnt, _ in out) / (per * p / c)
    return per * p / elapsed, min_share


async def select2(
    impl: str, make: Callable[[int], Endpoints], cap: int, n: int, bench: str, k: int = 2
) -> float:
    """msg/s into one consumer from *k* producers on *k* channels (see the module doc)."""
    part = n // k
    out: list[tuple[int, int]] = []

    async def producer(send: Send, j: int) -> None:
        await produce(send, j * part, (j + 1) * part)
        await send(None)

    tasks: list[Callable[[], Awaitable[None]]]
    if impl == "asyncgo":  # select over the k channels
        chans = [Chan[Any](cap) for _ in range(k)]
        a, b = chans[0], chans[1]

        async def consumer() -> None:
            count = total = seen = 0
            cases = [recv(c) for c in chans]
            while True:
                r = await (select(recv(a), recv(b)) if k == 2 else select(*cases))
                if not r.ok:  # (not check(r.ok, f"..."): that formats a string per item)
                    check(False, f"{bench}: select reported a closed channel")
                v = r.value
                if v is None:
                    seen += 1
                    if seen == k:
                        break
                    continue
                count += 1
                total += v
            out.append((count, total))

        tasks = [partial(producer, c.send, j) for j, c in enumerate(chans)]
        tasks.append(consumer)
        lefts = [c.__len__ for c in chans]
    elif impl == "asyncgo recv":  # the same producers, one channel, plain recv
        send, recv_, left = make(cap)
        tasks = [partial(producer, send, j) for j in range(k)]
        tasks.append(lambda: consume(recv_, k, out))
        lefts = [left]
    else:  # forwarder tasks merge the sources into one queue
        m_send, m_recv, m_left = make(cap)
        tasks, lefts = [], [m_left]
        for j in range(k):
            s_send, s_recv, s_left = make(cap)
            tasks += [partial(producer, s_send, j), partial(forward, s_recv, m_send)]
            lefts.append(s_left)
        tasks.append(lambda: consume(m_recv, k, out))
    elapsed = await timed_tasks(tasks)
    expect(out, k * part, bench, impl)
    check(all(f() == 0 for f in lefts), f"{bench}/{impl}: items left behind")
    return k * part / elapsed


async def poll_empty(impl: str, n: int) -> float:
    """Polls/s of a non-blocking receive on an empty channel (nothing is ever there)."""
    found = 0
    if impl == "asyncgo":
        ch = Chan[Any](1)
        t0 = perf_counter()
        for _ in range(n):
            if (await select(recv(ch), default=True)).index >= 0:
                found += 1
    else:
        if impl == "asyncio.Queue":
            q: asyncio.Queue[Any] = asyncio.Queue(1)
            get2, empty2 = q.get_nowait, asyncio.QueueEmpty
        elif impl == "anyio stream":
            _tx, rx = anyio.create_memory_object_stream[Any](1)
            get2, empty2 = rx.receive_nowait, anyio.WouldBlock
        else:
            import trio

            _ttx, trx = trio.open_memory_channel[Any](1)
            get2, empty2 = trx.receive_nowait, trio.WouldBlock
        t0 = perf_counter()
        for _ in range(n):
            try:
                get2()
                found += 1
            except empty2:
                pass
    elapsed = perf_counter() - t0  # (not the loop's clock: uvloop's is cached)
    check(found == 0, f"poll_empty/{impl}: received from an empty channel")
    return n / elapsed


def nowait_ops(impl: str, n: int, pair: bool) -> float:
    """Non-blocking operations/s: a receive on an empty channel, or a send + receive pair."""
    if impl == "asyncgo":
        ch = Chan[Any](16)
        put, get, empty = ch.send_nowait, ch.recv_nowait, WouldBlock
    elif impl == "asyncio.Queue":
        q: asyncio.Queue[Any] = asyncio.Queue(16)
        put, get, empty = q.put_nowait, q.get_nowait, asyncio.QueueEmpty
    elif impl == "anyio stream":
        tx, rx = anyio.create_memory_object_stream[Any](16)
        put, get, empty = tx.send_nowait, rx.receive_nowait, anyio.WouldBlock
    else:
        import trio

        ttx, trx = trio.open_memory_channel[Any](16)
        put, get, empty = ttx.send_nowait, trx.receive_nowait, trio.WouldBlock
    found = 0
    t0 = perf_counter()
    if pair:
        for i in range(n):
            put(i)
            found += get() == i
    else:
        for _ in range(n):
            try:
                get()
                found += 1
            except empty:
                pass
    elapsed = perf_counter() - t0
    want = n if pair else 0
    check(found == want, f"nowait/{impl}: {found} items matched, expected {want}")
    return n / elapsed


# -- driver ----------------------------------------------------------------------------


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    backend, quick = args.backend, args.quick
    n_pp = 2_000 if quick else 100_000
    n_buf = 20_000 if quick else 1_000_000
    n_mpmc = 20_000 if quick else 1_000_000
    n_sel = 20_000 if quick else 400_000
    warm = 2_000

    async def bench_main() -> None:
        impls = peers(backend)

        # Unbuffered ping-pong.
        for name, make in impls:
            await pingpong(make, warm // 10, "warmup", name)
            v = await pingpong(make, n_pp, "pingpong_unbuffered", name)
            extra: dict[str, Any] = {"n": n_pp}
            if name == "asyncio.Queue":
                extra["note"] = QUEUE0_NOTE
            if name == "asyncgo":
                t: list[dict[str, Any]] = []
                if backend in ("asyncio", "uvloop"):
                    t.append({"peer": "asyncio.Queue", "min_ratio": 1.0})
                if backend == "trio":
                    t.append({"peer": "trio channel", "min_ratio": 1.0})
                extra["targets"] = t
            emit("pingpong_unbuffered", name, backend, v, "round trips/s", **extra)

        # Buffered 1 -> 1.
        for name, make in impls:
            await one_to_one(make, warm, "warmup", name)
            v = await one_to_one(make, n_buf, "buffered_1to1", name)
            extra = {"n": n_buf, "cap": 1024}
            if name == "asyncgo":
                extra["targets"] = throughput_targets(backend)
            emit("buffered_1to1", name, backend, v, "msg/s", **extra)

        # 4 -> 4 MPMC.
        for name, make in impls:
            await mpmc(make, warm, "warmup", name)
            v, share = await mpmc(make, n_mpmc, "mpmc_4x4", name)
            extra = {"n": n_mpmc, "cap": 64, "metrics": {"min_share": share}}
            if name == "asyncgo":
                extra["targets"] = [
                    *throughput_targets(backend),
                    {"metric": "min_share", "min": 0.5},
                ]
            emit("mpmc_4x4", name, backend, v, "msg/s", **extra)

        # select over two channels, buffered and unbuffered.
        sel_impls = [impls[0], ("asyncgo recv", make_asyncgo), *impls[1:]]
        for cap, bench in ((1024, "select2_buffered"), (0, "select2_unbuffered")):
            for name, make in sel_impls:
                await select2(name, make, cap, warm, "warmup")
                v = await select2(name, make, cap, n_sel, bench)
                extra = {"n": n_sel, "cap": cap}
                if name == "asyncgo":
                    extra["targets"] = [{"peer": "asyncgo recv", "min_ratio": 0.5}]
                elif name == "asyncgo recv":
                    extra["note"] = RECV_NOTE
                else:
                    extra["note"] = FORWARD_NOTE
                emit(bench, name, backend, v, "msg/s", **extra)

        # select over four channels (informational): a select of more than two cases
        # picks its poll order from a table of permutations.
        for name, make in sel_impls:
            await select2(name, make, 1024, warm, "warmup", k=4)
            v = await select2(name, make, 1024, n_sel, "select4_buffered", k=4)
            extra = {"n": n_sel, "cap": 1024}
            if name == "asyncgo recv":
                extra["note"] = RECV_NOTE
            elif name != "asyncgo":
                extra["note"] = FORWARD_NOTE
            emit("select4_buffered", name, backend, v, "msg/s", **extra)

        # Polling an empty channel: Go's non-blocking receive (informational).
        n_poll = 20_000 if quick else 400_000
        for name, _make in impls:
            await poll_empty(name, warm)
            v = await poll_empty(name, n_poll)
            emit("poll_empty", name, backend, v, "polls/s", n=n_poll)
        for bench, pair, unit in (
            ("recv_nowait_empty", False, "polls/s"),
            ("nowait_pair", True, "pairs/s"),
        ):
            for name, _make in impls:
                if name == "asyncgo recv":
                    continue
                nowait_ops(name, warm, pair)
                v = nowait_ops(name, n_poll, pair)
                emit(bench, name, backend, v, unit, n=n_poll)

        # The same three again with plain asyncio tasks (informational).
        if backend in ("asyncio", "uvloop"):
            PLAIN[0] = True
            try:
                for name, make in impls[:2]:  # asyncgo, asyncio.Queue
                    await pingpong(make, warm // 10, "warmup", name)
                    v = await pingpong(make, n_pp, "pingpong_unbuffered_plain_tasks", name)
                    note = f"{PLAIN_NOTE}; {QUEUE0_NOTE}" if name == "asyncio.Queue" else PLAIN_NOTE
                    emit(
                        "pingpong_unbuffered_plain_tasks",
                        name,
                        backend,
                        v,
                        "round trips/s",
                        n=n_pp,
                        note=note,
                    )
                for name, make in impls[:2]:
                    await one_to_one(make, warm, "warmup", name)
                    v = await one_to_one(make, n_buf, "buffered_1to1_plain_tasks", name)
                    emit(
                        "buffered_1to1_plain_tasks",
                        name,
                        backend,
                        v,
                        "msg/s",
                        n=n_buf,
                        cap=1024,
                        note=PLAIN_NOTE,
                    )
                for name, make in impls[:2]:
                    await mpmc(make, warm, "warmup", name)
                    v, share = await mpmc(make, n_mpmc, "mpmc_4x4_plain_tasks", name)
                    emit(
                        "mpmc_4x4_plain_tasks",
                        name,
                        backend,
                        v,
                        "msg/s",
                        n=n_mpmc,
                        cap=64,
                        metrics={"min_share": share},
                        note=PLAIN_NOTE,
                    )
            finally:
                PLAIN[0] = False

    run(bench_main, backend)


if __name__ == "__main__":
    main()

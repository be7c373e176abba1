"""asyncgo showcase: the same Go-style program on asyncio, uvloop and trio.

Run: ``python examples/showcase.py --backend all`` (what ``make demo`` does).
Each section prints what it did; the script exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable

import anyio

import asyncgo
from asyncgo import Chan, Selected, rate, recv, select, send, stages


async def generator_and_pipeline() -> None:
    """Go's generator + pipeline: numbers -> squares -> sum, one task per stage."""
    nums: Chan[int] = Chan()
    squares: Chan[int] = Chan(8)

    async def gen(out: asyncgo.SendChan[int]) -> None:
        for i in range(1, 101):
            await out.send(i)
        out.close()

    async def square(inp: asyncgo.RecvChan[int], out: asyncgo.SendChan[int]) -> None:
        async for n in inp:
            await out.send(n * n)
        out.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(gen, nums.send_only())
        tg.start_soon(square, nums.recv_only(), squares.send_only())
        total = 0
        async for sq in squares:
            total += sq
    assert total == sum(i * i for i in range(1, 101)), total
    print(f"  pipeline: sum of squares 1..100 = {total}")


async def fan_in_with_select() -> None:
    """Fan-in with select: two producers, one consumer, nothing lost, fair choice."""
    a: Chan[str] = Chan(4)
    b: Chan[str] = Chan(4)
    n = 500

    async def produce(ch: Chan[str], tag: str) -> None:
        for i in range(n):
            await ch.send(f"{tag}{i}")
        ch.close()

    got: Counter[str] = Counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce, a, "a")
        tg.start_soon(produce, b, "b")
        open_a, open_b = True, True
        while open_a or open_b:
            # A closed channel is replaced by None: Go's nil channel, never ready.
            match await select(recv(a if open_a else None), recv(b if open_b else None)):
                case Selected(0, _, False):
                    open_a = False
                case Selected(1, _, False):
                    open_b = False
                case Selected(_, str(v), True):
                    got[v[0]] += 1
    assert got == Counter({"a": n, "b": n}), got
    print(f"  fan-in: received {got['a']} from a and {got['b']} from b via select")


async def timeout_with_select() -> None:
    """select with a timer channel: the Go idiom `case <-time.After(d)`."""
    never: Chan[int] = Chan()
    r = await select(recv(never), recv(asyncgo.time.after(0.05)))
    assert r.index == 1
    print("  timeout: select chose time.after(0.05); the silent channel lost nothing")


async def unbuffered_rendezvous() -> None:
    """Two selects meet on an unbuffered channel: one sends, the other receives."""
    ch: Chan[str] = Chan()
    results: list[Selected[str | None]] = []

    async def sender() -> None:
        results.append(await select(send(ch, "hello")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        results.append(await select(recv(ch)))
    assert sorted(r.value or "" for r in results) == ["", "hello"]
    print("  rendezvous: select(send) met select(recv) on an unbuffered channel")


async def cancellation_loses_nothing() -> None:
    """A recv cancelled while waiting takes nothing: the item goes to the next receiver."""
    ch: Chan[int] = Chan()
    with anyio.move_on_after(0.01):
        await ch.recv()  # nobody sends: cancelled after 10 ms
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.send, 42)
        assert await ch.recv() == 42
    print("  cancellation: a cancelled recv left the next item to the next receiver")


async def throughput() -> None:
    """A quick, informal throughput figure (benchmarks/ has the real comparison)."""
    n = 100_000
    ch: Chan[int] = Chan(1024)

    async def produce() -> None:
        for i in range(n):
            await ch.send(i)
        ch.close()

    start = time.perf_counter()
    count = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        async for _ in ch:
            count += 1
    elapsed = time.perf_counter() - start
    assert count == n
    print(f"  throughput: {n / elapsed:,.0f} messages/s through a Chan(1024)")


async def context_deadline() -> None:
    """A Context with a deadline, selected on like Go's `case <-ctx.Done()`."""
    ctx, cancel = asyncgo.with_timeout(asyncgo.background(), 0.05)
    with cancel_on_exit(cancel):
        never: Chan[int] = Chan()
        r = await select(recv(never), recv(ctx.done()))
    assert r.index == 1 and isinstance(ctx.err(), asyncgo.DeadlineExceeded)
    print(f"  context: the deadline fired: ctx.err() = {ctx.err()!r}")


class cancel_on_exit:  # noqa: N801 - reads like `with closing(...)`
    def __init__(self, cancel: Callable[[], None]) -> None:
        self.cancel = cancel

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.cancel()


async def errgroup_first_error() -> None:
    """errgroup: the first error cancels the others and is raised as itself."""
    started: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        if i == 3:
            raise ValueError("job 3 failed")
        await anyio.sleep(10)  # cancelled by the first error
        return i

    try:
        async with asyncgo.Group(limit=4) as g:
            for i in range(4):
                await g.go(work, i)
    except ValueError as e:
        print(f"  errgroup: {len(started)} tasks, first error raised as itself: {e!r}")
    else:
        raise AssertionError("the group should have raised")


async def pipeline_of_stages() -> None:
    """A pipeline: source -> map with 8 workers -> filter -> collect."""

    async def slow_square(x: int) -> int:
        await anyio.sleep(0.001)
        return x * x

    p = (
        asyncgo.pipeline(range(100))
        | stages.map(slow_square, workers=8)
        | stages.filter(lambda v: v % 2 == 0)
    )
    out = await p.collect()
    assert out == [x * x for x in range(100) if x % 2 == 0]
    print(f"  pipeline: {len(out)} even squares, in order, through 8 workers")


async def rate_limited_pool() -> None:
    """A worker pool whose jobs pass through a token bucket (100/s, burst 5)."""
    lim = rate.Limiter(100, 5)

    async def call(i: int) -> int:
        await lim.wait()
        return i

    start = anyio.current_time()
    async with asyncgo.WorkerPool(workers=4) as pool:
        handles = [await pool.submit(call, i) for i in range(25)]
    elapsed = anyio.current_time() - start
    assert [await h for h in handles] == list(range(25))
    # 5 at once, then 20 more at 100/s: about 0.2 s.
    print(f"  rate + pool: 25 calls at 100/s (burst 5) took {elapsed:.2f} s (expect ~0.20)")


SECTIONS = [
    generator_and_pipeline,
    fan_in_with_select,
    timeout_with_select,
    unbuffered_rendezvous,
    cancellation_loses_nothing,
    context_deadline,
    errgroup_first_error,
    pipeline_of_stages,
    rate_limited_pool,
    throughput,
]


async def main() -> None:
    for section in SECTIONS:
        await section()


BACKENDS: dict[str, tuple[str, dict[str, object]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


def run(name: str) -> None:
    backend, options = BACKENDS[name]
    print(f"== asyncgo {asyncgo.__version__} on {name} ==")
    anyio.run(main, backend=backend, backend_options=options)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    args = parser.parse_args()
    for name in BACKENDS if args.backend == "all" else [args.backend]:
        run(name)
    sys.exit(0)

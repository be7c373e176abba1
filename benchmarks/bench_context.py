"""Contexts against plain anyio cancel scopes (issue #3).

Benchmarks:

* ``tree_create_cancel``: build a tree of 100k contexts (fan-out 10: a root,
  then 10, 100, ... children level by level) with ``with_cancel`` and cancel the
  root, which marks every descendant done in one walk; contexts per second. The
  peer ``anyio CancelScope`` is the same tree made of ``anyio.CancelScope``
  objects linked by hand (each keeps a list of its children) and cancelled by
  walking it: anyio has no parent/child link between scopes that are not
  entered, so that is what a user without contexts would write. Both runs check
  that every node ended up cancelled.
* ``timeout_fast_op``: a fast operation (a send and a receive on a buffered
  channel that never wait) under a timeout, operations per second:
  ``with with_timeout(parent, 10) as ctx: with ctx.scope(): ...`` against
  ``with anyio.fail_after(10): ...``, and the operation alone as a baseline.
* ``timeout_select_done``: Go's idiom, ``select(recv(ch), recv(ctx.done()))``
  under ``with_timeout`` -- which arms a real timer on the loop for the
  deadline -- against ``fail_after`` around a plain send + ``recv`` (the same peer
  as in ``timeout_fast_op``, timed again).
* ``sleep_cpu``: 100 tasks each sleeping 1 ms ten times in a row (1000 sleeps);
  CPU time per sleep (``time.process_time``), lower is better:
  ``asyncgo.time.sleep`` against ``anyio.sleep`` and the loop's own sleep
  (``asyncio.sleep``, ``trio.sleep``). The CPU time, not the wall time, which is
  the sleeps'. What limits 100 workers on 1 ms jobs (see ``bench_pool.py``).

Every timed section runs three times in the process; the best is reported.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Awaitable, Callable
from time import perf_counter, process_time
from typing import Any

import anyio
from _harness import check, emit, parse_args, run

from asyncgo import Canceled, Chan, background, recv, select, with_cancel, with_timeout
from asyncgo import time as gotime

ROUNDS = 3
TREE_NOTE = (
    "the same tree of scopes, linked by hand (a children list per scope) and cancelled "
    "by walking it: anyio links scopes only when they are entered"
)
BARE_NOTE = "the same send + receive with no timeout at all (the floor)"


def best(fn: Callable[[], float]) -> float:
    """The fastest of ROUNDS runs of *fn* (which returns the seconds it took)."""
    times = []
    for _ in range(ROUNDS):
        gc.collect()
        times.append(fn())
    return min(times)


async def best_async(fn: Callable[[], Awaitable[float]]) -> float:
    times = []
    for _ in range(ROUNDS):
        gc.collect()
        times.append(await fn())
    return min(times)


# -- tree_create_cancel ---------------------------------------------------------------


def tree_asyncgo(n: int) -> float:
    t0 = perf_counter()
    root, cancel = with_cancel(background())
    nodes = [root]
    keep = [cancel]  # the cancel functions a real program would hold
    frontier = [root]
    while len(nodes) < n:
        nxt = []
        for p in frontier:
            for _ in range(10):
                c, cf = with_cancel(p)
                nodes.append(c)
                keep.append(cf)
                nxt.append(c)
                if len(nodes) == n:
                    break
            if len(nodes) == n:
                break
        frontier = nxt
    cancel()
    took = perf_counter() - t0
    check(len(nodes) == n, "tree size")
    check(all(type(c.err()) is Canceled for c in nodes), "asyncgo: a node was not cancelled")
    return took


class _ScopeNode:
    __slots__ = ("children", "scope")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.children: list[_ScopeNode] = []


def tree_anyio(n: int) -> float:
    t0 = perf_counter()
    root = _ScopeNode()
    nodes = [root]
    frontier = [root]
    while len(nodes) < n:
        nxt = []
        for p in frontier:
            for _ in range(10):
                c = _ScopeNode()
                p.children.append(c)
                nodes.append(c)
                nxt.append(c)
                if len(nodes) == n:
                    break
            if len(nodes) == n:
                break
        frontier = nxt
    stack = [root]
    while stack:
        node = stack.pop()
        node.scope.cancel()
        stack.extend(node.children)
    took = perf_counter() - t0
    check(len(nodes) == n, "tree size")
    check(all(x.scope.cancel_called for x in nodes), "anyio: a scope was not cancelled")
    return took


# -- timeout_fast_op / timeout_select_done ------------------------------------------------------


async def op_bare(ch: Chan[int], n: int) -> float:
    send, recv_ = ch.send, ch.recv
    t0 = perf_counter()
    for i in range(n):
        await send(i)
        await recv_()
    return perf_counter() - t0


async def op_with_timeout(ch: Chan[int], n: int) -> float:
    send, recv_ = ch.send, ch.recv
    parent = background()
    t0 = perf_counter()
    for i in range(n):
        with with_timeout(parent, 10) as ctx:
            with ctx.scope():
                await send(i)
                await recv_()
    return perf_counter() - t0


async def op_fail_after(ch: Chan[int], n: int) -> float:
    send, recv_ = ch.send, ch.recv
    fail_after = anyio.fail_after
    t0 = perf_counter()
    for i in range(n):
        with fail_after(10):
            await send(i)
            await recv_()
    return perf_counter() - t0


async def select_with_timeout(ch: Chan[int], n: int) -> float:
    send = ch.send
    parent = background()
    t0 = perf_counter()
    for i in range(n):
        ctx, cancel = with_timeout(parent, 10)
        await send(i)
        r = await select(recv(ch), recv(ctx.done()))
        cancel()
        if r.index != 0:
            raise AssertionError("the deadline fired in a 10 s timeout")
    return perf_counter() - t0


async def sleep_cpu(nap: Callable[[float], Awaitable[None]], tasks: int, each: int) -> float:
    """CPU seconds per sleep of *tasks* tasks sleeping 1 ms *each* times in a row."""

    async def sleeper() -> None:
        for _ in range(each):
            await nap(0.001)

    gc.collect()
    c0 = process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(sleeper)
    return (process_time() - c0) / (tasks * each)


async def bench_sleep_cpu(backend: str, quick: bool) -> None:
    each = 2 if quick else 10
    if backend == "trio":
        import trio

        native: Callable[[float], Awaitable[None]] = trio.sleep
        native_name = "trio.sleep"
    else:
        import asyncio

        native, native_name = asyncio.sleep, "asyncio.sleep"
    impls = [("asyncgo", gotime.sleep), ("anyio.sleep", anyio.sleep), (native_name, native)]
    best_of: dict[str, float] = {}
    for _ in range(ROUNDS):  # interleaved: the same window for every implementation
        for impl, nap in impls:
            took = await sleep_cpu(nap, 100, each)
            best_of[impl] = min(best_of.get(impl, math.inf), took)
    for impl, _ in impls:
        extra: dict[str, Any] = {
            "lower_is_better": True,
            "note": f"100 tasks x {each} sleeps of 1 ms; CPU time per sleep",
        }
        emit("sleep_cpu", impl, backend, best_of[impl] * 1e6, "us/sleep", **extra)


async def main(backend: str, quick: bool) -> None:
    n_tree = 10_000 if quick else 100_000
    n_ops = 5_000 if quick else 50_000

    for impl, fn in (("asyncgo", tree_asyncgo), ("anyio CancelScope", tree_anyio)):
        took = best(lambda fn=fn: fn(n_tree))  # type: ignore[misc]
        extra: dict[str, Any] = {"contexts": n_tree}
        if impl != "asyncgo":
            extra["note"] = TREE_NOTE
        emit("tree_create_cancel", impl, backend, n_tree / took, "contexts/s", **extra)

    ch: Chan[int] = Chan(1)
    impls: list[tuple[str, Callable[[Chan[int], int], Awaitable[float]]]] = [
        ("asyncgo", op_with_timeout),
        ("anyio.fail_after", op_fail_after),
        ("bare op", op_bare),
    ]
    for impl, op in impls:
        took = await best_async(lambda op=op: op(ch, n_ops))  # type: ignore[misc]
        extra = {"ops": n_ops}
        if impl == "bare op":
            extra["note"] = BARE_NOTE
        emit("timeout_fast_op", impl, backend, n_ops / took, "ops/s", **extra)
    check(len(ch) == 0, "a benchmark left an item in the channel")

    took = await best_async(lambda: select_with_timeout(ch, n_ops))
    emit("timeout_select_done", "asyncgo", backend, n_ops / took, "ops/s", ops=n_ops)
    took = await best_async(lambda: op_fail_after(ch, n_ops))
    emit(
        "timeout_select_done",
        "anyio.fail_after",
        backend,
        n_ops / took,
        "ops/s",
        ops=n_ops,
        note="around a plain send + recv: no select, no done channel",
    )
    check(len(ch) == 0 and not math.isnan(took), "a benchmark left an item in the channel")
    await bench_sleep_cpu(backend, quick)


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    run(lambda: main(args.backend, args.quick), args.backend)

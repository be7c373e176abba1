"""Pipelines (issue #6): asyncgo's runner against what a user would otherwise write.

Usage::

    .venv/bin/python benchmarks/bench_pipeline.py --backend asyncio|uvloop|trio [--quick]

One JSON object per line on stdout: ``{"bench", "impl", "backend", "value", "unit",
"extra"}`` (the protocol of ``benchmarks/run.py``; ``extra.targets`` on the asyncgo
row are the goals issue #6 sets). Anything else goes to stderr.

Benchmarks:

* ``pipeline_3stage``: 200k ints through square -> keep even -> triple, summed by the
  consumer (items/s). ``asyncgo`` uses the built-in stages (``stages.map`` /
  ``stages.filter``), ``asyncgo gen-stages`` the same pipeline written as three plain
  async generator functions (what a user writes); both run each stage in its own
  task. Peers: ``nested generators`` (the same three generators chained directly: no
  tasks, no overlap -- the floor of the per-item cost), ``aiostream`` (``pipe.map`` /
  ``pipe.filter``; asyncio and uvloop), and stages hand-wired as tasks linked by
  anyio streams (``anyio stream+tasks``), ``asyncio.Queue``\\ s (``asyncio.Queue+tasks``;
  asyncio, uvloop) or trio channels (``trio channel+tasks``; trio), every link with the
  same capacity as asyncgo's default link (256 items), ending with a sentinel.
* ``map_io_1ms_gosleep``: the same with jobs that sleep with ``asyncgo.time.sleep``
  (Go's ``time.Sleep``), every implementation running that same job; on trio it
  costs a fraction of ``trio.sleep``'s CPU time (``sleep_cpu`` in
  ``bench_context.py``), which is what limits 100 workers there. No target: the
  issue's case is ``map_io_1ms``.
* ``map_io_1ms``: 1000 jobs that each sleep 1 ms, ``stages.map(job, workers=100)``
  (``asyncgo``: ordered, the default; ``asyncgo ordered=False``) against the same jobs
  run one after the other (``serial``), ``aiometer`` (``amap(max_at_once=100)``), a
  hand-wired pool of 100 worker tasks on an ``asyncio.Queue`` (asyncio, uvloop), and
  100 plain tasks each running its hundredth of the jobs back to back, with no queue at
  all: ``task group (floor)`` spawns them with the event loop's own group
  (``asyncio.TaskGroup``, a trio nursery) -- the cheapest way there is, so the best
  any pool can do on that event loop -- and ``anyio task group`` with anyio's, which
  costs ~20 us per task more to start and join (~2 ms for 100, a tenth of the run).
  Every implementation runs the same ``job`` coroutine and is timed from the call to
  its result, start-up and teardown included. Value: jobs/s from the *median* of 9
  interleaved runs (``serial``: of 3), not the best: on asyncio a run lands in one of
  two regimes (below), and the best of several runs reports the lucky one.
  ``extra.metrics.speedup`` is serial time / the row's time,
  ``extra.metrics.efficiency`` that speed-up divided by the ideal (100 workers: 100x;
  the seed article's Go worker pool reaches ~95%), ``efficiency_best`` the same for
  the fastest run.
  What bounds everyone here, the floor included: the sleeps of 100 workers fall into
  lock-step waves. On asyncio and trio the loop waits in ``epoll`` with its timeout
  rounded *up* to whole milliseconds, so once a wave's wake-ups are processed
  (100 x the per-job cost, ~7 us on asyncio, ~20 us on trio with anyio's sleep) the
  loop sleeps a full millisecond more, and a wave takes about 1 ms + wake-up latency
  + 100 x the per-job cost instead of 1 ms. uvloop's timers have a millisecond clock
  of their own and lose less. A pool can only stay close to the floor: its own
  cost per job (the queue, the result hand-off) is what it adds. The exception: when
  the jobs' wake-ups come spread out and the loop never runs out of work, it never
  sleeps that extra millisecond (every timer is already due when it looks), and a
  run takes about 1000 x a wake-up's cost instead (~13 ms on asyncio here, 0.8-0.9
  efficiency). Runs of asyncgo's map, whose workers start over two or three loop
  iterations, sometimes settle into that regime on asyncio (12 of 60 in one
  measurement here); 100 tasks started at once did not in 60 runs. Which regime a
  run gets is luck, hence the median.
* ``cpu_process``: a CPU-bound pure-Python function (~20 ms a call) on 16 items,
  ``stages.map(fn, executor="process", workers=2)`` against the same map on the event
  loop. The process pool is started before timing (its start-up is reported in
  ``extra.warmup_s``). ``extra.metrics.speedup`` is in-loop time / process time; the
  ideal is the number of cores (2 here). ``ProcessPoolExecutor`` (a warmed-up pool
  mapping the same calls, no event loop) shows what the machine allows at that
  moment: on a shared machine other load takes cores too.

Every run checks the sum of its results. Every item is a positive number (the
sources start at 1, the jobs return ``x + 1``), so a lost or duplicated item changes
the sum: an error, never a number.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import anyio

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from _harness import floor_tasks  # noqa: E402

from asyncgo import stages  # noqa: E402
from asyncgo import time as gotime  # noqa: E402
from asyncgo._pipeline import DEFAULT_BUFFER, pipeline  # noqa: E402

BACKENDS = ("asyncio", "uvloop", "trio")
CAP = DEFAULT_BUFFER  # every peer's link capacity: the same as asyncgo's default


class BenchError(AssertionError):
    """A wrong result (lost or duplicated items): never a number."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise BenchError(msg)


def emit(bench: str, impl: str, backend: str, value: float, unit: str, **extra: Any) -> None:
    rec = {"bench": bench, "impl": impl, "backend": backend, "value": float(value)}
    rec.update(unit=unit, extra=extra)
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def best_of(reps: int, fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """The fastest of *reps* runs of *fn*: (seconds, result)."""
    best = float("inf")
    result = None
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        result = await fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


async def interleaved(
    reps: int, impls: list[tuple[str, Callable[[], Awaitable[Any]]]]
) -> dict[str, tuple[float, Any]]:
    """Best time and last result of each implementation, runs interleaved round-robin
    (rep 1 of each, then rep 2, ...) so a slow spell of the machine hits them all."""
    best: dict[str, tuple[float, Any]] = {}
    for _ in range(reps):
        for name, fn in impls:
            secs, result = await best_of(1, fn)
            if name not in best or secs < best[name][0]:
                best[name] = (secs, result)
    return best


async def interleaved_times(
    reps: int, impls: list[tuple[str, Callable[[], Awaitable[Any]]]]
) -> dict[str, tuple[list[float], Any]]:
    """Every time and the last result of each implementation, runs interleaved."""
    times: dict[str, tuple[list[float], Any]] = {name: ([], None) for name, _ in impls}
    for _ in range(reps):
        for name, fn in impls:
            secs, result = await best_of(1, fn)
            times[name] = (times[name][0] + [secs], result)
    return times


# -- pipeline_3stage ---------------------------------------------------------------------


def sq(x: int) -> int:
    return x * x


def is_even(x: int) -> bool:
    return x % 2 == 0


def tri(x: int) -> int:
    return 3 * x


def expected_3stage(n: int) -> int:
    return sum(3 * x * x for x in range(1, n + 1) if x * x % 2 == 0)


async def g_square(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        yield x * x


async def g_even(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        if x % 2 == 0:
            yield x


async def g_triple(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        yield 3 * x


async def three_asyncgo(n: int) -> int:
    total = 0
    p = pipeline(range(1, n + 1)) | stages.map(sq) | stages.filter(is_even) | stages.map(tri)
    async with p.stream() as items:
        async for x in items:
            total += x
    return total


async def three_asyncgo_gens(n: int) -> int:
    total = 0
    async with (pipeline(range(1, n + 1)) | g_square | g_even | g_triple).stream() as items:
        async for x in items:
            total += x
    return total


async def three_nested(n: int) -> int:
    async def source() -> AsyncIterator[int]:
        for i in range(1, n + 1):
            yield i

    total = 0
    async for x in g_triple(g_even(g_square(source()))):
        total += x
    return total


async def three_aiostream(n: int) -> int:
    from aiostream import pipe, stream

    total = 0
    xs = stream.iterate(range(1, n + 1)) | pipe.map(sq) | pipe.filter(is_even) | pipe.map(tri)  # type: ignore[arg-type]
    async with xs.stream() as items:
        async for x in items:
            total += x
    return total


Endpoints = tuple[Callable[[Any], Awaitable[None]], Callable[[], Awaitable[Any]]]


async def three_wired(n: int, make: Callable[[], Endpoints]) -> int:
    """Source, three stage tasks and the consumer linked by four queues; None ends it."""
    links = [make() for _ in range(4)]

    async def source(send: Callable[[Any], Awaitable[None]]) -> None:
        for i in range(1, n + 1):
            await send(i)
        await send(None)

    def stage(fn: Callable[[int], int], keep: Callable[[int], bool] | None) -> Any:
        async def run(recv: Callable[[], Awaitable[Any]], send: Any) -> None:
            while True:
                x = await recv()
                if x is None:
                    await send(None)
                    return
                if keep is None:
                    await send(fn(x))
                elif keep(x):
                    await send(x)

        return run

    total = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(source, links[0][0])
        tg.start_soon(stage(sq, None), links[0][1], links[1][0])
        tg.start_soon(stage(sq, is_even), links[1][1], links[2][0])
        tg.start_soon(stage(tri, None), links[2][1], links[3][0])
        recv = links[3][1]
        while (x := await recv()) is not None:
            total += x
    return total


def make_queue() -> Endpoints:
    q: asyncio.Queue[Any] = asyncio.Queue(CAP)
    return q.put, q.get


def make_anyio() -> Endpoints:
    tx, rx = anyio.create_memory_object_stream[Any](CAP)
    return tx.send, rx.receive


def make_trio() -> Endpoints:
    import trio

    tx, rx = trio.open_memory_channel[Any](CAP)
    return tx.send, rx.receive


async def bench_3stage(backend: str, quick: bool) -> None:
    n = 20_000 if quick else 200_000
    reps = 1 if quick else 3
    want = expected_3stage(n)
    impls: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("asyncgo", lambda: three_asyncgo(n)),
        ("asyncgo gen-stages", lambda: three_asyncgo_gens(n)),
        ("nested generators", lambda: three_nested(n)),
    ]
    if backend != "trio":
        impls.append(("aiostream", lambda: three_aiostream(n)))
        impls.append(("asyncio.Queue+tasks", lambda: three_wired(n, make_queue)))
    impls.append(("anyio stream+tasks", lambda: three_wired(n, make_anyio)))
    if backend == "trio":
        impls.append(("trio channel+tasks", lambda: three_wired(n, make_trio)))
    peer = "trio channel+tasks" if backend == "trio" else "asyncio.Queue+tasks"
    goal = 5.0 if backend == "trio" else 2.0
    note = (
        f"3 stages (square, keep even, triple) over {n} ints, summed by the consumer; "
        f"asyncgo: built-in stages, each in its own task; 'gen-stages': the same as plain "
        f"async generator functions; hand-wired peers: one task per stage, links of {CAP} "
        "items; nested generators: no tasks, no overlap"
    )
    results = await interleaved(reps, impls)
    for impl, _ in impls:
        secs, total = results[impl]
        check(total == want, f"pipeline_3stage/{impl}: sum {total}, expected {want}")
        extra: dict[str, Any] = {"n": n, "note": note}
        if impl == "asyncgo":
            extra["targets"] = [{"peer": peer, "min_ratio": goal}]
        emit("pipeline_3stage", impl, backend, n / secs, "items/s", **extra)


# -- map_io_1ms ----------------------------------------------------------------------


#: The jobs' sleep: ``anyio.sleep`` (map_io_1ms), ``asyncgo.time.sleep`` (map_io_1ms_gosleep).
NAP: Callable[[float], Awaitable[None]] = anyio.sleep


async def job(x: int) -> int:
    await NAP(0.001)
    return x + 1  # (never 0: a lost or duplicated job changes the sum)


async def io_asyncgo(n: int, workers: int) -> int:
    return sum(await (pipeline(range(n)) | stages.map(job, workers=workers)).collect())


async def io_serial(n: int) -> int:
    return sum([await job(x) for x in range(n)])


async def io_aiometer(n: int, workers: int) -> int:
    import aiometer

    total = 0
    async with aiometer.amap(job, range(n), max_at_once=workers) as results:
        async for r in results:
            total += r
    return total


async def io_queue_pool(n: int, workers: int) -> int:
    jobs: asyncio.Queue[int | None] = asyncio.Queue()
    results: list[int] = []
    for i in range(n):
        jobs.put_nowait(i)

    async def worker() -> None:
        while (x := jobs.get_nowait() if not jobs.empty() else None) is not None:
            results.append(await job(x))

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return sum(results)


async def io_unordered(n: int, workers: int) -> int:
    p = pipeline(range(n)) | stages.map(job, workers=workers, ordered=False)
    return sum(await p.collect())


async def io_anyio_tasks(n: int, workers: int) -> int:
    """The same tasks in an anyio task group."""
    results: list[int] = []

    async def worker(k: int) -> None:
        for x in range(k, n, workers):
            results.append(await job(x))

    async with anyio.create_task_group() as tg:
        for k in range(workers):
            tg.start_soon(worker, k)
    return sum(results)


async def bench_io(backend: str, quick: bool, *, gosleep: bool = False) -> None:
    global NAP
    NAP = gotime.sleep if gosleep else anyio.sleep
    bench = "map_io_1ms_gosleep" if gosleep else "map_io_1ms"
    n, workers = (200, 20) if quick else (1000, 100)
    want = n * (n + 1) // 2
    serial = await interleaved_times(1 if quick else 3, [("serial", lambda: io_serial(n))])
    serial_s, total = statistics.median(serial["serial"][0]), serial["serial"][1]
    check(total == want, f"{bench}/serial: wrong sum")
    how = " (asyncgo.time.sleep)" if gosleep else ""
    note = f"{n} jobs sleeping 1 ms{how}; {workers} workers; ideal speed-up {workers}x"
    emit(bench, "serial", backend, n / serial_s, "jobs/s", note=note)
    reps = 1 if quick else 9
    impls: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("asyncgo", lambda: io_asyncgo(n, workers)),
        ("asyncgo ordered=False", lambda: io_unordered(n, workers)),
        ("aiometer", lambda: io_aiometer(n, workers)),
        ("task group (floor)", lambda: floor_tasks(job, n, workers, backend)),
        ("anyio task group", lambda: io_anyio_tasks(n, workers)),
    ]
    if backend != "trio":
        impls.append(("asyncio.Queue pool", lambda: io_queue_pool(n, workers)))
    results = await interleaved_times(reps, impls)
    for impl, _ in impls:
        times, total = results[impl]
        check(total == want, f"{bench}/{impl}: wrong sum")
        secs = statistics.median(times)
        speedup = serial_s / secs
        extra: dict[str, Any] = {
            "note": note,
            "metrics": {
                "speedup": speedup,
                "efficiency": speedup / workers,
                "efficiency_best": serial_s / min(times) / workers,
            },
        }
        if impl == "asyncgo" and not gosleep:
            extra["targets"] = [
                {"metric": "efficiency", "min": 0.8},
                {"peer": "aiometer", "min_ratio": 1.0},
            ]
        emit(bench, impl, backend, n / secs, "jobs/s", **extra)


# -- cpu_process ---------------------------------------------------------------------


def cpu_work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate() -> int:
    """An argument for which cpu_work takes about 20 ms here."""
    n = 20_000
    while True:
        t0 = time.perf_counter()
        cpu_work(n)
        if time.perf_counter() - t0 > 0.005:
            break
        n *= 2
    return int(n * 0.02 / (time.perf_counter() - t0))


async def bench_cpu(backend: str, quick: bool) -> None:
    size = calibrate()
    items = [size + i for i in range(8 if quick else 16)]
    want = sum(cpu_work(x) for x in items)
    workers = 2
    t0 = time.perf_counter()
    await (pipeline([size // 100] * workers) | stages.map(cpu_work, executor="process")).run()
    warmup = time.perf_counter() - t0
    # The ceiling this machine allows right now: a warmed-up process pool, no event loop.
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(cpu_work, [1] * workers))

        async def pool_map() -> int:
            return sum(await anyio.to_thread.run_sync(lambda: list(pool.map(cpu_work, items))))

        results = await interleaved(
            1 if quick else 5,
            [
                ("in-loop map", lambda: _cpu(items, None, 1)),
                ("asyncgo", lambda: _cpu(items, "process", workers)),
                ("ProcessPoolExecutor", pool_map),
            ],
        )
    note = (
        f"{len(items)} calls of a ~20 ms pure-Python function, {workers} worker processes, "
        f"{os.cpu_count()} CPUs; ProcessPoolExecutor.map is the ceiling the machine allows "
        "at that moment (other load shares the cores)"
    )
    in_loop_s = results["in-loop map"][0]
    for impl in ("in-loop map", "ProcessPoolExecutor", "asyncgo"):
        secs, total = results[impl]
        check(total == want, f"cpu_process/{impl}: wrong sum")
        extra: dict[str, Any] = {"note": note}
        if impl != "in-loop map":
            extra["metrics"] = {"speedup": in_loop_s / secs}
        if impl == "asyncgo":
            extra["warmup_s"] = warmup
            extra["targets"] = [{"peer": "in-loop map", "min_ratio": 1.5}]
        emit("cpu_process", impl, backend, len(items) / secs, "calls/s", **extra)


async def _cpu(items: list[int], executor: Any, workers: int) -> int:
    p = pipeline(items) | stages.map(cpu_work, executor=executor, workers=workers)
    return sum(await p.collect())


# -- main ----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", required=True, choices=BACKENDS)
    ap.add_argument("--quick", action="store_true", help="smoke mode: a few seconds")
    ap.add_argument("--only", choices=["3stage", "io", "cpu"], action="append")
    args = ap.parse_args()
    only = set(args.only or ["3stage", "io", "cpu"])

    async def run_all() -> None:
        if "3stage" in only:
            await bench_3stage(args.backend, args.quick)
        if "io" in only:
            await bench_io(args.backend, args.quick)
            await bench_io(args.backend, args.quick, gosleep=True)
        if "cpu" in only:
            await bench_cpu(args.backend, args.quick)

    if args.backend == "uvloop":
        anyio.run(run_all, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(run_all, backend=args.backend)


if __name__ == "__main__":
    main()

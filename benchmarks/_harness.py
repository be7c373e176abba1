"""Shared helpers for ``benchmarks/bench_<area>.py`` scripts (optional to use).

The protocol every benchmark script follows (``benchmarks/run.py`` relies on it)::

    .venv/bin/python benchmarks/bench_<area>.py --backend asyncio|uvloop|trio [--quick]

prints one JSON object per line on stdout::

    {"bench": "<name>", "impl": "<asyncgo|peer name>", "backend": "asyncio|uvloop|trio",
     "value": <float>, "unit": "<e.g. msg/s>", "extra": {...}}

Higher is better unless ``"extra": {"lower_is_better": true}``. ``--quick`` must
finish in a few seconds (CI smoke mode). Anything else goes to stderr.

Optional ``extra`` keys that ``run.py`` understands (all others are kept in the JSON):

* ``"lower_is_better": true`` -- e.g. latency or bytes.
* ``"note": "..."`` -- shown as a footnote under the group's table (say *why* a peer
  is configured differently, e.g. ``asyncio.Queue(1)`` standing in for capacity 0).
* ``"metrics": {"min_share": 0.97}`` -- secondary numbers; ``run.py`` reports their
  median per (bench, impl, backend) in their own table.
* ``"targets": [...]`` -- on the ``asyncgo`` row only, the goals the issue sets:
  ``{"peer": "<impl>", "min_ratio": 1.0}`` (asyncgo/peer must be at least that),
  ``{"peer": "<impl>", "max_ratio": 1.0}`` (at most that: for lower-is-better units), or
  ``{"metric": "min_share", "min": 0.5}`` (a ``metrics`` value of the asyncgo row).
  ``run.py`` checks them against the medians and lists met / not met in the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

# Measure the working tree's asyncgo, whatever is installed in the environment.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import anyio  # noqa: E402

BACKENDS = ("asyncio", "uvloop", "trio")

__all__ = [
    "BACKENDS",
    "BenchError",
    "check",
    "emit",
    "parse_args",
    "floor_tasks",
    "run",
    "timed_tasks",
]


class BenchError(AssertionError):
    """A benchmark detected a wrong result (lost or duplicated items): never ignore it."""


def check(cond: bool, msg: str) -> None:
    """Fail loudly (non-zero exit, message on stderr) when a correctness check fails."""
    if not cond:
        raise BenchError(msg)


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The common command line: ``--backend`` (required) and ``--quick``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", required=True, choices=BACKENDS)
    p.add_argument("--quick", action="store_true", help="smoke mode: a few seconds, small sizes")
    return p.parse_args(argv)


def emit(bench: str, impl: str, backend: str, value: float, unit: str, **extra: Any) -> None:
    """Print one result line (and flush, so a crash later keeps what was measured)."""
    rec = {
        "bench": bench,
        "impl": impl,
        "backend": backend,
        "value": float(value),
        "unit": unit,
        "extra": extra,
    }
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()


def run(main: Callable[[], Awaitable[None]], backend: str) -> None:
    """Run *main* under *backend*: asyncio, asyncio with uvloop's loop, or trio (via anyio)."""
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)


async def timed_tasks(
    tasks: Sequence[Callable[[], Awaitable[object]]], *, plain: bool = False
) -> float:
    """Run *tasks* concurrently in one anyio task group; seconds from start to the last end.

    Every task is spawned first and parks on a start event; the clock starts just
    before the event is set and stops when the last task returns, so spawning and
    the task group's exit are not timed -- only the work. One task structure for
    every implementation measured, on every backend. ``plain=True`` (asyncio
    only): the same with plain ``asyncio.create_task`` tasks awaited by
    ``asyncio.gather``, which anyio has given no state.
    """
    go = anyio.Event()
    ends: list[float] = []

    async def wrap(fn: Callable[[], Awaitable[object]]) -> None:
        await go.wait()
        await fn()
        ends.append(perf_counter())

    gc.collect()
    if plain:
        running = [asyncio.create_task(wrap(fn)) for fn in tasks]
        await anyio.wait_all_tasks_blocked()
        t0 = perf_counter()
        go.set()
        await asyncio.gather(*running)
    else:
        async with anyio.create_task_group() as tg:
            for fn in tasks:
                tg.start_soon(wrap, fn)
            await anyio.wait_all_tasks_blocked()
            t0 = perf_counter()
            go.set()
    if len(ends) != len(tasks):  # pragma: no cover - a task raised: the group re-raised it
        raise BenchError("a benchmark task did not finish")
    return max(ends) - t0


async def floor_tasks(
    job: Callable[[int], Awaitable[int]], n: int, workers: int, backend: str
) -> int:
    """The floor of a pool: *workers* tasks, each running its share of ``job(0..n-1)``
    back to back, no queue at all, spawned and joined by the event loop's own task
    group (``asyncio.TaskGroup``, a trio nursery: the cheapest way there is). Returns
    the sum of the results."""
    results: list[int] = []

    async def worker(k: int) -> None:
        for x in range(k, n, workers):
            results.append(await job(x))

    if backend == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for k in range(workers):
                nursery.start_soon(worker, k)
    else:
        async with asyncio.TaskGroup() as tg:
            for k in range(workers):
                tg.create_task(worker(k))
    return sum(results)

"""The pools' ticker, on and off, in one process: wall and CPU time of 1000 jobs of 1 ms.

Not one of the ``bench_*`` scripts (``run.py`` does not run it): a diagnostic that
compares, interleaved in the same process so that a slow spell of the machine hits
every mode alike,

* ``off``: no ticker (``ASYNCGO_TICK_US=0``), the loop's own timers;
* ``ticker``: what the loop gets by default (asyncio: the timer set to each short
  wait of its selector; uvloop: a 100 µs period; trio: the timer set at each wait);
* ``periodic`` (asyncio only): the 100 µs period forced on asyncio too, as before
  the selector was wrapped (2026-12-06).

Usage (from the repository root)::

    .venv/bin/python benchmarks/ticker_modes.py --backend asyncio --workers 10 100

Prints, per mode and worker count, the median wall time, its efficiency (speed-up over
the serial loop ÷ workers) and the median CPU time (``time.process_time``) of one run.
"""

from __future__ import annotations

import argparse
import selectors
import statistics
import time
import types

import anyio

from asyncgo import WorkerPool
from asyncgo._backend import _ticker

N = 1000


async def job(x: int) -> int:
    await anyio.sleep(0.001)
    return x + 1


async def run_pool(workers: int) -> int:
    async with WorkerPool(workers=workers, queue_size=N) as pool:
        handles = [await pool.submit(job, x) for x in range(N)]
        return sum([await h for h in handles])


class _NoSelector:
    """Stands in for ``selectors.BaseSelector`` so that no selector qualifies."""


# What the ticker module sees as the selectors module in "periodic" mode (only there:
# the real module is left alone).
_NO_SELECTORS = types.SimpleNamespace(BaseSelector=_NoSelector)


def set_mode(mode: str, period_ns: int) -> None:
    _ticker.TICK_NS = 0 if mode == "off" else period_ns
    _ticker.selectors = _NO_SELECTORS if mode == "periodic" else selectors  # type: ignore[assignment]


async def main(backend: str, workers: list[int], reps: int) -> None:
    modes = ["off", "ticker"] + (["periodic"] if backend == "asyncio" else [])
    period_ns = _ticker.TICK_NS or 100_000
    t = time.perf_counter()
    for x in range(200):
        await job(x)
    serial = (time.perf_counter() - t) / 200  # one sleep of the serial loop
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    try:
        for _ in range(reps):
            for w in workers:
                for mode in modes:
                    set_mode(mode, period_ns)
                    c, t = time.process_time(), time.perf_counter()
                    total = await run_pool(w)
                    wall, cpu = time.perf_counter() - t, time.process_time() - c
                    assert total == N * (N + 1) // 2, "a job was lost or run twice"
                    runs.setdefault((mode, w), []).append((wall, cpu))
    finally:
        set_mode("ticker", period_ns)
    print(f"{backend}: serial sleep {serial * 1e3:.3f} ms; medians of {reps} runs")
    for w in workers:
        for mode in modes:
            r = runs[(mode, w)]
            wall = statistics.median(x[0] for x in r)
            cpu = statistics.median(x[1] for x in r)
            eff = serial * N / wall / w
            print(
                f"  {w:3d} workers  {mode:8s}  wall {wall * 1e3:7.2f} ms"
                f"  efficiency {eff:4.2f}  cpu {cpu * 1e3:6.2f} ms"
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    ap.add_argument("--workers", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--reps", type=int, default=30)
    a = ap.parse_args()
    name, options = a.backend, {}
    if name == "uvloop":
        name, options = "asyncio", {"use_uvloop": True}
    anyio.run(main, a.backend, a.workers, a.reps, backend=name, backend_options=options)

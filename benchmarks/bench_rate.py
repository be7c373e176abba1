"""Rate limiters at 1000 admissions per second (issue #5).

Benchmark ``limiter_1000_per_s_<k>_tasks`` (k = 1 and 10): *k* tasks share one
limiter and take turns admitting ``1000 * D`` events (D = 2 s, 0.2 s with
``--quick``); each admission's time is recorded. Implementations:

* ``asyncgo``: ``rate.Limiter(1000, burst=10)``, ``await lim.wait()``; and
  ``asyncgo burst=1``, where a wake-up later than 1 ms loses the token it
  would have accrued (Go's limiter behaves the same);
* ``aiolimiter``: ``AsyncLimiter(1000, 1)`` (its bucket holds ``max_rate``
  events, so it starts with a burst of 1000); asyncio and uvloop;
* ``aiometer``: ``run_on_each(fn, items, max_at_once=k, max_per_second=1000)``.

Reported: ``value`` = achieved rate (admissions / (last - first admission
time), events/s); ``metrics``: ``error_pct`` (steady rate, measured after the
first quarter of the run, against the 1000/s target, in %), ``max_in_window``
(the most admissions in any window of ``W`` = 1 s, 0.1 s with ``--quick``),
``window_bound`` (``burst + limit * W`` for asyncgo's limiter), ``jitter_ms``
(standard deviation of the gap between admissions) and ``cpu_us`` (process CPU
time per admission); on asyncgo's rows also ``rate_accuracy_pct`` (100 - |error_pct|)
and ``window_headroom`` (``window_bound - max_in_window``), which carry the targets:
``rate_accuracy_pct >= 99`` (the steady rate within 1 %) and ``window_headroom >= 0``
(no window admits more than the bound), written as minimums because ``run.py``
checks metric minimums.

Benchmarks ``limiter_allow_overhead`` and ``limiter_wait_overhead``: the cost of
one call when tokens are always there (``Limiter(1e12, 10**9)``), one task, N
calls back to back (200 000, 20 000 with ``--quick``), the median of 5 rounds
(the implementations take turns). ``asyncgo``: ``lim.allow()`` /
``await lim.wait()``; ``asyncgo SlidingWindow``: the same on
``SlidingWindow(10**9, 1000.0)``; ``aiolimiter`` (asyncio and uvloop):
``has_capacity()`` / ``await acquire()`` on ``AsyncLimiter(1e12, 1)``. Reported:
``value`` = calls/s; ``metrics``: ``ns_per_call``, and on asyncgo's rows
``vs_aiolimiter`` (asyncgo's calls/s / aiolimiter's, same run).

``--only overhead`` (or ``--only admissions``) runs one of the two groups.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
from _harness import check, emit, parse_args, run

from asyncgo import rate

LIMIT = 1000.0
BURST = 10  # 1% of the rate: absorbs the event loop's late wake-ups (see docs/rate.md)


def max_in_window(times: list[float], w: float) -> int:
    best = 0
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - w:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def drive(
    k: int, n: int, admit_factory: Callable[[], Callable[[], Awaitable[object]]]
) -> list[float]:
    """*k* tasks admit *n* events in total through one limiter; the admission times."""
    admit = admit_factory()
    times: list[float] = []
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await admit()
            times.append(time.perf_counter())

    async with anyio.create_task_group() as tg:
        for _ in range(k):
            tg.start_soon(worker)
    return times


async def drive_aiometer(k: int, n: int) -> list[float]:
    import aiometer

    times: list[float] = []

    async def record(_: int) -> None:
        times.append(time.perf_counter())

    await aiometer.run_on_each(record, list(range(n)), max_at_once=k, max_per_second=LIMIT)
    return times


def asyncgo_factory(burst: int) -> Callable[[], Callable[[], Awaitable[object]]]:
    return lambda: rate.Limiter(LIMIT, burst).wait


def aiolimiter_factory() -> Callable[[], Awaitable[object]]:
    from aiolimiter import AsyncLimiter

    return AsyncLimiter(LIMIT, 1).acquire


def report(
    bench: str, impl: str, backend: str, times: list[float], cpu: float, n: int, w: float
) -> None:
    check(len(times) == n, f"{impl}: {len(times)} admissions, expected {n}")
    times.sort()
    span = times[-1] - times[0]
    steady_from = times[0] + span / 4
    steady = [t for t in times if t >= steady_from]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0])
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    extra: dict[str, object] = {
        "metrics": {
            "error_pct": round((steady_rate / LIMIT - 1) * 100, 3),
            "max_in_window": max_in_window(times, w),
            "jitter_ms": round(statistics.pstdev(gaps) * 1e3, 4),
            "cpu_us": round(cpu / n * 1e6, 2),
        },
        "window_s": w,
        "steady_rate": round(steady_rate, 2),
    }
    if impl.startswith("asyncgo"):
        burst = BURST if impl == "asyncgo" else 1
        metrics = extra["metrics"]
        assert isinstance(metrics, dict)
        bound = int(burst + LIMIT * w)
        metrics["window_bound"] = bound
        # run.py checks "min" targets only: express "|error| <= 1%" and "<= bound" that way
        metrics["rate_accuracy_pct"] = round(100 - abs(metrics["error_pct"]), 3)
        metrics["window_headroom"] = bound - metrics["max_in_window"]
        if impl == "asyncgo":
            extra["targets"] = [
                {"metric": "rate_accuracy_pct", "min": 99.0},
                {"metric": "window_headroom", "min": 0},
            ]
        extra["note"] = (
            f"rate.Limiter(1000, burst={burst}): reservations admit at most {burst} + 1000 W "
            "in any W s; observed wake-up times can exceed that by the loop's lateness"
        )
    elif impl == "aiolimiter":
        extra["note"] = "AsyncLimiter(1000, 1): its bucket holds 1000, so it starts with a burst"
    else:
        extra["note"] = "run_on_each(max_at_once=k, max_per_second=1000)"
    emit(bench, impl, backend, (len(times) - 1) / span, "events/s", **extra)


async def overhead(backend: str, n: int, rounds: int = 5) -> None:
    """Per-call cost with tokens always available: allow() and wait() vs aiolimiter."""

    def allow_limiter() -> Callable[[], object]:
        return rate.Limiter(1e12, 10**9).allow

    def allow_window() -> Callable[[], object]:
        return rate.SlidingWindow(10**9, 1000.0).allow

    def allow_aiolimiter() -> Callable[[], object]:
        from aiolimiter import AsyncLimiter

        return AsyncLimiter(1e12, 1).has_capacity

    def wait_limiter() -> Callable[[], Awaitable[object]]:
        return rate.Limiter(1e12, 10**9).wait

    def wait_window() -> Callable[[], Awaitable[object]]:
        return rate.SlidingWindow(10**9, 1000.0).wait

    def wait_aiolimiter() -> Callable[[], Awaitable[object]]:
        from aiolimiter import AsyncLimiter

        return AsyncLimiter(1e12, 1).acquire

    async def time_sync(make: Callable[[], Callable[[], object]]) -> float:
        call = make()
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        return time.perf_counter() - t0

    async def time_async(make: Callable[[], Callable[[], Awaitable[object]]]) -> float:
        call = make()
        t0 = time.perf_counter()
        for _ in range(n):
            await call()
        return time.perf_counter() - t0

    aio = backend != "trio"
    groups: list[tuple[str, list[tuple[str, Callable[[], Awaitable[float]]]], str]] = [
        (
            "limiter_allow_overhead",
            [
                ("asyncgo", lambda: time_sync(allow_limiter)),
                ("asyncgo SlidingWindow", lambda: time_sync(allow_window)),
            ]
            + ([("aiolimiter", lambda: time_sync(allow_aiolimiter))] if aio else []),
            "aiolimiter: has_capacity() (it has no allow: checks, takes nothing)",
        ),
        (
            "limiter_wait_overhead",
            [
                ("asyncgo", lambda: time_async(wait_limiter)),
                ("asyncgo SlidingWindow", lambda: time_async(wait_window)),
            ]
            + ([("aiolimiter", lambda: time_async(wait_aiolimiter))] if aio else []),
            "aiolimiter: await acquire() (no cancel point when it need not wait)",
        ),
    ]
    for bench, impls, note in groups:
        times: dict[str, list[float]] = {impl: [] for impl, _ in impls}
        for impl, fn in impls:  # warm-up
            await fn()
        for r in range(rounds):
            for impl, fn in impls[r % len(impls) :] + impls[: r % len(impls)]:
                gc.collect()
                times[impl].append(await fn())
        med = {impl: statistics.median(ts) for impl, ts in times.items()}
        for impl, _ in impls:
            metrics: dict[str, float] = {"ns_per_call": round(med[impl] / n * 1e9, 1)}
            if impl.startswith("asyncgo") and "aiolimiter" in med:
                metrics["vs_aiolimiter"] = round(med["aiolimiter"] / med[impl], 3)
            emit(bench, impl, backend, n / med[impl], "calls/s", metrics=metrics, note=note)


def main() -> None:
    argv = sys.argv[1:]
    only = ""
    if "--only" in argv:  # (not a harness option: this script's own)
        i = argv.index("--only")
        only = argv[i + 1] if i + 1 < len(argv) else ""
        del argv[i : i + 2]
        check(only in ("overhead", "admissions"), "--only takes overhead or admissions")
    args = parse_args(__doc__ or "", argv)
    backend = args.backend
    duration = 0.2 if args.quick else 2.0
    w = 0.1 if args.quick else 1.0
    n = int(LIMIT * duration)

    async def amain() -> None:
        if only != "admissions":
            await overhead(backend, 20_000 if args.quick else 200_000)
        if only == "overhead":
            return
        for k in (1, 10):
            bench = f"limiter_1000_per_s_{k}_tasks"
            impls: list[tuple[str, Callable[[], Awaitable[list[float]]]]] = [
                ("asyncgo", lambda: drive(k, n, asyncgo_factory(BURST))),
                ("asyncgo burst=1", lambda: drive(k, n, asyncgo_factory(1))),
                ("aiometer", lambda: drive_aiometer(k, n)),
            ]
            if backend != "trio":
                impls.append(("aiolimiter", lambda: drive(k, n, aiolimiter_factory)))
            for impl, fn in impls:
                c0 = time.process_time()
                times = await fn()
                report(bench, impl, backend, times, time.process_time() - c0, n, w)

    run(amain, backend)


if __name__ == "__main__":
    main()

"""What diagnostics cost: channel ping-pong and select with diagnostics off and on.

    .venv/bin/python benchmarks/bench_debug.py --backend asyncio|uvloop|trio [--quick]

Implementations (the same benchmark bodies as benchmarks/bench_chan.py):

* ``asyncgo``: diagnostics off, the default -- the park path reads one module
  attribute (``_diag.tracer is None``) and nothing else, so this is the number
  bench_chan.py reports;
* ``asyncgo+diagnostics``: ``debug.enable()``: each park records the parked task
  (a dict entry, a clock read) and each channel its creation site (a frame walk);
* ``asyncgo+deadlock-detection``: inside ``debug.detect_deadlocks()``, which also
  kicks the watcher task on each park (and the watcher looks at the loop
  whenever it goes idle).

Benchmarks: ``pingpong_unbuffered`` (round trips/s between two tasks over two
unbuffered channels) and ``select2_unbuffered`` (msg/s into one consumer
selecting over two unbuffered channels fed by one producer each). The modes run
interleaved, ``reps`` times each, and the median is reported. ``park_hook_off``
times the diagnostics-off hook alone (ns per park, and its share of a round trip).
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from _harness import emit, parse_args, run
from bench_chan import make_asyncgo, pingpong, select2

from asyncgo import debug


@asynccontextmanager
async def off() -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def diagnostics() -> AsyncIterator[None]:
    debug.enable()
    try:
        yield
    finally:
        debug.disable()


@asynccontextmanager
async def detection() -> AsyncIterator[None]:
    async with debug.detect_deadlocks():
        yield


MODES: list[tuple[str, Callable[[], AbstractAsyncContextManager[None]]]] = [
    ("asyncgo", off),
    ("asyncgo+diagnostics", diagnostics),
    ("asyncgo+deadlock-detection", detection),
]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    backend, quick = args.backend, args.quick
    n_pp = 2_000 if quick else 50_000
    n_sel = 4_000 if quick else 100_000
    reps = 1 if quick else 5
    pingpong_off: list[float] = []

    async def bench_main() -> None:
        for bench, unit, n, body in (
            ("pingpong_unbuffered", "round trips/s", n_pp, "pingpong"),
            ("select2_unbuffered", "msg/s", n_sel, "select"),
        ):
            results: dict[str, list[float]] = {name: [] for name, _ in MODES}
            for _ in range(reps):
                for name, mode in MODES:
                    async with mode():
                        if body == "pingpong":
                            await pingpong(make_asyncgo, 500, "warmup", name)
                            v = await pingpong(make_asyncgo, n, bench, name)
                        else:
                            await select2("asyncgo", make_asyncgo, 0, 500, "warmup")
                            v = await select2("asyncgo", make_asyncgo, 0, n, bench)
                    results[name].append(v)
            if body == "pingpong":
                pingpong_off.extend(results["asyncgo"])
            base = statistics.median(results["asyncgo"])
            for name, _ in MODES:
                v = statistics.median(results[name])
                extra: dict[str, Any] = {"n": n, "reps": reps, "vs_off": v / base}
                if name == "asyncgo":
                    extra["note"] = (
                        "diagnostics off (the default): one attribute read per park; "
                        "the +diagnostics rows show what enabling them costs"
                    )
                emit(bench, name, backend, v, unit, **extra)

    run(bench_main, backend)
    hook_cost(backend, quick, pingpong_off)


def hook_cost(backend: str, quick: bool, pingpong_off: list[float]) -> None:
    """The whole cost of diagnostics-off on the park path: the hook check, timed alone.

    ``_park`` runs ``tracer = _diag.tracer; if tracer is not None: ...`` before and
    after waiting. Timed here in a loop (minus the empty loop), then expressed as a
    share of one ping-pong round trip (two parks) measured above.
    """
    import timeit

    from asyncgo._backend import _diag

    n = 200_000 if quick else 2_000_000
    env = {"_diag": _diag}
    hook = "tracer = _diag.tracer\nif tracer is not None: pass\nif tracer is not None: pass"
    t_hook = min(timeit.repeat(hook, globals=env, number=n, repeat=5))
    t_empty = min(timeit.repeat("pass", globals=env, number=n, repeat=5))
    ns = max(t_hook - t_empty, 0.0) / n * 1e9
    round_trip_ns = 1e9 / statistics.median(pingpong_off) if pingpong_off else float("nan")
    emit(
        "park_hook_off",
        "asyncgo",
        backend,
        ns,
        "ns/park",
        lower_is_better=True,
        share_of_round_trip=2 * ns / round_trip_ns,
        note="the hook check alone, diagnostics off: what 'zero overhead' costs per park",
    )


if __name__ == "__main__":
    main()

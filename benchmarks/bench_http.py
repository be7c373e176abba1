"""What a Context per request costs: a minimal Starlette handler with and without the middleware.

    .venv/bin/python benchmarks/bench_http.py --backend asyncio|uvloop [--quick]

The server is uvicorn, one worker, in a subprocess (h11, access log off), on
127.0.0.1 and a free port; the server's event loop is asyncio's or uvloop's
(``--backend``; trio is not supported by uvicorn: nothing is measured). The load
generator is an aiohttp client in this process, on a plain asyncio loop whatever the
backend: *concurrency* keep-alive connections, a fixed
number of ``GET /`` requests (warm-up first), each latency timed.

Implementations:

* ``starlette``: ``Starlette(routes=[Route("/", hello)])``, ``hello`` returning
  ``PlainTextResponse("hello")``;
* ``asyncgo``: the same app wrapped in ``asyncgo.contrib.starlette.ContextMiddleware``
  with ``timeout=30.0`` (a Context with a deadline, a disconnect watcher task, the app
  run in ``ctx.scope()``).

Benchmarks: ``http_rps`` (requests/s, higher is better) and ``http_p99`` (ms,
lower is better). The two servers run alternately, ``reps`` times each, and the
median is reported; the asyncgo row's ``extra.ratio_vs_plain`` is the median of
the per-round ratios asyncgo/starlette (robust to load drift between rounds).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from _harness import check, emit, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_app(middleware: bool) -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/", hello)])
    if middleware:
        from asyncgo.contrib.starlette import ContextMiddleware

        app.add_middleware(ContextMiddleware, timeout=30.0)
    return app


def serve(middleware: bool, loop: str, port: int) -> None:
    import uvicorn

    sys.path.insert(0, ROOT)
    uvicorn.run(
        make_app(middleware),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        loop=loop,
        http="h11",
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        workers=1,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.05)


async def load(port: int, n: int, concurrency: int) -> tuple[float, list[float]]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/"
    lat: list[float] = []
    todo = iter(range(n))
    bad = 0
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker() -> None:
            nonlocal bad
            for _ in todo:
                t = time.perf_counter()
                async with s.get(url) as r:
                    body = await r.read()
                lat.append(time.perf_counter() - t)
                if r.status != 200 or body != b"hello":
                    bad += 1

        async def warm_up() -> None:
            async with s.get(url) as r:
                body = await r.read()
            check(r.status == 200 and body == b"hello", f"warm-up: {r.status} {body!r}")

        # Warm-up: connections open, code paths hot; each response read and released.
        await asyncio.gather(*(warm_up() for _ in range(concurrency)))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    check(bad == 0 and len(lat) == n, f"{bad} bad responses, {len(lat)}/{n} answered")
    return elapsed, lat


def measure(middleware: bool, loop: str, n: int, concurrency: int) -> tuple[float, float]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(int(middleware)), loop, str(port)],
        cwd=ROOT,
    )
    try:
        asyncio.run(wait_up(port))
        elapsed, lat = asyncio.run(load(port, n, concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lat.sort()
    return n / elapsed, lat[int(0.99 * (len(lat) - 1))] * 1000


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2] == "1", sys.argv[3], int(sys.argv[4]))
        return
    args = parse_args(__doc__.split("\n")[0])
    backend = args.backend
    if backend == "trio":
        print(json.dumps({"skip": "uvicorn runs on asyncio/uvloop only; nothing to measure"}))
        return
    n, reps, concurrency = (1000, 1, 16) if args.quick else (10000, 3, 32)
    rps: dict[str, list[float]] = {"starlette": [], "asyncgo": []}
    p99: dict[str, list[float]] = {"starlette": [], "asyncgo": []}
    for _ in range(reps):
        for impl in ("starlette", "asyncgo"):
            r, p = measure(impl == "asyncgo", backend, n, concurrency)
            rps[impl].append(r)
            p99[impl].append(p)
            print(f"{impl}: {r:.0f} req/s, p99 {p:.2f} ms", file=sys.stderr)
    # The overhead ratio is the median of each round's ratio: the two servers of a
    # round run back to back, so machine-load drift between rounds cancels out.
    ratio_r = statistics.median(a / b for a, b in zip(rps["asyncgo"], rps["starlette"]))
    ratio_p = statistics.median(a / b for a, b in zip(p99["asyncgo"], p99["starlette"]))
    for impl in ("starlette", "asyncgo"):
        r = statistics.median(rps[impl])
        p = statistics.median(p99[impl])
        common = {"requests": n, "concurrency": concurrency, "reps": reps, "server": "uvicorn h11"}
        if impl == "asyncgo":
            emit("http_rps", impl, backend, r, "req/s", ratio_vs_plain=ratio_r, **common)
            emit(
                "http_p99",
                impl,
                backend,
                p,
                "ms",
                lower_is_better=True,
                ratio_vs_plain=ratio_p,
                **common,
            )
        else:
            emit("http_rps", impl, backend, r, "req/s", **common)
            emit("http_p99", impl, backend, p, "ms", lower_is_better=True, **common)


if __name__ == "__main__":
    main()

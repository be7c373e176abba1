"""The FastAPI example's service on aiohttp (issue #9).

Run it::

    .venv/bin/python examples/aiohttp_service.py            # serves on 127.0.0.1:8080
    .venv/bin/python examples/aiohttp_service.py --self-test  # free port, calls every route, exits

Routes: ``/search?q=`` (fan-out under one deadline), ``/quote`` (rate-limited),
``/users/{id}`` (singleflight + cache), ``POST /jobs`` and ``/jobs/{id}``
(background jobs), ``/events`` (SSE of a pipeline, ended by the request's 2 s
deadline like any request), ``/debug/tasks`` (the task dump, with
``ASYNCGO_DEBUG_HTTP=1``, loopback only).

aiohttp runs on asyncio (and uvloop) only; for trio, use the FastAPI / Starlette
example under hypercorn.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import ClientSession, web

from asyncgo import (
    Canceled,
    Context,
    Group,
    background,
    current,
    pipeline,
    rate,
    stages,
    with_cancel,
)
from asyncgo.contrib.aiohttp import debug_handler, get_context, setup, stream_events
from asyncgo.singleflight import Group as SingleFlight
from asyncgo.time import sleep

STATE = web.AppKey("state", dict)
LOADS = itertools.count()
JOB_IDS = itertools.count(1)


async def backend(name: str, query: str, ctx: Context) -> dict[str, object]:
    await sleep(random.uniform(0.05, 0.3), ctx)
    return {"backend": name, "hits": len(query) * random.randint(1, 9)}


async def load_user(user_id: int) -> dict[str, object]:
    next(LOADS)
    await sleep(0.2, current())
    return {"id": user_id, "name": f"user-{user_id}"}


async def run_job(job_id: int, jobs: dict[int, str]) -> None:
    jobs[job_id] = "running"
    try:
        await sleep(0.5, current())
        jobs[job_id] = "done"
    except Canceled:
        jobs[job_id] = "cancelled"
        raise


async def resources(app: web.Application) -> AsyncIterator[None]:
    """App-wide: singleflight, the background-jobs Group, the cache and the limiter."""
    jobs_ctx, stop_jobs = with_cancel(background())
    try:
        async with SingleFlight() as sf, Group(jobs_ctx) as jobs:
            app[STATE].update(
                sf=sf, jobs=jobs, job_states={}, cache={}, limiter=rate.Limiter(20, 5)
            )
            yield
            stop_jobs()
    except Canceled:
        pass


routes = web.RouteTableDef()


@routes.get("/search")
async def search(request: web.Request) -> web.Response:
    ctx = get_context(request)
    q = request.query.get("q", "asyncgo")
    async with Group(ctx) as g:
        calls = [await g.go(backend, name, q, g.ctx) for name in ("web", "news", "images")]
    return web.json_response({"query": q, "results": [c.result() for c in calls]})


@routes.get("/quote")
async def quote(request: web.Request) -> web.Response:
    ctx = get_context(request)
    await request.app[STATE]["limiter"].wait(1, ctx)
    return web.json_response(await backend("quotes", "q", ctx))


@routes.get("/users/{user_id}")
async def user(request: web.Request) -> web.Response:
    st = request.app[STATE]
    user_id = int(request.match_info["user_id"])
    if user_id in st["cache"]:
        return web.json_response({"user": st["cache"][user_id], "cached": True, "shared": False})
    value, shared = await st["sf"].do(user_id, load_user, user_id)
    st["cache"][user_id] = value
    return web.json_response({"user": value, "cached": False, "shared": shared})


@routes.post("/jobs")
async def start_job(request: web.Request) -> web.Response:
    st = request.app[STATE]
    job_id = next(JOB_IDS)
    st["job_states"][job_id] = "queued"
    await st["jobs"].go(run_job, job_id, st["job_states"])
    return web.json_response({"job": job_id}, status=202)


@routes.get("/jobs/{job_id}")
async def job_state(request: web.Request) -> web.Response:
    job_id = int(request.match_info["job_id"])
    state = request.app[STATE]["job_states"].get(job_id)
    if state is None:
        raise web.HTTPNotFound(text="no such job")
    return web.json_response({"job": job_id, "state": state})


async def ticks() -> AsyncIterator[int]:
    for i in itertools.count():
        yield i
        await sleep(0.2, current())


async def enrich(i: int) -> dict[str, int]:
    return {"tick": i, "square": i * i}


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    return await stream_events(
        request, pipeline(ticks) | stages.map(enrich, workers=2), event="tick"
    )


def make_app() -> web.Application:
    app = web.Application()
    app[STATE] = {}
    setup(app, timeout=2.0)
    app.cleanup_ctx.append(resources)
    app.add_routes(routes)
    app.router.add_get("/debug/tasks", debug_handler())  # off unless ASYNCGO_DEBUG_HTTP=1
    return app


async def self_test() -> None:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        async with ClientSession(base_url=url) as c:
            async with c.get("/search", params={"q": "go"}) as r:
                print("search:", r.status, await r.json())
            async with c.get("/search", headers={"Request-Timeout": "0.01"}) as r:
                print("search, Request-Timeout 0.01:", r.status, await r.json())
                assert r.status == 504

            async def status(path: str) -> dict[str, object]:
                async with c.get(path) as r:
                    return await r.json()  # type: ignore[no-any-return]

            print("quote x8:", len(await asyncio.gather(*(status("/quote") for _ in range(8)))))
            us = await asyncio.gather(*(status("/users/7") for _ in range(10)))
            print(
                "users/7 x10:", sum(bool(u["shared"]) for u in us), "shared,", next(LOADS), "load"
            )
            print("users/7 again: cached =", (await status("/users/7"))["cached"])
            async with c.post("/jobs") as r:
                job = (await r.json())["job"]
            await asyncio.sleep(0.8)
            print("job:", await status(f"/jobs/{job}"))
            async with c.get("/events") as r:
                n = 0
                async for line in r.content:
                    if line.startswith(b"data:"):
                        print("event:", line.decode().strip())
                        n += 1
                        if n == 3:
                            break
    finally:
        await runner.cleanup()
    print("self-test ok")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    if args.self_test:
        asyncio.run(self_test())
    else:
        web.run_app(make_app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()

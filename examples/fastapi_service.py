"""A small FastAPI service built on asyncgo (issue #9).

Run it::

    .venv/bin/python examples/fastapi_service.py            # serves on 127.0.0.1:8000
    .venv/bin/python examples/fastapi_service.py --self-test  # free port, calls every route, exits

then try::

    curl localhost:8000/search?q=go                       # fan-out to 3 backends, one deadline
    curl -H 'Request-Timeout: 0.1' localhost:8000/search  # lower the deadline: 504
    curl localhost:8000/quote                             # rate-limited outbound call
    curl localhost:8000/users/7                           # singleflight in front of a cache
    curl -X POST localhost:8000/jobs                      # background job; GET /jobs/<id>
    curl -N localhost:8000/events                         # SSE of a pipeline, until the deadline
    ASYNCGO_DEBUG_HTTP=1 ... curl localhost:8000/debug/tasks/   # the task dump

Every request has a `Context` (deadline 2 s by default, lowered by a
``Request-Timeout`` header, cancelled when the client goes away), and every
task a request starts lives in a `Group` bound to it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn
from fastapi import FastAPI, HTTPException

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
from asyncgo.contrib.fastapi import (
    ContextMiddleware,
    EventStreamResponse,
    RequestContext,
    debug_app,
)
from asyncgo.singleflight import Group as SingleFlight
from asyncgo.time import sleep

# -- pretend backends --------------------------------------------------------------


async def backend(name: str, query: str, ctx: Context) -> dict[str, object]:
    """A slow backend: 50-300 ms, abandoned at once when ctx ends."""
    await sleep(random.uniform(0.05, 0.3), ctx)
    return {"backend": name, "hits": len(query) * random.randint(1, 9)}


LOADS = itertools.count()


async def load_user(user_id: int) -> dict[str, object]:
    """The expensive call singleflight protects: a database query."""
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


# -- the app -------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Background jobs outlive the request that started them, not the app: they live
    # in an app-wide Group, cancelled at shutdown.
    jobs_ctx, stop_jobs = with_cancel(background())
    try:
        async with SingleFlight() as sf, Group(jobs_ctx) as jobs:
            app.state.sf = sf
            app.state.jobs = jobs
            app.state.job_states = {}
            app.state.cache = {}
            # Outbound calls: at most 20/s, bursts of 5 (asyncgo.rate, Go's x/time/rate).
            app.state.limiter = rate.Limiter(20, 5)
            yield
            stop_jobs()
    except Canceled:
        pass  # the jobs group ends with its (cancelled) context at shutdown


app = FastAPI(lifespan=lifespan)
app.add_middleware(ContextMiddleware, timeout=2.0)
app.mount("/debug/tasks", debug_app())  # off unless ASYNCGO_DEBUG_HTTP=1; loopback only


@app.get("/search")
async def search(ctx: RequestContext, q: str = "asyncgo") -> dict[str, Any]:
    """Fan out to three backends under the request's deadline; the first error cancels all."""
    async with Group(ctx) as g:
        calls = [await g.go(backend, name, q, g.ctx) for name in ("web", "news", "images")]
    return {"query": q, "results": [c.result() for c in calls]}


@app.get("/quote")
async def quote(ctx: RequestContext) -> dict[str, Any]:
    """A rate-limited outbound call: waits for a token; fails fast if the deadline is nearer."""
    await app.state.limiter.wait(1, ctx)
    return await backend("quotes", "q", ctx)


@app.get("/users/{user_id}")
async def user(user_id: int) -> dict[str, Any]:
    """Cache, then singleflight: concurrent misses for one key make one load."""
    cache: dict[int, dict[str, object]] = app.state.cache
    if user_id in cache:
        return {"user": cache[user_id], "cached": True, "shared": False}
    value, shared = await app.state.sf.do(user_id, load_user, user_id)
    cache[user_id] = value
    return {"user": value, "cached": False, "shared": shared}


JOB_IDS = itertools.count(1)


@app.post("/jobs", status_code=202)
async def start_job() -> dict[str, int]:
    job_id = next(JOB_IDS)
    app.state.job_states[job_id] = "queued"
    await app.state.jobs.go(run_job, job_id, app.state.job_states)
    return {"job": job_id}


@app.get("/jobs/{job_id}")
async def job_state(job_id: int) -> dict[str, object]:
    state = app.state.job_states.get(job_id)
    if state is None:
        raise HTTPException(404, "no such job")
    return {"job": job_id, "state": state}


async def ticks() -> AsyncIterator[int]:
    for i in itertools.count():
        yield i
        await sleep(0.2, current())


async def enrich(i: int) -> dict[str, int]:
    return {"tick": i, "square": i * i}


@app.get("/events")
async def events(ctx: RequestContext) -> EventStreamResponse:
    """SSE of a pipeline; the pipeline stops when the client disconnects."""
    # Like every request, the stream ends at the request's deadline (2 s here; a
    # Request-Timeout header can only lower it), or sooner if the client goes away.
    # A route that streams for longer needs a middleware with a longer timeout.
    return EventStreamResponse(pipeline(ticks) | stages.map(enrich, workers=2), event="tick")


# -- running it ----------------------------------------------------------------------


async def self_test() -> None:
    import httpx

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", http="h11", ws="none"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            r = await c.get("/search", params={"q": "go"})
            print("search:", r.status_code, r.json())
            r = await c.get("/search", headers={"Request-Timeout": "0.01"})
            print("search, Request-Timeout 0.01:", r.status_code, r.json())
            assert r.status_code == 504
            rs = await asyncio.gather(*(c.get("/quote") for _ in range(8)))
            print("quote x8:", [x.status_code for x in rs])
            rs = await asyncio.gather(*(c.get("/users/7") for _ in range(10)))
            print(
                "users/7 x10:", sum(x.json()["shared"] for x in rs), "shared,", next(LOADS), "load"
            )
            r = await c.get("/users/7")
            print("users/7 again: cached =", r.json()["cached"])
            job = (await c.post("/jobs")).json()["job"]
            await asyncio.sleep(0.8)
            print("job:", (await c.get(f"/jobs/{job}")).json())
            async with c.stream("GET", "/events") as s:
                n = 0
                async for line in s.aiter_lines():
                    if line.startswith("data:"):
                        print("event:", line)
                        n += 1
                        if n == 3:
                            break
    finally:
        server.should_exit = True
        await task
    print("self-test ok")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    if args.self_test:
        asyncio.run(self_test())
    else:
        uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()

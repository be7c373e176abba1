"""ContextMiddleware in-process (httpx's ASGI transport, no server) on asyncio, uvloop and trio.

Covers both watcher paths: the bare asyncio task (asyncio, uvloop) and the anyio
task group (trio, e.g. under hypercorn). Disconnects need a real server: see
test_starlette.py.
"""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest
from starlette.responses import StreamingResponse

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

import asyncgo  # noqa: E402
from asyncgo import DeadlineExceeded, current  # noqa: E402
from asyncgo.contrib.starlette import ContextMiddleware, EventStreamResponse, get_context  # noqa: E402

pytestmark = [
    pytest.mark.anyio,
    # On trio, httpx's ASGITransport leaves its request-body async generator
    # (ByteStream.__aiter__) to the garbage collector, which trio reports as
    # unraisable: httpx's, not ours.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def make_app(**mw: object) -> Starlette:
    seen: dict[str, object] = {}

    async def info(request: Request) -> JSONResponse:
        ctx = get_context(request)
        d = ctx.deadline()
        return JSONResponse(
            {
                "is_current": current() is ctx,
                "remaining": None if d is None else d - anyio.current_time(),
            }
        )

    async def slow(request: Request) -> JSONResponse:
        ctx = seen["ctx"] = get_context(request)
        await asyncgo.time.sleep(3600, ctx)
        return JSONResponse({})

    async def hang(request: Request) -> JSONResponse:
        seen["ctx"] = get_context(request)
        await anyio.sleep_forever()
        return JSONResponse({})

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"body": (await request.body()).decode()})

    async def cpu(request: Request) -> JSONResponse:
        seen["ctx"] = get_context(request)
        time.sleep(0.3)  # blocks the loop: no checkpoint until the response starts
        return JSONResponse({"status": "late"})

    async def late_stream(request: Request) -> StreamingResponse:
        seen["ctx"] = get_context(request)
        time.sleep(0.3)

        async def chunks():  # type: ignore[no-untyped-def]
            yield b"never sent"

        return StreamingResponse(chunks())

    async def sse(request: Request) -> EventStreamResponse:
        return EventStreamResponse(_three())

    app = Starlette(
        routes=[
            Route("/info", info),
            Route("/slow", slow),
            Route("/hang", hang),
            Route("/echo", echo, methods=["POST"]),
            Route("/sse", sse),
            Route("/cpu", cpu),
            Route("/late-stream", late_stream),
        ]
    )
    app.add_middleware(ContextMiddleware, **mw)  # type: ignore[arg-type]
    app.state.seen = seen
    return app


async def _three():  # type: ignore[no-untyped-def]
    for s in ("a", "b", "c"):
        yield s


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_context_current_deadline_and_header() -> None:
    async with client(make_app(timeout=30.0)) as c:
        body = (await c.get("/info")).json()
        assert body["is_current"] is True
        assert 0 < body["remaining"] <= 30
        body = (await c.get("/info", headers={"Request-Timeout": "2"})).json()
        assert 0 < body["remaining"] <= 2
        body = (await c.get("/info", headers={"Request-Timeout": "999"})).json()
        assert 2 < body["remaining"] <= 30


async def test_no_default_deadline() -> None:
    async with client(make_app(timeout=None)) as c:
        assert (await c.get("/info")).json()["remaining"] is None
        r = await c.get("/info", headers={"Request-Timeout": "5"})
        assert 0 < r.json()["remaining"] <= 5


@pytest.mark.parametrize("path", ["/slow", "/hang"])
async def test_deadline_gives_504(path: str) -> None:
    app = make_app(timeout=0.1)
    async with client(app) as c:
        with anyio.fail_after(10):
            r = await c.get(path)
    assert r.status_code == 504
    assert r.json() == {"detail": "deadline exceeded"}
    assert isinstance(app.state.seen["ctx"].err(), DeadlineExceeded)


@pytest.mark.parametrize(
    ("path", "limit"), [("/info", "0"), ("/cpu", "0.05"), ("/late-stream", "0.05")]
)
async def test_deadline_passed_before_response_start_gives_504(path: str, limit: str) -> None:
    """No checkpoint between the deadline and the response: the response is replaced."""
    app = make_app(timeout=30.0)
    async with client(app) as c:
        with anyio.fail_after(10):
            r = await c.get(path, headers={"Request-Timeout": limit})
    assert r.status_code == 504
    assert r.json() == {"detail": "deadline exceeded"}
    if path != "/info":
        assert isinstance(app.state.seen["ctx"].err(), DeadlineExceeded)


async def test_request_body_reaches_the_app() -> None:
    async with client(make_app()) as c:
        r = await c.post("/echo", content=b"x" * 100_000)
    assert r.json() == {"body": "x" * 100_000}


async def test_sse_of_an_async_iterable() -> None:
    async with client(make_app()) as c:
        r = await c.get("/sse")
    assert r.text == "data: a\n\ndata: b\n\ndata: c\n\n"
    assert r.headers["content-type"].startswith("text/event-stream")


class _Stop(BaseException):
    """A BaseException of the user's own (as KeyboardInterrupt, SystemExit)."""


@pytest.mark.parametrize("exc_type", [_Stop, KeyboardInterrupt])
async def test_a_base_exception_from_the_app_propagates_as_itself(
    exc_type: type[BaseException],
) -> None:
    # On trio the app runs in a task group, which wrapped it in a BaseExceptionGroup.
    async def app(scope: object, receive: object, send: object) -> None:
        await anyio.lowlevel.checkpoint()
        raise exc_type("stop")

    async def receive() -> dict[str, object]:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(msg: object) -> None:
        pass

    mw = ContextMiddleware(app)  # type: ignore[arg-type]
    with pytest.raises(exc_type):
        await mw({"type": "http", "headers": []}, receive, send)

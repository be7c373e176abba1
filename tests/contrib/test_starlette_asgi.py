"""ContextMiddleware in-process (httpx's ASGI transport, no server) on asyncio, uvloop and trio.

Covers both watcher paths: the bare asyncio task (asyncio, uvloop) and the anyio
task group (trio, e.g. under hypercorn). Disconnects need a real server: see
test_starlette.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from starlette.responses import StreamingResponse

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

import asyncgo  # noqa: E402
from asyncgo import DeadlineExceeded, current  # noqa: E402
from asyncgo.contrib import ClientDisconnected  # noqa: E402
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


@pytest.mark.parametrize("stream", [False, True])
async def test_a_response_made_after_the_ctx_was_cancelled_is_sent_whole(stream: bool) -> None:
    # The handler answers ctx.done() (the parent's end: a server shutting down). Its
    # response, started in the cancelled scope, must reach a server whose send()
    # checkpoints (hypercorn on trio) uncut: a cancellation inside it broke the
    # server's protocol state (h11 raised, and the whole server went down).
    app_ctx, cancel_app = asyncgo.with_cancel(asyncgo.background())
    waiting = anyio.Event()

    async def answer(request: Request) -> JSONResponse | StreamingResponse:
        ctx = get_context(request)
        waiting.set()
        await asyncgo.select(asyncgo.recv(ctx.done()))
        err = type(ctx.err()).__name__
        if not stream:
            return JSONResponse({"err": err})

        async def parts():  # type: ignore[no-untyped-def]
            yield err.encode()

        return StreamingResponse(parts())

    app = Starlette(routes=[Route("/answer", answer)])
    app.add_middleware(ContextMiddleware, parent=app_ctx)
    asked = False
    calls: list[str] = []
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(msg: dict[str, object]) -> None:
        calls.append(str(msg["type"]))
        await anyio.lowlevel.checkpoint()  # a server whose send() yields
        sent.append(msg)

    scope = _http_scope("GET", "/answer")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, scope, receive, send)
            await waiting.wait()
            cancel_app()
    assert len(sent) == len(calls), calls  # no send() was cut
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in sent[1:])  # type: ignore[misc]
    assert body in (b'{"err":"Canceled"}', b"Canceled")
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)


def _http_scope(method: str, path: str) -> dict[str, object]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [], "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip


async def test_a_disconnect_after_an_unread_body_ended_by_an_empty_message() -> None:
    # hypercorn ends a body with an empty message after the data. An app that does
    # not read the body still sees the disconnect that follows: the watcher, one
    # message ahead, folds that empty end into the message still queued for the app.
    waiting = anyio.Event()
    seen: list[object] = []

    async def upload(request: Request) -> JSONResponse:
        ctx = get_context(request)
        waiting.set()
        await asyncgo.select(asyncgo.recv(ctx.done()))
        seen.append(ctx.cause())
        with anyio.CancelScope(shield=True):  # (in the request's cancelled scope)
            seen.append(await request.body())  # the body, whole, and its end
        return JSONResponse({})

    app = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
    app.add_middleware(ContextMiddleware, watch_after=0)
    messages = [
        {"type": "http.request", "body": b"0123456789", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        if messages and messages[0]["type"] == "http.disconnect":
            await waiting.wait()  # the app waits on ctx.done() (trio starts tasks in any order)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(msg: dict[str, object]) -> None:
        pass

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, _http_scope("POST", "/upload"), receive, send)
            await waiting.wait()
    assert isinstance(seen[0], ClientDisconnected)
    assert seen[1] == b"0123456789"


@pytest.mark.parametrize("kind", ["streaming", "sse"])
async def test_a_stream_whose_source_never_awaits_stops_when_the_client_goes(kind: str) -> None:
    # uvicorn's send() returns at once once the client is gone; a source that never
    # awaits then never yielded: the watcher never saw the disconnect, the deadline
    # never fired, and the server's loop was stuck (here: all 20 000 items "sent").
    made = 0

    async def items() -> AsyncIterator[str]:
        nonlocal made
        for _ in range(20_000):
            made += 1
            yield "y"

    async def stream(request: Request) -> Response:
        if kind == "sse":
            return EventStreamResponse(items())
        return StreamingResponse(items())

    app = Starlette(routes=[Route("/s", stream)])
    app.add_middleware(ContextMiddleware, timeout=60, watch_after=0)
    gone = anyio.Event()
    bodies = 0
    first = True

    async def receive() -> dict[str, object]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, object]) -> None:
        nonlocal bodies
        if msg["type"] == "http.response.body":
            bodies += 1
            if bodies == 10:
                gone.set()  # from now on, like uvicorn: nothing goes anywhere

    with anyio.fail_after(30):
        with contextlib.suppress(Exception):
            await app(_http_scope("GET", "/s"), receive, send)
    assert made < 1000

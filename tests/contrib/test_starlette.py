"""ContextMiddleware, the FastAPI dependency and SSE against a real uvicorn server on loopback.

uvicorn and httpx's server side are asyncio-only: these tests run on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from _servers import serve_uvicorn as serve  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from starlette.responses import StreamingResponse  # noqa: E402

import asyncgo  # noqa: E402
from asyncgo import Canceled, Chan, Context, DeadlineExceeded, SendChan, current  # noqa: E402
from asyncgo._group import Group  # noqa: E402
from asyncgo._pipeline import pipeline  # noqa: E402
from asyncgo.contrib import ClientDisconnected, effective_timeout  # noqa: E402
from asyncgo.contrib.fastapi import (  # noqa: E402
    ContextMiddleware,
    EventStreamResponse,
    RequestContext,
    debug_app,
)

pytestmark = pytest.mark.anyio

_uvloop = pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="no uvloop")


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop", marks=_uvloop),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]


WAIT = 10.0  # generous bound for "within a bounded time"


class Probe:
    """What the handlers saw, for the test to check."""

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self.entered = anyio.Event()
        self.started = 0
        self.finished = 0
        self.all_done = anyio.Event()
        self.items_sent = 0

    def task_done(self) -> None:
        self.finished += 1
        if self.finished == self.started:
            self.all_done.set()


def make_app(probe: Probe, **mw: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(ContextMiddleware, **mw)

    @app.get("/ctx")
    async def ctx_info(ctx: RequestContext) -> dict[str, Any]:
        d = ctx.deadline()
        return {
            "is_current": current() is ctx,
            "remaining": None if d is None else d - anyio.current_time(),
        }

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            probe.task_done()

    @app.get("/hang")
    async def hang(ctx: RequestContext) -> dict[str, str]:
        probe.ctx = ctx
        async with Group(ctx) as g:
            for _ in range(3):
                probe.started += 1
                await g.go(forever)
            probe.entered.set()
        return {"never": "reached"}

    @app.get("/sleep")
    async def sleep(ctx: RequestContext) -> dict[str, str]:
        probe.ctx = ctx
        probe.entered.set()
        # Raises ctx.err() when ctx ends. (A handler that returned normally after
        # ctx.wait() would send its own response: that is its choice.)
        await asyncgo.time.sleep(3600, ctx)
        return {"never": "reached"}

    async def ticks(tx: SendChan[int]) -> None:
        probe.started += 1
        try:
            i = 0
            while True:
                await tx.send(i)
                probe.items_sent += 1
                i += 1
        finally:
            probe.task_done()

    @app.get("/sse/chan")
    async def sse_chan(ctx: RequestContext) -> EventStreamResponse:
        probe.ctx = ctx
        return EventStreamResponse(ticks)

    async def counter() -> AsyncIterator[int]:
        probe.started += 1
        try:
            i = 0
            while True:
                yield i
                i += 1
                await anyio.sleep(0)
        finally:
            probe.task_done()

    async def double(items: AsyncIterator[int]) -> AsyncIterator[dict[str, int]]:
        async for x in items:
            yield {"n": x, "double": 2 * x}

    @app.get("/sse/pipeline")
    async def sse_pipeline(ctx: RequestContext) -> EventStreamResponse:
        probe.ctx = ctx
        return EventStreamResponse(pipeline(counter) | double, event="tick")

    @app.get("/stream/plain")
    async def plain_stream(ctx: RequestContext) -> StreamingResponse:
        probe.ctx = ctx

        async def gen() -> AsyncIterator[bytes]:
            probe.started += 1
            try:
                while True:
                    yield b"x" * 100 + b"\n"
                    await anyio.sleep(0.01)
            finally:
                probe.task_done()

        return StreamingResponse(gen())

    @app.get("/echo/{n}")
    async def echo(n: int, ctx: RequestContext) -> dict[str, int]:
        async with Group(ctx) as g:
            h = await g.go(asyncgo_sleep_then, n)
        return {"n": h.result()}

    @app.get("/quick")
    async def quick(ctx: RequestContext) -> dict[str, str]:
        probe.ctx = ctx
        return {"status": "ok"}  # no cancellation checkpoint at all

    @app.get("/cpu")
    async def cpu(ctx: RequestContext) -> dict[str, str]:
        probe.ctx = ctx
        time.sleep(BUSY)  # blocks the loop: no checkpoint until the response starts
        return {"status": "late"}

    @app.get("/sync")
    def sync(ctx: RequestContext) -> dict[str, str]:
        probe.ctx = ctx
        time.sleep(BUSY)  # in Starlette's thread pool: not cancellable
        return {"status": "late"}

    app.mount("/debug/tasks", debug_app(enabled=True))
    return app


#: How long /cpu and /sync take: far longer than the 0.05 s deadline the tests give them.
BUSY = 0.3


async def asyncgo_sleep_then(n: int) -> int:
    await asyncgo.time.sleep(0.001, current())
    return n


def test_effective_timeout_lowers_never_raises() -> None:
    assert effective_timeout(10.0, None) == 10.0
    assert effective_timeout(10.0, "2.5") == 2.5
    assert effective_timeout(10.0, "100") == 10.0
    assert effective_timeout(None, "3") == 3.0
    assert effective_timeout(10.0, "0") == 0.0
    for bad in ("abc", "-1", "nan", "inf", ""):
        assert effective_timeout(10.0, bad) == 10.0


async def test_context_is_current_and_has_default_deadline() -> None:
    probe = Probe()
    async with serve(make_app(probe, timeout=30.0)) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/ctx")
        assert r.status_code == 200
        body = r.json()
        assert body["is_current"] is True
        assert 0 < body["remaining"] <= 30.0


async def test_header_lowers_but_never_raises_deadline() -> None:
    probe = Probe()
    async with serve(make_app(probe, timeout=30.0)) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/ctx", headers={"Request-Timeout": "5"})
        assert 0 < r.json()["remaining"] <= 5.0
        r = await client.get(url + "/ctx", headers={"Request-Timeout": "3600"})
        assert 5.0 < r.json()["remaining"] <= 30.0
        # A lowered deadline actually fires: 504 long before the 30 s default.
        with anyio.fail_after(WAIT):
            r = await client.get(url + "/sleep", headers={"Request-Timeout": "0.2"})
        assert r.status_code == 504


async def test_deadline_gives_504_json_and_cancels_tasks() -> None:
    """The deadline cancels the handler's three tasks, which end before the 504 (JSON).

    The 0.3 s deadline runs from the request's arrival: on a loaded machine the handler
    may not have started its tasks by then (its first ``g.go`` is a cancel point, so
    it raises there and starts none). Such an attempt is still a 504 whose context says
    DeadlineExceeded, but it tests nothing about the tasks: it is made again (a few
    times at most, each a fresh server and app)."""
    for _attempt in range(5):
        probe = Probe()
        app = make_app(probe, timeout=0.3)
        async with serve(app) as url, httpx.AsyncClient() as client:
            with anyio.fail_after(WAIT):
                r = await client.get(url + "/hang")
            assert r.status_code == 504
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {"detail": "deadline exceeded"}
            assert probe.ctx is not None
            assert isinstance(probe.ctx.err(), DeadlineExceeded)
            if probe.entered.is_set():  # the three tasks ran before the deadline
                assert probe.finished == probe.started == 3  # all cancelled, and ended
                break
    else:
        pytest.fail("the handler never started its three tasks within the 0.3 s deadline")


async def test_passed_deadline_without_checkpoint_gives_504() -> None:
    """A handler that never reaches a checkpoint cannot be cancelled; its response is dropped."""
    probe = Probe()
    async with serve(make_app(probe, timeout=30.0)) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/quick")
        assert r.status_code == 200  # in time: its own response
        for path, limit in (("/quick", "0"), ("/cpu", "0.05"), ("/sync", "0.05")):
            with anyio.fail_after(WAIT):
                r = await client.get(url + path, headers={"Request-Timeout": limit})
            assert (path, r.status_code) == (path, 504)
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {"detail": "deadline exceeded"}
            assert probe.ctx is not None
            assert isinstance(probe.ctx.err(), DeadlineExceeded)
        # The connection is still usable: the dropped response left nothing behind.
        r = await client.get(url + "/quick")
        assert r.status_code == 200


async def test_timeout_response_is_configurable() -> None:
    probe = Probe()
    app = make_app(probe, timeout=0.1, timeout_status=503, timeout_body={"error": "slow"})
    async with serve(app) as url, httpx.AsyncClient() as client:
        with anyio.fail_after(WAIT):
            r = await client.get(url + "/sleep")
        assert r.status_code == 503
        assert r.json() == {"error": "slow"}


async def _disconnect_after_entered(url: str, path: str, probe: Probe) -> None:
    """Start a request, wait until the handler is running, then drop the connection."""
    async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:

        async def request() -> None:
            await client.get(url + path, timeout=WAIT)

        tg.start_soon(request)
        with anyio.fail_after(WAIT):
            await probe.entered.wait()
        tg.cancel_scope.cancel()  # the client goes away mid-request


async def test_client_disconnect_cancels_handler_context_and_its_tasks() -> None:
    probe = Probe()
    async with serve(make_app(probe, timeout=60.0)) as url:
        await _disconnect_after_entered(url, "/hang", probe)
        with anyio.fail_after(WAIT):
            await probe.all_done.wait()
        assert probe.finished == probe.started == 3
        assert probe.ctx is not None
        assert isinstance(probe.ctx.err(), Canceled)
        assert isinstance(probe.ctx.cause(), ClientDisconnected)


@pytest.mark.parametrize("path", ["/sse/chan", "/sse/pipeline", "/stream/plain"])
async def test_stream_producer_stops_when_client_disconnects(path: str) -> None:
    probe = Probe()
    async with serve(make_app(probe, timeout=60.0)) as url:
        async with httpx.AsyncClient() as client:
            async with client.stream("GET", url + path, timeout=WAIT) as r:
                assert r.status_code == 200
                seen = 0
                async for line in r.aiter_lines():
                    if line:
                        seen += 1
                    if seen >= 5:
                        break
            if path.startswith("/sse"):
                assert r.headers["content-type"].startswith("text/event-stream")
        # The connection is closed: the producer must be cancelled and awaited.
        with anyio.fail_after(WAIT):
            await probe.all_done.wait()
        assert probe.ctx is not None
        assert isinstance(probe.ctx.cause(), ClientDisconnected)


async def test_sse_pipeline_format() -> None:
    probe = Probe()
    async with serve(make_app(probe, timeout=60.0)) as url, httpx.AsyncClient() as client:
        async with client.stream("GET", url + "/sse/pipeline", timeout=WAIT) as r:
            lines: list[str] = []
            async for line in r.aiter_lines():
                lines.append(line)
                if len(lines) >= 6:
                    break
    assert lines[:3] == ["event: tick", 'data: {"n":0,"double":0}', ""]
    assert lines[3:6] == ["event: tick", 'data: {"n":1,"double":2}', ""]


async def test_sse_of_a_channel_ends_when_the_channel_closes() -> None:
    ch = Chan[str](3)
    for s in ("a", "b", "c"):
        ch.send_nowait(s)
    ch.close()
    app = FastAPI()
    app.add_middleware(ContextMiddleware)

    @app.get("/done")
    async def done() -> EventStreamResponse:
        return EventStreamResponse(ch)

    async with serve(app) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/done", timeout=WAIT)
    assert r.text == "data: a\n\ndata: b\n\ndata: c\n\n"


async def test_load_1000_requests_no_loss_no_leak() -> None:
    """1000 requests, 50 at a time: every response arrives, no task is left behind.

    The load comes from aiohttp's client: httpx's pool is too slow in one process
    with the server (about 100 requests/s) to keep the test short.
    """
    aiohttp = pytest.importorskip("aiohttp")
    probe = Probe()
    n = 1000
    async with serve(make_app(probe, timeout=30.0)) as url:
        await asyncio.sleep(0.05)
        before = {t for t in asyncio.all_tasks() if not t.done()}
        results: list[int] = []
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as client:

            async def one(i: int) -> None:
                async with client.get(f"{url}/echo/{i}") as r:
                    assert r.status == 200
                    results.append((await r.json())["n"])

            with anyio.fail_after(WAIT * 3):
                async with anyio.create_task_group() as tg:
                    for i in range(n):
                        tg.start_soon(one, i)
        assert sorted(results) == list(range(n))
        # Every request task and every task a handler started has ended.
        leaked: set[asyncio.Task[Any]] = set()
        with anyio.move_on_after(WAIT):
            while True:
                leaked = {t for t in asyncio.all_tasks() if not t.done()} - before
                leaked.discard(asyncio.current_task())  # type: ignore[arg-type]
                if not leaked:
                    break
                await asyncio.sleep(0.05)
        assert not leaked, leaked


async def test_debug_endpoint_mounted() -> None:
    probe = Probe()
    async with serve(make_app(probe)) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/debug/tasks/?format=json")
        assert r.status_code == 200
        assert isinstance(r.json(), (list, dict))


async def test_missing_middleware_is_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/x")
    async def x(ctx: RequestContext) -> dict[str, str]:
        return {}

    async with serve(app) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/x")
        assert r.status_code == 500


async def test_app_error_propagates_as_itself() -> None:
    app = FastAPI()
    app.add_middleware(ContextMiddleware)

    class Boom(Exception):
        pass

    @app.get("/boom")
    async def boom() -> None:
        raise Boom

    seen: list[BaseException] = []

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except BaseException as e:
            seen.append(e)
            raise

    async with serve(outer) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/boom")
    assert r.status_code == 500
    assert [type(e) for e in seen] == [Boom]


# -- found by a black-box audit (2026-12-05) ----------------------------------------


async def test_a_pipelined_request_gets_a_context_of_its_own() -> None:
    # uvicorn starts the next pipelined request's task inside the previous response's
    # last send(): it inherited current(), so the second request's context was a
    # child of the first's -- its deadline, and cancelled when the first ended.
    seen: dict[str, Any] = {}
    app = FastAPI()
    app.add_middleware(ContextMiddleware, timeout=60.0)

    @app.get("/first")
    async def first() -> dict[str, bool]:
        return {"first": True}

    @app.get("/second")
    async def second() -> dict[str, bool]:
        ctx = seen["ctx"] = current()
        seen["left"] = (ctx.deadline() or 0) - anyio.current_time()
        await asyncgo.time.sleep(0.05, ctx)  # raises ctx.err() if ctx is done
        return {"second": True}

    async with serve(app) as url:
        host, port = url.rsplit("/", 1)[1].split(":")
        r, w = await asyncio.open_connection(host, int(port))
        w.write(
            b"GET /first HTTP/1.1\r\nHost: x\r\nRequest-Timeout: 5\r\n\r\n"
            b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        await w.drain()
        data = b""
        with anyio.move_on_after(WAIT):
            while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
                chunk = await r.read(65536)
                if not chunk:
                    break
                data += chunk
        w.close()
    assert data.count(b"HTTP/1.1 200 OK") == 2, data
    assert seen["left"] > 30  # its own 60 s, not the first request's 5 s
    assert seen["ctx"].err() is not None  # ended with its own request...
    assert not isinstance(seen["ctx"].cause(), ClientDisconnected)


async def _read_response(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    n = [int(h.split(b":")[1]) for h in lines if h.lower().startswith(b"content-length:")]
    return lines[0], await r.readexactly(n[0] if n else 0)


@pytest.mark.parametrize("how", ["large upload", "pipelined post"])
async def test_the_next_request_on_a_connection_gets_a_context_of_its_own(how: str) -> None:
    # uvicorn's receive() resumes reading the connection; on asyncio the reader
    # callback then registered copies the current contextvars, and the next request on
    # the connection starts in that copy: receive() called inside the request's scope
    # made the next request's context a child of this one's -- cancelled when this
    # one ended, so its handler was cancelled at once and the client got a 500
    # (integrations soak: after a body over 64 KiB, or a pipelined POST).
    seen: list[tuple[Context, Context, BaseException | None]] = []
    app = FastAPI()
    app.add_middleware(ContextMiddleware, timeout=60.0)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    @app.get("/info")
    async def info(ctx: RequestContext) -> dict[str, bool]:
        seen.append((ctx, current(), ctx.err()))
        await asyncgo.time.sleep(0.001, ctx)  # raises ctx.err() if ctx is done
        return {"ok": True}

    ok = b'{"ok":true}'
    async with serve(app) as url:
        host, port = url.rsplit("/", 1)[1].split(":")
        for _ in range(3):
            r, w = await asyncio.open_connection(host, int(port))
            try:
                with anyio.fail_after(WAIT):
                    if how == "large upload":  # over uvicorn's 64 KiB: reading pauses
                        body = b"x" * (1 << 20)
                        post = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                        w.write(post % len(body) + body)
                        assert await _read_response(r) == (b"HTTP/1.1 200 OK", b'{"n":1048576}')
                    else:
                        w.write(
                            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
                            b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"
                        )
                        assert await _read_response(r) == (b"HTTP/1.1 200 OK", b'{"n":2}')
                        assert await _read_response(r) == (b"HTTP/1.1 200 OK", ok)
                    w.write(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert await _read_response(r) == (b"HTTP/1.1 200 OK", ok)
            finally:
                w.close()
    assert seen and all(err is None and c is ctx for ctx, c, err in seen), seen
    assert len({id(ctx) for ctx, _, _ in seen}) == len(seen)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_request_context_in_a_websocket_endpoint_names_the_misuse() -> None:
    from fastapi import WebSocket
    from starlette.testclient import TestClient

    app = FastAPI()
    app.add_middleware(ContextMiddleware)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, ctx: RequestContext) -> None:
        await websocket.accept()

    with TestClient(app) as c, pytest.raises(RuntimeError, match="RequestContext is for HTTP"):
        with c.websocket_connect("/ws"):
            pass

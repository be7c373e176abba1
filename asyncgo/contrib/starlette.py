"""A `Context` per request for Starlette, FastAPI and any ASGI app.

``ContextMiddleware`` is a pure ASGI middleware (no ``BaseHTTPMiddleware``, so no
extra task and no buffering of streamed bodies). For each HTTP request it makes a
context that is

* cancelled, with `ClientDisconnected` as its cause, when the client disconnects
  before the response is complete;
* done with `DeadlineExceeded` when the request's deadline passes: *timeout*
  seconds after the request arrived, lowered -- never raised -- by a
  ``Request-Timeout: <seconds>`` header.

The downstream app runs inside ``ctx.scope()``: `asyncgo.current()` is the
request's context in handlers, tasks started in a ``Group`` (whose default
context is `current()`) are cancelled with it, and the middleware returns only
when everything the request started has finished. A deadline that passes before
the response has started gives a ``504`` with a JSON body -- also when the
handler, never reaching a cancellation point, produced its own response too late:
that response is dropped. After the response has started (a stream), it is cut
short. A client that has gone gets nothing.

Example:
    ```python
    app = FastAPI()
    app.add_middleware(ContextMiddleware, timeout=10.0)

    @app.get("/items/{id}")
    async def item(id: int, ctx: RequestContext) -> dict[str, object]:
        async with Group(ctx) as g:
            a = await g.go(backend_a, id)
            b = await g.go(backend_b, id)
        return {"a": a.result(), "b": b.result()}
    ```
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import anyio

from . import _missing_extra

try:
    from starlette.responses import Response
except ModuleNotFoundError as _exc:
    raise _missing_extra(__name__, "starlette", _exc) from _exc

from .._backend import checkpoint
from .._context import Context, _current, current
from .._debug_http import asgi_app as _debug_asgi_app
from .._exceptions import Canceled, DeadlineExceeded
from . import (
    ClientDisconnected,
    StreamSource,
    effective_timeout,
    encode_sse,
    new_request_context,
    pump,
)

__all__ = [
    "CONTEXT_KEY",
    "ClientDisconnected",
    "ContextMiddleware",
    "EventStreamResponse",
    "debug_app",
    "get_context",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The ASGI scope key under which the middleware stores the request's context.
CONTEXT_KEY = "asyncgo.context"

_DEFAULT_BODY: Mapping[str, object] = {"detail": "deadline exceeded"}


class ContextMiddleware:
    """Pure ASGI middleware: a `Context` per HTTP request, cancelled on disconnect or deadline.

    Args:
        app: The ASGI app to wrap.
        timeout: The default deadline of a request, in seconds; None for none.
        header: The request header that may lower the deadline (seconds, a
            decimal number); None to ignore headers.
        timeout_status: The status sent when the deadline passes before the
            response has started.
        timeout_body: Its body, serialised as JSON.
        parent: The context each request's context derives from (default:
            `current()` when the request arrives, normally `background()`).
        watch_after: On asyncio, how long a request runs before a task starts
            watching for a disconnect (seconds). Shorter requests cost one timer;
            a disconnect is noticed at most this late. Until then a disconnect
            is seen whenever the app itself waits in ``receive()`` (as
            Starlette's streaming responses do).

    Lifespan and websocket connections pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        timeout: float | None = 30.0,
        header: str | None = "request-timeout",
        timeout_status: int = 504,
        timeout_body: object = _DEFAULT_BODY,
        parent: Context | None = None,
        watch_after: float = 0.02,
    ) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"ContextMiddleware: timeout must be >= 0 or None, not {timeout}")
        self.app = app
        self.timeout = timeout
        self._header = None if header is None else header.lower().encode("latin-1")
        self._status = timeout_status
        self._body = json.dumps(timeout_body).encode()
        self._parent = parent
        self.watch_after = watch_after

    def _timeout_of(self, scope: Scope) -> float | None:
        h = self._header
        if h is not None:
            for k, v in scope.get("headers", ()):
                if k.lower() == h:
                    return effective_timeout(self.timeout, v.decode("latin-1"))
        return self.timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrival = _current.get()
        parent = current() if self._parent is None else self._parent
        ctx, disconnect = new_request_context(parent, self._timeout_of(scope))
        scope[CONTEXT_KEY] = ctx
        state = scope.setdefault("state", {})
        state[CONTEXT_KEY] = ctx
        started = complete = dropped = late = False
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None

        async def app_send(msg: Message) -> None:
            nonlocal started, complete, dropped, late
            if dropped:
                return  # the rest of a response replaced by the 504
            shield = late
            if msg["type"] == "http.response.start":
                # A handler that never reached a checkpoint (no await that yields, a
                # blocking call, a sync endpoint in a thread) was not cancelled: its
                # response comes after the deadline and is replaced by the 504 (sent
                # below, outside the scope). err() notices a passed deadline itself.
                err = ctx.err()
                if isinstance(err, DeadlineExceeded):
                    dropped = True
                    return
                started = True
                # A response started once the ctx was cancelled (a handler's answer to
                # ctx.done(): the parent's end, a server shutting down) is sent whole:
                # cutting it would only break the server's protocol state (hypercorn on
                # trio, whose send() checkpoints, raised from h11 and went down). The
                # start of any response is never cut (on trio a checkpoint in the
                # server's send() could take a cancellation arriving meanwhile).
                late = err is not None
                shield = late or loop is None
            elif msg["type"] == "http.response.body" and not msg.get("more_body", False):
                complete = True
            # Out of the request's scope: a server may start its next task in send()
            # (uvicorn, the next pipelined request's, on the response's end), which
            # would inherit current() -- and derive its request context from ours.
            token = _current.set(arrival)
            try:
                if shield:
                    with anyio.CancelScope(shield=True):
                        await send(msg)
                else:
                    await send(msg)
            finally:
                _current.reset(token)
            if not shield and msg.get("more_body", False):
                # A stream whose source never awaits, through a send() that returns at
                # once once the client is gone (uvicorn's), never yielded: the watcher,
                # the deadline and every other request of the server waited for ever.
                await checkpoint()

        def on_disconnect() -> None:
            if not complete:  # after the response, a disconnect is just the end
                disconnect(ClientDisconnected())

        # A watcher task keeps reading the client's messages, at most one ahead of
        # the app: enough to see a disconnect once the body has been read (at once,
        # for bodiless requests) while the app runs. On asyncio (uvicorn, hypercorn)
        # it is a bare asyncio task, several times cheaper than an anyio task group.
        try:
            if loop is not None:
                await self._run_asyncio(loop, ctx, arrival, scope, receive, app_send, on_disconnect)
            else:
                await self._run_anyio(ctx, scope, receive, app_send, on_disconnect)
            if not started and isinstance(ctx.err(), DeadlineExceeded):
                await self._send_timeout(send)
        finally:
            disconnect()

    async def _run_asyncio(
        self,
        loop: asyncio.AbstractEventLoop,
        ctx: Context,
        arrival: Context | None,
        scope: Scope,
        receive: Receive,
        send: Send,
        on_disconnect: Callable[[], None],
    ) -> None:
        # The watcher starts only if the app is still running after `watch_after`
        # seconds: most requests end sooner and pay one timer, not a task and the
        # loop iterations it costs (benchmarks/bench_http.py). Until then, and while
        # the app is itself in receive(), the app's own receive() sees a disconnect.
        q: asyncio.Queue[Message] | None = None
        watcher: asyncio.Task[None] | None = None
        ended = False
        in_receive = False
        due = False

        async def watch(q: asyncio.Queue[Message]) -> None:
            nonlocal ended
            # The server's receive() out of the request's context (see app_receive);
            # this task may have been started inside it, from app_receive.
            _current.set(arrival)
            last: Message | None = None
            try:
                while True:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        on_disconnect()
                        return
                    if last is not None and q.full() and _empty_end(msg):
                        last["more_body"] = False  # (still queued: see _empty_end)
                        continue
                    await q.put(msg)
                    last = msg
            finally:
                ended = True
                if q.empty():  # wake an app_receive() waiting on the queue
                    q.put_nowait({"type": "http.disconnect"})

        def start_watch() -> None:
            nonlocal due, q, watcher
            due = True
            if in_receive or watcher is not None or ended:
                return  # the app's receive() returns first, then starts it
            q = asyncio.Queue(1)
            watcher = loop.create_task(watch(q))

        async def app_receive() -> Message:
            nonlocal in_receive, ended
            if q is not None:
                if ended and q.empty():
                    return {"type": "http.disconnect"}
                return await q.get()
            in_receive = True
            # Out of the request's context, as app_send: uvicorn's receive() resumes
            # reading the connection (on asyncio a reader callback that copies the
            # current contextvars, in which the next request on the connection then
            # starts), so current() there must not be this request's ctx.
            token = _current.set(arrival)
            try:
                msg = await receive()
            finally:
                _current.reset(token)
                in_receive = False
            if msg["type"] == "http.disconnect":
                ended = True
                on_disconnect()
            elif due:
                start_watch()
            return msg

        timer = loop.call_later(self.watch_after, start_watch)
        try:
            with ctx.scope():
                await self.app(scope, app_receive, send)
        except (Canceled, DeadlineExceeded) as exc:
            err = ctx.err()
            if err is None or not isinstance(exc, type(err)):
                raise
        finally:
            timer.cancel()
            w = watcher
            if w is not None:
                if not w.done():
                    w.cancel()
                await asyncio.wait((w,))
                if not w.cancelled():
                    w.exception()  # a receive() failure is the server's to report

    async def _run_anyio(
        self,
        ctx: Context,
        scope: Scope,
        receive: Receive,
        send: Send,
        on_disconnect: Callable[[], None],
    ) -> None:
        tx, rx = anyio.create_memory_object_stream[Message](1)

        async def watch() -> None:
            last: Message | None = None
            async with tx:
                while True:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        on_disconnect()
                        return
                    if last is not None and tx.statistics().current_buffer_used and _empty_end(msg):
                        last["more_body"] = False  # (still queued: see _empty_end)
                        continue
                    await tx.send(msg)
                    last = msg

        async def app_receive() -> Message:
            try:
                return await rx.receive()
            except anyio.EndOfStream:
                return {"type": "http.disconnect"}

        failure: BaseException | None = None
        cancelled = anyio.get_cancelled_exc_class()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                try:
                    with ctx.scope():
                        await self.app(scope, app_receive, send)
                except cancelled:
                    raise
                except BaseException as exc:
                    # Re-raised below, as itself (KeyboardInterrupt, SystemExit too):
                    # the task group would wrap it in a BaseExceptionGroup.
                    err = ctx.err()
                    if err is None or not isinstance(exc, type(err)):
                        failure = exc
                finally:
                    tg.cancel_scope.cancel()
        finally:
            rx.close()
        if failure is not None:
            raise failure

    async def _send_timeout(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self._status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body})


def _empty_end(msg: Message) -> bool:
    """Whether *msg* only ends the request body (no bytes, no more to come).

    Servers may end a body that way (hypercorn: the data, then an empty message).
    The watcher, one message ahead of an app that does not read the body, folds it
    into the message still queued for the app (the watcher's own: ``more_body``
    becomes False) instead of waiting for room, so it goes on to see a disconnect.
    """
    return msg["type"] == "http.request" and not msg.get("body") and not msg.get("more_body")


def get_context(request: Any) -> Context:
    """The request's context set by `ContextMiddleware` (a Starlette ``Request`` or ASGI scope).

    Raises:
        RuntimeError: The middleware is not installed.
    """
    scope = request if isinstance(request, MutableMapping) else request.scope
    ctx = scope.get(CONTEXT_KEY)
    if ctx is None:
        raise RuntimeError(
            "no asyncgo request context: add asyncgo.contrib.starlette.ContextMiddleware "
            "to the app (app.add_middleware(ContextMiddleware, timeout=...))"
        )
    return ctx  # type: ignore[no-any-return]


class EventStreamResponse(Response):
    """A ``text/event-stream`` (SSE) response fed by a pipeline, a channel or a producer.

    Each item becomes one event (see `encode_sse`). The stream runs bound to the
    request's context: when the client disconnects or the deadline passes, the
    pipeline's stages or the producer are cancelled and awaited. Use it as an
    ASGI app or return it from a Starlette / FastAPI endpoint.

    Args:
        source: A `Pipeline`, an async iterable (e.g. a ``RecvChan``), or an
            ``async def produce(tx: SendChan) -> None``.
        event: The ``event:`` field of every message, if any.
        headers: Extra response headers.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: StreamSource,
        *,
        event: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        # Response.__init__ renders a body: this response has none, it streams.
        self.source = source
        self.event = event
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = scope.get(CONTEXT_KEY) or current()
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        event = self.event

        async def write(item: object) -> None:
            body = encode_sse(item, event=event)
            await send({"type": "http.response.body", "body": body, "more_body": True})

        await pump(ctx, self.source, write)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def debug_app(
    *,
    enabled: bool | None = None,
    allow: Iterable[str] = ("127.0.0.0/8", "::1/128"),
    token: str | None = None,
) -> ASGIApp:
    """The task-dump endpoint (`asyncgo.debug.asgi_app`), to mount in Starlette / FastAPI.

    Off unless *enabled* (or ``ASYNCGO_DEBUG_HTTP=1``), loopback-only by default.

    Example:
        ```python
        app.mount("/debug/tasks", debug_app(enabled=True))
        ```
    """
    return _debug_asgi_app(enabled=enabled, allow=allow, token=token)

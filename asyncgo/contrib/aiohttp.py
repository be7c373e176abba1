"""A `Context` per request for aiohttp servers.

``setup(app, timeout=...)`` installs a middleware that gives each request a
context which is

* cancelled, with `ClientDisconnected` as its cause, when the client's
  connection closes before the handler has finished (aiohttp does not cancel
  handlers on disconnect unless ``handler_cancellation=True``; the middleware
  checks the connection every *poll_interval* seconds, 0.1 by default);
* done with `DeadlineExceeded` when the request's deadline passes: *timeout*
  seconds after the request arrived, lowered -- never raised -- by a
  ``Request-Timeout: <seconds>`` header.

The handler runs inside ``ctx.scope()``: `asyncgo.current()` is the request's
context, a ``Group`` started in the handler is cancelled with it, and the
middleware returns only when everything the request started has finished. A
deadline that passes before the response was prepared gives a ``504`` with a
JSON body -- also when the handler, never reaching a cancellation point,
returned its own response too late: that response is dropped. After a stream
was prepared, the stream is ended where it stands.

Example:
    ```python
    app = web.Application()
    asyncgo.contrib.aiohttp.setup(app, timeout=10.0)

    async def item(request: web.Request) -> web.Response:
        ctx = get_context(request)
        async with Group(ctx) as g:
            a = await g.go(backend_a)
        return web.json_response(a.result())
    ```
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from . import _missing_extra

try:
    from aiohttp import web
    from aiohttp.typedefs import Middleware
except ModuleNotFoundError as _exc:
    raise _missing_extra(__name__, "aiohttp", _exc) from _exc

from .._context import Context, current
from .._debug_http import aiohttp_handler as _debug_handler
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
    "context_middleware",
    "debug_handler",
    "get_context",
    "setup",
    "stream_events",
]

#: The request key (``request[CONTEXT_KEY]``) holding the request's context: a
#: ``web.RequestKey`` where aiohttp has them (3.14+, which warns about str keys).
CONTEXT_KEY: Any
_RESPONSE_KEY: Any
_DISCONNECT_KEY: Any  # the request context's cancel(cause): stream_events calls it
if hasattr(web, "RequestKey"):
    CONTEXT_KEY = web.RequestKey("asyncgo_context", Context)
    _RESPONSE_KEY = web.RequestKey("asyncgo_prepared_response", web.StreamResponse)
    _DISCONNECT_KEY = web.RequestKey("asyncgo_disconnect", object)
else:  # pragma: no cover - aiohttp < 3.14
    CONTEXT_KEY = "asyncgo.context"
    _RESPONSE_KEY = "asyncgo.prepared_response"
    _DISCONNECT_KEY = "asyncgo.disconnect"

_DEFAULT_BODY: Mapping[str, object] = {"detail": "deadline exceeded"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def context_middleware(
    *,
    timeout: float | None = 30.0,
    header: str | None = "Request-Timeout",
    timeout_status: int = 504,
    timeout_body: object = _DEFAULT_BODY,
    poll_interval: float = 0.1,
    parent: Context | None = None,
) -> Middleware:
    """The middleware `setup` installs; see the module docstring.

    Use `setup`, which also registers the ``on_response_prepare`` hook that
    tells the middleware whether a response has already started.

    Args:
        timeout: The default deadline of a request, in seconds; None for none.
        header: The request header that may lower the deadline; None to ignore it.
        timeout_status: The status sent when the deadline passes first.
        timeout_body: Its body, serialised as JSON.
        poll_interval: How often, in seconds, the connection is checked.
        parent: The context each request's context derives from (default:
            `current()` when the request arrives).
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"context_middleware: timeout must be >= 0 or None, not {timeout}")
    if not poll_interval > 0:
        raise ValueError(f"context_middleware: poll_interval must be > 0, not {poll_interval}")
    body = json.dumps(timeout_body).encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        t = effective_timeout(timeout, None if header is None else request.headers.get(header))
        ctx, disconnect = new_request_context(current() if parent is None else parent, t)
        request[CONTEXT_KEY] = ctx
        request[_DISCONNECT_KEY] = disconnect
        loop = asyncio.get_running_loop()
        poller: asyncio.TimerHandle | None = None

        def poll() -> None:
            nonlocal poller
            tr = request.transport
            if tr is None or tr.is_closing():
                poller = None
                disconnect(ClientDisconnected())
            else:
                poller = loop.call_later(poll_interval, poll)

        poller = loop.call_later(poll_interval, poll)
        try:
            resp: web.StreamResponse | None = None
            returned = False
            with ctx.scope():
                resp = await handler(request)
                returned = True
            if resp is None:
                if returned:
                    name = getattr(handler, "__qualname__", None) or repr(handler)
                    raise RuntimeError(
                        f"the request handler {name} returned None, not a response "
                        "(a missing return statement?)"
                    )
                # Only a cancel() of the scope object itself ends the block silently,
                # and nobody else holds it.
                raise RuntimeError("asyncgo: the request's scope ended without a response")
            if resp.prepared or not isinstance(ctx.err(), DeadlineExceeded):
                return resp
            # A handler that never reached a checkpoint (no await that yields, a
            # blocking call) was not cancelled: its response, not yet sent, comes
            # after the deadline. err() notices a passed deadline itself.
            return web.Response(status=timeout_status, body=body, content_type="application/json")
        except (Canceled, DeadlineExceeded) as exc:
            err = ctx.err()
            if err is None or not isinstance(exc, type(err)):
                raise
            prepared = request.get(_RESPONSE_KEY)
            if prepared is not None:
                return prepared  # type: ignore[no-any-return]  # aiohttp ends it
            if isinstance(err, DeadlineExceeded):
                return web.Response(
                    status=timeout_status, body=body, content_type="application/json"
                )
            # The client has gone: aiohttp's write fails and it drops the connection.
            return web.Response(status=499, text="client disconnected")
        except (asyncio.CancelledError, ConnectionError):
            # handler_cancellation=True: aiohttp cancels the handler when the client
            # goes away; or a write of the handler's own StreamResponse failed, before
            # the poller looked. Say so in the context (its cause), as the poller would.
            # (A server shutdown that cancels handlers closes their connections too,
            # so there it reads ClientDisconnected as well.)
            tr = request.transport
            if tr is None or tr.is_closing():
                disconnect(ClientDisconnected())
            raise
        finally:
            if poller is not None:
                poller.cancel()
            disconnect()

    return middleware


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    request[_RESPONSE_KEY] = response


def setup(
    app: web.Application,
    *,
    timeout: float | None = 30.0,
    header: str | None = "Request-Timeout",
    timeout_status: int = 504,
    timeout_body: object = _DEFAULT_BODY,
    poll_interval: float = 0.1,
    parent: Context | None = None,
) -> None:
    """Give every request of *app* a `Context`; see `context_middleware` for the options.

    Call it before the app starts (aiohttp freezes middlewares and signals then).
    The middleware is appended: middlewares added earlier run outside it.
    """
    app.middlewares.append(
        context_middleware(
            timeout=timeout,
            header=header,
            timeout_status=timeout_status,
            timeout_body=timeout_body,
            poll_interval=poll_interval,
            parent=parent,
        )
    )
    app.on_response_prepare.append(_on_prepare)


def get_context(request: web.BaseRequest) -> Context:
    """The request's context set by the middleware.

    Raises:
        RuntimeError: The middleware is not installed.
    """
    ctx = request.get(CONTEXT_KEY)
    if ctx is None:
        raise RuntimeError(
            "no asyncgo request context: call asyncgo.contrib.aiohttp.setup(app) "
            "before starting the app"
        )
    return ctx  # type: ignore[no-any-return]


async def stream_events(
    request: web.Request,
    source: StreamSource,
    *,
    event: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Answer with a ``text/event-stream`` (SSE) fed by a pipeline, a channel or a producer.

    Each item becomes one event (see `asyncgo.contrib.encode_sse`). The stream
    runs bound to the request's context: when the client disconnects or the
    deadline passes, the pipeline's stages or the producer are cancelled and
    awaited. A write failing because the client has gone counts as the
    disconnect: the request's context is cancelled with `ClientDisconnected`
    and the stream ends quietly. Return its result from the handler.

    Args:
        request: The request.
        source: A `Pipeline`, an async iterable (e.g. a ``RecvChan``), or an
            ``async def produce(tx: SendChan) -> None``.
        event: The ``event:`` field of every message, if any.
        headers: Extra response headers.
    """
    ctx: Context = request.get(CONTEXT_KEY) or current()
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        }
    )
    await resp.prepare(request)

    gone: ConnectionError | None = None

    def client_gone(exc: ConnectionError) -> None:
        # A write failed on a closing or reset transport (ClientConnectionResetError):
        # the client has gone before the connection poll saw it. A disconnect, not an
        # error: cancel the request's context as the poll would.
        nonlocal gone
        gone = exc
        disconnect = request.get(_DISCONNECT_KEY)
        if disconnect is not None:
            disconnect(ClientDisconnected())

    async def write(item: object) -> None:
        try:
            await resp.write(encode_sse(item, event=event))
        except ConnectionError as exc:
            client_gone(exc)
            raise  # pump() cancels and awaits the producers on the way out

    try:
        await pump(ctx, source, write)
    except ConnectionError as exc:
        if exc is not gone:
            raise  # a producer's own connection error, not the client's
        return resp  # aiohttp's own write_eof() fails too: it drops the connection quietly
    try:
        await resp.write_eof()
    except ConnectionError as exc:
        client_gone(exc)
    return resp


def debug_handler(
    *,
    enabled: bool | None = None,
    allow: Iterable[str] = ("127.0.0.0/8", "::1/128"),
    token: str | None = None,
) -> Callable[[web.Request], Awaitable[Any]]:
    """The task-dump endpoint (`asyncgo.debug.aiohttp_handler`), for an aiohttp route.

    Off unless *enabled* (or ``ASYNCGO_DEBUG_HTTP=1``), loopback-only by default.

    Example:
        ```python
        app.router.add_get("/debug/tasks", debug_handler(enabled=True))
        ```
    """
    return _debug_handler(enabled=enabled, allow=allow, token=token)

"""Serve `asyncgo.debug.dump()` over HTTP: Go's ``/debug/pprof/goroutine?debug=1|2``.

Two adapters around one request handler: `asgi_app()` (a pure ASGI app, for
FastAPI / Starlette ``Mount`` or any ASGI server) and `aiohttp_handler()` (an
aiohttp handler factory). A task dump shows code paths, request labels and
source lines, so the endpoint is protected against being exposed by accident:

* off unless enabled: ``enabled=True``, or the environment variable
  ``ASYNCGO_DEBUG_HTTP=1`` when *enabled* is left at None; while off, every
  request gets a plain 404, as if the route did not exist;
* loopback-only by default: the client address, and every address named by
  ``Forwarded`` / ``X-Forwarded-For`` / ``X-Real-IP`` headers, on every line
  of a repeated header (a local reverse proxy, or a second header line, must
  not turn a remote request into a local one), must be in *allow*
  (networks, default ``127.0.0.0/8`` and ``::1``); a request whose address is
  unknown (a Unix socket, no ``client`` in the ASGI scope) is refused;
* optionally a *token*: then ``Authorization: Bearer <token>`` is required too
  (on every ``Authorization`` line, if there are several).

Query parameters: ``debug=1`` (default: tasks grouped by identical stacks),
``debug=2`` (every task on its own), ``format=json`` (`asyncgo.debug.tasks()`
as JSON).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

__all__ = ["aiohttp_handler", "asgi_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_LOOPBACK = ("127.0.0.0/8", "::1/128")
_ENV = "ASYNCGO_DEBUG_HTTP"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _env_enabled() -> bool:
    return os.environ.get(_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _addr_allowed(addr: str | None, nets: tuple[Network, ...]) -> bool:
    if not addr:
        return False
    addr = addr.strip().strip('"')
    if addr.startswith("["):  # [v6]:port
        addr = addr[1:].split("]", 1)[0]
    elif addr.count(":") == 1:  # v4:port
        addr = addr.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False  # "unknown", an obfuscated identifier, a hostname: not provably local
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in n for n in nets)


def _forwarded_addrs(headers: Sequence[tuple[str, str]]) -> list[str]:
    """Every address of every ``X-Forwarded-For`` / ``X-Real-IP`` / ``Forwarded`` line.

    A header may come on several lines: each one counts, or a client could hide
    a remote address behind a second, local line.
    """
    out: list[str] = []
    for name, v in headers:
        if name in ("x-forwarded-for", "x-real-ip"):
            out.extend(p for p in v.split(",") if p.strip())
        elif name == "forwarded":
            for element in v.split(","):
                for pair in element.split(";"):
                    k, _, val = pair.strip().partition("=")
                    if k.strip().lower() == "for":
                        out.append(val)
    return out


def _authorized(headers: Sequence[tuple[str, str]], token: str) -> bool:
    """At least one ``Authorization`` line, and every one of them ``Bearer <token>``."""
    lines = [v for name, v in headers if name == "authorization"]
    if not lines:
        return False
    for auth in lines:
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return False
    return True


class _Endpoint:
    """The request handler both adapters share."""

    __slots__ = ("enabled", "nets", "token")

    def __init__(self, enabled: bool | None, allow: Iterable[str], token: str | None) -> None:
        self.enabled = enabled
        self.nets = tuple(ipaddress.ip_network(a, strict=False) for a in allow)
        if token is not None and not token:
            raise ValueError("asyncgo.debug: an empty token would let anyone in; pass None")
        self.token = token

    def handle(
        self, method: str, client: str | None, headers: Sequence[tuple[str, str]], query: str
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request.

        *headers* is every header line as (lower-case name, value), repeats included.
        """
        text = "text/plain; charset=utf-8"
        on = self.enabled if self.enabled is not None else _env_enabled()
        if not on:
            return 404, text, b"404 page not found\n"
        if not _addr_allowed(client, self.nets) or not all(
            _addr_allowed(a, self.nets) for a in _forwarded_addrs(headers)
        ):
            return 403, text, b"403 forbidden: the asyncgo debug endpoint is loopback-only\n"
        if self.token is not None and not _authorized(headers, self.token):
            return 401, text, b"401 unauthorized\n"
        if method not in ("GET", "HEAD"):
            return 405, text, b"405 method not allowed\n"
        from . import debug

        q = parse_qs(query)
        if q.get("format", [""])[-1] == "json":
            body = json.dumps([_task_json(t) for t in debug.tasks()], indent=1)
            return 200, "application/json", body.encode()
        level = q.get("debug", ["1"])[-1]
        return 200, text, debug.dump(group=level != "2").encode()


def _task_json(t: Any) -> dict[str, object]:
    return {
        "id": t.id,
        "name": t.name,
        "labels": dict(t.labels),
        "state": t.state,
        "op": t.op,
        "parked_for": t.parked_for,
        "blocked_on": [
            {
                "kind": p.kind,
                "description": p.description,
                "created_at": None if p.created_at is None else p.created_at.where,
                "created_in": None if p.created_at is None else p.created_at.function,
                "via": p.via,
            }
            for p in t.blocked_on
        ],
        "stack": [{"function": f.function, "file": f.filename, "line": f.lineno} for f in t.stack],
        "created_by": t.created_by,
    }


def asgi_app(
    *,
    enabled: bool | None = None,
    allow: Iterable[str] = _LOOPBACK,
    token: str | None = None,
) -> ASGIApp:
    """An ASGI app serving the task dump (Go's ``/debug/pprof/goroutine``).

    Off unless *enabled* is True (None: the ``ASYNCGO_DEBUG_HTTP=1`` environment
    variable decides, at each request): until then every request gets 404.
    Only clients (and forwarded-for addresses) in the *allow* networks get an
    answer, loopback by default; with *token*, ``Authorization: Bearer <token>``
    is required too. ``?debug=2`` lists each task, ``?format=json`` returns
    `asyncgo.debug.tasks()` as JSON. Mount it under a path of your choice.

    Example:
        ```python
        app = debug.asgi_app(enabled=True)   # FastAPI: app.mount("/debug/tasks", app)
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request"}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "client": ("127.0.0.1", 50000),
                 "headers": [], "query_string": b"debug=2"}
        await app(scope, receive, send)      # what an ASGI server does for a request
        assert sent[0]["status"] == 200
        assert b"[running]" in sent[1]["body"]  # the dump: here, the task serving it
        await app({**scope, "client": ("203.0.113.7", 50000)}, receive, send)
        assert sent[2]["status"] == 403      # loopback-only by default
        ```
    """
    endpoint = _Endpoint(enabled, allow, token)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":  # used as the top-level app: accept start-up and shutdown
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        client = scope.get("client")
        headers = [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", ())
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        status, ctype, body = endpoint.handle(
            scope.get("method", "GET"), client[0] if client else None, headers, query
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send(
            {
                "type": "http.response.body",
                "body": b"" if scope.get("method") == "HEAD" else body,
            }
        )

    return app


def aiohttp_handler(
    *,
    enabled: bool | None = None,
    allow: Iterable[str] = _LOOPBACK,
    token: str | None = None,
) -> Callable[[Any], Awaitable[Any]]:
    """An aiohttp request handler serving the task dump; see `asgi_app` for the options.

    Example:
        ```python
        from aiohttp.test_utils import make_mocked_request

        handler = debug.aiohttp_handler(enabled=True)
        # app.router.add_get("/debug/tasks", handler); here, called as aiohttp would:
        request = make_mocked_request("GET", "/debug/tasks?debug=2")
        response = await handler(request.clone(remote="127.0.0.1"))
        assert response.status == 200 and "[running]" in response.text
        response = await handler(request.clone(remote="203.0.113.7"))
        assert response.status == 403        # loopback-only by default
        ```
    """
    endpoint = _Endpoint(enabled, allow, token)

    async def handler(request: Any) -> Any:
        from aiohttp import web  # type: ignore[import-not-found, unused-ignore]

        headers = [(k.lower(), v) for k, v in request.headers.items()]  # repeats included
        status, ctype, body = endpoint.handle(
            request.method, request.remote, headers, request.query_string
        )
        mime, _, charset = ctype.partition("; charset=")
        return web.Response(
            status=status,
            body=body,
            content_type=mime,
            charset=charset or None,
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    return handler

"""The debug endpoint's loopback-only check against repeated forwarding headers.

Each header may appear on several lines; every address in every line must be
allowed, or a client could hide a remote address behind a second, local one.
Checked in-process (the ASGI app on every backend) and through real servers
(aiohttp's, uvicorn with starlette's ``debug_app``) on asyncio and uvloop.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from _servers import serve_aiohttp, serve_uvicorn

from asyncgo._debug_http import asgi_app

pytestmark = pytest.mark.anyio

_uvloop = pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="no uvloop")
_asyncio_only = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop", marks=_uvloop),
    ],
)

REMOTE = "203.0.113.7"

#: (header lines, expected status): one remote address anywhere refuses the request.
CASES: list[tuple[list[tuple[str, str]], int]] = [
    ([], 200),
    ([("X-Forwarded-For", "127.0.0.1")], 200),
    ([("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "::1")], 200),
    ([("X-Forwarded-For", REMOTE)], 403),
    ([("X-Forwarded-For", REMOTE), ("X-Forwarded-For", "127.0.0.1")], 403),
    ([("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", REMOTE)], 403),
    ([("X-Forwarded-For", "127.0.0.1, 127.0.0.2"), ("X-Forwarded-For", f"::1, {REMOTE}")], 403),
    ([("X-Real-IP", REMOTE), ("X-Real-IP", "127.0.0.1")], 403),
    ([("Forwarded", f"for={REMOTE}"), ("Forwarded", "for=127.0.0.1")], 403),
    ([("Forwarded", 'for="[::1]:80"'), ("Forwarded", f"proto=http;for={REMOTE}")], 403),
    ([("X-Real-IP", "127.0.0.1"), ("Forwarded", f"for={REMOTE}")], 403),
]
IDS = [" + ".join(f"{k}: {v}" for k, v in lines) or "no-headers" for lines, _ in CASES]


async def _call(app: Any, headers: list[tuple[str, str]]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "client": ("127.0.0.1", 50000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "query_string": b"",
    }
    await app(scope, receive, send)
    return int(sent[0]["status"])


@pytest.mark.parametrize(("headers", "status"), CASES, ids=IDS)
async def test_asgi_every_line_of_every_forwarding_header_is_checked(
    headers: list[tuple[str, str]], status: int
) -> None:
    assert await _call(asgi_app(enabled=True), headers) == status


async def test_asgi_repeated_authorization_must_all_match() -> None:
    app = asgi_app(enabled=True, token="s3cret")
    assert await _call(app, [("Authorization", "Bearer s3cret")]) == 200
    assert await _call(app, [("Authorization", "Bearer nope")]) == 401
    bad_first = [("Authorization", "Bearer nope"), ("Authorization", "Bearer s3cret")]
    assert await _call(app, bad_first) == 401
    assert await _call(app, bad_first[::-1]) == 401


@_asyncio_only
@pytest.mark.parametrize(("headers", "status"), CASES, ids=IDS)
async def test_aiohttp_server_checks_every_header_line(
    headers: list[tuple[str, str]], status: int
) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web
    from multidict import CIMultiDict

    from asyncgo.contrib.aiohttp import debug_handler

    app = web.Application()
    app.router.add_get("/debug/tasks", debug_handler(enabled=True))
    async with serve_aiohttp(app) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/debug/tasks", headers=CIMultiDict(headers)) as r:
            assert r.status == status


@_asyncio_only
@pytest.mark.parametrize(("headers", "status"), CASES, ids=IDS)
async def test_starlette_mount_under_uvicorn_checks_every_header_line(
    headers: list[tuple[str, str]], status: int
) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from asyncgo.contrib.starlette import debug_app

    app = Starlette(routes=[Mount("/debug/tasks", debug_app(enabled=True))])
    async with serve_uvicorn(app, proxy_headers=False) as url, httpx.AsyncClient() as client:
        r = await client.get(url + "/debug/tasks/", headers=headers)
    assert r.status_code == status

"""Real servers on 127.0.0.1 and a free port, in the running asyncio loop (shared by the
integration tests)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

WAIT = 10.0  # generous bound for a server to start or stop


@asynccontextmanager
async def serve_uvicorn(app: Any, *, proxy_headers: bool = True) -> AsyncIterator[str]:
    """Run the ASGI *app* under uvicorn; yield its base URL.

    ``proxy_headers=False``: the app sees forwarding headers as the client sent them.
    """
    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        http="h11",
        ws="none",
        access_log=False,
        proxy_headers=proxy_headers,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        with anyio.fail_after(WAIT):
            while not server.started:
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with anyio.fail_after(WAIT):
            await task
        sock.close()


@asynccontextmanager
async def serve_aiohttp(app: Any, **runner_options: Any) -> AsyncIterator[str]:
    """Run the aiohttp *app*; yield its base URL."""
    web = pytest.importorskip("aiohttp.web")
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        with anyio.fail_after(WAIT):
            await runner.cleanup()

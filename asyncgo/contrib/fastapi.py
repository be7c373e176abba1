"""The FastAPI side of `asyncgo.contrib.starlette`: the request context as a dependency.

Example:
    ```python
    from fastapi import FastAPI
    from asyncgo.contrib.fastapi import ContextMiddleware, RequestContext

    app = FastAPI()
    app.add_middleware(ContextMiddleware, timeout=10.0)

    @app.get("/slow")
    async def slow(ctx: RequestContext) -> dict[str, str]:
        await asyncgo.time.sleep(60, ctx)   # ends at the deadline or on disconnect
        return {"status": "done"}
    ```
"""

from __future__ import annotations

from typing import Annotated

from . import _missing_extra

try:
    from fastapi import Depends
    from starlette.requests import HTTPConnection
except ModuleNotFoundError as _exc:
    raise _missing_extra(__name__, "fastapi", _exc) from _exc

from .._context import Context
from .starlette import (
    ClientDisconnected,
    ContextMiddleware,
    EventStreamResponse,
    debug_app,
    get_context,
)

__all__ = [
    "ClientDisconnected",
    "ContextMiddleware",
    "EventStreamResponse",
    "RequestContext",
    "debug_app",
    "request_context",
]


async def request_context(request: HTTPConnection) -> Context:
    """FastAPI dependency: the request's `Context` (``Depends(request_context)``).

    Raises:
        RuntimeError: `ContextMiddleware` is not installed, or the endpoint is a
            websocket one (the middleware passes websockets through untouched).
    """
    if request.scope.get("type") == "websocket":
        raise RuntimeError(
            "RequestContext is for HTTP requests: ContextMiddleware passes websocket "
            "connections through untouched; in a websocket endpoint make a context of "
            "its own, e.g. ctx, cancel = with_cancel(background())"
        )
    return get_context(request)


#: ``ctx: RequestContext`` in an endpoint's parameters gives the request's context.
RequestContext = Annotated[Context, Depends(request_context)]

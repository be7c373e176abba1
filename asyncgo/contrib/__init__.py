"""Integrations with web frameworks and tracing: optional extras, never imported by `asyncgo`.

* `asyncgo.contrib.starlette`: a pure-ASGI middleware giving each request a
  `Context` (Starlette, FastAPI, any ASGI app), SSE responses, the debug endpoint.
* `asyncgo.contrib.fastapi`: the FastAPI dependency (``RequestContext``).
* `asyncgo.contrib.aiohttp`: the same for aiohttp.
* `asyncgo.contrib.otel`: OpenTelemetry spans for Group tasks, pipeline stages and
  `WorkerPool` jobs (on the loop, in threads and in processes).

This module holds what the framework adapters share: the request-timeout header
rule, the `ClientDisconnected` cause and Server-Sent Events encoding.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from .._backend import checkpoint
from .._chan import Chan, SendChan
from .._context import (
    CancelCauseFunc,
    Context,
    _CauseCancelPair,
    _tuple_new,
    with_cancel_cause,
    with_timeout,
)
from .._group import Group
from .._pipeline import Pipeline

__all__ = [
    "ClientDisconnected",
    "StreamSource",
    "effective_timeout",
    "encode_sse",
    "new_request_context",
    "pump",
]

#: What a streaming response can stream: a pipeline, a channel or any async
#: iterable, or a producer ``async def produce(tx: SendChan) -> None`` that the
#: response runs in a `Group` bound to the request's context (the channel is
#: closed when the producer returns).
StreamSource = Pipeline[Any] | AsyncIterable[Any] | Callable[[SendChan[Any]], Awaitable[None]]


def _missing_extra(module: str, extra: str, exc: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error an integration raises when its framework is not installed: it names
    the extra that installs it (``import asyncgo.contrib.aiohttp`` without aiohttp)."""
    package = (exc.name or "").partition(".")[0] or None  # (the distribution to install)
    return ModuleNotFoundError(
        f"{module} needs {package!r}, which is not installed: pip install 'asyncgo[{extra}]'",
        name=package,
    )


class ClientDisconnected(Exception):
    """The cause of a request context cancelled because the client went away.

    ``ctx.err()`` is then `asyncgo.Canceled` and ``ctx.cause()`` this exception.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("client disconnected",)))


def effective_timeout(default: float | None, header_value: str | None) -> float | None:
    """The request's timeout in seconds: *default*, lowered (never raised) by the header.

    The header holds seconds as a decimal number (``Request-Timeout: 2.5``). A
    missing, unparsable, negative or non-finite value is ignored; ``0`` means
    the deadline has already passed. None means no deadline at all.
    """
    if header_value is None:
        return default
    try:
        t = float(header_value.strip())
    except ValueError:
        return default
    if not math.isfinite(t) or t < 0:
        return default
    return t if default is None else min(default, t)


def new_request_context(parent: Context, timeout: float | None) -> tuple[Context, CancelCauseFunc]:
    """A request's context and its ``cancel(cause)``: a child of *parent*, done
    *timeout* seconds from now (None: no deadline of its own).

    What ``with_timeout(with_cancel_cause(parent)[0], timeout)`` would give, in one
    context instead of two (the middlewares make one per request): ``err()`` is
    `DeadlineExceeded` once the deadline passes; ``cancel(ClientDisconnected())``
    makes it `Canceled` with that cause -- unless the deadline had already passed,
    which then wins, as Go's timer would have fired first.
    """
    if timeout is None:
        return with_cancel_cause(parent)
    ctx = with_timeout(parent, timeout)[0]
    # The node's own cancel takes a cause, as the one with_cancel_cause hands out; the
    # pair is the same context manager (cancel on exit) in both cases.
    return _tuple_new(_CauseCancelPair, (ctx, ctx._cancel))


def encode_sse(item: object, *, event: str | None = None) -> bytes:
    """One Server-Sent Events message: ``str`` as is, ``bytes`` decoded, anything else JSON.

    Multi-line data becomes several ``data:`` lines, as the SSE format requires.
    """
    if isinstance(item, bytes):
        text = item.decode()
    elif isinstance(item, str):
        text = item
    else:
        text = json.dumps(item, separators=(",", ":"), default=str)
    lines = [] if event is None else [f"event: {event}"]
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


async def pump(
    ctx: Context,
    source: StreamSource,
    write: Callable[[object], Awaitable[None]],
) -> None:
    """Pass every item of *source* to *write* until it ends or *ctx* is done.

    A pipeline runs with ``stream(ctx)``; a producer function runs in a
    ``Group(ctx)`` and sends on a fresh unbuffered channel. Whatever ends the
    pump -- the source ending, *write* failing (client gone), *ctx* ending --
    the producers are cancelled and awaited before it returns or raises.
    """
    if isinstance(source, Pipeline):
        async with source.stream(ctx) as items:
            async for x in items:
                await write(x)
    elif isinstance(source, AsyncIterable):
        async for x in source:
            await write(x)
            # A source that never awaits, written to a fast client (aiohttp's write
            # then never waits for the drain), never yielded: no deadline, no other
            # request ran. (A pipeline's or a producer's channel yields on its own.)
            await checkpoint()
    elif callable(source):
        produce = source
        ch = Chan[Any]()

        async def run() -> None:
            try:
                await produce(ch.send_only())
            finally:
                if not ch.closed:
                    ch.close()

        async with Group(ctx) as g:
            await g.go(run)
            async for x in ch:
                await write(x)
    else:
        raise TypeError(
            "stream source must be a Pipeline, an async iterable (e.g. a RecvChan) or "
            f"an async producer function taking a SendChan, not {type(source).__name__}"
        )

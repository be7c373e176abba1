"""Seeds 000 §5 and 004 §5: request-scoped values -- an ID per request, carried by the context.

Seed 000 (可观测性): "为 Goroutine 添加 ID 标识「通过 context 传递」，并集成
OpenTelemetry 实现分布式追踪". Seed 004 §5 (context.Value 的滥用反模式): not one
``WithValue`` per field under string keys, but one struct under a private key::

    type RequestContext struct {
        TraceID string
        UserID  int64
    }
    ctx = context.WithValue(ctx, contextKey, &RequestContext{TraceID: id})

asyncgo: ``with_value(parent, KEY, RequestInfo(...))`` with a private key object;
``ctx.value(KEY)`` reads it anywhere below. Inside ``with ctx.scope():``,
``current()`` is that context -- also in every task started inside -- so a deep
helper finds the request without a ``ctx`` parameter. ``debug.labels(...)`` tags
the request's tasks so ``debug.dump()`` (the goroutine dump) shows which request
each belongs to; ``asyncgo.contrib.otel`` does the OpenTelemetry part (see
docs/otel.md).

Run: ``python examples/request_context.py --backend asyncio|uvloop|trio``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import anyio

from asyncgo import Context, Group, background, current, debug, with_timeout, with_value


@dataclass(frozen=True)
class RequestInfo:
    trace_id: str
    user_id: int


_REQUEST = object()  # private key: nobody else can read or overwrite it by accident


def request_info(ctx: Context | None = None) -> RequestInfo:
    info = (ctx or current()).value(_REQUEST)
    assert isinstance(info, RequestInfo), "not inside a request"
    return info


async def repository(table: str, log: list[str]) -> None:
    # No ctx parameter: current() is the request's context, even in this task.
    info = request_info()
    labels = dict(debug.current_labels())
    await anyio.sleep(0.001)
    log.append(f"{info.trace_id} user={info.user_id} {table} labels={labels}")


async def handle(trace_id: str, user_id: int, log: list[str]) -> None:
    base, cancel = with_timeout(background(), 1.0)  # the request's deadline
    ctx = with_value(base, _REQUEST, RequestInfo(trace_id, user_id))
    try:
        with ctx.scope(), debug.labels(request=trace_id):
            async with Group() as g:  # tasks inherit current() and the labels
                await g.go(repository, "orders", log)
                await g.go(repository, "profile", log)
    finally:
        cancel()


async def main() -> None:
    log: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(handle, "trace-a", 1, log)
        tg.start_soon(handle, "trace-b", 2, log)
    for line in sorted(log):
        print(line)
    assert len(log) == 4
    for line in log:
        trace = line.split()[0]
        user = "1" if trace == "trace-a" else "2"
        assert f"user={user}" in line and f"'request': '{trace}'" in line, line
    print("ok")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    backend = ap.parse_args().backend
    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)


if __name__ == "__main__":
    cli()

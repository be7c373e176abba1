"""How a user's ``mypy --strict`` sees the public API: handles, results and wrappers.

One mypy run checks every ``assert_type`` and that each line type-checks at all.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from _mypy import assert_type_checks, run_mypy

DECORATED = """\
@breaker
async def order(sku: str, qty: int = 1, *, tag: str = "") -> int:
    return qty


@retry(attempts=2)
async def put(url: str, *, timeout: float = 1.0) -> bytes:
    return b""
"""

SNIPPET = """\
import asyncio
from collections.abc import Coroutine
from typing import Any, assert_type

from asyncgo import (
    Broadcast, Chan, CircuitBreaker, Group, JobHandle, Pipeline, RecvChan, Selected,
    SendChan, Subscription, TaskHandle, WorkerPool, pipeline, recv, retry, select, singleflight,
    stages,
)
from asyncgo.testing import no_leaks


class Countdown(stages.TaskStage[object, int]):
    async def run(self, inp: RecvChan[object], out: SendChan[int]) -> None:
        for i in range(3):
            await out.send(i)


async def fetch(u: str) -> str:
    return u


async def count(n: int) -> int:
    return n


def log_result(r: Selected[int | str]) -> None: ...
async def consume(sub: Subscription[object]) -> None: ...
async def drain(p: Pipeline[object]) -> list[object]:
    return await p.collect()


breaker = CircuitBreaker(failure_threshold=3)


@breaker
async def fetch_stock(sku: str) -> int:
    return 42


@retry(attempts=5, retry_on=ConnectionError)
async def get(url: str) -> bytes:
    return b""


{decorated}

@no_leaks(grace=0.5)
async def check() -> None: ...


async def main() -> None:
    # A task stage as the source (docs/pipelines.md).
    assert_type(await pipeline(Countdown()).collect(), list[int])
    # Read-only handles are covariant: a list of mixed handles keeps .result().
    async with Group() as g:
        hs = [await g.go(fetch, "u"), await g.go(count, 1)]
        assert_type(hs, list[TaskHandle[object]])  # (was list[object])
        print([h.result() for h in hs])
        keep: list[TaskHandle[object]] = [await g.go(fetch, "u")]
    async with WorkerPool(2) as pool:
        js = [await pool.submit(fetch, "u"), await pool.submit(count, 1)]
        print([j.result() for j in js])
        jobs: list[JobHandle[object]] = [await pool.submit(count, 1)]
    log_result(await select(recv(Chan[int](1))))
    bus = Broadcast[int]()
    async with bus.subscribe() as sub:
        await consume(sub)
        assert_type(sub.c, RecvChan[int])
        r = await select(recv(sub.c), default=True)
        assert_type(r.value, int | None)
    await drain(pipeline(range(3)))
    async with singleflight.Group() as sf:
        dc = sf.do_chan("k", fetch, "u")
        assert_type(dc, RecvChan[singleflight.Result[str]])
        assert_type((await dc.recv()).value, str | None)
    # Decorated functions return coroutines, as asyncio's APIs need.
    c: Coroutine[Any, Any, int] = fetch_stock("A-1")
    c.close()
    t1 = asyncio.create_task(fetch_stock("A-1"))
    t2 = asyncio.create_task(get("u"))
    t3 = asyncio.create_task(retry(count, 1, attempts=5))
    t4 = asyncio.create_task(check())
    # The decorators keep the signature: defaults, names, keyword-only parameters.
    assert_type(await order("A-1"), int)
    assert_type(await order(sku="A-1", qty=2, tag="x"), int)
    assert_type(await put("u", timeout=2.0), bytes)
    assert_type(await breaker.call(order, "A-1", tag="x"), int)
    print(keep, jobs, t1, t2, t3, t4)
"""


def test_handles_results_and_wrappers_type_check(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(SNIPPET).replace("{decorated}", DECORATED))
    out = run_mypy(tmp_path / "cache", snippet)
    assert not out.strip(), out


NEGATIVE = """\
from asyncgo import CircuitBreaker, retry

breaker = CircuitBreaker()


{decorated}

async def main() -> None:
    await order(1)  # wrong
    await order("A-1", tag=3)  # wrong
    await put("u", timeot=2.0)  # wrong
    await breaker.call(order, "A-1", qty="2")  # wrong
"""


def test_decorated_signatures_reject_wrong_calls(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    snippet = tmp_path / "negative.py"
    text = NEGATIVE.replace("{decorated}", DECORATED)
    snippet.write_text(text)
    out = run_mypy(tmp_path / "cache", snippet)
    lines = {int(x.split(":")[1]) for x in out.splitlines() if ": error:" in x}
    wrong = {i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# wrong")}
    assert len(wrong) == 4 and lines == wrong, out


FLOW = """\
from typing import assert_type

from asyncgo import Chan, Group, TaskHandle, recv, select
from asyncgo import debug


async def square(x: int) -> int:
    return x * x


# The blocks do not swallow the body's exceptions, so a checker must not think the
# code after them reachable without the body's return, or a name bound in them
# possibly unbound (both did while __aexit__ was annotated `-> bool`).
async def in_group() -> int:
    async with Group() as g:
        return await (await g.go(square, 7))


async def handle_after_block() -> TaskHandle[int]:
    async with Group() as g:
        h = await g.go(square, 7)
    return h


async def in_detector() -> int:
    async with debug.detect_deadlocks():
        return await square(2)


async def in_lag_monitor() -> int:
    async with debug.monitor_lag():
        return await square(3)


async def nil_case() -> str | None:
    b = Chan[str](1)
    s = await select(recv(b), recv(None))  # None: Go's nil channel, never ready
    assert_type(s.value, str | None)
    return s.value
"""


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_blocks_and_nil_cases_type_check(tmp_path: Path, checker: str) -> None:
    assert_type_checks(tmp_path, FLOW, checker)

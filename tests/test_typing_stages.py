"""How a user's type checker sees the built-in stages: the element type goes through ``|``.

One mypy run checks every ``assert_type``; pyright (strict), when it is installed,
checks the same snippet: ``take``, ``batch``, ``buffer`` and ``rate_limit`` take no
argument that binds the item type, so their ``__call__`` is generic instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _mypy import assert_type_checks, run_mypy

SNIPPET = """\
from collections.abc import AsyncIterator
from typing import assert_type

from asyncgo import Chan, Pipeline, pipeline, rate, stages


async def double(x: int) -> int:
    return x * 2


def to_str(x: int) -> str:
    return str(x)


def keep(x: int) -> bool:
    return x > 0


async def split(s: str) -> list[str]:
    return s.split()


async def square(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in items:
        yield x * x


async def main() -> None:
    p = pipeline(range(10))
    assert_type(p | stages.take(3), Pipeline[int])
    assert_type(await (p | stages.take(3)).collect(), list[int])
    assert_type(await (p | stages.buffer(4)).collect(), list[int])
    assert_type(await (p | stages.batch(2)).collect(), list[list[int]])
    assert_type(await (p | stages.batch(2, 0.5)).collect(), list[list[int]])
    assert_type(await (p | stages.rate_limit(rate.Limiter(10, 1))).collect(), list[int])
    assert_type(await (p | stages.filter(keep)).collect(), list[int])
    assert_type(await (p | stages.tap(keep)).collect(), list[int])
    assert_type(await (p | stages.map(double, workers=2)).collect(), list[int])
    assert_type(await (p | stages.map(to_str, executor="thread")).collect(), list[str])
    assert_type(await (pipeline(["a b"]) | stages.flat_map(split)).collect(), list[str])
    assert_type(await (p | stages.merge([10, 11])).collect(), list[int])
    assert_type(await (p | stages.merge(["a"])).collect(), list[int | str])
    assert_type(await pipeline(stages.merge([1], [2])).collect(), list[int])
    assert_type(await (p | stages.fan_out(2, square)).collect(), list[int])
    assert_type(await (p | stages.fan_out(2, stages.take(1))).collect(), list[int])
    ch = Chan[int](10)
    assert_type(await (p | stages.tee(ch, square)).collect(), list[int])
    assert_type(await (p | stages.broadcast(stages.take(2))).collect(), list[int])
    # A function (or sink) that takes any object keeps the item type (pyright solved
    # T to object from print and bool, and rejected the map after it).
    anything = Chan[object](10)
    assert_type(p | stages.tap(print) | stages.map(double), Pipeline[int])
    assert_type(p | stages.filter(bool) | stages.map(double), Pipeline[int])
    assert_type(p | stages.tee(anything) | stages.map(double), Pipeline[int])
    assert_type(p | stages.broadcast(anything), Pipeline[int])
    assert_type(p | stages.fan_out(2, stages.tap(print)) | stages.map(double), Pipeline[int])
    chain = p | stages.take(3) | stages.batch(2) | stages.buffer(1) | stages.take(1)
    assert_type(await chain.collect(), list[list[int]])
    # Still stages (and task stages) where a user's code annotates one.
    s1: stages.Stage[int, int] = stages.take(3)
    s2: stages.TaskStage[int, int] = stages.rate_limit(rate.Limiter(10, 1))
    s3: stages.TaskStage[int, list[int]] = stages.batch(3)
    s4: stages.Stage[str, str] = stages.buffer(0)
    print(s1, s2, s3, s4)
"""


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_stages_keep_the_item_type(tmp_path: Path, checker: str) -> None:
    assert_type_checks(tmp_path, SNIPPET, checker)


NEGATIVE = """\
# mypy: enable-error-code="deprecated"
from asyncgo import pipeline, stages


async def fetch(n: int) -> int:
    return n


def main() -> None:
    stages.map(fetch, executor="thread")  # wrong
    stages.map(fetch, workers=4, executor="process")  # wrong
    stages.map(fetch, workers=4)
    pipeline(["a"]) | stages.take(1) | stages.map(fetch)  # wrong
    pipeline(range(3)) | stages.batch(2) | stages.map(fetch)  # wrong
    pipeline(range(3)) | stages.tap(str.upper)  # wrong
    pipeline(range(3)) | stages.filter(str.isdigit)  # wrong
"""


def test_stages_reject_wrong_items_and_async_fn_in_executor(tmp_path: Path) -> None:
    # map(async_fn, executor=...) raises TypeError at run time: an overload marked
    # deprecated flags it (mypy: with the `deprecated` error code on; pyright strict).
    pytest.importorskip("mypy")
    snippet = tmp_path / "negative.py"
    snippet.write_text(NEGATIVE)
    out = run_mypy(tmp_path / "cache", snippet)
    lines = {int(x.split(":")[1]) for x in out.splitlines() if ": error:" in x}
    wrong = {i for i, line in enumerate(NEGATIVE.splitlines(), 1) if line.endswith("# wrong")}
    assert len(wrong) == 6 and lines == wrong, out

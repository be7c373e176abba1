"""Every public name's docstring carries an example, and every example runs.

The API reference (docs/reference/*.md) is generated from the docstrings, so
their ```python blocks are documentation like any other: this module collects
them from every public name of ``asyncgo`` and of its public submodules, and
runs each on asyncio, uvloop and trio.

A docstring example is a fragment written as the body of ``async def main()``:
top-level ``await``, ``async with`` and ``async for`` are allowed. It runs in a
namespace that holds ``asyncgo``'s public names, its public submodules
(``sync``, ``rate``, ``stages``, ``debug``, ``singleflight``, ``resilience``,
``testing`` and ``gotime`` for ``asyncgo.time``) and ``ctx``, a context that is
cancelled after a generous 30 s so that a stuck example fails instead of
hanging. A block whose info string says ``title="fragment"`` is only compiled:
it shows a shape (a decorator on a web route, say) that cannot run alone.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import asyncgo
from asyncgo import debug, rate, resilience, singleflight, stages, sync, testing
from asyncgo import time as gotime

FENCE = re.compile(r"^[ \t]*```python(?P<info>[^\n]*)\n(?P<body>.*?)^[ \t]*```", re.M | re.S)
MODULES: dict[str, types.ModuleType] = {
    "asyncgo": asyncgo,
    "asyncgo.sync": sync,
    "asyncgo.rate": rate,
    "asyncgo.stages": stages,
    "asyncgo.time": gotime,
    "asyncgo.singleflight": singleflight,
    "asyncgo.debug": debug,
    "asyncgo.resilience": resilience,
    "asyncgo.testing": testing,
}


def _public() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) for every public name, once per object."""
    seen: set[int] = set()
    for modname, module in MODULES.items():
        for name in sorted(getattr(module, "__all__", ())):
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or id(obj) in seen:
                continue
            seen.add(id(obj))
            yield f"{modname}.{name}", obj


PUBLIC = list(_public())


def _is_constant(obj: Any) -> bool:
    return not (inspect.isclass(obj) or callable(obj))


def _examples() -> Iterator[Any]:
    for qualname, obj in PUBLIC:
        if _is_constant(obj):
            continue
        doc = inspect.getdoc(obj) or ""
        for i, m in enumerate(FENCE.finditer(doc)):
            body = inspect.cleandoc("\n" + m.group("body"))
            fragment = "fragment" in m.group("info")
            yield pytest.param(qualname, body, fragment, id=f"{qualname}#{i}")


EXAMPLES = list(_examples())
RUNNERS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


@pytest.mark.parametrize(
    ("qualname", "obj"),
    [p for p in PUBLIC if not _is_constant(p[1])],
    ids=[p[0] for p in PUBLIC if not _is_constant(p[1])],
)
def test_public_name_has_an_example(qualname: str, obj: Any) -> None:
    doc = inspect.getdoc(obj) or ""
    assert FENCE.search(doc), f"{qualname}'s docstring has no ```python example"


def _namespace() -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "docstring_example", "anyio": anyio, "asyncgo": asyncgo}
    ns.update({name: getattr(asyncgo, name) for name in asyncgo.__all__})
    ns.update(
        sync=sync,
        rate=rate,
        stages=stages,
        debug=debug,
        singleflight=singleflight,
        resilience=resilience,
        testing=testing,
        gotime=gotime,
    )
    return ns


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize(("qualname", "code", "fragment"), EXAMPLES)
def test_docstring_example_runs(qualname: str, code: str, fragment: bool, runner: str) -> None:
    if runner == "uvloop":
        pytest.importorskip("uvloop")
    compiled = compile(
        code,
        f"<{qualname} example>",
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    if fragment:
        return
    ns = _namespace()

    async def main() -> None:
        ctx, cancel = asyncgo.with_timeout(asyncgo.background(), 30.0)
        try:
            ns["ctx"] = ctx
            result = eval(compiled, ns)  # a coroutine when the example awaits
            if inspect.iscoroutine(result):
                await result
        finally:
            cancel()

    backend, options = RUNNERS[runner]
    anyio.run(main, backend=backend, backend_options=options)


def test_examples_were_collected() -> None:
    assert len(EXAMPLES) >= 50

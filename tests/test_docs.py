"""Every ```python block in README.md and docs/*.md runs, on asyncio, uvloop and trio.

Blocks marked ```python title="fragment"``` are excerpts and are only compiled.
A block is a whole program: it calls ``anyio.run(main)`` itself; the test makes that
call use the backend under test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<body>.*?)^```", re.M | re.S)


def _blocks() -> Iterator[Any]:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            rel = path.relative_to(ROOT)
            yield pytest.param(
                str(rel), line, m.group("body"), "fragment" in m.group("info"), id=f"{rel}:{line}"
            )


BLOCKS = list(_blocks())
RUNNERS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


def _forcing_run(backend: str, options: dict[str, object]) -> Callable[..., Any]:
    real_run = anyio.run

    def run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs["backend"] = backend
        kwargs["backend_options"] = options
        return real_run(func, *args, **kwargs)

    return run


def test_docs_have_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize(("path", "line", "code", "fragment"), BLOCKS)
def test_doc_block_runs(
    path: str, line: int, code: str, fragment: bool, runner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if runner == "uvloop":
        pytest.importorskip("uvloop")
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if fragment else 0
    compiled = compile(code, f"{path}:{line}", "exec", flags=flags, dont_inherit=True)
    if fragment:
        return
    backend, options = RUNNERS[runner]
    monkeypatch.setattr(anyio, "run", _forcing_run(backend, options))
    exec(compiled, {"__name__": "__main__"})


def test_runnable_doc_blocks_type_check_strictly(tmp_path: Path) -> None:
    """The whole programs in the docs pass ``mypy --strict``, as a user's code would
    be checked (each block its own module)."""
    pytest.importorskip("mypy")
    from _mypy import run_mypy

    files: list[Path] = []
    for p in BLOCKS:
        path, line, code, fragment = p.values
        if not fragment:
            f = tmp_path / "blocks" / f"{path.replace('/', '_').replace('.', '_')}_{line}.py"
            f.parent.mkdir(exist_ok=True)
            f.write_text(f"# {path}:{line}\n{code}", encoding="utf-8")
            files.append(f)
    assert len(files) >= 40
    out = run_mypy(tmp_path / "cache", *files)
    assert not out.strip(), out

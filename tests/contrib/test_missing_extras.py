"""An integration imported without its framework says which extra installs it."""

from __future__ import annotations

import importlib
import sys

import pytest

CASES = [
    ("asyncgo.contrib.aiohttp", "aiohttp", "aiohttp"),
    ("asyncgo.contrib.fastapi", "fastapi", "fastapi"),
    ("asyncgo.contrib.starlette", "starlette", "starlette"),
    ("asyncgo.contrib.otel", "opentelemetry", "otel"),
]


@pytest.mark.parametrize(("module", "dependency", "extra"), CASES)
def test_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, dependency: str, extra: str
) -> None:
    # Hide the framework (None in sys.modules makes its import fail as if absent) and
    # drop the integration and the framework's submodules so that both import afresh;
    # monkeypatch puts every entry back afterwards.
    for name in list(sys.modules):
        if name == module or name == dependency or name.startswith(dependency + "."):
            monkeypatch.delitem(sys.modules, name)
    if module == "asyncgo.contrib.fastapi":  # (it imports the starlette integration)
        monkeypatch.delitem(sys.modules, "asyncgo.contrib.starlette", raising=False)
    monkeypatch.setitem(sys.modules, dependency, None)
    with pytest.raises(ModuleNotFoundError) as info:
        importlib.import_module(module)
    err = info.value
    assert err.name == dependency
    assert module in str(err)
    assert f"pip install 'asyncgo[{extra}]'" in str(err)
    assert isinstance(err.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize(("module", "dependency", "extra"), CASES)
def test_installed_framework_imports(module: str, dependency: str, extra: str) -> None:
    pytest.importorskip(dependency)
    assert importlib.import_module(module).__name__ == module

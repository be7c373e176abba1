"""Run ``mypy --strict`` on snippet files, as a user's type checker would see asyncgo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_mypy(cache: Path, *files: Path) -> str:
    """mypy's report on *files* (empty when clean), with its cache under *cache*."""
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(cache),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return res.stdout + res.stderr


def find_pyright() -> str | None:
    """A pyright command: basedpyright or pyright installed next to this Python (the
    ``typing`` extra installs basedpyright), else one on PATH; None if there is none."""
    import shutil

    here = Path(sys.executable).parent
    for name in ("basedpyright", "pyright"):
        exe = here / name
        if exe.exists():
            return str(exe)
    for name in ("basedpyright", "pyright"):
        found = shutil.which(name)
        if found is not None:
            return found
    return None


def run_pyright(pyright: str, workdir: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    """pyright (strict) on *files*, importing asyncgo from this checkout."""
    import json

    config = {"typeCheckingMode": "strict", "pythonVersion": "3.11", "extraPaths": [str(ROOT)]}
    (workdir / "pyrightconfig.json").write_text(json.dumps(config))
    return subprocess.run(
        [pyright, "-p", str(workdir), "--pythonpath", sys.executable, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


def assert_type_checks(tmp_path: Path, text: str, checker: str) -> None:
    """*text*, written to a file under *tmp_path*, passes *checker* ("mypy" --strict,
    or "pyright" strict); skips when that checker is not installed."""
    import pytest

    snippet = tmp_path / "snippet.py"
    snippet.write_text(text)
    if checker == "mypy":
        pytest.importorskip("mypy")
        out = run_mypy(tmp_path / "cache", snippet)
        assert not out.strip(), out
        return
    pyright = find_pyright()
    if pyright is None:
        pytest.skip("pyright is not installed (pip install -e '.[typing]')")
    res = run_pyright(pyright, tmp_path, snippet)
    assert res.returncode == 0, res.stdout + res.stderr

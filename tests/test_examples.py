"""The showcase (``make demo``) runs and passes its own checks on every backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_showcase_runs(backend: str) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "showcase.py"), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"on {backend} ==" in proc.stdout
    assert "pipeline: sum of squares 1..100 = 338350" in proc.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_image_batch_service_runs(backend: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "image_batch_service.py"),
            "--backend",
            backend,
            "--images",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Limiter" in proc.stdout


@pytest.mark.parametrize("script", ["fastapi_service.py", "aiohttp_service.py"])
def test_service_examples_self_test(script: str) -> None:
    pytest.importorskip("fastapi" if script.startswith("fastapi") else "aiohttp")
    pytest.importorskip("uvicorn" if script.startswith("fastapi") else "aiohttp")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--self-test"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "self-test ok" in proc.stdout

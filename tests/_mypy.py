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

"""Every example script that takes ``--backend`` runs, on each backend, and passes its own checks.

The scripts in ``examples/`` are the asyncgo counterparts of the seed articles' Go
examples (docs/examples.md maps them). Each one asserts its own results and prints a
last line starting with ``ok``; this test runs it as a subprocess (``-W error``, so a
warning such as "coroutine was never awaited" fails it too) and checks the exit code
and that line.

Scripts are discovered: any ``examples/*.py`` whose source mentions ``--backend`` is
run, so a new example is tested without touching this file. Excluded, so that no
script runs twice per suite, are the ones another test file already runs -- and
`test_exclusions_are_run_elsewhere` fails if that other test stops doing so:

* ``pipeline_*.py``: tests/test_pipeline.py (``main(quick=True)`` in-process, on every
  backend, via its ``glob("pipeline_*.py")``);
* ``diagnose_deadlock.py``, ``diagnose_leak.py``: tests/test_debug.py (checks the
  printed reports);
* ``showcase.py``, ``image_batch_service.py``: tests/test_examples.py.

(``fastapi_service.py`` and ``aiohttp_service.py`` take ``--self-test``, not
``--backend``, and are run by tests/test_examples.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# script name (or glob) -> the test file that runs it, and a string proving it does
RUN_ELSEWHERE = {
    "pipeline_*.py": ("test_pipeline.py", 'glob("pipeline_*.py")'),
    "diagnose_deadlock.py": ("test_debug.py", '"diagnose_deadlock.py"'),
    "diagnose_leak.py": ("test_debug.py", '"diagnose_leak.py"'),
    "showcase.py": ("test_examples.py", '"showcase.py"'),
    "image_batch_service.py": ("test_examples.py", '"image_batch_service.py"'),
}

# The seed examples added for issue #10: discovery must keep finding them.
SEED_EXAMPLES = {
    "admission_control.py",
    "basics.py",
    "cascading_cancellation.py",
    "circuit_breaker.py",
    "deadlock_avoidance.py",
    "errgroup.py",
    "error_collection.py",
    "error_handling.py",
    "lazy_generator.py",
    "loop_capture.py",
    "object_pool.py",
    "periodic_tasks.py",
    "request_context.py",
    "semaphore.py",
    "singleflight_cache.py",
    "state_isolation.py",
    "timeouts.py",
    "token_bucket.py",
    "waitgroup.py",
    "graceful_shutdown.py",
    "pool_basic.py",
    "pool_controllable.py",
    "pool_dynamic.py",
    "pool_producer_consumer.py",
    "pubsub_nonblocking.py",
    "pubsub_topics.py",
}


def _run_elsewhere(path: Path) -> bool:
    return any(path.match(pattern) for pattern in RUN_ELSEWHERE)


SCRIPTS = sorted(
    p
    for p in EXAMPLES.glob("*.py")
    if "--backend" in p.read_text(encoding="utf-8") and not _run_elsewhere(p)
)


def test_discovery_finds_the_seed_examples() -> None:
    missing = SEED_EXAMPLES - {p.name for p in SCRIPTS}
    assert not missing, f"not discovered (no --backend option?): {sorted(missing)}"


def test_exclusions_are_run_elsewhere() -> None:
    for pattern, (test_file, proof) in RUN_ELSEWHERE.items():
        assert list(EXAMPLES.glob(pattern)), f"no example matches {pattern}"
        text = (ROOT / "tests" / test_file).read_text(encoding="utf-8")
        assert proof in text, (
            f"{pattern} is excluded here because tests/{test_file} runs it, "
            f"but that file no longer mentions {proof}: run it here instead"
        )


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_runs(script: Path, backend: str) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    source = script.read_text(encoding="utf-8")
    assert f"Run: ``python examples/{script.name} --backend" in source, (
        "the docstring should end with its Run: line"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, output
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("ok"), f"no final 'ok' line\n{output}"

"""Every example script that takes ``--backend`` runs, on each backend, and passes its own checks.

The scripts in ``examples/`` are the asyncgo counterparts of the seed articles' Go
examples (docs/examples.md maps them). Each one asserts its own results and prints a
last line starting with ``ok``; this test runs it as a subprocess (``-W error``, so a
warning such as "coroutine was never awaited" fails it too) and checks the exit code
and that line.

Scripts are discovered: any ``examples/*.py`` whose source mentions ``--backend`` is
run, so a new example is tested without touching this file. Excluded, so that no
script runs twice on one backend per suite, are the (script, backend) pairs another
test file already runs -- and `test_exclusions_are_run_elsewhere` fails if that other
test stops doing so:

* ``pipeline_*.py``: tests/test_pipeline.py (``main(quick=True)`` in-process, on every
  backend, via its ``glob("pipeline_*.py")``);
* ``diagnose_deadlock.py`` on asyncio and trio, ``diagnose_leak.py`` on uvloop:
  tests/test_debug.py, which checks the printed reports (here: the other backends);
* ``showcase.py`` on every backend; ``image_batch_service.py`` on asyncio and trio
  (tests/test_examples.py; at ~8 s a run it is not repeated here on uvloop).

(``fastapi_service.py`` and ``aiohttp_service.py`` take ``--self-test``, not
``--backend``, and are run by tests/test_examples.py.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

BACKENDS = ("asyncio", "uvloop", "trio")

# script name (or glob) -> (the test file that runs it, a regex proving it does, on which
# backends); the regexes look for the parametrization in that file's source.
RUN_ELSEWHERE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pipeline_*.py": ("test_pipeline.py", r'glob\("pipeline_\*\.py"\)', BACKENDS),
    "diagnose_deadlock.py": (
        "test_debug.py",
        r'"diagnose_deadlock\.py",\s*"asyncio".*"diagnose_deadlock\.py",\s*"trio"',
        ("asyncio", "trio"),
    ),
    "diagnose_leak.py": ("test_debug.py", r'"diagnose_leak\.py",\s*"uvloop"', ("uvloop",)),
    "showcase.py": ("test_examples.py", r'"showcase\.py"', BACKENDS),
    "image_batch_service.py": (
        "test_examples.py",
        r'parametrize\("backend", \["asyncio", "trio"\]\)\s*def test_image_batch_service_runs',
        BACKENDS,  # uvloop too: too slow to repeat here (see the module docstring)
    ),
}

# The seed examples (issue #10): discovery must keep finding every one of them, so that
# one renamed or losing its --backend option does not silently stop being tested.
SEED_EXAMPLES = {
    "admission_control.py",
    "basics.py",
    "cascading_cancellation.py",
    "circuit_breaker.py",
    "deadlock_avoidance.py",
    "diagnose_deadlock.py",
    "diagnose_leak.py",
    "errgroup.py",
    "error_collection.py",
    "error_handling.py",
    "lazy_generator.py",
    "loop_capture.py",
    "metrics.py",
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


def _run_elsewhere(path: Path, backend: str) -> bool:
    return any(
        path.match(pattern) and backend in backends
        for pattern, (_, _, backends) in RUN_ELSEWHERE.items()
    )


PAIRS = [
    (path, backend)
    for path in sorted(EXAMPLES.glob("*.py"))
    if "--backend" in path.read_text(encoding="utf-8")
    for backend in BACKENDS
    if not _run_elsewhere(path, backend)
]
CASES = [pytest.param(path, backend, id=f"{path.stem}-{backend}") for path, backend in PAIRS]


def test_discovery_finds_the_seed_examples() -> None:
    missing = SEED_EXAMPLES - {path.name for path, _ in PAIRS}
    assert not missing, f"not discovered (no --backend option?): {sorted(missing)}"
    # every backend for each of them (the issue demands asyncio and trio at least)
    for name in SEED_EXAMPLES - {"diagnose_deadlock.py", "diagnose_leak.py"}:
        ran = {backend for path, backend in PAIRS if path.name == name}
        assert ran == set(BACKENDS), (name, ran)


def test_exclusions_are_run_elsewhere() -> None:
    for pattern, (test_file, proof, _) in RUN_ELSEWHERE.items():
        assert list(EXAMPLES.glob(pattern)), f"no example matches {pattern}"
        text = (ROOT / "tests" / test_file).read_text(encoding="utf-8")
        assert re.search(proof, text, re.S), (
            f"{pattern} is excluded here because tests/{test_file} runs it, but that "
            f"file no longer matches {proof!r}: run it here instead"
        )


@pytest.mark.parametrize(("script", "backend"), CASES)
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

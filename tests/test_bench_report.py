"""The benchmark report of ``benchmarks/run.py``: charts (PNG), the generated docs section, modes.

Everything runs on synthetic results in a temporary directory: neither
``benchmarks/results/latest.json`` nor ``docs/benchmarks.md`` is read or written.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ENV: dict[str, Any] = {
    "date": "2030-01-02 03:04 UTC",
    "command": ".venv/bin/python benchmarks/run.py --only alpha",
    "repeat": 3,
    "cpu": "Test CPU 9000",
    "cores": 7,
    "platform": "Linux-test-x86_64",
    "python": "3.11.99",
    "implementation": "CPython",
    "git_commit": "abc1234",
    "asyncgo_uncommitted": [],
}


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh import of benchmarks/run.py whose every output path points into tmp_path."""
    spec = importlib.util.spec_from_file_location(
        "bench_run_under_test", ROOT / "benchmarks/run.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look the module up
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results" / "latest.json")
    monkeypatch.setattr(mod, "DOCS", tmp_path / "docs" / "benchmarks.md")
    monkeypatch.setattr(mod, "IMG_DIR", tmp_path / "docs" / "img" / "benchmarks")
    return mod


def _rec(group: str, bench: str, impl: str, backend: str, value: float, **extra: Any) -> Any:
    return {
        "group": group,
        "bench": bench,
        "impl": impl,
        "backend": backend,
        "value": value,
        "unit": extra.pop("unit", "ops/s"),
        "extra": extra,
        "rep": 0,
    }


def synthetic(run: ModuleType) -> dict[str, Any]:
    """Two areas: throughput with targets, a metric and a backend-specific peer; and memory."""
    recs = []
    for b in run.BACKENDS:
        recs += [
            _rec(
                "alpha",
                "fast",
                "asyncgo",
                b,
                2_000_000,
                targets=[{"peer": "slowpoke", "min_ratio": 1.5}, {"metric": "share", "min": 0.5}],
                metrics={"share": 0.9},
            ),
            _rec("alpha", "fast", "slowpoke", b, 1_000_000, metrics={"share": 0.1}),
            _rec("alpha", "wide", "asyncgo", b, 5_000_000),
            _rec("alpha", "wide", "slowpoke", b, 500),  # 4 orders of magnitude: log scale
            _rec("beta", "idle_bytes", "asyncgo", b, 100, unit="bytes", lower_is_better=True),
            _rec(
                "beta",
                "idle_bytes",
                "fatso",
                b,
                400,
                unit="bytes",
                lower_is_better=True,
                note="fatso keeps a cache",
            ),
        ]
        if b == "trio":
            recs.append(_rec("alpha", "fast", "trio thing", b, 4_000_000))
    env = {**ENV, "versions": {d: f"1.{n}.0" for n, d in enumerate(run.PEER_DISTS)}}
    return run.merge(None, run.aggregate(recs, "r1"), env, "r1")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _generated(text: str, run: ModuleType) -> str:
    assert text.count(run.BEGIN) == 1 and text.count(run.END) == 1
    return text.split(run.BEGIN, 1)[1].split(run.END, 1)[0]


def test_report_draws_the_charts_and_the_docs_embed_them(run: ModuleType, tmp_path: Path) -> None:
    data = synthetic(run)
    written = run.report(data)
    img = run.IMG_DIR
    assert sorted(p.name for p in written) == [
        "alpha-metrics.png",
        "alpha-ratio.png",
        "alpha.png",
        "beta-ratio.png",
        "beta.png",
    ]
    assert sorted(img.iterdir()) == sorted(written)
    for path in written:
        raw = path.read_bytes()
        width, height = _png_size(raw)
        assert width >= 600 and height >= 300, (path.name, width, height)
        assert 5_000 < len(raw) < 150_000, (path.name, len(raw))

    block = _generated(run.DOCS.read_text(), run)
    links = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", block)
    assert sorted(Path(target).name for _, target in links) == sorted(p.name for p in written)
    for alt, target in links:
        assert alt.strip(), target
        assert not target.startswith("/"), "links must be relative for mkdocs"
        assert (run.DOCS.parent / target).resolve() in {p.resolve() for p in written}
    # Each chart sits in its area's section, the value chart before the area's table.
    alpha = block.split("### alpha", 1)[1].split("### beta", 1)[0]
    assert alpha.index("img/benchmarks/alpha.png") < alpha.index("| bench | backend |")
    assert "img/benchmarks/alpha-ratio.png" in alpha and "img/benchmarks/beta" not in alpha


def test_docs_state_machine_versions_and_commands(run: ModuleType) -> None:
    run.report(synthetic(run))
    block = _generated(run.DOCS.read_text(), run)
    assert "### Machine and versions" in block
    for expected in ("Test CPU 9000, 7 logical cores", "Linux-test-x86_64", "CPython 3.11.99"):
        assert expected in block
    for n, dist in enumerate(run.PEER_DISTS):
        assert f"| {dist} | 1.{n}.0 |" in block
    assert "| asyncgo | git abc1234 |" in block
    assert "make bench" in block
    assert ".venv/bin/python benchmarks/run.py --report-only" in block
    assert ENV["command"] in block
    # The per-area line links to the machine section, whose anchor mkdocs derives from
    # the heading.
    assert f"(#{run.MACHINE_ANCHOR})" in block
    assert run.MACHINE_ANCHOR == "machine-and-versions"


def test_old_runs_without_recorded_versions_say_so(run: ModuleType) -> None:
    data = synthetic(run)
    data["runs"]["r1"]["versions"] = {"anyio": "4.0.0"}
    block = run.render(data)
    assert "| anyio | 4.0.0 |" in block
    assert "| aiostream | not recorded by this run |" in block


def test_areas_measured_at_different_commits_are_told_apart(run: ModuleType) -> None:
    data = synthetic(run)
    beta_rows = [{**r, "run": "r2"} for r in data["rows"] if r["group"] == "beta"]
    data = run.merge(data, beta_rows, {**data["runs"]["r1"], "git_commit": "def5678"}, "r2")
    block = run.render(data)
    assert "| asyncgo | git abc1234 (alpha); git def5678 (beta) |" in block


def test_report_keeps_hand_written_text_and_is_reproducible(run: ModuleType) -> None:
    run.DOCS.parent.mkdir(parents=True)
    run.DOCS.write_text(f"# Benchmarks\n\nBefore.\n\n{run.BEGIN}\nold\n{run.END}\n\nAfter.\n")
    data = synthetic(run)
    first = {p.name: p.read_bytes() for p in run.report(data)}
    text = run.DOCS.read_text()
    assert text.startswith("# Benchmarks\n\nBefore.\n\n" + run.BEGIN)
    assert text.endswith(run.END + "\n\nAfter.\n")
    assert "\nold\n" not in text
    second = {p.name: p.read_bytes() for p in run.report(data)}
    assert first == second, "the same results must give byte-identical charts"


def test_charts_of_areas_no_longer_measured_are_removed(run: ModuleType) -> None:
    data = synthetic(run)
    run.report(data)
    data["rows"] = [r for r in data["rows"] if r["group"] != "beta"]
    written = run.report(data)
    assert sorted(p.name for p in run.IMG_DIR.iterdir()) == sorted(p.name for p in written)
    assert not (run.IMG_DIR / "beta.png").exists()
    assert "beta" not in _generated(run.DOCS.read_text(), run)


def test_ratio_and_metric_panels_carry_the_targets(run: ModuleType) -> None:
    data = synthetic(run)
    alpha = [r for r in data["rows"] if r["group"] == "alpha"]
    cols, peers = run._columns(alpha)
    fast = next(p for p in run._ratio_panels(alpha, peers) if p.title.startswith("fast"))
    assert fast.bars["asyncio"] == [("slowpoke", 2.0)]
    assert dict(fast.bars["trio"]) == {"slowpoke": 2.0, "trio thing": 0.5}
    assert sorted(fast.targets) == [(b, "slowpoke", 1.5) for b in sorted(run.BACKENDS)]
    assert fast.baseline == 1.0
    assert "above 1 = asyncgo better" in fast.title

    (share,) = run._metric_panels(alpha, cols)
    assert share.bars["uvloop"] == [("asyncgo", 0.9), ("slowpoke", 0.1)]
    assert ("uvloop", "asyncgo", 0.5) in share.targets

    beta = [r for r in data["rows"] if r["group"] == "beta"]
    (idle,) = run._ratio_panels(beta, run._columns(beta)[1])
    assert idle.bars["asyncio"] == [("fatso", 0.25)]
    assert "below 1 = asyncgo better" in idle.title
    (values,) = run._value_panels(beta, run._columns(beta)[0])
    assert "bytes, lower is better" in values.title


def test_report_only_renders_saved_results(run: ModuleType, tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(synthetic(run)))
    assert run.main(["--report-only", "--results", str(saved)]) == 0
    assert (run.IMG_DIR / "alpha.png").read_bytes()[:8] == PNG_MAGIC
    assert "img/benchmarks/alpha.png" in run.DOCS.read_text()
    assert not run.RESULTS.exists(), "--report-only must not touch the results"


def test_report_only_without_results_fails_and_writes_nothing(
    run: ModuleType, tmp_path: Path
) -> None:
    assert run.main(["--report-only", "--results", str(tmp_path / "missing.json")]) == 1
    assert not run.DOCS.exists() and not run.IMG_DIR.exists()


FAKE_BENCH = textwrap.dedent(
    """
    import argparse, json
    p = argparse.ArgumentParser()
    p.add_argument("--backend")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    for impl, v in (("asyncgo", 2.0), ("peer", 1.0)):
        print(json.dumps({"bench": "fake", "impl": impl, "backend": a.backend,
                          "value": v, "unit": "ops/s", "extra": {}}))
    """
)


@pytest.fixture
def fake_benchmarks(run: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "benchmarks"
    here.mkdir()
    (here / "bench_fake.py").write_text(FAKE_BENCH)
    monkeypatch.setattr(run, "HERE", here)


@pytest.mark.usefixtures("fake_benchmarks")
def test_quick_writes_no_results_docs_or_charts(run: ModuleType, tmp_path: Path) -> None:
    assert run.main(["--quick", "--backend", "asyncio"]) == 0
    assert not run.RESULTS.exists()
    assert not run.DOCS.exists()
    assert not run.IMG_DIR.exists()
    # The same run without --quick writes all three: the check above can fail.
    assert run.main(["--repeat", "1", "--backend", "asyncio"]) == 0
    assert json.loads(run.RESULTS.read_text())["rows"]
    assert "img/benchmarks/fake.png" in run.DOCS.read_text()
    assert (run.IMG_DIR / "fake.png").read_bytes()[:8] == PNG_MAGIC

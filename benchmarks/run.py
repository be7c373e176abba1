"""Run every ``benchmarks/bench_*.py`` on every backend and publish the medians.

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py                       # everything, 5 repetitions
    .venv/bin/python benchmarks/run.py --only chan --repeat 3
    .venv/bin/python benchmarks/run.py --quick               # CI smoke: 1 rep, small sizes
    .venv/bin/python benchmarks/run.py --report-only         # re-render docs + charts only

Each script is run once per backend (asyncio, uvloop, trio) and repetition, each
in its own subprocess, one at a time (never in parallel: the numbers are noisy
enough). Repetitions are interleaved (rep 1 of every script and backend, then
rep 2, ...) so that a slow spell of the machine spreads over all of them.

The median per (bench, impl, backend) is kept, with the ratio asyncgo/peer per
bench and backend and the issue targets the scripts declare (see
``_harness.py``). A full run merges its rows into ``benchmarks/results/latest.json``
(rows of scripts and backends not run this time are kept) and regenerates the
part of ``docs/benchmarks.md`` between the ``BEGIN GENERATED`` / ``END
GENERATED`` markers; everything outside the markers is hand-written and kept.
The generated part states the machine, the Python and library versions and the
asyncgo commit of every run, and embeds matplotlib charts (PNG) drawn into
``docs/img/benchmarks/``: per area, the medians, asyncgo ÷ each peer with the
targets, and the metrics the targets name (see ``make_plots``).
``--report-only`` measures nothing: it redraws the charts and rewrites that part
from ``benchmarks/results/latest.json`` (or ``--results PATH``).
``--quick`` runs write neither results nor docs nor charts (smoke numbers must
not replace real ones) and only print the tables; ``--json PATH`` saves them
anywhere.

Exit status: 1 if any script failed (crash, timeout, a detected lost item, a
malformed line), else 0. Unmet targets are reported, not failures.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "latest.json"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- BEGIN GENERATED: benchmarks/run.py rewrites everything up to END GENERATED -->"
END = "<!-- END GENERATED -->"
IMG_DIR = ROOT / "docs" / "img" / "benchmarks"
BACKENDS = ("asyncio", "uvloop", "trio")
ASYNCGO = "asyncgo"
# Distributions whose version a run records: the backends and the peers the scripts import.
PEER_DISTS = (
    "anyio",
    "trio",
    "uvloop",
    "aiostream",
    "aiometer",
    "aiolimiter",
    "starlette",
    "uvicorn",
    "aiohttp",
)

Row = dict[str, Any]


# -- environment ---------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def environment(argv: list[str], repeat: int) -> dict[str, Any]:
    dirty = git("status", "--porcelain", "--", "asyncgo")
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([".venv/bin/python", "benchmarks/run.py", *argv]),
        "repeat": repeat,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": {d: version(d) for d in PEER_DISTS},
        "git_commit": git("rev-parse", "--short", "HEAD"),
        # Uncommitted changes to the measured package, if any: the numbers are for the tree.
        "asyncgo_uncommitted": sorted(
            line.split(maxsplit=1)[1] for line in dirty.splitlines() if line.strip()
        ),
    }


# -- running ---------------------------------------------------------------------------


def discover(only: str | None) -> list[Path]:
    scripts = sorted(HERE.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if only in s.stem]
    return scripts


def group_of(script: Path) -> str:
    return script.stem.removeprefix("bench_")


def available_backends(wanted: list[str] | None) -> list[str]:
    out = []
    for b in wanted or BACKENDS:
        if b == "uvloop" and importlib.util.find_spec("uvloop") is None:
            print("run.py: uvloop is not installed; skipping that backend", file=sys.stderr)
            continue
        if b == "trio" and importlib.util.find_spec("trio") is None:
            print("run.py: trio is not installed; skipping that backend", file=sys.stderr)
            continue
        out.append(b)
    return out


def run_one(
    script: Path, backend: str, quick: bool, timeout: float
) -> tuple[list[Row], str | None]:
    """Run one script on one backend; (records, error message or None)."""
    cmd = [sys.executable, str(script), "--backend", backend]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return _parse(out, script, backend)[0], f"timed out after {timeout:.0f} s"
    recs, bad = _parse(proc.stdout, script, backend)
    took = time.perf_counter() - t0
    print(
        f"  {script.name} --backend {backend}: {len(recs)} results in {took:.1f} s", file=sys.stderr
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return recs, f"exit status {proc.returncode}\n{tail}"
    if not recs and proc.stdout.strip().startswith('{"skip"'):
        return recs, None  # the script does not run on this backend (and says why)
    if bad:
        return recs, "malformed output line(s):\n" + "\n".join(bad[:5])
    if not recs:
        return recs, "printed no results"
    return recs, None


def _parse(stdout: str, script: Path, backend: str) -> tuple[list[Row], list[str]]:
    recs: list[Row] = []
    bad: list[str] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            for key, typ in (
                ("bench", str),
                ("impl", str),
                ("backend", str),
                ("value", (int, float)),
                ("unit", str),
            ):
                if not isinstance(rec.get(key), typ):
                    raise ValueError(f"missing or mistyped {key!r}")
            if rec["backend"] != backend:
                raise ValueError(f"backend {rec['backend']!r}, expected {backend!r}")
            rec.setdefault("extra", {})
        except ValueError as exc:
            bad.append(f"{line[:200]}  ({exc})")
            continue
        rec["group"] = group_of(script)
        recs.append(rec)
    return recs, bad


# -- aggregating -----------------------------------------------------------------------


def aggregate(records: list[Row], run_id: str) -> list[Row]:
    """One row per (group, bench, impl, backend): the median and the spread."""
    by_key: dict[tuple[str, str, str, str], list[Row]] = defaultdict(list)
    for r in records:
        by_key[(r["group"], r["bench"], r["impl"], r["backend"])].append(r)
    rows = []
    for (group, bench, impl, backend), recs in by_key.items():
        values = [float(r["value"]) for r in recs]
        extra0 = recs[0]["extra"]
        metrics: dict[str, list[float]] = defaultdict(list)
        for r in recs:
            for k, v in (r["extra"].get("metrics") or {}).items():
                if isinstance(v, (int, float)):
                    metrics[k].append(float(v))
        row: Row = {
            "group": group,
            "bench": bench,
            "impl": impl,
            "backend": backend,
            "unit": recs[0]["unit"],
            "lower_is_better": bool(extra0.get("lower_is_better")),
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "values": values,
            "reps": [r.get("rep", i) for i, r in enumerate(recs)],
            "metrics": {k: statistics.median(v) for k, v in metrics.items()},
            "metric_values": dict(metrics),
            "run": run_id,
        }
        if extra0.get("note"):
            row["note"] = extra0["note"]
        if extra0.get("targets"):
            row["targets"] = extra0["targets"]
        # Keep the remaining extras for the record: sizes and capacities (the same in
        # every repetition), and measured numbers (vs_off, ratio_vs_plain, warmup_s...),
        # which, like the value, are the median over the repetitions, not the first.
        row["extra"] = {}
        for k, v in extra0.items():
            if k in ("note", "targets", "metrics", "lower_is_better"):
                continue
            nums = [r["extra"].get(k) for r in recs]
            if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in nums):
                v = statistics.median(nums)
            row["extra"][k] = v
        rows.append(row)
    return rows


def _index(rows: list[Row]) -> dict[tuple[str, str, str, str], Row]:
    return {(r["group"], r["bench"], r["backend"], r["impl"]): r for r in rows}


def per_run_ratios(ours: Row, peer: Row) -> list[float]:
    """asyncgo / peer within each repetition (the same process, so the same noise)."""
    theirs = dict(zip(peer.get("reps", []), peer["values"]))
    return [v / theirs[k] for k, v in zip(ours.get("reps", []), ours["values"]) if theirs.get(k)]


def ratios(rows: list[Row]) -> list[Row]:
    """asyncgo median / peer median for every peer of every (bench, backend)."""
    idx = _index(rows)
    out = []
    for r in rows:
        if r["impl"] == ASYNCGO:
            continue
        ours = idx.get((r["group"], r["bench"], r["backend"], ASYNCGO))
        if ours is None or r["median"] == 0:
            continue
        out.append(
            {
                "group": r["group"],
                "bench": r["bench"],
                "backend": r["backend"],
                "peer": r["impl"],
                "ratio": ours["median"] / r["median"],
                "per_run": per_run_ratios(ours, r),
                "lower_is_better": r["lower_is_better"],
            }
        )
    return out


def evaluate_targets(rows: list[Row]) -> list[Row]:
    idx = _index(rows)
    out = []
    for r in rows:
        if r["impl"] != ASYNCGO:
            continue
        for t in r.get("targets") or []:
            res: Row = {
                "group": r["group"],
                "bench": r["bench"],
                "backend": r["backend"],
                "target": t,
            }
            if "metric" in t:
                got = r["metrics"].get(t["metric"])
                res["what"] = f"{t['metric']} >= {t['min']:g}"
                res["measured"] = got
                res["per_run"] = r.get("metric_values", {}).get(t["metric"], [])
                res["met"] = got is not None and got >= t["min"]
            else:
                peer = idx.get((r["group"], r["bench"], r["backend"], t["peer"]))
                got = r["median"] / peer["median"] if peer and peer["median"] else None
                res["measured"] = got
                res["per_run"] = per_run_ratios(r, peer) if peer else []
                if "min_ratio" in t:
                    res["what"] = f">= {t['min_ratio']:g}x {t['peer']}"
                    res["met"] = got is not None and got >= t["min_ratio"]
                else:
                    res["what"] = f"<= {t['max_ratio']:g}x {t['peer']}"
                    res["met"] = got is not None and got <= t["max_ratio"]
            out.append(res)
    return out


# -- rendering ---------------------------------------------------------------------------


def fmt_value(v: float, unit: str) -> str:
    if unit == "bytes":
        return f"{v:,.0f}"
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _order(seq: list[str]) -> list[str]:
    return list(dict.fromkeys(seq))


MAX_PEERS_PER_TABLE = 5


def _columns(rows: list[Row]) -> tuple[list[str], list[str]]:
    impls = _order([r["impl"] for r in rows])
    # asyncgo's own baselines (e.g. "asyncgo recv") first, then the peers as they appear.
    peers = sorted((i for i in impls if i != ASYNCGO), key=lambda i: not i.startswith(ASYNCGO))
    return ([ASYNCGO] if ASYNCGO in impls else []) + peers, peers


def value_table(
    group: str, benches: list[str], rows: list[Row], idx: dict[tuple[str, str, str, str], Row]
) -> list[str]:
    """Rows: bench x backend; columns: asyncgo, each peer, asyncgo / each peer, spread."""
    cols, peers = _columns(rows)
    head = ["bench", "backend", *cols, *[f"asyncgo ÷ {p}" for p in peers], "spread"]
    lines = ["| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|")
    for bench in benches:
        for backend in BACKENDS:
            cells = [idx.get((group, bench, backend, i)) for i in cols]
            if not any(cells):
                continue
            first = next(c for c in cells if c)
            label = f"{bench} ({first['unit']}" + (
                ", lower is better)" if first["lower_is_better"] else ")"
            )
            vals = [fmt_value(c["median"], c["unit"]) if c else "—" for c in cells]
            ours = idx.get((group, bench, backend, ASYNCGO))
            rats = []
            for p in peers:
                pr = idx.get((group, bench, backend, p))
                rats.append(
                    f"{ours['median'] / pr['median']:.2f}x" if ours and pr and pr["median"] else "—"
                )
            present = [c for c in cells if c]
            if max(len(c["values"]) for c in present) > 1:
                spread = max(
                    ((c["max"] - c["min"]) / c["median"] if c["median"] else 0.0) for c in present
                )
                shown = f"±{spread * 50:.0f}%"
            else:
                shown = "—"
            lines.append("| " + " | ".join([label, backend, *vals, *rats, shown]) + " |")
    lines.append("")
    return lines


def render_group(
    group: str, rows: list[Row], runs: dict[str, Row], images: dict[str, str] | None = None
) -> list[str]:
    """The group's section: run line, chart, value table(s), metric tables, footnotes.

    *images* maps a plot kind (``PLOT_KINDS``) to the path the page links to.
    """
    images = images or {}
    rows = [r for r in rows if r["group"] == group]
    _, peers = _columns(rows)
    benches = _order([r["bench"] for r in rows])
    idx = _index(rows)
    lines = [f"### {group}", ""]
    for run_id in _order([r["run"] for r in rows]):
        env = runs.get(run_id, {})
        dirty = env.get("asyncgo_uncommitted") or []
        backends = [
            b for b in BACKENDS if any(r["run"] == run_id and r["backend"] == b for r in rows)
        ]
        lines += [
            f"Median of {env.get('repeat', '?')} run(s) on {', '.join(backends)}, measured "
            f"{env.get('date', '?')} at asyncgo {env.get('git_commit', '?')}"
            + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else "")
            + f" ([machine and versions](#{MACHINE_ANCHOR})). Reproduce with "
            f"`{env.get('command', '?')}`.",
            "",
        ]
    if "values" in images:
        lines += [
            f"![{group}: median of each implementation on each backend, one panel per "
            f"benchmark]({images['values']})",
            "",
        ]
    # One table for the group, or one per bench when the group has too many peers
    # to fit side by side (most of them would be empty cells anyway).
    if len(peers) <= MAX_PEERS_PER_TABLE:
        lines += value_table(group, benches, rows, idx)
    else:
        for bench in benches:
            lines += [f"#### {bench}", ""]
            lines += value_table(group, [bench], [r for r in rows if r["bench"] == bench], idx)
    if any(len(r["values"]) > 1 for r in rows):
        lines.append(
            "*spread*: half the largest (max − min) / median among the row's cells, "
            "over the repetitions."
        )
        lines.append("")
    # Secondary metrics (e.g. MPMC fairness).
    metric_names = _order([m for r in rows for m in r["metrics"]])
    for m in metric_names:
        mrows = [r for r in rows if m in r["metrics"]]
        mcols = _order([r["impl"] for r in mrows])
        lines += [f"Metric `{m}` (median):", ""]
        lines.append("| bench | backend | " + " | ".join(mcols) + " |")
        lines.append("|---|---|" + "|".join(["---:"] * len(mcols)) + "|")
        for bench in _order([r["bench"] for r in mrows]):
            for backend in BACKENDS:
                cells = [idx.get((group, bench, backend, i)) for i in mcols]
                if not any(c and m in c["metrics"] for c in cells):
                    continue
                vals = [f"{c['metrics'][m]:.2f}" if c and m in c["metrics"] else "—" for c in cells]
                lines.append(f"| {bench} | {backend} | " + " | ".join(vals) + " |")
        lines.append("")
    if "metrics" in images:
        lines += [
            f"![{group}: the targeted metrics of each implementation on each backend, "
            f"dashes mark the targets]({images['metrics']})",
            "",
        ]
    # Footnotes.
    notes: dict[str, tuple[list[str], list[str]]] = {}
    for r in rows:
        if r.get("note"):
            who, where = notes.setdefault(r["note"], ([], []))
            who.append(r["impl"])
            where.append(r["bench"])
    for note, (who, where) in notes.items():
        lines.append(
            f"- {', '.join(f'**{i}**' for i in _order(who))} in {', '.join(_order(where))}: {note}."
        )
    if notes:
        lines.append("")
    return lines


def render_targets(rows: list[Row], group: str | None = None) -> list[str]:
    ts = [t for t in evaluate_targets(rows) if group is None or t["group"] == group]
    if not ts:
        return []
    lines = [
        "| bench | backend | target | measured | per run | |",
        "|---|---|---|---:|---:|---|",
    ]
    for t in ts:
        got = t["measured"]
        x = "" if "metric" in t["target"] else "x"
        shown = "—" if got is None else f"{got:.2f}{x}"
        runs = t.get("per_run") or []
        spread = f"{min(runs):.2f}–{max(runs):.2f}{x}" if len(runs) > 1 else "—"
        lines.append(
            f"| {t['bench']} | {t['backend']} | {t['what']} | {shown} | {spread} | "
            + ("met" if t["met"] else "**not met**")
            + " |"
        )
    met = sum(t["met"] for t in ts)
    lines += [
        "",
        f"{met} of {len(ts)} targets met. *measured*: ratio of the medians (or the "
        "median metric); *per run*: the lowest and highest ratio of asyncgo to the peer "
        "measured in the same process, over the repetitions.",
        "",
    ]
    return lines


MACHINE_ANCHOR = "machine-and-versions"


def _field_values(runs: dict[str, Row], run_groups: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(field, value) for the machine table; values that differ between runs name their areas."""
    fields: dict[str, dict[str, list[str]]] = defaultdict(dict)

    def put(name: str, value: str, run_id: str) -> None:
        fields[name].setdefault(value, []).extend(run_groups[run_id])

    for run_id in run_groups:
        env = runs.get(run_id, {})
        put("CPU", f"{env.get('cpu', '?')}, {env.get('cores', '?')} logical cores", run_id)
        put("OS", str(env.get("platform", "?")), run_id)
        put("Python", f"{env.get('implementation', 'CPython')} {env.get('python', '?')}", run_id)
        versions = env.get("versions", {})
        for dist in PEER_DISTS:
            if dist not in versions:
                put(dist, "not recorded by this run", run_id)
            else:
                put(dist, versions[dist] or "not installed", run_id)
        dirty = env.get("asyncgo_uncommitted") or []
        put(
            "asyncgo",
            f"git {env.get('git_commit') or '?'}"
            + (f" + uncommitted {', '.join(dirty)}" if dirty else ""),
            run_id,
        )
    out = []
    for name, by_value in fields.items():
        if len(by_value) == 1:
            out.append((name, next(iter(by_value))))
        else:
            out.append(
                (
                    name,
                    "; ".join(f"{v} ({', '.join(_order(gs))})" for v, gs in by_value.items()),
                )
            )
    return out


def render_environment(rows: list[Row], runs: dict[str, Row]) -> list[str]:
    """The machine and versions the tables were measured on, and how to reproduce them."""
    run_groups: dict[str, list[str]] = {}
    for r in rows:
        groups = run_groups.setdefault(r["run"], [])
        if r["group"] not in groups:
            groups.append(r["group"])
    lines = [
        "### Machine and versions",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in _field_values(runs, run_groups)),
        "",
        "| area | measured | asyncgo | repetitions | command |",
        "|---|---|---|---:|---|",
    ]
    for group in _order([r["group"] for r in rows]):
        for run_id in _order([r["run"] for r in rows if r["group"] == group]):
            env = runs.get(run_id, {})
            lines.append(
                f"| {group} | {env.get('date', '?')} | {env.get('git_commit') or '?'} | "
                f"{env.get('repeat', '?')} | `{env.get('command', '?')}` |"
            )
    lines += [
        "",
        "Reproduce every table and chart (every script, every backend, 5 repetitions), "
        "or re-render this section and the charts from "
        "`benchmarks/results/latest.json` without measuring anything:",
        "",
        "```console",
        "make bench      # = .venv/bin/python benchmarks/run.py",
        ".venv/bin/python benchmarks/run.py --report-only",
        "```",
        "",
    ]
    return lines


def render(data: Row, images: dict[str, dict[str, str]] | None = None) -> str:
    """The generated block; *images*: group -> plot kind -> path to link (none: no charts)."""
    images = images or {}
    rows, runs = data["rows"], data["runs"]
    lines = [
        BEGIN,
        "",
        "_Generated from `benchmarks/results/latest.json` by `benchmarks/run.py`; "
        "edit the text outside these markers instead._",
        "",
    ]
    if rows:
        lines += render_environment(rows, runs)
    groups = _order([r["group"] for r in rows])
    for g in groups:
        lines += render_group(g, rows, runs, images.get(g))
        t = render_targets(rows, g)
        if t:
            lines += [f"Targets ({g}), checked against the medians above:", ""]
            if "ratios" in images.get(g, {}):
                lines += [
                    f"![{g}: asyncgo ÷ each peer on each backend, dashes mark the "
                    f"targets]({images[g]['ratios']})",
                    "",
                ]
            lines += t
        elif "ratios" in images.get(g, {}):
            lines += [f"![{g}: asyncgo ÷ each peer on each backend]({images[g]['ratios']})", ""]
    lines.append(END)
    return "\n".join(lines)


DOC_SKELETON = """# Benchmarks

Hand-written notes go outside the generated block; `benchmarks/run.py` rewrites
only what lies between its markers.

{block}
"""


def write_docs(
    data: Row, images: dict[str, dict[str, str]] | None = None, docs: Path | None = None
) -> None:
    docs = docs or DOCS
    block = render(data, images)
    if docs.exists():
        text = docs.read_text()
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            _, post = rest.split(END, 1)
            text = pre + block + post
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        docs.parent.mkdir(parents=True, exist_ok=True)
        text = DOC_SKELETON.format(block=block)
    docs.write_text(text)


def report(data: Row, docs: Path | None = None, img_dir: Path | None = None) -> list[Path]:
    """Draw the charts into *img_dir* and rewrite the generated part of *docs*, linking them."""
    docs = docs or DOCS
    img_dir = img_dir or IMG_DIR
    written = make_plots(data, img_dir)
    images: dict[str, dict[str, str]] = {}
    for group in _order([r["group"] for r in data["rows"]]):
        for kind in PLOT_KINDS:
            path = plot_path(img_dir, group, kind)
            if path in written:
                rel = Path(os.path.relpath(path, docs.parent)).as_posix()
                images.setdefault(group, {})[kind] = rel
    write_docs(data, images, docs)
    return written


# -- plots ------------------------------------------------------------------------------

# Plot kind -> file name suffix: <group>.png, <group>-ratio.png, <group>-metrics.png.
PLOT_KINDS = {"values": "", "ratios": "-ratio", "metrics": "-metrics"}
ASYNCGO_COLOR = "#1f77b4"
PEER_COLORS = (
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
)
LOG_SPAN = 30.0  # a panel switches to a log scale when its values span more than this factor
DPI = 100


def plot_path(out_dir: Path, group: str, kind: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in group)
    return out_dir / f"{safe}{PLOT_KINDS[kind]}.png"


@dataclass
class Panel:
    """One subplot: grouped bars, x = backend, one bar per implementation."""

    title: str
    ylabel: str
    bars: dict[str, list[tuple[str, float]]]  # backend -> [(impl, value)], in legend order
    fmt: Callable[[float], str]
    targets: list[tuple[str, str, float]] = field(default_factory=list)  # (backend, impl, y)
    baseline: float | None = None  # a reference line (1.0 on ratio charts)
    tick: Callable[[float], str] | None = None  # y tick labels (default: fmt)


def _better(row: Row) -> str:
    return "lower is better" if row["lower_is_better"] else "higher is better"


def _value_panels(rows: list[Row], cols: list[str]) -> list[Panel]:
    idx = _index(rows)
    panels = []
    for bench in _order([r["bench"] for r in rows]):
        first = next(r for r in rows if r["bench"] == bench)
        unit = first["unit"]
        bars = {
            b: [
                (i, idx[(first["group"], bench, b, i)]["median"])
                for i in cols
                if (first["group"], bench, b, i) in idx
            ]
            for b in BACKENDS
        }
        panels.append(
            Panel(
                title=f"{bench} ({unit}, {_better(first)})",
                ylabel=unit,
                bars={b: v for b, v in bars.items() if v},
                fmt=lambda v, unit=unit: fmt_value(v, unit).replace(" ", ""),
            )
        )
    return panels


def _ratio_panels(rows: list[Row], peers: list[str]) -> list[Panel]:
    idx = _index(rows)
    targets = evaluate_targets(rows)
    panels = []
    for bench in _order([r["bench"] for r in rows]):
        first = next(r for r in rows if r["bench"] == bench)
        group = first["group"]
        bars: dict[str, list[tuple[str, float]]] = {}
        for b in BACKENDS:
            ours = idx.get((group, bench, b, ASYNCGO))
            if ours is None:
                continue
            for p in peers:
                peer = idx.get((group, bench, b, p))
                if peer and peer["median"] > 0 and ours["median"] > 0:
                    bars.setdefault(b, []).append((p, ours["median"] / peer["median"]))
        if not bars:
            continue
        marks = [
            (
                t["backend"],
                t["target"]["peer"],
                t["target"].get("min_ratio", t["target"].get("max_ratio")),
            )
            for t in targets
            if t["bench"] == bench and "peer" in t["target"]
        ]
        above = "below" if first["lower_is_better"] else "above"
        panels.append(
            Panel(
                title=f"{bench}: asyncgo ÷ peer ({above} 1 = asyncgo better)",
                ylabel=f"asyncgo ÷ peer ({first['unit']})",
                bars=bars,
                fmt=lambda v: f"{v:.2f}×" if v < 10 else f"{v:.0f}×",
                targets=marks,
                baseline=1.0,
                tick=lambda v: f"{v:g}×",
            )
        )
    return panels


def _metric_panels(rows: list[Row], cols: list[str]) -> list[Panel]:
    """One panel per (bench, metric) that a target names: every implementation's median."""
    idx = _index(rows)
    targets = [t for t in evaluate_targets(rows) if "metric" in t["target"]]
    panels = []
    for bench, metric in _order([(t["bench"], t["target"]["metric"]) for t in targets]):  # type: ignore[misc]
        group = rows[0]["group"]
        bars: dict[str, list[tuple[str, float]]] = {}
        for b in BACKENDS:
            for i in cols:
                r = idx.get((group, bench, b, i))
                if r and metric in r["metrics"]:
                    bars.setdefault(b, []).append((i, r["metrics"][metric]))
        if not bars:
            continue
        marks = [
            (t["backend"], ASYNCGO, t["target"]["min"])
            for t in targets
            if t["bench"] == bench and t["target"]["metric"] == metric
        ]
        panels.append(
            Panel(
                title=f"{bench}: {metric} (higher is better)",
                ylabel=metric,
                bars=bars,
                fmt=lambda v: f"{v:.3g}",
                tick=lambda v: f"{v:g}",
                targets=marks,
            )
        )
    return panels


def _draw_panel(ax: Any, panel: Panel, colors: dict[str, str]) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    backends = list(panel.bars)
    most = max(len(v) for v in panel.bars.values())
    width = 0.8 / most
    marks = {(b, impl): y for b, impl, y in panel.targets}
    values = [v for items in panel.bars.values() for _, v in items]
    drawn_marks = [
        y for (b, impl), y in marks.items() if any(i == impl for i, _ in panel.bars.get(b, []))
    ]
    values += drawn_marks + ([] if panel.baseline is None else [panel.baseline])
    positive = [v for v in values if v > 0]
    log = len(positive) == len(values) and max(positive) / min(positive) > LOG_SPAN
    top = max(values)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2, top * (12 if most > 3 else 4))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(0, (top or 1.0) * (1.45 if most > 3 else 1.2))

    def near_below(v: float, target: float) -> bool:
        """Would a label on top of the bar collide with the target dash above it?"""
        if log:
            return v < target < v * 1.6
        return v < target < v + 0.1 * (top or 1.0)

    for i, b in enumerate(backends):
        items = panel.bars[b]
        for j, (impl, v) in enumerate(items):
            x = i + (j - (len(items) - 1) / 2) * width
            ax.bar(x, v, width * 0.92, color=colors[impl], zorder=2)
            target = marks.get((b, impl))
            label_at = v
            if target is not None:
                ax.hlines(
                    target,
                    x - width * 0.6,
                    x + width * 0.6,
                    colors="black",
                    linestyles="--",
                    lw=1.6,
                    zorder=3,
                )
                if near_below(v, target):
                    label_at = target  # lift the label over the dash instead of through it
            ax.annotate(
                panel.fmt(v),
                (x, label_at),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90 if most > 3 else 0,
                zorder=4,
            )
    if panel.baseline is not None:
        ax.axhline(panel.baseline, color="#555555", lw=0.8, zorder=1)
    tick = panel.tick or panel.fmt
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: tick(v) if v > 0 else "0"))
    ax.set_xticks(range(len(backends)), backends)
    ax.set_xlim(-0.5, len(backends) - 0.5)
    ax.set_title(panel.title, fontsize=10)
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3, zorder=0)


def _draw(panels: list[Panel], colors: dict[str, str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ncols = 1 if len(panels) == 1 else 2
    nrows = -(-len(panels) // ncols)
    impls = _order([i for p in panels for items in p.bars.values() for i, _ in items])
    impls.sort(key=list(colors).index)
    handles: list[Any] = [Patch(color=colors[i], label=i) for i in impls]
    if any(p.targets for p in panels):
        handles.append(Line2D([], [], color="black", ls="--", lw=1.6, label="target"))
    ncol = len(handles) if len(handles) <= 5 else -(-len(handles) // 2)
    legend_rows = -(-len(handles) // ncol)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(11 if ncols == 2 else 7, 0.6 + 0.25 * legend_rows + 3.1 * nrows),
        squeeze=False,
        layout="constrained",
    )
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, panel, colors)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    # The title heads the legend, so the two never overlap.
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncol=ncol,
        fontsize=9,
        frameon=False,
        title=title,
        title_fontproperties={"size": 12, "weight": "bold"},
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    # A 256-colour palette keeps even the tallest chart well under 150 KB; without
    # matplotlib's "Software" stamp the same data give byte-identical files.
    from PIL import Image

    buf.seek(0)
    with Image.open(buf) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        path.parent.mkdir(parents=True, exist_ok=True)
        small.save(path, format="PNG", optimize=True)


def make_plots(data: Row, out_dir: Path) -> list[Path]:
    """Draw each group's charts (matplotlib, PNG) into *out_dir*; return the files written.

    Per group: ``<group>.png``, the medians (one panel per benchmark, x = backend,
    one bar per implementation); ``<group>-ratio.png``, asyncgo ÷ each peer with the
    targets as dashes; ``<group>-metrics.png``, the metrics that targets name. Other
    PNGs in *out_dir* are stale charts of groups no longer measured and are removed:
    the directory belongs to this function.
    """
    written: list[Path] = []
    for group in _order([r["group"] for r in data["rows"]]):
        rows = [r for r in data["rows"] if r["group"] == group]
        cols, peers = _columns(rows)
        colors = {ASYNCGO: ASYNCGO_COLOR}
        for n, impl in enumerate(i for i in cols if i != ASYNCGO):
            colors[impl] = PEER_COLORS[n % len(PEER_COLORS)]
        kinds = {
            "values": (_value_panels(rows, cols), f"{group}: median per backend"),
            "ratios": (_ratio_panels(rows, peers), f"{group}: asyncgo ÷ peer per backend"),
            "metrics": (_metric_panels(rows, cols), f"{group}: targeted metrics per backend"),
        }
        for kind, (panels, title) in kinds.items():
            if panels:
                path = plot_path(out_dir, group, kind)
                _draw(panels, colors, title, path)
                written.append(path)
    if out_dir.is_dir():
        for stale in sorted(set(out_dir.glob("*.png")) - set(written)):
            stale.unlink()
    return written


def merge(old: Row | None, rows: list[Row], env: Row, run_id: str) -> Row:
    """Replace the old rows of every (group, backend) this run measured; keep the rest."""
    ran = {(r["group"], r["backend"]) for r in rows}
    kept = [r for r in (old or {}).get("rows", []) if (r["group"], r["backend"]) not in ran]
    taken = {r["run"] for r in kept}
    if run_id in taken:
        n = 2
        while f"{run_id}-{n}" in taken:
            n += 1
        run_id = f"{run_id}-{n}"
        rows = [{**r, "run": run_id} for r in rows]
    all_rows = kept + rows
    runs = {
        k: v for k, v in (old or {}).get("runs", {}).items() if any(r["run"] == k for r in all_rows)
    }
    runs[run_id] = env
    all_rows.sort(key=lambda r: r["group"])  # stable: keeps each script's bench order
    return {
        "schema": 1,
        "runs": runs,
        "rows": all_rows,
        "ratios": ratios(all_rows),
        "targets": evaluate_targets(all_rows),
    }


# -- main ----------------------------------------------------------------------------------


def report_only(results: Path) -> int:
    """``--report-only``: re-render the docs section and the charts from saved results."""
    try:
        data = json.loads(results.read_text())
    except (OSError, ValueError) as exc:
        print(f"run.py: cannot read {results}: {exc}", file=sys.stderr)
        return 1
    if not data.get("rows"):
        print(f"run.py: {results} holds no results", file=sys.stderr)
        return 1
    plots = report(data)
    print(f"run.py: rewrote {DOCS} and {len(plots)} chart(s) in {IMG_DIR}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: passes --quick, 1 repetition, writes no results/docs",
    )
    p.add_argument(
        "--only", metavar="SUBSTRING", help="run only bench_*.py whose name contains SUBSTRING"
    )
    p.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="only this backend (repeatable; default: all three)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per script run (default 1200, quick 120)",
    )
    p.add_argument(
        "--json", type=Path, metavar="PATH", help="also write this run's aggregated results to PATH"
    )
    p.add_argument(
        "--no-write",
        action="store_true",
        help="do not update benchmarks/results/latest.json or docs/benchmarks.md",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: redraw the charts and rewrite docs/benchmarks.md from --results",
    )
    p.add_argument(
        "--results",
        type=Path,
        metavar="PATH",
        help="the results --report-only renders (default benchmarks/results/latest.json)",
    )
    args = p.parse_args(argv)
    if args.report_only:
        return report_only(args.results or RESULTS)
    repeat = 1 if args.quick else max(1, args.repeat)
    timeout = args.timeout or (120.0 if args.quick else 1200.0)
    scripts = discover(args.only)
    if not scripts:
        print(f"run.py: no benchmarks/bench_*.py matches {args.only!r}", file=sys.stderr)
        return 1
    backends = available_backends(args.backend)
    env = environment(argv, repeat)
    # To the second (two short runs often start within the same minute; merge()
    # also renames a clashing id, so one run's environment never replaces another's).
    run_id = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + (
        "-quick" if args.quick else ""
    )

    records: list[Row] = []
    failures: list[str] = []
    for rep in range(repeat):
        print(f"run.py: repetition {rep + 1}/{repeat}", file=sys.stderr)
        for script in scripts:
            for backend in backends:
                recs, err = run_one(script, backend, args.quick, timeout)
                for r in recs:
                    r["rep"] = rep
                records += recs
                if err:
                    msg = f"{script.name} --backend {backend} (rep {rep + 1}): {err}"
                    failures.append(msg)
                    print(f"run.py: FAILED {msg}", file=sys.stderr)

    rows = aggregate(records, run_id)
    this = {
        "schema": 1,
        "runs": {run_id: env},
        "rows": rows,
        "ratios": ratios(rows),
        "targets": evaluate_targets(rows),
    }
    print(render(this))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(this, indent=1) + "\n")
    if failures and not args.quick and not args.no_write:
        print("run.py: not updating results or docs because of the failures below", file=sys.stderr)
    if not args.quick and not args.no_write and rows and not failures:
        old = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
        data = merge(old, rows, env, run_id)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")
        plots = report(data)
        print(f"run.py: wrote {RESULTS}, {DOCS} and {len(plots)} chart(s)", file=sys.stderr)
    if failures:
        print(f"run.py: {len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print("  " + f.splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

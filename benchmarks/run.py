"""Run every ``benchmarks/bench_*.py`` on every backend and publish the medians.

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py                       # everything, 5 repetitions
    .venv/bin/python benchmarks/run.py --only chan --repeat 3
    .venv/bin/python benchmarks/run.py --quick               # CI smoke: 1 rep, small sizes

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
``--quick`` runs write neither (smoke numbers must not replace real ones) and
only print the tables; ``--json PATH`` saves them anywhere.

Exit status: 1 if any script failed (crash, timeout, a detected lost item, a
malformed line), else 0. Unmet targets are reported, not failures.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "latest.json"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- BEGIN GENERATED: benchmarks/run.py rewrites everything up to END GENERATED -->"
END = "<!-- END GENERATED -->"
BACKENDS = ("asyncio", "uvloop", "trio")
ASYNCGO = "asyncgo"

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
        "versions": {d: version(d) for d in ("anyio", "trio", "uvloop")},
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
        # Keep the remaining scalar extras (sizes, capacities, ...) for the record.
        row["extra"] = {
            k: v
            for k, v in extra0.items()
            if k not in ("note", "targets", "metrics", "lower_is_better")
        }
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


def render_group(group: str, rows: list[Row], runs: dict[str, Row]) -> list[str]:
    rows = [r for r in rows if r["group"] == group]
    _, peers = _columns(rows)
    benches = _order([r["bench"] for r in rows])
    idx = _index(rows)
    lines = [f"### {group}", ""]
    for run_id in _order([r["run"] for r in rows]):
        env = runs.get(run_id, {})
        v = env.get("versions", {})
        dirty = env.get("asyncgo_uncommitted") or []
        lines += [
            f"Measured {env.get('date', '?')} on {env.get('cpu', '?')} "
            f"({env.get('cores', '?')} logical cores), {env.get('platform', '?')}; "
            f"{env.get('implementation', 'CPython')} {env.get('python', '?')}, "
            f"anyio {v.get('anyio')}, trio {v.get('trio')}, uvloop {v.get('uvloop')}; "
            f"asyncgo at {env.get('git_commit', '?')}"
            + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else "")
            + f". Median of {env.get('repeat', '?')} runs. Reproduce with "
            f"`{env.get('command', '?')}`.",
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


def render(data: Row) -> str:
    rows, runs = data["rows"], data["runs"]
    lines = [
        BEGIN,
        "",
        "_Generated from `benchmarks/results/latest.json` by `benchmarks/run.py`; "
        "edit the text outside these markers instead._",
        "",
    ]
    groups = _order([r["group"] for r in rows])
    for g in groups:
        lines += render_group(g, rows, runs)
        t = render_targets(rows, g)
        if t:
            lines += [f"Targets ({g}), checked against the medians above:", "", *t]
    lines.append(END)
    return "\n".join(lines)


DOC_SKELETON = """# Benchmarks

Hand-written notes go outside the generated block; `benchmarks/run.py` rewrites
only what lies between its markers.

{block}
"""


def write_docs(data: Row) -> None:
    block = render(data)
    if DOCS.exists():
        text = DOCS.read_text()
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            _, post = rest.split(END, 1)
            text = pre + block + post
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        DOCS.parent.mkdir(parents=True, exist_ok=True)
        text = DOC_SKELETON.format(block=block)
    DOCS.write_text(text)


def make_plots(data: Row, out_dir: Path) -> list[Path]:
    """Hook for the plots issue: render PNGs (matplotlib) from *data* into *out_dir*.

    Deliberately a no-op for now: matplotlib is not a dependency yet. When it is,
    draw one bar chart per group here and link the files from docs/benchmarks.md.
    """
    return []


def merge(old: Row | None, rows: list[Row], env: Row, run_id: str) -> Row:
    """Replace the old rows of every (group, backend) this run measured; keep the rest."""
    ran = {(r["group"], r["backend"]) for r in rows}
    kept = [r for r in (old or {}).get("rows", []) if (r["group"], r["backend"]) not in ran]
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
    args = p.parse_args(argv)
    repeat = 1 if args.quick else max(1, args.repeat)
    timeout = args.timeout or (120.0 if args.quick else 1200.0)
    scripts = discover(args.only)
    if not scripts:
        print(f"run.py: no benchmarks/bench_*.py matches {args.only!r}", file=sys.stderr)
        return 1
    backends = available_backends(args.backend)
    env = environment(argv, repeat)
    run_id = (
        env["date"].removesuffix(" UTC").replace(" ", "T") + "Z" + ("-quick" if args.quick else "")
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
        write_docs(data)
        make_plots(data, RESULTS.parent)
        print(
            f"run.py: wrote {RESULTS.relative_to(ROOT)} and {DOCS.relative_to(ROOT)}",
            file=sys.stderr,
        )
    if failures:
        print(f"run.py: {len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print("  " + f.splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

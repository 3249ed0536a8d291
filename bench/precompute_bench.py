#!/usr/bin/env python3
"""Side-by-side precompute benchmark: `cellucid-edge precompute` against the reference's
in-memory CSC build of the same X (what cellucid 0.0.9 does before its first gene), one run,
alternating, with the machine's load recorded beside every figure. A benchmark, not a test.

    cargo build --release --bin cellucid-edge
    python3 bench/precompute_bench.py /work/data/atlas-100k20k.zarr --runs 3
    python3 bench/precompute_bench.py /work/data/atlas-1m20k.zarr --runs 1 --no-reference

Per run:
  reference   in the reference venv (bench/reference-env.sh, or --ref-python): `anndata.read_zarr`
              (X read into memory, timed apart) then `X.tocsc()` timed alone, and the process's
              peak RSS; the reference does exactly this on its first gene request.
  edge        `cellucid-edge precompute STORE --cache <fresh dir> --quiet` under /usr/bin/time
              -v: wall, CPU (user + sys), peak RSS, and the per-phase wall times it prints.
Each figure carries the 1-minute load average read just before and after it (2 shared cores:
a load above 2 means the figure is pessimistic). Results: RESULTS/precompute-<label>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

REFERENCE_CSC = r"""
import json, resource, sys, time
import anndata
t0 = time.perf_counter()
a = anndata.read_zarr(sys.argv[1])
X = a.X
t1 = time.perf_counter()
u1 = resource.getrusage(resource.RUSAGE_SELF)
csc = X.tocsc()
t2 = time.perf_counter()
u2 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (u2.ru_utime - u1.ru_utime) + (u2.ru_stime - u1.ru_stime)
print(json.dumps({"load_s": t1 - t0, "tocsc_s": t2 - t1, "tocsc_cpu_s": cpu, "nnz": int(X.nnz),
                  "peak_rss_mib": u2.ru_maxrss / 1024}))
"""


def load() -> float:
    return os.getloadavg()[0]


def reference_python(arg: str | None) -> str:
    for candidate in [arg, os.environ.get("CELLUCID_REF_PYTHON"), str(ROOT.parent / "venv-ref/bin/python"),
                      str(ROOT / ".venv-reference/bin/python")]:
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit("no reference Python: pass --ref-python or run bench/reference-env.sh")


def run_reference(python: str, atlas: Path) -> dict:
    before = load()
    out = subprocess.run([python, "-c", REFERENCE_CSC, str(atlas)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"reference failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(load_before=before, load_after=load())
    return result


def run_edge(binary: str, atlas: Path, work: Path, jobs: int, extra: list[str]) -> dict:
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    before = load()
    cmd = ["/usr/bin/time", "-v", binary, "--log", "warn", "precompute", str(atlas), "--cache", str(cache),
           "--quiet", "--jobs", str(jobs), "--spill-dir", str(work), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"precompute failed:\n{out.stderr[-3000:]}")
    err = out.stderr

    def grab(pattern, cast=float):
        m = re.search(pattern, err)
        return cast(m.group(1)) if m else None

    wall = grab(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", str)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    phases = {m.group(1): float(m.group(3)) for m in
              re.finditer(r"^phase\s+(\w+)\s+(\d+) tasks\s+([\d.]+) s", out.stdout, re.M)}
    tasks = {m.group(1): int(m.group(2)) for m in
             re.finditer(r"^phase\s+(\w+)\s+(\d+) tasks", out.stdout, re.M)}
    size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "wall_s": secs,
        "cpu_s": grab(r"User time \(seconds\): ([\d.]+)") + grab(r"System time \(seconds\): ([\d.]+)"),
        "peak_rss_mib": grab(r"Maximum resident set size \(kbytes\): (\d+)") / 1024,
        "phases_s": phases,
        "tasks": tasks,
        "cache_bytes": size,
        "load_before": before,
        "load_after": load(),
    }


def markdown(report: dict) -> str:
    lines = [f"### precompute: {report['label']} ({report['atlas']})", "",
             f"{report['machine']}; {report['date']}; jobs {report['jobs']}; binary `{report['binary']}`.", "",
             "| run | what | wall (s) | CPU (s) | peak RSS (MiB) | load before / after |",
             "|---|---|---|---|---|---|"]
    for i, r in enumerate(report["reference"]):
        lines.append(f"| {i + 1} | reference `X.tocsc()` (X already in memory; load {r['load_s']:.1f} s) "
                     f"| {r['tocsc_s']:.2f} | {r.get('tocsc_cpu_s', float('nan')):.2f} | {r['peak_rss_mib']:.0f} | {r['load_before']:.1f} / {r['load_after']:.1f} |")
    for i, r in enumerate(report["edge"]):
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases_s"].items())
        lines.append(f"| {i + 1} | `cellucid-edge precompute` ({phases}) | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
                     f"| {r['peak_rss_mib']:.0f} | {r['load_before']:.1f} / {r['load_after']:.1f} |")
    s = report["summary"]
    lines += ["", f"Median wall: edge {s['edge_wall_s']:.1f} s"]
    if s.get("reference_tocsc_s"):
        lines[-1] += (f", reference CSC build {s['reference_tocsc_s']:.2f} s: ratio {s['ratio']:.1f}× "
                      f"(goal ≤ 4×).")
    if s.get("reference_tocsc_cpu_s"):
        lines.append(f"Median CPU: edge {s['edge_cpu_s']:.1f} s on 2 cores (= {s['edge_cpu_s'] / 2:.1f} s of wall on "
                     f"2 idle cores), reference CSC build {s['reference_tocsc_cpu_s']:.2f} s on one core: "
                     f"{s['edge_cpu_s'] / 2 / s['reference_tocsc_cpu_s']:.1f}× on an idle machine.")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("atlas", type=Path)
    p.add_argument("--label", default=None)
    p.add_argument("--bin", default=str(ROOT / "target/release/cellucid-edge"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--ref-python", default=None)
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--results", type=Path, default=ROOT / "bench/results")
    p.add_argument("extra", nargs="*", help="extra precompute arguments (after --)")
    args = p.parse_args()
    label = args.label or args.atlas.name.removesuffix(".zarr")
    python = None if args.no_reference else reference_python(args.ref_python)
    work = Path(tempfile.mkdtemp(prefix="precompute-bench-", dir=args.work))
    report = {"label": label, "atlas": str(args.atlas), "binary": args.bin, "jobs": args.jobs,
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{os.cpu_count()} cores, {platform_memory()}", "reference": [], "edge": []}
    try:
        for i in range(args.runs):
            if python:
                r = run_reference(python, args.atlas)
                print(f"reference run {i + 1}: tocsc {r['tocsc_s']:.2f} s (load {r['load_before']:.1f})", flush=True)
                report["reference"].append(r)
            r = run_edge(args.bin, args.atlas, work, args.jobs, args.extra)
            print(f"edge run {i + 1}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, {r['peak_rss_mib']:.0f} MiB "
                  f"(load {r['load_before']:.1f}) {r['phases_s']}", flush=True)
            report["edge"].append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    edge_wall = statistics.median(r["wall_s"] for r in report["edge"])
    summary = {"edge_wall_s": edge_wall}
    if report["reference"]:
        ref = statistics.median(r["tocsc_s"] for r in report["reference"])
        summary.update(reference_tocsc_s=ref, ratio=edge_wall / ref)
        cpu = [r["tocsc_cpu_s"] for r in report["reference"] if "tocsc_cpu_s" in r]
        if cpu:
            summary.update(reference_tocsc_cpu_s=statistics.median(cpu),
                           edge_cpu_s=statistics.median(r["cpu_s"] for r in report["edge"]))
    report["summary"] = summary
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"precompute-{label}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (args.results / f"precompute-{label}.md").write_text(md)
    print(md)


def platform_memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        return f"{kb / 1024 / 1024:.0f} GiB"
    except OSError:
        return "?"


if __name__ == "__main__":
    main()

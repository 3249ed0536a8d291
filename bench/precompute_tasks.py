#!/usr/bin/env python3
"""Per-task measurements of a planned precompute, and the scale model built from them
(docs/precompute.md). A benchmark, not a test.

    cargo build --release --bin cellucid-edge
    python3 bench/precompute_tasks.py /work/data/atlas-1m20k.zarr --sample 8

Every task runs as its own process (`precompute STORE --cache C --phase P --task I`), the way a
Lambda invocation runs one task, under /usr/bin/time -v: wall, CPU (user + sys), peak RSS, and
the task's own report (bytes written, scratch/cache bytes read and requests, source GETs and
bytes). Phases in order: every `artifacts` task, every `transpose` task (the pack tasks need all
the shards), `--sample` `pack` tasks spread over the blocks, then `index` and `cleanup` when every
pack task ran (`--all-pack`). Results: RESULTS/precompute-tasks-<label>.json and the model
(RESULTS/precompute-model-<label>.md): task counts, wall time at 100 and 1,000 concurrent tasks,
S3 requests and an AWS cost estimate for 10M and 50M cells x 30k genes at 5 %.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The plan's constants (src/cache/plan.rs).
MI = 1 << 20
ROW_BLOCK = (1 * MI, 64 * MI, 128)  # min, max, divisor of nnz
GENE_BLOCK = (2 * MI, 64 * MI, 256)

# AWS prices (us-east-1, on-demand, as published for 2026; x86_64 Lambda).
LAMBDA_GB_S = 0.0000166667
LAMBDA_REQUEST = 0.20 / 1e6
S3_PUT = 0.005 / 1000
S3_GET = 0.0004 / 1000
SFN_TRANSITION = 0.025 / 1000
# One vCPU per 1,769 MB of Lambda memory.
MB_PER_VCPU = 1769
# Throughput of one task to and from S3 (MB/s): an assumption (a Lambda with a few parallel
# connections), not a measurement; the local runs read and write a local disk.
S3_MB_S = 100
# Peak RSS of a task process that only opens the atlas (the smallest artifact task measured).
BASE_RSS_MIB = 36


def run_task(binary, atlas, cache, phase, task, extra):
    cmd = ["/usr/bin/time", "-v", binary, "--log", "warn", "precompute", str(atlas), "--cache", str(cache),
           "--phase", phase, "--task", str(task), *extra]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{phase} {task} failed:\n{out.stderr[-3000:]}")
    err = out.stderr

    def grab(pattern):
        return float(re.search(pattern, err).group(1))

    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", err).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report.update(
        process_wall_s=secs,
        cpu_s=grab(r"User time \(seconds\): ([\d.]+)") + grab(r"System time \(seconds\): ([\d.]+)"),
        peak_rss_mib=grab(r"Maximum resident set size \(kbytes\): (\d+)") / 1024,
        load=load,
    )
    return report


def summarise(rows):
    def stat(key):
        values = sorted(r[key] for r in rows)
        return {"median": statistics.median(values), "max": values[-1], "sum": sum(values)}

    return {"tasks": len(rows), **{k: stat(k) for k in
            ["seconds", "cpu_s", "peak_rss_mib", "bytes_written", "bytes_read", "requests",
             "source_gets", "source_bytes"]}}


def model(measured, plan, cells, genes, density, concurrency_levels=(100, 1000), memory_mb=3008):
    """Scale the measured per-task costs of the 1M atlas to `cells` x `genes` at `density`."""
    m_cells, m_genes, m_nnz = plan["atlas"]["cells"], plan["atlas"]["genes"], plan["atlas"]["nnz"]
    nnz = cells * genes * density
    row_target = min(max(nnz / ROW_BLOCK[2], ROW_BLOCK[0]), ROW_BLOCK[1])
    gene_target = min(max(nnz / GENE_BLOCK[2], GENE_BLOCK[0]), GENE_BLOCK[1])
    per_gene = nnz / genes
    gpb = max(1, int(gene_target // max(1, per_gene)))
    r = math.ceil(nnz / row_target)
    b = math.ceil(genes / gpb)
    t, p, a = measured["transpose"], measured["pack"], measured["artifacts"]
    m_rows = len(plan["row_blocks"]) - 1
    m_row_nnz = m_nnz / m_rows
    m_gpb = plan["genes_per_block"]
    # Transpose: CPU per stored value; source bytes per stored value; shard bytes per value.
    t_cpu = t["cpu_s"]["median"] / m_row_nnz * row_target
    t_src_bytes = t["source_bytes"]["median"] / m_row_nnz * row_target
    t_src_gets = t["source_gets"]["median"] / m_row_nnz * row_target
    # Peak RSS: a fixed base (the process with an atlas open) plus what grows with the task.
    base = BASE_RSS_MIB
    t_rss = base + (t["peak_rss_mib"]["max"] - base) / m_row_nnz * row_target
    shard_bytes = t["bytes_written"]["median"] / m_row_nnz * row_target
    # Pack: gzip CPU scales with dense bytes (cells x genes in the block), gathering with values.
    p_cpu = p["cpu_s"]["median"] / (m_cells * m_gpb) * (cells * gpb)
    p_written = p["bytes_written"]["median"] / (m_cells * m_gpb) * (cells * gpb)
    # Pack: the block's values (8 bytes each) and a dense column per gzip thread.
    vcpu_threads = max(1, math.ceil(memory_mb / MB_PER_VCPU))
    p_rss = (base + (p["peak_rss_mib"]["max"] - base - 2 * 4 * m_cells / MI) / (m_nnz / m_genes * m_gpb)
             * (per_gene * gpb) + vcpu_threads * 4 * cells / MI)
    a_rss_max = base + (a["peak_rss_mib"]["max"] - base) / m_cells * cells
    # Artifacts: scale with cells (documents, points, obs, edges).
    a_cpu_max = a["cpu_s"]["max"] / m_cells * cells
    a_cpu_sum = a["cpu_s"]["sum"] / m_cells * cells
    vcpu = memory_mb / MB_PER_VCPU
    # A task uses ~1 core for transposing and up to all its vCPUs for gzip (rayon).
    block_bytes = 8 * per_gene * gpb
    t_io = (t_src_bytes + shard_bytes) / (S3_MB_S * 1e6)
    p_io = (block_bytes + p_written) / (S3_MB_S * 1e6) + 2 * r * 0.02 / 16  # 2 GETs per shard, 16 in flight
    t_wall = t_cpu / min(1.0, vcpu) + t_io + 0.5
    p_wall = p_cpu / max(1.0, vcpu) + p_io + 0.5
    a_wall = a_cpu_max / min(1.0, vcpu)
    index_wall = b * 0.02 / 32 + 1
    cleanup_wall = r / 1000 * 0.5 + 1
    out = {"cells": cells, "genes": genes, "density": density, "nnz": nnz,
           "tasks": {"artifacts": a["tasks"], "transpose": r, "pack": b, "index": 1, "cleanup": 1},
           "per_task": {"transpose_s": t_wall, "transpose_rss_mib": t_rss, "pack_s": p_wall,
                        "pack_rss_mib": p_rss, "largest_artifact_s": a_wall,
                        "largest_artifact_rss_mib": a_rss_max,
                        "shard_mb": shard_bytes / 1e6, "pack_object_mb": p_written / 1e6,
                        "transpose_io_s": t_io, "pack_io_s": p_io},
           "walls": {}}
    sfn_wave = 1.0  # Step Functions scheduling + Lambda start per wave (s), measured docs say ~1 s
    for c in concurrency_levels:
        wall = (a_wall + sfn_wave + math.ceil(r / c) * (t_wall + sfn_wave) + math.ceil(b / c) * (p_wall + sfn_wave)
                + index_wall + cleanup_wall + 5)
        out["walls"][c] = wall
    gets = r * (t_src_gets + 3) + b * (2 * r + 2) + b + a["tasks"] * 50 + 10
    puts = r + b + 1 + a["tasks"] + 10
    deletes = r
    transitions = (a["tasks"] + r + b + 2) * 4 + 40
    gb_s = (r * t_wall + b * p_wall + a_cpu_sum + index_wall + cleanup_wall) * memory_mb / 1024
    cost = {"lambda_compute": gb_s * LAMBDA_GB_S, "lambda_requests": (a["tasks"] + r + b + 3) * LAMBDA_REQUEST,
            "s3_get": gets * S3_GET, "s3_put": puts * S3_PUT, "step_functions": transitions * SFN_TRANSITION}
    cost["total"] = sum(cost.values())
    out.update(requests={"get": gets, "put": puts, "delete": deletes, "source_bytes": r * t_src_bytes,
                         "scratch_bytes": r * shard_bytes},
               gb_seconds=gb_s, cost_usd=cost, memory_mb=memory_mb)
    return out


def model_markdown(report):
    lines = [f"Inputs: {report['label']} ({report['atlas']}), {report['date']}, "
             f"command: `{report['command']}`.", "",
             "| measured per task (1M atlas) | tasks run | median wall (s) | median CPU (s) | max peak RSS (MiB) "
             "| median bytes written | median source GETs / bytes |", "|---|---|---|---|---|---|---|"]
    for phase, s in report["measured"].items():
        lines.append(f"| {phase} | {s['tasks']} | {s['seconds']['median']:.2f} | {s['cpu_s']['median']:.2f} | "
                     f"{s['peak_rss_mib']['max']:.0f} | {s['bytes_written']['median'] / 1e6:.1f} MB | "
                     f"{s['source_gets']['median']:.0f} / {s['source_bytes']['median'] / 1e6:.1f} MB |")
    lines += ["", "| atlas | stored values | tasks (artifacts / transpose / pack / index / cleanup) "
              "| per task: transpose, pack (s; peak MiB) | largest artifact (s; peak MiB) | wall at 100 tasks "
              "| wall at 1,000 tasks | S3 GET / PUT | Lambda GB-s | AWS cost |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in report["model"]:
        t = m["tasks"]
        pt = m["per_task"]
        lines.append(
            f"| {m['cells'] / 1e6:.0f}M x {m['genes'] // 1000}k @ {m['density'] * 100:.0f} % | {m['nnz']:.2e} | "
            f"{t['artifacts']} / {t['transpose']} / {t['pack']} / 1 / 1 | {pt['transpose_s']:.0f}, {pt['pack_s']:.0f} "
            f"({pt['transpose_rss_mib']:.0f}, {pt['pack_rss_mib']:.0f}) | {pt['largest_artifact_s']:.0f} "
            f"({pt['largest_artifact_rss_mib']:.0f}) | {m['walls'][100] / 60:.1f} min | "
            f"{m['walls'][1000] / 60:.1f} min | {m['requests']['get'] / 1e6:.2f} M / {m['requests']['put'] / 1e3:.1f} k | "
            f"{m['gb_seconds']:.0f} | ${m['cost_usd']['total']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("atlas", type=Path)
    p.add_argument("--label", default=None)
    p.add_argument("--bin", default=str(ROOT / "target/release/cellucid-edge"))
    p.add_argument("--sample", type=int, default=8, help="pack tasks to run (spread over the blocks)")
    p.add_argument("--all-pack", action="store_true", help="run every pack task, then index and cleanup")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--results", type=Path, default=ROOT / "bench/results")
    p.add_argument("--memory-mb", type=int, default=3008, help="Lambda memory of the model")
    p.add_argument("--from-json", type=Path, default=None,
                   help="recompute the model from an earlier RESULTS/precompute-tasks-*.json")
    args = p.parse_args()
    label = args.label or args.atlas.name.removesuffix(".zarr")
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        plan = report["plan"]
        report["model"] = [model(report["measured"], plan, cells, 30_000, 0.05, memory_mb=args.memory_mb)
                           for cells in (10_000_000, 50_000_000)]
        args.from_json.write_text(json.dumps(report, indent=1) + "\n")
        md = model_markdown(report)
        (args.results / f"precompute-model-{report['label']}.md").write_text(md)
        print(md)
        return
    work = Path(tempfile.mkdtemp(prefix="precompute-tasks-", dir=args.work))
    cache = work / "cache"
    try:
        out = subprocess.run([args.bin, "--log", "warn", "precompute", str(args.atlas), "--cache", str(cache), "--plan"],
                             capture_output=True, text=True, check=True)
        plan = json.loads(out.stdout)
        counts = {ph["name"]: ph["tasks"] for ph in plan["phases"]}
        print(f"plan: {counts}", flush=True)
        rows = {"artifacts": [], "transpose": [], "pack": [], "index": [], "cleanup": []}
        pack_tasks = (range(counts["pack"]) if args.all_pack else
                      sorted({round(i * (counts["pack"] - 1) / max(1, args.sample - 1)) for i in range(args.sample)}))
        for phase, tasks in [("artifacts", range(counts["artifacts"])), ("transpose", range(counts.get("transpose", 0))),
                             ("pack", pack_tasks)] + ([("index", [0]), ("cleanup", [0])] if args.all_pack else []):
            for task in tasks:
                r = run_task(args.bin, args.atlas, cache, phase, task, [])
                rows[phase].append(r)
                print(f"{phase} {task}: {r['process_wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU, "
                      f"{r['peak_rss_mib']:.0f} MiB, wrote {r['bytes_written'] / 1e6:.1f} MB (load {r['load']:.1f})",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    measured = {k: summarise(v) for k, v in rows.items() if v}
    report = {"label": label, "atlas": str(args.atlas), "binary": args.bin,
              "command": " ".join(["python3", "bench/precompute_tasks.py", str(args.atlas), "--sample", str(args.sample)]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "plan": {k: plan[k] for k in ["atlas", "genes_per_block", "phases"]} | {"row_blocks": plan["row_blocks"]},
              "measured": measured, "tasks": rows}
    report["model"] = [model(measured, plan, cells, 30_000, 0.05, memory_mb=args.memory_mb)
                       for cells in (10_000_000, 50_000_000)]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"precompute-tasks-{label}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = model_markdown(report)
    (args.results / f"precompute-model-{label}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

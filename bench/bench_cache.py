#!/usr/bin/env python3
"""Benchmark of issue 4 (cache, precompute, gene-major pack) — a benchmark, not a test.

    cargo build --release
    python bench/make_atlas.py /tmp/atlas.zarr --cells 100000 --genes 20000 --density 0.05
    python3 bench/bench_cache.py /tmp/atlas.zarr --bin target/release/cellucid-edge [--s3]

Measures, and prints as a Markdown table (plus JSON with --json FILE):
  * precompute wall time and peak RSS (`/usr/bin/time -v`), local files -> local cache;
  * gene latency median / p99 after precompute, each gene asked once (no in-process hit),
    local files and (with --s3) a local moto S3 server (atlas and cache both on S3);
  * bytes read per gene / response bytes, from `Server-Timing` (goal <= 1.1);
  * first paint (identity + manifests + points_3d) from a fresh process with a warm cache:
    time to first byte after spawn, and the five requests alone.
Stdlib only, plus `moto_server` and boto3 (from `pip install 'moto[server]'`) for --s3.
All traffic goes to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import S3_ENV, ServerProcess, free_port, start_moto, timed_run, upload  # noqa: E402

FIRST_PAINT = [
    "dataset_identity.json",
    "obs_manifest.json",
    "var_manifest.json",
    "connectivity_manifest.json",
    "points_3d.bin",
]


class Server(ServerProcess):
    """`cellucid-edge serve STORE --cache CACHE` in a child process on a free port."""

    def __init__(self, binary, store, cache, env=None):
        port = free_port()
        cmd = [binary, "serve", store, "--cache", cache, "--port", str(port), "--log", "warn"]
        super().__init__(cmd, port, env=env, log_name="bench-cache", startup_timeout=120)

    def get(self, route):
        r = super().get(route, timeout=300)
        return {
            "status": r["status"],
            "seconds": r["seconds"],
            "bytes": r.get("wire_bytes", 0),
            "gets": -1 if r.get("gets") is None else r["gets"],
            "read": -1 if r.get("read") is None else r["read"],
            "outcome": r.get("outcome") or "",
        }


def gene_names(n_genes, sample, seed=4):
    rng = random.Random(seed)
    picks = rng.sample(range(n_genes), min(sample + 1, n_genes))
    return [f"GENE{i:05d}" for i in picks]


def gene_run(binary, store, cache, n_genes, sample, env=None):
    s = Server(binary, store, cache, env)
    try:
        genes = gene_names(n_genes, sample)
        warm = s.get(f"var/{genes[0]}.values.f32")  # gene names + pack index: once per process
        rows = [s.get(f"var/{g}.values.f32") for g in genes[1:]]
    finally:
        s.stop()
    bad = [r for r in rows if r["status"] != 200]
    if bad or warm["status"] != 200:
        sys.exit(f"gene requests failed: {bad[:3] or warm}")
    lat = sorted(r["seconds"] * 1000 for r in rows)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    return {
        "genes": len(rows),
        "first_gene_ms": warm["seconds"] * 1000,
        "first_gene_gets": warm["gets"],
        "median_ms": statistics.median(lat),
        "p99_ms": p99,
        "gets_per_gene": statistics.mean(r["gets"] for r in rows),
        "read_over_response": sum(r["read"] for r in rows) / max(1, sum(r["bytes"] for r in rows)),
        "mean_response_bytes": statistics.mean(r["bytes"] for r in rows),
        "outcomes": sorted({r["outcome"] for r in rows}),
    }


def first_paint(binary, store, cache, env=None):
    t0 = time.perf_counter()
    s = Server(binary, store, cache, env)
    try:
        t1 = time.perf_counter()
        rows = [s.get(route) for route in FIRST_PAINT]
        t2 = time.perf_counter()
    finally:
        s.stop()
    return {
        "spawn_to_painted_ms": (t2 - t0) * 1000,
        "requests_ms": (t2 - t1) * 1000,
        "statuses": [r["status"] for r in rows],
        "outcomes": [r["outcome"] for r in rows],
        "gets": sum(max(0, r["gets"]) for r in rows),
    }






def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("atlas", type=Path)
    p.add_argument("--bin", default="target/release/cellucid-edge")
    p.add_argument("--genes", type=int, default=20000, help="genes of the atlas (GENE00000...)")
    p.add_argument("--sample", type=int, default=200, help="genes asked per run")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--s3", action="store_true", help="also on a local moto S3 server")
    p.add_argument("--s3-only", action="store_true", help="only on the local moto S3 server (implies --s3)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    binary = os.path.abspath(args.bin)
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    results = {"atlas": str(args.atlas), "genes_in_atlas": args.genes}
    args.s3 = args.s3 or args.s3_only
    try:
        if not args.s3_only:
            local(args, binary, str(work / "cache"), results)
        if args.s3:
            on_s3(args, binary, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))


def local(args, binary, cache, results):
    """Precompute into a local cache directory, then genes and first paint from local files."""
    wall, rss, out = timed_run([binary, "precompute", str(args.atlas), "--cache", cache, "--jobs", str(args.jobs), "--quiet"])
    results["precompute_local"] = {"seconds": wall, "peak_rss_mib": rss, "summary": out}
    print(out, file=sys.stderr)
    wall2, _, _ = timed_run([binary, "precompute", str(args.atlas), "--cache", cache, "--quiet"])
    results["precompute_rerun_seconds"] = wall2
    results["gene_local"] = gene_run(binary, str(args.atlas), cache, args.genes, args.sample)
    results["first_paint_local"] = first_paint(binary, str(args.atlas), cache)


def on_s3(args, binary, results):
    """The atlas uploaded to a local moto server, precomputed into a cache prefix there."""
    moto, endpoint = start_moto()
    try:
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, **S3_ENV)
        t = time.time()
        results["s3_objects"] = upload(endpoint, "bench", "atlas.zarr", args.atlas)
        results["s3_upload_seconds"] = time.time() - t
        s3_store, s3_cache = "s3://bench/atlas.zarr", "s3://bench/cache"
        wall, rss, out = timed_run([binary, "precompute", s3_store, "--cache", s3_cache, "--jobs", str(args.jobs), "--quiet"], env)
        results["precompute_s3"] = {"seconds": wall, "peak_rss_mib": rss, "summary": out}
        print(out, file=sys.stderr)
        results["gene_s3"] = gene_run(binary, s3_store, s3_cache, args.genes, args.sample, env)
        results["first_paint_s3"] = first_paint(binary, s3_store, s3_cache, env)
    finally:
        moto.terminate()


def table(r):
    lines = ["| measure | local files | local S3 (moto) |", "| --- | --- | --- |"]

    def both(label, key, fmt, sub):
        a = r.get(f"{key}_local", {}).get(sub)
        b = r.get(f"{key}_s3", {}).get(sub)
        cell = lambda v: fmt.format(v) if v is not None else "—"
        lines.append(f"| {label} | {cell(a)} | {cell(b)} |")

    both("precompute wall time (s)", "precompute", "{:.1f}", "seconds")
    both("precompute peak RSS (MiB)", "precompute", "{:.0f}", "peak_rss_mib")
    both("gene latency median (ms)", "gene", "{:.1f}", "median_ms")
    both("gene latency p99 (ms)", "gene", "{:.1f}", "p99_ms")
    both("store GETs per gene", "gene", "{:.2f}", "gets_per_gene")
    both("bytes read / response bytes", "gene", "{:.3f}", "read_over_response")
    both("mean gene response (bytes, gzip)", "gene", "{:.0f}", "mean_response_bytes")
    both("first gene of a process (ms)", "gene", "{:.1f}", "first_gene_ms")
    both("first paint, spawn → 5 responses (ms)", "first_paint", "{:.0f}", "spawn_to_painted_ms")
    both("first paint, the 5 requests (ms)", "first_paint", "{:.1f}", "requests_ms")
    both("first paint store GETs", "first_paint", "{}", "gets")
    rerun = r.get("precompute_rerun_seconds")
    lines.append(f"| precompute re-run, all present (s) | {'—' if rerun is None else f'{rerun:.2f}'} | — |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

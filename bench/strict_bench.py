#!/usr/bin/env python3
"""Benchmark of the strict profile (issue 14) — a benchmark, not a test.

    python3 bench/strict_bench.py /work/data/atlas-1m2k.zarr --bin target/release/cellucid-edge \
        --cache /tmp/strict-cache-1m2k [--genes 100] [--runs 3] [--out bench/results/strict-1m2k]

Side by side, the seed profile at the root and the strict profile under /strict of the same
`cellucid-edge serve` binary, each from a fresh process (cold) and again in the same process
(warm), without and with the cache prefix (`precompute`, incl. the strict hook, is run first
when the cache has no gene pack):

  * first paint: identity, then the manifests in parallel (the 0.0.9-era viewer asks for all
    four documents, the strict viewer for the connectivity manifest only when the identity has a
    graph), then points of the default dimension — wall time of the sequence;
  * gene latency: the same random genes by name at the root and by index under /strict;
  * quantised genes (`serve --quantize 8|16`): bytes on the wire (gzip) of the same genes as
    float32 / uint8 / uint16, and the worst-case error of the decoded values against float32.

Writes <out>.json and <out>.md. Standard library only (plus bench/benchlib.py).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import random
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ServerProcess, free_port, percentile, timed_run  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("atlas", help="AnnData-Zarr store")
    p.add_argument("--bin", default="target/release/cellucid-edge")
    p.add_argument("--cache", required=True, help="cache prefix directory (precomputed when empty)")
    p.add_argument("--genes", type=int, default=100, help="random genes with a cache")
    p.add_argument("--nocache-genes", type=int, default=10, help="random genes without a cache (X scans)")
    p.add_argument("--runs", type=int, default=3, help="fresh processes per measurement")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--out", default=None, help="results path without extension")
    p.add_argument("--only-quantised", action="store_true", help="only the quantised-gene measurement")
    return p.parse_args(argv)


class Server(ServerProcess):
    def __init__(self, binary, atlas, cache=None, quantize=None):
        port = free_port()
        cmd = [binary, "serve", atlas, "--port", str(port), "--log", "warn", "--no-pack-on-demand"]
        if cache:
            cmd += ["--cache", cache]
        if quantize:
            cmd += ["--quantize", str(quantize)]
        super().__init__(cmd, port, log_name="strict-bench", startup_timeout=600)


def prefix(profile):
    return "strict/" if profile == "strict" else ""


def first_paint(server, profile):
    """Seconds for identity → manifests in parallel → points of the default dimension, as each
    viewer generation asks: the 0.0.9-era viewer fetches all four documents; the strict viewer
    fetches the connectivity manifest only when the identity says the dataset has a graph."""
    p = prefix(profile)
    t0 = time.perf_counter()
    identity = server.get(f"{p}dataset_identity.json")
    assert identity["status"] == 200, identity
    doc = json.loads(identity["body"])
    routes = [f"{p}obs_manifest.json", f"{p}var_manifest.json"]
    if profile == "root" or doc["stats"]["has_connectivity"]:
        routes.append(f"{p}connectivity_manifest.json")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        docs = list(pool.map(server.get, routes))
    for d in docs[:2]:
        assert d["status"] == 200, d
    dim = doc["embeddings"]["default_dimension"]
    points = server.get(f"{p}{doc['embeddings']['files'][f'{dim}d']}")
    assert points["status"] == 200, points
    return time.perf_counter() - t0, sum(r.get("gets") or 0 for r in [identity, *docs, points])


def gene_routes(server, profile, indices):
    var = json.loads(server.get(f"{prefix(profile)}var_manifest.json")["body"])
    if profile == "strict":
        ext = var["_varSchema"]["ext"]
        return [f"strict/var/{i}.values.{ext}" for i in indices], var
    import urllib.parse

    return [f"var/{urllib.parse.quote(var['fields'][i][0], safe='._-')}.values.f32" for i in indices], var


def time_genes(server, routes):
    out = []
    for r in routes:
        res = server.get(r)
        assert res["status"] == 200, (r, res.get("status"), res.get("body", b"")[:200])
        out.append(res)
    return out


def summary(values):
    values = sorted(values)
    return {
        "median_ms": statistics.median(values) * 1000,
        "p90_ms": percentile(values, 0.9) * 1000,
        "mean_ms": statistics.fmean(values) * 1000,
    }


def ensure_precompute(args, results):
    cache = Path(args.cache)
    if any(cache.glob("*/genes/index.u64")):
        results["precompute"] = "reused"
        return
    cache.mkdir(parents=True, exist_ok=True)
    walls = []
    for bits in (8, 16):
        wall, rss, _ = timed_run([args.bin, "precompute", args.atlas, "--cache", str(cache), "--quantize", str(bits), "--quiet"])
        walls.append({"quantize": bits, "wall_s": wall, "peak_rss_mib": rss})
    results["precompute"] = walls


def bench_paint_and_genes(args, indices, cache, n_genes, results, key):
    rows = {}
    for profile in ("root", "strict"):
        rows[profile] = {"paint_cold": [], "paint_warm": [], "gets_cold": [], "gene_cold": [], "gene_warm": []}
    for _run in range(args.runs):
        for profile in ("root", "strict"):
            s = Server(args.bin, args.atlas, cache)
            try:
                cold, gets = first_paint(s, profile)
                warm, _ = first_paint(s, profile)
                routes, _ = gene_routes(s, profile, indices[:n_genes])
                genes_cold = [r["seconds"] for r in time_genes(s, routes)]
                genes_warm = [r["seconds"] for r in time_genes(s, routes)]
            finally:
                s.stop()
            row = rows[profile]
            row["paint_cold"].append(cold)
            row["paint_warm"].append(warm)
            row["gets_cold"].append(gets)
            row["gene_cold"].extend(genes_cold)
            row["gene_warm"].extend(genes_warm)
    out = {}
    for profile, row in rows.items():
        out[profile] = {
            "first_paint_cold_ms": statistics.median(row["paint_cold"]) * 1000,
            "first_paint_warm_ms": statistics.median(row["paint_warm"]) * 1000,
            "first_paint_cold_runs_ms": [x * 1000 for x in row["paint_cold"]],
            "first_paint_store_gets": statistics.median(row["gets_cold"]),
            "gene_cold": summary(row["gene_cold"]),
            "gene_warm": summary(row["gene_warm"]),
        }
    out["ratio"] = {
        "first_paint_cold": out["strict"]["first_paint_cold_ms"] / out["root"]["first_paint_cold_ms"],
        "first_paint_warm": out["strict"]["first_paint_warm_ms"] / out["root"]["first_paint_warm_ms"],
        "gene_cold_median": out["strict"]["gene_cold"]["median_ms"] / out["root"]["gene_cold"]["median_ms"],
        "gene_warm_median": out["strict"]["gene_warm"]["median_ms"] / out["root"]["gene_warm"]["median_ms"],
    }
    results[key] = out


def floats(body):
    return struct.unpack(f"<{len(body) // 4}f", body)


def bench_quantised(args, indices, results):
    s = Server(args.bin, args.atlas, args.cache)
    try:
        routes, _ = gene_routes(s, "root", indices)
        f32 = time_genes(s, routes)
    finally:
        s.stop()
    out = {"float32": {"wire_bytes": sum(r["wire_bytes"] for r in f32), "raw_bytes": sum(len(r["body"]) for r in f32),
                       "latency": summary([r["seconds"] for r in f32])}}
    for bits in (8, 16):
        s = Server(args.bin, args.atlas, args.cache, quantize=bits)
        try:
            routes, var = gene_routes(s, "strict", indices)
            replies = time_genes(s, routes)
        finally:
            s.stop()
        worst, worst_rel, total_abs, count = 0.0, 0.0, 0.0, 0
        sentinel, max_code = (255, 254) if bits == 8 else (65535, 65534)
        fmt = "B" if bits == 8 else "H"
        for i, q, f in zip(indices, replies, f32):
            _, _, lo, hi = var["fields"][i]
            codes = struct.unpack(f"<{len(q['body']) // (bits // 8)}{fmt}", q["body"])
            for c, v in zip(codes, floats(f["body"])):
                if v != v or v in (float("inf"), float("-inf")):
                    assert c == sentinel
                    continue
                err = abs(v - (lo + c * (hi - lo) / max_code))
                total_abs += err
                count += 1
                if err > worst:
                    worst = err
                if hi > lo:
                    worst_rel = max(worst_rel, err / (hi - lo))
        out[f"uint{bits}"] = {
            "wire_bytes": sum(r["wire_bytes"] for r in replies),
            "raw_bytes": sum(len(r["body"]) for r in replies),
            "latency": summary([r["seconds"] for r in replies]),
            "worst_abs_error": worst,
            "worst_error_per_range": worst_rel,
            "mean_abs_error": total_abs / max(count, 1),
        }
    results["quantised"] = out


def markdown(results):
    lines = [f"# Strict profile vs root — {results['atlas']}", "",
             f"{results['n_cells']} cells × {results['n_genes']} genes; {results['runs']} fresh processes per cell of the table; "
             f"{results['genes']} random genes with the cache, {results['nocache_genes']} without.", ""]
    for key, title in (("with_cache", "with the cache prefix (after precompute)"), ("without_cache", "without a cache")):
        r = results.get(key)
        if not r:
            continue
        lines += [f"## {title}", "", "| measure | root | /strict | strict / root |", "| --- | --- | --- | --- |"]
        rows = [
            ("first paint, cold process (ms, median)", "first_paint_cold_ms", "first_paint_cold"),
            ("first paint, warm (ms, median)", "first_paint_warm_ms", "first_paint_warm"),
        ]
        for label, k, ratio in rows:
            lines.append(f"| {label} | {r['root'][k]:.1f} | {r['strict'][k]:.1f} | {r['ratio'][ratio]:.2f} |")
        for label, k, ratio in (("gene, cold process (ms, median)", "gene_cold", "gene_cold_median"),
                                ("gene, warm (ms, median)", "gene_warm", "gene_warm_median")):
            lines.append(f"| {label} | {r['root'][k]['median_ms']:.2f} | {r['strict'][k]['median_ms']:.2f} | {r['ratio'][ratio]:.2f} |")
        lines.append(f"| first paint store GETs (cold) | {r['root']['first_paint_store_gets']} | {r['strict']['first_paint_store_gets']} | |")
        lines.append("")
    q = results.get("quantised")
    if q:
        lines += ["## quantised genes (strict profile, `--quantize`)", "",
                  f"{results['genes']} random genes, `Accept-Encoding: gzip`, served from the cache prefix.", "",
                  "| payload | bytes on the wire | raw bytes | wire vs float32 | worst abs error | worst error / (max - min) | mean abs error | latency median (ms) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        base = q["float32"]["wire_bytes"]
        for name in ("float32", "uint8", "uint16"):
            r = q[name]
            err = (f"{r['worst_abs_error']:.3g} | {r['worst_error_per_range']:.3g} | {r['mean_abs_error']:.3g}"
                   if name != "float32" else "0 | 0 | 0")
            lines.append(f"| {name} | {r['wire_bytes']:,} | {r['raw_bytes']:,} | {r['wire_bytes'] / base:.3f} | {err} | {r['latency']['median_ms']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    results = {"atlas": args.atlas, "runs": args.runs, "genes": args.genes, "nocache_genes": args.nocache_genes}
    ensure_precompute(args, results)
    probe = Server(args.bin, args.atlas, args.cache)
    try:
        ident = json.loads(probe.get("dataset_identity.json")["body"])
    finally:
        probe.stop()
    n_genes = ident["stats"]["n_genes"]
    results["n_cells"], results["n_genes"] = ident["stats"]["n_cells"], n_genes
    indices = random.Random(args.seed).sample(range(n_genes), min(args.genes, n_genes))
    if not args.only_quantised:
        bench_paint_and_genes(args, indices, args.cache, args.genes, results, "with_cache")
        if args.nocache_genes > 0:
            bench_paint_and_genes(args, indices, None, args.nocache_genes, results, "without_cache")
    bench_quantised(args, indices, results)
    out = args.out or f"bench/results/strict-{Path(args.atlas).name.removesuffix('.zarr')}"
    Path(out + ".json").write_text(json.dumps(results, indent=1) + "\n")
    Path(out + ".md").write_text(markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fast by default: plain `cellucid-edge serve STORE` (no flags) on a local atlas, side by side
with the reference server, one run. A benchmark, not a test.

    cargo build --release --bin cellucid-edge
    python3 bench/fast_default.py /work/data/atlas-1m2k.zarr --genes 100

Timeline of each server (fresh process, 127.0.0.1):
  reference   start-up (it reads the whole AnnData), the first gene (it converts X to CSC), then
              every route the viewer asks (cold = first request, warm = again) and --genes random
              genes, as bench/compare.py measures them.
  edge        `serve STORE` with an empty user cache directory (XDG_CACHE_HOME): start-up, the
              first gene asked at once (while the background warm-up runs), the time until the
              warm-up is done (every artifact and the gene pack in the default local cache: the
              "first transposition"), then the same routes and genes.
  restart     `serve STORE` again with the same cache directory: the same sequence at once
              (nothing is recomputed after a restart).
Every decoded body is compared with the reference's. Results: RESULTS/fast-default-<label>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ServerProcess, free_port  # noqa: E402
from compare import REFERENCE_SERVER, compare_bodies, measure, pick_genes, quote  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def warm(cache_home: Path) -> bool:
    """Whether the default local cache holds the gene pack index and the stored plan's artifacts."""
    root = cache_home / "cellucid-edge"
    for plan_file in root.glob("*/precompute/plan.json"):
        plan = json.loads(plan_file.read_text())
        fp_dir = plan_file.parent.parent
        done = all((fp_dir / key).exists() for key in plan["artifacts"]) and (fp_dir / "genes/pack.index").exists()
        if done:
            return True
    return False


def first_gene(server: ServerProcess) -> dict:
    var = json.loads(server.get("var_manifest.json")["body"])
    gene = pick_genes(var, 1, 7)[0]
    r = server.get(f"var/{quote(gene)}.values.f32")
    return {"gene": gene, "ms": r["seconds"] * 1000, "status": r["status"], "outcome": r.get("outcome")}


def run(cmd, port, env, label, args, cache_home=None, wait_warm=False):
    print(f"{label}: starting", file=sys.stderr, flush=True)
    spawned = time.perf_counter()
    server = ServerProcess(cmd, port, env=env, log_name=label)
    try:
        result = {"startup_s": server.startup_s}
        result["first_gene"] = first_gene(server)
        if wait_warm:
            while not warm(cache_home):
                if time.perf_counter() - spawned > 1800:
                    sys.exit(f"{label}: the local cache was not warm after 30 min")
                time.sleep(0.1)
            result["warm_after_spawn_s"] = time.perf_counter() - spawned
        result.update(measure(server, args.genes, args.seed))
    finally:
        server.stop()
    print(f"{label}: first gene {result['first_gene']['ms']:.0f} ms, gene median "
          f"{result['genes'].get('median_ms', 0):.1f} ms", file=sys.stderr, flush=True)
    return result


def markdown(report) -> str:
    ref, edge, again = (report["results"][k] for k in ("reference", "edge", "restart"))
    lines = [f"### fast by default: {report['label']} ({report['atlas']})", "",
             f"{report['date']}; load average {report['load_before']:.1f} before, {report['load_after']:.1f} after; "
             "plain `serve STORE`, no flags (empty user cache directory, then a restart).", "",
             "| measure | reference | edge (first run) | edge (after restart) |", "|---|---|---|---|",
             f"| start-up to first health (s) | {ref['startup_s']:.2f} | {edge['startup_s']:.2f} | {again['startup_s']:.2f} |",
             f"| first gene (ms) | {ref['first_gene']['ms']:.0f} | {edge['first_gene']['ms']:.0f} "
             f"({edge['first_gene']['outcome'] or 'computed'}) | {again['first_gene']['ms']:.1f} |",
             f"| spawn → warm-up done: every artifact + gene pack cached (s) | — | {edge['warm_after_spawn_s']:.1f} | — |"]
    routes = list(ref["routes"].keys())
    for route in routes:
        def cell(r):
            row = r["routes"].get(route, {})
            c, w = row.get("cold", {}), row.get("warm", {})
            if not c:
                return "—"
            return f"{c['seconds'] * 1000:.1f} / {w.get('seconds', 0) * 1000:.1f}"
        lines.append(f"| `{route}` cold / warm (ms) | {cell(ref)} | {cell(edge)} | {cell(again)} |")
    for key, name in [("median_ms", "gene median, cold (ms)"), ("p99_ms", "gene p99, cold (ms)"),
                      ("warm_median_ms", "gene median, warm (ms)")]:
        lines.append(f"| {name} | {ref['genes'][key]:.1f} | {edge['genes'][key]:.1f} | {again['genes'][key]:.1f} |")
    lines.append(f"| peak RSS (MiB) | {ref['peak_rss_mib'] or 0:.0f} | {edge['peak_rss_mib'] or 0:.0f} | "
                 f"{again['peak_rss_mib'] or 0:.0f} |")
    lines += ["", "Decoded bodies equal to the reference's: " + "; ".join(
        f"{k} {v['identical']}/{v['compared']}" + (f" (differ: {', '.join(v['differ'][:5])})" if v["differ"] else "")
        for k, v in report["bodies"].items())]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("atlas", type=Path)
    p.add_argument("--label", default=None)
    p.add_argument("--bin", default=str(ROOT / "target/release/cellucid-edge"))
    p.add_argument("--ref-python", default=str(ROOT.parent / "venv-ref/bin/python"))
    p.add_argument("--genes", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--results", type=Path, default=ROOT / "bench/results")
    args = p.parse_args()
    label = args.label or args.atlas.name.removesuffix(".zarr")
    cache_home = Path(tempfile.mkdtemp(prefix="fast-default-xdg-"))
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    report = {"label": label, "atlas": str(args.atlas), "load_before": os.getloadavg()[0],
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "results": {}}
    try:
        port = free_port()
        report["results"]["reference"] = run(
            [args.ref_python, "-c", REFERENCE_SERVER, str(args.atlas), str(port)], port, None, "reference", args)
        for label_, wait in [("edge", True), ("restart", False)]:
            port = free_port()
            report["results"][label_] = run(
                [args.bin, "serve", str(args.atlas), "--port", str(port), "--log", "warn"], port, env, label_, args,
                cache_home=cache_home, wait_warm=wait)
    finally:
        shutil.rmtree(cache_home, ignore_errors=True)
    report["load_after"] = os.getloadavg()[0]
    report["bodies"] = compare_bodies(report["results"])
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"fast-default-{label}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    md = markdown(report)
    (args.results / f"fast-default-{label}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

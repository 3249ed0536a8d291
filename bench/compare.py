#!/usr/bin/env python3
"""Side-by-side benchmark: the reference server (cellucid 0.0.9) and cellucid-edge, same store,
one run. A benchmark, not a test.

    cargo build --release --bin cellucid-edge
    python3 bench/compare.py                       # makes/reuses the two synthetic atlases
    python3 bench/compare.py --atlas 100k=/tmp/a.zarr --atlas 1m=/tmp/b.zarr --s3 --genes 100

For every atlas it runs, one server at a time, each on a free 127.0.0.1 port:
  reference    `cellucid.anndata_server.AnnDataServer` (the seed) in the venv of
               bench/reference-env.sh (or --ref-python / $CELLUCID_REF_PYTHON)
  edge         `cellucid-edge serve STORE` — nothing precomputed, everything computed on demand
  edge+cache   `cellucid-edge serve STORE --cache DIR` after `precompute` (time and RSS recorded)
  s3           (--s3) the store on a local moto S3 server, nothing precomputed
  s3+cache     (--s3) the store and a cache prefix on the moto server, after `precompute`
and measures, from a fresh process each:
  * start-up: spawn → first 200 on /_cellucid/health;
  * every route the viewer asks for first (identity, manifests, points, each obs field's codes /
    outliers / values, edges): cold (first request of the process) and warm (the same again);
  * genes: --genes random genes each asked once (the first one reported apart: it is where the
    reference converts all of X to CSC), then the same genes again (warm); median and p99;
  * peak RSS (VmHWM of the server process) after all of that;
  * store GETs per request, from cellucid-edge's Server-Timing;
  * that the decoded bodies equal the reference's (JSON compared parsed, minus `created_at` and
    `source`, which name the run) — a benchmark of a wrong answer is worthless.
Writes RESULTS/compare.json, RESULTS/compare.md (the README table) and, with matplotlib in the
reference venv, RESULTS/compare.png. All traffic stays on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import S3_ENV, ServerProcess, free_port, percentile, start_moto, timed_run, upload  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

REFERENCE_SERVER = r"""
import sys, logging
logging.basicConfig(level=logging.WARNING)
from cellucid.anndata_server import AnnDataServer
s = AnnDataServer(sys.argv[1], port=int(sys.argv[2]), host="127.0.0.1", open_browser=False, quiet=True)
s.start(blocking=True)
"""

# What the viewer fetches before anything is coloured (protocol.md, probe sequence).
FIRST_ROUTES = [
    "dataset_identity.json",
    "obs_manifest.json",
    "var_manifest.json",
    "connectivity_manifest.json",
    "points_3d.bin",
    "points_2d.bin",
]
EDGE_ROUTES = ["connectivity/edges.src.bin", "connectivity/edges.dst.bin"]
CONFIGS = ["reference", "edge", "edge+cache", "s3", "s3+cache"]

DEFAULT_ATLASES = {
    # label: (cells, genes, density)
    "100k": (100_000, 20_000, 0.05),
    "1m": (1_000_000, 2_000, 0.01),
}


def quote(key: str) -> str:
    return urllib.parse.quote(key, safe="")


def safe_name(name: str) -> str:
    """cellucid's file-name form of an obs key (cellucid.prepare_data._safe_filename_component)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return safe or "field"


def digest(route: str, body: bytes) -> str:
    """A hash of what the viewer decodes; JSON compared parsed, minus the per-run fields."""
    if route.endswith(".json") or route.startswith("_cellucid/"):
        try:
            doc = json.loads(body)
        except ValueError:
            return hashlib.sha256(body).hexdigest()
        if isinstance(doc, dict):
            for per_run in ("created_at", "source"):
                doc.pop(per_run, None)
        body = json.dumps(doc, sort_keys=True).encode()
    return hashlib.sha256(body).hexdigest()


def obs_routes(manifest: dict) -> list[str]:
    routes = []
    for field in manifest.get("_categoricalFields", []):
        ext = "u16" if field[2] == "uint16" else "u8"
        routes += [f"obs/{quote(safe_name(field[0]))}.codes.{ext}", f"obs/{quote(safe_name(field[0]))}.outliers.f32"]
    for field in manifest.get("_continuousFields", []):
        routes.append(f"obs/{quote(safe_name(field[0]))}.values.f32")
    return routes


def pick_genes(var_manifest: dict, n: int, seed: int) -> list[str]:
    names = [f[0] for f in var_manifest.get("fields", [])]
    return random.Random(seed).sample(names, min(n, len(names)))


def measure(server: ServerProcess, n_genes: int, seed: int) -> dict:
    """The route sequence of one fresh server process (see the module doc)."""
    out = {"startup_s": server.startup_s, "routes": {}, "digests": {}}

    def record(route, phase, r):
        row = out["routes"].setdefault(route, {})
        row[phase] = {k: r.get(k) for k in ("status", "seconds", "wire_bytes", "gets", "read", "outcome")}
        if phase == "cold":
            out["digests"][route] = digest(route, r["body"]) if r["status"] == 200 else f"status {r['status']}"
        return r

    docs = {}
    for route in FIRST_ROUTES:
        r = record(route, "cold", server.get(route))
        if route.endswith(".json") and r["status"] == 200:
            docs[route] = json.loads(r["body"])
    routes = FIRST_ROUTES + obs_routes(docs.get("obs_manifest.json", {})) + EDGE_ROUTES
    for route in routes[len(FIRST_ROUTES):]:
        record(route, "cold", server.get(route))
    for route in routes:
        record(route, "warm", server.get(route))

    genes = [f"var/{quote(g)}.values.f32" for g in pick_genes(docs.get("var_manifest.json", {}), n_genes, seed)]
    cold = [record(g, "cold", server.get(g)) for g in genes]
    warm = [record(g, "warm", server.get(g)) for g in genes]
    out["genes"] = gene_stats(cold, warm)
    out["peak_rss_mib"] = server.peak_rss_mib()
    return out


def gene_stats(cold: list[dict], warm: list[dict]) -> dict:
    if not cold:
        return {}
    statuses = sorted({r["status"] for r in cold})
    rest = sorted(r["seconds"] * 1000 for r in cold[1:]) or [cold[0]["seconds"] * 1000]
    warm_ms = sorted(r["seconds"] * 1000 for r in warm)
    gets = [r["gets"] for r in cold[1:] if r.get("gets") is not None]
    return {
        "n": len(cold),
        "statuses": statuses,
        "first_ms": cold[0]["seconds"] * 1000,
        "median_ms": statistics.median(rest),
        "p99_ms": percentile(rest, 0.99),
        "warm_median_ms": statistics.median(warm_ms),
        "gets_per_gene": statistics.mean(gets) if gets else None,
    }


def ensure_atlas(label: str, path: Path | None, python: str) -> Path:
    if path is not None:
        if not path.exists():
            sys.exit(f"atlas {label}: {path} does not exist")
        return path
    cells, genes, density = DEFAULT_ATLASES[label]
    path = ROOT / "target" / "bench" / f"atlas-{label}.zarr"
    if not path.exists():
        print(f"[{label}] generating {cells} x {genes} at {density:.0%} -> {path}", file=sys.stderr)
        subprocess.run(
            [python, str(ROOT / "bench" / "make_atlas.py"), str(path), "--cells", str(cells),
             "--genes", str(genes), "--density", str(density), "--format", "3"],
            check=True,
        )
    return path


def reference_python(arg: str | None) -> str:
    py = arg or os.environ.get("CELLUCID_REF_PYTHON")
    if py:
        return py
    venv = subprocess.run(
        ["bash", str(ROOT / "bench" / "reference-env.sh")], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout.strip().splitlines()[-1]
    return str(ROOT / venv / "bin" / "python")


def run_config(config, atlas: Path, args, work: Path, s3=None) -> dict:
    """Starts one server configuration on `atlas`, measures it, stops it."""
    port = free_port()
    env = None
    extra = {}
    if config == "reference":
        cmd = [args.ref_python, "-c", REFERENCE_SERVER, str(atlas), str(port)]
    else:
        store, cache = str(atlas), None
        if config == "edge+cache":
            cache = str(work / "cache")
        if config.startswith("s3"):
            endpoint, bucket, prefix = s3
            env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, **S3_ENV)
            # The store keeps its directory name: the dataset id and name derive from it.
            store = f"s3://{bucket}/{prefix}/{atlas.name}"
            if config == "s3+cache":
                cache = f"s3://{bucket}/{prefix}/cache"
        if cache:
            wall, rss, summary = timed_run(
                [args.bin, "precompute", store, "--cache", cache, "--jobs", str(args.jobs), "--quiet"], env
            )
            extra["precompute"] = {"seconds": wall, "peak_rss_mib": rss, "summary": summary.strip()}
        # `edge` measures nothing precomputed: --no-cache turns off the default local cache of local
        # stores (bench/fast_default.py measures that default).
        no_cache = ["--no-cache"] if config == "edge" else []
        cmd = [args.bin, "serve", store, "--port", str(port), "--log", "warn"] + (["--cache", cache] if cache else no_cache)
    print(f"[{atlas.name}] {config}: starting", file=sys.stderr)
    server = ServerProcess(cmd, port, env=env, log_name=config.replace("+", "-"))
    try:
        result = measure(server, args.genes, args.seed)
    finally:
        server.stop()
    result.update(extra)
    g = result.get("genes", {})
    print(
        f"[{atlas.name}] {config}: start-up {result['startup_s']:.2f} s, peak RSS {result['peak_rss_mib'] or 0:.0f} MiB, "
        f"gene median {g.get('median_ms', 0):.1f} ms",
        file=sys.stderr,
    )
    return result


def compare_bodies(results: dict) -> dict:
    """Per configuration: routes whose decoded body equals the reference's, and those that do not."""
    ref = results.get("reference", {}).get("digests", {})
    out = {}
    for config, r in results.items():
        if config == "reference" or "digests" not in r:
            continue
        digests = {k: d for k, d in r["digests"].items() if k in ref}
        refused = sorted({d for d in digests.values() if d.startswith("status")})
        served = {k: d for k, d in digests.items() if not d.startswith("status")}
        same = [k for k, d in served.items() if ref[k] == d]
        differ = [k for k, d in served.items() if ref[k] != d]
        out[config] = {"identical": len(same), "compared": len(served), "differ": differ,
                       "not_served": len(digests) - len(served), "not_served_as": refused}
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def ms(v):
    return "—" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}")


def route_ms(result, route, phase):
    row = result.get("routes", {}).get(route, {}).get(phase)
    if not row:
        return None, None
    return row["seconds"] * 1000, row["status"]


def cell(result, route, phase="cold"):
    v, status = route_ms(result, route, phase)
    if v is None:
        return "—"
    return ms(v) if status == 200 else f"{ms(v)} ({status})"


def ratio(a, b):
    return "—" if a is None or b is None or b <= 0 else f"{a / b:.0f}×" if a / b >= 10 else f"{a / b:.1f}×"


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}. Date: {report['date']}. Genes per run: {report['genes']}.", ""]
    for label, atlas in report["atlases"].items():
        res = atlas["results"]
        configs = [c for c in CONFIGS if c in res]
        lines += [f"#### {label}: {atlas['shape']}", ""]
        head = "| measure | " + " | ".join(configs) + " | reference ÷ edge+cache |"
        lines += [head, "|---" * (len(configs) + 2) + "|"]
        ref, best = res.get("reference", {}), res.get("edge+cache", {})

        def row(label, values, r=None):
            lines.append(f"| {label} | " + " | ".join(values) + f" | {r or '—'} |")

        row("start-up to first health (s)", [f"{res[c]['startup_s']:.2f}" for c in configs],
            ratio(ref.get("startup_s"), best.get("startup_s")))
        pre = [f"{res[c]['precompute']['seconds']:.0f} s / {res[c]['precompute']['peak_rss_mib']:.0f} MiB"
               if "precompute" in res[c] else "—" for c in configs]
        row("precompute (once): time / peak RSS", pre)
        routes = [r for r in res.get("reference", res[configs[0]])["routes"] if not r.startswith("var/")]
        for route in routes:
            values = [f"{cell(res[c], route)} / {cell(res[c], route, 'warm')}" for c in configs]
            row(f"`{route}` cold / warm (ms)", values,
                ratio(route_ms(ref, route, "cold")[0], route_ms(best, route, "cold")[0]))
        g = {c: res[c].get("genes", {}) for c in configs}
        for key, label_ in [("first_ms", "first gene of the process (ms)"), ("median_ms", "gene median, cold (ms)"),
                            ("p99_ms", "gene p99, cold (ms)"), ("warm_median_ms", "gene median, warm (ms)")]:
            values = []
            for c in configs:
                bad = [s for s in g[c].get("statuses", []) if s != 200]
                values.append(ms(g[c].get(key)) + (f" ({'/'.join(map(str, bad))})" if bad else ""))
            row(label_, values, ratio(g.get("reference", {}).get(key), g.get("edge+cache", {}).get(key)))
        row("peak RSS (MiB)", [f"{res[c]['peak_rss_mib']:.0f}" if res[c].get("peak_rss_mib") else "—" for c in configs],
            ratio(ref.get("peak_rss_mib"), best.get("peak_rss_mib")))
        for config in ("s3", "s3+cache"):
            if config not in res:
                continue
            s3 = res[config]
            gets = [f"`{r}` {s3['routes'][r]['cold'].get('gets')}" for r in routes if r in s3["routes"]]
            lines += ["", f"Store GETs per cold request ({config}): " + ", ".join(gets)
                      + f"; per gene (mean of the cold ones): {s3.get('genes', {}).get('gets_per_gene')}."]
        same = atlas.get("bodies", {})
        if same:
            lines += ["", "Decoded bodies equal to the reference's: " + "; ".join(
                f"{c} {v['identical']}/{v['compared']}"
                + (f" (differ: {', '.join(v['differ'][:5])})" if v["differ"] else "")
                + (f", {v['not_served']} not served ({', '.join(v['not_served_as'])})" if v.get("not_served") else "")
                for c, v in same.items()) + "."]
        lines.append("")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--atlas", action="append", default=[], metavar="LABEL=PATH",
                   help="an AnnData-Zarr store to run on (repeat); default: generate 100k and 1m")
    p.add_argument("--bin", default=str(ROOT / "target" / "release" / "cellucid-edge"))
    p.add_argument("--ref-python", default=None, help="python of a venv with cellucid==0.0.9")
    p.add_argument("--configs", default="reference,edge,edge+cache", help=f"comma list of {CONFIGS}")
    p.add_argument("--s3", action="store_true", help="add s3 and s3+cache (needs moto_server and boto3)")
    p.add_argument("--genes", type=int, default=100)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()

    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} is missing: cargo build --release --bin cellucid-edge")
    configs = [c for c in args.configs.split(",") if c] + (["s3", "s3+cache"] if args.s3 else [])
    if unknown := set(configs) - set(CONFIGS):
        sys.exit(f"unknown configurations {sorted(unknown)}; known: {CONFIGS}")
    args.ref_python = reference_python(args.ref_python) if "reference" in configs else None
    atlases = dict(a.split("=", 1) for a in args.atlas) if args.atlas else {k: None for k in DEFAULT_ATLASES}

    moto = None
    report = {"machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "genes": args.genes,
              "binary": args.bin, "atlases": {}}
    try:
        if any(c.startswith("s3") for c in configs):
            moto, endpoint = start_moto()
        for label, path in atlases.items():
            atlas = ensure_atlas(label, Path(path) if path else None, args.ref_python or sys.executable)
            shape = describe(atlas)
            work = Path(tempfile.mkdtemp(prefix=f"compare-{label}-"))
            results = {}
            s3 = None
            if moto:
                prefix = f"{label}-{int(time.time())}"
                t = time.time()
                n_objects = upload(endpoint, "compare", f"{prefix}/{atlas.name}", atlas)
                print(f"[{label}] uploaded {n_objects} objects to moto in {time.time() - t:.0f} s", file=sys.stderr)
                s3 = (endpoint, "compare", prefix)
            try:
                for config in configs:
                    results[config] = run_config(config, atlas, args, work, s3)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            report["atlases"][label] = {"path": str(atlas), "shape": shape, "results": results,
                                        "bodies": compare_bodies(results)}
    finally:
        if moto:
            moto.terminate()

    args.results.mkdir(parents=True, exist_ok=True)
    for atlas in report["atlases"].values():
        for r in atlas["results"].values():
            r.pop("digests", None)
            # Genes are summarised in "genes"; one row per gene would only bloat the file.
            r["routes"] = {k: v for k, v in r["routes"].items() if not k.startswith("var/")}
    (args.results / "compare.json").write_text(json.dumps(report, indent=1))
    table = markdown(report)
    (args.results / "compare.md").write_text(table)
    print(table)
    chart_python = args.ref_python or sys.executable
    chart = subprocess.run([chart_python, str(ROOT / "bench" / "chart.py"), str(args.results / "compare.json"),
                            str(args.results / "compare.png")], check=False)
    if chart.returncode != 0:
        print("chart skipped (matplotlib missing in the reference venv?)", file=sys.stderr)


def describe(atlas: Path) -> str:
    """`N cells × G genes, NNZ stored values` from the store's consolidated metadata."""
    try:
        if (atlas / "zarr.json").exists():
            meta = json.loads((atlas / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
            x, data = meta["X"]["attributes"], meta["X/data"]["shape"][0]
        else:
            meta = json.loads((atlas / ".zmetadata").read_text())["metadata"]
            x, data = meta["X/.zattrs"], meta["X/data/.zarray"]["shape"][0]
        cells, genes = x["shape"]
        return f"{cells:,} cells × {genes:,} genes, CSR X with {data:,} stored values"
    except (OSError, KeyError, ValueError):
        return atlas.name


if __name__ == "__main__":
    main()

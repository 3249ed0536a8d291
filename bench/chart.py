#!/usr/bin/env python3
"""Draws bench/compare.py's results as a PNG: cold latency per route, reference vs cellucid-edge.

    python bench/chart.py bench/results/compare.json bench/results/compare.png   (needs matplotlib)
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"reference": "#9a9a9a", "edge": "#5b8fd6", "edge+cache": "#1f4e9c", "s3": "#f2b66d", "s3+cache": "#e08a2e"}
SHOWN = ["dataset_identity.json", "obs_manifest.json", "var_manifest.json", "connectivity_manifest.json",
         "points_3d.bin", "connectivity/edges.src.bin"]


def bars(atlas):
    """(labels, {config: [ms, ...]}) for start-up, the first-paint routes, one obs field, genes."""
    res = atlas["results"]
    ref = res.get("reference") or next(iter(res.values()))
    obs = [r for r in ref["routes"] if r.startswith("obs/")][:2]
    labels = ["start-up"] + SHOWN + obs + ["first gene", "gene median", "gene p99"]
    series = {}
    for config, r in res.items():
        vals = [r["startup_s"] * 1000]
        for route in SHOWN + obs:
            row = r["routes"].get(route, {}).get("cold")
            vals.append(row["seconds"] * 1000 if row and row["status"] == 200 else float("nan"))
        g = r.get("genes", {})
        ok = g.get("statuses") == [200]
        vals += [g.get(k, float("nan")) if ok else float("nan") for k in ("first_ms", "median_ms", "p99_ms")]
        series[config] = vals
    return labels, series


def main(src, dst):
    report = json.load(open(src))
    atlases = report["atlases"]
    fig, axes = plt.subplots(1, len(atlases), figsize=(7 * len(atlases), 7), squeeze=False)
    for ax, (label, atlas) in zip(axes[0], atlases.items()):
        labels, series = bars(atlas)
        n = len(series)
        height = 0.8 / n
        for i, (config, vals) in enumerate(series.items()):
            ys = [j + i * height for j in range(len(labels))]
            ax.barh(ys, vals, height=height, label=config, color=COLOURS.get(config))
        ax.set_yticks([j + 0.4 - height / 2 for j in range(len(labels))])
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds, cold (log scale; lower is better)")
        ax.set_title(f"{label}: {atlas['shape']}", fontsize=9)
        ax.grid(axis="x", which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"cellucid 0.0.9 reference vs cellucid-edge — {report['date']}, {report['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

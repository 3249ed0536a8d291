#!/usr/bin/env python
"""Quantised genes without a server (issue 14) — a benchmark, not a test.

    /work/venv-ref/bin/python bench/strict_quantize_sizes.py /work/data/atlas-1m20k.zarr [--genes 100]

For atlases whose genes cannot be served without a multi-minute precompute (a 1e9-value CSR X),
this reads the same random genes as `bench/strict_bench.py` (seed 14) in ONE streamed pass
over X, then measures what the strict profile sends for each: the float32 body, and the
uint8 / uint16 bodies of the reference exporter's quantisation (`cellucid.prepare_data.
_quantize_continuous`, which the server reproduces byte for byte — tests/strict_profile.rs),
each gzip-compressed at level 6 as the server does for bodies under 4 MiB; plus the worst-case
error of the decoded values against float32. On an atlas the server can serve, its figures
match `bench/strict_bench.py`'s wire bytes within gzip implementation noise (zlib vs zlib-rs).

Needs numpy, zarr>=3 and cellucid 0.0.9 (the reference venv). Writes <out>.json / <out>.md.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("atlas")
    p.add_argument("--genes", type=int, default=100)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--out", default=None)
    p.add_argument("--store", default=None,
                   help="also write the gathered genes as a small AnnData-Zarr (dense X, one chunk per "
                        "gene, the atlas's obs index and 2-D UMAP) that `bench/strict_bench.py "
                        "--only-quantised` can serve, to measure the server's own bytes")
    return p.parse_args(argv)


def write_store(atlas, out, cols):
    """An AnnData-Zarr with X = the gathered columns (cells × genes, dense float32)."""
    import anndata as ad
    import pandas as pd
    import zarr

    src = zarr.open_group(atlas, mode="r")
    umap = src["obsm"]["X_umap_2d"][:]
    n = cols.shape[1]
    adata = ad.AnnData(
        X=np.ascontiguousarray(cols.T),
        obs=pd.DataFrame(index=pd.RangeIndex(n).astype(str)),
        var=pd.DataFrame(index=[f"g{i}" for i in range(cols.shape[0])]),
        obsm={"X_umap_2d": umap},
    )
    ad.settings.zarr_write_format = 3
    adata.write_zarr(out, chunks=(n, 1))
    zarr.consolidate_metadata(out)


def gather_columns(path, genes):
    """The dense float32 columns of `genes` from CSR X, in one pass over data/indices."""
    import zarr

    x = zarr.open_group(path, mode="r")["X"]
    n_cells, n_genes = x.attrs["shape"]
    indptr = x["indptr"][:]
    data, indices = x["data"], x["indices"]
    nnz = int(indptr[-1])
    wanted = np.full(n_genes, -1, dtype=np.int64)
    wanted[np.asarray(genes)] = np.arange(len(genes))
    cols = np.zeros((len(genes), n_cells), dtype=np.float32)
    step = data.chunks[0] * 8
    t0 = time.time()
    for start in range(0, nnz, step):
        end = min(nnz, start + step)
        idx = indices[start:end]
        slot = wanted[idx]
        hit = np.nonzero(slot >= 0)[0]
        if len(hit):
            vals = data[start:end][hit]
            rows = np.searchsorted(indptr, start + hit, side="right") - 1
            np.add.at(cols, (slot[hit], rows), vals)
        if (start // step) % 50 == 0:
            print(f"  X {end:,}/{nnz:,} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return n_cells, n_genes, cols


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    from cellucid.prepare_data import _quantize_continuous

    import zarr

    n_genes = zarr.open_group(args.atlas, mode="r")["X"].attrs["shape"][1]
    genes = random.Random(args.seed).sample(range(n_genes), min(args.genes, n_genes))
    n_cells, n_genes, cols = gather_columns(args.atlas, genes)
    if args.store:
        write_store(args.atlas, args.store, cols)
    out = {"atlas": args.atlas, "n_cells": int(n_cells), "n_genes": int(n_genes), "genes": len(genes)}
    sizes = {"float32": [0, 0], "uint8": [0, 0], "uint16": [0, 0]}
    worst = {8: [0.0, 0.0, 0.0, 0], 16: [0.0, 0.0, 0.0, 0]}
    for col in cols:
        raw = col.astype("<f4").tobytes()
        sizes["float32"][0] += len(gzip.compress(raw, compresslevel=6))
        sizes["float32"][1] += len(raw)
        for bits in (8, 16):
            q, lo, hi, _scale, _ = _quantize_continuous(col, bits=bits)
            body = q.astype(np.uint8 if bits == 8 else "<u2").tobytes()
            sizes[f"uint{bits}"][0] += len(gzip.compress(body, compresslevel=6))
            sizes[f"uint{bits}"][1] += len(body)
            max_code = 254 if bits == 8 else 65534
            finite = np.isfinite(col)
            decoded = lo + q[finite].astype(np.float64) * (hi - lo) / max_code
            err = np.abs(col[finite].astype(np.float64) - decoded)
            w = worst[bits]
            w[0] = max(w[0], float(err.max(initial=0.0)))
            if hi > lo:
                w[1] = max(w[1], float(err.max(initial=0.0)) / (hi - lo))
            w[2] += float(err.sum())
            w[3] += int(finite.sum())
    base = sizes["float32"][0]
    for name, (wire, raw) in sizes.items():
        entry = {"gzip_bytes": wire, "raw_bytes": raw, "vs_float32": wire / base}
        if name != "float32":
            w = worst[int(name.removeprefix("uint"))]
            entry.update(worst_abs_error=w[0], worst_error_per_range=w[1], mean_abs_error=w[2] / max(w[3], 1))
        out[name] = entry
    stem = args.out or f"bench/results/strict-quantize-{Path(args.atlas).name.removesuffix('.zarr')}"
    Path(stem + ".json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# Quantised genes — {args.atlas}", "",
             f"{n_cells:,} cells × {n_genes:,} genes; {len(genes)} random genes (seed {args.seed}); gzip level 6.", "",
             "| payload | gzip bytes | raw bytes | vs float32 | worst abs error | worst error / (max - min) | mean abs error |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("float32", "uint8", "uint16"):
        e = out[name]
        err = (f"{e['worst_abs_error']:.3g} | {e['worst_error_per_range']:.3g} | {e['mean_abs_error']:.3g}"
               if name != "float32" else "0 | 0 | 0")
        lines.append(f"| {name} | {e['gzip_bytes']:,} | {e['raw_bytes']:,} | {e['vs_float32']:.3f} | {err} |")
    Path(stem + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

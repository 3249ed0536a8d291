#!/usr/bin/env python
"""Synthetic single-cell atlas generator (AnnData-Zarr, CSR X), streaming: X is written in row
blocks and never held, so 1M cells x 20k genes at ~5% density (~1e9 stored values) fits in a
few hundred MB of memory.

    python bench/make_atlas.py OUT.zarr --cells 100000 --genes 20000 --density 0.05 --format 3

What it writes (what the reference server and cellucid-edge serve):
  obs     cell_type (categorical, 32 types), batch (categorical, 8), leiden (categorical, 64),
          n_counts, pct_mito (float32)
  var     gene names GENE00000...
  obsm    X_umap_2d (n x 2), X_umap_3d (n x 3), X_pca (n x 16, the latent space)
  obsp    connectivities: CSR, `--neighbours` (default 16) neighbours per cell, same type
  X       CSR float32 (log1p of Poisson counts), chunks of `--chunk` stored values

Everything but X is written by anndata itself (`write_zarr`), then X is streamed into the
store with zarr and the metadata re-consolidated; the result opens with `anndata.read_zarr`.
Needs numpy, zarr>=3, anndata>=0.11 (`pip install numpy 'zarr>=3' anndata`).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output store directory (must not exist)")
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--density", type=float, default=0.05, help="fraction of non-zero entries of X")
    p.add_argument("--format", type=int, choices=[2, 3], default=3, help="zarr format")
    p.add_argument("--neighbours", type=int, default=16)
    p.add_argument("--block-rows", type=int, default=0, help="rows per generated block (default: ~8M values)")
    p.add_argument("--chunk", type=int, default=1 << 20, help="chunk length of X/data and X/indices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verify", action="store_true", help="re-open with anndata and check shapes")
    return p.parse_args(argv)


def skeleton(args, rng):
    """Everything but X, as an AnnData (obs, var, obsm, obsp)."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    n, g = args.cells, args.genes
    n_types = 32
    cell_type = rng.integers(0, n_types, n)
    centres = rng.normal(0, 10, size=(n_types, 16))
    pca = (centres[cell_type] + rng.normal(0, 1.5, size=(n, 16))).astype(np.float32)
    proj2 = rng.normal(size=(16, 2))
    proj3 = rng.normal(size=(16, 3))
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(cell_type, [f"type_{i:02d}" for i in range(n_types)]),
            "batch": pd.Categorical.from_codes(rng.integers(0, 8, n), [f"batch_{i}" for i in range(8)]),
            "leiden": pd.Categorical.from_codes(
                (cell_type * 2 + rng.integers(0, 2, n)).astype(np.int64), [str(i) for i in range(2 * n_types)]
            ),
            "n_counts": rng.gamma(4.0, 500.0, n).astype(np.float32),
            "pct_mito": rng.beta(2, 40, n).astype(np.float32),
        },
        index=pd.Index([f"cell{i:07d}" for i in range(n)]),
    )
    var = pd.DataFrame(index=pd.Index([f"GENE{i:05d}" for i in range(g)]))
    # Connectivities: `neighbours` cells of the same type per cell (random, deterministic).
    k = args.neighbours
    order = np.argsort(cell_type, kind="stable")
    sorted_types = cell_type[order]
    starts = np.searchsorted(sorted_types, np.arange(n_types))
    ends = np.searchsorted(sorted_types, np.arange(n_types), side="right")
    t = cell_type
    span = np.maximum(ends[t] - starts[t], 1)
    picks = starts[t][:, None] + (rng.integers(0, 1 << 62, size=(n, k)) % span[:, None])
    cols = np.sort(order[picks], axis=1)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    conn = sp.csr_matrix(
        (rng.uniform(0.05, 1.0, n * k).astype(np.float32), cols.reshape(-1).astype(np.int32), indptr),
        shape=(n, n),
    )
    conn.sum_duplicates()
    adata = ad.AnnData(
        obs=obs,
        var=var,
        obsm={
            "X_umap_2d": (pca @ proj2).astype(np.float32),
            "X_umap_3d": (pca @ proj3).astype(np.float32),
            "X_pca": pca,
        },
        obsp={"connectivities": conn},
    )
    adata.uns["synthetic"] = {"cells": n, "genes": g, "density": args.density, "seed": args.seed}
    return adata


def stream_x(args, root, rng):
    """Write CSR X into `root['X']` in row blocks; returns the number of stored values."""
    import zarr

    n, g = args.cells, args.genes
    block = args.block_rows or max(1, int(8_000_000 / max(1.0, g * args.density)))
    capacity = int(n * g * args.density * 1.02) + g * 64 + args.chunk
    group = root.create_group("X")
    group.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": [n, g]})
    data = group.create_array("data", shape=(capacity,), chunks=(args.chunk,), dtype="float32")
    indices = group.create_array("indices", shape=(capacity,), chunks=(args.chunk,), dtype="int32")
    indptr = np.zeros(n + 1, dtype=np.int64)
    nnz = 0
    started = time.time()
    pending_d, pending_i = [], []  # buffered so writes align with chunks
    flushed = 0

    def flush(final=False):
        nonlocal pending_d, pending_i, flushed
        if not pending_d:
            return
        d = np.concatenate(pending_d)
        i = np.concatenate(pending_i)
        upto = len(d) if final else (len(d) // args.chunk) * args.chunk
        if upto == 0:
            return
        data[flushed : flushed + upto] = d[:upto]
        indices[flushed : flushed + upto] = i[:upto]
        flushed += upto
        pending_d, pending_i = [d[upto:]], [i[upto:]]

    for start in range(0, n, block):
        rows = min(block, n - start)
        mask = rng.random((rows, g), dtype=np.float32) < args.density
        r, c = np.nonzero(mask)
        counts = np.bincount(r, minlength=rows)
        values = np.log1p(rng.poisson(2.0, len(c)).astype(np.float32) + 1.0).astype(np.float32)
        indptr[start + 1 : start + rows + 1] = nnz + np.cumsum(counts)
        nnz += len(c)
        if nnz > capacity:
            sys.exit(f"capacity {capacity} exceeded; lower the density variance or raise --density")
        pending_d.append(values)
        pending_i.append(c.astype(np.int32))
        if sum(len(x) for x in pending_d) >= args.chunk:
            flush()
        done = start + rows
        if done == n or (start // block) % 20 == 0:
            rate = nnz / max(1e-9, time.time() - started)
            print(f"  X rows {done}/{n}  nnz {nnz:,}  ({rate / 1e6:.1f} M values/s)", file=sys.stderr)
    flush(final=True)
    data.resize((nnz,))
    indices.resize((nnz,))
    group.create_array("indptr", data=indptr, chunks=(min(n + 1, 1 << 20),))
    return nnz


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    import anndata as ad
    import zarr

    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    ad.settings.zarr_write_format = args.format
    adata = skeleton(args, rng)
    adata.write_zarr(args.out)
    del adata
    print(f"obs/var/obsm/obsp written in {time.time() - t0:.1f}s", file=sys.stderr)
    root = zarr.open_group(args.out, mode="r+", zarr_format=args.format)
    nnz = stream_x(args, root, rng)
    zarr.consolidate_metadata(args.out, zarr_format=args.format)
    print(
        f"wrote {args.out}: {args.cells} cells x {args.genes} genes, {nnz:,} stored values "
        f"({nnz / (args.cells * args.genes):.3%}), zarr v{args.format}, {time.time() - t0:.1f}s",
        file=sys.stderr,
    )
    if args.verify:
        verify(args.out, args, nnz)


def verify(path, args, nnz):
    """Re-open with anndata: everything but X eagerly, X lazily (a sparse dataset)."""
    import anndata as ad
    import zarr
    from anndata.io import read_elem, sparse_dataset

    group = zarr.open_group(path, mode="r")
    obs = read_elem(group["obs"])
    assert len(obs) == args.cells and str(obs["cell_type"].dtype) == "category"
    assert read_elem(group["obsm"])["X_umap_3d"].shape == (args.cells, 3)
    assert read_elem(group["obsp"])["connectivities"].shape == (args.cells, args.cells)
    x = sparse_dataset(group["X"])
    assert x.shape == (args.cells, args.genes) and x.format == "csr"
    head = x[: min(100, args.cells)]
    assert head.shape[1] == args.genes
    if args.cells * args.genes <= 50_000_000:
        a = ad.read_zarr(path)
        assert a.X.nnz == nnz, (a.X.nnz, nnz)
    print("verified with anndata", file=sys.stderr)


if __name__ == "__main__":
    main()

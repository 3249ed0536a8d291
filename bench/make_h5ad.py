#!/usr/bin/env python
"""Write a synthetic AnnData .h5ad with a CSR X of N_OBS x N_VARS and NNZ_PER_ROW stored
values per row (float32 counts, int32 indices), streamed to disk in row blocks (never the
whole X in memory). obs has a categorical and a float column, obsm a 2-D UMAP.

usage: make_h5ad.py OUT.h5ad [--n-obs 100000] [--n-vars 20000] [--nnz-per-row 1000] [--gzip]
                   [--auto-chunks]

--gzip writes every dataset gzip-compressed with the shuffle filter (h5py `compression="gzip",
shuffle=True`), the layout of a `write_h5ad(compression="gzip")` file. X's `data`/`indices` are
chunked by 2^20 elements (4 MiB), or with --auto-chunks as anndata's `write_h5ad` chunks them
(h5py's automatic chunk shape for a resizable dataset: tens of KiB).
"""
from __future__ import annotations

import argparse

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from anndata.io import write_elem


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n-obs", type=int, default=100_000)
    ap.add_argument("--n-vars", type=int, default=20_000)
    ap.add_argument("--nnz-per-row", type=int, default=1_000)
    ap.add_argument("--block", type=int, default=5_000)
    ap.add_argument("--gzip", action="store_true", help="gzip + shuffle every dataset")
    ap.add_argument("--auto-chunks", action="store_true", help="h5py's chunk shape, as anndata writes")
    a = ap.parse_args()
    n, g, k = a.n_obs, a.n_vars, a.nnz_per_row
    assert g % k == 0, "n_vars must be a multiple of nnz_per_row"
    step = g // k
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {"cluster": pd.Categorical(rng.integers(0, 20, n).astype(str)),
         "score": rng.normal(size=n).astype(np.float32)},
        index=[f"cell{i}" for i in range(n)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(g)])
    skeleton = ad.AnnData(obs=obs, var=var)
    skeleton.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
    filters = {"compression": "gzip", "shuffle": True} if a.gzip else {}
    filters["chunks"] = True if a.auto_chunks else (1 << 20,)
    if a.auto_chunks:
        filters["maxshape"] = (None,)
    skeleton.write_h5ad(a.out, compression="gzip" if a.gzip else None)  # everything but X
    with h5py.File(a.out, "r+") as f:
        if "X" in f:
            del f["X"]
        x = f.create_group("X")
        x.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": np.array([n, g])})
        nnz = n * k
        data = x.create_dataset("data", shape=(nnz,), dtype=np.float32, **filters)
        indices = x.create_dataset("indices", shape=(nnz,), dtype=np.int32, **filters)
        write_elem(x, "indptr", np.arange(0, nnz + 1, k, dtype=np.int64))
        base = (np.arange(k) * step).astype(np.int32)
        for r0 in range(0, n, a.block):
            rows = min(a.block, n - r0)
            cols = base[None, :] + rng.integers(0, step, size=(rows, k), dtype=np.int32)
            data[r0 * k:(r0 + rows) * k] = rng.integers(1, 20, size=rows * k).astype(np.float32)
            indices[r0 * k:(r0 + rows) * k] = cols.ravel()
    print(f"wrote {a.out}: {n} x {g}, {n * k} stored values")


if __name__ == "__main__":
    main()

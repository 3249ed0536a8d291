#!/usr/bin/env python
"""Write a synthetic AnnData .h5ad with a CSR X of N_OBS x N_VARS and NNZ_PER_ROW stored
values per row (float32 counts, int32 indices), streamed to disk in row blocks (never the
whole X in memory). obs has a categorical and a float column, obsm a 2-D UMAP.

usage: make_h5ad.py OUT.h5ad [--n-obs 100000] [--n-vars 20000] [--nnz-per-row 1000]
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
    skeleton.write_h5ad(a.out)  # everything but X
    with h5py.File(a.out, "r+") as f:
        if "X" in f:
            del f["X"]
        x = f.create_group("X")
        x.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": np.array([n, g])})
        nnz = n * k
        data = x.create_dataset("data", shape=(nnz,), dtype=np.float32, chunks=(1 << 20,))
        indices = x.create_dataset("indices", shape=(nnz,), dtype=np.int32, chunks=(1 << 20,))
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

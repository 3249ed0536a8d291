#!/usr/bin/env python
"""Check that an AnnData-Zarr store written by `cellucid-edge convert` opens in Python anndata
(`anndata.read_zarr`) with the same content as the `.h5ad` it came from.

usage: anndata_equal.py INPUT.h5ad OUTPUT.zarr [--skip KEY ...]

--skip names h5ad datasets `convert` reported as skipped (e.g. `uns/rank_genes_groups/names`);
their uns entries are left out of the comparison. Exits 0 and prints "equal" when equal,
exits 1 with the differences otherwise.
"""
from __future__ import annotations

import argparse
import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

diffs: list[str] = []


def same_array(path: str, a, b) -> None:
    if sparse.issparse(a) or sparse.issparse(b):
        if not (sparse.issparse(a) and sparse.issparse(b)):
            diffs.append(f"{path}: sparse vs dense")
            return
        if a.format != b.format or a.shape != b.shape or a.dtype != b.dtype:
            diffs.append(f"{path}: {a.format} {a.shape} {a.dtype} vs {b.format} {b.shape} {b.dtype}")
            return
        for part in ("data", "indices", "indptr"):
            if not np.array_equal(getattr(a, part), getattr(b, part)):
                diffs.append(f"{path}.{part} differs")
        return
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "OTU" and b.dtype.kind in "OTU":
        # anndata reads Zarr string arrays as numpy StringDType, HDF5 ones as object arrays
        # (the same happens for anndata's own write_zarr): compare the strings.
        if a.shape != b.shape or [str(x) for x in a.ravel()] != [str(x) for x in b.ravel()]:
            diffs.append(f"{path}: strings differ")
        return
    if a.shape != b.shape or a.dtype != b.dtype:
        diffs.append(f"{path}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
    elif a.dtype.kind in "fc":
        if not np.array_equal(a, b, equal_nan=True):
            diffs.append(f"{path}: values differ")
    elif not np.array_equal(a, b):
        diffs.append(f"{path}: values differ")


def same_frame(path: str, a: pd.DataFrame, b: pd.DataFrame) -> None:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError as e:
        diffs.append(f"{path}: {e}")
    if list(a.columns) != list(b.columns):
        diffs.append(f"{path}: column order {list(a.columns)} vs {list(b.columns)}")


def same_value(path: str, a, b, skip: set[str]) -> None:
    if path in skip:
        return
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            diffs.append(f"{path}: dict vs {type(b).__name__}")
            return
        ka = {k for k in a if f"{path}/{k}" not in skip}
        kb = set(b)
        if ka != kb:
            diffs.append(f"{path}: keys {sorted(ka ^ kb)} differ")
        for k in ka & kb:
            same_value(f"{path}/{k}", a[k], b[k], skip)
    elif isinstance(a, pd.DataFrame):
        same_frame(path, a, b)
    elif isinstance(a, (np.ndarray, sparse.spmatrix, sparse.sparray)) or sparse.issparse(a):
        same_array(path, a, b)
    elif a != b and not (a is None and b is None):
        diffs.append(f"{path}: {a!r} vs {b!r}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("h5ad")
    ap.add_argument("zarr")
    ap.add_argument("--skip", nargs="*", default=[])
    args = ap.parse_args()
    skip = set(args.skip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ad.read_h5ad(args.h5ad)
        b = ad.read_zarr(args.zarr)
    if a.shape != b.shape:
        diffs.append(f"shape {a.shape} vs {b.shape}")
    same_array("X", a.X, b.X)
    same_frame("obs", a.obs, b.obs)
    same_frame("var", a.var, b.var)
    for name in ("obsm", "varm", "obsp", "varp", "layers"):
        ma, mb = getattr(a, name), getattr(b, name)
        if list(ma.keys()) != list(mb.keys()):
            diffs.append(f"{name} keys {list(ma.keys())} vs {list(mb.keys())}")
        for k in set(ma.keys()) & set(mb.keys()):
            same_array(f"{name}/{k}", ma[k], mb[k])
    same_value("uns", dict(a.uns), dict(b.uns), skip)
    if (a.raw is None) != (b.raw is None):
        diffs.append("raw present in only one")
    elif a.raw is not None:
        same_array("raw/X", a.raw.X, b.raw.X)
        same_frame("raw/var", a.raw.var, b.raw.var)
    if diffs:
        print("DIFFERENT:\n  " + "\n  ".join(diffs))
        return 1
    print(f"equal: {args.zarr} ({a.n_obs} x {a.n_vars})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

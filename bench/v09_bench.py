#!/usr/bin/env python3
"""Benchmarks of the 0.9 protocol (issue 8). Everything runs on 127.0.0.1.

    python3 bench/v09_bench.py [--binary target/release/cellucid-edge] [--runs 400]
                               [--cells 1000000] [--genes 200] [--density 0.02]

Needs `moto[server]` (moto_server, boto3) and numpy/scipy/anndata for the generated atlas (the
reference venv: bash ../shared/tools/reference-env.sh /work/venv-ref; run this script with
/work/venv-ref/bin/python after `pip install 'moto[server]'` there, or point --python-gen at it).

1. Latency a ranged read through the function adds over the store's own latency: a moto S3
   server holds an atlas; `cellucid-edge serve s3://…` runs against it. Interleaved ranged GETs
   (keep-alive, 4 KiB at random offsets of one chunk) go (a) straight to moto (a presigned
   GET, moto's own latency) and (b) to `/v0.9/_cellucid/anndata/<id>.zarr/<key>`. Reported:
   median and p90 of each and of the difference. Goal: < 5 ms added.
2. Objects touched to read one gene of a Cellucid-ready copy: a CSR atlas of --cells x --genes
   is generated, `cellucid-edge ready` writes the copy, and for every gene the objects a
   reader fetches (chunks of X/data and X/indices covering indptr[g]..indptr[g+1]; indptr is
   read once at open) are counted from the copy's indptr. Goal: <= 2.
"""
import argparse
import http.client
import json
import os
import pathlib
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def generate_atlas(out, cells, genes, density, seed=0):
    import anndata as ad
    import numpy as np
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(seed)
    X = sparse.random(cells, genes, density=density, format="csr", dtype=np.float32, random_state=rng)
    obs = pd.DataFrame({"cluster": pd.Categorical(rng.integers(0, 12, cells).astype(str))},
                       index=[f"c{i}" for i in range(cells)])
    var = pd.DataFrame(index=[f"G{i}" for i in range(genes)])
    a = ad.AnnData(X=X, obs=obs, var=var)
    a.obsm["X_umap"] = rng.standard_normal((cells, 2)).astype(np.float32)
    a.write_zarr(out)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency(args, tmp):
    moto_port, serve_port = free_port(), free_port()
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")
    moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    serve = None
    try:
        wait_port(moto_port)
        import boto3
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="bench")
        store = ROOT / "tests/fixtures/stores/pbmc68k.v2.zarr"
        for path in store.rglob("*"):
            if path.is_file():
                s3.put_object(Bucket="bench", Key=f"atlas.zarr/{path.relative_to(store).as_posix()}",
                              Body=path.read_bytes())
        key = "X/0.0"
        size = (store / key).stat().st_size
        serve = subprocess.Popen([args.binary, "serve", "s3://bench/atlas.zarr", "--port", str(serve_port),
                                  "--log", "warn"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
        wait_port(serve_port, 120)
        docs = http.client.HTTPConnection("127.0.0.1", serve_port)
        docs.request("GET", "/v0.9/_cellucid/datasets", headers={"Host": f"127.0.0.1:{serve_port}"})
        url = json.loads(docs.getresponse().read())["datasets"][0]["anndata"]["file"]["url"]
        # The store's own latency: a presigned GET (signed once, like the function's redirect).
        signed = s3.generate_presigned_url("get_object", Params={"Bucket": "bench", "Key": f"atlas.zarr/{key}"},
                                           ExpiresIn=3600)
        direct_path = signed.split(f"127.0.0.1:{moto_port}", 1)[1]
        direct = http.client.HTTPConnection("127.0.0.1", moto_port)
        proxied = http.client.HTTPConnection("127.0.0.1", serve_port)
        span = 4096
        rng = random.Random(1)
        a, b = [], []

        def timed(conn, path, headers):
            t = time.perf_counter()
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            dt = (time.perf_counter() - t) * 1000
            assert r.status == 206, (path, r.status, body[:200])
            return dt, body

        for i in range(args.runs + 20):
            start = rng.randrange(0, max(1, size - span))
            rng_h = {"Range": f"bytes={start}-{start + span - 1}"}
            d1, x = timed(direct, direct_path, rng_h)
            d2, y = timed(proxied, f"/v0.9/{url}{key}", dict(rng_h, Host=f"127.0.0.1:{serve_port}"))
            assert x == y
            if i >= 20:  # warm-up
                a.append(d1)
                b.append(d2)
        diff = [y - x for x, y in zip(a, b)]
        return {
            "runs": len(a), "range_bytes": span,
            "moto_direct_ms": {"median": statistics.median(a), "p90": pct(a, 0.9)},
            "through_function_ms": {"median": statistics.median(b), "p90": pct(b, 0.9)},
            "added_ms": {"median": statistics.median(diff), "p90": pct(diff, 0.9)},
        }
    finally:
        if serve:
            serve.terminate()
            serve.wait(10)
        moto.terminate()
        moto.wait(10)


def objects_per_gene(args, tmp):
    import numpy as np
    import zarr

    src = tmp / "big.zarr"
    t = time.time()
    generate_atlas(src, args.cells, args.genes, args.density)
    gen_s = time.time() - t
    out = tmp / "big.ready.zarr"
    t = time.time()
    subprocess.run([args.binary, "ready", str(src), "--out", str(out), "--log", "warn"], check=True)
    ready_s = time.time() - t
    g = zarr.open_group(str(out), mode="r")
    indptr = np.asarray(g["X/indptr"][:], dtype=np.int64)
    chunk = g["X/data"].chunks[0]
    assert g["X/indices"].chunks[0] == chunk
    first = indptr[:-1] // chunk
    last = np.maximum(indptr[1:] - 1, indptr[:-1]) // chunk
    per_array = np.where(indptr[1:] > indptr[:-1], last - first + 1, 0)
    data_only = per_array
    total = 2 * per_array
    nnz = np.diff(indptr)
    return {
        "cells": args.cells, "genes": args.genes, "density": args.density, "nnz": int(indptr[-1]),
        "generate_s": round(gen_s, 1), "ready_s": round(ready_s, 1), "chunk": int(chunk),
        "nnz_per_gene_median": float(np.median(nnz)),
        "objects_per_gene_values_only": {"max": int(data_only.max()), "median": float(np.median(data_only))},
        "objects_per_gene_values_and_rows": {"max": int(total.max()), "median": float(np.median(total)),
                                             "share_le_2": float(np.mean(total <= 2))},
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=str(ROOT.parent / "main/target/release/cellucid-edge"))
    p.add_argument("--runs", type=int, default=400)
    p.add_argument("--cells", type=int, default=1_000_000)
    p.add_argument("--genes", type=int, default=200)
    p.add_argument("--density", type=float, default=0.02)
    p.add_argument("--only", choices=["latency", "objects"])
    args = p.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="v09-bench-"))
    try:
        result = {}
        if args.only in (None, "latency"):
            result["latency"] = latency(args, tmp)
        if args.only in (None, "objects"):
            result["objects"] = objects_per_gene(args, tmp)
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Memory of a catalogue under load: `cellucid-edge serve DIR` on a directory of N atlases (links
# to one generated atlas, each opened as its own dataset) with one memory budget, loaded by wrk
# (bench/load.lua) with every atlas's obs fields, outliers and point sets — the buffers that
# grow with the number of atlases (embeddings, obs columns, the latent space). RSS is sampled
# every second. Prints wrk's SUMMARY line and an RSS_SUMMARY line.
#
#   bash bench/catalogue_memory.sh ATLAS [--atlases 5] [--budget-mb 256] [--duration 30s]
#        [--connections 64] [--bin PATH]
#
# ATLAS: an AnnData-Zarr store (e.g. /work/data/atlas-1m2k.zarr from bench/make_atlas.py).
# Needs `wrk`. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

ATLAS=""
N=5
BUDGET_MB=256
DURATION=30s
CONNECTIONS=64
BIN=${CELLUCID_BIN:-${CARGO_TARGET_DIR:-target}/release/cellucid-edge}
PORT=${LOAD_PORT:-18766}
while [ $# -gt 0 ]; do
  case "$1" in
    --atlases) N=$2; shift 2 ;;
    --budget-mb) BUDGET_MB=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    *) ATLAS=$1; shift ;;
  esac
done
[ -n "$ATLAS" ] && [ -d "$ATLAS" ] || { echo "usage: $0 ATLAS.zarr [options]" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release --bin cellucid-edge

OUT=target/catalogue-load
rm -rf "$OUT" && mkdir -p "$OUT/atlases"
for i in $(seq 1 "$N"); do ln -s "$(realpath "$ATLAS")" "$OUT/atlases/atlas$i.zarr"; done

"$BIN" serve "$OUT/atlases" --port "$PORT" --memory-cache-bytes $((BUDGET_MB << 20)) --log warn \
  >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 600); do
  curl -fsS "$BASE/_cellucid/health" >/dev/null 2>&1 && break
  sleep 0.1
done

# Every atlas's obs fields (values / codes + outliers) and point sets, from its manifests.
python3 - "$BASE" "$OUT/routes.txt" <<'PY'
import json, sys, urllib.parse, urllib.request
base, out = sys.argv[1], sys.argv[2]
get = lambda p: urllib.request.urlopen(base + p, timeout=600)
q = lambda k: urllib.parse.quote(k, safe="")
lines = []
for d in json.load(get("/_cellucid/datasets"))["datasets"]:
    root = d["path"].rstrip("/")
    obs = json.load(get(root + "/obs_manifest.json"))
    lines += [f"{root}/obs/{q(f[0])}.values.f32" for f in obs["_continuousFields"]]
    for f in obs["_categoricalFields"]:
        ext = "u8" if f[2] == "uint8" else "u16"
        lines += [f"{root}/obs/{q(f[0])}.codes.{ext}", f"{root}/obs/{q(f[0])}.outliers.f32"]
    ident = json.load(get(root + "/dataset_identity.json"))
    lines += [f"{root}/points_{d}d.bin" for d in ident["embeddings"]["available_dimensions"]]
open(out, "w").write("\n".join(lines) + "\n")
print(f"{len(lines)} routes over the catalogue", file=sys.stderr)
PY

echo "t_s,rss_kib" >"$OUT/rss.csv"
( start=$(date +%s); while kill -0 $SERVER 2>/dev/null; do
    echo "$(( $(date +%s) - start )),$(ps -o rss= -p $SERVER | tr -d ' ')" >>"$OUT/rss.csv"; sleep 1
  done ) &
SAMPLER=$!
wrk -t 2 -c "$CONNECTIONS" -d "$DURATION" --latency --timeout 30s \
  -s bench/load.lua "$BASE" -- "$OUT/routes.txt" | tee "$OUT/wrk.txt" | grep SUMMARY
kill $SAMPLER 2>/dev/null || true
python3 - "$OUT/rss.csv" <<'PY'
import csv, sys
rows = [(int(r["t_s"]), int(r["rss_kib"])) for r in csv.DictReader(open(sys.argv[1])) if r["rss_kib"]]
mib = lambda k: k / 1024
n = len(rows)
print("RSS MiB over time:", " ".join(f"{t}s={mib(k):.0f}" for t, k in rows[:: max(1, n // 12)]))
tail = [k for _, k in rows[n // 2:]]
print(f"RSS_SUMMARY start={mib(rows[0][1]):.0f}MiB max={mib(max(k for _, k in rows)):.0f}MiB "
      f"second_half_min={mib(min(tail)):.0f}MiB second_half_max={mib(max(tail)):.0f}MiB")
PY

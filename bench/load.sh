#!/usr/bin/env bash
# Load test: `wrk` against `cellucid-edge serve` (release build) on a 100k-cell atlas — 64
# connections, 60 s, a mix of genes (50 %), obs fields (30 %) and points (20 %) — with the
# server's RSS sampled every 2 s. Prints wrk's latency distribution and a SUMMARY line, and
# writes target/load/{routes.txt,rss.csv,wrk.txt}.
#
#   bash bench/load.sh [STORE] [--duration 60s] [--connections 64] [--cache URL]
#
# --cache serves with that cache prefix (e.g. one `cellucid-edge precompute` filled: genes then
# come from the gene-major pack, one ranged read each).
#
# STORE defaults to a synthetic atlas made by bench/make_atlas.py (100 000 cells x 2 000 genes,
# 2 % density, CSR X; needs `pip install numpy 'zarr>=3' anndata`), or, without the generator, the
# pbmc68k fixture (700 cells; say so when reporting). Needs `wrk` (apt-get install -y wrk).
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

STORE=""
CACHE_ARGS=()
DURATION=60s
CONNECTIONS=64
THREADS=2
PORT=${LOAD_PORT:-18765}
MEMORY_CACHE=${LOAD_MEMORY_CACHE:-$((128 << 20))}
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --cache) CACHE_ARGS=(--cache "$2"); shift 2 ;;
    *) STORE=$1; shift ;;
  esac
done

OUT=target/load
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

if [ -z "$STORE" ]; then
  MAKE_ATLAS=${MAKE_ATLAS:-bench/make_atlas.py}
  if [ -f "$MAKE_ATLAS" ] && python3 -c 'import numpy, zarr, anndata' 2>/dev/null; then
    STORE=$OUT/atlas100k.zarr
    [ -d "$STORE" ] || python3 "$MAKE_ATLAS" "$STORE" --cells 100000 --genes 2000 --density 0.02
  else
    STORE=tests/fixtures/stores/pbmc68k.v3.zarr
    echo "NOTE: no atlas generator (bench/make_atlas.py + numpy/zarr/anndata): using the 700-cell pbmc68k fixture" >&2
  fi
fi

BIN=${CELLUCID_BIN:-${CARGO_TARGET_DIR:-target}/release/cellucid-edge}
[ -x "$BIN" ] || cargo build --release --bin cellucid-edge
"$BIN" serve "$STORE" "${CACHE_ARGS[@]}" --port "$PORT" --memory-cache-bytes "$MEMORY_CACHE" --log warn >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 600); do
  curl -fsS "$BASE/_cellucid/health" >/dev/null 2>&1 && break
  sleep 0.1
done

# Routes from the server's own manifests: every categorical's codes and outliers, every
# continuous obs field, the first 200 genes, both point sets; weighted 50/30/20.
python3 - "$BASE" "$OUT/routes.txt" <<'PY'
import json, sys, urllib.parse, urllib.request
base, out = sys.argv[1], sys.argv[2]
get = lambda p: urllib.request.urlopen(base + p, timeout=60)
def ok(p):
    try:
        return get(p).status == 200
    except Exception:
        return False
q = lambda k: urllib.parse.quote(k, safe="")
obs = json.load(get("/obs_manifest.json"))
var = json.load(get("/var_manifest.json"))
genes = [f"/var/{q(f[0])}.values.f32" for f in var.get("fields", [])[:200]]
fields = [f"/obs/{q(f[0])}.values.f32" for f in obs.get("_continuousFields", [])]
for f in obs.get("_categoricalFields", []):
    codes = next((p for p in (f"/obs/{q(f[0])}.codes.{e}" for e in ("u8", "u16")) if ok(p)), None)
    if codes:
        fields += [codes, f"/obs/{q(f[0])}.outliers.f32"]
points = [p for p in ("/points_2d.bin", "/points_3d.bin") if ok(p)]
assert genes and fields and points, (len(genes), len(fields), len(points))
lines = []
lines += genes * max(1, 50 * 10 // len(genes) or 1)
lines += fields * max(1, 30 * len(lines) // 50 // len(fields))
lines += points * max(1, 20 * len(lines) // 80 // len(points))
open(out, "w").write("\n".join(lines) + "\n")
print(f"routes: {len(genes)} genes, {len(fields)} obs routes, {len(points)} point sets; {len(lines)} lines", file=sys.stderr)
PY

echo "t_s,rss_kib" >"$OUT/rss.csv"
( start=$(date +%s); while kill -0 $SERVER 2>/dev/null; do
    echo "$(( $(date +%s) - start )),$(ps -o rss= -p $SERVER | tr -d ' ')" >>"$OUT/rss.csv"; sleep 2
  done ) &
SAMPLER=$!

wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency --timeout 10s \
  -s bench/load.lua "$BASE" -- "$OUT/routes.txt" | tee "$OUT/wrk.txt"
kill $SAMPLER 2>/dev/null || true

python3 - "$OUT/rss.csv" <<'PY'
import csv, sys
rows = [(int(r["t_s"]), int(r["rss_kib"])) for r in csv.DictReader(open(sys.argv[1])) if r["rss_kib"]]
mib = lambda k: k / 1024
n = len(rows)
print("RSS MiB over time:", " ".join(f"{t}s={mib(k):.0f}" for t, k in rows[:: max(1, n // 10)]))
tail = [k for _, k in rows[n // 2:]]
print(f"RSS_SUMMARY start={mib(rows[0][1]):.0f}MiB max={mib(max(k for _, k in rows)):.0f}MiB "
      f"second_half_min={mib(min(tail)):.0f}MiB second_half_max={mib(max(tail)):.0f}MiB")
PY
grep -q "errors_connect=0 errors_read=0 errors_write=0 errors_status=0 errors_timeout=0" "$OUT/wrk.txt" \
  && echo "load held: zero errors" || { echo "ERRORS under load (see $OUT/wrk.txt)"; exit 1; }

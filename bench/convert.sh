#!/usr/bin/env bash
# Benchmark: `cellucid-edge convert X.h5ad OUT.zarr` vs `anndata.read_h5ad(X).write_zarr(OUT)`
# on the same synthetic 100k x 20k CSR h5ad with 1e8 stored values, side by side: wall time
# and peak RSS from /usr/bin/time -v. One run of each per Zarr format (the machine is small
# and shared; see docs/benchmarks.md "h5ad → Zarr").
#
# usage: bench/convert.sh [WORKDIR]     env: PYTHON (anndata venv), N_OBS N_VARS NNZ_PER_ROW,
#                                          FORMATS ("3 2"), BIN (cellucid-edge release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/cellucid-bench-convert}
python=${PYTHON:-../venv-ref/bin/python}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/cellucid-edge}
n_obs=${N_OBS:-100000}; n_vars=${N_VARS:-20000}; nnz_per_row=${NNZ_PER_ROW:-1000}
formats=${FORMATS:-"3 2"}
mkdir -p "$work"
h5ad="$work/x_${n_obs}x${n_vars}_${nnz_per_row}.h5ad"
[ -x "$bin" ] || cargo build --release --bin cellucid-edge
[ -f "$h5ad" ] || "$python" bench/make_h5ad.py "$h5ad" --n-obs "$n_obs" --n-vars "$n_vars" --nnz-per-row "$nnz_per_row"
ls -l "$h5ad"

measure() { # label, command...
  local label=$1; shift
  local log="$work/$label.time"
  /usr/bin/time -v "$@" >"$work/$label.out" 2>"$log" || { cat "$log"; exit 1; }
  local wall rss
  wall=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$log" | awk '{print $NF}')
  printf '%-28s wall %10s   peak RSS %8.0f MB   user %6ss sys %6ss\n' "$label" "$wall" "$((rss / 1024))" \
    "$(grep 'User time' "$log" | awk '{print $NF}')" "$(grep 'System time' "$log" | awk '{print $NF}')"
}

for fmt in $formats; do
  rm -rf "$work/ours.v$fmt.zarr" "$work/anndata.v$fmt.zarr"
  sync
  measure "cellucid-edge convert v$fmt" "$bin" convert "$h5ad" "$work/ours.v$fmt.zarr" --zarr-format "$fmt" --quiet
  measure "anndata write_zarr v$fmt" "$python" -c "
import sys, warnings, anndata as ad
warnings.simplefilter('ignore')
ad.settings.zarr_write_format = int(sys.argv[3])
ad.read_h5ad(sys.argv[1]).write_zarr(sys.argv[2])" "$h5ad" "$work/anndata.v$fmt.zarr" "$fmt"
  du -sh "$work/ours.v$fmt.zarr" "$work/anndata.v$fmt.zarr"
done

#!/usr/bin/env bash
# Creates the Python venv of the reference server (cellucid 0.0.9 and the AnnData stack it was
# captured with) for bench/compare.py. matplotlib comes with cellucid, and draws the chart.
#
#   bash bench/reference-env.sh [VENV]     (default: target/bench/venv-reference)
set -euo pipefail
venv=${1:-target/bench/venv-reference}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import cellucid, anndata' 2>/dev/null; then
  echo "$venv"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
# The versions the conformance goldens were made with (tests/fixtures/README.md).
"$venv/bin/pip" install -q --disable-pip-version-check "cellucid==0.0.9" "anndata==0.12.19" \
  "zarr==3.1.6" "numcodecs==0.16.6" "h5py==3.16.0" "numpy==2.4.6" matplotlib >&2
echo "$venv"

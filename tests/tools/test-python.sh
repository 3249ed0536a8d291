#!/usr/bin/env bash
# Create (or reuse) the venv the tests compare against: test-python.sh VENV_DIR
# Idempotent: a venv whose marker matches the requirement files is kept as it is. The tests
# (tests/common/python.rs) run this under a lock on VENV_DIR/../.lock; .ci/run runs it early, in
# the background, under the same lock (flock), so the tests then find it ready.
set -euo pipefail
venv=${1:?usage: test-python.sh VENV_DIR}
here=$(cd "$(dirname "$0")" && pwd)
marker="$venv/.cellucid-test-requirements"
spec=$(cat "$here/requirements.txt" "$here/requirements-no-deps.txt")
if [ -x "$venv/bin/python" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$spec" ]; then
  exit 0
fi
echo "test-python: creating $venv ($(grep -hv '^#' "$here"/requirements*.txt | tr '\n' ' ')— once, about a minute)" >&2
rm -rf "$venv"
"${CELLUCID_TEST_BASE_PYTHON:-python3}" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r "$here/requirements.txt"
"${pip[@]}" --no-deps -r "$here/requirements-no-deps.txt"
printf '%s' "$spec" >"$marker"

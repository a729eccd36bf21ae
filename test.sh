#!/usr/bin/env bash
# The test command: lint, type-check and run every test (the real-data ones included), in parallel:
# one pytest-xdist worker per core, each taking whole test files (a file's module fixtures, such as
# a real sweep or a server, are made once). Each worker's BLAS gets one thread: two workers with a
# thread per core each would oversubscribe the cores (OpenBLAS threads spin while they wait).
#   ./test.sh                  everything (CI runs this)
#   ./test.sh -m "not slow"    the quick tier: no processes, servers or real-data sweeps
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
bash scripts/ensure-data.sh
bash scripts/ensure-postgres.sh
bash scripts/ensure-chromium.sh
ruff check .
ruff format --check .
mypy
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest -n auto --dist loadfile "$@"

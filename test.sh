#!/usr/bin/env bash
# The test command: lint, type-check and run every test (the real-data ones included), in parallel:
# one pytest-xdist worker per core; tests that share an expensive module fixture (a real sweep, a
# server) stay on one worker (their xdist_group), the rest spread one by one.
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
python -m pytest -n auto --dist loadgroup "$@"

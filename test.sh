#!/usr/bin/env bash
# The test command: lint, type-check and run every test (the real-data ones included).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
bash scripts/ensure-data.sh
bash scripts/ensure-postgres.sh
bash scripts/ensure-chromium.sh
ruff check .
ruff format --check .
mypy
python -m pytest "$@"

#!/usr/bin/env bash
# The main job: a real Optuna sweep on Fashion-MNIST, tracked in MLflow (embedded stores in
# ./.softsweep/). Extra arguments go to `sweep run`, e.g. --home DIR.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
bash scripts/ensure-data.sh
# The summary's follow-up commands name this venv's `sweep` (it is not on the user's PATH).
export SOFTSWEEP_COMMAND="${SOFTSWEEP_COMMAND:-$PWD/.venv/bin/sweep}"
sweep run studies/fashion_mnist.toml "$@"

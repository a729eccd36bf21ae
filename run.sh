#!/usr/bin/env bash
# The main job: a real Optuna sweep on Fashion-MNIST, tracked in MLflow (embedded stores in
# ./.softsweep/). Extra arguments go to `sweep run`, e.g. --home DIR.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
bash scripts/ensure-data.sh
sweep run studies/fashion_mnist.toml "$@"

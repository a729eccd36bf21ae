#!/usr/bin/env bash
# The main job. Extra arguments go to the command.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
bash scripts/ensure-data.sh
sweep check --dataset fashion-mnist "$@"

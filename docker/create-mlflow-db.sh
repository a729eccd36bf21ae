#!/usr/bin/env bash
# Run once by the postgres image on an empty data volume: MLflow's database beside Optuna's.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${MLFLOW_DB:-mlflow}\""

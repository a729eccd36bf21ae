"""softsweep's sweep layer: study specs, the Optuna runner, MLflow tracking, reports, the CLI."""

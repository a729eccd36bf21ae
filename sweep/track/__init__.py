"""MLflow, a view of what Optuna holds: the synchronous store (`store`), the one thread that owns
it during a sweep (`tracker`), the probes that make an unreachable store fail in seconds
(`probes`), and `sync`, which rebuilds the runs from Optuna. The only wing that imports mlflow."""

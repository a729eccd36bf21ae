"""Runs (MLflow) + trials (Optuna) -> one pandas DataFrame, one row per trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .home import Home
from .lifecycle import OUTCOME_ATTR, REASON_ATTR, RUN_ID_ATTR
from .study import load_study
from .tracking import reader

__all__ = ["COLUMNS", "load_runs"]

COLUMNS = [
    "trial", "state", "learning_rate", "reg", "batch_size", "val_accuracy",
    "best_val_accuracy", "train_accuracy", "train_loss", "epochs_run", "train_time_s",
    "duration_s", "outcome", "fail_reason", "run_id", "run_status",
]  # fmt: skip


def load_runs(
    study: str,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
) -> pd.DataFrame:
    """One row per trial of `study`: params and metrics as numbers, states as strings.

    Optuna is the source of truth for which trials exist and their state; MLflow adds each
    trial's last metric values and its run. Sorted best first (completed trials by validation
    accuracy), then the rest by trial number.
    """
    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri, create=False)
    trials = load_study(study, where).get_trials(deepcopy=False)
    runs = {r["run_id"]: r for r in fetch_trial_runs(where.tracking_uri, study)}
    rows = []
    for t in trials:
        run = runs.get(t.user_attrs.get(RUN_ID_ATTR, ""), {})
        metrics = run.get("metrics", {})
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "learning_rate": t.params.get("learning_rate"),
                "reg": t.params.get("reg"),
                "batch_size": t.params.get("batch_size"),
                "val_accuracy": t.value
                if t.state.name == "COMPLETE"
                else metrics.get("final_val_accuracy"),
                "best_val_accuracy": metrics.get("best_val_accuracy"),
                "train_accuracy": metrics.get("train_accuracy"),
                "train_loss": metrics.get("train_loss"),
                "epochs_run": metrics.get("epochs_run"),
                "train_time_s": metrics.get("train_time_s"),
                "duration_s": duration,
                "outcome": t.user_attrs.get(OUTCOME_ATTR, t.state.name.lower()),
                "fail_reason": t.user_attrs.get(REASON_ATTR, ""),
                "run_id": run.get("run_id", t.user_attrs.get(RUN_ID_ATTR, "")),
                "run_status": run.get("run_status", ""),
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    numeric = [
        c for c in COLUMNS if c not in ("state", "outcome", "fail_reason", "run_id", "run_status")
    ]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["epochs_run"] = frame["epochs_run"].astype("Int64")
    complete = frame["state"].eq("COMPLETE")
    best_first = frame[complete].sort_values(["val_accuracy", "trial"], ascending=[False, True])
    rest = frame[~complete].sort_values("trial")
    return pd.concat([best_first, rest]).reset_index(drop=True)


def fetch_trial_runs(tracking_uri: str, study_name: str) -> list[dict[str, Any]]:
    """Every trial run of a study as plain dicts (params as strings, last metric values)."""
    from .sqlitestore import sqlite_path

    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_file():
        return []  # no store: no runs (and none made by reading)
    client = reader(tracking_uri)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return []
    query = f"tags.`softsweep.role` = 'trial' and tags.`optuna.study` = '{study_name}'"
    rows: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], query, max_results=1000, page_token=token
        )
        for run in page:
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "run_status": run.info.status,
                    "start_time": run.info.start_time,
                    "end_time": run.info.end_time,
                    "params": dict(run.data.params),
                    "metrics": dict(run.data.metrics),
                    "tags": dict(run.data.tags),
                }
            )
        token = page.token
        if not token:
            return rows

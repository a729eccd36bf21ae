"""Studies as pandas DataFrames: `load_runs` (one row per trial) and `load_history` (one row per
trial and epoch, long format, ready for `seaborn.lineplot`).

Optuna is the source of truth: each told trial keeps its outcome and per-epoch history on
itself, so both frames come from the Optuna storage; MLflow adds each trial's run id and status.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .home import Home
from .lifecycle import OUTCOME_ATTR, REASON_ATTR, RUN_ID_ATTR, test_evaluations
from .study import load_study
from .sync import HISTORY_ATTR
from .tracking import reader

__all__ = ["COLUMNS", "HISTORY_COLUMNS", "load_history", "load_runs"]

COLUMNS = [
    "study", "trial", "state", "outcome", "learning_rate", "reg", "batch_size",
    "val_accuracy", "last_val_accuracy", "best_val_accuracy", "train_accuracy", "train_loss",
    "epochs_run", "pruned_at_epoch", "test_accuracy", "train_time_s", "group_size",
    "group_time_s", "start_time", "end_time", "duration_s", "fail_reason", "run_id",
    "run_status",
]  # fmt: skip
HISTORY_COLUMNS = [
    "study", "trial", "epoch", "train_loss", "train_accuracy", "val_accuracy", "epoch_time_s",
    "learning_rate", "reg", "batch_size", "outcome",
]  # fmt: skip
_TEXT = ("study", "state", "outcome", "fail_reason", "run_id", "run_status")
_TIMES = ("start_time", "end_time")


def load_runs(
    study: str,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
) -> pd.DataFrame:
    """One row per trial of `study`, best first (completed trials by validation accuracy),
    then the rest by trial number. Columns (`COLUMNS`):

    - `val_accuracy`: the objective, for COMPLETE trials only; `last_val_accuracy`: the last
      epoch's value of any trial that trained (a pruned trial's partial value lives here, with
      `pruned_at_epoch` saying where it stopped); `best_val_accuracy`: its best epoch.
    - `test_accuracy`: set on the trial(s) evaluated on the test set (normally one per study).
    - `train_time_s`: the trial's own training time: the sum, over the epochs it ran, of each
      epoch's wall time divided by the models trained side by side in it; `group_time_s` and
      `group_size`: its group's wall time and size; `start_time`, `end_time`, `duration_s`:
      when Optuna started and finished the trial (local time, as Optuna stores it).
    - `run_id`, `run_status`: its MLflow run.
    """
    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri, create=False)
    loaded = load_study(study, where)
    tested = dict(test_evaluations(loaded.user_attrs))
    runs = {r["run_id"]: r for r in fetch_trial_runs(where.tracking_uri, study)}
    rows = []
    for t in loaded.get_trials(deepcopy=False):
        history = t.user_attrs.get(HISTORY_ATTR) or {}
        values = history.get("val_accuracy") or []
        group = history.get("group") or [None, None]
        run = runs.get(t.user_attrs.get(RUN_ID_ATTR, ""), {})
        outcome = t.user_attrs.get(OUTCOME_ATTR, t.state.name.lower())
        rows.append(
            {
                "study": study,
                "trial": t.number,
                "state": t.state.name,
                "outcome": outcome,
                **{k: t.params.get(k) for k in ("learning_rate", "reg", "batch_size")},
                "val_accuracy": t.value if t.state.name == "COMPLETE" else None,
                "last_val_accuracy": values[-1] if values else None,
                "best_val_accuracy": max(values) if values else None,
                "train_accuracy": (history.get("train_accuracy") or [None])[-1],
                "train_loss": (history.get("train_loss") or [None])[-1],
                "epochs_run": len(values),
                "pruned_at_epoch": len(values) if t.state.name == "PRUNED" else None,
                "test_accuracy": tested.get(t.number),
                "train_time_s": sum(history.get("epoch_time_s") or []) if values else None,
                "group_size": group[0],
                "group_time_s": group[1],
                "start_time": t.datetime_start,
                "end_time": t.datetime_complete,
                "duration_s": (t.datetime_complete - t.datetime_start).total_seconds()
                if t.datetime_complete and t.datetime_start
                else None,
                "fail_reason": t.user_attrs.get(REASON_ATTR, ""),
                "run_id": run.get("run_id", t.user_attrs.get(RUN_ID_ATTR, "")),
                "run_status": run.get("run_status", ""),
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    numeric = [c for c in COLUMNS if c not in _TEXT + _TIMES]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    for column in ("batch_size", "epochs_run", "pruned_at_epoch", "group_size"):
        frame[column] = frame[column].astype("Int64")
    for column in _TIMES:
        frame[column] = pd.to_datetime(frame[column])
    complete = frame["state"].eq("COMPLETE")
    best_first = frame[complete].sort_values(["val_accuracy", "trial"], ascending=[False, True])
    rest = frame[~complete].sort_values("trial")
    return pd.concat([best_first, rest]).reset_index(drop=True)


def load_history(
    studies: str | Iterable[str],
    home: str | Path | None = None,
    storage: str | None = None,
) -> pd.DataFrame:
    """Every epoch of every trial that trained, of one study or several, as one long-format
    frame (`HISTORY_COLUMNS`: study, trial, epoch, the metrics, the params, the outcome), read
    from the Optuna storage alone. For example:

        frame = sweep.load_history(["fashion-mnist-tpe", "fashion-mnist-grid"])
        seaborn.lineplot(frame, x="epoch", y="val_accuracy", hue="study", units="trial",
                         estimator=None)
    """
    names = [studies] if isinstance(studies, str) else list(studies)
    where = Home.resolve(home, storage=storage, create=False)
    rows: list[dict[str, Any]] = []
    for name in names:
        for t in load_study(name, where).get_trials(deepcopy=False):
            history = t.user_attrs.get(HISTORY_ATTR) or {}
            values = history.get("val_accuracy") or []
            outcome = t.user_attrs.get(OUTCOME_ATTR, t.state.name.lower())
            for e in range(len(values)):
                row = {"study": name, "trial": t.number, "epoch": e + 1}
                for key in ("train_loss", "train_accuracy", "val_accuracy", "epoch_time_s"):
                    series = history.get(key) or []
                    row[key] = series[e] if e < len(series) else None
                row.update({k: t.params.get(k) for k in ("learning_rate", "reg", "batch_size")})
                row["outcome"] = outcome
                rows.append(row)
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    frame["trial"] = frame["trial"].astype("Int64")
    frame["epoch"] = frame["epoch"].astype("Int64")
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    return frame


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

"""Studies as pandas DataFrames: `load_runs` (one row per trial) and `load_history` (one row per
trial and epoch, long format, ready for `seaborn.lineplot`).

Optuna is the source of truth: each told trial keeps its outcome and per-epoch history on
itself, so both frames come from the Optuna storage; MLflow adds each trial's run id and status.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial

from .spec import PARAMS
from .store.home import Home
from .store.study import load_study
from .track.probes import describe
from .track.store import read_trial_runs
from .trial import (
    EPOCH_METRICS,
    OUTCOME_ATTR,
    REASON_ATTR,
    RUN_ID_ATTR,
    History,
    Params,
    test_evaluations,
)

__all__ = ["COLUMNS", "HISTORY_COLUMNS", "TrackingUnreadableWarning", "load_history", "load_runs"]


class TrackingUnreadableWarning(UserWarning):
    """`load_runs` could not read MLflow: the frame comes from Optuna alone."""


COLUMNS = [
    "study", "trial", "state", "outcome", "learning_rate", "reg", "batch_size",
    "val_accuracy", "last_val_accuracy", "best_val_accuracy", "train_accuracy", "train_loss",
    "epochs_run", "pruned_at_epoch", "test_accuracy", "train_time_s", "group_size",
    "group_time_s", "start_time", "end_time", "duration_s", "fail_reason", "run_id",
    "run_status",
]  # fmt: skip
HISTORY_COLUMNS = ["study", "trial", "epoch", *EPOCH_METRICS, *PARAMS, "outcome"]
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
    try:
        runs = {str(r.info.run_id): r for r in read_trial_runs(where.tracking_uri, study)}
    except Exception as exc:  # Optuna holds every result: MLflow only adds the runs' status
        warnings.warn(
            f"the MLflow store {where.shown_tracking_uri} could not be read ({describe(exc)}): "
            "every trial is shown from Optuna, without run_status",
            TrackingUnreadableWarning,
            stacklevel=2,
        )
        runs = {}
    rows = []
    for t in loaded.get_trials(deepcopy=False):
        history = History.of(t)
        run_id = str(t.user_attrs.get(RUN_ID_ATTR, ""))
        run = runs.get(run_id)
        started, ended = t.datetime_start, t.datetime_complete
        rows.append(
            {
                "study": study,
                "trial": t.number,
                "state": t.state.name,
                "outcome": t.user_attrs.get(OUTCOME_ATTR, t.state.name.lower()),
                **_params(t),
                "val_accuracy": t.value if t.state.name == "COMPLETE" else None,
                "last_val_accuracy": history.last("val_accuracy"),
                "best_val_accuracy": history.best_val_accuracy,
                "train_accuracy": history.last("train_accuracy"),
                "train_loss": history.last("train_loss"),
                "epochs_run": len(history.epochs),
                "pruned_at_epoch": len(history.epochs) if t.state.name == "PRUNED" else None,
                "test_accuracy": tested.get(t.number),
                "train_time_s": history.train_time_s,
                "group_size": history.group_size,
                "group_time_s": history.group_time_s,
                "start_time": t.datetime_start,
                "end_time": t.datetime_complete,
                "duration_s": (ended - started).total_seconds() if ended and started else None,
                "fail_reason": t.user_attrs.get(REASON_ATTR, ""),
                "run_id": run_id,
                "run_status": run.info.status if run is not None else "",
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
            outcome = t.user_attrs.get(OUTCOME_ATTR, t.state.name.lower())
            params = _params(t)
            for e, epoch in enumerate(History.of(t).epochs, start=1):
                rows.append({"study": name, "trial": t.number, "epoch": e, **epoch, **params,
                             "outcome": outcome})  # fmt: skip
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    frame["trial"] = frame["trial"].astype("Int64")
    frame["epoch"] = frame["epoch"].astype("Int64")
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    return frame


def _params(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's params as columns (empty while it is still being asked)."""
    params = Params.of(trial.params)
    return params.as_dict() if params is not None else dict.fromkeys(PARAMS)  # type: ignore[return-value]

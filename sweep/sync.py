"""Optuna is the source of truth; MLflow is a view that can always be rebuilt from it.

Every told trial keeps on itself (user attributes) what its MLflow run shows: the outcome, the
reason, and the per-epoch history with its group (`HISTORY_ATTR`). `records` turns a study's
finished trials into the `TrialRecord`s its runs should hold, and `Tracker.sync` writes what is
missing: a run for a trial that has none, the metrics and status of a run left RUNNING (its
process died between the tell and the write, or the tracking server was down). It runs at the
start and the end of every `sweep run` / `sweep worker`, and as `sweep sync STUDY`.

A model's weights live only in its run. When the best trial's are missing (never written), it
is trained again: training is deterministic for a given seed, so the same configuration gives
the same model (checked against the stored validation accuracy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

import engine

from .home import Home
from .lifecycle import REASON_ATTR, Outcome, outcome_of
from .spec import StudySpec
from .tracking import EPOCH_METRICS, SyncResult, TrialRecord

__all__ = [
    "HISTORY_ATTR",
    "final_metrics",
    "history_attr",
    "load_data",
    "record_of",
    "records",
    "retrain",
    "run_info",
    "sync_study",
]

# {metric: [value per epoch], "group": [models trained side by side, seconds the group took]}
HISTORY_ATTR = "history"


def history_attr(history: Sequence[Mapping[str, float]]) -> dict[str, list[float]]:
    """A trial's per-epoch metrics as one small JSON value: {metric: [per epoch]}."""
    return {key: [round(float(h[key]), 7) for h in history] for key in EPOCH_METRICS}


def final_metrics(history: Sequence[Mapping[str, float]], group: Sequence[float]) -> dict:
    """The run's one-value metric (the best epoch's validation accuracy) and, as tags, its
    bookkeeping (epochs run, training time, the group it trained in): not charted metrics."""
    if not history:
        return {}
    return {"best_val_accuracy": max(h["val_accuracy"] for h in history)}


def run_info(history: Sequence[Mapping[str, float]], group: Sequence[float]) -> dict[str, str]:
    """Tags: epochs run; training time (its share of each epoch: the epoch's wall time over
    the models trained in it); the group's size and wall time."""
    info = {"softsweep.epochs_run": str(len(history))}
    if history:
        info["softsweep.train_time_s"] = f"{sum(h['epoch_time_s'] for h in history):.4g}"
    if len(group) == 2:
        info["softsweep.group_size"] = str(int(group[0]))
        info["softsweep.group_time_s"] = f"{float(group[1]):.4g}"
    return info


def record_of(trial: FrozenTrial) -> TrialRecord | None:
    """What the trial's run should hold, from Optuna alone; None while it runs, or for a
    duplicate (never trained: no run)."""
    outcome = outcome_of(trial)
    if outcome is None or outcome is Outcome.DUPLICATE:
        return None
    stored: dict[str, list[float]] = trial.user_attrs.get(HISTORY_ATTR) or {}
    epochs = len(stored.get("val_accuracy", []))
    history = [
        {key: stored[key][e] for key in EPOCH_METRICS if key in stored} for e in range(epochs)
    ]
    history = [h for h in history if len(h) == len(EPOCH_METRICS)]
    ended = trial.datetime_complete or trial.datetime_start
    return TrialRecord(
        trial.number,
        outcome,
        dict(trial.params),
        history,
        final_metrics(history, stored.get("group", [])),
        info=run_info(history, stored.get("group", [])),
        reason=str(trial.user_attrs.get(REASON_ATTR, "")),
        ended_ms=int(ended.timestamp() * 1000) if ended else None,
    )


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every finished trial's record (see `record_of`)."""
    found = (record_of(t) for t in study.get_trials(deepcopy=False))
    return [r for r in found if r is not None]


def load_data(spec: StudySpec) -> engine.Dataset:
    """The study's data, split and scaled as its trials saw it."""
    return engine.load_dataset(
        spec.dataset,
        data_dir=spec.data_dir,
        val_size=spec.val_size,
        seed=spec.data_seed,
        center=spec.center,
        standardize=spec.standardize,
    )


def retrain(data: engine.Dataset, spec: StudySpec, trial: FrozenTrial) -> tuple[Any, str]:
    """The weights of a completed trial, trained again; and a note if they do not reproduce its
    stored validation accuracy."""
    (result,) = engine.train_many(
        data,
        [(float(trial.params["learning_rate"]), float(trial.params["reg"]))],
        batch_size=int(trial.params["batch_size"]),
        epochs=spec.epochs,
        seed=spec.seed,
        loss=spec.loss,  # type: ignore[arg-type]
        schedule=spec.lr_schedule,
    )
    weights: np.ndarray | None = result.weights
    if result.status != "completed" or weights is None:
        return None, f"trial #{trial.number} did not train again ({result.reason})"
    note = ""
    if trial.value is not None and abs(result.val_accuracy - trial.value) > 1e-9:
        note = (
            f"trial #{trial.number} trained again reached validation accuracy "
            f"{result.val_accuracy:.4f}, not its stored {trial.value:.4f}"
        )
    return weights, note


def sync_study(study_name: str, home: Home) -> SyncResult:
    """`sweep sync`: make the study's MLflow runs agree with its Optuna trials."""
    from .study import load_study
    from .tracker import Tracker

    stored = load_study(study_name, home)
    tracker = Tracker(home.tracking_uri, study_name, artifact_root=home.artifact_root)
    try:
        tracker.find_study_run(study_name)
        done = tracker.sync(study_name, records(stored))
    finally:
        tracker.close()
    if done is None:
        raise RuntimeError(
            f"The MLflow tracking store {home.shown_tracking_uri} failed "
            f"({tracker.down or tracker.errors[-1]}). Nothing was changed; try again later."
        )
    return done

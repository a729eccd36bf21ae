"""Optuna -> MLflow: the records a study's trials give, and a sync that writes each run once,
against a real MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import optuna
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from sweep.track.sync import records
from sweep.track.tracker import Tracker
from sweep.trial import HISTORY_ATTR, History, Outcome, tell

EPOCH = {"train_loss": 0.5, "train_accuracy": 0.8, "val_accuracy": 0.75, "epoch_time_s": 0.25}
SPACE = {
    "learning_rate": CategoricalDistribution([0.1]),
    "reg": CategoricalDistribution([0.0]),
    "batch_size": CategoricalDistribution([16]),
}


def a_study() -> optuna.Study:
    """Trials in every state a study holds: complete, pruned, diverged, duplicate, running."""
    study = optuna.create_study(study_name="s", storage=InMemoryStorage(), direction="maximize")
    for outcome in (Outcome.COMPLETE, Outcome.PRUNED, Outcome.DIVERGED, Outcome.DUPLICATE, None):
        trial = study.ask(SPACE)
        if outcome in (Outcome.COMPLETE, Outcome.PRUNED):
            trial.set_user_attr(HISTORY_ATTR, History((EPOCH, EPOCH), 5, 1.0).attr())
        if outcome is not None:
            tell(trial, outcome, 0.75 if outcome is Outcome.COMPLETE else None, "why")
    return study


def test_every_finished_trial_that_trained_has_a_record() -> None:
    found = records(a_study())
    # The duplicate never trained and the running trial has not finished: no run for them.
    assert [(r.number, r.outcome) for r in found] == [
        (0, Outcome.COMPLETE), (1, Outcome.PRUNED), (2, Outcome.DIVERGED)
    ]  # fmt: skip
    assert [len(r.history.epochs) for r in found] == [2, 2, 0]
    assert found[0].params == {"learning_rate": 0.1, "reg": 0.0, "batch_size": 16}
    assert all(r.reason == "why" for r in found[1:])


def test_a_sync_writes_each_run_once_and_a_second_one_changes_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = a_study()
    tracker = Tracker(uri, "s")
    first = tracker.sync("s", records(study))
    second = tracker.sync("s", records(study))
    tracker.close()
    assert first is not None and second is not None
    assert (first.created, first.completed) == (3, 0)
    assert (second.created, second.completed) == (0, 0)
    assert second.run_ids == first.run_ids
    client = MlflowClient(tracking_uri=uri)
    statuses = {n: client.get_run(r).info.status for n, r in first.run_ids.items()}
    assert statuses == {0: "FINISHED", 1: "KILLED", 2: "FAILED"}
    assert study.get_trials()[4].state == TrialState.RUNNING  # (untouched)

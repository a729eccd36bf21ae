"""Optuna -> MLflow: the records a study's trials give, and a sync that writes each run once,
against a real MLflow SQLite store."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from sweep.store.home import Home, Owner
from sweep.track import sync
from sweep.track.sync import records, sync_study
from sweep.track.tracker import Tracker
from sweep.trial import HISTORY_ATTR, OWNER_ATTR, History, Outcome, tell
from tests.helpers import run_spec, spec_text, write_idx_dataset

EPOCH = {"train_loss": 0.5, "train_accuracy": 0.8, "val_accuracy": 0.75, "epoch_time_s": 0.25}
SPACE = {
    "learning_rate": CategoricalDistribution([0.1]),
    "reg": CategoricalDistribution([0.0]),
    "batch_size": CategoricalDistribution([16]),
}


def a_study(owner: str | None = None) -> optuna.Study:
    """Trials in every state a study holds: complete, pruned, diverged, duplicate, running;
    the first two trained by `owner`, if given."""
    study = optuna.create_study(study_name="s", storage=InMemoryStorage(), direction="maximize")
    for outcome in (Outcome.COMPLETE, Outcome.PRUNED, Outcome.DIVERGED, Outcome.DUPLICATE, None):
        trial = study.ask(SPACE)
        if owner is not None and outcome in (Outcome.COMPLETE, Outcome.PRUNED):
            trial.set_user_attr(OWNER_ATTR, owner)
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


def test_sync_into_an_empty_store_rebuilds_the_study_run_and_ends_it(tmp_path: Path) -> None:
    """The closing could not reach MLflow (or the store was emptied): the study's run is made
    again, with its summary, and ends as the study did."""
    data = write_idx_dataset(tmp_path / "data", n_train=300, n_test=100)
    run_spec(spec_text("s", data, lr="{ values = [0.1, 1.0] }", batch="[16]"), tmp_path / "home")
    stored = Home.resolve(tmp_path / "home")
    elsewhere = Home(stored.folder, stored.storage, f"sqlite:///{tmp_path / 'other.db'}")
    done = sync_study("s", elsewhere)
    assert (done.created, done.study_run, done.study_run_ended) == (4, "FINISHED", True)
    client = MlflowClient(tracking_uri=elsewhere.tracking_uri)
    experiment = client.get_experiment_by_name("s")
    (study_run,) = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'study'")
    best = optuna.load_study(study_name="s", storage=stored.storage).best_trial
    assert study_run.info.status == "FINISHED"
    assert study_run.data.metrics["best_val_accuracy"] == best.value
    assert study_run.data.metrics["n_complete"] == 4
    assert study_run.data.tags["best_trial"] == str(best.number)
    again = sync_study("s", elsewhere)  # a second sync changes nothing
    assert (again.created, again.completed, again.study_run_ended) == (0, 0, False)


def test_sync_leaves_the_study_run_of_a_study_a_sweep_is_on(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "data", n_train=300, n_test=100)
    run_spec(spec_text("s", data, lr="{ values = [0.1, 1.0] }", batch="[16]"), tmp_path / "home")
    stored = Home.resolve(tmp_path / "home")
    optuna.load_study(study_name="s", storage=stored.storage).ask()  # a trial RUNNING
    elsewhere = Home(stored.folder, stored.storage, f"sqlite:///{tmp_path / 'other.db'}")
    done = sync_study("s", elsewhere)
    assert (done.study_run, done.study_run_ended) == ("", False)
    client = MlflowClient(tracking_uri=elsewhere.tracking_uri)
    experiment = client.get_experiment_by_name("s")
    (study_run,) = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'study'")
    assert study_run.info.status == "RUNNING"


def test_sync_on_an_experiment_in_mlflows_trash_says_how_to_restore_it(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "data", n_train=300, n_test=100)
    run_spec(spec_text("s", data, lr="{ values = [0.1, 1.0] }", batch="[16]"), tmp_path / "home")
    home = Home.resolve(tmp_path / "home")
    client = MlflowClient(tracking_uri=home.tracking_uri)
    client.delete_experiment(client.get_experiment_by_name("s").experiment_id)
    with pytest.raises(
        RuntimeError, match=r"in MLflow.s trash .*`mlflow experiments restore --experiment-id 1`"
    ):
        sync_study("s", home)


def test_two_syncs_at_once_make_each_run_once(tmp_path: Path) -> None:
    """Two `sweep sync` (or two workers starting) repairing one study together: one run per
    trial and one study run, whoever made them."""
    data = write_idx_dataset(tmp_path / "data", n_train=300, n_test=100)
    run_spec(spec_text("s", data, lr="{ values = [0.1, 1.0] }", batch="[16, 32]"), tmp_path / "h")
    stored = Home.resolve(tmp_path / "h")
    elsewhere = Home(stored.folder, stored.storage, f"sqlite:///{tmp_path / 'other.db'}")
    sync_study("s", Home(stored.folder, stored.storage, elsewhere.tracking_uri))  # (made once)
    client = MlflowClient(tracking_uri=elsewhere.tracking_uri)
    experiment = client.get_experiment_by_name("s")
    for run in client.search_runs([experiment.experiment_id], ""):  # emptied, store kept
        client.delete_run(run.info.run_id)
    start = threading.Barrier(2)
    done: list[object] = []

    def sync() -> None:
        start.wait()
        done.append(sync_study("s", elsewhere))

    syncs = [threading.Thread(target=sync) for _ in range(2)]
    for thread in syncs:
        thread.start()
    for thread in syncs:
        thread.join()
    assert len(done) == 2
    runs = client.search_runs([experiment.experiment_id], "")
    roles = Counter(r.data.tags["softsweep.role"] for r in runs)
    assert roles == {"trial": 8, "study": 1}
    trials = Counter(
        r.data.tags["optuna.trial"] for r in runs if r.data.tags["softsweep.role"] == "trial"
    )
    assert set(trials.values()) == {1}


def test_a_repair_leaves_the_runs_of_a_live_process_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `sweep sync` beside a sweep that is still writing its runs would log their epochs
    twice: its trials are left to it while it lives (while its trials are fresh, for a process
    that cannot be checked from here), and repaired once it is gone."""
    home = Home.resolve(tmp_path)
    sweeping = Owner(home)  # (this process stands for the sweep: its lock is held)
    study = a_study(owner=sweeping.name)
    assert [r.number for r in records(study)] == [0, 1, 2]
    assert [r.number for r in records(study, home)] == [2]
    assert [r.number for r in records(study, home, me=sweeping.name)] == [0, 1, 2]
    sweeping.close()
    elsewhere = a_study(owner="another-machine:4242")  # told just now
    assert [r.number for r in records(elsewhere, home)] == [2]
    monkeypatch.setattr(sync, "OWNER_GRACE_S", 0.0)  # ... and told long ago
    assert [r.number for r in records(elsewhere, home)] == [0, 1, 2]
    assert [r.number for r in records(study, home)] == [0, 1, 2]

"""The tracker against a real MLflow SQLite store: runs made in its thread, in order; live epochs
written once each, whoever writes them."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from unittest import mock

import pytest
from mlflow import MlflowClient

from sweep.track import model
from sweep.track.tracker import Tracker
from sweep.trial import History, Outcome, TrialRecord


def test_trial_runs_are_created_in_the_background_with_their_params(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "bg", fixed_params={"epochs": "3"}, wait=False)  # returns at once
    tracker.start_study("bg", {"sampler": "grid"}, "")
    started = [tracker.start_trial("bg", n, params={"reg": n / 10}) for n in range(3)]
    ids = [tracker.run_id(run) for run in started]
    parent = tracker.study_run()
    tracker.finish_trial(ids[0], TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, History()))
    tracker.flush()
    assert tracker.errors == []
    tracker.close()
    client = MlflowClient(tracking_uri=uri)
    for n, run_id in enumerate(ids):
        run = client.get_run(run_id)
        assert run.data.tags["optuna.trial"] == str(n)
        assert run.info.status == ("FINISHED" if n == 0 else "RUNNING")
        assert run.data.tags["softsweep.study_run"] == parent
        # A running (or killed) trial's run already shows what it is trying.
        assert run.data.params == {"epochs": "3", "reg": str(n / 10)}
    # A store that cannot serve the study: a run id is None (never an exception in the sweep),
    # and waiting for the store says why.
    missing = Tracker(uri, "no-such-study", create=False, wait=False)
    assert missing.run_id(missing.start_trial("no-such-study", 0)) is None
    with pytest.raises(RuntimeError, match="has no experiment named 'no-such-study'"):
        missing.wait_ready()
    missing.abandon()


def test_the_experiment_id_does_not_wait_behind_the_threads_writes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "busy")
    tracker.start_study("busy", {}, "")
    assert tracker.run_id(tracker.start_trial("busy", 0)) is not None
    release, saved = threading.Event(), threading.Event()

    def save(path: Path) -> None:  # the best model's files: held until the test lets go
        release.wait(30)
        saved.set()

    tracker.log_best_model("busy", 0, save)  # the thread is busy with it from now on
    try:
        experiment = tracker.experiment_id()  # (asked in the thread, it would wait 30 s)
        assert not saved.is_set()
    finally:
        release.set()
    assert experiment == MlflowClient(tracking_uri=uri).get_experiment_by_name("busy").experiment_id
    tracker.close()


def test_the_model_check_done_ahead_is_the_registrations_own_and_never_fails_the_tracker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The check MLflow's save_model does: an environment that does not satisfy the model's
    # requirements is warned about.
    unmet = ["numpy>=999"]
    with (
        mock.patch.object(model, "requirements", return_value=unmet),
        caplog.at_level(logging.WARNING),
    ):
        model.check_environment()
    assert "numpy>=999" in caplog.text and "mismatches" in caplog.text
    # Done in the tracker's thread: a check that raises leaves the tracker working.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "check")
    tracker.start_study("check", {}, "")
    with mock.patch("sweep.track.tracker.check_environment", side_effect=RuntimeError("moved")):
        tracker.prepare_model()
        assert tracker.run_id(tracker.start_trial("check", 0)) is not None
    tracker.flush()
    assert tracker.errors == []
    tracker.close()


def epochs(n: int, start: float = 0.5) -> History:
    return History(tuple(
        {"train_loss": 1.0 / e, "train_accuracy": start + e / 100, "val_accuracy": start + e / 50,
         "epoch_time_s": 0.1}
        for e in range(1, n + 1)
    ), group_size=1, group_time_s=0.1 * n)  # fmt: skip


def live(tmp_path: Path, study: str, n_live: int) -> tuple[str, Tracker, Future[str], History]:
    """A study's trial 0 whose first `n_live` epochs went to MLflow while it trained (no
    interval between live writes)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, study, live_interval_s=0.0)
    tracker.start_study(study, {}, "")
    run = tracker.start_trial(study, 0, params={"reg": 0.0})
    history = epochs(4)
    for epoch in range(1, n_live + 1):
        tracker.log_epoch({0: run}, {0: history.epochs[epoch - 1]}, epoch)
        tracker.flush()  # (the live job is done before the next epoch: each goes at once)
    return uri, tracker, run, history


def test_epochs_logged_live_are_not_logged_again_at_the_finish(tmp_path: Path) -> None:
    uri, tracker, run, history = live(tmp_path, "live", n_live=2)
    tracker.drop_live()  # the group ends: its finish writes epochs 3 and 4
    record = TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, history, ended_ms=4_000_000_000_000)
    tracker.finish_trial(run, record)
    tracker.close()
    assert tracker.errors == []
    client = MlflowClient(tracking_uri=uri)
    run_id = run.result()
    points = sorted(client.get_metric_history(run_id, "val_accuracy"), key=lambda m: m.step)
    assert [m.step for m in points] == [1, 2, 3, 4]  # one point per epoch, none twice
    assert [m.value for m in points] == pytest.approx(history.series("val_accuracy"))
    # Epochs 1 and 2 carry the time they were trained; the rest, the tell's.
    assert all(m.timestamp < 4_000_000_000_000 for m in points[:2])
    assert [m.timestamp for m in points[2:]] == [4_000_000_000_000] * 2
    data = client.get_run(run_id).data
    # Bookkeeping is tagged, not charted: the charts hold the learning curves only.
    assert set(data.metrics) == {"train_loss", "train_accuracy", "val_accuracy",
                                 "best_val_accuracy"}  # fmt: skip
    assert data.tags["softsweep.epochs_run"] == "4"
    assert data.tags["softsweep.group_size"] == "1"


def test_live_epochs_wait_for_the_interval_and_the_finish_writes_them(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "slow", live_interval_s=3600.0)  # never due during this group
    tracker.start_study("slow", {}, "")
    run = tracker.start_trial("slow", 0, params={"reg": 0.0})
    history = epochs(3)
    for epoch, metrics in enumerate(history.epochs, start=1):
        tracker.log_epoch({0: run}, {0: metrics}, epoch)
    tracker.flush()
    client = MlflowClient(tracking_uri=uri)
    # Nothing was written while it "trained": the interval had not passed.
    assert client.get_metric_history(run.result(), "val_accuracy") == []
    tracker.drop_live()
    tracker.finish_trial(run, TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, history))
    tracker.close()
    steps = sorted(m.step for m in client.get_metric_history(run.result(), "val_accuracy"))
    assert steps == [1, 2, 3]


def test_sync_completes_a_live_run_whose_process_died_without_duplicates(tmp_path: Path) -> None:
    uri, tracker, run, history = live(tmp_path, "died", n_live=1)
    tracker.abandon()  # the process dies: the run stays RUNNING with epoch 1 only
    again = Tracker(uri, "died")
    record = TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, history)
    result = again.sync("died", [record])
    again.close()
    assert result is not None and result.completed == 1
    client = MlflowClient(tracking_uri=uri)
    run_id = run.result()
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "val_accuracy"))
    assert steps == [1, 2, 3, 4]


def test_epochs_written_at_the_tell_keep_the_time_each_epoch_ended(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "times")
    tracker.start_study("times", {}, "")
    run = tracker.start_trial("times", 0, params={"reg": 0.0})
    ended = [1_700_000_001_000, 1_700_000_002_000, 1_700_000_003_000]
    record = TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, epochs(3), epoch_ms=ended)
    tracker.finish_trial(run, record)
    tracker.close()
    points = MlflowClient(tracking_uri=uri).get_metric_history(run.result(), "train_loss")
    assert sorted((m.step, m.timestamp) for m in points) == list(zip([1, 2, 3], ended, strict=True))

"""The tracker against a real MLflow SQLite store: runs made in its thread, in order."""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweep.lifecycle import Outcome
from sweep.tracker import Tracker
from sweep.tracking import TrialRecord


def test_trial_runs_are_created_in_the_background_with_their_params(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "bg", fixed_params={"epochs": "3"}, wait=False)  # returns at once
    tracker.start_study("bg", {"sampler": "grid"}, "")
    started = [tracker.start_trial("bg", n, params={"reg": n / 10}) for n in range(3)]
    ids = [tracker.run_id(run) for run in started]
    parent = tracker.study_run()
    tracker.finish_trial(ids[0], TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, [], {"acc": 0.5}))
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


def epochs(n: int, start: float = 0.5) -> list[dict[str, float]]:
    return [
        {"train_loss": 1.0 / e, "train_accuracy": start + e / 100, "val_accuracy": start + e / 50,
         "epoch_time_s": 0.1}
        for e in range(1, n + 1)
    ]  # fmt: skip


def first_epoch_live(tmp_path: Path, study: str) -> tuple[str, Tracker, Future[str]]:
    """A study's trial 0 whose epoch 1 went to MLflow while it trained."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, study)
    tracker.start_study(study, {}, "")
    run = tracker.start_trial(study, 0, params={"reg": 0.0})
    tracker._live_cost = 0.0  # as if requests were free: the first epoch goes at once
    tracker.log_epoch({0: run}, {0: epochs(1)[0]}, 1)
    tracker._live_job.result()  # its cost is measured now
    # The group's training "starts" now, so the budget (5% of ~0 s) affords no more epochs.
    # (Counted from the first epoch, the wait for MLflow's store to be made in the tracker's
    # thread, seconds on a loaded machine, would afford the next one.)
    tracker._live_since = time.monotonic()
    return uri, tracker, run


def test_epochs_logged_live_are_not_logged_again_at_the_finish(tmp_path: Path) -> None:
    uri, tracker, run = first_epoch_live(tmp_path, "live")
    history = epochs(4)
    tracker.log_epoch({0: run}, {0: history[1]}, 2)
    assert tracker._live and tracker._live[0][1] == 2
    tracker.flush()
    tracker._live_job.result()
    tracker.drop_live()  # the group ends: its finish writes epochs 2..4
    record = TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, history, {"best_val_accuracy": 0.58},
                         info={"softsweep.epochs_run": "4"}, ended_ms=4_000_000_000_000)  # fmt: skip
    tracker.finish_trial(run, record)
    tracker.close()
    assert tracker.errors == []
    client = MlflowClient(tracking_uri=uri)
    run_id = run.result()
    points = sorted(client.get_metric_history(run_id, "val_accuracy"), key=lambda m: m.step)
    assert [m.step for m in points] == [1, 2, 3, 4]  # one point per epoch, none twice
    assert [m.value for m in points] == pytest.approx([h["val_accuracy"] for h in history])
    # Epoch 1 carries the time it was trained; the rest, the tell's.
    assert points[0].timestamp < 4_000_000_000_000
    assert [m.timestamp for m in points[1:]] == [4_000_000_000_000] * 3
    data = client.get_run(run_id).data
    # Bookkeeping is tagged, not charted: the charts hold the learning curves only.
    assert set(data.metrics) == {"train_loss", "train_accuracy", "val_accuracy",
                                 "best_val_accuracy"}  # fmt: skip
    assert data.tags["softsweep.epochs_run"] == "4"


def test_sync_completes_a_live_run_whose_process_died_without_duplicates(tmp_path: Path) -> None:
    uri, tracker, run = first_epoch_live(tmp_path, "died")
    history = epochs(3)
    tracker.abandon()  # the process dies: the run stays RUNNING with epoch 1 only
    again = Tracker(uri, "died")
    record = TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, history, {"best_val_accuracy": 0.56})
    result = again.sync("died", [record])
    again.close()
    assert result is not None and result.completed == 1
    client = MlflowClient(tracking_uri=uri)
    run_id = run.result()
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "val_accuracy"))
    assert steps == [1, 2, 3]


def test_epochs_written_at_the_tell_keep_the_time_each_epoch_ended(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "times")
    tracker.start_study("times", {}, "")
    run = tracker.start_trial("times", 0, params={"reg": 0.0})
    ended = [1_700_000_001_000, 1_700_000_002_000, 1_700_000_003_000]
    record = TrialRecord(0, Outcome.COMPLETE, {"reg": 0.0}, epochs(3), {"best_val_accuracy": 0.56},
                         epoch_ms=ended)  # fmt: skip
    tracker.finish_trial(run, record)
    tracker.close()
    points = MlflowClient(tracking_uri=uri).get_metric_history(run.result(), "train_loss")
    assert sorted((m.step, m.timestamp) for m in points) == list(zip([1, 2, 3], ended, strict=True))

"""The tracker against a real MLflow SQLite store: runs made in its thread, in order."""

from __future__ import annotations

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
        assert run.data.tags["mlflow.parentRunId"] == parent
        # A running (or killed) trial's run already shows what it is trying.
        assert run.data.params == {"epochs": "3", "reg": str(n / 10)}
    # A store that cannot serve the study: a run id is None (never an exception in the sweep),
    # and waiting for the store says why.
    missing = Tracker(uri, "no-such-study", create=False, wait=False)
    assert missing.run_id(missing.start_trial("no-such-study", 0)) is None
    with pytest.raises(RuntimeError, match="has no experiment named 'no-such-study'"):
        missing.wait_ready()
    missing.abandon()

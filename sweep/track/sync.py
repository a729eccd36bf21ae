"""Optuna is the source of truth; MLflow is a view that can always be rebuilt from it.

Every told trial keeps on itself what its MLflow run shows: the outcome, the reason and the
per-epoch `trial.History`. `records` turns a study's finished trials into the `TrialRecord`s its
runs should hold, and `Tracker.sync` writes what is missing: a run for a trial that has none, the
metrics and status of a run left RUNNING (its process died between the tell and the write, or the
tracking server was down). It runs at the start and the end of every `sweep run` / `sweep
worker`, and as `sweep sync STUDY`.
"""

from __future__ import annotations

import optuna

from ..store.home import Home
from ..store.study import load_study
from ..trial import TrialRecord, record_of
from .store import SyncResult
from .tracker import Tracker

__all__ = ["records", "sync_study"]


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every finished trial's record (see `trial.record_of`)."""
    found = (record_of(t) for t in study.get_trials(deepcopy=False))
    return [r for r in found if r is not None]


def sync_study(study_name: str, home: Home) -> SyncResult:
    """`sweep sync`: make the study's MLflow runs agree with its Optuna trials."""
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

"""Optuna is the source of truth; MLflow is a view that can always be rebuilt from it.

Every told trial keeps on itself what its MLflow run shows: the outcome, the reason and the
per-epoch `trial.History`. `records` turns a study's finished trials into the `TrialRecord`s its
runs should hold, and `Tracker.sync` writes what is missing: a run for a trial that has none, the
metrics and status of a run left RUNNING (its process died between the tell and the write, or the
tracking server was down). It runs at the start and the end of every `sweep run` / `sweep
worker`, and as `sweep sync STUDY`, which also ends the study's own run (with its summary) when
no sweep is on the study.
"""

from __future__ import annotations

import datetime as dt
import socket

import optuna

from ..closing import study_summary
from ..store.home import Home, owner_alive
from ..store.notes import read_notes
from ..store.study import HEARTBEAT_S, load_study, progress, store_lock, stored_spec
from ..trial import OWNER_ATTR, TrialRecord, record_of
from .store import SyncResult
from .tracker import Tracker

__all__ = ["OWNER_GRACE_S", "records", "sync_study"]

OWNER_GRACE_S = 3 * HEARTBEAT_S  # a told trial's own process writes its run within seconds


def records(
    study: optuna.Study, home: Home | None = None, me: str | None = None
) -> list[TrialRecord]:
    """Every finished trial's record (see `trial.record_of`). With `home`, not the trials of
    another process (other than `me`) that is still writing their runs: a repair beside it
    would log their epochs a second time. That is a live process of this home, or, for one
    on another machine (which cannot be checked from here), a trial told less than
    OWNER_GRACE_S ago. They are repaired once it is gone, or once the grace has passed."""
    found = []
    now = dt.datetime.now()  # (Optuna keeps local times)
    for trial in study.get_trials(deepcopy=False):
        record = record_of(trial)
        if record is None:
            continue
        owner = trial.user_attrs.get(OWNER_ATTR)
        if home is not None and owner and owner != me:
            alive = owner_alive(home.owners, owner)
            # (on this machine, a process with no lock in the home has ended: its lock file
            # goes with it; only another machine's cannot be checked)
            elsewhere = owner.rpartition(":")[0] != socket.gethostname()
            ended = trial.datetime_complete
            recent = ended is not None and (now - ended).total_seconds() < OWNER_GRACE_S
            if alive or (alive is None and elsewhere and recent):
                continue
        found.append(record)
    return found


def sync_study(study_name: str, home: Home) -> SyncResult:
    """`sweep sync`: make the study's MLflow runs agree with its Optuna trials."""
    stored = load_study(study_name, home)
    spec = stored_spec(stored, home.storage)
    tracker = Tracker(
        home.tracking_uri,
        study_name,
        artifact_root=home.artifact_root,
        repair_lock=lambda: store_lock(home.storage, "repair"),
    )
    # the data behind the runs it rebuilds, as the sweep described it
    tracker.set_fixed_params({}, read_notes(stored, home.storage).get("data"))
    try:
        if tracker.find_study_run(study_name) is None:  # (a new or emptied MLflow store)
            tracker.start_study(study_name, spec.as_params(), spec.text)
        done = tracker.sync(study_name, records(stored, home))
        now = progress(stored, spec.grid_size is not None)
        if done is not None and not now.running:  # no sweep is on it: its run ends too
            metrics, tags = study_summary(stored, read_notes(stored, home.storage))
            status = "FINISHED"
            if now.done < spec.target and not stored.user_attrs.get("stopped"):
                status = "KILLED"
                tags["softsweep.stopped"] = (
                    f"stopped with {now.done} of {spec.target} trials done; `sweep run` with its "
                    "study file resumes it"
                )
            ended = tracker.close_study_run(study_name, status, metrics, tags)
            done.study_run, done.study_run_ended = ended
    finally:
        tracker.close()
    if done is None:
        raise RuntimeError(
            f"The MLflow tracking store {home.shown_tracking_uri} failed "
            f"({tracker.down or tracker.errors[-1]}). Nothing was changed; try again later."
        )
    return done

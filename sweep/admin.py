"""Studies across a home or storage: what is there (`sweep studies`) and deleting one
(`sweep delete`: its Optuna study, its MLflow experiment and runs, its report folder)."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import optuna

from .store.home import Home
from .store.sqlitestore import sqlite_path
from .store.study import load_study
from .track.store import writer

__all__ = ["Deletion", "StudySummary", "delete_study", "plan_deletion", "study_summaries"]


@dataclass(frozen=True)
class StudySummary:
    name: str
    states: dict[str, int]  # trials by Optuna state
    best_value: float | None  # best validation accuracy
    last_activity: datetime | None  # the latest trial start or end


def study_summaries(home: Home) -> list[StudySummary]:
    """Every study in the home's Optuna storage, by name."""
    path = sqlite_path(home.storage)
    if path is not None and not path.exists():
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = []
    for summary in optuna.get_all_study_summaries(home.storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=home.storage)
        trials = study.get_trials(deepcopy=False)
        states = Counter(t.state.name for t in trials)
        values = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
        times = [d for t in trials for d in (t.datetime_start, t.datetime_complete) if d]
        found.append(
            StudySummary(
                name=summary.study_name,
                states=dict(sorted(states.items())),
                best_value=max(values) if values else None,
                last_activity=max(times) if times else None,
            )
        )
    return sorted(found, key=lambda s: s.name)


@dataclass(frozen=True)
class Deletion:
    """What `sweep delete STUDY` removes."""

    study: str
    trials: int
    running: int  # trials RUNNING now: a sweep may still be working on the study
    report: str | None  # the report folder, if there is one

    def describe(self) -> str:
        lines = [
            f"study {self.study!r}: {self.trials} trials in the Optuna storage",
            "its MLflow experiment and runs (moved to MLflow's trash, renamed)",
        ]
        if self.report:
            lines.append(f"its report folder {self.report}")
        if self.running:
            lines.append(
                f"WARNING: {self.running} trials are RUNNING: a sweep may still be working on it"
            )
        return "\n".join(f"  {line}" for line in lines)


def plan_deletion(study_name: str, home: Home) -> Deletion:
    """What deleting the study would remove (raises the usual error for an unknown study)."""
    trials = load_study(study_name, home).get_trials(deepcopy=False)
    report = home.report_dir(study_name)
    return Deletion(
        study=study_name,
        trials=len(trials),
        running=sum(t.state.name == "RUNNING" for t in trials),
        report=str(report) if report.is_dir() else None,
    )


def delete_study(plan: Deletion, home: Home) -> int:
    """Delete what `plan` lists; returns the MLflow runs moved to the trash. MLflow first: a
    failure there leaves the study whole, to delete again."""
    runs = 0
    path = sqlite_path(home.tracking_uri)
    if path is None or path.exists():
        client = writer(home.tracking_uri)
        found = client.get_experiment_by_name(plan.study)
        if found is not None:
            runs = len(client.search_runs([found.experiment_id], max_results=50000))
            # Renamed first: MLflow keeps a deleted experiment's name taken.
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            client.rename_experiment(found.experiment_id, f"{plan.study} (deleted {stamp})")
            client.delete_experiment(found.experiment_id)
    optuna.delete_study(study_name=plan.study, storage=home.storage)
    if plan.report:
        shutil.rmtree(plan.report, ignore_errors=True)
    return runs

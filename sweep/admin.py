"""Studies across a home or storage: what is there (`sweep studies`) and deleting one
(`sweep delete`: its Optuna study, its MLflow experiment and runs, its report folder)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import optuna

from .spec import parse_spec
from .store.home import Home, owner_alive
from .store.notes import read_notes
from .store.sqlitestore import sqlite_path
from .store.study import load_study, progress
from .track.store import writer
from .trial import OWNER_ATTR

__all__ = [
    "Deletion",
    "StudySummary",
    "delete_study",
    "plan_deletion",
    "stop_sweeps",
    "study_summaries",
]


@dataclass(frozen=True)
class StudySummary:
    name: str
    states: dict[str, int]  # trials by Optuna state
    best_value: float | None  # best validation accuracy
    last_activity: datetime | None  # the latest trial start or end
    target: int | None  # its study file's n_trials (None: not made by softsweep)
    done: int  # trials that count toward the target (complete, pruned, failed for a reason)

    def as_dict(self) -> dict[str, object]:
        return {
            "study": self.name,
            "target": self.target,
            "done": self.done,
            "states": self.states,
            "best_val_accuracy": self.best_value,
            "last_activity": None if self.last_activity is None else self.last_activity.isoformat(),
        }


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
        text = read_notes(study, home.storage).get("spec_toml")
        spec = parse_spec(text) if text else None
        found.append(
            StudySummary(
                name=summary.study_name,
                states=dict(sorted(states.items())),
                best_value=max(values) if values else None,
                last_activity=max(times) if times else None,
                target=spec.target if spec is not None else None,
                done=progress(study, spec is not None and spec.grid_size is not None).done,
            )
        )
    return sorted(found, key=lambda s: s.name)


@dataclass(frozen=True)
class Deletion:
    """What `sweep delete STUDY` removes."""

    study: str
    trials: int
    running: int  # trials RUNNING now
    report: str | None  # the report folder, if there is one
    live: tuple[str, ...] = ()  # processes ('host:pid') sweeping it now, or that may be

    def refusal(self) -> str:
        """Why the study is not deleted while sweeps are on it, and what to do."""
        here = [name for name in self.live if name.rpartition(":")[0] == socket.gethostname()]
        stop = (f"stop it first (Ctrl-C in its terminal, or `kill {here[0].rpartition(':')[2]}`)"
                if len(self.live) == 1 and here else "stop them first")  # fmt: skip
        return (
            f"study {self.study!r} has {self.running} trials RUNNING in "
            f"{', '.join(self.live)}, which {'is' if len(self.live) == 1 else 'may be'} sweeping "
            f"it now; nothing was deleted. {stop[0].upper()}{stop[1:]} and delete again, or pass "
            "--force to stop the sweeps on this machine (SIGTERM: they end their runs) and delete."
        )

    def describe(self) -> str:
        lines = [
            f"study {self.study!r}: {self.trials} trials in the Optuna storage",
            "its MLflow experiment and runs (moved to MLflow's trash, renamed)",
            "its registered MLflow model (the study's best trials), if it has one",
        ]
        if self.report:
            lines.append(f"its report folder {self.report}")
        if self.running and not self.live:
            lines.append(f"{self.running} trials RUNNING, of processes that are gone")
        return "\n".join(f"  {line}" for line in lines)


def plan_deletion(study_name: str, home: Home) -> Deletion:
    """What deleting the study would remove (raises the usual error for an unknown study)."""
    trials = load_study(study_name, home).get_trials(deepcopy=False)
    running = [t for t in trials if t.state.name == "RUNNING"]
    # (a trial with no owner was asked by a process that died before registering it)
    owners = {str(t.user_attrs[OWNER_ATTR]) for t in running if t.user_attrs.get(OWNER_ATTR)}
    report = home.report_dir(study_name)
    return Deletion(
        study=study_name,
        trials=len(trials),
        running=len(running),
        report=str(report) if report.is_dir() else None,
        live=tuple(sorted(n for n in owners if owner_alive(home.owners, n) is not False)),
    )


def stop_sweeps(plan: Deletion, home: Home, wait_s: float = 60.0) -> list[str]:
    """SIGTERM the live sweeps of `plan` that hold their lock in this home and wait (up to
    `wait_s`) until each has let go of it; returns the others (another machine or home), which
    cannot be stopped from here."""
    elsewhere = []
    for name in plan.live:
        pid = name.rpartition(":")[2]
        if owner_alive(home.owners, name) is not True:  # not a process locked in this home
            elsewhere.append(name)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while owner_alive(home.owners, name) and time.monotonic() < deadline:
            time.sleep(0.2)
        if owner_alive(home.owners, name):
            raise RuntimeError(
                f"{name} did not stop within {wait_s:g} s of SIGTERM; nothing was deleted. "
                f"Stop it (`kill -9 {pid}`) and delete again."
            )
    return elsewhere


def delete_study(plan: Deletion, home: Home) -> int:
    """Delete what `plan` lists; returns the MLflow runs moved to the trash. MLflow first: a
    failure there leaves the study whole, to delete again."""
    runs = 0
    path = sqlite_path(home.tracking_uri)
    if path is None or path.exists():
        client = writer(home.tracking_uri)
        found = client.get_experiment_by_name(plan.study)
        if found is not None:
            listed = client.search_runs([found.experiment_id], max_results=50000)
            runs = len(listed)
            # The registered model named after the study, if it is the study's own (every
            # version from one of its runs): it was made from them.
            versions = client.search_model_versions(f"name = '{plan.study}'")
            if versions and {v.run_id for v in versions} <= {r.info.run_id for r in listed}:
                client.delete_registered_model(plan.study)
            # Renamed first: MLflow keeps a deleted experiment's name taken.
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            client.rename_experiment(found.experiment_id, f"{plan.study} (deleted {stamp})")
            client.delete_experiment(found.experiment_id)
    optuna.delete_study(study_name=plan.study, storage=home.storage)
    if plan.report:
        shutil.rmtree(plan.report, ignore_errors=True)
    return runs

"""Closing a study: the test set once for the best trial, the report, the study's MLflow run.

Closing is idempotent: any process may close a study again (a resumed study, the last of
several workers), and it reads what it needs from the stores, taking from this session only
what it still holds in memory (weights, curves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

import engine

from .home import Home
from .lifecycle import RUN_ID_ATTR, TESTED_ATTR, Outcome, checkpoint, outcome_of, test_evaluations
from .runner import Session
from .spec import StudySpec
from .sync import retrain
from .tracker import Tracker

__all__ = ["Closing", "close_study", "count_outcomes"]


@dataclass
class Closing:
    counts: dict[Outcome, int]
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    test_accuracy: float | None = None
    test_evaluations: list[tuple[int, float]] = field(default_factory=list)
    report_dir: Path | None = None
    report_notes: list[str] = field(default_factory=list)


def best_weights(
    spec: StudySpec,
    best: FrozenTrial,
    data: engine.Dataset,
    tracker: Tracker,
    known: dict[int, np.ndarray],
    notes: list[str],
) -> np.ndarray | None:
    """The best trial's weights: in memory (this session trained it), else in its run, else
    trained again (deterministic for the seed) and put back in its run."""
    if best.number in known:
        return known[best.number]
    run_id = best.user_attrs.get(RUN_ID_ATTR)
    weights = tracker.download_weights(run_id) if run_id else None
    if weights is None:
        weights, note = retrain(data, spec, best)
        notes.append(
            f"The weights of trial #{best.number} were not in its MLflow run: it was trained "
            "again" + (f"; {note}." if note else ", to the same validation accuracy.")
        )
        if weights is not None:
            tracker.log_trial_weights(spec.name, best.number, weights)
    return weights


def count_outcomes(study: optuna.Study) -> dict[Outcome, int]:
    counts = dict.fromkeys(Outcome, 0)
    for trial in study.get_trials(deepcopy=False):
        outcome = outcome_of(trial)
        if outcome is not None:
            counts[outcome] += 1
    return counts


def close_study(
    spec: StudySpec,
    study: optuna.Study,
    home: Home,
    data: engine.Dataset,
    tracker: Tracker,
    session: Session | None,
    *,
    report: bool = True,
    stopped: str = "",
) -> Closing:
    """Evaluate the best trial on the test set (once per trial that was ever best: a tested
    trial's accuracy is read back, never measured again), draw the report into
    `home.report_dir(study)`, and finish the study's MLflow run. `stopped` says why the study
    ended before its target (its deadline), for the run and the report."""
    closing = Closing(count_outcomes(study))
    known = session.weights() if session is not None else {}
    if closing.counts[Outcome.COMPLETE]:
        best = study.best_trial
        closing.best_trial, closing.best_value = best.number, best.value
        closing.best_params = dict(best.params)
        weights = best_weights(spec, best, data, tracker, known, closing.report_notes)
        tested = test_evaluations(study.user_attrs)
        if best.number in dict(tested):
            closing.test_accuracy = dict(tested)[best.number]
        elif weights is not None:
            closing.test_accuracy = engine.accuracy(weights, data.X_test, data.y_test)
            tested.append((best.number, closing.test_accuracy))
            study.set_user_attr(TESTED_ATTR, [list(pair) for pair in tested])
        closing.test_evaluations = tested
        if weights is not None:
            known = {**known, best.number: weights}
    if stopped:
        study.set_user_attr("stopped", stopped)
    elif study.user_attrs.get("stopped"):
        study.set_user_attr("stopped", "")
    finished = sum(closing.counts.values())
    if report and finished:
        checkpoint("report")
        from . import report as reports
        from .studyview import gather

        view = gather(study, spec, tracker, home, weights=known, data=data)
        written = reports.write_report(view, home.report_dir(spec.name))
        tracker.log_reports(written.files)
        closing.report_dir = written.folder
        closing.report_notes += written.notes
    metrics = {
        "best_val_accuracy": closing.best_value,
        "test_accuracy": closing.test_accuracy,
        "test_evaluations": float(len(closing.test_evaluations)),
        **{f"n_{o.label}": float(n) for o, n in closing.counts.items()},
    }
    tags = {
        "best_trial": str(closing.best_trial),
        **{f"best.{k}": str(v) for k, v in (closing.best_params or {}).items()},
        "softsweep.stopped": stopped or "reached n_trials",
        "softsweep.test_evaluations": describe_tests(closing.test_evaluations),
    }
    sweep_s = session.loop_s if session is not None else 0.0
    tracker.finish_study({k: v for k, v in metrics.items() if v is not None}, tags, sweep_s=sweep_s)
    return closing


def describe_tests(tested: list[tuple[int, float]]) -> str:
    """'1: trial #29 (0.8419)', or for a resumed study that found a new best, every use."""
    if not tested:
        return "0: no trial tested"
    uses = ", ".join(f"trial #{n} ({a:.4f})" for n, a in tested)
    warning = "; the test set was looked at more than once" if len(tested) > 1 else ""
    return f"{len(tested)}: {uses}{warning}"


def redraw_report(study_name: str, home: Home) -> tuple[Any, Tracker, bool]:
    """`sweep report`: the report of a study drawn again from its stores alone (no training),
    logged to its MLflow run when it has one. Returns the report, the tracker (its `errors`
    and `parent_id`) and whether the study has a completed trial."""
    from . import report as reports
    from .study import load_study, stored_spec
    from .studyview import gather
    from .sync import load_data

    stored = load_study(study_name, home)
    spec = stored_spec(stored, home.storage)
    # The tested trial's predictions are drawn again from its weights (the same evaluation);
    # without the data files the report goes without those figures.
    try:
        data = load_data(spec) if test_evaluations(stored.user_attrs) else None
    except (OSError, ValueError):
        data = None
    tracker = Tracker(home.tracking_uri, study_name, create=False)
    try:
        tracker.find_study_run(study_name)
        view = gather(stored, spec, tracker, home, data=data)
        written = reports.write_report(view, home.report_dir(study_name))
        if tracker.parent_id is not None:
            tracker.log_reports(written.files)
    finally:
        tracker.close()
    return written, tracker, view.best is not None

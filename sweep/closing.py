"""Closing a study: the test set once for the best trial, the report, the study's MLflow run.

Closing is idempotent: any process may close a study again (a resumed study, the last of
several workers), and it reads what it needs from the stores, taking from this session only
what it still holds in memory (weights, curves).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

import engine

from .runner import LoopResult
from .scores import (
    compare_runner_up,
    describe_calibration,
    describe_interval,
    describe_refit,
    describe_runner_up,
    kept,
    refit_best,
    score_test,
)
from .signals import checkpoint
from .spec import StudySpec
from .store.home import Home
from .store.notes import read_notes, write_notes
from .track.model import save_model
from .track.tracker import Tracker
from .trial import (
    REFIT_ATTR,
    RUN_ID_ATTR,
    RUNNER_UP_ATTR,
    SCORES_ATTR,
    TESTED_ATTR,
    Outcome,
    Params,
    outcome_of,
    test_evaluations,
)

__all__ = ["Closing", "close_study", "count_outcomes", "describe_tests", "retrain"]


@dataclass
class Closing:
    counts: dict[Outcome, int]
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    test_accuracy: float | None = None
    test_evaluations: list[tuple[int, float]] = field(default_factory=list)
    test_scores: dict[str, Any] | None = None  # SCORES_ATTR of the tested best trial
    runner_up: dict[str, Any] | None = None  # RUNNER_UP_ATTR: best vs runner-up on validation
    refit: dict[str, Any] | None = None  # REFIT_ATTR: the course's refit ([train] refit = true)
    report_dir: Path | None = None
    report_notes: list[str] = field(default_factory=list)


def best_weights(
    spec: StudySpec,
    best: FrozenTrial,
    data: Callable[[], engine.Dataset],
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
        weights, note = retrain(data(), spec, best)
        notes.append(
            f"The weights of trial #{best.number} were not in its MLflow run: it was trained "
            "again" + (f"; {note}." if note else ", to the same validation accuracy.")
        )
        if weights is not None:
            tracker.log_trial_weights(spec.name, best.number, weights)
    return weights


def _save_model(weights: np.ndarray, data: Callable[[], engine.Dataset], path: Path) -> Path | None:
    """`track.model.save_model` for the best trial, with what its data says about its inputs;
    None for data given as features rather than images (the model takes images)."""
    dataset = data()
    if dataset.decoder is None or dataset.pixels_train is None:
        return None
    return save_model(
        path, weights=weights, decoder=dataset.decoder, image_shape=dataset.image_shape,
        class_names=dataset.class_names, example=dataset.pixels_train[:3],
    )  # fmt: skip


def retrain(
    data: engine.Dataset, spec: StudySpec, trial: FrozenTrial
) -> tuple[np.ndarray | None, str]:
    """The weights of a completed trial, trained again (training is deterministic for a seed),
    or None and why: a model that does not reproduce the stored validation accuracy is not the
    trial's and is not used."""
    params = Params.of(trial.params)
    if params is None:
        return None, f"trial #{trial.number} has no params to train again with"
    (result,) = engine.train_many(
        data,
        [(params.learning_rate, params.reg)],
        batch_size=params.batch_size,
        epochs=spec.epochs,
        seed=spec.seed,
        loss=spec.loss,  # type: ignore[arg-type]
        schedule=spec.lr_schedule,
    )
    weights: np.ndarray | None = result.weights
    if result.status != "completed" or weights is None:
        return None, f"trial #{trial.number} did not train again ({result.reason})"
    # The same seed gives the same model up to float rounding in the BLAS; settings on the edge
    # of chaos (a huge learning rate on unscaled pixels) amplify that rounding into another
    # model. One validation example is the most that is still the trial's own model.
    if trial.value is not None and abs(result.val_accuracy - trial.value) > 1.5 / len(data.y_val):
        return None, (
            f"it reached validation accuracy {result.val_accuracy:.4f}, not its "
            f"stored {trial.value:.4f}: another model, which does not stand in for it. The test "
            "set was not evaluated and the report has no weights or test figures for it. "
            "Training at these settings is not reproducible (its learning rate is on the edge "
            "of divergence)"
        )
    return weights, ""


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
    data: Callable[[], engine.Dataset],
    tracker: Tracker,
    loop: LoopResult | None,
    *,
    report: bool = True,
    stopped: str = "",
    say: Callable[[str], None] | None = None,
) -> Closing:
    """Evaluate the best trial on the test set (once per trial that was ever best: a tested
    trial's accuracy is read back, never measured again), draw the report into
    `home.report_dir(study)`, and finish the study's MLflow run. `stopped` says why the study
    ended before its target (its deadline), for the run and the report. `data()` gives the
    study's data: called only for what is not kept yet (a test, a comparison, a report).
    `say(what)` is told what it is doing, as it starts each step (the progress bar shows it)."""
    tell = say or (lambda what: None)
    closing = Closing(count_outcomes(study))
    notes: dict[str, Any] = {}  # softsweep's notes on the study, once read
    known = loop.weights() if loop is not None else {}
    if closing.counts[Outcome.COMPLETE]:
        tell("testing the best trial")
        best = study.best_trial
        closing.best_trial, closing.best_value = best.number, best.value
        closing.best_params = dict(best.params)
        weights = best_weights(spec, best, data, tracker, known, closing.report_notes)
        tested = test_evaluations(study.user_attrs)
        notes = dict(read_notes(study, home.storage))
        if best.number in dict(tested):
            closing.test_accuracy = dict(tested)[best.number]
        elif weights is not None:
            notes[SCORES_ATTR] = score_test(best.number, weights, data())
            write_notes(study, home.storage, {SCORES_ATTR: notes[SCORES_ATTR]})
            closing.test_accuracy = notes[SCORES_ATTR]["correct"] / notes[SCORES_ATTR]["n"]
            tested.append((best.number, closing.test_accuracy))
            study.set_user_attr(TESTED_ATTR, [list(pair) for pair in tested])
        closing.test_evaluations = tested
        closing.test_scores = kept(notes, SCORES_ATTR, best.number)
        if weights is not None:
            closing.runner_up = notes[RUNNER_UP_ATTR] = compare_runner_up(
                study, home.storage, notes, best, weights, data, tracker, known
            )
        if spec.refit and closing.test_accuracy is not None:
            closing.refit = notes[REFIT_ATTR] = refit_best(
                study, home.storage, notes, spec, best, data
            )
        if weights is not None:
            known = {**known, best.number: weights}
            # (called in the tracker's thread, only if the model is not registered yet)
            tracker.log_best_model(spec.name, best.number, partial(_save_model, weights, data))
    if stopped:
        study.set_user_attr("stopped", stopped)
    elif study.user_attrs.get("stopped"):
        study.set_user_attr("stopped", "")
    finished = sum(closing.counts.values())
    if report and finished:
        checkpoint("report")
        from .report.files import drawn_report, write_report
        from .report.view import gather

        key = report_key(study, notes)
        written = drawn_report(home.report_dir(spec.name), key)  # nothing new: it stands
        if written is None:
            tell("drawing the report")
            view = gather(study, spec, tracker, home, weights=known, data=data())
            written = write_report(view, home.report_dir(spec.name), drawn_for=key)
        tracker.log_reports(written.files)  # (again too: the tracking store may be a new one)
        closing.report_dir = written.folder
        closing.report_notes += written.notes
    tell("finishing the study's MLflow run")
    metrics, tags = study_summary(study, notes or read_notes(study, home.storage), closing.counts)
    sweep_s = loop.loop_s if loop is not None else 0.0
    tracker.finish_study(metrics, tags, sweep_s=sweep_s)
    return closing


def report_key(study: optuna.Study, notes: Mapping[str, Any]) -> str:
    """What a study's report shows, in short: every finished trial (number, state, when it
    ended), the uses of the test set, why the study stopped, and the refit if one was made
    (`notes`: the study's notes). A re-run that finds the same key (a finished study run again)
    keeps the report it drew."""
    import hashlib
    import json

    finished = [
        [t.number, t.state.name, str(t.datetime_complete)]
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished()
    ]
    shown = [
        finished,
        test_evaluations(study.user_attrs),
        study.user_attrs.get("stopped", ""),
        notes.get(REFIT_ATTR),
    ]
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:16]


def study_summary(
    study: optuna.Study, notes: Mapping[str, Any], counts: dict[Outcome, int] | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """The study run's summary metrics and tags, from what the study holds (its best trial,
    the test evaluations, why it stopped): what a closing writes, and what `sweep sync` writes
    when a closing could not reach MLflow."""
    counts = counts if counts is not None else count_outcomes(study)
    best = study.best_trial if counts[Outcome.COMPLETE] else None
    tested = test_evaluations(study.user_attrs)
    test_accuracy = dict(tested).get(best.number) if best is not None else None
    number = best.number if best is not None else -1
    scores = kept(notes, SCORES_ATTR, number)
    metrics: dict[str, float | None] = {
        "best_val_accuracy": best.value if best is not None else None,
        "test_accuracy": test_accuracy,
        "test_evaluations": float(len(tested)),
        **{f"n_{o.label}": float(n) for o, n in counts.items()},
    }
    tags = {
        "best_trial": str(best.number if best is not None else None),
        **{f"best.{k}": str(v) for k, v in (best.params if best is not None else {}).items()},
        "softsweep.stopped": study.user_attrs.get("stopped") or "reached n_trials",
        "softsweep.test_evaluations": describe_tests(tested),
    }
    if scores is not None:
        low, high = engine.wilson_interval(scores["correct"], scores["n"])
        metrics |= {"test_accuracy_low": low, "test_accuracy_high": high}
        metrics |= {f"test_{k}": scores[k] for k in ("nll", "ece", "temperature")}
        metrics |= {f"test_{k}": scores[k] for k in ("nll_scaled", "ece_scaled")}
        tags["softsweep.test_accuracy"] = describe_interval(scores)
        tags["softsweep.calibration"] = describe_calibration(scores)
    runner_up = kept(notes, RUNNER_UP_ATTR, number)
    if runner_up is not None:
        metrics["runner_up_p_value"] = runner_up["p_value"]
        tags["softsweep.runner_up"] = describe_runner_up(runner_up)
    refit = kept(notes, REFIT_ATTR, number)
    if refit is not None:
        tags["softsweep.refit"] = describe_refit(refit)
        if "correct" in refit:
            metrics["refit_test_accuracy"] = refit["correct"] / refit["n"]
    return {k: v for k, v in metrics.items() if v is not None}, tags


def describe_tests(tested: list[tuple[int, float]]) -> str:
    """'1: trial #29 (0.8419)', or for a resumed study that found a new best, every use."""
    if not tested:
        return "0: no trial tested"
    uses = ", ".join(f"trial #{n} ({a:.4f})" for n, a in tested)
    warning = "; the test set was looked at more than once" if len(tested) > 1 else ""
    return f"{len(tested)}: {uses}{warning}"

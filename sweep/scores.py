"""The tested model's scores, with their uncertainty: its one evaluation on the test set (the
accuracy with its Wilson interval, the NLL and ECE, both again at a temperature fitted on
validation), the best trial against the runner-up on validation (McNemar), and how each reads.

All are kept in the study's notes (SCORES_ATTR, RUNNER_UP_ATTR, REFIT_ATTR: `store/notes.py`,
out of the short user attributes `optuna studies` shows), so that a re-run, `sweep sync` and the
report read them back instead of looking at the test set again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

import engine

from .store.notes import write_notes
from .trial import (
    REFIT_ATTR,
    RUN_ID_ATTR,
    RUNNER_UP_ATTR,
    Outcome,
    Params,
    outcome_of,
)

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from .spec import StudySpec
    from .track.tracker import Tracker

__all__ = [
    "compare_runner_up",
    "describe_calibration",
    "describe_interval",
    "describe_refit",
    "describe_runner_up",
    "kept",
    "refit_best",
    "score_test",
]


def score_test(number: int, weights: np.ndarray, data: engine.Dataset) -> dict[str, Any]:
    """The one evaluation of a trial on the test set: how many of how many it got right (the
    accuracy and its interval), its NLL and ECE, and both again at the temperature fitted on
    the validation split (temperature scaling changes confidence, never a prediction)."""
    S = engine.scores(weights, data.X_test)
    y = data.y_test
    temperature = engine.fit_temperature(engine.scores(weights, data.X_val), data.y_val)

    def ece(t: float) -> float:
        return engine.calibration(np.exp(engine.log_softmax(S / t)), y).ece

    return {
        "trial": number,
        "n": int(y.shape[0]),
        "correct": int(np.sum(S.argmax(axis=1) == y)),
        "nll": engine.nll(S, y),
        "ece": ece(1.0),
        "temperature": temperature,
        "nll_scaled": engine.nll(S, y, temperature),
        "ece_scaled": ece(temperature),
    }


def kept(notes: Mapping[str, Any], attr: str, number: int) -> dict[str, Any] | None:
    """The note `attr` (SCORES_ATTR, RUNNER_UP_ATTR, REFIT_ATTR) if it is about trial `number`,
    the best one (each names its trial; a study tested before it was kept has none)."""
    found = notes.get(attr)
    return found if isinstance(found, dict) and found.get("trial") == number else None


def compare_runner_up(
    study: optuna.Study,
    storage: str,
    notes: Mapping[str, Any],
    best: FrozenTrial,
    weights: np.ndarray,
    data: Callable[[], engine.Dataset],
    tracker: Tracker,
    known: dict[int, np.ndarray],
) -> dict[str, Any] | None:
    """The best trial against the runner-up on the validation split, example by example
    (McNemar's exact test): is the best better, or a tie that the selection happened to break?
    Kept on the study, and compared again only when either of the two changes."""
    done = [t for t in study.get_trials(deepcopy=False) if outcome_of(t) is Outcome.COMPLETE]
    done.sort(key=lambda t: (-(t.value or 0.0), t.number))
    if len(done) < 2 or done[0].number != best.number:
        return None
    second = done[1]
    stored = kept(notes, RUNNER_UP_ATTR, best.number)
    if stored is not None and stored.get("runner_up") == second.number:
        return stored
    other = known.get(second.number)
    run_id = second.user_attrs.get(RUN_ID_ATTR)
    if other is None and run_id:
        other = tracker.download_weights(run_id)
    if other is None:
        return None
    dataset = data()
    X, y = dataset.X_val, dataset.y_val
    test = engine.mcnemar(engine.predict(weights, X) == y, engine.predict(other, X) == y)
    found = {
        "trial": best.number,
        "runner_up": second.number,
        "n": int(y.shape[0]),
        "only_best": test.only_first,
        "only_runner_up": test.only_second,
        "p_value": test.p_value,
    }
    write_notes(study, storage, {RUNNER_UP_ATTR: found})
    return found


def describe_interval(scores: dict[str, Any]) -> str:
    """'0.8446 (95% CI 0.8374-0.8516, 8446 of 10000)': the Wilson interval of the one test."""
    low, high = engine.wilson_interval(scores["correct"], scores["n"])
    accuracy = scores["correct"] / scores["n"]
    return f"{accuracy:.4f} (95% CI {low:.4f}-{high:.4f}, {scores['correct']} of {scores['n']})"


def describe_calibration(scores: dict[str, Any]) -> str:
    """The tested model's NLL and ECE on test, and at its temperature fitted on validation."""
    return (
        f"NLL {scores['nll']:.4f}, ECE {scores['ece']:.4f} on test; at the temperature "
        f"{scores['temperature']:.3f} fitted on validation: NLL {scores['nll_scaled']:.4f}, "
        f"ECE {scores['ece_scaled']:.4f}"
    )


def describe_runner_up(found: dict[str, Any]) -> str:
    """'#17 on validation: 131 vs 118 examples only one of them got right, McNemar p = 0.45:
    not distinguishable at 5%'."""
    verdict = (
        "the best is better at 5%"
        if found["p_value"] < 0.05 and found["only_best"] > found["only_runner_up"]
        else "not distinguishable at 5% (a tie the selection broke)"
    )
    return (
        f"#{found['runner_up']} on validation: {found['only_best']} vs "
        f"{found['only_runner_up']} examples only one of them got right, McNemar "
        f"p = {found['p_value']:.2g}: {verdict}"
    )


def refit_best(
    study: optuna.Study,
    storage: str,
    notes: Mapping[str, Any],
    spec: StudySpec,
    best: FrozenTrial,
    data: Callable[[], engine.Dataset],
) -> dict[str, Any] | None:
    """The course's refit ([train] refit = true): the best trial's settings trained again, same
    epochs, seed and schedule, on the training and validation splits together (the features
    scaled as the study scales them, by the training split's statistics), and tested once.
    Nothing is chosen with it: it is reported beside the selected model, labelled. Kept on the
    study, and done again only for a new best."""
    stored = kept(notes, REFIT_ATTR, best.number)
    if stored is not None:
        return stored
    params = Params.of(best.params)
    if params is None:
        return None
    import dataclasses

    dataset = data()
    merged = dataclasses.replace(
        dataset,
        X_train=np.concatenate([dataset.X_train, dataset.X_val]),
        y_train=np.concatenate([dataset.y_train, dataset.y_val]),
        pixels_train=None,  # the trainer reads the float rows of both splits
        decoder=None,
    )
    (result,) = engine.train_many(
        merged, [(params.learning_rate, params.reg)], batch_size=params.batch_size,
        epochs=spec.epochs, seed=spec.seed, schedule=spec.lr_schedule,
        loss=spec.loss,  # type: ignore[arg-type]
    )  # fmt: skip
    if result.status != "completed" or result.weights is None:
        found: dict[str, Any] = {"trial": best.number, "failed": result.reason or result.status}
    else:
        y = dataset.y_test
        found = {
            "trial": best.number,
            "n_train": int(merged.y_train.shape[0]),
            "n": int(y.shape[0]),
            "correct": int(np.sum(engine.predict(result.weights, dataset.X_test) == y)),
        }
    write_notes(study, storage, {REFIT_ATTR: found})
    return found


def describe_refit(found: dict[str, Any]) -> str:
    """'0.8471 (95% CI ...) with #20's settings trained on train + validation (65000 images):
    the course's refit, not the selected model'."""
    if "failed" in found:
        number, why = found["trial"], found["failed"]
        return f"trial #{number}'s settings did not train on train + validation: {why}"
    low, high = engine.wilson_interval(found["correct"], found["n"])
    return (
        f"{found['correct'] / found['n']:.4f} (95% CI {low:.4f}-{high:.4f}) with trial "
        f"#{found['trial']}'s settings trained on train + validation ({found['n_train']} images): "
        "the course's refit, tested once, not the selected model"
    )

"""The test set, looked at once per study: the tested trial's accuracy, confusion matrix and
predictions come from one evaluation, and a resumed study that finds a new best says the test
set has now been used twice, and for which trials."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient

import engine
from sweep.cli.run import summary
from sweep.closing import retrain
from sweep.spec import parse_spec
from tests.helpers import run_spec, spec_text, write_idx_dataset


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "blobs", n_train=400, n_test=150)


def test_the_test_figures_come_from_the_tested_trials_one_evaluation(
    tmp_path: Path, blobs: Path
) -> None:
    text = spec_text("ev", blobs, lr="{ values = [0.03, 0.3] }", reg="{ values = [0.0] }",
                     batch="[16]", side_by_side=2)  # fmt: skip
    outcome = run_spec(text, tmp_path / "home", "ev.toml")
    folder = outcome.report_dir
    report = json.loads((folder / "report.json").read_text())
    best = outcome.closing.best_trial
    assert report["test_evaluations"] == [[best, outcome.test_accuracy]]
    # Oracle: the best trial's configuration trained again (deterministic for the seed), its
    # test predictions computed here with a plain softmax.
    data = engine.load_dataset(blobs, val_size=80, seed=0)
    params = outcome.closing.best_params
    (model,) = engine.train_many(
        data, [(params["learning_rate"], params["reg"])], batch_size=16, epochs=3, seed=0
    )
    scores = data.X_test @ model.weights[:-1] + model.weights[-1]
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((3, 3), dtype=int)
    for true, guess in zip(data.y_test, predicted, strict=True):
        confusion[true, guess] += 1
    test = report["test"]
    assert test["trial"] == best
    assert np.array_equal(test["confusion"], confusion)
    assert np.trace(confusion) / confusion.sum() == pytest.approx(outcome.test_accuracy)
    assert [s["index"] for s in test["samples"]] == list(range(16))
    assert [s["predicted"] for s in test["samples"]] == predicted[:16].tolist()
    mistakes = test["mistakes"]
    wrong = np.flatnonzero(predicted != data.y_test)
    assert len(mistakes) == min(16, wrong.size)
    assert all(m["true"] != m["predicted"] for m in mistakes)
    confidences = [m["confidence"] for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)  # the most confident first
    if wrong.size > len(mistakes):  # and no mistake left out was more confident
        shown = {m["index"] for m in mistakes}
        rest = [probs[k].max() for k in wrong if k not in shown]
        assert max(rest) <= min(confidences) + 1e-4
    for name in ("confusion.png", "predictions.png", "reliability.png"):
        assert (folder / name).stat().st_size > 5000
    # The one test number with its uncertainty and calibration, from the same predictions
    correct = int(np.sum(predicted == data.y_test))
    nll = float(-np.mean(np.log(probs[np.arange(len(data.y_test)), data.y_test])))
    scores = report["test_scores"]
    assert (scores["trial"], scores["n"], scores["correct"]) == (best, 150, correct)
    assert scores["nll"] == pytest.approx(nll, rel=1e-6)  # (float32 weights)
    assert scores["ece"] == pytest.approx(report["test"]["calibration"][0]["ece"])
    low, high = engine.wilson_interval(correct, 150)
    page = (folder / "index.html").read_text()
    assert f"({low:.4f}-{high:.4f}".replace("(", "(95% CI ") in page
    assert f"{correct} of 150; best trial, evaluated once)" in page
    run_summary = summary(outcome)
    assert f"test accuracy        {correct / 150:.4f} (95% CI {low:.4f}-{high:.4f}" in run_summary
    assert f"NLL {nll:.4f}" in run_summary
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ev")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'study'")
    assert run.data.metrics["test_accuracy_low"] == pytest.approx(low)
    assert run.data.metrics["test_accuracy_high"] == pytest.approx(high)
    assert run.data.metrics["test_nll"] == pytest.approx(nll, rel=1e-6)
    # The best against the runner-up (the other cell) on validation, example by example
    other = 0.3 if params["learning_rate"] == 0.03 else 0.03
    (second,) = engine.train_many(data, [(other, 0.0)], batch_size=16, epochs=3, seed=0)
    best_right = engine.predict(model.weights, data.X_val) == data.y_val
    second_right = engine.predict(second.weights, data.X_val) == data.y_val
    runner_up = report["runner_up"]
    assert runner_up["trial"] == best
    assert runner_up["only_best"] == int(np.sum(best_right & ~second_right))
    assert runner_up["only_runner_up"] == int(np.sum(second_right & ~best_right))
    assert runner_up["p_value"] == pytest.approx(engine.mcnemar(best_right, second_right).p_value)
    assert f"McNemar p = {runner_up['p_value']:.2g}" in run.data.tags["softsweep.runner_up"]


def test_a_resumed_study_with_a_new_best_says_the_test_set_was_used_twice(
    tmp_path: Path, blobs: Path
) -> None:
    home = tmp_path / "home"

    def text(n_trials: int) -> str:
        # Grid cells are trained in order: lr 1e-4 first (hardly moves in one epoch), then 1.0.
        return spec_text("twice", blobs, lr="{ values = [0.0001, 1.0] }", reg="{ values = [0.0] }",
                         batch="[16]", epochs=1, n_trials=n_trials, side_by_side=1)  # fmt: skip

    first = run_spec(text(1), home, "twice.toml")
    time.sleep(3)  # a pause between two sweeps of the study: not part of its run's duration
    second = run_spec(text(2), home, "twice.toml")
    assert second.closing.best_trial != first.closing.best_trial
    tested = [(first.closing.best_trial, first.test_accuracy),
              (second.closing.best_trial, second.test_accuracy)]  # fmt: skip
    assert second.closing.test_evaluations == tested
    assert f"the test set has now been used 2 times: #{tested[0][0]}, #{tested[1][0]}" in (
        summary(second)
    )
    again = run_spec(text(2), home, "twice.toml")  # the same best: read back, not evaluated
    assert again.closing.test_evaluations == tested
    report = json.loads((again.report_dir / "report.json").read_text())
    assert report["test_evaluations"] == [list(pair) for pair in tested]
    assert any("evaluated 2 times" in note for note in report["notes"])
    page = (again.report_dir / "index.html").read_text()
    assert "the test set used 2 times" in page
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("twice")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'study'")
    assert run.data.metrics["test_evaluations"] == 2
    # The study run lasts as long as its three sweeps did, summed, not first start to last end
    # (which would add the 3 s pause).
    sweeps_s = run.data.metrics["sweep_time_s"]
    assert sweeps_s == pytest.approx(sum(o.loop.loop_s for o in (first, second, again)))
    assert run.info.end_time - run.info.start_time == pytest.approx(sweeps_s * 1000, abs=2)
    assert run.data.tags["softsweep.test_evaluations"].startswith(
        f"2: trial #{tested[0][0]} ({tested[0][1]:.4f}), trial #{tested[1][0]}"
    )


def test_a_retrain_that_does_not_reproduce_the_trial_does_not_stand_in_for_it(blobs: Path) -> None:
    data = engine.load_dataset(blobs, val_size=80, seed=0)
    spec = parse_spec(spec_text("re", blobs, epochs=2), "re.toml")
    params = {"learning_rate": 0.3, "reg": 0.0, "batch_size": 16}
    (model,) = engine.train_many(data, [(0.3, 0.0)], batch_size=16, epochs=2, seed=0)
    distributions = {
        k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()
    }

    def stored(value: float) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(params=params, distributions=distributions, value=value)

    weights, note = retrain(data, spec, stored(model.val_accuracy))  # the trial's own model
    assert note == "" and weights is not None and np.array_equal(weights, model.weights)
    weights, note = retrain(data, spec, stored(model.val_accuracy - 0.1))  # another model
    assert weights is None
    assert note.startswith(f"it reached validation accuracy {model.val_accuracy:.4f}, not its")
    assert "does not stand in for it" in note


def test_the_courses_refit_is_tested_once_beside_the_selected_model(
    tmp_path: Path, blobs: Path
) -> None:
    text = spec_text("refit", blobs, lr="{ values = [0.03, 0.3] }", reg="{ values = [0.0] }",
                     batch="[16]", side_by_side=2).replace("[train]", "[train]\nrefit = true")  # fmt: skip
    outcome = run_spec(text, tmp_path / "home", "refit.toml")
    refit = outcome.closing.refit
    best = outcome.closing.best_trial
    # Oracle: the best setting trained on train + validation together, the same seed and epochs
    data = engine.load_dataset(blobs, val_size=80, seed=0)
    merged = dataclasses.replace(
        data, X_train=np.concatenate([data.X_train, data.X_val]),
        y_train=np.concatenate([data.y_train, data.y_val]), pixels_train=None, decoder=None,
    )  # fmt: skip
    params = outcome.closing.best_params
    (model,) = engine.train_many(
        merged, [(params["learning_rate"], 0.0)], batch_size=16, epochs=3, seed=0
    )
    correct = int(np.sum(engine.predict(model.weights, data.X_test) == data.y_test))
    assert refit == {"trial": best, "n_train": 400, "n": 150, "correct": correct}
    (row,) = [line for line in summary(outcome).splitlines() if line.startswith("refit ")]
    assert row.split(None, 1)[1].startswith(f"{correct / 150:.4f} (95% CI")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("refit")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'study'")
    assert run.data.metrics["refit_test_accuracy"] == pytest.approx(correct / 150)
    assert "not the selected model" in run.data.tags["softsweep.refit"]
    assert "the course&#x27;s refit" in (outcome.report_dir / "index.html").read_text()
    # The selected model's number is the test accuracy; the refit is labelled beside it
    assert outcome.test_accuracy == outcome.closing.test_scores["correct"] / 150


def test_refit_must_be_true_or_false(blobs: Path) -> None:
    text = spec_text("r", blobs).replace("[train]", '[train]\nrefit = "yes"')
    with pytest.raises(ValueError, match=r"\[train\] refit must be true or false"):
        parse_spec(text, "r.toml")

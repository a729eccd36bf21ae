"""The sweep runner against real stores: Optuna on SQLite, MLflow on its SQLite store, both in a
temporary home folder, on tiny IDX data the tests write."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from optuna.trial import TrialState

import engine
import sweep
from sweep.cli import main
from tests.helpers import run_spec, spec_text, write_idx_dataset


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")  # one MLflow store per module: migrations cost ~2 s


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "blobs", n_train=400, n_test=150)


def run(text: str, home: Path):
    # Reports are tested in test_report.py; here they would only add seconds per study.
    return run_spec(text, home, report=False)


def store(home: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def trial_runs(home: Path, study: str) -> dict[int, object]:
    client = store(home)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'trial'")
    return {int(r.data.tags["optuna.trial"]): r for r in runs}


def load(home: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{home / 'optuna.db'}")


@pytest.fixture(scope="module")
def grid(home: Path, data_folder: Path):
    """The 12-cell grid study, run once for the tests that read it."""
    return run(spec_text("grid", data_folder), home)


def test_grid_visits_every_cell_exactly_once(grid, home: Path) -> None:
    outcome = grid
    trials = load(home, "grid").trials
    cells = [(t.params["learning_rate"], t.params["reg"], t.params["batch_size"]) for t in trials]
    # 3 learning rates x 2 regs x 2 batch sizes, in groups of 4, each cell once.
    assert len(cells) == 12 and len(set(cells)) == 12
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert outcome.n_complete == 12 and outcome.trials_this_run == 12


def test_mlflow_holds_parent_and_one_child_per_trial(grid, home: Path, data_folder: Path) -> None:
    study = load(home, "grid")
    client = store(home)
    experiment = client.get_experiment_by_name("grid")
    # MLflow 3.17's UI opens an experiment in its model-training view only with this tag.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("softsweep study grid:")
    parents = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'study'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.params["sampler"] == "grid"
    ((tested, accuracy),) = study.user_attrs["test_evaluations"]  # the test set, used once
    assert parents[0].data.metrics["test_accuracy"] == pytest.approx(accuracy)
    assert tested == study.best_trial.number
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert "study.toml" in artifacts
    runs = trial_runs(home, "grid")
    assert sorted(runs) == [t.number for t in study.trials]
    for trial in study.trials:
        run = runs[trial.number]
        # Each side finds the other: the run id on the trial, the trial number on the run.
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["softsweep.study_run"] == parents[0].info.run_id
        assert run.info.status == "FINISHED"
        lr, reg = trial.params["learning_rate"], trial.params["reg"]
        assert run.info.run_name == (
            f"trial {trial.number}: lr={lr:.3g} reg={reg:.3g} batch={trial.params['batch_size']}"
        )
        assert "" not in parents[0].data.params.values()  # no empty-string params
        assert float(run.data.params["learning_rate"]) == trial.params["learning_rate"]
        assert int(run.data.params["batch_size"]) == trial.params["batch_size"]
        assert run.data.params["epochs"] == "3" and run.data.params["dataset"] == str(data_folder)
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
        assert sorted(history, key=lambda m: m.step)[-1].value == pytest.approx(trial.value)
        for key in ("train_loss", "train_accuracy"):
            assert len(client.get_metric_history(run.info.run_id, key)) == 3
        # Bookkeeping is in tags, not charted as metrics.
        assert "epoch_time_s" not in run.data.metrics
        assert run.data.tags["softsweep.epochs_run"] == "3"
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["weights.npy"]


def test_test_accuracy_is_the_best_trials_weights_on_the_test_set(
    grid, home: Path, data_folder: Path
) -> None:
    study = load(home, "grid")
    best = study.best_trial
    local = store(home).download_artifacts(best.user_attrs["mlflow_run_id"], "weights.npy")
    data = engine.load_dataset(data_folder, val_size=80, seed=0)
    expected = engine.accuracy(np.load(local), data.X_test, data.y_test)
    assert study.user_attrs["test_evaluations"] == [[best.number, pytest.approx(expected)]]


def test_load_runs_matches_the_optuna_trials(grid, home: Path) -> None:
    frame = sweep.load_runs("grid", home=home)
    study = load(home, "grid")
    assert len(frame) == len(study.trials)
    assert frame["val_accuracy"].tolist() == sorted(frame["val_accuracy"], reverse=True)
    by_trial = frame.set_index("trial")
    for t in study.trials:
        row = by_trial.loc[t.number]
        assert row["state"] == "COMPLETE" and row["run_status"] == "FINISHED"
        assert row["learning_rate"] == t.params["learning_rate"] and row["reg"] == t.params["reg"]
        assert row["val_accuracy"] == pytest.approx(t.value)
    for column in (
        "learning_rate",
        "reg",
        "batch_size",
        "val_accuracy",
        "train_loss",
        "epochs_run",
    ):
        assert pd.api.types.is_numeric_dtype(frame[column]), column


def test_divergent_trial_fails_with_its_reason_and_the_sweep_goes_on(
    home: Path, data_folder: Path
) -> None:
    # 1 - 2*lr*reg = -1999 per step: float32 overflows in the first epoch.
    text = spec_text(
        "diverge",
        data_folder,
        lr="{ values = [0.3, 1000.0] }",
        reg="{ values = [1.0] }",
        batch="[16]",
    )
    outcome = run(text, home)
    trials = {t.params["learning_rate"]: t for t in load(home, "diverge").trials}
    bad, good = trials[1000.0], trials[0.3]
    assert good.state == TrialState.COMPLETE and outcome.n_complete == 1
    assert bad.state == TrialState.FAIL and outcome.n_failed == 1
    assert bad.user_attrs["fail_reason"].startswith("diverged at epoch 1: loss=")
    run_ = trial_runs(home, "diverge")[bad.number]
    assert run_.info.status == "FAILED"
    assert run_.data.tags["softsweep.fail_reason"] == bad.user_attrs["fail_reason"]
    assert run_.data.tags["softsweep.outcome"] == "diverged"
    assert run_.data.tags["mlflow.note.content"] == bad.user_attrs["fail_reason"]  # its description
    assert bad.user_attrs["outcome"] == "diverged"


def test_an_overflow_on_the_last_update_of_the_last_epoch_fails_the_trial_with_no_inf_stored(
    home: Path, data_folder: Path
) -> None:
    # One full-batch update per epoch, 1 epoch, 1 - 2*lr*reg ~ -2e40: the only update's loss
    # is finite, and the weights it writes are not. Nothing of that trial may reach a store.
    text = spec_text("edge", data_folder, lr="{ values = [0.3, 1e20] }",
                     reg="{ values = [1e20] }", batch="[320]", epochs=1)  # fmt: skip
    run(text, home)
    trials = {t.params["learning_rate"]: t for t in load(home, "edge").trials}
    bad = trials[1e20]
    assert bad.state == TrialState.FAIL and bad.user_attrs["outcome"] == "diverged"
    assert bad.user_attrs["fail_reason"] == (
        "diverged at epoch 1: non-finite weights after the epoch's last update"
    )
    assert not bad.user_attrs["history"]["val_accuracy"]  # no epoch of it was kept
    for number, run_ in trial_runs(home, "edge").items():
        assert all(math.isfinite(v) for v in run_.data.metrics.values()), number
        artifacts = {a.path for a in store(home).list_artifacts(run_.info.run_id)}
        assert ("weights.npy" in artifacts) == (number != bad.number)


def test_resume_continues_to_the_target_without_rerunning(home: Path, data_folder: Path) -> None:
    lr, reg = "{ low = 0.01, high = 1.0, log = true }", "{ low = 1e-6, high = 1e-2, log = true }"
    first = run(
        spec_text("resume", data_folder, sampler="random", n_trials=4, lr=lr, reg=reg), home
    )
    before = {t.number: (t.params, t.datetime_complete) for t in load(home, "resume").trials}
    second = run(
        spec_text("resume", data_folder, sampler="random", n_trials=7, lr=lr, reg=reg), home
    )
    third = run(
        spec_text("resume", data_folder, sampler="random", n_trials=7, lr=lr, reg=reg), home
    )
    after = load(home, "resume").trials
    assert (first.trials_this_run, second.trials_this_run, third.trials_this_run) == (4, 3, 0)
    assert len(after) == 7
    # The first four trials are untouched: same params, same completion time.
    assert {t.number: (t.params, t.datetime_complete) for t in after[:4]} == before
    parents = store(home).search_runs(
        [store(home).get_experiment_by_name("resume").experiment_id],
        "tags.`softsweep.role` = 'study'",
    )
    assert len(parents) == 1  # the study's run is reopened, not duplicated


def test_pruning_stops_weak_trials_through_report_and_tell(home: Path, data_folder: Path) -> None:
    text = spec_text(
        "prune",
        data_folder,
        sampler="random",
        n_trials=14,
        pruner="median",
        side_by_side=1,
        epochs=4,
        lr="{ low = 1e-6, high = 1.0, log = true }",
        reg="{ low = 1e-6, high = 1e-2, log = true }",
        batch="[16]",
    )
    outcome = run(text, home)
    trials = load(home, "prune").trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and outcome.n_pruned == len(pruned)
    runs = trial_runs(home, "prune")
    for t in pruned:
        # The pruner saw per-epoch reports and stopped the trial before its last epoch.
        assert 1 <= len(t.intermediate_values) < 4
        assert runs[t.number].info.status == "KILLED"
        assert runs[t.number].data.tags["softsweep.outcome"] == "pruned"
        steps = store(home).get_metric_history(runs[t.number].info.run_id, "val_accuracy")
        assert len(steps) == len(t.intermediate_values)
        # It says where it stopped: on the trial, and in its run's description in the UI.
        said = f"pruned after epoch {len(t.intermediate_values)}"
        assert t.user_attrs["fail_reason"] == said
        assert runs[t.number].data.tags["mlflow.note.content"] == said
    # A pruned trial's curve is below the median of the finished ones at the step it stopped.
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for t in pruned:
        step = max(t.intermediate_values)
        others = [c.intermediate_values[step] for c in complete if c.number < t.number]
        if len(others) >= 4:
            assert t.intermediate_values[step] <= np.median(others)


@pytest.mark.parametrize(("pruner", "group_size"), [("hyperband", 4), ("median", 2)])
def test_a_round_trains_in_one_pass_unless_the_median_pruner_needs_a_group_per_batch_size(
    home: Path, data_folder: Path, pruner: str, group_size: int
) -> None:
    # Hyperband judges a trial against every trial at its rung, training or not: one pass. The
    # median pruner counts finished trials only: one group per batch size, one after another.
    name = f"one-pass-{pruner}"
    text = spec_text(name, data_folder, n_trials=4, pruner=pruner, side_by_side=4, epochs=2,
                     lr="{ values = [0.1] }", reg="{ values = [1e-4, 1e-3] }",
                     batch="[16, 32]")  # fmt: skip
    assert run(text, home).trials_this_run == 4
    frame = sweep.load_runs(name, home=home)
    assert sorted(frame["batch_size"]) == [16, 16, 32, 32]
    assert set(frame["group_size"]) == {group_size}
    # Optuna is told a trial's validation accuracy where its pruner reads it: Hyperband at its
    # rungs (epoch 1 of 2), the median pruner every epoch. Every epoch is in the history.
    trials = load(home, name).trials
    assert {step for t in trials for step in t.intermediate_values} == (
        {1} if pruner == "hyperband" else {1, 2}
    )
    history = sweep.load_history(name, home=home)
    for t in trials:
        trained = 2 if t.state == TrialState.COMPLETE else 1
        assert list(history[history["trial"] == t.number]["epoch"]) == list(range(1, trained + 1))


def test_a_finished_study_runs_again_without_reading_its_data(home: Path, tmp_path: Path) -> None:
    # Nothing to train, test or draw: the data files are not read (here they are gone).
    folder = write_idx_dataset(tmp_path / "gone", n_train=200, n_test=60)
    text = spec_text("no-data-needed", folder, sampler="random", n_trials=3, epochs=2,
                     lr="{ low = 0.03, high = 0.3 }", reg="{ low = 1e-4, high = 1e-3 }")  # fmt: skip
    said: list[str] = []

    def on_progress(done: int, best: float | None, note: str, epochs: int) -> None:
        if note and note not in said:
            said.append(note)

    first = run_spec(text, home, on_progress=on_progress)  # with its report, drawn once
    assert first.n_complete >= 2 and first.test_accuracy is not None
    # The end of the sweep says what it is doing, step by step.
    closing = ["waiting for tracking to catch up", "testing the best trial", "drawing the report",
               "finishing the study's MLflow run"]  # fmt: skip
    assert said == closing
    for file in folder.iterdir():
        file.unlink()
    said.clear()
    again = run_spec(text, home, on_progress=on_progress)
    assert said == [step for step in closing if step != "drawing the report"]  # kept
    assert again.trials_this_run == 0
    assert (again.test_accuracy, again.closing.runner_up) == (
        first.test_accuracy,
        first.closing.runner_up,
    )
    assert again.report_dir == first.report_dir and (again.report_dir / "index.html").exists()
    # With a trial left to train, it reads them, and says so when they are gone.
    more = text.replace("n_trials = 3", "n_trials = 4")
    with pytest.raises(FileNotFoundError, match="gone"):
        run_spec(more, home)


def test_an_exception_while_training_fails_only_that_rounds_trials(
    home: Path, data_folder: Path, monkeypatch
) -> None:
    real = engine.train_many
    calls = []

    def flaky(data, configs, **kwargs):
        calls.append(len(configs))
        if len(calls) == 1:
            raise MemoryError("simulated out of memory")
        return real(data, configs, **kwargs)

    monkeypatch.setattr(engine, "train_many", flaky)
    outcome = run(spec_text("flaky", data_folder, reg="{ values = [0.0] }"), home)
    assert calls == [4, 2]  # 6 cells, 4 side by side: two rounds, each one call
    trials = load(home, "flaky").trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert outcome.n_complete == 2 and outcome.n_failed == 4 and len(failed) == 4
    assert {t.user_attrs["fail_reason"] for t in failed} == {
        "training failed: MemoryError: simulated out of memory"
    }
    assert {trial_runs(home, "flaky")[t.number].info.status for t in failed} == {"FAILED"}


class TestCli:
    def write(self, tmp_path: Path, text: str) -> Path:
        path = tmp_path / "study.toml"
        path.write_text(text)
        return path

    def test_run_prints_the_summary_and_exits_0(
        self, tmp_path: Path, home: Path, data_folder: Path
    ) -> None:
        path = self.write(
            tmp_path, spec_text("cli-ok", data_folder, reg="{ values = [0.0] }", batch="[32]")
        )
        result = CliRunner().invoke(main, ["run", str(path), "--home", str(home)])
        assert result.exit_code == 0, result.output
        assert "best trial           #" in result.output
        assert "3 completed, 0 pruned, 0 failed (3 run now)" in result.output
        assert "ms/trial" not in result.output  # developer timing: only with --verbose
        assert f"runs table           sweep runs cli-ok --home {home}" in result.output
        # Run by ./run.sh, whose `sweep` is not on the user's PATH: the summary names it.
        again = CliRunner().invoke(
            main, ["run", str(path), "--home", str(home), "--verbose"],
            env={"SOFTSWEEP_COMMAND": "/repo/.venv/bin/sweep"},
        )  # fmt: skip
        assert again.exit_code == 0, again.output
        assert "3 completed, 0 pruned, 0 failed (0 run now)" in again.output
        assert re.search(r"tracking\s+n/a \(no trial run now\)", again.output)
        assert f"/repo/.venv/bin/sweep runs cli-ok --home {home}" in again.output
        assert f"/repo/.venv/bin/sweep ui --home {home}" in again.output
        runs = CliRunner().invoke(
            main, ["runs", "cli-ok", "--home", str(home), "--csv", str(tmp_path / "r.csv")]
        )
        assert runs.exit_code == 0, runs.output
        assert runs.output.splitlines()[0].split()[:3] == ["trial", "outcome", "val_accuracy"]
        assert len(pd.read_csv(tmp_path / "r.csv")) == 3

    def test_bad_spec_exits_2_with_the_message(
        self, tmp_path: Path, home: Path, data_folder: Path
    ) -> None:
        path = self.write(
            tmp_path, spec_text("bad", data_folder).replace('sampler = "grid"', 'sampler = "x"')
        )
        result = CliRunner().invoke(main, ["run", str(path), "--home", str(home)])
        assert result.exit_code == 2
        assert (
            "[study] sampler must be one of grid, random, tpe, qmc, cmaes, got 'x'" in result.output
        )
        assert "Traceback" not in result.output

    def test_missing_study_file_exits_2(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(main, ["run", str(tmp_path / "none.toml")])
        assert result.exit_code == 2 and "does not exist" in result.output

    def test_a_study_with_no_completed_trial_exits_1(
        self, tmp_path: Path, home: Path, data_folder: Path
    ) -> None:
        text = spec_text(
            "all-fail",
            data_folder,
            lr="{ values = [1000.0] }",
            reg="{ values = [1.0] }",
            batch="[16]",
        )
        result = CliRunner().invoke(
            main, ["run", str(self.write(tmp_path, text)), "--home", str(home)]
        )
        assert result.exit_code == 1
        assert "error: study 'all-fail' has no completed trial" in result.output

    def test_runs_of_an_unknown_study_exits_2(self, home: Path) -> None:
        result = CliRunner().invoke(main, ["runs", "nope", "--home", str(home)])
        assert result.exit_code == 2
        assert "No study named 'nope'" in result.output and "Studies there: " in result.output

    def test_unreachable_storage_is_a_clear_failure(
        self, tmp_path: Path, data_folder: Path
    ) -> None:
        path = self.write(tmp_path, spec_text("x", data_folder))
        result = CliRunner().invoke(
            main,
            [
                "run",
                str(path),
                "--home",
                str(tmp_path / "h"),
                "--storage",
                "postgresql+psycopg2://u:p@127.0.0.1:9/db",
            ],
        )
        assert result.exit_code == 1
        assert (
            "Could not open the Optuna storage postgresql+psycopg2://u:***@127.0.0.1:9/db"
            in result.output
        )

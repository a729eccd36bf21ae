"""The user's jobs on the command line and in pandas: `sweep studies / runs / delete`, run
overrides, the version and help, and the frames `load_runs` and `load_history` give."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from unittest import mock

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

import sweep
from sweep.cli import main
from sweep.compare import TrackingUnreadableWarning
from tests.helpers import run_spec, spec_text, write_idx_dataset

LR, REG = "{ low = 1e-5, high = 3.0, log = true }", "{ low = 1e-6, high = 1e-1, log = true }"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browse")
    data = write_idx_dataset(folder / "blobs", n_train=400, n_test=100)
    text = spec_text("tpe", data, sampler="tpe", pruner="median", n_trials=16, epochs=4,
                     lr=LR, reg=REG, side_by_side=4, batch="[16, 32]")  # fmt: skip
    (folder / "tpe.toml").write_text(text)
    run_spec(text, folder / "home", "tpe.toml")
    return folder / "home"


def cli(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_version_and_help_that_is_not_cut_off() -> None:
    code, said = cli("--version")
    assert code == 0 and "(softsweep) 0." in said
    code, said = cli("--help")
    commands = said.split("Commands:")[1].strip().splitlines()
    assert {line.split()[0] for line in commands} >= {"run", "runs", "studies", "delete", "ui"}
    assert not any(line.rstrip().endswith("...") for line in commands)


def test_load_runs_keeps_partial_values_apart_and_says_when_and_how_long(home: Path) -> None:
    frame = sweep.load_runs("tpe", home=home)
    assert (frame["study"] == "tpe").all() and len(frame) == 16
    pruned = frame[frame["state"] == "PRUNED"]
    complete = frame[frame["state"] == "COMPLETE"]
    assert len(pruned) and len(complete)
    # A pruned trial's partial value is never in the objective's column.
    assert pruned["val_accuracy"].isna().all() and pruned["last_val_accuracy"].notna().all()
    assert (pruned["pruned_at_epoch"] == pruned["epochs_run"]).all()
    assert (pruned["epochs_run"] < 4).all() and complete["pruned_at_epoch"].isna().all()
    tested = frame[frame["test_accuracy"].notna()]
    assert tested["trial"].tolist() == [complete.iloc[0]["trial"]]  # the best, and only it
    assert pd.api.types.is_datetime64_any_dtype(frame["start_time"])
    assert (frame["end_time"] >= frame["start_time"]).all()
    # Its own training time: its share of each epoch it ran, less than its group's wall time.
    assert (frame["train_time_s"] > 0).all() and (
        frame["train_time_s"] < frame["group_time_s"]
    ).all()
    assert (frame["group_size"] >= 1).all()


def test_load_history_is_long_format_over_studies(home: Path) -> None:
    frame = sweep.load_history(["tpe"], home=home)
    runs = sweep.load_runs("tpe", home=home).set_index("trial")
    assert len(frame) == runs["epochs_run"].sum()  # one row per trial and epoch
    assert set(frame.columns) >= {"study", "trial", "epoch", "val_accuracy", "learning_rate"}
    last = frame.sort_values("epoch").groupby("trial").last()
    for trial, row in last.iterrows():
        assert row["val_accuracy"] == pytest.approx(runs.loc[trial, "last_val_accuracy"])


def test_the_objective_has_a_name_for_optuna_tools(home: Path) -> None:
    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{home / 'optuna.db'}")
    assert study.metric_names == ["val_accuracy"]


def test_studies_lists_trials_by_state_and_the_best(home: Path) -> None:
    code, said = cli("studies", "--home", str(home))
    frame = sweep.load_runs("tpe", home=home)
    assert code == 0
    row = next(line for line in said.splitlines() if line.startswith("tpe "))
    assert f"{(frame['state'] == 'COMPLETE').sum()} complete" in row
    assert f"{frame['val_accuracy'].max():.4f}" in row
    assert " 16/16 " in row  # done of the target
    code, said = cli("studies", "--home", str(home), "--json")
    (listed,) = json.loads(said)
    assert (listed["study"], listed["target"], listed["done"]) == ("tpe", 16, 16)
    assert listed["states"]["COMPLETE"] == (frame["state"] == "COMPLETE").sum()
    assert listed["best_val_accuracy"] == frame["val_accuracy"].max()


def test_runs_top_sort_state_and_json(home: Path, tmp_path: Path) -> None:
    code, said = cli("runs", "tpe", "--home", str(home), "--state", "complete", "--sort", "reg",
                     "--top", "3", "--json")  # fmt: skip
    assert code == 0
    records = json.loads(said)
    assert len(records) == 3 and {r["state"] for r in records} == {"COMPLETE"}
    assert [r["reg"] for r in records] == sorted(r["reg"] for r in records)
    code, said = cli("runs", "tpe", "--home", str(home), "--top", "2")
    assert code == 0 and len(said.strip().splitlines()) == 3  # a header and two rows
    best = sweep.load_runs("tpe", home=home).iloc[0]
    header, first = said.splitlines()[0].split(), said.splitlines()[1].split()
    # accuracies are read down the column: always 4 decimals (0.8560, not 0.856)
    assert first[header.index("val_accuracy")] == f"{best['val_accuracy']:.4f}"
    # A narrow terminal keeps the result and drops bookkeeping first.
    with mock.patch.dict(os.environ, {"COLUMNS": "60"}):
        code, said = cli("runs", "tpe", "--home", str(home), "--top", "2")
    header = said.splitlines()[0].split()
    assert code == 0 and header[:3] == ["trial", "outcome", "val_accuracy"]
    assert max(len(line) for line in said.splitlines()) <= 60
    code, said = cli("runs", "tpe", "--home", str(home), "--sort", "nope")
    assert code == 2 and "--sort must be one of the columns study, trial," in said
    code, said = cli("runs", "tpe", "--home", str(home), "--csv", str(tmp_path / "no" / "x.csv"))
    assert code == 2
    assert f"--csv {tmp_path / 'no' / 'x.csv'}: the folder {tmp_path / 'no'} does not exist" in said
    code, said = cli("runs", "tpe", "--home", str(home), "--csv", "-")  # CSV on stdout
    assert code == 0 and said.splitlines()[0].startswith("study,trial,state,outcome,")
    assert len(said.splitlines()) == 1 + len(sweep.load_runs("tpe", home=home))
    assert not Path("-").exists()


def test_run_overrides_n_trials_and_the_summary_hides_timing_unless_verbose(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "blobs", n_train=200, n_test=50)
    study = tmp_path / "r.toml"
    study.write_text(spec_text("r", data, sampler="random", n_trials=50, lr=LR, reg=REG))
    code, said = cli("run", str(study), "--home", str(tmp_path / "h"), "--n-trials", "3")
    assert code == 0 and "3 completed, 0 pruned, 0 failed (3 run now)" in said
    assert "ms/trial waited" not in said
    code, said = cli("run", str(study), "--home", str(tmp_path / "h"), "--n-trials", "4", "-v")
    assert code == 0 and "(1 run now)" in said and "ms/trial waited" in said


def test_runs_csv_into_a_folder_names_the_folder(home: Path, tmp_path: Path) -> None:
    code, output = cli("runs", "tpe", "--home", str(home), "--csv", str(tmp_path))
    assert code == 1
    assert f"cannot write {tmp_path}: Is a directory" in output and "--home" not in output


def test_delete_asks_then_removes_study_runs_and_report(home: Path, tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "blobs", n_train=200, n_test=50)
    text = spec_text("gone", data, lr="{ values = [0.1] }", reg="{ values = [0.0] }", batch="[16]")
    run_spec(text, home, "gone.toml")
    code, said = cli("delete", "gone", "--home", str(home), input="n\n")
    assert code == 1 and "nothing deleted" in said
    code, said = cli("delete", "gone", "--home", str(home), input="")  # no terminal, no answer
    assert code == 2 and "no answer came" in said and "Pass --yes" in said
    assert "study 'gone': 1 trials in the Optuna storage" in said
    code, said = cli("delete", "gone", "--home", str(home), "--yes")
    # The trial's run and the study's run.
    assert code == 0 and "deleted study 'gone' (1 trials, 2 MLflow runs)" in said
    assert "gone" not in optuna.get_all_study_names(f"sqlite:///{home / 'optuna.db'}")
    assert not (home / "reports" / "gone").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    assert client.get_experiment_by_name("gone") is None  # the name is free again ...
    again = run_spec(text, home, "gone.toml")  # ... for a new study
    assert again.n_complete == 1
    assert "tpe" in optuna.get_all_study_names(f"sqlite:///{home / 'optuna.db'}")  # untouched


def test_ui_on_a_busy_port_says_so(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, said = cli("ui", "--home", str(home), "--port", str(port))
    assert code == 2
    assert f"error: port {port} on 127.0.0.1 is not free" in said
    assert f"--port {port + 1}" in said
    for bad in ("99999", "-1"):  # not a port at all: a usage error, not a traceback
        code, said = cli("ui", "--home", str(home), "--port", bad)
        assert code == 2 and f"{bad} is not in the range 1<=x<=65535" in said


def test_sweep_run_from_python_returns_a_result_that_shows_itself(tmp_path: Path) -> None:
    import threading

    data = write_idx_dataset(tmp_path / "blobs", n_train=200, n_test=50)
    study = tmp_path / "nb.toml"
    study.write_text(spec_text("nb", data, sampler="random", n_trials=50, lr=LR, reg=REG))
    before = set(threading.enumerate())  # (another test's threads may end meanwhile)
    result = sweep.run(study, home=tmp_path / "h", n_trials=3, progress=False)
    assert result.outcome.n_complete + result.outcome.n_pruned == 3  # the override, not 50
    assert result.best_trial is not None and result.test_accuracy is not None
    text = repr(result)
    assert text.startswith("<SweepResult 'nb'>") and "test accuracy" in text
    page = result._repr_html_()
    assert page.count("data:image/png;base64,") == 2  # the heatmap and the templates inline
    assert "<th style='text-align:left'>best trial</th>" in page
    assert len(result.runs()) == 3 and len(result.history()) > 0
    assert set(threading.enumerate()) - before == set()  # no thread (or helper) left behind
    with pytest.raises(TypeError, match=r"sweep.run\(\) got unknown settings trials; the settings"):
        sweep.run(study, home=tmp_path / "h", trials=3)


def test_reading_works_with_mlflow_down_and_delete_refuses_in_one_paragraph(home: Path) -> None:
    """Optuna holds every result: MLflow only adds the runs' status."""
    down = "http://127.0.0.1:9"
    with pytest.warns(TrackingUnreadableWarning, match=r"could not be read \(connection refused"):
        frame = sweep.load_runs("tpe", home=home, tracking_uri=down)
    assert len(frame) == 16 and frame["run_status"].eq("").all()
    assert frame["val_accuracy"].notna().any()
    code, said = cli("runs", "tpe", "--home", str(home), "--tracking-uri", down)
    assert code == 0 and "note: the MLflow store http://127.0.0.1:9 could not be read" in said
    code, said = cli("delete", "tpe", "--home", str(home), "--tracking-uri", down, "--yes")
    assert code == 1 and "error: The MLflow tracking store failed (connection refused)" in said
    assert "tpe" in [s.study_name for s in optuna.get_all_study_summaries(
        f"sqlite:///{home / 'optuna.db'}")]  # fmt: skip

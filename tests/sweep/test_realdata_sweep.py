"""The main job for real: the shipped Fashion-MNIST study, then `sweep runs` and `sweep ui` on it."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from unittest import mock

import optuna
import pytest
from click.testing import CliRunner

from engine.data.sources import KNOWN_DATASETS, locate
from sweep.cli import main
from tests.conftest import _USER_ENV
from tests.servers import sweep_ui

pytestmark = pytest.mark.realdata
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def main_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("main-job")
    # The data is wherever the user has it; anything the sweep caches goes to the test's cache.
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "SOFTSWEEP_OFFLINE")}
    with mock.patch.dict(os.environ, {**env, **_USER_ENV}, clear=True):
        folder = locate(KNOWN_DATASETS["fashion-mnist"])
    with mock.patch.dict(os.environ, {"SOFTSWEEP_DATA": str(folder)}):
        result = CliRunner().invoke(
            main, ["run", str(ROOT / "studies/fashion_mnist.toml"), "--home", str(home)]
        )
    assert result.exit_code == 0, result.output
    return home


def test_main_job_reaches_the_linear_baseline_on_the_test_set(main_job: Path) -> None:
    study = optuna.load_study(
        study_name="fashion-mnist-tpe", storage=f"sqlite:///{main_job}/optuna.db"
    )
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 64
    # The best trial's model, evaluated once on the test set, reaches the published ~0.84.
    ((tested, accuracy),) = study.user_attrs["test_evaluations"]
    assert tested == study.best_trial.number and accuracy >= 0.84
    assert study.best_value >= 0.845


def test_sweep_runs_lists_every_trial(main_job: Path) -> None:
    result = CliRunner().invoke(main, ["runs", "fashion-mnist-tpe", "--home", str(main_job)])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 1 + 64
    assert result.output.splitlines()[1].split()[1] == "complete"  # best first


def test_sweep_ui_serves_the_study_on_localhost(main_job: Path) -> None:
    with sweep_ui(main_job) as (base, _):
        request = urllib.request.Request(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=fashion-mnist-tpe"
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            experiment = json.load(r)["experiment"]
    assert experiment["name"] == "fashion-mnist-tpe"

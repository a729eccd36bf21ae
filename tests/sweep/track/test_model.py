"""The tested best trial as a registered MLflow Model: loaded back by its registered name, it
predicts from raw pixels what the engine predicts, and `mlflow models serve` answers with it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

import engine
from engine.data.idx import IDX_FILES, read_idx
from sweep.store.home import Home
from sweep.track import model
from tests.helpers import run_spec, spec_text, write_idx_dataset
from tests.servers import free_port, wait_for_health

TEXT = {"lr": "{ values = [0.03, 0.3, 1.0] }", "reg": "{ values = [0.0, 1e-3] }"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "blobs", n_train=400, n_test=150)


@pytest.fixture(scope="module")
def home(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A study run twice: 2 of its 6 cells, then all of them (a resume)."""
    where = tmp_path_factory.mktemp("model")
    run_spec(spec_text("clf", folder, n_trials=2, batch="[16]", **TEXT), where / "home")
    run_spec(spec_text("clf", folder, n_trials=6, batch="[16]", **TEXT), where / "home")
    return Home.resolve(where / "home")


@pytest.fixture
def tracking(home: Home) -> Iterator[None]:
    """MLflow's global URIs on the home's store, as a user's notebook would set them."""
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(home.tracking_uri)
    yield
    mlflow.set_tracking_uri(before)


def raw_test_images(folder: Path) -> np.ndarray:
    images = read_idx(folder / f"{IDX_FILES['test_images']}.gz")
    return images.reshape(images.shape[0], -1)


def best_weights(home: Home) -> tuple[str, np.ndarray]:
    """The tested best trial's run and the weights stored with it."""
    client = MlflowClient(tracking_uri=home.tracking_uri)
    experiment = client.get_experiment_by_name("clf").experiment_id
    (study,) = client.search_runs([experiment], "tags.`softsweep.role` = 'study'")
    best = study.data.tags["best_trial"]
    (run,) = client.search_runs([experiment], f"tags.`optuna.trial` = '{best}'")
    path = client.download_artifacts(run.info.run_id, "weights.npy")
    return run.info.run_id, np.load(path)


def test_the_registered_model_predicts_from_raw_pixels_what_the_engine_does(
    home: Home, folder: Path, tracking: None
) -> None:
    model = mlflow.pyfunc.load_model("models:/clf/latest")
    run_id, weights = best_weights(home)
    data = engine.load_dataset(folder, val_size=80, seed=0)
    pixels = raw_test_images(folder)
    labels = model.predict(pixels)
    assert np.array_equal(labels, engine.predict(weights, data.X_test))
    proba = model.predict(pixels, params={"proba": True})
    assert proba.shape == (pixels.shape[0], data.n_classes)
    assert np.allclose(proba.sum(axis=1), 1.0) and np.array_equal(proba.argmax(axis=1), labels)
    assert model.metadata.run_id is None or model.metadata.run_id == run_id
    inputs = model.metadata.get_input_schema().inputs[0]
    assert (inputs.type, inputs.shape) == (np.dtype(np.uint8), (-1, pixels.shape[1]))


def test_the_registered_model_requires_what_the_environment_check_checks(
    home: Home, tracking: None
) -> None:
    path = Path(mlflow.pyfunc.get_model_dependencies("models:/clf/latest"))
    assert path.read_text().split() == model.requirements()


def test_each_tested_best_trial_is_a_version_and_its_runs_model(home: Home, folder: Path) -> None:
    """A resume registers a new version only for a new best: one version per trial that was
    ever tested, each from that trial's run, which lists the model among its outputs."""
    import optuna

    client = MlflowClient(tracking_uri=home.tracking_uri)
    versions = client.search_model_versions("name = 'clf'")
    study = optuna.load_study(study_name="clf", storage=home.storage)
    tested = [number for number, _ in study.user_attrs["test_evaluations"]]
    experiment = client.get_experiment_by_name("clf").experiment_id
    runs = {
        int(r.data.tags["optuna.trial"]): r
        for r in client.search_runs([experiment], "tags.`softsweep.role` = 'trial'")
    }
    assert sorted(v.run_id for v in versions) == sorted(runs[n].info.run_id for n in tested)
    for version in versions:
        run = client.get_run(version.run_id)
        logged = [client.get_logged_model(m.model_id) for m in run.outputs.model_outputs]
        assert version.source in [m.artifact_location for m in logged]
    run_spec(spec_text("clf", folder, n_trials=6, batch="[16]", **TEXT), home.folder)
    assert len(client.search_model_versions("name = 'clf'")) == len(versions)  # nothing new


@contextlib.contextmanager
def served(home: Home) -> Iterator[str]:
    port = free_port()
    log = home.folder.parent / f"serve-{port}.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": home.tracking_uri}
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/clf/latest",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_health(url, server, "mlflow models serve", log)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_registered_model(
    home: Home, folder: Path, tracking: None
) -> None:
    pixels = raw_test_images(folder)[:5]
    expected = mlflow.pyfunc.load_model("models:/clf/latest").predict(pixels)
    with served(home) as url:
        body = json.dumps({"inputs": pixels.tolist()}).encode()
        request = urllib.request.Request(
            f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer = json.loads(reply.read())
    assert answer["predictions"] == expected.tolist()


def test_deleting_the_study_deletes_its_registered_model_and_no_other(
    folder: Path, tmp_path: Path
) -> None:
    from sweep.admin import delete_study, plan_deletion

    run_spec(spec_text("gone", folder, n_trials=2, batch="[16]", **TEXT), tmp_path / "home")
    home = Home.resolve(tmp_path / "home")
    client = MlflowClient(tracking_uri=home.tracking_uri)
    client.create_registered_model("someone-elses")
    assert [int(v.version) for v in client.search_model_versions("name = 'gone'")] == [1]
    delete_study(plan_deletion("gone", home), home)
    assert [m.name for m in client.search_registered_models()] == ["someone-elses"]

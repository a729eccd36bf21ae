"""The data behind each run (MLflow's Dataset column) and the study file (its Source column),
on a real MLflow SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

import engine
from sweep.store.home import Home
from sweep.track.inputs import describe_data, source_tags
from sweep.track.sync import sync_study
from tests.helpers import run_spec, spec_text, write_idx_dataset


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "blobs", n_train=300, n_test=100)


def described(folder: Path, **options: bool) -> dict:
    data = engine.load_dataset(folder, val_size=80, seed=0, **options)
    return describe_data(
        data, study_file="<string>", val_size=80, split_seed=0, preprocessing=str(options)
    )


def test_a_digest_names_the_data_as_the_trials_see_it(folder: Path) -> None:
    plain, again = described(folder), described(folder)
    standardized = described(folder, center=True, standardize=True)
    digests = {split: one["digest"] for split, one in plain["splits"].items()}
    assert digests == {split: one["digest"] for split, one in again["splits"].items()}
    assert len(set(digests.values())) == 3  # each split is data of its own
    assert all(
        standardized["splits"][split]["digest"] != digest for split, digest in digests.items()
    )
    assert plain["folder"] == str(folder.resolve())
    assert [one["rows"] for one in plain["splits"].values()] == [220, 80, 100]
    assert source_tags(plain) == {}  # a study given as text has no file to show


@pytest.fixture(scope="module")
def swept(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Home]:
    where = tmp_path_factory.mktemp("swept")
    study_file = where / "inputs.toml"
    study_file.write_text(spec_text("inputs", folder, lr="{ values = [0.1, 1.0] }", batch="[16]"))
    run_spec(study_file.read_text(), where / "home", str(study_file))
    return study_file, Home.resolve(where / "home")


def inputs_by_role(uri: str) -> dict[str, list[list[tuple[str, ...]]]]:
    """role -> for each run, its inputs as (name, context, digest, the data's folder); and
    "source" -> each run's study file."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("inputs")
    found: dict[str, list[list[tuple[str, ...]]]] = {}
    for run in client.search_runs([experiment.experiment_id], ""):
        assert run.data.tags["mlflow.source.type"] == "LOCAL"
        found.setdefault("source", []).append([(run.data.tags["mlflow.source.name"],)])
        seen = []
        for one in run.inputs.dataset_inputs:
            context = {t.key: t.value for t in one.tags}["mlflow.data.context"]
            folder = json.loads(one.dataset.source)["uri"]
            seen.append((one.dataset.name, context, one.dataset.digest, folder))
        found.setdefault(run.data.tags["softsweep.role"], []).append(sorted(seen))
    return found


def test_every_run_shows_its_data_and_the_study_file(
    swept: tuple[Path, Home], folder: Path
) -> None:
    study_file, home = swept
    found = inputs_by_role(home.tracking_uri)
    assert {source for [(source,)] in found["source"]} == {str(study_file.resolve())}
    assert len(found["trial"]) == 4  # 2 learning rates x 2 regs
    for trial in found["trial"]:  # a trial never sees the test split
        assert [(name, context) for name, context, _, _ in trial] == [
            ("blobs train", "training"), ("blobs val", "validation")
        ]  # fmt: skip
    (study,) = found["study"]
    assert [(name, context) for name, context, _, _ in study] == [
        ("blobs test", "test"), ("blobs train", "training"), ("blobs val", "validation")
    ]  # fmt: skip
    assert set(found["trial"][0]) < set(study)  # the same datasets, digests and folder
    assert {one[3] for one in study} == {str(folder.resolve())}


def test_runs_rebuilt_by_sync_show_the_same_data(swept: tuple[Path, Home], tmp_path: Path) -> None:
    _, home = swept
    elsewhere = Home(home.folder, home.storage, f"sqlite:///{tmp_path / 'other.db'}")
    sync_study("inputs", elsewhere)
    assert inputs_by_role(elsewhere.tracking_uri) == inputs_by_role(home.tracking_uri)

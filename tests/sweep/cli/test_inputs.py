"""Bad input to `sweep run`: one paragraph naming what is wrong, exit 2, and nothing written to
the stores (no study is created for a run that cannot start)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sweep.cli import main
from tests.helpers import spec_text, write_idx_dataset


def run(tmp_path: Path, text: str, *options: str) -> tuple[int, str]:
    path = tmp_path / "study.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["run", str(path), *options])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_dataset_that_does_not_exist_creates_no_study(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, said = run(tmp_path, spec_text("nodata", tmp_path / "nowhere"), "--home", str(home))
    assert code == 2 and "nowhere" in said
    assert not (home / "optuna.db").exists()  # no empty study for `sweep report` to trip on


def test_a_batch_larger_than_the_training_split_is_refused_up_front(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "blobs", n_train=100, n_test=20)
    home = tmp_path / "home"
    code, said = run(tmp_path, spec_text("big-batch", data, batch="[16, 512]"), "--home", str(home))
    assert code == 2
    assert "batch_size must be at most the training split's size, got 512" in said
    assert "leaves 20 training examples (after the 80 of the validation split)" in said
    assert not (home / "optuna.db").exists()


def test_bad_data_for_a_new_study_in_an_existing_store_creates_no_study(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "blobs", n_train=100, n_test=20)
    home = tmp_path / "home"
    fine = spec_text("fine", data, n_trials=1, epochs=1, batch="[16]")
    code, said = run(tmp_path, fine, "--home", str(home))
    assert code == 0, said
    code, said = run(tmp_path, spec_text("big-batch", data, batch="[512]"), "--home", str(home))
    assert code == 2 and "batch_size must be at most the training split's size" in said
    import optuna

    assert optuna.get_all_study_names(f"sqlite:///{home / 'optuna.db'}") == ["fine"]


def test_a_home_that_is_a_file_is_one_paragraph(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "blobs", n_train=100, n_test=20)
    (tmp_path / "afile").write_text("not a folder")
    code, said = run(tmp_path, spec_text("h", data), "--home", str(tmp_path / "afile"))
    assert code == 2 and "--home must be a folder" in said


def test_a_home_that_cannot_be_created_is_one_paragraph(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "blobs", n_train=100, n_test=20)
    (tmp_path / "afile").write_text("not a folder")
    code, said = run(tmp_path, spec_text("h", data), "--home", str(tmp_path / "afile" / "home"))
    assert code == 2 and "cannot be created" in said


def test_runs_of_a_study_with_no_trials_says_so(tmp_path: Path) -> None:
    import optuna

    home = tmp_path / "home"
    home.mkdir()
    optuna.create_study(study_name="empty", storage=f"sqlite:///{home / 'optuna.db'}")
    result = CliRunner().invoke(main, ["runs", "empty", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "study 'empty' has no trials yet" in result.output
    assert "Empty DataFrame" not in result.output
    assert not (home / "mlflow.db").exists()  # reading made no MLflow store


def test_create_refuses_a_validation_split_larger_than_the_data(tmp_path: Path) -> None:
    """As `sweep run` would, before a study exists."""
    data = write_idx_dataset(tmp_path / "data", n_train=300, n_test=100)
    study = tmp_path / "big.toml"
    study.write_text(spec_text("big", data).replace("val_size = 80", "val_size = 5000"))
    result = CliRunner().invoke(main, ["create", str(study), "--home", str(tmp_path / "h")])
    assert result.exit_code == 2
    assert "val_size must be between 1 and 299" in result.output
    assert not (tmp_path / "h" / "optuna.db").exists()

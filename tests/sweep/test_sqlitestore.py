"""The embedded stores' SQLite files: refused when they cannot be the store, opened one process
at a time (the lock's file, and what it covers)."""

from __future__ import annotations

import fcntl
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweep.cli import main
from sweep.sqlitestore import check_sqlite_file, sqlite_lock, sqlite_path
from sweep.tracking import Tracker
from sweep.workers import make_storage


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql+psycopg2://u:p@db:5432/optuna",
        "http://127.0.0.1:5000",
        "file:///tmp/mlruns",
        "sqlite:///:memory:",
        "sqlite://",
    ],
)
def test_only_sqlite_files_are_locked(uri: str) -> None:
    assert sqlite_path(uri) is None
    with sqlite_lock(uri):  # no file, no error
        pass


def test_relative_and_query_sqlite_uris_name_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:///home/optuna.db?timeout=60") == tmp_path / "home" / "optuna.db"
    assert sqlite_path(f"sqlite:///{tmp_path}/m.db") == tmp_path / "m.db"


def test_the_lock_is_held_inside_and_released_after(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    lock_file = tmp_path / "new" / "mlflow.db.lock"
    with sqlite_lock(uri), open(lock_file) as other:  # another open file: another lock owner
        with pytest.raises(BlockingIOError, match="Resource temporarily unavailable"):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock_file) as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not (tmp_path / "new" / "mlflow.db").exists()  # the lock never creates the store


def test_a_file_that_cannot_be_the_store_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    optuna_file = tmp_path / "optuna.db"
    make_storage(f"sqlite:///{optuna_file}").engine.dispose()  # a real Optuna storage
    before = optuna_file.read_bytes()
    garbage = tmp_path / "notes.db"
    garbage.write_text("not a database")
    cases = {
        f"sqlite:///{optuna_file}": "it is an Optuna storage",
        f"sqlite:///{garbage}": "sqlite3: file is not a database",
        f"sqlite:///{tmp_path}": "it is a folder",
        f"sqlite:///{garbage}/inside/mlflow.db": f"{garbage} is not a folder",
    }
    for uri, problem in cases.items():
        with pytest.raises(RuntimeError, match=re.escape(problem)) as error:
            Tracker(uri, "x")
        assert str(error.value).startswith(f"The MLflow tracking store {uri} cannot be used")
        assert "Point --tracking-uri at a new file" in str(error.value)
    assert optuna_file.read_bytes() == before  # MLflow never touched it
    with pytest.raises(RuntimeError, match=r"Optuna storage .* cannot be used .*not a database"):
        make_storage(f"sqlite:///{garbage}")


def test_new_files_and_each_programs_own_file_pass(tmp_path: Path) -> None:
    check_sqlite_file(
        f"sqlite:///{tmp_path / 'new' / 'deeper' / 'mlflow.db'}",
        "MLflow tracking store",
        "--tracking-uri",
    )
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "empty.db").touch()  # an empty file is a new database to SQLite
    check_sqlite_file(f"sqlite:///{tmp_path / 'empty.db'}", "Optuna storage", "--storage")
    optuna_file = tmp_path / "optuna.db"
    make_storage(f"sqlite:///{optuna_file}").engine.dispose()
    check_sqlite_file(f"sqlite:///{optuna_file}", "Optuna storage", "--storage")


def test_reading_a_home_that_does_not_exist_creates_no_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["runs", "foo", "--home", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "there is no Optuna storage at" in result.output
    assert not (tmp_path / "nope" / "optuna.db").exists()

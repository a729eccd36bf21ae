"""Which stores the first-open lock covers, and where its file goes."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from sweep.locking import sqlite_lock, sqlite_path


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

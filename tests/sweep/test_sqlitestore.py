"""The embedded stores' SQLite files: refused when they cannot be the store, opened one process
at a time (the lock's file, and what it covers), a new MLflow store copied from the empty one
the same MLflow version made before."""

from __future__ import annotations

import fcntl
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweep.cli import main
from sweep.sqlitestore import check_sqlite_file, sqlite_lock, sqlite_path
from sweep.tracking import Tracker, TrialRecord
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


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["runs", "foo"], "there is no Optuna storage at"),
        (["report", "foo"], "there is no Optuna storage at"),
        (["ui"], "No MLflow store in"),
    ],
)
def test_reading_a_home_that_does_not_exist_creates_nothing(
    tmp_path: Path, command: list[str], says: str
) -> None:
    result = CliRunner().invoke(main, [*command, "--home", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert says in result.output
    assert not (tmp_path / "nope").exists()  # not even the folder


def _sql(path: Path, query: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(query).fetchall()


def _schema(path: Path) -> list[tuple]:
    return _sql(path, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")


def _seed(cache: Path) -> Path:
    import mlflow

    return cache / "softsweep" / "stores" / f"mlflow-{mlflow.__version__}.db"


def _log_a_run(home: Path) -> None:
    """The store takes a study and a trial run, and gives them back."""
    tracker = Tracker(f"sqlite:///{home / 'mlflow.db'}", "s", artifact_root=home / "art")
    try:
        tracker.start_study("s", {"epochs": "1"}, "")
        (run,) = tracker.run_ids([tracker.start_trial("s", 0)])
        tracker.finish_trial(run, TrialRecord(0, "COMPLETE", {"reg": 0.1}, [], {"acc": 0.5}))
        tracker.flush()
        assert tracker.errors == []
    finally:
        tracker.close()
    from mlflow import MlflowClient

    got = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}").get_run(run)
    assert (got.info.status, got.data.metrics, got.data.params) == (
        "FINISHED", {"acc": 0.5}, {"reg": "0.1"}
    )  # fmt: skip


def test_a_new_mlflow_store_is_a_copy_of_the_first_empty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow migrates a new store (~0.8 s of Python); the next new stores copy the empty one it
    made: the same schema and revision, the same Default experiment, and they take runs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seed = _seed(tmp_path / "cache")
    first, second = tmp_path / "first", tmp_path / "second"
    _log_a_run(first)
    assert _sql(seed, "SELECT name FROM experiments") == [("Default",)]  # empty: no study, runs
    assert _sql(seed, "SELECT count(*) FROM runs") == [(0,)]
    _log_a_run(second)
    assert _schema(second / "mlflow.db") == _schema(first / "mlflow.db")
    revision = "SELECT version_num FROM alembic_version"
    assert _sql(second / "mlflow.db", revision) == _sql(first / "mlflow.db", revision)
    made = "SELECT creation_time FROM experiments WHERE experiment_id = 0"
    assert _sql(second / "mlflow.db", made) == _sql(first / "mlflow.db", made)  # copied, not made
    assert not list(second.glob(".*.tmp")) and not list(seed.parent.glob(".*.tmp"))


@pytest.mark.parametrize("bad", ["older revision", "not a database", "another program's"])
def test_a_seed_mlflow_cannot_use_is_replaced_and_the_store_made_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seed = _seed(tmp_path / "cache")
    _log_a_run(tmp_path / "first")
    head = _sql(seed, "SELECT version_num FROM alembic_version")
    if bad == "older revision":  # what an MLflow build with another schema would have left
        with closing(sqlite3.connect(seed)) as db, db:
            db.execute("UPDATE alembic_version SET version_num = '75868b020152'")
    elif bad == "not a database":
        seed.write_bytes(b"half a file")
    else:
        seed.unlink()
        with closing(sqlite3.connect(seed)) as db, db:
            db.execute("CREATE TABLE notes (text)")
    _log_a_run(tmp_path / "second")
    assert (
        _sql(tmp_path / "second" / "mlflow.db", "SELECT version_num FROM alembic_version") == head
    )
    assert _sql(seed, "SELECT version_num FROM alembic_version") == head  # a good seed again


def test_an_existing_store_is_never_replaced_and_an_empty_file_is_seeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _log_a_run(tmp_path / "first")
    _log_a_run(tmp_path / "first")  # the same home again: its first runs are still there
    trials = "SELECT count(*) FROM runs WHERE name LIKE '%-trial-%'"
    assert _sql(tmp_path / "first" / "mlflow.db", trials) == [(2,)]
    (tmp_path / "touched").mkdir()
    (tmp_path / "touched" / "mlflow.db").touch()  # `touch mlflow.db`: no store yet
    _log_a_run(tmp_path / "touched")


def test_a_cache_that_cannot_be_written_costs_only_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _log_a_run(tmp_path / "first")
    assert (tmp_path / "cache").read_text() == "a file where the cache folder would go"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))

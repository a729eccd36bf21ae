"""The embedded stores' SQLite files: refused when they cannot be the store, opened one process
at a time (the lock's file, and what it covers), a new MLflow store copied from the empty one
the same MLflow version made before."""

from __future__ import annotations

import fcntl
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweep.cli import main
from sweep.spec import parse_spec
from sweep.store.sqlitestore import check_sqlite_file, sqlite_lock, sqlite_path
from sweep.store.study import make_storage
from sweep.track.tracker import Tracker
from sweep.trial import History, Outcome, TrialRecord

SPEC = parse_spec(
    '[study]\nname = "s"\n[data]\ndataset = "mnist"\n'
    "[space]\nlearning_rate = { values = [0.1] }\nreg = { values = [0.0] }\n"
)


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
    make_storage(f"sqlite:///{optuna_file}", SPEC).engine.dispose()  # a real Optuna storage
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
        make_storage(f"sqlite:///{garbage}", SPEC)


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
    make_storage(f"sqlite:///{optuna_file}", SPEC).engine.dispose()
    check_sqlite_file(f"sqlite:///{optuna_file}", "Optuna storage", "--storage")


def test_an_optuna_file_half_made_by_a_plain_optuna_reader_is_completed_not_refused(
    tmp_path: Path,
) -> None:
    """The tables a polling `optuna.load_study` had made when a sweep checked the file in CI."""
    half = tmp_path / "optuna.db"
    with closing(sqlite3.connect(half)) as db:
        for table in ("studies", "study_directions", "study_user_attributes", "version_info"):
            db.execute(f"CREATE TABLE {table} (x INTEGER)")
    check_sqlite_file(f"sqlite:///{half}", "Optuna storage", "--storage")
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE studies (x INTEGER)")
        db.execute("CREATE TABLE invoices (x INTEGER)")  # not Optuna's
    with pytest.raises(RuntimeError, match="its tables are another program's: invoices, studies"):
        check_sqlite_file(f"sqlite:///{other}", "Optuna storage", "--storage")


# A writer killed (kill -9) with its transaction half written to the file: its rollback journal
# is hot, and the next opener has to roll it back before reading anything.
KILLED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 5")  # pages spill to the file before the commit
db.execute("BEGIN IMMEDIATE")
db.execute("CREATE TABLE half_written (x TEXT)")
db.executemany("INSERT INTO half_written VALUES (?)", [("x" * 200,)] * 2000)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_store_left_by_a_writer_killed_mid_transaction_is_recovered_not_refused(
    tmp_path: Path,
) -> None:
    optuna_uri = f"sqlite:///{tmp_path / 'optuna.db'}"
    make_storage(optuna_uri, SPEC).engine.dispose()
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker(mlflow_uri, "kept").close()
    for uri in (optuna_uri, mlflow_uri):
        path = sqlite_path(uri)
        assert path is not None
        killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], check=False)
        assert killed.returncode == -9
        assert path.with_name(path.name + "-journal").stat().st_size > 0  # a hot journal
        with pytest.raises(sqlite3.OperationalError, match="readonly database"):
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
                db.execute("SELECT name FROM sqlite_master").fetchall()
    check_sqlite_file(optuna_uri, "Optuna storage", "--storage")  # recovered, not refused
    check_sqlite_file(mlflow_uri, "MLflow tracking store", "--tracking-uri")
    for uri in (optuna_uri, mlflow_uri):
        path = sqlite_path(uri)
        assert path is not None and not path.with_name(path.name + "-journal").exists()
        with closing(sqlite3.connect(path)) as db:  # the half-written transaction is gone
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "half_written" not in tables
    make_storage(optuna_uri, SPEC).engine.dispose()  # both programs open them as before
    tracker = Tracker(mlflow_uri, "kept")
    assert tracker.errors == []
    tracker.close()


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


def _log_a_run(home: Path) -> None:
    """The store takes a study and a trial run, and gives them back."""
    tracker = Tracker(f"sqlite:///{home / 'mlflow.db'}", "s", artifact_root=home / "art")
    try:
        tracker.start_study("s", {"epochs": "1"}, "")
        run = tracker.run_id(tracker.start_trial("s", 0))
        one = History(({"train_loss": 0.9, "train_accuracy": 0.6, "val_accuracy": 0.5,
                        "epoch_time_s": 0.1},))  # fmt: skip
        tracker.finish_trial(run, TrialRecord(0, Outcome.COMPLETE, {"reg": 0.1}, one))
        tracker.flush()
        assert tracker.errors == []
    finally:
        tracker.close()
    from mlflow import MlflowClient

    got = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}").get_run(run)
    assert (got.info.status, got.data.metrics, got.data.params) == (
        "FINISHED",
        {"train_loss": 0.9, "train_accuracy": 0.6, "val_accuracy": 0.5, "best_val_accuracy": 0.5},
        {"reg": "0.1"},
    )  # fmt: skip


def test_a_new_homes_default_experiment_keeps_its_artifacts_in_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MlflowClient alone would put the Default experiment's artifacts under the current
    folder's ./mlruns (a stranger's folder, for the next user of the home)."""
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    _log_a_run(home)
    (location,) = _sql(
        home / "mlflow.db", "SELECT artifact_location FROM experiments WHERE experiment_id = 0"
    )
    assert location[0] == (home / "art").resolve().as_uri() + "/0"
    assert not (tmp_path / "mlruns").exists()


def test_an_existing_store_is_never_replaced_and_an_empty_file_becomes_a_store(
    tmp_path: Path,
) -> None:
    _log_a_run(tmp_path / "first")
    _log_a_run(tmp_path / "first")  # the same home again: its first runs are still there
    trials = "SELECT count(*) FROM runs WHERE name LIKE 'trial %'"
    assert _sql(tmp_path / "first" / "mlflow.db", trials) == [(2,)]
    (tmp_path / "touched").mkdir()
    (tmp_path / "touched" / "mlflow.db").touch()  # `touch mlflow.db`: no store yet
    _log_a_run(tmp_path / "touched")


def test_a_new_store_is_made_whole_or_not_at_all(tmp_path: Path) -> None:
    """A process killed while making a new store (MLflow's migrations take a second or two)
    leaves no half-made store: it is made in a temporary file and renamed into place."""
    from sweep.store.sqlitestore import open_store

    path = tmp_path / "mlflow.db"
    uri = f"sqlite:///{path}"

    class Died(BaseException):
        """The process stops here (as a SIGKILL would, for this file's purposes)."""

    def dies_halfway(new: str) -> None:
        with closing(sqlite3.connect(new[len("sqlite:///") :])) as db, db:
            db.execute("CREATE TABLE experiments (id)")  # the first of many steps
        raise Died("killed halfway through the migrations")

    with pytest.raises(Died, match="killed halfway"):
        open_store(uri, lambda: None, dies_halfway)
    assert not path.exists() and not list(tmp_path.glob(".mlflow.db.*.tmp"))
    # A temporary file a SIGKILL left behind is removed by the next maker.
    (tmp_path / ".mlflow.db.99999.tmp").write_bytes(b"half a store")
    _log_a_run(tmp_path)  # makes the store for real, through the tracker
    assert not list(tmp_path.glob(".mlflow.db.*.tmp"))
    assert ("experiments",) in _sql(path, "SELECT name FROM sqlite_master WHERE type = 'table'")

"""The stores on a real PostgreSQL. Workers that open a new database at the same instant all
join. A PostgreSQL that hangs (every process of the cluster SIGSTOPped: connections are
accepted, nothing answers): softsweep's waits end at their bound with one paragraph, Ctrl-C ends
them at once, a sweep interrupted there resumes, and a psycopg2 connection that is not
softsweep's is left to wait as libpq would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from click.testing import CliRunner
from optuna.trial import TrialState

from sweep.cli import main
from sweep.spec import parse_spec
from sweep.store import waits
from sweep.store.home import Home
from sweep.store.study import open_study
from tests.helpers import spec_text, wait_for_pause, write_idx_dataset
from tests.servers import Postgres, postgres

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres(("optuna", "mlflow", "other")) as server:
        yield server


@pytest.fixture(scope="module")
def swept(pg: Postgres, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A finished 4-cell study on PostgreSQL (both stores); its store options."""
    folder = tmp_path_factory.mktemp("hung")
    data = write_idx_dataset(folder / "data", n_train=300, n_test=100)
    study = folder / "hung.toml"
    study.write_text(spec_text("hung", data, lr="{ values = [0.1, 1.0] }", batch="[16]"))
    stores = ["--storage", pg["optuna"], "--tracking-uri", pg["mlflow"], "--home", str(folder)]
    done = CliRunner().invoke(main, ["run", str(study), *stores])
    assert done.exit_code == 0, done.output
    assert list((folder / "mlartifacts").rglob("weights.npy"))  # in the home, not ./mlruns
    return stores


@pytest.fixture
def hung(pg: Postgres) -> Iterator[Postgres]:
    pg.hang()
    try:
        yield pg
    finally:
        pg.wake()


def test_workers_opening_a_new_database_at_the_same_instant_all_join(
    pg: Postgres, tmp_path: Path
) -> None:
    """What `docker compose up --scale worker=3` does without the creator: 3 at once, 5 times
    (before the advisory lock, 2 of 3 failed with UniqueViolation in every round)."""
    data = write_idx_dataset(tmp_path / "data", n_train=300, n_test=100)
    spec = parse_spec(spec_text("together", data), "together.toml")
    admin = sqlalchemy.create_engine(pg["optuna"], isolation_level="AUTOCOMMIT")
    for round_ in range(5):
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE fresh{round_}"))
        url = pg["optuna"].rsplit("/", 1)[0] + f"/fresh{round_}"
        home = Home(tmp_path, url, f"sqlite:///{tmp_path / 'mlflow.db'}")
        start = threading.Barrier(3)
        errors: list[BaseException] = []

        def join(start: threading.Barrier, home: Home, errors: list[BaseException]) -> None:
            start.wait()
            try:
                open_study(spec, home)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=join, args=(start, home, errors)) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == [], f"round {round_}: {errors}"
        assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["together"]
    admin.dispose()


SELECT_1 = sqlalchemy.text("SELECT 1")


@pytest.fixture
def ours(pg: Postgres) -> Iterator[sqlalchemy.Engine]:
    """An engine on a database softsweep bounds (`waits.bound`)."""
    waits.bound(pg["optuna"])
    engine = sqlalchemy.create_engine(pg["optuna"])
    yield engine
    engine.dispose()


@contextlib.contextmanager
def hung_after_connecting(pg: Postgres, engine: sqlalchemy.Engine) -> Iterator[Any]:
    """A connection made while the server answered, then the server hung (woken at the end)."""
    with engine.connect() as connection:
        pg.hang()
        try:
            yield connection
        finally:
            pg.wake()


def ctrl_c_in(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.parametrize(
    "command", [["runs", "hung"], ["studies"], ["report", "hung"], ["sync", "hung"],
                ["delete", "hung", "--yes"]],
)  # fmt: skip
def test_a_read_command_on_a_hung_database_fails_within_seconds(
    swept: list[str], hung: Postgres, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if command[0] != "runs":  # (the real bounds for one command; shorter ones for the rest)
        monkeypatch.setattr(waits, "CONNECT_S", 2.0)
    started = time.monotonic()
    result = CliRunner().invoke(main, [*command, *swept])
    took = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert "did not answer within" in result.output and "Traceback" not in result.output
    assert took < 30, took


def test_nothing_was_deleted_by_a_delete_that_could_not_reach_the_database(
    swept: list[str], pg: Postgres
) -> None:
    pg.hang()
    try:
        assert CliRunner().invoke(main, ["delete", "hung", "--yes", *swept]).exit_code == 1
    finally:
        pg.wake()
    study = optuna.load_study(study_name="hung", storage=pg["optuna"])
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4


def test_a_query_that_gets_no_answer_fails_at_the_bound(
    pg: Postgres, ours: sqlalchemy.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waits, "ANSWER_S", 1.5)
    with hung_after_connecting(pg, ours) as connection:
        started = time.monotonic()
        with pytest.raises(sqlalchemy.exc.OperationalError, match="did not answer within"):
            connection.execute(SELECT_1)
        assert time.monotonic() - started < 20  # (and without a bound it never ends)
    with ours.connect() as connection:  # and the next call works once it answers
        assert connection.execute(SELECT_1).scalar() == 1


def test_ctrl_c_ends_a_wait_on_a_hung_database_at_once(
    pg: Postgres, ours: sqlalchemy.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waits, "ANSWER_S", 120.0)
    with hung_after_connecting(pg, ours) as connection:
        timer = ctrl_c_in(1.0)
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt, match=r"^$"):  # (the default handler's)
            connection.execute(SELECT_1)
        timer.join()
        assert time.monotonic() - started < 20  # the bound is 120 s


def test_a_connection_softsweep_did_not_open_waits_as_libpq_would(
    pg: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait callback is process-wide: a notebook's own database keeps its waits."""
    monkeypatch.setattr(waits, "ANSWER_S", 0.5)
    waits.bound(pg["optuna"])
    engine = sqlalchemy.create_engine(pg["other"])
    try:
        with engine.connect() as connection:
            pg.hang()
            threading.Timer(2.0, pg.wake).start()
            assert connection.execute(SELECT_1).scalar() == 1
    finally:
        pg.wake()
        engine.dispose()


def test_ctrl_c_stops_a_sweep_waiting_on_a_hung_database_and_the_next_run_finishes(
    pg: Postgres, tmp_path: Path
) -> None:
    data = write_idx_dataset(tmp_path / "data", n_train=300, n_test=100)
    study = tmp_path / "stopped.toml"
    study.write_text(
        spec_text("stopped", data, lr="{ values = [0.1, 1.0] }", batch="[16]", side_by_side=2)
    )
    stores = ["--storage", pg["optuna"], "--tracking-uri", pg["mlflow"], "--home", str(tmp_path)]
    env = {**os.environ, "SOFTSWEEP_PAUSE_AT": "telling", "SOFTSWEEP_PAUSE_S": "1"}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "sweep", "run", str(study), *stores, "--n-trials", "4"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_pause(sweep, "telling")  # inside the shielded tells
        pg.hang()
        time.sleep(3)  # the pause is over: the tell waits on the database
        assert sweep.poll() is None
        sweep.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = sweep.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        pg.wake()
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130, err
    assert took < 20, took  # (its tell would wait for the database for 60 s)
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    # The resume command names the same stores and the same target.
    resume = f"Resume with: sweep run {study} --home {tmp_path} --storage {pg['optuna']} "
    assert resume + f"--tracking-uri {pg['mlflow']} --n-trials 4" in err

    again = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(study), *stores],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="stopped", storage=pg["optuna"]).trials
    complete = {(t.params["learning_rate"], t.params["reg"]) for t in trials
                if t.state == TrialState.COMPLETE}  # fmt: skip
    assert len(complete) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

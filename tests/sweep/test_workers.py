"""Many workers as real processes: a real PostgreSQL (Optuna's storage), a real `mlflow server`
(on its own PostgreSQL database, artifacts served), `sweep worker` processes, a SIGKILL; and 4
local workers on the embedded SQLite stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweep.cli import main
from tests.helpers import spec_text, write_idx_dataset
from tests.servers import mlflow_server, postgres

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    """PostgreSQL with two databases, and an MLflow server on the second one."""
    with postgres() as urls:
        artifacts = tmp_path_factory.mktemp("served") / "artifacts"
        with mlflow_server(urls["mlflow"], artifacts) as tracking:
            yield urls["optuna"], tracking


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "blobs", n_train=400, n_test=150)


@pytest.fixture(scope="module")
def big_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data big enough that a trial lasts about a second: long enough to kill a worker inside
    one, and for several workers to share a grid however unevenly they start."""
    folder = tmp_path_factory.mktemp("data") / "big"
    return write_idx_dataset(folder, n_train=6000, n_test=200, image_shape=(28, 28))


def study_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweep", *args]


def start_workers(n: int, path: Path, home: Path, storage: str, tracking: str, heartbeat: int):
    return [
        subprocess.Popen(
            sweep_cmd(
                "worker", str(path), "--home", str(home), "--storage", storage,
                "--tracking-uri", tracking, "--heartbeat", str(heartbeat),
            ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]  # fmt: skip


def trial_runs(tracking: str, study: str) -> list:
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(study)
    return client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'trial'")


def cells(trials) -> Counter:
    return Counter(
        (t.params["learning_rate"], t.params["reg"], t.params["batch_size"])
        for t in trials
        if t.state == TrialState.COMPLETE
    )


def only_duplicates_failed(trials) -> bool:
    return all(
        t.state == TrialState.COMPLETE
        or t.user_attrs.get("fail_reason", "").startswith("duplicate grid cell: trial #")
        for t in trials
    )


def test_three_workers_on_postgres_and_an_mlflow_server_do_every_cell_once(
    servers, big_data: Path, tmp_path: Path
) -> None:
    storage, tracking = servers
    # Trials of about a second: with tiny ones, the first worker to finish importing could
    # do all 9 cells before the others asked for any (seen once in CI).
    text = spec_text(
        "pg-grid",
        big_data,
        lr="{ values = [0.03, 0.3, 1.0] }",
        reg="{ values = [0.0, 1e-3, 1e-2] }",
        batch="[16]",
        side_by_side=1,
        epochs=8,
    )
    path = study_file(tmp_path, "pg-grid", text)
    create = subprocess.run(
        sweep_cmd("create", str(path), "--storage", storage, "--tracking-uri", tracking,
                  "--home", str(tmp_path / "h")),
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert create.returncode == 0, create.stderr
    assert "9 grid cells queued" in create.stdout
    workers = start_workers(3, path, tmp_path / "h", storage, tracking, heartbeat=2)
    outputs = [w.communicate(timeout=240) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "Traceback" not in err and "database is locked" not in err
    trials = optuna.load_study(study_name="pg-grid", storage=storage).trials
    # Every cell completed exactly once; nothing failed but, at most, a duplicate that two
    # workers asked for the last queued cells at once (told FAIL as such, never trained).
    assert len(cells(trials)) == 9 and set(cells(trials).values()) == {1}
    assert only_duplicates_failed(trials)
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the work was shared
    trials = [t for t in trials if t.state == TrialState.COMPLETE]
    runs = trial_runs(tracking, "pg-grid")  # one FINISHED run per completed trial
    assert sorted(int(r.data.tags["optuna.trial"]) for r in runs) == sorted(
        t.number for t in trials
    )
    assert {r.info.status for r in runs} == {"FINISHED"}
    for t in trials:  # the run id on each trial is its run
        assert t.user_attrs["mlflow_run_id"] in {r.info.run_id for r in runs}
    # The last worker closed the study: summary printed once the others were done.
    assert sum("test accuracy" in out for out, _ in outputs) >= 1


def test_a_worker_killed_mid_trial_is_retried_and_its_run_closed(
    servers, big_data: Path, tmp_path: Path
) -> None:
    storage, tracking = servers
    # Trials of ~3 s: a worker's first runs exist only once its tracker thread has imported
    # MLflow (~2 s), and the kill must still land inside the trial, after its run exists.
    text = spec_text(
        "pg-kill",
        big_data,
        lr="{ values = [0.03, 0.3] }",
        reg="{ values = [0.0, 1e-3] }",
        batch="[16]",
        side_by_side=1,
        epochs=30,
    )
    path = study_file(tmp_path, "pg-kill", text)
    home = tmp_path / "h"
    create = sweep_cmd(
        "create", str(path), "--storage", storage, "--tracking-uri", tracking, "--home", str(home)
    )
    assert subprocess.run(create, cwd=ROOT, capture_output=True).returncode == 0
    victim, survivor = start_workers(2, path, home, storage, tracking, heartbeat=1)
    study = optuna.load_study(study_name="pg-kill", storage=storage)
    deadline = time.monotonic() + 120
    killed = None
    while killed is None and time.monotonic() < deadline:
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            runs = trial_runs(tracking, "pg-kill") if t.user_attrs.get("worker") else []
            mine = t.user_attrs.get("worker", "").endswith(f":{victim.pid}")
            if mine and any(r.data.tags["optuna.trial"] == str(t.number) for r in runs):
                os.kill(victim.pid, signal.SIGKILL)
                killed = t
                break
        time.sleep(0.05)
    assert killed is not None, "the victim never started a trial"
    victim.wait()
    _, err = survivor.communicate(timeout=240)
    assert survivor.returncode == 0, err
    trials = {t.number: t for t in study.get_trials()}
    # The killed trial is FAIL (by heartbeat) and its params ran again as a new trial.
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    # Every cell completed exactly once.
    assert len(cells(trials.values())) == 4 and set(cells(trials.values()).values()) == {1}
    # Its MLflow run (found by its tags: the id goes on a trial when it is told) is not left
    # RUNNING.
    (run,) = [
        r
        for r in trial_runs(tracking, "pg-kill")
        if r.data.tags["optuna.trial"] == str(killed.number)
    ]
    assert run.info.status == "FAILED"
    # Both workers lock in the same home on this machine: the survivor knows at once, from the
    # victim's free lock, that it is gone (across machines its heartbeats would tell).
    reason = run.data.tags["softsweep.fail_reason"]
    assert reason.startswith("interrupted: ") and f":{victim.pid}" in reason
    # It shows what the trial was trying (params are logged when the run is created).
    assert run.data.params["learning_rate"] == str(killed.params["learning_rate"])
    assert run.data.params["reg"] == str(killed.params["reg"])
    assert run.data.params["epochs"] == "30"


def test_a_worker_dead_before_its_run_id_reached_the_trial_still_gets_its_run_closed(
    tmp_path: Path,
) -> None:
    """The worker created the trial's MLflow run, then died before writing the run's id on the
    trial: the stale trial's run is found by its tags and closed, not left RUNNING."""
    from optuna.storages import fail_stale_trials

    from sweep.space import distributions
    from sweep.spec import parse_spec
    from sweep.store.study import make_storage
    from sweep.track.tracker import Tracker
    from sweep.trial import Outcome, outcome_of

    spec = parse_spec(spec_text("orphan", tmp_path))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(tracking, "orphan", artifact_root=tmp_path / "artifacts")
    storage = make_storage(
        f"sqlite:///{tmp_path / 'optuna.db'}", spec, heartbeat_s=1,
        close_run=tracker.fail_trial_runs,
    )  # fmt: skip
    study = optuna.create_study(study_name="orphan", storage=storage, direction="maximize")
    try:
        orphan = study.ask(distributions(spec))
        study_id = storage.get_study_id_from_name("orphan")
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, 0))
        run_id = tracker.run_id(tracker.start_trial("orphan", orphan.number))
        # ... and the worker dies here: no heartbeat, no "mlflow_run_id" on the trial.
        time.sleep(4.1)  # past the grace period (3 heartbeats; the clock there is in seconds)
        fail_stale_trials(study)
        tracker.flush()
    finally:
        tracker.close()
    assert study.trials[orphan.number].state == TrialState.FAIL
    # Optuna failed it (its attributes are frozen then): an interruption, run again.
    assert outcome_of(study.trials[orphan.number]) is Outcome.INTERRUPTED
    retried = study.trials[orphan.number + 1 :]
    assert [t.state for t in retried] == [TrialState.WAITING]  # queued again, same params
    assert retried[0].params == orphan.params
    run = MlflowClient(tracking_uri=tracking).get_run(run_id)
    assert run.info.status == "FAILED"
    assert "stopped sending heartbeats" in run.data.tags["softsweep.fail_reason"]


def test_four_local_workers_on_the_embedded_sqlite_stores(big_data: Path, tmp_path: Path) -> None:
    text = spec_text(
        "local4",
        big_data,
        lr="{ values = [0.01, 0.03, 0.3, 1.0] }",
        reg="{ values = [0.0, 1e-4, 1e-3, 1e-2] }",
        batch="[16]",
        side_by_side=2,
        epochs=4,
    )
    path = study_file(tmp_path, "local4", text)
    home = tmp_path / "home"
    result = subprocess.run(
        sweep_cmd("run", str(path), "--home", str(home), "--workers", "4"),
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr + result.stdout
    assert "16 completed, 0 pruned, 0 failed" in result.stdout
    storage = f"sqlite:///{home / 'optuna.db'}"
    trials = optuna.load_study(study_name="local4", storage=storage).trials
    # No lost trial: every cell completed exactly once.
    assert len(cells(trials)) == 16 and set(cells(trials).values()) == {1}
    assert only_duplicates_failed(trials)
    assert len({t.user_attrs["worker"] for t in trials if "worker" in t.user_attrs}) >= 2
    runs = trial_runs(f"sqlite:///{home / 'mlflow.db'}", "local4")
    assert len(runs) == 16 and {r.info.status for r in runs} == {"FINISHED"}
    assert (home / "reports" / "local4" / "index.html").is_file()


OPEN_TOGETHER = """
import sys, time
from pathlib import Path
from sweep.store.home import Home
from sweep.spec import load_spec
from sweep.store.study import open_study
from sweep.track.store import MlflowStore

import mlflow  # everything imported before the start, as in a worker at that point

spec, home, go = load_spec(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
open_study(spec, Home.resolve(home))
MlflowStore(f"sqlite:///{home / 'mlflow.db'}", spec.name, home / "mlartifacts", True, {})
"""


def test_workers_opening_a_new_home_together_each_find_its_stores(
    data_folder: Path, tmp_path: Path
) -> None:
    """Optuna and MLflow both create a new SQLite store's tables on first open; 4 processes
    doing it in the same instant used to fail with "table ... already exists" (MLflow's
    migrations, seen in CI with `sweep run --workers 4` on a new home)."""
    path = study_file(tmp_path, "together", spec_text("together", data_folder))
    home, go = tmp_path / "home", tmp_path / "go"
    home.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_TOGETHER, str(path), str(home), str(go)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]  # fmt: skip
    assert [w.stdout.readline().strip() for w in workers] == ["ready"] * 4  # type: ignore[union-attr]
    go.touch()  # all 4 open the new stores in the same instant
    errors = [w.communicate(timeout=120)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], next(e for e in errors if e)
    assert len(optuna.get_all_study_names(f"sqlite:///{home / 'optuna.db'}")) == 1
    experiments = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}").search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == ["together"]


def test_a_tracking_uri_with_credentials_is_accepted_and_masked(
    servers: tuple[str, str], data_folder: Path, tmp_path: Path
) -> None:
    """http://user:password@host:port, as MLflow's client takes it (HTTP basic auth)."""
    _, tracking = servers
    with_login = tracking.replace("http://", "http://me:pa55word@")
    path = study_file(tmp_path, "login", spec_text("login", data_folder, n_trials=4))
    result = CliRunner().invoke(
        main, ["run", str(path), "--home", str(tmp_path / "h"), "--tracking-uri", with_login]
    )
    assert result.exit_code == 0, result.output
    assert "me:***@127.0.0.1" in result.output and "pa55word" not in result.output
    assert len(trial_runs(tracking, "login")) == 4


def test_an_unreachable_tracking_server_fails_fast_before_training(
    data_folder: Path, tmp_path: Path
) -> None:
    path = study_file(tmp_path, "x", spec_text("unreach", data_folder))
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        ["worker", str(path), "--home", str(tmp_path / "h"), "--tracking-uri",
         "http://127.0.0.1:9"],
    )  # fmt: skip
    assert time.monotonic() - started < 20
    assert result.exit_code == 1
    assert "The MLflow tracking server at http://127.0.0.1:9 did not answer" in result.output
    # Probed before anything else: no study was even opened, so nothing was trained.
    assert not (tmp_path / "h" / "optuna.db").exists()


def test_a_tracking_uri_naming_the_optuna_file_is_refused_before_training(
    data_folder: Path, tmp_path: Path
) -> None:
    """A user's slip (`--tracking-uri sqlite:///.softsweep/optuna.db`) used to add MLflow's
    tables to the Optuna file and fail with a traceback after the first group trained."""
    path = study_file(tmp_path, "x", spec_text("slip", data_folder))
    home = tmp_path / "h"
    optuna_file = tmp_path / "other" / "optuna.db"
    optuna_file.parent.mkdir()
    optuna.create_study(study_name="theirs", storage=f"sqlite:///{optuna_file}")
    before = optuna_file.read_bytes()
    result = CliRunner().invoke(
        main, ["run", str(path), "--home", str(home), "--tracking-uri", f"sqlite:///{optuna_file}"]
    )
    assert result.exit_code == 1
    assert "cannot be used (it is an Optuna storage)" in result.output
    assert "Traceback" not in result.output
    assert optuna_file.read_bytes() == before
    assert not (home / "optuna.db").exists()  # refused before the study was opened


def test_an_unreachable_database_fails_within_seconds(data_folder: Path, tmp_path: Path) -> None:
    path = study_file(tmp_path, "x", spec_text("unreach-db", data_folder))
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        ["worker", str(path), "--home", str(tmp_path / "h"), "--storage",
         "postgresql+psycopg2://u:pw@127.0.0.1:9/db"],
    )  # fmt: skip
    assert time.monotonic() - started < 20
    assert result.exit_code == 1
    assert "Could not open the Optuna storage postgresql+psycopg2://u:***@127.0.0.1:9" in (
        result.output
    )


def test_a_tracking_database_that_refuses_the_login_fails_within_seconds(
    data_folder: Path, tmp_path: Path
) -> None:
    """MLflow alone retries a database it cannot reach ten times (~100 s)."""
    path = study_file(tmp_path, "x", spec_text("unreach-mlflow-db", data_folder))
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        ["run", str(path), "--home", str(tmp_path / "h"), "--tracking-uri",
         "postgresql+psycopg2://u:pw@127.0.0.1:9/mlflow"],
    )  # fmt: skip
    assert time.monotonic() - started < 20
    assert result.exit_code == 1
    assert "The MLflow tracking database postgresql+psycopg2://u:***@127.0.0.1:9/mlflow" in (
        result.output
    )
    assert "could not be used" in result.output and ":pw@" not in result.output


def test_compose_file_describes_the_team_setup() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "create", "worker"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    mlflow = services["mlflow"]
    command = " ".join(mlflow["command"])
    for flag in ("--backend-store-uri", "--artifacts-destination", "--allowed-hosts"):
        assert flag in command
    assert "postgresql+psycopg2://" in command
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "/health" in " ".join(mlflow["healthcheck"]["test"])
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["create"]["command"][:2] == ["sweep", "create"]
    assert services["create"]["restart"] == "no"
    worker = services["worker"]
    assert worker["command"][:2] == ["sweep", "worker"]
    assert worker["depends_on"]["create"]["condition"] == "service_completed_successfully"
    for service in services.values():  # nothing beyond the host's loopback
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:")
    # Credentials come from .env; the example names every variable the file uses.
    text = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    for variable in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert "${" + variable in text and f"{variable}=" in example
    assert "COPY" in (ROOT / "Dockerfile").read_text()


def test_a_grid_larger_than_n_trials_queues_only_what_the_target_needs(
    data_folder: Path, tmp_path: Path
) -> None:
    text = spec_text(
        "part", data_folder, n_trials=4, lr="{ values = [0.03, 0.3, 1.0] }", batch="[16]"
    )
    path = study_file(tmp_path, "part", text)
    result = CliRunner().invoke(main, ["worker", str(path), "--home", str(tmp_path / "h")])
    assert result.exit_code == 0, result.output
    # The only worker is the last one: it closes the study instead of waiting for queued cells.
    assert "4 completed, 0 pruned, 0 failed" in result.output
    storage = f"sqlite:///{tmp_path / 'h' / 'optuna.db'}"
    trials = optuna.load_study(study_name="part", storage=storage).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)

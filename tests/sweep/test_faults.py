"""Store faults with the real parts: an `mlflow server` killed and restarted under a running
sweep, a PostgreSQL stopped and started, a SIGKILL between a tell and its run's write, a full
disk (a small tmpfs), a read-only home. Nothing hangs past its bound, nothing is lost, and MLflow
ends up agreeing with Optuna."""

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
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweep.runner import GIVEN_BACK
from sweep.trial import REASON_ATTR, outcome_of
from tests.helpers import spec_text, stored_trials, wait_for_pause, write_idx_dataset
from tests.servers import free_port, mlflow_server, postgres

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trials of about a second: long enough for a fault to land in the middle of a sweep."""
    folder = tmp_path_factory.mktemp("data") / "big"
    return write_idx_dataset(folder, n_train=6000, n_test=200, image_shape=(28, 28))


def study_file(tmp_path: Path, data: Path, name: str, **options: object) -> Path:
    defaults: dict[str, object] = {
        "lr": "{ values = [0.03, 0.3, 1.0] }", "reg": "{ values = [0.0, 1e-3] }",
        "batch": "[16]", "side_by_side": 1, "epochs": 6,
    }  # fmt: skip
    path = tmp_path / f"{name}.toml"
    path.write_text(spec_text(name, data, **{**defaults, **options}))
    return path


def sweep(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", *args], cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_complete(storage: str, study: str, n: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if len(stored_trials(storage, study, TrialState.COMPLETE)) >= n:
                return
        except Exception:  # the storage is busy
            pass
        time.sleep(0.2)
    said = process.communicate(timeout=30)[1] if process.poll() is not None else ""
    raise AssertionError(f"{study}: fewer than {n} trials completed; {process.poll()=}\n{said}")


def assert_mlflow_agrees(storage: str, tracking: str, study: str, epochs: int) -> None:
    """Every finished trial has one run, in the state its outcome maps to, none RUNNING, and
    a trained trial's run has its per-epoch metrics."""
    trials = optuna.load_study(study_name=study, storage=storage).trials
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'trial'")
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    by_trial = {int(r.data.tags["optuna.trial"]): r for r in runs}
    for t in trials:
        outcome = outcome_of(t)
        if outcome is None or outcome.label == "duplicate":
            continue
        run = by_trial[t.number]
        assert run.info.status == outcome.run_status, (t.number, outcome, run.info.status)
        if outcome.label == "complete":
            history = client.get_metric_history(run.info.run_id, "val_accuracy")
            assert sorted(m.step for m in history) == list(range(1, epochs + 1))
            assert run.data.metrics["val_accuracy"] == pytest.approx(t.value)


def cells_done_once(storage: str, study: str, n: int) -> None:
    trials = optuna.load_study(study_name=study, storage=storage).trials
    done = Counter(
        (t.params["learning_rate"], t.params["reg"])
        for t in trials
        if t.state == TrialState.COMPLETE
    )
    assert len(done) == n and set(done.values()) == {1}


def test_a_tracking_server_that_goes_away_does_not_stop_the_sweep(
    slow_data: Path, tmp_path: Path
) -> None:
    """Killed mid-sweep and back before the end: the sweep trains on, waits for no retries,
    and at the end MLflow agrees with Optuna (exit 0)."""
    port, backend = free_port(), f"sqlite:///{tmp_path / 'server.db'}"
    artifacts, home = tmp_path / "served", tmp_path / "home"
    artifacts.mkdir()
    path = study_file(tmp_path, slow_data, "away", epochs=60)  # trials of ~5 s
    storage = f"sqlite:///{home / 'optuna.db'}"
    with mlflow_server(backend, artifacts, port) as url:
        run = sweep("run", str(path), "--home", str(home), "--tracking-uri", url)
        wait_for_complete(storage, "away", 1, run)
    down = time.monotonic()  # the server is gone (its whole process group killed)
    wait_for_complete(storage, "away", 2, run)  # training goes on without it
    assert time.monotonic() - down < 60  # no request waits on minutes of retries
    with mlflow_server(backend, artifacts, port) as url:
        assert run.poll() is None, "the sweep ended before the server came back"
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert "Traceback" not in err
        assert "View run" not in out  # MLflow's own line per run, on a server: not ours
        assert_mlflow_agrees(storage, url, "away", epochs=60)
    cells_done_once(storage, "away", 6)


def test_a_tracking_server_still_down_at_the_end_is_one_paragraph_and_sync_repairs_it(
    slow_data: Path, tmp_path: Path
) -> None:
    port, backend = free_port(), f"sqlite:///{tmp_path / 'server.db'}"
    artifacts, home = tmp_path / "served", tmp_path / "home"
    artifacts.mkdir()
    path = study_file(tmp_path, slow_data, "gone", lr="{ values = [0.03, 0.3] }")
    storage = f"sqlite:///{home / 'optuna.db'}"
    with mlflow_server(backend, artifacts, port) as url:
        run = sweep("run", str(path), "--home", str(home), "--tracking-uri", url)
        wait_for_complete(storage, "gone", 1, run)
    started = time.monotonic()
    _out, err = run.communicate(timeout=300)
    assert time.monotonic() - started < 200  # the end waits a bounded time, then says so
    assert run.returncode == 1, err
    assert "are not (all) in MLflow" in err and "sweep sync gone" in err
    assert "Traceback" not in err
    cells_done_once(storage, "gone", 4)  # every trial trained and told all the same
    with mlflow_server(backend, artifacts, port) as url:
        sync = subprocess.run(
            [sys.executable, "-m", "sweep", "sync", "gone", "--home", str(home),
             "--tracking-uri", url],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sync.returncode == 0, sync.stderr
        assert "made" in sync.stdout and "completed now from Optuna" in sync.stdout
        assert_mlflow_agrees(storage, url, "gone", epochs=6)


def test_a_kill_between_the_tell_and_the_runs_write_is_repaired_with_the_weights(
    tmp_path: Path,
) -> None:
    """SIGKILL right after the best trial is told: its run is left RUNNING with no metrics and
    no weights. The next run completes the run from Optuna and trains the best model again
    (deterministic) for the test set and the report."""
    data = write_idx_dataset(tmp_path / "blobs", n_train=400, n_test=150)
    # One group of two: trial 0 (reg 0) is the best; trial 1 (lr 0.3, reg 5) diverges.
    path = study_file(tmp_path, data, "torn", lr="{ values = [0.3] }",
                      reg="{ values = [0.0, 5.0] }", side_by_side=2, epochs=3)  # fmt: skip
    home = tmp_path / "home"
    first = sweep("run", str(path), "--home", str(home), env={"SOFTSWEEP_PAUSE_AT": "telling"})
    wait_for_pause(first, "telling")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    storage, tracking = f"sqlite:///{home / 'optuna.db'}", f"sqlite:///{home / 'mlflow.db'}"
    (torn,) = [t for t in optuna.load_study(study_name="torn", storage=storage).trials
               if t.state == TrialState.COMPLETE]  # fmt: skip
    client = MlflowClient(tracking_uri=tracking)
    before = client.get_run(torn.user_attrs["mlflow_run_id"])
    assert before.info.status == "RUNNING" and not before.data.metrics
    again = sweep("run", str(path), "--home", str(home))
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "test accuracy        1.0000 (best trial only" in out or "test accuracy" in out
    assert "n/a" not in out.split("test accuracy", 1)[1].splitlines()[0]
    assert f"weights of trial #{torn.number} were not in its MLflow run" in err
    assert "to the same validation accuracy" in err
    after = client.get_run(torn.user_attrs["mlflow_run_id"])
    assert after.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(after.info.run_id)] == ["weights.npy"]
    assert_mlflow_agrees(storage, tracking, "torn", epochs=3)


def test_a_postgres_restart_mid_sweep_is_waited_for(slow_data: Path, tmp_path: Path) -> None:
    with postgres(("optuna",)) as pg:
        storage = pg["optuna"]
        path = study_file(tmp_path, slow_data, "pg-restart")
        run = sweep("run", str(path), "--home", str(tmp_path / "h"), "--storage", storage)
        wait_for_complete(storage, "pg-restart", 1, run)
        pg.stop()
        time.sleep(4)  # trials keep training; their tells wait for the database
        pg.start()
        _out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert "Traceback" not in err
        cells_done_once(storage, "pg-restart", 6)
        assert_mlflow_agrees(storage, f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}", "pg-restart", 6)


@pytest.mark.parametrize("step", ["asking", "training"])
def test_a_postgres_away_at_a_step_is_waited_for(
    step: str, slow_data: Path, tmp_path: Path
) -> None:
    """The database stops while the first trial is being asked (the trial is given back
    untrained and retried), or while it trains with a pruner (its epochs go unreported and its
    tell waits). It comes back and the sweep finishes: each cell done once, no traceback."""
    name = f"pg-{step}"
    with postgres(("optuna",)) as pg:
        storage = pg["optuna"]
        path = study_file(tmp_path, slow_data, name, pruner="median")
        pause = {"SOFTSWEEP_PAUSE_AT": step, "SOFTSWEEP_PAUSE_S": "3"}
        run = sweep("run", str(path), "--home", str(tmp_path / "h"), "--storage", storage,
                    env=pause)  # fmt: skip
        wait_for_pause(run, step)
        paused = time.monotonic()
        pg.stop()
        time.sleep(max(0.0, paused + 5 - time.monotonic()))  # it resumes at 3 s: no database
        pg.start()
        _out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert "Traceback" not in err
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert_mlflow_agrees(storage, f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}", name, 6)
    done = Counter((t.params["learning_rate"], t.params["reg"]) for t in trials
                   if (o := outcome_of(t)) is not None and o.done)  # fmt: skip
    assert len(done) == 6 and set(done.values()) == {1}
    first = trials[0]
    if step == "asking":
        assert first.state == TrialState.FAIL
        assert first.user_attrs[REASON_ATTR] == GIVEN_BACK
        assert [t.system_attrs.get("failed_trial") for t in trials].count(0) == 1  # its retry
    else:
        assert first.state == TrialState.COMPLETE
        assert len(first.intermediate_values) < 6  # the epochs trained while it was away


def _mount(kind: str, target: Path, size: str = "") -> bool:
    """A tmpfs (or a read-only bind) at `target`; False when this user cannot mount."""
    if os.geteuid() != 0:
        return False
    target.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)]
        return subprocess.run(cmd, capture_output=True).returncode == 0
    ok = subprocess.run(["mount", "--bind", str(target), str(target)], capture_output=True)
    ro = ["mount", "-o", "remount,bind,ro", str(target)]
    return ok.returncode == 0 and subprocess.run(ro, capture_output=True).returncode == 0


def test_a_full_disk_is_one_paragraph_and_the_study_resumes_once_there_is_room(
    slow_data: Path, tmp_path: Path
) -> None:
    home = tmp_path / "small"
    mounted = _mount("tmpfs", home, "24m")
    if not mounted:  # a failure, not a skip: CI runs as root, and the test must run there
        pytest.fail("this test mounts a small tmpfs: it needs root (CI runs as root)")
    try:
        path = study_file(tmp_path, slow_data, "full")
        storage = f"sqlite:///{home / 'optuna.db'}"
        run = sweep("run", str(path), "--home", str(home))
        wait_for_complete(storage, "full", 1, run)
        filler = home / "filler"  # every byte left
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        _, err = run.communicate(timeout=300)
        assert run.returncode == 1, err
        assert "Traceback" not in err
        assert "disk is full" in err
        filler.unlink()
        again = sweep("run", str(path), "--home", str(home))
        _out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        cells_done_once(storage, "full", 6)
        assert_mlflow_agrees(storage, f"sqlite:///{home / 'mlflow.db'}", "full", epochs=6)
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)


def test_a_read_only_home_can_still_be_read(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "blobs", n_train=400, n_test=150)
    path = study_file(tmp_path, data, "ro", epochs=2)
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "sweep", "run", str(path), "--home", str(home)],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    mounted = _mount("bind-ro", home)
    if not mounted:
        for p in [home, *home.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    try:
        before = sorted(p.name for p in home.iterdir())
        runs = subprocess.run([sys.executable, "-m", "sweep", "runs", "ro", "--home", str(home)],
                              cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        assert runs.returncode == 0, runs.stderr
        assert len(runs.stdout.strip().splitlines()) == 1 + 6  # a header and a row per trial
        report = subprocess.run(
            [sys.executable, "-m", "sweep", "report", "ro", "--home", str(home)],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert report.returncode in (1, 2) and "Traceback" not in report.stderr
        assert "read-only" in report.stderr.lower() or "cannot write" in report.stderr
        assert sorted(p.name for p in home.iterdir()) == before  # nothing was written
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(home)], capture_output=True)
        else:
            for p in [home, *home.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)

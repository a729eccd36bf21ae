"""The trial lifecycle under real signals: a real `sweep run` process, stopped at each step by
SIGINT, SIGTERM or SIGKILL, then resumed. Whatever the moment, the resume reaches the target
with every grid cell trained once, no trial or MLflow run is left RUNNING, and no softsweep
process is left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweep.cli import main
from sweep.signals import Interrupted, Interrupts
from sweep.store.notes import read_notes
from sweep.trial import Outcome, outcome_of
from tests.helpers import (
    run_spec,
    spec_text,
    stored_trials,
    wait_for_pause,
    write_idx_dataset,
)

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("asking", "training", "telling", "finishing", "report")
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "blobs", n_train=400, n_test=150)


def grid_study(tmp_path: Path, data_folder: Path, name: str = "life", **options: object) -> Path:
    """8 cells in groups of 2: an interrupt anywhere leaves work for the resume."""
    defaults: dict[str, object] = {"side_by_side": 2, "reg": "{ values = [0.0, 1e-3] }"}
    text = spec_text(name, data_folder, lr="{ values = [0.03, 0.3] }", **{**defaults, **options})
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def sweep_process(
    *args: str, pause_at: str | None = None, pause_s: float = 60
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOFTSWEEP_PAUSE_AT"}
    if pause_at:
        env["SOFTSWEEP_PAUSE_AT"], env["SOFTSWEEP_PAUSE_S"] = pause_at, str(pause_s)
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def softsweep_processes(marker: str) -> list[int]:
    """Live processes whose command line mentions `marker` (a study file or home)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = next(
                (
                    ln
                    for ln in (entry / "status").read_text().splitlines()
                    if ln.startswith("State")
                ),
                "",
            )
        except OSError:
            continue
        if marker in cmdline and "zombie" not in state:
            found.append(int(entry.name))
    return found


def assert_finished_cleanly(home: Path, study: str, cells: int) -> None:
    trials = optuna.load_study(study_name=study, storage=f"sqlite:///{home / 'optuna.db'}").trials
    complete = Counter(
        (t.params["learning_rate"], t.params["reg"], t.params["batch_size"])
        for t in trials
        if t.state == TrialState.COMPLETE
    )
    assert len(complete) == cells and set(complete.values()) == {1}  # every cell once
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in trials:  # a FAIL is only ever an interruption (run again) or a duplicate
        if t.state == TrialState.FAIL:  # (one Optuna failed by its heartbeat has no attribute)
            assert outcome_of(t) in (Outcome.INTERRUPTED, Outcome.DUPLICATE), t.user_attrs
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], "")
    assert runs and not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    statuses = Counter(r.info.status for r in runs if r.data.tags["softsweep.role"] == "trial")
    assert statuses["FINISHED"] == cells


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_an_interrupt_at_any_step_leaves_a_study_the_next_run_finishes(
    data_folder: Path, tmp_path: Path, signum: int, step: str
) -> None:
    path, home = grid_study(tmp_path, data_folder), tmp_path / "home"
    first = sweep_process("run", str(path), "--home", str(home), pause_at=step)
    wait_for_pause(first, step)
    first.send_signal(signum)
    _, err = first.communicate(timeout=60)  # both pipes reach EOF: nothing holds them
    assert first.returncode == EXIT[signum], err
    if signum != signal.SIGKILL:
        assert "Traceback" not in err
        assert f"Resume with: sweep run {path}" in err
    assert softsweep_processes(str(path)) == []
    # The next run (here in-process: what it does is the same as `sweep run`'s) finishes it;
    # what is checked is the stores, so it draws no report.
    resumed = run_spec(path.read_text(), home, str(path), report=False)
    assert (resumed.n_complete, resumed.n_pruned, resumed.n_failed) == (8, 0, 0)
    assert_finished_cleanly(home, "life", cells=8)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_workers_parent_stopped_takes_its_workers_with_it(
    data_folder: Path, tmp_path: Path, signum: int
) -> None:
    path, home = grid_study(tmp_path, data_folder, epochs=40), tmp_path / "home"
    parent = sweep_process("run", str(path), "--home", str(home), "--workers", "2")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and parent.poll() is None:  # until both workers train
        time.sleep(0.2)
        running = stored_trials(f"sqlite:///{home / 'optuna.db'}", "life", TrialState.RUNNING)
        if len({t.user_attrs.get("worker") for t in running} - {None}) == 2:
            break
    else:
        raise AssertionError(f"the two workers never both trained: {parent.communicate()}")
    parent.send_signal(signum)
    parent.communicate(timeout=60)
    assert parent.returncode == EXIT[signum]
    deadline = time.monotonic() + 30
    while softsweep_processes(str(path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert softsweep_processes(str(path)) == []  # the workers went with their parent
    resumed = sweep_process("run", str(path), "--home", str(home))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert_finished_cleanly(home, "life", cells=8)


def test_a_study_file_changed_under_the_same_name_is_refused(
    data_folder: Path, tmp_path: Path
) -> None:
    path, home = grid_study(tmp_path, data_folder), tmp_path / "home"
    assert CliRunner().invoke(main, ["run", str(path), "--home", str(home)]).exit_code == 0
    text = path.read_text()
    path.write_text(text.replace("epochs = 3", "epochs = 4").replace("seed = 0", "seed = 1"))
    changed = CliRunner().invoke(main, ["run", str(path), "--home", str(home)])
    assert changed.exit_code == 2
    assert "study 'life' already exists" in changed.output
    assert "epochs: 3 -> 4" in changed.output and "seed: 0 -> 1" in changed.output
    assert "new [study] name" in changed.output and "Traceback" not in changed.output
    storage = f"sqlite:///{home / 'optuna.db'}"
    study = optuna.load_study(study_name="life", storage=storage)
    # The stored settings are untouched.
    assert read_notes(study, storage)["identity"]["epochs"] == "3"
    # They are softsweep's own notes: the user attributes `optuna studies` shows stay short.
    assert set(study.user_attrs) <= {"dataset", "test_evaluations", "stopped"}
    # n_trials may change: a smaller target is simply reached already.
    path.write_text(text.replace("n_trials = 100", "n_trials = 5"))
    assert CliRunner().invoke(main, ["run", str(path), "--home", str(home)]).exit_code == 0


def test_a_deadline_says_so_everywhere(data_folder: Path, tmp_path: Path) -> None:
    big = write_idx_dataset(tmp_path / "big", n_train=4000, n_test=100, image_shape=(28, 28))
    path = grid_study(tmp_path, big, name="late", epochs=200, side_by_side=1)
    path.write_text(path.read_text().replace("seed = 0", "seed = 0\ntimeout_s = 1.5"))
    home = tmp_path / "home"
    started = time.monotonic()
    result = CliRunner().invoke(main, ["run", str(path), "--home", str(home)])
    took = time.monotonic() - started
    assert result.exit_code == 124, result.output
    assert "stopped at its deadline (timeout_s = 1.5 s) with 0 of 8 trials" in result.output
    assert re.search(r"\nstopped +at its deadline: 0 of 8 trials\n", result.output)
    # The command that continues it names the same stores.
    assert f"Run `sweep run {path} --home {home.resolve()}` to continue it" in result.output
    # The trial in training stopped after its current epoch (each ~10 ms), not after 200.
    study = optuna.load_study(study_name="late", storage=f"sqlite:///{home / 'optuna.db'}")
    cut = [t for t in study.trials if t.state == TrialState.FAIL]
    assert cut and "stopped at the study's deadline" in cut[0].user_attrs["fail_reason"]
    assert cut[0].user_attrs["outcome"] == "interrupted"
    assert took < 30
    stopped = "stopped at its deadline (timeout_s=1.5) with 0 of 8 trials done"
    assert study.user_attrs["stopped"] == stopped
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("late")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'study'")
    assert parent.data.tags["softsweep.stopped"] == stopped
    page = (home / "reports" / "late" / "index.html").read_text()
    assert stopped in page


def test_a_signal_inside_a_shielded_block_waits_for_its_end() -> None:
    with Interrupts() as interrupts:
        reached_end = False
        with pytest.raises(Interrupted, match="SIGTERM") as stopped:
            with interrupts.shielded():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run by now, and raised nothing here
                reached_end = True
        assert reached_end and stopped.value.exit_code == 143
        os.kill(os.getpid(), signal.SIGINT)  # a second signal is remembered, not raised
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_lost_worker_is_a_warning_when_the_others_finish_the_study(
    data_folder: Path, tmp_path: Path
) -> None:
    path, home = grid_study(tmp_path, data_folder, epochs=40), tmp_path / "home"
    parent = sweep_process("run", str(path), "--home", str(home), "--workers", "2")
    victim = None
    deadline = time.monotonic() + 90
    while victim is None and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.2)
        running = stored_trials(f"sqlite:///{home / 'optuna.db'}", "life", TrialState.RUNNING)
        workers = {t.user_attrs.get("worker") for t in running} - {None}
        if len(workers) == 2:
            victim = int(sorted(workers)[0].rsplit(":", 1)[1])
    assert victim is not None, "the two workers never both trained"
    os.kill(victim, signal.SIGKILL)
    out, err = parent.communicate(timeout=300)
    assert parent.returncode == 0, err
    assert "warning: 1 of 2 workers stopped early (killed by SIGKILL)" in err
    assert "test accuracy" in out  # the study was closed: tested, reported
    assert_finished_cleanly(home, "life", cells=8)


def test_ctrl_c_during_a_read_command_exits_130(data_folder: Path, tmp_path: Path) -> None:
    """Not click's "Aborted!" with exit 1: the shell's convention for a SIGINT."""
    home = tmp_path / "home"
    study = grid_study(tmp_path, data_folder, "redraw")
    assert CliRunner().invoke(main, ["run", str(study), "--home", str(home)]).exit_code == 0
    report = sweep_process("report", "redraw", "--home", str(home), pause_at="report")
    wait_for_pause(report, "report")
    report.send_signal(signal.SIGINT)
    _, err = report.communicate(timeout=60)
    assert report.returncode == 130, err
    assert "interrupted" in err and "Aborted" not in err and "Traceback" not in err


def test_closed_standard_streams_do_not_stop_a_command(data_folder: Path, tmp_path: Path) -> None:
    """`sweep run ... 2>&-` trains and stores as usual; `sweep runs ... >&-` says nothing."""
    home = tmp_path / "home"
    study = grid_study(tmp_path, data_folder, "closed")
    run = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(study), "--home", str(home)],
        cwd=ROOT, capture_output=False, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.close(2), timeout=300,
    )  # fmt: skip
    assert run.returncode == 0 and "trials" in run.stdout
    assert_finished_cleanly(home, "closed", 8)
    runs = subprocess.run(
        [sys.executable, "-m", "sweep", "runs", "closed", "--home", str(home)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1), timeout=120,
    )  # fmt: skip
    assert runs.returncode == 0 and runs.stderr == ""


def test_delete_refuses_a_study_a_sweep_is_on_and_force_stops_it_first(
    data_folder: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    study = grid_study(tmp_path, data_folder, "busy")
    sweep = sweep_process("run", str(study), "--home", str(home), pause_at="training")
    try:
        wait_for_pause(sweep, "training")
        refused = CliRunner().invoke(main, ["delete", "busy", "--home", str(home), "--yes"])
        assert refused.exit_code == 1
        assert f"trials RUNNING in {os.uname().nodename}:{sweep.pid}" in refused.output
        assert f"`kill {sweep.pid}`" in refused.output and "--force" in refused.output
        assert sweep.poll() is None  # untouched, and so is the study
        forced = CliRunner().invoke(
            main, ["delete", "busy", "--home", str(home), "--yes", "--force"]
        )
        assert forced.exit_code == 0, forced.output
        assert sweep.wait(timeout=60) == 143  # stopped by SIGTERM, its runs ended
    finally:
        if sweep.poll() is None:
            sweep.kill()
    storage = f"sqlite:///{home / 'optuna.db'}"
    assert "busy" not in [s.study_name for s in optuna.get_all_study_summaries(storage)]
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    trashed = [e for e in client.search_experiments(view_type=3) if e.name.startswith("busy")]
    runs = client.search_runs([trashed[0].experiment_id], run_view_type=3)
    assert runs and "RUNNING" not in {r.info.status for r in runs}


def test_a_sweep_whose_study_is_deleted_under_it_stops_with_one_paragraph(
    data_folder: Path, tmp_path: Path
) -> None:
    """Deleted from elsewhere (another machine's `sweep delete --force`, a script)."""
    home = tmp_path / "home"
    study = grid_study(tmp_path, data_folder, "vanished")
    sweep = sweep_process("run", str(study), "--home", str(home), pause_at="training", pause_s=3)
    wait_for_pause(sweep, "training")
    optuna.delete_study(study_name="vanished", storage=f"sqlite:///{home / 'optuna.db'}")
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 1, err
    assert "The study 'vanished' is gone" in err and "Traceback" not in err

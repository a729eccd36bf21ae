"""No store password in any output: the terminal, the report's files, MLflow's params, tags and
artifacts, error messages, and the command lines of the workers a sweep starts."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

import sweep
from tests.helpers import spec_text, write_idx_dataset
from tests.servers import postgres

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-Pa55"


def with_password(url: str) -> str:
    """The test server trusts every login: any password works, and must never be shown."""
    return url.replace("postgresql+psycopg2://sweep@", f"postgresql+psycopg2://sweep:{SECRET}@")


def command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                pass
    return lines


def test_the_database_password_appears_nowhere(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "blobs", n_train=1000, n_test=100, image_shape=(28, 28))
    path = tmp_path / "secret.toml"
    path.write_text(spec_text("secret", data, side_by_side=1, epochs=2))
    home = tmp_path / "home"
    with postgres(("optuna",)) as pg:
        storage = with_password(pg["optuna"])
        seen: list[str] = []
        watching = True

        def watch() -> None:  # the process list, while the workers run
            while watching:
                seen.extend(line for line in command_lines() if "sweep" in line)
                time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "sweep", "run", str(path), "--home", str(home),
                 "--storage", storage, "--workers", "2"],
                cwd=ROOT, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            watching = False
            watcher.join()
        assert done.returncode == 0, done.stderr
        assert "sweep:***@127.0.0.1" in done.stdout  # the summary names the storage, masked
        outputs = {"stdout": done.stdout, "stderr": done.stderr}
        # (the parent's own command line is the user's: they passed --storage in it)
        workers = [line for line in seen if "\0worker\0" in line]
        assert workers  # the watch saw them
        outputs["workers' command lines"] = "\n".join(workers)
        for file in (home / "reports" / "secret").iterdir():
            if file.suffix in (".html", ".json"):
                outputs[file.name] = file.read_text()
        client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("secret")
        for run in client.search_runs([experiment.experiment_id], ""):
            outputs[f"run {run.info.run_name}"] = repr(run.data.params) + repr(run.data.tags)
            for artifact in client.list_artifacts(run.info.run_id, "reports") + [
                a for a in client.list_artifacts(run.info.run_id) if a.path.endswith(".toml")
            ]:
                if artifact.path.endswith((".html", ".json", ".toml")):
                    local = client.download_artifacts(run.info.run_id, artifact.path, tmp_path)
                    outputs[artifact.path] = Path(local).read_text()
        # What a notebook shows of a run's result (the study is done: a resume that only reads).
        result = sweep.run(path, home=home, storage=storage, progress=False)
        outputs["sweep.run()"] = repr(result) + repr(result.outcome) + result._repr_html_()
        # An error that quotes the storage: the same mask.
        bad = storage.replace(f":{pg['optuna'].split(':')[-1].split('/')[0]}/", ":9/")
        failed = subprocess.run(
            [sys.executable, "-m", "sweep", "run", str(path), "--home", str(tmp_path / "h2"),
             "--storage", bad],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert failed.returncode == 1 and "Could not open the Optuna storage" in failed.stderr
        outputs["error"] = failed.stdout + failed.stderr
    leaks = [where for where, text in outputs.items() if SECRET in text]
    assert leaks == [], f"the password shows in: {leaks}"
    assert len(outputs) > 9  # the terminal, the report files, every run, their artifacts

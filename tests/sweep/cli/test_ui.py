"""The processes `sweep` starts stop with it, whatever stops it: `sweep ui`'s MLflow server
after a closed terminal (SIGHUP) or a `kill -9` of `sweep ui` itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import run_spec, spec_text, write_idx_dataset
from tests.servers import free_port

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = write_idx_dataset(tmp_path_factory.mktemp("data") / "blobs", n_train=200, n_test=50)
    home = tmp_path_factory.mktemp("home")
    run_spec(spec_text("ui", data, reg="{ values = [0.0] }", batch="[16]"), home, report=False)
    return home


def serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    state = (entry / "stat").read_text().split(") ", 1)[1][0]
                    if state != "Z":
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL])
def test_sweep_ui_takes_its_mlflow_server_with_it(home: Path, signum: int) -> None:
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "sweep", "ui", "--home", str(home), "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert ui.stdout is not None
    said = [ui.stdout.readline(), ui.stdout.readline(), ui.stdout.readline()]
    # A deep link to each study's trials, best first, in MLflow's model-training view (not its
    # GenAI one); the browser test checks where it lands.
    link = f"  ui: http://127.0.0.1:{port}/#/experiments/1/runs?workflowType=machine_learning"
    assert said[1] == link + "&viewStateShareKey=softsweep-trials\n", said
    assert said[2] == f"server log: {home / 'mlflow-ui.log'}\n"  # MLflow's output goes there
    deadline = time.monotonic() + 90
    while not serving(port):
        assert time.monotonic() < deadline and ui.poll() is None, "sweep ui did not start"
        time.sleep(0.5)
    ui.send_signal(signum)
    _, err = ui.communicate(timeout=30)
    if signum == signal.SIGHUP:
        assert err == ""  # nothing of MLflow's under the links
        assert "Uvicorn running on" in (home / "mlflow-ui.log").read_text()
    deadline = time.monotonic() + 20
    while (serving(port) or processes_with(f"--port\0{port}")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not serving(port)
    assert processes_with(f"--port\0{port}") == []  # the server and its workers are gone

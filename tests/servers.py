"""Real servers for the many-workers tests and bench/workers.py: a PostgreSQL cluster made with
initdb/pg_ctl in a temporary folder, and an `mlflow server` subprocess on 127.0.0.1.

Debian's `postgresql` package provides the binaries (.ci/run installs it). PostgreSQL refuses to
run as root, so as root the cluster belongs to the `postgres` user (runuser).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_health(
    url: str, process: subprocess.Popen, what: str, log: Path, timeout_s: float = 90
) -> None:
    """Return once `url`/health answers 200; raise with the end of `log` if `process` exits
    first, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {process.returncode}: "
                + log.read_text(errors="replace")[-3000:]
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer /health within {timeout_s:g} s")
        time.sleep(0.5)


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).parent
    raise RuntimeError(
        "PostgreSQL's server binaries (pg_ctl, initdb) are not installed. On Debian: "
        "apt-get install postgresql (.ci/run does this)."
    )


class Postgres(dict):
    """{database: SQLAlchemy URL}; `stop()` / `start()` of the server (same port, same data) for
    the store-fault tests, and `hang()` / `wake()`: every process of the cluster SIGSTOPped
    (connections are still accepted by the kernel, nothing answers), then SIGCONTed."""

    def __init__(self, urls: dict[str, str], stop, start, data: Path) -> None:  # type: ignore[no-untyped-def]
        super().__init__(urls)
        self.stop, self.start, self._data = stop, start, data

    def _processes(self) -> list[int]:
        postmaster = int((self._data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def hang(self) -> None:
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def wake(self) -> None:
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def postgres(databases: tuple[str, ...] = ("optuna", "mlflow")) -> Iterator[Postgres]:
    """Start a throwaway PostgreSQL on a free port; yields {database: SQLAlchemy URL}."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="softsweep-pg-", dir="/tmp"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "sweep", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"

    def start() -> None:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
            "-w", "start")  # fmt: skip

    def stop() -> None:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")

    start()
    try:
        for name in databases:
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "sweep", name)
        urls = {name: f"postgresql+psycopg2://sweep@127.0.0.1:{port}/{name}" for name in databases}
        yield Postgres(urls, stop, start, data)
    finally:
        with contextlib.suppress(Exception):
            Postgres({}, stop, start, data).wake()  # a hung cluster cannot stop
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, port: int | None = None) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 (on `port`, else a free one) with served artifacts; yields
    its URL once /health is OK, and kills it (its whole process group) at the end."""
    port = port or free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(artifacts.parent / f"mlflow-server-{port}.log", "wb")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend_uri,
            "--artifacts-destination", str(artifacts),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server, "mlflow server", Path(log.name))
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@contextlib.contextmanager
def sweep_ui(home: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`sweep ui --home HOME` on a free port; yields its URL and the process once /health
    answers (the lines it printed, the UI's and each study's link, are unread on its stdout),
    and stops it (SIGTERM: it stops its MLflow server) at the end."""
    port = free_port()
    log = home.parent / f"sweep-ui-{port}.log"
    with open(log, "wb") as errors:
        ui = subprocess.Popen(
            [sys.executable, "-m", "sweep", "ui", "--home", str(home), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, ui, "sweep ui", log, timeout_s=120)
            yield url, ui
        finally:
            ui.terminate()
            try:
                ui.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ui.kill()
                ui.wait()

"""`sweep ui`: MLflow's UI on the home's embedded store, bound to 127.0.0.1, as a process tree that
goes down with `sweep ui` however it stops; and the deep link to a study's runs in it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from ..store.home import Home
from ..workers import PARENT_ENV
from .options import EXIT_USAGE, HOME, fail, friendly_errors

__all__ = ["runs_link", "serve_ui", "ui"]

# `sweep ui`'s watchdog: told by the kernel when `sweep ui` dies (even by SIGKILL), it takes the
# MLflow server's process group down (MLflow runs the server as its own child: a parent-death
# signal on the process `sweep ui` starts would not reach it).
_WATCHDOG = """
import os, signal, sys, time
from sweep.workers import die_with_parent
group = int(sys.argv[1])
def stop(*_):
    try:
        os.killpg(group, signal.SIGTERM)
    finally:
        os._exit(0)
signal.signal(signal.SIGTERM, stop)
die_with_parent()
while True:
    time.sleep(3600)
"""


@click.command(short_help="Open the MLflow UI on the home's store.")
@HOME
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=5000,
    show_default=True,
    help="The port on 127.0.0.1 (1 to 65535).",
)
@friendly_errors
def ui(home: Path | None, port: int) -> None:
    """Open the MLflow UI on the home folder's store, bound to 127.0.0.1."""
    where = Home.resolve(home, create=False)
    if not (where.folder / "mlflow.db").is_file():
        raise FileNotFoundError(
            f"No MLflow store in {where.folder} (mlflow.db is missing). Run `sweep run "
            "STUDY.toml` first, or pass the --home that the sweep used."
        )
    import socket

    from ..track.store import study_experiments

    with socket.socket() as probe:  # the server would fail later, behind its own logs
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            fail(
                f"port {port} on 127.0.0.1 is not free ({exc.strerror}): another program (an "
                f"MLflow UI started before?) uses it. Pass another one, e.g. --port {port + 1}, "
                "or stop that program.",
                EXIT_USAGE,
            )

    base = f"http://127.0.0.1:{port}"
    click.echo(f"MLflow UI: {base}  (Ctrl-C to stop)")
    for name, (experiment_id, view) in sorted(study_experiments(where.tracking_uri).items()):
        click.echo(f"  {name}: {runs_link(base, experiment_id, view)}")
    log = _log_file(where.folder)
    click.echo(f"server log: {log}")
    sys.stdout.flush()  # the links now, even into a pipe, not when the server stops
    code = serve_ui(where.tracking_uri, port, log)
    if code not in (0, -signal.SIGTERM):
        fail(f"the MLflow UI stopped (exit {code}); the end of its log {log}:\n{_tail(log)}", 1)
    sys.exit(0)


def _log_file(folder: Path) -> Path:
    """Where the server's own output goes (its warnings and request lines would bury the
    links): the home, or the temporary folder if the home cannot be written."""
    import tempfile

    for place in (folder, Path(tempfile.gettempdir())):
        path = place / "mlflow-ui.log"
        try:
            with open(path, "ab"):
                return path
        except OSError:
            continue
    return Path(os.devnull)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(unreadable)"


def serve_ui(tracking_uri: str, port: int, log: Path) -> int:
    """`mlflow ui` on the store, bound to 127.0.0.1, until it exits or this process is told to
    stop (Ctrl-C, SIGTERM, SIGHUP: a closed terminal), its output appended to `log`. MLflow
    starts a tree of processes: it gets its own process group, and the group goes down with
    this process."""
    command = [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    # The UI needs none of the server's job machinery (several extra processes, ~1-2 GiB).
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    with open(log, "ab") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    watchdog = None
    if sys.platform.startswith("linux"):
        watched = {**os.environ, PARENT_ENV: str(os.getpid())}
        watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(server.pid)], env=watched)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        return server.wait()
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)


def runs_link(base: str, experiment_id: str, view: bool = True) -> str:
    """A study's trial runs in the MLflow UI, best first, with the result and the params as
    columns (the experiment's shared view `VIEW_KEY`; an experiment from an older softsweep
    has none: the filter and the order then go in the link). MLflow 3.17's UI opens in its
    GenAI view unless the link asks for model training."""
    from urllib.parse import urlencode

    from ..track.experiment import VIEW_KEY

    query = {"workflowType": "machine_learning"}
    if view:
        query["viewStateShareKey"] = VIEW_KEY
    else:
        query["searchFilter"] = "tags.`softsweep.role` = 'trial'"
        query["orderByKey"] = "metrics.`val_accuracy`"
        query["orderByAsc"] = "false"
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(query)}"

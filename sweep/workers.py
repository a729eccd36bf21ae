"""Local worker processes: N `sweep worker`s for `sweep run --workers N`, which die with their
parent.

Every worker stops with its parent, whatever stops the parent: on Ctrl-C, SIGTERM or SIGHUP the
parent sends its workers SIGTERM and waits for them to tell their trials (they exit 143); if
the parent is killed outright, Linux's parent-death signal (`die_with_parent`, set by the child
itself) sends each worker SIGTERM. A worker's stderr goes to a file of its own (never a pipe
nobody reads), shown when the worker fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO

import optuna

from .spec import StudySpec
from .store.home import Home
from .store.study import progress

__all__ = ["PARENT_ENV", "die_with_parent", "run_workers"]

PARENT_ENV = "SOFTSWEEP_PARENT_PID"
STOP_WAIT_S = 30.0  # how long a stopping parent waits for its workers before SIGKILL


def die_with_parent() -> None:
    """In a worker started by `run_workers`: receive SIGTERM when the parent dies (Linux's
    PR_SET_PDEATHSIG), and exit now if it is already gone. Elsewhere a no-op."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):  # it died before we asked to be told
        os.kill(os.getpid(), signal.SIGTERM)


def run_workers(
    spec: StudySpec,
    home: Home,
    n: int,
    heartbeat_s: int,
    study: optuna.Study,
    on_progress: Callable[[int, float | None, str, int], None] | None,
) -> list[str]:
    """Start `n` workers on the study's stores and wait for them, showing progress. A worker
    that dies is a warning (returned) when the others take back its trials and reach the
    study's target; when they do not, this raises with what the first failed worker said."""
    if not spec.source or not os.path.isfile(spec.source):
        raise ValueError("--workers needs the study's file: run it as `sweep run FILE.toml`.")
    env = dict(os.environ)
    env[PARENT_ENV] = str(os.getpid())
    # The store URLs go by the environment: a password in argv is readable by every user (ps).
    env["SOFTSWEEP_STORAGE"], env["SOFTSWEEP_TRACKING_URI"] = home.storage, home.tracking_uri
    threads = str(max(1, (os.cpu_count() or 1) // n))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)  # N processes share the cores: no oversubscription
    command = [
        sys.executable, "-m", "sweep", "worker", spec.source, "--home", str(home.folder),
        "--heartbeat", str(heartbeat_s), "--finish", "never", "--quiet",
        "--n-trials", str(spec.n_trials),  # the file's, or `sweep run --n-trials`
    ]  # fmt: skip
    if spec.timeout_s is not None:
        command += ["--timeout", str(spec.timeout_s)]
    logs: list[IO[bytes]] = []
    children: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            logs.append(tempfile.TemporaryFile())
            children.append(
                subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=logs[-1])
            )
        while any(child.poll() is None for child in children):
            time.sleep(0.5)
            if on_progress is not None:
                now = progress(study, spec.grid_size is not None)
                on_progress(now.done, now.best_value, "", 0)
    finally:
        _stop(children)
        failed = [(c, log) for c, log in zip(children, logs, strict=False) if c.returncode]
        said = ""
        if failed:
            failed[0][1].seek(0)
            said = failed[0][1].read().decode(errors="replace")[-2000:].strip()
        for log in logs:
            log.close()
    codes = ", ".join(_how(c.returncode) for c, _ in failed)
    if progress(study, spec.grid_size is not None).done >= spec.target:
        return [
            f"{len(failed)} of {n} workers stopped early ({codes}); the others took back their "
            "trials and the study reached its target."
        ] if failed else []  # fmt: skip
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {n} workers failed ({codes}) and the study did not reach its "
            f"target. The first one said: {said or '(nothing)'}"
        )
    raise RuntimeError(f"The workers stopped before study {spec.name!r} reached its target.")


def _how(code: int | None) -> str:
    """A child's end, in words: 'exit code 1', 'killed by SIGKILL'."""
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to the workers still running, a bounded wait, then SIGKILL."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

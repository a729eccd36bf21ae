"""The study's MLflow calls in one background thread: the thread owns the store.

The sweep hands the tracker the study's run, then each trial's run when the trial starts
(created, with its params, while the trial trains), then everything after the training (the
weights artifact, one `log_batch` of every per-epoch and final metric, the status). On the
embedded SQLite store that is ~20 ms of Python per trial, done while the next group trains; the
sweep waits only for the answers it needs: a run's id before its trial is told (the id goes on
the Optuna trial from the sweep's own thread: this thread never touches Optuna), and the last
writes at `flush()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .lifecycle import Outcome
from .sqlitestore import check_sqlite_file
from .tracking import MlflowStore, TrialRecord, check_server

__all__ = ["Tracker"]


class Tracker:
    """A study's MLflow calls, run in order in one background thread that owns the store.

    With `wait=False` the constructor returns at once and the thread imports MLflow and opens
    the store (~2 s of Python) while the caller loads data; the first call that needs an
    answer waits for it. An HTTP server is probed at once either way, and a bad SQLite file is
    refused at once. Writes that fail are collected in `errors` (tracking never loses a sweep).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        *,
        artifact_root: Path | None = None,
        fixed_params: Mapping[str, str] | None = None,
        create: bool = True,
        wait: bool = True,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.parent_id: str | None = None
        self.errors: list[str] = []
        self.seconds = 0.0  # time the caller waited on tracking
        self.background_seconds = 0.0  # time the thread spent on MLflow calls
        if tracking_uri.startswith(("http://", "https://")):
            check_server(tracking_uri)  # an unreachable server fails now, before any training
        check_sqlite_file(tracking_uri, "MLflow tracking store", "--tracking-uri")
        self._store: MlflowStore | None = None  # made and used only in the thread
        self._store_error: BaseException | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
        self._connected = self._pool.submit(
            self._connect, tracking_uri, experiment, artifact_root, create, fixed_params or {}
        )
        self._study_started: Future[str] | None = None
        self._pending: list[Future[Any]] = []  # writes whose outcome `flush` collects
        if wait:
            self.wait_ready()

    def _connect(self, *args: Any) -> None:
        try:
            self._store = MlflowStore(*args)
        except BaseException as exc:
            self._store_error = exc
            raise

    def _on_store(self, method: Callable[..., Any], *args: Any) -> Any:
        if self._store is None:  # connecting failed: every later call says why
            raise self._store_error or RuntimeError("the MLflow store is not connected")
        return method(self._store, *args)

    def _call(self, method: Callable[..., Any], *args: Any) -> Future[Any]:
        """`MlflowStore.method(store, *args)` in the thread, after what came before."""
        return self._pool.submit(self._on_store, method, *args)

    def _wait(self, future: Future[Any], timeout: float | None = None) -> Any:
        t0 = time.perf_counter()
        try:
            return future.result(timeout)
        finally:
            self.seconds += time.perf_counter() - t0

    def _ask(self, method: Callable[..., Any], *args: Any) -> Any:
        return self._wait(self._call(method, *args))

    def _problem(self, problem: str | None) -> None:
        if problem:
            self.errors.append(problem)

    def wait_ready(self) -> None:
        """Wait for the store (raises what connecting to it raised)."""
        self._wait(self._connected)

    def set_fixed_params(self, params: Mapping[str, str]) -> None:
        """Params every trial run gets besides its own (for the runs created from now on)."""
        self._call(MlflowStore.set_fixed, dict(params))

    # -- the study's run ---------------------------------------------------------------------
    def start_study(self, study_name: str, params: Mapping[str, str], spec_text: str) -> None:
        """Create the study's parent run, or reopen it when the study resumes."""
        self._study_started = self._call(
            MlflowStore.start_study, study_name, dict(params), spec_text
        )

    def study_run(self) -> str | None:
        """The study's run id, once `start_study` is done (raises what it raised)."""
        if self._study_started is not None:
            self.parent_id = self._wait(self._study_started)
        return self.parent_id

    def find_study_run(self, study_name: str) -> str | None:
        """The run id of the study's parent run, if it has one."""
        self.parent_id = self._ask(MlflowStore.find_study_run, study_name)
        return self.parent_id

    def log_reports(self, files: Sequence[Path]) -> None:
        """The report's files as artifacts of the study's run, under `reports/`."""
        parent = self.study_run()
        if parent is None:
            raise RuntimeError("log_reports needs the study's run (start_study or find_study_run)")
        problem = self._ask(MlflowStore.log_reports, parent, list(files))
        self._problem(f"report artifacts: {problem}" if problem else None)

    def finish_study(
        self, metrics: Mapping[str, float], tags: Mapping[str, str], status: str = "FINISHED"
    ) -> None:
        self.flush()
        parent = self.study_run()
        if parent is not None:
            self._ask(MlflowStore.finish_study, parent, dict(metrics), dict(tags), status)

    def end_study(self, status: str, timeout: float | None = None) -> None:
        """Best effort, while the sweep stops: the study's run ends with `status`."""
        try:
            if self._study_started is not None:
                self.parent_id = self._wait(self._study_started, timeout)
            if self.parent_id is not None:
                self._wait(self._call(MlflowStore.end_study, self.parent_id, status), timeout)
        except Exception as exc:
            self.errors.append(f"study run: {type(exc).__name__}: {exc}")

    # -- trial runs ----------------------------------------------------------------------------
    def start_trial(
        self, study_name: str, number: int, params: Mapping[str, Any] | None = None
    ) -> Future[str]:
        """Create a RUNNING child run for trial `number` in the thread (its start time is now),
        with `params` and the fixed params; the future gives its id."""
        started_ms = int(time.time() * 1000)
        params = dict(params) if params is not None else None
        return self._call(MlflowStore.start_trial, study_name, number, started_ms, params)

    def run_ids(self, started: Sequence[Future[str]], timeout: float | None = None) -> list[str]:
        """Wait for runs that `start_trial` is creating (raises what creating one raised)."""
        return [self._wait(job, timeout) for job in started]

    def finish_trial(self, run_id: str, record: TrialRecord) -> None:
        """Log per-epoch metrics, final metrics, the outcome, the weights and the status."""
        self._pending.append(self._call(MlflowStore.finish_trial, run_id, record))

    def fail_run(self, run_id: str, reason: str = "", timeout: float | None = None) -> None:
        """Close a run as FAILED (its trial was interrupted)."""
        self._problem(self._wait(self._call(MlflowStore.fail_run, run_id, reason), timeout))

    def fail_trial_runs(
        self, study_name: str, number: int, run_id: str | None, reason: str = ""
    ) -> None:
        """Close the run of a trial whose process died as FAILED (found by its tags when the
        id never reached the trial)."""
        self._problem(self._ask(MlflowStore.fail_trial_runs, study_name, number, run_id, reason))

    def close_stale_runs(
        self, study_name: str, finished: Mapping[int, tuple[Outcome, str]]
    ) -> None:
        """In the thread: runs left RUNNING by a process that died after telling their trials
        get their trial's status (see `MlflowStore.close_stale_runs`)."""
        self._pending.append(self._call(MlflowStore.close_stale_runs, study_name, dict(finished)))

    def flush(self) -> None:
        """Wait for every write handed to the thread; what could not be written is in
        `errors`."""
        t0 = time.perf_counter()
        try:
            for write in self._pending:
                if (failed := write.exception()) is not None:
                    self.errors.append(f"{type(failed).__name__}: {failed}")
                else:
                    self._problem(write.result())
            self._pending.clear()
            if self._store is not None:
                self.background_seconds = self._store.busy_s
        finally:
            self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)

    def abandon(self, timeout: float = 30.0) -> None:
        """Stop without doing what is queued (the sweep is failing or interrupted). A store
        still being opened is waited for, up to `timeout`: its migrations must not go on
        beside another store's in this process (alembic's context is process-wide)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            self._connected.exception(timeout)
        except Exception:  # cancelled, or slower than the bound: nothing more to do
            pass

    # -- reading back --------------------------------------------------------------------------
    def metric_history(self, run_id: str, key: str) -> list[float]:
        """The values of one metric, ordered by step (the epoch)."""
        return self._ask(MlflowStore.metric_history, run_id, key)  # type: ignore[no-any-return]

    def download_weights(self, run_id: str) -> np.ndarray | None:
        return self._ask(MlflowStore.download_weights, run_id)  # type: ignore[no-any-return]

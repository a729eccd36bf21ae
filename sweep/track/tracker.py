"""The study's MLflow calls in one background thread: the thread owns the store.

The sweep hands the tracker the study's run, then each trial's run when the trial starts
(created, with its params, while the trial trains), then everything after the training (the
weights artifact, one `log_batch` of every per-epoch and final metric, the status). On the
embedded SQLite store that is ~20 ms of Python per trial, done while the next group trains; the
sweep waits only for the answers it needs: a run's id before its trial is told (at most
`RUN_ID_WAIT_S`: the id goes on the Optuna trial from the sweep's own thread, and this thread
never touches Optuna), and the last writes at `flush()`.

MLflow is a view of what Optuna holds, so tracking never stops a sweep. A store that fails a
call (a server gone, a full disk) is left alone for `RETRY_S`: calls meanwhile fail at once
instead of each waiting on retries, training goes on, and the trials whose runs could not be
written are counted (`untracked`). `sync` writes them from Optuna when the store is back: at the
end of the sweep, at the start of the next one, or with `sweep sync`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from ..store.sqlitestore import check_sqlite_file
from ..trial import TrialRecord
from .model import check_environment
from .probes import StoreUnavailableError, check_database, check_server, describe
from .store import MlflowStore, SyncResult

__all__ = ["LIVE_INTERVAL_S", "RETRY_S", "Tracker"]

RETRY_S = 10.0  # after a failed call, the store is left alone this long
RUN_ID_WAIT_S = 30.0  # the longest a tell waits for its run's id (the first: MLflow's import)
# Live curves: a group's epochs go to MLflow at most this often, one job in flight at a time. A
# short group (the 25-grid's ~2.5 s) then writes its epochs once, at the tell; a long one shows its
# curves move every few seconds. (A job costs ~10 ms per run on SQLite: bench/live.py.)
LIVE_INTERVAL_S = 2.0
# MLflow's answers that refuse one request (not the store being unreachable).
REFUSALS = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS"}


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method`, returning what it raised instead: a model that cannot be registered is a
    warning, and no reason to leave the store alone."""

    def guarded(store: MlflowStore, *args: Any) -> Any:
        try:
            return method(store, *args)
        except Exception as exc:
            return exc

    return guarded


class Tracker:
    """A study's MLflow calls, run in order in one background thread that owns the store.

    With `wait=False` the constructor returns at once and the thread imports MLflow and opens
    the store (~2 s of Python) while the caller loads data; the first call that needs an
    answer waits for it. An HTTP server is probed at once either way, and a bad SQLite file is
    refused at once.

    Between the two threads: the caller hands work over only through the pool (`_call`) and
    reads answers only through futures. Four fields are written by the tracker's thread and
    read by the caller, each a single assignment or set operation (atomic under the GIL), read
    as hints or after `flush()`: `down` (why the store is left alone), `untracked` (trials whose
    runs could not be written), `errors` and `background_seconds`. Everything else belongs to
    one thread: `_store` and `_down_until` to the tracker's, the rest to the caller's.
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
        live_interval_s: float = LIVE_INTERVAL_S,
        repair_lock: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._repair_lock = repair_lock  # held by repairs (`sync`, `start_study`): one at a time
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.parent_id: str | None = None
        self.errors: list[str] = []  # what went wrong, for the summary's warnings
        self.untracked: set[int] = set()  # trials whose run could not be written (yet)
        self.down = ""  # why the store is being left alone, while it is
        self.seconds = 0.0  # time the caller waited on tracking
        self.background_seconds = 0.0  # time the thread spent on MLflow calls
        if tracking_uri.startswith(("http://", "https://")):
            check_server(tracking_uri)  # an unreachable server fails now, before any training
        elif tracking_uri.startswith(("postgresql", "mysql", "mssql")):
            check_database(tracking_uri)  # and so does a database that refuses the login
        check_sqlite_file(tracking_uri, "MLflow tracking store", "--tracking-uri")
        self._store: MlflowStore | None = None  # made and used only in the thread
        self._store_error: BaseException | None = None
        self._down_until = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
        self._connected = self._pool.submit(
            self._connect, tracking_uri, experiment, artifact_root, create, fixed_params or {}
        )
        self._study_started: Future[str] | None = None
        self._pending: list[Future[Any]] = []  # writes whose outcome `flush` collects
        self._model: Future[Any] | None = None  # `log_best_model`, waited for by finish_study
        # Live epochs not handed to the thread yet, the job writing the last ones, and when the
        # group's last job was handed over (its first epoch, for a new group).
        self.live_interval_s = live_interval_s
        self._live: list[tuple[Future[str] | str, int, dict[str, float], int]] = []
        self._live_job: Future[Any] | None = None
        self._live_sent = 0.0
        if wait:
            self.wait_ready()

    # -- the thread's side ---------------------------------------------------------------------
    def _connect(self, *args: Any) -> None:
        try:
            self._store = MlflowStore(*args)
        except BaseException as exc:
            self._store_error = exc
            raise

    def _on_store(self, method: Callable[..., Any], *args: Any, force: bool = False) -> Any:
        """`method(store, *args)`, in the thread; a failure that is not a refusal of this one
        request leaves the store alone for RETRY_S (unless `force`)."""
        if self._store is None:  # connecting failed: every later call says why
            raise self._store_error or RuntimeError("the MLflow store is not connected")
        if time.monotonic() < self._down_until and not force:
            raise StoreUnavailableError(self.down)
        t0 = time.perf_counter()
        try:
            result = method(self._store, *args)
        except Exception as exc:
            if getattr(exc, "error_code", "") not in REFUSALS:
                self._down_until = time.monotonic() + RETRY_S
                self.down = describe(exc)
            raise
        finally:
            self.background_seconds += time.perf_counter() - t0
        self.down = ""
        return result

    def _finish(self, run: Future[str] | str, record: TrialRecord) -> None:
        """In the thread: finish a trial's run (created now if creating it failed)."""
        try:
            if isinstance(run, Future):
                # Created before this job (the thread is serial): done, one way or the other.
                run = run.result() if run.exception() is None else ""
            if not run:
                started = int(time.time() * 1000)
                run = self._on_store(
                    MlflowStore.start_trial, self.experiment, record.number, started, record.params
                )
            self._on_store(MlflowStore.finish_trial, run, record)
            self.untracked.discard(record.number)
        except Exception:
            self.untracked.add(record.number)
            raise

    # -- the caller's side ---------------------------------------------------------------------
    def _repair(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """`method` under the repair lock: two processes repairing one study at once (two
        `sweep sync`, two workers starting) would each make the runs that are missing."""
        lock = self._repair_lock
        if lock is None:
            return method

        def locked(store: MlflowStore, *args: Any) -> Any:
            with lock():
                return method(store, *args)

        return locked

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

    def _try(
        self, what: str, method: Callable[..., Any], *args: Any, timeout: float | None = None
    ) -> Any:
        """`_ask`, but a failure is noted in `errors` and gives None."""
        try:
            return self._wait(self._call(method, *args), timeout)
        except Exception as exc:
            self.errors.append(f"{what}: {describe(exc)}")
            return None

    def wait_ready(self) -> None:
        """Wait for the store (raises what connecting to it raised)."""
        self._wait(self._connected)

    def set_fixed_params(
        self, params: Mapping[str, str], data: Mapping[str, Any] | None = None
    ) -> None:
        """Params every trial run gets besides its own, and the data behind every run
        (`inputs.describe_data`), for the runs created from now on."""
        self._call(MlflowStore.set_fixed, dict(params), data)

    # -- the study's run ---------------------------------------------------------------------
    def start_study(self, study_name: str, params: Mapping[str, str], spec_text: str) -> None:
        """Create the study's parent run, or reopen it when the study resumes."""
        self._study_started = self._call(
            self._repair(MlflowStore.start_study), study_name, dict(params), spec_text
        )

    def study_run(self, timeout: float | None = None) -> str | None:
        """The study's run id, once `start_study` is done (raises what it raised)."""
        if self._study_started is not None:
            self.parent_id = self._wait(self._study_started, timeout)
        return self.parent_id

    def experiment_id(self) -> str | None:
        """The study's experiment id (None if the store did not answer). Found when the store
        connected, so it is read here, not asked in the thread: the report would wait behind
        the writes queued there (the best model's, 0.4 s of the main job's closing)."""
        try:
            self._wait(self._connected)
        except Exception as exc:
            self.errors.append(f"experiment: {describe(exc)}")
            return None
        return self._store.experiment_id if self._store is not None else None

    def find_study_run(self, study_name: str) -> str | None:
        """The run id of the study's parent run, if it has one."""
        self.parent_id = self._ask(MlflowStore.find_study_run, study_name)
        return self.parent_id

    def _parent(self) -> str | None:
        try:
            return self.study_run()
        except Exception as exc:
            self.errors.append(f"study run: {describe(exc)}")
            return None

    def log_reports(self, files: Sequence[Path]) -> None:
        """The report's files as artifacts of the study's run, under `reports/`."""
        parent = self._parent()
        if parent is not None:
            self._try("report artifacts", MlflowStore.log_reports, parent, list(files))

    def prepare_model(self) -> None:
        """In the thread, after what is queued: the environment check a best model's
        registration starts with (`model.check_environment`), ahead of it. For a sweep that
        trains: its closing registers a model. (Nothing waits for the job: what it may raise
        stays in its future.)"""
        self._pool.submit(check_environment)

    def log_best_model(
        self, study_name: str, number: int, save: Callable[[Path], Path | None]
    ) -> None:
        """The best trial as an MLflow Model, registered (`model.log_best_model`): in the
        thread, while the report is drawn; `finish_study` waits for it with the other writes."""
        self._model = self._call(_guarded(MlflowStore.log_best_model), study_name, number, save)

    def finish_study(
        self,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        status: str = "FINISHED",
        sweep_s: float = 0.0,
    ) -> None:
        self.flush()
        if self._model is not None:
            try:  # (raises if the store was left alone: the job did not run)
                made = self._wait(self._model)
            except Exception as exc:
                made = exc
            if isinstance(made, Exception):
                self.errors.append(f"best model: {describe(made)}")
            self._model = None
        parent = self._parent()
        if parent is not None:
            args = (parent, dict(metrics), dict(tags), status, sweep_s)
            self._try("study run", MlflowStore.finish_study, *args)

    def close_study_run(
        self, study_name: str, status: str, metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> tuple[str, bool]:
        """`MlflowStore.close_study_run`, waited for."""
        args = (study_name, status, dict(metrics), dict(tags))
        return self._ask(MlflowStore.close_study_run, *args)  # type: ignore[no-any-return]

    def end_study(self, status: str, timeout: float | None = None) -> None:
        """Best effort, while the sweep stops: the study's run ends with `status`."""
        try:
            parent = self.study_run(timeout)
            if parent is not None:
                self._wait(self._call(MlflowStore.end_study, parent, status), timeout)
        except Exception as exc:
            self.errors.append(f"study run: {describe(exc)}")

    # -- trial runs ----------------------------------------------------------------------------
    def start_trial(
        self, study_name: str, number: int, params: Mapping[str, Any] | None = None
    ) -> Future[str]:
        """Create a RUNNING child run for trial `number` in the thread (its start time is now),
        with `params` and the fixed params; the future gives its id."""
        started_ms = int(time.time() * 1000)
        params = dict(params) if params is not None else None
        return self._call(MlflowStore.start_trial, study_name, number, started_ms, params)

    def run_id(self, created: Future[str], timeout: float = RUN_ID_WAIT_S) -> str | None:
        """The id of a run `start_trial` is creating: None if creating it failed, or if it
        takes longer than `timeout` (the run is then finished later, or made by `sync`)."""
        try:
            return str(self._wait(created, 0.0 if self.down else timeout))
        except Exception:
            return None

    def log_epoch(
        self,
        runs: Mapping[int, Future[str] | str],
        metrics: Mapping[int, Mapping[str, float]],
        epoch: int,
    ) -> None:
        """Trials' metrics of one epoch, timestamped now, for their runs while they train.

        Never waits. Epochs collect here and go to the thread in one job (one request per run)
        once the last job is done and `live_interval_s` has passed since the group's last job
        (or its first epoch). Every point keeps the time its epoch ended, whenever it is
        written; what is not handed over by the tell is written by the trial's finish."""
        now = time.monotonic()
        self._live_sent = self._live_sent or now
        self._live += [(runs[n], epoch, dict(m), int(time.time() * 1000))
                       for n, m in metrics.items() if n in runs]  # fmt: skip
        idle = self._live_job is None or self._live_job.done()
        due = now - self._live_sent >= self.live_interval_s
        if self._live and idle and due and not self.down:
            entries, self._live = self._live, []
            self._live_sent = now
            self._live_job = self._pool.submit(self._drain_live, entries)

    def drop_live(self) -> None:
        """The group ends: epochs not handed over are written by its `finish_trial`."""
        self._live, self._live_sent = [], 0.0

    def _drain_live(
        self, entries: list[tuple[Future[str] | str, int, dict[str, float], int]]
    ) -> None:
        known = []
        try:
            for run, epoch, metrics, ms in entries:
                if isinstance(run, Future):  # created before this job (the thread is serial)
                    run = run.result() if run.exception() is None else ""
                if run:
                    known.append((run, epoch, metrics, ms))
            self._on_store(MlflowStore.log_live, known)
        except Exception:  # the run's finish writes what did not make it
            pass

    def finish_trial(self, run: Future[str] | str, record: TrialRecord) -> None:
        """Log per-epoch metrics, final metrics, the outcome, the weights and the status on
        `run` (a run id, or the future of one being created)."""
        self._pending.append(self._pool.submit(self._finish, run, record))

    def fail_run(self, run_id: str, reason: str = "", timeout: float | None = None) -> None:
        """Close a run as FAILED (its trial was interrupted)."""
        self._try(f"run {run_id}", MlflowStore.fail_run, run_id, reason, timeout=timeout)

    def fail_trial_runs(
        self, study_name: str, number: int, run_id: str | None, reason: str = ""
    ) -> None:
        """Close the run of a trial whose process died as FAILED (found by its tags when the
        id never reached the trial)."""
        args = (study_name, number, run_id, reason)
        self._try(f"trial #{number}", MlflowStore.fail_trial_runs, *args)

    def sync(
        self, study_name: str, records: Sequence[TrialRecord], wait: float = 0.0
    ) -> SyncResult | None:
        """Make MLflow agree with Optuna (`MlflowStore.sync`), trying again every RETRY_S for
        up to `wait` seconds; None if the store did not answer (why: `down`, `errors`)."""
        deadline = time.monotonic() + wait
        while True:
            job = self._pool.submit(
                self._on_store,
                self._repair(MlflowStore.sync),
                study_name,
                list(records),
                force=True,
            )
            try:
                result: SyncResult = self._wait(job)
            except Exception as exc:
                if time.monotonic() + RETRY_S > deadline:
                    self.errors.append(f"sync: {describe(exc)}")
                    return None
                time.sleep(RETRY_S)
                continue
            self.untracked.clear()
            return result

    def sync_in_background(self, study_name: str, records: Sequence[TrialRecord]) -> None:
        """`sync`, queued behind what came before (at a sweep's start: it waits for nothing)."""
        self._pending.append(self._call(self._repair(MlflowStore.sync), study_name, list(records)))

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every write handed to the thread (each for at most `timeout`)."""
        t0 = time.perf_counter()
        if self._live_job is not None:  # (its errors are the finishes' to write: `_drain_live`)
            with contextlib.suppress(Exception):
                self._live_job.exception(timeout)
        try:
            for write in self._pending:
                try:
                    write.result(timeout)
                except Exception as exc:
                    self.errors.append(describe(exc))
            self._pending.clear()
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

    # -- weights and reading back ----------------------------------------------------------------
    def metric_history(self, run_id: str, key: str) -> list[float]:
        """The values of one metric, ordered by step (the epoch)."""
        return self._try(f"run {run_id}", MlflowStore.metric_history, run_id, key) or []

    def download_weights(self, run_id: str) -> np.ndarray | None:
        return self._try(f"run {run_id}", MlflowStore.download_weights, run_id)  # type: ignore[no-any-return]

    def log_trial_weights(self, study_name: str, number: int, weights: np.ndarray) -> None:
        """Put a trial's weights in its run (found by its tags)."""
        args = (study_name, number, weights)
        self._try(f"trial #{number}", MlflowStore.log_trial_weights, *args)

"""Many workers on one study: what Optuna's RDB storage needs to survive crashes and duplicates.

Every sweep process is a worker: it asks trials from the shared storage (SQLite in the home
folder, or PostgreSQL), trains them and tells the results. Optuna coordinates; nothing here is a
queue or a scheduler of our own:
- heartbeats: each worker records a heartbeat for its running trials every `heartbeat_s`
  seconds (a thread; Optuna only does this itself inside `study.optimize`). A trial whose
  heartbeat is older than 3 x `heartbeat_s` belongs to a dead worker: the next worker to look
  fails it (`optuna.storages.fail_stale_trials`), closes its MLflow run as FAILED, and Optuna's
  `RetryHeartbeatStaleTrialCallback` puts its parameters back as a WAITING trial;
- grid studies: every cell that is neither done, running nor waiting is put in Optuna's trial
  queue (`enqueue_missing`), and workers pop cells from it (Optuna's storage gives a WAITING
  trial to one worker only), instead of each asking a GridSampler, which in distributed runs
  can hand the same cell to two workers. Two workers that enqueue the same missing cell at the
  same moment make a duplicate: the trial with the higher number is told FAIL as a duplicate
  and never trained;
- progress: what counts as done (COMPLETE, PRUNED, or FAIL with a result such as "diverged")
  and what is still running elsewhere.
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from .spec import StudySpec
from .sqlitestore import check_sqlite_file, sqlite_lock

__all__ = [
    "HEARTBEAT_S",
    "Heartbeat",
    "Progress",
    "StaleTrials",
    "cell_of",
    "enqueue_missing",
    "grid_cells",
    "make_storage",
    "progress",
    "worker_name",
]

# We drive heartbeats and stale-trial checks ourselves, around ask/tell: Optuna's reminders that
# it expects optimize() and that these parts are experimental are expected, not news.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
for _experimental in (
    ".*fail_stale_trials is experimental",
    "RetryHeartbeatStaleTrialCallback is experimental",
    "Argument ``heartbeat_interval`` is an experimental",
    "Argument ``grace_period`` is an experimental",
    "Argument ``heartbeat_stale_trial_callback`` is an experimental",
):
    warnings.filterwarnings("ignore", message=_experimental)

HEARTBEAT_S = 10  # a dead worker's trials are retried after 3x this
MAX_RETRY = 2
# A FAIL that is a result of the trial itself (not of its worker dying): counts as done.
RESULT_FAILS = ("diverged", "training failed")
DUPLICATE = "duplicate grid cell"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StaleTrials:
    """Optuna's callback for a trial failed by heartbeat: close its MLflow run, then retry it.

    `close_runs(study_name, trial_number, run_id or None, reason)` is set once the tracker
    exists (`Tracker.fail_trial_runs`: without a run id it finds the trial's runs by their tags,
    for a worker that died between creating the run and writing its id on the trial).
    """

    def __init__(self, max_retry: int = MAX_RETRY) -> None:
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.close_runs: Callable[[str, int, str | None, str], None] | None = None
        self.failed: list[int] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.failed.append(trial.number)
        run_id = trial.user_attrs.get("mlflow_run_id")
        worker = trial.user_attrs.get("worker", "a worker")
        if self.close_runs is not None:
            reason = f"{worker} stopped sending heartbeats; trial retried"
            self.close_runs(study.study_name, trial.number, run_id, reason)
        self.retry(study, trial)


def make_storage(
    url: str, *, heartbeat_s: int = HEARTBEAT_S, on_stale: StaleTrials | None = None
) -> RDBStorage:
    """Optuna's RDB storage with heartbeats, a retry of stale trials, and timeouts that turn an
    unreachable server into an error within seconds."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True}
    elif url.startswith("sqlite"):
        # Several local workers share the file: wait for a lock rather than fail at 5 s.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    check_sqlite_file(url, "Optuna storage", "--storage")  # not MLflow's file, not a folder
    with sqlite_lock(url):  # N new workers: one creates the tables, the others wait
        storage = RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_s,
            grace_period=3 * heartbeat_s,
            heartbeat_stale_trial_callback=on_stale,
        )
    if url.startswith("sqlite"):
        _serialize_sqlite(storage)
    return storage


def _serialize_sqlite(storage: RDBStorage) -> None:
    """Make every SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    Optuna gives a WAITING trial to one worker by reading its state and writing RUNNING in one
    transaction with SELECT ... FOR UPDATE, which PostgreSQL honours and SQLite ignores: two
    local workers could both pop the same queued grid cell (seen with 4 workers: "Cannot tell
    a COMPLETE trial"). With the lock taken at BEGIN the read and the write are atomic. This is
    SQLAlchemy's documented recipe for pysqlite.
    """
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners existed are closed


PARAMS = ("learning_rate", "reg", "batch_size")


def cell_of(params: dict[str, Any]) -> tuple[float, float, int]:
    return (float(params["learning_rate"]), float(params["reg"]), int(params["batch_size"]))


def _has_cell(params: dict[str, Any] | None) -> bool:
    """A trial being asked elsewhere may hold only some of its params yet."""
    return bool(params) and all(k in params for k in PARAMS)  # type: ignore[operator]


def grid_cells(spec: StudySpec) -> list[tuple[float, float, int]]:
    if spec.learning_rate.values is None or spec.reg.values is None:
        return []
    return [
        (lr, reg, batch_size)
        for batch_size in spec.batch_size
        for lr in spec.learning_rate.values
        for reg in spec.reg.values
    ]


def enqueue_missing(study: optuna.Study, spec: StudySpec, now: Progress) -> int:
    """Queue the grid cells that no trial has done, is running or is waiting for, as many as
    the study's target still needs (n_trials may be smaller than the grid)."""
    room = spec.target - now.done - now.running - now.waiting
    missing = [cell for cell in grid_cells(spec) if cell not in now.covered][: max(0, room)]
    for lr, reg, batch_size in missing:
        study.enqueue_trial({"learning_rate": lr, "reg": reg, "batch_size": batch_size})
    return len(missing)


def is_done(trial: FrozenTrial) -> bool:
    """Finished with a result: COMPLETE, PRUNED, or FAIL because of the trial itself."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    reason = str(trial.user_attrs.get("fail_reason", ""))
    return trial.state == TrialState.FAIL and reason.startswith(RESULT_FAILS)


class Progress:
    """A study's progress toward its target, from one read of its trials."""

    def __init__(self, trials: Iterable[FrozenTrial], grid: bool) -> None:
        self.trials = list(trials)
        done = [t for t in self.trials if is_done(t)]
        self.done = (
            len({cell_of(t.params) for t in done if _has_cell(t.params)}) if grid else len(done)
        )
        self.running = sum(t.state == TrialState.RUNNING for t in self.trials)
        self.waiting = sum(t.state == TrialState.WAITING for t in self.trials)
        self.taken = {
            cell_of(t.params): t.number
            for t in sorted(self.trials, key=lambda t: -t.number)
            if (is_done(t) or t.state == TrialState.RUNNING) and _has_cell(t.params)
        }
        queued = [
            t.system_attrs.get("fixed_params") for t in self.trials if t.state.name == "WAITING"
        ]
        self.covered = set(self.taken) | {cell_of(q) for q in queued if q and _has_cell(q)}

    def duplicate_of(self, trial: optuna.trial.Trial) -> int | None:
        """The trial that already holds this trial's grid cell, if an earlier one does."""
        holder = self.taken.get(cell_of(trial.params))
        return holder if holder is not None and holder < trial.number else None


def progress(study: optuna.Study, grid: bool) -> Progress:
    return Progress(study.get_trials(deepcopy=False), grid)


class Heartbeat:
    """Records a heartbeat for this worker's running trials every `interval` seconds."""

    def __init__(self, storage: RDBStorage, interval: float) -> None:
        self.storage = storage
        self.interval = interval
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_ids: Iterable[int]) -> None:
        ids = list(trial_ids)
        with self._lock:
            self._ids.update(ids)
        for trial_id in ids:  # at once: a trial with no heartbeat yet is never stale
            self.storage.record_heartbeat(trial_id)

    def remove(self, trial_ids: Iterable[int]) -> None:
        with self._lock:
            self._ids.difference_update(trial_ids)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a finished trial or a storage hiccup: next beat
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

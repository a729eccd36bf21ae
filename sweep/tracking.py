"""MLflow tracking: one experiment per study, a parent run for the study, a child run per trial.

The only module that imports mlflow (lazily: `import mlflow` costs ~1.5 s).

Every MLflow call runs in one background thread, in order (`Tracker`). The sweep hands it the
study's run, then each trial's run when the trial starts (created, with its params, while the
trial trains; its id goes on the Optuna trial as soon as it exists, and before the trial is
told), then everything after the training: the weights artifact, one `log_batch` with every
per-epoch and final metric, the status. On the embedded SQLite store that is ~20 ms of Python
per trial, done while the next group trains (or the report is drawn); the sweep waits only for
run ids and at `flush()`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .sqlitestore import check_sqlite_file, open_store

__all__ = ["RUN_STATUS", "Tracker", "TrialRecord", "default_tracking_uri", "fetch_trial_runs"]

# Optuna trial state -> MLflow run status.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_accuracy", "epoch_time_s")


def default_tracking_uri(home: Path) -> str:
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"


def _client(tracking_uri: str) -> Any:
    import logging
    import os

    # Downloads (weights for the test set and the report) would each draw a progress bar.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import mlflow  # (lazy: the import is slow)
    from mlflow import MlflowClient

    # MLflow logs INFO lines about schema migrations on a new store; the summary says enough.
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    # Opening a new store creates and migrates it: one process at a time (N new workers),
    # from the empty store this MLflow version made before, when there is one (see
    # sqlitestore.py). The client opens the store when it is made.
    from engine.data.sources import cache_dir

    return open_store(
        tracking_uri,
        lambda: MlflowClient(tracking_uri=tracking_uri),
        "MLflow tracking store",
        seed=cache_dir() / "stores" / f"mlflow-{mlflow.__version__}.db",
    )


def _check_server(uri: str, timeout_s: float = 5.0) -> None:
    """An MLflow server that does not answer /health: a clear error now, not minutes of
    retries later."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as reply:
            if reply.status == 200:
                return
            problem = f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    raise RuntimeError(
        f"The MLflow tracking server at {uri} did not answer {uri.rstrip('/')}/health within "
        f"{timeout_s:g} s ({problem}). Check --tracking-uri and that `mlflow server` is running."
    )


@dataclass
class TrialRecord:
    """What one finished trial leaves in its MLflow run."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    params: Mapping[str, Any]
    history: Sequence[Mapping[str, float]]
    final: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""
    weights: np.ndarray | None = None


class _Store:
    """The MLflow side, synchronous: one client on one store, used from the tracker's thread."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: Path | None,
        create: bool,
        fixed_params: Mapping[str, str],
    ) -> None:
        from mlflow.exceptions import MlflowException

        t0 = time.perf_counter()
        self.tracking_uri = tracking_uri
        self.fixed_params = dict(fixed_params)
        self.parent_id: str | None = None
        self.with_params: set[str] = set()  # runs whose params start_trial logged
        try:
            self.client = _client(tracking_uri)
            self.experiment_id = self._experiment(experiment, artifact_root, create)
        except MlflowException as exc:
            raise RuntimeError(
                f"The MLflow tracking store at {tracking_uri} refused the request ({exc}). "
                "Check --tracking-uri and that the server is running."
            ) from None
        except RuntimeError:
            raise  # ours, already one paragraph
        except Exception as exc:  # the database driver's errors (SQLAlchemy, sqlite3, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RuntimeError(
                f"The MLflow tracking store at {tracking_uri} could not be opened "
                f"({type(exc).__name__}: {first}). Check --tracking-uri (or --home): it must "
                "be an MLflow store, or a new file or database for one."
            ) from None
        self.busy_s = time.perf_counter() - t0

    def _experiment(self, experiment: str, artifact_root: Path | None, create: bool) -> str:
        """The study's experiment id, created if it does not exist yet."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            return str(found.experiment_id)
        if not create:
            raise RuntimeError(
                f"The MLflow store at {self.tracking_uri} has no experiment named "
                f"{experiment!r}. Pass the --home or --tracking-uri that the sweep used."
            )
        location = (artifact_root / experiment).resolve().as_uri() if artifact_root else None
        try:
            return str(self.client.create_experiment(experiment, artifact_location=location))
        except MlflowException:  # another worker (on a server or database) created it just now
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                raise
            return str(found.experiment_id)

    def set_fixed(self, params: Mapping[str, str]) -> None:
        self.fixed_params.update(params)

    def find_study_run(self, study_name: str) -> str | None:
        query = f"tags.`softsweep.role` = 'study' and tags.`optuna.study` = '{study_name}'"
        found = self.client.search_runs(
            [self.experiment_id], query, max_results=1, order_by=["attributes.start_time ASC"]
        )
        return str(found[0].info.run_id) if found else None

    def start_study(self, study_name: str, params: Mapping[str, str], spec_text: str) -> str:
        t0 = time.perf_counter()
        try:
            self.parent_id = self._start_study(study_name, params, spec_text)
            return self.parent_id
        finally:
            self.busy_s += time.perf_counter() - t0

    def _start_study(self, study_name: str, params: Mapping[str, str], spec_text: str) -> str:
        existing = self.find_study_run(study_name)
        if existing:
            self.client.update_run(existing, status="RUNNING")
            return existing
        run = self.client.create_run(
            self.experiment_id,
            run_name=study_name,
            tags={"softsweep.role": "study", "optuna.study": study_name},
        )
        oldest = self.find_study_run(study_name)
        if oldest is not None and oldest != run.info.run_id:  # another worker was first
            self.client.delete_run(run.info.run_id)
            self.client.update_run(oldest, status="RUNNING")
            return oldest
        from mlflow.entities import Param

        parent = str(run.info.run_id)
        self.client.log_batch(parent, params=[Param(k, v) for k, v in params.items()])
        if spec_text:
            self.client.log_text(parent, spec_text, "study.toml")
        return parent

    def _params(self, params: Mapping[str, Any]) -> list[Any]:
        from mlflow.entities import Param

        every = {**self.fixed_params, **{k: str(v) for k, v in params.items()}}
        return [Param(k, v) for k, v in every.items()]

    def start_trial(
        self, study_name: str, number: int, started_ms: int, params: Mapping[str, Any] | None
    ) -> str:
        """A child of the study's run when `start_study` made or found it (it ran first), with
        its params when they are given (a running or killed trial's run shows them too)."""
        t0 = time.perf_counter()
        try:
            tags = {
                "softsweep.role": "trial",
                "optuna.study": study_name,
                "optuna.trial": str(number),
            }
            if self.parent_id:
                tags["mlflow.parentRunId"] = self.parent_id
            run = self.client.create_run(
                self.experiment_id,
                start_time=started_ms,
                run_name=f"{study_name}-trial-{number}",
                tags=tags,
            )
            run_id = str(run.info.run_id)
            if params is not None:
                try:
                    self.client.log_batch(run_id, params=self._params(params))
                    self.with_params.add(run_id)
                except Exception:  # logged again, and any error reported, when it finishes
                    pass
            return run_id
        finally:
            self.busy_s += time.perf_counter() - t0

    def finish_trial(self, run_id: str, record: TrialRecord) -> str | None:
        """Everything after training; returns what went wrong, if anything."""
        from mlflow.entities import Metric, RunTag

        t0 = time.perf_counter()
        try:
            now = int(time.time() * 1000)
            metrics = [
                Metric(key, float(h[key]), now, epoch)
                for epoch, h in enumerate(record.history, start=1)
                for key in EPOCH_METRICS
            ]
            metrics += [Metric(k, float(v), now, 0) for k, v in record.final.items()]
            params = [] if run_id in self.with_params else self._params(record.params)
            tags = [RunTag("softsweep.state", record.state)]
            if record.reason:
                tags.append(RunTag("softsweep.fail_reason", record.reason[:5000]))
            if record.weights is not None:  # first: MLflow reads the run back to find where
                # its artifacts go, which costs less before the run has its metrics and params
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "weights.npy"
                    np.save(path, record.weights)
                    self.client.log_artifact(run_id, str(path))
            self.client.log_batch(
                run_id,
                metrics=metrics,
                params=params,
                tags=tags,
            )
            self.client.set_terminated(run_id, RUN_STATUS[record.state])
            return None
        except Exception as exc:  # tracking must never lose the sweep; reported at flush
            return f"trial {record.number}: {type(exc).__name__}: {exc}"
        finally:
            self.busy_s += time.perf_counter() - t0

    def fail_run(self, run_id: str, reason: str) -> str | None:
        try:
            if reason:
                self.client.set_tag(run_id, "softsweep.fail_reason", reason[:5000])
            self.client.set_terminated(run_id, "FAILED")
            return None
        except Exception as exc:  # best effort: the run may be gone
            return f"run {run_id}: {type(exc).__name__}: {exc}"

    def fail_trial_runs(
        self, study_name: str, number: int, run_id: str | None, reason: str
    ) -> str | None:
        """Close a dead worker's run of trial `number` as FAILED: the one its trial names, or,
        when the worker died between creating the run and writing its id on the trial, every
        run still RUNNING with the trial's tags."""
        if run_id:
            return self.fail_run(run_id, reason)
        query = (
            f"tags.`softsweep.role` = 'trial' and tags.`optuna.study` = '{study_name}' "
            f"and tags.`optuna.trial` = '{number}' and attributes.status = 'RUNNING'"
        )
        try:
            found = self.client.search_runs([self.experiment_id], query)
        except Exception as exc:  # best effort, as fail_run
            return f"trial #{number}: {type(exc).__name__}: {exc}"
        problems = [self.fail_run(str(run.info.run_id), reason) for run in found]
        return "; ".join(p for p in problems if p) or None

    def log_reports(self, parent_id: str, files: Sequence[Path]) -> str | None:
        """Each file, not the folder: another worker closing the study at the same moment may
        be writing its own copy of the report there (temporary files that come and go)."""
        problems = []
        for path in files:
            try:
                self.client.log_artifact(parent_id, str(path), artifact_path="reports")
            except Exception as exc:  # the report on disk is whole; its copy here is not
                problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
        return "; ".join(problems) or None

    def finish_study(
        self, parent_id: str, metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            parent_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        self.client.set_terminated(parent_id, "FINISHED")

    def end_study(self, parent_id: str, status: str) -> None:
        self.client.set_terminated(parent_id, status)

    def metric_history(self, run_id: str, key: str) -> list[float]:
        try:
            history = self.client.get_metric_history(run_id, key)
        except Exception:
            return []
        return [float(m.value) for m in sorted(history, key=lambda m: (m.step, m.timestamp))]

    def download_weights(self, run_id: str) -> np.ndarray | None:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = self.client.download_artifacts(run_id, "weights.npy", tmp)
                return np.load(local)
        except Exception:
            return None


class Tracker:
    """Writes a study's runs to one MLflow tracking store through one client.

    Every call to MLflow runs in one background thread, in order, so that the caller only
    waits for answers it needs (a run id before its trial is told; readings back). With
    `wait=False` the constructor returns at once and the thread imports MLflow and opens its
    store (~2.5 s of Python) while the caller goes on; the first call that needs an answer
    waits for it. An HTTP server is probed at once either way.

    (A helper process instead of the thread was measured and dropped: the process's own start
    and its competition with training for the 2 cores cost more than the GIL it frees.)
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
        self.background_seconds = 0.0  # time the background worker spent on MLflow calls
        if tracking_uri.startswith(("http://", "https://")):
            _check_server(tracking_uri)  # an unreachable server fails now, before any training
        check_sqlite_file(tracking_uri, "MLflow tracking store", "--tracking-uri")  # and a bad file
        self._store: _Store | None = None  # made, then used, only in the background thread
        self._store_error: BaseException | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-log")
        self._connected = self._pool.submit(
            self._connect, tracking_uri, experiment, artifact_root, create, fixed_params or {}
        )
        self._study_started: Future[str] | None = None
        self._created: list[Future[str]] = []  # trial runs being made
        self._written: list[Future[str | None]] = []  # trial runs being finished: None or why not
        if wait:
            self.wait_ready()

    def _connect(self, *args: Any) -> None:
        try:
            self._store = _Store(*args)
        except BaseException as exc:
            self._store_error = exc
            raise

    def _on_store(self, method: Callable[..., Any], *args: Any) -> Any:
        if self._store is None:  # connecting failed: every later call says why
            raise self._store_error or RuntimeError("the MLflow store is not connected")
        return method(self._store, *args)

    def _call(self, method: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run `_Store.method(store, *args)` in the background thread, after what came before."""
        return self._pool.submit(self._on_store, method, *args)

    def _wait(self, future: Future[Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return future.result()
        finally:
            self.seconds += time.perf_counter() - t0

    def _ask(self, method: Callable[..., Any], *args: Any) -> Any:
        return self._wait(self._call(method, *args))

    def wait_ready(self) -> None:
        """Wait for the store (raises what connecting to it raised)."""
        self._wait(self._connected)

    def set_fixed_params(self, params: Mapping[str, str]) -> None:
        """Params every trial run gets besides its own (for the runs finished from now on)."""
        self._call(_Store.set_fixed, dict(params))

    # -- the study's run ---------------------------------------------------------------------
    def start_study(self, study_name: str, params: Mapping[str, str], spec_text: str) -> None:
        """Create the study's parent run, or reopen it when the study resumes (in the
        background; the trials' runs are created after it, as its children)."""
        self._study_started = self._call(_Store.start_study, study_name, dict(params), spec_text)

    def study_run(self) -> str | None:
        """The study's run id, once `start_study` is done (raises what it raised)."""
        if self._study_started is not None:
            self.parent_id = self._wait(self._study_started)
        return self.parent_id

    def find_study_run(self, study_name: str) -> str | None:
        """The run id of the study's parent run, if it has one."""
        return self._ask(_Store.find_study_run, study_name)  # type: ignore[no-any-return]

    def log_reports(self, files: Sequence[Path]) -> None:
        """The report's files as artifacts of the study's run, under `reports/` (what could
        not be logged goes to `errors`)."""
        parent = self.study_run()
        if parent is None:
            raise RuntimeError("log_reports needs the study's run (start_study or find_study_run)")
        problem = self._ask(_Store.log_reports, parent, list(files))
        if problem:
            self.errors.append(f"report artifacts: {problem}")

    def finish_study(self, metrics: Mapping[str, float], tags: Mapping[str, str]) -> None:
        self.flush()
        parent = self.study_run()
        assert parent is not None
        self._ask(_Store.finish_study, parent, dict(metrics), dict(tags))

    def end_study_failed(self) -> None:
        """Best effort, while the sweep is already failing: the study's run is FAILED."""
        try:
            self.flush()
            parent = self.study_run()
            if parent is not None:
                self._ask(_Store.end_study, parent, "FAILED")
        except Exception as exc:
            self.errors.append(f"study run: {type(exc).__name__}: {exc}")

    # -- trial runs ----------------------------------------------------------------------------
    def start_trial(
        self,
        study_name: str,
        number: int,
        on_created: Callable[[str], None] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Future[str]:
        """Create a RUNNING child run for trial `number` in the background (its start time is
        now, whenever the store gets it), with `params` and the fixed params. The future gives
        the run id once `on_created(run_id)` has run (in a background thread of this process)."""
        started_ms = int(time.time() * 1000)
        created: Future[str] = Future()

        def announce(job: Future[str]) -> None:
            try:
                run_id = job.result()
                if on_created is not None:
                    on_created(run_id)
            except BaseException as exc:
                created.set_exception(exc)
            else:
                created.set_result(run_id)

        params = dict(params) if params is not None else None
        job = self._call(_Store.start_trial, study_name, number, started_ms, params)
        job.add_done_callback(announce)
        self._created.append(created)
        return created

    def run_ids(self, started: Sequence[Future[str]]) -> list[str]:
        """Wait for runs that `start_trial` is creating (raises what creating one raised)."""
        return [self._wait(job) for job in started]

    def finish_trial(self, run_id: str, record: TrialRecord) -> None:
        """Log per-epoch metrics, final metrics, status, weights and (unless `start_trial` did)
        params, in the background."""
        self._written.append(self._call(_Store.finish_trial, run_id, record))

    def fail_run(self, run_id: str, reason: str = "") -> None:
        """Close a run as FAILED (its trial was interrupted or its worker died)."""
        problem = self._ask(_Store.fail_run, run_id, reason)
        if problem:
            self.errors.append(problem)

    def fail_trial_runs(
        self, study_name: str, number: int, run_id: str | None, reason: str = ""
    ) -> None:
        """Close the run of a trial whose worker died as FAILED (found by its tags when the
        id never reached the trial)."""
        problem = self._ask(_Store.fail_trial_runs, study_name, number, run_id, reason)
        if problem:
            self.errors.append(problem)

    def flush(self) -> None:
        """Wait for every write handed to the background worker. Runs that could not be
        written are in `errors`; a study run that could not be started raises."""
        t0 = time.perf_counter()
        try:
            for job in self._created:  # (a store that never opened: its error, again)
                if (failed := job.exception()) is not None:
                    self.errors.append(f"{type(failed).__name__}: {failed}")
            for write in self._written:  # finish_trial returns what went wrong with its run
                if (failed := write.exception()) is not None:
                    self.errors.append(f"{type(failed).__name__}: {failed}")
                elif problem := write.result():
                    self.errors.append(problem)
            self._created.clear()
            self._written.clear()
            if self._store is not None:
                self.background_seconds = self._store.busy_s
        finally:
            self.seconds += time.perf_counter() - t0
        self.study_run()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)

    def abandon(self) -> None:
        """Stop without waiting (the sweep failed before it needed the store)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- reading back --------------------------------------------------------------------------
    def metric_history(self, run_id: str, key: str) -> list[float]:
        """The values of one metric, ordered by step (the epoch)."""
        return self._ask(_Store.metric_history, run_id, key)  # type: ignore[no-any-return]

    def download_weights(self, run_id: str) -> np.ndarray | None:
        return self._ask(_Store.download_weights, run_id)  # type: ignore[no-any-return]


def fetch_trial_runs(tracking_uri: str, study_name: str) -> list[dict[str, Any]]:
    """Every trial run of a study as plain dicts (params as strings, last metric values)."""
    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return []
    query = f"tags.`softsweep.role` = 'trial' and tags.`optuna.study` = '{study_name}'"
    rows: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], query, max_results=1000, page_token=token
        )
        for run in page:
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "run_status": run.info.status,
                    "start_time": run.info.start_time,
                    "end_time": run.info.end_time,
                    "params": dict(run.data.params),
                    "metrics": dict(run.data.metrics),
                    "tags": dict(run.data.tags),
                }
            )
        token = page.token
        if not token:
            return rows

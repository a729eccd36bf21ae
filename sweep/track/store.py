"""MLflow, synchronous: one experiment per study, a run for the study and a run per trial beside
it. `MlflowStore` is one client on one store; a sweep uses it through `tracker.Tracker`, which runs
its calls in one background thread. Readers (`read_trial_runs`, `study_experiments`) and `sweep
delete` (`writer`) use a plain client.

mlflow is imported in track/ only, lazily (`import mlflow` costs ~1.5 s).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..store.home import safe_url
from ..store.sqlitestore import open_store, sqlite_path
from ..store.waits import bound
from ..trial import CHARTED, TrialRecord
from .experiment import EXPERIMENT_TAGS, VIEW_TAG, run_name
from .inputs import SPLITS, dataset_inputs, source_tags
from .model import log_best_model

__all__ = [
    "MlflowStore",
    "SyncResult",
    "read_trial_runs",
    "reader",
    "study_experiments",
    "writer",
]


@dataclass
class SyncResult:
    """What a sync did."""

    created: int = 0  # runs made for trials that had none
    completed: int = 0  # runs that were RUNNING or had no metrics
    run_ids: dict[int, str] = field(default_factory=dict)  # every synced trial's run
    study_run: str = ""  # the study run's status after the sync, and whether the sync ended it
    study_run_ended: bool = False


TRIAL_SPLITS = ("train", "val")  # a trial never sees the test split


# Per request to an MLflow server: 3 tries, 1 + 2 s apart, 15 s each at most (env overrides).
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


def _client(tracking_uri: str, artifact_root: Path | None = None, read_only: bool = False) -> Any:
    import logging
    import os

    # Downloads (weights for the test set and the report) would each draw a progress bar.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's own HTTP retries (7, backoff factor 2, 120 s timeout) wait minutes on a server
    # that went away; softsweep retries later itself (`sync`), so each request gives up soon.
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)
    # On a server, MLflow prints "View run ... at: URL" on stdout for every run it ends (and
    # fetches the run again to do so): the terminal is softsweep's summary.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    from mlflow import MlflowClient  # (lazy: the import is slow)

    if tracking_uri.startswith("postgresql"):
        bound(tracking_uri)  # a database that stops answering: seconds, and Ctrl-C, not forever

    # MLflow logs INFO lines about schema migrations on a new store, and a database error with
    # its traceback before raising it: softsweep says what went wrong itself, once.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

    def create(uri: str) -> None:
        # A new store's "Default" experiment keeps its artifacts in this home (MlflowClient
        # alone would put them under the current folder's ./mlruns).
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        root = (artifact_root or Path(".")).resolve().as_uri()
        SqlAlchemyStore(uri, root).engine.dispose()

    if read_only:  # reading needs no lock (and a read-only home could not take one)
        return MlflowClient(tracking_uri=tracking_uri)
    # Opening a new store creates and migrates it: one process at a time (N new workers).
    return open_store(tracking_uri, lambda: MlflowClient(tracking_uri=tracking_uri), create)


class MlflowStore:
    """The MLflow side, synchronous: one client on one store (in a sweep, used only from the
    tracker's thread)."""

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
        self.data: dict[str, Any] | None = None  # `inputs.describe_data`: the runs' inputs
        self.parent_id: str | None = None
        self.with_params: set[str] = set()  # runs whose params start_trial logged
        self.live_epochs: dict[str, int] = {}  # run -> epochs logged while it trained
        try:
            self.client = _client(tracking_uri, artifact_root)
            self.experiment_id = self._experiment(experiment, artifact_root, create)
        except MlflowException as exc:
            raise RuntimeError(
                f"The MLflow tracking store at {safe_url(tracking_uri)} refused the request "
                f"({exc}). "
                "Check --tracking-uri and that the server is running."
            ) from None
        except RuntimeError:
            raise  # ours, already one paragraph
        except Exception as exc:  # the database driver's errors (SQLAlchemy, sqlite3, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RuntimeError(
                f"The MLflow tracking store at {safe_url(tracking_uri)} could not be opened "
                f"({type(exc).__name__}: {first}). Check --tracking-uri (or --home): it must "
                "be an MLflow store, or a new file or database for one."
            ) from None
        self.busy_s = time.perf_counter() - t0

    def _experiment(self, experiment: str, artifact_root: Path | None, create: bool) -> str:
        """The study's experiment id, created if it does not exist yet."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(experiment)
        if found is not None and found.lifecycle_stage == "deleted":
            raise RuntimeError(
                f"The MLflow experiment {experiment!r} (id {found.experiment_id}) is in MLflow's "
                f"trash at {safe_url(self.tracking_uri)}: it was deleted, in the UI or by a "
                "client, and MLflow writes nothing to it and makes no other of that name. "
                f"Restore it (`mlflow experiments restore --experiment-id "
                f"{found.experiment_id}` with MLFLOW_TRACKING_URI set to the store, or the UI's "
                "trash) and run the command again; `sweep sync` then rebuilds its runs."
            )
        if found is not None:
            if create and VIEW_TAG not in found.tags:  # made by an older softsweep
                for key, value in EXPERIMENT_TAGS(experiment).items():
                    self.client.set_experiment_tag(found.experiment_id, key, value)
            return str(found.experiment_id)
        if not create:
            raise RuntimeError(
                f"The MLflow store at {safe_url(self.tracking_uri)} has no experiment named "
                f"{experiment!r}. Pass the --home or --tracking-uri that the sweep used."
            )
        location = (artifact_root / experiment).resolve().as_uri() if artifact_root else None
        try:
            return str(
                self.client.create_experiment(
                    experiment, artifact_location=location, tags=EXPERIMENT_TAGS(experiment)
                )
            )
        except MlflowException:  # another worker (on a server or database) created it just now
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                raise
            return str(found.experiment_id)

    def set_fixed(self, params: Mapping[str, str], data: Mapping[str, Any] | None) -> None:
        self.fixed_params.update(params)
        if data:
            self.data = dict(data)

    def find_study_run(self, study_name: str) -> str | None:
        query = f"tags.`softsweep.role` = 'study' and tags.`optuna.study` = '{study_name}'"
        found = self.client.search_runs(
            [self.experiment_id], query, max_results=1, order_by=["attributes.start_time ASC"]
        )
        if found:
            self.parent_id = str(found[0].info.run_id)
        return self.parent_id if found else None

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
            tags={"softsweep.role": "study", "optuna.study": study_name, **source_tags(self.data)},
        )
        oldest = self.find_study_run(study_name)
        if oldest is not None and oldest != run.info.run_id:  # another worker was first
            self.client.delete_run(run.info.run_id)
            self.client.update_run(oldest, status="RUNNING")
            return oldest
        from mlflow.entities import Param

        parent = str(run.info.run_id)
        self.client.log_batch(parent, params=[Param(k, v) for k, v in params.items()])
        if self.data:  # the test split too: the study's run holds its one evaluation
            self.client.log_inputs(parent, datasets=dataset_inputs(self.data, tuple(SPLITS)))
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
        """A run beside the study's run (linked to it by a tag, when `start_study` ran first), with
        its params when they are given (a running or killed trial's run shows them too)."""
        t0 = time.perf_counter()
        try:
            tags = {
                "softsweep.role": "trial",
                "optuna.study": study_name,
                "optuna.trial": str(number),
            }
            if self.parent_id:  # not MLflow's parentRunId: the UI would fold every trial
                tags["softsweep.study_run"] = self.parent_id  # into one collapsed row
            tags.update(source_tags(self.data))
            run = self.client.create_run(
                self.experiment_id,
                start_time=started_ms,
                run_name=run_name(number, params),
                tags=tags,
            )
            run_id = str(run.info.run_id)
            if params is not None:
                try:
                    self.client.log_batch(run_id, params=self._params(params))
                    self.with_params.add(run_id)
                except Exception:  # logged again, and any error reported, when it finishes
                    pass
            if self.data:
                self.client.log_inputs(run_id, datasets=dataset_inputs(self.data, TRIAL_SPLITS))
            return run_id
        finally:
            self.busy_s += time.perf_counter() - t0

    def log_live(self, entries: Sequence[tuple[str, int, Mapping[str, float], int]]) -> None:
        """Epochs of runs still training: (run id, epoch, metrics, timestamp in ms) each; one
        request per run for all of its epochs waiting here."""
        from mlflow.entities import Metric

        t0 = time.perf_counter()
        try:
            by_run: dict[str, list[Any]] = {}
            last: dict[str, int] = {}
            for run_id, epoch, metrics, ms in entries:
                if epoch > self.live_epochs.get(run_id, 0):
                    by_run.setdefault(run_id, []).extend(
                        Metric(key, float(metrics[key]), ms, epoch) for key in CHARTED
                    )
                    last[run_id] = max(epoch, last.get(run_id, 0))
            for run_id, batch in by_run.items():
                self.client.log_batch(run_id, metrics=batch)
                self.live_epochs[run_id] = last[run_id]
        finally:
            self.busy_s += time.perf_counter() - t0

    def finish_trial(self, run_id: str, record: TrialRecord) -> None:
        """Everything after training: the epochs not logged live, final metrics, outcome,
        weights, status."""
        from mlflow.entities import Metric, RunTag

        t0 = time.perf_counter()
        try:
            now = record.ended_ms or int(time.time() * 1000)
            logged = self.live_epochs.pop(run_id, 0)
            epochs = record.history.epochs
            times = list(record.epoch_ms) + [now] * (len(epochs) - len(record.epoch_ms))
            metrics = [
                Metric(key, float(h[key]), times[epoch - 1], epoch)
                for epoch, h in enumerate(epochs, start=1)
                if epoch > logged
                for key in CHARTED
            ]
            metrics += [Metric(k, float(v), now, 0) for k, v in record.final.items()]
            params = [] if run_id in self.with_params else self._params(record.params)
            tags = [RunTag("softsweep.outcome", record.outcome.label)]
            tags += [RunTag(k, v) for k, v in record.info.items()]
            if record.reason:
                tags.append(RunTag("softsweep.fail_reason", record.reason[:5000]))
                tags.append(RunTag("mlflow.note.content", record.reason[:5000]))
            if record.weights is not None:  # first: MLflow reads the run back to find where
                # its artifacts go, which costs less before the run has its metrics and params
                self.log_weights(run_id, record.weights)
            self.client.log_batch(
                run_id,
                metrics=metrics,
                params=params,
                tags=tags,
            )
            self.client.set_terminated(run_id, record.outcome.run_status, end_time=now)
        finally:
            self.busy_s += time.perf_counter() - t0

    def fail_run(self, run_id: str, reason: str) -> None:
        if reason:
            self.client.set_tag(run_id, "softsweep.fail_reason", reason[:5000])
            self.client.set_tag(run_id, "mlflow.note.content", reason[:5000])
        self.client.set_terminated(run_id, "FAILED")

    def fail_trial_runs(
        self, study_name: str, number: int, run_id: str | None, reason: str
    ) -> None:
        """Close a dead worker's run of trial `number` as FAILED: the one its trial names, or,
        when the worker died between creating the run and writing its id on the trial, every
        run still RUNNING with the trial's tags."""
        if run_id:
            self.fail_run(run_id, reason)
            return
        query = (
            f"tags.`softsweep.role` = 'trial' and tags.`optuna.study` = '{study_name}' "
            f"and tags.`optuna.trial` = '{number}' and attributes.status = 'RUNNING'"
        )
        for run in self.client.search_runs([self.experiment_id], query):
            self.fail_run(str(run.info.run_id), reason)

    def trial_runs(self, study_name: str) -> dict[int, Any]:
        """The study's trial runs by trial number (the latest one, if a trial has several)."""
        found: dict[int, Any] = {}
        for run in _search_trial_runs(self.client, self.experiment_id, study_name):
            number = int(run.data.tags.get("optuna.trial", "-1"))
            if number not in found or run.info.start_time > found[number].info.start_time:
                found[number] = run
        return found

    def sync(self, study_name: str, records: Sequence[TrialRecord]) -> SyncResult:
        """Make MLflow agree with Optuna: each finished trial (`records`, built from what Optuna
        holds) gets a run if it has none, and its metrics, outcome and status if its run is
        still RUNNING or has no metrics. Runs that agree are not touched."""
        runs = self.trial_runs(study_name)
        result = SyncResult()
        for record in records:
            run = runs.get(record.number)
            if run is None:
                started = record.ended_ms or int(time.time() * 1000)
                run_id = self.start_trial(study_name, record.number, started, record.params)
                result.created += 1
            elif record.history.epochs and "val_accuracy" not in run.data.metrics:
                run_id = str(run.info.run_id)
                result.completed += 1
            elif run.info.status == "RUNNING":  # told, but its process died before the write
                run_id = str(run.info.run_id)
                # Epochs logged while it trained stay; the rest follow.
                self.live_epochs[run_id] = len(self.metric_history(run_id, "val_accuracy"))
                result.completed += 1
            else:
                result.run_ids[record.number] = str(run.info.run_id)
                continue
            self.finish_trial(run_id, record)
            result.run_ids[record.number] = run_id
        return result

    def log_trial_weights(self, study_name: str, number: int, weights: np.ndarray) -> None:
        run = self.trial_runs(study_name).get(number)
        if run is None:
            raise RuntimeError(f"trial #{number} of study {study_name!r} has no run")
        self.log_weights(str(run.info.run_id), weights)

    def log_best_model(self, study_name: str, number: int, save: Any) -> str | None:
        """`model.log_best_model` for trial `number`'s run: the version registered, or None."""
        run = self.trial_runs(study_name).get(number)
        if run is None:
            raise RuntimeError(f"trial #{number} of study {study_name!r} has no run")
        run_id = str(run.info.run_id)
        return log_best_model(self.client, self.experiment_id, run_id, study_name, number, save)

    def log_weights(self, run_id: str, weights: np.ndarray) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "weights.npy"
            np.save(path, weights)
            self.client.log_artifact(run_id, str(path))

    def log_reports(self, parent_id: str, files: Sequence[Path]) -> None:
        """Each file, not the folder: another worker closing the study at the same moment may
        be writing its own copy of the report there (temporary files that come and go)."""
        for path in files:
            if path.exists():
                self.client.log_artifact(parent_id, str(path), artifact_path="reports")

    def finish_study(
        self,
        parent_id: str,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        status: str = "FINISHED",
        sweep_s: float = 0.0,
    ) -> None:
        """The study run's results, and its end: its start plus the time every sweep of it
        took (`sweep_time_s`, summed over resumes), so that its duration in the UI is the
        sweeps' and not the days between the first and the last."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        run = self.client.get_run(parent_id)
        total = run.data.metrics.get("sweep_time_s", 0.0) + sweep_s
        self.client.log_batch(
            parent_id,
            metrics=[
                Metric(k, float(v), now, 0) for k, v in {**metrics, "sweep_time_s": total}.items()
            ],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        end = min(now, run.info.start_time + int(total * 1000)) if total else now
        self.client.set_terminated(parent_id, status, end_time=end)

    def close_study_run(
        self, study_name: str, status: str, metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> tuple[str, bool]:
        """End the study's run with `status` and its summary if it is still RUNNING (its
        sweep's closing could not reach MLflow): the run's status after the call ("" if the
        study has no run), and whether this call ended it."""
        parent = self.find_study_run(study_name)
        if parent is None:
            return "", False
        now = str(self.client.get_run(parent).info.status)
        if now != "RUNNING":
            return now, False
        self.finish_study(parent, metrics, tags, status)
        return status, True

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


def _search_trial_runs(client: Any, experiment_id: str, study_name: str) -> list[Any]:
    """Every trial run of a study (MLflow `Run`s), all pages."""
    query = f"tags.`softsweep.role` = 'trial' and tags.`optuna.study` = '{study_name}'"
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def read_trial_runs(tracking_uri: str, study_name: str) -> list[Any]:
    """A study's trial runs, read without a lock and without creating anything (no store, or no
    experiment of that name: none)."""
    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_file():
        return []
    client = reader(tracking_uri)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return []
    return _search_trial_runs(client, str(experiment.experiment_id), study_name)


def reader(tracking_uri: str) -> Any:
    """An MlflowClient to read a store with (no lock, nothing created)."""
    return _client(tracking_uri, read_only=True)


def study_experiments(tracking_uri: str) -> dict[str, tuple[str, bool]]:
    """The studies' experiments in a store: name -> (experiment id, whether it has the trials'
    view `VIEW_KEY`) (MLflow's Default left out)."""
    found = reader(tracking_uri).search_experiments()
    return {
        e.name: (str(e.experiment_id), VIEW_TAG in e.tags) for e in found if e.name != "Default"
    }


def writer(tracking_uri: str) -> Any:
    """An MlflowClient that may write (`sweep delete`)."""
    return _client(tracking_uri)

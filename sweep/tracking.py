"""MLflow tracking: one experiment per study, a parent run for the study, a child run per trial.

The only module that imports mlflow (lazily: `import mlflow` costs ~1.5 s).

Cost on the embedded SQLite store, measured: creating a run ~5 ms, one `log_batch` with every
per-epoch metric ~11 ms, the weights artifact ~4 ms, closing the run ~3 ms. A trial trained side
by side takes ~100 ms, so runs are created when their trials start (the run id goes on the
Optuna trial before it is told, and the UI shows the trial RUNNING), and everything after the
training (one `log_batch`, the artifact, the status) is handed to one background thread that
works while the next group trains. `flush()` waits for it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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

    import mlflow  # noqa: F401  (lazy: the import is slow)
    from mlflow import MlflowClient

    # MLflow logs INFO lines about schema migrations on a new store; the summary says enough.
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    return MlflowClient(tracking_uri=tracking_uri)


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


class Tracker:
    """Writes a study's runs to one MLflow tracking store through one client."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        *,
        artifact_root: Path | None = None,
        fixed_params: Mapping[str, str] | None = None,
        create: bool = True,
    ) -> None:
        from mlflow.exceptions import MlflowException

        self.tracking_uri = tracking_uri
        if tracking_uri.startswith(("http://", "https://")):
            _check_server(tracking_uri)
        self.client = _client(tracking_uri)
        self.fixed_params = dict(fixed_params or {})
        try:
            found = self.client.get_experiment_by_name(experiment)
            if found is None and not create:
                raise RuntimeError(
                    f"The MLflow store at {tracking_uri} has no experiment named {experiment!r}. "
                    "Pass the --home or --tracking-uri that the sweep used."
                )
            if found is None:
                location = (
                    (artifact_root / experiment).resolve().as_uri() if artifact_root else None
                )
                try:
                    self.experiment_id = self.client.create_experiment(
                        experiment, artifact_location=location
                    )
                except MlflowException:  # another worker created it just now
                    found = self.client.get_experiment_by_name(experiment)
                    if found is None:
                        raise
                    self.experiment_id = found.experiment_id
            else:
                self.experiment_id = found.experiment_id
        except MlflowException as exc:
            raise RuntimeError(
                f"The MLflow tracking store at {tracking_uri} refused the request ({exc}). "
                "Check --tracking-uri and that the server is running."
            ) from None
        self.experiment = experiment
        self.parent_id: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-log")
        self._pending: list[Future[None]] = []
        self.errors: list[str] = []
        self.seconds = 0.0  # time the caller spent in tracking calls
        self.background_seconds = 0.0  # time the background thread spent

    # -- the study's run ---------------------------------------------------------------------
    def start_study(self, study_name: str, params: Mapping[str, str], spec_text: str) -> str:
        """Create the study's parent run, or reopen it when the study resumes."""
        t0 = time.perf_counter()
        existing = self.find_study_run(study_name)
        if existing:
            self.parent_id = existing
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id,
                run_name=study_name,
                tags={"softsweep.role": "study", "optuna.study": study_name},
            )
            self.parent_id = run.info.run_id
            oldest = self.find_study_run(study_name)
            if oldest is not None and oldest != self.parent_id:  # another worker was first
                self.client.delete_run(self.parent_id)
                self.parent_id = oldest
                self.client.update_run(self.parent_id, status="RUNNING")
                self.seconds += time.perf_counter() - t0
                return self.parent_id
            from mlflow.entities import Param

            self.client.log_batch(self.parent_id, params=[Param(k, v) for k, v in params.items()])
            if spec_text:
                self.client.log_text(self.parent_id, spec_text, "study.toml")
        self.seconds += time.perf_counter() - t0
        return self.parent_id

    def find_study_run(self, study_name: str) -> str | None:
        """The run id of the study's parent run, if it has one."""
        query = f"tags.`softsweep.role` = 'study' and tags.`optuna.study` = '{study_name}'"
        found = self.client.search_runs(
            [self.experiment_id], query, max_results=1, order_by=["attributes.start_time ASC"]
        )
        return str(found[0].info.run_id) if found else None

    def log_reports(self, folder: Path) -> None:
        """The report's files as artifacts of the study's run, under `reports/`."""
        if self.parent_id is None:
            raise RuntimeError("log_reports needs the study's run (start_study or find_study_run)")
        t0 = time.perf_counter()
        self.client.log_artifacts(self.parent_id, str(folder), artifact_path="reports")
        self.seconds += time.perf_counter() - t0

    def finish_study(self, metrics: Mapping[str, float], tags: Mapping[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        self.flush()
        t0 = time.perf_counter()
        assert self.parent_id is not None
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.parent_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        self.client.set_terminated(self.parent_id, "FINISHED")
        self.seconds += time.perf_counter() - t0

    def end_study_failed(self) -> None:
        if self.parent_id is not None:
            self.flush()
            self.client.set_terminated(self.parent_id, "FAILED")

    # -- trial runs ----------------------------------------------------------------------------
    def start_trial(self, study_name: str, number: int, params: Mapping[str, Any]) -> str:
        """Create a RUNNING child run for trial `number`; returns its run id."""
        t0 = time.perf_counter()
        tags = {
            "softsweep.role": "trial",
            "optuna.study": study_name,
            "optuna.trial": str(number),
        }
        if self.parent_id:
            tags["mlflow.parentRunId"] = self.parent_id
        run = self.client.create_run(
            self.experiment_id, run_name=f"{study_name}-trial-{number}", tags=tags
        )
        self.seconds += time.perf_counter() - t0
        return str(run.info.run_id)

    def finish_trial(self, run_id: str, record: TrialRecord) -> None:
        """Log params, per-epoch metrics, final metrics, status and weights (in the background)."""
        self._pending.append(self._pool.submit(self._finish_trial, run_id, record))

    def _finish_trial(self, run_id: str, record: TrialRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        t0 = time.perf_counter()
        try:
            now = int(time.time() * 1000)
            metrics = [
                Metric(key, float(h[key]), now, epoch)
                for epoch, h in enumerate(record.history, start=1)
                for key in EPOCH_METRICS
            ]
            metrics += [Metric(k, float(v), now, 0) for k, v in record.final.items()]
            params = {**self.fixed_params, **{k: str(v) for k, v in record.params.items()}}
            tags = [RunTag("softsweep.state", record.state)]
            if record.reason:
                tags.append(RunTag("softsweep.fail_reason", record.reason[:5000]))
            self.client.log_batch(
                run_id,
                metrics=metrics,
                params=[Param(k, v) for k, v in params.items()],
                tags=tags,
            )
            if record.weights is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "weights.npy"
                    np.save(path, record.weights)
                    self.client.log_artifact(run_id, str(path))
            self.client.set_terminated(run_id, RUN_STATUS[record.state])
        except Exception as exc:  # tracking must never lose the sweep; report at flush
            self.errors.append(f"trial {record.number}: {type(exc).__name__}: {exc}")
        finally:
            self.background_seconds += time.perf_counter() - t0

    def fail_run(self, run_id: str, reason: str = "") -> None:
        """Close a run as FAILED (its trial was interrupted or its worker died)."""
        try:
            if reason:
                self.client.set_tag(run_id, "softsweep.fail_reason", reason[:5000])
            self.client.set_terminated(run_id, "FAILED")
        except Exception as exc:  # best effort: the run may be gone
            self.errors.append(f"run {run_id}: {type(exc).__name__}: {exc}")

    def flush(self) -> None:
        for future in self._pending:
            future.result()
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._pool.shutdown(wait=True)

    # -- reading back --------------------------------------------------------------------------
    def metric_history(self, run_id: str, key: str) -> list[float]:
        """The values of one metric, ordered by step (the epoch)."""
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

"""The sweep: Optuna's ask/tell loop around `engine.train_many`, every trial an MLflow run.

One round: ask up to `side_by_side` trials, group them by batch size, train each group side by
side, report every epoch's validation accuracy (the pruner may stop a trial), tell the results.
`n_trials` is the target total: running again resumes the study and never re-runs a finished
trial. Diverged trials are FAIL with the reason, and an exception while training a group fails
that group's trials, not the sweep. The test set is used once, for the best trial, at the end.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import Trial, TrialState

import engine

from . import report as reports
from .drawer import ReportDrawer
from .space import distributions, make_pruner, make_sampler
from .spec import StudySpec
from .sqlitestore import check_sqlite_file, sqlite_path
from .tracking import Tracker, TrialRecord, default_tracking_uri
from .workers import (
    DUPLICATE,
    HEARTBEAT_S,
    Heartbeat,
    StaleTrials,
    enqueue_missing,
    make_storage,
    progress,
    worker_name,
)

__all__ = [
    "FINISHED_STATES",
    "StudyOutcome",
    "default_storage",
    "load_study",
    "open_study",
    "prepare_study",
    "report_folder",
    "resolve_home",
    "run_study",
]

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RUN_ID_ATTR = "mlflow_run_id"


def resolve_home(home: str | Path | None, *, create: bool = True) -> Path:
    """--home, else $SOFTSWEEP_HOME, else ./.softsweep; created unless only read from."""
    path = Path(home or os.environ.get("SOFTSWEEP_HOME") or ".softsweep")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def default_storage(home: Path) -> str:
    return f"sqlite:///{home / 'optuna.db'}"


@dataclass
class StudyOutcome:
    study_name: str
    n_complete: int
    n_pruned: int
    n_failed: int
    best_params: dict[str, Any] | None
    best_value: float | None
    best_trial: int | None
    test_accuracy: float | None
    wall_s: float
    trials_this_run: int
    train_s: float = 0.0
    tracking_s: float = 0.0  # time the sweep waited for tracking calls
    tracking_background_s: float = 0.0  # tracking work overlapped with training
    engine_s: float = 0.0  # inside train_many
    storage_s: float = 0.0  # the loop minus training and tracking: Optuna's storage calls
    home: Path | None = None
    storage: str = ""
    tracking_uri: str = ""
    tracking_errors: list[str] = field(default_factory=list)
    best_weights: np.ndarray | None = None
    report_dir: Path | None = None
    report_notes: list[str] = field(default_factory=list)
    finished_study: bool = True  # False when other workers were still running


def _count(study: optuna.Study) -> dict[TrialState, int]:
    """Finished trials by state; grid duplicates (never trained) are not failures."""
    counts: dict[TrialState, int] = defaultdict(int)
    for t in study.get_trials(deepcopy=False, states=FINISHED_STATES):
        if not str(t.user_attrs.get("fail_reason", "")).startswith(DUPLICATE):
            counts[t.state] += 1
    return counts


def open_study(
    spec: StudySpec,
    storage: str,
    *,
    heartbeat_s: int = HEARTBEAT_S,
    on_stale: StaleTrials | None = None,
) -> optuna.Study:
    """Create the study, or join it if it exists (any number of workers may do this at once)."""
    try:
        study = optuna.create_study(
            study_name=spec.name,
            storage=make_storage(storage, heartbeat_s=heartbeat_s, on_stale=on_stale),
            sampler=make_sampler(spec),
            pruner=make_pruner(spec),
            direction="maximize",
            load_if_exists=True,
        )
    except RuntimeError:
        raise  # already one paragraph (check_sqlite_file)
    except ImportError as exc:
        raise RuntimeError(
            f"The Optuna storage {storage} needs a database driver that is not installed ({exc})."
            " For PostgreSQL use a postgresql+psycopg2:// URL (psycopg2-binary comes with "
            "softsweep)."
        ) from None
    except Exception as exc:  # SQLAlchemy's OperationalError and friends
        raise RuntimeError(
            f"Could not open the Optuna storage {storage}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0]}. Check --storage and that the database is "
            "reachable."
        ) from None
    return study


def prepare_study(
    spec: StudySpec, *, home: Path, storage: str | None = None, tracking_uri: str | None = None
) -> int:
    """Create the study, its MLflow experiment and study run, and queue a grid's cells, without
    training: the one-shot step before workers start (`sweep create`). Returns the number of
    cells queued. Safe to repeat."""
    storage = storage or default_storage(home)
    tracking_uri = tracking_uri or default_tracking_uri(home)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    artifact_root = home / "mlartifacts" if tracking_uri.startswith("sqlite:") else None
    tracker = Tracker(tracking_uri, spec.name, artifact_root=artifact_root)
    try:
        study = open_study(spec, storage)
        tracker.start_study(spec.name, spec.as_params(), spec.text)
        now = progress(study, spec.grid_size is not None)
        return enqueue_missing(study, spec, now) if not now.waiting else 0
    finally:
        tracker.close()


def load_study(study_name: str, storage: str) -> optuna.Study:
    """An existing study; a clear error naming the studies there when it does not exist."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = sqlite_path(storage)
    if path is not None and not path.exists():  # reading must not create an empty store
        raise ValueError(
            f"No study named {study_name!r}: there is no Optuna storage at {path}. Pass the "
            "--home (or --storage) that the sweep used, or run `sweep run STUDY.toml` first."
        )
    check_sqlite_file(storage, "Optuna storage", "--storage")
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ValueError(
            f"No study named {study_name!r} in {storage}. Studies there: "
            f"{', '.join(names) if names else 'none'}. Run `sweep run STUDY.toml` first."
        ) from None


def run_study(
    spec: StudySpec,
    *,
    home: Path,
    storage: str | None = None,
    tracking_uri: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Callable[[int, float | None], None] | None = None,
    report: bool = True,
    workers: int = 1,
    heartbeat_s: int = HEARTBEAT_S,
    finish: str = "always",
) -> StudyOutcome:
    """Run (or resume, or join) the study until `spec.n_trials` trials are done, then evaluate
    the best on the test set, draw the report into `<home>/reports/<study>/` (with `report`) and
    close the study's MLflow run.

    `workers` > 1 starts that many `sweep worker` processes on the same stores and waits for
    them. `finish="last"` (what `sweep worker` uses) does the closing steps only if no other
    worker still has trials running; `"never"` skips them. `on_start(done, target)` is called
    once the study is open and `on_progress(done, best_value)` as trials finish.
    """
    started = time.perf_counter()
    # The report's helper process imports its plotting stack now, on the core that importing
    # MLflow and loading the data leave free (see drawer.py). Only where this process surely
    # closes the study: a worker that may not be the last would start one for nothing.
    drawer = ReportDrawer() if report and finish == "always" and workers == 1 else None
    try:
        return _run_study(
            spec, home, storage, tracking_uri, on_start, on_progress, report, workers,
            heartbeat_s, finish, started, drawer,
        )  # fmt: skip
    finally:
        if drawer is not None:
            drawer.close()


def _run_study(
    spec: StudySpec,
    home: Path,
    storage: str | None,
    tracking_uri: str | None,
    on_start: Callable[[int, int], None] | None,
    on_progress: Callable[[int, float | None], None] | None,
    report: bool,
    workers: int,
    heartbeat_s: int,
    finish: str,
    started: float,
    drawer: ReportDrawer | None,
) -> StudyOutcome:
    storage = storage or default_storage(home)
    tracking_uri = tracking_uri or default_tracking_uri(home)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fixed = {
        "epochs": str(spec.epochs),
        "dataset": spec.dataset,
        "loss": spec.loss,
        "seed": str(spec.seed),
        "center": str(spec.center).lower(),
        "sampler": spec.sampler,
        "pruner": spec.pruner,
    }
    artifact_root = home / "mlartifacts" if tracking_uri.startswith("sqlite:") else None
    on_stale = StaleTrials()
    # Importing MLflow and opening its store (~2.5 s of Python on a new store) happen in the
    # tracker's thread while this one opens the study, loads the data (zlib and NumPy, which
    # release the GIL) and trains the first group. A local store or an HTTP server that
    # answered /health is trusted to take the runs; any other store (a database URI) is waited
    # for here, so that it fails before training.
    local_or_probed = tracking_uri.startswith(("sqlite:", "file:", "http://", "https://"))
    tracker = Tracker(
        tracking_uri,
        spec.name,
        artifact_root=artifact_root,
        fixed_params=fixed,
        wait=not local_or_probed,
    )
    try:
        study = open_study(spec, storage, heartbeat_s=heartbeat_s, on_stale=on_stale)
        data = engine.load_dataset(
            spec.dataset,
            data_dir=spec.data_dir,
            val_size=spec.val_size,
            seed=spec.seed,
            center=spec.center,
        )
    except BaseException:
        tracker.abandon()
        raise
    on_stale.close_runs = tracker.fail_trial_runs
    tracker.set_fixed_params({"val_size": str(data.X_val.shape[0])})
    _describe_study(study, spec, data)
    tracker.start_study(spec.name, spec.as_params(), spec.text)

    grid = spec.grid_size is not None
    target = spec.target
    state = _Session(
        spec, grid, grid_cells=spec.learning_rate.values is not None and spec.reg.values is not None
    )
    start = progress(study, grid)
    if on_start is not None:
        on_start(start.done, target)
    state.best_value = (
        study.best_value if any(t.state == TrialState.COMPLETE for t in start.trials) else None
    )
    if grid and not start.waiting:
        enqueue_missing(study, spec, start)  # before any worker asks: no duplicates
    try:
        if workers > 1:
            _run_workers(
                spec,
                workers,
                home,
                storage,
                tracking_uri,
                heartbeat_s,
                study,
                state,
                target,
                on_progress,
            )
        else:
            _work(spec, study, data, tracker, state, target, started, heartbeat_s, on_progress)
    except BaseException:
        _abandon(study, state, tracker)
        if finish == "always":  # a worker leaves the study's run to the workers still going
            tracker.end_study_failed()
        tracker.close()
        raise

    end = progress(study, grid)
    outcome = _outcome(spec, study, state, home, storage, tracking_uri)
    if finish == "never" or (finish == "last" and (end.running or end.waiting)):
        tracker.close()  # other workers are still on it: the last one closes the study
        outcome.finished_study = False
    else:
        _close_study(spec, study, data, tracker, state, outcome, report, home, drawer)
    outcome.tracking_errors = list(tracker.errors)
    outcome.engine_s = state.engine_s
    outcome.storage_s = max(0.0, state.loop_s - state.engine_s - tracker.seconds)
    outcome.wall_s = time.perf_counter() - started
    outcome.tracking_s = tracker.seconds
    outcome.tracking_background_s = tracker.background_seconds
    return outcome


@dataclass
class _Session:
    """What one process keeps while it works on a study."""

    spec: StudySpec
    grid: bool
    grid_cells: bool = False  # lr and reg are lists: the gallery wants every cell's weights
    best_value: float | None = None  # the best so far, for the progress display
    best: tuple[float, int, np.ndarray | None] | None = None  # this session's best trial
    # What the report needs from this session's trials, kept rather than read back from MLflow:
    # each trial's validation curve, and the weights of every cell of a grid.
    histories: dict[int, list[float]] = field(default_factory=dict)
    weights: dict[int, np.ndarray] = field(default_factory=dict)
    asked: list[Trial] = field(default_factory=list)  # failed if this process is interrupted
    creating: dict[int, Future[str]] = field(default_factory=dict)  # trial number -> its run
    trials_run: int = 0
    train_s: float = 0.0  # in _train_group: training, tracking calls, Optuna tells
    engine_s: float = 0.0  # in train_many itself
    loop_s: float = 0.0  # the whole ask / train / tell loop

    def record(
        self, trial: Trial, state: str, value: float | None, weights: Any, curve: Any
    ) -> None:
        self.trials_run += 1
        self.histories[trial.number] = curve
        if state == "COMPLETE" and weights is not None and self.grid_cells:
            self.weights[trial.number] = weights
        if state == "COMPLETE" and value is not None:
            if self.best is None or value > self.best[0]:
                self.best = (value, trial.number, weights)
            self.best_value = value if self.best_value is None else max(self.best_value, value)


def _work(
    spec: StudySpec,
    study: optuna.Study,
    data: engine.Dataset,
    tracker: Tracker,
    state: _Session,
    target: int,
    started: float,
    heartbeat_s: int,
    on_progress: Callable[[int, float | None], None] | None,
) -> None:
    """The ask / train / tell loop of one worker, until the study's target is done."""
    from optuna.storages import fail_stale_trials

    dists = distributions(spec)
    storage = study._storage  # the RDBStorage that open_study made (heartbeats)
    heartbeat = Heartbeat(storage, heartbeat_s)  # type: ignore[arg-type]
    me = worker_name()
    loop_started = time.perf_counter()
    try:
        while True:
            fail_stale_trials(study)  # a dead worker's trials: FAIL, run closed, retried
            now = progress(study, state.grid)
            if on_progress is not None:
                on_progress(now.done, state.best_value)
            if now.done >= target:
                return
            if spec.timeout_s is not None and time.perf_counter() - started > spec.timeout_s:
                return
            if state.grid:  # take queued cells only (asking more would invent duplicates)
                waiting = now.waiting or enqueue_missing(study, spec, now)
                n = min(spec.side_by_side, waiting)
            else:
                n = min(spec.side_by_side, target - now.done - now.running)
            if n <= 0:  # the rest is running in other workers: wait for them (or their death)
                time.sleep(min(2.0, heartbeat_s / 2))
                continue
            trials = [study.ask(dists) for _ in range(n)]
            state.asked, state.creating = trials, {}
            heartbeat.add(t._trial_id for t in trials)
            for trial in trials:
                trial.set_user_attr("worker", me)
            kept = _drop_duplicates(study, trials, state.grid)
            heartbeat.remove(t._trial_id for t in trials if t not in kept)
            trials = kept
            groups: dict[int, list[Trial]] = defaultdict(list)
            for trial in trials:
                groups[int(trial.params["batch_size"])].append(trial)
            for batch_size, group in sorted(groups.items()):
                t0 = time.perf_counter()
                results = _train_group(spec, data, group, batch_size, tracker, state)
                state.train_s += time.perf_counter() - t0
                heartbeat.remove(t._trial_id for t in group)
                for trial, result in zip(group, results, strict=True):
                    state.record(trial, *result)
    finally:
        heartbeat.stop()
        state.loop_s += time.perf_counter() - loop_started


def _drop_duplicates(study: optuna.Study, trials: list[Trial], grid: bool) -> list[Trial]:
    """Grid cells another trial already holds: told FAIL as duplicates, never trained."""
    if not grid:
        return trials
    now = progress(study, grid)
    keep = []
    for trial in trials:
        holder = now.duplicate_of(trial)
        if holder is None:
            keep.append(trial)
        else:
            trial.set_user_attr("fail_reason", f"{DUPLICATE}: trial #{holder} has it")
            study.tell(trial, state=TrialState.FAIL)
    return keep


def _run_workers(
    spec: StudySpec,
    n: int,
    home: Path,
    storage: str,
    tracking_uri: str,
    heartbeat_s: int,
    study: optuna.Study,
    state: _Session,
    target: int,
    on_progress: Callable[[int, float | None], None] | None,
) -> None:
    """`sweep run --workers N`: N `sweep worker` processes on the same stores; this process
    shows the progress and closes the study when they are done."""
    import subprocess
    import sys

    if not spec.source or not Path(spec.source).is_file():
        raise ValueError("--workers needs the study's file: run it as `sweep run FILE.toml`.")
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // n))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)  # N processes share the cores: no oversubscription
    command = [
        sys.executable, "-m", "sweep", "worker", spec.source, "--home", str(home),
        "--storage", storage, "--tracking-uri", tracking_uri,
        "--heartbeat", str(heartbeat_s), "--finish", "never", "--quiet",
    ]  # fmt: skip
    children = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(n)
    ]
    try:
        while any(child.poll() is None for child in children):
            time.sleep(0.5)
            if on_progress is not None:
                now = progress(study, state.grid)
                complete = [
                    float(t.value)
                    for t in now.trials
                    if t.state == TrialState.COMPLETE and t.value is not None
                ]
                on_progress(now.done, max(complete) if complete else None)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            child.wait()
    failed = [c for c in children if c.returncode != 0]
    if failed:
        tail = (failed[0].stderr.read() if failed[0].stderr else b"").decode()[-2000:]
        raise RuntimeError(
            f"{len(failed)} of {n} workers failed (exit code {failed[0].returncode}). "
            f"The first one said: {tail.strip() or '(nothing)'}"
        )
    if progress(study, state.grid).done < target:
        raise RuntimeError(f"The workers stopped before study {spec.name!r} reached its target.")


def _outcome(
    spec: StudySpec,
    study: optuna.Study,
    state: _Session,
    home: Path,
    storage: str,
    tracking_uri: str,
) -> StudyOutcome:
    counts = _count(study)
    return StudyOutcome(
        study_name=spec.name,
        n_complete=counts[TrialState.COMPLETE],
        n_pruned=counts[TrialState.PRUNED],
        n_failed=counts[TrialState.FAIL],
        best_params=None,
        best_value=None,
        best_trial=None,
        test_accuracy=None,
        wall_s=0.0,
        trials_this_run=state.trials_run,
        train_s=state.train_s,
        home=home,
        storage=storage,
        tracking_uri=tracking_uri,
    )


def _close_study(
    spec: StudySpec,
    study: optuna.Study,
    data: engine.Dataset,
    tracker: Tracker,
    state: _Session,
    outcome: StudyOutcome,
    report: bool,
    home: Path,
    drawer: ReportDrawer | None = None,
) -> None:
    """Test-set accuracy of the best trial (once), the report, the study run's last values."""
    if outcome.n_complete:
        best_trial = study.best_trial
        outcome.best_params = dict(best_trial.params)
        outcome.best_value = best_trial.value
        outcome.best_trial = best_trial.number
        best = state.best
        weights = best[2] if best is not None and best[1] == best_trial.number else None
        if weights is None:  # the best trial ran in another session or worker
            run_id = best_trial.user_attrs.get(RUN_ID_ATTR)
            weights = tracker.download_weights(run_id) if run_id else None
        if weights is not None:
            outcome.best_weights = weights
            outcome.test_accuracy = engine.accuracy(weights, data.X_test, data.y_test)
            study.set_user_attr("test_accuracy", outcome.test_accuracy)
            study.set_user_attr("best_trial_for_test", best_trial.number)
            state.weights[best_trial.number] = weights
    if report and (outcome.n_complete or outcome.n_pruned or outcome.n_failed):
        from .studyview import gather

        # This session's weights and curves come from memory, the others' from MLflow
        # (finished runs); this session's runs keep finishing in the tracker's thread meanwhile.
        view = gather(
            study,
            spec,
            tracker,
            weights=state.weights,
            histories=state.histories,
            links=_links(outcome),
        )
        folder = report_folder(home, spec.name)
        if drawer is not None:  # drawn in the helper while this session's runs finish here
            drawer.submit(view, folder)
            tracker.flush()
            written = drawer.result()
        else:
            written = reports.write_report(view, folder)
        tracker.log_reports(written.files)
        outcome.report_dir = written.folder
        outcome.report_notes = written.notes
    summary = {
        "best_val_accuracy": outcome.best_value,
        "test_accuracy": outcome.test_accuracy,
        "n_complete": outcome.n_complete,
        "n_pruned": outcome.n_pruned,
        "n_failed": outcome.n_failed,
    }
    tracker.finish_study(
        {k: v for k, v in summary.items() if v is not None},
        {
            "best_trial": str(outcome.best_trial),
            **{f"best.{k}": str(v) for k, v in (outcome.best_params or {}).items()},
        },
    )
    tracker.close()


def report_folder(home: Path, study_name: str) -> Path:
    return home / "reports" / study_name


def _links(outcome: StudyOutcome) -> dict[str, str]:
    return {"optuna storage": outcome.storage, "mlflow tracking": outcome.tracking_uri}


def _describe_study(study: optuna.Study, spec: StudySpec, data: engine.Dataset) -> None:
    """What a report needs to know about a study later, stored on it once: the study file, the
    data's image shape and class names, and a naive vs vectorized loss timing (~50 ms)."""
    attrs = study.user_attrs
    wanted: dict[str, Any] = {
        "dataset": spec.dataset,
        "image_shape": list(data.image_shape),
        "class_names": list(data.class_names),
    }
    if spec.text:
        wanted["spec_toml"] = spec.text
    if "loss_timing" not in attrs:
        n = min(200, data.X_train.shape[0])
        timing = engine.compare_losses(
            data.X_train[:n], data.y_train[:n], data.n_classes, reg=1e-4, seed=spec.seed
        )
        wanted["loss_timing"] = {
            "n_samples": timing.n_samples,
            "n_features": timing.n_features,
            "n_classes": timing.n_classes,
            "naive_s": timing.naive_s,
            "vectorized_s": timing.vectorized_s,
        }
    for key, value in wanted.items():
        if attrs.get(key) != value:
            study.set_user_attr(key, value)


def _run_id_setter(trial: Trial) -> Callable[[str], None]:
    def put(run_id: str) -> None:
        trial.set_user_attr(RUN_ID_ATTR, run_id)

    return put


def _train_group(
    spec: StudySpec,
    data: engine.Dataset,
    group: list[Trial],
    batch_size: int,
    tracker: Tracker,
    session: _Session | None = None,
) -> list[tuple[str, float | None, np.ndarray | None, list[float]]]:
    """Train one group side by side; tell Optuna and hand each run to the tracker. Returns each
    trial's state, value, weights and validation curve."""
    # The runs are created in the tracker's thread while the group trains; each run's id goes
    # on its trial as soon as it exists (a killed worker's runs can then be closed), and all
    # are there before the trials are told.
    creating = [
        tracker.start_trial(
            spec.name, trial.number, on_created=_run_id_setter(trial), params=trial.params
        )
        for trial in group
    ]
    if session is not None:
        session.creating.update(zip((t.number for t in group), creating, strict=True))
    configs = [(float(t.params["learning_rate"]), float(t.params["reg"])) for t in group]

    def report(epoch: int, per_model: Mapping[int, dict[str, float]]) -> list[int]:
        """Report each model's epoch to its trial; stop those the pruner prunes."""
        stop = []
        for k, metrics in per_model.items():
            group[k].report(metrics["val_accuracy"], epoch)
            if group[k].should_prune():
                stop.append(k)
        return stop

    on_epoch = report if spec.pruner != "none" else None

    t0 = time.perf_counter()
    try:
        if spec.loss == "naive":
            ((lr, reg),) = configs
            results = [
                engine.train(
                    data,
                    learning_rate=lr,
                    reg=reg,
                    batch_size=batch_size,
                    epochs=spec.epochs,
                    seed=spec.seed,
                    loss="naive",
                    on_epoch=(lambda e, m: bool(report(e, {0: m}))) if on_epoch else None,
                )
            ]
        else:
            results = engine.train_many(
                data,
                configs,
                batch_size=batch_size,
                epochs=spec.epochs,
                seed=spec.seed,
                on_epoch=on_epoch,
            )
    except Exception as exc:  # one group's failure fails its trials, not the sweep
        reason = f"training failed: {type(exc).__name__}: {exc}"
        run_ids = tracker.run_ids(creating)
        out: list[tuple[str, float | None, np.ndarray | None, list[float]]] = []
        for trial, run_id in zip(group, run_ids, strict=True):
            trial.set_user_attr("fail_reason", reason)
            trial.study.tell(trial, state=TrialState.FAIL)
            tracker.finish_trial(
                run_id, TrialRecord(trial.number, "FAIL", trial.params, [], reason=reason)
            )
            out.append(("FAIL", None, None, []))
        return out
    group_s = time.perf_counter() - t0
    run_ids = tracker.run_ids(creating)
    if session is not None:
        session.engine_s += group_s

    out = []
    finished: list[tuple[str, TrialRecord]] = []
    for trial, run_id, result in zip(group, run_ids, results, strict=True):
        final = {
            "final_val_accuracy": result.val_accuracy,
            "best_val_accuracy": result.best_val_accuracy,
            "epochs_run": float(len(result.history)),
            "train_time_s": sum(h["epoch_time_s"] for h in result.history),
            "group_time_s": group_s,
            "group_size": float(result.group_size),
        }
        final = {k: v for k, v in final.items() if not math.isnan(v)}
        if result.status == "completed":
            state, value = "COMPLETE", result.val_accuracy
            trial.study.tell(trial, values=[value])
        elif result.status == "stopped":
            state, value = "PRUNED", None
            trial.study.tell(trial, state=TrialState.PRUNED)
        else:
            state, value = "FAIL", None
            trial.set_user_attr("fail_reason", result.reason)
            trial.study.tell(trial, state=TrialState.FAIL)
        finished.append(
            (
                run_id,
                TrialRecord(
                    trial.number,
                    state,
                    trial.params,
                    result.history,
                    final,
                    reason=result.reason,
                    weights=result.weights,
                ),
            )
        )
        curve = [float(h["val_accuracy"]) for h in result.history]
        out.append((state, value, result.weights, curve))
    # Handed to the tracker once every trial is told: its thread would otherwise share the GIL
    # with the tells, and what follows them (the next group, or the report) waits for the tells.
    for run_id, record in finished:
        tracker.finish_trial(run_id, record)
    return out


def _abandon(study: optuna.Study, state: _Session, tracker: Tracker) -> None:
    """On interrupt or crash: this process's unfinished trials become FAIL, their runs FAILED
    (including runs the tracker was still creating)."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for trial in state.asked:
        if trial.number not in running:
            continue
        run_id = None
        creating = state.creating.get(trial.number)
        try:
            if creating is not None:
                run_id = tracker.run_ids([creating])[0]  # its id is on the trial after this
        except Exception:  # the store is what failed: no run to close
            pass
        try:
            trial.set_user_attr("fail_reason", "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            if run_id:
                tracker.fail_run(run_id, "interrupted")
        except Exception:  # best effort while already failing
            pass

"""One study run from start to end: the stores, the data, the loop (or N worker processes), the
closing; how it ended, as data (`StudyResult`; `cli/run.py` renders it as the summary).

    run_study(spec, home)  # `sweep run`, `sweep worker`, and `sweep.run()` from Python

What happens, in order: the tracker's thread starts importing MLflow and opening its store; the
study is created (its data loaded and checked first: data it refuses leaves no study) or joined (a
study with other settings is refused); this process's owner lock is taken; the data is loaded if
trials are left to train (`data.StudyData`: a run that finds its study done reads it only for what
its closing does not find kept); then the loop (`runner.Runner`) or, with `workers` > 1, that many
`sweep worker` processes (`workers.run_workers`); then the closing (`closing.close_study`). Ctrl-C,
SIGTERM and SIGHUP are handled throughout (`signals.Interrupts`): the loop gives its trials in
flight back, and `Interrupted` reaches the caller, which exits 130 / 143 / 129.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage

import engine

from .closing import Closing, close_study
from .data import StudyData
from .runner import LoopResult, OnProgress, Runner
from .signals import Interrupted, Interrupts
from .spec import StudySpec
from .store.home import Home, Owner
from .store.notes import read_notes, write_notes
from .store.study import HEARTBEAT_S, enqueue_missing, open_study, progress, store_lock
from .track.inputs import describe_data, study_file_source
from .track.probes import describe
from .track.sync import records
from .track.tracker import Tracker
from .trial import Outcome

__all__ = ["StudyResult", "prepare_study", "run_study"]

SYNC_WAIT_S = 30.0  # the end of a sweep waits this long for a tracking store that went away


@dataclass
class StudyResult:
    """How a `run_study` call ended: what `sweep run` summarises, `sweep.run` shows."""

    study_name: str
    home: Home
    target: int
    done: int  # trials that count toward the target
    closing: Closing | None  # None: other workers were still on the study
    loop: LoopResult
    wall_s: float = 0.0
    tracking_s: float = 0.0  # time the sweep waited for tracking calls
    tracking_background_s: float = 0.0  # tracking work in the tracker's thread
    tracking_errors: list[str] = field(default_factory=list)
    untracked: int = 0  # finished trials whose runs are not (all) in MLflow: `sweep sync` them
    tracking_down: str = ""  # what the tracking store said last, when it failed
    timeout_s: float = 0.0
    closing_s: float = 0.0  # from the last tell to the end: tracking caught up, test, report

    @property
    def deadline(self) -> bool:
        return self.loop.deadline and self.done < self.target

    @property
    def trials_this_run(self) -> int:
        return len(self.loop.trials)

    def count(self, *outcomes: Outcome) -> int:
        return sum(self.closing.counts[o] for o in outcomes) if self.closing else 0

    @property
    def n_complete(self) -> int:
        return self.count(Outcome.COMPLETE)

    @property
    def n_pruned(self) -> int:
        return self.count(Outcome.PRUNED)

    @property
    def n_failed(self) -> int:
        return self.count(Outcome.DIVERGED, Outcome.ERROR)

    @property
    def test_accuracy(self) -> float | None:
        return self.closing.test_accuracy if self.closing else None

    @property
    def report_dir(self) -> Path | None:
        return self.closing.report_dir if self.closing else None

    @property
    def report_notes(self) -> list[str]:
        return self.closing.report_notes if self.closing else []

    @property
    def storage_s(self) -> float:
        """The loop minus training and tracking waits: Optuna's storage calls, mostly."""
        return max(0.0, self.loop.loop_s - self.loop.engine_s - self.tracking_s)


def _fixed_params(spec: StudySpec, described: Mapping[str, Any]) -> dict[str, str]:
    """The settings every trial run shows besides its own params."""
    return {
        "epochs": str(spec.epochs),
        "dataset": spec.dataset,
        "loss": spec.loss,
        "lr_schedule": spec.lr_schedule.describe(),
        "seed": str(spec.seed),
        "center": str(spec.center).lower(),
        "standardize": str(spec.standardize).lower(),
        "sampler": spec.sampler,
        "pruner": spec.pruner,
        "val_size": str(described["settings"]["val_size"]),
    }


def run_study(
    spec: StudySpec,
    home: Home,
    *,
    workers: int = 1,
    heartbeat_s: int = HEARTBEAT_S,
    finish: str = "always",
    report: bool = True,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: OnProgress | None = None,
) -> StudyResult:
    """Run (or resume, or join) the study until it has `spec.target` trials done, then close
    it. `finish="last"` (what `sweep worker` does) closes it only if no other process still has
    trials of it running or waiting; `"never"` does not close it."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Importing MLflow and opening its store (~2 s of Python) happen in the tracker's thread
    # while this one loads the data and opens the study. A local store or an HTTP server that
    # answered /health is trusted to take the runs; a database URI is waited for here, so that
    # it fails before training.
    local_or_probed = home.tracking_uri.startswith(("sqlite:", "file:", "http://", "https://"))
    tracker = Tracker(
        home.tracking_uri,
        spec.name,
        artifact_root=home.artifact_root,
        wait=not local_or_probed,
        repair_lock=lambda: store_lock(home.storage, "repair"),
    )
    owner: Owner | None = None
    warming: threading.Thread | None = None
    # The cleanup after a signal runs under the handlers too: a second Ctrl-C does not cut it
    # short, and waits on a database that stopped answering know the sweep is stopping.
    with Interrupts() as interrupts:
        try:
            data = StudyData(spec)  # loaded when first needed: a finished study may not
            study, storage = open_study(
                spec, home, heartbeat_s=heartbeat_s, close_run=tracker.fail_trial_runs,
                before_create=data,  # bad data fails here, before a study exists
            )  # fmt: skip
            owner = Owner(home)
            grid = spec.grid_size is not None
            now = progress(study, grid)
            # A run with trials to train reads the data now (and describes it again); one that
            # finds the study done keeps the description an earlier run stored.
            described = _describe(study, storage, spec, data if now.done < spec.target else None)
            tracker.set_fixed_params(_fixed_params(spec, described), described)
            tracker.start_study(spec.name, spec.as_params(), spec.text)
            # Runs a killed process (or a tracking server that was down) left behind.
            tracker.sync_in_background(spec.name, records(study, home, owner.name))
            if on_start is not None:
                on_start(now.done, spec.target)
            if grid and not now.waiting:
                enqueue_missing(study, spec, now)  # before any worker asks: no duplicates
            if now.done < spec.target and finish != "never":  # a closing registers a model:
                tracker.prepare_model()  # its environment check meanwhile
            if report and now.done < spec.target:  # the closing draws: its imports meanwhile
                from .report.figures import warm_up

                warming = threading.Thread(target=warm_up, name="softsweep-warm-up", daemon=True)
                warming.start()
            if workers > 1:
                from .workers import run_workers

                lost = run_workers(spec, home, workers, heartbeat_s, study, on_progress)
                loop = LoopResult(warnings=lost)
            else:
                loop = Runner(
                        spec, study, storage, data, tracker, owner, interrupts,
                        embedded=home.embedded_storage, heartbeat_s=heartbeat_s,
                        on_progress=on_progress,
                    ).run()  # fmt: skip
            end = progress(study, grid)
            outcome = StudyResult(spec.name, home, spec.target, end.done, None, loop)
            outcome.timeout_s = spec.timeout_s or 0.0
            closing_started = time.perf_counter()

            def say(what: str) -> None:  # the bar shows what the end of the sweep is doing
                if on_progress is not None:
                    on_progress(end.done, end.best_value, what, 0)

            say("waiting for tracking to catch up")
            tracker.flush()
            finished = records(study, home, owner.name)
            if tracker.sync(spec.name, finished, wait=SYNC_WAIT_S) is None:
                outcome.untracked = len(tracker.untracked) or len(finished)
                outcome.tracking_down = tracker.down or (tracker.errors or ["no answer"])[-1]
            if warming is not None:  # (the closing needs those imports: no time lost)
                warming.join()
            others = end.running or (end.waiting and not loop.deadline)
            if finish == "always" or (finish == "last" and not others):
                stopped = (
                    f"stopped at its deadline (timeout_s={spec.timeout_s:g}) with {end.done} "
                    f"of {spec.target} trials done"
                    if outcome.deadline
                    else ""
                )
                outcome.closing = close_study(
                    spec, study, home, data, tracker, loop, report=report, stopped=stopped,
                    say=say,
                )  # fmt: skip
            tracker.close()
            outcome.closing_s = time.perf_counter() - closing_started
        except BaseException as exc:
            if warming is not None and not isinstance(exc, Interrupted | KeyboardInterrupt):
                warming.join(timeout=10)  # no thread outlives the call (sweep.run in a notebook)
            # The study's run ends with the sweep, unless other workers may still be on the study.
            if finish == "always":
                tracker.end_study(
                    "KILLED" if isinstance(exc, Interrupted) else "FAILED", timeout=10
                )
            tracker.abandon()
            if isinstance(exc, KeyError) and "does not exist" in str(exc):
                raise RuntimeError(
                    f"The study {spec.name!r} is gone from {home.shown_storage}: it was deleted "
                    "while this sweep ran (`sweep delete --force`, or a script). This sweep "
                    "stopped; `sweep run` with the study file would start it afresh."
                ) from None
            if isinstance(exc, StorageInternalError):  # the database went away, or its disk is full
                raise RuntimeError(
                    f"The Optuna storage failed ({describe(exc.__cause__ or exc)}). Nothing "
                    "told is lost: once the database is reachable (or its disk has room), run "
                    "the same command again and it finishes the study."
                ) from None
            raise
        finally:
            if owner is not None:
                owner.close()
    outcome.wall_s = time.perf_counter() - started
    outcome.tracking_s = tracker.seconds
    outcome.tracking_background_s = tracker.background_seconds
    outcome.tracking_errors = list(tracker.errors)
    return outcome


def prepare_study(spec: StudySpec, home: Home) -> int:
    """Create the study, its MLflow experiment and study run, and queue a grid's cells,
    without training: the one-shot step before workers start (`sweep create`). Returns the
    number of cells queued. Safe to repeat."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = StudyData(spec)
    data()  # data that `sweep run` would refuse (a val_size past it) is refused now
    tracker = Tracker(
        home.tracking_uri,
        spec.name,
        artifact_root=home.artifact_root,
        repair_lock=lambda: store_lock(home.storage, "repair"),
    )
    try:
        study, storage = open_study(spec, home)
        described = _describe(study, storage, spec, data)
        tracker.set_fixed_params(_fixed_params(spec, described), described)
        tracker.start_study(spec.name, spec.as_params(), spec.text)
        now = progress(study, spec.grid_size is not None)
        return enqueue_missing(study, spec, now) if not now.waiting else 0
    finally:
        tracker.close()


def _describe(
    study: optuna.Study, storage: RDBStorage, spec: StudySpec, data: StudyData | None
) -> dict[str, Any]:
    """What a report or a repair needs to know about a study later, stored on it: the study
    file, the data's image shape and class names, the data as its MLflow runs show it (returned
    too), and the naive vs vectorized timings (~1 s, once); the dataset's name is the one user
    attribute `optuna studies` shows. `data` None: the description an earlier run stored stands
    (only the study file's place is updated), and no data is read."""
    if study.user_attrs.get("dataset") != spec.dataset:
        study.set_user_attr("dataset", spec.dataset)
    stored = read_notes(study, storage)
    notes: dict[str, object] = {}
    if spec.text and stored.get("spec_toml") != spec.text:
        notes["spec_toml"] = spec.text
    if data is None and stored.get("data") and "loss_timing" in stored:
        described = {**stored["data"], "source": study_file_source(spec.source)}
        if described != stored["data"]:
            notes["data"] = described
    else:
        dataset = (data or StudyData(spec))()
        described = describe_data(
            dataset,
            study_file=spec.source,
            val_size=int(dataset.X_val.shape[0]),
            split_seed=spec.data_seed,
            preprocessing=spec.preprocessing,
        )
        notes["image_shape"] = list(dataset.image_shape)
        notes["class_names"] = list(dataset.class_names)
        notes["data"] = described
        if "loss_timing" not in stored:
            notes["loss_timing"] = _timing(dataset, spec.seed)
    if notes:
        write_notes(study, storage, notes)
    return described


def _timing(data: engine.Dataset, seed: int) -> dict[str, object]:
    """What the report's timing figure draws: loss + gradient on 200 examples (naive loop vs
    vectorized) and one SGD epoch on 1000 (per-sample loop vs matrix kernel), every run kept."""
    n = min(200, data.X_train.shape[0])
    loss = engine.compare_losses(
        data.X_train[:n], data.y_train[:n], data.n_classes, reg=1e-4, seed=seed, repeats=5
    )
    epoch = engine.compare_training(data, n_samples=min(1000, data.X_train.shape[0]), seed=seed)

    def runs(timed: engine.Timed) -> list[float]:
        return [float(f"{t:.4g}") for t in timed.runs]

    return {
        "n_samples": loss.n_samples,
        "n_features": loss.n_features,
        "n_classes": loss.n_classes,
        "threads": engine.blas_threads(),
        "naive_runs": runs(loss.naive),
        "vectorized_runs": runs(loss.vectorized),
        "train": {
            "n_samples": epoch.n_samples,
            "batch_size": epoch.batch_size,
            "loop_runs": runs(epoch.loop),
            "matrix_runs": runs(epoch.matrix),
            "loop_val_accuracy": round(epoch.loop_val_accuracy, 4),
            "matrix_val_accuracy": round(epoch.matrix_val_accuracy, 4),
        },
    }

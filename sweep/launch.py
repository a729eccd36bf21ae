"""A sweep from start to end: the stores, the data, the loop (or N worker processes), the closing.

    run_study(spec, home)  # `sweep run`, `sweep worker`, and `sweep.run()` from Python

What happens, in order: the tracker's thread starts importing MLflow and opening its store; the
data is loaded and checked (before anything is written to a store); the study is created or
joined (a study with other settings is refused); this process's owner lock is taken; then the
loop (`runner.Runner`) or, with `workers` > 1, that many `sweep worker` processes
(`processes.run_workers`); then the closing (`closing.close_study`). Ctrl-C, SIGTERM and
SIGHUP are handled throughout (`lifecycle.Interrupts`): the loop tells its trials in flight
FAIL(interrupted), and `Interrupted` reaches the caller, which exits 130 / 143 / 129.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage

import engine

from .closing import Closing, close_study
from .home import Home, Owner
from .lifecycle import Interrupted, Interrupts, Outcome
from .notes import read_notes, write_notes
from .runner import OnProgress, Runner, Session
from .spec import StudySpec
from .study import HEARTBEAT_S, enqueue_missing, open_study, progress
from .sync import load_data, records
from .tracker import Tracker, describe

__all__ = ["StudyOutcome", "prepare_study", "run_study"]

EXIT_FAILURE = 1
EXIT_DEADLINE = 124  # as timeout(1): the study stopped at its timeout_s, short of n_trials
SYNC_WAIT_S = 30.0  # the end of a sweep waits this long for a tracking store that went away


@dataclass
class StudyOutcome:
    """How a `run_study` call ended (the summary `sweep run` prints)."""

    study_name: str
    home: Home
    target: int
    done: int  # trials that count toward the target
    closing: Closing | None  # None: other workers were still on the study
    session: Session
    wall_s: float = 0.0
    tracking_s: float = 0.0  # time the sweep waited for tracking calls
    tracking_background_s: float = 0.0  # tracking work in the tracker's thread
    tracking_errors: list[str] = field(default_factory=list)
    untracked: int = 0  # finished trials whose runs are not (all) in MLflow: `sweep sync` them
    tracking_down: str = ""  # what the tracking store said last, when it failed
    timeout_s: float = 0.0

    @property
    def deadline(self) -> bool:
        return self.session.deadline and self.done < self.target

    @property
    def trials_this_run(self) -> int:
        return len(self.session.trials)

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
        return max(0.0, self.session.loop_s - self.session.engine_s - self.tracking_s)

    def problem(self, study_file: str) -> tuple[str, int] | None:
        """What `sweep run` says when the study did not end well, and its exit code."""
        name = self.study_name
        if self.untracked:
            return (
                f"{self.untracked} finished trials of study {name!r} are not (all) in MLflow: "
                f"the tracking store {self.home.shown_tracking_uri} failed ({self.tracking_down}). "
                "Their results are safe in Optuna; once the store is back, `sweep sync "
                f"{name}` (with the same --home, --storage and --tracking-uri) writes them.",
                EXIT_FAILURE,
            )
        if self.deadline:
            return (
                f"study {name!r} stopped at its deadline (timeout_s = {self.timeout_s:g} s) with "
                f"{self.done} of {self.target} trials done. Run `sweep run {study_file}` again "
                "to continue it, or raise timeout_s.",
                EXIT_DEADLINE,
            )
        if self.closing is not None and self.n_complete == 0:
            return (
                f"study {name!r} has no completed trial; see `sweep runs {name}` for the "
                "failure reasons.",
                EXIT_FAILURE,
            )
        return None

    def summary(self, verbose: bool = False) -> str:
        """What `sweep run` prints at the end: the result first, then where things are; with
        `verbose`, where the sweep's time went too."""
        closing = self.closing
        if closing is None:
            return (
                f"worker done: {self.trials_this_run} trials run here; other workers are still "
                f"on study {self.study_name!r}, and the last one closes it."
            )
        rows = [["study", self.study_name]]
        if closing.best_params:
            p = closing.best_params
            rows += [
                [
                    "best trial",
                    f"#{closing.best_trial}: learning_rate={p['learning_rate']:.4g}, "
                    f"reg={p['reg']:.4g}, batch_size={p['batch_size']}",
                ],
                ["validation accuracy", f"{closing.best_value:.4f}"],
                [
                    "test accuracy",
                    "n/a (weights not found)"
                    if closing.test_accuracy is None
                    else f"{closing.test_accuracy:.4f} ({_test_uses(closing)})",
                ],
            ]
        n_track = self.trials_this_run
        interrupted = closing.counts[Outcome.INTERRUPTED]
        rows += [
            [
                "trials",
                f"{self.n_complete} completed, {self.n_pruned} pruned, "
                f"{self.n_failed} failed ({n_track} run now"
                + (f"; {interrupted} interrupted and run again" if interrupted else "")
                + ")",
            ],
        ]
        if self.deadline:
            rows.append(["stopped", f"at its deadline: {self.done} of {self.target} trials"])
        rows.append(["wall time", f"{self.wall_s:.1f} s (training {self.session.train_s:.1f} s)"])
        timing = [
            [
                "tracking",
                f"{self.tracking_s / n_track * 1e3:.1f} ms/trial waited, "
                f"{self.tracking_background_s / n_track * 1e3:.1f} ms/trial in background"
                if n_track
                else "n/a (no trial run now)",
            ],
            [
                "optuna calls",
                f"{self.storage_s / n_track * 1e3:.1f} ms/trial waited"
                if n_track
                else "n/a (no trial run now)",
            ],
        ]
        rows += timing if verbose else []
        rows += [
            ["optuna storage", self.home.shown_storage],
            ["mlflow tracking", self.home.shown_tracking_uri],
        ]
        if closing.report_dir is not None:
            rows.append(["report", str(closing.report_dir / "index.html")])
        home = self.home
        where = f"--home {home.folder}"
        if not home.embedded_storage:
            where += f" --storage {home.shown_storage}"
        if not home.embedded_tracking:
            where += f" --tracking-uri {home.shown_tracking_uri}"
        rows.append(["runs table", f"sweep runs {self.study_name} {where}"])
        if home.tracking_uri.startswith(("http://", "https://")):  # the server is the UI
            rows.append(["mlflow ui", home.shown_tracking_uri])
        else:
            rows.append(["mlflow ui", f"sweep ui --home {home.folder}"])
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _test_uses(closing: Closing) -> str:
    uses = closing.test_evaluations
    if len(uses) <= 1:
        return "best trial only, evaluated once"
    trials = ", ".join(f"#{n}" for n, _ in uses)
    return f"best trial; the test set has now been used {len(uses)} times: {trials}"


def _fixed_params(spec: StudySpec, data: engine.Dataset) -> dict[str, str]:
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
        "val_size": str(data.X_val.shape[0]),
    }


def _load_data(spec: StudySpec) -> engine.Dataset:
    """The study's data, checked against the study (before a study exists in the stores)."""
    data = load_data(spec)
    n = data.X_train.shape[0]
    if max(spec.batch_size) > n:
        raise ValueError(
            f"{spec.source}: [space] batch_size must be at most the training split's size, got "
            f"{max(spec.batch_size)}, and {spec.dataset} leaves {n} training examples (after "
            f"the {data.X_val.shape[0]} of the validation split). Use smaller batch sizes."
        )
    return data


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
) -> StudyOutcome:
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
    )
    owner: Owner | None = None
    try:
        with Interrupts() as interrupts:
            data = _load_data(spec)  # bad data fails here, before a study exists
            study, storage = open_study(
                spec, home, heartbeat_s=heartbeat_s, close_run=tracker.fail_trial_runs
            )
            owner = Owner(home)
            _describe(study, storage, spec, data)
            tracker.set_fixed_params(_fixed_params(spec, data))
            tracker.start_study(spec.name, spec.as_params(), spec.text)
            # Runs a killed process (or a tracking server that was down) left behind.
            tracker.sync_in_background(spec.name, records(study))
            grid = spec.grid_size is not None
            now = progress(study, grid)
            if on_start is not None:
                on_start(now.done, spec.target)
            if grid and not now.waiting:
                enqueue_missing(study, spec, now)  # before any worker asks: no duplicates
            if workers > 1:
                from .processes import run_workers

                lost = run_workers(spec, home, workers, heartbeat_s, study, on_progress)
                session = Session(warnings=lost)
            else:
                session = Runner(
                    spec, study, storage, data, tracker, owner, interrupts,
                    embedded=home.embedded_storage, heartbeat_s=heartbeat_s,
                    on_progress=on_progress,
                ).run()  # fmt: skip
            end = progress(study, grid)
            outcome = StudyOutcome(spec.name, home, spec.target, end.done, None, session)
            outcome.timeout_s = spec.timeout_s or 0.0
            tracker.flush()
            finished = records(study)
            if tracker.sync(spec.name, finished, wait=SYNC_WAIT_S) is None:
                outcome.untracked = len(tracker.untracked) or len(finished)
                outcome.tracking_down = tracker.down or (tracker.errors or ["no answer"])[-1]
            if on_progress is not None:
                on_progress(end.done, end.best_value, "", 0)
            others = end.running or (end.waiting and not session.deadline)
            if finish == "always" or (finish == "last" and not others):
                stopped = (
                    f"stopped at its deadline (timeout_s={spec.timeout_s:g}) with {end.done} "
                    f"of {spec.target} trials done"
                    if outcome.deadline
                    else ""
                )
                outcome.closing = close_study(
                    spec, study, home, data, tracker, session, report=report, stopped=stopped
                )
            tracker.close()
    except Interrupted:
        if finish == "always":  # a worker leaves the study's run to the processes still going
            tracker.end_study("KILLED", timeout=10)
        tracker.abandon()
        raise
    except StorageInternalError as exc:  # the database went away, or its disk is full
        if finish == "always":
            tracker.end_study("FAILED", timeout=10)
        tracker.abandon()
        raise RuntimeError(
            f"The Optuna storage failed ({describe(exc.__cause__ or exc)}). Nothing told is "
            "lost: once the database is reachable (or its disk has room), run the same "
            "command again and it finishes the study."
        ) from None
    except BaseException:
        if finish == "always":
            tracker.end_study("FAILED", timeout=10)
        tracker.abandon()
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
    tracker = Tracker(home.tracking_uri, spec.name, artifact_root=home.artifact_root)
    try:
        study, storage = open_study(spec, home)
        if spec.text:
            write_notes(study, storage, {"spec_toml": spec.text})
        tracker.start_study(spec.name, spec.as_params(), spec.text)
        now = progress(study, spec.grid_size is not None)
        return enqueue_missing(study, spec, now) if not now.waiting else 0
    finally:
        tracker.close()


def _describe(
    study: optuna.Study, storage: RDBStorage, spec: StudySpec, data: engine.Dataset
) -> None:
    """What a report needs to know about a study later, stored on it: the study file, the
    data's image shape and class names, and the naive vs vectorized timings (~1 s, once);
    the dataset's name is the one user attribute `optuna studies` shows."""
    if study.user_attrs.get("dataset") != spec.dataset:
        study.set_user_attr("dataset", spec.dataset)
    notes: dict[str, object] = {
        "image_shape": list(data.image_shape),
        "class_names": list(data.class_names),
    }
    if spec.text:
        notes["spec_toml"] = spec.text
    if "loss_timing" not in read_notes(study, storage):
        notes["loss_timing"] = _timing(data, spec.seed)
    write_notes(study, storage, notes)


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

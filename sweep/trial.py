"""The one vocabulary of a trial: how it ends, what it tried, what it learned, and what its MLflow
run is written from. Every other module reads and writes trials through these names.

    asked ──register──> training ──tell──> COMPLETE | PRUNED | FAIL(diverged | error |
                                                           interrupted | duplicate)

- asked + registered (runner, one step that no signal splits): Optuna's `ask` makes the trial
  RUNNING; registering records its first heartbeat and its owner (`OWNER_ATTR`: this process,
  `store.home.Owner`). A trial RUNNING without an owner was asked by a process that died before
  registering it: `store.study.reclaim` takes it back.
- training (runner): the trial's group trains in `engine.train_many`; its MLflow run exists
  (RUNNING, with its params) and its heartbeat is kept by `store.study.Heartbeat`.
- told (`tell`): the outcome goes on the trial as the user attribute `outcome` (plus
  `fail_reason`), with its per-epoch `History`, and Optuna is told the state. Nothing reads the
  reason's text to decide anything.
- given back (`give_back`): a trial that did not finish for a reason that is not its own (Ctrl-C,
  a deadline, a dead process, a database restart) is told FAIL(interrupted) and its params are
  queued again, up to MAX_RETRY times. The runner and reclaim both use this one step.

Each `Outcome` maps once to the Optuna state, the MLflow run status and the report's cell, and
says whether it counts toward the study's target (`done`): an interrupted trial does not (it is
run again), a diverged one does (it is a result).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from .space import distributions
from .spec import PARAMS, StudySpec

if TYPE_CHECKING:
    import engine

__all__ = [
    "CHARTED",
    "EPOCH_METRICS",
    "HISTORY_ATTR",
    "L2_TERM",
    "MAX_RETRY",
    "OUTCOME_ATTR",
    "OWNER_ATTR",
    "REASON_ATTR",
    "REFIT_ATTR",
    "RUNNER_UP_ATTR",
    "RUN_ID_ATTR",
    "SCORES_ATTR",
    "TESTED_ATTR",
    "History",
    "Outcome",
    "Params",
    "TrialRecord",
    "give_back",
    "outcome_of",
    "queue",
    "record_of",
    "tell",
    "test_evaluations",
    "training_outcome",
]

# -- the trial's attributes in Optuna ----------------------------------------------------------
OUTCOME_ATTR = "outcome"
REASON_ATTR = "fail_reason"
RUN_ID_ATTR = "mlflow_run_id"
OWNER_ATTR = "worker"  # the process that holds the trial: "host:pid"
# {metric: [value per epoch], "group": [models trained side by side, seconds the group took]}
HISTORY_ATTR = "history"
# On the study: [[trial, test accuracy], ...], each time the test set was used, in order. A
# study tests its best trial once; a resumed study that finds a new best tests that one too,
# and the count says the test set has been looked at more than once.
TESTED_ATTR = "test_evaluations"
# In the study's notes (`store/notes.py`, not its user attributes): the tested trial's scores
# from its one evaluation ({"trial", "n", "correct", "nll", "ece", "temperature", "nll_scaled",
# "ece_scaled"}; the temperature fitted on validation), the best trial against the runner-up on
# validation (McNemar's paired test), and the best setting trained again on train + validation
# and tested ([train] refit).
SCORES_ATTR = "test_scores"
RUNNER_UP_ATTR = "runner_up"
REFIT_ATTR = "refit"
MAX_RETRY = 3  # an interrupted trial's params are queued again at most this many times

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_accuracy", "epoch_time_s")
# reg * sum(W ** 2) at the epoch's end: train_loss is the epoch's mean data loss plus this (kept
# since the regularization path; a trial from before has none, and its history still reads)
L2_TERM = "l2_term"
CHARTED = EPOCH_METRICS[:3]  # the per-epoch metrics a run charts (an epoch's time stays in Optuna)


# -- outcomes ----------------------------------------------------------------------------------
class Outcome(enum.Enum):
    """How a trial ended: (label, Optuna state, MLflow run status, counts as done)."""

    COMPLETE = ("complete", TrialState.COMPLETE, "FINISHED", True)
    PRUNED = ("pruned", TrialState.PRUNED, "KILLED", True)
    DIVERGED = ("diverged", TrialState.FAIL, "FAILED", True)
    ERROR = ("error", TrialState.FAIL, "FAILED", True)
    INTERRUPTED = ("interrupted", TrialState.FAIL, "FAILED", False)
    DUPLICATE = ("duplicate", TrialState.FAIL, "FAILED", False)

    def __init__(self, label: str, state: TrialState, run_status: str, done: bool) -> None:
        self.label = label  # the report's cell, the `outcome` attribute, the pandas column
        self.state = state
        self.run_status = run_status
        self.done = done

    @classmethod
    def from_label(cls, label: str) -> Outcome:
        for outcome in cls:
            if outcome.label == label:
                return outcome
        raise ValueError(f"outcome must be one of {[o.label for o in cls]}, got {label!r}.")


def outcome_of(trial: FrozenTrial) -> Outcome | None:
    """A finished trial's outcome; None while it is WAITING or RUNNING."""
    if trial.state == TrialState.COMPLETE:
        return Outcome.COMPLETE
    if trial.state == TrialState.PRUNED:
        return Outcome.PRUNED
    if trial.state == TrialState.FAIL:
        label = trial.user_attrs.get(OUTCOME_ATTR)
        # A FAIL without our attribute was failed by Optuna itself (a stale heartbeat) or by
        # another tool: the trial did not finish, so it is run again.
        return Outcome.from_label(label) if label else Outcome.INTERRUPTED
    return None


def training_outcome(
    result: engine.TrainResult | None,
    error: str,
    *,
    pruned: bool,
    cut: bool,
    timeout_s: float | None,
) -> tuple[Outcome, float | None, str]:
    """What one model's training came to -> (outcome, value, reason). `result` is None when its
    group's training raised (`error` says what); `pruned`: the pruner stopped it; `cut`: the
    session's deadline (`timeout_s`) stopped it."""
    if result is None:
        return Outcome.ERROR, None, error
    if result.status == "completed":
        return Outcome.COMPLETE, result.val_accuracy, ""
    if result.status == "diverged":
        return Outcome.DIVERGED, None, result.reason
    if pruned:
        return Outcome.PRUNED, None, f"pruned after epoch {result.end_epoch}"
    if cut:
        reason = (
            f"interrupted: stopped at the study's deadline (timeout_s={timeout_s or 0:g}) after "
            f"epoch {result.end_epoch}"
        )
        return Outcome.INTERRUPTED, None, reason
    return Outcome.INTERRUPTED, None, f"interrupted: {result.reason}"


def test_evaluations(study_attrs: Mapping[str, Any]) -> list[tuple[int, float]]:
    """(trial, test accuracy) for each use of the test set, oldest first (studies from before
    TESTED_ATTR kept one pair as two attributes)."""
    pairs = study_attrs.get(TESTED_ATTR)
    if pairs is None and "best_trial_for_test" in study_attrs:
        pairs = [[study_attrs["best_trial_for_test"], study_attrs.get("test_accuracy")]]
    return [(int(n), float(a)) for n, a in pairs or [] if a is not None]


# -- what a trial tried --------------------------------------------------------------------------
@dataclass(frozen=True)
class Params:
    """A trial's searched parameters, typed: also its grid cell (hashable, exact floats)."""

    learning_rate: float
    reg: float
    batch_size: int

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Params | None:
        """From Optuna's (or MLflow's string) params; None while a trial is still being asked
        (it has not all of them yet)."""
        if not all(k in params for k in PARAMS):
            return None
        return cls(float(params["learning_rate"]), float(params["reg"]), int(params["batch_size"]))

    def as_dict(self) -> dict[str, float | int]:
        return {"learning_rate": self.learning_rate, "reg": self.reg, "batch_size": self.batch_size}

    def describe(self) -> str:
        return f"lr={self.learning_rate:.3g} reg={self.reg:.3g} batch={self.batch_size}"


# -- what a trial learned, epoch by epoch --------------------------------------------------------
@dataclass(frozen=True)
class History:
    """A trial's per-epoch metrics (`EPOCH_METRICS` each epoch) and the group it trained in: what
    the trial keeps on itself in Optuna (`HISTORY_ATTR`), so that its run, the report and the
    DataFrames can always be rebuilt from Optuna alone."""

    epochs: tuple[Mapping[str, float], ...] = ()
    group_size: int | None = None  # models trained side by side with it
    group_time_s: float | None = None  # the group's wall time

    @classmethod
    def of(cls, trial: FrozenTrial) -> History:
        """Read from a trial (an empty history for one that never trained)."""
        stored: Mapping[str, Any] = trial.user_attrs.get(HISTORY_ATTR) or {}
        n = len(stored.get("val_accuracy") or [])
        l2 = stored.get(L2_TERM) or []
        epochs = tuple(
            {key: float(stored[key][e]) for key in EPOCH_METRICS}
            | ({L2_TERM: float(l2[e])} if len(l2) == n else {})
            for e in range(n)
            if all(key in stored and e < len(stored[key]) for key in EPOCH_METRICS)
        )
        group = stored.get("group") or []
        if len(group) == 2:
            return cls(epochs, int(group[0]), float(group[1]))
        return cls(epochs)

    def attr(self) -> dict[str, list[float]]:
        """The one small JSON value kept on the trial: {metric: [per epoch], "group": [...]}."""
        stored: dict[str, list[float]] = {
            key: [round(float(h[key]), 7) for h in self.epochs] for key in EPOCH_METRICS
        }
        if self.epochs and all(L2_TERM in h for h in self.epochs):
            stored[L2_TERM] = [float(f"{h[L2_TERM]:.7g}") for h in self.epochs]
        if self.group_size is not None and self.group_time_s is not None:
            stored["group"] = [self.group_size, round(self.group_time_s, 4)]
        return stored

    def series(self, key: str) -> list[float]:
        return [float(h[key]) for h in self.epochs]

    def last(self, key: str) -> float | None:
        """The last epoch's `key`, or None (no epoch, or a metric kept only since, as l2_term)."""
        value = self.epochs[-1].get(key) if self.epochs else None
        return None if value is None else float(value)

    @property
    def best_val_accuracy(self) -> float | None:
        return max(self.series("val_accuracy")) if self.epochs else None

    @property
    def train_time_s(self) -> float | None:
        """Its own training time: each epoch's wall time over the models trained in it."""
        return sum(self.series("epoch_time_s")) if self.epochs else None


# -- what its MLflow run is written from ---------------------------------------------------------
@dataclass
class TrialRecord:
    """What one finished trial leaves in its MLflow run."""

    number: int
    outcome: Outcome
    params: Mapping[str, Any]
    history: History
    reason: str = ""
    weights: np.ndarray | None = None
    ended_ms: int | None = None  # when the trial was told (now, if None)
    epoch_ms: Sequence[int] = ()  # when each epoch ended (the metrics' timestamps)

    @property
    def final(self) -> dict[str, float]:
        """The run's one-value metric: the best epoch's validation accuracy."""
        best = self.history.best_val_accuracy
        return {} if best is None else {"best_val_accuracy": best}

    @property
    def info(self) -> dict[str, str]:
        """Its bookkeeping, as tags (not charted metrics): epochs run, its training time, the
        group's size and wall time."""
        history = self.history
        info = {"softsweep.epochs_run": str(len(history.epochs))}
        if history.train_time_s is not None:
            info["softsweep.train_time_s"] = f"{history.train_time_s:.4g}"
        if history.group_size is not None and history.group_time_s is not None:
            info["softsweep.group_size"] = str(history.group_size)
            info["softsweep.group_time_s"] = f"{history.group_time_s:.4g}"
        return info


def record_of(trial: FrozenTrial) -> TrialRecord | None:
    """What the trial's run should hold, from Optuna alone; None while it runs, or for a
    duplicate (never trained: no run)."""
    outcome = outcome_of(trial)
    if outcome is None or outcome is Outcome.DUPLICATE:
        return None
    ended = trial.datetime_complete or trial.datetime_start
    return TrialRecord(
        trial.number,
        outcome,
        dict(trial.params),
        History.of(trial),
        reason=str(trial.user_attrs.get(REASON_ATTR, "")),
        ended_ms=int(ended.timestamp() * 1000) if ended else None,
    )


# -- telling, queueing, giving back --------------------------------------------------------------
def tell(trial: Trial, outcome: Outcome, value: float | None = None, reason: str = "") -> None:
    """Tell Optuna how `trial` (held by this process) ended, with the outcome (and reason) on the
    trial first."""
    trial.set_user_attr(OUTCOME_ATTR, outcome.label)
    if reason:
        trial.set_user_attr(REASON_ATTR, reason)
    if outcome is Outcome.COMPLETE:
        trial.study.tell(trial, values=value)
    else:
        trial.study.tell(trial, state=outcome.state)


def queue(
    study: optuna.Study,
    spec: StudySpec,
    params: Params,
    system_attrs: Mapping[str, Any] | None = None,
) -> None:
    """A WAITING trial that holds its params (Optuna's trial queue: visible to every worker's
    progress count, handed to exactly one of them)."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=params.as_dict(),
            distributions=distributions(spec),
            system_attrs=dict(system_attrs or {}),
        )
    )


def give_back(
    storage: BaseStorage,
    study: optuna.Study,
    spec: StudySpec,
    number: int,
    reason: str,
    *,
    run_id: str | None = None,
) -> bool:
    """The one "fail as interrupted, queue again" step, for a trial of this process or of a dead
    one: the trial is told FAIL(interrupted) with `reason` (and its run id), and its params are
    queued again (Optuna's `failed_trial` / `retry_history` convention) unless it was retried
    MAX_RETRY times already. A trial that Optuna failed itself (a stale heartbeat: FAIL, no
    outcome, attributes frozen) is only queued. False when another process finished it first.
    Raises the storage's errors."""
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    frozen = storage.get_trial(trial_id)
    if frozen.state == TrialState.RUNNING:
        try:  # the attributes first: a finished trial's are read-only
            if run_id:
                storage.set_trial_user_attr(trial_id, RUN_ID_ATTR, run_id)
            storage.set_trial_user_attr(trial_id, OUTCOME_ATTR, Outcome.INTERRUPTED.label)
            storage.set_trial_user_attr(trial_id, REASON_ATTR, reason)
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                return False
        except (RuntimeError, ValueError):  # finished meanwhile, by its owner or another
            return False
    elif frozen.state != TrialState.FAIL or OUTCOME_ATTR in frozen.user_attrs:
        return False  # finished, and queued again if it had to be, by whoever told it
    retried = [*frozen.system_attrs.get("retry_history", []), number]
    params = Params.of(frozen.params)
    if len(retried) <= MAX_RETRY and params is not None:
        queue(study, spec, params, {"failed_trial": retried[0], "retry_history": retried})
    return True

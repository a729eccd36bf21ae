"""The trial lifecycle, written down once. Every other module moves trials through it.

    asked ──register──> training ──tell──> COMPLETE | PRUNED | FAIL(diverged | error |
                                                           interrupted | duplicate)

- asked + registered (runner, one step that no signal splits): Optuna's `ask` makes the trial
  RUNNING; registering records its first heartbeat and its owner (the `worker` attribute: this
  process, `study.Owner`). A trial that is RUNNING without an owner was asked by a process that
  died before registering it: `study.reclaim` takes it back.
- training (runner): the trial's group trains in `engine.train_many`; its MLflow run exists
  (RUNNING, with its params), and its heartbeat is kept by `study.Heartbeat`.
- told (runner, through `tell` below): the outcome goes on the trial as the user attribute
  `outcome` (plus `fail_reason` for a FAIL) and Optuna is told the state. Nothing reads the
  reason's text to decide anything.
- Who else tells: `study.reclaim` (a dead owner's trials: FAIL(interrupted), then retried as a
  WAITING trial with the same params); the runner on Ctrl-C / SIGTERM / SIGHUP (this process's
  in-flight trials: FAIL(interrupted)); the grid's duplicate check (FAIL(duplicate), never
  trained).

Each outcome maps once to the Optuna state, the MLflow run status and the report's cell, and
says whether it counts toward the study's target (`done`): an interrupted trial does not (it is
run again), a diverged one does (it is a result).

Signals: `Interrupts` turns SIGINT, SIGTERM and SIGHUP into an `Interrupted` exception on the
main thread, except inside `shielded()` blocks (ask + register, tell), where the signal waits
until the block ends.
"""

from __future__ import annotations

import enum
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from optuna.trial import FrozenTrial, Trial, TrialState

__all__ = [
    "OUTCOME_ATTR",
    "OWNER_ATTR",
    "REASON_ATTR",
    "RUN_ID_ATTR",
    "TESTED_ATTR",
    "Interrupted",
    "Interrupts",
    "Outcome",
    "checkpoint",
    "outcome_of",
    "tell",
    "test_evaluations",
]

OUTCOME_ATTR = "outcome"
REASON_ATTR = "fail_reason"
RUN_ID_ATTR = "mlflow_run_id"
OWNER_ATTR = "worker"  # the process that holds the trial: "host:pid"
# On the study: [[trial, test accuracy], ...], each time the test set was used, in order. A
# study tests its best trial once; a resumed study that finds a new best tests that one too,
# and the count says the test set has been looked at more than once.
TESTED_ATTR = "test_evaluations"


class Outcome(enum.Enum):
    """How a trial ended: (Optuna state, MLflow run status, report cell, counts as done)."""

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


def test_evaluations(study_attrs: dict) -> list[tuple[int, float]]:
    """(trial, test accuracy) for each use of the test set, oldest first (studies from before
    TESTED_ATTR kept one pair as two attributes)."""
    pairs = study_attrs.get(TESTED_ATTR)
    if pairs is None and "best_trial_for_test" in study_attrs:
        pairs = [[study_attrs["best_trial_for_test"], study_attrs.get("test_accuracy")]]
    return [(int(n), float(a)) for n, a in pairs or [] if a is not None]


def tell(trial: Trial, outcome: Outcome, value: float | None = None, reason: str = "") -> None:
    """Tell Optuna how `trial` ended, with the outcome (and reason) on the trial first."""
    trial.set_user_attr(OUTCOME_ATTR, outcome.label)
    if reason:
        trial.set_user_attr(REASON_ATTR, reason)
    if outcome is Outcome.COMPLETE:
        trial.study.tell(trial, values=value)
    else:
        trial.study.tell(trial, state=outcome.state)


# -- signals -----------------------------------------------------------------------------------
EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + self.signum)


class Interrupts:
    """Installs handlers for SIGINT, SIGTERM and SIGHUP while active (main thread only).

    The first signal raises `Interrupted` where the main thread is, unless it is inside
    `shielded()`, in which case it is raised when the block ends. Later signals are remembered
    but raise nothing: the cleanup that the first one started is not cut short.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._depth = 0
        self._raised = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        import threading

        global _active
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
            _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if _active is self:
            _active = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if self._depth == 0:
            self._raise()

    def _raise(self) -> None:
        if self.received is not None and not self._raised:
            self._raised = True
            raise Interrupted(self.received)

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """A block no signal splits: one that arrives inside is raised when it ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0:
            self._raise()


_active: Interrupts | None = None  # the one in force on the main thread, for `checkpoint`


# -- a fault-injection point for the lifecycle tests -------------------------------------------
_PAUSE_ENV = "SOFTSWEEP_PAUSE_AT"


def checkpoint(step: str) -> None:
    """The tests' way to stop a real `sweep run` at one step of the lifecycle: with
    SOFTSWEEP_PAUSE_AT=<step> the process says `paused at <step>` on stderr the first time it
    reaches that step and waits there (up to 60 s, or SOFTSWEEP_PAUSE_S seconds, or until a
    signal arrives) for the test's signal or fault. A no-op otherwise."""
    if os.environ.get(_PAUSE_ENV) != step:
        return
    os.environ.pop(_PAUSE_ENV)  # once
    print(f"paused at {step}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + float(os.environ.get("SOFTSWEEP_PAUSE_S", "60"))
    while time.monotonic() < deadline and (_active is None or _active.received is None):
        time.sleep(0.05)

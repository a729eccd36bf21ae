"""The sweep loop of one process: ask -> group by batch size -> `engine.train_many` -> tell.

One round: take back dead processes' trials, ask up to `side_by_side` trials (each asked and
registered in one step no signal splits), group them by batch size, train each group side by
side (every epoch's validation accuracy goes to the pruner), and tell each trial its outcome
(`lifecycle.Outcome`). `n_trials` is the target total: running again resumes and never re-runs
a finished trial. An exception while training a group is that group's trials' outcome (error),
not the sweep's end. On an interrupt (`lifecycle.Interrupted`) or any other exception, the trials
in flight are told FAIL(interrupted), their runs closed, and their params queued again.

A database server that restarts (PostgreSQL; not a local SQLite file) is waited for, up to
STORAGE_WAIT_S: a trained trial's tell waits for it, and trials asked just before it went away
are given back (FAIL(interrupted), queued again) once it answers, and the loop goes on.

`timeout_s` is this session's deadline, counted from the loop's start: no trial is asked after
it, and the group training at that moment stops after its current epoch (its trials are
interrupted, to be run by the next session).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import Trial, TrialState

import engine

from .home import Owner
from .lifecycle import OWNER_ATTR, RUN_ID_ATTR, Interrupts, Outcome, checkpoint, tell
from .space import distributions
from .spec import StudySpec
from .study import Heartbeat, enqueue_missing, progress, reclaim, retry
from .sync import HISTORY_ATTR, final_metrics, history_attr, run_info
from .tracker import Tracker
from .tracking import TrialRecord

__all__ = ["Finished", "Runner", "Session"]

# trials done, best value, a note, epochs trained so far by the trials in flight
OnProgress = Callable[[int, float | None, str, int], None]
# The reason of a trial asked just before the Optuna storage went away, and given back untrained
# once it answers again.
GIVEN_BACK = "interrupted: the Optuna storage went away before it trained; trial retried"
ABANDON_WAIT_S = 10.0  # how long an interrupted sweep waits for a run it is closing
STORAGE_WAIT_S = 60.0  # how long a tell, or the loop, waits for an Optuna storage that went away


@dataclass(frozen=True)
class Finished:
    """A trial this session ran, as it ended."""

    number: int
    outcome: Outcome
    value: float | None  # final validation accuracy (COMPLETE only)
    weights: np.ndarray | None


@dataclass
class Session:
    """What one process's loop did: its trials (with their weights, kept rather than read back
    from MLflow) and where its time went."""

    trials: list[Finished] = field(default_factory=list)
    deadline: bool = False  # stopped at `timeout_s` before the target
    train_s: float = 0.0  # training groups, their tells and tracking waits
    engine_s: float = 0.0  # inside engine.train_many
    loop_s: float = 0.0  # the whole loop
    warnings: list[str] = field(default_factory=list)  # for the user (a worker lost)

    @property
    def best(self) -> Finished | None:
        done = [t for t in self.trials if t.outcome is Outcome.COMPLETE]
        return max(done, key=lambda t: (t.value or 0.0, -t.number)) if done else None

    def weights(self) -> dict[int, np.ndarray]:
        return {t.number: t.weights for t in self.trials if t.weights is not None}


class Runner:
    """The loop of one process on one study (see the module docstring)."""

    def __init__(
        self,
        spec: StudySpec,
        study: optuna.Study,
        storage: RDBStorage,
        data: engine.Dataset,
        tracker: Tracker,
        owner: Owner,
        interrupts: Interrupts,
        *,
        embedded: bool,
        heartbeat_s: int,
        on_progress: OnProgress | None = None,
    ) -> None:
        self.spec, self.study, self.storage, self.data = spec, study, storage, data
        self.tracker, self.owner, self.interrupts = tracker, owner, interrupts
        self.embedded, self.heartbeat_s, self.on_progress = embedded, heartbeat_s, on_progress
        self.grid = spec.grid_size is not None
        self.session = Session()
        self.in_flight: dict[int, Trial] = {}  # asked and registered, not yet told
        self.runs: dict[int, Future[str]] = {}  # their MLflow runs, being created
        self._shown: tuple[int, float | None, str, int] = (0, None, "", 0)
        self.deadline_at: float | None = None
        # A database server can restart (its errors are waited out, up to STORAGE_WAIT_S); a
        # local SQLite file's errors (a full disk) are not a restart to wait for.
        self._restartable = not storage.url.startswith("sqlite")

    def run(self) -> Session:
        started = time.perf_counter()
        if self.spec.timeout_s is not None:
            self.deadline_at = time.monotonic() + self.spec.timeout_s
        try:
            outage = 0.0  # since when the storage has not answered, between rounds
            while True:
                try:
                    self._give_back(GIVEN_BACK)  # asked before an outage, never trained
                    if not self._round():
                        break
                    outage = 0.0
                except StorageInternalError:  # (a tell waits by itself: see `_tell`)
                    if not self._restartable:
                        raise
                    outage = outage or time.monotonic()
                    if time.monotonic() - outage > STORAGE_WAIT_S:
                        raise
                    self._reset_session()
                    time.sleep(1.0)  # a database restart: wait for it, up to STORAGE_WAIT_S
        except BaseException:
            self._abandon()
            raise
        finally:
            self.session.loop_s += time.perf_counter() - started
        return self.session

    def _past_deadline(self) -> bool:
        return self.deadline_at is not None and time.monotonic() >= self.deadline_at

    def _round(self) -> bool:
        """One round; False once the study reached its target or this session its deadline."""
        reclaim(
            self.study, self.storage, self.spec, self.owner,
            embedded=self.embedded, grace_s=3 * self.heartbeat_s,
            close_run=self.tracker.fail_trial_runs,
        )  # fmt: skip
        now = progress(self.study, self.grid)
        behind = len(self.tracker.untracked)
        note = f"tracking behind: {behind} runs (MLflow: {self.tracker.down})" if behind else ""
        self._shown = (now.done, now.best_value, note, 0)  # what the bar shows this round
        if self.on_progress is not None:
            self.on_progress(*self._shown)
        if now.done >= self.spec.target:
            return False
        if self._past_deadline():
            self.session.deadline = True
            return False
        if self.grid:  # only queued cells: asking more would invent duplicates
            n = min(
                self.spec.side_by_side, now.waiting or enqueue_missing(self.study, self.spec, now)
            )
        else:
            n = min(self.spec.side_by_side, self.spec.target - now.done - now.running)
        if n <= 0:  # the rest runs in other processes: wait for them (or for their death)
            time.sleep(min(2.0, self.heartbeat_s / 2))
            return True
        with Heartbeat(self.storage, self.study, self.heartbeat_s) as beat:
            trials = [self._ask(beat) for _ in range(n)]
            groups: dict[int, list[Trial]] = {}
            for trial in self._drop_duplicates(trials):
                groups.setdefault(int(trial.params["batch_size"]), []).append(trial)
            for batch_size, group in sorted(groups.items()):
                t0 = time.perf_counter()
                self._train_group(group, batch_size)
                self.session.train_s += time.perf_counter() - t0
                beat.remove(t.number for t in group)
        return True

    def _ask(self, beat: Heartbeat) -> Trial:
        """Ask a trial and register it (first heartbeat, owner, in flight) in one step."""
        with self.interrupts.shielded():
            trial = self.study.ask(distributions(self.spec))
            self.in_flight[trial.number] = trial  # (a storage error from here on gives it back)
            checkpoint("asking")
            beat.add(trial)
            trial.set_user_attr(OWNER_ATTR, self.owner.name)
        return trial

    def _drop_duplicates(self, trials: list[Trial]) -> list[Trial]:
        """Grid cells another trial already holds: told FAIL(duplicate), never trained."""
        if not self.grid:
            return trials
        now = progress(self.study, self.grid)
        keep = []
        for trial in trials:
            holder = now.duplicate_of(trial)
            if holder is None:
                keep.append(trial)
                continue
            with self.interrupts.shielded():
                tell(
                    trial, Outcome.DUPLICATE, reason=f"duplicate grid cell: trial #{holder} has it"
                )
                del self.in_flight[trial.number]
        return keep

    def _train_group(self, group: list[Trial], batch_size: int) -> None:
        """Train one group side by side, tell each trial, hand each run to the tracker."""
        spec = self.spec
        for trial in group:  # created in the tracker's thread while the group trains
            self.runs[trial.number] = self.tracker.start_trial(
                spec.name, trial.number, trial.params
            )
        pruned: set[int] = set()
        cut: set[int] = set()  # stopped at the deadline
        epoch_ms: dict[int, list[int]] = {}  # when each trial's epochs ended

        def on_epoch(epoch: int, per_model: Mapping[int, Mapping[str, float]]) -> list[int]:
            checkpoint("training")
            numbers = {group[k].number: m for k, m in per_model.items()}
            self.tracker.log_epoch(self.runs, numbers, epoch)  # live curves; never waits
            ended = int(time.time() * 1000)
            for number in numbers:
                epoch_ms.setdefault(number, []).append(ended)
            if self.on_progress is not None:  # the bar moves every epoch, not every group
                done, best, note, epochs = self._shown
                self._shown = (done, best, note, epochs + len(per_model))
                self.on_progress(*self._shown)
            stop = []
            for k, metrics in per_model.items():
                if spec.pruner != "none":
                    try:
                        group[k].report(metrics["val_accuracy"], epoch)
                        if group[k].should_prune():
                            pruned.add(k)
                            stop.append(k)
                    except StorageInternalError:  # the storage is away: no pruning this epoch
                        self._reset_session()  # (the tell waits for it, or says what failed)
            if self._past_deadline():
                self.session.deadline = True
                cut.update(k for k in per_model if k not in pruned)
                stop = list(per_model)
            return stop

        configs = [(float(t.params["learning_rate"]), float(t.params["reg"])) for t in group]
        t0 = time.perf_counter()
        try:
            results: list[engine.TrainResult] | None = engine.train_many(
                self.data, configs, batch_size=batch_size, epochs=spec.epochs, seed=spec.seed,
                schedule=spec.lr_schedule, on_epoch=on_epoch,
                loss=spec.loss,  # type: ignore[arg-type]
            )  # fmt: skip
            error = ""
        except Exception as exc:  # one group's failure is its trials' outcome, not the sweep's
            results, error = None, f"training failed: {type(exc).__name__}: {exc}"
        group_s = time.perf_counter() - t0
        self.session.engine_s += group_s
        records: list[tuple[Future[str] | str, TrialRecord]] = []
        try:
            with self.interrupts.shielded():  # the group's tells: all of them, or (killed) none
                for k, trial in enumerate(group):
                    result = results[k] if results is not None else None
                    outcome, value, reason = _outcome(result, error, k in pruned, k in cut, spec)
                    history = list(result.history) if result is not None else []
                    run = self.runs[trial.number]
                    run_id = self.tracker.run_id(run)  # None: finished, or made, later
                    self._tell(trial, outcome, value, reason, run_id, history, len(group), group_s)
                    checkpoint("telling")
                    del self.in_flight[trial.number]
                    del self.runs[trial.number]
                    weights = result.weights if result is not None else None
                    keep = weights if outcome is Outcome.COMPLETE else None
                    sizes = [len(group), group_s]
                    record = TrialRecord(
                        trial.number, outcome, trial.params, history, final_metrics(history, sizes),
                        info=run_info(history, sizes), reason=reason, weights=keep,
                        epoch_ms=epoch_ms.get(trial.number, []),
                    )  # fmt: skip
                    records.append((run_id or run, record))
                    self.session.trials.append(Finished(trial.number, outcome, value, keep))
        finally:
            # Handed to the tracker once every trial is told (its thread would otherwise share
            # the GIL with the tells), and even when an interrupt follows the tells. The
            # finishes write the epochs that live logging had not handed over yet.
            self.tracker.drop_live()
            for handle, record in records:
                self.tracker.finish_trial(handle, record)
        checkpoint("finishing")

    def _tell(
        self,
        trial: Trial,
        outcome: Outcome,
        value: float | None,
        reason: str,
        run_id: str | None,
        history: Sequence[Mapping[str, float]],
        group_size: int,
        group_s: float,
    ) -> None:
        """Tell a trained trial, with all Optuna needs to rebuild its run (`sync`). A storage
        that went away is waited for, up to STORAGE_WAIT_S: the training is not lost to a
        database restart."""
        stored = {**history_attr(history), "group": [group_size, round(group_s, 4)]}
        deadline = time.monotonic() + STORAGE_WAIT_S
        while True:
            try:
                if run_id:
                    trial.set_user_attr(RUN_ID_ATTR, run_id)
                trial.set_user_attr(HISTORY_ATTR, stored)
                tell(trial, outcome, value, reason)
                if outcome is Outcome.INTERRUPTED:
                    retry(self.study, self.spec, trial.number, trial.params, {})
                return
            except UpdateFinishedTrialError:  # told by the try that lost its connection after
                return
            except StorageInternalError as exc:
                if not self._restartable:  # a local file's error (a full disk): said as such
                    raise
                if time.monotonic() > deadline:
                    cause = exc.__cause__ or exc
                    raise RuntimeError(
                        f"The Optuna storage of study {self.spec.name!r} did not answer for "
                        f"{STORAGE_WAIT_S:g} s ({type(cause).__name__}: "
                        f"{(str(cause).strip().splitlines() or [''])[0][:200]}). The trials in "
                        "training here are lost; the next `sweep run` of this study takes them "
                        "back and finishes it."
                    ) from None
                self._reset_session()
                time.sleep(1.0)

    def _reset_session(self) -> None:
        """A connection lost in the middle of a read leaves Optuna's session waiting for a
        rollback that nothing does (every later call: PendingRollbackError, even once the
        database is back): drop it, so the next call starts a new one."""
        with contextlib.suppress(Exception):
            self.storage.scoped_session.remove()

    def _give_back(self, reason: str) -> None:
        """This process's trials in flight: FAIL(interrupted), their runs closed, their params
        queued again. Raises the storage's error; a trial given back is off the list, so a
        second call after an error goes on with the rest."""
        if not self.in_flight:
            return
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        frozen = {t.number: t for t in running}
        for number, trial in list(self.in_flight.items()):
            run = self.runs.get(number)
            run_id = self.tracker.run_id(run, timeout=ABANDON_WAIT_S) if run else None
            try:
                if number in frozen:  # (not, when an earlier call told it and then failed)
                    if run_id:
                        trial.set_user_attr(RUN_ID_ATTR, run_id)
                    tell(trial, Outcome.INTERRUPTED, reason=reason)
                    retry(self.study, self.spec, number, trial.params, frozen[number].system_attrs)
            finally:
                if run_id:
                    self.tracker.fail_run(run_id, "interrupted", timeout=ABANDON_WAIT_S)
            del self.in_flight[number]
            self.runs.pop(number, None)

    def _abandon(self) -> None:
        """On the way out: `_give_back`, best effort and bounded (the store may be what failed;
        the next run reclaims what is left)."""
        with contextlib.suppress(Exception):
            self._give_back("interrupted: this process stopped")
        self.in_flight.clear()


def _outcome(
    result: engine.TrainResult | None, error: str, pruned: bool, cut: bool, spec: StudySpec
) -> tuple[Outcome, float | None, str]:
    """A training result -> (outcome, value, reason)."""
    if result is None:
        return Outcome.ERROR, None, error
    if result.status == "completed":
        return Outcome.COMPLETE, result.val_accuracy, ""
    if result.status == "diverged":
        return Outcome.DIVERGED, None, result.reason
    if pruned:
        return Outcome.PRUNED, None, ""
    return (
        Outcome.INTERRUPTED,
        None,
        f"interrupted: stopped at the study's deadline (timeout_s={spec.timeout_s:g}) after "
        f"epoch {result.end_epoch}"
        if cut
        else f"interrupted: {result.reason}",
    )

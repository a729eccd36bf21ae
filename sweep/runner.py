"""The sweep loop of one process: ask -> `engine.train_many` -> tell.

One round: take back dead processes' trials, ask up to `side_by_side` trials (each asked and
registered in one step no signal splits), train them side by side (in one `train_many`
call, where batch sizes that are multiples of the smallest share one pass; with the median
pruner, which counts only finished trials, a group per batch size, each judged against the
groups before it; each epoch's validation accuracy goes to the pruner where it can stop a
trial: every epoch for the median pruner, Hyperband's rungs for Hyperband), and tell each trial
its outcome (`trial.Outcome`). `n_trials` is the target total: running again resumes and
never re-runs a finished trial. An exception while training is the outcome (error) of the
group's trials, not the sweep's end. On an interrupt (`signals.Interrupted`) or any other
exception, the trials in flight are given back (`trial.give_back`: FAIL(interrupted), params
queued again) and their runs closed.

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
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import Trial

import engine

from .signals import Interrupts, checkpoint
from .space import distributions, pruning_epochs
from .spec import StudySpec
from .store.home import Owner
from .store.study import Heartbeat, enqueue_missing, progress, reclaim
from .track.tracker import Tracker
from .trial import (
    HISTORY_ATTR,
    OWNER_ATTR,
    RUN_ID_ATTR,
    History,
    Outcome,
    Params,
    TrialRecord,
    give_back,
    tell,
    training_outcome,
)

__all__ = ["Finished", "LoopResult", "Runner"]

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
class LoopResult:
    """What one process's loop did: its trials (with their weights, kept rather than read back
    from MLflow) and where its time went."""

    trials: list[Finished] = field(default_factory=list)
    deadline: bool = False  # stopped at `timeout_s` before the target
    train_s: float = 0.0  # training groups, their tells and tracking waits
    engine_s: float = 0.0  # inside engine.train_many
    loop_s: float = 0.0  # the whole loop
    warnings: list[str] = field(default_factory=list)  # for the user (a worker lost)

    def weights(self) -> dict[int, np.ndarray]:
        return {t.number: t.weights for t in self.trials if t.weights is not None}


class Runner:
    """The loop of one process on one study (see the module docstring)."""

    def __init__(
        self,
        spec: StudySpec,
        study: optuna.Study,
        storage: RDBStorage,
        data: Callable[[], engine.Dataset],  # loaded on the first group it trains
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
        self.result = LoopResult()
        self.in_flight: dict[int, Trial] = {}  # asked and registered, not yet told
        self.runs: dict[int, Future[str]] = {}  # their MLflow runs, being created
        self._shown: tuple[int, float | None, str, int] = (0, None, "", 0)
        self.deadline_at: float | None = None
        # A database server can restart (its errors are waited out, up to STORAGE_WAIT_S); a
        # local SQLite file's errors (a full disk) are not a restart to wait for.
        self._restartable = not storage.url.startswith("sqlite")

    def run(self) -> LoopResult:
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
                    self._reset_connection()
                    time.sleep(1.0)  # a database restart: wait for it, up to STORAGE_WAIT_S
        except BaseException:
            self._abandon()
            raise
        finally:
            self.result.loop_s += time.perf_counter() - started
        return self.result

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
            self.result.deadline = True
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
            # One call where it can: the engine trains batch sizes that divide in one pass, and
            # Hyperband (successive halving) judges a trial against every trial that reached
            # its rung, still training or not. The median pruner counts only finished trials:
            # a group per batch size, one after another, lets it judge each group against the
            # groups before it (the main job trained 722 model-epochs so with it, 1188 in one
            # pass: more than the pass saved; bench/README.md).
            groups: dict[int, list[tuple[Trial, Params]]] = {}
            for trial in self._drop_duplicates(trials):
                params = Params.of(trial.params)
                assert params is not None  # (asked with every distribution)
                key = params.batch_size if self.spec.pruner == "median" else 0
                groups.setdefault(key, []).append((trial, params))
            for _, group in sorted(groups.items()):
                t0 = time.perf_counter()
                self._train_group(group)
                self.result.train_s += time.perf_counter() - t0
                beat.remove(t.number for t, _ in group)
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

    def _train_group(self, asked: list[tuple[Trial, Params]]) -> None:
        """Train one group side by side, tell each trial, hand each run to the tracker."""
        spec = self.spec
        group = [trial for trial, _ in asked]
        for trial in group:  # created in the tracker's thread while the group trains
            self.runs[trial.number] = self.tracker.start_trial(
                spec.name, trial.number, trial.params
            )
        pruned: set[int] = set()
        cut: set[int] = set()  # stopped at the deadline
        epoch_ms: dict[int, list[int]] = {}  # when each trial's epochs ended
        judging = pruning_epochs(spec)

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
            # Told and asked only where the pruner can stop a trial (Hyperband's rungs): it
            # reads no other epoch's value, and the full curves are in the trial's history.
            judged = judging is None or epoch in judging
            for k, metrics in per_model.items():
                if spec.pruner != "none" and judged:
                    try:
                        group[k].report(metrics["val_accuracy"], epoch)
                        if group[k].should_prune():
                            pruned.add(k)
                            stop.append(k)
                    except StorageInternalError:  # the storage is away: no pruning this epoch
                        self._reset_connection()  # (the tell waits for it, or says what failed)
            if self._past_deadline():
                self.result.deadline = True
                cut.update(k for k in per_model if k not in pruned)
                stop = list(per_model)
            return stop

        configs = [(p.learning_rate, p.reg) for _, p in asked]
        batch_sizes = [p.batch_size for _, p in asked]
        data = self.data()  # (loaded already when the sweep began with trials to train)
        t0 = time.perf_counter()
        try:
            results: list[engine.TrainResult] | None = engine.train_many(
                data, configs, batch_size=batch_sizes, epochs=spec.epochs, seed=spec.seed,
                schedule=spec.lr_schedule, on_epoch=on_epoch,
                loss=spec.loss,  # type: ignore[arg-type]
            )  # fmt: skip
            error = ""
        except Exception as exc:  # one group's failure is its trials' outcome, not the sweep's
            results, error = None, f"training failed: {type(exc).__name__}: {exc}"
        group_s = time.perf_counter() - t0
        self.result.engine_s += group_s
        records: list[tuple[Future[str] | str, TrialRecord]] = []
        try:
            with self.interrupts.shielded():  # the group's tells: all of them, or (killed) none
                for k, trial in enumerate(group):
                    result = results[k] if results is not None else None
                    outcome, value, reason = training_outcome(
                        result, error, pruned=k in pruned, cut=k in cut, timeout_s=spec.timeout_s
                    )
                    history = History(
                        tuple(result.history) if result is not None else (), len(group), group_s
                    )
                    run = self.runs[trial.number]
                    run_id = self.tracker.run_id(run)  # None: finished, or made, later
                    self._tell(trial, outcome, value, reason, run_id, history)
                    checkpoint("telling")
                    del self.in_flight[trial.number]
                    del self.runs[trial.number]
                    weights = result.weights if result is not None else None
                    keep = weights if outcome is Outcome.COMPLETE else None
                    record = TrialRecord(
                        trial.number, outcome, trial.params, history, reason=reason,
                        weights=keep, epoch_ms=epoch_ms.get(trial.number, []),
                    )  # fmt: skip
                    records.append((run_id or run, record))
                    self.result.trials.append(Finished(trial.number, outcome, value, keep))
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
        history: History,
    ) -> None:
        """Tell a trained trial, with all Optuna needs to rebuild its run (`track.sync`); one cut
        at the deadline is given back. A storage that went away is waited for, up to
        STORAGE_WAIT_S: the training is not lost to a database restart."""
        deadline = time.monotonic() + STORAGE_WAIT_S
        while True:
            try:
                trial.set_user_attr(HISTORY_ATTR, history.attr())
                if outcome is Outcome.INTERRUPTED:
                    give_back(
                        self.storage, self.study, self.spec, trial.number, reason, run_id=run_id
                    )
                    return
                if run_id:
                    trial.set_user_attr(RUN_ID_ATTR, run_id)
                tell(trial, outcome, value, reason)
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
                self._reset_connection()
                time.sleep(1.0)

    def _reset_connection(self) -> None:
        """A connection lost in the middle of a read leaves Optuna's session waiting for a
        rollback that nothing does (every later call: PendingRollbackError, even once the
        database is back): drop it, so the next call starts a new one."""
        with contextlib.suppress(Exception):
            self.storage.scoped_session.remove()

    def _give_back(self, reason: str) -> None:
        """This process's trials in flight: given back (`trial.give_back`) and their runs closed.
        Raises the storage's error; a trial given back is off the list, so a second call after
        an error goes on with the rest."""
        for number in list(self.in_flight):
            run = self.runs.get(number)
            run_id = self.tracker.run_id(run, timeout=ABANDON_WAIT_S) if run else None
            try:
                give_back(self.storage, self.study, self.spec, number, reason, run_id=run_id)
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

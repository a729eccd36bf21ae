"""The trial vocabulary, as function calls on real Optuna trials (an in-memory storage): outcomes,
typed params, the history format, the run record, and the one give-back step."""

from __future__ import annotations

import datetime as dt

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState, create_trial

import engine
from sweep.spec import parse_spec
from sweep.trial import (
    HISTORY_ATTR,
    MAX_RETRY,
    OUTCOME_ATTR,
    REASON_ATTR,
    RUN_ID_ATTR,
    History,
    Outcome,
    Params,
    give_back,
    outcome_of,
    record_of,
    training_outcome,
)
from sweep.trial import test_evaluations as uses_of_test_set
from tests.helpers import spec_text

DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-4, 1.0, log=True),
    "reg": FloatDistribution(0.0, 1.0),
    "batch_size": CategoricalDistribution([16, 32]),
}
EPOCH = {"train_loss": 0.5, "train_accuracy": 0.8, "val_accuracy": 0.75, "epoch_time_s": 0.25}


def frozen(state: TrialState, **user_attrs: object) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state,
        value=0.75 if state == TrialState.COMPLETE else None,
        params={"learning_rate": 0.03, "reg": 1e-3, "batch_size": 16},
        distributions=DISTRIBUTIONS,
        user_attrs=dict(user_attrs),
    )


# -- outcomes ----------------------------------------------------------------------------------
def test_every_outcome_maps_once_to_optuna_mlflow_and_the_target() -> None:
    assert {o.label for o in Outcome} == {
        "complete", "pruned", "diverged", "error", "interrupted", "duplicate"
    }  # fmt: skip
    counted = {o.label for o in Outcome if o.done}
    assert counted == {"complete", "pruned", "diverged", "error"}  # the rest run again
    assert Outcome.PRUNED.run_status == "KILLED" and Outcome.COMPLETE.run_status == "FINISHED"
    assert {o.run_status for o in Outcome if o.state == TrialState.FAIL} == {"FAILED"}
    with pytest.raises(ValueError, match="outcome must be one of"):
        Outcome.from_label("lost")


def test_a_trials_outcome_comes_from_its_state_and_attribute() -> None:
    assert outcome_of(frozen(TrialState.COMPLETE)) is Outcome.COMPLETE
    assert outcome_of(frozen(TrialState.PRUNED)) is Outcome.PRUNED
    assert outcome_of(frozen(TrialState.FAIL, **{OUTCOME_ATTR: "diverged"})) is Outcome.DIVERGED
    # Failed by Optuna itself (a stale heartbeat) or another tool: it did not finish.
    assert outcome_of(frozen(TrialState.FAIL)) is Outcome.INTERRUPTED
    assert outcome_of(frozen(TrialState.RUNNING)) is None


def result(status: str, epochs: int = 2, reason: str = "") -> engine.TrainResult:
    return engine.TrainResult(
        learning_rate=0.03, reg=0.0, batch_size=16, epochs=3, status=status,  # type: ignore[arg-type]
        weights=np.zeros((3, 2)) if status == "completed" else None,
        history=tuple({**EPOCH, "val_accuracy": 0.7 + e / 100} for e in range(epochs)),
        end_epoch=epochs, reason=reason,
    )  # fmt: skip


def test_training_results_map_to_outcomes_with_their_reasons() -> None:
    kw = {"pruned": False, "cut": False, "timeout_s": None}
    assert training_outcome(result("completed", 3), "", **kw) == (Outcome.COMPLETE, 0.72, "")
    assert training_outcome(result("diverged", reason="loss is nan at epoch 2"), "", **kw) == (
        Outcome.DIVERGED, None, "loss is nan at epoch 2"
    )  # fmt: skip
    # The group's training raised: every trial of it is an error, with what was raised.
    assert training_outcome(None, "training failed: MemoryError", **kw) == (
        Outcome.ERROR, None, "training failed: MemoryError"
    )  # fmt: skip
    stopped = result("stopped", 2, reason="stopped by the caller")
    outcome, _, reason = training_outcome(stopped, "", pruned=True, cut=False, timeout_s=None)
    assert (outcome, reason) == (Outcome.PRUNED, "pruned after epoch 2")
    outcome, _, reason = training_outcome(stopped, "", pruned=False, cut=True, timeout_s=30)
    assert outcome is Outcome.INTERRUPTED
    assert reason == "interrupted: stopped at the study's deadline (timeout_s=30) after epoch 2"


def test_test_evaluations_read_both_the_list_and_the_older_pair() -> None:
    assert uses_of_test_set({"test_evaluations": [[3, 0.84], [7, 0.85]]}) == [(3, 0.84), (7, 0.85)]
    assert uses_of_test_set({"best_trial_for_test": 3, "test_accuracy": 0.84}) == [(3, 0.84)]
    assert uses_of_test_set({}) == []


# -- params --------------------------------------------------------------------------------------
def test_params_are_typed_from_optuna_or_mlflow_strings_and_are_a_grid_cell() -> None:
    from_optuna = Params.of({"learning_rate": 0.03, "reg": 0.001, "batch_size": 16})
    from_mlflow = Params.of({"learning_rate": "0.03", "reg": "0.001", "batch_size": "16"})
    assert from_optuna == from_mlflow == Params(0.03, 0.001, 16)
    assert isinstance(from_mlflow.batch_size, int)  # type: ignore[union-attr]
    assert len({from_optuna, from_mlflow}) == 1  # one cell
    assert Params.of({"learning_rate": 0.03}) is None  # still being asked
    assert Params(0.03, 0.001, 16).describe() == "lr=0.03 reg=0.001 batch=16"
    assert Params(0.03, 0.001, 16).as_dict() == {"learning_rate": 0.03, "reg": 0.001,
                                                 "batch_size": 16}  # fmt: skip


# -- history -------------------------------------------------------------------------------------
def test_a_history_survives_its_round_trip_through_optuna() -> None:
    epochs = tuple({**EPOCH, "val_accuracy": v} for v in (0.7, 0.8, 0.78))
    history = History(epochs, group_size=4, group_time_s=1.23456)
    stored = history.attr()
    assert stored["val_accuracy"] == [0.7, 0.8, 0.78]
    assert stored["group"] == [4, 1.2346]
    again = History.of(frozen(TrialState.COMPLETE, **{HISTORY_ATTR: stored}))
    assert again.epochs == epochs
    assert (again.group_size, again.group_time_s) == (4, 1.2346)
    assert again.last("val_accuracy") == 0.78
    assert again.best_val_accuracy == 0.8
    assert again.train_time_s == pytest.approx(0.75)
    assert again.series("train_loss") == [0.5, 0.5, 0.5]


def test_the_l2_term_is_kept_to_7_digits_when_every_epoch_has_it_and_older_histories_read() -> None:
    epochs = tuple({**EPOCH, "l2_term": v} for v in (1.234567891e-6, 0.5))
    stored = History(epochs, 2, 0.5).attr()
    assert stored["l2_term"] == [1.234568e-6, 0.5]  # small terms keep their digits
    again = History.of(frozen(TrialState.COMPLETE, **{HISTORY_ATTR: stored}))
    assert again.series("l2_term") == [1.234568e-6, 0.5]
    without = History.of(frozen(TrialState.COMPLETE, **{HISTORY_ATTR: History((EPOCH,)).attr()}))
    assert len(without.epochs) == 1 and "l2_term" not in without.epochs[0]


def test_a_trial_that_never_trained_has_an_empty_history() -> None:
    empty = History.of(frozen(TrialState.FAIL))
    assert empty.epochs == () and empty.group_size is None
    assert empty.last("val_accuracy") is None and empty.best_val_accuracy is None
    assert empty.train_time_s is None
    # An older trial kept no group, and an epoch missing a metric is not an epoch.
    older = {k: [v] for k, v in EPOCH.items()}
    older["val_accuracy"] = [0.7, 0.8]
    read = History.of(frozen(TrialState.COMPLETE, **{HISTORY_ATTR: older}))
    assert len(read.epochs) == 1 and read.group_size is None


# -- the run's record ----------------------------------------------------------------------------
def test_a_finished_trials_record_holds_what_its_run_shows() -> None:
    stored = History((EPOCH, {**EPOCH, "val_accuracy": 0.8}), 2, 0.5).attr()
    trial = frozen(TrialState.PRUNED, **{HISTORY_ATTR: stored, REASON_ATTR: "pruned after epoch 2"})
    trial.datetime_complete = dt.datetime(2026, 1, 2, 3, 4, 5)
    record = record_of(trial)
    assert record is not None
    assert record.outcome is Outcome.PRUNED and record.reason == "pruned after epoch 2"
    assert record.final == {"best_val_accuracy": 0.8}
    assert record.info == {
        "softsweep.epochs_run": "2", "softsweep.train_time_s": "0.5",
        "softsweep.group_size": "2", "softsweep.group_time_s": "0.5",
    }  # fmt: skip
    assert record.ended_ms == int(dt.datetime(2026, 1, 2, 3, 4, 5).timestamp() * 1000)
    # Still running, or a duplicate that never trained: no run to write.
    assert record_of(frozen(TrialState.RUNNING)) is None
    assert record_of(frozen(TrialState.FAIL, **{OUTCOME_ATTR: "duplicate"})) is None


# -- giving back ---------------------------------------------------------------------------------
@pytest.fixture
def study() -> tuple[InMemoryStorage, optuna.Study, object]:
    storage = InMemoryStorage()
    spec = parse_spec(spec_text("s", "/nowhere", sampler="random", batch="[16, 32]",
                                lr="{ low = 1e-4, high = 1.0, log = true }",
                                reg="{ low = 0.0, high = 1.0 }"))  # fmt: skip
    return storage, optuna.create_study(study_name="s", storage=storage), spec


def asked(study: optuna.Study) -> optuna.trial.Trial:
    return study.ask(DISTRIBUTIONS)


def waiting(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.WAITING,))


def test_a_trial_given_back_is_failed_as_interrupted_and_queued_once(study) -> None:
    storage, s, spec = study
    trial = asked(s)
    assert give_back(storage, s, spec, trial.number, "interrupted: SIGINT", run_id="abc")
    told = s.get_trials()[trial.number]
    assert told.state == TrialState.FAIL and outcome_of(told) is Outcome.INTERRUPTED
    assert told.user_attrs[REASON_ATTR] == "interrupted: SIGINT"
    assert told.user_attrs[RUN_ID_ATTR] == "abc"
    (queued,) = waiting(s)
    assert queued.params == trial.params  # the same cell runs again
    assert queued.system_attrs["failed_trial"] == trial.number
    # Given back again (a second call after a storage error): nothing told twice, nothing
    # queued twice.
    assert not give_back(storage, s, spec, trial.number, "again")
    assert len(waiting(s)) == 1


def test_a_trial_is_queued_again_at_most_max_retry_times(study) -> None:
    storage, s, spec = study
    number = asked(s).number
    for _ in range(MAX_RETRY):
        give_back(storage, s, spec, number, "interrupted")
        (retry,) = waiting(s)
        number = s.ask().number  # the queue hands the retry out
        assert s.get_trials()[number].params == retry.params
    history = s.get_trials()[number].system_attrs["retry_history"]
    assert len(history) == MAX_RETRY
    give_back(storage, s, spec, number, "interrupted")
    assert waiting(s) == []  # MAX_RETRY retries were enough


def test_a_finished_trial_is_not_given_back_but_a_stale_one_is_queued(study) -> None:
    storage, s, spec = study
    done = asked(s)
    s.tell(done, 0.8)
    assert not give_back(storage, s, spec, done.number, "late")
    assert s.get_trials()[done.number].state == TrialState.COMPLETE
    # Failed by Optuna's stale-heartbeat check: its attributes are frozen, so it is only
    # queued again (and reads as interrupted).
    stale = asked(s)
    s.tell(stale, state=TrialState.FAIL)
    assert give_back(storage, s, spec, stale.number, "stale")
    assert REASON_ATTR not in s.get_trials()[stale.number].user_attrs
    assert len(waiting(s)) == 1

"""The study in Optuna's storage, as function calls on a real SQLite storage: the grid's queue,
progress toward the target, and the rules by which a dead process's trials are taken back."""

from __future__ import annotations

import fcntl
import socket
from pathlib import Path

import optuna
import pytest

from sweep.space import distributions
from sweep.spec import StudySpec, parse_spec
from sweep.store.home import Home, Owner
from sweep.store.study import enqueue_missing, make_storage, progress, reclaim
from sweep.trial import OWNER_ATTR, REASON_ATTR, RUN_ID_ATTR, Outcome, Params, outcome_of
from tests.helpers import spec_text


def grid_spec(n_trials: int = 100) -> StudySpec:
    # 3 learning rates x 2 regs x 2 batch sizes = 12 cells
    return parse_spec(spec_text("g", "/nowhere", n_trials=n_trials))


def open_grid(tmp_path: Path, spec: StudySpec) -> tuple[optuna.Study, object]:
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}", spec)
    return optuna.create_study(study_name=spec.name, storage=storage, direction="maximize"), storage


def test_the_grid_queues_each_missing_cell_once_and_only_what_the_target_needs(
    tmp_path: Path,
) -> None:
    spec = grid_spec(n_trials=5)
    study, _ = open_grid(tmp_path, spec)
    assert enqueue_missing(study, spec, progress(study, grid=True)) == 5  # not all 12
    assert enqueue_missing(study, spec, progress(study, grid=True)) == 0  # already covered
    now = progress(study, grid=True)
    assert (now.waiting, now.running, now.done) == (5, 0, 0)
    cells = {Params.of(t.params) for t in study.get_trials()}
    assert len(cells) == 5


def test_progress_counts_cells_once_and_names_the_holder_of_a_duplicate(tmp_path: Path) -> None:
    spec = grid_spec()
    study, _ = open_grid(tmp_path, spec)
    cell = {"learning_rate": 0.03, "reg": 0.0, "batch_size": 16}
    study.enqueue_trial(cell)
    study.enqueue_trial(cell)  # two workers queued the same cell at once
    first, second = study.ask(distributions(spec)), study.ask(distributions(spec))
    study.tell(first, 0.8)
    now = progress(study, grid=True)
    assert now.duplicate_of(second) == first.number
    assert now.duplicate_of(first) is None
    assert (now.done, now.running, now.best_value) == (1, 1, 0.8)


@pytest.fixture
def study_and_owner(tmp_path: Path):
    spec = grid_spec()
    home = Home.resolve(tmp_path)
    study, storage = open_grid(tmp_path, spec)
    owner = Owner(home)
    yield spec, home, study, storage, owner
    owner.close()


def running_trial(study: optuna.Study, spec: StudySpec, owner_name: str | None) -> int:
    study.enqueue_trial({"learning_rate": 0.3, "reg": 1e-3, "batch_size": 32})
    trial = study.ask(distributions(spec))
    if owner_name is not None:
        trial.set_user_attr(OWNER_ATTR, owner_name)
        trial.set_user_attr(RUN_ID_ATTR, "run-1")
    return trial.number


def lock_of(home: Path, name: str) -> Path:
    return home / "owners" / (name.replace(":", "-") + ".lock")


def test_a_trial_whose_owner_lock_is_free_is_taken_back_with_its_run_closed(
    study_and_owner,
) -> None:
    spec, home, study, storage, owner = study_and_owner
    dead = f"{socket.gethostname()}:999999"
    lock_of(home.folder, dead).touch()  # its process died: nobody holds the lock
    number = running_trial(study, spec, dead)
    closed: list[tuple] = []
    taken = reclaim(study, storage, spec, owner, embedded=True, grace_s=30,
                    close_run=lambda *args: closed.append(args))  # fmt: skip
    assert taken == [number]
    told = study.get_trials()[number]
    assert outcome_of(told) is Outcome.INTERRUPTED
    assert told.user_attrs[REASON_ATTR].startswith(f"interrupted: {dead} is gone")
    assert closed == [("g", number, "run-1", told.user_attrs[REASON_ATTR])]
    assert progress(study, grid=True).waiting == 1  # its cell runs again


def test_a_live_owner_and_another_machines_owner_keep_their_trials(study_and_owner) -> None:
    spec, home, study, storage, owner = study_and_owner
    alive = f"{socket.gethostname()}:999998"
    with open(lock_of(home.folder, alive), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live process holds its lock
        running_trial(study, spec, alive)
        running_trial(study, spec, "another-host:42")  # left to its heartbeat
        running_trial(study, spec, owner.name)  # this process's own
        assert reclaim(study, storage, spec, owner, embedded=True, grace_s=30) == []
    assert progress(study, grid=True).running == 3


def test_a_trial_asked_but_never_registered_is_taken_back_when_no_one_can_own_it(
    study_and_owner,
) -> None:
    spec, _, study, storage, owner = study_and_owner
    number = running_trial(study, spec, owner_name=None)  # its process died before registering
    # A shared storage, another process may still be registering it: wait for the grace.
    assert reclaim(study, storage, spec, owner, embedded=False, grace_s=3600) == []
    # The home's own SQLite file, and no other process holds a lock in the home: at once.
    assert reclaim(study, storage, spec, owner, embedded=True, grace_s=3600) == [number]
    reason = study.get_trials()[number].user_attrs[REASON_ATTR]
    assert reason == "interrupted: its process died while asking for it"

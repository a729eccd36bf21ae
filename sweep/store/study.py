"""The study in Optuna's storage: open or join it, keep its identity, queue a grid's cells, count
progress, keep heartbeats, and take back the trials of processes that died.

Optuna coordinates every worker; nothing here is a queue or a scheduler of our own:
- the storage is Optuna's RDBStorage (SQLite in the home, or PostgreSQL) with heartbeats;
- a grid's cells go through Optuna's trial queue (WAITING trials with their params), which
  hands each to one worker; two workers that queue the same missing cell at once make a
  duplicate, told FAIL(duplicate) and never trained;
- reclaiming (`reclaim`): a trial RUNNING in a process that is gone becomes FAIL(interrupted)
  with its MLflow run closed, and its params are queued again. Gone means: its heartbeat is
  older than the grace period (any machine), or its owner's lock in this home is free (this
  machine, at once), or it was never registered and either the grace period has passed or, on
  the home's own SQLite storage, no other process holds a lock there.

Threads: `Heartbeat` runs one thread that writes heartbeat rows, and nothing else, to the
storage; every other storage call is made on the caller's (main) thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from ..space import make_pruner, make_sampler
from ..spec import StudySpec, identity_differences, parse_spec
from ..trial import OWNER_ATTR, RUN_ID_ATTR, Params, give_back, outcome_of, queue
from .home import Home, Owner, safe_url, scrub
from .notes import read_notes, write_notes
from .sqlitestore import check_sqlite_file, open_store, sqlite_path
from .waits import bound, connect_args

__all__ = [
    "HEARTBEAT_S",
    "Heartbeat",
    "Progress",
    "enqueue_missing",
    "load_study",
    "open_study",
    "progress",
    "reclaim",
    "store_lock",
    "stored_spec",
]

# Heartbeats and stale-trial checks are driven here around ask/tell, not by optimize(): Optuna's
# reminders that it expects optimize() and that these parts are experimental are not news.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
for _experimental in (
    ".*fail_stale_trials is experimental",
    "Argument ``heartbeat_interval`` is an experimental",
    "Argument ``grace_period`` is an experimental",
    "Argument ``heartbeat_stale_trial_callback`` is an experimental",
    ".*set_metric_names is experimental",
):
    warnings.filterwarnings("ignore", message=_experimental)

HEARTBEAT_S = 10  # a trial whose heartbeat is 3x older belongs to a dead process
CloseRun = Callable[[str, int, str | None, str], None]  # (study, trial number, run id, reason)


# -- the storage and the study -----------------------------------------------------------------
def make_storage(
    url: str,
    spec: StudySpec,
    *,
    heartbeat_s: int = HEARTBEAT_S,
    close_run: CloseRun | None = None,
) -> RDBStorage:
    """Optuna's RDB storage with heartbeats, and timeouts that turn an unreachable server into
    an error within seconds. A trial whose heartbeat goes stale is reclaimed (`_on_stale`)."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        bound(url)  # a database that stops answering: seconds, and Ctrl-C, not forever
        engine_kwargs = {"connect_args": connect_args(), "pool_pre_ping": True}
    elif url.startswith("sqlite"):
        # Several local workers share the file: wait for a lock rather than fail at 5 s.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    check_sqlite_file(url, "Optuna storage", "--storage")  # not MLflow's file, not a folder

    def on_stale(study: optuna.Study, trial: FrozenTrial) -> None:
        worker = trial.user_attrs.get(OWNER_ATTR, "a process")
        reason = f"interrupted: {worker} stopped sending heartbeats; trial retried"
        _take_back(storage, study, spec, trial, reason, close_run)

    storage = open_store(
        url,
        lambda: RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_s,
            grace_period=3 * heartbeat_s,
            heartbeat_stale_trial_callback=on_stale,
        ),
        lambda new: RDBStorage(new).engine.dispose(),  # the tables, whole, then renamed
    )
    if url.startswith("sqlite"):
        _serialize_sqlite(storage)
    return storage


def _serialize_sqlite(storage: RDBStorage) -> None:
    """Every SQLite transaction takes the write lock when it begins (BEGIN IMMEDIATE).

    Optuna gives a WAITING trial to one worker by reading its state and writing RUNNING in one
    transaction with SELECT ... FOR UPDATE, which PostgreSQL honours and SQLite ignores: two
    local workers could both pop the same queued grid cell. With the lock taken at BEGIN the
    read and the write are atomic (SQLAlchemy's documented recipe for pysqlite).
    """
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners existed are closed


def _storage_error(url: str, exc: Exception) -> RuntimeError:
    storage = safe_url(url)
    if isinstance(exc, ImportError):
        return RuntimeError(
            f"The Optuna storage {storage} needs a database driver that is not installed "
            f"({exc}). For PostgreSQL use a postgresql+psycopg2:// URL (psycopg2-binary comes "
            "with softsweep)."
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    first = scrub(first, url)
    return RuntimeError(
        f"Could not open the Optuna storage {storage}: {type(exc).__name__}: {first}. Check "
        "--storage and that the database is reachable."
    )


@contextlib.contextmanager
def store_lock(url: str, name: str) -> Iterator[None]:
    """An exclusive lock called `name` among every process that uses the Optuna storage at
    `url`, on any machine: a session-level advisory lock on PostgreSQL (held on a connection
    of its own; closing it releases the lock, whatever ends the process), a lock file beside a
    SQLite file. Nothing for other storages."""
    path = sqlite_path(url)
    if path is not None:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f"{path.name}.{name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # (closing the file releases the lock)
        return
    if not url.startswith("postgresql"):
        yield
        return
    import hashlib

    import sqlalchemy
    from sqlalchemy.pool import NullPool

    digest = hashlib.blake2b(f"softsweep:{name}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    engine = sqlalchemy.create_engine(url, connect_args=connect_args(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()  # (the lock is the session's, not the transaction's)
            yield
    finally:
        engine.dispose()


def open_study(
    spec: StudySpec,
    home: Home,
    *,
    heartbeat_s: int = HEARTBEAT_S,
    close_run: CloseRun | None = None,
    before_create: Callable[[], object] | None = None,
) -> tuple[optuna.Study, RDBStorage]:
    """Create the study, or join it (any number of workers may do this at once). A study that
    exists with other settings (`StudySpec.identity`) is refused before anything is written.
    `before_create` runs only when the study does not exist yet, before it is created (the
    sweep checks the study's data there: data it refuses leaves no study behind)."""
    path = sqlite_path(home.storage)
    if before_create is not None and path is not None and not path.exists():
        before_create()  # a new SQLite store: no file is made for a study refused here
        before_create = None
    checking = False  # in `before_create`, whose errors are the caller's, not the storage's
    try:
        # Workers started together on a new PostgreSQL database otherwise race in CREATE TABLE,
        # and all but one fail (UniqueViolation on pg_type). SQLite stores are made whole
        # under their own file lock (`open_store`).
        postgres = home.storage.startswith("postgresql")
        with store_lock(home.storage, "create") if postgres else contextlib.nullcontext():
            storage = make_storage(home.storage, spec, heartbeat_s=heartbeat_s, close_run=close_run)
            if before_create is not None and not _exists(storage, spec.name):
                checking = True
                before_create()
                checking = False
            study = optuna.create_study(
                study_name=spec.name,
                storage=storage,
                sampler=make_sampler(spec),
                pruner=make_pruner(spec),
                direction="maximize",
                load_if_exists=True,
            )
    except RuntimeError:
        raise  # already one paragraph (check_sqlite_file)
    except Exception as exc:  # the driver's errors: SQLAlchemy's OperationalError and friends
        if checking:
            raise
        raise _storage_error(home.storage, exc) from None
    if study.metric_names is None:  # optuna-dashboard and `optuna` commands show the name
        study.set_metric_names(["val_accuracy"])
    notes = read_notes(study, storage)
    stored = notes.get("identity")
    if stored is None and notes.get("spec_toml"):  # made by an earlier softsweep
        stored = parse_spec(notes["spec_toml"]).identity()
    if stored is None:
        write_notes(study, storage, {"identity": spec.identity()})
    elif changed := identity_differences(stored, spec):
        raise ValueError(
            f"{spec.source}: study {spec.name!r} already exists in {home.shown_storage} with other "
            f"settings, and its trials were run with those: {'; '.join(changed)}. Give the "
            "changed study a new [study] name (or put the old values back); only n_trials, "
            "timeout_s and side_by_side may change between runs of one study."
        )
    return study, storage


def _exists(storage: RDBStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def load_study(study_name: str, home: Home) -> optuna.Study:
    """An existing study, read only; a clear error naming the studies there when it does not
    exist. Reading never creates a store."""

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = sqlite_path(home.storage)
    if path is not None and not path.exists():
        raise ValueError(
            f"No study named {study_name!r}: there is no Optuna storage at {path}. Pass the "
            "--home (or --storage) that the sweep used, or run `sweep run STUDY.toml` first."
        )
    check_sqlite_file(home.storage, "Optuna storage", "--storage")
    try:
        return optuna.load_study(study_name=study_name, storage=home.storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(home.storage)]
        raise ValueError(
            f"No study named {study_name!r} in {home.shown_storage}. Studies there: "
            f"{', '.join(names) if names else 'none'}. Run `sweep run STUDY.toml` first."
        ) from None


def stored_spec(study: optuna.Study, storage: str) -> StudySpec:
    """The spec a study was run with, from the study file it keeps."""

    text = read_notes(study, storage).get("spec_toml")
    if not text:
        raise RuntimeError(
            f"Study {study.study_name!r} in {safe_url(storage)} does not hold its study file "
            "(it was created by another tool or an older softsweep). Run `sweep run` on its "
            "study file once: it resumes the study and stores it."
        )
    return parse_spec(text, source=f"study {study.study_name!r} in {safe_url(storage)}")


# -- progress and the grid queue ---------------------------------------------------------------
def grid_cells(spec: StudySpec) -> list[Params]:
    if spec.learning_rate.values is None or spec.reg.values is None:
        return []
    return [
        Params(lr, reg, batch_size)
        for batch_size in spec.batch_size
        for lr in spec.learning_rate.values
        for reg in spec.reg.values
    ]


class Progress:
    """A study's progress toward its target, from one read of its trials."""

    def __init__(self, trials: Iterable[FrozenTrial], grid: bool) -> None:
        self.trials = list(trials)
        done = [t for t in self.trials if (o := outcome_of(t)) is not None and o.done]
        self.done = len({Params.of(t.params) for t in done} - {None}) if grid else len(done)
        self.running = sum(t.state == TrialState.RUNNING for t in self.trials)
        self.waiting = sum(t.state == TrialState.WAITING for t in self.trials)
        held = done + [t for t in self.trials if t.state == TrialState.RUNNING]
        self.taken: dict[Params, int] = {}
        for t in sorted(held, key=lambda t: -t.number):  # the lowest number holds a cell
            if (cell := Params.of(t.params)) is not None:
                self.taken[cell] = t.number
        queued = {Params.of(t.params) for t in self.trials if t.state == TrialState.WAITING}
        self.covered: set[Params] = set(self.taken) | {c for c in queued if c is not None}
        complete = [t.value for t in self.trials if t.state == TrialState.COMPLETE]
        self.best_value = max((float(v) for v in complete if v is not None), default=None)

    def duplicate_of(self, trial: Trial) -> int | None:
        """The earlier trial that already holds this trial's grid cell, if any."""
        cell = Params.of(trial.params)
        holder = self.taken.get(cell) if cell is not None else None
        return holder if holder is not None and holder < trial.number else None


def progress(study: optuna.Study, grid: bool) -> Progress:
    return Progress(study.get_trials(deepcopy=False), grid)


def enqueue_missing(study: optuna.Study, spec: StudySpec, now: Progress) -> int:
    """Queue the grid cells that no trial has done, is running or is waiting for, as many as
    the study's target still needs (n_trials may be smaller than the grid)."""
    room = spec.target - now.done - now.running - now.waiting
    missing = [cell for cell in grid_cells(spec) if cell not in now.covered][: max(0, room)]
    for cell in missing:
        queue(study, spec, cell)
    return len(missing)


# -- heartbeats ----------------------------------------------------------------------------------
class Heartbeat:
    """`with Heartbeat(storage, study, interval) as beat:` records a heartbeat every `interval`
    seconds for the trials `beat.add`ed and not yet `beat.remove`d, in one thread, for the
    block's duration (as Optuna's own loop scopes its heartbeat around a trial)."""

    def __init__(self, storage: RDBStorage, study: optuna.Study, interval: float) -> None:
        self.storage, self.interval = storage, interval
        self._study_id = storage.get_study_id_from_name(study.study_name)
        self._ids: dict[int, int] = {}  # trial number -> trial id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def add(self, trial: Trial) -> None:
        """Beat for this trial from now on (its first beat now, before this returns)."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(
            self._study_id, trial.number
        )
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self._ids[trial.number] = trial_id

    def remove(self, numbers: Iterable[int]) -> None:
        with self._lock:
            for number in numbers:
                self._ids.pop(number, None)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self._ids.values())
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a storage hiccup: the next beat, well within the grace
                    pass


# -- reclaiming a dead process's trials --------------------------------------------------------
def reclaim(
    study: optuna.Study,
    storage: RDBStorage,
    spec: StudySpec,
    owner: Owner,
    *,
    embedded: bool,
    grace_s: float,
    close_run: CloseRun | None = None,
) -> list[int]:
    """Take back the trials of processes that are gone (see the module docstring): each is told
    FAIL(interrupted), its MLflow run closed, its params queued again. Returns their numbers."""
    from optuna.storages import fail_stale_trials

    fail_stale_trials(study)  # by heartbeat; `make_storage`'s callback does the rest
    now = dt.datetime.now()
    taken = []
    lonely: bool | None = None  # no other process holds a lock in this home
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name = trial.user_attrs.get(OWNER_ATTR)
        if name:
            if owner.alive(name) is not False:
                continue
            reason = f"interrupted: {name} is gone (its lock in {owner.folder} is free)"
        else:  # asked, never registered: its process died between ask and register
            age = (now - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0
            if lonely is None:
                lonely = embedded and not owner.others_alive()
            if not (lonely or age > grace_s):
                continue
            reason = "interrupted: its process died while asking for it"
        if _take_back(storage, study, spec, trial, reason, close_run):
            taken.append(trial.number)
    return taken


def _take_back(
    storage: RDBStorage,
    study: optuna.Study,
    spec: StudySpec,
    trial: FrozenTrial,
    reason: str,
    close_run: CloseRun | None,
) -> bool:
    """A dead process's trial given back (`trial.give_back`), and its MLflow run closed."""
    if not give_back(storage, study, spec, trial.number, reason):
        return False
    if close_run is not None:
        close_run(study.study_name, trial.number, trial.user_attrs.get(RUN_ID_ATTR), reason)
    return True

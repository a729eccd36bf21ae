"""The embedded stores' SQLite files: checked before use, opened one process at a time.

A file that cannot be a store (not a database, a folder, another program's tables) is refused
before anything is written to it or trained: MLflow given Optuna's file (or the reverse) would
otherwise add its own tables to it and fail only after the first group trained.

Optuna and MLflow both create (and MLflow migrates) a new SQLite store's tables on first
open: a process killed meanwhile leaves a store half made, and two processes doing it at once
both run the DDL and one fails ("table studies
already exists", "table _alembic_tmp_experiments already exists"). `sweep run --workers N` on a
new home, or N `sweep worker` processes started together on one machine, do exactly that. An
advisory lock on `<file>.lock` makes them take turns: the first creates the store (whole, in a
temporary file renamed into place), the others find it there. PostgreSQL and MLflow servers
handle their own concurrency: no lock.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TypeVar

__all__ = ["check_sqlite_file", "open_store", "sqlite_lock", "sqlite_path"]

T = TypeVar("T")

# The tables that say whose store a SQLite file is.
TABLES = {
    "MLflow tracking store": {"experiments", "runs", "metrics"},
    "Optuna storage": {"studies", "trials", "version_info"},
}
# All of Optuna's tables: a file holding only some of them is an Optuna storage half made by a
# plain `optuna.load_study` (a notebook polling a sweep that has not made its store yet), which
# Optuna completes on open. MLflow's stores are made by migrations, whole, by `open_store`.
OPTUNA_TABLES = {
    "studies", "study_directions", "study_system_attributes", "study_user_attributes",
    "trial_heartbeats", "trial_intermediate_values", "trial_params", "trial_system_attributes",
    "trial_user_attributes", "trial_values", "trials", "version_info",
}  # fmt: skip


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///path` URI (None for anything else, or an in-memory store)."""
    if not uri.startswith("sqlite:///"):
        return None
    name = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(name).resolve() if name and name != ":memory:" else None


@contextmanager
def sqlite_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on the store's `<file>.lock` (nothing for a non-SQLite URI)."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_store(uri: str, opener: Callable[[], T], create: Callable[[str], None]) -> T:
    """`opener()` on the store at `uri`, one process at a time. A new SQLite store is first made
    whole by `create(tmp_uri)` in a temporary file beside it, then renamed into place: a process
    killed while making it (MLflow's ~60 migrations take a second or two) leaves no half-made
    store that nothing could open, only a temporary file, removed the next time."""
    path = sqlite_path(uri)
    with sqlite_lock(uri):
        if path is not None and (not path.exists() or path.stat().st_size == 0):
            for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed maker's
                stale.unlink(missing_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                create(f"sqlite:///{tmp}")
                with open(tmp, "rb") as made:
                    os.fsync(made.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return opener()


def check_sqlite_file(uri: str, kind: str, option: str) -> None:
    """Refuse, in one paragraph, a `sqlite:///` file that cannot be this kind of store (a
    folder, not a database, a folder it cannot be created in, another program's tables).
    Milliseconds; nothing is created. Other URIs are not checked here.

    Opened read-write (read-only only if the file is write-protected): a process killed in the
    middle of a write leaves a hot journal that the next opener must roll back, which a
    read-only connection cannot do ("attempt to write a readonly database"); this check is
    that next opener, and the rollback is SQLite's own recovery, which the store needs anyway."""
    path = sqlite_path(uri)
    if path is None:
        return
    problem = None
    if path.is_dir():
        problem = "it is a folder"
    elif path.exists():
        try:
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True)) as db:
                # alembic's bookkeeping alone (both programs use it) is a store not made yet
                tables = {name for (name,) in db.execute(_TABLE_NAMES)} - {"alembic_version"}
        except sqlite3.Error as exc:
            problem = f"sqlite3: {exc}"
        else:
            half_made = kind == "Optuna storage" and tables <= OPTUNA_TABLES
            if tables and not TABLES[kind] <= tables and not half_made:
                others = [k for k, needed in TABLES.items() if k != kind and needed <= tables]
                problem = (
                    f"it is an {others[0]}"
                    if others
                    else f"its tables are another program's: {', '.join(sorted(tables)[:6])}"
                )
    else:
        folder = next((f for f in path.parents if f.exists()), None)
        if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            problem = f"{folder} is not a folder this user can create it in"
    if problem:
        raise RuntimeError(
            f"The {kind} {uri} cannot be used ({problem}). Point {option} at a new file or at "
            f"an existing {kind}'s file (or pass another --home)."
        )


_TABLE_NAMES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"

"""The embedded stores' SQLite files: checked before use, opened one process at a time.

A file that cannot be a store (not a database, a folder, another program's tables) is refused
before anything is written to it or trained: MLflow given Optuna's file (or the reverse) would
otherwise add its own tables to it and fail only after the first group trained.

Optuna and MLflow both create (and MLflow migrates) a new SQLite store's tables on first
open, and two processes doing that at once both run the DDL and one fails ("table studies
already exists", "table _alembic_tmp_experiments already exists"). `sweep run --workers N` on a
new home, or N `sweep worker` processes started together on one machine, do exactly that. An
advisory lock on `<file>.lock` makes them take turns: the first creates the tables, the others
find them there. PostgreSQL and MLflow servers handle their own concurrency: no lock.

Creating MLflow's store means running its ~60 schema migrations: ~0.8 s of Python, in every
new home, for the same empty store each time. `open_store` with a seed keeps a copy of the
first empty store an MLflow version made (in the user cache, named after the version) and
starts every later new file as a copy of it; MLflow still checks the copy's schema revision
when it opens it, and a copy it refuses is replaced by a store made the slow way.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import TypeVar

__all__ = ["check_sqlite_file", "open_store", "sqlite_lock", "sqlite_path"]

T = TypeVar("T")

# The tables that say whose store a SQLite file is.
TABLES = {
    "MLflow tracking store": {"experiments", "runs", "metrics"},
    "Optuna storage": {"studies", "trials", "version_info"},
}


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


def open_store(uri: str, opener: Callable[[], T], kind: str, seed: Path | None = None) -> T:
    """`opener()` (which opens, and for a new file creates, the store at `uri`), one process
    at a time. With `seed` (where this program version's empty store is kept): a new file
    starts as a copy of the seed when there is one, and becomes the seed when there is not.
    Files that hold anything are never replaced."""
    path = sqlite_path(uri)
    with sqlite_lock(uri):
        if path is None or seed is None or (path.exists() and path.stat().st_size > 0):
            return opener()
        if _tables(seed) >= TABLES[kind] and _copy_database(seed, path):
            try:
                return opener()
            except Exception:  # a seed this version refuses (say, an older schema revision)
                with suppress(OSError):
                    seed.unlink(missing_ok=True)
                # Emptied, not deleted: the program may keep a connection to this file open
                # (MLflow keeps one engine per URI), and it must see the store it makes next.
                _drop_tables(path)
        store = opener()
        _copy_database(path, seed)  # best effort: the next new store is a copy of this one
        return store


def _tables(path: Path) -> set[str]:
    """The tables of a SQLite file (none when it is missing or not a database)."""
    if not path.is_file():
        return set()
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            return {name for (name,) in db.execute(_TABLE_NAMES)}
    except sqlite3.Error:
        return set()


def _drop_tables(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        for kind, name in db.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%'"
        ).fetchall():
            db.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')


def _copy_database(source: Path, target: Path) -> bool:
    """Copy a SQLite database with SQLite's backup API (consistent even while another
    connection has it open), to a temporary file that replaces `target` once it is on disk.
    False, with nothing left behind, when it cannot."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            closing(sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(tmp)) as dst,
        ):
            src.backup(dst)
        with open(tmp, "rb") as done:
            os.fsync(done.fileno())
        os.replace(tmp, target)
        return True
    except (OSError, sqlite3.Error):
        with suppress(OSError):  # (its folder may be what is wrong)
            tmp.unlink(missing_ok=True)
        return False


def check_sqlite_file(uri: str, kind: str, option: str) -> None:
    """Refuse, in one paragraph, a `sqlite:///` file that cannot be this kind of store (a
    folder, not a database, a folder it cannot be created in, another program's tables).
    Milliseconds; nothing is created or written. Other URIs are not checked here."""
    path = sqlite_path(uri)
    if path is None:
        return
    problem = None
    if path.is_dir():
        problem = "it is a folder"
    elif path.exists():
        try:
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
                # alembic's bookkeeping alone (both programs use it) is a store not made yet
                tables = {name for (name,) in db.execute(_TABLE_NAMES)} - {"alembic_version"}
        except sqlite3.Error as exc:
            problem = f"sqlite3: {exc}"
        else:
            if tables and not TABLES[kind] <= tables:
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

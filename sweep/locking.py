"""One process at a time through the first opening of a SQLite store.

Optuna and MLflow both create (and MLflow migrates) a new SQLite store's tables on first
open, and two processes doing that at once both run the DDL and one fails ("table studies
already exists", "table _alembic_tmp_experiments already exists"). `sweep run --workers N` on a
new home, or N `sweep worker` processes started together on one machine, do exactly that. An
advisory lock on `<file>.lock` makes them take turns: the first creates the tables, the others
find them there. PostgreSQL and MLflow servers handle their own concurrency: no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["sqlite_lock", "sqlite_path"]


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

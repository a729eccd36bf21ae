"""The `sweep` command line: `main` (the group and `entry`), `run` (run, worker, create and the
summary), `browse` (runs, studies, report, sync, delete), `ui`, `check`, and `options` (the store
options and the one-paragraph errors every command shares)."""

from .main import entry, main

__all__ = ["entry", "main"]

"""softsweep's sweep layer: study specs, the Optuna runner, MLflow tracking, reports, the CLI.

`sweep.load_runs`, `sweep.load_history` and `sweep.run` are imported lazily, so that
`import sweep` (and `sweep check`) stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SweepResult", "load_history", "load_runs", "run"]


def __getattr__(name: str) -> Any:
    if name in ("load_runs", "load_history"):
        from . import compare

        return getattr(compare, name)
    if name in ("run", "SweepResult"):
        from . import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")

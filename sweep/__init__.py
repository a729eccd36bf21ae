"""softsweep's sweep layer: study specs, the Optuna runner, MLflow tracking, reports, the CLI.

`sweep.load_runs` is imported lazily so that `import sweep` (and `sweep check`) stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_runs"]


def __getattr__(name: str) -> Any:
    if name == "load_runs":
        from .compare import load_runs

        return load_runs
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")

"""softsweep's sweep layer: study specs, the Optuna runner, MLflow tracking, reports, the CLI.

`sweep.load_runs`, `sweep.load_history` and `sweep.run` are imported lazily, so that
`import sweep` (and `sweep check`) stays fast.
"""

from __future__ import annotations

import warnings
from typing import Any

# In a Jupyter kernel without ipywidgets, `import optuna` warns that tqdm's widget bar is missing
# (its progress bar module imports tqdm.auto), in the cell's output; `sweep.run` draws tqdm's
# text bar there instead, so the warning says nothing a user of softsweep needs.
warnings.filterwarnings("ignore", message="IProgress not found")

__all__ = ["SweepResult", "load_history", "load_runs", "run"]


def __getattr__(name: str) -> Any:
    if name in ("load_runs", "load_history"):
        from . import compare

        return getattr(compare, name)
    if name in ("run", "SweepResult"):
        from . import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")

"""The report's figures, drawn with matplotlib and seaborn: the only package that imports them.

Each function takes plain data (a `StudyView` and what `view` computed from it) and returns
a `matplotlib.figure.Figure`, built directly (no pyplot state, no display needed); `files.py`
saves them. `study.py` draws the sweep, `evaluation.py` the tested trial's test predictions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import DPI, save_figure
from .evaluation import confusion_figure, predictions_figure, reliability_figure
from .study import (
    curves_figure,
    gallery_figure,
    heatmap_figure,
    history_figure,
    importances_figure,
    path_figure,
    templates_figure,
    timing_figure,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "Figure",
    "confusion_figure",
    "curves_figure",
    "gallery_figure",
    "heatmap_figure",
    "history_figure",
    "importances_figure",
    "path_figure",
    "predictions_figure",
    "reliability_figure",
    "save_figure",
    "templates_figure",
    "timing_figure",
    "warm_up",
]


def warm_up() -> None:
    """Import what drawing needs and nothing else does: seaborn (with scipy.stats, ~2.4 s),
    matplotlib's figure and Agg canvas, Optuna's importance evaluator. A sweep calls it in a
    thread while it trains (training waits in BLAS, which runs without Python's lock), so that
    the end of the sweep does not."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure
    import optuna.importance  # noqa: F401
    import seaborn  # noqa: F401

    # The first figure drawn in a process pays for finding and loading the fonts and building
    # the tick machinery (about 0.3 s): a small one drawn here pays it while the sweep trains.
    fig = matplotlib.figure.Figure(figsize=(2, 2), layout="constrained")
    ax = fig.subplots()
    ax.plot([0.0, 1.0], [0.0, 1.0])
    ax.set(title="warm-up", xlabel="x", ylabel="y")
    matplotlib.backends.backend_agg.FigureCanvasAgg(fig).draw()

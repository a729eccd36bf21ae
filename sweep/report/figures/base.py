"""What every figure shares: its size in pixels and how it is made (no pyplot state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

DPI = 100


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: Path, format: str) -> None:
    """Draw `fig` into the file `path` as `format` ("png")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # savefig runs a figure's layout engine in a dry-run draw and again in the real one: laid
    # out once here and then frozen, the figure draws to the same pixels (checked on the main
    # job's ten figures) for one layout pass less (0.2-0.8 s of a report, bench/README.md).
    # The layout and the drawing then share the Agg canvas's one renderer, and with it the
    # text measurements matplotlib caches per renderer (0.07 s of a report, the same pixels).
    # Given only now: seaborn's heatmap draws a figure whose canvas can draw, to see whether
    # its tick labels overlap, and ours sets its own.
    FigureCanvasAgg(fig)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine(None)
    fig.savefig(path, format=format, dpi=DPI)


def powers_of_ten(axis: Axis) -> None:
    """Label a log (or symlog) axis as `view.power_label` does, 10⁻³ in plain Unicode, where
    matplotlib's own labels are mathtext, whose parser costs a report half a second. Call it
    after `set_xscale`/`set_yscale`, which resets the labels."""
    from matplotlib.ticker import LogFormatter

    from ..view import power_label

    class Powers(LogFormatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            # LogFormatter decides which ticks get a label; power_label writes it.
            return power_label(x) if super().__call__(x, pos) else ""

    axis.set_major_formatter(Powers())
    axis.set_minor_formatter(Powers(labelOnlyBase=False))

"""What every figure shares: its size in pixels and how it is made (no pyplot state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

DPI = 100


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


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

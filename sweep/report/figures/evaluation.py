"""The tested trial's figures, from its one test evaluation: the confusion matrix, and test
images with their true and predicted classes (the first ones, and the most confident mistakes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..view import Shown, StudyView, TestView
from .base import _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["confusion_figure", "predictions_figure"]

RIGHT, WRONG = "#1a7f37", "#cf222e"


def _names(view: StudyView, n: int) -> list[str]:
    return [view.class_names[k] if k < len(view.class_names) else str(k) for k in range(n)]


def confusion_figure(view: StudyView, test: TestView) -> Figure:
    """Counts of (true, predicted) class over the test set, each row also as a share of its
    class (the colour), the diagonal the correct predictions."""
    import seaborn as sns

    counts = test.confusion
    names = _names(view, counts.shape[0])
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 0.55 * len(names)
    fig = _figure(size + 1.6, size)
    ax = fig.subplots()
    sns.heatmap(
        share, annot=counts, fmt="d", cmap="Blues", vmin=0, vmax=1, square=True,
        xticklabels=names, yticklabels=names, ax=ax, annot_kws={"fontsize": 7},
        cbar_kws={"label": "share of the true class"}, linewidths=0.5, linecolor="white",
    )  # fmt: skip
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.tick_params(axis="y", rotation=0, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        f"Confusion matrix of trial #{test.trial} on the test set "
        f"(accuracy {test.accuracy:.4f}, {int(counts.sum())} images)",
        fontsize=10,
    )
    return fig


def predictions_figure(view: StudyView, test: TestView) -> Figure:
    """Two rows of panels: the first test images, then the most confident mistakes; each with
    its true and predicted class and the predicted class's probability."""
    sections = [
        ("The first test images", test.samples),
        ("The most confident mistakes", test.mistakes),
    ]
    sections = [(title, shown) for title, shown in sections if shown]
    columns = 8
    rows = sum(math.ceil(len(shown) / columns) for _, shown in sections)
    fig = _figure(1.45 * columns, 1.1 + 1.75 * rows)
    subfigs = fig.subfigures(len(sections), 1, squeeze=False)[:, 0]
    names = _names(view, test.confusion.shape[0])
    for subfig, (title, shown) in zip(subfigs, sections, strict=True):
        _panels(subfig, shown, names, columns)
        subfig.suptitle(title, fontsize=10)
    fig.suptitle(
        f"Trial #{test.trial} on test images (true / predicted, probability of the prediction)",
        fontsize=10,
    )
    return fig


def _panels(subfig: object, shown: Sequence[Shown], names: list[str], columns: int) -> None:
    rows = math.ceil(len(shown) / columns)
    axes = subfig.subplots(rows, columns, squeeze=False).ravel()  # type: ignore[attr-defined]
    for ax in axes[len(shown) :]:
        ax.axis("off")
    for ax, s in zip(axes, shown, strict=False):
        grey = s.image.ndim == 2
        ax.imshow(s.image, cmap="gray" if grey else None, vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ok = s.true == s.predicted
        for spine in ax.spines.values():
            spine.set_edgecolor(RIGHT if ok else WRONG)
            spine.set_linewidth(2)
        ax.set_title(
            f"true: {names[s.true]}\npred: {names[s.predicted]} {s.confidence:.2f}",
            fontsize=7,
            color=RIGHT if ok else WRONG,
        )

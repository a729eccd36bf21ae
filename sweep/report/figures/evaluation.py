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

__all__ = ["confusion_figure", "predictions_figure", "reliability_figure"]

RIGHT, WRONG = "#1a7f37", "#cf222e"


def _names(view: StudyView, n: int) -> list[str]:
    return [view.class_names[k] if k < len(view.class_names) else str(k) for k in range(n)]


def confusion_figure(view: StudyView, test: TestView) -> Figure:
    """Counts of (true, predicted) class over the test set, every cell annotated. The errors
    (off the diagonal) have a colour scale of their own, from 0 to the largest error count, so
    that the confusions that matter (Shirt taken for T-shirt) stand out; the diagonal, the
    correct predictions, is drawn in grey with its counts."""
    import seaborn as sns

    counts = test.confusion
    names = _names(view, counts.shape[0])
    diagonal = np.eye(counts.shape[0], dtype=bool)
    errors_max = int(counts[~diagonal].max()) if counts.size > 1 else 0
    size = 1.6 + 0.55 * len(names)
    fig = _figure(size + 1.6, size)
    ax = fig.subplots()
    common = {
        "annot": counts, "fmt": "d", "square": True, "xticklabels": names,
        "yticklabels": names, "ax": ax, "annot_kws": {"fontsize": 7}, "linewidths": 0.5,
        "linecolor": "white",
    }  # fmt: skip
    sns.heatmap(
        counts, mask=diagonal, cmap="Reds", vmin=0, vmax=max(errors_max, 1),
        cbar_kws={"label": "test images misclassified (off the diagonal)"}, **common,
    )  # fmt: skip
    sns.heatmap(counts, mask=~diagonal, cmap="Greys", vmin=0, vmax=4 * counts.max(),
                cbar=False, **common)  # fmt: skip
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.tick_params(axis="y", rotation=0, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        f"Confusion matrix of trial #{test.trial} on the test set "
        f"(accuracy {test.accuracy:.4f}, {int(counts.sum())} images; diagonal: correct, grey)",
        fontsize=10,
    )
    return fig


def reliability_figure(view: StudyView, test: TestView) -> Figure:
    """The reliability diagram of the tested trial on the test set: in each confidence bin, the
    share classified right against the mean confidence (on the diagonal: calibrated), at the
    model's own temperature and at the one fitted on validation; below, how many test images
    fall in each bin."""
    import pandas as pd
    import seaborn as sns

    curves = [("as trained (T = 1)", test.calibration)]
    scores = view.test_scores or {}
    if test.scaled is not None and "temperature" in scores:
        curves.append((f"T = {scores['temperature']:.3f}, fitted on validation", test.scaled))
    rows = [
        {"model": name, "confidence": c, "accuracy": a, "images": n, "lower": low}
        for name, cal in curves
        for c, a, n, low in zip(cal.confidence, cal.accuracy, cal.count, cal.lower, strict=True)
    ]
    frame = pd.DataFrame(rows)
    fig = _figure(6.4, 6.4)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], ls="--", color="#888", lw=1, label="calibrated")
    sns.lineplot(frame, x="confidence", y="accuracy", hue="model", marker="o", ax=top)
    low = float(frame["lower"].min()) if len(frame) else 0.0
    top.set_xlim(low, 1.0)
    top.set_ylim(min(low, float(frame["accuracy"].min()) if len(frame) else 0.0) - 0.02, 1.01)
    top.set_ylabel("share classified right")
    top.legend(fontsize=8, loc="upper left")
    first = frame[frame["model"] == curves[0][0]]
    bottom.bar(first["confidence"], first["images"], width=0.8 / 15, color="#4c72b0")
    bottom.set_yscale("log")
    bottom.set_ylabel("test images")
    bottom.set_xlabel("confidence (probability of the predicted class), 15 equal bins")
    eces = "; ".join(f"ECE {cal.ece:.4f} {name}" for name, cal in curves)
    top.set_title(f"Calibration of trial #{test.trial} on the test set\n{eces}", fontsize=10)
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

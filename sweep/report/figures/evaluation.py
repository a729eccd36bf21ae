"""The tested trial's figures, from its one test evaluation: the confusion matrix, and test
images with their true and predicted classes (the first ones, and the most confident mistakes)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..view import StudyView, TestView
from .base import _figure, powers_of_ten

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
    # The class names are set as ticks below: given to seaborn, each heatmap call would
    # measure them for overlap, making a renderer per label (0.1 s of a report).
    common = {
        "annot": counts, "fmt": "d", "square": True, "xticklabels": False,
        "yticklabels": False, "ax": ax, "annot_kws": {"fontsize": 7}, "linewidths": 0.5,
        "linecolor": "white",
    }  # fmt: skip
    sns.heatmap(
        counts, mask=diagonal, cmap="Reds", vmin=0, vmax=max(errors_max, 1),
        cbar_kws={"label": "test images misclassified (off the diagonal)"}, **common,
    )  # fmt: skip
    sns.heatmap(counts, mask=~diagonal, cmap="Greys", vmin=0, vmax=4 * counts.max(),
                cbar=False, **common)  # fmt: skip
    centres = np.arange(len(names)) + 0.5
    ax.set_xticks(centres, names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(centres, names, rotation=0, va="center", fontsize=8)
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
    sns.lineplot(
        frame, x="confidence", y="accuracy", hue="model", marker="o", ax=top, estimator=None
    )  # one point per bin and model: nothing to average
    low = float(frame["lower"].min()) if len(frame) else 0.0
    top.set_xlim(low, 1.0)
    top.set_ylim(min(low, float(frame["accuracy"].min()) if len(frame) else 0.0) - 0.02, 1.01)
    top.set_ylabel("share classified right")
    top.legend(fontsize=8, loc="upper left")
    first = frame[frame["model"] == curves[0][0]]
    bottom.bar(first["confidence"], first["images"], width=0.8 / 15, color="#4c72b0")
    bottom.set_yscale("log")
    powers_of_ten(bottom.yaxis)
    bottom.set_ylabel("test images")
    bottom.set_xlabel("confidence (probability of the predicted class), 15 equal bins")
    eces = "; ".join(f"ECE {cal.ece:.4f} {name}" for name, cal in curves)
    top.set_title(f"Calibration of trial #{test.trial} on the test set\n{eces}", fontsize=10)
    return fig


def predictions_figure(view: StudyView, test: TestView) -> Figure:
    """Two rows of panels: the first test images, then the most confident mistakes; each with
    its true and predicted class and the predicted class's probability, framed green (right)
    or red (wrong). One image for all panels, its labels drawn over it (one axes draws many
    times faster than one axes per panel)."""
    from matplotlib.patches import Rectangle

    sections = [
        ("The first test images", test.samples),
        ("The most confident mistakes", test.mistakes),
    ]
    sections = [(title, shown) for title, shown in sections if shown]
    names = _names(view, test.confusion.shape[0])
    columns = 8
    sample = (test.samples or test.mistakes)[0].image
    h, w = sample.shape[:2]
    colour = sample.ndim == 3
    pad, label = max(3, w // 6), max(14, h // 2)  # between panels; room for two lines above
    rows = [shown[k : k + columns] for _, shown in sections for k in range(0, len(shown), columns)]
    starts = []  # the row each section's title goes above
    row = 0
    for _, shown in sections:
        starts.append(row)
        row += math.ceil(len(shown) / columns)
    heading = label  # a section's title, above its first row
    top, y = [], 0  # each row's top: its labels, then its images
    for k in range(len(rows)):
        y += heading if k in starts else 0
        top.append(y)
        y += label + h + pad
    height = y
    width = columns * (w + pad)
    canvas = np.full((height, width, 3) if colour else (height, width), 255, dtype=np.uint8)
    fig = _figure(1.45 * columns, 1.1 + 1.75 * len(rows) + 0.35 * len(sections))
    ax = fig.subplots()
    for k, panels in enumerate(rows):
        y0 = top[k] + label
        for j, s in enumerate(panels):
            x0 = j * (w + pad)
            canvas[y0 : y0 + h, x0 : x0 + w] = s.image
            ok = s.true == s.predicted
            ax.add_patch(Rectangle((x0 - 1, y0 - 1), w + 1, h + 1, fill=False,
                                   ec=RIGHT if ok else WRONG, lw=2))  # fmt: skip
            ax.text(x0 + w / 2, y0 - 1.5, f"true: {names[s.true]}\npred: {names[s.predicted]} "
                    f"{s.confidence:.2f}", ha="center", va="bottom", fontsize=7,
                    color=RIGHT if ok else WRONG, in_layout=False)  # fmt: skip
    for (title, _), start in zip(sections, starts, strict=True):
        ax.text(width / 2, top[start] - heading / 2, title, ha="center", va="center",
                fontsize=10, in_layout=False)  # fmt: skip
    ax.imshow(canvas, cmap=None if colour else "gray", vmin=0, vmax=255)
    ax.set_xlim(-2, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    fig.suptitle(
        f"Trial #{test.trial} on test images (true / predicted, probability of the prediction)",
        fontsize=10,
    )
    return fig

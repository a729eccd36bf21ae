"""The study's figures: the heatmap, weight templates and gallery, learning curves, Optuna's
history and importances, and the naive vs vectorized timings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...trial import CHARTED
from ..view import (
    StudyView,
    TrialView,
    cell_axes,
    range_edges,
    template_columns,
    template_weights,
)
from .base import _figure, powers_of_ten

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "curves_figure",
    "gallery_figure",
    "heatmap_figure",
    "history_figure",
    "importances_figure",
    "path_figure",
    "templates_figure",
    "timing_figure",
]

HEAT_RANGE = 0.03  # the heatmap's colours span the best cell's value minus this, to the best
# (parameter, end of its range) -> the arrow's direction in cells (larger reg is drawn on top)
ARROWS = {
    ("learning_rate", "high"): (1, 0),
    ("learning_rate", "low"): (-1, 0),
    ("reg", "high"): (0, -1),
    ("reg", "low"): (0, 1),
}

# How a cell without a completed trial is drawn: fill colour, hatch.
MARKS = {
    "diverged": ("#f4c7c3", "///"),
    "error": ("#fde0b2", "xx"),
    "pruned": ("#e0e0e0", ".."),
    "interrupted": ("#f5f5f5", "\\\\"),
    "running": ("#ffffff", ""),
}


def heatmap_figure(view: StudyView, cells: list[dict[str, Any]]) -> Figure:
    import seaborn as sns
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    lr_axis, reg_axis = cell_axes(view)
    batch_sizes = sorted({c["batch_size"] for c in cells})
    values = [c["value"] for c in cells if c["value"] is not None]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
    # The colours separate the good cells: the top HEAT_RANGE below the best spans the map,
    # and anything lower takes its darkest colour (its value is written in the cell).
    clipped = vmax - vmin > HEAT_RANGE
    vmin = max(vmin, vmax - HEAT_RANGE)
    if vmax - vmin < 1e-3:
        vmin, vmax = vmin - 0.005, vmax + 0.005
    cmap = "viridis"
    norm = Normalize(vmin, vmax)
    edges = range_edges(view)
    columns = min(2, len(batch_sizes))
    rows = math.ceil(len(batch_sizes) / columns)
    fig = _figure(
        1.6 + columns * (0.75 * lr_axis.size + 1.0), 0.9 + rows * (0.5 * reg_axis.size + 0.8)
    )
    grid_axes = fig.subplots(rows, columns, squeeze=False)
    for extra in grid_axes.ravel()[len(batch_sizes) :]:
        extra.remove()
    axes = grid_axes.ravel()[: len(batch_sizes)]
    binned = not lr_axis.values
    for ax, batch_size in zip(axes, batch_sizes, strict=True):
        grid = np.full((reg_axis.size, lr_axis.size), np.nan)
        notes = np.full(grid.shape, "", dtype=object)
        marks = []
        for c in (c for c in cells if c["batch_size"] == batch_size):
            row, col = reg_axis.size - 1 - c["reg_cell"], c["lr_cell"]  # larger reg on top
            if c["value"] is not None:
                grid[row, col] = c["value"]
                count = f"\nn={c['n_trials']}" if binned or c["n_trials"] > 1 else ""
                notes[row, col] = f"{c['value']:.4f}{count}"
            else:
                marks.append((row, col, c["state"], c["n_trials"]))
            if c["best"]:
                ax.add_patch(
                    Rectangle((col, row), 1, 1, fill=False, edgecolor="#d62728", lw=3, zorder=5)
                )
                for name, side, _, _ in edges:  # the range is binding: an arrow out of it
                    dx, dy = ARROWS[(name, side)]
                    ax.annotate(
                        "", xy=(col + 0.5 + 0.75 * dx, row + 0.5 + 0.75 * dy),
                        xytext=(col + 0.5 + 0.3 * dx, row + 0.5 + 0.3 * dy),
                        arrowprops={"arrowstyle": "-|>", "color": "#d62728", "lw": 2},
                        annotation_clip=False, zorder=6,
                    )  # fmt: skip
        # seaborn picks each value's ink for its cell's colour; cells without one are masked
        # and drawn below with their state. (Tick labels are set below: seaborn's own would be
        # measured for overlap, a renderer made for each label, 0.25 s of a report.)
        sns.heatmap(
            grid, mask=np.isnan(grid), annot=notes, fmt="", cmap=cmap, vmin=vmin, vmax=vmax,
            cbar=False, linewidths=0.5, linecolor="white", ax=ax, annot_kws={"fontsize": 7},
            xticklabels=False, yticklabels=False,
        )  # fmt: skip
        for row, col, state, count in marks:
            colour, hatch = MARKS[state]
            ax.add_patch(
                Rectangle(
                    (col, row), 1, 1, facecolor=colour, hatch=hatch, edgecolor="#9e9e9e", lw=0.5
                )
            )
            label = state if count == 1 else f"{state}\nn={count}"
            ax.text(
                col + 0.5, row + 0.5, label, ha="center", va="center", fontsize=6.5, in_layout=False
            )
        ax.set_xlim(0, lr_axis.size)
        ax.set_ylim(reg_axis.size, 0)  # row 0 on top
        ax.spines[:].set_visible(False)
        xs, xl = lr_axis.ticks()
        ax.set_xticks(xs, xl, rotation=0, fontsize=8)
        ys, yl = reg_axis.ticks()
        ax.set_yticks([reg_axis.size - y for y in ys], yl, rotation=0, fontsize=8)
        ax.set_xlabel("learning rate")
        ax.set_title(f"batch size {batch_size}", fontsize=10)
    for row_axes in grid_axes:
        row_axes[0].set_ylabel("L2 regularization (reg)")
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=list(axes),
        label="validation accuracy"
        + (f" (the top {HEAT_RANGE:g}; lower: darkest)" if clipped else ""),
        shrink=0.9,
        extend="min" if clipped else "neither",
    )
    kind = "grid cells" if not binned else "log-binned cells, best trial per cell"
    title = f"{view.spec.name}: validation accuracy ({kind})"
    if edges:
        title += (
            "\nred arrow: the best sits on the edge of its "
            + " and ".join(
                f"{'learning-rate' if name == 'learning_rate' else 'reg'} range ({side} end)"
                for name, side, _, _ in edges
            )
            + ": that range is binding"
        )
    fig.suptitle(title, fontsize=11)
    return fig


def templates_figure(view: StudyView, best: TrialView, images: np.ndarray) -> Figure:
    """One image per class: the weights themselves (grey data), on a diverging colour map
    centred at 0 (red: the pixel raises the class's score, blue: lowers it), one symmetric scale
    for every class; colour data keeps cs231n's min-max RGB picture (`images`). One image for
    all classes, their names drawn over it: one axes draws several times faster than one per
    class (0.27 -> 0.09 s on the main job, bench/README.md)."""
    n = images.shape[0]
    columns = template_columns(n)
    rows = math.ceil(n / columns)
    grey = images.ndim == 3
    raw = template_weights(view.weights[best.number], view.image_shape) if grey else None
    if raw is not None and raw.ndim == 2:  # flat vectors: one row of pixels each
        raw = raw[:, None, :]
    shown = raw if raw is not None else images
    h, w = shown.shape[1:3]
    pad, label = max(1, w // 8), max(2, h // 4)  # between panels; a line of text above each
    canvas = np.full(
        (rows * (label + h + pad) - pad, columns * (w + pad) - pad, *shown.shape[3:]),
        np.nan if grey else 255,
        dtype=np.float64 if grey else np.uint8,
    )
    panel = 1.6 * min(1.0, max(0.5, w / h))
    fig = _figure(columns * panel + (0.9 if grey else 0.0), rows * 1.6 * min(1.0, h / w) + 0.7)
    ax = fig.subplots()
    for k in range(n):
        y0, x0 = (k // columns) * (label + h + pad) + label, (k % columns) * (w + pad)
        canvas[y0 : y0 + h, x0 : x0 + w] = shown[k]
        name = view.class_names[k] if k < len(view.class_names) else str(k)
        ax.text(x0 + w / 2, y0 - 0.5, name, ha="center", va="bottom", fontsize=9,
                in_layout=False)  # fmt: skip
    if raw is not None:
        from matplotlib import colormaps

        limit = float(np.abs(raw).max()) if raw.size else 1.0
        cmap = colormaps["RdBu_r"].with_extremes(bad="white")  # the gaps between classes
        drawn = ax.imshow(canvas, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
        fig.colorbar(drawn, ax=ax, shrink=0.8, label="weight (0: white)")
    else:
        ax.imshow(canvas, vmin=0, vmax=255, aspect="auto")
    ax.axis("off")
    on = "\n(the weights on standardized pixels)" if view.spec.standardize else ""
    fig.suptitle(
        f"Weight templates, trial #{best.number} ({best.describe()}), val acc {best.value:.4f}{on}",
        fontsize=10,
    )
    return fig


def gallery_figure(
    view: StudyView, cells: list[dict[str, Any]], mosaics: dict[tuple[int, int], np.ndarray]
) -> Figure:
    lr_axis, reg_axis = cell_axes(view)
    # Best completed model per (lr, reg) cell over all batch sizes; else the cell's state.
    per_cell: dict[tuple[int, int], dict[str, Any]] = {}
    for c in cells:
        key = (c["lr_cell"], c["reg_cell"])
        old = per_cell.get(key)
        if old is None or (c["value"] or -1.0) > (old["value"] or -1.0):
            per_cell[key] = c
    from matplotlib.patches import Rectangle

    # One image for the whole grid (one axes draws ~20x faster than one axes per cell).
    sample = next(iter(mosaics.values()))
    h, w = sample.shape[:2]
    gap, row_gap = max(4, h // 6), max(6, h // 3)  # room for the accuracy above each cell
    canvas = np.full(
        (
            reg_axis.size * (h + row_gap) - row_gap,
            lr_axis.size * (w + gap) - gap,
            *sample.shape[2:],
        ),
        255,
        dtype=np.uint8,
    )
    fig = _figure(1.4 + lr_axis.size * 2.0, 1.2 + reg_axis.size * 2.0 * (h + row_gap) / w)
    ax = fig.subplots()
    texts = []
    for row in range(reg_axis.size):
        j = reg_axis.size - 1 - row  # larger reg on top
        for i in range(lr_axis.size):
            y0, x0 = row * (h + row_gap), i * (w + gap)
            cell = per_cell.get((i, j))
            if cell is not None and (i, j) in mosaics:
                canvas[y0 : y0 + h, x0 : x0 + w] = mosaics[(i, j)]
                texts.append((x0 + w / 2, y0 - 1, f"{cell['value']:.3f}", cell["best"]))
                if cell["best"]:
                    ax.add_patch(
                        Rectangle(
                            (x0 - 1.5, y0 - 1.5), w + 2, h + 2, fill=False, ec="#d62728", lw=2
                        )
                    )
            else:
                canvas[y0 : y0 + h, x0 : x0 + w] = 235
                state = "not run" if cell is None else cell["state"]
                ax.text(
                    x0 + w / 2, y0 + h / 2, state, ha="center", va="center", fontsize=8,
                    in_layout=False,
                )  # fmt: skip
    ax.imshow(canvas, cmap="gray" if canvas.ndim == 2 else None, vmin=0, vmax=255)
    for x, y, label, best in texts:
        colour = "#d62728" if best else "black"
        ax.text(
            x,
            y,
            label + (" (best)" if best else ""),
            ha="center",
            va="bottom",
            fontsize=7.5,
            color=colour,
            in_layout=False,  # inside the image: constrained layout need not measure 25 labels
        )
    ax.set_xticks([i * (w + gap) + w / 2 for i in range(lr_axis.size)], lr_axis.ticks()[1])
    reg_labels = reg_axis.ticks()[1]
    ax.set_yticks(
        [row * (h + row_gap) + h / 2 for row in range(reg_axis.size)],
        [reg_labels[reg_axis.size - 1 - row] for row in range(reg_axis.size)],
    )
    ax.tick_params(length=0, labelsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("L2 regularization (reg)")
    ax.set_title(
        f"{view.spec.name}: weight templates of each grid cell's best model\n"
        "(validation accuracy above each; regularization smooths the templates)",
        fontsize=10,
        pad=14,
    )
    return fig


CURVE_LABELS = {
    "train_loss": "training loss (data + L2)",
    "train_accuracy": "training accuracy",
    "val_accuracy": "validation accuracy",
}


def curves_figure(
    view: StudyView,
    top: list[TrialView],
    faded: list[TrialView],
    curves: Mapping[int, Mapping[str, list[float]]],
) -> Figure:
    """Loss, training and validation accuracy per epoch of the top trials, each panel framed on
    them; a fourth panel has the validation accuracy of the top trials and every pruned one
    (grey), on a scale that holds them all. The training numbers are running averages over the
    epoch's mini-batches, each taken before its update (the model moves during the epoch);
    validation is measured after the epoch. (Plain lines: seaborn's lineplot, with nothing to
    aggregate, built the same figure in 140 ms instead of 30.)"""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    colours = sns.color_palette("tab10", max(1, len(top)))
    fig = _figure(11.0, 8.2)
    axes = fig.subplots(2, 2).ravel()
    panels = [*CHARTED, "all"]
    for ax, metric in zip(axes, panels, strict=True):
        key = "val_accuracy" if metric == "all" else metric
        if metric == "all":
            for t in faded:
                ys = curves.get(t.number, {}).get("val_accuracy", [])
                ax.plot(range(1, len(ys) + 1), ys, color="#9e9e9e", alpha=0.6, lw=1,
                        marker="x", markersize=3)  # fmt: skip
        shown: list[float] = []
        for t, colour in zip(top, colours, strict=False):
            points = [
                (epoch, value)
                for epoch, value in enumerate(curves.get(t.number, {}).get(key, []), start=1)
                if math.isfinite(value)
            ]
            if points:
                epochs, values = zip(*points, strict=True)
                ax.plot(epochs, values, color=colour, marker="o", markersize=3.5, linewidth=1.6,
                        label=f"#{t.number} {t.describe()} ({t.value:.4f})")  # fmt: skip
                shown.extend(values)
        if shown and metric != "all":  # framed on the top trials
            low, high = min(shown), max(shown)
            margin = max(0.005, 0.1 * (high - low))
            ax.set_ylim(low - margin, high + margin)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(CURVE_LABELS["val_accuracy" if metric == "all" else metric])
        ax.grid(alpha=0.3)
    axes[0].set_title("mean over the epoch's mini-batches, before each update", fontsize=8.5)
    axes[1].set_title("mean over the epoch's mini-batches, before each update", fontsize=8.5)
    axes[2].set_title("after each epoch, on the validation split", fontsize=8.5)
    axes[3].set_title(
        f"the same, with the {len(faded)} pruned trials (grey, x) on a scale that holds them"
        if faded
        else "the same, on a wider scale (no trial was pruned)",
        fontsize=8.5,
    )
    handles, labels = axes[2].get_legend_handles_labels()
    if handles:  # below the panels: a legend inside would hide curves
        if faded:
            (grey,) = axes[3].plot([], [], color="#9e9e9e", alpha=0.6, marker="x")
            pruned = ", ".join(f"#{t.number}" for t in faded[:12])
            more = f" and {len(faded) - 12} more" if len(faded) > 12 else ""
            handles, labels = [*handles, grey], [*labels, f"pruned: {pruned}{more}"]
        fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=7.5)
    fig.suptitle(f"{view.spec.name}: learning curves of the top {len(top)} trials", fontsize=11)
    return fig


def path_figure(view: StudyView, path: list[TrialView]) -> Figure:
    """The regularization path from the study's own trials (`view.reg_path`): validation
    accuracy against reg at the best trial's learning rate and batch size (every other completed
    trial grey), and below, the last epoch's training objective split into its data loss and
    its L2 term reg * sum(W**2)."""
    import pandas as pd
    import seaborn as sns

    best = view.best
    assert best is not None
    frame = pd.DataFrame(
        {
            "reg": [t.reg for t in path],
            "validation accuracy": [t.value for t in path],
            "data loss": [
                (t.train_loss or math.nan) - (t.l2_term or 0.0)
                if t.l2_term is not None
                else math.nan
                for t in path
            ],
            "L2 term": [t.l2_term if t.l2_term is not None else math.nan for t in path],
        }
    )
    positive = [t.reg for t in view.trials if t.reg > 0]
    fig = _figure(7.0, 6.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    others = [t for t in view.trials if t.outcome == "complete" and t not in path]
    top.scatter([t.reg for t in others], [t.value for t in others], s=10, color="#bbbbbb",
                label="other completed trials")  # fmt: skip
    sns.lineplot(frame, x="reg", y="validation accuracy", marker="o", ax=top, color="#1f77b4",
                 estimator=None,  # each trial its point: none averaged, no band bootstrapped
                 label=f"lr ~ {best.learning_rate:.3g}, batch {best.batch_size}")  # fmt: skip
    top.scatter([best.reg], [best.value], s=90, facecolor="none", edgecolor="#d62728", lw=2,
                zorder=5, label=f"best, #{best.number}")  # fmt: skip
    low = frame["validation accuracy"].min()
    top.set_ylim(low - 0.01, frame["validation accuracy"].max() + 0.005)
    top.legend(fontsize=7.5, loc="lower left")
    top.grid(alpha=0.3)
    long = frame.melt("reg", ["data loss", "L2 term"], var_name="part", value_name="loss")
    if long["loss"].notna().any():
        sns.lineplot(
            long.dropna(), x="reg", y="loss", hue="part", marker="o", ax=bottom, estimator=None
        )
        bottom.legend(fontsize=7.5)
    else:
        bottom.text(0.5, 0.5, "(trials from before the L2 term was kept)", ha="center",
                    transform=bottom.transAxes)  # fmt: skip
    bottom.set_ylabel("last epoch's training loss")
    for ax in (top, bottom):
        if min(t.reg for t in path) > 0:
            ax.set_xscale("log")
        elif positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        powers_of_ten(ax.xaxis)
    bottom.set_xlabel("L2 regularization (reg)")
    bottom.grid(alpha=0.3)
    fig.suptitle(
        f"Regularization path of {view.spec.name} from its own trials\n"
        f"(after {view.spec.epochs} epochs; the fixed epoch budget, like early stopping, "
        "regularizes too)",
        fontsize=10,
    )
    return fig


def history_figure(view: StudyView) -> Figure:
    done = sorted(
        (t for t in view.trials if t.outcome == "complete" and t.value is not None),
        key=lambda t: t.number,
    )
    numbers = [t.number for t in done]
    values = [float(t.value) for t in done if t.value is not None]
    fig = _figure(7.0, 3.6)
    ax = fig.subplots()
    ax.scatter(numbers, values, s=14, color="#1f77b4", label="objective value")
    ax.step(numbers, np.maximum.accumulate(values), where="post", color="#d62728", label="best")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside upper right", ncols=2, fontsize=8)  # outside: never over a point
    fig.suptitle("Optimization history (completed trials)", fontsize=10, x=0.3)
    return fig


def importances_figure(importances: Mapping[str, float]) -> Figure:
    names = sorted(importances, key=lambda k: importances[k])
    fig = _figure(6.0, 0.9 + 0.45 * len(names))
    ax = fig.subplots()
    bars = ax.barh(names, [importances[n] for n in names], color="#1f77b4")
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("importance for validation accuracy (Optuna, PED-ANOVA)")
    ax.set_title("Hyperparameter importances", fontsize=10)
    return fig


def _runs(timing: Mapping[str, Any], key: str) -> list[float]:
    """A timing's runs (a study from before runs were kept has only its one `<name>_s`)."""
    return list(timing.get(f"{key}_runs") or [timing[f"{key}_s"]])


def _timed_bars(ax: Any, names: list[str], runs: list[list[float]], unit: str, scale: float) -> str:
    """Horizontal bars at each median run (the typical one), a whisker from the best to the
    slowest; the scale holds the typical runs (a far slowest run runs off it, its value is
    written); returns the speedup text."""
    best = [min(r) * scale for r in runs]
    typical = [float(np.median(r)) * scale for r in runs]
    worst = [max(r) * scale for r in runs]
    ax.barh(names, typical, color=["#ff7f0e", "#2ca02c"][: len(names)])
    ax.errorbar(
        typical, names, xerr=[[t - b for t, b in zip(typical, best, strict=True)],
                              [w - t for w, t in zip(worst, typical, strict=True)]],
        fmt="none", ecolor="#444", capsize=3,
    )  # fmt: skip
    right = max(typical) * 40
    for y, (b, t, w, r) in enumerate(zip(best, typical, worst, runs, strict=True)):
        ax.text(min(w, right / 8) * 1.2, y,
                f"median {t:.3g} {unit} of {len(r)} runs\n(best {b:.3g}, slowest {w:.3g})",
                va="center", fontsize=7.5)  # fmt: skip
    ax.set_xscale("log")
    powers_of_ten(ax.xaxis)
    ax.set_xlim(min(best) / 2, right)
    ax.invert_yaxis()
    if min(len(r) for r in runs) < 3:  # one sample is no measurement: no headline from it
        return "too few runs to compare"
    return f"{typical[0] / typical[1]:.0f}x faster (median runs)"


def timing_figure(timing: Mapping[str, Any]) -> Figure:
    """Naive vs vectorized: loss + gradient, and (when measured) one training epoch; bars at
    the best run with a whisker to the slowest, the thread count in the title."""
    train = timing.get("train")
    fig = _figure(6.5, 2.4 if train is None else 4.4)
    axes = fig.subplots(1 if train is None else 2, 1, squeeze=False)[:, 0]
    loss_runs = [_runs(timing, "naive"), _runs(timing, "vectorized")]
    headline = _timed_bars(
        axes[0], ["naive (Python loops)", "vectorized (NumPy)"], loss_runs, "ms", 1e3
    )
    axes[0].set_xlabel("loss + gradient, ms (log scale; bar: median, whisker: best to slowest)")
    axes[0].set_title(
        f"Loss + gradient: vectorized is {headline}\n"
        f"({int(timing['n_samples'])} samples x {int(timing['n_features'])} features, "
        f"{int(timing['n_classes'])} classes, float64)",
        fontsize=9,
    )
    if train is not None:
        epoch_runs = [_runs(train, "loop"), _runs(train, "matrix")]
        names = [
            f"per-sample loop\nval acc {train['loop_val_accuracy']:.4f}",
            f"matrix (engine)\nval acc {train['matrix_val_accuracy']:.4f}",
        ]
        headline = _timed_bars(axes[1], names, epoch_runs, "s", 1.0)
        axes[1].set_xlabel("one SGD epoch, s (log scale; bar: median, whisker: best to slowest)")
        axes[1].set_title(
            f"Training: the matrix kernel is {headline}\n"
            f"({int(train['n_samples'])} examples, batch {int(train['batch_size'])}, "
            "the same model)",
            fontsize=9,
        )
    if timing.get("threads"):
        fig.suptitle(f"BLAS threads: {timing['threads']}", fontsize=8, color="#555")
    return fig

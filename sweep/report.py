"""Reports: what a sweep looks like. The only module that imports matplotlib.

`write_report(view, folder)` draws, from a `StudyView` (the study's finished trials plus what the
stores hold about them):
- `heatmap.png`: validation accuracy over (learning rate, reg); exact cells for a grid study,
  log-binned cells otherwise (best value per cell and the trial count), one panel per batch size,
  the best cell outlined, diverged / failed / pruned cells marked as such;
- `templates.png`: the best model's weights, one image per class in the data's own image shape
  and colour, bias excluded, scaled as in cs231n (one min-max over all classes);
- `gallery.png` (grid studies): the templates of each grid cell's best model, laid out on the
  learning rate x reg grid;
- `curves.png`: validation accuracy per epoch of the top trials, pruned trials faded;
- `history.png` and `importances.png`: Optuna's optimization history and parameter importances;
- `timing.png`: naive vs vectorized loss-and-gradient time, as the study measured it;
- `report.json`: the numbers every figure shows; `index.html`: one offline page with all of it.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state, no display needed).
`studyview.gather()` collects the view from an Optuna study and its MLflow runs; `sweep run`
passes what it still holds in memory, `sweep report` reads everything back; both draw the same
files.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .studyview import (
    StudyView,
    TrialView,
    cell_axes,
    grid_cell_bests,
    heatmap_cells,
    importances,
    mosaic,
    power_label,
    template_columns,
    template_images,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FILES", "Report", "warm_up", "write_report"]

FILES = {
    "heatmap": "heatmap.png",
    "templates": "templates.png",
    "gallery": "gallery.png",
    "curves": "curves.png",
    "history": "history.png",
    "importances": "importances.png",
    "timing": "timing.png",
    "data": "report.json",
    "index": "index.html",
}
DPI = 100
# How a cell without a completed trial is drawn: fill colour, hatch.
MARKS = {
    "diverged": ("#f4c7c3", "///"),
    "failed": ("#fde0b2", "xx"),
    "pruned": ("#e0e0e0", ".."),
    "running": ("#ffffff", ""),
}


# -- figures -----------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _params_text(t: TrialView) -> str:
    return f"lr={t.learning_rate:.3g}, reg={t.reg:.3g}, batch={t.batch_size}"


def _ink_on(rgba: tuple[float, ...]) -> str:
    """Dark text on a light cell, white on a dark one (WCAG relative luminance)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#262626" if luminance > 0.408 else "white"


def heatmap_figure(view: StudyView, cells: list[dict[str, Any]]) -> Figure:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    lr_axis, reg_axis = cell_axes(view)
    batch_sizes = sorted({c["batch_size"] for c in cells})
    values = [c["value"] for c in cells if c["value"] is not None]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
    if vmax - vmin < 1e-3:
        vmin, vmax = vmin - 0.005, vmax + 0.005
    cmap = "viridis"
    norm = Normalize(vmin, vmax)
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
                notes[row, col] = f"{c['value']:.3f}{count}"
            else:
                marks.append((row, col, c["state"], c["n_trials"]))
            if c["best"]:
                ax.add_patch(
                    Rectangle((col, row), 1, 1, fill=False, edgecolor="#d62728", lw=3, zorder=5)
                )
        mesh = ax.pcolormesh(
            np.ma.masked_invalid(grid), cmap=cmap, norm=norm, edgecolors="white", linewidth=0.5
        )
        for (row, col), note in np.ndenumerate(notes):
            if note:
                ax.text(
                    col + 0.5,
                    row + 0.5,
                    note,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=_ink_on(mesh.cmap(norm(grid[row, col]))),
                    in_layout=False,  # inside the axes: constrained layout need not measure it
                )
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
        label="validation accuracy",
        shrink=0.9,
    )
    kind = "grid cells" if not binned else "log-binned cells, best trial per cell"
    fig.suptitle(f"{view.spec.name}: validation accuracy ({kind})", fontsize=11)
    return fig


def templates_figure(view: StudyView, best: TrialView, images: np.ndarray) -> Figure:
    n = images.shape[0]
    columns = template_columns(n)
    rows = math.ceil(n / columns)
    h, w = images.shape[1:3]
    panel = 1.6 * min(1.0, max(0.5, w / h))
    fig = _figure(columns * panel, rows * 1.6 * min(1.0, h / w) + 0.7)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for k, ax in enumerate(axes):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], cmap="gray" if images.ndim == 3 else None, vmin=0, vmax=255)
            name = view.class_names[k] if k < len(view.class_names) else str(k)
            ax.set_title(name, fontsize=9)
    fig.suptitle(
        f"Weight templates, trial #{best.number} ({_params_text(best)}), val acc {best.value:.4f}",
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


def curves_figure(
    view: StudyView, top: list[TrialView], faded: list[TrialView], curves: dict[int, list[float]]
) -> Figure:
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    for t in faded:
        if t.number in curves:
            ys = curves[t.number]
            ax.plot(range(1, len(ys) + 1), ys, color="#9e9e9e", alpha=0.35, lw=1)
    tab10 = colormaps["tab10"]
    palette = [tab10(k) for k in range(tab10.N)]
    for colour, t in zip(palette, top, strict=False):
        if t.number in curves:
            ys = curves[t.number]
            ax.plot(
                range(1, len(ys) + 1),
                ys,
                color=colour,
                lw=1.8,
                marker="o",
                ms=3,
                label=f"#{t.number} {_params_text(t)} ({t.value:.4f})",
            )
    if faded:
        ax.plot([], [], color="#9e9e9e", alpha=0.5, label=f"pruned ({len(faded)} trials)")
    shown = [v for t in top if t.number in curves for v in curves[t.number] if math.isfinite(v)]
    if shown:  # frame the top trials; faded curves below them are cut off
        low, high = min(shown), max(shown)
        margin = max(0.01, 0.1 * (high - low))
        ax.set_ylim(low - margin, high + margin)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{view.spec.name}: learning curves of the top {len(top)} trials", fontsize=10)
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
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Optimization history (completed trials)", fontsize=10)
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


def timing_figure(timing: Mapping[str, float]) -> Figure:
    fig = _figure(6.0, 2.2)
    ax = fig.subplots()
    names = ["naive (Python loops)", "vectorized (NumPy)"]
    times = [timing["naive_s"] * 1e3, timing["vectorized_s"] * 1e3]
    bars = ax.barh(names, times, color=["#ff7f0e", "#2ca02c"])
    ax.bar_label(bars, labels=[f"{v:.3g} ms" for v in times], fontsize=8, padding=2)
    ax.set_xscale("log")
    ax.set_xlim(min(times) / 2, max(times) * 6)
    ax.invert_yaxis()
    ax.set_xlabel("time per loss + gradient (ms, log scale)")
    ax.set_title(
        f"Vectorized is {timing['naive_s'] / timing['vectorized_s']:.0f}x faster\n"
        f"({int(timing['n_samples'])} samples x {int(timing['n_features'])} features, "
        f"{int(timing['n_classes'])} classes, float64)",
        fontsize=9,
    )
    return fig


# -- the report --------------------------------------------------------------------------------
@dataclass
class Report:
    folder: Path
    files: list[Path]
    notes: list[str]  # what could not be drawn, and why
    data: dict[str, Any]

    @property
    def index(self) -> Path:
        return self.folder / FILES["index"]


def _tmp(path: Path) -> Path:
    """A temporary name of this process's own: two workers may write one report at once."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def _save(fig: Figure, path: Path) -> None:
    tmp = _tmp(path)
    fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=DPI)
    os.replace(tmp, path)


# Set in the drawing helper (a process with one thread and nothing else to do, see drawer.py):
# it may fork a child to share the drawing.
SPLIT_WORK = False


def _save_all(figures: list[tuple[Figure, Path]]) -> None:
    """Render and write the figures. Rendering is most of a report's time; where allowed
    (`SPLIT_WORK`), a forked child renders about half of them (by figure area) on the second
    core. Anything the child did not write is written here. The files are the same bytes
    either way."""
    import sys
    import threading

    # Only in a process with one thread (a fork copies locks that other threads may hold), and
    # only on Linux (macOS does not support fork without exec once system frameworks loaded).
    if not (
        SPLIT_WORK
        and len(figures) > 1
        and sys.platform.startswith("linux")
        and threading.active_count() == 1
    ):
        for fig, path in figures:
            _save(fig, path)
        return
    cost = sorted(figures, key=lambda f: -float(np.prod(f[0].get_size_inches())))
    mine: list[tuple[Figure, Path]] = []
    theirs: list[tuple[Figure, Path]] = []
    load = [0.0, 0.0]
    for item in cost:  # longest first, each to the lighter side
        side = 0 if load[0] <= load[1] else 1
        (mine if side == 0 else theirs).append(item)
        load[side] += float(np.prod(item[0].get_size_inches()))
    try:
        child = os.fork()
    except OSError:  # no memory or processes left for a child: all of them here
        child = -1
        mine, theirs = figures, []
    if child == 0:  # the child: write its share, then leave at once (no cleanup of the parent's)
        code = 0
        try:
            for fig, path in theirs:
                _save(fig, path)
        except BaseException:
            code = 1
        os._exit(code)
    for fig, path in mine:
        _save(fig, path)
    if child > 0:
        _, status = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            for fig, path in theirs:
                _save(fig, path)


def _write_text(path: Path, text: str) -> None:
    tmp = _tmp(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def warm_up() -> None:
    """Pay the report's one-time costs now: the imports (matplotlib, Optuna's importance code),
    the fonts, the math-text parser (the axes' powers of ten)."""
    import io

    import optuna.importance  # noqa: F401  (imports scikit-learn and SciPy: ~1.5 s)

    fig = _figure(2.0, 1.5)
    ax = fig.subplots()
    ax.imshow(np.zeros((2, 2)), cmap="gray")
    ax.set_xticks([0, 1], [power_label(1e-3), power_label(0.3)])
    ax.set_title("warm-up")
    fig.savefig(io.BytesIO(), format="png", dpi=DPI)


def write_report(view: StudyView, folder: Path) -> Report:
    """Draw every figure the study's trials allow into `folder` (created; files from an earlier
    report that no longer apply are removed). Raises RuntimeError for a study with no finished
    trial; a study with no completed trial gets its heatmap and page, with a note."""
    if not view.trials:
        raise RuntimeError(
            f"Study {view.spec.name!r} has no finished trial yet, so there is nothing to draw. "
            f"Run `sweep run` on its study file first."
        )
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    notes: list[str] = []
    data: dict[str, Any] = {"study": view.spec.name, "sampler": view.spec.sampler}

    pending: list[tuple[Figure, Path]] = []

    def save(key: str, fig: Figure) -> None:
        path = folder / FILES[key]
        pending.append((fig, path))
        written.append(path)

    cells = heatmap_cells(view)
    lr_axis, reg_axis = cell_axes(view)
    data["heatmap"] = {
        "learning_rate": {"values": list(lr_axis.values), "edges": list(lr_axis.edges)},
        "reg": {"values": list(reg_axis.values), "edges": list(reg_axis.edges)},
        "cells": cells,
    }
    save("heatmap", heatmap_figure(view, cells))

    best = view.best
    data["best"] = None if best is None else {"trial": best.number, "value": best.value}
    data["test_accuracy"] = view.test_accuracy
    if best is None:
        notes.append(
            "No trial completed, so there are no weight templates, gallery or learning curves; "
            "the heatmap shows why each trial ended (diverged, failed or pruned)."
        )
    else:
        weights = view.weights.get(best.number)
        if weights is None:
            notes.append(f"The weights of trial #{best.number} were not found in its MLflow run.")
        else:
            images = template_images(weights, view.image_shape)
            names = [
                view.class_names[k] if k < len(view.class_names) else str(k)
                for k in range(images.shape[0])
            ]
            data["templates"] = {
                "trial": best.number,
                "classes": names,
                "image_shape": list(images.shape[1:]),
            }
            save("templates", templates_figure(view, best, images))
        _gallery(view, cells, data, notes, save)
        _curves(view, data, save)

    done = [t for t in view.trials if t.outcome == "complete"]
    if done:
        data["history"] = [[t.number, t.value] for t in sorted(done, key=lambda t: t.number)]
        save("history", history_figure(view))
    found = importances(view)
    if found:
        data["importances"] = found
        save("importances", importances_figure(found))
    else:
        notes.append("Parameter importances need 3 or more completed trials with varying values.")
    if view.loss_timing:
        data["loss_timing"] = dict(view.loss_timing)
        save("timing", timing_figure(view.loss_timing))

    _save_all(pending)
    data["notes"] = notes
    data_path = folder / FILES["data"]
    _write_text(data_path, json.dumps(data, indent=1, sort_keys=True, default=_json_default))
    written.append(data_path)
    index = folder / FILES["index"]
    _write_text(index, _page(view, data, written, notes))
    written.append(index)
    for stale in set(FILES.values()) - {p.name for p in written}:
        (folder / stale).unlink(missing_ok=True)
    return Report(folder=folder, files=written, notes=notes, data=data)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _gallery(
    view: StudyView,
    cells: list[dict[str, Any]],
    data: dict[str, Any],
    notes: list[str],
    save: Callable[[str, Figure], None],
) -> None:
    lr_axis, reg_axis = cell_axes(view)
    if not (lr_axis.values and reg_axis.values):  # a gallery needs exact grid cells
        return
    bests = grid_cell_bests(cells)
    mosaics = {}
    for key, number in bests.items():
        weights = view.weights.get(number)
        if weights is not None:
            images = template_images(weights, view.image_shape)
            mosaics[key] = mosaic(images, template_columns(images.shape[0]))
    if not mosaics:
        notes.append("The gallery needs the weights of at least one grid cell's model.")
        return
    data["gallery"] = {f"{i},{j}": bests[(i, j)] for i, j in sorted(mosaics)}
    save("gallery", gallery_figure(view, cells, mosaics))


def _curves(view: StudyView, data: dict[str, Any], save: Callable[[str, Figure], None]) -> None:
    top, pruned = view.curve_trials()
    curves = view.histories
    if not any(t.number in curves for t in top):
        return
    data["curves"] = {
        "top": [t.number for t in top if t.number in curves],
        "pruned": [t.number for t in pruned if t.number in curves],
        "values": {str(n): v for n, v in sorted(curves.items())},
    }
    save("curves", curves_figure(view, top, pruned, curves))


CAPTIONS = {
    "heatmap": "Validation accuracy over learning rate x regularization",
    "templates": "Weight templates of the best model",
    "gallery": "Weight templates across the grid",
    "curves": "Learning curves",
    "history": "Optimization history",
    "importances": "Hyperparameter importances",
    "timing": "Naive vs vectorized loss",
}


def _page(view: StudyView, data: dict[str, Any], files: list[Path], notes: list[str]) -> str:
    esc = html.escape
    best = view.best
    counts: dict[str, int] = {}
    for t in view.trials:
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    summary = [
        ("study", view.spec.name),
        ("dataset", view.spec.dataset),
        ("sampler / pruner", f"{view.spec.sampler} / {view.spec.pruner}"),
        ("epochs", str(view.spec.epochs)),
        ("trials", ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))),
    ]
    if best is not None:
        summary += [
            ("best trial", f"#{best.number}: {_params_text(best)}"),
            ("validation accuracy", f"{best.value:.4f}"),
        ]
    if view.test_accuracy is not None:
        summary.append(("test accuracy", f"{view.test_accuracy:.4f} (best trial, evaluated once)"))
    summary += list(view.links.items())
    names = {p.name for p in files}
    figures = "\n".join(
        f'<figure><img src="{FILES[key]}" alt="{esc(caption)}"><figcaption>{esc(caption)}'
        "</figcaption></figure>"
        for key, caption in CAPTIONS.items()
        if FILES[key] in names
    )
    ranked = sorted(
        view.trials,
        key=lambda t: (t.outcome != "complete", -(t.value or 0.0), t.number),
    )
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{esc(v)}</td>"
            for v in (
                str(t.number),
                t.outcome,
                f"{t.learning_rate:.4g}",
                f"{t.reg:.4g}",
                str(t.batch_size),
                "" if t.value is None else f"{t.value:.4f}",
                t.reason,
                t.run_id,
            )
        )
        + "</tr>"
        for t in ranked
    )
    note_html = "".join(f"<p class=note>{esc(n)}</p>" for n in notes)
    summary_html = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary)
    header = "".join(
        f"<th>{h}</th>"
        for h in ("trial", "state", "learning rate", "reg", "batch", "val acc", "reason", "run id")
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>softsweep report: {esc(view.spec.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ padding: 0.2em 0.7em; border-bottom: 1px solid #ddd; text-align: left; }}
.trials td:nth-child(n+3):nth-child(-n+6) {{ text-align: right; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9em; }} .note {{ color: #8a4b00; }}
</style></head><body>
<h1>softsweep report: {esc(view.spec.name)}</h1>
<table class="summary">{summary_html}</table>
{note_html}
{figures}
<h2>Trials (best first)</h2>
<table class="trials"><thead><tr>{header}</tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""

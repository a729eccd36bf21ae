"""Reports: what a sweep looks like, as files: the figures (`figures/`), the numbers behind
them (`report.json`) and one offline page (`index.html`).

`write_report(view, folder)` draws, from a `StudyView` (the study's finished trials plus what the
stores hold about them):
- `heatmap.png`: validation accuracy over (learning rate, reg); exact cells for a grid study,
  log-binned cells otherwise (best value per cell and the trial count), one panel per batch size,
  the best cell outlined, diverged / error / pruned / interrupted cells marked as such;
- `templates.png`: the best model's weights, one image per class in the data's own image shape
  and colour, bias excluded, scaled as in cs231n (one min-max over all classes);
- `gallery.png` (grid studies): the templates of each grid cell's best model, laid out on the
  learning rate x reg grid;
- `curves.png`: training loss, training accuracy and validation accuracy per epoch of the top
  trials, and the validation accuracy again with every pruned trial;
- `path.png`: the regularization path from the study's own trials (validation accuracy, and the
  training objective's data and L2 parts, against reg at the best learning rate and batch);
- `confusion.png`, `predictions.png` and `reliability.png`: the tested trial's one test
  evaluation: its confusion matrix (counts; the errors on a colour scale of their own), test
  images with true and predicted classes (the first ones, the most confident mistakes), and its
  reliability diagram (at its own temperature and at the one fitted on validation);
- `history.png` and `importances.png`: Optuna's optimization history and parameter importances;
- `timing.png`: naive vs vectorized, loss + gradient and one training epoch (best of several
  runs, the spread, the thread count), as the study measured them when it was created;
- `report.json`: the numbers every figure shows; `index.html`: one offline page with all of it.

The figures come from `figures/` (the only matplotlib and seaborn importer).
`view.gather()` collects the view from an Optuna study and its MLflow runs; `sweep run`
passes what it still holds in memory, `sweep report` reads everything back; both draw the same
files.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .figures import (
    confusion_figure,
    curves_figure,
    gallery_figure,
    heatmap_figure,
    history_figure,
    importances_figure,
    path_figure,
    predictions_figure,
    reliability_figure,
    save_figure,
    templates_figure,
    timing_figure,
)
from .page import page
from .view import (
    StudyView,
    cell_axes,
    describe_edges,
    grid_cell_bests,
    heatmap_cells,
    importances,
    mosaic,
    range_edges,
    reg_path,
    template_columns,
    template_images,
)

if TYPE_CHECKING:
    from .figures import Figure

__all__ = ["FILES", "Report", "drawn_report", "write_report"]

FILES = {
    "heatmap": "heatmap.png",
    "templates": "templates.png",
    "gallery": "gallery.png",
    "curves": "curves.png",
    "confusion": "confusion.png",
    "predictions": "predictions.png",
    "reliability": "reliability.png",
    "path": "path.png",
    "history": "history.png",
    "importances": "importances.png",
    "timing": "timing.png",
    "data": "report.json",
    "index": "index.html",
}


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
    save_figure(fig, tmp, path.suffix.lstrip("."))
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = _tmp(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(view: StudyView, folder: Path, drawn_for: str = "") -> Report:
    """Draw every figure the study's trials allow into `folder` (created; files from an earlier
    report that no longer apply are removed). Raises RuntimeError for a study with no finished
    trial; a study with no completed trial gets its heatmap and page, with a note. `drawn_for`
    (what the study held, `closing.report_key`) is kept in report.json: `drawn_report` finds
    it there."""
    # Drawing makes many objects; Python's cyclic collector would stop to scan a sweep's whole
    # heap (Optuna, MLflow, matplotlib, pandas: 400,000 objects) about once per report, and
    # its young collections often: 0.4-0.6 s of a 3 s report (bench/README.md). It is paused
    # while the figures are drawn; their garbage goes with the next collection.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _write_report(view, folder, drawn_for)
    finally:
        if enabled:
            gc.enable()


def _write_report(view: StudyView, folder: Path, drawn_for: str) -> Report:
    if not view.trials:
        raise RuntimeError(
            f"Study {view.spec.name!r} has no finished trial yet, so there is nothing to draw. "
            f"Run `sweep run` on its study file first."
        )
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    notes: list[str] = []
    data: dict[str, Any] = {"study": view.spec.name, "sampler": view.spec.sampler}
    if drawn_for:
        data["drawn_for"] = drawn_for

    def save(key: str, fig: Figure) -> None:
        path = folder / FILES[key]
        _save(fig, path)  # as it is drawn: nothing holds ten figures at once
        written.append(path)

    cells = heatmap_cells(view)
    lr_axis, reg_axis = cell_axes(view)
    data["heatmap"] = {
        "learning_rate": {"values": list(lr_axis.values), "edges": list(lr_axis.edges)},
        "reg": {"values": list(reg_axis.values), "edges": list(reg_axis.edges)},
        "cells": cells,
    }
    save("heatmap", heatmap_figure(view, cells))
    notes += describe_edges(view)
    data["range_edges"] = [[name, side, value] for name, side, value, _ in range_edges(view)]

    best = view.best
    data["best"] = None if best is None else {"trial": best.number, "value": best.value}
    data["test_accuracy"] = view.test_accuracy
    data["test_evaluations"] = [list(pair) for pair in view.test_evaluations]
    data["test_scores"] = view.test_scores
    data["runner_up"] = view.runner_up
    data["refit"] = view.refit
    if best is None:
        notes.append(
            "No trial completed, so there are no weight templates, gallery or learning curves; "
            "the heatmap shows why each trial ended (diverged, error, pruned or interrupted)."
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
        path = reg_path(view)
        if path:
            data["path"] = [
                {"trial": t.number, "reg": t.reg, "learning_rate": t.learning_rate,
                 "val_accuracy": t.value, "train_loss": t.train_loss, "l2_term": t.l2_term}
                for t in path
            ]  # fmt: skip
            save("path", path_figure(view, path))
        _test(view, data, notes, save)

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

    data["notes"] = notes
    data_path = folder / FILES["data"]
    _write_text(data_path, json.dumps(data, indent=1, sort_keys=True, default=_json_default))
    written.append(data_path)
    index = folder / FILES["index"]
    _write_text(index, page(view, written, notes, FILES))
    written.append(index)
    for stale in set(FILES.values()) - {p.name for p in written}:
        (folder / stale).unlink(missing_ok=True)
    return Report(folder=folder, files=written, notes=notes, data=data)


def drawn_report(folder: Path, drawn_for: str) -> Report | None:
    """The report already in `folder`, if it was drawn for `drawn_for` and its page is there;
    None otherwise (never drawn, drawn for other trials, or unreadable)."""
    try:
        data = json.loads((folder / FILES["data"]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not drawn_for
        or data.get("drawn_for") != drawn_for
        or not (folder / FILES["index"]).is_file()
    ):
        return None
    files = [folder / name for name in FILES.values() if (folder / name).is_file()]
    return Report(folder=folder, files=files, notes=list(data.get("notes", [])), data=data)


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


def _test(
    view: StudyView, data: dict[str, Any], notes: list[str], save: Callable[[str, Figure], None]
) -> None:
    if len(view.test_evaluations) > 1:
        uses = ", ".join(f"#{n} ({a:.4f})" for n, a in view.test_evaluations)
        notes.append(
            f"The test set has been evaluated {len(view.test_evaluations)} times ({uses}): this "
            "study was resumed and found a new best trial. Only the first number was an unbiased "
            "estimate; the later ones were picked after the test set had been seen."
        )
    test = view.test
    if test is None:
        return

    def listed(shown: list[Any]) -> list[dict[str, Any]]:
        return [
            {"index": s.index, "true": s.true, "predicted": s.predicted,
             "confidence": round(s.confidence, 4)}
            for s in shown
        ]  # fmt: skip

    data["test"] = {
        "trial": test.trial,
        "accuracy": test.accuracy,
        "confusion": test.confusion.tolist(),
        "samples": listed(test.samples),
        "mistakes": listed(test.mistakes),
        "calibration": [
            {"model": name, **dataclasses.asdict(cal)}
            for name, cal in (("T=1", test.calibration), ("T fitted", test.scaled))
            if cal is not None
        ],
    }
    save("confusion", confusion_figure(view, test))
    save("predictions", predictions_figure(view, test))
    if test.calibration is not None:
        save("reliability", reliability_figure(view, test))

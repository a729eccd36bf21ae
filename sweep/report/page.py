"""The report's offline page (`index.html`): the summary, the figures and the trial table, in one
file with no network (a few lines of inline script sort the table), readable on a phone."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from ..scores import (
    describe_calibration,
    describe_interval,
    describe_refit,
    describe_runner_up,
)
from ..spec import StudySpec
from .view import StudyView

__all__ = ["CAPTIONS", "page"]

CAPTIONS = {
    "heatmap": "Validation accuracy over learning rate x regularization",
    "templates": "Weight templates of the best model",
    "gallery": "Weight templates across the grid",
    "curves": "Learning curves",
    "path": "The regularization path, from the study's own trials",
    "confusion": "Confusion matrix on the test set (the tested trial)",
    "predictions": "Test images: predictions and the most confident mistakes",
    "reliability": "Calibration on the test set: the reliability diagram",
    "history": "Optimization history",
    "importances": "Hyperparameter importances",
    "timing": "Naive vs vectorized: loss and one training epoch",
}
HEADERS = ("trial", "state", "learning rate", "reg", "batch", "val acc", "reason", "run")
NUMERIC = {0, 2, 3, 4, 5}  # columns sorted as numbers
BEST_FIRST = {5}  # the first click sorts these high to low (val acc: best first)

# Click a header to sort by it (again: the other way): low to high first, except the columns
# marked high-first (val acc). Numbers sort as numbers, blanks last.
SORT_SCRIPT = """
document.querySelectorAll("table.trials th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var numeric = th.dataset.numeric === "1";
    var up = th.dataset.dir ? th.dataset.dir !== "up" : th.dataset.first !== "down";
    th.closest("tr").querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = up ? "up" : "down";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent.trim(), y = b.cells[col].textContent.trim();
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var d = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return up ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222;
       padding: 0 0.8em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #ddd; text-align: left; }
.summary td { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
.trials th { cursor: pointer; user-select: none; white-space: nowrap; }
.trials th[data-dir="up"]::after { content: " \\25B2"; }
.trials th[data-dir="down"]::after { content: " \\25BC"; }
.trials td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; } .note { color: #8a4b00; }
.generated { color: #777; font-size: 0.85em; }
@media (max-width: 600px) { body { margin: 0.5em auto; } h1 { font-size: 1.3em; } }
"""


def page(view: StudyView, files: list[Path], notes: list[str], keys: dict[str, str]) -> str:
    """The page for `view`; `files` are the report's files, `keys` the figure names' files."""
    esc = html.escape
    names = {p.name for p in files}
    figures = "\n".join(
        f'<figure><img src="{keys[key]}" alt="{esc(caption)}"><figcaption>{esc(caption)}'
        "</figcaption></figure>"
        for key, caption in CAPTIONS.items()
        if keys[key] in names
    )
    note_html = "".join(f"<p class=note>{esc(n)}</p>" for n in notes)
    summary_html = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _summary(view)
    )
    header = "".join(
        f'<th data-numeric="{int(i in NUMERIC)}"'
        f'{" data-first=down" if i in BEST_FIRST else ""} title="sort by {h}">{h}</th>'
        for i, h in enumerate(HEADERS)
    )
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    ui = ""
    if view.ui_url:
        ui = (
            f'<p class="generated">Run ids link to the MLflow UI at {esc(view.ui_url)}'
            + (f" ({esc(view.ui_hint)})" if view.ui_hint else "")
            + ".</p>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>softsweep report: {esc(view.spec.name)}</title>
<style>{STYLE}</style></head><body>
<h1>softsweep report: {esc(view.spec.name)}</h1>
<p class="generated">Generated {esc(generated)}.</p>
<div class="scroll"><table class="summary">{summary_html}</table></div>
{note_html}
{figures}
<h2>Trials (best first; click a column to sort)</h2>
{ui}
<div class="scroll"><table class="trials"><thead><tr>{header}</tr></thead>
<tbody>
{_rows(view)}
</tbody></table></div>
<script>{SORT_SCRIPT}</script>
</body></html>
"""


def _features(spec: StudySpec) -> str:
    if spec.standardize:
        return "pixels centred and standardized"
    return "pixels centred" if spec.center else "pixels in [0, 1]"


def _summary(view: StudyView) -> list[tuple[str, str]]:
    best = view.best
    counts: dict[str, int] = {}
    for t in view.trials:
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    summary = [
        ("study", view.spec.name),
        ("dataset", f"{view.spec.dataset} ({_features(view.spec)})"),
        ("sampler / pruner", f"{view.spec.sampler} / {view.spec.pruner}"),
        ("epochs", f"{view.spec.epochs} (learning rate: {view.spec.lr_schedule.describe()})"),
        ("trials", ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))),
    ]
    if best is not None:
        summary += [
            ("best trial", f"#{best.number}: {best.describe()}"),
            ("validation accuracy", f"{best.value:.4f}"),
        ]
    if view.stopped:
        summary.append(("status", view.stopped))
    if view.test_accuracy is not None:
        uses = len(view.test_evaluations)
        how = "evaluated once" if uses == 1 else f"the test set used {uses} times: see the note"
        if view.test_scores is None:  # tested before the scores were kept
            summary.append(("test accuracy", f"{view.test_accuracy:.4f} (best trial, {how})"))
        else:
            shown = describe_interval(view.test_scores).replace(")", f"; best trial, {how})")
            summary.append(("test accuracy", shown))
            summary.append(("calibration", describe_calibration(view.test_scores)))
    if view.runner_up is not None:
        summary.append(("best vs runner-up", describe_runner_up(view.runner_up)))
    if view.refit is not None:
        summary.append(("refit", describe_refit(view.refit)))
    return summary + list(view.links.items())


def _rows(view: StudyView) -> str:
    esc = html.escape
    ranked = sorted(
        view.trials, key=lambda t: (t.outcome != "complete", -(t.value or 0.0), t.number)
    )
    lines = []
    for t in ranked:
        cells: list[Any] = [
            str(t.number),
            t.outcome,
            f"{t.learning_rate:.4g}",
            f"{t.reg:.4g}",
            str(t.batch_size),
            "" if t.value is None else f"{t.value:.4f}",
            t.reason,
        ]
        row = "".join(
            f'<td class="num">{esc(c)}</td>' if i in NUMERIC else f"<td>{esc(c)}</td>"
            for i, c in enumerate(cells)
        )
        if t.run_id and view.ui_url and view.experiment_id:  # (the model-training view)
            link = (
                f"{view.ui_url.rstrip('/')}/#/experiments/{view.experiment_id}/runs/{t.run_id}"
                "?workflowType=machine_learning"
            )
            row += f'<td><a href="{esc(link)}" title="{esc(t.run_id)}">{esc(t.run_id[:8])}</a></td>'
        else:
            row += f"<td>{esc(t.run_id[:8])}</td>"
        lines.append(f"<tr>{row}</tr>")
    return "\n".join(lines)

"""`sweep.run`: a sweep from Python or a notebook, in this process (no helper process, no exit),
with a notebook-aware progress bar; its `SweepResult` shows itself as text (`repr`) and as HTML
in Jupyter (best trial, accuracies, the heatmap and the weight templates inline)."""

from __future__ import annotations

import base64
import dataclasses
import html
from pathlib import Path
from typing import Any

from .launch import StudyResult, run_study
from .signals import Interrupted
from .spec import StudySpec, load_spec, with_overrides
from .store.home import Home

__all__ = ["SweepResult", "run"]


@dataclasses.dataclass
class SweepResult:
    """A finished (or stopped) sweep: `outcome` holds everything `sweep run` prints."""

    spec: StudySpec
    outcome: StudyResult

    @property
    def best_trial(self) -> int | None:
        return self.outcome.closing.best_trial if self.outcome.closing else None

    @property
    def val_accuracy(self) -> float | None:
        return self.outcome.closing.best_value if self.outcome.closing else None

    @property
    def test_accuracy(self) -> float | None:
        return self.outcome.test_accuracy

    @property
    def report(self) -> Path | None:
        folder = self.outcome.report_dir
        return folder / "index.html" if folder is not None else None

    def runs(self) -> Any:
        """`sweep.load_runs` for this study (one row per trial)."""
        from .compare import load_runs

        home = self.outcome.home
        return load_runs(self.spec.name, home=home.folder, storage=home.storage,
                         tracking_uri=home.tracking_uri)  # fmt: skip

    def history(self) -> Any:
        """`sweep.load_history` for this study (one row per trial and epoch)."""
        from .compare import load_history

        home = self.outcome.home
        return load_history(self.spec.name, home=home.folder, storage=home.storage)

    def __repr__(self) -> str:
        from .cli.run import summary

        return f"<SweepResult {self.spec.name!r}>\n{summary(self.outcome)}"

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = []
        from .cli.run import summary

        for line in summary(self.outcome).splitlines():
            key, _, value = line.partition("  ")
            rows.append(f"<tr><th style='text-align:left'>{esc(key)}</th>"
                        f"<td style='text-align:left'>{esc(value.strip())}</td></tr>")  # fmt: skip
        images = []
        folder = self.outcome.report_dir
        for name in ("heatmap.png", "templates.png"):
            path = folder / name if folder is not None else None
            if path is not None and path.is_file():
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                images.append(f"<img src='data:image/png;base64,{data}' alt='{name}' "
                              "style='max-width:100%'>")  # fmt: skip
        return (
            f"<div><b>softsweep study {esc(self.spec.name)}</b>"
            f"<table>{''.join(rows)}</table>{''.join(images)}</div>"
        )


def run(
    study: str | Path | StudySpec,
    *,
    home: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> SweepResult:
    """Run (or resume) a study, as `sweep run` does, and return its result.

    `study` is a study file or a `StudySpec`; `overrides` replace the file's settings by their
    `StudySpec` names (`n_trials=8`, `timeout_s=60`, `epochs=5`, ...; a setting the study keeps
    for life, such as `epochs`, makes a study of another name necessary, as in the file).
    Ctrl-C (KeyboardInterrupt) stops the trials in flight; running it again resumes.
    """
    spec = study if isinstance(study, StudySpec) else load_spec(study)
    spec = with_overrides(spec, overrides, "sweep.run()")
    bar: list[Any] = []
    epochs = spec.epochs

    def on_start(done: int, target: int) -> None:
        if progress:
            import importlib.util

            # A widget in Jupyter, text elsewhere; tqdm.auto warns (TqdmWarning: IProgress not
            # found) in a Jupyter without ipywidgets, where the text bar is the one that works.
            if importlib.util.find_spec("ipywidgets") is not None:
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm

            bar.append(tqdm(total=target * epochs, initial=done * epochs, desc=spec.name,
                            unit="epoch"))  # fmt: skip

    def on_progress(done: int, best: float | None, note: str, in_flight: int) -> None:
        if bar:
            bar[0].n = min(done * epochs + in_flight, bar[0].total)
            shown = f"{done}/{spec.target} trials" + (f", best {best:.4f}" if best else "")
            bar[0].set_postfix_str(shown + (f", {note}" if note else ""), refresh=True)

    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri)
    try:
        outcome = run_study(spec, where, on_start=on_start, on_progress=on_progress)
    except Interrupted:  # Ctrl-C, or the notebook's interrupt button
        raise KeyboardInterrupt(
            f"study {spec.name!r} interrupted: the trials in flight were stopped and will run "
            "again. Call sweep.run() with the same study to resume it."
        ) from None
    finally:
        if bar:
            bar[0].close()
    return SweepResult(spec, outcome)

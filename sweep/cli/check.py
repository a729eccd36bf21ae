"""`sweep check`: the course's sanity checks on a dataset, as text.

1. the initial loss against -log(1/C) (weights near 0 give every class probability 1/C);
2. the naive (loop) and vectorized losses: values, gradient difference, times and speedup;
3. a gradient check: a few entries (numerical, analytic, relative error) and the maximum;
4. training: one SGD epoch with the per-sample loop and with the matrix kernel, same settings
   and seed: epoch times and the validation accuracy each reaches.

Every time is the best of several runs with their spread, and the BLAS thread count is stated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

import engine

from .options import friendly_errors

if TYPE_CHECKING:
    from ..spec import StudySpec

__all__ = ["check", "format_table", "loss_check"]


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = []
        for cell, width in zip(cells, widths, strict=True):
            numeric = cell[:1].isdigit() or (cell[:1] in "-+." and cell[1:2].isdigit())
            out.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def loss_check(
    dataset: str,
    data_dir: Path | None,
    samples: int,
    reg: float,
    seed: int,
    *,
    train_samples: int = 5000,
    repeats: int = 5,
    study: StudySpec | None = None,
) -> str:
    """The four checks of the module docstring, on `samples` training examples (losses) and the
    first `train_samples` (training; 0 skips it). With a `study`, on its data as its trials see
    it (its split and preprocessing) instead of `dataset`'s pixels / 255."""
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}.")
    if train_samples < 0:
        raise ValueError(f"--train-samples must be >= 0 (0 skips training), got {train_samples}.")
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}.")
    if study is not None:
        from ..data import load_data

        data = load_data(study)
        features = f"{study.preprocessing}, as study {study.name!r} trains ({study.source})"
    else:
        data = engine.load_dataset(dataset, data_dir=data_dir, seed=seed)
        features = "pixels / 255 (pass a study file to check its preprocessing)"
    rng = np.random.default_rng(seed)
    pick = rng.choice(
        data.X_train.shape[0], size=min(samples, data.X_train.shape[0]), replace=False
    )
    r = engine.compare_losses(
        data.X_train[pick], data.y_train[pick], data.n_classes, reg=reg, seed=seed, repeats=repeats
    )
    out = [
        f"{data.name}: {r.n_samples} samples x {r.n_features} features (bias included), "
        f"{r.n_classes} classes, reg={reg:g}, float64; BLAS threads: {engine.blas_threads()}",
        f"features: {features}",
        "",
    ]
    # Only the data loss is -log(1/C) at the start: the L2 term reg * sum(W**2) is about
    # 1e-6 per weight (7.9e-3 * reg for 785 x 10 weights), which a large reg makes visible.
    data_loss = r.loss_vectorized - r.l2_term
    expected = r.expected_initial_loss
    verdict = "ok" if abs(data_loss - expected) < 0.05 * expected else "CHECK THE LOSS"
    out.append(
        f"initial loss  {data_loss:.4f}  expected -log(1/{r.n_classes}) = {expected:.4f} "
        f"(weights near 0: every class 1/{r.n_classes})  {verdict}"
    )
    out.append(
        f"  (the data loss: the total {r.loss_vectorized:.4f} minus the L2 term "
        f"reg * sum(W**2) = {r.l2_term:.3g})"
    )
    out.append("")
    rows = [
        ["naive (loops)", f"{r.loss_naive:.10f}", r.naive.describe(), "1x"],
        ["vectorized", f"{r.loss_vectorized:.10f}", r.vectorized.describe(), f"{r.speedup:.0f}x"],
    ]
    out.append(format_table(["loss + gradient", "value", "time", "speedup"], rows))
    out.append(f"|loss difference|          {abs(r.loss_naive - r.loss_vectorized):.3e}")
    out.append(f"max |gradient difference|  {r.grad_max_abs_diff:.3e}")
    out.append("")
    rows = [
        [f"W[{row}, {col}]", f"{num:+.8e}", f"{ana:+.8e}", f"{rel:.2e}"]
        for row, col, num, ana, rel in r.gradcheck_entries
    ]
    out.append("gradient check (centred differences, h = 1e-5), the first entries checked:")
    out.append(format_table(["entry", "numerical", "analytic", "rel. error"], rows))
    out.append(
        f"max rel. error over the {r.gradcheck_checked} entries checked: "
        f"{r.gradcheck_rel_error:.3e}"
    )
    out.append(
        f"the same entries at reg={r.l2_check_reg:g}, where the L2 gradient 2 * reg * W is as "
        f"large as the data's: max rel. error {r.l2_gradcheck_rel_error:.3e}"
    )
    if train_samples:
        out += ["", *_training(data, train_samples, max(1, repeats // 2) + 1, seed)]
    return "\n".join(out)


def _training(data: engine.Dataset, n: int, repeats: int, seed: int) -> list[str]:
    t = engine.compare_training(data, n_samples=n, repeats=repeats, seed=seed)
    rows = [
        ["per-sample loop", t.loop.describe(1.0, "s"), f"{t.loop_val_accuracy:.4f}"],
        ["matrix (engine)", t.matrix.describe(1.0, "s"), f"{t.matrix_val_accuracy:.4f}"],
    ]
    return [
        f"training: one SGD epoch on {t.n_samples} examples (batch {t.batch_size}, "
        f"lr {t.learning_rate:g}, reg {t.reg:g}), the same seed:",
        format_table(["implementation", "epoch time", "val accuracy"], rows),
        f"the matrix kernel is {t.speedup:.1f}x faster for the same model",
    ]


@click.command(short_help="Sanity checks: initial loss, gradients, naive vs vectorized.")
@click.argument(
    "study_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--dataset",
    default="fashion-mnist",
    show_default=True,
    help="mnist, fashion-mnist, cifar10, or a folder with the four IDX files.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder holding the dataset's files (searched first).",
)
@click.option("--samples", default=500, show_default=True, help="Training examples to use.")
@click.option("--reg", default=1e-4, show_default=True, help="L2 strength.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--train-samples",
    default=5000,
    show_default=True,
    help="Examples in the training-epoch comparison (0 skips it).",
)
@click.option("--repeats", default=5, show_default=True, help="Timed runs per measurement.")
@friendly_errors
def check(
    study_file: Path | None,
    dataset: str,
    data_dir: Path | None,
    samples: int,
    reg: float,
    seed: int,
    train_samples: int,
    repeats: int,
) -> None:
    """The course's sanity checks: initial loss vs -log(1/C), naive vs vectorized loss
    (values, times), a gradient check, and one training epoch with a per-sample loop vs the
    matrix kernel. Given a STUDY_FILE, on the study's data as its trials see it (its split
    and preprocessing: standardized pixels for the main job); else on DATASET's pixels / 255."""
    from ..spec import load_spec

    study = load_spec(study_file) if study_file is not None else None
    click.echo(
        loss_check(
            dataset,
            data_dir,
            samples,
            reg,
            seed,
            train_samples=train_samples,
            repeats=repeats,
            study=study,
        )
    )

"""`sweep check`: the loss implementations compared on a sample of a dataset, as text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import engine

__all__ = ["format_table", "loss_check"]


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


def loss_check(dataset: str, data_dir: Path | None, samples: int, reg: float, seed: int) -> str:
    """Naive vs vectorized loss and gradient on `samples` training examples: the values, the
    difference, the times, the speedup and a gradient check."""
    out: list[str] = []
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}.")
    data = engine.load_dataset(dataset, data_dir=data_dir, seed=seed)
    rng = np.random.default_rng(seed)
    pick = rng.choice(
        data.X_train.shape[0], size=min(samples, data.X_train.shape[0]), replace=False
    )
    result = engine.compare_losses(
        data.X_train[pick], data.y_train[pick], data.n_classes, reg=reg, seed=seed
    )
    out.append(
        f"{data.name}: {result.n_samples} samples x {result.n_features} features "
        f"(bias included), {result.n_classes} classes, reg={reg:g}, float64"
    )
    rows = [
        ["naive", f"{result.loss_naive:.10f}", f"{result.naive_s * 1e3:.2f}", "1.0x"],
        [
            "vectorized",
            f"{result.loss_vectorized:.10f}",
            f"{result.vectorized_s * 1e3:.3f}",
            f"{result.speedup:.0f}x",
        ],
    ]
    out.append(format_table(["loss", "value", "time (ms)", "speedup"], rows))
    out.append(f"|loss difference|         {abs(result.loss_naive - result.loss_vectorized):.3e}")
    out.append(f"max |gradient difference| {result.grad_max_abs_diff:.3e}")
    out.append(
        f"gradient check rel. error {result.gradcheck_rel_error:.3e} (numerical vs analytic)"
    )
    return "\n".join(out)

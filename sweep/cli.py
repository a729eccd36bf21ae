"""The `sweep` command line. Exit codes: 0 success, 1 failure, 2 bad usage or bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn: F) -> F:
    """Turn bad input into one paragraph and exit code 2 instead of a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            _fail(str(exc), EXIT_USAGE)
        except RuntimeError as exc:
            _fail(str(exc), EXIT_FAILURE)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper  # type: ignore[return-value]


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """softsweep: hyperparameter sweeps and experiment tracking for softmax classifiers."""


@main.command()
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
@friendly_errors
def check(dataset: str, data_dir: Path | None, samples: int, reg: float, seed: int) -> None:
    """Naive vs vectorized loss and gradient on a sample: difference, times, speedup, gradcheck."""
    import engine

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
    click.echo(
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
    click.echo(format_table(["loss", "value", "time (ms)", "speedup"], rows))
    click.echo(f"|loss difference|         {abs(result.loss_naive - result.loss_vectorized):.3e}")
    click.echo(f"max |gradient difference| {result.grad_max_abs_diff:.3e}")
    click.echo(
        f"gradient check rel. error {result.gradcheck_rel_error:.3e} (numerical vs analytic)"
    )


if __name__ == "__main__":
    main()

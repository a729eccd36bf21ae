"""Naive vs vectorized, measured honestly (what `sweep check` prints and the report draws).

Two comparisons, each repeated: the loss and gradient on the same weights (`compare_losses`,
with the initial-loss sanity check and a gradient check), and SGD training on the same samples
with the same settings (`compare_training`: the per-sample loop of `softmax_loss_naive` vs the
matrix kernel of `train`). Every time is kept, so a result says its best, its spread and how
many runs it took; `blas_threads` says how many threads the matrix code could use.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .data.dataset import Dataset
from .gradcheck import max_relative_error, numerical_gradient
from .losses import add_bias, softmax_loss_naive, softmax_loss_vectorized
from .train import train

__all__ = [
    "LossComparison",
    "Timed",
    "TrainingComparison",
    "best_time",
    "blas_threads",
    "compare_losses",
    "compare_training",
    "time_runs",
]


def time_runs(fn: Callable[[], object], *, repeats: int = 5) -> Timed:
    """Wall-clock seconds of `repeats` runs of fn()."""
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timed(tuple(times))


def best_time(fn: Callable[[], object], *, repeats: int = 3) -> float:
    """The fastest of `repeats` runs of fn(), in seconds (the least noisy estimate)."""
    return time_runs(fn, repeats=repeats).best


def blas_threads() -> str:
    """The threads NumPy's BLAS may use, as set by the usual variables (else its default: one
    per core it may run on)."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name, "").strip():
            return f"{os.environ[name].strip()} ({name})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} (one per core)"


@dataclass(frozen=True)
class Timed:
    """Every run's seconds: `best` is the estimate, `worst / best` the spread."""

    runs: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return float(np.median(self.runs))

    @property
    def worst(self) -> float:
        return max(self.runs)

    def describe(self, unit: float = 1e-3, name: str = "ms") -> str:
        """'4.12 ms (best of 5; 4.12-4.97)'."""
        return (
            f"{self.best / unit:.3g} {name} (best of {len(self.runs)}; "
            f"{self.best / unit:.3g}-{self.worst / unit:.3g})"
        )


# With weights 0.001 * N(0, 1) and features of order 1, 2 * 50 * W is of the order of the data
# gradient: the L2 term's gradient is checked for real.
L2_CHECK_REG = 50.0


@dataclass(frozen=True)
class LossComparison:
    n_samples: int
    n_features: int  # including the bias column
    n_classes: int
    reg: float
    loss_naive: float
    loss_vectorized: float
    grad_max_abs_diff: float  # max |dW_naive - dW_vectorized|
    naive: Timed
    vectorized: Timed
    # (row, column, numerical, analytic, relative error) of the first checked entries of W
    gradcheck_entries: tuple[tuple[int, int, float, float, float], ...]
    gradcheck_rel_error: float  # the max over every checked entry, float64
    gradcheck_checked: int  # entries checked
    l2_term: float = 0.0  # reg * sum(W ** 2) of the starting weights: the loss minus it is data
    # The same entries checked at a reg where the L2 gradient 2 reg W is as large as the data
    # gradient (at reg 1e-4 it is 1e-7 of it: a wrong L2 term would pass unseen).
    l2_check_reg: float = 0.0
    l2_gradcheck_rel_error: float = 0.0

    @property
    def naive_s(self) -> float:
        return self.naive.best

    @property
    def vectorized_s(self) -> float:
        return self.vectorized.best

    @property
    def speedup(self) -> float:
        return self.naive.best / self.vectorized.best

    @property
    def expected_initial_loss(self) -> float:
        """-log(1/C): with weights near 0 every class gets probability 1/C."""
        return math.log(self.n_classes)


def compare_losses(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    reg: float = 1e-4,
    seed: int = 0,
    repeats: int = 5,
    gradcheck_entries: int = 40,
    shown_entries: int = 5,
) -> LossComparison:
    """Run both losses on (X, y) with small random weights (0.001 * N(0, 1), as training
    starts), in float64: their values, gradients and times, and a gradient check of
    `gradcheck_entries` entries of W against centred differences."""
    rng = np.random.default_rng(seed)
    X1 = add_bias(np.asarray(X, dtype=np.float64))
    W = 0.001 * rng.standard_normal((X1.shape[1], n_classes))
    loss_n, dW_n = softmax_loss_naive(W, X1, y, reg)
    loss_v, dW_v = softmax_loss_vectorized(W, X1, y, reg)
    naive = time_runs(lambda: softmax_loss_naive(W, X1, y, reg), repeats=repeats)
    vectorized = time_runs(lambda: softmax_loss_vectorized(W, X1, y, reg), repeats=repeats * 5)
    picked = rng.choice(W.size, size=min(gradcheck_entries, W.size), replace=False)
    numeric = numerical_gradient(
        lambda w: softmax_loss_vectorized(w, X1, y, reg)[0], W, indices=picked
    )
    _, dW_l2 = softmax_loss_vectorized(W, X1, y, L2_CHECK_REG)
    numeric_l2 = numerical_gradient(
        lambda w: softmax_loss_vectorized(w, X1, y, L2_CHECK_REG)[0], W, indices=picked
    )
    entries = []
    for flat in picked[:shown_entries]:
        row, col = np.unravel_index(flat, W.shape)
        num, ana = float(numeric[row, col]), float(dW_v[row, col])
        rel = max_relative_error(np.array(ana), np.array(num))
        entries.append((int(row), int(col), num, ana, rel))
    return LossComparison(
        n_samples=X1.shape[0],
        n_features=X1.shape[1],
        n_classes=n_classes,
        reg=reg,
        loss_naive=loss_n,
        loss_vectorized=loss_v,
        grad_max_abs_diff=float(np.max(np.abs(dW_n - dW_v))),
        naive=naive,
        vectorized=vectorized,
        gradcheck_entries=tuple(entries),
        gradcheck_rel_error=max_relative_error(dW_v, numeric),
        gradcheck_checked=int(picked.size),
        l2_term=float(reg * np.sum(W * W)),
        l2_check_reg=L2_CHECK_REG,
        l2_gradcheck_rel_error=max_relative_error(dW_l2, numeric_l2),
    )


@dataclass(frozen=True)
class TrainingComparison:
    n_samples: int  # training examples per epoch
    batch_size: int
    learning_rate: float
    reg: float
    loop: Timed  # one epoch with the per-sample loop (`loss="naive"`)
    matrix: Timed  # one epoch with the matrix kernel
    loop_val_accuracy: float
    matrix_val_accuracy: float

    @property
    def speedup(self) -> float:
        return self.loop.best / self.matrix.best


def _first(data: Dataset, n: int) -> Dataset:
    """`data` with only its first n training examples."""
    pixels = data.pixels_train[:n] if data.pixels_train is not None else None
    return dataclasses.replace(
        data, X_train=data.X_train[:n], y_train=data.y_train[:n], pixels_train=pixels
    )


def compare_training(
    data: Dataset,
    *,
    n_samples: int | None = None,
    batch_size: int = 128,
    learning_rate: float = 0.1,
    reg: float = 1e-4,
    repeats: int = 3,
    seed: int = 0,
) -> TrainingComparison:
    """One epoch of SGD on the first `n_samples` training examples (all by default), trained
    with the per-sample loop and with the matrix kernel, same settings and seed, `repeats`
    times each: epoch times and the validation accuracy each reaches (the same model, so the
    same accuracy up to float32 rounding)."""
    subset = _first(data, n_samples) if n_samples else data
    batch_size = min(batch_size, subset.X_train.shape[0])
    results = {}

    def run(loss: Literal["naive", "vectorized"]) -> None:
        results[loss] = train(
            subset, learning_rate=learning_rate, reg=reg, batch_size=batch_size, epochs=1,
            seed=seed, loss=loss,
        )  # fmt: skip

    loop = time_runs(lambda: run("naive"), repeats=repeats)
    matrix = time_runs(lambda: run("vectorized"), repeats=repeats)
    return TrainingComparison(
        n_samples=subset.X_train.shape[0],
        batch_size=batch_size,
        learning_rate=learning_rate,
        reg=reg,
        loop=loop,
        matrix=matrix,
        loop_val_accuracy=results["naive"].val_accuracy,
        matrix_val_accuracy=results["vectorized"].val_accuracy,
    )

"""Naive vs vectorized loss: the same numbers, measured side by side (what `sweep check` prints)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .gradcheck import gradient_check
from .losses import add_bias, softmax_loss_naive, softmax_loss_vectorized

__all__ = ["LossComparison", "best_time", "compare_losses"]


def best_time(fn: Callable[[], object], *, repeats: int = 3) -> float:
    """The fastest of `repeats` wall-clock runs of fn(), in seconds (the least noisy estimate)."""
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@dataclass(frozen=True)
class LossComparison:
    n_samples: int
    n_features: int  # including the bias column
    n_classes: int
    reg: float
    loss_naive: float
    loss_vectorized: float
    grad_max_abs_diff: float  # max |dW_naive - dW_vectorized|
    naive_s: float
    vectorized_s: float
    gradcheck_rel_error: float  # analytic vs numerical gradient, sampled entries, float64

    @property
    def speedup(self) -> float:
        return self.naive_s / self.vectorized_s


def compare_losses(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    reg: float = 1e-4,
    seed: int = 0,
    repeats: int = 3,
    gradcheck_entries: int = 40,
) -> LossComparison:
    """Run both losses on (X, y) with small random weights, in float64; time and compare them."""
    rng = np.random.default_rng(seed)
    X1 = add_bias(np.asarray(X, dtype=np.float64))
    W = 0.001 * rng.standard_normal((X1.shape[1], n_classes))
    loss_n, dW_n = softmax_loss_naive(W, X1, y, reg)
    loss_v, dW_v = softmax_loss_vectorized(W, X1, y, reg)
    naive_s = best_time(lambda: softmax_loss_naive(W, X1, y, reg), repeats=max(1, repeats // 2))
    vectorized_s = best_time(lambda: softmax_loss_vectorized(W, X1, y, reg), repeats=repeats * 5)
    rel = gradient_check(
        softmax_loss_vectorized, W, X1, y, reg, n_entries=gradcheck_entries, rng=rng
    )
    return LossComparison(
        n_samples=X1.shape[0],
        n_features=X1.shape[1],
        n_classes=n_classes,
        reg=reg,
        loss_naive=loss_n,
        loss_vectorized=loss_v,
        grad_max_abs_diff=float(np.max(np.abs(dW_n - dW_v))),
        naive_s=naive_s,
        vectorized_s=vectorized_s,
        gradcheck_rel_error=rel,
    )

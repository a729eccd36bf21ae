"""Numerical gradient by centred differences, and the max relative error against an analytic one.

Results are returned as numbers, never printed: the caller (a test, `sweep check`) decides what
to show.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["gradient_check", "max_relative_error", "numerical_gradient"]


def numerical_gradient(
    f: Callable[[np.ndarray], float],
    W: np.ndarray,
    *,
    h: float = 1e-5,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Centred-difference gradient of the scalar function f at W.

    `indices` (flat positions into W) limits the work to a sample of entries; the other entries
    of the result are NaN so that they can never be mistaken for a computed value.
    """
    if h <= 0:
        raise ValueError(f"h must be > 0, got {h!r}.")
    W = np.array(W, dtype=np.float64)  # a private copy: f is evaluated at perturbed points
    flat = W.reshape(-1)
    positions = np.arange(flat.size) if indices is None else np.asarray(indices)
    grad = np.full(flat.size, np.nan) if indices is not None else np.empty(flat.size)
    for pos in positions:
        old = flat[pos]
        flat[pos] = old + h
        f_plus = f(W)
        flat[pos] = old - h
        f_minus = f(W)
        flat[pos] = old
        grad[pos] = (f_plus - f_minus) / (2 * h)
    return grad.reshape(W.shape)


def max_relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / max(|a| + |n|, 1e-12) over the entries where `numeric` was computed."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(
            f"analytic and numeric gradients must have the same shape, "
            f"got {analytic.shape} and {numeric.shape}."
        )
    mask = ~np.isnan(numeric)
    a, n = analytic[mask], numeric[mask]
    if a.size == 0:
        raise ValueError("numeric holds no computed entries (all NaN); nothing to compare.")
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-12)))


LossFn = Callable[[np.ndarray, np.ndarray, np.ndarray, float], tuple[float, np.ndarray]]


def gradient_check(
    loss_fn: LossFn,
    W: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    reg: float,
    *,
    h: float = 1e-5,
    n_entries: int | None = None,
    rng: np.random.Generator | None = None,
) -> float:
    """Max relative error between loss_fn's gradient and the numerical one, in float64.

    With `n_entries`, only that many entries of W (drawn with `rng`) are checked: a full check
    costs two loss evaluations per entry of W.
    """
    W64, X64 = np.asarray(W, dtype=np.float64), np.asarray(X, dtype=np.float64)
    _, analytic = loss_fn(W64, X64, y, reg)
    indices = None
    if n_entries is not None:
        if n_entries < 1:
            raise ValueError(f"n_entries must be >= 1, got {n_entries}.")
        rng = rng if rng is not None else np.random.default_rng(0)
        indices = rng.choice(W64.size, size=min(n_entries, W64.size), replace=False)
    numeric = numerical_gradient(lambda w: loss_fn(w, X64, y, reg)[0], W64, h=h, indices=indices)
    return max_relative_error(analytic, numeric)

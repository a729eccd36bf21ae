"""Softmax (multinomial logistic) loss and its gradient: a naive loop version and a vectorized one.

Convention (the one place it is written down; every other module follows it):

    scores = X @ W                                   # (N, C)
    p_ij   = exp(scores_ij) / sum_c exp(scores_ic)   # softmax over the C classes
    loss   = -(1/N) * sum_i log p_{i, y_i}  +  reg * sum(W ** 2)
    dW     =  (1/N) * X.T @ (P - Y_onehot)  +  2 * reg * W

Shapes: X (N, D), W (D, C), y (N,) integer labels in [0, C). The bias is handled with the bias
trick: the caller appends a column of ones to X (`add_bias`), so the last row of W is the bias.
Every entry of W is regularized, the bias row included (as in the cs231n assignment). Scores are
shifted by their row maximum before exponentiating, so any finite logits (rows of 1e4 or -1e4)
give a finite loss and gradient.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["add_bias", "softmax_loss_naive", "softmax_loss_vectorized"]


def add_bias(X: np.ndarray) -> np.ndarray:
    """Return X with a column of ones appended: (N, D) -> (N, D + 1)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (N, D), got shape {X.shape}.")
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])


def _check_inputs(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float) -> None:
    """Validate the loss contract once, at the public boundary."""
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D array (D, C), got shape {W.shape}.")
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (N, D), got shape {X.shape}.")
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of N labels, got shape {y.shape}.")
    if X.shape[1] != W.shape[0]:
        raise ValueError(
            f"X and W must agree on D: X has {X.shape[1]} columns but W has {W.shape[0]} rows. "
            "If W includes a bias row, append the ones column to X with engine.add_bias(X)."
        )
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must have one label per row of X, got {y.shape[0]} labels for {X.shape[0]} rows."
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}.")
    n_classes = W.shape[1]
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"y must hold labels in [0, {n_classes}) (W has {n_classes} columns), "
            f"got labels from {y.min()} to {y.max()}."
        )
    if not math.isfinite(reg) or reg < 0:
        raise ValueError(f"reg must be a finite number >= 0, got {reg!r}.")
    if not np.isfinite(X).all():
        raise ValueError(
            "X must contain only finite numbers, got NaN or inf. Check the data loading or "
            "preprocessing step that produced X."
        )


def softmax_loss_naive(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float
) -> tuple[float, np.ndarray]:
    """Softmax loss and gradient with explicit Python loops over samples and classes.

    Slow on purpose: it is the readable reference the vectorized version is tested against,
    and the baseline that `sweep check` times.
    """
    W, X, y = np.asarray(W), np.asarray(X), np.asarray(y)
    _check_inputs(W, X, y, reg)
    n_samples, n_classes = X.shape[0], W.shape[1]
    loss = 0.0
    dW = np.zeros_like(W)
    for i in range(n_samples):
        scores = X[i] @ W  # (C,)
        shift = scores.max()
        exp_scores = [math.exp(scores[c] - shift) for c in range(n_classes)]
        total = sum(exp_scores)
        loss += math.log(total) - (scores[y[i]] - shift)
        for c in range(n_classes):
            p = exp_scores[c] / total
            dW[:, c] += (p - (c == y[i])) * X[i]
    loss = loss / n_samples + reg * float(np.sum(W * W))
    dW = dW / n_samples + 2 * reg * W
    return float(loss), dW


def softmax_loss_vectorized(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float
) -> tuple[float, np.ndarray]:
    """Softmax loss and gradient with no Python loop: one GEMM forward, one backward."""
    W, X, y = np.asarray(W), np.asarray(X), np.asarray(y)
    _check_inputs(W, X, y, reg)
    n_samples = X.shape[0]
    rows = np.arange(n_samples)
    scores = X @ W  # (N, C)
    scores -= scores.max(axis=1, keepdims=True)
    correct = scores[rows, y]  # (N,) shifted score of the true class
    np.exp(scores, out=scores)
    totals = scores.sum(axis=1)  # (N,) >= 1 after the shift, so log is safe
    loss = float(np.mean(np.log(totals) - correct)) + reg * float(np.sum(W * W))
    probs = scores / totals[:, None]  # (N, C)
    probs[rows, y] -= 1
    dW = X.T @ probs / n_samples + 2 * reg * W
    return loss, dW

"""How good a trained model is, with its uncertainty: an accuracy's Wilson interval, McNemar's
paired test between two models on the same examples, the negative log-likelihood, the expected
calibration error with its reliability bins, and a temperature fitted on held-out data.

The scores are the model's logits `S = X W[:D] + W[D]` (N, C); `predict_proba` is softmax(S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Calibration",
    "McNemar",
    "calibration",
    "fit_temperature",
    "log_softmax",
    "mcnemar",
    "nll",
    "scores",
    "wilson_interval",
]

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
ECE_BINS = (
    15  # equal-width confidence bins (Guo et al., "On calibration of modern neural networks", 2017)
)


def scores(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """The logits (N, C) of features X (N, D) under weights W (D + 1, C), bias last."""
    return X @ W[:-1] + W[-1]


def log_softmax(S: np.ndarray) -> np.ndarray:
    """log softmax of each row of S, stable for any finite scores."""
    shifted = S - S.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `correct / n` (95% by default). Unlike
    p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and keeps its coverage near 0 and 1."""
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"wilson_interval needs 0 <= correct <= n and n > 0, got {correct}/{n}.")
    p = correct / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class McNemar:
    """Two models on the same n examples: how many only the first got right, how many only the
    second, and the exact two-sided p-value of "both are equally accurate" (a binomial test on
    the discordant pairs: the examples both got right or both got wrong say nothing)."""

    only_first: int
    only_second: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.only_first + self.only_second


def mcnemar(first_right: np.ndarray, second_right: np.ndarray) -> McNemar:
    """McNemar's exact test from two boolean arrays: was each example classified right by the
    first model, by the second."""
    a, b = np.asarray(first_right, dtype=bool), np.asarray(second_right, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar needs two arrays of one shape, got {a.shape} and {b.shape}.")
    only_first, only_second = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n, k = only_first + only_second, min(only_first, only_second)
    if n == 0:
        return McNemar(0, 0, 1.0)
    # P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (2^-n underflows past n ~ 1074)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top + math.log(sum(math.exp(v - top) for v in logs)) - n * math.log(2))
    return McNemar(only_first, only_second, min(1.0, 2.0 * tail))


def nll(S: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels y under softmax(S / temperature)."""
    logp = log_softmax(np.asarray(S, dtype=np.float64) / temperature)
    return float(-np.mean(logp[np.arange(len(y)), y]))


@dataclass(frozen=True)
class Calibration:
    """The reliability diagram's bins (equal-width in confidence; empty bins dropped) and the
    expected calibration error: sum over bins of (share of examples) x |accuracy - confidence|."""

    ece: float
    lower: tuple[float, ...]  # each bin's lower edge
    confidence: tuple[float, ...]  # mean confidence (the predicted class's probability) in it
    accuracy: tuple[float, ...]  # share of its examples classified right
    count: tuple[int, ...]


def calibration(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> Calibration:
    """Calibration of class probabilities (N, C) against labels y (N,)."""
    proba = np.asarray(proba)
    confidence = proba.max(axis=1)
    right = proba.argmax(axis=1) == np.asarray(y)
    # bin b holds (b/bins, (b+1)/bins]; a confidence of exactly 1 falls in the last bin
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    right_sum = np.bincount(index, weights=right.astype(np.float64), minlength=bins)
    kept = np.flatnonzero(count)
    mean_conf, mean_acc = conf_sum[kept] / count[kept], right_sum[kept] / count[kept]
    ece = float(np.sum(count[kept] / len(y) * np.abs(mean_acc - mean_conf)))
    return Calibration(
        ece=ece,
        lower=tuple(float(b / bins) for b in kept),
        confidence=tuple(float(c) for c in mean_conf),
        accuracy=tuple(float(a) for a in mean_acc),
        count=tuple(int(c) for c in count[kept]),
    )


def fit_temperature(S: np.ndarray, y: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature T in [low, high] that minimises nll(S / T, y): temperature scaling (Guo
    et al. 2017), one parameter that changes confidence and never a prediction. Fit it on
    validation scores, never on test. The NLL is convex in 1/T, so a golden-section search on
    log T finds its minimum (to 1e-6 relative)."""
    S = np.asarray(S, dtype=np.float64)
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(S, y, math.exp(c)), nll(S, y, math.exp(d))
    while b - a > 1e-6:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(S, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(S, y, math.exp(d))
    return math.exp((a + b) / 2)

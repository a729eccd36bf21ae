"""Learning-rate schedules: the factor each SGD update multiplies a model's learning rate by.

With E epochs of U updates each (U = ceil(N / B)), update t = 0 .. E*U - 1 falls in epoch
e = t // U + 1 and uses the learning rate lr * f(t):

    constant   f(t) = 1
    step       f(t) = gamma ** ((e - 1) // every)                       # per epoch
    cosine     f(t) = floor + (1 - floor) * (1 + cos(pi * t / (E*U))) / 2  # per update

The cosine is SGDR's (Loshchilov & Hutter, 2017) without restarts: it starts at lr, falls
smoothly, and ends at lr * floor; it is computed per update, so the last epochs average over
small steps instead of jumping between a few values. The L2 decay of an update follows the same
learning rate: W <- W * (1 - 2 lr f(t) reg) - lr f(t) dW_data.

`Factors` evaluates K models' schedules at once, a (K,) vector per update, so models trained
side by side may each have their own schedule and parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["KINDS", "Factors", "Schedule"]

KINDS = ("constant", "step", "cosine")


@dataclass(frozen=True)
class Schedule:
    """One model's learning-rate schedule (see the module docstring for the formulas).

    `every` and `gamma` apply to `step` (multiply by gamma every `every` epochs); `floor` to
    `cosine` (the fraction of lr the last update approaches)."""

    kind: Literal["constant", "step", "cosine"] = "constant"
    every: int = 5
    gamma: float = 0.5
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"schedule kind must be one of {', '.join(KINDS)}, got {self.kind!r}.")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(
                f"schedule every must be an integer >= 1 (epochs), got {self.every!r}."
            )
        if not (isinstance(self.gamma, int | float) and 0 < self.gamma <= 1):
            raise ValueError(f"schedule gamma must be a number in (0, 1], got {self.gamma!r}.")
        if not (isinstance(self.floor, int | float) and 0 <= self.floor <= 1):
            raise ValueError(f"schedule floor must be a number in [0, 1], got {self.floor!r}.")

    def factor(self, t: int, updates_per_epoch: int, epochs: int) -> float:
        """f(t) for one model (the reference the vectorized `Factors` is tested against)."""
        if self.kind == "step":
            return float(self.gamma ** ((t // updates_per_epoch) // self.every))
        if self.kind == "cosine":
            progress = t / (updates_per_epoch * epochs)
            return self.floor + (1 - self.floor) * (1 + math.cos(math.pi * progress)) / 2
        return 1.0

    def describe(self) -> str:
        """A short name, as logged: 'constant', 'step(every=5, gamma=0.5)', 'cosine(floor=0)'."""
        if self.kind == "step":
            return f"step(every={self.every}, gamma={self.gamma:g})"
        if self.kind == "cosine":
            return f"cosine(floor={self.floor:g})"
        return "constant"


class Factors:
    """f(t) for K models at once: `at(t)` is a (K,) float64 vector. Models side by side with
    different batch sizes each have their own clock: `updates_per_epoch` and `t` may then be
    (K,) arrays."""

    def __init__(
        self, schedules: Sequence[Schedule], updates_per_epoch: int | np.ndarray, epochs: int
    ) -> None:
        self.U, self.total = updates_per_epoch, updates_per_epoch * epochs
        self.constant = all(s.kind == "constant" for s in schedules)
        kinds = np.array([s.kind for s in schedules])
        self.is_step, self.is_cosine = kinds == "step", kinds == "cosine"
        self.every = np.array([s.every for s in schedules])  # (K,)
        self.log_gamma = np.log(np.array([s.gamma for s in schedules], dtype=np.float64))
        self.floor = np.array([s.floor for s in schedules], dtype=np.float64)
        self.ones = np.ones(len(schedules))

    def at(self, t: int | np.ndarray) -> np.ndarray:
        """(K,) factors of update t; the same ones vector for constant-only groups."""
        if self.constant:
            return self.ones
        epoch_index = t // self.U  # e - 1
        out = np.where(self.is_step, np.exp(self.log_gamma * (epoch_index // self.every)), 1.0)
        cosine: float | np.ndarray
        if isinstance(t, np.ndarray) or isinstance(self.total, np.ndarray):
            cosine = (1 + np.cos(np.pi * t / self.total)) / 2
        else:
            cosine = (1 + math.cos(math.pi * t / self.total)) / 2
        return np.where(self.is_cosine, self.floor + (1 - self.floor) * cosine, out)

"""Mini-batch SGD for softmax regression: `train` for one model, `train_many` for K side by side.

Both check their arguments here and run the kernel of `engine.group` (the K models' weights in
one (D + 1, C * K) array, one GEMM forward and one backward per mini-batch for all of them).
Every model of a call shares the seed: the same initial weights and the same batch order, so
`train_many(configs)[k]` is `train(configs[k])` up to the rounding of a wider GEMM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np

from .data.dataset import Dataset
from .group import VAL_CHUNK, Group, Metrics, OnEpochMany, TrainResult
from .schedule import Schedule

__all__ = [
    "MAX_GROUP",
    "TrainResult",
    "accuracy",
    "group_memory_bytes",
    "predict",
    "predict_proba",
    "train",
    "train_many",
]

# One model: return True to stop it.
OnEpoch = Callable[[int, Metrics], object]

# Groups larger than this are trained in consecutive chunks (same results: every chunk uses the
# same seed). At D=784, C=10 a model costs ~110 KB of group state, so 512 models are ~60 MB;
# past a few hundred models the GEMMs are as wide as they get and nothing more is gained.
MAX_GROUP = 512
CONSTANT = Schedule()


def predict(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Class predictions (N,) for features X (N, D) and weights W (D + 1, C), bias last."""
    return np.argmax(X @ W[:-1] + W[-1], axis=1)


def predict_proba(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C), rows summing to 1, for features X (N, D) and weights
    W (D + 1, C), bias last:

        P[i, c] = exp(s_ic - max_c' s_ic') / sum_c'' exp(s_ic'' - max_c' s_ic'),  s = X W[:D] + W[D]

    (the row max subtracted first: stable for any finite scores)."""
    scores = X @ W[:-1] + W[-1]  # (N, C)
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def accuracy(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(predict(W, X) == y))


def group_memory_bytes(
    data: Dataset, n_models: int, batch_size: int, dtype: np.dtype | type = np.float32
) -> int:
    """Bytes a group of `n_models` allocates besides the shared data: grows as K*(D*C + B*C).
    (A pass of mixed batch sizes also keeps each model's partial gradient: one more (D+1)*C.)"""
    per_model = 2 * (data.n_features + 1) * data.n_classes  # W and G
    per_model += batch_size * data.n_classes + VAL_CHUNK * data.n_classes  # S and val scores
    return int(n_models * per_model * np.dtype(dtype).itemsize)


def _check_positive_int(name: str, value: object, upper: int | None = None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}.")
    if value < 1 or (upper is not None and value > upper):
        bound = f"between 1 and {upper}" if upper is not None else ">= 1"
        raise ValueError(f"{name} must be {bound}, got {value}.{hint}")
    return int(value)


def _check_config(learning_rate: float, reg: float, where: str = "") -> tuple[float, float]:
    try:
        lr, rg = float(learning_rate), float(reg)
    except (TypeError, ValueError):
        raise TypeError(
            f"learning_rate and reg must be numbers{where}, got {learning_rate!r} and {reg!r}."
        ) from None
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(
            f"learning_rate must be a finite number > 0{where}, got {learning_rate!r}."
        )
    if not math.isfinite(rg) or rg < 0:
        raise ValueError(f"reg must be a finite number >= 0{where}, got {reg!r}.")
    return lr, rg


def _check_common(
    data: Dataset, batch_size: int, epochs: int, dtype: np.dtype | type
) -> tuple[int, int, np.dtype]:
    if not isinstance(data, Dataset):
        raise TypeError(
            f"data must be an engine Dataset (from engine.load_dataset), got {type(data).__name__}."
        )
    n = data.X_train.shape[0]
    batch_size = _check_positive_int(
        "batch_size", batch_size, n, f" The training set has {n} examples."
    )
    epochs = _check_positive_int("epochs", epochs)
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}.")
    return batch_size, epochs, dt


def train(
    data: Dataset,
    *,
    learning_rate: float,
    reg: float,
    batch_size: int,
    epochs: int,
    seed: int,
    loss: Literal["naive", "vectorized"] = "vectorized",
    dtype: np.dtype | type = np.float32,
    on_epoch: OnEpoch | None = None,
    schedule: Schedule = CONSTANT,
) -> TrainResult:
    """Train one softmax model with mini-batch SGD.

    `on_epoch(epoch, metrics)` is called after every epoch with `train_loss` (the epoch's mean
    mini-batch cross-entropy plus reg * sum(W**2) at the epoch's end), `train_accuracy` (of the
    mini-batches, before each update), `val_accuracy` and `epoch_time_s` (for models trained side
    by side, the group's epoch time divided by the models in it); returning True stops training
    (status `stopped`). A non-finite loss, or non-finite weights at an epoch's end (an overflow
    on its last update), ends training with status `diverged` and the epoch where it happened;
    it never raises and never returns NaN weights. The same seed gives the
    same result, bit for bit. `schedule` sets how the learning rate changes per update
    (`engine.schedule`). `loss="naive"` trains with the loop implementation (slow on purpose).
    """
    if loss not in ("naive", "vectorized"):
        raise ValueError(f"loss must be 'naive' or 'vectorized', got {loss!r}.")
    callback: OnEpochMany | None = None
    if on_epoch is not None:
        user = on_epoch

        def callback(epoch: int, per_model: Mapping[int, Metrics]) -> list[int]:
            return [0] if user(epoch, per_model[0]) else []

    batch_size, epochs, dt = _check_common(data, batch_size, epochs, dtype)
    lr, rg = _check_config(learning_rate, reg)
    schedules = _check_schedules(schedule, 1)
    group = Group(data, [(lr, rg)], schedules, [batch_size], epochs, seed, dt, callback)
    return group.run(naive=loss == "naive")[0]


def train_many(
    data: Dataset,
    configs: Sequence[tuple[float, float]],
    *,
    batch_size: int | Sequence[int],
    epochs: int,
    seed: int,
    loss: Literal["naive", "vectorized"] = "vectorized",
    dtype: np.dtype | type = np.float32,
    on_epoch: OnEpochMany | None = None,
    max_group: int = MAX_GROUP,
    schedule: Schedule | Sequence[Schedule] = CONSTANT,
) -> list[TrainResult]:
    """Train len(configs) models, given as (learning_rate, reg) pairs, side by side.

    Returns one TrainResult per config, in order. `on_epoch(epoch, metrics_per_model)` gets a
    mapping from config index to that model's metrics (only models still training) and may
    return the indices of models to stop. Models share the seed (initial weights, batch order),
    so result k equals `train(data, learning_rate=..., reg=..., ...)` for config k.
    `schedule` is one learning-rate schedule for every model or one per config (models side by
    side may differ). So may `batch_size`, one per config: models whose batch sizes are
    multiples of the smallest among them train in one pass, stepping through chunks of the
    smallest size and each updating at its own batch boundaries (each model's SGD is still the
    one it would do alone, up to summation order); sizes that do not divide train in passes of
    their own. Groups larger than `max_group` run in consecutive chunks.
    `loss="naive"` trains each model alone with the loop implementation (slow on purpose: the
    course's comparison).
    """
    if loss not in ("naive", "vectorized"):
        raise ValueError(f"loss must be 'naive' or 'vectorized', got {loss!r}.")
    sizes = batch_size if isinstance(batch_size, Sequence) else [batch_size] * len(configs)
    if len(sizes) != len(configs):
        raise ValueError(
            f"batch_size must be one integer or one per config ({len(configs)}), got "
            f"{len(sizes)} of them."
        )
    sizes = [_check_common(data, b, epochs, dtype)[0] for b in sizes]
    _, epochs, dt = _check_common(data, sizes[0] if sizes else 1, epochs, dtype)
    checked = []
    for k, config in enumerate(configs):
        if not isinstance(config, tuple | list) or len(config) != 2:
            raise TypeError(f"configs[{k}] must be a (learning_rate, reg) pair, got {config!r}.")
        checked.append(_check_config(*config, where=f" in configs[{k}]"))
    if not checked:
        raise ValueError("configs must hold at least one (learning_rate, reg) pair, got none.")
    max_group = _check_positive_int("max_group", max_group)
    schedules = _check_schedules(schedule, len(checked))
    if loss == "naive":  # the loop kernel trains one model at a time
        max_group = 1
    results: list[TrainResult | None] = [None] * len(checked)
    for together in _side_by_side(sizes):
        for start in range(0, len(together), max_group):
            members = together[start : start + max_group]
            callback = _mapped(on_epoch, members) if on_epoch is not None else None
            group = Group(
                data, [checked[i] for i in members], [schedules[i] for i in members],
                [sizes[i] for i in members], epochs, seed, dt, callback,
            )  # fmt: skip
            for i, result in zip(members, group.run(naive=loss == "naive"), strict=True):
                results[i] = result
    return [r for r in results if r is not None]


def _side_by_side(sizes: list[int]) -> list[list[int]]:
    """Config indices that train in one pass, in config order: each batch size joins the pass
    of the smallest size that divides it (the chunks it steps through)."""
    passes: dict[int, list[int]] = {}
    for size in sorted(set(sizes)):
        base = next((b for b in passes if size % b == 0), size)
        passes.setdefault(base, []).append(size)
    return [[i for i, s in enumerate(sizes) if s in members] for members in passes.values()]


def _check_schedules(schedule: Schedule | Sequence[Schedule], n: int) -> list[Schedule]:
    if isinstance(schedule, Schedule):
        return [schedule] * n
    schedules = list(schedule) if isinstance(schedule, Sequence) else None
    if (
        schedules is None
        or len(schedules) != n
        or not all(isinstance(s, Schedule) for s in schedules)
    ):
        raise TypeError(
            f"schedule must be an engine.Schedule or a list of {n} of them (one per config), "
            f"got {schedule!r}."
        )
    return schedules


def _mapped(user: OnEpochMany, members: list[int]) -> OnEpochMany:
    """`user` sees config indices of the whole call while a group counts from 0."""
    local = {config: k for k, config in enumerate(members)}

    def callback(epoch: int, per_model: Mapping[int, Metrics]) -> list[int]:
        asked = user(epoch, {members[k]: m for k, m in per_model.items()}) or ()
        return [local[k] for k in asked if k in local]

    return callback

"""The shipped studies' ranges fit the engine's pixel scale ([0, 1], centred; standardized for the
main study): the low end of each learning-rate range learns, the high end does not diverge, and
the top of each reg range reaches where L2 costs accuracy (the reasoning is written in each
study file)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.data.dataset import make_dataset
from sweep.spec import load_spec

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def val(result: engine.TrainResult) -> float:
    assert result.status == "completed", result.reason
    return result.val_accuracy


def roughness(W: np.ndarray, side: int) -> float:
    """Mean |difference| between horizontally neighbouring template pixels, per mean |W|."""
    T = W[:-1].reshape(side, side, -1)
    return float(np.abs(np.diff(T, axis=1)).mean() / np.abs(T).mean())


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["fashion_mnist.toml", "mnist.toml"])
def test_tpe_ranges_fit_the_pixel_scale(
    fashion_centred: engine.Dataset, fashion_standardized: engine.Dataset, name: str
) -> None:
    # MNIST has Fashion-MNIST's shape and scale; its files are not installed here, so its ranges
    # are checked on Fashion-MNIST, scaled as the study file scales it.
    spec = load_spec(STUDIES / name)
    lr, reg = spec.learning_rate, spec.reg
    assert spec.center and lr.low and lr.high and reg.low is not None and reg.high
    data = fashion_standardized if spec.standardize else fashion_centred
    middle = math.sqrt(lr.low * lr.high)
    configs = [(lr.low, reg.low), (lr.high, reg.low), (middle, reg.low), (middle, reg.high)]
    low, high, mid, mid_reg = engine.train_many(data, configs, batch_size=256, epochs=3, seed=0)
    assert val(low) > 0.65  # the smallest learning rate still learns in 3 epochs
    assert val(high) > 0.8  # the largest is stable
    assert val(mid) - val(mid_reg) > 0.03  # the strongest L2 costs accuracy: the range covers it


@pytest.mark.realdata
def test_the_grid_spans_reg_from_free_to_visibly_smoothing(fashion_centred) -> None:
    spec = load_spec(STUDIES / "fashion_mnist_grid.toml")
    assert spec.center  # like the other studies
    assert spec.learning_rate.values and spec.reg.values
    lr = spec.learning_rate.values[2]
    regs = spec.reg.values
    results = engine.train_many(
        fashion_centred, [(lr, r) for r in regs], batch_size=spec.batch_size[0],
        epochs=spec.epochs, seed=spec.seed,
    )  # fmt: skip
    accuracies = [val(r) for r in results]
    assert accuracies[0] - accuracies[1] < 0.005  # the first step of L2 is still free
    assert accuracies[0] - accuracies[-1] > 0.05  # the last costs accuracy ...
    smooth, plain = roughness(results[-1].weights, 28), roughness(results[0].weights, 28)
    assert smooth < 0.85 * plain  # ... and visibly smooths the templates


def cifar_shaped(n_train: int = 4000, n_test: int = 500) -> engine.Dataset:
    """CIFAR-10's shape (32 x 32 x 3 uint8, 10 classes) with neighbouring pixels correlated as in
    photos: a faint class template under strong smooth noise (a linear model gets ~0.4)."""
    rng = np.random.default_rng(0)

    def smooth(n: int) -> np.ndarray:
        return np.repeat(np.repeat(rng.random((n, 8, 8, 3)), 4, axis=1), 4, axis=2)

    n = n_train + n_test
    y = rng.integers(0, 10, n)
    images = (255 * (0.08 * smooth(10)[y] + 0.92 * smooth(n))).astype(np.uint8)
    return make_dataset(
        "cifar-shaped", images[:n_train], y[:n_train], images[n_train:], y[n_train:],
        tuple(f"class {c}" for c in range(10)), val_size=500, seed=0, center=True,
        dtype=np.float32,
    )  # fmt: skip


def test_cifar10_ranges_are_the_assignments_on_the_engines_scale() -> None:
    spec = load_spec(STUDIES / "cifar10.toml")
    lr, reg = spec.learning_rate, spec.reg
    assert lr.low and lr.high and reg.low and reg.high and spec.center
    # The assignment's raw-pixel box times 65025 (lr) and divided by it (reg) lies inside.
    assert lr.low <= 1e-7 * 255**2 and lr.high >= 1e-5 * 255**2 * 0.99
    assert reg.low <= 1e2 / 255**2 and reg.high >= 1e5 / 255**2 * 0.99
    data = cifar_shaped()
    configs = [(1e-5, 0.0), (lr.low, reg.low), (lr.high, reg.low), (lr.low, reg.high)]
    raw, low, high, low_strong = engine.train_many(data, configs, batch_size=200, epochs=3, seed=0)
    assert val(raw) < 0.15  # the raw-pixel learning rate leaves the weights at chance
    assert val(low) > 0.25 and val(low_strong) > 0.25  # this box's low end learns
    assert val(high) > 0.25  # its largest learning rate is stable without strong L2

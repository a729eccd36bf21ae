"""Learning-rate schedules: the formulas, per-model schedules side by side, and full-batch SGD
against a loop written from the formulas (one update per epoch, so t = epoch - 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
from engine import Schedule, add_bias, softmax_loss_vectorized
from engine.schedule import Factors

SCHEDULES = [
    Schedule(),
    Schedule("step", every=2, gamma=0.3),
    Schedule("cosine"),
    Schedule("cosine", floor=0.1),
]


def formula(schedule: Schedule, t: int, U: int, E: int) -> float:
    # Written from the module docstring, independently of Schedule.factor.
    if schedule.kind == "step":
        return schedule.gamma ** ((t // U) // schedule.every)
    if schedule.kind == "cosine":
        return schedule.floor + (1 - schedule.floor) * 0.5 * (1 + math.cos(math.pi * t / (U * E)))
    return 1.0


def test_factors_follow_the_formulas_for_every_update() -> None:
    U, E = 7, 5
    factors = Factors(SCHEDULES, U, E)
    for t in range(U * E):
        expected = [formula(s, t, U, E) for s in SCHEDULES]
        np.testing.assert_allclose(factors.at(t), expected, rtol=1e-12)
        assert [s.factor(t, U, E) for s in SCHEDULES] == pytest.approx(expected, rel=1e-12)
    # Cosine starts at lr and ends near floor * lr; step drops every 2 epochs.
    assert factors.at(0)[2] == 1.0 and factors.at(U * E - 1)[2] < 0.003
    assert factors.at(U * E - 1)[3] == pytest.approx(0.1, abs=0.002)
    assert factors.at(2 * U - 1)[1] == 1.0 and factors.at(2 * U)[1] == pytest.approx(0.3)


@pytest.mark.parametrize("schedule", SCHEDULES[1:], ids=lambda s: s.describe())
def test_full_batch_sgd_follows_the_schedule(tiny64: engine.Dataset, schedule: Schedule) -> None:
    lr, reg, seed, epochs = 0.5, 0.01, 3, 6
    n = tiny64.X_train.shape[0]
    result = engine.train(
        tiny64, learning_rate=lr, reg=reg, batch_size=n, epochs=epochs, seed=seed,
        dtype=np.float64, schedule=schedule,
    )  # fmt: skip
    W = 0.001 * np.random.default_rng(seed).standard_normal((tiny64.n_features + 1, 3))
    X1 = add_bias(tiny64.X_train)
    for t in range(epochs):  # full batch: one update per epoch
        _, dW = softmax_loss_vectorized(W, X1, tiny64.y_train, reg)
        W = W - lr * formula(schedule, t, 1, epochs) * dW
    np.testing.assert_allclose(result.weights, W, rtol=1e-9, atol=1e-13)


def test_models_side_by_side_may_have_different_schedules(tiny64: engine.Dataset) -> None:
    configs = [(0.3, 1e-3), (1.0, 0.0), (0.3, 1e-3), (0.05, 0.05)]
    common = dict(batch_size=32, epochs=4, seed=5, dtype=np.float64)
    many = engine.train_many(tiny64, configs, schedule=SCHEDULES, **common)
    for (lr, reg), schedule, result in zip(configs, SCHEDULES, many, strict=True):
        single = engine.train(tiny64, learning_rate=lr, reg=reg, schedule=schedule, **common)
        np.testing.assert_allclose(result.weights, single.weights, rtol=0, atol=1e-10)
    # The same (lr, reg) under a constant and a stepped learning rate trains differently.
    assert not np.allclose(many[0].weights, many[2].weights)


def test_a_schedule_survives_models_leaving_the_stack(tiny64: engine.Dataset) -> None:
    # Model 0 diverges in epoch 1 and model 1 is stopped after epoch 1: the cosine model's
    # clock and parameters must not shift when the stack is compacted.
    configs = [(1e30, 1e30), (0.3, 0.0), (0.3, 1e-3)]
    schedules = [Schedule(), Schedule("step", every=1, gamma=0.5), Schedule("cosine", floor=0.2)]
    common = dict(batch_size=32, epochs=4, seed=5, dtype=np.float64)
    many = engine.train_many(
        tiny64, configs, schedule=schedules, on_epoch=lambda e, m: [1] if e == 1 else [], **common
    )
    assert [r.status for r in many] == ["diverged", "stopped", "completed"]
    single = engine.train(tiny64, learning_rate=0.3, reg=1e-3, schedule=schedules[2], **common)
    np.testing.assert_allclose(many[2].weights, single.weights, rtol=0, atol=1e-10)


def test_naive_training_follows_the_schedule_too(tiny64: engine.Dataset) -> None:
    kwargs = dict(learning_rate=0.3, reg=1e-3, batch_size=32, epochs=3, seed=1, dtype=np.float64)
    cosine = Schedule("cosine")
    naive = engine.train(tiny64, loss="naive", schedule=cosine, **kwargs)
    fast = engine.train(tiny64, schedule=cosine, **kwargs)
    np.testing.assert_allclose(fast.weights, naive.weights, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(kind="linear"), "schedule kind must be one of constant, step, cosine, got 'linear'"),
        (dict(kind="step", every=0), "every must be an integer >= 1"),
        (dict(kind="step", gamma=1.5), r"gamma must be a number in \(0, 1\], got 1.5"),
        (dict(kind="cosine", floor=-0.1), r"floor must be a number in \[0, 1\]"),
    ],
)
def test_bad_schedules(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Schedule(**kwargs)


def test_one_schedule_per_config_or_one_for_all(tiny: engine.Dataset) -> None:
    with pytest.raises(TypeError, match=r"a list of 2 of them \(one per config\)"):
        engine.train_many(
            tiny, [(0.1, 0.0), (0.2, 0.0)], batch_size=8, epochs=1, seed=0, schedule=[Schedule()]
        )

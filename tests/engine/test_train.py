"""The SGD trainer on tiny learnable data: correctness against the loss module, determinism,
divergence, stopping, and input checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import engine
from engine import add_bias, softmax_loss_vectorized


def test_one_full_batch_epoch_is_one_gradient_step(tiny64: engine.Dataset) -> None:
    lr, reg, seed = 0.5, 0.01, 7
    n = tiny64.X_train.shape[0]
    result = engine.train(
        tiny64, learning_rate=lr, reg=reg, batch_size=n, epochs=1, seed=seed, dtype=np.float64
    )
    # The documented initialisation, then W <- W - lr * dW from the loss module.
    W0 = 0.001 * np.random.default_rng(seed).standard_normal((tiny64.n_features + 1, 3))
    loss, dW = softmax_loss_vectorized(W0, add_bias(tiny64.X_train), tiny64.y_train, reg)
    np.testing.assert_allclose(result.weights, W0 - lr * dW, rtol=1e-10, atol=1e-14)
    # The reported train loss is that batch's cross-entropy plus reg * sum(W**2) after the step.
    data_loss = loss - reg * np.sum(W0**2)
    expected = data_loss + reg * np.sum(result.weights**2)
    assert result.history[0]["train_loss"] == pytest.approx(expected, rel=1e-10)


def test_naive_and_vectorized_training_agree(tiny64: engine.Dataset) -> None:
    kwargs = dict(learning_rate=0.3, reg=1e-3, batch_size=32, epochs=2, seed=1, dtype=np.float64)
    naive = engine.train(tiny64, loss="naive", **kwargs)
    fast = engine.train(tiny64, loss="vectorized", **kwargs)
    np.testing.assert_allclose(fast.weights, naive.weights, rtol=1e-10, atol=1e-13)
    assert [h["val_accuracy"] for h in fast.history] == [h["val_accuracy"] for h in naive.history]
    for a, b in zip(fast.history, naive.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)
        assert a["train_accuracy"] == b["train_accuracy"]


def test_learns_and_reports_every_epoch(tiny: engine.Dataset) -> None:
    seen = []
    result = engine.train(
        tiny,
        learning_rate=1.0,
        reg=1e-4,
        batch_size=16,
        epochs=4,
        seed=0,
        on_epoch=lambda epoch, metrics: seen.append((epoch, dict(metrics))),
    )
    assert result.status == "completed" and result.end_epoch == 4
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert [m for _, m in seen] == list(result.history)
    assert set(result.history[0]) == {
        "train_loss",
        "train_accuracy",
        "val_accuracy",
        "epoch_time_s",
        "l2_term",
    }
    # The bands make the classes linearly separable: far above chance (1/3).
    assert result.val_accuracy > 0.9
    assert engine.accuracy(result.weights, tiny.X_test, tiny.y_test) > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert set(result.timings) >= {"data", "forward", "backward", "eval", "total"}


def test_same_seed_same_result_bit_for_bit(tiny: engine.Dataset) -> None:
    kwargs = dict(learning_rate=0.5, reg=1e-3, batch_size=20, epochs=3, seed=11)
    a, b = engine.train(tiny, **kwargs), engine.train(tiny, **kwargs)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    c = engine.train(tiny, **{**kwargs, "seed": 12})
    assert not np.array_equal(a.weights, c.weights)


def test_divergence_ends_training_without_nan(tiny: engine.Dataset) -> None:
    # W *= 1 - 2*lr*reg = -1999 every step: float32 overflows within the first epoch.
    result = engine.train(tiny, learning_rate=1e3, reg=1.0, batch_size=16, epochs=5, seed=0)
    # A non-finite loss is a status with its epoch, never an exception or a NaN result.
    assert result.status == "diverged"
    assert result.end_epoch == 1
    assert result.weights is None
    assert result.reason.startswith("diverged at epoch 1: loss=")
    assert all(math.isfinite(v) for h in result.history for v in h.values())


def test_divergence_later_keeps_completed_epochs(tiny: engine.Dataset) -> None:
    # W *= 1 - 2*lr*reg = -1.2 every full-batch step: a slow blow-up, finite for many epochs.
    result = engine.train(tiny, learning_rate=1.1, reg=1.0, batch_size=240, epochs=2000, seed=0)
    assert result.status == "diverged" and result.end_epoch > 1
    assert len(result.history) == result.end_epoch - 1


def test_on_epoch_can_stop_training(tiny: engine.Dataset) -> None:
    result = engine.train(
        tiny,
        learning_rate=0.5,
        reg=0.0,
        batch_size=16,
        epochs=10,
        seed=0,
        on_epoch=lambda epoch, metrics: epoch == 2,
    )
    assert result.status == "stopped" and result.end_epoch == 2
    assert len(result.history) == 2 and result.weights is not None


def test_float_dataset_without_pixels_trains_the_same(tiny: engine.Dataset) -> None:
    floats_only = dataclasses.replace(tiny, pixels_train=None, decoder=None)  # gathers floats
    kwargs = dict(learning_rate=0.5, reg=1e-3, batch_size=20, epochs=2, seed=3)
    np.testing.assert_array_equal(
        engine.train(floats_only, **kwargs).weights, engine.train(tiny, **kwargs).weights
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"learning_rate": 0.0}, ValueError, r"learning_rate must be a finite number > 0, got 0.0"),
        ({"learning_rate": -1}, ValueError, r"learning_rate must be a finite number > 0, got -1"),
        (
            {"learning_rate": float("nan")},
            ValueError,
            r"learning_rate must be a finite number > 0, got nan",
        ),
        ({"reg": -1e-3}, ValueError, r"reg must be a finite number >= 0, got -0.001"),
        (
            {"batch_size": 0},
            ValueError,
            r"batch_size must be between 1 and 240, got 0. The training set has 240",
        ),
        ({"batch_size": 241}, ValueError, r"batch_size must be between 1 and 240, got 241"),
        ({"batch_size": 2.5}, TypeError, r"batch_size must be an integer, got float 2.5"),
        ({"epochs": 0}, ValueError, r"epochs must be >= 1, got 0"),
        ({"loss": "fast"}, ValueError, r"loss must be 'naive' or 'vectorized', got 'fast'"),
        ({"dtype": np.int32}, ValueError, r"dtype must be float32 or float64, got int32"),
    ],
)
def test_bad_arguments(tiny: engine.Dataset, kwargs, error, match) -> None:
    args = dict(learning_rate=0.1, reg=0.0, batch_size=16, epochs=1, seed=0) | kwargs
    with pytest.raises(error, match=match):
        engine.train(tiny, **args)


def test_data_must_be_a_dataset() -> None:
    with pytest.raises(
        TypeError, match=r"data must be an engine Dataset \(from engine.load_dataset\), got dict"
    ):
        engine.train({}, learning_rate=0.1, reg=0.0, batch_size=1, epochs=1, seed=0)


def test_predict_proba_rows_are_distributions_that_agree_with_predict(tiny) -> None:
    result = engine.train(tiny, learning_rate=0.1, reg=1e-4, batch_size=32, epochs=2, seed=0)
    probs = engine.predict_proba(result.weights, tiny.X_test)
    assert probs.shape == (tiny.X_test.shape[0], tiny.n_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert (probs >= 0).all()
    np.testing.assert_array_equal(probs.argmax(axis=1), engine.predict(result.weights, tiny.X_test))
    # Stable for large scores: the oracle is the softmax of the same scores in float64.
    W = result.weights.astype(np.float64) * 1e4
    scores = tiny.X_test.astype(np.float64) @ W[:-1] + W[-1]
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(
        engine.predict_proba(W, tiny.X_test.astype(np.float64)),
        shifted / shifted.sum(axis=1, keepdims=True),
        rtol=1e-12,
    )

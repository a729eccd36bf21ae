"""On the real Fashion-MNIST (run in CI, which installs Debian's dataset-fashion-mnist)."""

from __future__ import annotations

import numpy as np
import pytest

import engine

pytestmark = pytest.mark.realdata


def test_fashion_mnist_loads_with_its_standard_shape(fashion: engine.Dataset) -> None:
    assert fashion.X_train.shape == (55000, 784)
    assert fashion.X_val.shape == (5000, 784) and fashion.X_test.shape == (10000, 784)
    assert fashion.image_shape == (28, 28)
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    # The official test set is balanced: 1,000 images of each class.
    np.testing.assert_array_equal(np.bincount(fashion.y_test), np.full(10, 1000))


def test_ten_epochs_reach_the_published_linear_baseline(fashion: engine.Dataset) -> None:
    result = engine.train(fashion, learning_rate=0.1, reg=1e-4, batch_size=256, epochs=10, seed=0)
    assert result.status == "completed"
    # Published linear baselines reach ~0.84 test accuracy on Fashion-MNIST.
    assert engine.accuracy(result.weights, fashion.X_test, fashion.y_test) >= 0.83

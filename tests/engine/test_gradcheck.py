from __future__ import annotations

import numpy as np
import pytest

from engine import max_relative_error, numerical_gradient


def test_numerical_gradient_of_a_known_function() -> None:
    A = np.array([[1.0, -2.0], [0.5, 3.0]])
    W = np.array([[0.3, -0.7], [1.1, 0.2]])
    grad = numerical_gradient(lambda w: float(np.sum(A * w**2)), W)
    # d/dW sum(A * W^2) = 2 A W, exact up to centred-difference error (h^2 terms vanish here).
    np.testing.assert_allclose(grad, 2 * A * W, rtol=1e-8)


def test_numerical_gradient_does_not_change_its_input() -> None:
    W = np.ones((2, 2))
    numerical_gradient(lambda w: float(np.sum(w**3)), W)
    np.testing.assert_array_equal(W, np.ones((2, 2)))


def test_sampled_entries_leave_the_rest_nan() -> None:
    W = np.zeros((3, 3))
    grad = numerical_gradient(lambda w: float(np.sum(w)), W, indices=np.array([0, 4]))
    assert np.isnan(grad).sum() == 7
    assert grad.reshape(-1)[[0, 4]] == pytest.approx([1.0, 1.0])


def test_max_relative_error_ignores_unsampled_entries() -> None:
    analytic = np.array([1.0, 2.0, 3.0])
    numeric = np.array([1.0, np.nan, 3.3])
    assert max_relative_error(analytic, numeric) == pytest.approx(0.3 / 6.3)


def test_max_relative_error_of_identical_gradients_is_zero() -> None:
    g = np.array([[0.0, 1e-9], [-4.0, 2.0]])
    assert max_relative_error(g, g.copy()) == 0.0


def test_bad_step_size() -> None:
    with pytest.raises(ValueError, match=r"h must be > 0, got 0"):
        numerical_gradient(lambda w: 0.0, np.zeros(2), h=0)


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(3,\)"):
        max_relative_error(np.zeros(2), np.zeros(3))

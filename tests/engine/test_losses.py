"""The loss contract, checked against independent oracles: the naive loop, the numerical
gradient, and the convention's formula written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import add_bias, gradient_check, softmax_loss_naive, softmax_loss_vectorized


def problem(seed: int = 0, n: int = 40, d: int = 12, c: int = 5, scale: float = 0.1):
    rng = np.random.default_rng(seed)
    X = add_bias(rng.standard_normal((n, d)))
    W = scale * rng.standard_normal((d + 1, c))
    y = rng.integers(0, c, size=n)
    return W, X, y


@pytest.mark.parametrize("reg", [0.0, 0.37])
def test_naive_and_vectorized_agree(reg: float) -> None:
    W, X, y = problem()
    loss_n, dW_n = softmax_loss_naive(W, X, y, reg)
    loss_v, dW_v = softmax_loss_vectorized(W, X, y, reg)
    # Two implementations written independently give the same numbers in float64.
    assert loss_v == pytest.approx(loss_n, rel=1e-10)
    np.testing.assert_allclose(dW_v, dW_n, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reg", [0.0, 0.37])
@pytest.mark.parametrize("loss_fn", [softmax_loss_naive, softmax_loss_vectorized])
def test_analytic_gradient_matches_numerical(loss_fn, reg: float) -> None:
    W, X, y = problem(seed=1, n=25, d=6, c=4, scale=0.5)
    # Centred differences in float64 agree with the analytic gradient to 1e-7 relative.
    assert gradient_check(loss_fn, W, X, y, reg, h=1e-5) < 1e-7


def test_regularization_is_exactly_the_written_convention() -> None:
    W, X, y = problem(seed=2)
    reg = 0.25
    loss0, dW0 = softmax_loss_vectorized(W, X, y, 0.0)
    loss_r, dW_r = softmax_loss_vectorized(W, X, y, reg)
    # loss adds reg * sum(W**2) (bias row included), the gradient adds 2 * reg * W.
    assert loss_r - loss0 == pytest.approx(reg * np.sum(W * W), rel=1e-12)
    np.testing.assert_allclose(dW_r - dW0, 2 * reg * W, rtol=1e-10, atol=1e-15)


def test_data_loss_is_mean_cross_entropy_by_hand() -> None:
    W, X, y = problem(seed=3, n=7, d=3, c=3)
    expected = 0.0
    for i in range(X.shape[0]):
        scores = X[i] @ W
        expected -= math.log(math.exp(scores[y[i]]) / sum(math.exp(s) for s in scores))
    loss, _ = softmax_loss_vectorized(W, X, y, 0.0)
    assert loss == pytest.approx(expected / X.shape[0], rel=1e-12)


@pytest.mark.parametrize("loss_fn", [softmax_loss_naive, softmax_loss_vectorized])
def test_tiny_random_weights_give_log_c(loss_fn) -> None:
    W, X, y = problem(seed=4, c=10, scale=1e-6)
    loss, _ = loss_fn(W, X, y, 0.0)
    # With all scores ~0 every class has probability 1/C.
    assert loss == pytest.approx(math.log(10), rel=1e-4)


@pytest.mark.parametrize("loss_fn", [softmax_loss_naive, softmax_loss_vectorized])
@pytest.mark.parametrize(
    ("magnitude", "expected"),
    # Row 0 scores (m, 0, -m) with y=2, row 1 scores (0, m, 0) with y=0.
    [(1e4, (2e4 + 1e4) / 2), (-1e4, (0.0 + math.log(2)) / 2)],
)
def test_extreme_logits_stay_finite(loss_fn, magnitude: float, expected: float) -> None:
    X = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    W = np.array([[magnitude, 0.0, -magnitude], [0.0, magnitude, 0.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 0])
    loss, dW = loss_fn(W, X, y, 0.0)
    # exp(1e4) overflows; the row-max shift keeps both loss and gradient finite and exact.
    assert np.isfinite(dW).all()
    assert loss == pytest.approx(expected, rel=1e-12)


def test_float32_inputs_match_float64_closely() -> None:
    W, X, y = problem(seed=5)
    loss64, dW64 = softmax_loss_vectorized(W, X, y, 0.1)
    loss32, dW32 = softmax_loss_vectorized(W.astype(np.float32), X.astype(np.float32), y, 0.1)
    assert dW32.dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    np.testing.assert_allclose(dW32, dW64, rtol=1e-3, atol=1e-6)


def test_add_bias_appends_a_ones_column() -> None:
    X = np.arange(6.0).reshape(3, 2)
    out = add_bias(X)
    assert out.shape == (3, 3)
    np.testing.assert_array_equal(out[:, -1], 1.0)
    np.testing.assert_array_equal(out[:, :2], X)


@pytest.mark.parametrize("loss_fn", [softmax_loss_naive, softmax_loss_vectorized])
class TestBadInput:
    def test_w_and_x_disagree_on_d(self, loss_fn) -> None:
        W, X, y = problem()
        with pytest.raises(
            ValueError, match=r"X and W must agree on D: X has 13 columns but W has 12"
        ):
            loss_fn(W[:-1], X, y, 0.0)

    def test_y_and_x_disagree_on_n(self, loss_fn) -> None:
        W, X, y = problem()
        with pytest.raises(
            ValueError, match=r"y must have one label per row of X, got 39 labels for 40"
        ):
            loss_fn(W, X, y[:-1], 0.0)

    def test_negative_reg(self, loss_fn) -> None:
        W, X, y = problem()
        with pytest.raises(ValueError, match=r"reg must be a finite number >= 0, got -0.1"):
            loss_fn(W, X, y, -0.1)

    @pytest.mark.parametrize("bad", [np.nan, np.inf])
    def test_non_finite_x(self, loss_fn, bad: float) -> None:
        W, X, y = problem()
        X[3, 2] = bad
        with pytest.raises(ValueError, match=r"X must contain only finite numbers, got NaN or inf"):
            loss_fn(W, X, y, 0.0)

    def test_labels_outside_class_range(self, loss_fn) -> None:
        W, X, y = problem(c=5)
        y[0] = 5
        with pytest.raises(ValueError, match=r"y must hold labels in \[0, 5\)"):
            loss_fn(W, X, y, 0.0)

    def test_float_labels(self, loss_fn) -> None:
        W, X, y = problem()
        with pytest.raises(TypeError, match=r"y must hold integer class labels, got dtype float64"):
            loss_fn(W, X, y.astype(float), 0.0)

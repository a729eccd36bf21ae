"""A model's scores with their uncertainty: the Wilson interval against published values, McNemar's
exact test against the binomial by hand, NLL and ECE on constructed cases, the temperature fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.evaluate import (
    calibration,
    fit_temperature,
    log_softmax,
    mcnemar,
    nll,
    scores,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
     (1, 29, 0.0061, 0.1718)],
)  # fmt: skip
def test_the_wilson_interval_matches_newcombes_table(
    correct: int, n: int, low: float, high: float
) -> None:
    found = wilson_interval(correct, n)
    assert found == pytest.approx((low, high), abs=5e-5)


def test_the_wilson_interval_stays_in_the_unit_interval_and_holds_the_estimate() -> None:
    low, high = wilson_interval(29, 29)
    assert high == 1.0 and 0.88 < low < 0.89
    low, high = wilson_interval(8446, 10000)
    assert low < 0.8446 < high and high - low == pytest.approx(2 * 1.96 * 0.00362, rel=0.01)


def test_the_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="0 <= correct <= n"):
        wilson_interval(11, 10)


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_pairs() -> None:
    # 1 only-first, 9 only-second, 5 both right, 3 both wrong: p = 2 * P(Bin(10, 1/2) <= 1)
    first = np.array([1] + [0] * 9 + [1] * 5 + [0] * 3, dtype=bool)
    second = np.array([0] + [1] * 9 + [1] * 5 + [0] * 3, dtype=bool)
    found = mcnemar(first, second)
    assert (found.only_first, found.only_second, found.discordant) == (1, 9, 10)
    assert found.p_value == pytest.approx(2 * (1 + 10) / 2**10, rel=1e-12)
    assert mcnemar(second, first).p_value == pytest.approx(found.p_value, rel=1e-12)


def test_mcnemar_of_equal_or_balanced_models_is_one_and_large_counts_do_not_underflow() -> None:
    same = np.array([True, False, True])
    assert mcnemar(same, same).p_value == 1.0
    balanced = mcnemar(np.arange(4000) % 2 == 0, np.arange(4000) % 2 == 1)
    assert balanced.p_value == 1.0
    # 1100 vs 1000 discordant: normal approximation z = 100 / sqrt(2100) = 2.18, p ~ 0.029
    lopsided = mcnemar(np.r_[np.ones(1100), np.zeros(1000)], np.r_[np.zeros(1100), np.ones(1000)])
    assert 0.025 < lopsided.p_value < 0.035


def test_nll_of_uniform_scores_is_log_c_and_a_temperature_divides_the_scores() -> None:
    y = np.array([0, 1, 2, 3])
    assert nll(np.zeros((4, 4)), y) == pytest.approx(math.log(4))
    S = np.random.default_rng(0).standard_normal((6, 4))
    assert nll(S, y[:2].repeat(3), temperature=2.0) == pytest.approx(nll(S / 2.0, y[:2].repeat(3)))
    np.testing.assert_allclose(np.exp(log_softmax(S)).sum(axis=1), 1.0)


def test_scores_are_the_logits_with_the_bias_last() -> None:
    W = np.arange(12.0).reshape(4, 3)  # D = 3, C = 3
    X = np.eye(3)
    np.testing.assert_allclose(scores(W, X), W[:3] + W[3])


def test_ece_of_a_constructed_case() -> None:
    # 10 examples at confidence 0.8 of which 5 are right, 10 at 0.95 all right:
    # ECE = 0.5 * |0.5 - 0.8| + 0.5 * |1.0 - 0.95| = 0.175
    proba = np.array([[0.8, 0.2]] * 10 + [[0.05, 0.95]] * 10)
    y = np.array([0] * 5 + [1] * 5 + [1] * 10)
    found = calibration(proba, y)
    assert found.ece == pytest.approx(0.175)
    assert found.count == (10, 10)
    assert found.confidence == pytest.approx((0.8, 0.95))
    assert found.accuracy == pytest.approx((0.5, 1.0))
    assert found.lower == pytest.approx((11 / 15, 14 / 15))


def test_a_perfectly_calibrated_case_has_zero_ece() -> None:
    proba = np.array([[0.75, 0.25]] * 4)
    assert calibration(proba, np.array([0, 0, 0, 1])).ece == pytest.approx(0.0)


def test_the_temperature_recovers_the_one_that_made_the_labels() -> None:
    rng = np.random.default_rng(1)
    S = 3.0 * rng.standard_normal((40_000, 5))
    p = np.exp(log_softmax(S / 2.5))
    y = (p.cumsum(axis=1) > rng.random((40_000, 1))).argmax(axis=1)
    T = fit_temperature(S, y)
    assert T == pytest.approx(2.5, rel=0.03)
    assert nll(S, y, T) < min(nll(S, y, T * 1.05), nll(S, y, T / 1.05))

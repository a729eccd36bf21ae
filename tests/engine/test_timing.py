"""The naive vs vectorized comparisons: every run kept, the same numbers from both sides, and
the initial-loss and gradient checks they carry."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine


def test_time_runs_keeps_every_run_and_reports_the_best_and_spread() -> None:
    calls = []
    timed = engine.time_runs(lambda: calls.append(1), repeats=4)
    assert len(calls) == len(timed.runs) == 4
    assert timed.best == min(timed.runs) <= timed.median <= timed.worst == max(timed.runs)
    assert timed.describe().endswith(f"(best of 4; {timed.best * 1e3:.3g}-{timed.worst * 1e3:.3g})")


def test_compare_losses_carries_the_initial_loss_and_gradient_check(tiny64) -> None:
    r = engine.compare_losses(tiny64.X_train[:40], tiny64.y_train[:40], 3, repeats=3)
    assert len(r.naive.runs) == 3 and len(r.vectorized.runs) == 15
    assert r.expected_initial_loss == pytest.approx(math.log(3))
    assert abs(r.loss_vectorized - math.log(3)) < 0.01  # weights ~0.001: every class ~1/3
    assert r.loss_naive == pytest.approx(r.loss_vectorized, rel=1e-12)
    assert len(r.gradcheck_entries) == 5 and r.gradcheck_checked == 40
    for row, col, numerical, analytic, rel in r.gradcheck_entries:
        assert 0 <= row < 31 and 0 <= col < 3
        assert numerical == pytest.approx(analytic, rel=1e-5, abs=1e-9)
        assert rel <= r.gradcheck_rel_error < 1e-6  # the max covers the shown entries


def test_compare_training_trains_the_same_model_both_ways(tiny) -> None:
    t = engine.compare_training(tiny, n_samples=64, batch_size=16, repeats=2)
    assert (t.n_samples, t.batch_size) == (64, 16)
    assert len(t.loop.runs) == len(t.matrix.runs) == 2
    assert t.loop_val_accuracy == t.matrix_val_accuracy
    assert t.speedup == pytest.approx(t.loop.best / t.matrix.best)
    # A batch larger than the examples is cut to them, not refused.
    whole = engine.compare_training(tiny, n_samples=10, batch_size=128, repeats=1)
    assert whole.batch_size == 10


def test_blas_threads_names_where_the_count_comes_from(monkeypatch) -> None:
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert engine.blas_threads().endswith("(one per core)")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert engine.blas_threads() == "1 (OMP_NUM_THREADS)"
    assert np.isfinite(engine.best_time(lambda: None, repeats=2))

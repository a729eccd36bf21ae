"""train_many: K models side by side must be K independent `train` runs, whatever happens to
the others (divergence, stopping, chunking)."""

from __future__ import annotations

import numpy as np
import pytest

import engine

GRID = [(lr, reg) for lr in (0.05, 0.3, 1.0) for reg in (0.0, 1e-3, 0.05)]


def alone(data, lr, reg, **common):
    return engine.train(data, learning_rate=lr, reg=reg, **common)


def test_float64_equals_training_each_model_alone(tiny64: engine.Dataset) -> None:
    common = dict(batch_size=32, epochs=3, seed=5, dtype=np.float64)
    many = engine.train_many(tiny64, GRID, **common)
    assert len(many) == len(GRID)
    for (lr, reg), result in zip(GRID, many, strict=True):
        single = alone(tiny64, lr, reg, **common)
        assert (result.learning_rate, result.reg, result.status) == (lr, reg, "completed")
        np.testing.assert_allclose(result.weights, single.weights, rtol=0, atol=1e-10)
        for a, b in zip(result.history, single.history, strict=True):
            assert a["val_accuracy"] == b["val_accuracy"]
            assert a["train_accuracy"] == b["train_accuracy"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)


def test_float32_gives_the_same_validation_history(tiny: engine.Dataset) -> None:
    common = dict(batch_size=16, epochs=4, seed=2)
    many = engine.train_many(tiny, GRID, **common)
    for (lr, reg), result in zip(GRID, many, strict=True):
        single = alone(tiny, lr, reg, **common)
        # Only the GEMM's width differs: the same predictions, epoch by epoch.
        assert [h["val_accuracy"] for h in result.history] == [
            h["val_accuracy"] for h in single.history
        ]
        np.testing.assert_allclose(result.weights, single.weights, rtol=1e-4, atol=1e-5)


def test_diverging_and_stopped_models_leave_the_others_unchanged(tiny64: engine.Dataset) -> None:
    # W *= 1 - 2*lr*reg ~ -1e60 per step: float64 overflows within the first epoch.
    configs = [(0.3, 1e-3), (1e30, 1e30), (1.0, 0.0), (0.05, 0.05), (1e31, 1e30)]
    common = dict(batch_size=32, epochs=4, seed=9, dtype=np.float64)
    seen: dict[int, list[int]] = {}

    def on_epoch(epoch, per_model):
        for k in per_model:
            seen.setdefault(k, []).append(epoch)
        return [3] if epoch == 2 else []  # prune config 3 after its second epoch

    many = engine.train_many(tiny64, configs, on_epoch=on_epoch, **common)
    assert [r.status for r in many] == ["completed", "diverged", "completed", "stopped", "diverged"]
    # Diverged models disappear from the callback at once; the stopped one after epoch 2.
    assert seen == {0: [1, 2, 3, 4], 2: [1, 2, 3, 4], 3: [1, 2]}
    assert many[1].weights is None and many[1].end_epoch == 1
    assert many[1].reason.startswith("diverged at epoch 1: loss=")
    assert many[3].end_epoch == 2 and len(many[3].history) == 2
    stopped_alone = engine.train(
        tiny64, learning_rate=0.05, reg=0.05, on_epoch=lambda e, m: e == 2, **common
    )
    np.testing.assert_allclose(many[3].weights, stopped_alone.weights, rtol=0, atol=1e-10)
    for k in (0, 2):
        lr, reg = configs[k]
        np.testing.assert_allclose(
            many[k].weights, alone(tiny64, lr, reg, **common).weights, rtol=0, atol=1e-10
        )


def test_groups_larger_than_max_group_run_in_chunks(tiny64: engine.Dataset) -> None:
    common = dict(batch_size=32, epochs=2, seed=1, dtype=np.float64)
    stops = []

    def on_epoch(epoch, per_model):
        stops.append(sorted(per_model))
        return [7] if 7 in per_model else []

    chunked = engine.train_many(tiny64, GRID, max_group=4, on_epoch=on_epoch, **common)
    whole = engine.train_many(tiny64, GRID, **common)
    # Callbacks see indices into the whole configs list, chunk after chunk.
    assert stops == [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [4, 5, 6], [8], [8]]
    assert {r.group_size for r in chunked} == {4, 1}
    assert chunked[7].status == "stopped"
    for k in (0, 5, 8):
        np.testing.assert_allclose(chunked[k].weights, whole[k].weights, rtol=0, atol=1e-10)


def test_group_memory_grows_linearly_in_k(tiny: engine.Dataset) -> None:
    one = engine.group_memory_bytes(tiny, 1, 256)
    assert engine.group_memory_bytes(tiny, 100, 256) == 100 * one
    # K*(D*C + B*C): the weights and gradient (D+1)*C each, the scores B*C.
    assert one >= 4 * (2 * (tiny.n_features + 1) * 3 + 256 * 3)


@pytest.mark.parametrize(
    ("configs", "error", "match"),
    [
        ([], ValueError, r"configs must hold at least one \(learning_rate, reg\) pair, got none"),
        ([(0.1, 0.0), (0.1,)], TypeError, r"configs\[1\] must be a \(learning_rate, reg\) pair"),
        (
            [(0.1, 0.0), (-0.1, 0.0)],
            ValueError,
            r"learning_rate must be a finite number > 0 in configs\[1\], got -0.1",
        ),
        ([(0.1, -1.0)], ValueError, r"reg must be a finite number >= 0 in configs\[0\], got -1.0"),
    ],
)
def test_bad_configs(tiny: engine.Dataset, configs, error, match) -> None:
    with pytest.raises(error, match=match):
        engine.train_many(tiny, configs, batch_size=16, epochs=1, seed=0)


def test_an_overflow_on_the_last_update_of_the_last_epoch_is_divergence(tiny) -> None:
    """One mini-batch per epoch and 1 - 2*lr*reg beyond float32: the only update overflows
    after its loss (finite) was computed. The model diverged at that epoch: no weights, no
    metric recorded for it; the healthy model beside it is untouched."""
    n = tiny.X_train.shape[0]
    bad, good = (1e20, 1e20), (0.1, 1e-4)
    results = engine.train_many(tiny, [bad, good], batch_size=n, epochs=1, seed=0)
    assert results[0].status == "diverged" and results[0].weights is None
    assert (
        results[0].reason == "diverged at epoch 1: non-finite weights after the epoch's last update"
    )
    assert results[0].history == () and results[0].end_epoch == 1
    alone = engine.train(tiny, learning_rate=0.1, reg=1e-4, batch_size=n, epochs=1, seed=0)
    assert results[1].status == "completed"
    np.testing.assert_allclose(results[1].weights, alone.weights, rtol=1e-5, atol=1e-7)
    assert all(np.isfinite(v) for h in results[1].history for v in h.values())


MIXED = [(0.3, 1e-3), (0.05, 0.0), (1.0, 1e-4), (0.1, 0.05), (0.3, 0.0)]
SIZES = [16, 32, 64, 16, 48]  # 48: a multiple of 16, not of 32; the training split's 240 rows
# leave a short last batch for 32 and 64


@pytest.mark.parametrize("kind", ["constant", "cosine", "step"])
def test_mixed_batch_sizes_in_one_pass_equal_each_model_alone(
    tiny64: engine.Dataset, kind: str
) -> None:
    schedule = engine.Schedule(kind, every=1)
    common = dict(epochs=3, seed=4, dtype=np.float64, schedule=schedule)
    many = engine.train_many(tiny64, MIXED, batch_size=SIZES, **common)
    assert {r.group_size for r in many} == {5}  # one pass: every size is a multiple of 16
    for (lr, reg), size, result in zip(MIXED, SIZES, many, strict=True):
        single = engine.train(tiny64, learning_rate=lr, reg=reg, batch_size=size, **common)
        assert (result.batch_size, result.status) == (size, single.status)
        np.testing.assert_allclose(result.weights, single.weights, rtol=0, atol=1e-10)
        for a, b in zip(result.history, single.history, strict=True):
            assert a["val_accuracy"] == b["val_accuracy"]
            assert a["train_accuracy"] == b["train_accuracy"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)


def test_a_model_that_diverges_or_stops_mid_batch_leaves_the_others_exact(
    tiny64: engine.Dataset,
) -> None:
    """Model 1 (batch 16) diverges on the first chunk, while the batch-64 models are a quarter
    into their first batch: their partial gradients must survive the compaction."""
    configs = [(0.3, 1e-3), (1e30, 1e30), (0.05, 0.05), (1.0, 0.0)]
    sizes = [64, 16, 32, 64]
    common = dict(epochs=3, seed=9, dtype=np.float64)
    many = engine.train_many(
        tiny64, configs, batch_size=sizes, on_epoch=lambda e, m: [2] if e == 2 else [], **common
    )
    assert [r.status for r in many] == ["completed", "diverged", "stopped", "completed"]
    assert many[1].reason.startswith("diverged at epoch 1: loss=")
    for k in (0, 3):
        (lr, reg), size = configs[k], sizes[k]
        single = engine.train(tiny64, learning_rate=lr, reg=reg, batch_size=size, **common)
        np.testing.assert_allclose(many[k].weights, single.weights, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["constant", "cosine"])
def test_models_left_after_the_smallest_batches_stop_stay_exact(
    tiny64: engine.Dataset, kind: str
) -> None:
    """Batch 16 stops after epoch 1 and batch 48 after epoch 2: the others step in larger
    chunks from the next epoch, 16 (48, 32 and 64 left: their common divisor), then 32."""
    configs = [(0.3, 1e-3), (0.05, 0.0), (1.0, 1e-4), (0.1, 0.05)]
    sizes = [16, 48, 32, 64]
    stops = {1: [0], 2: [1]}  # epoch -> models stopped after it
    common = dict(epochs=4, seed=3, dtype=np.float64, schedule=engine.Schedule(kind))
    many = engine.train_many(
        tiny64, configs, batch_size=sizes, on_epoch=lambda e, m: stops.get(e, []), **common
    )
    assert [r.end_epoch for r in many] == [1, 2, 4, 4]
    for k in (2, 3):
        (lr, reg), size = configs[k], sizes[k]
        single = engine.train(tiny64, learning_rate=lr, reg=reg, batch_size=size, **common)
        np.testing.assert_allclose(many[k].weights, single.weights, rtol=0, atol=1e-10)
        for a, b in zip(many[k].history, single.history, strict=True):
            assert a["val_accuracy"] == b["val_accuracy"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)


def test_sizes_that_do_not_divide_train_in_passes_of_their_own(tiny64: engine.Dataset) -> None:
    seen: list[list[int]] = []

    def on_epoch(epoch, per_model):
        seen.append(sorted(per_model))
        return []

    sizes = [24, 16, 32, 24]  # 24 is no multiple of 16: its own pass
    many = engine.train_many(
        tiny64, GRID[:4], batch_size=sizes, epochs=1, seed=0, dtype=np.float64, on_epoch=on_epoch
    )
    assert seen == [[1, 2], [0, 3]]  # the 16 and 32 pass first, callbacks in config indices
    assert [r.group_size for r in many] == [2, 2, 2, 2]
    assert [r.batch_size for r in many] == sizes
    with pytest.raises(ValueError, match=r"batch_size must be one integer or one per config \(4\)"):
        engine.train_many(tiny64, GRID[:4], batch_size=[16, 32], epochs=1, seed=0)

"""Engine speed on Fashion-MNIST, in one run: `python -m bench.engine [--epochs N]`.

1. naive vs vectorized loss + gradient (500 samples, at 784 and at 3073 features);
2. one model's SGD epoch (float32, batch 256): `engine.train` vs the careful plain-NumPy loop
   below vs the machine's floor for that work (the two GEMMs per mini-batch alone).
Prints tables and writes bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import engine
from bench.common import save, table


def careful_train(
    data: engine.Dataset,
    *,
    learning_rate: float,
    reg: float,
    batch_size: int,
    epochs: int,
    seed: int,
) -> tuple[np.ndarray, list[float]]:
    """SGD the way a good student writes it: bias column, shuffle every epoch, X[idx] gather,
    two GEMMs, stable softmax. Same initialisation and batch order as engine.train."""
    rng = np.random.default_rng(seed)
    X = engine.add_bias(data.X_train)  # (N, D + 1), built once, not timed per epoch
    y = data.y_train
    n = X.shape[0]
    W = (0.001 * rng.standard_normal((X.shape[1], data.n_classes))).astype(X.dtype)
    epoch_times = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(n)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            Xb, yb = X[idx], y[idx]
            rows = np.arange(len(idx))
            scores = Xb @ W
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            probs[rows, yb] -= 1
            dW = Xb.T @ probs / len(idx) + 2 * reg * W
            W -= learning_rate * dW
        epoch_times.append(time.perf_counter() - start)
    return W, epoch_times


def gemm_floor(data: engine.Dataset, batch_size: int, repeats: int = 3) -> float:
    """Seconds per epoch of just the two GEMMs per mini-batch (contiguous rows, no gather)."""
    X = engine.add_bias(data.X_train)
    W = np.zeros((X.shape[1], data.n_classes), dtype=X.dtype)
    S = np.empty((batch_size, data.n_classes), dtype=X.dtype)
    G = np.empty_like(W)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, X.shape[0] - batch_size + 1, batch_size):
            Xb = X[i : i + batch_size]
            np.dot(Xb, W, out=S)
            np.dot(Xb.T, S, out=G)
        best = min(best, time.perf_counter() - start)
    return best


def loss_rows(data: engine.Dataset) -> tuple[list[list[str]], list[dict]]:
    rng = np.random.default_rng(0)
    pick = rng.choice(data.X_train.shape[0], 500, replace=False)
    cases = [("fashion-mnist 500 x 784", data.X_train[pick], data.y_train[pick])]
    # CIFAR-10's shape (3072 pixels + bias); timing does not depend on the pixel values.
    cases.append(("cifar10-shaped 500 x 3072", rng.random((500, 3072)), rng.integers(0, 10, 500)))
    rows, records = [], []
    for name, X, y in cases:
        r = engine.compare_losses(X, y, 10, reg=1e-4, repeats=5)
        rows.append(
            [
                name,
                f"{r.naive_s * 1e3:.1f}",
                f"{r.vectorized_s * 1e3:.3f}",
                f"{r.speedup:.0f}x",
                f"{abs(r.loss_naive - r.loss_vectorized):.1e}",
            ]
        )
        records.append(
            {
                "case": name,
                "features_with_bias": r.n_features,
                "naive_s": r.naive_s,
                "vectorized_s": r.vectorized_s,
                "speedup": r.speedup,
            }
        )
    return rows, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each trainer")
    args = parser.parse_args()
    data = engine.load_dataset("fashion-mnist")
    config = dict(learning_rate=0.1, reg=1e-4, batch_size=256, epochs=args.epochs, seed=0)

    rows, loss_records = loss_rows(data)
    print("Loss + gradient, naive vs vectorized (float64, best of several runs)")
    print(table(["case", "naive ms", "vectorized ms", "speedup", "|loss diff|"], rows))

    engine_epoch, careful_epoch, floor = [], [], []
    phases: dict[str, float] = {}
    for _ in range(args.rounds):  # alternate, so that machine noise hits every side alike
        result = engine.train(data, **config)
        engine_epoch.append(result.timings["total"] / args.epochs)
        if result.timings["total"] / args.epochs == min(engine_epoch):
            phases = {k: v / args.epochs for k, v in result.timings.items()}
        W_careful, times = careful_train(data, **config)
        careful_epoch.append(sum(times) / len(times))
        floor.append(gemm_floor(data, config["batch_size"]))
    t_engine, t_careful, t_floor = min(engine_epoch), min(careful_epoch), min(floor)
    acc_engine = engine.accuracy(result.weights, data.X_test, data.y_test)
    acc_careful = engine.accuracy(W_careful, data.X_test, data.y_test)
    print(
        f"\nOne SGD epoch, Fashion-MNIST 55,000 x 784, float32, batch 256 "
        f"(best of {args.rounds} runs of {args.epochs} epochs)"
    )
    print(
        table(
            ["trainer", "ms / epoch", "vs careful", "vs floor", f"test acc ({args.epochs} ep)"],
            [
                [
                    "engine.train",
                    f"{t_engine * 1e3:.1f}",
                    f"{t_careful / t_engine:.2f}x faster",
                    f"{t_engine / t_floor:.2f}x",
                    f"{acc_engine:.4f}",
                ],
                [
                    "careful NumPy loop",
                    f"{t_careful * 1e3:.1f}",
                    "1.00x",
                    f"{t_careful / t_floor:.2f}x",
                    f"{acc_careful:.4f}",
                ],
                ["floor: the 2 GEMMs alone", f"{t_floor * 1e3:.1f}", "", "1.00x", ""],
            ],
        )
    )
    print(
        "\nWhere engine.train's epoch goes (ms): "
        + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in phases.items())
    )
    path = save(
        "engine",
        {
            "loss": loss_records,
            "epoch": {
                "config": config,
                "engine_train_s": t_engine,
                "careful_loop_s": t_careful,
                "gemm_floor_s": t_floor,
                "speedup_vs_careful": t_careful / t_engine,
                "engine_vs_floor": t_engine / t_floor,
                "test_accuracy": {"engine": acc_engine, "careful": acc_careful},
                "engine_phases_s": phases,
                "all_runs_s": {"engine": engine_epoch, "careful": careful_epoch, "floor": floor},
            },
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

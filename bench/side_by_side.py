"""K models side by side vs one at a time, on Fashion-MNIST: `python -m bench.side_by_side`.

In one run (float32, batch 256, 5 epochs):
- the cs231n 5x5 grid (lr 0.01..1.0 x reg 0..1e-2): a serial loop of `engine.train`, a serial loop
  of the careful plain-NumPy trainer (bench/engine.py), and `engine.train_many` over all 25;
- the machine's bound for the same work: the wide GEMMs alone, (B, D) x (D, K*C) forward and
  backward, plus one pass decoding the training data;
- how the cost per model-epoch grows with K = 1, 4, 16, 64, 256;
each under OpenBLAS's default kernels and, where the CPU has AVX-512, OPENBLAS_CORETYPE=SKYLAKEX
(OpenBLAS reads it once at load time, so each setting runs in its own child process).
Prints tables and writes bench/results/side_by_side.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import engine
from bench.common import save, table
from bench.engine import careful_train

LEARNING_RATES = (0.01, 0.03, 0.1, 0.3, 1.0)
REGS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
GRID = [(lr, reg) for lr in LEARNING_RATES for reg in REGS]


def bound(data: engine.Dataset, k: int, batch_size: int, epochs: int) -> float:
    """Seconds for `epochs` of: the two wide GEMMs per mini-batch, and one pass over the data."""
    D, C = data.n_features, data.n_classes
    W = np.zeros((D, k * C), dtype=np.float32)
    S = np.empty((batch_size, k * C), dtype=np.float32)
    G = np.empty_like(W)
    x = np.empty((batch_size, D), dtype=np.float32)
    pixels, decoder = data.pixels_train, data.decoder
    assert pixels is not None and decoder is not None
    start = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, pixels.shape[0] - batch_size + 1, batch_size):
            xb = decoder.decode(pixels[i : i + batch_size], out=x)  # the pass over the data
            np.dot(xb, W, out=S)
            np.dot(xb.T, S, out=G)
    return time.perf_counter() - start


def measure(epochs: int, ks: list[int], serial: bool) -> dict:
    data = engine.load_dataset("fashion-mnist")
    common = dict(batch_size=256, epochs=epochs, seed=0)
    out: dict = {"grid": {}, "scaling": []}
    n = len(GRID)

    start = time.perf_counter()
    many = engine.train_many(data, GRID, **common)
    t_many = time.perf_counter() - start
    out["grid"]["train_many"] = {
        "wall_s": t_many,
        "best_val": max(r.best_val_accuracy for r in many),
        "phases_s": dict(many[0].timings),
    }
    out["grid"]["bound"] = {"wall_s": bound(data, n, 256, epochs), "best_val": None}
    if serial:
        start = time.perf_counter()
        results = [engine.train(data, learning_rate=lr, reg=reg, **common) for lr, reg in GRID]
        out["grid"]["serial engine.train"] = {
            "wall_s": time.perf_counter() - start,
            "best_val": max(r.best_val_accuracy for r in results),
        }
        start = time.perf_counter()
        best = 0.0
        for lr, reg in GRID:
            W, _ = careful_train(data, learning_rate=lr, reg=reg, **common)
            if np.isfinite(W).all():
                best = max(best, engine.accuracy(W, data.X_val, data.y_val))
        out["grid"]["serial careful loop"] = {
            "wall_s": time.perf_counter() - start,
            "best_val": best,
        }
    configs = [(0.1, 1e-4)] * max(ks)
    for k in ks:
        start = time.perf_counter()
        engine.train_many(data, configs[:k], batch_size=256, epochs=1, seed=0)
        t = time.perf_counter() - start
        out["scaling"].append(
            {"k": k, "wall_s": t, "per_model_epoch_s": t / k, "bound_s": bound(data, k, 256, 1) / k}
        )
    return out


def avx512() -> bool:
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return False
    return all(f in flags for f in ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"))


def child(coretype: str, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if coretype != "default":
        env["OPENBLAS_CORETYPE"] = coretype
    cmd = [sys.executable, "-m", "bench.side_by_side", "--child", "--epochs", str(args.epochs)]
    cmd += ["--ks", *map(str, args.ks)]
    cmd += ["--serial"] if coretype == "default" or args.serial_all else []
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serial", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serial-all", action="store_true", help="serial loops for each kernel")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.epochs, args.ks, args.serial)))
        return

    coretypes = ["default"] + (["SKYLAKEX"] if avx512() else [])
    runs = {c: child(c, args) for c in coretypes}
    model_epochs = len(GRID) * args.epochs
    base = runs["default"]["grid"]
    careful = base["serial careful loop"]["wall_s"]
    rows = []
    for coretype, run in runs.items():
        for name, rec in run["grid"].items():
            label = name if coretype == "default" else f"{name} [{coretype}]"
            rows.append(
                [
                    label,
                    f"{rec['wall_s']:.2f}",
                    f"{rec['wall_s'] / model_epochs * 1e3:.2f}",
                    f"{careful / rec['wall_s']:.1f}x",
                    "" if rec["best_val"] is None else f"{rec['best_val']:.4f}",
                ]
            )
    print(f"5x5 lr x reg grid, Fashion-MNIST, float32, batch 256, {args.epochs} epochs")
    print(table(["trainer", "wall s", "ms/model-epoch", "vs careful", "best val acc"], rows))
    for coretype, run in runs.items():
        t_many = run["grid"]["train_many"]["wall_s"]
        t_bound = run["grid"]["bound"]["wall_s"]
        print(
            f"[{coretype}] train_many is {careful / t_many:.1f}x the serial careful loop and "
            f"{t_many / t_bound:.2f}x the measured bound; phases (s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in run["grid"]["train_many"]["phases_s"].items())
        )

    print("\nCost per model-epoch as K grows (1 epoch, all models lr 0.1, reg 1e-4)")
    headers = ["K"] + [f"ms/model-epoch [{c}]" for c in runs] + [f"bound [{c}]" for c in runs]
    rows = []
    for i, k in enumerate(args.ks):
        row = [str(k)]
        row += [f"{run['scaling'][i]['per_model_epoch_s'] * 1e3:.2f}" for run in runs.values()]
        row += [f"{run['scaling'][i]['bound_s'] * 1e3:.2f}" for run in runs.values()]
        rows.append(row)
    print(table(headers, rows))
    path = save("side_by_side", {"epochs": args.epochs, "grid": GRID, "runs": runs})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

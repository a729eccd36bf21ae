"""The main job against the engine's own speed: `python -m bench.main_job`.

In one run, on the main job's data (Fashion-MNIST as `studies/fashion_mnist.toml` prepares it:
standardized, 55,000 training images):
- the reference: `engine.train_many`, 16 models side by side, batch 256, cosine schedule, best
  of 6 (3 before the main job, 3 right after it);
- the main job (`sweep run studies/fashion_mnist.toml --verbose`) in a new home: its model-epochs
  (one per epoch any trial trained, from `sweep.load_history`), its training time, its wall
  time and its closing (from the last tell to the end: tracking caught up, test, report);
- the same command again on the finished study (nothing to train), best of 3, against the bare
  imports (`python -c "import optuna, mlflow, numpy"`, best of 3);
- one model: `engine.train` against the careful NumPy loop (bench/engine.py), batch 256, best
  of 3 interleaved rounds;
- `train_many` against the machine's bound for its work (bench/side_by_side.py: the wide GEMMs
  and one pass over the data);
- 16 models with batch sizes 64, 128, 256 and 512 (four each): one `train_many` call (one pass
  in chunks of 64) against four calls, one per batch size (what a sweep with the median pruner
  does); the same mix at 4 models (one of each size): whether a wider group trains a model-epoch
  faster (what keeping a sweep's groups full of trials would buy); and the main job's own rate
  against the 16-model pass of its batch sizes.
Each ratio is measured within this one run; the machine (CPU, BLAS, its settings) is recorded
with the results in bench/results/main_job.json.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import engine
from bench.common import save, table
from bench.engine import careful_train
from bench.side_by_side import bound

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "fashion_mnist.toml"
K = 16  # the main job's side_by_side


def reference(data: engine.Dataset, epochs: int, batch_size: int = 256, repeats: int = 3) -> float:
    """Seconds per model-epoch of `train_many` on K models (the main job's lr and reg box),
    best of `repeats`."""
    configs = [(10 ** (-3 + 2 * i / (K - 1)), 10 ** (-5 + 3 * (i % 4) / 3)) for i in range(K)]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        engine.train_many(data, configs, batch_size=batch_size, epochs=epochs, seed=0,
                          schedule=engine.Schedule("cosine"))  # fmt: skip
        best = min(best, time.perf_counter() - start)
    return best / (K * epochs)


def mixed(data: engine.Dataset, epochs: int) -> tuple[float, float]:
    """Seconds for 16 models of four batch sizes: in one call, and in one call per size."""
    configs = [(10 ** (-3 + 2 * i / (K - 1)), 1e-4) for i in range(K)]
    sizes = [64, 128, 256, 512] * (K // 4)
    cosine = engine.Schedule("cosine")
    start = time.perf_counter()
    engine.train_many(data, configs, batch_size=sizes, epochs=epochs, seed=0, schedule=cosine)
    one_pass = time.perf_counter() - start
    start = time.perf_counter()
    for size in sorted(set(sizes)):
        mine = [c for c, s in zip(configs, sizes, strict=True) if s == size]
        engine.train_many(data, mine, batch_size=size, epochs=epochs, seed=0, schedule=cosine)
    return one_pass, time.perf_counter() - start


def narrow(data: engine.Dataset, epochs: int) -> float:
    """Seconds for 4 models, one of each batch size 64..512, in one pass (chunks of 64)."""
    configs = [(10 ** (-3 + 2 * i / 3), 1e-4) for i in range(4)]
    start = time.perf_counter()
    engine.train_many(data, configs, batch_size=[64, 128, 256, 512], epochs=epochs, seed=0,
                      schedule=engine.Schedule("cosine"))  # fmt: skip
    return time.perf_counter() - start


def sweep_run(home: Path) -> tuple[float, str]:
    command = [sys.executable, "-m", "sweep", "run", str(STUDY), "--home", str(home), "--verbose"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return time.perf_counter() - start, done.stdout


def bare_imports(repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import optuna, mlflow, numpy"], check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the reference runs")
    args = parser.parse_args()
    import sweep
    from sweep.data import load_data
    from sweep.spec import load_spec

    spec = load_spec(STUDY)
    data = load_data(spec)
    ref_s = reference(data, args.epochs)
    ref_64_s = reference(data, args.epochs, batch_size=64)
    bound_s = bound(data, K, 256, args.epochs) / (K * args.epochs)
    one_pass_s, by_size_s = mixed(data, args.epochs)
    narrow_s = narrow(data, args.epochs)
    mixed_s = one_pass_s / (K * args.epochs)  # per model-epoch, 16 models of the main job's mix
    narrow_s /= 4 * args.epochs

    home = Path(tempfile.mkdtemp(prefix="softsweep-main-job-"))
    wall_s, out = sweep_run(home)
    train_s = float(re.search(r"training ([\d.]+) s\)", out).group(1))
    closing_s = float(re.search(r"closing\s+([\d.]+) s", out).group(1))
    model_epochs = len(sweep.load_history(spec.name, home=home))
    # The VM's speed drifts by tens of percent within minutes: the reference is timed again
    # right after the main job, and the best of both windows kept (its fastest state: a ratio
    # that does not flatter the main job).
    ref_s = min(ref_s, reference(data, args.epochs))
    # Best of 3 for the re-run, as for the imports it is compared with (this VM's noise is
    # larger than the difference between two single runs).
    again = [sweep_run(home) for _ in range(3)]
    again_s, again_out = min(t for t, _ in again), again[0][1]
    imports_s = bare_imports()

    one = {"engine.train": float("inf"), "careful loop": float("inf")}
    for _ in range(3):  # interleaved rounds, best of each
        for name, fn in (("engine.train", engine.train), ("careful loop", careful_train)):
            start = time.perf_counter()
            fn(data, learning_rate=0.05, reg=1e-4, batch_size=256, epochs=2, seed=0)
            one[name] = min(one[name], (time.perf_counter() - start) / 2)

    per_epoch_main = train_s / model_epochs
    rows = [
        ["train_many, 16 models, batch 256", f"{ref_s * 1e3:.1f} ms/model-epoch", "reference", ""],
        ["train_many, 16 models, batch 64", f"{ref_64_s * 1e3:.1f} ms/model-epoch",
         f"{ref_s / ref_64_s:.2f}x the reference", ""],
        ["main job, training", f"{model_epochs} model-epochs in {train_s:.1f} s "
         f"({per_epoch_main * 1e3:.1f} ms each)", f"{ref_s / per_epoch_main:.2f}x the rate",
         ">= 0.5x"],
        ["main job, wall", f"{wall_s:.1f} s", f"{wall_s / (model_epochs * ref_s):.2f}x the "
         "reference's time for its model-epochs", "<= 2x"],
        ["main job, closing", f"{closing_s:.1f} s", "", "<= 3 s"],
        ["main job again (nothing to train)", f"{again_s:.1f} s",
         f"{again_s / imports_s:.2f}x the bare imports ({imports_s:.2f} s)", "<= 2x"],
        ["one model, batch 256", f"engine.train {one['engine.train'] * 1e3:.0f} ms/epoch, "
         f"careful loop {one['careful loop'] * 1e3:.0f}",
         f"{one['careful loop'] / one['engine.train']:.2f}x", ">= 1.5x"],
        ["train_many vs its bound", f"{ref_s * 1e3:.1f} vs {bound_s * 1e3:.1f} ms/model-epoch",
         f"{ref_s / bound_s:.2f}x", "<= 1.3x"],
        ["batch sizes 64..512, 16 models", f"one pass {one_pass_s:.1f} s, one call per size "
         f"{by_size_s:.1f} s", f"{by_size_s / one_pass_s:.2f}x faster in one pass", ""],
        ["batch sizes 64..512, 4 vs 16 models", f"{narrow_s * 1e3:.1f} vs {mixed_s * 1e3:.1f} "
         "ms/model-epoch", f"{narrow_s / mixed_s:.2f}x faster at 16", ""],
        ["main job vs 16 models of its batch sizes", f"{per_epoch_main * 1e3:.1f} vs "
         f"{mixed_s * 1e3:.1f} ms/model-epoch", f"{mixed_s / per_epoch_main:.2f}x the rate", ""],
    ]  # fmt: skip
    print(table(["what", "measured", "ratio", "goal"], rows))
    path = save(
        "main_job",
        {
            "reference_ms_per_model_epoch": ref_s * 1e3,
            "reference_batch64_ms_per_model_epoch": ref_64_s * 1e3,
            "bound_ms_per_model_epoch": bound_s * 1e3,
            "main_job": {
                "model_epochs": model_epochs,
                "train_s": train_s,
                "wall_s": wall_s,
                "closing_s": closing_s,
                "summary": out,
            },
            "again": {"wall_s": again_s, "bare_imports_s": imports_s, "summary": again_out},
            "one_model_s_per_epoch": one,
            "mixed_batch_sizes_s": {"one_pass": one_pass_s, "one_call_per_size": by_size_s},
            "mixed_ms_per_model_epoch": {"16 models": mixed_s * 1e3, "4 models": narrow_s * 1e3},
            "ratios": {
                "training_rate": ref_s / per_epoch_main,
                "wall": wall_s / (model_epochs * ref_s),
                "again_vs_imports": again_s / imports_s,
                "one_model_vs_careful": one["careful loop"] / one["engine.train"],
                "train_many_vs_bound": ref_s / bound_s,
                "one_pass_vs_per_size": by_size_s / one_pass_s,
                "mixed_16_vs_4_models": narrow_s / mixed_s,
                "main_job_vs_its_mix": mixed_s / per_epoch_main,
            },
            "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()

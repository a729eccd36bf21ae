"""End to end on the 5x5 grid study (5 epochs): `python -m bench.sweep`.

`sweep run studies/fashion_mnist_grid.toml` as a user runs it (a fresh process: imports, data
loading, MLflow store, tracking of every trial and the report included) vs a script running the
serial careful plain-NumPy loop (bench/engine.py) over the same 25 configs with no tracking at
all (also a fresh process that loads the data). Each round replays a user's first three sweeps
on a machine: the first one (an empty user cache: MLflow creates and migrates its store), one in
a new home (the new store is a copy of the empty one the first run cached), one in a home whose
stores exist. Prints a table and writes bench/results/sweep.json.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import save, table
from engine.data.sources import KNOWN_DATASETS, locate

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "fashion_mnist_grid.toml"
DATA = locate(KNOWN_DATASETS["fashion-mnist"])


CAREFUL_SCRIPT = """
import time, numpy as np, engine
from bench.engine import careful_train
from bench.side_by_side import GRID
data = engine.load_dataset("fashion-mnist")
best = 0.0
for lr, reg in GRID:
    W, _ = careful_train(data, learning_rate=lr, reg=reg, batch_size=256, epochs=5, seed=0)
    if np.isfinite(W).all():
        best = max(best, engine.accuracy(W, data.X_val, data.y_val))
print(best)
"""


def timed(cmd: list[str], cache: str | None = None) -> tuple[float, str]:
    env = {**os.environ, "SOFTSWEEP_DATA": str(DATA)}  # every process reads the same files
    if cache is not None:
        env["XDG_CACHE_HOME"] = cache
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return time.perf_counter() - start, done.stdout


def sweep_run(study: Path, home: str, cache: str) -> tuple[float, dict]:
    wall, out = timed([sys.executable, "-m", "sweep", "run", str(study), "--home", home], cache)
    waited, background = map(
        float,
        re.search(
            r"tracking\s+([\d.]+) ms/trial waited, ([\d.]+) ms/trial in background", out
        ).groups(),
    )
    return wall, {
        "train_s": float(re.search(r"training ([\d.]+) s", out).group(1)),
        "best_val": float(re.search(r"validation accuracy\s+([\d.]+)", out).group(1)),
        "tracking_waited_ms_per_trial": waited,
        "tracking_background_ms_per_trial": background,
        "summary": out,
    }


def main(repeats: int = 5) -> None:
    # Interleaved rounds, each with all three: this VM's speed drifts by 30% over a minute, so
    # both the best of each and the median of the per-round ratios are reported.
    firsts, colds, warms, carefuls = [], [], [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as homes:
            first, home = str(Path(homes) / "first"), str(Path(homes) / "home")
            firsts.append(sweep_run(STUDY, first, cache))  # MLflow migrates; the cache keeps it
            colds.append(sweep_run(STUDY, home, cache))  # a new home: a copy of that store
            again = Path(homes) / "grid_again.toml"  # same study under a new name, same home
            again.write_text(
                STUDY.read_text().replace(
                    'name = "fashion-mnist-grid"', f'name = "fashion-mnist-grid-{r}"'
                )
            )
            warms.append(sweep_run(again, home, cache))
        carefuls.append(timed([sys.executable, "-c", CAREFUL_SCRIPT]))
    best_first, first_info = min(firsts, key=lambda x: x[0])
    cold, cold_info = min(colds, key=lambda x: x[0])
    warm, warm_info = min(warms, key=lambda x: x[0])
    careful, out = min(carefuls, key=lambda x: x[0])
    careful_best = float(out.strip())
    round_first = sorted(c[0] / f[0] for c, f in zip(carefuls, firsts, strict=True))
    round_cold = sorted(c[0] / n[0] for c, n in zip(carefuls, colds, strict=True))
    round_warm = sorted(c[0] / w[0] for c, w in zip(carefuls, warms, strict=True))
    median_first = round_first[repeats // 2]
    median_cold, median_warm = round_cold[repeats // 2], round_warm[repeats // 2]

    print(
        f"5x5 grid, Fashion-MNIST, batch 256, 5 epochs; every row is a whole process "
        f"(start, imports, data loading, tracking and reports included); {repeats} rounds"
    )
    print(
        table(
            ["how", "best wall s", "best vs best", "median round ratio", "best val acc"],
            [
                [
                    "sweep run, tracked, first on the machine",
                    f"{best_first:.2f}",
                    f"{careful / best_first:.2f}x",
                    f"{median_first:.2f}x",
                    f"{first_info['best_val']:.4f}",
                ],
                [
                    "sweep run, tracked, new home",
                    f"{cold:.2f}",
                    f"{careful / cold:.2f}x",
                    f"{median_cold:.2f}x",
                    f"{cold_info['best_val']:.4f}",
                ],
                [
                    "sweep run, tracked, existing home",
                    f"{warm:.2f}",
                    f"{careful / warm:.2f}x",
                    f"{median_warm:.2f}x",
                    f"{warm_info['best_val']:.4f}",
                ],
                ["  of which training (train_many)", f"{warm_info['train_s']:.2f}", "", "", ""],
                [
                    "serial careful loop, untracked",
                    f"{careful:.2f}",
                    "1.00x",
                    "1.00x",
                    f"{careful_best:.4f}",
                ],
            ],
        )
    )
    print(
        f"tracking per trial: {warm_info['tracking_waited_ms_per_trial']:.1f} ms waited by the "
        f"sweep, {warm_info['tracking_background_ms_per_trial']:.1f} ms in the background "
        f"thread; training per trial {warm_info['train_s'] / 25 * 1e3:.0f} ms"
    )
    path = save(
        "sweep",
        {
            "repeats": repeats,
            "all_first_on_machine_s": [f[0] for f in firsts],
            "all_new_home_s": [c[0] for c in colds],
            "all_existing_home_s": [w[0] for w in warms],
            "all_careful_s": [c[0] for c in carefuls],
            "sweep_run_first_on_machine_s": best_first,
            "sweep_run_new_home_s": cold,
            "sweep_run_existing_home_s": warm,
            "careful_serial_process_s": careful,
            "speedup_first_on_machine": careful / best_first,
            "speedup_new_home": careful / cold,
            "speedup_existing_home": careful / warm,
            "round_ratios_first_on_machine": round_first,
            "round_ratios_new_home": round_cold,
            "round_ratios_existing_home": round_warm,
            "median_round_ratio_first_on_machine": median_first,
            "median_round_ratio_new_home": median_cold,
            "median_round_ratio_existing_home": median_warm,
            "best_val_careful": careful_best,
            "new_home": cold_info,
            "existing_home": warm_info,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""End to end on the 5x5 grid study (5 epochs): `python -m bench.sweep [--other TREE]`.

`sweep run studies/fashion_mnist_grid.toml` as a user runs it (a fresh process: imports, data
loading, MLflow store, tracking of every trial and the report included) vs a script running the
serial careful plain-NumPy loop (bench/engine.py) over the same 25 configs with no tracking at
all (also a fresh process that loads the data). Each round runs a sweep in a new home (both
stores are created) and one in a home whose stores exist. With `--other TREE` (another checkout,
say `git worktree add /tmp/before HEAD~1`) the same two sweeps of that checkout run in the same
rounds, so a change's cost or gain is a ratio measured side by side. Prints a table and writes
bench/results/sweep.json.
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


def timed(cmd: list[str], cwd: Path = ROOT) -> tuple[float, str]:
    env = {**os.environ, "SOFTSWEEP_DATA": str(DATA)}  # every process reads the same files
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=cwd, env=env)
    return time.perf_counter() - start, done.stdout


def sweep_run(study: Path, home: str, tree: Path = ROOT) -> tuple[float, dict]:
    command = [sys.executable, "-m", "sweep", "run", str(study), "--home", home, "--verbose"]
    wall, out = timed(command, tree)
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


def two_sweeps(tree: Path, homes: Path, r: int) -> tuple[tuple[float, dict], tuple[float, dict]]:
    """A sweep in a new home, then another study in that (now existing) home."""
    home = str(homes / f"home-{tree.name}")
    new = sweep_run(STUDY, home, tree)
    again = homes / f"grid_again_{tree.name}.toml"  # the same study under a new name
    again.write_text(
        STUDY.read_text().replace('name = "fashion-mnist-grid"', f'name = "fashion-mnist-grid-{r}"')
    )
    return new, sweep_run(again, home, tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--other", type=Path, default=None, help="a reference checkout")
    args = parser.parse_args()
    trees = {"this": ROOT} | ({"other": args.other.resolve()} if args.other else {})
    # Interleaved rounds, each with everything: this VM's speed drifts by 30% over a minute, so
    # both the best of each and the median of the per-round ratios are reported.
    runs: dict[str, dict[str, list]] = {t: {"new": [], "existing": []} for t in trees}
    carefuls = []
    for r in range(args.rounds):
        for name, tree in trees.items():
            with tempfile.TemporaryDirectory() as homes:
                new, existing = two_sweeps(tree, Path(homes), r)
            runs[name]["new"].append(new)
            runs[name]["existing"].append(existing)
        carefuls.append(timed([sys.executable, "-c", CAREFUL_SCRIPT]))
    careful, out = min(carefuls, key=lambda x: x[0])
    rows, results = [], {}
    for name in trees:
        for kind in ("new", "existing"):
            done = runs[name][kind]
            best, info = min(done, key=lambda x: x[0])
            ratios = sorted(c[0] / d[0] for c, d in zip(carefuls, done, strict=True))
            median = ratios[len(ratios) // 2]
            label = f"sweep run ({name} tree), {kind} home"
            rows.append(
                [label, f"{best:.2f}", f"{careful / best:.2f}x", f"{median:.2f}x",
                 f"{info['best_val']:.4f}"]
            )  # fmt: skip
            results[f"{name}/{kind}"] = {
                "all_s": [d[0] for d in done], "best_s": best, "round_ratios": ratios,
                "median_round_ratio": median, "info": info,
            }  # fmt: skip
    rows.append(["serial careful loop, untracked", f"{careful:.2f}", "1.00x", "1.00x",
                 f"{float(out.strip()):.4f}"])  # fmt: skip
    print(
        f"5x5 grid, Fashion-MNIST, batch 256, 5 epochs; every row is a whole process "
        f"(start, imports, data loading, tracking and reports included); {args.rounds} rounds"
    )
    print(table(["how", "best wall s", "best vs careful", "median round ratio", "val acc"], rows))
    if "other" in trees:
        for kind in ("new", "existing"):
            pairs = list(zip(runs["other"][kind], runs["this"][kind], strict=True))
            ratio = sorted(o[0] / t[0] for o, t in pairs)[len(pairs) // 2]
            extra = sorted(t[0] - o[0] for o, t in pairs)[len(pairs) // 2]
            print(
                f"{kind} home: other / this tree, median per-round ratio {ratio:.3f}x "
                f"(>1: this tree is faster); median difference {extra:+.2f} s"
            )
    info = results["this/existing"]["info"]
    print(
        f"tracking per trial (this tree, existing home): {info['tracking_waited_ms_per_trial']:.1f}"
        f" ms waited by the sweep, {info['tracking_background_ms_per_trial']:.1f} ms in the "
        f"background thread; training per trial {info['train_s'] / 25 * 1e3:.0f} ms"
    )
    path = save(
        "sweep",
        {"rounds": args.rounds, "trees": {k: str(v) for k, v in trees.items()},
         "careful_s": [c[0] for c in carefuls], "results": results},
    )  # fmt: skip
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

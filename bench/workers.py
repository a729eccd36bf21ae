"""Trials per minute with 1 and 2 workers on this machine: `python -m bench.workers`.

One random-sampler study on the real Fashion-MNIST (24 trials, 3 epochs, 4 trained side by
side, no pruning), run as a user runs it (`sweep run --workers N`, whole processes), on:
- the embedded stores (Optuna on SQLite, MLflow on SQLite, one home folder);
- the team stores (Optuna on PostgreSQL, an `mlflow server` on PostgreSQL with served
  artifacts), both started here as in the tests (tests/servers.py).
With 1 worker the summary also gives where the sweep's own time went: training (train_many),
tracking calls it waited for, and Optuna storage calls. Prints a table, writes
bench/results/workers.json.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import save, table
from tests.servers import mlflow_server, postgres

ROOT = Path(__file__).resolve().parents[1]
N_TRIALS = 24

STUDY = """
[study]
name = "{name}"
sampler = "random"
n_trials = {n_trials}
pruner = "none"
seed = 0
[data]
dataset = "fashion-mnist"
[train]
epochs = 3
side_by_side = 4
[space]
learning_rate = {{ low = 1e-2, high = 0.5, log = true }}
reg = {{ low = 1e-6, high = 1e-2, log = true }}
batch_size = [128, 256]
"""


def sweep_run(folder: Path, name: str, workers: int, extra: list[str]) -> dict:
    path = folder / f"{name}.toml"
    path.write_text(STUDY.format(name=name, n_trials=N_TRIALS))
    cmd = [sys.executable, "-m", "sweep", "run", str(path), "--home", str(folder / "home"), "-v"]
    start = time.perf_counter()
    done = subprocess.run(
        [*cmd, "--workers", str(workers), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    wall = time.perf_counter() - start
    out = done.stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else float("nan")

    return {
        "workers": workers,
        "wall_s": wall,
        "trials_per_min": N_TRIALS / wall * 60,
        "training_s": number(r"training ([\d.]+) s"),
        "tracking_ms_per_trial": number(r"tracking\s+([\d.]+) ms/trial waited"),
        "storage_ms_per_trial": number(r"optuna calls\s+([\d.]+) ms/trial"),
        "best_val": number(r"validation accuracy\s+([\d.]+)"),
    }


def main() -> None:
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for workers in (1, 2):
            results[f"embedded_{workers}"] = sweep_run(folder, f"emb-{workers}", workers, [])
        with postgres() as urls, mlflow_server(urls["mlflow"], folder / "served") as tracking:
            team = ["--storage", urls["optuna"], "--tracking-uri", tracking]
            for workers in (1, 2):
                results[f"postgres_{workers}"] = sweep_run(folder, f"pg-{workers}", workers, team)
    for key, r in results.items():
        where = "embedded (SQLite)" if key.startswith("embedded") else "PostgreSQL + server"
        one = r["workers"] == 1
        share = (
            f"{r['storage_ms_per_trial']:.0f} / {r['tracking_ms_per_trial']:.0f}" if one else "-"
        )
        rows.append(
            [
                where,
                str(r["workers"]),
                f"{r['wall_s']:.1f}",
                f"{r['trials_per_min']:.0f}",
                f"{r['training_s']:.1f}" if one else "-",
                share,
            ]
        )
    print(
        f"{N_TRIALS} trials, Fashion-MNIST, 3 epochs, 4 side by side; whole `sweep run` "
        "processes (start, data, report included); 2 cores"
    )
    print(
        table(
            ["stores", "workers", "wall s", "trials/min", "training s", "optuna/mlflow ms/trial"],
            rows,
        )
    )
    path = save("workers", results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""The cost of live curves: the 5x5 grid study (25 models side by side, 5 epochs) with and
without per-epoch logging while the group trains, in the same process, rounds interleaved.

    python -m bench.live [--rounds 5] [--epochs 5]   # 20 epochs: curves move while it trains

Each sweep runs in a new embedded home (SQLite stores), the report left out. "training" is the
time inside `engine.train_many` (the training thread's work, slowed by whatever competes with it
for the 2 cores); "wall" the whole sweep. The B arm replaces `Tracker.log_epoch` with a no-op:
every epoch is then written once, at the tell. Prints a table and writes bench/results/live.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

from bench.common import save, table
from sweep.launch import run_study
from sweep.spec import load_spec
from sweep.store.home import Home
from sweep.track.tracker import Tracker

STUDY = Path(__file__).resolve().parents[1] / "studies" / "fashion_mnist_grid.toml"


def one(live: bool, epochs: int) -> dict[str, float]:
    spec = dataclasses.replace(load_spec(STUDY), epochs=epochs, name=f"grid-{epochs}")
    original, drain = Tracker.log_epoch, Tracker._drain_live
    written = [0]

    def counted(self: Tracker, entries: list) -> None:  # epochs written while training
        written[0] += len(entries)
        drain(self, entries)

    Tracker._drain_live = counted  # type: ignore[method-assign]
    if not live:
        Tracker.log_epoch = lambda *args, **kwargs: None  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as home:
            outcome = run_study(spec, Home.resolve(home), report=False)
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=f"sqlite:///{Path(home) / 'mlflow.db'}")
            experiment = client.get_experiment_by_name(spec.name)
            runs = client.search_runs([experiment.experiment_id], "tags.`softsweep.role`='trial'")
            points = [len(client.get_metric_history(r.info.run_id, "val_accuracy")) for r in runs]
    finally:
        Tracker.log_epoch, Tracker._drain_live = original, drain  # type: ignore[method-assign]
    assert points == [spec.epochs] * 25, points  # one point per epoch, none twice
    return {
        "training_s": outcome.loop.engine_s,
        "wall_s": outcome.wall_s,
        "background_s": outcome.tracking_background_s,
        "live_epochs": written[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="the grid study's is 5")
    args = parser.parse_args()
    one(True, args.epochs)  # warm-up: imports, the page cache
    results: dict[str, list[dict[str, float]]] = {"live": [], "at the tell": []}
    for r in range(args.rounds):
        for name, live in (("live", True), ("at the tell", False)):
            results[name].append(one(live, args.epochs))
            print(f"  round {r + 1} {name}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in results[name][-1].items()), flush=True)  # fmt: skip
    med = {n: {k: statistics.median(x[k] for x in rows) for k in rows[0]} for n, rows in
           results.items()}  # fmt: skip
    ratio = med["live"]["training_s"] / med["at the tell"]["training_s"]
    print(f"\n25-grid, {args.epochs} epochs, {args.rounds} interleaved rounds (medians)")
    print(table(
        ["metrics logged", "training s", "wall s", "tracker thread s", "epochs written live"],
        [[n, f"{m['training_s']:.2f}", f"{m['wall_s']:.2f}", f"{m['background_s']:.2f}",
          f"{int(m['live_epochs'])} of {25 * args.epochs}"] for n, m in med.items()],
    ))  # fmt: skip
    print(f"\ntraining time with live curves / without: {ratio:.3f} (budget: 1.05)")
    path = save(f"live-{args.epochs}-epochs", {"rounds": results, "median": med,
                                               "training_ratio": ratio})  # fmt: skip
    print(f"written: {path}")


if __name__ == "__main__":
    main()

"""The side-by-side training of two checkouts, interleaved: `python -m bench.ab OTHER_TREE`.

Runs `bench.side_by_side --child` (the 25-grid trained by `train_many`, its bound, the serial
loops) alternately from this tree and from OTHER_TREE (say, `git worktree add /tmp/before HEAD~3`),
`--rounds` times each, with this venv's Python, and prints each tree's best and median
`train_many` time and their ratio. A change that should not touch training speed (a refactor)
shows a ratio within the machine's noise. Writes bench/results/ab.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import save, table

HERE = Path(__file__).resolve().parents[1]


def one(tree: Path, epochs: int) -> float:
    command = [sys.executable, "-m", "bench.side_by_side", "--child", "--epochs", str(epochs)]
    command += ["--ks", "1"]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout)["grid"]["train_many"]["wall_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("other", type=Path, help="the other checkout (the reference)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"this tree": [], "other": []}
    for _ in range(args.rounds):  # interleaved: both see the same drift of a shared machine
        times["other"].append(one(args.other.resolve(), args.epochs))
        times["this tree"].append(one(HERE, args.epochs))
    rows = [[name, f"{min(ts):.3f}", f"{statistics.median(ts):.3f}"] for name, ts in times.items()]
    ratios = sorted(o / t for o, t in zip(times["other"], times["this tree"], strict=True))
    print(f"train_many, 25-grid, {args.epochs} epochs, {args.rounds} interleaved rounds")
    print(table(["tree", "best s", "median s"], rows))
    print(
        f"other / this: best {min(times['other']) / min(times['this tree']):.3f}x, "
        f"median per-round ratio {statistics.median(ratios):.3f}x (>1: this tree is faster)"
    )
    path = save("ab", {"other": str(args.other), "epochs": args.epochs, "times": times})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

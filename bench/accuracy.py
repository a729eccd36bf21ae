"""Test accuracy of the main job, per learning-rate schedule and over seeds, next to scikit-learn.

    python -m bench.accuracy     # every schedule over 5 seeds (about 20 minutes on 2 cores)
    python -m bench.accuracy --seeds 2 --schedules cosine --no-sklearn

Each softsweep row is the whole main job (`studies/fashion_mnist.toml`: 64 TPE trials, median
pruning, the best trial tested once) with only `lr_schedule` and `seed` changed, in a throwaway
home. The seed changes the sampler, the initial weights and the batch order; the validation
split stays the study file's (`split_seed`), the one scikit-learn is tuned on.

The reference is scikit-learn's LogisticRegression (lbfgs, multinomial, L2) on the same split
(`engine.load_dataset("fashion-mnist")`, centred), its C tuned on the validation split and only
the best C tested: the tuned linear model the field would compare against. scikit-learn is a
bench-only extra (`pip install scikit-learn`), never a dependency of softsweep.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import engine
from bench.common import save, table
from sweep.home import Home
from sweep.launch import run_study
from sweep.spec import load_spec, parse_spec

STUDY = Path(__file__).resolve().parents[1] / "studies" / "fashion_mnist.toml"
SCHEDULES = {
    "constant": 'lr_schedule = "constant"',
    "step": 'lr_schedule = { kind = "step", every = 5, gamma = 0.5 }',
    "cosine": 'lr_schedule = "cosine"',
}


def study_text(schedule: str, seed: int) -> str:
    text = STUDY.read_text()
    text = re.sub(r"^lr_schedule = .*$", SCHEDULES[schedule], text, count=1, flags=re.M)
    text = re.sub(r"^seed = \d+", f"seed = {seed}", text, count=1, flags=re.M)
    return re.sub(r'^name = ".*"', f'name = "bench-{schedule}-{seed}"', text, count=1, flags=re.M)


def softsweep_row(schedule: str, seed: int) -> dict[str, float | int | str]:
    spec = parse_spec(study_text(schedule, seed), f"{schedule}-seed{seed}.toml")
    with tempfile.TemporaryDirectory() as home:
        start = time.perf_counter()
        outcome = run_study(spec, Home.resolve(home), report=False)
        wall = time.perf_counter() - start
    closing = outcome.closing
    assert closing is not None and closing.test_accuracy is not None, "the study did not close"
    return {
        "schedule": spec.lr_schedule.describe(),
        "seed": seed,
        "best_trial": int(closing.best_trial or 0),
        "val_accuracy": float(closing.best_value or 0.0),
        "test_accuracy": float(closing.test_accuracy),
        "wall_s": round(wall, 1),
    }


def sklearn_row(cs: list[float]) -> dict[str, float | str]:
    from sklearn.linear_model import LogisticRegression  # bench-only extra

    data = engine.load_dataset("fashion-mnist", val_size=5000, center=True, seed=0)
    tried = []
    for c in cs:
        start = time.perf_counter()
        model = LogisticRegression(C=c, max_iter=1000, tol=1e-4)
        model.fit(data.X_train, data.y_train)
        tried.append((model.score(data.X_val, data.y_val), c, model, time.perf_counter() - start))
        print(f"  scikit-learn C={c:g}: val {tried[-1][0]:.4f} ({tried[-1][3]:.0f} s)", flush=True)
    val, c, model, fit_s = max(tried, key=lambda row: row[0])
    return {
        "schedule": f"scikit-learn lbfgs, C={c:g}",
        "val_accuracy": float(val),
        "test_accuracy": float(model.score(data.X_test, data.y_test)),
        "fit_s": round(fit_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 for each schedule")
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    parser.add_argument("--cs", default="0.1,0.3,1", help="scikit-learn C values to tune over")
    parser.add_argument("--no-sklearn", action="store_true")
    args = parser.parse_args()
    shipped = load_spec(STUDY).lr_schedule.kind
    rows: list[dict] = []
    for schedule in args.schedules.split(","):
        for seed in range(args.seeds):
            rows.append(softsweep_row(schedule, seed))
            print("  " + ", ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    reference = None if args.no_sklearn else sklearn_row([float(c) for c in args.cs.split(",")])

    print(f"\nMain job (studies/fashion_mnist.toml), test accuracy of the best trial; shipped: "
          f"{shipped}")  # fmt: skip
    print(table(
        ["schedule", "seed", "best trial", "val acc", "test acc", "wall s"],
        [[r["schedule"], r["seed"], f"#{r['best_trial']}", f"{r['val_accuracy']:.4f}",
          f"{r['test_accuracy']:.4f}", r["wall_s"]] for r in rows],
    ))  # fmt: skip
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["schedule"] for r in rows):
        tests = [float(r["test_accuracy"]) for r in rows if r["schedule"] == name]
        summary[name] = {
            "seeds": len(tests),
            "mean": statistics.fmean(tests),
            "std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "range": max(tests) - min(tests),
            "min": min(tests),
        }
    print()
    print(table(
        ["schedule", "seeds", "mean test", "std", "max - min", "worst"],
        [[k, int(v["seeds"]), f"{v['mean']:.4f}", f"{v['std']:.4f}", f"{v['range']:.4f}",
          f"{v['min']:.4f}"] for k, v in summary.items()],
    ))  # fmt: skip
    if reference is not None:
        print(f"\nscikit-learn LogisticRegression ({reference['schedule']}): val "
              f"{reference['val_accuracy']:.4f}, test {reference['test_accuracy']:.4f} "
              f"(fit {reference['fit_s']} s)")  # fmt: skip
    path = save("accuracy", {"rows": rows, "summary": summary, "sklearn": reference})
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()

"""How far the main job's SGD model is from the exact optimum of its own objective, and how the
exact optimum's test accuracy compares with it.

    python -m bench.objective                  # the best trial of ./.softsweep's main job
    python -m bench.objective --home DIR --regs 1e-5 1e-4 1e-3 1e-2

The objective is the engine's: J(W) = mean cross-entropy on the training split + reg * sum(W**2),
the bias row penalised too (the cs231n convention), on the study's features (standardized).
The exact optimum comes from scipy's L-BFGS in float64 (J is strictly convex for reg > 0, so it
is unique; the fit at the best trial's reg starts from zero, the path's fits from their
neighbour's optimum, and each stops when no gradient entry exceeds 1e-5). scipy is fine in
a bench; the engine stays NumPy-only.

Three parts:
1. at the best trial's reg: J of its SGD weights against J at the exact optimum (the gap, the
   weight norms, validation accuracy);
2. an exact regularization path over `--regs` plus the best trial's reg: validation accuracy
   of each exact fit, and the reg chosen by it;
3. the test set, once for the chosen exact fit and once for the SGD model (the study already
   tested it: its stored number is printed, and recomputed here as a check).

This bench looks at the test set for a model the study never chose, so no study setting may be
chosen from its output; it measures how close the shipped model is to the best the same model
class reaches on the same split.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import engine
from bench.common import save, table

STUDY = Path(__file__).resolve().parents[1] / "studies" / "fashion_mnist.toml"
GTOL = 1e-5  # L-BFGS stops at this largest gradient entry: J is then within ~1e-7 of its minimum


def objective(W: np.ndarray, X1: np.ndarray, y: np.ndarray, reg: float) -> tuple[float, np.ndarray]:
    """J and its gradient in float64 (X1 carries the bias column)."""
    S = X1 @ W
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    total = S.sum(axis=1)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total) - np.log(S[rows, y]))) + reg * float(np.sum(W * W))
    S /= total[:, None]
    S[rows, y] -= 1.0
    grad = X1.T @ S / len(y) + 2.0 * reg * W
    return loss, grad


def exact_fit(
    X1: np.ndarray, y: np.ndarray, C: int, reg: float, start: np.ndarray | None = None
) -> tuple[np.ndarray, int, float]:
    """The minimiser of J (L-BFGS from `start`, else zero), its iteration count and its final
    gradient norm."""
    from scipy.optimize import minimize

    shape = (X1.shape[1], C)

    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = objective(w.reshape(shape), X1, y, reg)
        return loss, grad.ravel()

    found = minimize(
        fun, np.zeros(shape[0] * C) if start is None else start.ravel(), jac=True,
        method="L-BFGS-B", options={"maxiter": 3000, "gtol": GTOL, "ftol": 1e-15, "maxcor": 20},
    )  # fmt: skip
    W = found.x.reshape(shape)
    return W, int(found.nit), float(np.linalg.norm(objective(W, X1, y, reg)[1]))


def best_trial(home: Path, name: str) -> tuple[dict[str, float], float, float | None]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{home / 'optuna.db'}")
    best = study.best_trial
    tested = dict((int(n), float(a)) for n, a in study.user_attrs.get("test_evaluations", []))
    return dict(best.params), float(best.value or math.nan), tested.get(best.number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path(".softsweep"))
    parser.add_argument("--regs", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3, 3e-3, 1e-2])
    args = parser.parse_args()
    from sweep.data import load_data
    from sweep.spec import load_spec

    spec = load_spec(STUDY)
    data = load_data(spec)
    params, val_stored, test_stored = best_trial(args.home, spec.name)
    lr, reg, batch = params["learning_rate"], params["reg"], int(params["batch_size"])
    print(f"best trial of {spec.name}: lr {lr:.4g}, reg {reg:.4g}, batch {batch}; val "
          f"{val_stored:.4f}, test {test_stored}")  # fmt: skip
    t0 = time.perf_counter()
    (sgd,) = engine.train_many(
        data, [(lr, reg)], batch_size=batch, epochs=spec.epochs, seed=spec.seed,
        schedule=spec.lr_schedule,
    )  # fmt: skip
    W_sgd = sgd.weights.astype(np.float64)
    print(f"SGD retrained in {time.perf_counter() - t0:.1f} s: val {sgd.val_accuracy:.4f}")
    X1 = engine.add_bias(data.X_train.astype(np.float64))
    y, C = data.y_train, data.n_classes

    def val(W: np.ndarray) -> float:
        return float(engine.accuracy(W, data.X_val, data.y_val))

    fits: dict[float, dict[str, object]] = {}
    previous = None
    # the best trial's reg from zero; then the path from strong to weak reg, each fit started
    # at the one before (the optimum moves little between neighbours)
    for r in [reg, *sorted(set(args.regs) - {reg}, reverse=True)]:
        t0 = time.perf_counter()
        W, iters, gnorm = exact_fit(X1, y, C, r, None if r == reg else previous)
        previous = W
        fits[r] = {
            "W": W, "J": objective(W, X1, y, r)[0], "norm_sq": float(np.sum(W * W)),
            "val": val(W), "iterations": iters, "grad_norm": gnorm,
            "seconds": time.perf_counter() - t0,
        }  # fmt: skip
        print(f"exact fit at reg {r:g}: {iters} iterations, |grad| {gnorm:.1e}, "
              f"{fits[r]['seconds']:.1f} s, val {fits[r]['val']:.4f}")  # fmt: skip

    exact = fits[reg]
    J_sgd = objective(W_sgd, X1, y, reg)[0]
    J_exact = float(exact["J"])  # type: ignore[arg-type]
    print()
    print(f"1. the objective at the best trial's reg {reg:.4g} (training split, float64)")
    print(table(
        ["model", "J = data loss + L2", "data loss", "sum(W**2)", "val accuracy"],
        [["SGD (the trial)", f"{J_sgd:.5f}", f"{J_sgd - reg * np.sum(W_sgd**2):.5f}",
          f"{np.sum(W_sgd**2):.2f}", f"{val(W_sgd):.4f}"],
         ["exact optimum", f"{J_exact:.5f}", f"{J_exact - reg * exact['norm_sq']:.5f}",
          f"{exact['norm_sq']:.2f}", f"{exact['val']:.4f}"]],
    ))  # fmt: skip
    gap = J_sgd - J_exact
    print(f"gap J(SGD) - J(exact) = {gap:.5f} ({gap / J_exact:.1%} of J(exact))")

    chosen = max(fits, key=lambda r: (fits[r]["val"], -r))  # type: ignore[operator]
    print()
    print("2. the exact path (validation accuracy chooses the reg)")
    print(table(
        ["reg", "val accuracy", "J", "sum(W**2)", ""],
        [[f"{r:g}", f"{f['val']:.4f}", f"{f['J']:.5f}", f"{f['norm_sq']:.2f}",
          "chosen" if r == chosen else ""] for r, f in sorted(fits.items())],
    ))  # fmt: skip
    test_exact = float(engine.accuracy(fits[chosen]["W"], data.X_test, data.y_test))  # type: ignore[arg-type]
    test_sgd = float(engine.accuracy(W_sgd, data.X_test, data.y_test))
    low, high = engine.wilson_interval(round(test_sgd * len(data.y_test)), len(data.y_test))
    print()
    print("3. the test set (the exact fit's use is this bench's, not the study's)")
    print(table(
        ["model", "test accuracy"],
        [["SGD, the study's tested trial", f"{test_sgd:.4f} (stored {test_stored}; "
          f"95% CI {low:.4f}-{high:.4f})"],
         [f"exact optimum at reg {chosen:g} (chosen on val)", f"{test_exact:.4f}"]],
    ))  # fmt: skip
    print(f"SGD minus exact: {test_sgd - test_exact:+.4f} (the goal: within 0.0016)")
    path = save(
        "objective",
        {
            "study": spec.name,
            "best": {"learning_rate": lr, "reg": reg, "batch_size": batch, "val": val_stored,
                     "test_stored": test_stored},
            "sgd": {"J": J_sgd, "norm_sq": float(np.sum(W_sgd**2)), "val": val(W_sgd),
                    "test": test_sgd},
            "exact_at_best_reg": {"J": J_exact, "norm_sq": exact["norm_sq"], "val": exact["val"]},
            "gap": gap,
            "path": [{"reg": r, **{k: v for k, v in f.items() if k != "W"}}
                     for r, f in fits.items()],
            "chosen_reg": chosen,
            "test_exact_chosen": test_exact,
        },
    )  # fmt: skip
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""The search space's pruners: what `runner` may skip asking them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from sweep.space import make_pruner, pruning_epochs
from sweep.spec import parse_spec
from tests.helpers import spec_text


def test_hyperband_stops_trials_only_at_the_epochs_the_runner_asks_it() -> None:
    # The runner asks the pruner only after `pruning_epochs`: checked against Optuna's own
    # Hyperband, on noisy curves that it prunes often.
    spec = parse_spec(
        spec_text("hb", Path("data"), sampler="random", pruner="hyperband", epochs=20)
    )
    assert pruning_epochs(spec) == {1, 3, 9}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(spec))
    rng = np.random.default_rng(0)
    stopped_after = []
    for _ in range(60):
        trial = study.ask()
        for epoch in range(1, spec.epochs + 1):
            trial.report(float(rng.random()), epoch)
            if trial.should_prune():
                stopped_after.append(epoch)
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, float(rng.random()))
    assert len(stopped_after) > 20 and set(stopped_after) <= pruning_epochs(spec)


def test_hyperband_told_only_at_its_rungs_stops_the_same_trials_with_the_same_values() -> None:
    # What the runner does (report and ask only at the rungs) against reporting every epoch:
    # the same trials stopped at the same epochs, and the same values for the sampler to rank.
    spec = parse_spec(
        spec_text("hb", Path("data"), sampler="random", pruner="hyperband", epochs=20)
    )
    rungs = pruning_epochs(spec)
    assert rungs is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = np.random.default_rng(1).random((60, spec.epochs + 1))

    def run(every_epoch: bool) -> list[tuple[str, float | None, int | None]]:
        study = optuna.create_study(study_name="hb", direction="maximize", pruner=make_pruner(spec))
        for curve in curves:
            trial = study.ask()
            for epoch in range(1, spec.epochs + 1):
                if every_epoch or epoch in rungs:
                    trial.report(float(curve[epoch]), epoch)
                if epoch in rungs and trial.should_prune():
                    study.tell(trial, state=TrialState.PRUNED)
                    break
            else:
                study.tell(trial, float(curve[0]))
        return [(t.state.name, t.value, t.last_step if t.state == TrialState.PRUNED else None)
                for t in study.trials]  # fmt: skip

    told_every_epoch = run(every_epoch=True)
    assert sum(state == "PRUNED" for state, _, _ in told_every_epoch) > 20
    assert run(every_epoch=False) == told_every_epoch


def test_the_median_pruner_is_asked_after_every_epoch() -> None:
    spec = parse_spec(spec_text("m", Path("data"), sampler="random", pruner="median"))
    assert pruning_epochs(spec) is None

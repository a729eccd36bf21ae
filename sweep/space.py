"""A study spec's search space -> Optuna distributions, sampler and pruner."""

from __future__ import annotations

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from .spec import ParamRange, StudySpec

__all__ = ["distributions", "make_pruner", "make_sampler", "pruning_epochs"]

# Hyperband: the first rung after MIN_RESOURCE epochs, each next one REDUCTION_FACTOR times later
MIN_RESOURCE, REDUCTION_FACTOR = 1, 3


def _float_distribution(param: ParamRange) -> BaseDistribution:
    if param.values is not None:
        return CategoricalDistribution(param.values)
    assert param.low is not None and param.high is not None
    return FloatDistribution(param.low, param.high, log=param.log)


def distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """One distribution per parameter, under the names used everywhere (Optuna, MLflow, pandas)."""
    return {
        "learning_rate": _float_distribution(spec.learning_rate),
        "reg": _float_distribution(spec.reg),
        "batch_size": CategoricalDistribution(spec.batch_size),
    }


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    if spec.sampler == "grid":
        # Every cell goes through Optuna's trial queue (sweep/store/study.py: enqueue_missing), the
        # way to give each cell to exactly one of several workers; GridSampler itself picks
        # cells at random per worker (duplicates) and fails on enqueued trials in Optuna 5.0
        # (after_trial reads a grid_id they do not have). The queue hands out fixed params, so
        # the sampler only matters if it is ever asked for a value: then it draws from the grid.
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler == "tpe":
        # Several trials are asked before any is told (they train side by side): the constant
        # liar keeps TPE from proposing the same point to all of them.
        return optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True)
    if spec.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=spec.seed, warn_independent_sampling=False)
    if spec.sampler == "cmaes":
        # CMA-ES handles the two floats; batch size (categorical) falls back to random sampling.
        return optuna.samplers.CmaEsSampler(seed=spec.seed, warn_independent_sampling=False)
    raise ValueError(f"sampler must be one of grid, random, tpe, qmc, cmaes, got {spec.sampler!r}.")


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    if spec.pruner == "median":
        # Once 4 trials have finished, stop a trial whose epoch-e validation accuracy is below
        # the median of theirs at epoch e (Optuna skips steps < n_warmup_steps; steps are epochs
        # counted from 1, so this compares from the first epoch on).
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=MIN_RESOURCE, max_resource=spec.epochs, reduction_factor=REDUCTION_FACTOR
        )
    raise ValueError(f"pruner must be one of none, median, hyperband, got {spec.pruner!r}.")


def pruning_epochs(spec: StudySpec) -> frozenset[int] | None:
    """The epochs after which the study's pruner can stop a trial; None: after any epoch.
    Hyperband's brackets judge a trial only at their rungs, MIN_RESOURCE x REDUCTION_FACTOR^k
    epochs (1, 3, 9 of 20), on the value reported there: asked after any other epoch, it
    answers no, and no other epoch's value changes what it or the sampler decides (TPE ranks
    a pruned trial by its last reported epoch and value, the rung it was stopped at). The
    runner reports and asks only then: each call writes to the storage, a few milliseconds
    per trial and epoch (4 s of the main job)."""
    if spec.pruner != "hyperband":
        return None
    epochs, rung = set(), MIN_RESOURCE
    while rung <= spec.epochs:
        epochs.add(rung)
        rung *= REDUCTION_FACTOR
    return frozenset(epochs)

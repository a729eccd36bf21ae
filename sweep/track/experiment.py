"""How a study looks in MLflow's UI: its experiment's tags (the kind of experiment, the
description, the trials' view that `sweep ui` links to) and its runs' names."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..trial import Params

__all__ = ["EXPERIMENT_TAGS", "TRIAL_VIEW", "VIEW_KEY", "VIEW_TAG", "run_name"]

# A view of the runs table that MLflow's UI opens at `?viewStateShareKey=softsweep-trials` (its
# "share view" keeps them as experiment tags): the trials only, best first, with the result and
# the params as columns (a new browser shows none otherwise, and 29 to pick from by hand).
VIEW_KEY = "softsweep-trials"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
TRIAL_VIEW = {
    "searchFilter": "tags.`softsweep.role` = 'trial'",
    "orderByKey": "metrics.`val_accuracy`",
    "orderByAsc": False,
    "selectedColumns": [
        "metrics.`val_accuracy`", "metrics.`best_val_accuracy`", "params.`learning_rate`",
        "params.`reg`", "params.`batch_size`", "tags.`softsweep.outcome`",
        "attributes.`Dataset`", "attributes.`Models`", "attributes.`Source`",
    ],
}  # fmt: skip


def EXPERIMENT_TAGS(study_name: str) -> dict[str, str]:  # noqa: N802 (a constant's table)
    """An experiment's tags: MLflow 3.17's UI opens an experiment in its GenAI view unless
    `mlflow.experimentKind` says otherwise; the note is the experiment's description; the
    trials' view (`TRIAL_VIEW`)."""
    return {
        VIEW_TAG: json.dumps(TRIAL_VIEW),
        "mlflow.experimentKind": "custom_model_development",
        "mlflow.note.content": (
            f"softsweep study {study_name}: softmax classifiers, one run per Optuna trial "
            "(learning rate, reg, batch size) beside the study's own run. Compare runs by "
            "val_accuracy; a failed or pruned run says why in its description."
        ),
    }


def run_name(number: int, params: Mapping[str, Any] | None) -> str:
    """What a trial's run is called in the UI: its number and what it tried."""
    tried = Params.of(params or {})
    return f"trial {number}" if tried is None else f"trial {number}: {tried.describe()}"

"""softsweep's own notes on a study, kept out of the way of Optuna's tools.

The settings a study keeps for life, its study file, the data's image shape and class names,
the timings of the report and the tested model's scores (its interval counts, calibration, the
runner-up comparison, the refit) are Optuna *system* attributes of the study (through the storage
API): `optuna studies` and optuna-dashboard show the user attributes, which stay short (the
dataset, the uses of the test set, why a study stopped). Studies made before this kept them as
user attributes; those are still read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage, get_storage

__all__ = ["NOTES", "read_notes", "write_notes"]

NOTES = (
    "identity", "spec_toml", "image_shape", "class_names", "loss_timing", "data",
    "test_scores", "runner_up", "refit",  # the tested model's scores (`scores.py`)
)  # fmt: skip
_PREFIX = "softsweep:"


def _where(study: optuna.Study, storage: BaseStorage | str) -> tuple[BaseStorage, int]:
    store = storage if isinstance(storage, BaseStorage) else get_storage(storage)
    return store, store.get_study_id_from_name(study.study_name)


def read_notes(study: optuna.Study, storage: BaseStorage | str) -> dict[str, Any]:
    """The study's notes (`NOTES`), from its system attributes or, for an older study, its user
    attributes."""
    store, study_id = _where(study, storage)
    found = {k: v for k, v in study.user_attrs.items() if k in NOTES}
    for key, value in store.get_study_system_attrs(study_id).items():
        if key.startswith(_PREFIX):
            found[key[len(_PREFIX) :]] = value
    return found


def write_notes(study: optuna.Study, storage: BaseStorage | str, notes: Mapping[str, Any]) -> None:
    """Set the notes that changed (each is one write)."""
    unknown = set(notes) - set(NOTES)
    if unknown:
        raise ValueError(f"notes must be among {', '.join(NOTES)}, got {sorted(unknown)}.")
    store, study_id = _where(study, storage)
    current = read_notes(study, store)
    for key, value in notes.items():
        if current.get(key) != value:
            store.set_study_system_attr(study_id, _PREFIX + key, value)

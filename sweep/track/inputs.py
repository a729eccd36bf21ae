"""The data behind a study's runs, as MLflow shows it: the Dataset and Source columns.

Each split is an MLflow dataset input of its own (a training, a validation and a test split
are different rows of the files): its name says the split, its digest changes with the files,
the split or the preprocessing, its source is the folder the files were read from, and its
profile says how it was split and scaled. Trial runs take the training and validation splits;
the study's run takes the test split too (it holds the one evaluation on it). The Source
column is the study file.

`describe_data` runs where the data is loaded, and its result is kept with the study's notes,
so that `sweep sync` gives the runs it rebuilds the same inputs without loading the data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SPLITS", "dataset_inputs", "describe_data", "source_tags", "study_file_source"]

# split -> (MLflow's context tag, the arrays' attribute suffix)
SPLITS = {"train": ("training", "train"), "val": ("validation", "val"), "test": ("test", "test")}
_SAMPLED_ROWS = 2000  # rows hashed per split: enough to tell two versions of the data apart


def _digest(settings: Mapping[str, Any], X: np.ndarray, y: np.ndarray) -> str:
    """Every label, every k-th row of features (as the trials see them, after preprocessing)
    and the settings that made them: a few milliseconds, not a pass over 170 MB."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(np.ascontiguousarray(y).tobytes())
    step = max(1, X.shape[0] // _SAMPLED_ROWS)
    h.update(np.ascontiguousarray(X[::step]).tobytes())
    return h.hexdigest()[:8]  # as long as MLflow's own digests


def describe_data(
    data: Any, *, study_file: str, val_size: int, split_seed: int, preprocessing: str
) -> dict[str, Any]:
    """Plain data (JSON) describing the study's data for its runs; `data` is an
    `engine.Dataset`."""
    settings = {
        "dataset": data.name,
        "val_size": val_size,
        "split_seed": split_seed,
        "preprocessing": preprocessing,
    }
    splits = {}
    for split, (context, suffix) in SPLITS.items():
        X, y = getattr(data, f"X_{suffix}"), getattr(data, f"y_{suffix}")
        splits[split] = {
            "name": f"{data.name} {split}",
            "digest": _digest({**settings, "split": split}, X, y),
            "context": context,
            "rows": int(X.shape[0]),
            "dtype": str(X.dtype),
        }
    return {
        "source": study_file_source(study_file),
        "folder": data.source,
        "features": int(data.X_train.shape[1]),
        "image_shape": list(data.image_shape),
        "classes": len(data.class_names),
        "settings": settings,
        "splits": splits,
    }


def study_file_source(study_file: str) -> str:
    """The study file's absolute path, or "" for a study given as text (no file)."""
    path = Path(study_file)
    return str(path.resolve()) if path.is_file() else ""


def source_tags(described: Mapping[str, Any] | None) -> dict[str, str]:
    """The tags MLflow's Source column reads: the study file."""
    if not described or not described.get("source"):
        return {}
    return {"mlflow.source.name": described["source"], "mlflow.source.type": "LOCAL"}


def dataset_inputs(described: Mapping[str, Any] | None, splits: Sequence[str]) -> list[Any]:
    """MLflow `DatasetInput`s for these splits (none without a description)."""
    if not described:
        return []
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.types import Schema, TensorSpec
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    found = []
    for split in splits:
        one = described["splits"][split]
        features = TensorSpec(np.dtype(one["dtype"]), (-1, described["features"]), "features")
        targets = TensorSpec(np.dtype("int64"), (-1,), "targets")
        schema = {
            "mlflow_tensorspec": {
                "features": Schema([features]).to_json(),
                "targets": Schema([targets]).to_json(),
            }
        }
        profile = {
            "rows": one["rows"],
            "features": described["features"],
            "image_shape": described["image_shape"],
            "classes": described["classes"],
            **described["settings"],
        }
        dataset = Dataset(
            name=one["name"],
            digest=one["digest"],
            source_type="local",
            source=json.dumps({"uri": described["folder"]}),
            schema=json.dumps(schema),
            profile=json.dumps(profile),
        )
        found.append(DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, one["context"])]))
    return found

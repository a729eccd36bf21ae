"""A study's tested best trial as an MLflow Model, registered under the study's name.

The model is a pyfunc from code (`classifier.py`, copied into the model) with the best
weights, the preprocessing's training statistics and the class names as its artifacts, a
signature (uint8 pixels, one row per image -> class index; a `proba` param) and an input
example. It is logged as an MLflow 3 LoggedModel whose source run is the best trial's run
(the runs table's Models column), and registered as a new version of the registered model
named after the study: `mlflow.pyfunc.load_model("models:/<study>/latest")`. A resumed study
registers a new version only when its best trial changed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CODE", "check_environment", "log_best_model", "requirements", "save_model"]

CODE = Path(__file__).with_name("classifier.py")


def save_model(
    folder: Path,
    weights: np.ndarray,
    decoder: Any,
    image_shape: Sequence[int],
    class_names: Sequence[str],
    example: np.ndarray,
) -> Path:
    """Write the MLflow Model (an `MLmodel` folder) to `folder / "model"`. `decoder` is the
    data's `engine.PixelDecoder`; `example` a few uint8 images, one row each."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    weights_file = folder / "weights.npy"
    np.save(weights_file, weights)
    statistics: dict[str, Any] = {"scale": np.array(decoder.scale)}
    for name in ("mean", "inv_std"):
        if getattr(decoder, name) is not None:
            statistics[name] = getattr(decoder, name)
    preprocessing = folder / "preprocessing.npz"
    np.savez(preprocessing, **statistics)  # type: ignore[arg-type]
    classes = folder / "classes.json"
    classes.write_text(
        json.dumps({"class_names": list(class_names), "image_shape": list(image_shape)})
    )
    d = weights.shape[0] - 1
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, d))]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,))]),
        params=ParamSchema([ParamSpec("proba", "boolean", False)]),
    )
    target = folder / "model"
    mlflow.pyfunc.save_model(
        path=str(target),
        python_model=str(CODE),
        artifacts={
            "weights": str(weights_file),
            "preprocessing": str(preprocessing),
            "classes": str(classes),
        },
        signature=signature,
        input_example=example.reshape(example.shape[0], -1).astype(np.uint8),
        pip_requirements=requirements(),
    )
    return target


def requirements() -> list[str]:
    """The model's pip requirements."""
    import mlflow

    return [f"numpy>={np.__version__.split('.')[0]}", f"mlflow=={mlflow.__version__}"]


def check_environment() -> None:
    """What `save_model` does first: check that this environment satisfies the model's
    requirements (MLflow warns if not). For that MLflow maps the modules of every installed
    distribution, once per process: 0.4-0.8 s of Python, which a sweep spends while it trains
    rather than at its end, beside the drawing of the report (bench/README.md)."""
    try:
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches
    except ImportError:  # (moved in another MLflow: `save_model` checks for itself)
        return
    warn_dependency_requirement_mismatches(requirements())


def log_best_model(
    client: Any,
    experiment_id: str,
    run_id: str,
    study_name: str,
    trial: int,
    save: Any,
) -> str | None:
    """Log and register the model `save(folder) -> model folder` writes, for the best trial's
    run `run_id`; None (nothing done) if that run already has a registered version, or if
    `save` returns None (no model for this data)."""
    from mlflow.entities import LoggedModelOutput
    from mlflow.exceptions import MlflowException

    versions = client.search_model_versions(f"name = '{study_name}' and run_id = '{run_id}'")
    if versions:
        return None
    with tempfile.TemporaryDirectory(prefix="softsweep-model-") as tmp:
        folder = save(Path(tmp))
        if folder is None:
            return None
        model = client.create_logged_model(
            experiment_id,
            name=f"{study_name}-trial-{trial}",
            source_run_id=run_id,
            tags={"optuna.study": study_name, "optuna.trial": str(trial)},
            model_type="softmax classifier",
        )
        client.log_model_artifacts(model.model_id, str(folder))
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, 0)])
    try:
        client.create_registered_model(
            study_name,
            description=f"softsweep study {study_name}: its tested best trial, one version each",
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        study_name,
        # (not "models:/<id>": MLflow's SQL registry would look that up through the global
        # tracking URI, not this client's)
        source=model.artifact_location,
        run_id=run_id,
        model_id=model.model_id,
        description=f"trial #{trial}",
        tags={"softsweep.model_id": model.model_id},  # (the SQL registry keeps no model_id)
    )
    return str(version.version)

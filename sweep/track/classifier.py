"""The code of a study's best model as MLflow keeps it (MLflow's "models from code").

MLflow copies this file into the model, so loading the model needs numpy and mlflow only, not
softsweep. `predict` takes raw images as the dataset stores them (uint8 pixels, one row per
image, or images of the data's own shape), applies the study's preprocessing with the training
statistics saved beside the weights, and returns class indices; `params={"proba": True}`
returns the softmax probabilities instead.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class SoftmaxClassifier(PythonModel):  # type: ignore[misc]
    def load_context(self, context: Any) -> None:
        self.weights = np.load(context.artifacts["weights"])  # (D + 1, C), the bias row last
        with np.load(context.artifacts["preprocessing"]) as saved:
            self.scale = float(saved["scale"])
            self.mean = saved["mean"] if "mean" in saved.files else None
            self.inv_std = saved["inv_std"] if "inv_std" in saved.files else None
        with open(context.artifacts["classes"]) as fh:
            self.class_names = json.load(fh)["class_names"]

    def features(self, images: Any) -> np.ndarray:
        pixels = np.asarray(images.to_numpy() if hasattr(images, "to_numpy") else images)
        d = self.weights.shape[0] - 1
        x = pixels.reshape(pixels.shape[0], -1).astype(self.weights.dtype)
        if x.shape[1] != d:
            raise ValueError(
                f"each image must have {d} pixels (flattened, or in the data's own shape), "
                f"got {pixels.shape[1:]}"
            )
        x *= self.weights.dtype.type(self.scale)
        if self.mean is not None:
            x -= self.mean
        if self.inv_std is not None:
            x *= self.inv_std
        return x

    # (MLflow reads predict's type hints: an ndarray input leaves the checks to the signature)
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        x = self.features(model_input)
        scores = x @ self.weights[:-1] + self.weights[-1]
        if params and params.get("proba"):
            scores = scores - scores.max(axis=1, keepdims=True)
            e = np.exp(scores)
            return e / e.sum(axis=1, keepdims=True)
        return scores.argmax(axis=1).astype(np.int64)


set_model(SoftmaxClassifier())

"""softsweep's engine: softmax regression in NumPy (losses, gradient check, SGD, datasets).

Imports only NumPy and the standard library: it never knows it is being swept.
"""

from .data import Dataset, load_dataset, make_dataset
from .evaluate import (
    Calibration,
    McNemar,
    calibration,
    fit_temperature,
    log_softmax,
    mcnemar,
    nll,
    scores,
    wilson_interval,
)
from .gradcheck import gradient_check, max_relative_error, numerical_gradient
from .losses import add_bias, softmax_loss_naive, softmax_loss_vectorized
from .schedule import Schedule
from .timing import (
    LossComparison,
    Timed,
    TrainingComparison,
    best_time,
    blas_threads,
    compare_losses,
    compare_training,
    time_runs,
)
from .train import (
    MAX_GROUP,
    TrainResult,
    accuracy,
    group_memory_bytes,
    predict,
    predict_proba,
    train,
    train_many,
)

__all__ = [
    "MAX_GROUP",
    "Calibration",
    "Dataset",
    "LossComparison",
    "McNemar",
    "Schedule",
    "Timed",
    "TrainResult",
    "TrainingComparison",
    "accuracy",
    "add_bias",
    "best_time",
    "blas_threads",
    "calibration",
    "compare_losses",
    "compare_training",
    "fit_temperature",
    "gradient_check",
    "group_memory_bytes",
    "load_dataset",
    "log_softmax",
    "make_dataset",
    "max_relative_error",
    "mcnemar",
    "nll",
    "numerical_gradient",
    "predict",
    "predict_proba",
    "scores",
    "softmax_loss_naive",
    "softmax_loss_vectorized",
    "time_runs",
    "train",
    "train_many",
    "wilson_interval",
]

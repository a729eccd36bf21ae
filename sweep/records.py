"""What a trial's MLflow run holds (`TrialRecord`), and what a sync did (`SyncResult`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .lifecycle import Outcome

__all__ = ["SyncResult", "TrialRecord"]


@dataclass
class SyncResult:
    created: int = 0  # runs made for trials that had none
    completed: int = 0  # runs that were RUNNING or had no metrics
    run_ids: dict[int, str] = field(default_factory=dict)  # every synced trial's run


@dataclass
class TrialRecord:
    """What one finished trial leaves in its MLflow run."""

    number: int
    outcome: Outcome
    params: Mapping[str, Any]
    history: Sequence[Mapping[str, float]]
    final: Mapping[str, float] = field(default_factory=dict)
    info: Mapping[str, str] = field(default_factory=dict)  # bookkeeping, as tags
    reason: str = ""
    weights: np.ndarray | None = None
    ended_ms: int | None = None  # when the trial was told (now, if None)
    epoch_ms: Sequence[int] = ()  # when each epoch ended (the metrics' timestamps)

"""What a report shows, as data: a study's trials and stored results gathered into a
`StudyView`, the heatmap's cells and axes, the weight templates as arrays. No plotting here
(`files.py` draws), so tests assert on these numbers rather than on pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..scores import kept
from ..spec import PARAMS, ParamRange, StudySpec
from ..trial import (
    CHARTED,
    L2_TERM,
    REASON_ATTR,
    REFIT_ATTR,
    RUN_ID_ATTR,
    RUNNER_UP_ATTR,
    SCORES_ATTR,
    History,
    Outcome,
    Params,
    outcome_of,
    test_evaluations,
)

TOP_CURVES = 8
SHOWN_IMAGES = 16  # sample predictions and confident mistakes drawn from the test evaluation

if TYPE_CHECKING:
    import optuna

    from ..store.home import Home
    from ..track.tracker import Tracker

__all__ = [
    "Axis",
    "Shown",
    "StudyView",
    "TestView",
    "TrialView",
    "cell_axes",
    "describe_edges",
    "gather",
    "grid_cell_bests",
    "heatmap_cells",
    "importances",
    "mosaic",
    "power_label",
    "range_edges",
    "reg_path",
    "template_columns",
    "template_images",
    "template_weights",
    "test_view",
]


@dataclass(frozen=True)
class TrialView:
    """One trial as the report sees it."""

    number: int
    outcome: str  # an Outcome's label (complete, pruned, diverged, error, interrupted) or running
    learning_rate: float
    reg: float
    batch_size: int
    value: float | None  # final validation accuracy of a COMPLETE trial
    reason: str = ""
    run_id: str = ""
    train_loss: float | None = None  # the last epoch's mean training loss, data + L2
    l2_term: float | None = None  # its L2 part, reg * sum(W ** 2) at the end (None before kept)

    def describe(self) -> str:
        return f"lr={self.learning_rate:.3g}, reg={self.reg:.3g}, batch={self.batch_size}"


@dataclass(frozen=True)
class Shown:
    """One test image as the report shows it."""

    index: int  # in the test split
    image: np.ndarray  # display pixels, (H, W) or (H, W, 3) uint8
    true: int
    predicted: int
    confidence: float  # softmax probability of the predicted class


@dataclass(frozen=True)
class TestView:
    """The one test evaluation of the tested trial: its confusion matrix, the first test images
    with their predictions, and the mistakes made with the highest confidence."""

    trial: int
    accuracy: float
    confusion: np.ndarray  # (C, C) counts, rows: true class, columns: predicted class
    samples: list[Shown]
    mistakes: list[Shown]
    calibration: Any = None  # engine.Calibration of its probabilities (the reliability diagram)
    scaled: Any = None  # the same at the temperature fitted on validation, if one was


def test_view(
    trial: int, weights: np.ndarray, data: Any, temperature: float | None = None
) -> TestView:
    """Predict the test split of `data` (an engine Dataset) with `weights`: the same evaluation
    as the test accuracy (deterministic), kept for the report's figures; `temperature` is the
    one fitted on validation when the test was scored (`scores.score_test`)."""
    import engine

    S = engine.scores(weights, data.X_test)
    probs = np.exp(engine.log_softmax(S))  # (N, C)
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(probs.shape[0]), predicted]
    y = data.y_test
    C = probs.shape[1]
    confusion = np.bincount(y * C + predicted, minlength=C * C).reshape(C, C)

    def shown(k: int) -> Shown:
        # Back on the 0..255 scale (a dataset without a decoder holds [0, 1] pixels): only the
        # images shown, not all 10,000 (0.3 s of every closing).
        row = data.X_test[k : k + 1]
        pixels = data.decoder.pixels(row)[0] if data.decoder is not None else row[0] * 255.0
        image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        display = _display(image.reshape(1, *data.image_shape))[0]
        return Shown(int(k), display, int(y[k]), int(predicted[k]), float(confidence[k]))

    wrong = np.flatnonzero(predicted != y)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")[:SHOWN_IMAGES]]
    return TestView(
        trial=trial,
        accuracy=float(np.mean(predicted == y)),
        confusion=confusion,
        samples=[shown(k) for k in range(min(SHOWN_IMAGES, y.shape[0]))],
        mistakes=[shown(k) for k in worst],
        calibration=engine.calibration(probs, y),
        scaled=None
        if temperature is None
        else engine.calibration(np.exp(engine.log_softmax(S / temperature)), y),
    )


@dataclass
class StudyView:
    """Everything a report draws, gathered from the stores (see `gather`). Plain data: it can be
    sent to another process to be drawn there."""

    spec: StudySpec
    trials: list[TrialView]
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    test_accuracy: float | None = None
    test_evaluations: list[tuple[int, float]] = field(default_factory=list)  # (trial, accuracy)
    test: TestView | None = None
    test_scores: dict[str, Any] | None = None  # the tested trial's (scores.kept)
    runner_up: dict[str, Any] | None = None  # best vs runner-up on validation (McNemar)
    refit: dict[str, Any] | None = None  # the course's refit on train + validation, if made
    loss_timing: Mapping[str, Any] | None = None
    weights: dict[int, np.ndarray] = field(default_factory=dict)  # by trial number
    # {trial: {metric: [value per epoch]}}: train_loss, train_accuracy, val_accuracy
    histories: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    frozen: list[Any] = field(default_factory=list)  # Optuna's completed trials (importances)
    links: Mapping[str, str] = field(default_factory=dict)  # shown on the page: storage, runs
    stopped: str = ""  # why the study ended short of its target (its deadline), if it did
    ui_url: str = ""  # the MLflow UI the page links run ids to, and how to start it
    ui_hint: str = ""
    experiment_id: str = ""  # the study's MLflow experiment

    @property
    def best(self) -> TrialView | None:
        done = [t for t in self.trials if t.outcome == "complete" and t.value is not None]
        return max(done, key=lambda t: (t.value, -t.number)) if done else None

    def curve_trials(self) -> tuple[list[TrialView], list[TrialView]]:
        """The learning curves' trials: the top completed ones, and every pruned one (faded)."""
        done = [t for t in self.trials if t.outcome == "complete" and t.value is not None]
        top = sorted(done, key=lambda t: (-(t.value or 0.0), t.number))[:TOP_CURVES]
        return top, [t for t in self.trials if t.outcome == "pruned"]

    def template_trials(self) -> list[int]:
        """Trials whose weights are drawn: the best, and each grid cell's best (the gallery)."""
        best = self.best
        if best is None:
            return []
        wanted = {best.number}
        lr_axis, reg_axis = cell_axes(self)
        if lr_axis.values and reg_axis.values:
            wanted |= set(grid_cell_bests(heatmap_cells(self)).values())
        return sorted(wanted)


# -- gathering ---------------------------------------------------------------------------------
def gather(
    study: optuna.Study,
    spec: StudySpec,
    tracker: Tracker,
    home: Home,
    *,
    weights: Mapping[int, np.ndarray] | None = None,
    data: Any = None,
) -> StudyView:
    """A study's view from Optuna (trials, states, per-epoch histories, study attributes) and
    MLflow (the weights the figures need). `weights` holds what the caller still has in memory,
    by trial number; the rest is read from the runs. With `data` (the study's engine Dataset)
    the tested trial's test predictions are drawn too. `home` says where the stores are: the
    page shows them, links run ids to its MLflow UI, and reads softsweep's notes on the study
    (`store/notes.py`) from its Optuna storage."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    trials = []
    histories: dict[int, History] = {}
    for t in study.get_trials(deepcopy=False, states=states):
        outcome = outcome_of(t)
        params = Params.of(t.params)
        if params is None or outcome is Outcome.DUPLICATE:
            continue  # (still being asked; a duplicate was never trained)
        histories[t.number] = History.of(t)
        trials.append(
            TrialView(
                number=t.number,
                outcome="running" if outcome is None else outcome.label,
                learning_rate=params.learning_rate,
                reg=params.reg,
                batch_size=params.batch_size,
                value=t.value if t.state == TrialState.COMPLETE else None,
                reason=str(t.user_attrs.get(REASON_ATTR, "")),
                run_id=str(t.user_attrs.get(RUN_ID_ATTR, "")),
                train_loss=histories[t.number].last("train_loss"),
                l2_term=histories[t.number].last(L2_TERM),
            )
        )
    from ..store.notes import read_notes

    attrs = {**study.user_attrs, **read_notes(study, home.storage)}
    ui_url, ui_hint = home.ui()
    run_ids = {t.number: t.run_id for t in trials}
    view = StudyView(
        spec=spec,
        trials=trials,
        image_shape=tuple(int(s) for s in attrs.get("image_shape", ())),
        class_names=tuple(str(c) for c in attrs.get("class_names", ())),
        loss_timing=attrs.get("loss_timing"),
        frozen=study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
        links={"optuna storage": home.shown_storage, "mlflow tracking": home.shown_tracking_uri},
        ui_url=ui_url,
        ui_hint=ui_hint,
        stopped=str(attrs.get("stopped", "")),
    )
    view.experiment_id = tracker.experiment_id() or ""
    best = view.best
    view.test_evaluations = test_evaluations(attrs)
    tested = dict(view.test_evaluations)
    if best is not None and best.number in tested:
        view.test_accuracy = tested[best.number]
        view.test_scores = kept(attrs, SCORES_ATTR, best.number)
        view.runner_up = kept(attrs, RUNNER_UP_ATTR, best.number)
        view.refit = kept(attrs, REFIT_ATTR, best.number)
    for number in view.template_trials():
        found = (weights or {}).get(number)
        if found is None and run_ids.get(number):
            found = tracker.download_weights(run_ids[number])
        if found is not None:
            view.weights[number] = found
    if data is not None and best is not None and view.test_accuracy is not None:
        if best.number in view.weights:
            temperature = (view.test_scores or {}).get("temperature")
            view.test = test_view(best.number, view.weights[best.number], data, temperature)
    top, pruned = view.curve_trials()
    for shown in top + pruned:
        history = histories[shown.number]
        stored = {k: history.series(k) for k in CHARTED} if history.epochs else {}
        if not stored and shown.run_id:  # told before histories were kept
            stored = {"val_accuracy": tracker.metric_history(shown.run_id, "val_accuracy")}
        if stored.get("val_accuracy"):
            view.histories[shown.number] = stored
    return view


def importances(view: StudyView) -> dict[str, float] | None:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA: deterministic, a few
    milliseconds) of the parameters that vary, over the completed trials; None with fewer than 3.
    """
    import warnings

    import optuna
    from optuna.importance import get_param_importances

    done = [t for t in view.trials if t.outcome == "complete"]
    varying = [name for name in PARAMS if len({getattr(t, name) for t in done}) > 1]
    if len(view.frozen) < 3 or not varying:
        return None
    # In memory, from the stored trials; its "A new study created in memory" INFO line would
    # land in the middle of `sweep run`'s progress bar (the helper process logs at INFO).
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(view.frozen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = get_param_importances(study, params=varying)
        except (ValueError, RuntimeError):
            return None
    return {k: float(v) for k, v in found.items()}


def grid_cell_bests(cells: list[dict[str, Any]]) -> dict[tuple[int, int], int]:
    """The best completed trial of each (lr cell, reg cell), over all batch sizes."""
    best: dict[tuple[int, int], dict[str, Any]] = {}
    for c in cells:
        key = (c["lr_cell"], c["reg_cell"])
        if c["value"] is not None and (key not in best or c["value"] > best[key]["value"]):
            best[key] = c
    return {key: c["trial"] for key, c in best.items()}


# A best value in the outer 5% of its searched range (log-scaled if log) is on the range's edge.
EDGE_SHARE = 0.05


def range_edges(view: StudyView) -> list[tuple[str, str, float, ParamRange]]:
    """The searched float parameters whose best value sits on the edge of their range: (name,
    "low" or "high", the best's value, the range). A best on the edge says the range is binding:
    a wider one may hold better settings. A grid's edge is its first or last value."""
    best = view.best
    found = []
    for name in ("learning_rate", "reg"):
        space: ParamRange = getattr(view.spec, name)
        value = getattr(best, name) if best is not None else None
        if value is None:
            continue
        if space.values is not None:
            if len(space.values) < 3:
                continue
            ordered = sorted(space.values)
            side = "low" if value <= ordered[0] else "high" if value >= ordered[-1] else ""
        else:
            assert space.low is not None and space.high is not None
            log = space.log and space.low > 0 and value > 0
            at = (lambda v: math.log10(v)) if log else (lambda v: v)
            share = (at(value) - at(space.low)) / (at(space.high) - at(space.low))
            side = "low" if share <= EDGE_SHARE else "high" if share >= 1 - EDGE_SHARE else ""
        if side:
            found.append((name, side, float(value), space))
    return found


def describe_edges(view: StudyView) -> list[str]:
    """One sentence per range the best trial sits on the edge of."""
    words = {"learning_rate": "learning rate", "reg": "reg"}
    return [
        f"The best trial's {words[name]} ({value:.4g}) is at the {side} end of its searched "
        f"range ({space.describe()}): the range is binding, and a wider one may find better "
        "settings."
        for name, side, value, space in range_edges(view)
    ]


PATH_SPAN = 0.25  # decades of learning rate around the best's that count as "its" learning rate


def reg_path(view: StudyView) -> list[TrialView]:
    """The study's own regularization path: its completed trials at the best trial's batch size
    and learning rate (the same grid value, or within a quarter decade of a sampled one), by
    reg. Empty when fewer than 3 different regs are there."""
    best = view.best
    if best is None:
        return []
    near = [
        t
        for t in view.trials
        if t.outcome == "complete"
        and t.value is not None
        and t.batch_size == best.batch_size
        and abs(math.log10(t.learning_rate / best.learning_rate)) <= PATH_SPAN
    ]
    if view.spec.learning_rate.values is not None:  # a grid: exactly its learning rate
        near = [t for t in near if t.learning_rate == best.learning_rate]
    path = sorted(near, key=lambda t: (t.reg, t.number))
    return path if len({t.reg for t in path}) >= 3 else []


# -- the heatmap's cells -----------------------------------------------------------------------
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_label(value: float) -> str:
    """0.03 -> 3×10⁻², 0.001 -> 10⁻³, 1.0 -> 1, 0 -> 0. Plain Unicode: matplotlib's mathtext
    parser took half a second of every report for a dozen such labels."""
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = f"{value / 10**exponent:.2g}"
    if mantissa == "10":
        exponent, mantissa = exponent + 1, "1"
    if exponent == 0:
        return mantissa
    power = "10" + str(exponent).translate(SUPERSCRIPT)
    if mantissa in ("1", "-1"):
        return mantissa.replace("1", "") + power
    return f"{mantissa}\u00d7{power}"  # the multiplication sign


@dataclass(frozen=True)
class Axis:
    """One heatmap axis: exact grid values, or bins between `edges` (log-spaced when log)."""

    name: str
    values: tuple[float, ...] = ()  # exact cells (grid)
    edges: tuple[float, ...] = ()  # bin edges (other samplers)
    log: bool = True

    @property
    def size(self) -> int:
        return len(self.values) if self.values else len(self.edges) - 1

    def index(self, value: float) -> int:
        if self.values:
            return int(np.argmin([abs(v - value) for v in self.values]))
        edges = np.log10(self.edges) if self.log else np.asarray(self.edges)
        x = math.log10(value) if self.log else value
        return int(np.clip(np.searchsorted(edges, x, side="right") - 1, 0, self.size - 1))

    def ticks(self) -> tuple[list[float], list[str]]:
        """Tick positions (in cell units) and labels, in increasing order of value."""
        if self.values:
            return [i + 0.5 for i in range(self.size)], [power_label(v) for v in self.values]
        dense = self.size > 6
        positions, labels = [], []
        for i, edge in enumerate(self.edges):
            decade = self.log and abs(math.log10(edge) - round(math.log10(edge))) < 1e-6
            if not dense or decade or not self.log:
                positions.append(float(i))
                labels.append(power_label(float(f"{edge:.2g}")))
        return positions, labels


def _axis(name: str, space: ParamRange, observed: Sequence[float]) -> Axis:
    if space.values is not None:  # exact cells: the listed values (and any seen outside them)
        merged: list[float] = []
        for v in sorted({*space.values, *observed}):
            if not merged or not math.isclose(v, merged[-1], rel_tol=1e-9, abs_tol=0.0):
                merged.append(v)
        return Axis(name, values=tuple(merged))
    assert space.low is not None and space.high is not None
    low, high = min([space.low, *observed]), max([space.high, *observed])
    log = space.log and low > 0
    if log:  # half a decade per bin, between 3 and 10 bins
        n = min(10, max(3, round(2 * (math.log10(high) - math.log10(low)))))
        edges = np.logspace(math.log10(low), math.log10(high), n + 1)
    else:
        edges = np.linspace(low, high, 7)
    return Axis(name, edges=tuple(float(e) for e in edges), log=log)


def cell_axes(view: StudyView) -> tuple[Axis, Axis]:
    """The (learning rate, reg) axes of the heatmap: listed values (a grid) are cells as they
    are; ranges are binned (log-spaced for log ranges)."""
    lr = _axis("learning_rate", view.spec.learning_rate, [t.learning_rate for t in view.trials])
    reg = _axis("reg", view.spec.reg, [t.reg for t in view.trials])
    return lr, reg


def heatmap_cells(view: StudyView) -> list[dict[str, Any]]:
    """One dict per occupied (batch size, lr cell, reg cell): the best completed value, the trial
    count, the state (complete, or diverged > error > pruned > interrupted > running when none
    completed),
    the best trial in the cell and whether it is the study's best."""
    lr_axis, reg_axis = cell_axes(view)
    groups: dict[tuple[int, int, int], list[TrialView]] = {}
    for t in view.trials:
        key = (t.batch_size, lr_axis.index(t.learning_rate), reg_axis.index(t.reg))
        groups.setdefault(key, []).append(t)
    best = view.best
    cells = []
    for (batch_size, i, j), members in sorted(groups.items()):
        done = [t for t in members if t.outcome == "complete" and t.value is not None]
        outcomes = {t.outcome for t in members}
        if done:
            top = max(done, key=lambda t: (t.value, -t.number))
            state, value, number = "complete", top.value, top.number
        else:
            order = ("diverged", "error", "pruned", "interrupted", "running")
            state = next(s for s in order if s in outcomes)
            value, number = None, None
        cells.append(
            {
                "batch_size": batch_size,
                "lr_cell": i,
                "reg_cell": j,
                "value": value,
                "n_trials": len(members),
                "state": state,
                "trial": number,
                "best": best is not None and number == best.number,
            }
        )
    return cells


# -- weight templates --------------------------------------------------------------------------
def _display(images: np.ndarray) -> np.ndarray:
    """(C, *image_shape) -> (C, H, W) grey or (C, H, W, 3) colour, for imshow."""
    if images.ndim == 2:  # flat vectors: one row of pixels each
        return images[:, None, :]
    if images.ndim == 3:
        return images
    if images.ndim == 4:
        if images.shape[-1] in (3, 4):
            return images[..., :3]
        if images.shape[1] in (3, 4):  # channels first
            return np.moveaxis(images, 1, -1)[..., :3]
        if images.shape[-1] == 1:
            return images[..., 0]
        return images.mean(axis=-1)
    return images.reshape(images.shape[0], images.shape[1], -1)


def template_images(weights: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Each class's weights (bias row excluded) as an image, 0..255 by one min-max over all
    classes (cs231n's scaling): (C, H, W) for grey data, (C, H, W, 3) for colour."""
    W = np.asarray(weights, dtype=np.float64)[:-1]  # (D, C); the last row is the bias
    d = int(np.prod(image_shape))
    if W.shape[0] != d:
        raise ValueError(
            f"weights of shape {weights.shape} do not match images of shape "
            f"{tuple(image_shape)} ({d} pixels plus the bias row)."
        )
    images = W.T.reshape(W.shape[1], *image_shape)
    low, high = float(images.min()), float(images.max())
    scaled = (images - low) / (high - low) * 255.0 if high > low else np.full_like(images, 127.0)
    return _display(scaled.astype(np.uint8))


def template_weights(weights: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Each class's weights (bias row excluded) as a float image (C, *image_shape), unscaled:
    what a diverging colour map centred at 0 shows."""
    W = np.asarray(weights, dtype=np.float64)[:-1]
    return W.T.reshape(W.shape[1], *image_shape)


def mosaic(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile (C, H, W[, 3]) images into rows of `columns`, one white pixel between them."""
    c, h, w = images.shape[:3]
    rows = math.ceil(c / columns)
    shape = (rows * (h + 1) - 1, columns * (w + 1) - 1, *images.shape[3:])
    out = np.full(shape, 255, dtype=np.uint8)
    for k in range(c):
        r, q = divmod(k, columns)
        out[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = images[k]
    return out


def template_columns(n_classes: int) -> int:
    return n_classes if n_classes <= 5 else min(10, math.ceil(n_classes / 2))

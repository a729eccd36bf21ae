"""Study files (TOML) -> a frozen, validated `StudySpec`.

Every error names the file, the key, the bad value and what is allowed, in one paragraph.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.schedule import KINDS, Schedule

__all__ = [
    "IDENTITY_KEYS",
    "OVERRIDABLE",
    "PARAMS",
    "PRUNERS",
    "SAMPLERS",
    "ParamRange",
    "StudySpec",
    "identity_differences",
    "load_spec",
    "parse_spec",
    "with_overrides",
]

# The searched parameters, under the one name each has everywhere: Optuna params, MLflow params,
# DataFrame columns.
PARAMS = ("learning_rate", "reg", "batch_size")
# The settings that change what a trial computes or which trials are asked: a study keeps them
# for life (`sweep run` refuses a study file that changes one). n_trials, timeout_s and
# side_by_side may change between runs.
IDENTITY_KEYS = (
    "dataset", "val_size", "split_seed", "center", "standardize", "epochs", "loss",
    "lr_schedule", "seed",
    "sampler", "pruner",
    "space.learning_rate", "space.reg", "space.batch_size",
)  # fmt: skip
SAMPLERS = ("grid", "random", "tpe", "qmc", "cmaes")
PRUNERS = ("none", "median", "hyperband")
LOSSES = ("naive", "vectorized")
_SECTIONS: dict[str, dict[str, str]] = {  # section -> key -> what it holds (for error messages)
    "study": {
        "name": "a name of letters, digits, '.', '_' or '-' (it names folders and MLflow runs)",
        "sampler": f"one of {', '.join(SAMPLERS)}",
        "n_trials": "an integer >= 1 (the target total: re-running resumes until it is reached)",
        "timeout_s": "a number of seconds > 0",
        "pruner": f"one of {', '.join(PRUNERS)}",
        "seed": "an integer from 0 to 4294967295",
    },
    "data": {
        "dataset": "mnist, fashion-mnist, cifar10, or a folder with the four IDX files",
        "val_size": "an integer >= 1",
        "split_seed": "an integer from 0 to 4294967295 (the validation split's seed)",
        "center": "true or false",
        "standardize": "true or false (divide each centred feature by its training std)",
        "data_dir": "a folder holding the dataset's files",
    },
    "train": {
        "epochs": "an integer >= 1",
        "loss": f"one of {', '.join(LOSSES)}",
        "side_by_side": "an integer >= 1 (trials trained together per group)",
        "lr_schedule": (
            f'one of {", ".join(KINDS)}, or a table such as {{ kind = "step", every = 5, '
            'gamma = 0.5 } or { kind = "cosine", floor = 0.0 }'
        ),
        "refit": "true or false (train the best setting on train + validation, test it too)",
    },
    "space": {
        "learning_rate": "{ low = ..., high = ..., log = true } or { values = [...] }",
        "reg": "{ low = ..., high = ..., log = true } or { values = [...] }",
        "batch_size": "a list of integers >= 1, such as [64, 128, 256]",
    },
}
_REQUIRED = {"study": ("name",), "data": ("dataset",), "space": ("learning_rate", "reg")}


class SpecError(ValueError):
    """A study file that does not follow the schema."""


@dataclass(frozen=True)
class ParamRange:
    """A float hyperparameter: a range (low, high, log) or a list of values (grid cells)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple[float, ...] | None = None

    def describe(self) -> str:
        if self.values is not None:
            return "[" + ", ".join(f"{v:g}" for v in self.values) + "]"
        return f"{self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


@dataclass(frozen=True)
class StudySpec:
    name: str
    sampler: str
    n_trials: int
    timeout_s: float | None
    pruner: str
    seed: int
    dataset: str
    val_size: int | None
    split_seed: int | None  # None: the study's seed (how studies split before this setting)
    center: bool
    standardize: bool
    data_dir: str | None
    epochs: int
    loss: str
    side_by_side: int
    lr_schedule: Schedule
    learning_rate: ParamRange
    reg: ParamRange
    batch_size: tuple[int, ...]
    source: str = "<string>"  # the file it came from
    text: str = ""  # the file's text, stored as an artifact of the study's run
    # After selection, train the best setting again on train + validation and test that model
    # too (the course's refit), reported beside the selected model. Not part of the identity:
    # turned on later, the next closing refits.
    refit: bool = False

    @property
    def data_seed(self) -> int:
        """The seed of the train / validation split."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def preprocessing(self) -> str:
        """How the study's features are scaled, in words."""
        if self.standardize:
            return "standardized (training mean and std)"
        return "centred (training mean)" if self.center else "pixels / 255"

    @property
    def grid_size(self) -> int | None:
        """Number of grid cells for a grid study, else None."""
        if self.sampler != "grid":
            return None
        assert self.learning_rate.values is not None and self.reg.values is not None
        return len(self.learning_rate.values) * len(self.reg.values) * len(self.batch_size)

    @property
    def target(self) -> int:
        """Trials to get done: n_trials, capped at the number of cells for a grid."""
        return self.n_trials if self.grid_size is None else min(self.n_trials, self.grid_size)

    def as_params(self) -> dict[str, str]:
        """The spec as flat strings, for the study's MLflow run."""
        return {
            "study_name": self.name,
            "sampler": self.sampler,
            "n_trials": str(self.n_trials),
            "timeout_s": "none" if self.timeout_s is None else f"{self.timeout_s:g}",
            "pruner": self.pruner,
            "seed": str(self.seed),
            "dataset": self.dataset,
            "val_size": "auto" if self.val_size is None else str(self.val_size),
            "split_seed": str(self.data_seed),
            "center": str(self.center).lower(),
            "standardize": str(self.standardize).lower(),
            "epochs": str(self.epochs),
            "loss": self.loss,
            "lr_schedule": self.lr_schedule.describe(),
            "side_by_side": str(self.side_by_side),
            "space.learning_rate": self.learning_rate.describe(),
            "space.reg": self.reg.describe(),
            "space.batch_size": str(list(self.batch_size)),
        }

    def identity(self) -> dict[str, str]:
        """The settings a study keeps for life (IDENTITY_KEYS), as strings."""
        params = self.as_params()
        return {key: params[key] for key in IDENTITY_KEYS}


def identity_differences(stored: dict[str, str], spec: StudySpec) -> list[str]:
    """'key: old -> new' for each identity setting that `spec` changes. A study made before a
    setting existed had that setting's old behaviour: a constant learning rate, the split drawn
    with the study's seed, features not standardized."""
    new = spec.identity()
    if stored:
        old = {
            "lr_schedule": "constant",
            "split_seed": stored.get("seed", ""),
            "standardize": "false",
        }
        stored = {**old, **stored}
    return [
        f"{key}: {stored.get(key, '(not set)')} -> {new[key]}"
        for key in IDENTITY_KEYS
        if key in stored and stored[key] != new[key]
    ]


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, rule: str, got: Any, fix: str = "") -> SpecError:
        return SpecError(
            f"{self.source}: {key} must be {rule}, got {got!r}.{' ' + fix if fix else ''}"
        )

    def integer(
        self,
        table: dict,
        section: str,
        key: str,
        default: Any,
        minimum: int | None,
        maximum: int | None = None,
    ) -> Any:
        value = table.get(key, default)
        if value is default and key not in table:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            raise self.fail(f"[{section}] {key}", _SECTIONS[section][key], value)
        return value

    def choice(self, table: dict, section: str, key: str, default: str, allowed: tuple) -> str:
        value = table.get(key, default)
        if value not in allowed:
            raise self.fail(f"[{section}] {key}", _SECTIONS[section][key], value)
        return str(value)

    def number(self, value: Any, key: str, rule: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(key, rule, value)
        return float(value)

    def schedule(self, value: Any) -> Schedule:
        key, rule = "[train] lr_schedule", _SECTIONS["train"]["lr_schedule"]
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, dict) or value.get("kind") not in KINDS:
            raise self.fail(key, rule, value)
        allowed = {"step": {"every", "gamma"}, "cosine": {"floor"}}.get(value["kind"], set())
        unknown = sorted(set(value) - allowed - {"kind"})
        if unknown:
            keys = ", ".join(sorted(allowed)) or "none"
            raise self.fail(
                f"{key}.{unknown[0]}", f"a setting of {value['kind']} (its settings: {keys})",
                value[unknown[0]],
            )  # fmt: skip
        try:
            return Schedule(**value)
        except ValueError as exc:
            raise SpecError(f"{self.source}: {key}: {exc}") from None

    def param(self, table: Any, name: str, *, positive: bool, grid: bool) -> ParamRange:
        key = f"[space] {name}"
        floor = "> 0" if positive else ">= 0"
        if not isinstance(table, dict):
            raise self.fail(key, _SECTIONS["space"][name], table)
        unknown = sorted(set(table) - {"low", "high", "log", "values"})
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", "one of low, high, log, values", unknown[0])
        if "values" in table:
            if set(table) - {"values"}:
                raise self.fail(key, "either { values = [...] } or { low, high, log }", table)
            values = table["values"]
            if not isinstance(values, list) or not values:
                raise self.fail(
                    f"{key}.values",
                    "a non-empty list of numbers",
                    values,
                    "An empty grid has no cells to try.",
                )
            out = tuple(
                self.number(v, f"{key}.values", f"a list of numbers {floor}") for v in values
            )
            bad = [v for v in out if v <= 0] if positive else [v for v in out if v < 0]
            if bad:
                raise self.fail(f"{key}.values", f"a list of numbers {floor}", values)
            if len(set(out)) != len(out):
                raise self.fail(f"{key}.values", "a list without repeated values", values)
            return ParamRange(values=tuple(sorted(out)))
        if grid:
            raise self.fail(
                key,
                "{ values = [...] } for the grid sampler (the grid's cells)",
                table,
                "Or pick another sampler to search a range.",
            )
        if "low" not in table or "high" not in table:
            raise self.fail(key, "{ low = ..., high = ..., log = true|false }", table)
        low = self.number(table["low"], f"{key}.low", f"a number {floor}")
        high = self.number(table["high"], f"{key}.high", f"a number {floor}")
        log = table.get("log", False)
        if not isinstance(log, bool):
            raise self.fail(f"{key}.log", "true or false", log)
        if low < 0 or (positive and low <= 0):
            raise self.fail(f"{key}.low", f"a number {floor}", low)
        if low >= high:
            raise self.fail(f"{key}", "a range with low < high", f"low={low:g}, high={high:g}")
        if log and low <= 0:
            raise self.fail(
                f"{key}.low",
                "> 0 when log = true (a log scale has no 0)",
                low,
                "Use a small positive low such as 1e-6, or log = false.",
            )
        return ParamRange(low=low, high=high, log=log)


def parse_spec(text: str, source: str = "<string>") -> StudySpec:
    """Parse and validate the TOML text of a study file."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(
            f"{source}: not valid TOML ({exc}). Fix the syntax at that place."
        ) from None
    return _validate(doc, source, text)


OVERRIDABLE = {key: section for section, keys in _SECTIONS.items() for key in keys}
del OVERRIDABLE["name"]  # a study's name is its identity: another name is another study


def with_overrides(spec: StudySpec, overrides: dict[str, Any], given_as: str) -> StudySpec:
    """`spec` with some of its settings replaced (`sweep run --n-trials`, `sweep.run(epochs=5)`),
    validated as if they were written in the study file, with the file's messages. `given_as`
    says where they came from ('sweep.run()', 'the command line')."""
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:  # (a TypeError, as for any unknown keyword argument)
        raise TypeError(
            f"{given_as} got unknown settings {', '.join(unknown)}; the settings are "
            f"{', '.join(sorted(OVERRIDABLE))}."
        )
    if not overrides:
        return spec
    doc = tomllib.loads(spec.text) if spec.text else {}
    for key, value in overrides.items():
        if isinstance(value, ParamRange):
            fields = {"low": value.low, "high": value.high, "log": value.log}
            value = {"values": list(value.values)} if value.values is not None else fields
        elif isinstance(value, tuple):
            value = list(value)
        doc.setdefault(OVERRIDABLE[key], {})[key] = value
    shown = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return dataclasses.replace(
        _validate(doc, f"{spec.source} with {shown} ({given_as})", spec.text), source=spec.source
    )


def _validate(doc: dict[str, Any], source: str, text: str) -> StudySpec:
    r = _Reader(source)
    for section in doc:
        if section not in _SECTIONS:
            raise r.fail(
                "the top-level sections", f"among [{'], ['.join(_SECTIONS)}]", f"[{section}]"
            )
        if not isinstance(doc[section], dict):
            raise r.fail(f"[{section}]", "a table of keys", doc[section])
        for key in doc[section]:
            if key not in _SECTIONS[section]:
                raise SpecError(
                    f"{source}: unknown key {key!r} in [{section}]; allowed keys are "
                    f"{', '.join(_SECTIONS[section])}. Check the spelling."
                )
    for section, keys in _REQUIRED.items():
        for key in keys:
            if key not in doc.get(section, {}):
                raise SpecError(
                    f"{source}: [{section}] {key} is missing; it must be "
                    f"{_SECTIONS[section][key]}. Add it to the file."
                )
    study, data = doc.get("study", {}), doc.get("data", {})
    train, space = doc.get("train", {}), doc.get("space", {})

    name = study["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise r.fail("[study] name", _SECTIONS["study"]["name"], name)
    sampler = r.choice(study, "study", "sampler", "tpe", SAMPLERS)
    timeout = study.get("timeout_s")
    if timeout is not None:
        timeout = r.number(timeout, "[study] timeout_s", "a number of seconds > 0")
        if timeout <= 0:
            raise r.fail("[study] timeout_s", "a number of seconds > 0", timeout)
    dataset = data["dataset"]
    if not isinstance(dataset, str) or not dataset.strip():
        raise r.fail("[data] dataset", _SECTIONS["data"]["dataset"], dataset)
    center = data.get("center", False)
    if not isinstance(center, bool):
        raise r.fail("[data] center", "true or false", center)
    standardize = data.get("standardize", False)
    if not isinstance(standardize, bool):
        raise r.fail("[data] standardize", "true or false", standardize)
    if standardize and not center:
        raise r.fail(
            "[data] center",
            "true when standardize = true",
            center,
            "Standardizing subtracts the training mean too: set center = true.",
        )
    data_dir = data.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise r.fail("[data] data_dir", "a folder path (a string)", data_dir)
    loss = r.choice(train, "train", "loss", "vectorized", LOSSES)
    refit = train.get("refit", False)
    if not isinstance(refit, bool):
        raise r.fail("[train] refit", _SECTIONS["train"]["refit"], refit)
    side_by_side = r.integer(train, "train", "side_by_side", 16, 1)
    if loss == "naive" and side_by_side != 1:
        raise r.fail(
            "[train] side_by_side",
            "1 when loss = 'naive'",
            side_by_side,
            "The loop implementation trains one model at a time.",
        )

    grid = sampler == "grid"
    batch = space.get("batch_size", [256])
    if isinstance(batch, int) and not isinstance(batch, bool):
        batch = [batch]
    if (
        not isinstance(batch, list)
        or not batch
        or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch)
    ):
        raise r.fail("[space] batch_size", _SECTIONS["space"]["batch_size"], batch)
    if len(set(batch)) != len(batch):
        raise r.fail("[space] batch_size", "a list without repeated values", batch)

    return StudySpec(
        name=name,
        sampler=sampler,
        n_trials=r.integer(study, "study", "n_trials", 20, 1),
        timeout_s=timeout,
        pruner=r.choice(study, "study", "pruner", "median", PRUNERS),
        seed=r.integer(study, "study", "seed", 0, 0, maximum=2**32 - 1),
        dataset=dataset.strip(),
        val_size=r.integer(data, "data", "val_size", None, 1),
        split_seed=r.integer(data, "data", "split_seed", None, 0, maximum=2**32 - 1),
        center=center,
        standardize=standardize,
        data_dir=data_dir,
        epochs=r.integer(train, "train", "epochs", 10, 1),
        loss=loss,
        side_by_side=side_by_side,
        lr_schedule=r.schedule(train.get("lr_schedule", "constant")),
        learning_rate=r.param(space["learning_rate"], "learning_rate", positive=True, grid=grid),
        reg=r.param(space["reg"], "reg", positive=False, grid=grid),
        batch_size=tuple(sorted(batch)),
        source=source,
        text=text,
        refit=refit,
    )


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"Study file {path} is a folder, not a study file. Pass one of its .toml files (or "
            "copy one of the files in studies/ and edit it)."
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"Study file {path} does not exist. Copy one of the files in studies/ and edit it."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"Study file {path} must be UTF-8 text (TOML), got a byte 0x{exc.object[exc.start]:02x}"
            f" at position {exc.start} that is not. Save it as UTF-8, or check that it is the "
            "study file."
        ) from None
    return parse_spec(text, source=str(path))

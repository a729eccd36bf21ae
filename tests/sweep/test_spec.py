from __future__ import annotations

from pathlib import Path

import pytest

from sweep.spec import (
    ParamRange,
    SpecError,
    identity_differences,
    load_spec,
    parse_spec,
    with_overrides,
)

ROOT = Path(__file__).resolve().parents[2]

VALID = """
[study]
name = "s"
sampler = "tpe"
n_trials = 10
pruner = "median"
seed = 3
[data]
dataset = "fashion-mnist"
val_size = 500
[train]
epochs = 4
side_by_side = 8
[space]
learning_rate = { low = 1e-3, high = 1.0, log = true }
reg = { low = 1e-6, high = 1e-1, log = true }
batch_size = [64, 256]
"""


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_study_files_are_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name and spec.text == path.read_text() and spec.source == str(path)


def test_valid_spec_is_parsed_with_every_field() -> None:
    spec = parse_spec(VALID, "s.toml")
    assert (spec.name, spec.sampler, spec.n_trials, spec.pruner, spec.seed) == (
        "s",
        "tpe",
        10,
        "median",
        3,
    )
    assert (spec.dataset, spec.val_size, spec.epochs, spec.side_by_side) == (
        "fashion-mnist",
        500,
        4,
        8,
    )
    assert (spec.learning_rate.low, spec.learning_rate.high, spec.learning_rate.log) == (
        1e-3,
        1.0,
        True,
    )
    assert spec.batch_size == (64, 256)
    assert spec.grid_size is None


@pytest.mark.parametrize(
    ("line", "described"),
    [
        ("", "constant"),
        ('lr_schedule = "cosine"', "cosine(floor=0)"),
        ('lr_schedule = { kind = "step", every = 3, gamma = 0.1 }', "step(every=3, gamma=0.1)"),
        ('lr_schedule = { kind = "cosine", floor = 0.05 }', "cosine(floor=0.05)"),
    ],
)
def test_the_learning_rate_schedule_is_a_study_setting(line: str, described: str) -> None:
    spec = parse_spec(VALID.replace("epochs = 4", f"epochs = 4\n{line}"), "s.toml")
    assert spec.lr_schedule.describe() == described
    # It changes what every trial computes: part of the study's identity.
    assert spec.identity()["lr_schedule"] == described


def test_the_split_seed_defaults_to_the_study_seed() -> None:
    spec = parse_spec(VALID, "s.toml")
    assert (spec.split_seed, spec.data_seed) == (None, 3)
    pinned = parse_spec(VALID.replace("val_size = 500", "val_size = 500\nsplit_seed = 0"))
    assert pinned.data_seed == 0 and pinned.identity()["split_seed"] == "0"


def test_standardizing_is_a_study_setting_that_needs_centring() -> None:
    assert parse_spec(VALID, "s.toml").standardize is False
    spec = parse_spec(
        VALID.replace("val_size = 500", "val_size = 500\ncenter = true\nstandardize = true")
    )
    assert spec.standardize and spec.identity()["standardize"] == "true"
    with pytest.raises(ValueError, match=r"\[data\] center must be true when standardize = true"):
        parse_spec(VALID.replace("val_size = 500", "val_size = 500\nstandardize = true"), "s.toml")
    with pytest.raises(ValueError, match=r"\[data\] standardize must be true or false, got 1"):
        parse_spec(VALID.replace("val_size = 500", "val_size = 500\nstandardize = 1"), "s.toml")


def test_a_study_made_before_a_setting_existed_had_its_old_behaviour() -> None:
    # Stored by an older softsweep: no lr_schedule (constant), no split_seed (the seed's), no
    # standardize (false).
    old = parse_spec(VALID, "s.toml").identity()
    del old["lr_schedule"], old["split_seed"], old["standardize"]
    assert identity_differences(old, parse_spec(VALID, "s.toml")) == []
    changed = VALID.replace(
        "val_size = 500", "val_size = 500\nsplit_seed = 0\ncenter = true\nstandardize = true"
    ).replace("epochs = 4", 'epochs = 4\nlr_schedule = "cosine"')
    assert identity_differences(old, parse_spec(changed, "s.toml")) == [
        "split_seed: 3 -> 0",
        "center: false -> true",
        "standardize: false -> true",
        "lr_schedule: constant -> cosine(floor=0)",
    ]


def test_grid_spec_counts_its_cells() -> None:
    text = (
        VALID.replace('sampler = "tpe"', 'sampler = "grid"')
        .replace("{ low = 1e-3, high = 1.0, log = true }", "{ values = [0.1, 0.01, 1.0] }")
        .replace("{ low = 1e-6, high = 1e-1, log = true }", "{ values = [0, 1e-3] }")
    )
    spec = parse_spec(text)
    assert spec.grid_size == 3 * 2 * 2
    assert spec.learning_rate.values == (0.01, 0.1, 1.0)  # sorted: axes in increasing order


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (
            "seed = 3",
            "seed = 3\nseeds = 4",
            r"s.toml: unknown key 'seeds' in \[study\]; allowed keys are name, sampler, n_trials",
        ),
        (
            "[train]",
            "[training]",
            r"s.toml: the top-level sections must be among \[study\], \[data\], \[train\], \[space\], got '\[training\]'",
        ),
        (
            'sampler = "tpe"',
            'sampler = "bayes"',
            r"s.toml: \[study\] sampler must be one of grid, random, tpe, qmc, cmaes, got 'bayes'",
        ),
        (
            'pruner = "median"',
            'pruner = "asha"',
            r"\[study\] pruner must be one of none, median, hyperband, got 'asha'",
        ),
        (
            "n_trials = 10",
            'n_trials = "10"',
            r"\[study\] n_trials must be an integer >= 1 .*, got '10'",
        ),
        ("n_trials = 10", "n_trials = 0", r"\[study\] n_trials must be an integer >= 1 .*, got 0"),
        ("epochs = 4", "epochs = 2.5", r"\[train\] epochs must be an integer >= 1, got 2.5"),
        (
            "low = 1e-3, high = 1.0",
            "low = 1.0, high = 1e-3",
            r"\[space\] learning_rate must be a range with low < high, got 'low=1, high=0.001'",
        ),
        (
            "low = 1e-6, high = 1e-1, log = true",
            "low = 0, high = 1e-1, log = true",
            r"\[space\] reg.low must be > 0 when log = true \(a log scale has no 0\), got 0.0",
        ),
        (
            "low = 1e-3, high = 1.0, log = true",
            "low = -1.0, high = 1.0",
            r"\[space\] learning_rate.low must be a number > 0, got -1.0",
        ),
        (
            "batch_size = [64, 256]",
            "batch_size = []",
            r"\[space\] batch_size must be a list of integers >= 1",
        ),
        (
            "batch_size = [64, 256]",
            "batch_size = [64, 0]",
            r"\[space\] batch_size must be a list of integers >= 1",
        ),
        (
            'dataset = "fashion-mnist"',
            "dataset = 5",
            r"\[data\] dataset must be mnist, fashion-mnist, cifar10, or a folder",
        ),
        (
            "side_by_side = 8",
            'side_by_side = 8\nloss = "naive"',
            r"\[train\] side_by_side must be 1 when loss = 'naive', got 8. The loop implementation",
        ),
        ('[data]\ndataset = "fashion-mnist"', "[data]", r"s.toml: \[data\] dataset is missing"),
        (
            "epochs = 4",
            'epochs = 4\nlr_schedule = "linear"',
            r"s.toml: \[train\] lr_schedule must be one of constant, step, cosine, or a table",
        ),
        (
            "epochs = 4",
            'epochs = 4\nlr_schedule = { kind = "cosine", gamma = 0.5 }',
            r"\[train\] lr_schedule.gamma must be a setting of cosine \(its settings: floor\), "
            "got 0.5",
        ),
        (
            "epochs = 4",
            'epochs = 4\nlr_schedule = { kind = "step", gamma = 2 }',
            r"s.toml: \[train\] lr_schedule: schedule gamma must be a number in \(0, 1\], got 2",
        ),
        ('name = "s"', 'name = "s', r"s.toml: not valid TOML"),
    ],
)
def test_bad_specs_name_the_file_key_and_rule(old: str, new: str, match: str) -> None:
    assert old in VALID
    with pytest.raises(ValueError, match=match):
        parse_spec(VALID.replace(old, new), "s.toml")


def test_empty_grid_is_refused() -> None:
    text = VALID.replace('sampler = "tpe"', 'sampler = "grid"').replace(
        "{ low = 1e-3, high = 1.0, log = true }", "{ values = [] }"
    )
    with pytest.raises(
        ValueError,
        match=r"\[space\] learning_rate.values must be a non-empty list of numbers, got \[\]. An empty grid",
    ):
        parse_spec(text, "s.toml")


def test_grid_needs_values() -> None:
    text = VALID.replace('sampler = "tpe"', 'sampler = "grid"')
    with pytest.raises(
        ValueError,
        match=r"\[space\] learning_rate must be \{ values = \[...\] \} for the grid sampler",
    ):
        parse_spec(text, "s.toml")


def test_missing_file() -> None:
    with pytest.raises(
        FileNotFoundError,
        match=r"Study file nowhere.toml does not exist. Copy one of the files in studies/",
    ):
        load_spec("nowhere.toml")


@pytest.mark.parametrize("name", ["", " spaced", "it's", "a/b", "x" * 101])
def test_study_name_must_be_safe_for_filters_and_folders(name: str) -> None:
    with pytest.raises(
        ValueError, match=r"\[study\] name must be a name of letters, digits, '.', '_' or '-'"
    ):
        parse_spec(VALID.replace('name = "s"', f'name = "{name}"'), "s.toml")


def test_a_study_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[study]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(
        ValueError, match=r"latin1.toml must be UTF-8 text \(TOML\), got a byte 0xe9"
    ):
        load_spec(path)


def test_a_study_path_that_is_a_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"is a folder, not a study file"):
        load_spec(tmp_path)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_outside_numpys_range_is_refused_in_the_file(seed: int) -> None:
    text = VALID.replace("seed = 3", f"seed = {seed}")
    with pytest.raises(ValueError, match=r"\[study\] seed must be an integer from 0 to 4294967295"):
        parse_spec(text, "s.toml")


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"side_by_side": 0}, r"\[train\] side_by_side must be an integer >= 1"),
        ({"n_trials": -1}, r"\[study\] n_trials must be an integer >= 1"),
        ({"n_trials": "5"}, r"\[study\] n_trials must be .*, got '5'"),
        ({"timeout_s": float("nan")}, r"\[study\] timeout_s must be a number of seconds > 0"),
        ({"timeout_s": float("inf")}, r"\[study\] timeout_s must be a number of seconds > 0"),
        ({"timeout_s": -5}, r"\[study\] timeout_s must be a number of seconds > 0"),
        ({"epochs": 0}, r"\[train\] epochs must be an integer >= 1"),
        ({"batch_size": [0]}, r"\[space\] batch_size must be a list of integers >= 1"),
        ({"learning_rate": 5}, r"\[space\] learning_rate must be \{ low = \.\.\."),
        ({"seed": "x"}, r"\[study\] seed must be an integer from 0"),
        ({"sampler": "nope"}, r"\[study\] sampler must be one of grid"),
    ],
)
def test_overrides_are_validated_as_the_file_is(override: dict, match: str) -> None:
    spec = parse_spec(VALID, "s.toml")
    (key,) = override
    with pytest.raises(SpecError, match=rf"^s\.toml with {key}=.* \(sweep\.run\(\)\): {match}"):
        with_overrides(spec, override, "sweep.run()")


def test_overrides_replace_the_files_settings_and_keep_its_text() -> None:
    spec = parse_spec(VALID, "s.toml")
    lr = ParamRange(values=(0.1, 0.3))
    changed = with_overrides(spec, {"n_trials": 3, "batch_size": (32,), "learning_rate": lr}, "x")
    assert (changed.n_trials, changed.batch_size, changed.learning_rate) == (3, (32,), lr)
    assert changed.text == spec.text and changed.source == "s.toml"
    assert with_overrides(spec, {}, "x") is spec
    with pytest.raises(TypeError, match=r"^x got unknown settings name, trials; the settings"):
        with_overrides(spec, {"trials": 3, "name": "other"}, "x")

"""Reports: what each figure shows (cells, states, axes, panels, titles, image sizes), checked on
studies run for real (tiny IDX data, SQLite + MLflow stores in a temporary home), and
`sweep report` rebuilding the same files from the stores alone."""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from sweep.cli import main
from sweep.report import files as reports
from sweep.report import view as views  # (views.TestView: pytest collects Test* names)
from sweep.report.figures import (
    confusion_figure,
    heatmap_figure,
    templates_figure,
    timing_figure,
)
from sweep.report.view import (
    StudyView,
    TrialView,
    cell_axes,
    describe_edges,
    gather,
    heatmap_cells,
    power_label,
    range_edges,
    reg_path,
    template_images,
)
from sweep.spec import ParamRange, parse_spec
from sweep.store.home import Home
from sweep.store.study import stored_spec
from sweep.track.tracker import Tracker
from tests.helpers import run_spec, spec_text, write_idx_dataset

GRID_LR = "{ values = [0.03, 0.3, 1000.0] }"  # 1000 with reg 1 diverges in epoch 1
GRID_REG = "{ values = [0.0, 1e-3, 1.0] }"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "blobs", n_train=400, n_test=150)


@pytest.fixture(scope="module")
def grid(home: Path, data_folder: Path):
    """A 3 x 3 grid with one batch size; lr=1000 diverges where reg=1."""
    text = spec_text("rgrid", data_folder, lr=GRID_LR, reg=GRID_REG, batch="[16]", side_by_side=9)
    outcome = run_spec(text, home, "rgrid.toml")
    return outcome, optuna.load_study(study_name="rgrid", storage=f"sqlite:///{home / 'optuna.db'}")


@pytest.fixture(scope="module")
def view(grid, home: Path) -> StudyView:
    """What `sweep report` draws for the grid study, gathered from its stores."""
    _, study = grid
    where = Home.resolve(home)
    tracker = Tracker(where.tracking_uri, "rgrid", create=False)
    try:
        return gather(study, stored_spec(study, where.storage), tracker, where)
    finally:
        tracker.close()


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0.0, "0"),
        (1.0, "1"),
        (0.3, "3\u00d710⁻¹"),
        (1e-3, "10⁻³"),
        (0.03, "3\u00d710⁻²"),
        (1000.0, "10³"),
        (-1e-12, "-10⁻¹²"),
        (0.0031622776, "3.2\u00d710⁻³"),
    ],
)
def test_axis_labels_are_powers_of_ten(value: float, label: str) -> None:
    assert power_label(value) == label


def test_grid_heatmap_has_every_cell_once_with_states_and_the_best_outlined(grid) -> None:
    outcome, study = grid
    folder = outcome.report_dir
    data = json.loads((folder / "report.json").read_text())
    cells = data["heatmap"]["cells"]
    # 3 x 3 grid cells, exact values on both axes, in increasing order.
    assert data["heatmap"]["learning_rate"]["values"] == [0.03, 0.3, 1000.0]
    assert data["heatmap"]["reg"]["values"] == [0.0, 1e-3, 1.0]
    assert sorted((c["lr_cell"], c["reg_cell"]) for c in cells) == [
        (i, j) for i in range(3) for j in range(3)
    ]
    by_trial = {t.number: t for t in study.trials}
    for c in cells:
        if c["state"] == "complete":
            # The cell shows its trial's own validation accuracy, never a made-up number.
            assert c["value"] == by_trial[c["trial"]].value
        else:
            assert c["value"] is None
    diverged = [c for c in cells if c["state"] == "diverged"]
    assert [(c["lr_cell"], c["reg_cell"]) for c in diverged] == [(2, 2)]
    best = [c for c in cells if c["best"]]
    assert len(best) == 1 and best[0]["trial"] == study.best_trial.number


def test_heatmap_figure_axes_panels_and_marks(grid, view: StudyView) -> None:
    _, study = grid
    fig = heatmap_figure(view, heatmap_cells(view))
    panels = [ax for ax in fig.axes if ax.get_title().startswith("batch size")]
    assert [ax.get_title() for ax in panels] == ["batch size 16"]
    ax = panels[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        power_label(0.03),
        power_label(0.3),
        power_label(1000.0),
    ]
    # Rows run top to bottom; reg grows upwards, so the labels read from the largest down.
    ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True))
    assert [label for _, label in ticks] == [power_label(1.0), power_label(1e-3), "0"]
    texts = [t.get_text() for t in ax.texts]
    assert "diverged" in texts
    best = study.best_value
    assert f"{best:.4f}" in texts
    # The colours span the top 0.03 below the best (the worse cells share the darkest colour)
    (bar,) = [a for a in fig.axes if a.get_ylabel().startswith("validation accuracy")]
    values = [c["value"] for c in heatmap_cells(view) if c["value"] is not None]
    assert bar.get_ylim()[0] == pytest.approx(max(min(values), best - 0.03))
    assert min(values) < best - 0.03 and "the top 0.03" in bar.get_ylabel()
    outlined = [
        p
        for p in ax.patches
        if p.get_edgecolor()[:3] == pytest.approx((0.839, 0.153, 0.157), abs=1e-3)
    ]
    assert len(outlined) == 1


def test_templates_one_panel_per_class_titled_with_class_names(
    view: StudyView,
) -> None:
    best = view.best
    assert best is not None
    images = template_images(view.weights[best.number], view.image_shape)
    fig = templates_figure(view, best, images)
    (ax,) = [ax for ax in fig.axes if ax.images]  # one image for every class
    assert [t.get_text() for t in ax.texts] == ["0", "1", "2"]  # the tiny data's class names
    # The weights themselves on a diverging map centred at 0, one scale for every class; the
    # panels are the (6, 5) images side by side, blank (NaN: white) between them.
    image = ax.images[0]
    W = view.weights[best.number][:-1]
    limit = float(np.abs(W).max())
    assert image.get_cmap().name == "RdBu_r" and image.get_clim() == (-limit, limit)
    canvas = np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)
    rows = np.flatnonzero(np.isfinite(canvas).any(axis=1))
    columns = np.flatnonzero(np.isfinite(canvas).any(axis=0))
    panels = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    assert len(rows) == 6 and [len(p) for p in panels] == [5, 5, 5]
    for k, panel in enumerate(panels):
        np.testing.assert_allclose(canvas[rows][:, panel], W[:, k].reshape(6, 5))


def test_the_regularization_path_is_the_best_learning_rates_trials_by_reg(
    grid, view: StudyView
) -> None:
    outcome, _ = grid
    data = json.loads((outcome.report_dir / "report.json").read_text())
    best = view.best
    assert best is not None
    path = data["path"]
    # The grid's three regs at the best learning rate (the one batch size), in order of reg
    assert [p["reg"] for p in path] == [0.0, 1e-3, 1.0]
    assert {p["learning_rate"] for p in path} == {best.learning_rate}
    for p in path:  # the L2 part is reg * sum(W ** 2) of the trial's final weights
        W = view.weights[p["trial"]].astype(np.float64)
        assert p["l2_term"] == pytest.approx(p["reg"] * np.sum(W**2), rel=1e-5, abs=1e-12)
        assert 0 <= p["l2_term"] < p["train_loss"]
    assert (outcome.report_dir / "path.png").stat().st_size > 5000
    # A sampled learning rate: the trials within a quarter decade of the best's
    trials = [TrialView(n, "complete", lr, reg, 16, 0.8 + n / 100)
              for n, (lr, reg) in enumerate([(0.01, 1e-4), (0.012, 1e-3), (0.0085, 1e-2),
                                             (0.05, 1e-3), (0.011, 0.1)])]  # fmt: skip
    sampled = dataclasses.replace(view, trials=trials, spec=dataclasses.replace(
        view.spec, learning_rate=ParamRange(1e-4, 1.0, log=True)))  # fmt: skip
    assert [t.number for t in reg_path(sampled)] == [0, 1, 2, 4]  # not lr 0.05
    assert reg_path(dataclasses.replace(sampled, trials=trials[:2])) == []  # under 3 regs


def test_a_best_on_the_edge_of_its_range_is_named(view: StudyView, data_folder: Path) -> None:
    ranged = parse_spec(
        spec_text("edge", data_folder, sampler="tpe", lr="{ low = 1e-4, high = 0.1, log = true }",
                  reg="{ low = 1e-5, high = 1.0, log = true }"), "edge.toml",
    )  # fmt: skip

    def best_at(lr: float, reg: float) -> StudyView:
        trial = TrialView(1, "complete", lr, reg, 16, 0.85)
        return dataclasses.replace(view, spec=ranged, trials=[trial])

    # 0.0879 is 98% of the way up 1e-4..0.1 on a log scale; 5% is the edge
    assert range_edges(best_at(0.0879, 1e-3)) == [
        ("learning_rate", "high", 0.0879, ranged.learning_rate)
    ]
    assert range_edges(best_at(0.01, 1e-3)) == []
    assert [(n, side) for n, side, _, _ in range_edges(best_at(1.1e-4, 1.2e-5))] == [
        ("learning_rate", "low"), ("reg", "low"),
    ]  # fmt: skip
    (sentence,) = describe_edges(best_at(0.0879, 1e-3))
    assert (
        "learning rate (0.0879) is at the high end of its searched range (0.0001..0.1 (log))"
        in (sentence)
    )
    # A grid's edge is its first or last value: the grid study's best
    best = view.best
    assert best is not None
    on_edge = {name for name, _, _, _ in range_edges(view)}
    assert ("learning_rate" in on_edge) == (best.learning_rate in (0.03, 1000.0))


def test_gallery_lays_out_each_cells_templates_on_the_grid(grid) -> None:
    outcome, study = grid
    data = json.loads((outcome.report_dir / "report.json").read_text())
    complete = {
        (t.params["learning_rate"], t.params["reg"]): t.number
        for t in study.trials
        if t.state.name == "COMPLETE"
    }
    lr_values, reg_values = [0.03, 0.3, 1000.0], [0.0, 1e-3, 1.0]
    expected = {
        f"{lr_values.index(lr)},{reg_values.index(reg)}": n for (lr, reg), n in complete.items()
    }
    assert data["gallery"] == expected  # 8 models; the diverged cell has none
    assert (outcome.report_dir / "gallery.png").is_file()


def test_curves_history_importances_timing_and_page(grid) -> None:
    outcome, study = grid
    folder = outcome.report_dir
    data = json.loads((folder / "report.json").read_text())
    complete = sorted(
        (t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: -t.value
    )
    assert data["curves"]["top"][0] == complete[0].number
    curves = data["curves"]["values"][str(complete[0].number)]
    # The course's three panels, one value per epoch (3 epochs), from the trial's Optuna record.
    assert {k: len(v) for k, v in curves.items()} == {
        "train_loss": 3, "train_accuracy": 3, "val_accuracy": 3,
    }  # fmt: skip
    assert curves["val_accuracy"][-1] == pytest.approx(complete[0].value)
    assert [n for n, _ in data["history"]] == sorted(t.number for t in complete)
    assert set(data["importances"]) == {"learning_rate", "reg"}  # batch size does not vary
    timing = data["loss_timing"]
    # Every run kept (best and spread), the thread count stated, the training epoch compared.
    assert len(timing["naive_runs"]) == 5 and len(timing["vectorized_runs"]) == 25
    assert min(timing["naive_runs"]) > min(timing["vectorized_runs"]) > 0
    assert timing["threads"]
    epoch = timing["train"]
    assert len(epoch["loop_runs"]) == len(epoch["matrix_runs"]) == 3
    assert epoch["loop_val_accuracy"] == pytest.approx(epoch["matrix_val_accuracy"], abs=0.01)
    page = (folder / "index.html").read_text()
    for name in ("heatmap.png", "templates.png", "gallery.png", "curves.png", "timing.png"):
        assert f'src="{name}"' in page and (folder / name).stat().st_size > 1000
    assert page.count("<tr><td") == len(study.trials)
    assert "diverged at epoch 1" in page
    assert "bar: median" in timing_figure(timing).axes[0].get_xlabel()
    assert timing_figure(timing).axes[0].get_title().startswith("Loss + gradient: vectorized is")


def test_reports_are_artifacts_of_the_study_run(grid, home: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rgrid")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`softsweep.role` = 'study'")
    names = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "reports")}
    assert {"heatmap.png", "templates.png", "gallery.png", "curves.png", "index.html"} <= names


def test_only_the_reports_own_files_are_logged_while_another_worker_writes_there(
    grid, home: Path
) -> None:
    """Two workers that finish together both close the study and write the same report
    folder; one's temporary files (there for a moment, then renamed) must not be logged by the
    other: logging the whole folder failed with "No such file or directory: ....tmp"."""
    outcome, _ = grid
    folder = outcome.report_dir
    stray = folder / "gallery.png.999999.tmp"  # another worker, mid-write
    stray.write_bytes(b"half a picture")
    tracker = Tracker(f"sqlite:///{home / 'mlflow.db'}", "rgrid", create=False)
    try:
        tracker.parent_id = tracker.find_study_run("rgrid")
        tracker.log_reports(sorted(folder.glob("*.png")))
        gone = folder / "not-there.png"  # a file that went away meanwhile: skipped, no crash
        tracker.log_reports([gone])
    finally:
        tracker.close()
        stray.unlink()
    assert tracker.errors == []
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    names = {Path(f.path).name for f in client.list_artifacts(tracker.parent_id, "reports")}
    assert not [n for n in names if n.endswith(".tmp")]
    assert {p.name for p in folder.glob("*.png")} <= names


def test_sweep_report_rebuilds_the_same_files_without_training(grid, home: Path) -> None:
    outcome, _ = grid
    folder = outcome.report_dir
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for path in folder.iterdir():
        path.unlink()
    result = CliRunner().invoke(main, ["report", "rgrid", "--home", str(home)])
    assert result.exit_code == 0, result.output
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after.keys() == before.keys()
    # Same data from the stores as from memory: the same numbers, the same pictures (the page
    # differs only in the time it was generated).
    generated = re.compile(rb"Generated [^<]*\.")
    for name in ("index.html",):
        before[name], after[name] = (generated.sub(b"", f[name]) for f in (before, after))
    assert after == before


def test_binned_heatmap_for_a_random_study_with_pruning_and_colour_images(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    colour = write_idx_dataset(
        tmp_path_factory.mktemp("colour") / "rgb", image_shape=(5, 6, 3), n_classes=4
    )
    text = spec_text(
        "rand",
        colour,
        sampler="random",
        n_trials=16,
        pruner="median",
        side_by_side=8,
        epochs=4,
        lr="{ low = 1e-3, high = 1.0, log = true }",
        reg="{ low = 1e-6, high = 1e-1, log = true }",
        batch="[16, 32]",
    )
    outcome = run_spec(text, home, "rand.toml")
    data = json.loads((outcome.report_dir / "report.json").read_text())
    edges = data["heatmap"]["learning_rate"]["edges"]
    # lr 1e-3..1 is 3 decades: 6 half-decade bins, log-spaced, increasing.
    assert len(edges) == 7 and edges[0] == pytest.approx(1e-3) and edges[-1] == pytest.approx(1)
    assert np.allclose(np.diff(np.log10(edges)), 0.5)
    cells = data["heatmap"]["cells"]
    assert sum(c["n_trials"] for c in cells) == 16  # every trial lands in one cell
    assert {c["batch_size"] for c in cells} == {16, 32}  # one panel per batch size
    if outcome.n_pruned:
        assert any(c["state"] == "pruned" for c in cells) or any(c["n_trials"] > 1 for c in cells)
    for c in cells:
        if c["state"] == "complete":
            assert isinstance(c["value"], float) and not math.isnan(c["value"])
    # Colour data: templates in the data's own shape and colour.
    assert data["templates"]["image_shape"] == [5, 6, 3]
    assert data["templates"]["classes"] == ["0", "1", "2", "3"]
    assert "gallery" not in data  # a gallery needs grid cells


def test_template_images_keep_the_image_shape_and_drop_the_bias() -> None:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4 * 7 + 1, 3))
    W[-1] = 1e6  # the bias row must not take part in the scaling
    images = template_images(W, (4, 7))
    assert images.shape == (3, 4, 7) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    np.testing.assert_array_equal(images[1], template_images(W, (4, 7))[1])
    rgb = template_images(rng.standard_normal((5 * 6 * 3 + 1, 2)), (5, 6, 3))
    assert rgb.shape == (2, 5, 6, 3)
    with pytest.raises(ValueError, match=r"do not match images of shape \(4, 4\)"):
        template_images(W, (4, 4))


def test_non_square_templates_render(tmp_path: Path, data_folder: Path) -> None:
    spec = parse_spec(
        spec_text("ns", data_folder, lr="{ values = [0.1] }", reg="{ values = [0.0] }")
    )
    rng = np.random.default_rng(1)
    W = rng.standard_normal((3 * 8 + 1, 2))
    view = StudyView(
        spec=spec,
        trials=[TrialView(0, "complete", 0.1, 0.0, 16, 0.9)],
        image_shape=(3, 8),
        class_names=("cat", "dog"),
        weights={0: W},
    )
    written = reports.write_report(view, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["templates"] == {"trial": 0, "classes": ["cat", "dog"], "image_shape": [3, 8]}
    assert (tmp_path / "r" / "templates.png") in written.files


def test_drawing_leaves_the_garbage_collector_as_it_found_it(
    tmp_path: Path, data_folder: Path
) -> None:
    spec = parse_spec(spec_text("gc", data_folder, lr="{ values = [0.1] }"))
    view = StudyView(
        spec=spec,
        trials=[TrialView(0, "complete", 0.1, 0.0, 16, 0.9)],
        image_shape=(6, 5),
        class_names=("a", "b", "c"),
    )
    assert gc.isenabled()
    reports.write_report(view, tmp_path / "on")
    assert gc.isenabled()  # (paused while drawing only)
    with pytest.raises(RuntimeError, match="no finished trial"):
        reports.write_report(dataclasses.replace(view, trials=[]), tmp_path / "none")
    assert gc.isenabled()
    gc.disable()
    try:
        reports.write_report(view, tmp_path / "off")
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
    assert (tmp_path / "off" / "heatmap.png").is_file()


def test_confusion_matrix_names_the_classes_on_both_axes(data_folder: Path) -> None:
    spec = parse_spec(spec_text("conf", data_folder, lr="{ values = [0.1] }"))
    view = StudyView(spec=spec, trials=[], image_shape=(6, 5), class_names=("ant", "bee", "cat"))
    counts = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 9]])
    fig = confusion_figure(view, views.TestView(0, 21 / 24, counts, [], []))
    ax = next(a for a in fig.axes if a.get_xlabel() == "predicted class")
    for ticks, labels in ((ax.get_xticks(), ax.get_xticklabels()),
                          (ax.get_yticks(), ax.get_yticklabels())):  # fmt: skip
        assert list(ticks) == [0.5, 1.5, 2.5]  # each name at its cell's centre
        assert [t.get_text() for t in labels] == ["ant", "bee", "cat"]
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(counts.ravel().tolist())


def test_states_without_completed_trials_are_marked_not_blank(data_folder: Path) -> None:
    spec = parse_spec(spec_text("states", data_folder, lr="{ values = [0.1, 1.0] }"))
    trials = [
        TrialView(0, "diverged", 0.1, 0.0, 16, None, reason="diverged at epoch 2: loss=inf"),
        TrialView(1, "error", 1.0, 0.0, 16, None, reason="training failed: MemoryError"),
        TrialView(2, "pruned", 0.1, 1e-3, 16, None),
        TrialView(3, "complete", 1.0, 1e-3, 16, 0.5),
        TrialView(4, "pruned", 1.0, 1e-3, 16, None),
    ]
    view = StudyView(spec=spec, trials=trials, image_shape=(6, 5), class_names=("a", "b", "c"))
    lr_axis, reg_axis = cell_axes(view)
    assert lr_axis.values == (0.1, 1.0) and reg_axis.values == (0.0, 1e-3)
    cells = {(c["lr_cell"], c["reg_cell"]): c for c in heatmap_cells(view)}
    assert cells[(0, 0)]["state"] == "diverged"
    assert cells[(1, 0)]["state"] == "error"
    assert cells[(0, 1)]["state"] == "pruned"
    # A completed trial wins its cell; the count says how many shared it.
    assert cells[(1, 1)]["state"] == "complete" and cells[(1, 1)]["n_trials"] == 2
    assert cells[(1, 1)]["best"] and cells[(1, 1)]["value"] == 0.5


def test_a_study_with_no_completed_trial_gets_a_message_and_its_heatmap(
    home: Path, data_folder: Path, tmp_path: Path
) -> None:
    text = spec_text(
        "rall-fail", data_folder, lr="{ values = [1000.0] }", reg="{ values = [1.0] }", batch="[16]"
    )
    outcome = run_spec(text, home, "f.toml")
    assert outcome.n_complete == 0
    assert any("No trial completed" in n for n in outcome.report_notes)
    result = CliRunner().invoke(main, ["report", "rall-fail", "--home", str(home)])
    assert result.exit_code == 1
    assert "error: study 'rall-fail' has no completed trial" in result.output
    assert "Traceback" not in result.output
    folder = home / "reports" / "rall-fail"
    assert (folder / "heatmap.png").is_file() and not (folder / "templates.png").exists()


def test_report_of_an_unknown_study_is_a_usage_error(home: Path) -> None:
    result = CliRunner().invoke(main, ["report", "nope", "--home", str(home)])
    assert result.exit_code == 2
    assert "No study named 'nope'" in result.output


def test_a_sweep_started_from_a_script_on_stdin_draws_its_report_in_process(
    data_folder: Path, tmp_path: Path
) -> None:
    """A sweep from a script with no file (`python - <<EOF`, as a notebook's kernel has none):
    the report is drawn, and nothing is printed about it."""
    import subprocess
    import sys

    study = tmp_path / "stdin.toml"
    study.write_text(spec_text("stdin", data_folder, reg="{ values = [0.0] }", batch="[32]"))
    script = (
        "from pathlib import Path\n"
        "from sweep.store.home import Home\n"
        "from sweep.launch import run_study\n"
        "from sweep.spec import load_spec\n"
        f"out = run_study(load_spec({str(study)!r}), Home.resolve({str(tmp_path / 'h')!r}))\n"
        "print(out.report_dir)\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr
    assert (Path(done.stdout.strip()) / "index.html").is_file()


def test_a_rerun_with_nothing_new_keeps_the_report_and_new_trials_redraw_it(
    data_folder: Path, tmp_path: Path
) -> None:
    text = spec_text("again", data_folder, lr="{ values = [0.1, 1.0] }", batch="[16]", n_trials=2)
    first = run_spec(text, tmp_path / "home")
    heatmap = first.closing.report_dir / "heatmap.png"
    drawn = heatmap.stat().st_mtime_ns
    again = run_spec(text, tmp_path / "home")  # the target is reached: nothing to train
    assert again.trials_this_run == 0
    assert heatmap.stat().st_mtime_ns == drawn  # the same trials: the same report, kept
    assert again.closing.report_dir == first.closing.report_dir
    more = run_spec(text.replace("n_trials = 2", "n_trials = 4"), tmp_path / "home")
    assert more.trials_this_run == 2
    assert heatmap.stat().st_mtime_ns > drawn  # new trials: drawn again
    data = json.loads((more.closing.report_dir / "report.json").read_text())
    assert len(data["history"]) == 4

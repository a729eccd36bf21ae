"""The `sweep` command line. Exit codes: 0 success, 1 failure, 2 bad usage or bad input."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn: F) -> F:
    """Turn bad input into one paragraph and exit code 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            _fail(str(exc), EXIT_USAGE)
        except RuntimeError as exc:
            _fail(str(exc), EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = []
        for cell, width in zip(cells, widths, strict=True):
            numeric = cell[:1].isdigit() or (cell[:1] in "-+." and cell[1:2].isdigit())
            out.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """softsweep: hyperparameter sweeps and experiment tracking for softmax classifiers."""


@main.command()
@click.option(
    "--dataset",
    default="fashion-mnist",
    show_default=True,
    help="mnist, fashion-mnist, cifar10, or a folder with the four IDX files.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder holding the dataset's files (searched first).",
)
@click.option("--samples", default=500, show_default=True, help="Training examples to use.")
@click.option("--reg", default=1e-4, show_default=True, help="L2 strength.")
@click.option("--seed", default=0, show_default=True)
@friendly_errors
def check(dataset: str, data_dir: Path | None, samples: int, reg: float, seed: int) -> None:
    """Naive vs vectorized loss and gradient on a sample: difference, times, speedup, gradcheck."""
    import engine

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}.")
    data = engine.load_dataset(dataset, data_dir=data_dir, seed=seed)
    rng = np.random.default_rng(seed)
    pick = rng.choice(
        data.X_train.shape[0], size=min(samples, data.X_train.shape[0]), replace=False
    )
    result = engine.compare_losses(
        data.X_train[pick], data.y_train[pick], data.n_classes, reg=reg, seed=seed
    )
    click.echo(
        f"{data.name}: {result.n_samples} samples x {result.n_features} features "
        f"(bias included), {result.n_classes} classes, reg={reg:g}, float64"
    )
    rows = [
        ["naive", f"{result.loss_naive:.10f}", f"{result.naive_s * 1e3:.2f}", "1.0x"],
        [
            "vectorized",
            f"{result.loss_vectorized:.10f}",
            f"{result.vectorized_s * 1e3:.3f}",
            f"{result.speedup:.0f}x",
        ],
    ]
    click.echo(format_table(["loss", "value", "time (ms)", "speedup"], rows))
    click.echo(f"|loss difference|         {abs(result.loss_naive - result.loss_vectorized):.3e}")
    click.echo(f"max |gradient difference| {result.grad_max_abs_diff:.3e}")
    click.echo(
        f"gradient check rel. error {result.gradcheck_rel_error:.3e} (numerical vs analytic)"
    )


_HOME = click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the embedded stores and reports [default: $SOFTSWEEP_HOME or ./.softsweep].",
)
_STORAGE = click.option(
    "--storage",
    default=None,
    help="Optuna storage URL, e.g. postgresql+psycopg2://user:pw@host/db.",
)
_TRACKING = click.option(
    "--tracking-uri", default=None, help="MLflow tracking URI, e.g. http://127.0.0.1:5000."
)


_HEARTBEAT = click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds between a worker's heartbeats; a worker silent for 3x this is dead and its "
    "trials are retried  [default: 10].",
)


@main.command()
@click.argument("study_file", type=click.Path(path_type=Path))
@_HOME
@_STORAGE
@_TRACKING
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes sharing the study (embedded store or --storage).",
)
@_HEARTBEAT
@friendly_errors
def run(
    study_file: Path,
    home: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    workers: int,
    heartbeat: int | None,
) -> None:
    """Run (or resume) the study described by STUDY_FILE until it has n_trials trials."""
    _sweep(study_file, home, storage, tracking_uri, heartbeat, workers=workers, finish="always")


@main.command()
@click.argument("study_file", type=click.Path(path_type=Path))
@_HOME
@_STORAGE
@_TRACKING
@_HEARTBEAT
@click.option(
    "--finish",
    type=click.Choice(["last", "never"]),
    default="last",
    show_default=True,
    help="Whether this worker closes the study (test accuracy, report) when it is the last.",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@friendly_errors
def worker(
    study_file: Path,
    home: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    heartbeat: int | None,
    finish: str,
    quiet: bool,
) -> None:
    """Join (or create) the study of STUDY_FILE and work on it until its target is reached.

    Start any number of workers, on any number of machines, with the same --storage (Optuna,
    e.g. PostgreSQL) and --tracking-uri (an MLflow server). A worker killed mid-trial is noticed
    by the others through its missing heartbeats; its trial is failed and run again.
    """
    _sweep(study_file, home, storage, tracking_uri, heartbeat, finish=finish, quiet=quiet)


@main.command()
@click.argument("study_file", type=click.Path(path_type=Path))
@_HOME
@_STORAGE
@_TRACKING
@friendly_errors
def create(
    study_file: Path, home: Path | None, storage: str | None, tracking_uri: str | None
) -> None:
    """Create the study of STUDY_FILE in the stores (and queue a grid's cells), then exit.

    The one-shot step before starting workers; running it again changes nothing.
    """
    from .runner import prepare_study, resolve_home
    from .spec import load_spec

    spec = load_spec(study_file)
    queued = prepare_study(
        spec, home=resolve_home(home), storage=storage, tracking_uri=tracking_uri
    )
    click.echo(
        f"study {spec.name!r} is ready"
        + (f"; {queued} grid cells queued" if queued else "")
        + f". Start workers with: sweep worker {study_file} (same --storage and --tracking-uri)"
    )


def _sweep(
    study_file: Path,
    home: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    heartbeat: int | None,
    *,
    workers: int = 1,
    finish: str = "always",
    quiet: bool = False,
) -> None:
    from tqdm import tqdm

    from .runner import resolve_home, run_study
    from .spec import load_spec
    from .workers import HEARTBEAT_S

    spec = load_spec(study_file)
    home_path = resolve_home(home)
    bar: list[Any] = []

    def on_start(done: int, target: int) -> None:
        if not quiet:
            bar.append(
                tqdm(
                    total=target,
                    initial=done,
                    desc=spec.name,
                    unit="trial",
                    dynamic_ncols=True,
                    file=sys.stderr,
                )
            )

    def on_progress(done: int, best: float | None) -> None:
        if bar:
            bar[0].n = done
            if best is not None:
                bar[0].set_postfix_str(f"best val acc {best:.4f}", refresh=False)
            bar[0].refresh()

    try:
        outcome = run_study(
            spec,
            home=home_path,
            storage=storage,
            tracking_uri=tracking_uri,
            on_start=on_start,
            on_progress=on_progress,
            workers=workers,
            heartbeat_s=heartbeat or HEARTBEAT_S,
            finish=finish,
        )
    finally:
        if bar:
            bar[0].close()
    if quiet:
        return
    if not outcome.finished_study:
        click.echo(
            f"worker done: {outcome.trials_this_run} trials run here; other workers are still "
            f"on study {spec.name!r}, and the last one closes it (test accuracy, report)."
        )
        return
    click.echo(summary_table(outcome))
    for note in outcome.report_notes:
        click.echo(f"note: {note}", err=True)
    if outcome.tracking_errors:
        click.echo(
            "warning: some runs could not be fully tracked:\n  "
            + "\n  ".join(outcome.tracking_errors),
            err=True,
        )
    if outcome.n_complete == 0:
        _fail(
            f"study {spec.name!r} has no completed trial; see `sweep runs {spec.name}` "
            "for the failure reasons.",
            EXIT_FAILURE,
        )


def summary_table(outcome: Any) -> str:
    rows = [["study", outcome.study_name]]
    if outcome.best_params:
        p = outcome.best_params
        rows += [
            [
                "best trial",
                f"#{outcome.best_trial}: learning_rate={p['learning_rate']:.4g}, "
                f"reg={p['reg']:.4g}, batch_size={p['batch_size']}",
            ],
            ["validation accuracy", f"{outcome.best_value:.4f}"],
            [
                "test accuracy",
                "n/a (weights not found)"
                if outcome.test_accuracy is None
                else f"{outcome.test_accuracy:.4f} (best trial only, evaluated once)",
            ],
        ]
    n_track = outcome.trials_this_run
    rows += [
        [
            "trials",
            f"{outcome.n_complete} completed, {outcome.n_pruned} pruned, "
            f"{outcome.n_failed} failed ({outcome.trials_this_run} run now)",
        ],
        ["wall time", f"{outcome.wall_s:.1f} s (training {outcome.train_s:.1f} s)"],
        [
            "tracking",
            f"{outcome.tracking_s / n_track * 1e3:.1f} ms/trial waited, "
            f"{outcome.tracking_background_s / n_track * 1e3:.1f} ms/trial in background"
            if n_track
            else "n/a (no trial run now)",
        ],
        [
            "optuna calls",
            f"{outcome.storage_s / n_track * 1e3:.1f} ms/trial waited"
            if n_track
            else "n/a (no trial run now)",
        ],
        ["optuna storage", outcome.storage],
        ["mlflow tracking", outcome.tracking_uri],
    ]
    if outcome.report_dir is not None:
        rows.append(["report", str(outcome.report_dir / "index.html")])
    if outcome.home is not None:
        rows.append(["runs table", f"sweep runs {outcome.study_name} --home {outcome.home}"])
        rows.append(["mlflow ui", f"sweep ui --home {outcome.home}"])
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


@main.command()
@click.argument("study")
@_HOME
@_STORAGE
@_TRACKING
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the table to this CSV file.",
)
@friendly_errors
def runs(
    study: str,
    home: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    csv_path: Path | None,
) -> None:
    """One row per trial of STUDY: params, metrics, state, durations (best first)."""
    from .compare import load_runs

    frame = load_runs(study, home=home, tracking_uri=tracking_uri, storage=storage)
    if csv_path is not None:
        frame.to_csv(csv_path, index=False)
    shown = frame.drop(columns=["run_id"]).copy()
    shown["fail_reason"] = shown["fail_reason"].str.slice(0, 40)
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))


@main.command()
@click.argument("study")
@_HOME
@_STORAGE
@_TRACKING
@friendly_errors
def report(study: str, home: Path | None, storage: str | None, tracking_uri: str | None) -> None:
    """Rebuild the report of STUDY from its stored trials and runs (no training)."""
    from . import report as reports
    from .runner import default_storage, load_study, report_folder, resolve_home
    from .studyview import gather
    from .tracking import Tracker, default_tracking_uri

    home_path = resolve_home(home, create=False)
    storage = storage or default_storage(home_path)
    tracking_uri = tracking_uri or default_tracking_uri(home_path)
    stored = load_study(study, storage)
    spec = _stored_spec(stored, storage)
    tracker = Tracker(tracking_uri, study, create=False)
    try:
        tracker.parent_id = tracker.find_study_run(study)
        view = gather(
            stored,
            spec,
            tracker,
            links={"optuna storage": storage, "mlflow tracking": tracking_uri},
        )
        written = reports.write_report(view, report_folder(home_path, study))
        if tracker.parent_id is not None:
            tracker.log_reports(written.files)
    finally:
        tracker.close()
    for path in written.files:
        click.echo(str(path))
    for note in written.notes:
        click.echo(f"note: {note}", err=True)
    for problem in tracker.errors:
        click.echo(f"warning: {problem}", err=True)
    click.echo(
        f"open {written.index} in a browser"
        + (
            "; the files are also artifacts of the study's MLflow run (reports/)"
            if tracker.parent_id
            else ""
        )
    )
    if view.best is None:
        _fail(
            f"study {study!r} has no completed trial: the report holds only the heatmap of "
            f"why its trials ended. See `sweep runs {study}` for the reasons.",
            EXIT_FAILURE,
        )


def _stored_spec(stored: Any, storage: str) -> Any:
    from .spec import parse_spec

    text = stored.user_attrs.get("spec_toml")
    if not text:
        raise RuntimeError(
            f"Study {stored.study_name!r} in {storage} does not hold its study file (it was "
            "created by another tool or an older softsweep). Run `sweep run` on its study file "
            "once: it resumes the study and stores it."
        )
    return parse_spec(text, source=f"study {stored.study_name!r} in {storage}")


@main.command()
@_HOME
@click.option("--port", default=5000, show_default=True)
@friendly_errors
def ui(home: Path | None, port: int) -> None:
    """Open the MLflow UI on the home folder's store, bound to 127.0.0.1."""
    from .runner import resolve_home
    from .tracking import default_tracking_uri

    home_path = resolve_home(home, create=False)
    if not (home_path / "mlflow.db").is_file():
        raise FileNotFoundError(
            f"No MLflow store in {home_path} (mlflow.db is missing). Run `sweep run STUDY.toml` "
            "first, or pass the --home that the sweep used."
        )
    click.echo(f"MLflow UI: http://127.0.0.1:{port}  (Ctrl-C to stop)")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        default_tracking_uri(home_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # The UI needs none of the server's job machinery (several extra processes, ~1-2 GiB).
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    # MLflow starts a tree of processes: give it its own group and take the group down with us.
    server = subprocess.Popen(cmd, env=env, start_new_session=True)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        sys.exit(server.wait())
    except KeyboardInterrupt:
        sys.exit(0)
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)


def entry() -> None:
    """The `sweep` command: `main()`, then exit without the interpreter's teardown.

    Tearing down the thousands of modules MLflow, SQLAlchemy and matplotlib import takes about
    1.3 s after every command (measured), longer than many commands themselves. By the time
    `main()` returns, every file is closed, every run is finished and every transaction
    committed, so the only thing left to do is flush the standard streams.
    """
    import logging

    try:
        main()
        code: int = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message")
            click.echo(str(exc.code), err=True)
            code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()

"""The `sweep` command line. Exit codes: 0 success, 1 failure, 2 bad usage or bad input."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _fail(message: str, code: int) -> None:
    """One paragraph on stderr, and the exit code. No password of a store URL given on the
    command line (or in the environment) appears in it, whatever a driver's error quoted."""
    from .home import scrub

    ctx = click.get_current_context(silent=True)
    given = dict(ctx.params) if ctx is not None else {}
    urls = [given.get("storage"), given.get("tracking_uri")]
    urls += [os.environ.get("SOFTSWEEP_STORAGE"), os.environ.get("SOFTSWEEP_TRACKING_URI")]
    message = scrub(message, *urls)
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
        except OSError as exc:  # a file softsweep had to write: read-only, full, gone
            where = f" ({exc.filename})" if exc.filename else ""
            _fail(
                f"softsweep cannot write{where}: {exc.strerror or exc}. Point --home at a "
                "folder with room that you can write to, or free some space.",
                EXIT_FAILURE,
            )

    return wrapper  # type: ignore[return-value]


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
@click.option(
    "--train-samples",
    default=5000,
    show_default=True,
    help="Examples in the training-epoch comparison (0 skips it).",
)
@click.option("--repeats", default=5, show_default=True, help="Timed runs per measurement.")
@friendly_errors
def check(
    dataset: str,
    data_dir: Path | None,
    samples: int,
    reg: float,
    seed: int,
    train_samples: int,
    repeats: int,
) -> None:
    """The course's sanity checks: initial loss vs -log(1/C), naive vs vectorized loss
    (values, times), a gradient check, and one training epoch with a per-sample loop vs the
    matrix kernel."""
    from .check import loss_check

    click.echo(
        loss_check(
            dataset, data_dir, samples, reg, seed, train_samples=train_samples, repeats=repeats
        )
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
    envvar="SOFTSWEEP_STORAGE",
    help="Optuna storage URL, e.g. postgresql+psycopg2://user:pw@host/db [env: "
    "SOFTSWEEP_STORAGE, which keeps a password out of the process list].",
)
_TRACKING = click.option(
    "--tracking-uri",
    default=None,
    envvar="SOFTSWEEP_TRACKING_URI",
    help="MLflow tracking URI, e.g. http://127.0.0.1:5000 [env: SOFTSWEEP_TRACKING_URI].",
)


def _stores(command: F) -> F:
    """--home, --storage and --tracking-uri: where a study's stores are."""
    return _HOME(_STORAGE(_TRACKING(command)))  # type: ignore[no-any-return]


_HEARTBEAT = click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds between a worker's heartbeats; a worker silent for 3x this is dead and its "
    "trials are retried  [default: 10].",
)


@main.command()
@click.argument("study_file", type=click.Path(path_type=Path))
@_stores
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
@_stores
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
@_stores
@friendly_errors
def create(
    study_file: Path, home: Path | None, storage: str | None, tracking_uri: str | None
) -> None:
    """Create the study of STUDY_FILE in the stores (and queue a grid's cells), then exit.

    The one-shot step before starting workers; running it again changes nothing.
    """
    from .home import Home
    from .launch import prepare_study
    from .spec import load_spec

    spec = load_spec(study_file)
    queued = prepare_study(spec, Home.resolve(home, storage=storage, tracking_uri=tracking_uri))
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

    from .home import Home
    from .launch import run_study
    from .lifecycle import Interrupted
    from .processes import die_with_parent
    from .spec import load_spec
    from .study import HEARTBEAT_S

    die_with_parent()  # a worker started by `sweep run --workers N` stops with it
    spec = load_spec(study_file)
    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri)
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

    def on_progress(done: int, best: float | None, note: str) -> None:
        if bar:
            bar[0].n = done
            shown = [f"best val acc {best:.4f}"] if best is not None else []
            bar[0].set_postfix_str(", ".join([*shown, note] if note else shown), refresh=False)
            bar[0].refresh()

    try:
        outcome = run_study(
            spec,
            where,
            on_start=on_start,
            on_progress=on_progress,
            workers=workers,
            heartbeat_s=heartbeat or HEARTBEAT_S,
            finish=finish,
        )
    except Interrupted as stop:
        if bar:
            bar[0].close()
        click.echo(
            f"interrupted ({signal.Signals(stop.signum).name}): the trials in flight were "
            f"stopped and will run again. Resume with: sweep run {study_file}"
            + ("" if home is None else f" --home {home}"),
            err=True,
        )
        sys.exit(stop.exit_code)
    finally:
        if bar:
            bar[0].close()
    if quiet:
        return
    click.echo(outcome.summary())
    if outcome.closing is None:  # a worker: the last one closes the study
        return
    for note in outcome.report_notes:
        click.echo(f"note: {note}", err=True)
    for warning in outcome.session.warnings:
        click.echo(f"warning: {warning}", err=True)
    if outcome.tracking_errors and not outcome.untracked:
        seen = dict.fromkeys(outcome.tracking_errors)  # once each, in order
        click.echo(
            "warning: some MLflow calls failed during the sweep (the runs were completed from "
            "Optuna at the end):\n  " + "\n  ".join(seen),
            err=True,
        )
    problem = outcome.problem(str(study_file))
    if problem is not None:
        _fail(*problem)


@main.command()
@click.argument("study")
@_stores
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
    if frame.empty:
        click.echo(f"study {study!r} has no trials yet: `sweep run` on its study file starts it.")
        return
    shown = frame.drop(columns=["run_id"]).copy()
    shown["fail_reason"] = shown["fail_reason"].str.slice(0, 40)
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))


@main.command()
@click.argument("study")
@_stores
@friendly_errors
def report(study: str, home: Path | None, storage: str | None, tracking_uri: str | None) -> None:
    """Rebuild the report of STUDY from its stored trials and runs (no training)."""
    from .closing import redraw_report
    from .home import Home

    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri, create=False)
    written, tracker, has_best = redraw_report(study, where)
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
    if not has_best:
        _fail(
            f"study {study!r} has no completed trial: the report holds only the heatmap of "
            f"why its trials ended. See `sweep runs {study}` for the reasons.",
            EXIT_FAILURE,
        )


@main.command()
@click.argument("study")
@_stores
@friendly_errors
def sync(study: str, home: Path | None, storage: str | None, tracking_uri: str | None) -> None:
    """Make MLflow agree with Optuna for STUDY: runs made or completed from the trials."""
    from .home import Home
    from .sync import sync_study

    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri, create=False)
    done = sync_study(study, where)
    click.echo(
        f"study {study!r}: {len(done.run_ids)} trial runs in MLflow; {done.created} made and "
        f"{done.completed} completed now from Optuna."
    )


@main.command()
@_HOME
@click.option("--port", default=5000, show_default=True)
@friendly_errors
def ui(home: Path | None, port: int) -> None:
    """Open the MLflow UI on the home folder's store, bound to 127.0.0.1."""
    from .home import Home

    where = Home.resolve(home, create=False)
    if not (where.folder / "mlflow.db").is_file():
        raise FileNotFoundError(
            f"No MLflow store in {where.folder} (mlflow.db is missing). Run `sweep run "
            "STUDY.toml` first, or pass the --home that the sweep used."
        )
    from .processes import serve_ui
    from .tracking import study_experiments

    base = f"http://127.0.0.1:{port}"
    click.echo(f"MLflow UI: {base}  (Ctrl-C to stop)")
    for name, experiment_id in sorted(study_experiments(where.tracking_uri).items()):
        # MLflow 3.17's UI opens in its GenAI view unless the link asks for model training.
        click.echo(
            f"  {name}: {base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        )
    sys.exit(serve_ui(where.tracking_uri, port))


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

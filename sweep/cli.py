"""The `sweep` command line. Exit codes: 0 success, 1 failure, 2 bad usage or bad input."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from . import browse
from .cliutil import EXIT_FAILURE, EXIT_USAGE, fail, friendly_errors, stores

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "entry", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="softsweep", message="%(prog)s (softsweep) %(version)s")
def main() -> None:
    """softsweep: hyperparameter sweeps and experiment tracking for softmax classifiers."""


@main.command(short_help="Sanity checks: initial loss, gradients, naive vs vectorized.")
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


_HEARTBEAT = click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds between a worker's heartbeats; a worker silent for 3x this is dead and its "
    "trials are retried  [default: 10].",
)


_N_TRIALS = click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    default=None,
    help="The study's target number of trials, instead of the file's n_trials.",
)
_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds, instead of the file's timeout_s.",
)


@main.command(short_help="Run or resume a study until it has n_trials trials.")
@click.argument("study_file", type=click.Path(path_type=Path))
@stores
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes sharing the study (embedded store or --storage).",
)
@_HEARTBEAT
@_N_TRIALS
@_TIMEOUT
@click.option("--verbose", "-v", is_flag=True, help="Also say where the sweep's time went.")
@friendly_errors
def run(
    study_file: Path,
    home: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    workers: int,
    heartbeat: int | None,
    n_trials: int | None,
    timeout: float | None,
    verbose: bool,
) -> None:
    """Run (or resume) the study of STUDY_FILE until it has n_trials trials."""
    _sweep(
        study_file, home, storage, tracking_uri, heartbeat, workers=workers, finish="always",
        overrides={"n_trials": n_trials, "timeout_s": timeout}, verbose=verbose,
    )  # fmt: skip


@main.command(short_help="Work on a shared study (PostgreSQL, MLflow server).")
@click.argument("study_file", type=click.Path(path_type=Path))
@stores
@_HEARTBEAT
@click.option(
    "--finish",
    type=click.Choice(["last", "never"]),
    default="last",
    show_default=True,
    help="Whether this worker closes the study (test accuracy, report) when it is the last.",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@_N_TRIALS
@_TIMEOUT
@friendly_errors
def worker(
    study_file: Path,
    home: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    heartbeat: int | None,
    finish: str,
    quiet: bool,
    n_trials: int | None,
    timeout: float | None,
) -> None:
    """Join (or create) the study of STUDY_FILE and work on it until its target is reached.

    Start any number of workers, on any number of machines, with the same --storage (Optuna,
    e.g. PostgreSQL) and --tracking-uri (an MLflow server). A worker killed mid-trial is noticed
    by the others through its missing heartbeats; its trial is failed and run again.
    """
    _sweep(
        study_file, home, storage, tracking_uri, heartbeat, finish=finish, quiet=quiet,
        overrides={"n_trials": n_trials, "timeout_s": timeout},
    )  # fmt: skip


@main.command(short_help="Create a study (and queue its grid), then exit.")
@click.argument("study_file", type=click.Path(path_type=Path))
@stores
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
    overrides: dict[str, Any] | None = None,
    verbose: bool = False,
) -> None:
    import dataclasses

    from tqdm import tqdm

    from .home import Home
    from .launch import run_study
    from .lifecycle import Interrupted
    from .processes import die_with_parent
    from .spec import load_spec
    from .study import HEARTBEAT_S

    die_with_parent()  # a worker started by `sweep run --workers N` stops with it
    spec = load_spec(study_file)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    spec = dataclasses.replace(spec, **given) if given else spec
    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri)
    bar: list[Any] = []
    per_trial = spec.epochs

    def on_start(done: int, target: int) -> None:
        if not quiet:  # trial-epochs: the bar moves every epoch of every model in training
            bar.append(
                tqdm(
                    total=target * per_trial,
                    initial=done * per_trial,
                    desc=spec.name,
                    unit="epoch",
                    dynamic_ncols=True,
                    file=sys.stderr,
                )
            )
            bar.append(target)

    def on_progress(done: int, best: float | None, note: str, epochs: int) -> None:
        if bar:
            bar[0].n = min(done * per_trial + epochs, bar[0].total)
            shown = [f"{done}/{bar[1]} trials"]
            shown += [f"best val acc {best:.4f}"] if best is not None else []
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
    click.echo(outcome.summary(verbose))
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
        fail(*problem)


for command in (browse.studies, browse.runs, browse.report, browse.sync, browse.ui, browse.delete):
    main.add_command(command)


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

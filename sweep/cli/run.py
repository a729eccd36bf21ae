"""`sweep run`, `sweep worker` and `sweep create`, and the summary `sweep run` prints from a
`launch.StudyResult`: the result first, then where things are."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..trial import Outcome
from .options import EXIT_FAILURE, fail, friendly_errors, stores

if TYPE_CHECKING:
    from ..closing import Closing
    from ..launch import StudyResult
    from ..store.home import Home

__all__ = ["EXIT_DEADLINE", "create", "problem", "run", "store_options", "summary", "worker"]

EXIT_DEADLINE = 124  # as timeout(1): the study stopped at its timeout_s, short of n_trials
# How the summary names the `sweep` command: run.sh puts its virtual environment's `sweep` here,
# since it is on run.sh's PATH but not on the user's.
COMMAND_ENV = "SOFTSWEEP_COMMAND"


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


@click.command(short_help="Run or resume a study until it has n_trials trials.")
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


@click.command(short_help="Work on a shared study (PostgreSQL, MLflow server).")
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


@click.command(short_help="Create a study (and queue its grid), then exit.")
@click.argument("study_file", type=click.Path(path_type=Path))
@stores
@friendly_errors
def create(
    study_file: Path, home: Path | None, storage: str | None, tracking_uri: str | None
) -> None:
    """Create the study of STUDY_FILE in the stores (and queue a grid's cells), then exit.

    The one-shot step before starting workers; running it again changes nothing.
    """
    from ..launch import prepare_study
    from ..spec import load_spec
    from ..store.home import Home

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

    from tqdm import tqdm

    from ..launch import run_study
    from ..signals import Interrupted
    from ..spec import load_spec, with_overrides
    from ..store.home import Home
    from ..store.study import HEARTBEAT_S
    from ..workers import die_with_parent

    die_with_parent()  # a worker started by `sweep run --workers N` stops with it
    spec = load_spec(study_file)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    spec = with_overrides(spec, given, "the command line")
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
            f"stopped and will run again. Resume with: {_resume(study_file, where, given)}",
            err=True,
        )
        sys.exit(stop.exit_code)
    finally:
        if bar:
            bar[0].close()
    if quiet:
        return
    click.echo(summary(outcome, verbose))
    if outcome.closing is None:  # a worker: the last one closes the study
        return
    for note in outcome.report_notes:
        click.echo(f"note: {note}", err=True)
    for warning in outcome.loop.warnings:
        click.echo(f"warning: {warning}", err=True)
    if outcome.tracking_errors and not outcome.untracked:
        seen = dict.fromkeys(outcome.tracking_errors)  # once each, in order
        click.echo(
            "warning: some MLflow calls failed during the sweep (the runs were completed from "
            "Optuna at the end):\n  " + "\n  ".join(seen),
            err=True,
        )
    found = problem(outcome, _resume(study_file, where, given))
    if found is not None:
        fail(*found)


def problem(result: StudyResult, resume: str) -> tuple[str, int] | None:
    """What `sweep run` says when the study did not end well, and its exit code; `resume` is
    the command that continues it."""
    name = result.study_name
    if result.untracked:
        return (
            f"{result.untracked} finished trials of study {name!r} are not (all) in MLflow: "
            f"the tracking store {result.home.shown_tracking_uri} failed ({result.tracking_down}). "
            "Their results are safe in Optuna; once the store is back, `sweep sync "
            f"{name}` (with the same --home, --storage and --tracking-uri) writes them.",
            EXIT_FAILURE,
        )
    if result.deadline:
        return (
            f"study {name!r} stopped at its deadline (timeout_s = {result.timeout_s:g} s) with "
            f"{result.done} of {result.target} trials done. Run `{resume}` to continue it "
            "(for another timeout_s), or raise timeout_s.",
            EXIT_DEADLINE,
        )
    if result.closing is not None and result.n_complete == 0:
        return (
            f"study {name!r} has no completed trial; see `sweep runs {name}` for the "
            "failure reasons.",
            EXIT_FAILURE,
        )
    return None


def _resume(study_file: Path, home: Home, given: dict[str, Any]) -> str:
    """The command that resumes this sweep: the same stores, the same overrides."""
    sweep = os.environ.get(COMMAND_ENV) or "sweep"
    options = {"n_trials": "--n-trials", "timeout_s": "--timeout"}
    again = "".join(f" {options[k]} {v:g}" for k, v in given.items() if k in options)
    return f"{sweep} run {study_file} {store_options(home)}{again}"


def store_options(home: Home) -> str:
    """The options that name these stores again (passwords masked)."""
    where = f"--home {home.folder}"
    if not home.embedded_storage:
        where += f" --storage {home.shown_storage}"
    if not home.embedded_tracking:
        where += f" --tracking-uri {home.shown_tracking_uri}"
    return where


def summary(result: StudyResult, verbose: bool = False) -> str:
    """What `sweep run` prints at the end: the result first, then where things are; with
    `verbose`, where the sweep's time went too."""
    from ..scores import describe_calibration, describe_refit, describe_runner_up

    closing = result.closing
    if closing is None:
        return (
            f"worker done: {result.trials_this_run} trials run here; other workers are still "
            f"on study {result.study_name!r}, and the last one closes it."
        )
    rows = [["study", result.study_name]]
    if closing.best_params:
        p = closing.best_params
        rows += [
            [
                "best trial",
                f"#{closing.best_trial}: learning_rate={p['learning_rate']:.4g}, "
                f"reg={p['reg']:.4g}, batch_size={p['batch_size']}",
            ],
            ["validation accuracy", f"{closing.best_value:.4f}"],
            ["test accuracy", _test_accuracy(closing)],
        ]
        if closing.test_scores is not None:
            rows.append(["calibration", describe_calibration(closing.test_scores)])
        if closing.runner_up is not None:
            rows.append(["vs runner-up", describe_runner_up(closing.runner_up)])
        if closing.refit is not None:
            rows.append(["refit", describe_refit(closing.refit)])
    n_track = result.trials_this_run
    interrupted = closing.counts[Outcome.INTERRUPTED]
    rows += [
        [
            "trials",
            f"{result.n_complete} completed, {result.n_pruned} pruned, "
            f"{result.n_failed} failed ({n_track} run now"
            + (f"; {interrupted} interrupted and run again" if interrupted else "")
            + ")",
        ],
    ]
    if result.deadline:
        rows.append(["stopped", f"at its deadline: {result.done} of {result.target} trials"])
    rows.append(["wall time", f"{result.wall_s:.1f} s (training {result.loop.train_s:.1f} s)"])
    timing = [
        [
            "tracking",
            f"{result.tracking_s / n_track * 1e3:.1f} ms/trial waited, "
            f"{result.tracking_background_s / n_track * 1e3:.1f} ms/trial in background"
            if n_track
            else "n/a (no trial run now)",
        ],
        ["closing", f"{result.closing_s:.1f} s (tracking caught up, the test set, the report)"],
        [
            "optuna calls",
            f"{result.storage_s / n_track * 1e3:.1f} ms/trial waited"
            if n_track
            else "n/a (no trial run now)",
        ],
    ]
    rows += timing if verbose else []
    rows += [
        ["optuna storage", result.home.shown_storage],
        ["mlflow tracking", result.home.shown_tracking_uri],
    ]
    if closing.report_dir is not None:
        rows.append(["report", str(closing.report_dir / "index.html")])
    home = result.home
    sweep = os.environ.get(COMMAND_ENV) or "sweep"
    rows.append(["runs table", f"{sweep} runs {result.study_name} {store_options(home)}"])
    if home.tracking_uri.startswith(("http://", "https://")):  # the server is the UI
        rows.append(["mlflow ui", home.shown_tracking_uri])
    else:
        rows.append(["mlflow ui", f"{sweep} ui --home {home.folder}"])
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _test_accuracy(closing: Closing) -> str:
    if closing.test_accuracy is None:
        return "n/a (weights not found)"
    from ..scores import describe_interval

    if closing.test_scores is None:  # tested before the scores were kept
        return f"{closing.test_accuracy:.4f} ({_test_uses(closing)})"
    return describe_interval(closing.test_scores).replace(")", f"; {_test_uses(closing)})")


def _test_uses(closing: Closing) -> str:
    uses = closing.test_evaluations
    if len(uses) <= 1:
        return "best trial only, evaluated once"
    trials = ", ".join(f"#{n}" for n, _ in uses)
    return f"best trial; the test set has now been used {len(uses)} times: {trials}"
